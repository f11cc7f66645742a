//! The admin API under `/_tollgate/` (contract: `docs/admin-api.md`): health, stats, cache
//! (invalidation, warming), the live event stream, API keys and per-subject limits, one file per
//! concern. Bearer `TOLLGATE_ADMIN_TOKEN`, compared in constant time; without it only the public
//! part of `health` (and the caller's own `/me`) exists.

mod cache;
mod events;
mod health;
mod keys;
mod limits;
mod stats;
pub mod throttle;

use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::error::AdminError;
use super::http::{EdgeRequest, EdgeResponse};
use super::respond::Outcome;
use super::services::{Platform, Services};

/// Longest subject accepted by the admin API, bytes.
const MAX_SUBJECT: usize = 256;

type AdminResult = Result<EdgeResponse, AdminError>;

/// Answers one `/_tollgate/…` request: a response, or the event stream to open.
pub async fn handle<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> Outcome {
    let path = req.path.trim_start_matches("/_tollgate/");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    if segments == ["health"] && req.method == "GET" {
        let authorized = services.config.admin_token.is_some() && authorized(services, req);
        return Outcome::Respond(health::health(services, authorized).await);
    }
    if segments == ["me"] && req.method == "GET" {
        return Outcome::Respond(limits::me(services, req).await.unwrap_or_else(|e| e.problem().to_response()));
    }
    let who = crate::identity::client_ip::ip_group(
        req.header(crate::identity::client_ip::HEADER),
        services.config.policy.identity.ipv6_prefix,
    );
    let now = services.clock.now_ms();
    let throttled = services.admin_failures.borrow_mut().blocked(&who, now);
    let result = match (services.config.admin_token.is_some(), throttled, authorized(services, req)) {
        (false, _, _) => Err(AdminError::Disabled),
        (true, Some(wait_ms), _) => Err(AdminError::Throttled { retry_after_s: wait_ms.div_ceil(1000) }),
        (true, None, false) => {
            services.admin_failures.borrow_mut().failed(&who, now);
            Err(AdminError::Unauthorized)
        }
        (true, None, true) if segments == ["events"] && req.method == "GET" => {
            return events::open(services, req)
                .map_or_else(|e| Outcome::Respond(no_store(e.problem().to_response())), Outcome::Events);
        }
        (true, None, true) => route(services, req, &segments).await,
    };
    Outcome::Respond(no_store(result.unwrap_or_else(|e| e.problem().to_response())))
}

fn no_store(mut resp: EdgeResponse) -> EdgeResponse {
    resp.set_header("cache-control", "no-store");
    resp
}

async fn route<P: Platform>(services: &Services<P>, req: &EdgeRequest, segments: &[&str]) -> AdminResult {
    match (req.method.as_str(), segments) {
        ("GET", ["stats"]) => stats::report(services).await,
        ("DELETE", ["stats"]) => stats::reset(services).await,
        ("POST", ["invalidate"]) => cache::invalidate(services, req).await,
        ("POST", ["warm"]) => cache::warm(services, req).await,
        ("POST", ["keys"]) => keys::create(services, req).await,
        ("GET", ["keys"]) => keys::list(services).await,
        ("DELETE", ["keys", id]) => keys::revoke(services, id).await,
        ("GET", ["limits", subject]) => {
            limits::show(services, subject, query_param(&req.query, "tier").as_deref()).await
        }
        ("PUT", ["limits", subject]) => limits::set_override(services, subject, req).await,
        ("DELETE", ["limits", subject]) => limits::reset(services, subject).await,
        (_, ["stats" | "invalidate" | "warm" | "events" | "keys" | "limits" | "health" | "me", ..]) => {
            Err(AdminError::MethodNotAllowed(format!("{} is not supported on {}", req.method, req.path)))
        }
        _ => Err(AdminError::NotFound(format!("no admin endpoint at {}", req.path))),
    }
}

/// Whether the request carries the admin token (constant-time comparison).
fn authorized<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> bool {
    token_matches(services, req.header("authorization"))
}

/// Whether an `Authorization` value carries the admin token (constant-time comparison); the
/// entrance asks before it reads an admin body.
pub fn token_matches<P: Platform>(services: &Services<P>, authorization: Option<&str>) -> bool {
    let Some(expected) = services.config.admin_token.as_deref() else { return false };
    let Some(given) = authorization.and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    }) else {
        return false;
    };
    given.trim().as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The Redis client, or the 503 of memory mode.
fn need_redis<P: Platform>(services: &Services<P>) -> Result<&crate::redis::Client<P::Transport>, AdminError> {
    services.redis.as_ref().ok_or(AdminError::RedisRequired)
}

fn json_body<'a, D: Deserialize<'a>>(req: &'a EdgeRequest) -> Result<D, AdminError> {
    let body = if req.body.is_empty() { &b"{}"[..] } else { &req.body[..] };
    serde_json::from_slice(body).map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

fn ok(value: Value) -> AdminResult {
    Ok(EdgeResponse::json(200, &value))
}

/// Decodes `%XX` escapes of a path segment (invalid escapes are kept as written).
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The subject hash of a subject named in a path segment.
fn subject_hash<P: Platform>(services: &Services<P>, subject: &str) -> Result<String, AdminError> {
    let decoded = percent_decode(subject);
    if decoded.len() > MAX_SUBJECT {
        return Err(AdminError::BadRequest(format!("subject: longer than {MAX_SUBJECT} bytes")));
    }
    services.identifier.subject_hash_of(&decoded, &services.config.policy.identity).ok_or_else(|| {
        AdminError::BadRequest("subject: must be a non-empty user id, ip:<address> or hash:<sha256>".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_in_paths_are_percent_decoded() {
        assert_eq!(percent_decode("ip%3A10.0.0.1"), "ip:10.0.0.1");
        assert_eq!(percent_decode("user%2"), "user%2");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("é%"), "é%");
        assert_eq!(percent_decode("%é"), "%é");
    }

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param("a=1&tier=PRO", "tier").as_deref(), Some("PRO"));
        assert_eq!(query_param("", "tier"), None);
    }
}
