//! Colours for a person at a terminal, and nothing else: never in a pipe, never with `NO_COLOR`.

use std::io::IsTerminal;

/// Whether output is decorated with ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colours when stdout is a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>).
    pub fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR");
        Self::decide(std::io::stdout().is_terminal(), no_color.as_ref().and_then(|v| v.to_str()))
    }

    /// The decision of [`Style::detect`], from its two inputs.
    pub fn decide(stdout_is_terminal: bool, no_color: Option<&str>) -> Self {
        let disabled = no_color.is_some_and(|v| !v.is_empty());
        Self { color: stdout_is_terminal && !disabled }
    }

    /// No decoration at all.
    #[cfg(test)]
    pub fn plain() -> Self {
        Self { color: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Something good (`ok`, `HIT`).
    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Something to look at (`degraded`, `STALE`, denied requests).
    pub fn warn(self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Something broken (`down`, `ERROR`).
    pub fn bad(self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Headers and labels.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Secondary information.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(Style::decide(true, None).color);
        assert!(Style::decide(true, Some("")).color, "an empty NO_COLOR does not count");
        assert!(!Style::decide(true, Some("1")).color);
        assert!(!Style::decide(false, None).color);
    }

    #[test]
    fn plain_style_leaves_text_alone() {
        assert_eq!(Style::plain().good("ok"), "ok");
        assert_eq!(Style::decide(true, None).good("ok"), "\x1b[32mok\x1b[0m");
    }
}
