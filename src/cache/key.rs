//! Cache keys: which entry of a route's namespace a request maps to.
//!
//! - Path-keyed routes (`GET /api/config/{name}`): the captured parameters joined by `/`, plus
//!   `?` and the query's pairs sorted, kept readable (`app`, `eu/app?lang=de`) so operators can
//!   invalidate by glob pattern over names. Keys longer than [`MAX_READABLE_KEY`] bytes or with
//!   control characters become `#` + SHA-256 hex (then only exact or namespace invalidation
//!   reaches them).
//! - JSON-body routes (`POST /api/rag/context`): SHA-256 hex of the body's canonical form, so key
//!   order and insignificant whitespace do not change the key. Numbers are kept as written
//!   (`1` and `1.0` are different keys); strings are compared after unescaping (`"\u0041"` is `"A"`).
//!   Whatever else is forwarded on the fill is keyed too: the captured parameters come first and
//!   the query after the hash, as for path keys (`<hash>?tenant=x`), so a query cannot reach the
//!   origin without being in the key.
//! - Per-caller routes prefix the key with the caller's subject hash and `/`, and live in their
//!   own namespace (`<route>~caller`), so no crafted name on a shared route can ever reach a
//!   private entry, even after a route's scope is changed.

use thiserror::Error;

use crate::keys::sha256_hex;
use crate::policy::{CacheKeySource, CacheRule, CacheScope, RouteMatch};

/// Longest key kept readable, bytes; longer ones are hashed.
pub const MAX_READABLE_KEY: usize = 256;
/// Deepest JSON nesting accepted in a keyed body.
const MAX_DEPTH: usize = 64;

/// Why a request body cannot give a cache key (the edge answers `400` problem+json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The body is not UTF-8.
    #[error("request body is not UTF-8")]
    NotUtf8,
    /// The body is not JSON; `offset` is the byte where parsing failed.
    #[error("request body is not valid JSON (at byte {offset})")]
    InvalidJson {
        /// Byte offset of the error.
        offset: usize,
    },
    /// An object has the same member twice (its meaning would depend on the parser).
    #[error("request body has a duplicate member (at byte {offset})")]
    DuplicateMember {
        /// Byte offset of the second occurrence.
        offset: usize,
    },
    /// The body nests deeper than 64 levels.
    #[error("request body nests too deeply")]
    TooDeep,
}

/// The cache namespace of a route: its name, or `<name>~caller` for per-caller entries.
pub fn namespace(route_name: &str, scope: CacheScope) -> String {
    match scope {
        CacheScope::Global => route_name.to_owned(),
        CacheScope::Caller => format!("{route_name}~caller"),
    }
}

/// The cache key of a request to a route with `rule`: from the path match (parameters, then what
/// a trailing `*` matched) and query, or from the JSON body; scoped to `subject_hash` for
/// per-caller routes.
pub fn cache_key(
    rule: &CacheRule,
    route: &RouteMatch,
    query: Option<&str>,
    body: &[u8],
    subject_hash: &str,
) -> Result<String, KeyError> {
    let mut parts: Vec<&str> = route.params.iter().map(|(_, v)| v.as_str()).collect();
    if !route.rest.is_empty() {
        parts.push(&route.rest);
    }
    let body_hash;
    if rule.key == CacheKeySource::JsonBody {
        body_hash = json_body_key(body)?;
        parts.push(&body_hash);
    }
    Ok(scoped(rule.scope, subject_hash, &path_key(&parts, query)))
}

/// The key of a path-keyed request: `params` joined by `/`, then `?` and the query's `&`-separated
/// pairs sorted (an empty query adds nothing); hashed when not readable (see module docs).
pub fn path_key(params: &[&str], query: Option<&str>) -> String {
    let mut key = params.join("/");
    if let Some(q) = query {
        let mut pairs: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
        if !pairs.is_empty() {
            pairs.sort_unstable();
            key.push('?');
            key.push_str(&pairs.join("&"));
        }
    }
    if key.len() > MAX_READABLE_KEY || key.chars().any(char::is_control) {
        return format!("#{}", sha256_hex(key.as_bytes()));
    }
    key
}

/// The key of a JSON-body request: lowercase hex SHA-256 of [`canonical_json`].
pub fn json_body_key(body: &[u8]) -> Result<String, KeyError> {
    Ok(sha256_hex(canonical_json(body)?.as_bytes()))
}

/// `key` as stored for `scope`: unchanged for shared entries, `<subject_hash>/<key>` per caller.
pub fn scoped(scope: CacheScope, subject_hash: &str, key: &str) -> String {
    match scope {
        CacheScope::Global => key.to_owned(),
        CacheScope::Caller => format!("{subject_hash}/{key}"),
    }
}

/// The canonical form of a JSON document: objects with members sorted by name (byte order), no
/// insignificant whitespace, strings re-escaped the one way `serde_json` writes them, numbers as
/// written.
pub fn canonical_json(body: &[u8]) -> Result<String, KeyError> {
    let text = std::str::from_utf8(body).map_err(|_| KeyError::NotUtf8)?;
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let mut out = String::with_capacity(body.len());
    p.skip_ws();
    p.value(&mut out, 0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(p.invalid());
    }
    Ok(out)
}

/// A recursive-descent JSON parser that writes the canonical form as it goes.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn invalid(&self) -> KeyError {
        KeyError::InvalidJson { offset: self.i }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), KeyError> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<(), KeyError> {
        if depth > MAX_DEPTH {
            return Err(KeyError::TooDeep);
        }
        match self.peek() {
            Some(b'{') => self.object(out, depth),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => {
                let s = self.string()?;
                write_string(out, &s);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => self.number(out),
            Some(b't') => self.literal(out, "true"),
            Some(b'f') => self.literal(out, "false"),
            Some(b'n') => self.literal(out, "null"),
            _ => Err(self.invalid()),
        }
    }

    fn literal(&mut self, out: &mut String, word: &str) -> Result<(), KeyError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            out.push_str(word);
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    fn object(&mut self, out: &mut String, depth: usize) -> Result<(), KeyError> {
        self.eat(b'{')?;
        let mut members: Vec<(String, String, usize)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            out.push_str("{}");
            return Ok(());
        }
        loop {
            self.skip_ws();
            let at = self.i;
            let name = self.string()?;
            self.skip_ws();
            self.eat(b':')?;
            self.skip_ws();
            let mut value = String::new();
            self.value(&mut value, depth + 1)?;
            members.push((name, value, at));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.invalid()),
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        if let Some(w) = members.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(KeyError::DuplicateMember { offset: w[1].2 });
        }
        out.push('{');
        for (i, (name, value, _)) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(out, name);
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        Ok(())
    }

    fn array(&mut self, out: &mut String, depth: usize) -> Result<(), KeyError> {
        self.eat(b'[')?;
        out.push('[');
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            out.push(']');
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(out, depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    out.push(',');
                }
                Some(b']') => {
                    self.i += 1;
                    out.push(']');
                    return Ok(());
                }
                _ => return Err(self.invalid()),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, copied as written.
    fn number(&mut self, out: &mut String) -> Result<(), KeyError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.invalid()),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.require_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.require_digits()?;
        }
        // The slice is ASCII digits and signs: valid UTF-8 by construction.
        out.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.invalid())?);
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn require_digits(&mut self) -> Result<(), KeyError> {
        let start = self.i;
        self.digits();
        if self.i == start {
            Err(self.invalid())
        } else {
            Ok(())
        }
    }

    /// A string literal, unescaped.
    fn string(&mut self) -> Result<String, KeyError> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is a `str` and the run stops only at ASCII bytes: a char boundary.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.invalid())?);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    self.escape(&mut out)?;
                }
                _ => return Err(self.invalid()),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), KeyError> {
        let c = self.peek().ok_or_else(|| self.invalid())?;
        self.i += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if !self.s[self.i..].starts_with(b"\\u") {
                        return Err(self.invalid());
                    }
                    self.i += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.invalid());
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or_else(|| self.invalid())?
            }
            _ => return Err(self.invalid()),
        };
        out.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, KeyError> {
        let digits = self.s.get(self.i..self.i + 4).ok_or_else(|| self.invalid())?;
        let text = std::str::from_utf8(digits).map_err(|_| self.invalid())?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.invalid());
        }
        let code = u32::from_str_radix(text, 16).map_err(|_| self.invalid())?;
        self.i += 4;
        Ok(code)
    }
}

/// Writes `s` as a JSON string the way `serde_json` escapes it.
fn write_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonical_json(s.as_bytes()).unwrap()
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_key() {
        let a = r#"{"query":"refund policy","k":5,"filters":{"lang":"en","tags":["a","b"]}}"#;
        let b = "{ \"k\" : 5,\n\t\"filters\": {\"tags\": [ \"a\" , \"b\" ], \"lang\":\"en\"},  \"query\": \"refund policy\" }\r\n";
        assert_eq!(canon(a), canon(b));
        assert_eq!(json_body_key(a.as_bytes()), json_body_key(b.as_bytes()));
        assert_eq!(canon(a), r#"{"filters":{"lang":"en","tags":["a","b"]},"k":5,"query":"refund policy"}"#);
    }

    #[test]
    fn meaningful_differences_change_the_key() {
        let base = json_body_key(br#"{"q":"a","k":5}"#).unwrap();
        for other in
            [r#"{"q":"a","k":6}"#, r#"{"q":"A","k":5}"#, r#"{"q":"a","k":5.0}"#, r#"{"q":"a"}"#, r#"["q","a"]"#]
        {
            assert_ne!(json_body_key(other.as_bytes()).unwrap(), base, "{other}");
        }
        // Array order is meaningful.
        assert_ne!(canon("[1,2]"), canon("[2,1]"));
    }

    #[test]
    fn numbers_stay_as_written_and_strings_are_unescaped() {
        assert_eq!(canon("[1e21, -0.5E-3, 0, 12345678901234567890123]"), "[1e21,-0.5E-3,0,12345678901234567890123]");
        assert_eq!(canon(r#""\u0041\/\n""#), r#""A/\n""#);
        assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(canon(r#"{"é":1,"e":2,"z":3}"#), r#"{"e":2,"z":3,"é":1}"#);
        assert_eq!(canon("  true "), "true");
        assert_eq!(canon("{}"), "{}");
        assert_eq!(canon("[ ]"), "[]");
    }

    #[test]
    fn invalid_json_is_a_typed_error() {
        for bad in [
            "",
            " ",
            "{",
            "{\"a\":}",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            "\"a",
            "'a'",
            "{a:1}",
            "\"\u{1}\"",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "1 2",
            "[1]]",
            "NaN",
            "\"\\u12\"",
        ] {
            assert!(matches!(canonical_json(bad.as_bytes()), Err(KeyError::InvalidJson { .. })), "{bad:?}");
        }
        assert_eq!(canonical_json(b"\xff"), Err(KeyError::NotUtf8));
        assert!(matches!(canonical_json(br#"{"a":1,"b":2,"a":3}"#), Err(KeyError::DuplicateMember { offset: 13 })));
        assert_eq!(canonical_json("[".repeat(100).as_bytes()), Err(KeyError::TooDeep));
        assert!(canonical_json(format!("{}{}", "[".repeat(60), "]".repeat(60)).as_bytes()).is_ok());
    }

    #[test]
    fn path_keys_join_params_and_sort_the_query() {
        assert_eq!(path_key(&["app"], None), "app");
        assert_eq!(path_key(&["eu", "app"], Some("lang=de&a=1")), "eu/app?a=1&lang=de");
        assert_eq!(path_key(&["app"], Some("")), "app");
        assert_eq!(path_key(&["app"], Some("b&&a")), "app?a&b");
        assert_eq!(path_key(&["a*b"], None), "a*b");
        let long = "x".repeat(300);
        let hashed = path_key(&[&long], None);
        assert!(hashed.starts_with('#') && hashed.len() == 65);
        assert!(path_key(&["a\nb"], None).starts_with('#'));
    }

    #[test]
    fn per_caller_keys_and_namespaces_are_apart_from_shared_ones() {
        assert_eq!(scoped(CacheScope::Global, "h", "app"), "app");
        assert_eq!(scoped(CacheScope::Caller, "h", "app"), "h/app");
        assert_eq!(namespace("config", CacheScope::Global), "config");
        assert_eq!(namespace("config", CacheScope::Caller), "config~caller");
    }

    #[test]
    fn route_rules_pick_the_key_source() {
        let m = RouteMatch { params: vec![("name".into(), "app".into())], rest: String::new() };
        let mut rule = CacheRule {
            class: "STATIC_CONFIG".into(),
            key: CacheKeySource::Path,
            scope: CacheScope::Global,
            tags: vec![],
            warm: vec![],
            invalidate_on: vec![],
        };
        assert_eq!(cache_key(&rule, &m, Some("v=2"), b"", "h").unwrap(), "app?v=2");
        let wild = RouteMatch { params: vec![], rest: "docs/intro".into() };
        assert_eq!(cache_key(&rule, &wild, None, b"", "h").unwrap(), "docs/intro");
        rule.scope = CacheScope::Caller;
        assert_eq!(cache_key(&rule, &m, None, b"", "h").unwrap(), "h/app");
        rule.key = CacheKeySource::JsonBody;
        rule.scope = CacheScope::Global;
        // The captured parameter is forwarded too, so it is keyed before the body's hash.
        assert_eq!(
            cache_key(&rule, &m, None, b"{\"a\": 1}", "h").unwrap(),
            format!("app/{}", sha256_hex(b"{\"a\":1}"))
        );
        let none = RouteMatch::default();
        assert_eq!(cache_key(&rule, &none, None, b"{\"a\": 1}", "h").unwrap(), sha256_hex(b"{\"a\":1}"));
        assert!(matches!(cache_key(&rule, &m, None, b"{", "h"), Err(KeyError::InvalidJson { .. })));
    }

    #[test]
    fn json_body_keys_cover_the_forwarded_query_and_parameters() {
        let rule = CacheRule {
            class: "FREQUENT_DATA".into(),
            key: CacheKeySource::JsonBody,
            scope: CacheScope::Global,
            tags: vec![],
            warm: vec![],
            invalidate_on: vec![],
        };
        let none = RouteMatch::default();
        let body = br#"{"q":"refunds"}"#;
        let hash = sha256_hex(br#"{"q":"refunds"}"#);
        assert_eq!(cache_key(&rule, &none, None, body, "h").unwrap(), hash);
        assert_eq!(cache_key(&rule, &none, Some(""), body, "h").unwrap(), hash);
        let tenant = cache_key(&rule, &none, Some("tenant=x"), body, "h").unwrap();
        assert_eq!(tenant, format!("{hash}?tenant=x"));
        assert_eq!(cache_key(&rule, &none, Some("b=2&a=1"), body, "h").unwrap(), format!("{hash}?a=1&b=2"));
        let m = RouteMatch { params: vec![("index".into(), "docs".into())], rest: String::new() };
        assert_eq!(cache_key(&rule, &m, None, body, "h").unwrap(), format!("docs/{hash}"));
    }
}
