//! The request path as Tollgate reads it: one normalization at the entrance, so a route's limits
//! cannot be dodged by spelling its path another way, and the path that is matched is the path
//! that is forwarded.
//!
//! The rule, applied once to the path (never to the query):
//!
//! 1. The path starts with `/` and is at most [`MAX_PATH_BYTES`] long.
//! 2. Every `%` is followed by two hex digits, else `400` ([`PathError::InvalidPercent`]).
//! 3. Percent-encoded unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded (`%61` → `a`,
//!    `%2E` → `.`); every other escape is kept, with upper-case hex (`%c3%a9` → `%C3%A9`).
//! 4. An encoded `/` (`%2F`), an encoded `\` (`%5C`) and a raw `\` are refused with `400`: origins
//!    disagree on whether they separate segments, so no single reading of them is safe.
//! 5. Bytes that have no place in a path (space, `"`, `<`, `>`, `{`, `}`, `|`, `^`, control and
//!    non-ASCII bytes…) are percent-encoded.
//! 6. Repeated slashes collapse (`//a///b` → `/a/b`) and dot segments are resolved as RFC 3986
//!    §5.2.4 does, never climbing above the root (`/a/./b/../c` → `/a/c`, `/../x` → `/x`). A
//!    trailing slash is kept (`/a/b/` stays), since origins tell `/a` and `/a/` apart.
//!
//! Case is not changed here: the normalized path is forwarded as it is. Route patterns match its
//! literal text ignoring ASCII case (see [`crate::policy::pattern`]), so `/API/auth/login` is
//! charged the `/api/auth*` limit on an origin that serves it case-insensitively.
//!
//! ```
//! use tollgate::path::{normalize, PathError};
//!
//! assert_eq!(normalize("/api/%61uth//./login").unwrap(), "/api/auth/login");
//! assert_eq!(normalize("/api/x/../auth/login").unwrap(), "/api/auth/login");
//! assert!(matches!(normalize("/api%2Fauth/login"), Err(PathError::EncodedSlash { .. })));
//! ```

use thiserror::Error;

/// Longest path accepted, bytes (as received, before normalization).
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a request path is refused (the edge answers `400`, or `414` for [`PathError::TooLong`],
/// as problem+json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the request path must start with \"/\"")]
    NotAbsolute,
    /// The path is longer than [`MAX_PATH_BYTES`].
    #[error("the request path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding at byte {offset} of the path")]
    InvalidPercent {
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// `%2F`: an encoded `/`.
    #[error("an encoded \"/\" (%2F) at byte {offset} of the path is not accepted")]
    EncodedSlash {
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// `%5C`: an encoded `\`.
    #[error("an encoded \"\\\" (%5C) at byte {offset} of the path is not accepted")]
    EncodedBackslash {
        /// Byte offset of the `%`.
        offset: usize,
    },
    /// A raw `\`.
    #[error("a \"\\\" at byte {offset} of the path is not accepted")]
    Backslash {
        /// Byte offset of the `\`.
        offset: usize,
    },
}

impl PathError {
    /// Stable name for problem bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "not_absolute",
            PathError::TooLong => "too_long",
            PathError::InvalidPercent { .. } => "invalid_percent_encoding",
            PathError::EncodedSlash { .. } => "encoded_slash",
            PathError::EncodedBackslash { .. } => "encoded_backslash",
            PathError::Backslash { .. } => "backslash",
        }
    }

    /// The HTTP status to answer with: `414` for a path too long, `400` otherwise.
    pub fn http_status(self) -> u16 {
        match self {
            PathError::TooLong => 414,
            _ => 400,
        }
    }
}

/// The normalized form of `path` (see the module documentation for the rule).
pub fn normalize(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let canonical = canonical_escapes(path.as_bytes())?;
    Ok(resolve_segments(&canonical))
}

/// Whether `path` is already in normal form (`normalize(path) == path`).
pub fn is_normalized(path: &str) -> bool {
    normalize(path).is_ok_and(|n| n == path)
}

/// Steps 2–5: one escape form per byte. Decoded characters are unreserved, never `/` or `%`, so
/// the segment structure afterwards is that of the raw `/`s.
fn canonical_escapes(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = |at: usize| bytes.get(at).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(PathError::InvalidPercent { offset: i });
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' => return Err(PathError::EncodedSlash { offset: i }),
                    b'\\' => return Err(PathError::EncodedBackslash { offset: i }),
                    d if is_unreserved(d) => out.push(char::from(d)),
                    d => push_escaped(&mut out, d),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash { offset: i }),
            b'/' => {
                out.push('/');
                i += 1;
            }
            b if is_pchar(b) => {
                out.push(char::from(b));
                i += 1;
            }
            b => {
                push_escaped(&mut out, b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Step 6: empty segments dropped, dot segments resolved, a trailing slash kept.
fn resolve_segments(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing = false;
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        let is_last = i == last;
        match *segment {
            "" | "." => trailing = is_last,
            ".." => {
                stack.pop();
                trailing = is_last;
            }
            s => {
                stack.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// RFC 3986 unreserved: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` other than an escape: unreserved, sub-delims, `:` and `@`.
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_path_normalize_to_it() {
        for spelling in [
            "/api/auth/login",
            "/api/%61uth/login",
            "/api/%61%75%74%68/login",
            "//api/auth/login",
            "/api//auth///login",
            "/api/./auth/login",
            "/api/%2e/auth/login",
            "/api/%2E%2e/api/auth/login",
            "/x/../api/auth/login",
            "/../api/auth/login",
            "/api/auth/./login",
            "/api/auth/x/%2e%2E/login",
        ] {
            assert_eq!(normalize(spelling).as_deref(), Ok("/api/auth/login"), "{spelling}");
        }
    }

    #[test]
    fn the_rule_table() {
        let table: &[(&str, &str)] = &[
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/a/", "/a/"),
            ("/a//", "/a/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/...", "/a/..."),
            ("/a/.b", "/a/.b"),
            ("/a%7eb", "/a~b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/a b", "/a%20b"),
            ("/a|b{c}", "/a%7Cb%7Bc%7D"),
            ("/é", "/%C3%A9"),
            ("/a%3Fb", "/a%3Fb"),
            ("/a?b", "/a%3Fb"),
            ("/a%25b", "/a%25b"),
            ("/API/Auth", "/API/Auth"),
            ("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
        ];
        for (input, expected) in table {
            assert_eq!(normalize(input).as_deref(), Ok(*expected), "{input}");
        }
    }

    #[test]
    fn ambiguous_or_broken_paths_are_refused() {
        let table: &[(&str, PathError)] = &[
            ("api", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("/api%2Fauth/login", PathError::EncodedSlash { offset: 4 }),
            ("/api%2fauth", PathError::EncodedSlash { offset: 4 }),
            ("/api%5Cauth", PathError::EncodedBackslash { offset: 4 }),
            ("/api%5cauth", PathError::EncodedBackslash { offset: 4 }),
            ("/api\\auth", PathError::Backslash { offset: 4 }),
            ("/a%", PathError::InvalidPercent { offset: 2 }),
            ("/a%4", PathError::InvalidPercent { offset: 2 }),
            ("/a%zz", PathError::InvalidPercent { offset: 2 }),
            ("/a%%41", PathError::InvalidPercent { offset: 2 }),
        ];
        for (input, expected) in table {
            assert_eq!(normalize(input), Err(*expected), "{input}");
        }
        assert_eq!(normalize(&format!("/{}", "a".repeat(MAX_PATH_BYTES))), Err(PathError::TooLong));
        assert_eq!(PathError::TooLong.http_status(), 414);
        assert_eq!(PathError::EncodedSlash { offset: 0 }.http_status(), 400);
        assert_eq!(PathError::InvalidPercent { offset: 0 }.as_str(), "invalid_percent_encoding");
    }

    #[test]
    fn normal_form_is_recognised() {
        assert!(is_normalized("/api/auth/login"));
        assert!(!is_normalized("/api//auth"));
        assert!(!is_normalized("/api/%61"));
        assert!(!is_normalized("/a%2Fb"));
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Paths built from the pieces an attacker would use.
        fn hostile_path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/".to_owned()),
                Just("//".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%2e".to_owned()),
                Just("%2E".to_owned()),
                Just("%61".to_owned()),
                Just("%7E".to_owned()),
                Just("%2F".to_owned()),
                Just("%5c".to_owned()),
                Just("\\".to_owned()),
                Just("%".to_owned()),
                Just("%c3%a9".to_owned()),
                Just("%41%".to_owned()),
                "[a-zA-Z0-9_~-]{1,4}",
                "[ -~]{1,3}",
                any::<char>().prop_map(|c| c.to_string()),
            ];
            proptest::collection::vec(piece, 0..12).prop_map(|parts| format!("/{}", parts.concat()))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn never_panics_on_any_text(s in "\\PC*") {
                let _ = normalize(&s);
            }

            #[test]
            fn is_idempotent_and_leaves_no_dodge(path in hostile_path()) {
                if let Ok(n) = normalize(&path) {
                    let again = normalize(&n);
                    prop_assert_eq!(again.as_ref(), Ok(&n), "idempotent");
                    prop_assert!(n.starts_with('/'));
                    prop_assert!(!n.contains("//"), "{}", n);
                    prop_assert!(!n.contains("/./") && !n.ends_with("/."), "{}", n);
                    prop_assert!(!n.contains("/../") && !n.ends_with("/.."), "{}", n);
                    prop_assert!(!n.contains('\\'));
                    prop_assert!(n.is_ascii());
                    // No escape of an unreserved character, a slash or a backslash survives.
                    let bytes = n.as_bytes();
                    for (i, _) in n.match_indices('%') {
                        let hi = bytes.get(i + 1).copied().and_then(hex_value);
                        let lo = bytes.get(i + 2).copied().and_then(hex_value);
                        prop_assert!(hi.is_some() && lo.is_some(), "{}", n);
                        let d = hi.unwrap_or(0) << 4 | lo.unwrap_or(0);
                        prop_assert!(!is_unreserved(d) && d != b'/' && d != b'\\', "{}", n);
                    }
                }
            }

            #[test]
            fn garbage_is_never_accepted(path in hostile_path()) {
                let lower = path.to_ascii_lowercase();
                if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
                    prop_assert!(normalize(&path).is_err(), "{}", path);
                }
            }
        }
    }
}
