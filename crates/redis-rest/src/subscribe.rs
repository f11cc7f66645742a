//! `/subscribe/{channel…}` and `/psubscribe/{pattern…}`: Redis pub/sub as a server-sent event
//! stream, framed the way Upstash frames it and `@upstash/redis`'s `subscribe()` parses it.
//!
//! Wire format (one event per published message, UTF-8, `\n` line ends):
//!
//! ```text
//! data: subscribe,<channel>,<count>        one per channel, once Redis confirmed it
//! data: psubscribe,<pattern>,<count>
//! data: message,<channel>,<payload>
//! data: pmessage,<pattern>,<channel>,<payload>
//! : keepalive                              a comment every `--sse-keepalive-ms`
//! ```
//!
//! each followed by an empty line. The payload is the published bytes as they are (UTF-8,
//! invalid bytes replaced by U+FFFD), never base64, whatever `Upstash-Encoding` says: the
//! official client sends `Upstash-Encoding: base64` on every request, subscriptions included,
//! and `JSON.parse`s the payload text as it arrives. A payload holding line breaks continues
//! on further `data:` lines, as the SSE format requires (an EventSource joins them with `\n`).
//!
//! Each stream has its own Redis connection, outside the command pool, dialled for it and
//! dropped when the stream ends: when the client goes away (which is also how the official
//! client unsubscribes: it aborts the request), when Redis closes the connection, or at
//! shutdown. At most `--max-subscriptions` streams are open at once.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::command::Command;
use crate::config::RedisTarget;
use crate::connection::{encode_all, Connection};
use crate::error::BackendError;
use crate::percent;
use crate::resp::Reply;

/// Events buffered for a slow client before the Redis connection stops being read (Redis then
/// applies its own output-buffer limit for pub/sub clients).
const BUFFERED_EVENTS: usize = 256;
const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// Channels or patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channels,
    Patterns,
}

impl Kind {
    /// The Redis command, which is also the confirmation event's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Channels => "subscribe",
            Kind::Patterns => "psubscribe",
        }
    }
}

/// A parsed subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    /// Percent-decoded path segments after the first, at least one.
    pub names: Vec<Bytes>,
}

/// Why a subscription path is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    NoNames(&'static str),
}

/// `Some` for `/subscribe/…` and `/psubscribe/…` (first segment in any case), `None` for any
/// other path.
pub fn parse_path(path: &str) -> Option<Result<Request, PathError>> {
    let rest = path.strip_prefix('/')?;
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let kind = if first.eq_ignore_ascii_case("subscribe") {
        Kind::Channels
    } else if first.eq_ignore_ascii_case("psubscribe") {
        Kind::Patterns
    } else {
        return None;
    };
    let names: Vec<Bytes> =
        tail.split('/').filter(|s| !s.is_empty()).map(|s| Bytes::from(percent::decode(s, false))).collect();
    if names.is_empty() {
        return Some(Err(PathError::NoNames(kind.as_str())));
    }
    Some(Ok(Request { kind, names }))
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("ERR max concurrent subscriptions exceeded ({0} open); raise --max-subscriptions")]
    TooMany(usize),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Settings every stream shares.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: RedisTarget,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub keepalive: Duration,
}

/// The open streams: the bound and the counters.
#[derive(Debug)]
pub struct Subscriptions {
    settings: Settings,
    slots: Arc<Semaphore>,
    max: usize,
    opened: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Subscriptions {
    pub fn new(settings: Settings, max: usize, shutdown: watch::Receiver<bool>) -> Self {
        Self { settings, slots: Arc::new(Semaphore::new(max)), max, opened: AtomicU64::new(0), shutdown }
    }

    /// Streams open now.
    pub fn open_now(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    /// Streams opened since start.
    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Dials Redis, subscribes and waits for every confirmation; then the returned body
    /// streams events until the client goes away.
    pub async fn open(&self, req: Request) -> Result<EventBody, OpenError> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| OpenError::TooMany(self.max))?;
        let s = &self.settings;
        let mut conn = Connection::connect(&s.target, s.connect_timeout).await?;
        let cmd = Command::new(Bytes::from_static(req.kind.as_str().as_bytes()), req.names.clone());
        let confirmations = tokio::time::timeout(s.command_timeout, async {
            conn.write(&encode_all(std::slice::from_ref(&cmd))).await?;
            let mut events = Vec::with_capacity(req.names.len());
            for _ in &req.names {
                match conn.read_reply().await? {
                    Reply::Error(e) => return Ok(Err(String::from_utf8_lossy(&e).into_owned())),
                    reply => events.extend(event(&reply)),
                }
            }
            Ok::<_, BackendError>(Ok(events))
        })
        .await
        .map_err(|_| BackendError::Timeout(s.command_timeout.as_millis() as u64))??
        .map_err(OpenError::Refused)?;

        self.opened.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(BUFFERED_EVENTS);
        for e in confirmations {
            // The receiver is still here: nothing can fail yet.
            let _ = tx.try_send(e);
        }
        tokio::spawn(pump(conn, tx, s.keepalive, self.shutdown.clone(), permit));
        Ok(EventBody { rx })
    }
}

/// Forwards pushes from Redis until the client, Redis or the server stops. Owns the Redis
/// connection and the slot: both go when this returns.
async fn pump(
    mut conn: Connection,
    tx: mpsc::Sender<Bytes>,
    keepalive: Duration,
    mut shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            reply = conn.read_reply() => match reply {
                Ok(reply) => match event(&reply) {
                    Some(frame) => frame,
                    None => continue,
                },
                Err(_) => return,
            },
            _ = ticks.tick() => Bytes::from_static(KEEPALIVE),
            () = tx.closed() => return,
            _ = shutdown.changed() => return,
        };
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// The SSE frame for a pub/sub push or confirmation; `None` for anything else (e.g. `pong`).
pub fn event(reply: &Reply) -> Option<Bytes> {
    let Reply::Array(items) = reply else {
        return None;
    };
    let text = |r: &Reply| match r {
        Reply::Bulk(b) | Reply::Simple(b) => Some(b.clone()),
        Reply::Integer(i) => Some(Bytes::from(i.to_string())),
        _ => None,
    };
    let parts: Vec<Bytes> = items.iter().map(text).collect::<Option<_>>()?;
    let kind = parts.first()?;
    let arity = match &kind[..] {
        b"subscribe" | b"psubscribe" | b"unsubscribe" | b"punsubscribe" | b"message" => 3,
        b"pmessage" => 4,
        _ => return None,
    };
    if parts.len() != arity {
        return None;
    }
    Some(frame(&parts))
}

/// `data: a,b,c\n\n`, with line breaks inside the fields continued on new `data:` lines.
fn frame(parts: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    out.put_slice(b"data: ");
    let joined = parts.join(&b","[..]);
    let text = String::from_utf8_lossy(&joined);
    let mut lines = text.split("\r\n").flat_map(|l| l.split(['\r', '\n']));
    if let Some(first) = lines.next() {
        out.put_slice(first.as_bytes());
    }
    for line in lines {
        out.put_slice(b"\ndata: ");
        out.put_slice(line.as_bytes());
    }
    out.put_slice(b"\n\n");
    out.freeze()
}

/// The response body of a subscription: frames as the pump produces them. Dropping it (hyper
/// does when the client goes away) ends the pump and closes the Redis connection.
#[derive(Debug)]
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|f| f.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::from(s.to_owned()))
    }

    fn text(b: &Option<Bytes>) -> Option<String> {
        b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
    }

    #[test]
    fn parses_subscription_paths() {
        assert_eq!(
            parse_path("/subscribe/a/b%2Fc"),
            Some(Ok(Request { kind: Kind::Channels, names: vec![Bytes::from("a"), Bytes::from("b/c")] }))
        );
        assert_eq!(
            parse_path("/PSUBSCRIBE/system:*"),
            Some(Ok(Request { kind: Kind::Patterns, names: vec![Bytes::from("system:*")] }))
        );
        assert_eq!(parse_path("/subscribe"), Some(Err(PathError::NoNames("subscribe"))));
        assert_eq!(parse_path("/psubscribe/"), Some(Err(PathError::NoNames("psubscribe"))));
        assert_eq!(parse_path("/get/subscribe"), None);
        assert_eq!(parse_path("/subscriber/x"), None);
        assert_eq!(parse_path("/"), None);
    }

    #[test]
    fn frames_confirmations_and_messages_as_upstash_does() {
        let confirm = Reply::Array(vec![bulk("subscribe"), bulk("chat"), Reply::Integer(2)]);
        assert_eq!(text(&event(&confirm)).as_deref(), Some("data: subscribe,chat,2\n\n"));
        let msg = Reply::Array(vec![bulk("message"), bulk("chat"), bulk(r#"{"a":1,"b":"x,y"}"#)]);
        assert_eq!(text(&event(&msg)).as_deref(), Some("data: message,chat,{\"a\":1,\"b\":\"x,y\"}\n\n"));
        let pmsg = Reply::Array(vec![bulk("pmessage"), bulk("system:*"), bulk("system:x"), bulk("hi")]);
        assert_eq!(text(&event(&pmsg)).as_deref(), Some("data: pmessage,system:*,system:x,hi\n\n"));
        let psub = Reply::Array(vec![bulk("psubscribe"), bulk("p*"), Reply::Integer(1)]);
        assert_eq!(text(&event(&psub)).as_deref(), Some("data: psubscribe,p*,1\n\n"));
    }

    #[test]
    fn line_breaks_in_a_payload_continue_on_new_data_lines() {
        let msg = Reply::Array(vec![bulk("message"), bulk("c"), bulk("one\ntwo\r\nthree\rfour")]);
        assert_eq!(text(&event(&msg)).as_deref(), Some("data: message,c,one\ndata: two\ndata: three\ndata: four\n\n"));
    }

    #[test]
    fn invalid_utf8_is_replaced_never_encoded() {
        let msg = Reply::Array(vec![bulk("message"), bulk("c"), Reply::Bulk(Bytes::from_static(b"\xff\xfeok"))]);
        assert_eq!(text(&event(&msg)).as_deref(), Some("data: message,c,\u{fffd}\u{fffd}ok\n\n"));
    }

    #[test]
    fn ignores_what_is_not_a_push() {
        for r in [
            bulk("message"),
            Reply::Array(vec![bulk("pong"), bulk("")]),
            Reply::Array(vec![bulk("message"), bulk("c")]),
            Reply::Array(vec![bulk("message"), bulk("c"), Reply::Nil]),
            Reply::Array(vec![]),
        ] {
            assert_eq!(event(&r), None, "{r:?}");
        }
    }
}
