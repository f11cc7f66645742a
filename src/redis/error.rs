//! Errors of the REST client, classified by what a caller should do about them.

use thiserror::Error;

/// What went wrong talking to Redis over REST.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedisError {
    /// Redis answered with an error reply (`ERR …`, `WRONGTYPE …`, `NOSCRIPT …`).
    #[error("redis error: {message}")]
    Redis {
        /// The reply's first word, classified.
        kind: RedisErrorKind,
        /// The whole error text as Redis sent it.
        message: String,
    },
    /// The REST server refused the token (HTTP 401).
    #[error("redis rest: unauthorized")]
    Unauthorized,
    /// The REST server answered an unexpected HTTP status.
    #[error("redis rest: http status {status}")]
    Http {
        /// The status code.
        status: u16,
        /// The `error` text of the body, when there was one.
        message: String,
    },
    /// The request could not be sent or its answer not read.
    #[error("redis rest: transport: {0}")]
    Transport(String),
    /// No answer within the call's time budget.
    #[error("redis rest: timed out after {0} ms")]
    Timeout(u32),
    /// The answer was not a reply of the protocol.
    #[error("redis rest: malformed reply: {0}")]
    Malformed(String),
    /// Not sent: the circuit breaker is open after recent failures.
    #[error("redis rest: circuit breaker open")]
    CircuitOpen,
}

/// The class of a Redis error reply, from its first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorKind {
    /// `NOSCRIPT`: the script is not cached; resend with EVAL.
    NoScript,
    /// `WRONGTYPE`.
    WrongType,
    /// `BUSY`: a script is running too long.
    Busy,
    /// `LOADING`, `TRYAGAIN`, `MASTERDOWN`: the server is not ready yet.
    TryAgain,
    /// `EXECABORT`: a transaction was discarded.
    ExecAbort,
    /// Any other error reply (`ERR …`).
    Other,
}

impl RedisErrorKind {
    /// Classifies an error text by its first word.
    pub fn of(message: &str) -> Self {
        let word = message.split_whitespace().next().unwrap_or("");
        match word {
            "NOSCRIPT" => Self::NoScript,
            "WRONGTYPE" => Self::WrongType,
            "BUSY" => Self::Busy,
            "LOADING" | "TRYAGAIN" | "MASTERDOWN" => Self::TryAgain,
            "EXECABORT" => Self::ExecAbort,
            _ => Self::Other,
        }
    }
}

impl RedisError {
    /// An error reply from Redis, classified.
    pub fn reply(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Redis { kind: RedisErrorKind::of(&message), message }
    }

    /// Whether the same call may succeed later (Redis unreachable, slow, or restarting), as
    /// opposed to a mistake in the call itself. Failure policies and the breaker read this.
    pub fn is_transient(&self) -> bool {
        match self {
            RedisError::Transport(_) | RedisError::Timeout(_) | RedisError::CircuitOpen => true,
            RedisError::Http { status, .. } => *status >= 500 || *status == 429,
            RedisError::Redis { kind, .. } => matches!(kind, RedisErrorKind::Busy | RedisErrorKind::TryAgain),
            RedisError::Unauthorized | RedisError::Malformed(_) => false,
        }
    }

    /// A short, internals-free name of the failure, for problem bodies and health.
    pub fn reason(&self) -> &'static str {
        match self {
            RedisError::Timeout(_) => "redis_timeout",
            RedisError::Transport(_) => "redis_unreachable",
            RedisError::CircuitOpen => "redis_circuit_open",
            RedisError::Unauthorized => "redis_unauthorized",
            RedisError::Http { .. } => "redis_http_error",
            RedisError::Malformed(_) => "redis_malformed_reply",
            RedisError::Redis { .. } => "redis_error",
        }
    }

    /// Whether the request may have reached the server (it counts on the server's side).
    pub fn reached_server(&self) -> bool {
        !matches!(self, RedisError::Transport(_) | RedisError::CircuitOpen)
    }

    /// Whether this is `NOSCRIPT`.
    pub fn is_noscript(&self) -> bool {
        matches!(self, RedisError::Redis { kind: RedisErrorKind::NoScript, .. })
    }
}
