//! The admin API under `/_tollgate/` (contract: `docs/admin-api.md`): health, stats,
//! invalidation, warming, API keys and per-subject limits. Bearer `TOLLGATE_ADMIN_TOKEN`,
//! compared in constant time; without it only the public part of `health` exists.

use std::num::NonZeroU32;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::cache::{self, InvalidationTarget, Origin, OriginRequest, Payload, Sleeper};
use crate::identity::{self, api_key};
use crate::limiter::{check_script, parse_reply, Check, Decision, Mode, Override};
use crate::policy::{CacheKeySource, CacheScope, Limit, RouteMatch};
use crate::redis::{Client, Command, Reply, Transport};

use super::gate::{redis_failure, upstream_path, Gate, LimitMode};
use super::http::{EdgeRequest, EdgeResponse};
use super::problem::Problem;
use super::stats;

/// Longest subject accepted by the admin API, bytes.
const MAX_SUBJECT: usize = 256;

type AdminResult = Result<EdgeResponse, Problem>;

/// Answers one `/_tollgate/…` request.
pub async fn handle<T, O, S>(gate: &Rc<Gate<T, O, S>>, req: &EdgeRequest) -> EdgeResponse
where
    T: Transport + Clone + 'static,
    O: Origin + 'static,
    S: Sleeper + 'static,
{
    let path = req.path.trim_start_matches("/_tollgate/");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    if segments == ["health"] && req.method == "GET" {
        let authorized = gate.config.admin_token.is_some() && authorized(gate, req);
        return health(gate, authorized).await;
    }
    if segments == ["me"] && req.method == "GET" {
        return me(gate, req).await.unwrap_or_else(|p| p.to_response());
    }
    if gate.config.admin_token.is_none() {
        return Problem::not_found("the admin API is disabled: TOLLGATE_ADMIN_TOKEN is not set").to_response();
    }
    if !authorized(gate, req) {
        return Problem::unauthorized("a valid admin token is required (Authorization: Bearer <TOLLGATE_ADMIN_TOKEN>)")
            .to_response()
            .with_header("www-authenticate", "Bearer realm=\"tollgate-admin\"");
    }
    let result = match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["stats"]) => stats_report(gate).await,
        ("DELETE", ["stats"]) => stats_reset(gate).await,
        ("POST", ["invalidate"]) => invalidate(gate, req).await,
        ("POST", ["warm"]) => warm_request(gate, req).await,
        ("POST", ["keys"]) => create_key(gate, req).await,
        ("GET", ["keys"]) => list_keys(gate).await,
        ("DELETE", ["keys", id]) => revoke_key(gate, id).await,
        ("GET", ["limits", subject]) => show_limits(gate, subject, query_param(&req.query, "tier").as_deref()).await,
        ("PUT", ["limits", subject]) => override_limits(gate, subject, req).await,
        ("DELETE", ["limits", subject]) => reset_limits(gate, subject).await,
        (_, ["stats" | "invalidate" | "warm" | "keys" | "limits" | "health" | "me", ..]) => {
            Err(Problem::method_not_allowed(format!("{} is not supported on {}", req.method, req.path)))
        }
        _ => Err(Problem::not_found(format!("no admin endpoint at {}", req.path))),
    };
    let mut resp = result.unwrap_or_else(|p| p.to_response());
    resp.set_header("cache-control", "no-store");
    resp
}

/// Whether the request carries the admin token (constant-time comparison).
fn authorized<T: Transport + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    req: &EdgeRequest,
) -> bool {
    let Some(expected) = gate.config.admin_token.as_deref() else { return false };
    let Some(given) =
        req.header("authorization").and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    given.trim().as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The Redis client, or the 503 of memory mode.
fn need_redis<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
) -> Result<&Client<T>, Problem> {
    gate.redis.as_ref().ok_or_else(|| {
        Problem::new(
            503,
            "redis-required",
            "Redis required",
            "this operation needs Redis; Tollgate runs in memory mode",
        )
    })
}

fn redis_problem(e: &crate::redis::RedisError) -> Problem {
    Problem::new(
        503,
        "redis-unavailable",
        "Redis unavailable",
        format!("the operation could not reach Redis ({})", redis_failure(e)),
    )
}

fn json_body<'a, D: Deserialize<'a>>(req: &'a EdgeRequest) -> Result<D, Problem> {
    let body = if req.body.is_empty() { &b"{}"[..] } else { &req.body[..] };
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

fn ok(value: Value) -> AdminResult {
    Ok(EdgeResponse::json(200, &value))
}

async fn health<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    authorized: bool,
) -> EdgeResponse {
    let now = gate.clock.now_ms();
    let breaker = gate.isolate.breaker.borrow().state(now);
    let breaker_closed = breaker.as_str() == "closed";
    if !authorized {
        let status = if gate.redis.is_some() && !breaker_closed { "degraded" } else { "ok" };
        return EdgeResponse::json(200, &json!({ "status": status })).with_header("cache-control", "no-store");
    }
    let (mode, redis) = match &gate.redis {
        None => (
            LimitMode::Memory.as_str(),
            json!({"configured": false, "reachable": false, "latency_ms": null, "breaker": breaker.as_str(), "reason": gate.config.memory_reason}),
        ),
        Some(client) => {
            let started = gate.clock.now_ms();
            let ping = client.command(Command::new("PING")).await;
            let latency = gate.clock.now_ms().saturating_sub(started);
            let reachable = ping.is_ok();
            let mode = if reachable && breaker_closed { "redis" } else { "degraded" };
            (
                mode,
                json!({
                    "configured": true,
                    "reachable": reachable,
                    "latency_ms": reachable.then_some(latency),
                    "breaker": breaker.as_str(),
                    "reason": ping.err().map(|e| redis_failure(&e)),
                }),
            )
        }
    };
    let policy = &gate.config.policy;
    let body = json!({
        "status": if mode == "degraded" { "degraded" } else { "ok" },
        "mode": mode,
        "redis": redis,
        "policy": {
            "version": gate.config.policy_version,
            "tiers": policy.tiers.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "routes": policy.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        },
        "origin": { "configured": gate.config.origin_url.is_some() },
        "build": { "name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION") },
        "isolate": { "started_ms": gate.isolate.started_ms },
    });
    EdgeResponse::json(200, &body).with_header("cache-control", "no-store")
}

async fn stats_report<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
) -> AdminResult {
    gate.flush_stats().await;
    let stored = match &gate.redis {
        Some(client) => match client.command(stats::read_command(&gate.keys)).await {
            Ok(reply) => stats::parse_stored(&reply),
            Err(e) => return Err(redis_problem(&e)),
        },
        None => Default::default(),
    };
    let local = gate.isolate.stats.borrow().pending().clone();
    ok(stats::report(&stored, &local, gate.clock.now_ms()))
}

async fn stats_reset<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
) -> AdminResult {
    gate.isolate.stats.borrow_mut().drain(gate.clock.now_ms());
    if let Some(client) = &gate.redis {
        client.command(stats::reset_command(&gate.keys)).await.map_err(|e| redis_problem(&e))?;
    }
    Ok(EdgeResponse::new(204))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    route: Option<String>,
    key: Option<String>,
    pattern: Option<String>,
    tag: Option<String>,
    namespace: Option<String>,
    subject: Option<String>,
}

/// The cache namespace of a cached route, and its rule.
fn cached_route<'p, T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &'p Gate<T, O, S>,
    name: &str,
) -> Result<(&'p crate::policy::Route, &'p crate::policy::CacheRule), Problem> {
    let route = gate
        .config
        .policy
        .routes
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Problem::bad_request(format!("route: no route named {name:?}")))?;
    let rule = route.cache.as_ref().ok_or_else(|| Problem::bad_request(format!("route: {name:?} is not cached")))?;
    Ok((route, rule))
}

async fn invalidate<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    req: &EdgeRequest,
) -> AdminResult {
    let body: InvalidateBody = json_body(req)?;
    let cache_aside = gate
        .cache
        .as_ref()
        .ok_or_else(|| need_redis(gate).err().unwrap_or_else(|| Problem::bad_request("no cache")))?;
    let subject_hash = match &body.subject {
        Some(s) => identity::subject_hash_of(s, &gate.config.policy.identity)
            .ok_or_else(|| Problem::bad_request("subject: not a valid subject"))?,
        None => String::new(),
    };
    let target = match (&body.route, &body.key, &body.pattern, &body.tag, &body.namespace) {
        (Some(route), Some(key), None, None, None) => {
            let (route, rule) = cached_route(gate, route)?;
            let raw = match rule.key {
                CacheKeySource::Path => cache::key::path_key(&key.split('/').collect::<Vec<_>>(), None),
                CacheKeySource::JsonBody => key.clone(),
            };
            if rule.scope == CacheScope::Caller && subject_hash.is_empty() {
                return Err(Problem::bad_request("subject: required for a per-caller route"));
            }
            InvalidationTarget::Key {
                ns: cache::key::namespace(&route.name, rule.scope),
                key: cache::key::scoped(rule.scope, &subject_hash, &raw),
            }
        }
        (Some(route), None, Some(pattern), None, None) => {
            let (route, rule) = cached_route(gate, route)?;
            InvalidationTarget::Pattern { ns: cache::key::namespace(&route.name, rule.scope), pattern: pattern.clone() }
        }
        (None, None, None, Some(tag), None) => InvalidationTarget::Tag(tag.clone()),
        (None, None, None, None, Some(ns)) => {
            let (route, rule) = cached_route(gate, ns)?;
            InvalidationTarget::Namespace(cache::key::namespace(&route.name, rule.scope))
        }
        _ => {
            return Err(Problem::bad_request(
                "give exactly one of {route, key}, {route, pattern}, {tag} or {namespace}",
            ))
        }
    };
    let done =
        cache_aside.invalidate(&target, &gate.config.policy.cache_classes).await.map_err(|e| redis_problem(&e))?;
    ok(json!({
        "kind": done.kind,
        "target": done.target,
        "deleted": done.deleted,
        "generation": done.generation,
        "published": done.published,
        "at_ms": done.at_ms,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmBody {
    route: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
}

async fn warm_request<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Rc<Gate<T, O, S>>,
    req: &EdgeRequest,
) -> AdminResult {
    let body: WarmBody = json_body(req)?;
    need_redis(gate)?;
    let value = warm(gate, body.route.as_deref(), &body.keys).await?;
    ok(value)
}

/// Fills hot keys: every configured `warm` key of every path-keyed, shared route, or the given
/// route's `keys`.
pub async fn warm<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Rc<Gate<T, O, S>>,
    only_route: Option<&str>,
    keys: &[String],
) -> Result<Value, Problem> {
    let Some(cache_aside) = &gate.cache else { return Ok(json!({"count": 0, "warmed": []})) };
    let policy = &gate.config.policy;
    if let Some(name) = only_route {
        cached_route(gate, name)?;
    }
    let mut warmed = Vec::new();
    for route in policy.routes.iter().filter(|r| only_route.is_none_or(|n| r.name == n)) {
        let Some(rule) = &route.cache else { continue };
        if rule.key != CacheKeySource::Path || rule.scope != CacheScope::Global {
            continue;
        }
        let Some(class) = policy.cache_class(&rule.class) else { continue };
        let wanted: &[String] = if only_route.is_some() && !keys.is_empty() { keys } else { &rule.warm };
        let names: Vec<&str> = route.pattern.params().collect();
        for key in wanted {
            let values: Vec<&str> = key.split('/').collect();
            if values.len() != names.len() || values.iter().any(|v| v.is_empty()) {
                warmed.push(json!({"route": route.name, "key": key, "status": "ERROR", "error": format!("expected {} path segment(s)", names.len())}));
                continue;
            }
            let matched = RouteMatch {
                params: names.iter().zip(&values).map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
                rest: String::new(),
            };
            let Ok(cache_key) = cache::key::cache_key(rule, &matched, None, b"", "") else { continue };
            let target = cache::CacheTarget::new(&route.name, rule, class.clone(), cache_key);
            let req = EdgeRequest::new("GET", &route.pattern.path_with(&values).unwrap_or_default());
            let origin_req = OriginRequest {
                method: "GET".into(),
                path_and_query: upstream_path(&req, route, &matched),
                headers: vec![("x-tollgate-caller".into(), "warmer".into())],
                body: Vec::new(),
            };
            match cache_aside.get_or_load(&target, origin_req).await {
                Ok(served) => {
                    let status = match served.payload {
                        Payload::Cached(_) => served.status.as_str(),
                        Payload::Passthrough(_) => "UNCACHEABLE",
                    };
                    warmed.push(json!({"route": route.name, "key": key, "status": status}));
                }
                Err(e) => {
                    warmed.push(json!({"route": route.name, "key": key, "status": "ERROR", "error": e.to_string()}))
                }
            }
        }
    }
    Ok(json!({"count": warmed.len(), "warmed": warmed}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    subject: String,
    tier: String,
    name: Option<String>,
}

/// Longest key name, bytes.
const MAX_KEY_NAME: usize = 64;

async fn create_key<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    req: &EdgeRequest,
) -> AdminResult {
    let body: CreateKeyBody = json_body(req)?;
    let client = need_redis(gate)?;
    let policy = &gate.config.policy;
    if body.subject.len() > MAX_SUBJECT {
        return Err(Problem::bad_request(format!("subject: longer than {MAX_SUBJECT} bytes")));
    }
    let subject_hash = identity::subject_hash_of(&body.subject, &policy.identity)
        .ok_or_else(|| Problem::bad_request("subject: must be a non-empty user id, ip:<address> or hash:<sha256>"))?;
    let tier = body.tier.to_ascii_uppercase();
    if policy.tier(&tier).is_none() {
        let known: Vec<&str> = policy.tiers.iter().map(|t| t.name.as_str()).collect();
        return Err(Problem::bad_request(format!("tier: unknown tier {:?} (known: {})", body.tier, known.join(", "))));
    }
    if let Some(name) = &body.name {
        if name.is_empty() || name.len() > MAX_KEY_NAME || name.chars().any(char::is_control) {
            return Err(Problem::bad_request(format!("name: 1 to {MAX_KEY_NAME} printable characters")));
        }
    }
    let (key, mut record) = api_key::generate(gate.random.as_ref(), &subject_hash, &tier, gate.clock.now_ms());
    record.name = body.name;
    let hash = api_key::key_hash(&key);
    let replies =
        client.multi_exec(api_key::create_commands(&gate.keys, &record, &hash)).await.map_err(|e| redis_problem(&e))?;
    let replies: Vec<Reply> = replies.into_iter().filter_map(Result::ok).collect();
    if !api_key::created(&replies) {
        return Err(Problem::new(
            409,
            "key-conflict",
            "Key not created",
            "a key with this id already exists; try again",
        ));
    }
    Ok(EdgeResponse::json(
        201,
        &json!({
            "id": record.id,
            "key": key,
            "tier": record.tier,
            "subject_hash": record.subject_hash,
            "name": record.name,
            "created_ms": record.created_ms,
        }),
    ))
}

async fn list_keys<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
) -> AdminResult {
    let client = need_redis(gate)?;
    let index = client.command(api_key::index_command(&gate.keys)).await.map_err(|e| redis_problem(&e))?;
    let entries = api_key::parse_index(&index);
    if entries.is_empty() {
        return ok(json!({"keys": []}));
    }
    let lookups: Vec<Command> = entries.iter().map(|(_, hash)| api_key::lookup_command(&gate.keys, hash)).collect();
    let replies = client.pipeline(lookups).await.map_err(|e| redis_problem(&e))?;
    let mut keys = Vec::new();
    for reply in replies.into_iter().flatten() {
        if let Ok(record) = api_key::parse_lookup(&reply) {
            keys.push(json!({"id": record.id, "tier": record.tier, "subject_hash": record.subject_hash, "name": record.name, "created_ms": record.created_ms}));
        }
    }
    ok(json!({"keys": keys}))
}

async fn revoke_key<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    id: &str,
) -> AdminResult {
    let client = need_redis(gate)?;
    if !api_key::is_key_id(id) {
        return Err(Problem::not_found(format!("no API key with id {id:?}")));
    }
    let reply = client.command(api_key::index_lookup_command(&gate.keys, id)).await.map_err(|e| redis_problem(&e))?;
    let hash =
        api_key::parse_index_lookup(&reply).ok_or_else(|| Problem::not_found(format!("no API key with id {id:?}")))?;
    client
        .multi_exec(api_key::revoke_commands(&gate.keys, id, &hash, gate.clock.now_ms()))
        .await
        .map_err(|e| redis_problem(&e))?;
    gate.isolate.key_cache.borrow_mut().remove(&hash);
    Ok(EdgeResponse::new(204))
}

/// Every route limit of the policy, each with its scope label.
fn all_route_limits<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
) -> (Vec<Limit>, Vec<String>) {
    let mut limits = Vec::new();
    let mut scopes = Vec::new();
    for route in &gate.config.policy.routes {
        for l in &route.limits {
            if !limits.iter().any(|x: &Limit| x.id == l.id) {
                limits.push(l.clone());
                scopes.push(format!("route:{}", route.name));
            }
        }
    }
    (limits, scopes)
}

/// The limits of a subject, peeked (nothing consumed).
async fn peek<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    subject_hash: &str,
    tier_name: &str,
) -> AdminResult {
    let policy = &gate.config.policy;
    let tier =
        policy.tier(tier_name).ok_or_else(|| Problem::bad_request(format!("tier: unknown tier {tier_name:?}")))?;
    let (route_limits, route_scopes) = all_route_limits(gate);
    let check = Check {
        subject_hash,
        tier_limits: &tier.limits,
        route_limits: &route_limits,
        cost: NonZeroU32::MIN,
        mode: Mode::Peek,
        usage: None,
        concurrency: None,
    };
    let (decision, stored_override) = match &gate.redis {
        Some(client) => {
            let call = check.command(&gate.keys).map_err(|e| Problem::bad_request(e.to_string()))?;
            let replies = client
                .pipeline_with_scripts(vec![
                    crate::redis::Entry::script(check_script(), &call.keys, &call.args),
                    crate::redis::Entry::Command(Override::get_command(&gate.keys, subject_hash)),
                ])
                .await
                .map_err(|e| redis_problem(&e))?;
            let mut it = replies.into_iter();
            let decision = match it.next() {
                Some(Ok(r)) => parse_reply(&r)
                    .map_err(|e| Problem::new(502, "redis-reply", "Unexpected Redis reply", e.to_string()))?,
                Some(Err(e)) => return Err(redis_problem(&e)),
                None => return Err(Problem::new(502, "redis-reply", "Unexpected Redis reply", "empty reply")),
            };
            let ov = match it.next() {
                Some(Ok(r)) => Override::from_reply(&r).ok().flatten(),
                _ => None,
            };
            (decision, ov)
        }
        None => {
            let now = gate.clock.now_ms();
            let d =
                gate.isolate.memory.borrow_mut().check(&check, now).map_err(|e| Problem::bad_request(e.to_string()))?;
            (d, gate.isolate.memory.borrow().get_override(subject_hash).cloned())
        }
    };
    let snapshot = decision.snapshot();
    let tier_count = stored_override.as_ref().map_or(tier.limits.len(), |o| o.limits.len());
    let limits: Vec<Value> = snapshot
        .limits
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let scope = if i < tier_count {
                "tier".to_owned()
            } else {
                route_scopes.get(i - tier_count).cloned().unwrap_or_default()
            };
            json!({
                "id": l.id, "scope": scope, "algorithm": l.algorithm.as_str(), "limit": l.limit,
                "window_ms": l.window_ms, "remaining": l.remaining, "reset_ms": l.reset_ms,
            })
        })
        .collect();
    ok(json!({
        "subject_hash": subject_hash,
        "tier": snapshot.tier.clone().unwrap_or_else(|| tier.name.clone()),
        "override": stored_override.map(|o| serde_json::from_str::<Value>(&o.to_json()).unwrap_or(Value::Null)),
        "now_ms": snapshot.now_ms,
        "limits": limits,
        "allowed": matches!(decision, Decision::Allowed(_)),
    }))
}

fn subject_hash<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    subject: &str,
) -> Result<String, Problem> {
    let decoded = percent_decode(subject);
    if decoded.len() > MAX_SUBJECT {
        return Err(Problem::bad_request(format!("subject: longer than {MAX_SUBJECT} bytes")));
    }
    identity::subject_hash_of(&decoded, &gate.config.policy.identity)
        .ok_or_else(|| Problem::bad_request("subject: must be a non-empty user id, ip:<address> or hash:<sha256>"))
}

async fn show_limits<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    subject: &str,
    tier: Option<&str>,
) -> AdminResult {
    let hash = subject_hash(gate, subject)?;
    let tier = tier.map(str::to_ascii_uppercase).unwrap_or_else(|| gate.config.policy.default_tier.clone());
    peek(gate, &hash, &tier).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    tier: Option<String>,
    limits: Option<Vec<crate::policy::raw::RawLimit>>,
}

async fn override_limits<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    subject: &str,
    req: &EdgeRequest,
) -> AdminResult {
    let hash = subject_hash(gate, subject)?;
    let body: OverrideBody = json_body(req)?;
    let policy = &gate.config.policy;
    let ov = match (body.tier, body.limits) {
        (Some(tier), None) => {
            let tier = tier.to_ascii_uppercase();
            let t = policy.tier(&tier).ok_or_else(|| Problem::bad_request(format!("tier: unknown tier {tier:?}")))?;
            Override { tier: t.name.clone(), limits: t.limits.clone() }
        }
        (tier, Some(raw)) => {
            let limits = crate::policy::override_limits(&raw).map_err(|e| Problem::bad_request(e.to_string()))?;
            Override { tier: tier.map(|t| t.to_ascii_uppercase()).unwrap_or_else(|| "CUSTOM".into()), limits }
        }
        (None, None) => return Err(Problem::bad_request("give {\"tier\": \"PRO\"} or {\"limits\": [...]}")),
    };
    ov.validate().map_err(|e| Problem::bad_request(e.to_string()))?;
    match &gate.redis {
        Some(client) => {
            client.command(ov.set_command(&gate.keys, &hash, None)).await.map_err(|e| redis_problem(&e))?;
        }
        None => gate.isolate.memory.borrow_mut().set_override(&hash, Some(ov.clone())),
    }
    ok(json!({"subject_hash": hash, "override": serde_json::from_str::<Value>(&ov.to_json()).unwrap_or(Value::Null)}))
}

async fn reset_limits<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Gate<T, O, S>,
    subject: &str,
) -> AdminResult {
    let hash = subject_hash(gate, subject)?;
    gate.isolate.blocks.borrow_mut().forget_subject(&hash);
    let Some(client) = &gate.redis else {
        gate.isolate.memory.borrow_mut().forget_subject(&hash);
        return Ok(EdgeResponse::new(204));
    };
    let pattern = gate.keys.limit_subject_pattern(&hash);
    let mut cursor = "0".to_owned();
    loop {
        let reply = client
            .command(
                Command::new("SCAN").arg(cursor.as_str()).arg("MATCH").arg(pattern.as_str()).arg("COUNT").arg(500u32),
            )
            .await
            .map_err(|e| redis_problem(&e))?;
        let (next, found) = match reply.as_array() {
            Some([c, Reply::Array(keys)]) => (
                c.as_str().unwrap_or("0").to_owned(),
                keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect::<Vec<_>>(),
            ),
            _ => {
                return Err(Problem::new(
                    502,
                    "redis-reply",
                    "Unexpected Redis reply",
                    "SCAN answered an unexpected shape",
                ))
            }
        };
        if !found.is_empty() {
            client.command(Command::del(found)).await.map_err(|e| redis_problem(&e))?;
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    Ok(EdgeResponse::new(204))
}

/// `GET /_tollgate/me`: the caller's own limits, nothing consumed.
async fn me<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static>(
    gate: &Rc<Gate<T, O, S>>,
    req: &EdgeRequest,
) -> AdminResult {
    let caller = gate.caller_identity(req).await.map_err(|resp| {
        let detail = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Problem::unauthorized(detail)
    })?;
    let mut resp = peek(gate, &caller.subject_hash, &caller.tier).await?;
    resp.set_header("cache-control", "no-store");
    Ok(resp)
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
