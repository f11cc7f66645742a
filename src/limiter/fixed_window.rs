//! Fixed window: one counter per aligned window `[now − now mod window, … + window)`.
//!
//! Cheapest of all; a caller may spend the limit at the end of one window and again at the start
//! of the next. `reset_ms` and `next_ms` are the window's end (or now while nothing is counted).

use crate::policy::Limit;

use super::model::{Outcome, Verdict};

/// Units counted in one aligned window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Start of the window counted, Unix ms (a multiple of the window).
    pub window_start_ms: u64,
    /// Units consumed in that window.
    pub count: u64,
}

impl State {
    /// The window's end: after it the counter no longer matters.
    pub fn expires_at(&self, limit: &Limit) -> u64 {
        self.window_start_ms.saturating_add(limit.window_ms.get())
    }
}

/// Decides `cost` units at `now_ms`; returns the verdict and, when allowed, the state to store.
pub fn decide(state: Option<State>, now_ms: u64, limit: &Limit, cost: u32) -> (Verdict, Option<State>) {
    let l = u64::from(limit.limit.get());
    let w = limit.window_ms.get();
    let start = now_ms - now_ms % w;
    let end = start.saturating_add(w);
    let count = match state {
        Some(s) if s.window_start_ms == start => s.count,
        _ => 0,
    };
    let cost = u64::from(cost);
    // Earliest time `need` units fit after `count` were consumed in this window.
    let earliest = |count: u64| move |need: u64| if count.saturating_add(need) <= l { now_ms } else { end };

    if cost > l {
        return (Verdict::new(Outcome::Impossible, l.saturating_sub(count), l, earliest(count)), None);
    }
    if count.saturating_add(cost) <= l {
        let count = count + cost;
        let verdict = Verdict::new(Outcome::Allowed, l - count, l, earliest(count));
        return (verdict, Some(State { window_start_ms: start, count }));
    }
    let retry_after_ms = earliest(count)(cost) - now_ms;
    (Verdict::new(Outcome::Denied { retry_after_ms }, l.saturating_sub(count), l, earliest(count)), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::model::test_support::limit;
    use crate::policy::Algorithm;

    const HOUR: u64 = 3_600_000;
    const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;

    fn hourly() -> Limit {
        limit("tier-basic", Algorithm::FixedWindow, 100, HOUR)
    }

    #[test]
    fn denies_the_101st_request_in_the_hour() {
        let l = hourly();
        let mut state = None;
        for i in 0..100 {
            let (v, s) = decide(state, T0 + i * 1_000, &l, 1);
            assert_eq!(v.outcome, Outcome::Allowed, "request {}", i + 1);
            assert_eq!(u64::from(v.remaining), 99 - i);
            state = s;
        }
        let (v, s) = decide(state, T0 + 200_000, &l, 1);
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: HOUR - 200_000 });
        assert_eq!(v.remaining, 0);
        assert_eq!(v.reset_ms, T0 + HOUR);
        assert_eq!(s, None);
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let l = hourly();
        let (_, s) = decide(None, T0 + HOUR - 1, &l, 100);
        let (v, _) = decide(s, T0 + HOUR, &l, 1);
        assert_eq!(v.outcome, Outcome::Allowed);
        assert_eq!(v.remaining, 99);
    }

    #[test]
    fn cost_above_limit_is_impossible_not_retry() {
        let (v, s) = decide(None, T0, &hourly(), 101);
        assert_eq!(v.outcome, Outcome::Impossible);
        assert_eq!(v.remaining, 100);
        assert_eq!(s, None);
    }

    #[test]
    fn a_weighted_cost_is_denied_until_it_fits_whole() {
        let l = limit("l", Algorithm::FixedWindow, 10, 1_000);
        let (_, s) = decide(None, T0, &l, 8);
        let (v, _) = decide(s, T0 + 100, &l, 3);
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: 900 });
        assert_eq!(v.remaining, 2);
        assert_eq!(v.next_ms, T0 + 1_000);
    }

    #[test]
    fn reset_is_now_while_nothing_is_counted() {
        let (v, _) = decide(None, T0 + 5, &hourly(), 0);
        assert_eq!((v.remaining, v.reset_ms, v.next_ms), (100, T0 + 5, T0 + 5));
    }
}
