//! The in-isolate layer: a small bounded map of entries read recently, so a hot key costs no
//! Redis command at all for a short while.
//!
//! An isolate cannot hear invalidations (Workers cannot subscribe), so every entry here lives at
//! most `isolate_ttl_ms` after it was put: that is the documented bound on how long a purge takes
//! to reach every location. The layer is bounded twice, by entry count and by bytes (bodies plus
//! keys and headers, see [`footprint`]), since wasm memory never shrinks and an isolate has 128 MB
//! in all: when either bound would be passed, expired slots go first, then the least recently
//! used. An entry larger than the whole byte budget is not kept at all.

use std::collections::HashMap;
use std::rc::Rc;

use crate::policy::CacheSettings;

use super::entry::Entry;

/// A bounded map from entry key to entry, each slot living at most `ttl_ms`.
#[derive(Debug, Default)]
pub struct IsolateCache {
    capacity: usize,
    max_bytes: usize,
    ttl_ms: u64,
    map: HashMap<String, Slot>,
    bytes: usize,
    tick: u64,
}

#[derive(Debug)]
struct Slot {
    entry: Rc<Entry>,
    inserted_ms: u64,
    used: u64,
    bytes: usize,
}

/// Bytes an entry under `key` is charged: its body, key, content type, tags and headers, plus a
/// fixed overhead per slot.
pub fn footprint(key: &str, entry: &Entry) -> usize {
    const SLOT_OVERHEAD: usize = 128;
    let headers: usize = entry.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    let tags: usize = entry.tags.iter().map(String::len).sum();
    SLOT_OVERHEAD
        + key.len()
        + entry.body.len()
        + entry.content_type.as_ref().map_or(0, String::len)
        + entry.etag.len()
        + headers
        + tags
}

impl IsolateCache {
    /// A layer holding at most `capacity` entries, each for at most `ttl_ms` (0 disables it),
    /// with the default byte budget.
    pub fn new(capacity: u32, ttl_ms: u32) -> Self {
        Self::with_budget(capacity, crate::policy::defaults::ISOLATE_MAX_BYTES, ttl_ms)
    }

    /// A layer holding at most `capacity` entries and `max_bytes` bytes ([`footprint`]), each for
    /// at most `ttl_ms`; a zero in any of them disables it.
    pub fn with_budget(capacity: u32, max_bytes: u32, ttl_ms: u32) -> Self {
        Self {
            capacity: capacity as usize,
            max_bytes: max_bytes as usize,
            ttl_ms: u64::from(ttl_ms),
            map: HashMap::new(),
            bytes: 0,
            tick: 0,
        }
    }

    /// A layer sized by the policy's cache settings.
    pub fn from_settings(settings: &CacheSettings) -> Self {
        Self::with_budget(settings.isolate_capacity, settings.isolate_max_bytes, settings.isolate_ttl_ms)
    }

    /// Bytes held ([`footprint`] of every slot).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry under `key`, if it was put less than `ttl_ms` before `now_ms`.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<Rc<Entry>> {
        let ttl = self.ttl_ms;
        let expired = match self.map.get(key) {
            None => return None,
            Some(slot) => is_expired(slot, now_ms, ttl),
        };
        if expired {
            self.remove(key);
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
        let bytes = footprint(&key, &entry);
        self.remove(&key);
        if bytes > self.max_bytes {
            return;
        }
        if self.map.len() >= self.capacity || self.bytes + bytes > self.max_bytes {
            let ttl = self.ttl_ms;
            self.retain(|_, slot| !is_expired(slot, now_ms, ttl));
        }
        while self.map.len() >= self.capacity || self.bytes + bytes > self.max_bytes {
            let Some(oldest) = self.map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone()) else { break };
            self.remove(&oldest);
        }
        self.tick += 1;
        self.bytes += bytes;
        self.map.insert(key, Slot { entry, inserted_ms: now_ms, used: self.tick, bytes });
    }

    /// Removes the entry under `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(slot) => {
                self.bytes = self.bytes.saturating_sub(slot.bytes);
                true
            }
            None => false,
        }
    }

    /// Removes every entry whose key starts with `prefix`; how many.
    pub fn remove_prefix(&mut self, prefix: &str) -> usize {
        self.retain(|k, _| !k.starts_with(prefix))
    }

    /// Removes every entry carrying `tag`; how many.
    pub fn remove_tagged(&mut self, tag: &str) -> usize {
        self.retain(|_, s| !s.entry.tags.iter().any(|t| t == tag))
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// Keeps the slots `keep` accepts, keeping the byte count right; how many were removed.
    fn retain(&mut self, mut keep: impl FnMut(&String, &Slot) -> bool) -> usize {
        let before = self.map.len();
        let mut freed = 0;
        self.map.retain(|k, s| {
            let kept = keep(k, s);
            if !kept {
                freed += s.bytes;
            }
            kept
        });
        self.bytes = self.bytes.saturating_sub(freed);
        before - self.map.len()
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
    fn the_layer_is_bounded_by_bytes_as_well_as_entries() {
        let big = |n: usize| Rc::new(sample(&vec![b'x'; n]));
        let one = footprint("a", &big(1000));
        let mut c = IsolateCache::with_budget(1000, u32::try_from(3 * one).unwrap(), 60_000);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            c.put((*k).into(), big(1000), i as u64);
        }
        assert_eq!((c.len(), c.bytes()), (3, 3 * one));
        assert!(c.get("a", 3).is_some(), "a is now the most recently used");
        c.put("d".into(), big(1000), 4);
        assert_eq!((c.len(), c.bytes()), (3, 3 * one), "b went to make room");
        assert!(c.get("b", 5).is_none() && c.get("a", 5).is_some() && c.get("d", 5).is_some());
        c.put("huge".into(), big(10_000), 6);
        assert!(c.get("huge", 7).is_none(), "an entry over the whole budget is not kept");
        assert_eq!(c.len(), 3, "and evicts nothing");
        c.put("a".into(), big(10), 8);
        assert_eq!(c.bytes(), 2 * one + footprint("a", &big(10)), "a replacement is charged its own size");
        assert_eq!(c.remove_prefix(""), 3);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn many_large_entries_never_pass_the_budget() {
        let mut c = IsolateCache::with_budget(100_000, 1 << 20, 60_000);
        for i in 0..500u64 {
            c.put(format!("k{i}"), Rc::new(sample(&vec![0u8; 64 * 1024])), i);
            assert!(c.bytes() <= 1 << 20, "after {i}: {}", c.bytes());
        }
        assert!(c.len() <= 16);
    }

    #[test]
    fn zero_capacity_or_ttl_disables_the_layer() {
        for (cap, bytes, ttl) in [(0, 1 << 20, 1_000), (10, 1 << 20, 0), (10, 0, 1_000)] {
            let mut c = IsolateCache::with_budget(cap, bytes, ttl);
            c.put("a".into(), e("t"), 0);
            assert!(c.get("a", 0).is_none());
        }
    }
}
