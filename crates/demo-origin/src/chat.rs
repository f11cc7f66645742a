//! `POST /v1/chat/completions`: an OpenAI-compatible stand-in for an LLM, deterministic so tests
//! can predict every token count.
//!
//! - Usage: `prompt_tokens` = the number of whitespace-separated words in all message contents
//!   (at least 1); `completion_tokens` = `max_tokens` (default [`DEFAULT_MAX_TOKENS`]; the answer
//!   always has exactly that many tokens); `total_tokens` = their sum. The same request always
//!   gets the same text.
//! - `"stream": true` answers `text/event-stream`: one `data:` event per token
//!   (`chat.completion.chunk`), then a final chunk with empty `choices` and the `usage`, then
//!   `data: [DONE]` (as OpenAI does with `stream_options.include_usage`).
//! - Latency per token: the request header `X-Origin-Token-Delay-Ms` (0 to 10 000), before each
//!   streamed token, or once per token before a buffered answer.
//! - Every answer carries `X-Usage-Tokens: <total_tokens>` as well, for routes reading usage
//!   from a header.
//! - `GET /_origin/chat` reports requests, completions in flight, the most ever in flight at once,
//!   finished and aborted streams, and the tokens answered.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// `completion_tokens` when the request names no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 16;
/// The most tokens one completion may ask for.
pub const MAX_TOKENS: u32 = 4_096;
/// Request header: milliseconds per answered token.
pub const TOKEN_DELAY_HEADER: &str = "x-origin-token-delay-ms";
/// The largest per-token delay accepted, ms.
pub const MAX_TOKEN_DELAY_MS: u64 = 10_000;
/// Response header carrying `total_tokens`.
pub const USAGE_HEADER: &str = "x-usage-tokens";

/// Words the deterministic answers are made of.
const WORDS: [&str; 8] = ["edge", "limit", "token", "quota", "stream", "cache", "redis", "worker"];

/// A request the route cannot answer; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequestError(pub String);

/// A validated chat completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// Echoed back (`demo` when left out).
    pub model: String,
    /// Words in all message contents, at least 1.
    pub prompt_tokens: u32,
    /// Tokens to answer.
    pub max_tokens: u32,
    /// Server-sent events instead of one JSON document.
    pub stream: bool,
    /// Seeds the answer's words.
    seed: [u8; 32],
}

impl ChatRequest {
    /// Validates `{"model"?, "messages": [{"role", "content": "<text>"}, …], "max_tokens"?,
    /// "stream"?}`; other fields are allowed and ignored.
    pub fn from_json(body: &Value) -> Result<Self, ChatRequestError> {
        let err = |m: &str| ChatRequestError(m.to_owned());
        let fields = body.as_object().ok_or_else(|| err("the body must be a JSON object"))?;
        let model = match fields.get("model") {
            None | Some(Value::Null) => "demo".to_owned(),
            Some(Value::String(m)) if !m.is_empty() && m.len() <= 128 => m.clone(),
            Some(_) => return Err(err("\"model\" must be a non-empty string")),
        };
        let messages = match fields.get("messages") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(_) => return Err(err("\"messages\" must be a non-empty array")),
            None => return Err(err("\"messages\" is required")),
        };
        let mut words: u64 = 0;
        let mut hasher = Sha256::new();
        for (i, message) in messages.iter().enumerate() {
            let content = message
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| ChatRequestError(format!("\"messages[{i}].content\" must be a string")))?;
            words += content.split_whitespace().count() as u64;
            hasher.update(content.as_bytes());
            hasher.update([0]);
        }
        let max_tokens = match fields.get("max_tokens") {
            None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
            Some(value) => {
                value.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| (1..=MAX_TOKENS).contains(n)).ok_or_else(
                    || ChatRequestError(format!("\"max_tokens\" must be an integer from 1 to {MAX_TOKENS}")),
                )?
            }
        };
        let stream = match fields.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(err("\"stream\" must be true or false")),
        };
        let prompt_tokens = u32::try_from(words.max(1)).unwrap_or(u32::MAX);
        Ok(Self { model, prompt_tokens, max_tokens, stream, seed: hasher.finalize().into() })
    }

    /// `prompt_tokens + completion_tokens`.
    pub fn total_tokens(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.max_tokens)
    }

    /// The `usage` object.
    pub fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.max_tokens,
            "total_tokens": self.total_tokens(),
        })
    }

    /// The `i`-th token of the answer: a word, with a leading space after the first.
    pub fn token(&self, i: u32) -> String {
        let pick = self.seed[(i as usize) % self.seed.len()] as usize + i as usize;
        let word = WORDS[pick % WORDS.len()];
        if i == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        }
    }

    /// A stable id of this completion.
    pub fn id(&self) -> String {
        format!("chatcmpl-{}", hex_prefix(&self.seed))
    }

    /// The buffered answer (`chat.completion`).
    pub fn completion(&self, created_s: u64) -> Value {
        let text: String = (0..self.max_tokens).map(|i| self.token(i)).collect();
        json!({
            "id": self.id(),
            "object": "chat.completion",
            "created": created_s,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }],
            "usage": self.usage(),
        })
    }

    /// One streamed token (`chat.completion.chunk`).
    pub fn chunk(&self, i: u32, created_s: u64) -> Value {
        let finish = if i + 1 == self.max_tokens { json!("length") } else { Value::Null };
        let delta = if i == 0 {
            json!({"role": "assistant", "content": self.token(i)})
        } else {
            json!({"content": self.token(i)})
        };
        json!({
            "id": self.id(),
            "object": "chat.completion.chunk",
            "created": created_s,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    /// The final chunk: no choices, the usage.
    pub fn usage_chunk(&self, created_s: u64) -> Value {
        json!({
            "id": self.id(),
            "object": "chat.completion.chunk",
            "created": created_s,
            "model": self.model,
            "choices": [],
            "usage": self.usage(),
        })
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The per-token delay of a request: the header's value, `Err` with a message when malformed.
pub fn token_delay(value: Option<&str>) -> Result<Duration, String> {
    match value {
        None => Ok(Duration::ZERO),
        Some(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= MAX_TOKEN_DELAY_MS)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{TOKEN_DELAY_HEADER} must be a whole number of ms from 0 to {MAX_TOKEN_DELAY_MS}")),
    }
}

/// Counters of `/_origin/chat`, shared by every connection.
#[derive(Debug, Default)]
pub struct ChatStats {
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    finished: AtomicU64,
    aborted: AtomicU64,
    tokens: AtomicU64,
}

impl ChatStats {
    /// One more completion started; the guard ends it (finished or aborted) when dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight { stats: Arc::clone(self), finished: false }
    }

    /// Back to zero (`/_origin/reset`); completions in flight still count down when they end.
    pub fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.max_in_flight.store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        self.finished.store(0, Ordering::SeqCst);
        self.aborted.store(0, Ordering::SeqCst);
        self.tokens.store(0, Ordering::SeqCst);
    }

    /// The `/_origin/chat` document.
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests.load(Ordering::SeqCst),
            "in_flight": self.in_flight.load(Ordering::SeqCst),
            "max_in_flight": self.max_in_flight.load(Ordering::SeqCst),
            "finished": self.finished.load(Ordering::SeqCst),
            "aborted": self.aborted.load(Ordering::SeqCst),
            "tokens": self.tokens.load(Ordering::SeqCst),
        })
    }
}

/// A completion in flight; counted as aborted unless [`InFlight::finish`] was called.
#[derive(Debug)]
pub struct InFlight {
    stats: Arc<ChatStats>,
    finished: bool,
}

impl InFlight {
    /// The whole answer, `tokens` of usage, was handed to the connection.
    pub fn finish(mut self, tokens: u64) {
        self.finished = true;
        self.stats.tokens.fetch_add(tokens, Ordering::SeqCst);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let counter = if self.finished { &self.stats.finished } else { &self.stats.aborted };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// A streamed body: frames from a channel the producing task writes to. When the client goes
/// away hyper drops the body, the channel closes and the producer stops.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender that feeds it (a bounded channel: the producer waits for the reader).
    pub fn new() -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(4);
        (tx, Self { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// One server-sent event carrying `data`.
pub fn sse_event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ChatRequest {
        ChatRequest::from_json(&body).expect("valid request")
    }

    #[test]
    fn usage_is_derived_from_the_prompt_and_max_tokens() {
        let r = request(
            json!({"messages": [{"role": "user", "content": "one two  three"}, {"role": "user", "content": "four"}], "max_tokens": 296}),
        );
        assert_eq!((r.prompt_tokens, r.max_tokens, r.total_tokens()), (4, 296, 300));
        let blank = request(json!({"messages": [{"role": "user", "content": "  "}]}));
        assert_eq!((blank.prompt_tokens, blank.max_tokens), (1, DEFAULT_MAX_TOKENS));
    }

    #[test]
    fn the_same_request_gets_the_same_answer() {
        let body = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5});
        let (a, b) = (request(body.clone()), request(body));
        assert_eq!(a.completion(1)["choices"], b.completion(1)["choices"]);
        let text = a.completion(1)["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned();
        assert_eq!(text.split(' ').count(), 5);
        let streamed: String = (0..5)
            .map(|i| a.chunk(i, 1)["choices"][0]["delta"]["content"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(streamed, text, "the stream spells the buffered answer");
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (body, field) in [
            (json!([]), "object"),
            (json!({}), "messages"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": [{"role": "user"}]}), "messages[0].content"),
            (json!({"messages": [{"content": "x"}], "max_tokens": 0}), "max_tokens"),
            (json!({"messages": [{"content": "x"}], "max_tokens": 5000}), "max_tokens"),
            (json!({"messages": [{"content": "x"}], "stream": "yes"}), "stream"),
        ] {
            let e = ChatRequest::from_json(&body).expect_err("invalid");
            assert!(e.0.contains(field), "{body}: {}", e.0);
        }
    }

    #[test]
    fn token_delay_is_bounded() {
        assert_eq!(token_delay(None), Ok(Duration::ZERO));
        assert_eq!(token_delay(Some("25")), Ok(Duration::from_millis(25)));
        assert!(token_delay(Some("-1")).is_err());
        assert!(token_delay(Some("10001")).is_err());
    }

    #[test]
    fn in_flight_counts_up_and_down_and_tells_aborts_from_finishes() {
        let stats = Arc::new(ChatStats::default());
        let a = stats.begin();
        let b = stats.begin();
        assert_eq!(stats.to_json()["in_flight"], 2);
        a.finish(300);
        drop(b);
        let j = stats.to_json();
        assert_eq!((j["in_flight"].as_u64(), j["max_in_flight"].as_u64()), (Some(0), Some(2)));
        assert_eq!(
            (j["finished"].as_u64(), j["aborted"].as_u64(), j["tokens"].as_u64()),
            (Some(1), Some(1), Some(300))
        );
    }
}
