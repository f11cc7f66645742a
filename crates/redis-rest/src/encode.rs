//! RESP2 replies → Upstash JSON (`docs/upstash-rest-protocol.md` §4, §6). With `Upstash-Encoding: base64` every string at
//! every depth is base64 except a top-level simple-string `OK`; integers, nulls and errors never
//! are. Without it, strings are UTF-8 with invalid bytes replaced by U+FFFD.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::resp::Reply;

/// How strings in results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Base64,
}

impl Encoding {
    /// From the `Upstash-Encoding` header value (case-insensitive `base64`; anything else: none).
    pub fn from_header(value: Option<&[u8]>) -> Self {
        match value {
            Some(v) if v.eq_ignore_ascii_case(b"base64") => Encoding::Base64,
            _ => Encoding::Utf8,
        }
    }
}

/// Writes `{"result":…}` or, for an error reply, `{"error":…}`. Returns true for an error.
pub fn write_entry(out: &mut String, reply: &Reply, enc: Encoding) -> bool {
    if let Reply::Error(msg) = reply {
        write_error(out, &String::from_utf8_lossy(msg));
        return true;
    }
    out.push_str("{\"result\":");
    write_value(out, reply, enc, true);
    out.push('}');
    false
}

/// Writes `{"error":"…"}`; error texts are never base64-encoded.
pub fn write_error(out: &mut String, message: &str) {
    out.push_str("{\"error\":");
    write_str(out, message);
    out.push('}');
}

/// Writes one result value. `top_level` is true for the `result` of a response or of a
/// pipeline/transaction entry: only there does a simple `OK` stay unencoded.
///
/// An error nested inside an array (a Lua table holding `redis.error_reply`) has no JSON form
/// in the protocol; it is written as a string, so both official decoders still accept it.
pub fn write_value(out: &mut String, reply: &Reply, enc: Encoding, top_level: bool) {
    match reply {
        Reply::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Reply::Nil => out.push_str("null"),
        Reply::Simple(s) if top_level && &s[..] == b"OK" => out.push_str("\"OK\""),
        Reply::Simple(s) | Reply::Bulk(s) | Reply::Error(s) => write_bytes(out, s, enc),
        Reply::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, enc, false);
            }
            out.push(']');
        }
    }
}

fn write_bytes(out: &mut String, bytes: &[u8], enc: Encoding) {
    match enc {
        Encoding::Base64 => {
            out.push('"');
            STANDARD.encode_string(bytes, out);
            out.push('"');
        }
        Encoding::Utf8 => write_str(out, &String::from_utf8_lossy(bytes)),
    }
}

/// Writes `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        // Every byte escaped is ASCII, so `start..i` falls on character boundaries.
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }
    fn simple(s: &str) -> Reply {
        Reply::Simple(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn entry(reply: &Reply, enc: Encoding) -> String {
        let mut out = String::new();
        write_entry(&mut out, reply, enc);
        out
    }

    #[test]
    fn only_a_top_level_simple_ok_escapes_base64() {
        assert_eq!(entry(&simple("OK"), Encoding::Base64), r#"{"result":"OK"}"#);
        assert_eq!(entry(&bulk("OK"), Encoding::Base64), r#"{"result":"T0s="}"#);
        assert_eq!(entry(&simple("PONG"), Encoding::Base64), r#"{"result":"UE9ORw=="}"#);
        assert_eq!(entry(&Reply::Array(vec![simple("OK")]), Encoding::Base64), r#"{"result":["T0s="]}"#);
    }

    #[test]
    fn base64_applies_at_every_depth_but_never_to_numbers_nulls_or_errors() {
        let reply = Reply::Array(vec![Reply::Integer(1), bulk("a"), Reply::Array(vec![bulk("b"), Reply::Nil])]);
        assert_eq!(entry(&reply, Encoding::Base64), r#"{"result":[1,"YQ==",["Yg==",null]]}"#);
        let err = Reply::Error(Bytes::from_static(b"ERR value is not an integer"));
        assert_eq!(entry(&err, Encoding::Base64), r#"{"error":"ERR value is not an integer"}"#);
    }

    #[test]
    fn hgetall_matches_the_worked_example() {
        let reply = Reply::Array(vec![bulk("f1"), bulk("v1"), bulk("f2"), bulk("2")]);
        assert_eq!(entry(&reply, Encoding::Base64), r#"{"result":["ZjE=","djE=","ZjI=","Mg=="]}"#);
        assert_eq!(entry(&reply, Encoding::Utf8), r#"{"result":["f1","v1","f2","2"]}"#);
    }

    #[test]
    fn binary_values_are_lossy_without_base64_and_exact_with_it() {
        let reply = Reply::Bulk(Bytes::from_static(b"\xff\xfe"));
        assert_eq!(entry(&reply, Encoding::Utf8), "{\"result\":\"\u{fffd}\u{fffd}\"}");
        assert_eq!(entry(&reply, Encoding::Base64), r#"{"result":"//4="}"#);
    }

    #[test]
    fn integers_keep_all_their_digits() {
        assert_eq!(entry(&Reply::Integer(i64::MIN), Encoding::Utf8), r#"{"result":-9223372036854775808}"#);
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = String::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\"");
    }

    #[test]
    fn header_value_is_case_insensitive() {
        assert_eq!(Encoding::from_header(Some(b"BASE64")), Encoding::Base64);
        assert_eq!(Encoding::from_header(Some(b"utf-8")), Encoding::Utf8);
        assert_eq!(Encoding::from_header(None), Encoding::Utf8);
    }
}
