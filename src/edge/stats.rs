//! Counters per route and tier (allowed, denied, cache outcomes) and of Redis traffic, tallied in
//! the isolate and flushed to one Redis hash in the background: never an extra command per
//! request. `GET /_tollgate/stats` adds the asking isolate's unflushed counts to the stored ones.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::keys::Keys;
use crate::redis::{Command, Reply};

/// Fields counted per route and tier, in report order.
/// `shadow_denied`: requests a shadow limit would have refused; `warned`: quota warnings (a
/// caller crossing a `warn_at` fraction) that this isolate's checks published.
pub const FIELDS: [&str; 8] = ["allowed", "denied", "hit", "miss", "stale", "bypass", "shadow_denied", "warned"];

/// Fields counted once per isolate, not per route.
const GLOBAL: [&str; 5] = ["requests", "redis_requests", "redis_commands", "refresh_failed", "invalidate_failed"];

/// Background work whose failure is counted (and logged): nobody waits on it, so this is the
/// only place it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackgroundWork {
    /// A stale or early cache refresh.
    Refresh,
    /// The invalidation after a write.
    Invalidate,
}

impl BackgroundWork {
    /// Stable counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackgroundWork::Refresh => "refresh_failed",
            BackgroundWork::Invalidate => "invalidate_failed",
        }
    }
}

/// How long the stored counters live after their last flush, ms (refreshed on every flush).
const STORED_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// Counters of one isolate since its last flush.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    counts: BTreeMap<String, u64>,
    last_flush_ms: u64,
}

fn field(route: &str, tier: &str, name: &str) -> String {
    format!("{route}|{tier}|{name}")
}

impl Stats {
    /// Adds `n` to `name` (one of [`FIELDS`]) of a route and tier.
    pub fn add(&mut self, route: &str, tier: &str, name: &str, n: u64) {
        *self.counts.entry(field(route, tier, name)).or_default() += n;
    }

    /// Counts one request seen by the gate.
    pub fn request(&mut self) {
        *self.counts.entry(field("_", "_", "requests")).or_default() += 1;
    }

    /// Counts REST requests and commands sent to Redis.
    pub fn redis(&mut self, requests: u64, commands: u64) {
        *self.counts.entry(field("_", "_", "redis_requests")).or_default() += requests;
        *self.counts.entry(field("_", "_", "redis_commands")).or_default() += commands;
    }

    /// Counts one failed piece of background work.
    pub fn background_failed(&mut self, work: BackgroundWork) {
        *self.counts.entry(field("_", "_", work.as_str())).or_default() += 1;
    }

    /// Whether the counters should be flushed now (non-empty and `interval_ms` since the last).
    pub fn due(&self, now_ms: u64, interval_ms: u64) -> bool {
        !self.counts.is_empty() && now_ms.saturating_sub(self.last_flush_ms) >= interval_ms
    }

    /// Takes the counts, leaving the counters empty, and notes the flush time.
    pub fn drain(&mut self, now_ms: u64) -> BTreeMap<String, u64> {
        self.last_flush_ms = now_ms;
        std::mem::take(&mut self.counts)
    }

    /// The unflushed counts.
    pub fn pending(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Puts drained counts back (the flush failed), so nothing is lost.
    pub fn restore(&mut self, counts: BTreeMap<String, u64>) {
        for (k, v) in counts {
            *self.counts.entry(k).or_default() += v;
        }
    }
}

/// The commands that add drained counts to the stored hash: one `HINCRBY` per field, the start
/// time set once, and the expiry refreshed.
pub fn flush_commands(keys: &Keys, counts: &BTreeMap<String, u64>, now_ms: u64) -> Vec<Command> {
    let key = keys.stats("totals");
    let mut cmds: Vec<Command> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| Command::new("HINCRBY").arg(key.as_str()).arg(f.as_str()).arg(*n))
        .collect();
    if cmds.is_empty() {
        return cmds;
    }
    cmds.push(Command::new("HSETNX").arg(key.as_str()).arg("since_ms").arg(now_ms));
    cmds.push(Command::new("PEXPIRE").arg(key.as_str()).arg(STORED_TTL_MS));
    cmds
}

/// `HGETALL` of the stored counters.
pub fn read_command(keys: &Keys) -> Command {
    Command::new("HGETALL").arg(keys.stats("totals"))
}

/// `DEL` of the stored counters.
pub fn reset_command(keys: &Keys) -> Command {
    Command::new("DEL").arg(keys.stats("totals"))
}

/// Parses an `HGETALL` reply into counts; malformed pairs are skipped.
pub fn parse_stored(reply: &Reply) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Some(items) = reply.as_array() {
        for pair in items.chunks(2) {
            if let [k, v] = pair {
                if let (Some(k), Some(v)) = (k.as_str(), v.to_i64()) {
                    out.insert(k.to_owned(), u64::try_from(v).unwrap_or(0));
                }
            }
        }
    }
    out
}

fn ratio(part: u64, whole: u64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!(((part as f64 / whole as f64) * 1000.0).round() / 1000.0)
    }
}

fn hit_rate(t: &BTreeMap<&str, u64>) -> Value {
    let get = |f: &str| t.get(f).copied().unwrap_or(0);
    ratio(get("hit") + get("stale"), get("hit") + get("stale") + get("miss") + get("bypass"))
}

/// The report of `GET /_tollgate/stats` from stored and local counts (summed).
pub fn report(stored: &BTreeMap<String, u64>, local: &BTreeMap<String, u64>, now_ms: u64) -> Value {
    let mut merged: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, v) in stored.iter().chain(local.iter()) {
        *merged.entry(k.as_str()).or_default() += v;
    }
    let since = merged.remove("since_ms").unwrap_or(now_ms);

    let mut rows: BTreeMap<(&str, &str), BTreeMap<&str, u64>> = BTreeMap::new();
    let mut global: BTreeMap<&str, u64> = BTreeMap::new();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, v) in &merged {
        let mut parts = k.splitn(3, '|');
        let (Some(route), Some(tier), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if route == "_" && GLOBAL.contains(&name) {
            *global.entry(name).or_default() += v;
        } else if let Some(f) = FIELDS.iter().find(|f| **f == name) {
            *rows.entry((route, tier)).or_default().entry(f).or_default() += v;
            *totals.entry(f).or_default() += v;
        }
    }

    let row_json = |t: &BTreeMap<&str, u64>| {
        let mut m = serde_json::Map::new();
        for f in FIELDS {
            m.insert(f.into(), json!(t.get(f).copied().unwrap_or(0)));
        }
        m.insert("hit_rate".into(), hit_rate(t));
        m
    };
    let routes: Vec<Value> = rows
        .iter()
        .map(|((route, tier), t)| {
            let mut m = row_json(t);
            m.insert("route".into(), json!(route));
            m.insert("tier".into(), json!(tier));
            Value::Object(m)
        })
        .collect();
    let requests = global.get("requests").copied().unwrap_or(0);
    let mut totals_json = row_json(&totals);
    totals_json.insert("requests".into(), json!(requests));
    let redis_requests = global.get("redis_requests").copied().unwrap_or(0);
    let redis_commands = global.get("redis_commands").copied().unwrap_or(0);
    json!({
        "since_ms": since,
        "now_ms": now_ms,
        "routes": routes,
        "totals": Value::Object(totals_json),
        "background": {
            "refresh_failed": global.get("refresh_failed").copied().unwrap_or(0),
            "invalidate_failed": global.get("invalidate_failed").copied().unwrap_or(0),
        },
        "redis": {
            "requests": redis_requests,
            "commands": redis_commands,
            "requests_per_request": ratio(redis_requests, requests),
            "commands_per_request": ratio(redis_commands, requests),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drained_counts_become_one_hincrby_each_plus_start_and_expiry() {
        let mut s = Stats::default();
        s.add("config", "ANON", "hit", 3);
        s.add("config", "ANON", "allowed", 3);
        s.request();
        let counts = s.drain(1000);
        assert!(s.pending().is_empty());
        let cmds = flush_commands(&Keys::default(), &counts, 1000);
        assert_eq!(cmds.len(), 3 + 2);
        assert_eq!(cmds[3].name(), "HSETNX");
        assert_eq!(cmds[4].name(), "PEXPIRE");
    }

    #[test]
    fn report_sums_stored_and_local_and_computes_rates() {
        let mut stored = BTreeMap::new();
        stored.insert("config|ANON|hit".to_string(), 9);
        stored.insert("config|ANON|miss".to_string(), 1);
        stored.insert("_|_|requests".to_string(), 10);
        stored.insert("_|_|redis_requests".to_string(), 8);
        stored.insert("since_ms".to_string(), 5);
        let mut local = BTreeMap::new();
        local.insert("config|ANON|allowed".to_string(), 10);
        local.insert("chat|PRO|denied".to_string(), 2);
        let r = report(&stored, &local, 100);
        assert_eq!(r["since_ms"], 5);
        assert_eq!(r["totals"]["hit"], 9);
        assert_eq!(r["totals"]["denied"], 2);
        assert_eq!(r["totals"]["hit_rate"], 0.9);
        assert_eq!(r["redis"]["requests_per_request"], 0.8);
        let rows = r["routes"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["route"], "config");
        assert_eq!(rows[1]["allowed"], 10);
    }

    #[test]
    fn background_failures_are_counted_and_reported() {
        let mut s = Stats::default();
        s.background_failed(BackgroundWork::Refresh);
        s.background_failed(BackgroundWork::Refresh);
        s.background_failed(BackgroundWork::Invalidate);
        let r = report(&BTreeMap::new(), s.pending(), 1);
        assert_eq!(r["background"]["refresh_failed"], 2);
        assert_eq!(r["background"]["invalidate_failed"], 1);
        assert_eq!(flush_commands(&Keys::default(), s.pending(), 1).len(), 2 + 2);
    }

    #[test]
    fn a_failed_flush_loses_nothing() {
        let mut s = Stats::default();
        s.add("chat", "BASIC", "allowed", 2);
        let drained = s.drain(1);
        s.add("chat", "BASIC", "allowed", 1);
        s.restore(drained);
        assert_eq!(s.pending().get("chat|BASIC|allowed"), Some(&3));
    }

    #[test]
    fn malformed_stored_pairs_are_skipped() {
        let reply = Reply::Array(vec![
            Reply::Bulk(b"a|b|hit".to_vec()),
            Reply::Bulk(b"x".to_vec()),
            Reply::Bulk(b"c|d|miss".to_vec()),
            Reply::Bulk(b"4".to_vec()),
        ]);
        let m = parse_stored(&reply);
        assert_eq!(m.len(), 1);
        assert_eq!(m["c|d|miss"], 4);
    }
}
