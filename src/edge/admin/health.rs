//! `GET /_tollgate/health`: status for anyone; mode, Redis, policy, identity and build for the
//! admin, with warnings of what to fix.

use serde_json::{json, Value};

use crate::redis::Command;

use super::super::http::EdgeResponse;
use super::super::respond::LimitMode;
use super::super::services::{Platform, Services};

pub(super) async fn health<P: Platform>(services: &Services<P>, authorized: bool) -> EdgeResponse {
    let breaker = services.redis.as_ref().map_or(crate::redis::BreakerState::Closed, |r| r.breaker_state());
    let breaker_closed = breaker == crate::redis::BreakerState::Closed;
    if !authorized {
        let status = if services.redis.is_some() && !breaker_closed { "degraded" } else { "ok" };
        return EdgeResponse::json(200, &json!({ "status": status })).with_header("cache-control", "no-store");
    }
    let (mode, redis) = match &services.redis {
        None => (
            LimitMode::Memory.as_str(),
            json!({"configured": false, "reachable": false, "latency_ms": null, "breaker": breaker.as_str(), "reason": services.config.memory_reason}),
        ),
        Some(client) => {
            let started = services.clock.now_ms();
            let ping = client.command(Command::new("PING")).await;
            let latency = services.clock.now_ms().saturating_sub(started);
            let reachable = ping.is_ok();
            let breaker = client.breaker_state();
            let mode = if reachable && breaker == crate::redis::BreakerState::Closed { "redis" } else { "degraded" };
            (
                mode,
                json!({
                    "configured": true,
                    "reachable": reachable,
                    "latency_ms": reachable.then_some(latency),
                    "breaker": breaker.as_str(),
                    "reason": ping.err().map(|e| e.reason()),
                }),
            )
        }
    };
    let policy = &services.config.policy;
    let body = json!({
        "status": if mode == "degraded" { "degraded" } else { "ok" },
        "mode": mode,
        "redis": redis,
        "policy": {
            "version": services.config.policy_version,
            "tiers": policy.tiers.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "routes": policy.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        },
        "origin": { "configured": services.config.origin_url.is_some() },
        "identity": identity(services),
        "warnings": warnings(services),
        "build": { "name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION") },
        "isolate": { "started_ms": services.started_ms },
    });
    EdgeResponse::json(200, &body).with_header("cache-control", "no-store")
}

/// How callers are identified: hashing, the JWT secret, the key sets and what each holds.
fn identity<P: Platform>(services: &Services<P>) -> Value {
    let ids = &services.identifier;
    let sets: Vec<Value> = ids
        .key_sets()
        .map(|sets| sets.status())
        .unwrap_or_default()
        .into_iter()
        .map(|s| json!({"url": s.url, "keys": s.keys, "fetched": s.fetched, "last_error": s.last_error}))
        .collect();
    json!({
        "hash_secret": ids.hasher().is_keyed(),
        "jwt_secret": services.config.jwt_secret.is_some(),
        "jwks": sets,
    })
}

/// What an operator should fix.
fn warnings<P: Platform>(services: &Services<P>) -> Vec<&'static str> {
    let mut warnings = Vec::new();
    if !services.identifier.hasher().is_keyed() {
        warnings.push(
            "TOLLGATE_HASH_SECRET is not set: identifiers are hashed with plain SHA-256, and an IP address can be recovered from its hash",
        );
    }
    warnings
}
