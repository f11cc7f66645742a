//! Asking before a broad delete: on a terminal, a `[y/N]` question; elsewhere, a refusal unless the
//! caller said `--yes`, so a script never hangs on a prompt nobody will answer.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::CliError;

/// What to do before a destructive operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Proceed,
    /// Ask the person at the terminal.
    Ask,
    /// Stop: nobody can answer and `--yes` was not given.
    Refuse,
}

/// The gate for an operation that is `broad` (many entries) or not.
pub fn gate(broad: bool, yes: bool, interactive: bool) -> Gate {
    match (broad, yes, interactive) {
        (false, _, _) | (true, true, _) => Gate::Proceed,
        (true, false, true) => Gate::Ask,
        (true, false, false) => Gate::Refuse,
    }
}

/// Applies [`gate`] for `what` (`delete every cache entry tagged "config"`): `Ok` to go ahead.
pub fn confirm(what: &str, broad: bool, yes: bool) -> Result<(), CliError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    match gate(broad, yes, interactive) {
        Gate::Proceed => Ok(()),
        Gate::Refuse => Err(CliError::Usage(format!(
            "refusing to {what} without confirmation: pass --yes (stdin is not a terminal)"
        ))),
        Gate::Ask => {
            let mut stderr = std::io::stderr();
            write!(stderr, "{what}? [y/N] ")?;
            stderr.flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if is_yes(&answer) {
                Ok(())
            } else {
                Err(CliError::Aborted)
            }
        }
    }
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_operations_never_ask() {
        assert_eq!(gate(false, false, false), Gate::Proceed);
        assert_eq!(gate(false, false, true), Gate::Proceed);
    }

    #[test]
    fn broad_operations_ask_on_a_terminal_and_refuse_elsewhere() {
        assert_eq!(gate(true, false, true), Gate::Ask);
        assert_eq!(gate(true, false, false), Gate::Refuse);
        assert_eq!(gate(true, true, false), Gate::Proceed);
        assert_eq!(gate(true, true, true), Gate::Proceed);
    }

    #[test]
    fn only_yes_means_yes() {
        assert!(is_yes("y\n"));
        assert!(is_yes(" YES \n"));
        assert!(!is_yes("\n"));
        assert!(!is_yes("n\n"));
        assert!(!is_yes("yep\n"));
    }
}
