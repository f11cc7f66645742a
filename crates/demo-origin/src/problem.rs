//! Responses: JSON documents and RFC 9457 problem details.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::chat::ChannelBody;

/// The response type of every handler.
pub type OriginResponse = Response<OriginBody>;

/// A response body: whole, or streamed from a task (server-sent events).
#[derive(Debug)]
pub enum OriginBody {
    /// The whole body at once.
    Full(Full<Bytes>),
    /// Frames as a producing task writes them.
    Stream(ChannelBody),
}

impl OriginBody {
    /// A whole body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        OriginBody::Full(Full::new(bytes.into()))
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            OriginBody::Full(full) => Pin::new(full).poll_frame(cx),
            OriginBody::Stream(stream) => Pin::new(stream).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OriginBody::Full(full) => full.is_end_stream(),
            OriginBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OriginBody::Full(full) => full.size_hint(),
            OriginBody::Stream(stream) => stream.size_hint(),
        }
    }
}

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
    let mut response = Response::new(OriginBody::full(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn with_body(status: StatusCode, content_type: &'static str, body: String) -> OriginResponse {
    let mut response = Response::new(OriginBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
