//! Responses: JSON documents and RFC 9457 problem details.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// The response type of every handler.
pub type OriginResponse = Response<Full<Bytes>>;

/// A JSON response with `Content-Type: application/json`.
pub fn json_response(status: StatusCode, body: &Value) -> OriginResponse {
    with_body(status, "application/json", body.to_string())
}

/// An `application/problem+json` response: `{"type", "title", "status", "detail"}`.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> OriginResponse {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    with_body(status, "application/problem+json", body.to_string())
}

/// A response with no body.
pub fn empty(status: StatusCode) -> OriginResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn with_body(status: StatusCode, content_type: &'static str, body: String) -> OriginResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
