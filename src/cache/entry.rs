//! The cache entry envelope: what is stored in Redis for one response, and its strict decoding.
//!
//! A value is `tgc1:` + a small JSON header + `\n` + the body in standard base64, the body
//! zlib-compressed when it is large enough and compression pays. Decoding trusts nothing: the
//! header's size, every field, the body's declared length and the decompressed size are checked,
//! and decompression stops at the declared length (never above the caller's cap), so a corrupted
//! or hostile value costs at most that much memory and is reported as an error, never served.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the envelope; a value of another version is a miss (and is overwritten).
pub const ENTRY_FORMAT: u8 = 1;

/// Absolute cap on a decoded body, bytes (Upstash refuses requests above 10 MB, so no value can
/// legitimately be larger); [`Entry::decode`] callers usually pass the policy's smaller limit.
pub const MAX_DECODED_BODY_BYTES: u32 = 10 * 1024 * 1024;

/// Response headers stored with an entry and replayed on hits (lower case). `Set-Cookie` never is.
pub const REPLAYED_HEADERS: [&str; 4] = ["content-language", "content-disposition", "last-modified", "link"];

/// Marks a value as an entry of this format.
const MAGIC: &[u8] = b"tgc1:";
/// Longest JSON header accepted, bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most tags one entry may carry.
const MAX_TAGS: usize = 64;
/// zlib level: a fast setting, since compression runs inside a request's CPU budget.
const COMPRESSION_LEVEL: u8 = 3;

/// One cached response and what the cache knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Envelope version ([`ENTRY_FORMAT`]).
    pub format_version: u8,
    /// HTTP status, always 2xx (never 206).
    pub status: u16,
    /// The response body, uncompressed.
    pub body: Vec<u8>,
    /// The origin's `Content-Type`, if it sent one.
    pub content_type: Option<String>,
    /// Strong ETag of the body, quoted (see [`super::http::etag_for`]).
    pub etag: String,
    /// When the entry was stored, Unix ms.
    pub stored_ms: u64,
    /// Served as fresh before this instant, Unix ms.
    pub fresh_until_ms: u64,
    /// Served as stale before this instant (Redis drops the value then too), Unix ms.
    pub stale_until_ms: u64,
    /// How long the origin fetch took, ms (the Δ of XFetch early refresh).
    pub fetch_ms: u32,
    /// Generation of the cache namespace when the entry was filled.
    pub generation: u64,
    /// Tags for invalidation by tag.
    pub tags: Vec<String>,
    /// Headers replayed on hits, lower-case names (only those of [`REPLAYED_HEADERS`]).
    pub headers: Vec<(String, String)>,
}

/// Why a stored value is not a usable entry (each one makes the read a miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EntryError {
    /// The value does not start with the envelope's marker.
    #[error("not a cache entry")]
    NotAnEntry,
    /// The header is missing, too long, not JSON, or has unknown fields.
    #[error("bad entry header")]
    BadHeader,
    /// The envelope version is not [`ENTRY_FORMAT`].
    #[error("unsupported entry format {0}")]
    UnsupportedVersion(u8),
    /// A header field is out of range (status not 2xx, times out of order, forbidden header).
    #[error("invalid entry field: {0}")]
    Invalid(&'static str),
    /// The body is (or claims to be) larger than the cap.
    #[error("entry body too large")]
    TooLarge,
    /// The body is not valid base64.
    #[error("entry body is not base64")]
    BadBase64,
    /// The compressed body does not inflate (corrupt, truncated, or above its declared size).
    #[error("entry body does not decompress")]
    BadCompression,
    /// The body's length differs from the declared length (a truncated value).
    #[error("entry body length mismatch")]
    LengthMismatch,
}

/// The JSON header, with short field names to keep values small.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    v: u8,
    s: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ct: Option<String>,
    et: String,
    st: u64,
    fu: u64,
    su: u64,
    fd: u32,
    g: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    t: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    h: Vec<(String, String)>,
    /// Whether the body is zlib-compressed.
    z: bool,
    /// Length of the uncompressed body, bytes.
    n: u32,
}

impl Entry {
    /// Whether the entry may be served as fresh at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }

    /// Whether the entry may still be served, fresh or stale, at `now_ms`.
    pub fn is_servable(&self, now_ms: u64) -> bool {
        now_ms < self.stale_until_ms
    }

    /// Encodes the entry as a Redis string value, compressing bodies of at least
    /// `compress_min_bytes` when that makes them smaller.
    pub fn encode(&self, compress_min_bytes: u32) -> String {
        let mut compressed = false;
        let mut payload = None;
        if !self.body.is_empty() && self.body.len() >= compress_min_bytes as usize {
            let z = miniz_oxide::deflate::compress_to_vec_zlib(&self.body, COMPRESSION_LEVEL);
            if z.len() < self.body.len() {
                compressed = true;
                payload = Some(z);
            }
        }
        let header = Header {
            v: self.format_version,
            s: self.status,
            ct: self.content_type.clone(),
            et: self.etag.clone(),
            st: self.stored_ms,
            fu: self.fresh_until_ms,
            su: self.stale_until_ms,
            fd: self.fetch_ms,
            g: self.generation,
            t: self.tags.clone(),
            h: self.headers.clone(),
            z: compressed,
            n: u32::try_from(self.body.len()).unwrap_or(u32::MAX),
        };
        // Serializing a struct of strings and integers cannot fail; an empty header would
        // only make the value undecodable (a miss), never wrong.
        let json = serde_json::to_string(&header).unwrap_or_default();
        let body = payload.as_deref().unwrap_or(&self.body);
        let mut out = String::with_capacity(MAGIC.len() + json.len() + 1 + body.len().div_ceil(3) * 4);
        out.push_str("tgc1:");
        out.push_str(&json);
        out.push('\n');
        STANDARD.encode_string(body, &mut out);
        out
    }

    /// Decodes and validates a stored value; bodies above `max_body_bytes` (itself capped at
    /// [`MAX_DECODED_BODY_BYTES`]) are refused before any large allocation.
    pub fn decode(value: &[u8], max_body_bytes: u32) -> Result<Entry, EntryError> {
        let max_body = max_body_bytes.min(MAX_DECODED_BODY_BYTES);
        let rest = value.strip_prefix(MAGIC).ok_or(EntryError::NotAnEntry)?;
        let window = &rest[..rest.len().min(MAX_HEADER_BYTES + 1)];
        let newline = window.iter().position(|&b| b == b'\n').ok_or(EntryError::BadHeader)?;
        let (json, encoded) = (&rest[..newline], &rest[newline + 1..]);
        let h: Header = serde_json::from_slice(json).map_err(|_| EntryError::BadHeader)?;
        if h.v != ENTRY_FORMAT {
            return Err(EntryError::UnsupportedVersion(h.v));
        }
        validate_header(&h)?;
        if h.n > max_body {
            return Err(EntryError::TooLarge);
        }
        let declared = h.n as usize;
        // A compressed body is stored only when smaller than the original, so its base64 is
        // never longer than the original's would be: this bounds the allocation below.
        if encoded.len() > declared.div_ceil(3) * 4 {
            return Err(EntryError::TooLarge);
        }
        let raw = STANDARD.decode(encoded).map_err(|_| EntryError::BadBase64)?;
        let body = if h.z {
            miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&raw, declared)
                .map_err(|_| EntryError::BadCompression)?
        } else {
            raw
        };
        if body.len() != declared {
            return Err(EntryError::LengthMismatch);
        }
        Ok(Entry {
            format_version: h.v,
            status: h.s,
            body,
            content_type: h.ct,
            etag: h.et,
            stored_ms: h.st,
            fresh_until_ms: h.fu,
            stale_until_ms: h.su,
            fetch_ms: h.fd,
            generation: h.g,
            tags: h.t,
            headers: h.h,
        })
    }
}

/// Field checks that do not depend on the body.
fn validate_header(h: &Header) -> Result<(), EntryError> {
    if !(200..=299).contains(&h.s) || h.s == 206 {
        return Err(EntryError::Invalid("status"));
    }
    if !(h.st <= h.fu && h.fu <= h.su) {
        return Err(EntryError::Invalid("times"));
    }
    if h.et.is_empty() {
        return Err(EntryError::Invalid("etag"));
    }
    if h.t.len() > MAX_TAGS {
        return Err(EntryError::Invalid("tags"));
    }
    if h.h.iter().any(|(name, _)| !REPLAYED_HEADERS.contains(&name.as_str())) {
        return Err(EntryError::Invalid("headers"));
    }
    let printable = |s: &str| s.chars().all(|c| c == '\t' || !c.is_control());
    if !h.h.iter().all(|(_, v)| printable(v)) || !h.ct.as_deref().is_none_or(printable) || !printable(&h.et) {
        return Err(EntryError::Invalid("header value"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid entry with `body`, stored at 1000 ms, fresh until 2000, stale until 3000.
    pub(crate) fn sample(body: &[u8]) -> Entry {
        Entry {
            format_version: ENTRY_FORMAT,
            status: 200,
            body: body.to_vec(),
            content_type: Some("application/json".into()),
            etag: crate::cache::http::etag_for(body),
            stored_ms: 1000,
            fresh_until_ms: 2000,
            stale_until_ms: 3000,
            fetch_ms: 40,
            generation: 3,
            tags: vec!["config".into()],
            headers: vec![("content-language".into(), "en".into())],
        }
    }

    #[test]
    fn round_trips_a_small_body_uncompressed() {
        let e = sample(br#"{"a":1}"#);
        let v = e.encode(1024);
        assert!(v.starts_with("tgc1:{"));
        assert!(v.contains("\"z\":false"));
        assert_eq!(Entry::decode(v.as_bytes(), 1 << 20), Ok(e));
    }

    #[test]
    fn round_trips_a_large_body_compressed_and_smaller() {
        let body = br#"{"feature":"on","items":[1,2,3]}"#.repeat(200);
        let e = sample(&body);
        let v = e.encode(256);
        assert!(v.contains("\"z\":true"));
        assert!(v.len() < body.len() / 4, "compressed value is {} bytes", v.len());
        assert_eq!(Entry::decode(v.as_bytes(), 1 << 20), Ok(e));
    }

    #[test]
    fn incompressible_bodies_are_stored_as_they_are() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let body: Vec<u8> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let e = sample(&body);
        let v = e.encode(16);
        assert!(v.contains("\"z\":false"));
        assert_eq!(Entry::decode(v.as_bytes(), 1 << 20), Ok(e));
    }

    #[test]
    fn binary_and_empty_bodies_round_trip() {
        for body in [&b""[..], &[0u8, 255, 10, 13, 0][..]] {
            let e = sample(body);
            assert_eq!(Entry::decode(e.encode(0).as_bytes(), 1 << 20), Ok(e));
        }
    }

    #[test]
    fn truncated_values_are_rejected_at_every_length() {
        for compress_min in [0, 1 << 20] {
            let v = sample(&b"hello world, hello cache ".repeat(40)).encode(compress_min);
            for cut in 0..v.len() {
                assert!(Entry::decode(&v.as_bytes()[..cut], 1 << 20).is_err(), "cut at {cut} of {}", v.len());
            }
        }
    }

    #[test]
    fn corrupted_values_are_rejected() {
        let v = sample(&b"abcdefgh".repeat(100)).encode(0);
        let (head, body) = v.split_once('\n').unwrap();
        let cases = [
            b"garbage".to_vec(),
            b"tgc1:".to_vec(),
            b"tgc1:not json\nAAAA".to_vec(),
            v.replacen("\"v\":1", "\"v\":2", 1).into_bytes(),
            v.replacen("\"s\":200", "\"s\":500", 1).into_bytes(),
            v.replacen("\"s\":200", "\"s\":206", 1).into_bytes(),
            v.replacen("\"fu\":2000", "\"fu\":9000", 1).into_bytes(),
            v.replacen("content-language", "set-cookie", 1).into_bytes(),
            v.replacen("\"n\":800", "\"n\":801", 1).into_bytes(),
            v.replacen("\"n\":800", "\"n\":799", 1).into_bytes(),
            v.replacen("\"g\":3", "\"g\":3,\"extra\":1", 1).into_bytes(),
            format!("{head}\n!{}", &body[1..]).into_bytes(),
            format!("{head}\n{}", &body[4..]).into_bytes(),
            format!("{head}\n{}", body.replace(&body[8..12], "AAAA")).into_bytes(),
        ];
        for (i, case) in cases.iter().enumerate() {
            assert!(Entry::decode(case, 1 << 20).is_err(), "case {i} decoded: {}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_grows() {
        // 8 MiB of zeros compresses to a few KiB; a header claiming a small size must not inflate it.
        let zeros = vec![0u8; 8 << 20];
        let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&zeros, 6);
        let lying = format!(
            "tgc1:{{\"v\":1,\"s\":200,\"et\":\"\\\"x\\\"\",\"st\":0,\"fu\":1,\"su\":2,\"fd\":0,\"g\":0,\"z\":true,\"n\":{}}}\n{}",
            bomb.len() * 2,
            STANDARD.encode(&bomb)
        );
        assert_eq!(Entry::decode(lying.as_bytes(), 1 << 20), Err(EntryError::BadCompression));
        let honest = lying.replacen(&format!("\"n\":{}", bomb.len() * 2), &format!("\"n\":{}", 8 << 20), 1);
        assert_eq!(Entry::decode(honest.as_bytes(), 1 << 20), Err(EntryError::TooLarge));
    }

    #[test]
    fn bodies_over_the_cap_are_refused() {
        let v = sample(&[b'x'; 5000]).encode(1 << 20);
        assert_eq!(Entry::decode(v.as_bytes(), 4999), Err(EntryError::TooLarge));
        assert!(Entry::decode(v.as_bytes(), 5000).is_ok());
    }

    #[test]
    fn freshness_follows_the_recorded_instants() {
        let e = sample(b"x");
        assert!(e.is_fresh(1999) && !e.is_fresh(2000));
        assert!(e.is_servable(2999) && !e.is_servable(3000));
    }
}
