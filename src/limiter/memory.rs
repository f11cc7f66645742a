//! The in-isolate limiter: the same models and the same all-or-nothing rule as `check.lua`, on a
//! bounded map. It serves memory mode (no Redis configured) and the `local` failure policy while
//! Redis is down; its counts are per isolate, so it is a degraded mode, never the shared truth.

use std::collections::{HashMap, HashSet};

use crate::policy::Limit;

use super::check::{Check, Settlement};
use super::concurrency::Leases;
use super::decision::{Decision, Warning};
use super::model::{evaluate, merge_shared, Charge, Crossing, SlotRequest, State};
use super::overrides::Override;
use super::reservations::{self, InFlight, Reservations};
use super::settle::settle;
use super::LimiterError;

/// Entries a [`MemoryLimiter`] keeps by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// One limit of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    subject_hash: String,
    limit_id: String,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// From then on the state decides as no state would, so it may go.
    expires_at: u64,
}

/// Limit states of many subjects, at most `capacity` of them (plus the limits of the check
/// being written, should `capacity` be smaller than one check's limit count).
///
/// When full, entries whose states have expired go first; then those expiring soonest, which
/// forgets the least. Forgetting a live entry lets its subject start afresh: acceptable here.
#[derive(Debug, Clone)]
pub struct MemoryLimiter {
    entries: HashMap<EntryKey, Entry>,
    overrides: HashMap<String, Override>,
    /// Lease sets by (subject, route).
    leases: HashMap<(String, String), Leases>,
    /// Usage reservations in flight, by subject.
    reservations: HashMap<String, Reservations>,
    /// Warning marks by (subject, limit id, ppm): until when a crossing is not reported again.
    warned: HashMap<(String, String, u32), u64>,
    capacity: usize,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl MemoryLimiter {
    /// An empty limiter holding at most `capacity` limit states.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            overrides: HashMap::new(),
            leases: HashMap::new(),
            reservations: HashMap::new(),
            warned: HashMap::new(),
            capacity,
        }
    }

    /// Drops every limit state and the override of one subject (an operator reset its limits).
    pub fn forget_subject(&mut self, subject_hash: &str) {
        self.entries.retain(|key, _| key.subject_hash != subject_hash);
        self.overrides.remove(subject_hash);
        self.leases.retain(|(s, _), _| s != subject_hash);
        self.reservations.remove(subject_hash);
        self.warned.retain(|(s, _, _), _| s != subject_hash);
    }

    /// Sets (or with `None` removes) a subject's override, as `PUT`/`DELETE limits/{subject}` do
    /// in Redis.
    pub fn set_override(&mut self, subject_hash: &str, value: Option<Override>) {
        match value {
            Some(o) => {
                self.overrides.insert(subject_hash.to_owned(), o);
            }
            None => {
                self.overrides.remove(subject_hash);
            }
        }
    }

    /// A subject's override, if one is set.
    pub fn get_override(&self, subject_hash: &str) -> Option<&Override> {
        self.overrides.get(subject_hash)
    }

    /// Limit states held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no state is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks every limit of `check` at `now_ms`, all or nothing, exactly as `check.lua` does.
    pub fn check(&mut self, check: &Check<'_>, now_ms: u64) -> Result<Decision, LimiterError> {
        check.validate()?;
        let overridden = self.overrides.get(check.subject_hash).cloned();
        let route: Vec<(&Limit, u32)> = check.route_charges().collect();
        let route_limits: Vec<Limit> = route.iter().map(|(l, _)| (*l).clone()).collect();
        let (tier, tier_name, override_ignored): (Vec<(&Limit, u32)>, _, _) = match &overridden {
            None => (check.tier_charges().collect(), None, false),
            Some(o) if o.is_well_formed() && o.fits_routes(&route_limits) => {
                (o.limits.iter().map(|l| (l, check.cost.get())).collect(), Some(o.tier.clone()), false)
            }
            Some(_) => (check.tier_charges().collect(), None, true),
        };
        let all: Vec<(&Limit, u32)> = tier.into_iter().chain(route).collect();
        let limits = merge_shared(all.iter().map(|(l, _)| *l))?;
        let cost_of = |l: &Limit| all.iter().find(|(a, _)| std::ptr::eq(*a, l)).map_or(1, |(_, c)| *c);
        let keys: Vec<EntryKey> = limits
            .iter()
            .map(|l| EntryKey { subject_hash: check.subject_hash.to_owned(), limit_id: l.id.clone() })
            .collect();
        let states: Vec<Option<State>> =
            keys.iter().map(|k| self.entries.get(k).filter(|e| e.expires_at > now_ms).map(|e| e.state)).collect();
        let charges: Vec<Charge<'_>> = limits
            .iter()
            .zip(&states)
            .map(|(limit, state)| Charge { limit, cost: cost_of(limit), state: state.as_ref() })
            .collect();
        let lease_key = check.concurrency.map(|s| (check.subject_hash.to_owned(), s.route.to_owned()));
        let empty = Leases::new();
        let held = lease_key.as_ref().and_then(|k| self.leases.get(k)).unwrap_or(&empty);
        let slot = check.concurrency.map(|s| SlotRequest { rule: s.rule, leases: held });
        let reserving = check.usage.filter(|_| check.mode == super::Mode::Consume);
        let evaluation =
            evaluate(&charges, slot, now_ms, check.mode, reserving.map(|u| u.unit), tier_name, override_ignored);
        let names: Vec<String> = limits.iter().map(|l| l.id.clone()).collect();

        if evaluation.writes.iter().any(Option::is_some) {
            self.make_room(&keys, now_ms);
            for ((key, limit), state) in keys.into_iter().zip(&limits).zip(evaluation.writes) {
                if let Some(state) = state {
                    self.entries.insert(key, Entry { state, expires_at: state.expires_at(limit) });
                }
            }
        }
        if let (Some(until), Some(key), Some(slot)) = (evaluation.lease_until, lease_key, check.concurrency) {
            self.leases.entry(key).or_default().acquire(now_ms, slot.lease_id, until);
        }
        if let (Some(until), Some(usage)) = (evaluation.reservation_until, reserving) {
            let member = reservations::member(usage.id, usage.reserve.get(), usage.unit);
            self.reservations.entry(check.subject_hash.to_owned()).or_default().record(now_ms, member, until);
        }
        let mut decision = evaluation.decision;
        let warnings = self.mark_warnings(check.subject_hash, &names, &evaluation.crossings, now_ms);
        decision.snapshot_mut().warnings = warnings;
        Ok(decision)
    }

    /// Settles a reservation exactly as `settle.lua` does; returns the warnings it crossed.
    pub fn settle(&mut self, settlement: &Settlement<'_>, now_ms: u64) -> Vec<Warning> {
        let mut crossings = Vec::new();
        let names: Vec<String> = settlement.limits.iter().map(|l| l.id.clone()).collect();
        for (i, limit) in settlement.limits.iter().enumerate() {
            let key = EntryKey { subject_hash: settlement.subject_hash.to_owned(), limit_id: limit.id.clone() };
            let state = self.entries.get(&key).filter(|e| e.expires_at > now_ms).map(|e| e.state);
            let settled =
                settle(state.as_ref(), now_ms, limit, settlement.reserved_at_ms, settlement.reserve, settlement.actual);
            if let Some(state) = settled.write {
                self.make_room(std::slice::from_ref(&key), now_ms);
                self.entries.insert(key, Entry { state, expires_at: state.expires_at(limit) });
            }
            crossings.extend(settled.crossings.into_iter().map(|c| Crossing { index: i, ..c }));
        }
        if let Some(held) = self.reservations.get_mut(settlement.subject_hash) {
            held.settle(&settlement.member());
            if held.is_empty() {
                self.reservations.remove(settlement.subject_hash);
            }
        }
        self.mark_warnings(settlement.subject_hash, &names, &crossings, now_ms)
    }

    /// Ends a lease (`release.lua`); whether it was held.
    pub fn release(&mut self, subject_hash: &str, route: &str, lease_id: &str) -> bool {
        let key = (subject_hash.to_owned(), route.to_owned());
        let Some(leases) = self.leases.get_mut(&key) else { return false };
        let held = leases.release(lease_id);
        if leases.is_empty() {
            self.leases.remove(&key);
        }
        held
    }

    /// Live leases of a subject on a route.
    pub fn leases_in_flight(&self, subject_hash: &str, route: &str, now_ms: u64) -> u32 {
        self.leases.get(&(subject_hash.to_owned(), route.to_owned())).map_or(0, |l| l.live(now_ms))
    }

    /// A subject's usage reservations in flight at `now_ms`, per unit.
    pub fn reservations_in_flight(&self, subject_hash: &str, now_ms: u64) -> Vec<InFlight> {
        self.reservations.get(subject_hash).map_or_else(Vec::new, |r| reservations::tally(r.live(now_ms)))
    }

    /// A subject's reservation records, live or expired (what its Redis set holds).
    pub fn reservations(&self, subject_hash: &str) -> Option<&Reservations> {
        self.reservations.get(subject_hash)
    }

    /// Keeps the crossings not yet reported in their window, and marks them reported.
    fn mark_warnings(&mut self, subject: &str, names: &[String], crossings: &[Crossing], now_ms: u64) -> Vec<Warning> {
        let mut out = Vec::new();
        for c in crossings {
            let Some(id) = names.get(c.index) else { continue };
            let mark = (subject.to_owned(), id.clone(), c.at.ppm());
            if self.warned.get(&mark).is_some_and(|until| *until > now_ms) {
                continue;
            }
            self.warned.retain(|_, until| *until > now_ms);
            self.warned.insert(mark, c.until_ms);
            out.push(Warning { limit_id: id.clone(), at: c.at, used: c.used });
        }
        out
    }

    /// Frees room for `incoming` (never evicting those keys themselves).
    fn make_room(&mut self, incoming: &[EntryKey], now_ms: u64) {
        let new = incoming.iter().filter(|k| !self.entries.contains_key(k)).count();
        if self.entries.len() + new <= self.capacity {
            return;
        }
        self.entries.retain(|_, e| e.expires_at > now_ms);
        let excess = (self.entries.len() + new).saturating_sub(self.capacity);
        if excess == 0 {
            return;
        }
        let keep: HashSet<&EntryKey> = incoming.iter().collect();
        let mut candidates: Vec<(u64, EntryKey)> =
            self.entries.iter().filter(|(k, _)| !keep.contains(k)).map(|(k, e)| (e.expires_at, k.clone())).collect();
        // Evict a batch (an eighth of the capacity, at least the excess) so a full map does not
        // rescan on every insert.
        let batch = excess.max(self.capacity / 8).min(candidates.len());
        if batch == 0 {
            return;
        }
        candidates.select_nth_unstable_by_key(batch - 1, |(at, _)| *at);
        for (_, key) in candidates.into_iter().take(batch) {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::limiter::model::test_support::limit;
    use crate::limiter::Mode;
    use crate::policy::Algorithm;

    const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;

    fn check<'a>(subject: &'a str, tier: &'a [Limit], route: &'a [Limit], cost: u32, mode: Mode) -> Check<'a> {
        Check {
            subject_hash: subject,
            tier_limits: tier,
            route_limits: route,
            cost: NonZeroU32::new(cost).expect("non-zero cost"),
            mode,
            usage: None,
            concurrency: None,
        }
    }

    #[test]
    fn denies_the_101st_request_in_the_hour() {
        let tier = [limit("tier-basic", Algorithm::SlidingWindow, 100, 3_600_000)];
        let mut m = MemoryLimiter::default();
        for i in 0..100 {
            assert!(m.check(&check("s", &tier, &[], 1, Mode::Consume), T0 + i).expect("valid").is_allowed());
        }
        let d = m.check(&check("s", &tier, &[], 1, Mode::Consume), T0 + 100).expect("valid");
        assert_eq!(d.violated(), Some("tier-basic"));
    }

    #[test]
    fn a_denial_consumes_nothing_from_other_limits() {
        let tier = [limit("tier-basic", Algorithm::TokenBucket, 100, 3_600_000)];
        let route = [limit("route-chat", Algorithm::Gcra, 1, 60_000)];
        let mut m = MemoryLimiter::default();
        assert!(m.check(&check("s", &tier, &route, 1, Mode::Consume), T0).expect("valid").is_allowed());
        for _ in 0..5 {
            assert!(!m.check(&check("s", &tier, &route, 1, Mode::Consume), T0).expect("valid").is_allowed());
        }
        let d = m.check(&check("s", &tier, &[], 1, Mode::Peek), T0).expect("valid");
        assert_eq!(d.snapshot().limits[0].remaining, 99);
    }

    #[test]
    fn peek_does_not_consume() {
        let tier = [limit("t", Algorithm::FixedWindow, 2, 60_000)];
        let mut m = MemoryLimiter::default();
        for _ in 0..5 {
            let d = m.check(&check("s", &tier, &[], 1, Mode::Peek), T0).expect("valid");
            assert_eq!(d.snapshot().limits[0].remaining, 2);
        }
        assert!(m.is_empty());
    }

    #[test]
    fn an_override_replaces_the_tier_limits_but_not_the_route_limits() {
        let tier = [limit("tier-basic", Algorithm::FixedWindow, 1, 60_000)];
        let route = [limit("route-chat", Algorithm::FixedWindow, 5, 60_000)];
        let mut m = MemoryLimiter::default();
        let pro = Override { tier: "PRO".into(), limits: vec![limit("tier-pro", Algorithm::FixedWindow, 3, 60_000)] };
        m.set_override("s", Some(pro));
        for _ in 0..3 {
            let d = m.check(&check("s", &tier, &route, 1, Mode::Consume), T0).expect("valid");
            assert!(d.is_allowed());
            assert_eq!(d.snapshot().tier.as_deref(), Some("PRO"));
            assert_eq!(d.snapshot().limits[0].id, "tier-pro");
        }
        let d = m.check(&check("s", &tier, &route, 1, Mode::Consume), T0).expect("valid");
        assert_eq!(d.violated(), Some("tier-pro"));
        assert_eq!(d.snapshot().limit("route-chat").map(|l| l.remaining), Some(2));
    }

    #[test]
    fn limits_sharing_an_id_are_charged_once_with_the_smaller_limit() {
        let tier = [limit("shared", Algorithm::FixedWindow, 5, 60_000)];
        let route = [limit("shared", Algorithm::FixedWindow, 3, 60_000)];
        let mut m = MemoryLimiter::default();
        let d = m.check(&check("s", &tier, &route, 1, Mode::Consume), T0).expect("valid");
        assert_eq!(d.snapshot().limits.len(), 1);
        assert_eq!((d.snapshot().limits[0].limit, d.snapshot().limits[0].remaining), (3, 2));
    }

    #[test]
    fn an_override_clashing_with_a_route_limit_is_ignored() {
        let tier = [limit("tier-basic", Algorithm::FixedWindow, 1, 60_000)];
        let route = [limit("route-chat", Algorithm::FixedWindow, 5, 60_000)];
        let mut m = MemoryLimiter::default();
        let bad = Override { tier: "PRO".into(), limits: vec![limit("route-chat", Algorithm::FixedWindow, 3, 1_000)] };
        m.set_override("s", Some(bad));
        let d = m.check(&check("s", &tier, &route, 1, Mode::Consume), T0).expect("valid");
        assert!(d.snapshot().override_ignored);
        assert_eq!(d.snapshot().tier, None);
        assert_eq!(d.snapshot().limits[0].id, "tier-basic");
    }

    #[test]
    fn the_map_stays_bounded_and_evicts_expired_entries_first() {
        let short = [limit("short", Algorithm::FixedWindow, 10, 1_000)];
        let long = [limit("long", Algorithm::FixedWindow, 10, 3_600_000)];
        let mut m = MemoryLimiter::new(100);
        for i in 0..50 {
            m.check(&check(&format!("old{i}"), &long, &[], 1, Mode::Consume), T0).expect("valid");
            m.check(&check(&format!("tmp{i}"), &short, &[], 1, Mode::Consume), T0).expect("valid");
        }
        assert_eq!(m.len(), 100);
        // A second later the short windows are over: new subjects replace them, not the hourly ones.
        for i in 0..50 {
            m.check(&check(&format!("new{i}"), &short, &[], 1, Mode::Consume), T0 + 1_000).expect("valid");
        }
        assert_eq!(m.len(), 100);
        let d = m.check(&check("old0", &long, &[], 1, Mode::Peek), T0 + 1_000).expect("valid");
        assert_eq!(d.snapshot().limits[0].remaining, 9, "hourly state survived");
        for i in 0..1_000 {
            m.check(&check(&format!("flood{i}"), &long, &[], 1, Mode::Consume), T0 + 2_000).expect("valid");
            assert!(m.len() <= 100);
        }
    }

    #[test]
    fn a_reservation_is_in_flight_from_its_check_to_its_settlement() {
        use crate::limiter::{InFlight, Reservation, Slot};
        use crate::policy::{ConcurrencyRule, LimitMode, Unit};
        let tokens = Unit::parse("tokens").expect("unit");
        let mut day = limit("tokens-day", Algorithm::FixedWindow, 1_000, 86_400_000);
        day.unit = tokens.clone();
        let route = [day];
        let rule = ConcurrencyRule {
            id: "route-chat-concurrency".into(),
            limit: NonZeroU32::new(2).expect("2"),
            lease_ms: std::num::NonZeroU64::new(30_000).expect("lease"),
            mode: LimitMode::Enforce,
        };
        let reserve = NonZeroU32::new(300).expect("300");
        let with = |id: &'static str| Check {
            usage: Some(Reservation { unit: &tokens, reserve, id }),
            ..check("s", &[], &route, 1, Mode::Consume)
        };
        let mut m = MemoryLimiter::default();
        let first = m.check(&with("r1"), T0).expect("valid");
        let slotted = Check { concurrency: Some(Slot { rule: &rule, route: "chat", lease_id: "r2" }), ..with("r2") };
        let second = m.check(&slotted, T0 + 1).expect("valid");
        let records: Vec<(&str, u64)> = m.reservations("s").expect("recorded").records().collect();
        let day_end = T0 - T0 % 86_400_000 + 86_400_000;
        assert_eq!(records, [("r1:300:tokens", day_end), ("r2:300:tokens", T0 + 1 + 30_000)], "the lease caps it");
        assert_eq!(m.reservations_in_flight("s", T0 + 2), [InFlight { unit: tokens.clone(), count: 2, units: 600 }]);
        assert_eq!(
            m.reservations_in_flight("s", T0 + 30_001).len(),
            1,
            "past the lease's deadline it no longer counts"
        );

        // A peek, a refusal and a check charging no limit of the unit record nothing.
        m.check(&Check { mode: Mode::Peek, ..with("r3") }, T0 + 2).expect("valid");
        let big = NonZeroU32::new(500).expect("500");
        let refused = Check { usage: Some(Reservation { unit: &tokens, reserve: big, id: "r4" }), ..with("r4") };
        assert!(!m.check(&refused, T0 + 2).expect("valid").is_allowed());
        let other = Unit::parse("bytes").expect("unit");
        let uncharged = Check { usage: Some(Reservation { unit: &other, reserve, id: "r5" }), ..with("r5") };
        assert!(m.check(&uncharged, T0 + 2).expect("valid").is_allowed());
        assert_eq!(m.reservations("s").map(|r| r.records().count()), Some(2));

        for (decision, c) in [(&first, with("r1")), (&second, slotted)] {
            m.settle(&c.settlement(decision, 100).expect("reserved"), T0 + 3);
        }
        assert!(m.reservations("s").is_none(), "every record settled");
        assert!(m.reservations_in_flight("s", T0 + 3).is_empty());
    }

    #[test]
    fn out_of_bounds_limits_are_errors() {
        let tier = [limit("huge", Algorithm::Gcra, u32::MAX, 86_400_000)];
        let mut m = MemoryLimiter::default();
        assert!(matches!(
            m.check(&check("s", &tier, &[], 1, Mode::Consume), T0),
            Err(LimiterError::LimitOutOfRange { .. })
        ));
    }
}
