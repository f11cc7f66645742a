//! The HTTP side of cached responses: ETags, `If-None-Match`, browser `Cache-Control` and `Age`.

use sha2::{Digest, Sha256};

use crate::policy::{CacheClass, CacheScope};

use super::entry::Entry;
use super::status::CacheStatus;

/// Strong ETag of a body: the quoted lowercase hex SHA-256 of its bytes.
pub fn etag_for(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(body)))
}

/// Whether an `If-None-Match` header value matches `etag` (a `304` is due): `*`, or any listed
/// tag equal to it under the weak comparison of RFC 9110 §8.8.3.2 (the `W/` prefix is ignored).
pub fn if_none_match(header: &str, etag: &str) -> bool {
    if header.trim() == "*" {
        return true;
    }
    let ours = opaque(etag);
    EntityTags { rest: header }.any(|tag| tag == ours)
}

/// The browser `Cache-Control` for an entry of `class`: `public, max-age=N` for entries shared by
/// all callers, `private, max-age=N` for per-caller ones.
pub fn cache_control(class: &CacheClass, scope: CacheScope) -> String {
    let visibility = match scope {
        CacheScope::Global => "public",
        CacheScope::Caller => "private",
    };
    format!("{visibility}, max-age={}", class.browser_max_age_s)
}

/// `Age` header value: whole seconds since `stored_ms` (0 if the clock reads earlier).
pub fn age_seconds(stored_ms: u64, now_ms: u64) -> u64 {
    now_ms.saturating_sub(stored_ms) / 1000
}

/// Response headers for serving `entry` with `status` at `now_ms`: `Content-Type` (when known),
/// `ETag`, `Cache-Control`, `Age`, `X-Cache` and the replayed origin headers (lower-case names).
pub fn entry_headers(
    entry: &Entry,
    status: CacheStatus,
    class: &CacheClass,
    scope: CacheScope,
    now_ms: u64,
) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(5 + entry.headers.len());
    if let Some(ct) = &entry.content_type {
        headers.push(("content-type".to_owned(), ct.clone()));
    }
    headers.push(("etag".to_owned(), entry.etag.clone()));
    headers.push(("cache-control".to_owned(), cache_control(class, scope)));
    headers.push(("age".to_owned(), age_seconds(entry.stored_ms, now_ms).to_string()));
    headers.push(("x-cache".to_owned(), status.as_str().to_owned()));
    headers.extend(entry.headers.iter().cloned());
    headers
}

/// The opaque part of an entity tag, without `W/` and quotes.
fn opaque(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag)
}

/// Iterates the opaque tags of a comma-separated list; quoted tags may contain commas.
struct EntityTags<'a> {
    rest: &'a str,
}

impl<'a> Iterator for EntityTags<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let s = self.rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if s.is_empty() {
                self.rest = s;
                return None;
            }
            let s = s.strip_prefix("W/").unwrap_or(s);
            if let Some(quoted) = s.strip_prefix('"') {
                let end = quoted.find('"').unwrap_or(quoted.len());
                self.rest = quoted.get(end + 1..).unwrap_or("");
                return Some(&quoted[..end]);
            }
            // Not a valid entity tag: skip to the next comma.
            let end = s.find(',').unwrap_or(s.len());
            self.rest = &s[end..];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use super::*;

    #[test]
    fn etags_are_strong_quoted_sha256() {
        let tag = etag_for(b"hello");
        assert_eq!(tag, "\"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\"");
        assert_ne!(etag_for(b"hello!"), tag);
    }

    #[test]
    fn if_none_match_compares_weakly_across_a_list() {
        let tag = "\"abc\"";
        assert!(if_none_match("\"abc\"", tag));
        assert!(if_none_match("W/\"abc\"", tag));
        assert!(if_none_match("\"x\", W/\"abc\"", tag));
        assert!(if_none_match("\"a,b\",\"abc\"", tag));
        assert!(if_none_match(" * ", tag));
        assert!(!if_none_match("\"abcd\"", tag));
        assert!(!if_none_match("\"ab\", \"c\"", tag));
        assert!(!if_none_match("", tag));
        assert!(!if_none_match("abc", tag));
        assert!(!if_none_match("\"unterminated", tag));
        assert!(!if_none_match("*x", tag));
    }

    #[test]
    fn browser_cache_control_follows_scope() {
        let class = CacheClass {
            name: "STATIC_CONFIG".into(),
            ttl_ms: NonZeroU64::new(86_400_000).unwrap(),
            jitter: 0.1,
            stale_ms: 0,
            browser_max_age_s: 300,
        };
        assert_eq!(cache_control(&class, CacheScope::Global), "public, max-age=300");
        assert_eq!(cache_control(&class, CacheScope::Caller), "private, max-age=300");
    }

    #[test]
    fn served_entries_carry_validators_age_and_status() {
        let entry = crate::cache::entry::tests::sample(b"x");
        let class = CacheClass {
            name: "STATIC_CONFIG".into(),
            ttl_ms: NonZeroU64::new(1000).unwrap(),
            jitter: 0.1,
            stale_ms: 0,
            browser_max_age_s: 60,
        };
        let h = entry_headers(&entry, CacheStatus::Stale, &class, CacheScope::Global, 4_500);
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(get("etag"), Some(entry.etag.as_str()));
        assert_eq!(get("cache-control"), Some("public, max-age=60"));
        assert_eq!(get("age"), Some("3"));
        assert_eq!(get("x-cache"), Some("STALE"));
        assert_eq!(get("content-language"), Some("en"));
        assert!(get("set-cookie").is_none());
    }

    #[test]
    fn age_is_whole_seconds_and_never_negative() {
        assert_eq!(age_seconds(1_000, 3_999), 2);
        assert_eq!(age_seconds(5_000, 1_000), 0);
    }
}
