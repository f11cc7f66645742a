//! Errors of the limiter, classified by what to do about them (a denial is not one of them).

use thiserror::Error;

use crate::redis::RedisError;

/// Why a check could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimiterError {
    /// A limit's window exceeds [`super::MAX_WINDOW_MS`] or `limit × window_ms` exceeds
    /// [`super::MAX_LIMIT_TIMES_WINDOW`]: the script could not compute it exactly.
    #[error("limit {id}: window or limit × window too large for exact integer math")]
    LimitOutOfRange {
        /// The limit's id.
        id: String,
    },
    /// Two limits of one check share an id (and so a Redis key) but not algorithm and window.
    #[error("limits sharing id {id} disagree on algorithm or window")]
    DuplicateLimitId {
        /// The repeated id.
        id: String,
    },
    /// A concurrency lease id is not 1 to 64 ASCII letters, digits, `_` or `-`.
    #[error("bad lease id")]
    BadLeaseId,
    /// A usage reservation id is not 1 to 64 ASCII letters, digits, `_` or `-`.
    #[error("bad reservation id")]
    BadReservationId,
    /// The script's reply did not have the documented shape.
    #[error("malformed limiter reply: {0}")]
    MalformedReply(&'static str),
    /// Redis could not run the check.
    #[error(transparent)]
    Store(#[from] RedisError),
}

impl LimiterError {
    /// Whether the same check may succeed later (Redis unreachable or busy): the route's failure
    /// policy and the circuit breaker act on these; the others are bugs or bad configuration.
    pub fn is_transient(&self) -> bool {
        matches!(self, LimiterError::Store(e) if e.is_transient())
    }
}
