//! Every HTTP answer in one place: status, JSON (or RESP2) body, `Content-Type` and a fresh
//! `Upstash-Sync-Token` on every response, errors included (`docs/upstash-rest-protocol.md` §5, §8).

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::encode::write_error;
use crate::subscribe::EventBody;

/// A response body: a whole answer, or a subscription's event stream.
#[derive(Debug)]
pub enum Body {
    Full(Full<Bytes>),
    Events(EventBody),
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Pin::new(b).poll_frame(cx),
            Body::Events(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_end_stream(),
            Body::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => b.size_hint(),
            Body::Events(b) => b.size_hint(),
        }
    }
}

/// The `200 text/event-stream` response of an open subscription.
pub fn event_stream(body: EventBody, sync_token: &SyncTokens) -> Response<Body> {
    let mut resp = Response::new(Body::Events(body));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&sync_token.fresh()) {
        headers.insert("upstash-sync-token", v);
    }
    resp
}

pub const UNAUTHORIZED: &str = "WRONGPASS invalid or missing auth token";

/// What a handler decided; turned into an HTTP response by [`Answer::into_response`].
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: &'static str,
    /// Error objects in the body (whole-response error or failed entries), for the counters.
    pub errors: u64,
    pub allow: Option<&'static str>,
}

impl Answer {
    pub fn json(status: StatusCode, body: String, errors: u64) -> Self {
        Self { status, body: Bytes::from(body), content_type: "application/json", errors, allow: None }
    }

    pub fn raw(status: StatusCode, body: Vec<u8>, errors: u64) -> Self {
        Self { status, body: Bytes::from(body), content_type: "application/octet-stream", errors, allow: None }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: StatusCode, message: &str) -> Self {
        let mut body = String::with_capacity(message.len() + 12);
        write_error(&mut body, message);
        Self::json(status, body, 1)
    }

    pub fn unauthorized() -> Self {
        Self::error(StatusCode::UNAUTHORIZED, UNAUTHORIZED)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut a = Self::error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        a.allow = Some(allow);
        a
    }

    pub fn not_found() -> Self {
        Self::error(StatusCode::NOT_FOUND, "ERR not found")
    }

    pub fn into_response(self, sync_token: &SyncTokens) -> Response<Body> {
        let mut resp = Response::new(Body::Full(Full::new(self.body)));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Ok(v) = HeaderValue::from_str(&sync_token.fresh()) {
            headers.insert("upstash-sync-token", v);
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

/// Issues a different opaque `Upstash-Sync-Token` for every response: a per-process random
/// prefix plus a scrambled counter (a single-node server has nothing to synchronize).
#[derive(Debug)]
pub struct SyncTokens {
    seed: u64,
    counter: AtomicU64,
}

impl Default for SyncTokens {
    fn default() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
        );
        h.write_u32(std::process::id());
        Self { seed: h.finish(), counter: AtomicU64::new(0) }
    }
}

impl SyncTokens {
    pub fn new() -> Self {
        Self::default()
    }

    /// 32 lowercase hex digits, never repeated within a process.
    pub fn fresh(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:016x}", self.seed, splitmix64(n ^ self.seed))
    }
}

/// A bijection on u64, so distinct counters give distinct tokens.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_tokens_are_fresh_every_time() {
        let tokens = SyncTokens::new();
        let seen: std::collections::HashSet<String> = (0..10_000).map(|_| tokens.fresh()).collect();
        assert_eq!(seen.len(), 10_000);
        assert!(seen.iter().all(|t| t.len() == 32));
    }

    #[test]
    fn every_response_carries_content_type_and_a_sync_token() {
        let tokens = SyncTokens::new();
        let resp = Answer::unauthorized().into_response(&tokens);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()), Some(&b"application/json"[..]));
        assert!(resp.headers().contains_key("upstash-sync-token"));
    }
}
