//! The origin as the cache sees it: one narrow async trait, so the Worker passes `fetch`, native
//! code passes `reqwest`, and tests pass a fake that counts its calls.

use std::rc::Rc;

use thiserror::Error;

/// A request to the origin, already rewritten for it (upstream path, forwarded headers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path and query at the origin (`/config/app`).
    pub path_and_query: String,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// Body to send (empty for `GET`).
    pub body: Vec<u8>,
}

impl OriginRequest {
    /// The request a cache fill sends: a `HEAD` becomes a `GET`, so the entry it stores holds
    /// the body every later `GET` is served (a `HEAD` is then answered from the entry).
    pub fn for_fill(mut self) -> Self {
        if self.method.eq_ignore_ascii_case("HEAD") {
            self.method = "GET".to_owned();
        }
        self
    }
}

/// What the origin answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, names as received.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl OriginResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why the origin gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OriginError {
    /// No answer within the time budget (the edge answers `504`).
    #[error("origin timed out")]
    Timeout,
    /// The request could not be made (the edge answers `502`).
    #[error("origin unreachable: {0}")]
    Unreachable(String),
}

/// Fetches from the origin. Futures need not be `Send` (in a Worker they wrap JS promises).
// `async fn` in a public trait cannot promise `Send`; that is the point here (JS futures are !Send).
#[allow(async_fn_in_trait)]
pub trait Origin {
    /// Sends `req` and returns the origin's answer, whatever its status.
    async fn fetch(&self, req: &OriginRequest) -> Result<OriginResponse, OriginError>;
}

impl<O: Origin + ?Sized> Origin for Rc<O> {
    async fn fetch(&self, req: &OriginRequest) -> Result<OriginResponse, OriginError> {
        (**self).fetch(req).await
    }
}

impl<O: Origin + ?Sized> Origin for &O {
    async fn fetch(&self, req: &OriginRequest) -> Result<OriginResponse, OriginError> {
        (**self).fetch(req).await
    }
}
