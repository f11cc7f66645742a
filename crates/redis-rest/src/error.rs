//! Typed failures of the Redis backend. All of them mean "Redis could not be reached or did
//! not answer" (HTTP 502, health 503); Redis *error replies* are not errors here but replies.
//! Cloneable, because one broken connection fails every job queued on it with the same cause.

use std::sync::Arc;

use crate::resp::ProtocolError;

/// Why a command did not get a reply from Redis. The connection involved is discarded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("connect to {addr} failed: {source}")]
    Connect { addr: String, source: Arc<std::io::Error> },
    #[error("connect to {addr} timed out after {ms} ms")]
    ConnectTimeout { addr: String, ms: u64 },
    #[error("redis refused: {0}")]
    Refused(String),
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    #[error("connection closed by redis")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("no reply within {0} ms")]
    Timeout(u64),
    #[error("server is shutting down")]
    ShuttingDown,
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError::Io(Arc::new(e))
    }
}
