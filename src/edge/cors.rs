//! CORS for browser frontends: preflights answered at the edge (never consuming quota), and the
//! rate-limit and cache headers exposed to browser code.

use crate::policy::CorsSettings;

use super::http::{EdgeRequest, EdgeResponse};

/// Response headers browser code may read.
pub const EXPOSED: &str = "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit, RateLimit-Policy, \
Retry-After, X-Cache, Age, ETag, Server-Timing, X-Tollgate-Mode";

/// The allowed origin to echo for this request, if CORS applies to it.
pub fn allowed_origin<'a>(settings: &CorsSettings, req: &'a EdgeRequest) -> Option<&'a str> {
    let origin = req.header("origin")?;
    settings.allow_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)).then_some(origin)
}

/// Whether this is a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
pub fn is_preflight(req: &EdgeRequest) -> bool {
    req.method == "OPTIONS" && req.header("origin").is_some() && req.header("access-control-request-method").is_some()
}

/// The answer to a preflight: `204` with the allowed methods and headers, or `403` for an
/// origin outside the allow-list.
pub fn preflight(settings: &CorsSettings, req: &EdgeRequest) -> EdgeResponse {
    let Some(origin) = allowed_origin(settings, req) else {
        return EdgeResponse::new(403).with_header("vary", "Origin");
    };
    let requested = req.header("access-control-request-headers").unwrap_or("");
    let mut r = EdgeResponse::new(204)
        .with_header("access-control-allow-origin", origin)
        .with_header("access-control-allow-methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        .with_header("access-control-max-age", settings.max_age_s.to_string())
        .with_header("vary", "Origin");
    if !requested.is_empty() {
        r.set_header("access-control-allow-headers", requested);
    }
    r
}

/// Adds the CORS headers of an actual (non-preflight) response.
pub fn decorate(settings: &CorsSettings, req: &EdgeRequest, resp: &mut EdgeResponse) {
    if let Some(origin) = allowed_origin(settings, req) {
        resp.set_header("access-control-allow-origin", origin);
        resp.set_header("access-control-expose-headers", EXPOSED);
        resp.append_header("vary", "Origin");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings { allow_origins: origins.iter().map(|s| s.to_string()).collect(), max_age_s: 600 }
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
    }

    #[test]
    fn origins_outside_the_allow_list_get_no_cors_headers() {
        let req = EdgeRequest::new("GET", "/api/config/app").with_header("origin", "https://evil.example");
        let mut r = EdgeResponse::new(200);
        decorate(&settings(&["https://app.example"]), &req, &mut r);
        assert_eq!(r.header("access-control-allow-origin"), None);
        decorate(&settings(&["*"]), &req, &mut r);
        assert_eq!(r.header("access-control-allow-origin"), Some("https://evil.example"));
        assert!(r.header("access-control-expose-headers").unwrap().contains("X-RateLimit-Remaining"));
    }
}
