//! Cache counters: hit/miss/stale/bypass per route, summed in the isolate and flushed to Redis now
//! and then in the background (a few `HINCRBY`s in one pipeline), never one command per request.

use std::collections::BTreeMap;

use crate::keys::Keys;
use crate::redis::Command;

use super::status::CacheStatus;

/// How long a stats bucket is kept in Redis, ms (eight days: a week of hourly buckets and a margin).
pub const STATS_RETENTION_MS: u64 = 8 * 24 * 60 * 60 * 1000;

/// Counts per route and cache status since the last drain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    counts: BTreeMap<(String, CacheStatus), u64>,
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request to `route` answered with `status`.
    pub fn record(&mut self, route: &str, status: CacheStatus) {
        let n = self.counts.entry((route.to_owned(), status)).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// The count for `route` and `status` since the last drain.
    pub fn count(&self, route: &str, status: CacheStatus) -> u64 {
        self.counts.get(&(route.to_owned(), status)).copied().unwrap_or(0)
    }

    /// Whether nothing was counted since the last drain.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Takes the counts as `(field, n)` pairs, field `cache:<route>:<status>` (`cache:config:hit`),
    /// and starts again from zero.
    pub fn drain(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.counts)
            .into_iter()
            .map(|((route, status), n)| (format!("cache:{route}:{}", status.stat_name()), n))
            .collect()
    }

    /// Drains the counts into the commands that add them to the stats hash of `bucket`.
    pub fn flush_commands(&mut self, keys: &Keys, bucket: &str) -> Vec<Command> {
        flush_commands(keys, bucket, &self.drain())
    }
}

/// `HINCRBY <stats key> field n` per count, then `PEXPIRE <stats key> STATS_RETENTION_MS`;
/// nothing when there is nothing to add.
pub fn flush_commands(keys: &Keys, bucket: &str, counts: &[(String, u64)]) -> Vec<Command> {
    if counts.is_empty() {
        return Vec::new();
    }
    let key = keys.stats(bucket);
    let mut cmds: Vec<Command> =
        counts.iter().map(|(field, n)| Command::new("HINCRBY").arg(key.as_str()).arg(field.as_str()).arg(*n)).collect();
    cmds.push(Command::new("PEXPIRE").arg(key).arg(STATS_RETENTION_MS));
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aggregate_per_route_and_status_and_drain_to_fields() {
        let mut s = Stats::new();
        for _ in 0..3 {
            s.record("config", CacheStatus::Hit);
        }
        s.record("config", CacheStatus::Miss);
        s.record("rag", CacheStatus::Stale);
        assert_eq!(s.count("config", CacheStatus::Hit), 3);
        let drained = s.drain();
        assert_eq!(
            drained,
            [
                ("cache:config:hit".to_owned(), 3),
                ("cache:config:miss".to_owned(), 1),
                ("cache:rag:stale".to_owned(), 1)
            ]
        );
        assert!(s.is_empty() && s.drain().is_empty());
    }

    #[test]
    fn a_flush_is_one_hincrby_per_field_and_an_expiry() {
        let mut s = Stats::new();
        s.record("config", CacheStatus::Bypass);
        s.record("config", CacheStatus::Bypass);
        let cmds = s.flush_commands(&Keys::default(), "2024112203");
        let json: Vec<String> = cmds.iter().map(|c| serde_json::to_string(c).unwrap()).collect();
        assert_eq!(
            json,
            [
                r#"["HINCRBY","factory:stats:v1:2024112203","cache:config:bypass",2]"#.to_owned(),
                format!(r#"["PEXPIRE","factory:stats:v1:2024112203",{STATS_RETENTION_MS}]"#),
            ]
        );
        assert!(s.flush_commands(&Keys::default(), "b").is_empty());
    }
}
