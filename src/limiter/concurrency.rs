//! Concurrency slots: the leases one caller holds on one route, each with a deadline, as the
//! sorted set `scripts/check.lua` keeps in Redis (member = lease id, score = deadline, Unix ms).
//!
//! A lease counts while `deadline > now`; an expired one is dropped at the next acquisition, so
//! an isolate that vanished mid-request leaks its slot for at most the lease time.

use std::collections::BTreeMap;

/// How long a refused caller is told to wait at most, ms: slots free when streams end, which no
/// deadline predicts, so the hint is short.
pub const RETRY_HINT_MS: u64 = 1_000;

/// The leases of one caller on one route: lease id → deadline (Unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases(BTreeMap<String, u64>);

impl Leases {
    /// No leases.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leases live at `now_ms` (deadline after now).
    pub fn live(&self, now_ms: u64) -> u32 {
        let n = self.0.values().filter(|d| **d > now_ms).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The live deadlines at `now_ms`, earliest first.
    pub fn live_deadlines(&self, now_ms: u64) -> Vec<u64> {
        let mut d: Vec<u64> = self.0.values().copied().filter(|d| *d > now_ms).collect();
        d.sort_unstable();
        d
    }

    /// Drops expired leases and adds (or renews) `lease_id` until `deadline_ms`, as the script's
    /// `ZREMRANGEBYSCORE` + `ZADD` do.
    pub fn acquire(&mut self, now_ms: u64, lease_id: &str, deadline_ms: u64) {
        self.0.retain(|_, d| *d > now_ms);
        self.0.insert(lease_id.to_owned(), deadline_ms);
    }

    /// Removes one lease (`release.lua`'s `ZREM`); whether it was there.
    pub fn release(&mut self, lease_id: &str) -> bool {
        self.0.remove(lease_id).is_some()
    }

    /// The latest deadline, when to forget the whole set.
    pub fn expires_at(&self) -> Option<u64> {
        self.0.values().copied().max()
    }

    /// Whether no lease is held, live or not.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Unix ms by which `live + extra` leases are down to `limit - 1` at the latest (one slot free):
/// the `(live + extra − limit + 1)`-th earliest of `deadlines`; `now_ms` when a slot is free.
pub fn slot_free_at(deadlines: &[u64], limit: u32, now_ms: u64) -> u64 {
    let held = deadlines.len();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if held < limit {
        return now_ms;
    }
    deadlines.get(held - limit).copied().unwrap_or(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_leases_do_not_count_and_go_at_the_next_acquisition() {
        let mut l = Leases::new();
        l.acquire(0, "a", 100);
        l.acquire(0, "b", 200);
        assert_eq!(l.live(99), 2);
        assert_eq!(l.live(100), 1, "a lease at its deadline is over");
        l.acquire(150, "c", 300);
        assert_eq!(l.live_deadlines(150), [200, 300]);
        assert!(!l.release("a"), "the expired lease was dropped");
        assert!(l.release("b"));
        assert_eq!(l.expires_at(), Some(300));
    }

    #[test]
    fn a_slot_is_free_when_enough_deadlines_have_passed() {
        assert_eq!(slot_free_at(&[], 2, 5), 5);
        assert_eq!(slot_free_at(&[10], 2, 5), 5);
        assert_eq!(slot_free_at(&[10, 20], 2, 5), 10);
        assert_eq!(slot_free_at(&[10, 20, 30], 2, 5), 20);
    }
}
