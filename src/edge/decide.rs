//! The gate's limit stage: every limit that applies decided in one Redis round trip (with the
//! cache read, and on a miss the fill lock, riding in the same script call), or by the route's
//! failure policy when Redis fails, or by the isolate's limiter in memory mode. The fallback
//! starts from what Redis last said remained and owes Redis what it admits.

use std::num::NonZeroU32;

use crate::cache::{self, CacheTarget};
use crate::identity::api_key::{self, KeyRecord};
use crate::identity::AuthError;
use crate::limiter::{Check, Decision, FillLock, KeyCheck, KeyChecked, Mode, RemoteLimiter};
use crate::policy::FailurePolicy;
use crate::redis::{RedisError, Reply};

use super::error::GateError;
use super::mode::LimitMode;
use super::services::{Platform, Services};

/// What the limit stage decided.
pub(super) struct Verdict {
    /// `None` when the route failed open.
    pub decision: Option<Decision>,
    /// The cache read that rode along, when it did.
    pub read: Option<Result<Reply, RedisError>>,
    pub mode: LimitMode,
    pub timing: Vec<String>,
    /// The fill lock the check tried on a miss, and whether it took it.
    pub locked: Option<(cache::FillLockPlan, bool)>,
}

/// The limit stage: the check (and the cache read) in one Redis round trip, or the route's
/// failure policy when Redis fails, or the isolate's limiter in memory mode.
pub(super) async fn decide<P: Platform>(
    services: &Services<P>,
    check: &Check<'_>,
    target: Option<&CacheTarget>,
    failure: FailurePolicy,
    route_name: &str,
) -> Result<Verdict, GateError> {
    let local = |mode| {
        let decision = check_local(services, check);
        if mode == LimitMode::Local && decision.is_allowed() {
            services.limits.owe(check.subject_hash, check.cost.get());
        }
        Verdict { decision: Some(decision), read: None, mode, timing: Vec::new(), locked: None }
    };
    let Some(redis) = &services.redis else { return Ok(local(LimitMode::Memory)) };
    // A cacheable request reads the entry in the check, and on a miss takes the fill lock there
    // too: one round trip before the origin.
    let read = match (&services.cache, target) {
        (Some(cache), Some(t)) => Some((cache.read_keys(t), cache.fill_lock(t))),
        _ => None,
    };
    let remote = RemoteLimiter::new(redis, &services.keys);
    // What the fallback admitted is paid first, once Redis answers again (not while the breaker
    // is open); a payment that does not arrive stays owed.
    if redis.breaker_state() == crate::redis::BreakerState::Closed {
        if let Some(debt) = services.limits.take_debt(check.subject_hash) {
            if !pay_debt(&remote, check, debt).await {
                services.limits.owe(check.subject_hash, debt);
            }
        }
    }
    let started = services.clock.now_ms();
    let result = match &read {
        Some((keys, plan)) => {
            let lock = FillLock { key: &plan.key, token: &plan.token, ttl_ms: plan.ttl_ms };
            remote.check_and_read(check, keys, Some(lock)).await
        }
        None => remote.check(check, None).await,
    };
    match result {
        Ok(checked) => {
            services.limits.seed(check.subject_hash, &checked.decision);
            let locked = match (read, checked.lock) {
                (Some((_, plan)), Some(taken)) => Some((plan, taken)),
                _ => None,
            };
            Ok(Verdict {
                decision: Some(checked.decision),
                read: checked.ride_along,
                mode: LimitMode::Redis,
                timing: vec![format!("redis;dur={}", services.clock.now_ms().saturating_sub(started))],
                locked,
            })
        }
        Err(e) => match failure {
            FailurePolicy::Closed => Err(GateError::limiter(route_name, &e)),
            FailurePolicy::Open => {
                Ok(Verdict { decision: None, read: None, mode: LimitMode::Open, timing: Vec::new(), locked: None })
            }
            FailurePolicy::Local => Ok(local(LimitMode::Local)),
        },
    }
}

/// What the limit stage found for a caller known by an API key not verified in this isolate.
pub(super) enum ByKey {
    /// The key is valid: its record, and the check of its subject and tier.
    Decided(KeyRecord, Box<Verdict>),
    /// The key is unknown, revoked or its record corrupt; nothing was charged.
    Refused(AuthError),
    /// Redis did not answer: identify the caller the usual way (which knows what an outage
    /// means for a key), then check.
    Unanswered,
}

/// The limit stage of a request whose API key this isolate has not verified: the key's record
/// read and the limits of its subject and tier checked in ONE script call, so the key costs no
/// round trip of its own. `check` holds the route's part (its subject and tier limits are not
/// read).
pub(super) async fn decide_by_key<P: Platform>(
    services: &Services<P>,
    key: &str,
    check: &Check<'_>,
    target: Option<&CacheTarget>,
) -> ByKey {
    let Some(redis) = &services.redis else { return ByKey::Unanswered };
    let policy = &services.config.policy;
    let record_key = services.keys.api_key(&api_key::key_hash(key));
    let keyed =
        KeyCheck { record_key: &record_key, tiers: &policy.tiers, fallback_tier: &policy.default_tier, check: *check };
    let remote = RemoteLimiter::new(redis, &services.keys);
    let started = services.clock.now_ms();
    let read = match (&services.cache, target) {
        (Some(cache), Some(t)) => Some((cache.read_keys(t), cache.fill_lock(t))),
        _ => None,
    };
    let result = match &read {
        Some((keys, plan)) => {
            let lock = FillLock { key: &plan.key, token: &plan.token, ttl_ms: plan.ttl_ms };
            remote.check_key_and_read(&keyed, keys, Some(lock)).await
        }
        None => remote.check_key(&keyed).await.map(|found| (found, None, None)),
    };
    let (found, ride_along, taken) = match result {
        Ok(found) => found,
        Err(_) => return ByKey::Unanswered,
    };
    let refused = match found {
        KeyChecked::Valid { record, decision } => match api_key::parse_lookup(&record) {
            Ok(record) => {
                services.registry.learn(key, Ok(record.clone()));
                services.limits.seed(&record.subject_hash, &decision);
                let timing = vec![format!("redis;dur={}", services.clock.now_ms().saturating_sub(started))];
                let locked = match (read, taken) {
                    (Some((_, plan)), Some(taken)) => Some((plan, taken)),
                    _ => None,
                };
                let verdict =
                    Verdict { decision: Some(*decision), read: ride_along, mode: LimitMode::Redis, timing, locked };
                return ByKey::Decided(record, Box::new(verdict));
            }
            Err(e) => e,
        },
        KeyChecked::Unknown => AuthError::UnknownKey,
        KeyChecked::Revoked => AuthError::Revoked,
        KeyChecked::Corrupt => AuthError::CorruptRecord,
    };
    services.registry.learn(key, Err(refused.clone()));
    ByKey::Refused(refused)
}

/// Charges Redis what the fallback admitted for this caller while Redis failed, before the
/// caller's next check there, so the switch back does not hand out the same units twice. The
/// fallback admitted at most what Redis last said remained, so the charge fits unless other
/// isolates spent those units meanwhile (then the all-or-nothing check charges nothing: that is
/// the overshoot bound). One more command, once per caller after an outage; `false` when the
/// payment did not reach Redis.
async fn pay_debt<T: crate::redis::Transport>(remote: &RemoteLimiter<'_, T>, check: &Check<'_>, debt: u32) -> bool {
    let Some(cost) = NonZeroU32::new(debt) else { return true };
    let charge = Check { cost, mode: Mode::Consume, usage: None, concurrency: None, ..*check };
    remote.check(&charge, None).await.is_ok()
}

/// The same check in this isolate only, held to what Redis last said remained.
fn check_local<P: Platform>(services: &Services<P>, check: &Check<'_>) -> Decision {
    let now = services.clock.now_ms();
    let decision = services.limits.memory.borrow_mut().check(check, now);
    match decision {
        Ok(d) => services.limits.hold_to_seed(check.subject_hash, check.cost.get(), d),
        // Limits are validated at config load; an unexpected refusal lets the request through
        // rather than failing it.
        Err(_) => Decision::Allowed(crate::limiter::Snapshot::empty(now)),
    }
}
