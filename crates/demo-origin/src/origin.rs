//! The origin itself: its shared state and the request handler.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::behaviour::{Behaviour, FailMode, DELAY_HEADER, FAIL_HEADER, TIMEOUT_HOLD};
use crate::chat::{sse_event, token_delay, ChannelBody, ChatRequest, ChatStats, TOKEN_DELAY_HEADER, USAGE_HEADER};
use crate::clock::unix_ms;
use crate::config_store::{ConfigEntry, ConfigStore};
use crate::echo::echo;
use crate::extra_headers;
use crate::hits::Hits;
use crate::problem::{empty, json_response, problem, OriginBody, OriginResponse};
use crate::rag::RagRequest;
use crate::route::{ConfigOp, Control, Route};
use crate::tokens::Tokens;

/// The largest request body read, in bytes; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// `Cache-Control` sent with every configuration document.
pub const CONFIG_CACHE_CONTROL: &str = "public, max-age=60";

/// The handler's way of saying "drop this connection without answering": hyper closes an
/// HTTP/1 connection, unanswered, when its service fails.
#[derive(Debug)]
pub struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

/// A request the origin refuses: the status and detail of its problem+json answer.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    detail: String,
}

impl Rejection {
    fn bad_request(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, detail: detail.into() }
    }

    fn into_response(self) -> OriginResponse {
        problem(self.status, self.detail)
    }
}

/// Everything `/_origin/reset` restores.
#[derive(Debug, Default)]
struct State {
    hits: Hits,
    configs: ConfigStore,
    settings: Behaviour,
}

/// The demo origin: counters, configuration documents and injected behaviour, shared by every
/// connection.
#[derive(Debug)]
pub struct Origin {
    state: Mutex<State>,
    /// The behaviour given at start; `/_origin/reset` returns to it.
    initial: Behaviour,
    /// Flips to `true` at shutdown, waking every delayed or held request.
    shutdown: watch::Sender<bool>,
    /// Counters of the chat completions.
    chat: Arc<ChatStats>,
    /// The stand-in auth provider's keys; `None` if they could not be made.
    tokens: Mutex<Option<Tokens>>,
}

impl Origin {
    /// A fresh origin whose global behaviour starts as `initial`.
    pub fn new(initial: Behaviour) -> Self {
        Self {
            state: Mutex::new(State { settings: initial, ..State::default() }),
            initial,
            shutdown: watch::Sender::new(false),
            chat: Arc::new(ChatStats::default()),
            tokens: Mutex::new(Tokens::new().ok()),
        }
    }

    /// Wakes every delayed or held request; they end by dropping their connection.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Answers one request; `Err` drops the connection unanswered.
    ///
    /// Counted requests are counted first, then delayed, then failed if asked, and only then
    /// is the body read and the route answered.
    pub async fn handle(&self, request: Request<Incoming>) -> Result<OriginResponse, DropConnection> {
        let route = Route::of(request.method(), request.uri().path());
        if route == Route::Chat {
            return self.chat(request).await;
        }
        let Some(kind) = route.kind() else {
            return Ok(self.control(route, request).await);
        };
        let global = {
            let mut state = self.lock();
            state.hits.record(kind, request.uri().path());
            state.settings
        };
        let behaviour = match global
            .overridden(header_text(request.headers(), DELAY_HEADER), header_text(request.headers(), FAIL_HEADER))
        {
            Ok(behaviour) => behaviour,
            Err(err) => return Ok(problem(StatusCode::BAD_REQUEST, err.to_string())),
        };
        if behaviour.delay_ms > 0 {
            self.pause(behaviour.delay()).await?;
        }
        match behaviour.fail {
            None => {}
            Some(FailMode::Close) => return Err(DropConnection),
            Some(FailMode::Status(code)) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return Ok(problem(status, format!("injected failure: status {code}")));
            }
            Some(FailMode::Timeout) => {
                self.pause(TIMEOUT_HOLD).await?;
                return Ok(problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "injected failure: the request was held until it timed out",
                ));
            }
        }
        let (parts, body) = request.into_parts();
        let query = parts.uri.query().map(str::to_owned);
        let answer = match read_body(body).await {
            Ok(body) => match route {
                Route::Config { name, op } => self.config(&name, op, &body),
                Route::Rag => rag(&body),
                _ => Ok(json_response(StatusCode::OK, &echo(&parts, &body))),
            },
            Err(rejection) => Err(rejection),
        };
        let mut response = answer.unwrap_or_else(Rejection::into_response);
        extra_headers::apply(query.as_deref(), response.headers_mut());
        Ok(response)
    }

    /// A chat completion (see [`crate::chat`]): buffered, or streamed from a task that stops
    /// when the client goes away or the origin shuts down.
    async fn chat(&self, request: Request<Incoming>) -> Result<OriginResponse, DropConnection> {
        let delay = match token_delay(header_text(request.headers(), TOKEN_DELAY_HEADER)) {
            Ok(d) => d,
            Err(message) => return Ok(problem(StatusCode::BAD_REQUEST, message)),
        };
        let body = match read_body(request.into_body()).await {
            Ok(b) => b,
            Err(rejection) => return Ok(rejection.into_response()),
        };
        let chat =
            match parse_json(&body).and_then(|v| ChatRequest::from_json(&v).map_err(|e| Rejection::bad_request(e.0))) {
                Ok(c) => c,
                Err(rejection) => return Ok(rejection.into_response()),
            };
        let in_flight = self.chat.begin();
        let created = unix_ms() / 1_000;
        let usage = HeaderValue::from(chat.total_tokens());
        if !chat.stream {
            self.pause(delay * chat.max_tokens).await?;
            let mut response = json_response(StatusCode::OK, &chat.completion(created));
            response.headers_mut().insert(USAGE_HEADER, usage);
            in_flight.finish(chat.total_tokens());
            return Ok(response);
        }
        let (tx, body) = ChannelBody::new();
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            for i in 0..chat.max_tokens {
                if !delay.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|down| *down) => return,
                    }
                }
                if tx.send(sse_event(&chat.chunk(i, created).to_string())).await.is_err() {
                    return;
                }
            }
            if tx.send(sse_event(&chat.usage_chunk(created).to_string())).await.is_err() {
                return;
            }
            if tx.send(sse_event("[DONE]")).await.is_err() {
                return;
            }
            in_flight.finish(chat.total_tokens());
        });
        let mut response = hyper::Response::new(OriginBody::Stream(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(USAGE_HEADER, usage);
        Ok(response)
    }

    fn config(&self, name: &str, op: ConfigOp, body: &[u8]) -> Result<OriginResponse, Rejection> {
        let entry = match op {
            ConfigOp::Get => {
                let entry = self.lock().configs.get(name);
                let mut response = json_response(StatusCode::OK, &config_document(name, entry));
                response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static(CONFIG_CACHE_CONTROL));
                return Ok(response);
            }
            ConfigOp::Delete => {
                self.lock().configs.delete(name);
                return Ok(empty(StatusCode::NO_CONTENT));
            }
            ConfigOp::Put => {
                let value = parse_json(body)?;
                self.lock().configs.put(name, value)
            }
            ConfigOp::Patch => {
                let patch = parse_json(body)?;
                self.lock().configs.patch(name, &patch)
            }
        };
        Ok(json_response(StatusCode::OK, &config_document(name, entry)))
    }

    async fn control(&self, route: Route, request: Request<Incoming>) -> OriginResponse {
        if route == Route::KeySet {
            return self.key_set();
        }
        let Route::Control(control) = route else {
            return problem(
                StatusCode::NOT_FOUND,
                "no such control endpoint; see /_origin/health, hits, reset, settings, chat, tokens, jwks",
            );
        };
        let method = request.method().clone();
        match (control, method) {
            (Control::Health, Method::GET | Method::HEAD) => json_response(StatusCode::OK, &json!({"status": "ok"})),
            (Control::Hits, Method::GET | Method::HEAD) => json_response(StatusCode::OK, &self.lock().hits.to_json()),
            (Control::Reset, Method::POST) => {
                *self.lock() = State { settings: self.initial, ..State::default() };
                self.chat.reset();
                if let Some(tokens) = self.tokens().as_mut() {
                    tokens.fetches = 0;
                    tokens.fail = None;
                }
                empty(StatusCode::NO_CONTENT)
            }
            (Control::Chat, Method::GET | Method::HEAD) => json_response(StatusCode::OK, &self.chat.to_json()),
            (Control::Jwks, Method::GET | Method::HEAD) => self.with_tokens(|t| Ok(t.status())),
            (Control::Tokens | Control::Jwks | Control::Rotate, Method::POST) => {
                let body = match read_body(request.into_body()).await.and_then(|b| parse_json(&b)) {
                    Ok(body) => body,
                    Err(rejection) => return rejection.into_response(),
                };
                self.with_tokens(|t| match control {
                    Control::Tokens => t.mint(&body, unix_ms() / 1000),
                    Control::Rotate => {
                        let alg = body.get("alg").and_then(Value::as_str).unwrap_or("ES256");
                        t.rotate(alg).map(|kid| json!({ "kid": kid }))
                    }
                    _ => t.update(&body).map(|()| t.status()),
                })
            }
            (Control::Settings, Method::GET | Method::HEAD) => {
                json_response(StatusCode::OK, &self.lock().settings.to_json())
            }
            (Control::Settings, Method::POST) => {
                self.update_settings(request.into_body()).await.unwrap_or_else(Rejection::into_response)
            }
            (control, _) => method_not_allowed(control),
        }
    }

    async fn update_settings(&self, body: Incoming) -> Result<OriginResponse, Rejection> {
        let update = parse_json(&read_body(body).await?)?;
        let mut state = self.lock();
        let settings = state.settings.updated(&update).map_err(|err| Rejection::bad_request(err.to_string()))?;
        state.settings = settings;
        Ok(json_response(StatusCode::OK, &settings.to_json()))
    }

    /// The key set, counted, with its cache lifetime; or the status of an outage on purpose.
    fn key_set(&self) -> OriginResponse {
        let mut guard = self.tokens();
        let Some(tokens) = guard.as_mut() else {
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "the signing keys could not be made");
        };
        tokens.fetches += 1;
        if let Some(code) = tokens.fail {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return problem(status, format!("injected failure: status {code}"));
        }
        let mut response = json_response(StatusCode::OK, &tokens.jwks());
        if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={}", tokens.max_age_s)) {
            response.headers_mut().insert(CACHE_CONTROL, value);
        }
        response
    }

    /// Runs `f` on the token state, answering its result as JSON or its error as 400.
    fn with_tokens(&self, f: impl FnOnce(&mut Tokens) -> Result<Value, crate::tokens::TokenError>) -> OriginResponse {
        match self.tokens().as_mut() {
            None => problem(StatusCode::INTERNAL_SERVER_ERROR, "the signing keys could not be made"),
            Some(tokens) => match f(tokens) {
                Ok(value) => json_response(StatusCode::OK, &value),
                Err(err) => problem(StatusCode::BAD_REQUEST, err.0),
            },
        }
    }

    fn tokens(&self) -> MutexGuard<'_, Option<Tokens>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `duration`, or fails at once when the origin shuts down.
    async fn pause(&self, duration: Duration) -> Result<(), DropConnection> {
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            _ = shutdown.wait_for(|down| *down) => Err(DropConnection),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; should something ever, keep serving the data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn config_document(name: &str, entry: ConfigEntry) -> Value {
    json!({
        "name": name,
        "version": entry.version,
        "value": entry.value,
        "served_at_ms": unix_ms(),
    })
}

fn rag(body: &[u8]) -> Result<OriginResponse, Rejection> {
    let request = RagRequest::from_json(&parse_json(body)?).map_err(|err| Rejection::bad_request(err.0))?;
    Ok(json_response(StatusCode::OK, &request.answer(unix_ms())))
}

fn method_not_allowed(control: Control) -> OriginResponse {
    let allow = match control {
        Control::Health | Control::Hits | Control::Chat => "GET, HEAD",
        Control::Reset => "POST",
        Control::Settings | Control::Jwks => "GET, HEAD, POST",
        Control::Tokens | Control::Rotate => "POST",
    };
    let mut response = problem(StatusCode::METHOD_NOT_ALLOWED, format!("this control endpoint takes {allow}"));
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// A header's value as text. A value that is not visible ASCII reads as text no parser accepts,
/// so a bad override is refused rather than ignored.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap_or("<not visible ASCII>"))
}

async fn read_body(body: Incoming) -> Result<Bytes, Rejection> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(Rejection {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            detail: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        }),
        Err(err) => Err(Rejection::bad_request(format!("could not read the body: {err}"))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, Rejection> {
    serde_json::from_slice(body).map_err(|err| Rejection::bad_request(format!("the body is not valid JSON: {err}")))
}
