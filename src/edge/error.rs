//! What can go wrong on the way through the edge, as typed errors, and the one place they become
//! problems (and so responses). Details never carry internals: Redis failures are named by their
//! reason (`redis_timeout`), never by their text.

use crate::cache::{KeyError, LoadError};
use crate::identity::{AuthError, RegistryError};
use crate::limiter::RemoteError;
use crate::redis::RedisError;

use super::problem::{Problem, ProblemKind};

/// A request the edge cannot serve as asked.
#[derive(Debug, Clone, PartialEq)]
pub enum GateError {
    /// The credential was refused (401).
    Auth(AuthError),
    /// API keys need Redis and Tollgate runs in memory mode (401).
    KeysNeedRedis,
    /// The key registry could not be read for a key never verified here, on a route that fails
    /// closed (503).
    RegistryUnavailable(RedisError),
    /// Redis failed and the route fails closed (503).
    LimiterUnavailable {
        /// The route's name.
        route: String,
        /// Why the check could not be made.
        reason: &'static str,
    },
    /// The request's body cannot form a cache key (400).
    CacheKey(KeyError),
    /// A cache fill produced nothing to serve (502/504).
    Load(LoadError),
    /// No `ORIGIN_URL` is configured (502).
    NoOrigin,
    /// The request is malformed (400).
    BadRequest(String),
    /// The body is larger than the endpoint accepts (413).
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
}

impl From<RegistryError> for GateError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Refused(auth) => GateError::Auth(auth),
            RegistryError::NotConfigured => GateError::KeysNeedRedis,
            RegistryError::Unavailable(redis) => GateError::RegistryUnavailable(redis),
            RegistryError::Conflict => GateError::BadRequest("key conflict".into()),
        }
    }
}

impl GateError {
    /// A closed route's refusal after `error`.
    pub fn limiter(route: &str, error: &RemoteError) -> Self {
        GateError::LimiterUnavailable { route: route.to_owned(), reason: error.reason() }
    }

    /// The problem to answer with.
    pub fn problem(&self) -> Problem {
        match self {
            GateError::Auth(e @ AuthError::KeysUnavailable) => {
                Problem::new(ProblemKind::SigningKeysUnavailable, e.detail())
                    .with("reason", e.as_str())
                    .with_header("retry-after", "5")
            }
            GateError::Auth(e) => Problem::unauthorized(e.detail()).with("reason", e.as_str()),
            GateError::KeysNeedRedis => Problem::unauthorized("API keys need Redis; Tollgate runs in memory mode")
                .with("reason", "not_configured"),
            GateError::RegistryUnavailable(e) => Problem::new(
                ProblemKind::KeyRegistryUnavailable,
                format!("the key registry could not be read ({})", e.reason()),
            )
            .with_header("retry-after", "5"),
            GateError::LimiterUnavailable { route, reason } => Problem::new(
                ProblemKind::LimiterUnavailable,
                format!("the rate limiter cannot be reached and route \"{route}\" fails closed"),
            )
            .with("reason", *reason)
            .with_header("retry-after", "5")
            .with_header("x-tollgate-mode", "closed"),
            GateError::CacheKey(e) => Problem::bad_request(e.to_string()),
            GateError::Load(LoadError::OriginTimeout) => {
                Problem::new(ProblemKind::OriginTimeout, "the origin did not answer in time and no cached copy exists")
            }
            GateError::Load(LoadError::OriginUnreachable(why)) => Problem::new(
                ProblemKind::OriginUnreachable,
                format!("the origin could not be reached ({why}) and no cached copy exists"),
            ),
            GateError::Load(LoadError::OriginStatus(s)) => Problem::new(
                ProblemKind::OriginUnreachable,
                format!("the origin answered {s} and no cached copy exists"),
            )
            .with("origin_status", *s),
            GateError::NoOrigin => Problem::new(
                ProblemKind::OriginUnreachable,
                "ORIGIN_URL is not set: Tollgate has no origin to proxy to",
            ),
            GateError::BadRequest(detail) => Problem::bad_request(detail.clone()),
            GateError::TooLarge { limit } => Problem::new(
                ProblemKind::PayloadTooLarge,
                format!("the request body is larger than this endpoint accepts ({limit} bytes)"),
            )
            .with("limit_bytes", *limit),
        }
    }
}

/// What can go wrong in an admin call.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminError {
    /// The request is malformed (400); the detail names the field.
    BadRequest(String),
    /// Nothing at this path, or no such object (404).
    NotFound(String),
    /// The path exists, the method does not (405).
    MethodNotAllowed(String),
    /// The admin API is disabled (404).
    Disabled,
    /// No valid admin token (401).
    Unauthorized,
    /// Too many wrong admin tokens from this address (429).
    Throttled {
        /// Seconds until the address may try again.
        retry_after_s: u64,
    },
    /// The operation needs Redis (503).
    RedisRequired,
    /// Redis could not be reached (503).
    Redis(RedisError),
    /// Redis answered an unexpected shape (502).
    RedisReply(String),
    /// A new key collided (409).
    KeyConflict,
    /// An identification error of `/me`.
    Gate(GateError),
}

impl From<RedisError> for AdminError {
    fn from(e: RedisError) -> Self {
        AdminError::Redis(e)
    }
}

impl From<RemoteError> for AdminError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::Redis(r) => AdminError::Redis(r),
            RemoteError::Limiter(crate::limiter::LimiterError::Store(r)) => AdminError::Redis(r),
            RemoteError::Limiter(crate::limiter::LimiterError::MalformedReply(what)) => {
                AdminError::RedisReply(what.to_owned())
            }
            RemoteError::Limiter(other) => AdminError::BadRequest(other.to_string()),
        }
    }
}

impl From<RegistryError> for AdminError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Unavailable(r) => AdminError::Redis(r),
            RegistryError::NotConfigured => AdminError::RedisRequired,
            RegistryError::Conflict => AdminError::KeyConflict,
            RegistryError::Refused(auth) => AdminError::Gate(GateError::Auth(auth)),
        }
    }
}

impl AdminError {
    /// The problem to answer with.
    pub fn problem(&self) -> Problem {
        match self {
            AdminError::BadRequest(detail) => Problem::bad_request(detail.clone()),
            AdminError::NotFound(detail) => Problem::not_found(detail.clone()),
            AdminError::MethodNotAllowed(detail) => Problem::new(ProblemKind::MethodNotAllowed, detail.clone()),
            AdminError::Disabled => Problem::not_found("the admin API is disabled: TOLLGATE_ADMIN_TOKEN is not set"),
            AdminError::Unauthorized => {
                Problem::unauthorized("a valid admin token is required (Authorization: Bearer <TOLLGATE_ADMIN_TOKEN>)")
                    .with_header("www-authenticate", "Bearer realm=\"tollgate-admin\"")
            }
            AdminError::Throttled { retry_after_s } => Problem::new(
                ProblemKind::RateLimited,
                format!("too many wrong admin tokens from this address; retry in {retry_after_s} s"),
            )
            .with("retry_after_s", *retry_after_s)
            .with_header("retry-after", retry_after_s.to_string()),
            AdminError::RedisRequired => {
                Problem::new(ProblemKind::RedisRequired, "this operation needs Redis; Tollgate runs in memory mode")
            }
            AdminError::Redis(e) => Problem::new(
                ProblemKind::RedisUnavailable,
                format!("the operation could not reach Redis ({})", e.reason()),
            ),
            AdminError::RedisReply(what) => {
                Problem::new(ProblemKind::RedisReply, format!("Redis answered an unexpected shape ({what})"))
            }
            AdminError::KeyConflict => {
                Problem::new(ProblemKind::KeyConflict, "a key with this id already exists; try again")
            }
            AdminError::Gate(e) => e.problem(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_failures_are_named_by_reason_never_by_their_text() {
        let e = GateError::RegistryUnavailable(RedisError::Transport("dns error: secret-host.internal".into()));
        let resp = e.problem().to_response();
        assert_eq!(resp.status, 503);
        let body = String::from_utf8(resp.body).unwrap();
        assert!(body.contains("redis_unreachable") && !body.contains("secret-host"), "{body}");
        let admin = AdminError::Redis(RedisError::Timeout(40)).problem();
        assert_eq!((admin.status(), admin.detail.contains("redis_timeout")), (503, true));
    }

    #[test]
    fn a_closed_route_says_so_with_retry_after() {
        let resp =
            GateError::LimiterUnavailable { route: "auth".into(), reason: "redis_timeout" }.problem().to_response();
        assert_eq!(
            (resp.status, resp.header("retry-after"), resp.header("x-tollgate-mode")),
            (503, Some("5"), Some("closed"))
        );
    }
}
