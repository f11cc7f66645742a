//! GCRA (generic cell rate algorithm): one timestamp per key, a burst of `limit`, then one unit
//! per emission interval `T = window / limit`.
//!
//! The state is the theoretical arrival time (TAT). With tolerance `τ = T × (limit − 1)`, `cost`
//! units conform when `max(TAT, now) + cost × T − (τ + T) ≤ now`, i.e. when the new TAT is at most
//! `now + window`. `T` need not be a whole number of milliseconds, so the TAT is kept exactly as
//! `tat_ms + tat_rem / limit` ms. `reset_ms` is the TAT rounded up (the limit is whole again then);
//! `next_ms` is when one more unit conforms.

use crate::policy::Limit;

use super::model::{Outcome, Verdict};

/// A theoretical arrival time, exact to `1 / limit` ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Whole milliseconds of the TAT, Unix ms.
    pub tat_ms: u64,
    /// The fraction of a millisecond, in `1 / limit` ms (below `limit` once normalised).
    pub tat_rem: u64,
}

impl State {
    /// The TAT rounded up: from then on the state is the same as none.
    pub fn expires_at(&self, limit: &Limit) -> u64 {
        let t = Tat::normalised(*self, u64::from(limit.limit.get()));
        t.ms.saturating_add(u64::from(t.rem > 0))
    }
}

/// A time as `ms + rem / limit`, with `rem < limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tat {
    ms: u64,
    rem: u64,
}

impl Tat {
    fn normalised(s: State, l: u64) -> Self {
        Tat { ms: s.tat_ms.saturating_add(s.tat_rem / l), rem: s.tat_rem % l }
    }
}

/// The TAT as seen from `now`.
#[derive(Debug, Clone, Copy)]
struct View {
    now: u64,
    tat: Tat,
    limit: u64,
    window: u64,
}

impl View {
    fn new(state: Option<State>, now: u64, limit: &Limit) -> Self {
        let l = u64::from(limit.limit.get());
        let tat = match state.map(|s| Tat::normalised(s, l)) {
            Some(t) if t.ms >= now => t,
            _ => Tat { ms: now, rem: 0 },
        };
        View { now, tat, limit: l, window: limit.window_ms.get() }
    }

    /// The TAT plus `n` emission intervals (`n × window / limit` ms, exactly).
    fn plus(&self, n: u64) -> Tat {
        let product = u128::from(n) * u128::from(self.window);
        let (q, r) = (product / u128::from(self.limit), product % u128::from(self.limit));
        let q = u64::try_from(q).unwrap_or(u64::MAX);
        // r < limit, so this fits in u64.
        let rem = self.tat.rem + u64::try_from(r).unwrap_or(0);
        if rem >= self.limit {
            Tat { ms: self.tat.ms.saturating_add(q).saturating_add(1), rem: rem - self.limit }
        } else {
            Tat { ms: self.tat.ms.saturating_add(q), rem }
        }
    }

    /// Whether a TAT moved to `t` still conforms now: `t ≤ now + window`.
    fn conforms(&self, t: Tat) -> bool {
        let horizon = self.now.saturating_add(self.window);
        t.ms < horizon || (t.ms == horizon && t.rem == 0)
    }

    /// Units that conform now: the largest `n ≤ limit` with `tat + n × T ≤ now + window`.
    fn remaining(&self) -> u64 {
        let horizon = self.now.saturating_add(self.window);
        if self.tat.ms > horizon {
            return 0;
        }
        let slack = u128::from(horizon - self.tat.ms) * u128::from(self.limit);
        let slack = slack.saturating_sub(u128::from(self.tat.rem));
        u64::try_from(slack / u128::from(self.window)).unwrap_or(u64::MAX).min(self.limit)
    }

    /// Earliest time ≥ now at which `need` more units conform: `⌈tat + need × T⌉ − window`.
    fn earliest(&self, need: u64) -> u64 {
        let t = self.plus(need);
        let ceil = t.ms.saturating_add(u64::from(t.rem > 0));
        ceil.saturating_sub(self.window).max(self.now)
    }
}

/// Decides `cost` units at `now_ms`; returns the verdict and, when allowed, the state to store.
pub fn decide(state: Option<State>, now_ms: u64, limit: &Limit, cost: u32) -> (Verdict, Option<State>) {
    let view = View::new(state, now_ms, limit);
    let l = view.limit;
    let cost = u64::from(cost);
    if cost > l {
        return (Verdict::new(Outcome::Impossible, view.remaining(), l, |n| view.earliest(n)), None);
    }
    let tat = view.plus(cost);
    if view.conforms(tat) {
        let after = View { tat, ..view };
        let verdict = Verdict::new(Outcome::Allowed, after.remaining(), l, |n| after.earliest(n));
        return (verdict, Some(State { tat_ms: tat.ms, tat_rem: tat.rem }));
    }
    let retry_after_ms = view.earliest(cost) - now_ms;
    (Verdict::new(Outcome::Denied { retry_after_ms }, view.remaining(), l, |n| view.earliest(n)), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::model::test_support::limit;
    use crate::policy::Algorithm;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn gcra_allows_a_burst_of_limit_then_one_per_interval() {
        // 5 per 10 s: T = 2 s.
        let l = limit("g", Algorithm::Gcra, 5, 10_000);
        let mut state = None;
        for i in 0..5 {
            let (v, s) = decide(state, T0, &l, 1);
            assert_eq!(v.outcome, Outcome::Allowed, "burst request {}", i + 1);
            assert_eq!(u64::from(v.remaining), 4 - i);
            state = s;
        }
        let (v, _) = decide(state, T0, &l, 1);
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: 2_000 });
        assert_eq!(v.reset_ms, T0 + 10_000);
        assert_eq!(v.next_ms, T0 + 2_000);
        let (v, s) = decide(state, T0 + 2_000, &l, 1);
        assert_eq!((v.outcome, v.remaining), (Outcome::Allowed, 0));
        let (v, _) = decide(s, T0 + 3_999, &l, 1);
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: 1 });
        assert_eq!(decide(s, T0 + 4_000, &l, 1).0.outcome, Outcome::Allowed);
    }

    #[test]
    fn fractional_intervals_do_not_drift() {
        // 3 per second: T = 333⅓ ms; after 3 000 single requests spaced by T the TAT is exact.
        let l = limit("g", Algorithm::Gcra, 3, 1_000);
        let (_, mut state) = decide(None, T0, &l, 3);
        for i in 1..=3_000u64 {
            let now = T0 + (i * 1_000).div_ceil(3);
            let (v, s) = decide(state, now, &l, 1);
            assert_eq!(v.outcome, Outcome::Allowed, "request {i} at {now}");
            state = s;
        }
        assert_eq!(state, Some(State { tat_ms: T0 + 1_000 + 1_000_000, tat_rem: 0 }));
    }

    #[test]
    fn cost_above_limit_is_impossible_not_retry() {
        let (v, s) = decide(None, T0, &limit("g", Algorithm::Gcra, 5, 10_000), 6);
        assert_eq!(v.outcome, Outcome::Impossible);
        assert_eq!(v.remaining, 5);
        assert_eq!(s, None);
    }

    #[test]
    fn a_weighted_cost_waits_for_all_its_units() {
        let l = limit("g", Algorithm::Gcra, 10, 1_000);
        let (_, s) = decide(None, T0, &l, 10);
        let (v, _) = decide(s, T0 + 50, &l, 4);
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: 350 });
    }
}
