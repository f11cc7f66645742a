//! The local block cache: a caller Redis just denied is denied again from memory until the
//! denial's `retry_after` has passed, costing no Redis command. Bounded; never the shared truth.
//!
//! A block is remembered per subject and scope: a denial by a tier (or override) limit blocks the
//! subject on every route; one by a route limit blocks only checks that carry that route limit.
//! A block answers checks costing at least what the denied one did (a cheaper request may fit
//! sooner, so it goes to Redis). Times are this isolate's clock; the snapshot's Redis time is
//! moved on by the time elapsed locally. An override changed meanwhile takes effect when the
//! block ends.

use std::collections::HashMap;

use super::check::Check;
use super::decision::Decision;

/// Blocks a [`BlockCache`] keeps by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone)]
struct Block {
    decision: Decision,
    cost: u32,
    blocked_at_ms: u64,
    until_ms: u64,
}

/// Denied callers, at most `capacity` of them.
///
/// When full, expired blocks go first, then those ending soonest.
#[derive(Debug, Clone)]
pub struct BlockCache {
    blocks: HashMap<(String, String), Block>,
    capacity: usize,
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl BlockCache {
    /// An empty cache holding at most `capacity` blocks.
    pub fn new(capacity: usize) -> Self {
        Self { blocks: HashMap::new(), capacity }
    }

    /// Blocks held (some may have expired).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Drops every block of one subject (an operator reset its limits).
    pub fn forget_subject(&mut self, subject_hash: &str) {
        self.blocks.retain(|(subject, _), _| subject != subject_hash);
    }

    /// Remembers a denial of `check` decided at local time `now_ms`; other decisions are ignored.
    pub fn insert(&mut self, check: &Check<'_>, decision: &Decision, now_ms: u64) {
        let Decision::Denied { violated, retry_after_ms, .. } = decision else { return };
        if self.capacity == 0 {
            return;
        }
        let scope = if check.route_limits.iter().any(|l| &l.id == violated) { violated.clone() } else { String::new() };
        let key = (check.subject_hash.to_owned(), scope);
        if !self.blocks.contains_key(&key) && self.blocks.len() >= self.capacity {
            self.make_room(now_ms);
        }
        let block = Block {
            decision: decision.clone(),
            cost: check.cost.get(),
            blocked_at_ms: now_ms,
            until_ms: now_ms.saturating_add(*retry_after_ms),
        };
        self.blocks.insert(key, block);
    }

    /// The remembered denial that still holds for `check` at local time `now_ms`, with its
    /// `retry_after_ms` and snapshot time brought up to date; `None` means ask Redis.
    pub fn get(&mut self, check: &Check<'_>, now_ms: u64) -> Option<Decision> {
        let subject = check.subject_hash;
        let scopes = std::iter::once("").chain(check.route_limits.iter().map(|l| l.id.as_str()));
        let mut found: Option<&Block> = None;
        let mut expired: Vec<String> = Vec::new();
        for scope in scopes {
            let Some(block) = self.blocks.get(&(subject.to_owned(), scope.to_owned())) else { continue };
            if block.until_ms <= now_ms {
                expired.push(scope.to_owned());
            } else if block.cost <= check.cost.get() && found.is_none_or(|f| block.until_ms > f.until_ms) {
                found = Some(block);
            }
        }
        let answer = found.map(|block| {
            let mut decision = block.decision.clone();
            let elapsed = now_ms.saturating_sub(block.blocked_at_ms);
            let snapshot = decision.snapshot_mut();
            snapshot.now_ms = snapshot.now_ms.saturating_add(elapsed);
            if let Decision::Denied { retry_after_ms, .. } = &mut decision {
                *retry_after_ms = block.until_ms - now_ms;
            }
            decision
        });
        for scope in expired {
            self.blocks.remove(&(subject.to_owned(), scope));
        }
        answer
    }

    /// Drops expired blocks, then (if still full) the eighth of the capacity ending soonest.
    fn make_room(&mut self, now_ms: u64) {
        self.blocks.retain(|_, b| b.until_ms > now_ms);
        if self.blocks.len() < self.capacity {
            return;
        }
        let mut ends: Vec<(u64, (String, String))> = self.blocks.iter().map(|(k, b)| (b.until_ms, k.clone())).collect();
        let batch = (self.capacity / 8).max(1).min(ends.len());
        ends.select_nth_unstable_by_key(batch - 1, |(until, _)| *until);
        for (_, key) in ends.into_iter().take(batch) {
            self.blocks.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::limiter::model::test_support::limit;
    use crate::limiter::{MemoryLimiter, Mode};
    use crate::policy::{Algorithm, Limit};

    const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;

    fn check<'a>(subject: &'a str, tier: &'a [Limit], route: &'a [Limit], cost: u32) -> Check<'a> {
        Check {
            subject_hash: subject,
            tier_limits: tier,
            route_limits: route,
            cost: NonZeroU32::new(cost).expect("non-zero"),
            mode: Mode::Consume,
            usage: None,
            concurrency: None,
        }
    }

    fn denied(m: &mut MemoryLimiter, c: &Check<'_>, now: u64) -> Decision {
        loop {
            let d = m.check(c, now).expect("valid");
            if !d.is_allowed() {
                return d;
            }
        }
    }

    #[test]
    fn a_denied_caller_is_answered_locally_until_retry_after() {
        let tier = [limit("tier", Algorithm::FixedWindow, 3, 60_000)];
        let c = check("s", &tier, &[], 1);
        let mut m = MemoryLimiter::default();
        let d = denied(&mut m, &c, T0);
        let mut cache = BlockCache::default();
        cache.insert(&c, &d, 500);
        let again = cache.get(&c, 10_500).expect("still blocked");
        assert_eq!(again.retry_after_ms(), Some(60_000 - 10_000));
        assert_eq!(again.snapshot().now_ms, T0 + 10_000);
        assert_eq!(cache.get(&c, 60_500), None);
        assert!(cache.is_empty(), "expired blocks are dropped when met");
    }

    #[test]
    fn a_route_block_does_not_block_other_routes_but_a_tier_block_does() {
        let tier = [limit("tier", Algorithm::FixedWindow, 100, 60_000)];
        let chat = [limit("route-chat", Algorithm::FixedWindow, 1, 60_000)];
        let search = [limit("route-search", Algorithm::FixedWindow, 1, 60_000)];
        let mut m = MemoryLimiter::default();
        let mut cache = BlockCache::default();
        let on_chat = check("s", &tier, &chat, 1);
        let d = denied(&mut m, &on_chat, T0);
        cache.insert(&on_chat, &d, 0);
        assert!(cache.get(&on_chat, 1).is_some());
        assert!(cache.get(&check("s", &tier, &search, 1), 1).is_none());
        assert!(cache.get(&check("other", &tier, &chat, 1), 1).is_none());

        let small_tier = [limit("tier-small", Algorithm::FixedWindow, 1, 60_000)];
        let on_search = check("t", &small_tier, &search, 1);
        let d = denied(&mut m, &on_search, T0);
        assert_eq!(d.violated(), Some("tier-small"));
        cache.insert(&on_search, &d, 0);
        assert!(cache.get(&check("t", &small_tier, &chat, 1), 1).is_some());
    }

    #[test]
    fn a_cheaper_request_is_not_blocked_by_a_costlier_denial() {
        let tier = [limit("tier", Algorithm::TokenBucket, 10, 10_000)];
        let mut m = MemoryLimiter::default();
        let costly = check("s", &tier, &[], 8);
        m.check(&costly, T0).expect("valid");
        let d = m.check(&costly, T0).expect("valid");
        let mut cache = BlockCache::default();
        cache.insert(&costly, &d, 0);
        assert!(cache.get(&check("s", &tier, &[], 1), 1).is_none());
        assert!(cache.get(&check("s", &tier, &[], 9), 1).is_some());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let tier = [limit("tier", Algorithm::FixedWindow, 1, 60_000)];
        let mut m = MemoryLimiter::new(100_000);
        let mut cache = BlockCache::new(64);
        for i in 0..1_000u64 {
            let subject = format!("s{i}");
            let c = check(&subject, &tier, &[], 1);
            let d = denied(&mut m, &c, T0 + i);
            cache.insert(&c, &d, i);
            assert!(cache.len() <= 64);
        }
        assert!(cache.get(&check("s999", &tier, &[], 1), 999).is_some(), "the newest block is kept");
    }
}
