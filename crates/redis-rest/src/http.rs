//! HTTP routing: health (no token), then auth, then the method check, then `/`, `/pipeline`,
//! `/multi-exec`, `/subscribe/…`, `/psubscribe/…`, `/_rest/*` and the path form.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{watch, Mutex, Semaphore};

use crate::args::{self, ArgsError, MAX_BODY_BYTES};
use crate::config::{Config, Token};
use crate::encode::{self, Encoding};
use crate::error::BackendError;
use crate::execute::{Entry, Gateway, SingleError, TxError};
use crate::pool::Pool;
use crate::readonly::ReadOnlyCalls;
use crate::resp::{self, Reply};
use crate::response::{self as respond, Answer, Body, SyncTokens};
use crate::stats::Endpoint;
use crate::subscribe::{self, OpenError, Subscriptions};

/// Oversized bodies are still read (and discarded) up to this many bytes, so the client gets
/// the 400 instead of a reset connection while it is still sending.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// A healthy probe is reused this long: `/health` needs no token, so it must not be a way to
/// make Redis work.
const HEALTH_REUSE: Duration = Duration::from_millis(500);
/// Longest time a client may take to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of the server.
#[derive(Debug)]
pub struct App {
    gateway: Gateway,
    subscriptions: Subscriptions,
    connections: Connections,
    token: Token,
    verbose: bool,
    sync_tokens: SyncTokens,
    health: Mutex<Option<Probe>>,
    /// `Keep-Alive: timeout=N`: tells clients when an idle connection will be closed (the
    /// header timeout), so that they stop reusing it first.
    keep_alive: Option<http::HeaderValue>,
}

/// The last `/health` probe: when it finished and what it found.
#[derive(Debug, Clone)]
struct Probe {
    at: Instant,
    outcome: Result<(), String>,
}

/// The bound on open HTTP connections, shared with the accept loop.
#[derive(Debug, Clone)]
pub struct Connections {
    pub slots: Arc<Semaphore>,
    pub max: usize,
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max)), max }
    }

    pub fn open_now(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }
}

/// Response body format asked for by `Upstash-Response-Format` (`docs/upstash-rest-protocol.md` §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Resp2,
}

impl App {
    /// Needs a Tokio runtime. `shutdown` turns true when the server stops (open event streams
    /// end then).
    pub fn new(config: &Config, connections: Connections, shutdown: watch::Receiver<bool>) -> Self {
        let (connect, command) = (config.connect_timeout(), config.command_timeout());
        let pool = Pool::new(config.redis.clone(), config.pool_size.get(), connect, command);
        let readonly = ReadOnlyCalls::new(&config.redis, connect, command);
        let keepalive = config.sse_keepalive();
        let settings = subscribe::Settings {
            target: config.redis.clone(),
            connect_timeout: connect,
            command_timeout: command,
            keepalive,
        };
        Self {
            gateway: Gateway::new(pool, readonly),
            subscriptions: Subscriptions::new(settings, config.max_subscriptions.get(), shutdown),
            connections,
            token: config.token.clone(),
            verbose: config.verbose,
            sync_tokens: SyncTokens::new(),
            health: Mutex::new(None),
            keep_alive: http::HeaderValue::from_str(&format!("timeout={}", config.header_timeout().as_secs())).ok(),
        }
    }
}

/// What a route produced: an answer to render, or an open event stream.
enum Outcome {
    Answer(Answer),
    Stream(subscribe::EventBody),
}

/// The hyper service function.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = app.verbose.then(|| req.uri().path().to_owned());
    let (outcome, counted) = route(&app, req).await;
    let (status, response) = match outcome {
        Outcome::Answer(answer) => {
            if counted {
                app.gateway.stats().count_errors(answer.errors);
            }
            (answer.status, answer.into_response(&app.sync_tokens))
        }
        Outcome::Stream(body) => (StatusCode::OK, respond::event_stream(body, &app.sync_tokens)),
    };
    let mut response = response;
    if let Some(v) = &app.keep_alive {
        response.headers_mut().insert("keep-alive", v.clone());
    }
    if let Some(path) = path {
        // The query is left out: it may carry `_token`.
        eprintln!("{method} {path} -> {} ({} us)", status.as_u16(), started.elapsed().as_micros());
    }
    Ok(response)
}

/// Returns the outcome and whether it counts in the stats.
async fn route(app: &App, req: Request<Incoming>) -> (Outcome, bool) {
    let path = req.uri().path();
    if path == "/health" {
        return (Outcome::Answer(health(app, req.method()).await), false);
    }
    if path == "/_rest" || path.starts_with("/_rest/") {
        if !authorized(&app.token, &req) {
            return (Outcome::Answer(Answer::unauthorized()), false);
        }
        return (Outcome::Answer(admin(app, &req)), false);
    }
    if let Some(parsed) = subscribe::parse_path(path) {
        // Not a command endpoint: counted in `/_rest/levels`, not in the request counters.
        return (subscription(app, parsed, req).await, false);
    }
    let endpoint = match path {
        "/" => Endpoint::Single,
        "/pipeline" => Endpoint::Pipeline,
        "/multi-exec" => Endpoint::MultiExec,
        _ => Endpoint::Path,
    };
    app.gateway.stats().count_request(endpoint);
    (Outcome::Answer(upstash(app, endpoint, req).await), true)
}

/// `GET`/`POST /subscribe/…` and `/psubscribe/…`: auth, method, the names, a free slot, the
/// Redis subscription confirmed; then the stream.
async fn subscription(
    app: &App,
    parsed: Result<subscribe::Request, subscribe::PathError>,
    req: Request<Incoming>,
) -> Outcome {
    if !authorized(&app.token, &req) {
        return Outcome::Answer(Answer::unauthorized());
    }
    let method = req.method().clone();
    if method != Method::GET && method != Method::POST {
        return Outcome::Answer(Answer::method_not_allowed("GET, POST"));
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return Outcome::Answer(Answer::error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    // The official client POSTs `[]`; whatever the body, it is read and ignored.
    if method == Method::POST {
        if let Err(e) = read_body(req).await {
            return Outcome::Answer(bad_request(&e));
        }
    }
    match app.subscriptions.open(parsed).await {
        Ok(body) => Outcome::Stream(body),
        Err(e @ OpenError::TooMany(_)) => Outcome::Answer(Answer::error(StatusCode::TOO_MANY_REQUESTS, &e.to_string())),
        Err(OpenError::Refused(msg)) => Outcome::Answer(Answer::error(StatusCode::BAD_REQUEST, &msg)),
        Err(OpenError::Backend(e)) => Outcome::Answer(unavailable(&e)),
    }
}

async fn upstash(app: &App, endpoint: Endpoint, req: Request<Incoming>) -> Answer {
    if !authorized(&app.token, &req) {
        return Answer::unauthorized();
    }
    let method = req.method().clone();
    let has_body = method == Method::POST || method == Method::PUT;
    if !(has_body || method == Method::GET || method == Method::HEAD) {
        return Answer::method_not_allowed("GET, HEAD, POST, PUT");
    }
    let enc = Encoding::from_header(header(req.headers(), "upstash-encoding"));
    let format = if endpoint == Endpoint::MultiExec {
        Format::Json
    } else {
        match response_format(req.headers(), enc) {
            Ok(f) => f,
            Err(msg) => return Answer::error(StatusCode::BAD_REQUEST, msg),
        }
    };
    match endpoint {
        Endpoint::Single if !has_body => welcome(),
        Endpoint::Pipeline | Endpoint::MultiExec if !has_body => Answer::method_not_allowed("POST, PUT"),
        Endpoint::Single => match read_body(req).await.and_then(|b| args::parse_command(&b)) {
            Ok(cmd) => single(app, cmd, enc, format).await,
            Err(e) => bad_request(&e),
        },
        Endpoint::Pipeline => match read_body(req).await.and_then(|b| args::parse_batch(&b)) {
            Ok(cmds) => pipeline(app, cmds, enc, format).await,
            Err(e) => bad_request(&e),
        },
        Endpoint::MultiExec => match read_body(req).await.and_then(|b| args::parse_batch(&b)) {
            Ok(cmds) => multi_exec(app, cmds, enc).await,
            Err(e) => bad_request(&e),
        },
        Endpoint::Path => {
            let path = req.uri().path().to_owned();
            let query = req.uri().query().map(str::to_owned);
            let body = if has_body {
                match read_body(req).await {
                    Ok(b) => Some(b),
                    Err(e) => return bad_request(&e),
                }
            } else {
                None
            };
            match args::parse_path(&path, query.as_deref(), body) {
                Ok(cmd) => single(app, cmd, enc, format).await,
                Err(e) => bad_request(&e),
            }
        }
    }
}

async fn single(app: &App, cmd: crate::command::Command, enc: Encoding, format: Format) -> Answer {
    match app.gateway.single(cmd).await {
        Ok(reply) => {
            let status = if reply.is_error() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
            let errors = u64::from(reply.is_error());
            match format {
                Format::Json => {
                    let mut body = String::with_capacity(64);
                    encode::write_entry(&mut body, &reply, enc);
                    Answer::json(status, body, errors)
                }
                Format::Resp2 => {
                    let mut body = Vec::with_capacity(64);
                    resp::write_reply(&mut body, &reply);
                    Answer::raw(status, body, errors)
                }
            }
        }
        Err(SingleError::Denied(d)) => Answer::error(StatusCode::BAD_REQUEST, &d.to_string()),
        Err(SingleError::Backend(e)) => unavailable(&e),
    }
}

async fn pipeline(app: &App, cmds: Vec<crate::command::Command>, enc: Encoding, format: Format) -> Answer {
    let entries = match app.gateway.pipeline(cmds).await {
        Ok(entries) => entries,
        Err(e) => return unavailable(&e),
    };
    let mut errors = 0;
    match format {
        Format::Json => {
            let mut body = String::with_capacity(32 * entries.len());
            body.push('[');
            for (i, entry) in entries.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                match entry {
                    Entry::Reply(r) => errors += u64::from(encode::write_entry(&mut body, r, enc)),
                    Entry::Denied(d) => {
                        encode::write_error(&mut body, &d.to_string());
                        errors += 1;
                    }
                }
            }
            body.push(']');
            Answer::json(StatusCode::OK, body, errors)
        }
        Format::Resp2 => {
            let mut body = Vec::with_capacity(32 * entries.len());
            for entry in entries {
                let reply = match entry {
                    Entry::Reply(r) => r,
                    Entry::Denied(d) => Reply::Error(Bytes::from(d.to_string())),
                };
                errors += u64::from(reply.is_error());
                resp::write_reply(&mut body, &reply);
            }
            Answer::raw(StatusCode::OK, body, errors)
        }
    }
}

async fn multi_exec(app: &App, cmds: Vec<crate::command::Command>, enc: Encoding) -> Answer {
    match app.gateway.multi_exec(cmds).await {
        Ok(results) => {
            let mut errors = 0;
            let mut body = String::with_capacity(32 * results.len());
            body.push('[');
            for (i, r) in results.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                errors += u64::from(encode::write_entry(&mut body, r, enc));
            }
            body.push(']');
            Answer::json(StatusCode::OK, body, errors)
        }
        Err(TxError::Discarded(msg)) => Answer::error(StatusCode::BAD_REQUEST, &msg),
        Err(TxError::Backend(e)) => unavailable(&e),
    }
}

async fn health(app: &App, method: &Method) -> Answer {
    if method != Method::GET && method != Method::HEAD {
        return Answer::method_not_allowed("GET, HEAD");
    }
    match probe(app).await {
        Ok(()) => Answer::json(StatusCode::OK, r#"{"status":"ok","redis":"up"}"#.to_owned(), 0),
        Err(e) => {
            let mut body = String::from(r#"{"status":"error","redis":"down","error":"#);
            encode::write_str(&mut body, &format!("ERR redis unavailable: {e}"));
            body.push('}');
            Answer::json(StatusCode::SERVICE_UNAVAILABLE, body, 1)
        }
    }
}

/// One PING at a time however many `/health` requests arrive: a caller that waited for
/// another's probe takes its outcome, and a healthy outcome is reused for [`HEALTH_REUSE`].
async fn probe(app: &App) -> Result<(), String> {
    let arrived = Instant::now();
    let mut last = app.health.lock().await;
    if let Some(p) = last.as_ref() {
        let fresh_ok = p.outcome.is_ok() && p.at.elapsed() < HEALTH_REUSE;
        if fresh_ok || p.at >= arrived {
            return p.outcome.clone();
        }
    }
    let outcome = app.gateway.ping(HEALTH_TIMEOUT).await.map_err(|e| e.to_string());
    *last = Some(Probe { at: Instant::now(), outcome: outcome.clone() });
    outcome
}

fn admin(app: &App, req: &Request<Incoming>) -> Answer {
    let stats = app.gateway.stats();
    match (req.uri().path(), req.method()) {
        ("/_rest/stats", &Method::GET | &Method::HEAD) => Answer::json(StatusCode::OK, stats.to_json(), 0),
        ("/_rest/levels", &Method::GET | &Method::HEAD) => Answer::json(StatusCode::OK, levels(app), 0),
        ("/_rest/levels", _) => Answer::method_not_allowed("GET, HEAD"),
        ("/_rest/stats", _) => Answer::method_not_allowed("GET, HEAD"),
        ("/_rest/stats/reset", &Method::POST) => {
            stats.reset();
            Answer::json(StatusCode::OK, r#"{"result":"OK"}"#.to_owned(), 0)
        }
        ("/_rest/stats/reset", _) => Answer::method_not_allowed("POST"),
        _ => Answer::not_found(),
    }
}

/// `{"connections":{"open":N,"max":N},"subscriptions":{"open":N,"opened":N}}`: levels at
/// this moment (never reset), `opened` counting streams since start.
fn levels(app: &App) -> String {
    format!(
        r#"{{"connections":{{"open":{},"max":{}}},"subscriptions":{{"open":{},"opened":{}}}}}"#,
        app.connections.open_now(),
        app.connections.max,
        app.subscriptions.open_now(),
        app.subscriptions.opened_total()
    )
}

fn welcome() -> Answer {
    Answer::json(StatusCode::OK, r#"{"result":"Welcome to redis-rest: POST [\"CMD\",arg,...] here"}"#.to_owned(), 0)
}

fn bad_request(e: &ArgsError) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, &e.to_string())
}

fn unavailable(e: &BackendError) -> Answer {
    let message = match e {
        BackendError::Protocol(_) => format!("ERR unreadable reply from redis: {e}"),
        _ => format!("ERR redis unavailable: {e}"),
    };
    Answer::error(StatusCode::BAD_GATEWAY, &message)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

/// The `Authorization` header wins when present (never falling back to `_token`); otherwise
/// the `_token` query parameter.
fn authorized(token: &Token, req: &Request<Incoming>) -> bool {
    if let Some(value) = header(req.headers(), "authorization") {
        return match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => token.matches(value[7..].trim_ascii()),
            _ => false,
        };
    }
    req.uri()
        .query()
        .into_iter()
        .flat_map(crate::percent::query_pairs)
        .any(|(k, v)| k == b"_token" && token.matches(&v))
}

fn response_format(headers: &HeaderMap, enc: Encoding) -> Result<Format, &'static str> {
    match header(headers, "upstash-response-format") {
        None => Ok(Format::Json),
        Some(v) if v.eq_ignore_ascii_case(b"json") => Ok(Format::Json),
        Some(v) if v.eq_ignore_ascii_case(b"resp2") => {
            if enc == Encoding::Base64 {
                Err("ERR Upstash-Response-Format: resp2 cannot be combined with Upstash-Encoding: base64")
            } else {
                Ok(Format::Resp2)
            }
        }
        Some(_) => Err("ERR invalid Upstash-Response-Format header: expected json or resp2"),
    }
}

/// Reads the whole body, at most [`MAX_BODY_BYTES`]. Larger bodies are drained (up to
/// [`DRAIN_LIMIT`]) and rejected with `ERR max request size exceeded`.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ArgsError> {
    let declared = header(req.headers(), "content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(ArgsError::TooLarge);
    }
    let mut body = req.into_body();
    let mut buf = BytesMut::with_capacity(declared.map(|n| n.min(MAX_BODY_BYTES as u64) as usize).unwrap_or(1024));
    let mut total: usize = 0;
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => return Err(ArgsError::BodyTimeout(BODY_TIMEOUT.as_secs())),
        };
        let frame = frame.map_err(|_| ArgsError::Json { offset: total, reason: "request body could not be read" })?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total > DRAIN_LIMIT {
                return Err(ArgsError::TooLarge);
            }
            if total <= MAX_BODY_BYTES {
                buf.extend_from_slice(&data);
            }
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ArgsError::TooLarge);
    }
    Ok(buf.freeze())
}
