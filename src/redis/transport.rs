//! The one outside dependency of the client: POSTing a JSON body to the REST server, with a deadline.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use super::budget::{BudgetConfig, RttBudget};
use super::RedisError;

/// The request header that asks for base64 strings in replies (docs/upstash-rest-protocol.md §6).
pub(super) const ENCODING_HEADER: &str = "Upstash-Encoding";
/// The read-your-writes token, sent back as last seen (docs/upstash-rest-protocol.md §8).
pub(super) const SYNC_TOKEN_HEADER: &str = "Upstash-Sync-Token";
/// The longest timeout: reqwest on wasm32 hands it to `setTimeout` as an `i32` and panics above.
pub(super) const MAX_TIMEOUT_MS: u32 = i32::MAX as u32;

/// An HTTP answer as the client needs it: status, raw body and the server's sync token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The HTTP status code.
    pub status: u16,
    /// The raw response body.
    pub body: Vec<u8>,
    /// The `Upstash-Sync-Token` response header, when present.
    pub sync_token: Option<String>,
}

/// POSTs a JSON body to `/`, `/pipeline` or `/multi-exec` of a REST server and returns its answer.
///
/// Implementations apply their own timeout (a call must never hang on a slow Redis) and map a
/// timeout to [`RedisError::Timeout`] and a failed connection to [`RedisError::Transport`]. The
/// futures need not be `Send`: in a Worker they wrap JS promises.
// `async fn` in a public trait cannot promise `Send`; that is the point here (JS futures are !Send).
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends `body` to `path` with the last seen sync token, if any.
    async fn post(&self, path: &str, body: String, sync_token: Option<String>) -> Result<HttpReply, RedisError>;

    /// Like [`Transport::post`], for a call whose timeout costs more than its wait (an API-key
    /// lookup, whose failure demotes a caller): it may take up to the budget's ceiling.
    async fn post_patient(
        &self,
        path: &str,
        body: String,
        sync_token: Option<String>,
    ) -> Result<HttpReply, RedisError> {
        self.post(path, body, sync_token).await
    }
}

impl<T: Transport + ?Sized> Transport for &T {
    async fn post(&self, path: &str, body: String, sync_token: Option<String>) -> Result<HttpReply, RedisError> {
        (**self).post(path, body, sync_token).await
    }

    async fn post_patient(
        &self,
        path: &str,
        body: String,
        sync_token: Option<String>,
    ) -> Result<HttpReply, RedisError> {
        (**self).post_patient(path, body, sync_token).await
    }
}

impl<T: Transport + ?Sized> Transport for Rc<T> {
    async fn post(&self, path: &str, body: String, sync_token: Option<String>) -> Result<HttpReply, RedisError> {
        (**self).post(path, body, sync_token).await
    }

    async fn post_patient(
        &self,
        path: &str,
        body: String,
        sync_token: Option<String>,
    ) -> Result<HttpReply, RedisError> {
        (**self).post_patient(path, body, sync_token).await
    }
}

/// The production transport on `reqwest`: `fetch` under workerd, hyper over HTTP/1 natively.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    http: reqwest::Client,
    base_url: String,
    authorization: HeaderValue,
    budget: Budget,
}

/// A transport's time budget per request (see [`super::budget`]), with the round trips that
/// feed it. Clones share it.
#[derive(Debug, Clone)]
pub(super) struct Budget {
    shared: Rc<RefCell<RttBudget>>,
}

impl Budget {
    /// A budget by `config`.
    pub(super) fn new(config: BudgetConfig) -> Self {
        Self { shared: Rc::new(RefCell::new(RttBudget::new(config))) }
    }

    /// The budget of the next request, ms (kept within 1..=`i32::MAX`).
    pub(super) fn next_ms(&self) -> u32 {
        self.shared.borrow().next_ms().clamp(1, MAX_TIMEOUT_MS)
    }

    /// Notes a request that completed after `rtt_ms`.
    pub(super) fn completed(&self, rtt_ms: u64) {
        let mut budget = self.shared.borrow_mut();
        budget.observe(rtt_ms);
        budget.completed_at(now_ms());
    }

    /// Notes a request that got an answer, successful or not (Redis is making progress).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(super) fn answered(&self) {
        self.shared.borrow_mut().completed_at(now_ms());
    }

    /// How much longer a request started at `started_ms` may wait, or `None` when it ran out;
    /// a `patient` one may wait up to the ceiling after its start.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(super) fn wait_ms(&self, started_ms: u64, patient: bool) -> Option<u32> {
        let budget = self.shared.borrow();
        let now = now_ms();
        if patient {
            let left = started_ms.saturating_add(u64::from(budget.ceiling_ms())).checked_sub(now)?;
            return u32::try_from(left).ok().filter(|&ms| ms > 0);
        }
        budget.wait_ms(started_ms, now)
    }

    /// Notes a request that ran out of its budget.
    pub(super) fn timed_out(&self) {
        self.shared.borrow_mut().timed_out();
    }
}

/// Milliseconds on the system clock, for round-trip times.
pub(super) fn now_ms() -> u64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

impl ReqwestTransport {
    /// A transport to the REST server at `base_url` (`http://` or `https://`), authenticating with
    /// `token`, giving every request at most `timeout_ms` milliseconds (kept within 1..=`i32::MAX`).
    pub fn new(base_url: &str, token: &str, timeout_ms: u32) -> Result<Self, RedisError> {
        Self::with_budget(base_url, token, BudgetConfig::fixed(timeout_ms))
    }

    /// Like [`ReqwestTransport::new`], with a budget by `budget` (adaptive or fixed).
    pub fn with_budget(base_url: &str, token: &str, budget: BudgetConfig) -> Result<Self, RedisError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(trimmed).map_err(|e| RedisError::Transport(format!("invalid REST URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(RedisError::Transport("invalid REST URL: expected http(s)://host".to_owned()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| RedisError::Transport("invalid REST token: not a valid header value".to_owned()))?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| RedisError::Transport(format!("cannot build HTTP client: {}", error_chain(&e))))?;
        Ok(Self { http, base_url: trimmed.to_owned(), authorization, budget: Budget::new(budget) })
    }

    /// The time budget of the next request, ms.
    pub fn timeout_ms(&self) -> u32 {
        self.budget.next_ms()
    }

    /// The base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn failed(&self, e: &reqwest::Error, budget_ms: u32) -> RedisError {
        if is_timeout(e) {
            self.budget.timed_out();
            RedisError::Timeout(budget_ms)
        } else {
            RedisError::Transport(error_chain(e))
        }
    }
}

impl Transport for ReqwestTransport {
    async fn post(&self, path: &str, body: String, sync_token: Option<String>) -> Result<HttpReply, RedisError> {
        let url = format!("{}{}", self.base_url, path);
        let budget_ms = self.budget.next_ms();
        let started = now_ms();
        let mut request = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ENCODING_HEADER, "base64")
            .timeout(Duration::from_millis(u64::from(budget_ms)))
            .body(body);
        // A token the server sent is a valid header value; anything else is dropped, not sent.
        if let Some(value) = sync_token.and_then(|t| HeaderValue::from_str(&t).ok()) {
            request = request.header(SYNC_TOKEN_HEADER, value);
        }
        let response = request.send().await.map_err(|e| self.failed(&e, budget_ms))?;
        let status = response.status().as_u16();
        let sync_token = response.headers().get(SYNC_TOKEN_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // The deadline covers the body too: natively `timeout` is total, on wasm32 the abort
        // signal stays armed while the response is alive.
        let body = response.bytes().await.map_err(|e| self.failed(&e, budget_ms))?.to_vec();
        self.budget.completed(now_ms().saturating_sub(started));
        Ok(HttpReply { status, body, sync_token })
    }
}

/// Whether a reqwest error is its deadline firing; on wasm32 a body read aborted by the deadline
/// surfaces only as the abort reason's text.
fn is_timeout(e: &reqwest::Error) -> bool {
    e.is_timeout() || (cfg!(target_arch = "wasm32") && error_chain(e).contains("reqwest::errors::TimedOut"))
}

/// The error and its sources on one line (reqwest's top-level message alone says little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Serves one HTTP/1.1 request with `response` and returns the request as text.
    async fn serve_once(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= head_end + 4 + length {
                        break;
                    }
                }
                assert!(n > 0, "client closed early");
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn rejects_urls_that_are_not_http() {
        for url in ["", "redis://127.0.0.1:6379", "127.0.0.1:8079", "http://", "not a url"] {
            assert!(matches!(ReqwestTransport::new(url, "t", 100), Err(RedisError::Transport(_))), "{url}");
        }
    }

    #[test]
    fn rejects_a_token_that_cannot_be_a_header() {
        assert!(ReqwestTransport::new("http://127.0.0.1:1", "a\nb", 100).is_err());
    }

    #[test]
    fn trims_a_trailing_slash_and_keeps_the_timeout_in_range() {
        let t = ReqwestTransport::new("https://example.upstash.io/", "t", 0).unwrap();
        assert_eq!(t.base_url(), "https://example.upstash.io");
        assert_eq!(t.timeout_ms(), 1);
        let t = ReqwestTransport::new("http://127.0.0.1:1", "t", u32::MAX).unwrap();
        assert_eq!(t.timeout_ms(), i32::MAX as u32);
    }

    #[tokio::test]
    async fn sends_the_protocol_headers_and_reads_status_body_and_sync_token() {
        let (url, server) = serve_once(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nUpstash-Sync-Token: s-2\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"error\":\"ERR\"}\n",
        )
        .await;
        let transport = ReqwestTransport::new(&format!("{url}/"), "secret", 5_000).unwrap();
        let reply = transport.post("/pipeline", "[[\"PING\"]]".to_owned(), Some("s-1".to_owned())).await.unwrap();
        assert_eq!(
            reply,
            HttpReply { status: 400, body: b"{\"error\":\"ERR\"}\n".to_vec(), sync_token: Some("s-2".to_owned()) }
        );
        let request = server.await.unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(request.starts_with("POST /pipeline HTTP/1.1\r\n"), "{request}");
        assert!(lower.contains("\r\nauthorization: bearer secret\r\n"), "{request}");
        assert!(lower.contains("\r\ncontent-type: application/json\r\n"), "{request}");
        assert!(lower.contains("\r\nupstash-encoding: base64\r\n"), "{request}");
        assert!(lower.contains("\r\nupstash-sync-token: s-1\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n[[\"PING\"]]"), "{request}");
    }

    #[tokio::test]
    async fn sends_no_sync_token_before_one_is_known() {
        let (url, server) =
            serve_once("HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"result\":\"OK\"}").await;
        let transport = ReqwestTransport::new(&url, "t", 5_000).unwrap();
        let reply = transport.post("/", "[\"PING\"]".to_owned(), None).await.unwrap();
        assert_eq!(reply.sync_token, None);
        assert!(!server.await.unwrap().to_ascii_lowercase().contains("upstash-sync-token"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let transport = ReqwestTransport::new(&url, "t", 5_000).unwrap();
        let got = transport.post("/", "[]".to_owned(), None).await;
        assert!(matches!(got, Err(RedisError::Transport(_))), "{got:?}");
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Answers a head and the start of a body, then holds the connection.
        let holder = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"result\"";
            socket.write_all(head.as_bytes()).await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let transport = ReqwestTransport::new(&url, "t", 50).unwrap();
        let got = transport.post("/", "[\"PING\"]".to_owned(), None).await;
        assert_eq!(got, Err(RedisError::Timeout(50)));
        holder.abort();
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Accepts and holds the connection without ever answering.
        let holder = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let transport = ReqwestTransport::new(&url, "t", 50).unwrap();
        assert_eq!(transport.post("/", "[\"PING\"]".to_owned(), None).await, Err(RedisError::Timeout(50)));
        holder.abort();
    }

    #[tokio::test]
    async fn an_adaptive_budget_waits_for_a_slow_but_steady_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Answers every request after 150 ms: slow, but normal for this server.
        let server = tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                    let answer =
                        "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"result\":\"OK\"}";
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        let budget = BudgetConfig { fixed_ms: None, floor_ms: 100, ceiling_ms: 2_000 };
        let transport = ReqwestTransport::with_budget(&url, "t", budget).unwrap();
        for _ in 0..4 {
            let got = transport.post("/", "[\"PING\"]".to_owned(), None).await;
            assert_eq!(got.map(|r| r.status), Ok(200), "a 150 ms server is never timed out");
        }
        assert!(transport.timeout_ms() >= 450, "the budget sits above the observed round trip");
        let fixed = ReqwestTransport::new(&url, "t", 50).unwrap();
        assert_eq!(fixed.post("/", "[\"PING\"]".to_owned(), None).await, Err(RedisError::Timeout(50)));
        server.abort();
    }
}
