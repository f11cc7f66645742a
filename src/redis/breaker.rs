//! The circuit breaker in front of Redis: it opens on a failure RATE, never on load.
//!
//! The outcomes of the last [`WINDOW_CALLS`] calls within `window_ms` are kept. The breaker opens
//! when, among them, at least `min_failures` calls failed and failures are at least
//! `failure_rate` of them (so a run of failures after many successes opens it within a few calls,
//! and old outcomes do not dilute new ones).
//! Only real failures count (refused connections, error statuses, timeouts past the adaptive
//! budget — [`RedisError::is_transient`]); a slow answer that arrives is a success, however slow.
//! `open` → `half_open` once `cooldown_ms` have passed, admitting ONE probe; its success closes
//! the breaker (and forgets the window), its failure opens it again. A probe that never reports
//! (its request was cancelled) is replaced after a further cooldown. Time is an input; nothing
//! here sleeps.

use std::collections::VecDeque;
use std::num::{NonZeroU32, NonZeroU64};

use crate::policy::RedisSettings;

use super::RedisError;

/// Calls whose outcomes decide the failure rate (the most recent ones within the window).
pub const WINDOW_CALLS: usize = 20;

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
    Closed,
    Open { since_ms: u64 },
    HalfOpen { probe_since_ms: u64 },
}

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Failures within the window needed before the rate is considered at all.
    pub min_failures: u32,
    /// Share of failed calls within the window that opens the breaker, in (0, 1].
    pub failure_rate: f64,
    /// How far back outcomes count, ms.
    pub window_ms: u64,
    /// How long the breaker stays open before a probe, ms.
    pub cooldown_ms: u64,
}

impl BreakerConfig {
    /// The policy's `redis.breaker_*` settings.
    pub fn from_settings(settings: &RedisSettings) -> Self {
        Self {
            min_failures: settings.breaker_failures.get(),
            failure_rate: settings.breaker_failure_rate,
            window_ms: u64::from(settings.breaker_window_ms.get()),
            cooldown_ms: u64::from(settings.breaker_cooldown_ms.get()),
        }
    }
}

/// A circuit breaker for one dependency (Redis), per isolate.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Inner,
    /// (time, failed) of recent calls, oldest first.
    outcomes: VecDeque<(u64, bool)>,
}

impl Breaker {
    /// A closed breaker opening on `config`'s rule.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, inner: Inner::Closed, outcomes: VecDeque::new() }
    }

    /// A breaker opening after `failures` failures that make up at least half of the calls of
    /// the last 10 s, for `cooldown_ms`.
    pub fn with_failures(failures: NonZeroU32, cooldown_ms: NonZeroU64) -> Self {
        Self::new(BreakerConfig {
            min_failures: failures.get(),
            failure_rate: 0.5,
            window_ms: 10_000,
            cooldown_ms: cooldown_ms.get(),
        })
    }

    /// A breaker with the policy's settings.
    pub fn from_settings(settings: &RedisSettings) -> Self {
        Self::new(BreakerConfig::from_settings(settings))
    }

    /// The state at `now_ms` (an open breaker whose cooldown is over reads as half-open).
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.inner {
            Inner::Closed => BreakerState::Closed,
            Inner::Open { since_ms } if now_ms >= since_ms.saturating_add(self.config.cooldown_ms) => {
                BreakerState::HalfOpen
            }
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go to Redis now; `true` in half-open state makes this call the probe.
    pub fn try_acquire(&mut self, now_ms: u64) -> bool {
        match self.inner {
            Inner::Closed => true,
            Inner::Open { since_ms } | Inner::HalfOpen { probe_since_ms: since_ms } => {
                if now_ms >= since_ms.saturating_add(self.config.cooldown_ms) {
                    self.inner = Inner::HalfOpen { probe_since_ms: now_ms };
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Redis answered at `now_ms`.
    pub fn on_success(&mut self, now_ms: u64) {
        match self.inner {
            Inner::HalfOpen { .. } => {
                self.inner = Inner::Closed;
                self.outcomes.clear();
            }
            Inner::Closed => self.push(now_ms, false),
            // A late answer to a call made before the breaker opened does not close it: only the
            // probe decides.
            Inner::Open { .. } => {}
        }
    }

    /// A real failure (unreachable, error status, timeout past the budget) at `now_ms`.
    pub fn on_failure(&mut self, now_ms: u64) {
        match self.inner {
            Inner::Closed => {
                self.push(now_ms, true);
                if self.tripped() {
                    self.inner = Inner::Open { since_ms: now_ms };
                }
            }
            // Failures of calls that started before the breaker opened do not extend the cooldown.
            Inner::Open { .. } => {}
            Inner::HalfOpen { .. } => self.inner = Inner::Open { since_ms: now_ms },
        }
    }

    /// Records a call's result: transient errors count as failures; any answer from Redis,
    /// even an error reply, shows it reachable and counts as a success.
    pub fn record<T>(&mut self, result: &Result<T, RedisError>, now_ms: u64) {
        match result {
            Err(RedisError::CircuitOpen) => {}
            Err(e) if e.is_transient() => self.on_failure(now_ms),
            _ => self.on_success(now_ms),
        }
    }

    fn push(&mut self, now_ms: u64, failed: bool) {
        let horizon = now_ms.saturating_sub(self.config.window_ms);
        while self.outcomes.front().is_some_and(|(t, _)| *t < horizon) || self.outcomes.len() >= WINDOW_CALLS {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back((now_ms, failed));
    }

    fn tripped(&self) -> bool {
        let failures = self.outcomes.iter().filter(|(_, failed)| *failed).count();
        let total = self.outcomes.len().max(1);
        failures >= self.config.min_failures as usize && failures as f64 >= self.config.failure_rate * total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig { min_failures: 3, failure_rate: 0.5, window_ms: 10_000, cooldown_ms: 1_000 })
    }

    #[test]
    fn opens_when_enough_failures_make_up_the_rate() {
        let mut b = breaker();
        for t in 0..2 {
            b.on_failure(t);
            assert_eq!(b.state(t), BreakerState::Closed);
        }
        b.on_failure(10);
        assert_eq!(b.state(10).as_str(), "open");
        assert!(!b.try_acquire(500));
    }

    #[test]
    fn failures_amid_many_successes_do_not_open_it() {
        let mut b = breaker();
        for t in 0..100 {
            b.on_success(t);
            if t % 10 == 0 {
                b.on_failure(t);
            }
        }
        assert_eq!(b.state(100), BreakerState::Closed, "10% failures stay under the 50% rate");
    }

    #[test]
    fn a_burst_of_slow_successes_never_opens_it() {
        let mut b = breaker();
        for t in 0..1_000 {
            b.record::<()>(&Ok(()), t);
        }
        assert_eq!(b.state(1_000), BreakerState::Closed);
    }

    #[test]
    fn a_run_of_failures_after_many_successes_opens_it_within_a_few_calls() {
        let mut b = breaker();
        for t in 0..500 {
            b.on_success(t);
        }
        for t in 500..510 {
            b.on_failure(t);
        }
        assert_eq!(b.state(510), BreakerState::Open, "10 of the last 20 calls failed");
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut b = breaker();
        b.on_failure(0);
        b.on_failure(1);
        b.on_failure(20_000);
        assert_eq!(b.state(20_000), BreakerState::Closed, "two of the failures are 20 s old");
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
        b.on_success(2_055);
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
        for t in 0..5 {
            b.record::<()>(&Err(RedisError::Timeout(50)), t);
        }
        assert_eq!(b.state(5), BreakerState::Open, "5 of 10 calls failed: the rate is reached");
    }

    #[test]
    fn its_own_refusals_are_not_failures() {
        let mut b = breaker();
        for t in 0..10 {
            b.record::<()>(&Err(RedisError::CircuitOpen), t);
        }
        assert_eq!(b.state(10), BreakerState::Closed);
    }
}
