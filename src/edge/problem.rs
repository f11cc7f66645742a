//! RFC 9457 problem details: the one place errors become HTTP responses, never leaking internals.

use serde_json::{json, Map, Value};

use super::http::EdgeResponse;

/// Base of the `type` URIs of Tollgate's problems.
pub const TYPE_BASE: &str = "https://tollgate.dev/problems/";

/// A problem to answer with: status, a stable type slug, a title, a detail, and extra members.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Stable slug appended to [`TYPE_BASE`] (`rate-limited`, `origin-unreachable`).
    pub kind: &'static str,
    /// Short summary, the same for every occurrence of the kind.
    pub title: &'static str,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// Extension members.
    pub extra: Map<String, Value>,
}

impl Problem {
    /// A problem without extension members.
    pub fn new(status: u16, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, title, detail: detail.into(), extra: Map::new() }
    }

    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// The `application/problem+json` response.
    pub fn to_response(&self) -> EdgeResponse {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("{TYPE_BASE}{}", self.kind)));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status));
        body.insert("detail".into(), json!(self.detail));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        EdgeResponse::new(self.status)
            .with_header("content-type", "application/problem+json")
            .with_header("cache-control", "no-store")
            .with_body(bytes)
    }

    /// `400`: the request itself is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad-request", "Bad request", detail)
    }

    /// `401`: missing, malformed, expired or revoked credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", "Unauthorized", detail)
    }

    /// `404`: nothing here.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }

    /// `405`: the path exists, the method does not.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(405, "method-not-allowed", "Method not allowed", detail)
    }

    /// `500`: the Worker's configuration is invalid (the detail names the field).
    pub fn invalid_config(detail: impl Into<String>) -> Self {
        Self::new(500, "invalid-config", "Invalid Tollgate configuration", detail)
    }

    /// `502`: the origin could not be reached or failed.
    pub fn origin_unreachable(detail: impl Into<String>) -> Self {
        Self::new(502, "origin-unreachable", "Origin unreachable", detail)
    }

    /// `504`: the origin did not answer in time.
    pub fn origin_timeout(detail: impl Into<String>) -> Self {
        Self::new(504, "origin-timeout", "Origin timed out", detail)
    }

    /// `503`: Redis is unreachable and the route fails closed.
    pub fn limiter_unavailable(route: &str) -> Self {
        Self::new(
            503,
            "limiter-unavailable",
            "Rate limiter unavailable",
            format!("the rate limiter cannot be reached and route \"{route}\" fails closed"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_problem_json_with_type_title_status_detail() {
        let r = Problem::origin_unreachable("connection refused").with("route", "echo").to_response();
        assert_eq!(r.status, 502);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["type"], "https://tollgate.dev/problems/origin-unreachable");
        assert_eq!(v["status"], 502);
        assert_eq!(v["detail"], "connection refused");
        assert_eq!(v["route"], "echo");
    }
}
