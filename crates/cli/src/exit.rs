//! The exit codes scripts rely on, one per kind of outcome.

use std::process::ExitCode;

/// How the process ends; the numbers are part of the CLI's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked (and `health` found the Worker healthy).
    Ok,
    /// The operation ran but failed, or the Worker is unhealthy.
    Failed,
    /// Bad arguments, a missing setting, or an invalid policy file.
    Usage,
    /// The admin API refused the token (`401`).
    Auth,
    /// The Worker could not be reached.
    Network,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Auth => 3,
            Exit::Network => 4,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> =
            [Exit::Ok, Exit::Failed, Exit::Usage, Exit::Auth, Exit::Network].iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4]);
    }
}
