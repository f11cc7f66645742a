//! `tollgate monitor --events`: Tollgate's invalidations and quota warnings as they happen, one
//! line each (`--json`: one object each), read from the Worker's `GET /_tollgate/events` stream
//! until Ctrl-C or the stream ends.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::client::{describe_io_error, encode_component, ADMIN_PREFIX};
use crate::error::CliError;
use crate::exit::Exit;
use crate::style::Style;
use crate::time;

use super::{emit, note, short_hash, Context};

/// How often the wait for the next event checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);
/// Longest line of the stream kept, bytes; a longer one is dropped whole.
const MAX_LINE: usize = 1024 * 1024;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Its name: `invalidation`, `quota_warning`, `ready`.
    pub event: String,
    /// When this machine received it, Unix ms.
    pub received_ms: u64,
    /// Its JSON payload.
    pub data: Value,
}

/// Reads a server-sent event stream line by line: `event:` and `data:` lines, a blank line ends
/// an event, comments (keep-alives) and other fields are skipped.
#[derive(Debug, Default)]
pub struct EventParser {
    event: Option<String>,
    data: Option<String>,
}

impl EventParser {
    /// Feeds one line (without its line break); returns the event it completes, if any.
    pub fn line(&mut self, line: &str, received_ms: u64) -> Option<Event> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take().unwrap_or_else(|| "message".to_owned());
            let data = data?;
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            return Some(Event { event, received_ms, data });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

/// The fields that carry an event's own time, Unix ms: invalidations' `at_ms`, quota warnings'
/// `time`.
const TIME_FIELDS: [&str; 2] = ["at_ms", "time"];

/// One event as a line: its time (the event's own, else when it was received), its kind, what
/// it is about, and the rest.
pub fn line(e: &Event, style: Style) -> String {
    let at = TIME_FIELDS.iter().find_map(|k| e.data.get(*k).and_then(Value::as_u64)).unwrap_or(e.received_ms);
    let time = format!("{}.{:03}", time::utc_time(at), at % 1000);
    let (subject, details) = match (&e.data, e.event.as_str()) {
        (Value::Object(o), "invalidation") => {
            let kind = o.get("kind").and_then(Value::as_str).unwrap_or("?");
            let target = o.get("target").map_or_else(String::new, scalar);
            let mut details = format!("deleted {}", o.get("deleted").map_or_else(|| "?".to_owned(), scalar));
            if let Some(g) = o.get("generation") {
                details.push_str(&format!(", generation {}", scalar(g)));
            }
            (format!("{kind} {target}"), details)
        }
        (Value::Object(o), _) => {
            let key = ["subject", "subject_hash"].into_iter().find(|k| o.contains_key(*k));
            let subject = key.and_then(|k| o.get(k)).map_or_else(|| "-".to_owned(), |v| short_hash(&scalar(v)));
            let rest: Vec<String> = o
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != key && !TIME_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", scalar(v)))
                .collect();
            (subject, rest.join(" "))
        }
        (other, _) => ("-".to_owned(), other.to_string()),
    };
    let kind = format!("{:<13}", e.event);
    let kind = if e.event == "quota_warning" { style.warn(&kind) } else { kind };
    format!("{time}  {kind}  {subject}  {details}").trim_end().to_owned()
}

/// A JSON value as text: strings without quotes, anything else as JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What the reading thread hands over.
enum Incoming {
    Event(Event),
    End(Option<std::io::Error>),
}

/// Reads `body` until it ends, sending each event.
fn read_events(body: impl Read, tx: &mpsc::Sender<Incoming>) {
    let mut reader = BufReader::new(body);
    let mut parser = EventParser::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
            Ok(0) => {
                let _ = tx.send(Incoming::End(None));
                return;
            }
            Ok(_) if !buf.ends_with(b"\n") && buf.len() >= MAX_LINE => {
                // Skip the rest of an overlong line.
                let mut rest = Vec::new();
                if reader.read_until(b'\n', &mut rest).is_err() {
                    let _ = tx.send(Incoming::End(None));
                    return;
                }
            }
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                if let Some(event) = parser.line(text.trim_end_matches('\n'), time::now_ms()) {
                    if tx.send(Incoming::Event(event)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Incoming::End(Some(e)));
                return;
            }
        }
    }
}

/// Streams events until `stop` is set (Ctrl-C: exit 0) or the stream ends (exit 1, or 4 when the
/// connection failed).
pub fn run(ctx: &Context, channels: Option<&str>, stop: &AtomicBool) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let mut path = format!("{ADMIN_PREFIX}/events");
    if let Some(channels) = channels {
        path.push_str(&format!("?channels={}", encode_component(channels)));
    }
    let body = client.open_stream(&path)?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || read_events(body, &tx));
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Exit::Ok);
        }
        match rx.recv_timeout(POLL) {
            Ok(Incoming::Event(e)) if e.event == "ready" => {
                let names: Vec<String> = e
                    .data
                    .get("channels")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(scalar).collect())
                    .unwrap_or_default();
                note(&format!("listening for {} events (Ctrl-C to stop)", names.join(", ")));
            }
            Ok(Incoming::Event(e)) if ctx.json() => {
                let text = serde_json::to_string(&e).map_err(|e| CliError::Output(e.into()))?;
                emit(&format!("{text}\n"))?;
            }
            Ok(Incoming::Event(e)) => emit(&format!("{}\n", line(&e, ctx.style)))?,
            Ok(Incoming::End(Some(e))) => {
                return Err(CliError::Network { base: client.base().to_owned(), reason: describe_io_error(&e) })
            }
            Ok(Incoming::End(None)) | Err(RecvTimeoutError::Disconnected) => {
                note("the event stream ended");
                return Ok(Exit::Failed);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Vec<Event> {
        let mut p = EventParser::default();
        text.split('\n').filter_map(|l| p.line(l, 7)).collect()
    }

    #[test]
    fn events_are_read_by_name_with_their_json_data_and_comments_are_skipped() {
        let events = parse(
            ": keepalive\n\nevent: ready\ndata: {\"channels\":[\"invalidation\"]}\n\n\
             event: invalidation\r\ndata: {\"kind\":\"tag\",\r\ndata: \"target\":\"config\"}\r\n\r\ndata: plain\n\n",
        );
        assert_eq!(
            events,
            vec![
                Event { event: "ready".into(), received_ms: 7, data: json!({"channels": ["invalidation"]}) },
                Event {
                    event: "invalidation".into(),
                    received_ms: 7,
                    data: json!({"kind": "tag", "target": "config"})
                },
                Event { event: "message".into(), received_ms: 7, data: json!("plain") },
            ]
        );
    }

    #[test]
    fn an_invalidation_reads_as_time_kind_target_and_what_it_did() {
        let e = Event {
            event: "invalidation".into(),
            received_ms: 0,
            data: json!({"kind": "namespace", "target": "config:g", "deleted": 0, "generation": 4,
                         "at_ms": 1_763_770_123_456u64}),
        };
        assert_eq!(
            line(&e, Style::plain()),
            "00:08:43.456  invalidation   namespace config:g  deleted 0, generation 4"
        );
    }

    #[test]
    fn a_quota_warning_reads_as_its_subject_and_its_fields() {
        let e = Event {
            event: "quota_warning".into(),
            received_ms: 1_763_770_123_000,
            data: json!({"subject": "user-7", "limit": "hourly", "used": 90}),
        };
        assert_eq!(line(&e, Style::plain()), "00:08:43.000  quota_warning  user-7  limit=hourly used=90");
        let published = Event {
            event: "quota_warning".into(),
            received_ms: 0,
            data: json!({"subject": "508cc0fe26185d71343b0aaa99a7", "limit": "daily", "unit": "tokens", "mode": "enforce", "used": 800,
                         "quota": 1000, "window_ms": 86_400_000, "fraction": 0.8, "time": 1_763_770_125_000u64}),
        };
        assert_eq!(
            line(&published, Style::plain()),
            "00:08:45.000  quota_warning  508cc0fe2618…  fraction=0.8 limit=daily mode=enforce quota=1000 unit=tokens used=800 \
             window_ms=86400000"
        );
        let hashed = Event {
            event: "quota_warning".into(),
            received_ms: 1_763_770_123_000,
            data: json!({"subject_hash": "9f8e", "subject": "user-7", "at_ms": 1_763_770_124_000u64}),
        };
        assert_eq!(line(&hashed, Style::plain()), "00:08:44.000  quota_warning  user-7  subject_hash=9f8e");
        let odd = Event { event: "quota_warning".into(), received_ms: 1_763_770_123_000, data: json!("text") };
        assert_eq!(line(&odd, Style::plain()), "00:08:43.000  quota_warning  -  \"text\"");
    }
}
