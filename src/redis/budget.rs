//! How long one REST call may take: derived from the round trips this isolate observes, the way
//! TCP derives its retransmission timeout (RFC 6298), so a database 1 ms away and one 200 ms away
//! each get a budget that fits them, and ordinary queueing is not mistaken for an outage.
//!
//! `budget = clamp((3·SRTT + 4·RTTVAR) · 2^backoff, floor, ceiling)`, where SRTT and RTTVAR are
//! the smoothed round trip and its variation over successful calls; each timeout doubles the
//! budget (up to the ceiling) until a call succeeds again. Before the first success (a cold
//! isolate: connection set-up, a burst queued behind it) the budget is the ceiling's half, at
//! least the floor. A fixed timeout replaces all of this when configured. Pure: time is an input.

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
}

impl RttBudget {
    /// A budget that has observed nothing yet.
    pub fn new(config: BudgetConfig) -> Self {
        Self { config, srtt: None, rttvar: 0.0, backoff: 0 }
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
    fn a_fixed_budget_ignores_observations() {
        let mut b = RttBudget::new(BudgetConfig::fixed(50));
        b.observe(400);
        b.timed_out();
        assert_eq!(b.next_ms(), 50);
    }
}
