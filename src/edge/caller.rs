//! Identification, the gate's first stage: the request's credential becomes a [`Caller`] with the
//! tier whose limits apply.
//!
//! The rule for an API key that cannot be verified (the registry cannot be read and the key was
//! never verified in this isolate): it is never the anonymous caller. A route that fails `closed`
//! answers 503; any other route counts the request against an "unverified key" bucket of the
//! caller's IP group under the policy's default tier, so a flood of made-up keys from one address
//! shares one bucket and cannot add quota.

use std::num::NonZeroU32;

use crate::identity::api_key::{self, KeyRecord};
use crate::identity::{self, client_ip, AuthError, Credential, Identity, RegistryError};
use crate::limiter::{Check, Decision, Mode, RemoteLimiter};
use crate::policy::{FailurePolicy, Tier};

use super::error::GateError;
use super::http::EdgeRequest;
use super::services::{Platform, Services};

/// A caller after identification, with the limits that apply to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// Who, as the limiter sees them.
    pub identity: Identity,
    /// The tier whose limits apply.
    pub tier: Tier,
}

/// The credential `req` presents, read once per request ([`identity::credential_from`]).
pub fn credential<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> Result<Credential, AuthError> {
    identity::credential_from(|name| req.header(name).map(str::to_owned), &services.config.policy.identity)
}

/// Identifies the caller of `req` on a route with `failure` policy.
pub async fn identify<P: Platform>(
    services: &Services<P>,
    req: &EdgeRequest,
    failure: FailurePolicy,
) -> Result<Caller, GateError> {
    identify_by(services, req, credential(services, req), failure).await
}

/// Identifies the caller of `req`, whose credential was read already, on a route with `failure`
/// policy.
pub async fn identify_by<P: Platform>(
    services: &Services<P>,
    req: &EdgeRequest,
    credential: Result<Credential, AuthError>,
    failure: FailurePolicy,
) -> Result<Caller, GateError> {
    let policy = &services.config.policy;
    let credential = credential.map_err(GateError::Auth)?;
    let ids = &services.identifier;
    let ip_group = || client_ip::ip_group(req.header(client_ip::HEADER), policy.identity.ipv6_prefix);
    let identity = match credential {
        Credential::Anonymous(group) => ids.anonymous(&group, policy),
        Credential::Jwt(token) => {
            ids.identify_token(&token, &ip_group(), policy, services.clock.now_ms()).await.map_err(GateError::Auth)?
        }
        Credential::ApiKey(key) => match services.registry.resolve(&key).await {
            Ok(record) => Identity::from_key(&record, policy),
            Err(RegistryError::Unavailable(_)) if failure != FailurePolicy::Closed => Identity {
                subject_hash: ids.hasher().hash("unverified", &ip_group()),
                tier: policy.default_tier.clone(),
                kind: identity::CallerKind::Anonymous,
            },
            Err(e) => return Err(e.into()),
        },
    };
    Ok(Caller { tier: tier_of(&identity, services), identity })
}

/// The API key of `req` when its record must still be read: well-formed, not known fresh in this
/// isolate, and Redis in use with its breaker closed. Its check can then read the record in the
/// same script ([`super::decide::decide_by_key`]).
pub fn unverified_key<P: Platform>(
    services: &Services<P>,
    credential: &Result<Credential, AuthError>,
) -> Option<String> {
    let redis = services.redis.as_ref()?;
    if redis.breaker_state() != crate::redis::BreakerState::Closed {
        return None;
    }
    match credential {
        Ok(Credential::ApiKey(key)) if api_key::parse(key).is_some() && services.registry.fresh(key).is_none() => {
            Some(key.clone())
        }
        _ => None,
    }
}

/// The caller a key's record names.
pub fn from_record<P: Platform>(services: &Services<P>, record: &KeyRecord) -> Caller {
    let identity = Identity::from_key(record, &services.config.policy);
    Caller { tier: tier_of(&identity, services), identity }
}

/// The anonymous caller behind `req`: its IP group in the anonymous tier. It pays for the work
/// no verified credential pays for (failed credential lookups, `GET /_tollgate/me`).
pub fn anonymous<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> Caller {
    let policy = &services.config.policy;
    let group = client_ip::ip_group(req.header(client_ip::HEADER), policy.identity.ipv6_prefix);
    let identity = services.identifier.anonymous(&group, policy);
    Caller { tier: tier_of(&identity, services), identity }
}

/// Whether `req` presents an API key that this isolate has not verified before (which costs a
/// registry lookup to refuse). A key verified before is never held back by its address's
/// anonymous allowance: customers behind a shared address are not refused for someone else's
/// made-up keys.
pub fn presents_unknown_api_key<P: Platform>(
    services: &Services<P>,
    credential: &Result<Credential, AuthError>,
) -> bool {
    match credential {
        Ok(Credential::ApiKey(key)) => !services.registry.knows(key),
        _ => false,
    }
}

/// Whether the anonymous limits of `req`'s IP group are known exhausted in this isolate (no
/// Redis command): the refusal to answer with before spending a registry lookup.
pub fn anonymous_blocked<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> Option<(Caller, Decision)> {
    let caller = anonymous(services, req);
    let check = anonymous_check(&caller);
    let blocked = services.limits.blocks.borrow_mut().get(&check, services.clock.now_ms());
    blocked.map(|d| (caller, d))
}

/// Charges one request to the anonymous limits of `req`'s IP group; `Err` with the refusal when
/// they are exhausted (answer 429). In memory mode the isolate's limiter decides; when Redis
/// fails the charge is skipped, so it never makes Tollgate less available than the credential
/// check it accompanies.
pub async fn charge_anonymous<P: Platform>(
    services: &Services<P>,
    req: &EdgeRequest,
) -> Result<(), (Caller, Decision)> {
    let caller = anonymous(services, req);
    let check = anonymous_check(&caller);
    let now = services.clock.now_ms();
    let decision = match &services.redis {
        Some(redis) => match RemoteLimiter::new(redis, &services.keys).check(&check, None).await {
            Ok(checked) => checked.decision,
            Err(_) => return Ok(()),
        },
        None => match services.limits.memory.borrow_mut().check(&check, now) {
            Ok(d) => d,
            Err(_) => return Ok(()),
        },
    };
    if decision.is_allowed() {
        return Ok(());
    }
    if matches!(decision, Decision::Denied { .. }) {
        services.limits.blocks.borrow_mut().insert(&check, &decision, services.clock.now_ms());
    }
    Err((caller, decision))
}

fn anonymous_check(caller: &Caller) -> Check<'_> {
    Check {
        subject_hash: &caller.identity.subject_hash,
        tier_limits: &caller.tier.limits,
        route_limits: &[],
        cost: NonZeroU32::MIN,
        mode: Mode::Consume,
        usage: None,
        concurrency: None,
    }
}

/// The tier an identity names, else the default tier, else an empty one.
fn tier_of<P: Platform>(identity: &Identity, services: &Services<P>) -> Tier {
    let policy = &services.config.policy;
    policy
        .tier(&identity.tier)
        .or_else(|| policy.tier(&policy.default_tier))
        .cloned()
        .unwrap_or_else(|| Tier { name: identity.tier.clone(), limits: Vec::new() })
}
