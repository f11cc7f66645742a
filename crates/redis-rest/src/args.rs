//! Request bodies and paths → commands (`docs/upstash-rest-protocol.md` §1, §3). JSON numbers reach Redis as their
//! literal text (`1e21`, `0.30000000000000004` and 20-digit integers survive), so this is a small
//! purpose-built JSON reader instead of a round trip through `f64`; unescaped strings are
//! sliced out of the body without copying.

use bytes::Bytes;

use crate::command::Command;
use crate::percent;

/// Largest accepted request body (Upstash: "10 MB"; uprest and this server: 10 MiB).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Why a request could not be turned into commands; every variant is a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("ERR invalid JSON in request body at byte {offset}: {reason}")]
    Json { offset: usize, reason: &'static str },
    #[error("ERR request body must be a JSON array: [\"CMD\", arg, ...]")]
    NotACommand,
    #[error("ERR request body must be a JSON array of commands: [[\"CMD\", arg, ...], ...]")]
    NotABatch,
    #[error("ERR empty command")]
    EmptyCommand,
    #[error("ERR empty pipeline or transaction")]
    EmptyBatch,
    #[error("ERR command name must be a string")]
    NameNotString,
    #[error("ERR invalid command argument: {0} is not allowed (use strings, numbers or booleans)")]
    BadArgument(&'static str),
    #[error("ERR max request size exceeded")]
    TooLarge,
    #[error("ERR request body not received within {0} s")]
    BodyTimeout(u64),
}

/// Parses `POST /` bodies: `["CMD", arg, …]`.
pub fn parse_command(body: &Bytes) -> Result<Command, ArgsError> {
    let mut r = Reader::new(body)?;
    r.ws();
    if r.peek() != Some(b'[') {
        return Err(ArgsError::NotACommand);
    }
    let cmd = r.command()?;
    r.end()?;
    Ok(cmd)
}

/// Parses `/pipeline` and `/multi-exec` bodies: a non-empty array of commands.
pub fn parse_batch(body: &Bytes) -> Result<Vec<Command>, ArgsError> {
    let mut r = Reader::new(body)?;
    r.ws();
    if r.peek() != Some(b'[') {
        return Err(ArgsError::NotABatch);
    }
    r.pos += 1;
    r.ws();
    if r.peek() == Some(b']') {
        return Err(ArgsError::EmptyBatch);
    }
    let mut cmds = Vec::new();
    loop {
        r.ws();
        if r.peek() != Some(b'[') {
            return Err(ArgsError::NotABatch);
        }
        cmds.push(r.command()?);
        r.ws();
        match r.next() {
            Some(b',') => continue,
            Some(b']') => break,
            _ => return Err(r.err("expected ',' or ']' after a command")),
        }
    }
    r.end()?;
    Ok(cmds)
}

/// Builds a path-form command: `/CMD/arg…` (percent-decoded segments), then the raw body as one
/// more argument when it is non-empty, then query parameters as `name [value]` (`_token` never).
pub fn parse_path(path: &str, query: Option<&str>, body: Option<Bytes>) -> Result<Command, ArgsError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let mut segments = trimmed.split('/');
    let name = match segments.next() {
        Some(s) if !s.is_empty() => Bytes::from(percent::decode(s, false)),
        _ => return Err(ArgsError::EmptyCommand),
    };
    let mut args: Vec<Bytes> = segments.map(|s| Bytes::from(percent::decode(s, false))).collect();
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        args.push(body);
    }
    if let Some(query) = query {
        for (key, value) in percent::query_pairs(query) {
            if key == b"_token" {
                continue;
            }
            args.push(Bytes::from(key));
            if !value.is_empty() {
                args.push(Bytes::from(value));
            }
        }
    }
    Ok(Command::new(name, args))
}

enum Element {
    Str(Bytes),
    Other(Bytes),
}

struct Reader<'a> {
    body: &'a Bytes,
    s: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(body: &'a Bytes) -> Result<Self, ArgsError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ArgsError::TooLarge);
        }
        // JSON text is UTF-8; checking once lets the string scanner copy bytes verbatim.
        if let Err(e) = std::str::from_utf8(body) {
            return Err(ArgsError::Json { offset: e.valid_up_to(), reason: "body is not valid UTF-8" });
        }
        Ok(Self { body, s: body, pos: 0 })
    }

    fn err(&self, reason: &'static str) -> ArgsError {
        ArgsError::Json { offset: self.pos, reason }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn end(&mut self) -> Result<(), ArgsError> {
        self.ws();
        if self.pos == self.s.len() {
            Ok(())
        } else {
            Err(self.err("unexpected data after the JSON value"))
        }
    }

    /// Reads `[name, arg…]`; the reader stands on the `[`.
    fn command(&mut self) -> Result<Command, ArgsError> {
        self.pos += 1;
        self.ws();
        let name = match self.peek() {
            Some(b']') => return Err(ArgsError::EmptyCommand),
            Some(b'"') => match self.element()? {
                Element::Str(s) => s,
                Element::Other(_) => return Err(ArgsError::NameNotString),
            },
            Some(_) => return Err(ArgsError::NameNotString),
            None => return Err(self.err("unexpected end of input")),
        };
        let mut args = Vec::new();
        loop {
            self.ws();
            match self.next() {
                Some(b',') => {}
                Some(b']') => return Ok(Command::new(name, args)),
                _ => return Err(self.err("expected ',' or ']' in a command")),
            }
            self.ws();
            args.push(match self.element()? {
                Element::Str(s) | Element::Other(s) => s,
            });
        }
    }

    fn element(&mut self) -> Result<Element, ArgsError> {
        match self.peek() {
            Some(b'"') => self.string().map(Element::Str),
            Some(b'-' | b'0'..=b'9') => self.number().map(Element::Other),
            Some(b't') => self.literal("true").map(Element::Other),
            Some(b'f') => self.literal("false").map(Element::Other),
            Some(b'n') => {
                self.literal("null")?;
                Err(ArgsError::BadArgument("null"))
            }
            Some(b'{') => Err(ArgsError::BadArgument("an object")),
            Some(b'[') => Err(ArgsError::BadArgument("a nested array")),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<Bytes, ArgsError> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(Bytes::from_static(word.as_bytes()))
        } else {
            Err(self.err("invalid literal"))
        }
    }

    /// A JSON number, returned as its exact literal text.
    fn number(&mut self) -> Result<Bytes, ArgsError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("invalid number: digit expected after '.'"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("invalid number: digit expected in exponent"));
            }
            self.digits();
        }
        Ok(self.body.slice(start..self.pos))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// A JSON string as UTF-8 bytes; the reader stands on the opening quote.
    fn string(&mut self) -> Result<Bytes, ArgsError> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b'"') => {
                    let out = self.body.slice(start..self.pos);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => return Err(self.err("control character in string")),
                Some(_) => self.pos += 1,
                None => return Err(self.err("unterminated string")),
            }
        }
        // Slow path: the string has escapes.
        let mut out = self.s[start..self.pos].to_vec();
        loop {
            match self.next() {
                Some(b'"') => return Ok(Bytes::from(out)),
                Some(b'\\') => self.escape(&mut out)?,
                Some(0..=0x1f) => {
                    self.pos -= 1;
                    return Err(self.err("control character in string"));
                }
                Some(c) => out.push(c),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), ArgsError> {
        let simple = match self.next() {
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let ch = self.unicode_escape()?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(self.err("invalid escape in string")),
        };
        out.push(simple);
        Ok(())
    }

    /// After `\u`: four hex digits, combining a surrogate pair when one follows. A lone
    /// surrogate (which `JSON.stringify` can emit) becomes U+FFFD rather than an error.
    fn unicode_escape(&mut self) -> Result<char, ArgsError> {
        let first = self.hex4()?;
        match first {
            0xD800..=0xDBFF => {
                let rest = &self.s[self.pos..];
                if rest.len() >= 6 && rest[0] == b'\\' && rest[1] == b'u' {
                    let save = self.pos;
                    self.pos += 2;
                    let second = self.hex4()?;
                    if (0xDC00..=0xDFFF).contains(&second) {
                        let cp = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        return Ok(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    self.pos = save;
                }
                Ok(char::REPLACEMENT_CHARACTER)
            }
            _ => Ok(char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER)),
        }
    }

    fn hex4(&mut self) -> Result<u32, ArgsError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = match self.next() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("invalid \\u escape")),
            };
            value = value << 4 | u32::from(digit);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(json: &str) -> Result<Vec<Vec<u8>>, ArgsError> {
        parse_command(&Bytes::copy_from_slice(json.as_bytes())).map(flatten)
    }

    fn flatten(c: Command) -> Vec<Vec<u8>> {
        std::iter::once(c.name()).chain(c.args()).map(|b| b.to_vec()).collect()
    }

    fn strs(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn numbers_keep_their_literal_text() {
        assert_eq!(cmd(r#"["SET","n",1e21]"#), Ok(strs(&["SET", "n", "1e21"])));
        assert_eq!(cmd(r#"["SET","n",0.30000000000000004]"#), Ok(strs(&["SET", "n", "0.30000000000000004"])));
        assert_eq!(cmd(r#"["SET","n",12345678901234567890123]"#), Ok(strs(&["SET", "n", "12345678901234567890123"])));
        assert_eq!(
            cmd(r#"["ZADD","z",-1.50E+3,"m",1e-7,"x",0]"#),
            Ok(strs(&["ZADD", "z", "-1.50E+3", "m", "1e-7", "x", "0"]))
        );
    }

    #[test]
    fn booleans_become_their_names() {
        assert_eq!(cmd(r#"["SET","b",true,false]"#), Ok(strs(&["SET", "b", "true", "false"])));
    }

    #[test]
    fn strings_are_unescaped_to_utf8() {
        assert_eq!(
            cmd(r#"["set", "k\"\\\/\b\f\n\r\t", "\u00e9\ud83d\ude00✓"]"#),
            Ok(vec![b"set".to_vec(), b"k\"\\/\x08\x0c\n\r\t".to_vec(), "é😀✓".as_bytes().to_vec()])
        );
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        assert_eq!(
            cmd(r#"["SET","\ud800x","\udc00\ud800\u0041"]"#),
            Ok(strs(&["SET", "\u{fffd}x", "\u{fffd}\u{fffd}A"]))
        );
    }

    #[test]
    fn rejects_non_scalar_arguments() {
        assert_eq!(cmd(r#"["SET","k",null]"#), Err(ArgsError::BadArgument("null")));
        assert_eq!(cmd(r#"["SET","k",{"a":1}]"#), Err(ArgsError::BadArgument("an object")));
        assert_eq!(cmd(r#"["SET","k",["v"]]"#), Err(ArgsError::BadArgument("a nested array")));
    }

    #[test]
    fn rejects_empty_commands_and_non_string_names() {
        assert_eq!(cmd("[]"), Err(ArgsError::EmptyCommand));
        assert_eq!(cmd(" [ ] "), Err(ArgsError::EmptyCommand));
        assert_eq!(cmd("[42]"), Err(ArgsError::NameNotString));
        assert_eq!(cmd("[true]"), Err(ArgsError::NameNotString));
        assert_eq!(cmd(r#"[["GET","k"]]"#), Err(ArgsError::NameNotString));
        assert_eq!(cmd(r#"{"cmd":"GET"}"#), Err(ArgsError::NotACommand));
        assert_eq!(cmd(""), Err(ArgsError::NotACommand));
    }

    #[test]
    fn rejects_malformed_json() {
        for bad in [
            r#"["GET","k""#,
            r#"["GET" "k"]"#,
            r#"["GET","k",]"#,
            r#"["GET","k"] x"#,
            r#"["GET",01]"#,
            r#"["GET",1.]"#,
            r#"["GET",1e]"#,
            r#"["GET",-]"#,
            r#"["GET",+1]"#,
            r#"["GET",tru]"#,
            r#"["GET","\x"]"#,
            r#"["GET","\u12"]"#,
            "[\"GET\",\"a\u{1}b\"]",
        ] {
            assert!(matches!(cmd(bad), Err(ArgsError::Json { .. })), "{bad}: {:?}", cmd(bad));
        }
    }

    #[test]
    fn rejects_invalid_utf8() {
        let body = Bytes::from_static(b"[\"GET\",\"\xff\"]");
        assert!(matches!(parse_command(&body), Err(ArgsError::Json { offset: 8, .. })));
    }

    #[test]
    fn batches_are_non_empty_arrays_of_commands() {
        let body = Bytes::from_static(br#" [ ["SET","a",1] , ["get","a"] ] "#);
        let cmds: Vec<_> = parse_batch(&body).expect("valid").into_iter().map(flatten).collect();
        assert_eq!(cmds, vec![strs(&["SET", "a", "1"]), strs(&["get", "a"])]);
        assert_eq!(parse_batch(&Bytes::from_static(b"[]")), Err(ArgsError::EmptyBatch));
        assert_eq!(parse_batch(&Bytes::from_static(br#"["GET","a"]"#)), Err(ArgsError::NotABatch));
        assert_eq!(parse_batch(&Bytes::from_static(br#"[["GET","a"],[]]"#)), Err(ArgsError::EmptyCommand));
        assert_eq!(parse_batch(&Bytes::from_static(br#"[["GET",null]]"#)), Err(ArgsError::BadArgument("null")));
    }

    #[test]
    fn rejects_oversized_bodies() {
        let body = Bytes::from(vec![b' '; MAX_BODY_BYTES + 1]);
        assert_eq!(parse_command(&body), Err(ArgsError::TooLarge));
    }

    #[test]
    fn path_form_decodes_segments_then_body_then_query() {
        let c = parse_path("/set/a%2Fb/", Some("EX=100&_token=secret&NX"), Some(Bytes::from_static(b"{\"a\":1}")))
            .expect("valid");
        assert_eq!(flatten(c), strs(&["set", "a/b", "{\"a\":1}", "EX", "100", "NX"]));
        let c = parse_path("/get/k", None, Some(Bytes::new())).expect("valid");
        assert_eq!(flatten(c), strs(&["get", "k"]));
        let c = parse_path("/set/k//%ff", None, None).expect("valid");
        assert_eq!(flatten(c), vec![b"set".to_vec(), b"k".to_vec(), Vec::new(), vec![0xff]]);
        assert_eq!(parse_path("/", None, None), Err(ArgsError::EmptyCommand));
        assert_eq!(parse_path("//x", None, None), Err(ArgsError::EmptyCommand));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let body = Bytes::from(body);
                let _ = parse_command(&body);
                let _ = parse_batch(&body);
            }

            #[test]
            fn strings_round_trip_through_a_real_json_serializer(
                name in "[a-zA-Z]{1,8}",
                args in proptest::collection::vec(any::<String>(), 0..6),
            ) {
                let mut all = vec![name];
                all.extend(args);
                let json = serde_json::to_vec(&all).unwrap_or_default();
                let parsed = parse_command(&Bytes::from(json)).map(flatten);
                let expected: Vec<Vec<u8>> = all.iter().map(|a| a.as_bytes().to_vec()).collect();
                prop_assert_eq!(parsed, Ok(expected));
            }

            #[test]
            fn integers_and_floats_keep_serde_json_text(i in any::<i64>(), f in any::<f64>()) {
                prop_assume!(f.is_finite());
                let (i_text, f_text) = (serde_json::to_string(&i), serde_json::to_string(&f));
                let (i_text, f_text) = (i_text.unwrap_or_default(), f_text.unwrap_or_default());
                let json = format!(r#"["SET",{i_text},{f_text}]"#);
                let parsed = parse_command(&Bytes::from(json)).map(flatten);
                let expected = vec![b"SET".to_vec(), i_text.into_bytes(), f_text.into_bytes()];
                prop_assert_eq!(parsed, Ok(expected));
            }

            #[test]
            fn path_segments_round_trip_percent_encoding(
                args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..12), 1..5),
            ) {
                let path: String = std::iter::once("/get".to_owned())
                    .chain(args.iter().map(|a| {
                        let enc: String = a.iter().map(|b| format!("%{b:02X}")).collect();
                        format!("/{enc}")
                    }))
                    .collect();
                let c = parse_path(&path, None, None).map(flatten);
                let mut expected = vec![b"get".to_vec()];
                expected.extend(args.iter().cloned());
                prop_assert_eq!(c, Ok(expected));
            }
        }
    }
}
