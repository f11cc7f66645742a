//! Reserve-then-settle: after the answer, the difference between what the check reserved and
//! what the origin reported is refunded or charged, on the limits the reservation was taken
//! from. The specification of `scripts/settle.lua`.
//!
//! Only the window algorithms settle (the policy refuses other algorithms for units other than
//! `requests`): their counters say which window a unit was counted in, so a refund goes back
//! exactly where the reservation went, or nowhere once that window is over.
//!
//! With `delta = actual − reserve`, `r` the window holding the reservation and `c` the current
//! window of `now`:
//!
//! - fixed window: `r = c`: `count ← max(count + delta, 0)`; `r ≠ c` (the window is over):
//!   an extra charge (`delta > 0`) is counted in `c`, a refund is dropped;
//! - sliding window: `r = c`: `current ← max(current + delta, 0)`; `r` is the previous window:
//!   a refund comes off `previous` (never below 0), an extra charge goes to `current`; older:
//!   as for the fixed window.
//!
//! Counts are capped at 2^52 (the exact-integer bound of the script). An extra charge may carry
//! a count past the limit: that is the overshoot of reserve-then-settle, paid for by the next
//! requests being refused until the window moves on. A settlement that crosses a `warn_at`
//! fraction reports it like the check does.
//!
//! The script also removes the reservation's record in flight (see [`super::reservations`]);
//! the memory limiter does the same around this model.

use crate::policy::{Algorithm, Limit};

use super::model::{decide, warning_window_end, Crossing, State, MAX_LIMIT_TIMES_WINDOW};
use super::{fixed_window, sliding_window};

/// Largest count a settlement stores.
const CAP: u64 = MAX_LIMIT_TIMES_WINDOW;

/// The result of settling one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The state to store, `None` when nothing changes.
    pub write: Option<State>,
    /// Warning fractions the settlement crossed (index 0; the caller sets its own index).
    pub crossings: Vec<Crossing>,
}

/// Settles `reserve` against `actual` on one limit whose reservation was taken at
/// `reserved_at_ms`; see the module documentation.
pub fn settle(
    state: Option<&State>,
    now_ms: u64,
    limit: &Limit,
    reserved_at_ms: u64,
    reserve: u32,
    actual: u32,
) -> Settled {
    let w = limit.window_ms.get();
    let l = u64::from(limit.limit.get());
    let now_start = now_ms - now_ms % w;
    let res_start = reserved_at_ms - reserved_at_ms % w;
    let (reserve, actual) = (u64::from(reserve), u64::from(actual));
    let extra = actual.saturating_sub(reserve);
    // count + actual − reserve, never below 0, at most CAP.
    let adjust = |count: u64| (count + actual).saturating_sub(reserve).min(CAP);
    let write = match limit.algorithm {
        Algorithm::FixedWindow => {
            let count = match state {
                Some(State::FixedWindow(s)) if s.window_start_ms == now_start => s.count,
                _ => 0,
            };
            let count = if res_start == now_start {
                Some(adjust(count))
            } else if extra > 0 {
                Some((count + extra).min(CAP))
            } else {
                None
            };
            count.map(|count| State::FixedWindow(fixed_window::State { window_start_ms: now_start, count }))
        }
        Algorithm::SlidingWindow => {
            let (current, previous) = match state {
                Some(State::SlidingWindow(s)) if s.window_start_ms == now_start => {
                    (s.current.min(l), s.previous.min(l))
                }
                Some(State::SlidingWindow(s)) if s.window_start_ms.saturating_add(w) == now_start => {
                    (0, s.current.min(l))
                }
                _ => (0, 0),
            };
            let counts = if res_start == now_start {
                Some((adjust(current), previous))
            } else if res_start.saturating_add(w) == now_start && actual < reserve {
                Some((current, adjust(previous)))
            } else if extra > 0 {
                Some(((current + extra).min(CAP), previous))
            } else {
                None
            };
            counts.map(|(current, previous)| {
                State::SlidingWindow(sliding_window::State { window_start_ms: now_start, current, previous })
            })
        }
        Algorithm::TokenBucket | Algorithm::Gcra => None,
    };
    let mut crossings = Vec::new();
    if let Some(new) = &write {
        let before = decide(state, now_ms, limit, 0).0;
        let after = decide(Some(new), now_ms, limit, 0).0;
        let lim = limit.limit.get();
        let used_before = u64::from(lim - before.remaining.min(lim));
        let used_after = u64::from(lim - after.remaining.min(lim));
        for at in &limit.warn_at {
            let t = at.threshold(lim);
            if used_before < t && t <= used_after {
                let until_ms = warning_window_end(limit, now_ms, after.reset_ms);
                crossings.push(Crossing { index: 0, at: *at, used: used_after, until_ms });
            }
        }
    }
    Settled { write, crossings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::model::test_support::limit;
    use crate::policy::{Unit, WarnAt};

    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_700_006_400_000 - 1_700_006_400_000 % DAY;

    fn tokens(algorithm: Algorithm) -> Limit {
        let mut l = limit("tokens", algorithm, 1_000, DAY);
        l.unit = Unit::parse("tokens").expect("unit");
        l
    }

    fn remaining(state: Option<&State>, now: u64, l: &Limit) -> u32 {
        decide(state, now, l, 0).0.remaining
    }

    #[test]
    fn a_settlement_leaves_exactly_what_was_used() {
        for alg in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
            let l = tokens(alg);
            let (_, s) = decide(None, T0, &l, 300);
            let refunded = settle(s.as_ref(), T0 + 5, &l, T0, 300, 120).write;
            assert_eq!(remaining(refunded.as_ref(), T0 + 5, &l), 880, "{alg:?}");
            let extra = settle(s.as_ref(), T0 + 5, &l, T0, 300, 450).write;
            assert_eq!(remaining(extra.as_ref(), T0 + 5, &l), 550, "{alg:?}");
        }
    }

    #[test]
    fn a_refund_never_goes_below_zero_and_an_extra_charge_may_overshoot() {
        let l = tokens(Algorithm::FixedWindow);
        let refund = settle(None, T0, &l, T0, 300, 0).write;
        assert_eq!(refund, Some(State::FixedWindow(fixed_window::State { window_start_ms: T0, count: 0 })));
        let (_, s) = decide(None, T0, &l, 900);
        let over = settle(s.as_ref(), T0, &l, T0, 300, 700).write;
        assert_eq!(over, Some(State::FixedWindow(fixed_window::State { window_start_ms: T0, count: 1_300 })));
        assert_eq!(remaining(over.as_ref(), T0, &l), 0);
    }

    #[test]
    fn a_refund_after_the_window_is_dropped_and_an_extra_charge_counts_now() {
        let l = tokens(Algorithm::FixedWindow);
        let (_, s) = decide(None, T0 + DAY - 1, &l, 300);
        assert_eq!(settle(s.as_ref(), T0 + DAY, &l, T0 + DAY - 1, 300, 100).write, None);
        let extra = settle(s.as_ref(), T0 + DAY, &l, T0 + DAY - 1, 300, 400).write;
        assert_eq!(remaining(extra.as_ref(), T0 + DAY, &l), 900);
    }

    #[test]
    fn a_sliding_window_refunds_the_previous_window() {
        let l = tokens(Algorithm::SlidingWindow);
        let (_, s) = decide(None, T0 + DAY - 1, &l, 400);
        let settled = settle(s.as_ref(), T0 + DAY, &l, T0 + DAY - 1, 400, 100).write;
        assert_eq!(
            settled,
            Some(State::SlidingWindow(sliding_window::State { window_start_ms: T0 + DAY, current: 0, previous: 100 }))
        );
    }

    #[test]
    fn an_extra_charge_crossing_a_fraction_warns() {
        let mut l = tokens(Algorithm::FixedWindow);
        l.warn_at = vec![WarnAt::from_fraction(0.8).expect("0.8"), WarnAt::from_fraction(1.0).expect("1")];
        let (_, s) = decide(None, T0, &l, 700);
        let settled = settle(s.as_ref(), T0, &l, T0, 100, 400);
        let crossed: Vec<u32> = settled.crossings.iter().map(|c| c.at.ppm()).collect();
        assert_eq!(crossed, [800_000, 1_000_000]);
        assert!(settled.crossings.iter().all(|c| c.used == 1_000 && c.until_ms == T0 + DAY));
    }
}
