//! Which origin responses may be stored, and the typed reason when one may not.
//!
//! Only complete successes that say nothing against shared caching are stored: a 2xx other than
//! 206, without `Set-Cookie`, without `Cache-Control: no-store`, without `private` unless the
//! route's entries are per caller anyway, and not larger than the policy's `max_body_bytes`.
//!
//! `Vary` is honoured by refusing: a response whose `Vary` names anything but `Accept-Encoding`
//! (the runtime negotiates that itself) or `Origin` (never forwarded on a fill, and CORS is added
//! per request) is not stored. Keying on the listed headers would need every one of them in the
//! key and forwarded on the fill; refusing is the simple option that cannot serve one caller's
//! variant to another.

use thiserror::Error;

use crate::policy::CacheScope;

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NotStorable {
    /// Not a complete success (non-2xx, or 206 partial content).
    #[error("status {0} is not cacheable")]
    Status(u16),
    /// The response sets a cookie, which must reach only its own caller.
    #[error("response sets a cookie")]
    SetCookie,
    /// The origin said `Cache-Control: no-store`.
    #[error("cache-control: no-store")]
    NoStore,
    /// The origin said `Cache-Control: private` on a route shared by all callers.
    #[error("cache-control: private on a shared route")]
    Private,
    /// `Vary: *`: the response depends on things no key can capture.
    #[error("vary: *")]
    VaryAll,
    /// `Vary` names a request header the key does not cover (anything but `Accept-Encoding` and
    /// `Origin`).
    #[error("vary names a request header the cache key does not cover")]
    Vary,
    /// The body is larger than the policy's `max_body_bytes`.
    #[error("body of {size} bytes exceeds {max}")]
    TooLarge {
        /// Body size, bytes.
        size: usize,
        /// The limit, bytes.
        max: u32,
    },
}

impl NotStorable {
    /// Stable name for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Status(_) => "status",
            NotStorable::SetCookie => "set_cookie",
            NotStorable::NoStore => "no_store",
            NotStorable::Private => "private",
            NotStorable::VaryAll => "vary_all",
            NotStorable::Vary => "vary",
            NotStorable::TooLarge { .. } => "too_large",
        }
    }

    /// Whether the answer was meant for the one caller whose request fetched it (`Set-Cookie`,
    /// `no-store`, `private`): it is never handed to anyone else, not even a concurrent waiter.
    pub fn is_personal(self) -> bool {
        matches!(self, NotStorable::SetCookie | NotStorable::NoStore | NotStorable::Private)
    }
}

/// Request headers a stored response may vary on (see the module documentation).
const VARY_ALLOWED: [&str; 2] = ["accept-encoding", "origin"];

/// Checks whether a response with `status`, `headers` and a body of `body_len` bytes may be
/// stored for a route of `scope`.
pub fn check(
    status: u16,
    headers: &[(String, String)],
    body_len: usize,
    scope: CacheScope,
    max_body_bytes: u32,
) -> Result<(), NotStorable> {
    if !(200..=299).contains(&status) || status == 206 {
        return Err(NotStorable::Status(status));
    }
    let named = |name: &'static str| values(headers, name);
    if named("set-cookie").next().is_some() {
        return Err(NotStorable::SetCookie);
    }
    let directives: Vec<String> = named("cache-control")
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap_or("").trim().to_ascii_lowercase())
        .collect();
    if directives.iter().any(|d| d == "no-store") {
        return Err(NotStorable::NoStore);
    }
    if scope == CacheScope::Global && directives.iter().any(|d| d == "private") {
        return Err(NotStorable::Private);
    }
    let varied: Vec<String> = named("vary")
        .flat_map(|v| v.split(','))
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty())
        .collect();
    if varied.iter().any(|f| f == "*") {
        return Err(NotStorable::VaryAll);
    }
    if varied.iter().any(|f| !VARY_ALLOWED.contains(&f.as_str())) {
        return Err(NotStorable::Vary);
    }
    if body_len > max_body_bytes as usize {
        return Err(NotStorable::TooLarge { size: body_len, max: max_body_bytes });
    }
    Ok(())
}

/// Values of every header called `name` (case-insensitive).
fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// Status, headers, body length, scope, expected verdict.
    type Case = (u16, &'static [(&'static str, &'static str)], usize, CacheScope, Result<(), NotStorable>);

    #[test]
    fn storability_table() {
        use CacheScope::{Caller, Global};
        let table: &[Case] = &[
            (200, &[], 10, Global, Ok(())),
            (203, &[("content-type", "application/json")], 10, Global, Ok(())),
            (204, &[], 0, Global, Ok(())),
            (206, &[], 10, Global, Err(NotStorable::Status(206))),
            (301, &[], 10, Global, Err(NotStorable::Status(301))),
            (404, &[], 10, Global, Err(NotStorable::Status(404))),
            (500, &[], 10, Global, Err(NotStorable::Status(500))),
            (503, &[], 10, Caller, Err(NotStorable::Status(503))),
            (200, &[("Set-Cookie", "sid=1")], 10, Global, Err(NotStorable::SetCookie)),
            (200, &[("set-cookie", "sid=1")], 10, Caller, Err(NotStorable::SetCookie)),
            (200, &[("Cache-Control", "no-store")], 10, Global, Err(NotStorable::NoStore)),
            (200, &[("cache-control", "max-age=60, No-Store")], 10, Caller, Err(NotStorable::NoStore)),
            (200, &[("cache-control", "private, max-age=60")], 10, Global, Err(NotStorable::Private)),
            (200, &[("cache-control", "private=\"x-user\"")], 10, Global, Err(NotStorable::Private)),
            (200, &[("cache-control", "private, max-age=60")], 10, Caller, Ok(())),
            (200, &[("cache-control", "public, max-age=60")], 10, Global, Ok(())),
            (200, &[("cache-control", "no-cache")], 10, Global, Ok(())),
            (200, &[("vary", "accept-encoding, *")], 10, Global, Err(NotStorable::VaryAll)),
            (200, &[("vary", "accept-encoding")], 10, Global, Ok(())),
            (200, &[("Vary", "Accept-Encoding, Origin")], 10, Global, Ok(())),
            (200, &[("vary", "")], 10, Global, Ok(())),
            (200, &[("vary", "Accept")], 10, Global, Err(NotStorable::Vary)),
            (200, &[("vary", "accept-encoding"), ("vary", "User-Agent")], 10, Global, Err(NotStorable::Vary)),
            (200, &[("vary", "Cookie")], 10, Caller, Err(NotStorable::Vary)),
            (200, &[("vary", "authorization, origin")], 10, Global, Err(NotStorable::Vary)),
            (200, &[], 1024, Global, Ok(())),
            (200, &[], 1025, Global, Err(NotStorable::TooLarge { size: 1025, max: 1024 })),
        ];
        for (status, headers, len, scope, expected) in table {
            assert_eq!(
                check(*status, &h(headers), *len, *scope, 1024),
                *expected,
                "{status} {headers:?} {len} {scope:?}"
            );
        }
    }

    #[test]
    fn reasons_have_stable_names() {
        assert_eq!(NotStorable::SetCookie.as_str(), "set_cookie");
        assert_eq!(NotStorable::Vary.as_str(), "vary");
        assert!(NotStorable::SetCookie.is_personal() && NotStorable::NoStore.is_personal());
        assert!(NotStorable::Private.is_personal() && !NotStorable::Status(404).is_personal());
        assert_eq!(NotStorable::TooLarge { size: 2, max: 1 }.as_str(), "too_large");
    }
}
