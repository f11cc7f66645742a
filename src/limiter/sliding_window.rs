//! Sliding window, as `@upstash/ratelimit` approximates it: two aligned windows, the previous one
//! counted in proportion to how much of it still overlaps the sliding window.
//!
//! With `e = now − window_start` (0 ≤ e < W), the units counted are
//! `used = ⌊previous × (W − e) / W⌋ + current` (integer division, rounding down), and `cost`
//! units fit when `used + cost ≤ limit`. Counts read from a state are capped at the limit.
//! `reset_ms` is the first time `used` reaches 0; `next_ms` the first time it drops by one.

use crate::policy::Limit;

use super::model::{mul_div, Outcome, Verdict};

/// The counters of the current and the previous aligned window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Start of the current window when this was written, Unix ms (a multiple of the window).
    pub window_start_ms: u64,
    /// Units consumed in that window.
    pub current: u64,
    /// Units consumed in the window before it.
    pub previous: u64,
}

impl State {
    /// Two windows after its own start a state counts for nothing.
    pub fn expires_at(&self, limit: &Limit) -> u64 {
        self.window_start_ms.saturating_add(limit.window_ms.get().saturating_mul(2))
    }
}

/// The counters as seen from `now`.
#[derive(Debug, Clone, Copy)]
struct View {
    now: u64,
    start: u64,
    elapsed: u64,
    current: u64,
    previous: u64,
    limit: u64,
    window: u64,
}

impl View {
    fn new(state: Option<State>, now: u64, limit: &Limit) -> Self {
        let l = u64::from(limit.limit.get());
        let w = limit.window_ms.get();
        let elapsed = now % w;
        let start = now - elapsed;
        let (current, previous) = match state {
            Some(s) if s.window_start_ms == start => (s.current.min(l), s.previous.min(l)),
            Some(s) if s.window_start_ms.saturating_add(w) == start => (0, s.current.min(l)),
            _ => (0, 0),
        };
        View { now, start, elapsed, current, previous, limit: l, window: w }
    }

    fn used(&self) -> u64 {
        mul_div(self.previous, self.window - self.elapsed, self.window) + self.current
    }

    /// Earliest time ≥ now at which `need` (≤ limit) more units fit, with nothing consumed.
    ///
    /// `⌊p × (W − e) / W⌋ ≤ b` ⇔ `W − e ≤ ⌊((b + 1) × W − 1) / p⌋` for `p > 0`: solved first in
    /// this window, then in the next (where `previous` is today's `current`), else two windows on.
    fn earliest(&self, need: u64) -> u64 {
        let (l, w) = (u128::from(self.limit), u128::from(self.window));
        let (current, previous, need) = (u128::from(self.current), u128::from(self.previous), u128::from(need));
        let (now, start, elapsed) = (u128::from(self.now), u128::from(self.start), u128::from(self.elapsed));
        let at = |t: u128| u64::try_from(t).unwrap_or(u64::MAX);
        if current + need <= l {
            let budget = l - need - current;
            if previous == 0 {
                return at(now);
            }
            let k = ((budget + 1) * w - 1) / previous;
            if k >= w - elapsed {
                return at(now);
            }
            if k >= 1 {
                return at(start + w - k);
            }
        }
        if current == 0 {
            return at(start + w);
        }
        let k = ((l - need.min(l) + 1) * w - 1) / current;
        if k >= w {
            at(start + w)
        } else if k >= 1 {
            at(start + 2 * w - k)
        } else {
            at(start + 2 * w)
        }
    }
}

/// Decides `cost` units at `now_ms`; returns the verdict and, when allowed, the state to store.
pub fn decide(state: Option<State>, now_ms: u64, limit: &Limit, cost: u32) -> (Verdict, Option<State>) {
    let view = View::new(state, now_ms, limit);
    let l = view.limit;
    let cost = u64::from(cost);
    let used = view.used();
    if cost > l {
        return (Verdict::new(Outcome::Impossible, l.saturating_sub(used), l, |n| view.earliest(n)), None);
    }
    if used + cost <= l {
        let after = View { current: view.current + cost, ..view };
        let verdict = Verdict::new(Outcome::Allowed, l - used - cost, l, |n| after.earliest(n));
        let state = State { window_start_ms: view.start, current: after.current, previous: view.previous };
        return (verdict, Some(state));
    }
    let retry_after_ms = view.earliest(cost) - now_ms;
    (Verdict::new(Outcome::Denied { retry_after_ms }, l.saturating_sub(used), l, |n| view.earliest(n)), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::model::test_support::limit;
    use crate::policy::Algorithm;

    const W: u64 = 60_000;
    const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % W;

    fn per_minute(n: u32) -> Limit {
        limit("route-chat", Algorithm::SlidingWindow, n, W)
    }

    #[test]
    fn the_previous_window_counts_by_its_overlap() {
        let l = per_minute(10);
        let (_, s) = decide(None, T0 + 59_000, &l, 10);
        // A quarter into the next window, ⌊10 × 45/60⌋ = 7 of the previous 10 still count.
        let (v, _) = decide(s, T0 + W + 15_000, &l, 0);
        assert_eq!(v.remaining, 3);
        let (v, _) = decide(s, T0 + W + 15_000, &l, 4);
        // 4 fit once ⌊10 × (60 000 − e) / 60 000⌋ ≤ 6, i.e. 60 000 − e < 42 000, e ≥ 18 001.
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: 3_001 });
    }

    #[test]
    fn denies_the_21st_request_in_the_minute() {
        let l = per_minute(20);
        let mut state = None;
        for i in 0..20 {
            let (v, s) = decide(state, T0 + i, &l, 1);
            assert_eq!(v.outcome, Outcome::Allowed);
            state = s;
        }
        let (v, _) = decide(state, T0 + 30_000, &l, 1);
        assert!(matches!(v.outcome, Outcome::Denied { .. }));
    }

    #[test]
    fn retry_after_is_the_first_millisecond_that_fits() {
        let l = per_minute(7);
        let (_, s) = decide(None, T0 + 10, &l, 7);
        let (v, _) = decide(s, T0 + 100, &l, 3);
        let Outcome::Denied { retry_after_ms } = v.outcome else { panic!("expected a denial: {v:?}") };
        let at = T0 + 100 + retry_after_ms;
        assert_eq!(decide(s, at, &l, 3).0.outcome, Outcome::Allowed);
        assert!(matches!(decide(s, at - 1, &l, 3).0.outcome, Outcome::Denied { .. }));
    }

    #[test]
    fn reset_is_when_nothing_counts_any_more() {
        let l = per_minute(5);
        let (v, s) = decide(None, T0, &l, 5);
        // The 5 leave the count gradually during the next window: ⌊5 × (W − e)/W⌋ = 0 ⇔ W − e < 12 000.
        assert_eq!(v.reset_ms, T0 + 2 * W - 11_999);
        assert_eq!(decide(s, v.reset_ms, &l, 0).0.remaining, 5);
        assert_eq!(decide(s, v.reset_ms - 1, &l, 0).0.remaining, 4);
    }

    #[test]
    fn cost_above_limit_is_impossible_not_retry() {
        let (v, s) = decide(None, T0, &per_minute(5), 6);
        assert_eq!(v.outcome, Outcome::Impossible);
        assert_eq!(s, None);
    }
}
