//! Request bodies the edge reads itself (admin calls, JSON-body cache keys) are capped before and
//! while they are read: wasm memory never shrinks, and an isolate has 128 MB for every request in
//! flight. Every other body is streamed to the origin untouched and never enters wasm memory.
//!
//! - `/_tollgate/…` bodies: at most [`ADMIN_BODY_BYTES`], and only after the admin token checked
//!   out (an unauthenticated caller cannot make the Worker read a byte).
//! - JSON-body cache routes: at most the policy's `cache.max_body_bytes`.
//!
//! A `Content-Length` over the cap is refused before reading; a body that turns out longer than
//! it said, or a chunked one that passes the cap, is refused as soon as the cap is passed. Both
//! answer `413` problem+json.

use super::error::GateError;

/// Largest admin request body read, bytes (a `warm` list or a key's metadata fits easily).
pub const ADMIN_BODY_BYTES: usize = 64 * 1024;

/// Why a body is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Longer than the cap (declared or as read).
    TooLarge {
        /// The cap, bytes.
        cap: usize,
    },
    /// A `Content-Length` that is not a number.
    BadLength,
}

impl BodyRefusal {
    /// The edge's error for it (`413`, or `400` for a bad length).
    pub fn error(self) -> GateError {
        match self {
            BodyRefusal::TooLarge { cap } => GateError::TooLarge { limit: cap as u64 },
            BodyRefusal::BadLength => GateError::BadRequest("Content-Length is not a number of bytes".into()),
        }
    }
}

/// Checks a declared `Content-Length` against `cap` before anything is read (absent: chunked or
/// empty, checked while reading).
pub fn check_declared(content_length: Option<&str>, cap: usize) -> Result<(), BodyRefusal> {
    let Some(text) = content_length else { return Ok(()) };
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BodyRefusal::BadLength);
    }
    match text.parse::<u64>() {
        Ok(n) if n <= cap as u64 => Ok(()),
        _ => Err(BodyRefusal::TooLarge { cap }),
    }
}

/// Collects a body chunk by chunk, refusing it as soon as it passes the cap.
#[derive(Debug)]
pub struct CappedBody {
    cap: usize,
    bytes: Vec<u8>,
}

impl CappedBody {
    /// An empty body that may grow to `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self { cap, bytes: Vec::new() }
    }

    /// Adds a chunk; `Err` once the body is longer than the cap (the caller stops reading).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BodyRefusal> {
        if self.bytes.len().saturating_add(chunk.len()) > self.cap {
            self.bytes = Vec::new();
            return Err(BodyRefusal::TooLarge { cap: self.cap });
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The whole body.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_lengths_over_the_cap_are_refused_before_reading() {
        assert_eq!(check_declared(None, 10), Ok(()));
        assert_eq!(check_declared(Some("10"), 10), Ok(()));
        assert_eq!(check_declared(Some(" 0 "), 10), Ok(()));
        assert_eq!(check_declared(Some("11"), 10), Err(BodyRefusal::TooLarge { cap: 10 }));
        assert_eq!(check_declared(Some("99999999999999999999999"), 10), Err(BodyRefusal::TooLarge { cap: 10 }));
        for bad in ["", "-1", "1e3", "0x10", "10, 10", "ten"] {
            assert_eq!(check_declared(Some(bad), 10), Err(BodyRefusal::BadLength), "{bad:?}");
        }
    }

    #[test]
    fn a_body_longer_than_it_said_is_refused_as_soon_as_it_passes_the_cap() {
        let mut body = CappedBody::new(10);
        assert_eq!(body.push(b"12345"), Ok(()));
        assert_eq!(body.push(b"67890"), Ok(()));
        assert_eq!(body.push(b"1"), Err(BodyRefusal::TooLarge { cap: 10 }));
        let mut exact = CappedBody::new(4);
        exact.push(b"ab").unwrap();
        exact.push(b"cd").unwrap();
        assert_eq!(exact.into_bytes(), b"abcd");
    }

    #[test]
    fn refusals_are_413_or_400_problems() {
        let p = BodyRefusal::TooLarge { cap: 64 }.error().problem();
        assert_eq!(p.status(), 413);
        assert_eq!(p.extra.get("limit_bytes").and_then(|v| v.as_u64()), Some(64));
        assert_eq!(BodyRefusal::BadLength.error().problem().status(), 400);
    }
}
