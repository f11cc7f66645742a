//! Token bucket: `limit` tokens of capacity, refilled continuously at `limit` tokens per window.
//!
//! The level is kept exactly in integers by counting in `1 / window_ms` of a token: a full bucket
//! holds `limit × window_ms`, and each millisecond adds `limit`. A request takes `cost` whole
//! tokens or nothing; the level never goes below zero. `reset_ms` is when the bucket is full again,
//! `next_ms` when one more whole token is there.

use crate::policy::Limit;

use super::model::{div_ceil, Outcome, Verdict};

/// A bucket's level at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Tokens × `window_ms` (so `level / window_ms` whole tokens).
    pub level: u64,
    /// When `level` was measured, Unix ms.
    pub updated_ms: u64,
}

impl State {
    /// When the bucket is full again; from then on it is the same as no state.
    pub fn expires_at(&self, limit: &Limit) -> u64 {
        let l = u64::from(limit.limit.get());
        let capacity = l.saturating_mul(limit.window_ms.get());
        self.updated_ms.saturating_add(div_ceil(capacity.saturating_sub(self.level), l))
    }
}

/// The level as seen from `now`.
#[derive(Debug, Clone, Copy)]
struct View {
    now: u64,
    level: u64,
    limit: u64,
    window: u64,
}

impl View {
    fn new(state: Option<State>, now: u64, limit: &Limit) -> Self {
        let l = u64::from(limit.limit.get());
        let w = limit.window_ms.get();
        let capacity = l.saturating_mul(w);
        let level = match state {
            None => capacity,
            Some(s) => {
                let elapsed = now.saturating_sub(s.updated_ms);
                if elapsed >= w {
                    capacity
                } else {
                    s.level.min(capacity).saturating_add(elapsed.saturating_mul(l)).min(capacity)
                }
            }
        };
        View { now, level, limit: l, window: w }
    }

    fn tokens(&self) -> u64 {
        self.level / self.window
    }

    /// Earliest time ≥ now at which `need` (≤ limit) whole tokens are there, with none taken.
    fn earliest(&self, need: u64) -> u64 {
        let wanted = need.saturating_mul(self.window);
        if self.level >= wanted {
            self.now
        } else {
            self.now.saturating_add(div_ceil(wanted - self.level, self.limit))
        }
    }
}

/// Decides `cost` tokens at `now_ms`; returns the verdict and, when allowed, the state to store.
pub fn decide(state: Option<State>, now_ms: u64, limit: &Limit, cost: u32) -> (Verdict, Option<State>) {
    let view = View::new(state, now_ms, limit);
    let l = view.limit;
    let cost = u64::from(cost);
    if cost > l {
        return (Verdict::new(Outcome::Impossible, view.tokens(), l, |n| view.earliest(n)), None);
    }
    let wanted = cost.saturating_mul(view.window);
    if view.level >= wanted {
        let after = View { level: view.level - wanted, ..view };
        let verdict = Verdict::new(Outcome::Allowed, after.tokens(), l, |n| after.earliest(n));
        return (verdict, Some(State { level: after.level, updated_ms: now_ms }));
    }
    let retry_after_ms = view.earliest(cost) - now_ms;
    (Verdict::new(Outcome::Denied { retry_after_ms }, view.tokens(), l, |n| view.earliest(n)), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::model::test_support::limit;
    use crate::policy::Algorithm;

    const T0: u64 = 1_700_000_000_000;

    fn ten_per_second() -> Limit {
        limit("bucket", Algorithm::TokenBucket, 10, 1_000)
    }

    #[test]
    fn a_full_bucket_allows_a_burst_of_its_capacity() {
        let l = ten_per_second();
        let (v, s) = decide(None, T0, &l, 10);
        assert_eq!((v.outcome, v.remaining), (Outcome::Allowed, 0));
        assert_eq!(v.reset_ms, T0 + 1_000);
        assert_eq!(v.next_ms, T0 + 100);
        let (v, _) = decide(s, T0, &l, 1);
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: 100 });
    }

    #[test]
    fn token_bucket_never_goes_negative_when_cost_exceeds_tokens() {
        let l = ten_per_second();
        let (_, s) = decide(None, T0, &l, 7);
        let (v, after) = decide(s, T0, &l, 5);
        assert_eq!(v.outcome, Outcome::Denied { retry_after_ms: 200 });
        assert_eq!(v.remaining, 3);
        assert_eq!(after, None, "a denial takes nothing");
        // The 3 tokens are still there for a request that fits.
        let (v, _) = decide(s, T0, &l, 3);
        assert_eq!((v.outcome, v.remaining), (Outcome::Allowed, 0));
    }

    #[test]
    fn refill_is_continuous_and_exact_for_uneven_rates() {
        let l = limit("b", Algorithm::TokenBucket, 3, 1_000);
        let (_, s) = decide(None, T0, &l, 3);
        // One token per 333⅓ ms: the first is whole at 334 ms, the second at 667, the third at 1000.
        assert_eq!(decide(s, T0 + 333, &l, 0).0.remaining, 0);
        assert_eq!(decide(s, T0 + 334, &l, 0).0.remaining, 1);
        assert_eq!(decide(s, T0 + 666, &l, 0).0.remaining, 1);
        assert_eq!(decide(s, T0 + 667, &l, 0).0.remaining, 2);
        assert_eq!(decide(s, T0 + 1_000, &l, 0).0.remaining, 3);
        assert_eq!(s.map(|s| s.expires_at(&l)), Some(T0 + 1_000));
    }

    #[test]
    fn cost_above_limit_is_impossible_not_retry() {
        let (v, s) = decide(None, T0, &ten_per_second(), 11);
        assert_eq!(v.outcome, Outcome::Impossible);
        assert_eq!(v.remaining, 10);
        assert_eq!(s, None);
    }
}
