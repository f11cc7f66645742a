//! The admin API over blocking HTTP: one call per method, failures classified into [`CliError`]s
//! (unreachable, 401, an error status with its problem+json detail, an unreadable reply).

use std::io;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CliError;

/// The Worker's URL when neither `--url` nor `TOLLGATE_URL` says otherwise (`wrangler dev`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8787";

/// Prefix of every admin path.
pub const ADMIN_PREFIX: &str = "/_tollgate";

/// Largest reply body read, bytes.
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// An HTTP method the admin API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// A 2xx reply's body (`Value::Null` for an empty body such as `204`'s).
#[derive(Debug)]
pub struct Reply {
    pub body: Value,
}

impl Reply {
    /// The body as `T`, or a [`CliError::BadReply`] naming `path`.
    pub fn parse<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        serde_json::from_value(self.body.clone())
            .map_err(|e| CliError::BadReply { path: path.to_owned(), reason: e.to_string() })
    }
}

/// A client of one Worker's admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    timeout: Duration,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client for the Worker at `url` (`http://` or `https://`), sending `token` when given.
    pub fn new(url: &str, token: Option<String>, timeout: Duration) -> Result<Self, CliError> {
        let base = normalize_base(url)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("tollgate-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self { base, token: token.filter(|t| !t.is_empty()), timeout, agent: config.new_agent() })
    }

    /// The Worker's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// True when an admin token was configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Fails with a configuration error unless a token was configured.
    pub fn require_token(&self) -> Result<(), CliError> {
        if self.has_token() {
            Ok(())
        } else {
            Err(CliError::Config("no admin token: set TOLLGATE_ADMIN_TOKEN or pass --token".to_owned()))
        }
    }

    /// Calls `method path` (path under the base URL, e.g. `/_tollgate/stats`) and returns the reply
    /// whatever its status, or a network / reply error.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), CliError> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match method {
            Method::Get | Method::Delete => {
                let mut request = if method == Method::Get { self.agent.get(&url) } else { self.agent.delete(&url) };
                request = request.header("accept", "application/json");
                if let Some(auth) = &auth {
                    request = request.header("authorization", auth);
                }
                request.call()
            }
            Method::Post | Method::Put => {
                let mut request = if method == Method::Post { self.agent.post(&url) } else { self.agent.put(&url) };
                request = request.header("accept", "application/json").header("content-type", "application/json");
                if let Some(auth) = &auth {
                    request = request.header("authorization", auth);
                }
                let text = body.map_or_else(|| "{}".to_owned(), Value::to_string);
                request.send(text.as_str())
            }
        };
        let mut response = result.map_err(|e| self.network_error(e))?;
        let status = response.status().as_u16();
        let text =
            response.body_mut().with_config().limit(MAX_BODY).read_to_string().map_err(|e| self.network_error(e))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                // An error page that is not JSON still has a status worth reporting.
                Err(_) if !(200..300).contains(&status) => Value::String(text),
                Err(e) => return Err(CliError::BadReply { path: path.to_owned(), reason: format!("not JSON: {e}") }),
            }
        };
        Ok((status, value))
    }

    /// Calls `method path` and turns every non-2xx status into an error.
    pub fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, CliError> {
        let (status, body) = self.call(method, path, body)?;
        check_status(status, &body)?;
        Ok(Reply { body })
    }

    /// `GET path`, 2xx only.
    pub fn get(&self, path: &str) -> Result<Reply, CliError> {
        self.send(Method::Get, path, None)
    }

    /// Opens `GET path` as an event stream: connecting and the reply's head are bounded by the
    /// timeout, the stream itself is not. A non-2xx reply is an error like [`Self::send`]'s.
    pub fn open_stream(&self, path: &str) -> Result<ureq::BodyReader<'static>, CliError> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.timeout))
            .timeout_recv_response(Some(self.timeout))
            .user_agent(concat!("tollgate-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = config.new_agent();
        let mut request = agent.get(&format!("{}{path}", self.base)).header("accept", "text/event-stream");
        if let Some(token) = &self.token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| self.network_error(e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response.body_mut().with_config().limit(MAX_BODY).read_to_string().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            check_status(status, &body)?;
        }
        Ok(response.into_body().into_reader())
    }

    fn network_error(&self, e: ureq::Error) -> CliError {
        CliError::Network { base: self.base.clone(), reason: describe_transport_error(&e) }
    }
}

/// `Ok` for 2xx; [`CliError::Unauthorized`] for 401; otherwise [`CliError::Http`] with the
/// problem+json title and detail when the body has them.
pub fn check_status(status: u16, body: &Value) -> Result<(), CliError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    if status == 401 {
        return Err(CliError::Unauthorized);
    }
    let title =
        body.get("title").and_then(Value::as_str).map_or_else(|| reason_phrase(status).to_owned(), str::to_owned);
    let detail = match body {
        Value::String(text) => Some(first_line(text)),
        _ => body.get("detail").and_then(Value::as_str).map(first_line),
    };
    Err(CliError::Http { status, title, detail })
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        403 => "forbidden",
        404 => "not found",
        405 => "method not allowed",
        409 => "conflict",
        422 => "unprocessable content",
        429 => "too many requests",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "error",
    }
}

/// Checks that `url` is an absolute http(s) URL and strips trailing slashes.
pub fn normalize_base(url: &str) -> Result<String, CliError> {
    let url = url.trim();
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(url.trim_end_matches('/').to_owned()),
        _ => Err(CliError::Config(format!(
            "invalid URL {url:?}: expected http://host[:port] or https://host \
             (set TOLLGATE_URL or pass --url)"
        ))),
    }
}

/// A short reason for a failure to talk to the Worker (`connection refused`, `timed out`).
pub fn describe_transport_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => describe_io_error(io),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::BadUri(uri) => format!("invalid URL {uri}"),
        other => other.to_string(),
    }
}

/// A short reason for an I/O failure on the connection.
pub fn describe_io_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_owned(),
        io::ErrorKind::UnexpectedEof => "connection closed before a reply".to_owned(),
        _ => e.to_string(),
    }
}

/// Percent-encodes one path segment or query value: unreserved characters, `:` and `@` stay.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'@' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base_urls_must_be_http_or_https() {
        assert_eq!(normalize_base("http://127.0.0.1:8787/").unwrap(), "http://127.0.0.1:8787");
        assert_eq!(
            normalize_base("https://tollgate.example.workers.dev").unwrap(),
            "https://tollgate.example.workers.dev"
        );
        for bad in ["127.0.0.1:8787", "ftp://x", "http://", "https:///x", ""] {
            let err = normalize_base(bad).unwrap_err();
            assert!(matches!(err, CliError::Config(_)), "{bad:?}");
        }
    }

    #[test]
    fn statuses_become_the_right_errors() {
        assert!(check_status(200, &Value::Null).is_ok());
        assert!(check_status(204, &Value::Null).is_ok());
        assert!(matches!(check_status(401, &Value::Null), Err(CliError::Unauthorized)));
        let problem = json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no key with id x"});
        match check_status(404, &problem) {
            Err(CliError::Http { status: 404, title, detail }) => {
                assert_eq!(title, "Not Found");
                assert_eq!(detail.as_deref(), Some("no key with id x"));
            }
            other => panic!("{other:?}"),
        }
        match check_status(502, &Value::String("<html>\nbad gateway".into())) {
            Err(CliError::Http { status: 502, title, detail }) => {
                assert_eq!(title, "bad gateway");
                assert_eq!(detail.as_deref(), Some("<html>"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("user_123"), "user_123");
        assert_eq!(encode_component("ip:2001:db8::1"), "ip:2001:db8::1");
        assert_eq!(encode_component("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn io_errors_read_like_people_say_them() {
        assert_eq!(describe_io_error(&io::Error::from(io::ErrorKind::ConnectionRefused)), "connection refused");
        assert_eq!(describe_io_error(&io::Error::from(io::ErrorKind::TimedOut)), "timed out");
    }
}
