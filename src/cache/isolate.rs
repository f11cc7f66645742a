//! The in-isolate layer: a small bounded map of entries read recently, so a hot key costs no
//! Redis command at all for a short while.
//!
//! An isolate cannot hear invalidations (Workers cannot subscribe), so every entry here lives at
//! most `isolate_ttl_ms` after it was put: that is the documented bound on how long a purge takes
//! to reach every location. When full, expired slots go first, then the least recently used.

use std::collections::HashMap;
use std::rc::Rc;

use crate::policy::CacheSettings;

use super::entry::Entry;

/// A bounded map from entry key to entry, each slot living at most `ttl_ms`.
#[derive(Debug, Default)]
pub struct IsolateCache {
    capacity: usize,
    ttl_ms: u64,
    map: HashMap<String, Slot>,
    tick: u64,
}

#[derive(Debug)]
struct Slot {
    entry: Rc<Entry>,
    inserted_ms: u64,
    used: u64,
}

impl IsolateCache {
    /// A layer holding at most `capacity` entries, each for at most `ttl_ms` (0 disables it).
    pub fn new(capacity: u32, ttl_ms: u32) -> Self {
        Self { capacity: capacity as usize, ttl_ms: u64::from(ttl_ms), map: HashMap::new(), tick: 0 }
    }

    /// A layer sized by the policy's cache settings.
    pub fn from_settings(settings: &CacheSettings) -> Self {
        Self::new(settings.isolate_capacity, settings.isolate_ttl_ms)
    }

    /// The entry under `key`, if it was put less than `ttl_ms` before `now_ms`.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<Rc<Entry>> {
        let ttl = self.ttl_ms;
        let expired = match self.map.get(key) {
            None => return None,
            Some(slot) => is_expired(slot, now_ms, ttl),
        };
        if expired {
            self.map.remove(key);
            return None;
        }
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|slot| {
            slot.used = tick;
            Rc::clone(&slot.entry)
        })
    }

    /// Puts `entry` under `key` as of `now_ms`, evicting if the layer is full.
    pub fn put(&mut self, key: String, entry: Rc<Entry>, now_ms: u64) {
        if self.capacity == 0 || self.ttl_ms == 0 {
            return;
        }
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            let ttl = self.ttl_ms;
            self.map.retain(|_, slot| !is_expired(slot, now_ms, ttl));
            if self.map.len() >= self.capacity {
                if let Some(oldest) = self.map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone()) {
                    self.map.remove(&oldest);
                }
            }
        }
        self.tick += 1;
        self.map.insert(key, Slot { entry, inserted_ms: now_ms, used: self.tick });
    }

    /// Removes the entry under `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    /// Removes every entry whose key starts with `prefix`; how many.
    pub fn remove_prefix(&mut self, prefix: &str) -> usize {
        let before = self.map.len();
        self.map.retain(|k, _| !k.starts_with(prefix));
        before - self.map.len()
    }

    /// Removes every entry carrying `tag`; how many.
    pub fn remove_tagged(&mut self, tag: &str) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| !s.entry.tags.iter().any(|t| t == tag));
        before - self.map.len()
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Entries held (some may have expired but not yet been dropped).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn is_expired(slot: &Slot, now_ms: u64, ttl_ms: u64) -> bool {
    now_ms.saturating_sub(slot.inserted_ms) >= ttl_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::sample;

    fn e(tag: &str) -> Rc<Entry> {
        let mut entry = sample(b"x");
        entry.tags = vec![tag.to_owned()];
        Rc::new(entry)
    }

    #[test]
    fn entries_live_at_most_the_isolate_ttl() {
        let mut c = IsolateCache::new(10, 5_000);
        c.put("a".into(), e("t"), 1_000);
        assert!(c.get("a", 5_999).is_some());
        assert!(c.get("a", 6_000).is_none());
        assert!(c.is_empty(), "an expired slot is dropped when read");
    }

    #[test]
    fn a_full_layer_evicts_the_least_recently_used() {
        let mut c = IsolateCache::new(2, 60_000);
        c.put("a".into(), e("t"), 0);
        c.put("b".into(), e("t"), 0);
        assert!(c.get("a", 1).is_some());
        c.put("c".into(), e("t"), 2);
        assert_eq!(c.len(), 2);
        assert!(c.get("b", 3).is_none(), "b was least recently used");
        assert!(c.get("a", 3).is_some() && c.get("c", 3).is_some());
    }

    #[test]
    fn a_full_layer_drops_expired_slots_before_live_ones() {
        let mut c = IsolateCache::new(2, 100);
        c.put("old".into(), e("t"), 0);
        c.put("live".into(), e("t"), 90);
        assert!(c.get("old", 99).is_some(), "old is now the most recently used");
        c.put("new".into(), e("t"), 150);
        assert!(c.get("live", 151).is_some() && c.get("new", 151).is_some());
    }

    #[test]
    fn replacing_a_key_does_not_evict_another() {
        let mut c = IsolateCache::new(2, 1_000);
        c.put("a".into(), e("t"), 0);
        c.put("b".into(), e("t"), 0);
        c.put("a".into(), e("u"), 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a", 2).unwrap().tags, ["u"]);
    }

    #[test]
    fn removal_by_key_prefix_and_tag() {
        let mut c = IsolateCache::new(10, 1_000);
        c.put("ns1:a".into(), e("red"), 0);
        c.put("ns1:b".into(), e("blue"), 0);
        c.put("ns2:a".into(), e("red"), 0);
        assert!(c.remove("ns1:b") && !c.remove("ns1:b"));
        assert_eq!(c.remove_tagged("red"), 2);
        c.put("ns1:x".into(), e("t"), 0);
        c.put("ns2:y".into(), e("t"), 0);
        assert_eq!(c.remove_prefix("ns1:"), 1);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn zero_capacity_or_ttl_disables_the_layer() {
        for (cap, ttl) in [(0, 1_000), (10, 0)] {
            let mut c = IsolateCache::new(cap, ttl);
            c.put("a".into(), e("t"), 0);
            assert!(c.get("a", 0).is_none());
        }
    }
}
