//! The circuit breaker in front of Redis: after N consecutive transient failures, stop calling
//! for a cooldown (the route's failure policy answers instead), then let ONE probe through.
//!
//! `closed` → `open` after `failures_to_open` consecutive transient failures; `open` →
//! `half_open` once `cooldown_ms` have passed, admitting one probe; the probe's success closes
//! it, its failure opens it again. A probe that never reports (its request was cancelled) is
//! replaced by another after a further cooldown. Time is an input; nothing here sleeps.

use std::num::{NonZeroU32, NonZeroU64};

use crate::policy::RedisSettings;
use crate::redis::RedisError;

/// The breaker's state, with a stable name for health, headers and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// One probe call is (or may be) in flight; others are refused.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { since_ms: u64 },
    HalfOpen { probe_since_ms: u64 },
}

/// A circuit breaker for one dependency (Redis), per isolate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    failures_to_open: u32,
    cooldown_ms: u64,
    inner: Inner,
}

impl Breaker {
    /// A closed breaker opening after `failures_to_open` consecutive failures for `cooldown_ms`.
    pub fn new(failures_to_open: NonZeroU32, cooldown_ms: NonZeroU64) -> Self {
        Self {
            failures_to_open: failures_to_open.get(),
            cooldown_ms: cooldown_ms.get(),
            inner: Inner::Closed { failures: 0 },
        }
    }

    /// A breaker with the policy's `redis.breaker_failures` and `redis.breaker_cooldown_ms`.
    pub fn from_settings(settings: &RedisSettings) -> Self {
        Self::new(settings.breaker_failures, NonZeroU64::from(settings.breaker_cooldown_ms))
    }

    /// The state at `now_ms` (an open breaker whose cooldown is over reads as half-open).
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { since_ms } if now_ms >= since_ms.saturating_add(self.cooldown_ms) => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go to Redis now; `true` in half-open state makes this call the probe.
    pub fn try_acquire(&mut self, now_ms: u64) -> bool {
        match self.inner {
            Inner::Closed { .. } => true,
            Inner::Open { since_ms } | Inner::HalfOpen { probe_since_ms: since_ms } => {
                if now_ms >= since_ms.saturating_add(self.cooldown_ms) {
                    self.inner = Inner::HalfOpen { probe_since_ms: now_ms };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Redis answered: the breaker closes and the failure count starts over.
    pub fn on_success(&mut self) {
        self.inner = Inner::Closed { failures: 0 };
    }

    /// A transient failure (unreachable, timeout, busy) at `now_ms`.
    pub fn on_failure(&mut self, now_ms: u64) {
        self.inner = match self.inner {
            Inner::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.failures_to_open {
                    Inner::Open { since_ms: now_ms }
                } else {
                    Inner::Closed { failures }
                }
            }
            // Failures of calls that started before the breaker opened do not extend the cooldown.
            Inner::Open { since_ms } => Inner::Open { since_ms },
            Inner::HalfOpen { .. } => Inner::Open { since_ms: now_ms },
        };
    }

    /// Records a call's result: transient errors count as failures; any answer from Redis,
    /// even an error reply, shows it reachable and counts as a success.
    pub fn record<T>(&mut self, result: &Result<T, RedisError>, now_ms: u64) {
        match result {
            Err(e) if e.is_transient() => self.on_failure(now_ms),
            _ => self.on_success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(NonZeroU32::new(3).expect("3"), NonZeroU64::new(1_000).expect("1000"))
    }

    #[test]
    fn opens_after_n_consecutive_transient_failures() {
        let mut b = breaker();
        for t in 0..2 {
            b.on_failure(t);
            assert_eq!(b.state(t), BreakerState::Closed);
        }
        b.on_success();
        for t in 0..2 {
            b.on_failure(t);
        }
        assert_eq!(b.state(2), BreakerState::Closed, "a success starts the count over");
        b.on_failure(10);
        assert_eq!(b.state(10).as_str(), "open");
        assert!(!b.try_acquire(500));
    }

    #[test]
    fn half_open_admits_one_probe_and_its_result_decides() {
        let mut b = breaker();
        for _ in 0..3 {
            b.on_failure(0);
        }
        assert_eq!(b.state(1_000).as_str(), "half_open");
        assert!(b.try_acquire(1_000), "the probe");
        assert!(!b.try_acquire(1_001), "only one probe");
        b.on_failure(1_050);
        assert_eq!(b.state(1_100), BreakerState::Open);
        assert!(b.try_acquire(2_050));
        b.on_success();
        assert_eq!(b.state(2_060), BreakerState::Closed);
        assert!(b.try_acquire(2_060));
    }

    #[test]
    fn a_lost_probe_is_replaced_after_another_cooldown() {
        let mut b = breaker();
        for _ in 0..3 {
            b.on_failure(0);
        }
        assert!(b.try_acquire(1_000));
        assert!(!b.try_acquire(1_999));
        assert!(b.try_acquire(2_000));
    }

    #[test]
    fn only_transient_errors_count() {
        let mut b = breaker();
        for t in 0..5 {
            b.record::<()>(&Err(RedisError::reply("WRONGTYPE Operation against a key")), t);
        }
        assert_eq!(b.state(5), BreakerState::Closed);
        for t in 0..3 {
            b.record::<()>(&Err(RedisError::Timeout(50)), t);
        }
        assert_eq!(b.state(3), BreakerState::Open);
    }
}
