//! Route path patterns (`/health`, `/api/config/{name}`, `/api/chat*`) and the upstream path
//! templates filled from what they capture.
//!
//! A pattern is matched against the request path after the entrance normalized it
//! ([`crate::path::normalize`]; no query string). Literal text matches ignoring ASCII case, so
//! `/API/auth/login` meets the limits of `/api/auth*` on an origin that serves paths
//! case-insensitively; captured parameters and the forwarded path keep the case they came with:
//!
//! - literal text matches itself in any ASCII case; `/health` does not match `/health/`;
//! - `{name}` is one whole, non-empty segment (`/api/config/{name}` matches `/api/config/app`, not
//!   `/api/config/` nor `/api/config/a/b`);
//! - a trailing `*` matches any rest, including none and including the rest of a segment:
//!   `/api/chat*` matches `/api/chat`, `/api/chat/x` and `/api/chatroom`. Write `/api/chat/*` to
//!   require the slash. Whatever the rest holds, the pattern matches: a prefix's limits apply to
//!   every path under it.
//!
//! Captured parameters are kept as received (still percent-encoded), because upstream templates
//! hand them on to the origin under another prefix. A parameter that could walk the origin's path
//! tree — a `.` or `..` segment, even percent-encoded, or an encoded `/` or `\` — makes the
//! pattern not match at all. Templates have no `*`: only named parameters are copied.
//!
//! ```
//! use tollgate::policy::{pattern::fill, PathPattern};
//!
//! let p: PathPattern = "/api/config/{name}".parse().unwrap();
//! let m = p.matches("/api/config/app").unwrap();
//! assert_eq!(m.get("name"), Some("app"));
//! assert_eq!(fill("/config/{name}", &m), "/config/app");
//! assert!(p.matches("/api/config/..").is_none());
//! ```

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Longest pattern or template accepted, in bytes.
const MAX_LEN: usize = 256;

/// What is wrong with a path pattern or an upstream template.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    /// It does not begin with `/`.
    #[error("must start with \"/\"")]
    MustStartWithSlash,
    /// It is longer than 256 bytes.
    #[error("must be at most {MAX_LEN} bytes long")]
    TooLong,
    /// A `*` somewhere other than at the very end.
    #[error("\"*\" is only allowed as the last character")]
    WildcardNotAtEnd,
    /// A `*` in an upstream template (only `{param}`s are copied).
    #[error("\"*\" is not allowed in an upstream template; name parameters with {{param}}")]
    WildcardInTemplate,
    /// A `{` without its `}`, or a stray `}`.
    #[error("unbalanced \"{{\" or \"}}\"")]
    Unbalanced,
    /// A parameter name that is empty or not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("bad parameter name \"{0}\" (letters, digits and \"_\", not starting with a digit)")]
    BadParamName(String),
    /// The same parameter twice in one pattern.
    #[error("parameter \"{{{0}}}\" appears twice")]
    DuplicateParam(String),
    /// A `{param}` that is not a whole segment (`/a/x{p}`, `/a/{p}x`, `/a/{p}*`).
    #[error("parameter \"{{{0}}}\" must be a whole segment, between \"/\" and \"/\" or the end")]
    ParamNotWholeSegment(String),
    /// A template naming a parameter its pattern does not capture.
    #[error("unknown parameter \"{{{0}}}\": the path pattern has no such parameter")]
    UnknownParam(String),
    /// An empty segment (`//`).
    #[error("empty segment \"//\"")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("\".\" and \"..\" segments are not allowed")]
    DotSegment,
    /// A character that has no place in a path (`?`, `#`, whitespace, control characters).
    #[error("character {0:?} is not allowed in a path")]
    ForbiddenChar(char),
    /// Text the entrance's normalization would spell differently (an encoded unreserved
    /// character, lower-case hex, `\`), which no normalized request path could ever match.
    #[error("not in normalized form (write it as {0:?})")]
    NotNormalized(String),
}

/// One piece of a parsed pattern or template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text matched or copied as is.
    Literal(String),
    /// A named capture.
    Param(String),
}

/// A parsed route path pattern; displays as the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    pieces: Vec<Piece>,
    wildcard: bool,
}

/// What a pattern captured from a path: its `{params}` in order, and the rest matched by `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// `(name, value)` pairs in pattern order; values as received (percent-encoded).
    pub params: Vec<(String, String)>,
    /// What a trailing `*` matched (empty without one).
    pub rest: String,
}

impl RouteMatch {
    /// The value captured for parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl PathPattern {
    /// Parses a pattern; see the module documentation for its syntax.
    pub fn parse(source: &str) -> Result<Self, PatternError> {
        check_common(source)?;
        let (body, wildcard) = match source.strip_suffix('*') {
            Some(body) => (body, true),
            None => (source, false),
        };
        if body.contains('*') {
            return Err(PatternError::WildcardNotAtEnd);
        }
        let pieces = split_pieces(body)?;
        let mut seen: Vec<&str> = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            if let Piece::Param(name) = piece {
                if seen.contains(&name.as_str()) {
                    return Err(PatternError::DuplicateParam(name.clone()));
                }
                seen.push(name);
                let after_slash = matches!(pieces.get(i.wrapping_sub(1)), Some(Piece::Literal(t)) if t.ends_with('/'));
                let before_slash_or_end = match pieces.get(i + 1) {
                    None => !wildcard,
                    Some(Piece::Literal(t)) => t.starts_with('/'),
                    Some(Piece::Param(_)) => false,
                };
                if i == 0 || !after_slash || !before_slash_or_end {
                    return Err(PatternError::ParamNotWholeSegment(name.clone()));
                }
            }
        }
        Ok(Self { source: source.to_owned(), pieces, wildcard })
    }

    /// The names of the pattern's parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Param(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// Whether the pattern ends in `*`.
    pub fn has_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Matches `path` (a query string, if any, is ignored) and returns what it captured.
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        let path = path.split('?').next().unwrap_or(path);
        let mut at = path;
        let mut params = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => at = strip_prefix_ignore_case(at, text)?,
                Piece::Param(name) => {
                    let end = at.find('/').unwrap_or(at.len());
                    let (value, rest) = at.split_at(end);
                    if value.is_empty() || !is_safe_segment(value) {
                        return None;
                    }
                    params.push((name.clone(), value.to_owned()));
                    at = rest;
                }
            }
        }
        if self.wildcard {
            Some(RouteMatch { params, rest: at.to_owned() })
        } else if at.is_empty() {
            Some(RouteMatch { params, rest: String::new() })
        } else {
            None
        }
    }

    /// The pattern rebuilt from what it captured: its literal text as written, the captured
    /// values, then what `*` matched.
    pub fn render(&self, m: &RouteMatch) -> String {
        let mut out = String::with_capacity(self.source.len() + m.rest.len() + 16);
        let mut params = m.params.iter();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Param(_) => out.push_str(params.next().map_or("", |(_, v)| v.as_str())),
            }
        }
        out.push_str(&m.rest);
        out
    }

    /// The concrete path with `values` for the parameters in order, for patterns without `*`
    /// (building the paths that warming fills); `None` when the count differs or a value is unsafe.
    pub fn path_with(&self, values: &[&str]) -> Option<String> {
        if self.wildcard || values.len() != self.params().count() {
            return None;
        }
        let mut out = String::with_capacity(self.source.len());
        let mut values = values.iter();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Param(_) => {
                    let v = values.next()?;
                    if v.is_empty() || v.contains('/') || v.contains('?') || !is_safe_segment(v) {
                        return None;
                    }
                    out.push_str(v);
                }
            }
        }
        Some(out)
    }

    /// The match a warm key stands for (the parameter values joined by `/`: `app`, `eu/app`),
    /// checked as a request would be: the path it fills must be in normal form
    /// ([`crate::path::normalize`]) and match this pattern, so warming can fill no entry a
    /// request could not reach. `None` for anything else.
    pub fn warm_match(&self, key: &str) -> Option<RouteMatch> {
        let values: Vec<&str> =
            if key.is_empty() && self.params().count() == 0 { Vec::new() } else { key.split('/').collect() };
        let path = self.path_with(&values)?;
        if !crate::path::is_normalized(&path) {
            return None;
        }
        self.matches(&path)
    }

    /// Checks an upstream path template against this pattern: every `{param}` must be captured by
    /// it.
    pub fn check_template(&self, template: &str) -> Result<(), PatternError> {
        check_common(template)?;
        if template.contains('*') {
            return Err(PatternError::WildcardInTemplate);
        }
        for piece in split_pieces(template)? {
            if let Piece::Param(name) = piece {
                if !self.params().any(|p| p == name) {
                    return Err(PatternError::UnknownParam(name));
                }
            }
        }
        Ok(())
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Fills an upstream template (`/config/{name}`) with what a pattern captured.
///
/// Templates are checked against their pattern when the policy is parsed
/// ([`PathPattern::check_template`]), so every parameter is known; an unknown one would be left
/// empty rather than fail a request.
pub fn fill(template: &str, m: &RouteMatch) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push_str(m.get(&after[..close]).unwrap_or(""));
                rest = &after[close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rules shared by patterns and templates: leading slash, length, characters, segments.
fn check_common(source: &str) -> Result<(), PatternError> {
    if !source.starts_with('/') {
        return Err(PatternError::MustStartWithSlash);
    }
    if source.len() > MAX_LEN {
        return Err(PatternError::TooLong);
    }
    if let Some(c) = source.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#')) {
        return Err(PatternError::ForbiddenChar(c));
    }
    let trimmed = source.strip_suffix('*').unwrap_or(source);
    for (i, segment) in trimmed.split('/').enumerate().skip(1) {
        let last = i == trimmed.split('/').count() - 1;
        if segment.is_empty() && !last {
            return Err(PatternError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PatternError::DotSegment);
        }
    }
    // Parameters stand for one plain segment each; the rest must be what `normalize` writes.
    let mut plain = String::with_capacity(trimmed.len());
    let mut in_param = false;
    for c in trimmed.chars() {
        match c {
            '{' => {
                in_param = true;
                plain.push('p');
            }
            '}' => in_param = false,
            c if !in_param => plain.push(c),
            _ => {}
        }
    }
    match crate::path::normalize(&plain) {
        Ok(n) if n == plain => Ok(()),
        Ok(n) => Err(PatternError::NotNormalized(n)),
        Err(_) => Err(PatternError::NotNormalized(plain.replace('\\', "/"))),
    }
}

/// `at` without a leading `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(at: &'a str, prefix: &str) -> Option<&'a str> {
    let head = at.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &at[prefix.len()..])
}

/// Splits text into literals and `{params}`, checking braces and names.
fn split_pieces(body: &str) -> Result<Vec<Piece>, PatternError> {
    let mut pieces = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(PatternError::Unbalanced);
        }
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(PatternError::Unbalanced)?;
        let name = &after[..close];
        if name.contains('{') {
            return Err(PatternError::Unbalanced);
        }
        if !is_param_name(name) {
            return Err(PatternError::BadParamName(name.to_owned()));
        }
        pieces.push(Piece::Param(name.to_owned()));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_owned()));
    }
    Ok(pieces)
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a captured segment is safe to hand to the origin: not `.`/`..` (even encoded), no
/// encoded `/` or `\`, no raw `\`.
fn is_safe_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return false;
    }
    let decoded_dots = lower.replace("%2e", ".");
    decoded_dots != "." && decoded_dots != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn matching_table() {
        // (pattern, path, expected params or None for no match)
        type Params<'a> = Option<&'a [(&'a str, &'a str)]>;
        let table: &[(&str, &str, Params)] = &[
            ("/health", "/health", Some(&[])),
            ("/health", "/health/", None),
            ("/health", "/healthz", None),
            ("/health", "/Health", Some(&[])),
            ("/api/auth*", "/API/Auth/login", Some(&[])),
            ("/api/config/{name}", "/API/config/App", Some(&[("name", "App")])),
            ("/health", "/health?x=1", Some(&[])),
            ("/api/chat*", "/api/chat", Some(&[])),
            ("/api/chat*", "/api/chat/x", Some(&[])),
            ("/api/chat*", "/api/chatroom", Some(&[])),
            ("/api/chat*", "/api/cha", None),
            ("/api/chat*", "/api/chat/../admin", Some(&[])),
            ("/api/chat*", "/api/chat/a%2Fb", Some(&[])),
            ("/api/chat/*", "/api/chat", None),
            ("/api/chat/*", "/api/chat/", Some(&[])),
            ("/api/config/{name}", "/api/config/app", Some(&[("name", "app")])),
            ("/api/config/{name}", "/api/config/", None),
            ("/api/config/{name}", "/api/config", None),
            ("/api/config/{name}", "/api/config/a/b", None),
            ("/api/config/{name}", "/api/config/..", None),
            ("/api/config/{name}", "/api/config/%2E%2e", None),
            ("/api/config/{name}", "/api/config/.", None),
            ("/api/config/{name}", "/api/config/a%2Fb", None),
            ("/api/config/{name}", "/api/config/a%5cb", None),
            ("/api/config/{name}", "/api/config/a%20b", Some(&[("name", "a%20b")])),
            ("/api/config/{name}", "/api/config/...", Some(&[("name", "...")])),
            ("/u/{user}/items/{item}", "/u/7/items/9", Some(&[("user", "7"), ("item", "9")])),
            ("/u/{user}/items/{item}", "/u/7/items/", None),
            ("/u/{user}/*", "/u/7/a/b", Some(&[("user", "7")])),
            ("/", "/", Some(&[])),
            ("/*", "/anything/at/all", Some(&[])),
        ];
        for (pattern, path, expected) in table {
            let got = p(pattern).matches(path);
            let expected: Option<Vec<(String, String)>> =
                expected.map(|e| e.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect());
            assert_eq!(got.map(|m| m.params), expected, "{pattern} against {path}");
        }
    }

    #[test]
    fn a_prefix_matches_whatever_follows_so_its_limits_cannot_be_dodged() {
        assert!(p("/api/chat*").matches("/api/chat/%2e%2e/x").is_some());
    }

    #[test]
    fn the_wildcard_captures_the_rest() {
        assert_eq!(p("/api/chat*").matches("/api/chatroom/1").unwrap().rest, "room/1");
        assert_eq!(p("/api/chat*").matches("/api/chat").unwrap().rest, "");
    }

    #[test]
    fn bad_patterns_are_rejected_with_a_reason() {
        let table: &[(&str, PatternError)] = &[
            ("api/chat", PatternError::MustStartWithSlash),
            ("", PatternError::MustStartWithSlash),
            ("/api/*/chat", PatternError::WildcardNotAtEnd),
            ("/api/**", PatternError::WildcardNotAtEnd),
            ("/api/{name", PatternError::Unbalanced),
            ("/api/name}", PatternError::Unbalanced),
            ("/api/{}", PatternError::BadParamName(String::new())),
            ("/api/{1x}", PatternError::BadParamName("1x".into())),
            ("/api/{a-b}", PatternError::BadParamName("a-b".into())),
            ("/a/{x}/{x}", PatternError::DuplicateParam("x".into())),
            ("/a/v{x}", PatternError::ParamNotWholeSegment("x".into())),
            ("/a/{x}.json", PatternError::ParamNotWholeSegment("x".into())),
            ("/a/{x}*", PatternError::ParamNotWholeSegment("x".into())),
            ("/a/{x}{y}", PatternError::ParamNotWholeSegment("x".into())),
            ("/a//b", PatternError::EmptySegment),
            ("/a/../b", PatternError::DotSegment),
            ("/a/./b", PatternError::DotSegment),
            ("/a b", PatternError::ForbiddenChar(' ')),
            ("/a?b=1", PatternError::ForbiddenChar('?')),
            ("/a#b", PatternError::ForbiddenChar('#')),
            ("/a/%61", PatternError::NotNormalized("/a/a".into())),
            ("/a/%c3%a9", PatternError::NotNormalized("/a/%C3%A9".into())),
            ("/a\\b", PatternError::NotNormalized("/a/b".into())),
        ];
        for (pattern, expected) in table {
            assert_eq!(PathPattern::parse(pattern).as_ref(), Err(expected), "{pattern:?}");
        }
        assert_eq!(PathPattern::parse(&format!("/{}", "a".repeat(300))), Err(PatternError::TooLong));
    }

    #[test]
    fn displays_as_written() {
        for s in ["/api/chat*", "/api/config/{name}", "/health", "/"] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn templates_are_filled_from_the_match() {
        let m = p("/api/config/{name}").matches("/api/config/app").unwrap();
        assert_eq!(fill("/config/{name}", &m), "/config/app");
        assert_eq!(fill("/config/{name}/v/{name}", &m), "/config/app/v/app");
        assert_eq!(fill("/static", &m), "/static");
    }

    #[test]
    fn templates_may_only_name_captured_params() {
        let pattern = p("/api/config/{name}");
        assert_eq!(pattern.check_template("/config/{name}"), Ok(()));
        assert_eq!(pattern.check_template("/config/{name}.json"), Ok(()));
        assert_eq!(pattern.check_template("/config/{id}"), Err(PatternError::UnknownParam("id".into())));
        assert_eq!(pattern.check_template("/config/*"), Err(PatternError::WildcardInTemplate));
        assert_eq!(pattern.check_template("config"), Err(PatternError::MustStartWithSlash));
        assert_eq!(pattern.check_template("/config/{name"), Err(PatternError::Unbalanced));
    }

    #[test]
    fn paths_are_built_from_warm_values() {
        let pattern = p("/api/config/{name}");
        assert_eq!(pattern.path_with(&["app"]).as_deref(), Some("/api/config/app"));
        assert_eq!(pattern.path_with(&[]), None);
        assert_eq!(pattern.path_with(&[".."]), None);
        assert_eq!(pattern.path_with(&["a/b"]), None);
        assert_eq!(p("/api/chat*").path_with(&[]), None);
        assert_eq!(p("/health").path_with(&[]).as_deref(), Some("/health"));
    }

    #[test]
    fn a_match_renders_back_to_the_pattern_as_written() {
        let pattern = p("/api/config/{name}");
        assert_eq!(pattern.render(&pattern.matches("/API/Config/App").unwrap()), "/api/config/App");
        let wild = p("/docs/*");
        assert_eq!(wild.render(&wild.matches("/DOCS/Intro/a").unwrap()), "/docs/Intro/a");
        let two = p("/u/{user}/items/{item}");
        assert_eq!(two.render(&two.matches("/u/7/items/9").unwrap()), "/u/7/items/9");
    }

    #[test]
    fn warm_keys_are_checked_as_request_paths_are() {
        let pattern = p("/api/config/{name}");
        assert_eq!(pattern.warm_match("app").map(|m| m.params), Some(vec![("name".into(), "app".into())]));
        for bad in ["", "..", ".", "%2e%2E", "a/b", "a%2Fb", "a\\b", "%61pp", "a%zz", "a b", "a?b", "caf%c3%a9"] {
            assert_eq!(pattern.warm_match(bad), None, "{bad:?}");
        }
        assert!(pattern.warm_match("caf%C3%A9").is_some(), "escapes in normal form are fine");
        let two = p("/u/{user}/items/{item}");
        assert!(two.warm_match("7/9").is_some());
        assert!(two.warm_match("7").is_none() && two.warm_match("7/9/1").is_none());
        assert!(p("/health").warm_match("").is_some());
    }

    #[test]
    fn params_are_listed_in_order() {
        assert_eq!(p("/u/{user}/i/{item}").params().collect::<Vec<_>>(), ["user", "item"]);
        assert!(p("/a*").has_wildcard());
    }
}
