//! How long one REST call may take: derived from the round trips this isolate observes, the way
//! TCP derives its retransmission timeout (RFC 6298), so a database 1 ms away and one 200 ms away
//! each get a budget that fits them, and ordinary queueing is not mistaken for an outage.
//!
//! `budget = clamp((3·SRTT + 4·RTTVAR) · 2^backoff, floor, ceiling)`, where SRTT and RTTVAR are
//! the smoothed round trip and its variation over successful calls; each timeout doubles the
//! budget (up to the ceiling) until a call succeeds again. Before the first success (a cold
//! isolate: connection set-up, a burst queued behind it) the budget is the ceiling's half, at
//! least the floor.
//!
//! A burst queues behind itself: with a hundred calls in flight, the last one waits for the
//! others, and its round trip is many times the usual one although Redis is healthy. So a call
//! is given up only when Redis shows no progress: its deadline is `budget` after the later of its
//! own start and the last completion of ANY call of this isolate, and never later than `ceiling`
//! after its start ([`RttBudget::wait_ms`]). A Redis that stops answering completes nothing, and
//! every call waiting on it fails `budget` after the last answer (at most `ceiling` after it
//! started). A fixed timeout replaces all of this when configured. Pure: time is an input.

use crate::policy::RedisSettings;

/// Largest backoff exponent (the budget doubles at most this many times).
const MAX_BACKOFF: u32 = 4;

/// Bounds and mode of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetConfig {
    /// A fixed budget, ms, instead of the adaptive one.
    pub fixed_ms: Option<u32>,
    /// The adaptive budget never goes below this, ms.
    pub floor_ms: u32,
    /// Nor above this, ms.
    pub ceiling_ms: u32,
}

impl BudgetConfig {
    /// A fixed budget of `ms`.
    pub fn fixed(ms: u32) -> Self {
        Self { fixed_ms: Some(ms), floor_ms: ms, ceiling_ms: ms }
    }

    /// The policy's `redis.timeout` (fixed) or `redis.budget_floor` / `redis.budget_ceiling`.
    pub fn from_settings(settings: &RedisSettings) -> Self {
        Self {
            fixed_ms: settings.timeout_ms.map(|t| t.get()),
            floor_ms: settings.budget_floor_ms.get(),
            ceiling_ms: settings.budget_ceiling_ms.get().max(settings.budget_floor_ms.get()),
        }
    }
}

/// The adaptive budget's state.
#[derive(Debug, Clone, PartialEq)]
pub struct RttBudget {
    config: BudgetConfig,
    /// Smoothed round trip, ms; `None` until a call succeeded.
    srtt: Option<f64>,
    /// Smoothed deviation of the round trip, ms.
    rttvar: f64,
    /// Timeouts since the last success (capped).
    backoff: u32,
    /// When a call last completed, Unix ms (0: never).
    last_completion_ms: u64,
}

impl RttBudget {
    /// A budget that has observed nothing yet.
    pub fn new(config: BudgetConfig) -> Self {
        Self { config, srtt: None, rttvar: 0.0, backoff: 0, last_completion_ms: 0 }
    }

    /// The budget of the next call, ms.
    pub fn next_ms(&self) -> u32 {
        if let Some(fixed) = self.config.fixed_ms {
            return fixed.max(1);
        }
        let (floor, ceiling) = (f64::from(self.config.floor_ms), f64::from(self.config.ceiling_ms));
        let base = match self.srtt {
            None => ceiling / 2.0,
            Some(srtt) => 3.0 * srtt + 4.0 * self.rttvar,
        };
        let scaled = base * f64::from(1u32 << self.backoff);
        scaled.clamp(floor, ceiling.max(floor)).round() as u32
    }

    /// How much longer a call started at `started_ms` may wait at `now_ms`, or `None` when it
    /// has run out: `budget` past the later of its start and the last completion of any call,
    /// capped at `ceiling` past its start (a fixed timeout: exactly `fixed` past its start).
    pub fn wait_ms(&self, started_ms: u64, now_ms: u64) -> Option<u32> {
        let budget = u64::from(self.next_ms());
        let deadline = match self.config.fixed_ms {
            Some(_) => started_ms.saturating_add(budget),
            None => {
                let progress = started_ms.max(self.last_completion_ms);
                let cap = started_ms.saturating_add(u64::from(self.config.ceiling_ms.max(self.config.floor_ms)));
                progress.saturating_add(budget).min(cap)
            }
        };
        let left = deadline.checked_sub(now_ms).filter(|&ms| ms > 0)?;
        Some(u32::try_from(left).unwrap_or(u32::MAX))
    }

    /// The longest any call may wait, ms.
    pub fn ceiling_ms(&self) -> u32 {
        self.config.fixed_ms.unwrap_or(self.config.ceiling_ms.max(self.config.floor_ms))
    }

    /// A call completed (with any answer) at `now_ms`: Redis is making progress.
    pub fn completed_at(&mut self, now_ms: u64) {
        self.last_completion_ms = self.last_completion_ms.max(now_ms);
    }

    /// A call succeeded after `rtt_ms`.
    pub fn observe(&mut self, rtt_ms: u64) {
        let r = rtt_ms as f64;
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2.0;
            }
            Some(srtt) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (srtt - r).abs();
                self.srtt = Some(0.875 * srtt + 0.125 * r);
            }
        }
        self.backoff = 0;
    }

    /// A call ran out of its budget.
    pub fn timed_out(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
    }

    /// The smoothed round trip, ms, once observed.
    pub fn smoothed_rtt_ms(&self) -> Option<f64> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive() -> RttBudget {
        RttBudget::new(BudgetConfig { fixed_ms: None, floor_ms: 500, ceiling_ms: 5_000 })
    }

    #[test]
    fn a_cold_isolate_gets_half_the_ceiling() {
        assert_eq!(adaptive().next_ms(), 2_500);
    }

    #[test]
    fn a_near_database_gets_the_floor() {
        let mut b = adaptive();
        for _ in 0..50 {
            b.observe(2);
        }
        assert_eq!(b.next_ms(), 500);
    }

    #[test]
    fn a_far_database_gets_room_above_its_round_trip() {
        let mut b = adaptive();
        for rtt in [200, 210, 190, 230, 205, 200, 220, 195] {
            b.observe(rtt);
        }
        let budget = b.next_ms();
        assert!((600..=1_200).contains(&budget), "{budget}");
    }

    #[test]
    fn timeouts_double_it_up_to_the_ceiling_and_a_success_resets() {
        let mut b = adaptive();
        for _ in 0..20 {
            b.observe(400);
        }
        let base = b.next_ms();
        assert!(base > 500, "above the floor: {base}");
        b.timed_out();
        assert!(b.next_ms().abs_diff((base * 2).min(5_000)) <= 1, "doubled");
        for _ in 0..10 {
            b.timed_out();
        }
        assert_eq!(b.next_ms(), 5_000);
        b.observe(400);
        assert!(b.next_ms() <= base + 50);
    }

    #[test]
    fn a_queued_call_waits_while_others_complete_and_gives_up_when_nothing_does() {
        let mut b = adaptive();
        for _ in 0..20 {
            b.observe(2);
        }
        assert_eq!(b.next_ms(), 500);
        // A call started at 1000 and still queued at 1400: nothing else answered yet.
        assert_eq!(b.wait_ms(1_000, 1_400), Some(100));
        // Others in the burst complete at 1450 and 1900: the call may wait on.
        b.completed_at(1_450);
        assert_eq!(b.wait_ms(1_000, 1_600), Some(350));
        b.completed_at(1_900);
        assert_eq!(b.wait_ms(1_000, 2_300), Some(100));
        // Redis stops answering: 500 ms after the last answer the call is given up.
        assert_eq!(b.wait_ms(1_000, 2_400), None);
        // However busy, never longer than the ceiling after the call's start.
        b.completed_at(5_990);
        assert_eq!(b.wait_ms(1_000, 5_995), Some(5));
    }

    #[test]
    fn a_fixed_budget_ignores_observations() {
        let mut b = RttBudget::new(BudgetConfig::fixed(50));
        b.observe(400);
        b.timed_out();
        assert_eq!(b.next_ms(), 50);
        b.completed_at(1_040);
        assert_eq!(b.wait_ms(1_000, 1_045), Some(5), "a fixed budget is counted from the call's start");
    }
}
