//! The gate's limit stage: every limit that applies decided in one Redis round trip (with the
//! cache read, and on a miss the fill lock, riding in the same script call), or by the route's
//! failure policy when Redis fails, or by the isolate's limiter in memory mode. The fallback
//! starts from what Redis last said remained and owes Redis what it admits.

use std::num::NonZeroU32;

use crate::cache::{self, CacheTarget};
use crate::limiter::{Check, Decision, FillLock, Mode, RemoteLimiter};
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
