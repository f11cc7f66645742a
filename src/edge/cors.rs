//! CORS for browser frontends: preflights answered at the edge (never consuming quota), and the
//! rate-limit and cache headers exposed to browser code.
//!
//! The rules, so no policy turns Tollgate into a credential leak:
//! - `allow_origins: ["*"]` answers a literal `*`: any page may read the public answer, none with
//!   the caller's cookies (browsers refuse `*` with credentials). No `Origin` is ever reflected.
//! - An origin listed by name is echoed, with `Vary: Origin`.
//! - Tollgate never sends `Access-Control-Allow-Credentials` itself. When the origin answered with
//!   its own CORS headers, they are kept as they are (the origin decides about its credentials);
//!   Tollgate only adds the names it exposes to the origin's `Access-Control-Expose-Headers` and
//!   `Origin` to its `Vary`. When the origin sent `Access-Control-Allow-Credentials` without an
//!   `Access-Control-Allow-Origin`, Tollgate adds no origin of its own: pairing one with the
//!   origin's credentials is exactly the leak these rules exist to prevent.

use crate::policy::CorsSettings;

use super::http::{EdgeRequest, EdgeResponse};

/// Response headers browser code may read.
pub const EXPOSED: &str = "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit, RateLimit-Policy, \
Retry-After, X-Cache, Age, ETag, Server-Timing, X-Tollgate-Mode";

/// What `Access-Control-Allow-Origin` says for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowOrigin<'a> {
    /// `*`: the policy allows any origin.
    Any,
    /// The request's origin, listed by name in the policy.
    Listed(&'a str),
}

impl AllowOrigin<'_> {
    /// The header value.
    pub fn as_str(&self) -> &str {
        match self {
            AllowOrigin::Any => "*",
            AllowOrigin::Listed(o) => o,
        }
    }
}

/// The allowed origin for this request, if CORS applies to it. A name listed explicitly wins
/// over `*` (it is echoed); otherwise `*` answers a literal `*`.
pub fn allowed_origin<'a>(settings: &CorsSettings, req: &'a EdgeRequest) -> Option<AllowOrigin<'a>> {
    allow_for(settings, req.header("origin")?)
}

fn allow_for<'a>(settings: &CorsSettings, origin: &'a str) -> Option<AllowOrigin<'a>> {
    if settings.allow_origins.iter().any(|o| o != "*" && o.eq_ignore_ascii_case(origin)) {
        return Some(AllowOrigin::Listed(origin));
    }
    settings.allow_origins.iter().any(|o| o == "*").then_some(AllowOrigin::Any)
}

/// Whether answers depend on the request's `Origin` (an allow-list of names rather than `*`).
fn varies_by_origin(settings: &CorsSettings) -> bool {
    !settings.allow_origins.is_empty() && !settings.allow_origins.iter().all(|o| o == "*")
}

/// Whether this is a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
pub fn is_preflight(req: &EdgeRequest) -> bool {
    req.method == "OPTIONS" && req.header("origin").is_some() && req.header("access-control-request-method").is_some()
}

/// The answer to a preflight: `204` with the allowed methods and headers, or `403` for an
/// origin outside the allow-list.
pub fn preflight(settings: &CorsSettings, req: &EdgeRequest) -> EdgeResponse {
    let Some(allow) = allowed_origin(settings, req) else {
        return EdgeResponse::new(403).with_header("vary", "Origin");
    };
    let requested = req.header("access-control-request-headers").unwrap_or("");
    let mut r = EdgeResponse::new(204)
        .with_header("access-control-allow-origin", allow.as_str())
        .with_header("access-control-allow-methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        .with_header("access-control-max-age", settings.max_age_s.to_string());
    if varies_by_origin(settings) {
        r.set_header("vary", "Origin");
    }
    if !requested.is_empty() {
        r.set_header("access-control-allow-headers", requested);
    }
    r
}

/// Adds the CORS headers of an actual (non-preflight) response, merging with any the origin set
/// (see the module documentation).
pub fn decorate(settings: &CorsSettings, req: &EdgeRequest, resp: &mut EdgeResponse) {
    merge(settings, req, &mut resp.headers);
}

/// The headers [`merge`] may add to or change.
pub const MERGED: [&str; 3] = ["access-control-allow-origin", "access-control-expose-headers", "vary"];

/// [`decorate`] over a plain header list (the streamed proxy holds the origin's headers so).
pub fn merge(settings: &CorsSettings, req: &EdgeRequest, headers: &mut Vec<(String, String)>) {
    merge_for(settings, req.header("origin"), headers);
}

/// [`merge`] for a request whose `Origin` header is `origin`.
pub fn merge_for(settings: &CorsSettings, origin: Option<&str>, headers: &mut Vec<(String, String)>) {
    if settings.allow_origins.is_empty() {
        return;
    }
    if varies_by_origin(settings) {
        add_token(headers, "vary", "Origin");
    }
    let Some(allow) = origin.and_then(|o| allow_for(settings, o)) else { return };
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if has("access-control-allow-origin") {
        add_token(headers, "access-control-expose-headers", EXPOSED);
        return;
    }
    if has("access-control-allow-credentials") {
        return;
    }
    headers.push(("access-control-allow-origin".into(), allow.as_str().to_owned()));
    add_token(headers, "access-control-expose-headers", EXPOSED);
}

/// Adds the comma-separated `tokens` to header `name`, skipping those already listed (compared
/// ignoring ASCII case); a header that is absent is created.
fn add_token(headers: &mut Vec<(String, String)>, name: &str, tokens: &str) {
    let listed: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    if listed.iter().any(|t| t == "*") {
        return;
    }
    let missing: Vec<&str> = tokens
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !listed.contains(&t.to_ascii_lowercase()))
        .collect();
    if missing.is_empty() {
        return;
    }
    match headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some((_, value)) if !value.trim().is_empty() => {
            value.push_str(", ");
            value.push_str(&missing.join(", "));
        }
        Some((_, value)) => *value = missing.join(", "),
        None => headers.push((name.to_owned(), missing.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings { allow_origins: origins.iter().map(|s| s.to_string()).collect(), max_age_s: 600 }
    }

    fn get(origin: &str) -> EdgeRequest {
        EdgeRequest::new("GET", "/api/config/app").with_header("origin", origin)
    }

    #[test]
    fn preflight_from_an_allowed_origin_is_204_with_the_requested_headers() {
        let req = EdgeRequest::new("OPTIONS", "/api/chat")
            .with_header("origin", "http://localhost:3000")
            .with_header("access-control-request-method", "POST")
            .with_header("access-control-request-headers", "authorization, content-type");
        assert!(is_preflight(&req));
        let r = preflight(&settings(&["http://localhost:3000"]), &req);
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), Some("http://localhost:3000"));
        assert_eq!(r.header("access-control-allow-headers"), Some("authorization, content-type"));
        assert_eq!(r.header("vary"), Some("Origin"));
        let any = preflight(&settings(&["*"]), &req);
        assert_eq!(any.header("access-control-allow-origin"), Some("*"));
        assert_eq!(any.header("access-control-allow-credentials"), None);
    }

    #[test]
    fn origins_outside_the_allow_list_get_no_cors_headers() {
        let req = get("https://evil.example");
        let mut r = EdgeResponse::new(200);
        decorate(&settings(&["https://app.example"]), &req, &mut r);
        assert_eq!(r.header("access-control-allow-origin"), None);
        assert_eq!(r.header("vary"), Some("Origin"), "the answer still depends on the origin");
    }

    #[test]
    fn a_wildcard_answers_a_literal_star_and_never_reflects() {
        for origin in ["https://evil.example", "null", "http://localhost:3000"] {
            let mut r = EdgeResponse::new(200);
            decorate(&settings(&["*"]), &get(origin), &mut r);
            assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{origin}");
            assert!(r.header("access-control-expose-headers").unwrap().contains("X-RateLimit-Remaining"));
            assert_eq!(r.header("access-control-allow-credentials"), None);
            assert_eq!(r.header("vary"), None);
        }
        let mut r = EdgeResponse::new(200);
        decorate(&settings(&["*", "https://app.example"]), &get("https://app.example"), &mut r);
        assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"), "a listed name is echoed");
    }

    #[test]
    fn the_origins_credentials_are_never_paired_with_an_origin_tollgate_chose() {
        for policy in [&["*"][..], &["https://evil.example"][..]] {
            let mut r = EdgeResponse::new(200).with_header("Access-Control-Allow-Credentials", "true");
            decorate(&settings(policy), &get("https://evil.example"), &mut r);
            assert_eq!(r.header("access-control-allow-origin"), None, "{policy:?}");
            assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        }
    }

    #[test]
    fn the_origins_own_cors_answer_and_vary_are_kept_and_merged() {
        let mut r = EdgeResponse::new(200)
            .with_header("Access-Control-Allow-Origin", "https://app.example")
            .with_header("Access-Control-Allow-Credentials", "true")
            .with_header("Access-Control-Expose-Headers", "X-Request-Id, ETag")
            .with_header("Vary", "Accept-Encoding");
        decorate(&settings(&["*"]), &get("https://evil.example"), &mut r);
        assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        let exposed = r.header("access-control-expose-headers").unwrap();
        assert!(exposed.starts_with("X-Request-Id, ETag, X-RateLimit-Limit"), "{exposed}");
        assert_eq!(exposed.matches("ETag").count(), 1);
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));

        let mut r = EdgeResponse::new(200).with_header("Vary", "Accept-Encoding");
        decorate(&settings(&["https://app.example"]), &get("https://app.example"), &mut r);
        assert_eq!(r.header("vary"), Some("Accept-Encoding, Origin"));
        decorate(&settings(&["https://app.example"]), &get("https://app.example"), &mut r);
        assert_eq!(r.header("vary"), Some("Accept-Encoding, Origin"), "merging twice adds nothing");
        let mut star = EdgeResponse::new(200).with_header("vary", "*");
        decorate(&settings(&["https://app.example"]), &get("https://app.example"), &mut star);
        assert_eq!(star.header("vary"), Some("*"));
    }

    #[test]
    fn without_an_allow_list_nothing_is_added() {
        let mut r = EdgeResponse::new(200);
        decorate(&settings(&[]), &get("https://app.example"), &mut r);
        assert!(r.headers.is_empty());
    }
}
