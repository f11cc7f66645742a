//! Tollgate's live event stream (`GET /_tollgate/events`): the channels Tollgate publishes on, the
//! plan of the Redis subscription the Worker opens for a client, and the re-framing of Redis's
//! server-sent events (`data: message,<channel>,<payload>`) into Tollgate's own
//! (`event: invalidation` / `data: <json>`). Pure: the Worker only moves the bytes.

use std::fmt;

use serde_json::{json, Value};

use crate::cache::INVALIDATION_CHANNEL;

use super::config::RedisConfig;
use super::http::EdgeResponse;

/// The channel quota warnings are published on, as JSON.
pub const QUOTA_WARNING_CHANNEL: &str = "system:quota_warning";

/// The keep-alive comment: sent on whenever Redis's stream sends one, and by the Worker itself
/// every [`KEEPALIVE_MS`].
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// How often the Worker writes a keep-alive of its own, ms. The runtime learns that a client has
/// gone only when it next writes to it, so this bounds how long a subscription outlives its
/// client, whatever Redis's own keep-alive interval.
pub const KEEPALIVE_MS: u32 = 5_000;

/// Longest upstream line kept, bytes; a longer one (a huge payload) is dropped whole.
const MAX_LINE: usize = 1024 * 1024;

/// A channel Tollgate publishes on; nothing else can be subscribed to through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventChannel {
    /// Cache invalidations (`system:cache_invalidation`).
    Invalidation,
    /// Quota warnings (`system:quota_warning`).
    QuotaWarning,
}

impl EventChannel {
    /// Every channel, the default of a stream.
    pub const ALL: [EventChannel; 2] = [EventChannel::Invalidation, EventChannel::QuotaWarning];

    /// The event name a client sees (`event: invalidation`), also accepted in `?channels=`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventChannel::Invalidation => "invalidation",
            EventChannel::QuotaWarning => "quota_warning",
        }
    }

    /// The Redis channel.
    pub fn channel(self) -> &'static str {
        match self {
            EventChannel::Invalidation => INVALIDATION_CHANNEL,
            EventChannel::QuotaWarning => QUOTA_WARNING_CHANNEL,
        }
    }

    /// The channel named by its event name or its Redis channel.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name || c.channel() == name)
    }

    fn of_channel(channel: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.channel() == channel)
    }
}

/// The subscription the Worker opens on Redis for one client, and the head of its answer.
pub struct EventsPlan {
    /// The Redis REST subscription URL (`<UPSTASH_REDIS_REST_URL>/subscribe/<channel>/…`).
    pub url: String,
    /// Headers of the subscription request (the Worker's own Redis token).
    pub request_headers: Vec<(String, String)>,
    /// Status and headers of the client's answer (no body: the body is the stream).
    pub head: EdgeResponse,
    /// The channels subscribed to, in order.
    pub channels: Vec<EventChannel>,
}

impl EventsPlan {
    /// The plan for `channels` (non-empty) on the Redis at `redis`.
    pub fn new(redis: &RedisConfig, channels: Vec<EventChannel>) -> Self {
        let path: Vec<&str> = channels.iter().map(|c| c.channel()).collect();
        let head = EdgeResponse::new(200)
            .with_header("content-type", "text/event-stream; charset=utf-8")
            .with_header("cache-control", "no-store")
            .with_header("x-accel-buffering", "no");
        Self {
            url: format!("{}/subscribe/{}", redis.url, path.join("/")),
            request_headers: vec![
                ("authorization".to_owned(), format!("Bearer {}", redis.token)),
                ("accept".to_owned(), "text/event-stream".to_owned()),
            ],
            head,
            channels,
        }
    }

    /// A re-framer for this stream.
    pub fn reframer(&self) -> Reframer {
        Reframer::new(self.channels.clone())
    }
}

impl fmt::Debug for EventsPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The request headers carry the Redis token: never printed.
        f.debug_struct("EventsPlan")
            .field("url", &self.url)
            .field("head", &self.head.status)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Turns Redis's event stream, fed in chunks of any size, into Tollgate's: `event: ready` once
/// Redis has confirmed every channel (`data: {"channels":["invalidation",…]}`), then each message
/// of a subscribed channel under its event name with its JSON payload on one `data:` line (a
/// payload that is not JSON becomes a JSON string), and the keep-alives. Anything else is dropped.
#[derive(Debug)]
pub struct Reframer {
    channels: Vec<EventChannel>,
    confirmed: Vec<EventChannel>,
    line: Vec<u8>,
    overlong: bool,
    data: Option<String>,
}

impl Reframer {
    /// A re-framer that passes messages of `channels` only.
    pub fn new(channels: Vec<EventChannel>) -> Self {
        Self { channels, confirmed: Vec::new(), line: Vec::new(), overlong: false, data: None }
    }

    /// Feeds the next bytes of Redis's stream; returns the bytes to send to the client.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if std::mem::take(&mut self.overlong) {
                    self.data = None;
                    continue;
                }
                let text = String::from_utf8_lossy(&line);
                self.line_done(text.strip_suffix('\r').unwrap_or(&text), &mut out);
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else {
                self.overlong = true;
            }
        }
        out
    }

    fn line_done(&mut self, line: &str, out: &mut Vec<u8>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                self.dispatch(&data, out);
            }
        } else if let Some(comment) = line.strip_prefix(':') {
            if comment.trim() == "keepalive" {
                out.extend_from_slice(KEEPALIVE);
            }
        } else if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
    }

    fn dispatch(&mut self, data: &str, out: &mut Vec<u8>) {
        let Some((kind, rest)) = data.split_once(',') else { return };
        match kind {
            "subscribe" => {
                let channel = rest.rsplit_once(',').map_or(rest, |(c, _)| c);
                let Some(c) = self.subscribed(channel) else { return };
                if self.confirmed.contains(&c) {
                    return;
                }
                self.confirmed.push(c);
                if self.confirmed.len() == self.channels.len() {
                    let names: Vec<&str> = self.channels.iter().map(|c| c.as_str()).collect();
                    let body = json!({ "channels": names });
                    out.extend_from_slice(format!("event: ready\ndata: {body}\n\n").as_bytes());
                }
            }
            "message" => {
                if let Some((channel, payload)) = rest.split_once(',') {
                    self.message(channel, payload, out);
                }
            }
            "pmessage" => {
                if let Some((channel, payload)) = rest.split_once(',').and_then(|(_, r)| r.split_once(',')) {
                    self.message(channel, payload, out);
                }
            }
            _ => {}
        }
    }

    fn message(&self, channel: &str, payload: &str, out: &mut Vec<u8>) {
        let Some(c) = self.subscribed(channel) else { return };
        let value = serde_json::from_str::<Value>(payload).unwrap_or_else(|_| Value::String(payload.to_owned()));
        out.extend_from_slice(format!("event: {}\ndata: {value}\n\n", c.as_str()).as_bytes());
    }

    fn subscribed(&self, channel: &str) -> Option<EventChannel> {
        EventChannel::of_channel(channel).filter(|c| self.channels.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Reframer {
        Reframer::new(EventChannel::ALL.to_vec())
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn channels_are_named_by_event_or_by_redis_channel_and_nothing_else() {
        assert_eq!(EventChannel::parse("invalidation"), Some(EventChannel::Invalidation));
        assert_eq!(EventChannel::parse("system:quota_warning"), Some(EventChannel::QuotaWarning));
        assert_eq!(EventChannel::parse("system:*"), None);
        assert_eq!(EventChannel::parse("tollgate:secret"), None);
        assert_eq!(EventChannel::Invalidation.channel(), "system:cache_invalidation");
    }

    #[test]
    fn the_plan_subscribes_with_the_workers_token_and_hides_it_when_printed() {
        let redis = RedisConfig { url: "http://redis.test".into(), token: "sekrit".into() };
        let plan = EventsPlan::new(&redis, EventChannel::ALL.to_vec());
        assert_eq!(plan.url, "http://redis.test/subscribe/system:cache_invalidation/system:quota_warning");
        assert!(plan.request_headers.contains(&("authorization".into(), "Bearer sekrit".into())));
        assert_eq!(plan.head.header("content-type"), Some("text/event-stream; charset=utf-8"));
        assert!(!format!("{plan:?}").contains("sekrit"));
    }

    #[test]
    fn messages_become_named_events_with_their_json_payload() {
        let mut r = all();
        let out = r.push(b"data: message,system:cache_invalidation,{\"kind\":\"tag\",\"target\":\"a,b\"}\n\n");
        assert_eq!(text(out), "event: invalidation\ndata: {\"kind\":\"tag\",\"target\":\"a,b\"}\n\n");
        let out = r.push(b"data: pmessage,system:*,system:quota_warning,not json\n\n");
        assert_eq!(text(out), "event: quota_warning\ndata: \"not json\"\n\n");
    }

    #[test]
    fn ready_comes_once_every_channel_is_confirmed() {
        let mut r = all();
        assert_eq!(text(r.push(b"data: subscribe,system:cache_invalidation,1\n\n")), "");
        assert_eq!(text(r.push(b"data: subscribe,system:cache_invalidation,1\n\n")), "", "counted once");
        assert_eq!(
            text(r.push(b"data: subscribe,system:quota_warning,2\n\n")),
            "event: ready\ndata: {\"channels\":[\"invalidation\",\"quota_warning\"]}\n\n"
        );
        assert_eq!(text(r.push(b"data: subscribe,system:quota_warning,2\n\n")), "", "and said once");
    }

    #[test]
    fn events_split_across_chunks_arrive_whole_and_keepalives_pass() {
        let mut r = all();
        let stream = b"data: message,system:cache_invalidation,{\"deleted\":2}\r\n\r\n: keepalive\n\n";
        let mut out = Vec::new();
        for chunk in stream.chunks(3) {
            out.extend(r.push(chunk));
        }
        assert_eq!(text(out), "event: invalidation\ndata: {\"deleted\":2}\n\n: keepalive\n\n");
    }

    #[test]
    fn a_multi_line_payload_is_joined_and_sent_on_one_data_line() {
        let mut r = all();
        let out = r.push(b"data: message,system:cache_invalidation,{\"kind\":\ndata: \"key\"}\n\n");
        assert_eq!(text(out), "event: invalidation\ndata: {\"kind\":\"key\"}\n\n");
    }

    #[test]
    fn other_channels_and_unknown_lines_are_dropped() {
        let mut r = Reframer::new(vec![EventChannel::QuotaWarning]);
        let out = r.push(
            b"data: message,system:cache_invalidation,{}\n\nid: 4\nretry: 10\n\ndata: message,other,{}\n\n: hi\n\n",
        );
        assert_eq!(text(out), "");
    }

    #[test]
    fn an_overlong_line_is_dropped_and_the_stream_goes_on() {
        let mut r = all();
        let mut big = b"data: message,system:cache_invalidation,".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        big.extend_from_slice(b"\n\ndata: message,system:cache_invalidation,1\n\n");
        assert_eq!(text(r.push(&big)), "event: invalidation\ndata: 1\n\n");
    }
}
