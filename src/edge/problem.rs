//! RFC 9457 problem details: every kind of problem Tollgate answers with, each with its one
//! status, `type` slug and title, and the one rendering of a problem as a response.

use serde_json::{json, Map, Value};

use super::http::EdgeResponse;

/// Base of the `type` URIs of Tollgate's problems.
pub const TYPE_BASE: &str = "https://tollgate.dev/problems/";

/// Every kind of problem, with a stable slug, title and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// `400`: the request itself is wrong.
    BadRequest,
    /// `401`: missing, malformed, expired or revoked credentials.
    Unauthorized,
    /// `404`: nothing here.
    NotFound,
    /// `405`: the path exists, the method does not.
    MethodNotAllowed,
    /// `409`: a new API key collided with an existing one.
    KeyConflict,
    /// `413`: the body is larger than this endpoint accepts.
    PayloadTooLarge,
    /// `429`: a limit refused the request.
    RateLimited,
    /// `500`: the Worker's configuration is invalid (the detail names the field).
    InvalidConfig,
    /// `502`: the origin could not be reached or failed.
    OriginUnreachable,
    /// `502`: Redis answered something that is not what was asked for.
    RedisReply,
    /// `503`: Redis is unreachable and the route fails closed.
    LimiterUnavailable,
    /// `503`: the API-key registry cannot be read.
    KeyRegistryUnavailable,
    /// `503`: the operation needs Redis and Tollgate runs in memory mode.
    RedisRequired,
    /// `503`: the operation could not reach Redis.
    RedisUnavailable,
    /// `503`: no JWT key set could be fetched yet, so a token cannot be checked.
    SigningKeysUnavailable,
    /// `504`: the origin did not answer in time.
    OriginTimeout,
}

impl ProblemKind {
    /// The stable slug appended to [`TYPE_BASE`].
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::BadRequest => "bad-request",
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::NotFound => "not-found",
            ProblemKind::MethodNotAllowed => "method-not-allowed",
            ProblemKind::KeyConflict => "key-conflict",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::RateLimited => "rate-limited",
            ProblemKind::InvalidConfig => "invalid-config",
            ProblemKind::OriginUnreachable => "origin-unreachable",
            ProblemKind::RedisReply => "redis-reply",
            ProblemKind::LimiterUnavailable => "limiter-unavailable",
            ProblemKind::KeyRegistryUnavailable => "key-registry-unavailable",
            ProblemKind::RedisRequired => "redis-required",
            ProblemKind::RedisUnavailable => "redis-unavailable",
            ProblemKind::SigningKeysUnavailable => "signing-keys-unavailable",
            ProblemKind::OriginTimeout => "origin-timeout",
        }
    }

    /// The short summary, the same for every occurrence.
    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::BadRequest => "Bad request",
            ProblemKind::Unauthorized => "Unauthorized",
            ProblemKind::NotFound => "Not found",
            ProblemKind::MethodNotAllowed => "Method not allowed",
            ProblemKind::KeyConflict => "Key not created",
            ProblemKind::PayloadTooLarge => "Payload too large",
            ProblemKind::RateLimited => "Too Many Requests",
            ProblemKind::InvalidConfig => "Invalid Tollgate configuration",
            ProblemKind::OriginUnreachable => "Origin unreachable",
            ProblemKind::RedisReply => "Unexpected Redis reply",
            ProblemKind::LimiterUnavailable => "Rate limiter unavailable",
            ProblemKind::KeyRegistryUnavailable => "API key registry unavailable",
            ProblemKind::RedisRequired => "Redis required",
            ProblemKind::RedisUnavailable => "Redis unavailable",
            ProblemKind::SigningKeysUnavailable => "Signing keys unavailable",
            ProblemKind::OriginTimeout => "Origin timed out",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ProblemKind::BadRequest => 400,
            ProblemKind::Unauthorized => 401,
            ProblemKind::NotFound => 404,
            ProblemKind::MethodNotAllowed => 405,
            ProblemKind::KeyConflict => 409,
            ProblemKind::PayloadTooLarge => 413,
            ProblemKind::RateLimited => 429,
            ProblemKind::InvalidConfig => 500,
            ProblemKind::OriginUnreachable | ProblemKind::RedisReply => 502,
            ProblemKind::LimiterUnavailable
            | ProblemKind::KeyRegistryUnavailable
            | ProblemKind::RedisRequired
            | ProblemKind::RedisUnavailable
            | ProblemKind::SigningKeysUnavailable => 503,
            ProblemKind::OriginTimeout => 504,
        }
    }
}

/// A problem to answer with: its kind, a detail, extra members and extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// Extension members.
    pub extra: Map<String, Value>,
    /// Headers the response carries besides the problem's own (`retry-after`).
    pub headers: Vec<(&'static str, String)>,
}

impl Problem {
    /// A problem of `kind`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), extra: Map::new(), headers: Vec::new() }
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The `application/problem+json` response.
    pub fn to_response(&self) -> EdgeResponse {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("{TYPE_BASE}{}", self.kind.slug())));
        body.insert("title".into(), json!(self.kind.title()));
        body.insert("status".into(), json!(self.status()));
        body.insert("detail".into(), json!(self.detail));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        let mut resp = EdgeResponse::new(self.status())
            .with_header("content-type", "application/problem+json")
            .with_header("cache-control", "no-store")
            .with_body(bytes);
        for (name, value) in &self.headers {
            resp.set_header(name, value.clone());
        }
        resp
    }

    /// `400`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::BadRequest, detail)
    }

    /// `401`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unauthorized, detail)
    }

    /// `404`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::NotFound, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_problem_json_with_type_title_status_detail() {
        let r = Problem::new(ProblemKind::OriginUnreachable, "connection refused")
            .with("route", "echo")
            .with_header("retry-after", "5")
            .to_response();
        assert_eq!(r.status, 502);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("retry-after"), Some("5"));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["type"], "https://tollgate.dev/problems/origin-unreachable");
        assert_eq!(v["status"], 502);
        assert_eq!(v["detail"], "connection refused");
        assert_eq!(v["route"], "echo");
    }

    #[test]
    fn every_kind_has_a_distinct_slug_and_an_error_status() {
        use ProblemKind::*;
        let all = [
            BadRequest,
            Unauthorized,
            NotFound,
            MethodNotAllowed,
            KeyConflict,
            PayloadTooLarge,
            RateLimited,
            InvalidConfig,
            OriginUnreachable,
            RedisReply,
            LimiterUnavailable,
            KeyRegistryUnavailable,
            RedisRequired,
            RedisUnavailable,
            SigningKeysUnavailable,
            OriginTimeout,
        ];
        let slugs: std::collections::HashSet<_> = all.iter().map(|k| k.slug()).collect();
        assert_eq!(slugs.len(), all.len());
        assert!(all.iter().all(|k| (400..600).contains(&k.status())));
    }
}
