//! Usage reservations in flight: the record `scripts/check.lua` keeps of each reservation it
//! charges, and `scripts/settle.lua` drops when it settles, as the sorted set it keeps per subject
//! (`{ns}:ratelimit:v1:{<subject_hash>}:usage:reservations`; member
//! `<reservation id>:<units>:<unit>`, score = deadline, Unix ms).
//!
//! A reservation is recorded only when the check charged it to at least one limit (the same
//! condition under which a [`super::Settlement`] exists), so every record has a settlement that
//! removes it. Its deadline is the latest expiry of the states the check wrote for the limits of
//! the reservation's unit — the moment from which its units weigh on none of them (a fixed
//! window's end, a sliding window's end of the following window), so a refund after it changes
//! nothing — capped at the deadline of the concurrency lease the same check took, if any (a request
//! past its lease is not in flight for its slot either). A record counts while `deadline > now`;
//! a settlement that was lost therefore stops showing by then, and expired records are dropped
//! when the next one is added. The set expires at its latest deadline.

use std::collections::BTreeMap;

use crate::policy::Unit;

/// The set member of one reservation: `<id>:<units>:<unit>` (neither an id nor a unit holds `:`).
pub fn member(id: &str, units: u32, unit: &Unit) -> String {
    format!("{id}:{units}:{}", unit.as_str())
}

/// The units and the unit of a member; `None` for any other text.
pub fn parse_member(text: &str) -> Option<(u32, Unit)> {
    let mut parts = text.rsplitn(3, ':');
    let unit = Unit::parse(parts.next()?)?;
    let units = parts.next()?;
    let id = parts.next()?;
    if id.is_empty() || units.is_empty() || !units.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((units.parse().ok()?, unit))
}

/// The reservations of one unit in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The unit reserved.
    pub unit: Unit,
    /// Reservations not yet settled whose deadline is ahead.
    pub count: u32,
    /// The units they hold.
    pub units: u64,
}

/// Totals per unit of the given members (unparseable ones are skipped), in unit name order.
pub fn tally<'m>(members: impl IntoIterator<Item = &'m str>) -> Vec<InFlight> {
    let mut by_unit: BTreeMap<Unit, (u32, u64)> = BTreeMap::new();
    for (units, unit) in members.into_iter().filter_map(parse_member) {
        let t = by_unit.entry(unit).or_default();
        *t = (t.0.saturating_add(1), t.1.saturating_add(u64::from(units)));
    }
    by_unit.into_iter().map(|(unit, (count, units))| InFlight { unit, count, units }).collect()
}

/// The reservations of one subject: member → deadline (Unix ms), and when the set expires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations {
    records: BTreeMap<String, u64>,
    /// Set by each record to the latest deadline (`PEXPIREAT`); a removal leaves it.
    expires_at: u64,
}

impl Reservations {
    /// No reservations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops expired records and adds (or renews) `member` until `deadline_ms`, as the script's
    /// `ZREMRANGEBYSCORE` + `ZADD` do,
    /// and the set's expiry is moved to its latest deadline.
    pub fn record(&mut self, now_ms: u64, member: String, deadline_ms: u64) {
        self.records.retain(|_, d| *d > now_ms);
        self.records.insert(member, deadline_ms);
        self.expires_at = self.records.values().copied().max().unwrap_or(deadline_ms);
    }

    /// Removes one record (`settle.lua`'s `ZREM`, which leaves the set's expiry); whether it was
    /// there.
    pub fn settle(&mut self, member: &str) -> bool {
        self.records.remove(member).is_some()
    }

    /// The members live at `now_ms` (deadline after now), in member order.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &str> {
        self.records.iter().filter(move |(_, d)| **d > now_ms).map(|(m, _)| m.as_str())
    }

    /// Every record, live or not, with its deadline, in member order (what the set holds).
    pub fn records(&self) -> impl Iterator<Item = (&str, u64)> {
        self.records.iter().map(|(m, d)| (m.as_str(), *d))
    }

    /// When the whole set is forgotten: the latest deadline when the last record was added;
    /// `None` when nothing is recorded (removing the last member removes the key).
    pub fn expires_at(&self) -> Option<u64> {
        (!self.records.is_empty()).then_some(self.expires_at)
    }

    /// Whether nothing is recorded, live or not.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Unit {
        Unit::parse("tokens").expect("unit")
    }

    #[test]
    fn members_name_the_id_the_units_and_the_unit() {
        assert_eq!(member("ab12", 300, &tokens()), "ab12:300:tokens");
        assert_eq!(parse_member("ab12:300:tokens"), Some((300, tokens())));
        for bad in ["", "300:tokens", ":300:tokens", "a::tokens", "a:3x:tokens", "a:300:Tokens", "a:99999999999:tokens"]
        {
            assert_eq!(parse_member(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expired_records_do_not_count_and_go_when_the_next_is_added() {
        let mut r = Reservations::new();
        r.record(0, member("a", 300, &tokens()), 100);
        r.record(0, member("b", 200, &tokens()), 200);
        assert_eq!(tally(r.live(99)), [InFlight { unit: tokens(), count: 2, units: 500 }]);
        assert_eq!(tally(r.live(100)), [InFlight { unit: tokens(), count: 1, units: 200 }], "due at its deadline");
        r.record(150, member("c", 50, &Unit::parse("bytes").expect("unit")), 300);
        assert!(!r.settle("a:300:tokens"), "the expired record was dropped");
        assert_eq!(r.expires_at(), Some(300));
        r.record(150, member("d", 10, &tokens()), 250);
        assert!(r.settle("b:200:tokens"));
        assert!(r.settle("d:10:tokens"));
        let left = tally(r.live(150));
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].unit.as_str(), left[0].count, left[0].units), ("bytes", 1, 50));
        assert_eq!(r.expires_at(), Some(300), "a removal leaves the expiry");
        assert!(r.settle("c:50:bytes"));
        assert_eq!(r.expires_at(), None);
    }
}
