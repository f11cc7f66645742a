//! Reading the usage an origin reports in its answer, as the answer's bytes pass through: a
//! header, a JSON pointer into a buffered JSON answer, or the same pointer in the last `data:`
//! event of a `text/event-stream` answer that carries it (OpenAI-compatible APIs send `usage` in
//! their final chunk).
//!
//! Bounded: a JSON answer is buffered up to [`MAX_JSON_BYTES`] (larger: no report), an event
//! line up to [`MAX_LINE_BYTES`] (longer lines are skipped). A value that is not a whole number
//! of at most `u32::MAX` is no report. No report settles at the reservation.

use crate::policy::UsageSource;

/// Largest JSON answer scanned for the pointer, bytes.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Longest server-sent-event line scanned, bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How the answer's body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// The header held the report (or did not); the body is not looked at.
    Done,
    /// A buffered JSON answer, `None` once it grew past the cap.
    Json(Option<Vec<u8>>),
    /// An event stream: the current partial line.
    Events(Vec<u8>, bool),
}

/// The usage report of one answer, fed with its body chunk by chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageMeter {
    pointer: String,
    reading: Reading,
    found: Option<u32>,
}

impl UsageMeter {
    /// A meter for an answer with these headers (names in any case).
    pub fn new(source: &UsageSource, headers: &[(String, String)]) -> Self {
        let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        match source {
            UsageSource::Header(name) => UsageMeter {
                pointer: String::new(),
                reading: Reading::Done,
                found: header(name).and_then(|v| v.trim().parse::<u32>().ok()),
            },
            UsageSource::Json(pointer) => {
                let is_events = header("content-type").is_some_and(|t| {
                    t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
                });
                let reading =
                    if is_events { Reading::Events(Vec::new(), false) } else { Reading::Json(Some(Vec::new())) };
                UsageMeter { pointer: pointer.clone(), reading, found: None }
            }
        }
    }

    /// Whether the body needs to be looked at at all.
    pub fn reads_body(&self) -> bool {
        self.reading != Reading::Done
    }

    /// The next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.reading {
            Reading::Done => {}
            Reading::Json(buffer) => {
                if let Some(b) = buffer {
                    if b.len() + chunk.len() > MAX_JSON_BYTES {
                        *buffer = None;
                    } else {
                        b.extend_from_slice(chunk);
                    }
                }
            }
            Reading::Events(line, skipping) => {
                let mut lines = Vec::new();
                for &byte in chunk {
                    if byte == b'\n' {
                        if !*skipping {
                            lines.push(std::mem::take(line));
                        }
                        line.clear();
                        *skipping = false;
                    } else if !*skipping {
                        if line.len() >= MAX_LINE_BYTES {
                            line.clear();
                            *skipping = true;
                        } else {
                            line.push(byte);
                        }
                    }
                }
                for l in lines {
                    self.event_line(&l);
                }
            }
        }
    }

    /// One complete line of an event stream: a `data:` line carrying the pointer replaces the
    /// report so far.
    fn event_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if let Some(n) = read_pointer(data, &self.pointer) {
            self.found = Some(n);
        }
    }

    /// The report, once the body has ended; `None` when the answer reported nothing usable.
    pub fn finish(mut self) -> Option<u32> {
        match std::mem::replace(&mut self.reading, Reading::Done) {
            Reading::Json(Some(body)) => read_pointer(&body, &self.pointer),
            Reading::Events(line, false) if !line.is_empty() => {
                self.event_line(&line);
                self.found
            }
            _ => self.found,
        }
    }

    /// The report so far (a stream cut short keeps the last report it carried).
    pub fn so_far(&self) -> Option<u32> {
        self.found
    }
}

fn read_pointer(json: &[u8], pointer: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    value.pointer(pointer)?.as_u64().and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn json() -> UsageSource {
        UsageSource::Json("/usage/total_tokens".into())
    }

    #[test]
    fn a_header_reports_without_reading_the_body() {
        let m =
            UsageMeter::new(&UsageSource::Header("x-usage-tokens".into()), &headers(&[("X-Usage-Tokens", " 300 ")]));
        assert!(!m.reads_body());
        assert_eq!(m.finish(), Some(300));
        let m = UsageMeter::new(&UsageSource::Header("x-usage-tokens".into()), &headers(&[("x-usage-tokens", "-1")]));
        assert_eq!(m.finish(), None);
    }

    #[test]
    fn a_json_answer_is_read_at_its_end_whatever_the_chunking() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":4,"total_tokens":300}}"#;
        for split in [1, 7, body.len()] {
            let mut m = UsageMeter::new(&json(), &headers(&[("content-type", "application/json")]));
            for chunk in body.chunks(split) {
                m.feed(chunk);
            }
            assert_eq!(m.finish(), Some(300), "chunks of {split}");
        }
        let mut m = UsageMeter::new(&json(), &[]);
        m.feed(b"not json");
        assert_eq!(m.finish(), None);
    }

    #[test]
    fn an_event_stream_reports_its_last_data_event_carrying_the_pointer() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
                      data: {\"choices\":[],\"usage\":{\"total_tokens\":299}}\r\n\r\n\
                      data: [DONE]\n\n";
        for split in [1, 5, stream.len()] {
            let mut m = UsageMeter::new(&json(), &headers(&[("Content-Type", "text/event-stream; charset=utf-8")]));
            for chunk in stream.as_bytes().chunks(split) {
                m.feed(chunk);
            }
            assert_eq!(m.finish(), Some(299), "chunks of {split}");
        }
    }

    #[test]
    fn a_stream_cut_short_keeps_what_it_reported_and_huge_bodies_report_nothing() {
        let mut m = UsageMeter::new(&json(), &headers(&[("content-type", "text/event-stream")]));
        m.feed(b"data: {\"usage\":{\"total_tokens\":12}}\n\ndata: {\"cho");
        assert_eq!(m.so_far(), Some(12));
        assert_eq!(m.finish(), Some(12));
        let mut m = UsageMeter::new(&json(), &[]);
        m.feed(&vec![b' '; MAX_JSON_BYTES]);
        m.feed(br#"{"usage":{"total_tokens":1}}"#);
        assert_eq!(m.finish(), None);
    }
}
