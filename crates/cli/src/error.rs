//! What can go wrong in a command, classified by the exit code it ends with. Each error renders as
//! one line a person can act on; none carries a backtrace.

use std::fmt;
use std::io;

use crate::exit::Exit;

/// A command's failure.
#[derive(Debug)]
pub enum CliError {
    /// Arguments the CLI itself rejects (beyond what clap checks).
    Usage(String),
    /// A missing or invalid setting, or an unreadable or invalid file.
    Config(String),
    /// The admin API answered `401`.
    Unauthorized,
    /// The Worker could not be reached at `base`.
    Network { base: String, reason: String },
    /// The admin API answered with an error status; `detail` comes from its problem+json body.
    Http { status: u16, title: String, detail: Option<String> },
    /// The admin API answered 2xx with a body the CLI cannot read.
    BadReply { path: String, reason: String },
    /// The person at the terminal declined the confirmation.
    Aborted,
    /// Writing to stdout failed (a closed pipe ends the program quietly).
    Output(io::Error),
}

impl CliError {
    /// The exit code this error ends the program with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Usage(_) | CliError::Config(_) => Exit::Usage,
            CliError::Unauthorized => Exit::Auth,
            CliError::Network { .. } => Exit::Network,
            // The Worker rejected what we sent: a usage error on our side of the wire.
            CliError::Http { status: 400 | 422, .. } => Exit::Usage,
            CliError::Http { .. } | CliError::BadReply { .. } | CliError::Aborted | CliError::Output(_) => Exit::Failed,
        }
    }

    /// True when stdout was closed by its reader (`tollgate monitor | head -3`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) | CliError::Config(message) => f.write_str(message),
            CliError::Unauthorized => f.write_str("401 unauthorized: check TOLLGATE_ADMIN_TOKEN"),
            CliError::Network { base, reason } => write!(f, "cannot reach {base}: {reason}"),
            CliError::Http { status, title, detail } => {
                write!(f, "{status} {title}")?;
                match detail {
                    Some(detail) if !detail.is_empty() && detail != title => {
                        write!(f, ": {detail}")
                    }
                    _ => Ok(()),
                }
            }
            CliError::BadReply { path, reason } => {
                write!(f, "unexpected reply from {path}: {reason}")
            }
            CliError::Aborted => f.write_str("aborted: nothing was changed"),
            CliError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> CliError {
        CliError::Http { status, title: "x".into(), detail: None }
    }

    #[test]
    fn each_kind_maps_to_its_exit_code() {
        assert_eq!(CliError::Usage("u".into()).exit(), Exit::Usage);
        assert_eq!(CliError::Config("c".into()).exit(), Exit::Usage);
        assert_eq!(CliError::Unauthorized.exit(), Exit::Auth);
        let network = CliError::Network { base: "http://127.0.0.1:1".into(), reason: "connection refused".into() };
        assert_eq!(network.exit(), Exit::Network);
        assert_eq!(http(400).exit(), Exit::Usage);
        assert_eq!(http(422).exit(), Exit::Usage);
        assert_eq!(http(404).exit(), Exit::Failed);
        assert_eq!(http(500).exit(), Exit::Failed);
        assert_eq!(CliError::BadReply { path: "/p".into(), reason: "r".into() }.exit(), Exit::Failed);
        assert_eq!(CliError::Aborted.exit(), Exit::Failed);
    }

    #[test]
    fn messages_are_one_actionable_line() {
        assert_eq!(CliError::Unauthorized.to_string(), "401 unauthorized: check TOLLGATE_ADMIN_TOKEN");
        let network = CliError::Network { base: "http://127.0.0.1:8787".into(), reason: "connection refused".into() };
        assert_eq!(network.to_string(), "cannot reach http://127.0.0.1:8787: connection refused");
        let problem =
            CliError::Http { status: 400, title: "Bad Request".into(), detail: Some("unknown tier \"GOLD\"".into()) };
        assert_eq!(problem.to_string(), "400 Bad Request: unknown tier \"GOLD\"");
        let same = CliError::Http { status: 404, title: "Not Found".into(), detail: Some("Not Found".into()) };
        assert_eq!(same.to_string(), "404 Not Found");
    }

    #[test]
    fn only_a_closed_pipe_is_quiet() {
        assert!(CliError::Output(io::Error::from(io::ErrorKind::BrokenPipe)).is_broken_pipe());
        assert!(!CliError::Output(io::Error::from(io::ErrorKind::Other)).is_broken_pipe());
        assert!(!CliError::Aborted.is_broken_pipe());
    }
}
