//! `GET|PUT|DELETE /_tollgate/limits/{subject}` and `GET /_tollgate/me`: a subject's limits,
//! peeked (nothing consumed), overridden without a redeploy, or reset.

use std::num::NonZeroU32;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::limiter::{reservations, Check, Decision, InFlight, Mode, Override, RemoteLimiter};
use crate::policy::{Limit, Unit};
use crate::redis::{Command, Reply};

use super::super::caller;
use super::super::error::AdminError;
use super::super::http::{EdgeRequest, EdgeResponse};
use super::super::services::{Platform, Services};
use super::{json_body, ok, subject_hash, AdminResult};

/// Every route limit of the policy, each with its scope label.
fn all_route_limits<P: Platform>(services: &Services<P>) -> (Vec<Limit>, Vec<String>) {
    let mut limits = Vec::new();
    let mut scopes = Vec::new();
    for route in &services.config.policy.routes {
        for l in &route.limits {
            if !limits.iter().any(|x: &Limit| x.id == l.id) {
                limits.push(l.clone());
                scopes.push(format!("route:{}", route.name));
            }
        }
    }
    (limits, scopes)
}

/// The limits of a subject in `tier_name`, peeked.
async fn peek<P: Platform>(services: &Services<P>, subject_hash: &str, tier_name: &str) -> Result<Value, AdminError> {
    let policy = &services.config.policy;
    let tier =
        policy.tier(tier_name).ok_or_else(|| AdminError::BadRequest(format!("tier: unknown tier {tier_name:?}")))?;
    let (route_limits, route_scopes) = all_route_limits(services);
    let check = Check {
        subject_hash,
        tier_limits: &tier.limits,
        route_limits: &route_limits,
        cost: NonZeroU32::MIN,
        mode: Mode::Peek,
        usage: None,
        concurrency: None,
    };
    let (decision, stored_override) = match &services.redis {
        Some(client) => RemoteLimiter::new(client, &services.keys).peek(&check).await?,
        None => {
            let now = services.clock.now_ms();
            let mut memory = services.limits.memory.borrow_mut();
            let d = memory.check(&check, now).map_err(|e| AdminError::BadRequest(e.to_string()))?;
            (d, memory.get_override(subject_hash).cloned())
        }
    };
    let snapshot = decision.snapshot();
    let tier_count = stored_override.as_ref().map_or(tier.limits.len(), |o| o.limits.len());
    let tier_label = snapshot.tier.clone().unwrap_or_else(|| tier.name.clone());
    let limits: Vec<Value> = snapshot
        .limits
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (scope, for_tier) = if i < tier_count {
                ("tier".to_owned(), Some(tier_label.as_str()))
            } else {
                (route_scopes.get(i - tier_count).cloned().unwrap_or_default(), None)
            };
            json!({
                "id": l.id, "scope": scope, "tier": for_tier, "algorithm": l.algorithm.as_str(), "limit": l.limit,
                "window_ms": l.window_ms, "remaining": l.remaining, "reset_ms": l.reset_ms,
                "unit": l.unit.as_str(), "mode": l.mode.as_str(), "used": l.limit.saturating_sub(l.remaining),
            })
        })
        .collect();
    let (leases, reservations) = in_flight(services, subject_hash, snapshot.now_ms).await?;
    Ok(json!({
        "subject_hash": subject_hash,
        "tier": tier_label,
        "override": stored_override.map(|o| serde_json::from_str::<Value>(&o.to_json()).unwrap_or(Value::Null)),
        "now_ms": snapshot.now_ms,
        "limits": limits,
        "leases": leases,
        "reservations": reservations,
        "allowed": matches!(decision, Decision::Allowed(_)),
    }))
}

/// What the subject has in flight: its concurrency leases (not yet released, deadline ahead) per
/// route with a `concurrency` rule, and its usage reservations (not yet settled, deadline ahead)
/// per unit, from one pipeline: a `ZCOUNT` per such route and one `ZRANGEBYSCORE` of the
/// reservations (when a route reserves usage). In memory mode, from the isolate's limiter.
///
/// Reservations are shown per unit, not per limit: a reservation is charged to every limit of
/// its unit that the route checks, so each of those limits' `used` includes it. Every unit a
/// route reserves is listed (with 0 when nothing is in flight), then any other unit found in
/// flight; `in_flight` and `units` are `null` when Redis could not say.
async fn in_flight<P: Platform>(
    services: &Services<P>,
    subject_hash: &str,
    now_ms: u64,
) -> Result<(Vec<Value>, Vec<Value>), AdminError> {
    let policy = &services.config.policy;
    let routes: Vec<_> = policy.routes.iter().filter_map(|r| r.concurrency.as_ref().map(|c| (r, c))).collect();
    let mut units: Vec<&Unit> = Vec::new();
    for u in policy.routes.iter().filter_map(|r| r.usage.as_ref()) {
        if !units.contains(&&u.unit) {
            units.push(&u.unit);
        }
    }
    let (leases, reserved): (Vec<Option<i64>>, Option<Vec<InFlight>>) = match &services.redis {
        None => {
            let memory = services.limits.memory.borrow();
            let leases =
                routes.iter().map(|(r, _)| Some(i64::from(memory.leases_in_flight(subject_hash, &r.name, now_ms))));
            (leases.collect(), Some(memory.reservations_in_flight(subject_hash, now_ms)))
        }
        Some(_) if routes.is_empty() && units.is_empty() => (Vec::new(), Some(Vec::new())),
        Some(redis) => {
            let mut commands: Vec<Command> = routes
                .iter()
                .map(|(r, _)| {
                    Command::new("ZCOUNT")
                        .arg(services.keys.limit_leases(subject_hash, &r.name))
                        .arg(format!("({now_ms}"))
                        .arg("+inf")
                })
                .collect();
            if !units.is_empty() {
                commands.push(
                    Command::new("ZRANGEBYSCORE")
                        .arg(services.keys.limit_reservations(subject_hash))
                        .arg(format!("({now_ms}"))
                        .arg("+inf"),
                );
            }
            let mut replies = redis.pipeline(commands).await?.into_iter();
            let leases = routes.iter().map(|_| replies.next().and_then(|r| r.ok()).and_then(|r| r.to_i64())).collect();
            let reserved = if units.is_empty() {
                Some(Vec::new())
            } else {
                replies.next().and_then(|r| r.ok()).and_then(|r| {
                    let members: Option<Vec<&str>> = r.as_array()?.iter().map(Reply::as_str).collect();
                    members.map(reservations::tally)
                })
            };
            (leases, reserved)
        }
    };
    let leases = routes
        .iter()
        .zip(leases)
        .map(|((route, rule), in_flight)| {
            json!({"route": route.name, "id": rule.id, "in_flight": in_flight, "limit": rule.limit.get(), "lease_ms": rule.lease_ms.get()})
        })
        .collect();
    Ok((leases, reservation_lines(&units, reserved.as_deref())))
}

/// One line per unit: those in `units` first (0 when none is in flight), then any other unit
/// found; `null` counts when `found` is `None` (Redis could not say).
fn reservation_lines(units: &[&Unit], found: Option<&[InFlight]>) -> Vec<Value> {
    let line =
        |unit: &str, count: Option<u32>, sum: Option<u64>| json!({"unit": unit, "in_flight": count, "units": sum});
    let mut lines: Vec<Value> = units
        .iter()
        .map(|unit| match found {
            None => line(unit.as_str(), None, None),
            Some(found) => {
                let f = found.iter().find(|f| f.unit == **unit);
                line(unit.as_str(), Some(f.map_or(0, |f| f.count)), Some(f.map_or(0, |f| f.units)))
            }
        })
        .collect();
    for f in found.unwrap_or_default().iter().filter(|f| !units.contains(&&f.unit)) {
        lines.push(line(f.unit.as_str(), Some(f.count), Some(f.units)));
    }
    lines
}

pub(super) async fn show<P: Platform>(services: &Services<P>, subject: &str, tier: Option<&str>) -> AdminResult {
    let hash = subject_hash(services, subject)?;
    // The tiers the subject's API keys carry; without `?tier=`, the first of them (else the
    // default tier) is the one shown.
    let key_tiers: Vec<String> = match &services.redis {
        Some(_) => {
            let mut tiers: Vec<String> = services
                .registry
                .list()
                .await?
                .into_iter()
                .filter(|r| r.subject_hash == hash)
                .map(|r| r.tier)
                .collect();
            tiers.sort();
            tiers.dedup();
            tiers
        }
        None => Vec::new(),
    };
    let tier = match tier {
        Some(t) => t.to_ascii_uppercase(),
        None => key_tiers.first().cloned().unwrap_or_else(|| services.config.policy.default_tier.clone()),
    };
    let mut body = peek(services, &hash, &tier).await?;
    body["key_tiers"] = json!(key_tiers);
    ok(body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    tier: Option<String>,
    limits: Option<Vec<crate::policy::raw::RawLimit>>,
}

pub(super) async fn set_override<P: Platform>(services: &Services<P>, subject: &str, req: &EdgeRequest) -> AdminResult {
    let hash = subject_hash(services, subject)?;
    let body: OverrideBody = json_body(req)?;
    let policy = &services.config.policy;
    let ov = match (body.tier, body.limits) {
        (Some(tier), None) => {
            let tier = tier.to_ascii_uppercase();
            let t = policy.tier(&tier).ok_or_else(|| AdminError::BadRequest(format!("tier: unknown tier {tier:?}")))?;
            Override { tier: t.name.clone(), limits: t.limits.clone() }
        }
        (tier, Some(raw)) => {
            let limits = crate::policy::override_limits(&raw).map_err(|e| AdminError::BadRequest(e.to_string()))?;
            Override { tier: tier.map(|t| t.to_ascii_uppercase()).unwrap_or_else(|| "CUSTOM".into()), limits }
        }
        (None, None) => return Err(AdminError::BadRequest("give {\"tier\": \"PRO\"} or {\"limits\": [...]}".into())),
    };
    ov.validate().map_err(|e| AdminError::BadRequest(e.to_string()))?;
    match &services.redis {
        Some(client) => {
            client.command(ov.set_command(&services.keys, &hash, None)).await?;
        }
        None => services.limits.memory.borrow_mut().set_override(&hash, Some(ov.clone())),
    }
    ok(json!({"subject_hash": hash, "override": serde_json::from_str::<Value>(&ov.to_json()).unwrap_or(Value::Null)}))
}

pub(super) async fn reset<P: Platform>(services: &Services<P>, subject: &str) -> AdminResult {
    let hash = subject_hash(services, subject)?;
    services.limits.blocks.borrow_mut().forget_subject(&hash);
    match &services.redis {
        Some(client) => {
            client.delete_matching(&services.keys.limit_subject_pattern(&hash)).await?;
        }
        None => services.limits.memory.borrow_mut().forget_subject(&hash),
    }
    Ok(EdgeResponse::new(204))
}

/// `GET /_tollgate/me`: the caller's own limits, nothing consumed.
pub(super) async fn me<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> AdminResult {
    // Nothing else meters this endpoint: every call is charged to the address's anonymous limits.
    if let Err((_, refused)) = caller::charge_anonymous(services, req).await {
        let wait = refused.retry_after_ms().map_or(1, |ms| ms.div_ceil(1000));
        return Err(AdminError::Throttled { retry_after_s: wait });
    }
    let caller =
        caller::identify(services, req, crate::policy::FailurePolicy::Closed).await.map_err(AdminError::Gate)?;
    let mut resp = EdgeResponse::json(200, &peek(services, &caller.identity.subject_hash, &caller.tier.name).await?);
    resp.set_header("cache-control", "no-store");
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str) -> Unit {
        Unit::parse(name).expect("unit")
    }

    #[test]
    fn reservations_get_a_line_per_reserved_unit_then_per_other_unit_found() {
        let (tokens, bytes) = (unit("tokens"), unit("bytes"));
        let found = [
            InFlight { unit: unit("images"), count: 1, units: 4 },
            InFlight { unit: tokens.clone(), count: 2, units: 600 },
        ];
        assert_eq!(
            Value::Array(reservation_lines(&[&tokens, &bytes], Some(&found))),
            json!([
                {"unit": "tokens", "in_flight": 2, "units": 600},
                {"unit": "bytes", "in_flight": 0, "units": 0},
                {"unit": "images", "in_flight": 1, "units": 4},
            ])
        );
        assert_eq!(
            Value::Array(reservation_lines(&[&tokens], None)),
            json!([{"unit": "tokens", "in_flight": null, "units": null}]),
            "Redis could not say"
        );
        assert!(reservation_lines(&[], Some(&[])).is_empty());
    }
}
