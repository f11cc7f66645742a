//! The request path's JSON for the REST protocol, without a `serde_json::Value` in between:
//! commands written straight into the body, and the usual answers (`{"result": …}` objects with
//! base64 strings, integers, `null` and arrays) read straight into [`Reply`] values.
//!
//! The reader takes only what it is sure of and says `None` otherwise (an error entry, an
//! escape in a string, a fraction, a malformed body…); the caller then decodes the body with the
//! general decoder ([`super::decode`]), so every answer means exactly what it meant before, errors
//! and their messages included. Property tests beside the general decoder hold the two equal.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Arg, Command, RedisError, Reply};

/// Appends a command as a JSON array of strings and integers.
pub fn write_command(out: &mut String, cmd: &Command) {
    out.push('[');
    for (i, part) in cmd.parts().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match part {
            Arg::Str(s) => write_str(out, s),
            Arg::Int(n) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{n}");
            }
        }
    }
    out.push(']');
}

/// Several commands as one JSON array (the body of `/pipeline` and `/multi-exec`).
pub fn commands_json(cmds: &[Command]) -> String {
    let mut out = String::with_capacity(cmds.iter().map(|c| 16 + c.parts().len() * 24).sum());
    out.push('[');
    for (i, cmd) in cmds.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_command(&mut out, cmd);
    }
    out.push(']');
    out
}

/// One command as a JSON array (the body of `POST /`).
pub fn command_json(cmd: &Command) -> String {
    let mut out = String::with_capacity(16 + cmd.parts().len() * 24);
    write_command(&mut out, cmd);
    out
}

/// A JSON string literal.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The entries of a `/pipeline` answer with status 200 and `expected` entries, when every entry
/// is a plain `{"result": …}`; `None` leaves the body to the general decoder.
pub fn read_batch(body: &[u8], expected: usize) -> Option<Vec<Result<Reply, RedisError>>> {
    let mut r = Reader { bytes: body, at: 0 };
    r.expect(b'[')?;
    let mut out = Vec::with_capacity(expected);
    if !r.eat(b']') {
        loop {
            out.push(Ok(r.entry()?));
            if r.eat(b',') {
                continue;
            }
            r.expect(b']')?;
            break;
        }
    }
    r.end()?;
    (out.len() == expected).then_some(out)
}

/// The reply of a `POST /` answer with status 200 when it is a plain `{"result": …}`.
pub fn read_single(body: &[u8]) -> Option<Reply> {
    let mut r = Reader { bytes: body, at: 0 };
    let reply = r.entry()?;
    r.end()?;
    Some(reply)
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.skip_space();
        if self.bytes.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    fn end(&mut self) -> Option<()> {
        self.skip_space();
        (self.at == self.bytes.len()).then_some(())
    }

    /// `{"result": value}`.
    fn entry(&mut self) -> Option<Reply> {
        self.expect(b'{')?;
        self.skip_space();
        if self.raw_str()? != b"result" {
            return None;
        }
        self.expect(b':')?;
        let reply = self.value(true)?;
        self.expect(b'}')?;
        Some(reply)
    }

    fn value(&mut self, top_level: bool) -> Option<Reply> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'n' => {
                if self.bytes.get(self.at..self.at + 4)? == b"null" {
                    self.at += 4;
                    Some(Reply::Nil)
                } else {
                    None
                }
            }
            b'"' => {
                let text = self.raw_str()?;
                if top_level && text == b"OK" {
                    return Some(Reply::Ok);
                }
                // A string that is not base64 (a nested "OK", or a malformed one) is the general
                // decoder's to judge.
                STANDARD.decode(text).ok().map(Reply::Bulk)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Some(Reply::Array(items));
                }
                loop {
                    items.push(self.value(false)?);
                    if self.eat(b',') {
                        continue;
                    }
                    self.expect(b']')?;
                    return Some(Reply::Array(items));
                }
            }
            b'-' | b'0'..=b'9' => self.int().map(Reply::Int),
            _ => None,
        }
    }

    /// A JSON integer that fits an `i64` (no fraction, no exponent).
    fn int(&mut self) -> Option<i64> {
        let start = self.at;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let digits = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        let ok_digits = self.at > digits && !(self.bytes[digits] == b'0' && self.at - digits > 1);
        if !ok_digits || matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        std::str::from_utf8(&self.bytes[start..self.at]).ok()?.parse().ok()
    }

    /// A string literal without escapes, as its bytes.
    fn raw_str(&mut self) -> Option<&[u8]> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let len = self.bytes.get(start..)?.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some(&self.bytes[start..start + len])
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn commands_are_the_json_serde_writes(parts in proptest::collection::vec(prop_oneof![
            any::<String>().prop_map(Arg::Str), any::<i64>().prop_map(Arg::Int)], 1..8)) {
            let mut cmd = Command::new("EVALSHA");
            for p in parts { cmd = cmd.arg(p); }
            let ours: serde_json::Value = serde_json::from_str(&command_json(&cmd)).unwrap();
            prop_assert_eq!(ours, serde_json::to_value(&cmd).unwrap());
            let both = [cmd.clone(), Command::get("k")];
            let ours: serde_json::Value = serde_json::from_str(&commands_json(&both)).unwrap();
            prop_assert_eq!(ours, serde_json::to_value(&both).unwrap());
        }
    }

    #[test]
    fn unusual_answers_are_left_to_the_general_decoder() {
        for body in [
            r#"{"error":"ERR x"}"#,
            r#"{"result":"T0s=","extra":1}"#,
            r#"{"result":1.5}"#,
            r#"{"result":"a\u0041"}"#,
            r#"{"result":"not base64!"}"#,
            r#"{"result":["OK"]}"#,
            r#"{"result":01}"#,
            r#"{"result":{"a":1}}"#,
            r#"{"result":true}"#,
            r#"{"result":99999999999999999999}"#,
            r#"{"result":null} x"#,
        ] {
            assert_eq!(read_single(body.as_bytes()), None, "{body}");
        }
        assert_eq!(read_batch(br#"[{"result":1}]"#, 2), None, "a count that differs");
        assert_eq!(read_batch(br#"[{"result":1},{"error":"ERR"}]"#, 2), None);
    }

    #[test]
    fn usual_answers_are_read() {
        assert_eq!(read_single(br#" {"result" : "OK"} "#), Some(Reply::Ok));
        assert_eq!(
            read_single(br#"{"result":["T0s=",-3,null,[]]}"#),
            Some(Reply::Array(vec![Reply::Bulk(b"OK".to_vec()), Reply::Int(-3), Reply::Nil, Reply::Array(vec![])]))
        );
        assert_eq!(read_batch(b"[]", 0), Some(vec![]));
        assert_eq!(
            read_batch(br#"[{"result":0},{"result":"YmFy"}]"#, 2),
            Some(vec![Ok(Reply::Int(0)), Ok(Reply::Bulk(b"bar".to_vec()))])
        );
    }
}
