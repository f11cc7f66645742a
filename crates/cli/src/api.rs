//! The admin API's replies as the CLI reads them (see `docs/admin-api.md`). Every field is
//! defaulted so that a Worker one version ahead or behind still renders; `--json` prints the
//! reply itself, untouched.

use serde::Deserialize;
use serde_json::Value;

/// `GET /_tollgate/health`; without the token only `status` is present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// `redis`, `memory` or `degraded`.
    pub mode: Option<String>,
    pub redis: Option<RedisHealth>,
    pub policy: Option<PolicyInfo>,
    pub build: Option<BuildInfo>,
}

/// Redis as the Worker sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RedisHealth {
    pub configured: bool,
    pub reachable: bool,
    /// Round trip of the health probe, ms.
    pub latency_ms: Option<f64>,
    /// `closed`, `open` or `half_open`.
    pub breaker: Option<String>,
    /// Why Redis is not in use, when it is not.
    pub reason: Option<String>,
}

/// The policy in force.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PolicyInfo {
    pub version: Option<String>,
    pub tiers: Vec<String>,
    pub routes: Vec<String>,
}

/// The Worker's build.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BuildInfo {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// `GET /_tollgate/stats`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Start of counting, Unix ms.
    pub since_ms: Option<u64>,
    /// The Worker's clock when it answered, Unix ms.
    pub now_ms: Option<u64>,
    pub routes: Vec<RouteStats>,
    pub totals: Counters,
    pub redis: RedisStats,
}

/// Counters of one (route, tier).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteStats {
    /// Route name; `-` for requests that matched no route.
    pub route: String,
    pub tier: String,
    #[serde(flatten)]
    pub counters: Counters,
}

/// Request and cache counters (of one row, or the totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// All requests (totals only; rows derive it from allowed + denied).
    pub requests: Option<u64>,
    pub allowed: u64,
    pub denied: u64,
    pub hit: u64,
    pub miss: u64,
    pub stale: u64,
    pub bypass: u64,
    /// Requests a shadow limit would have refused (absent from older Workers).
    #[serde(default)]
    pub shadow_denied: u64,
    /// Quota warnings published: callers crossing a `warn_at` fraction.
    #[serde(default)]
    pub warned: u64,
    /// Served from cache (hit + stale) over cache lookups (hit + stale + miss); absent or null
    /// when there was no lookup.
    pub hit_rate: Option<f64>,
}

impl Counters {
    /// `requests`, or allowed + denied when the reply leaves it out.
    pub fn requests(&self) -> u64 {
        self.requests.unwrap_or(self.allowed.saturating_add(self.denied))
    }

    /// The reply's hit rate, or one computed from the counters; `None` with no cache lookups.
    pub fn hit_rate(&self) -> Option<f64> {
        self.hit_rate.or_else(|| hit_rate(self.hit, self.stale, self.miss))
    }
}

/// Share of cache lookups served from cache; `None` when there was none.
pub fn hit_rate(hit: u64, stale: u64, miss: u64) -> Option<f64> {
    let served = hit.saturating_add(stale);
    let lookups = served.saturating_add(miss);
    (lookups > 0).then(|| served as f64 / lookups as f64)
}

/// What the Worker asked of Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RedisStats {
    /// REST calls.
    pub requests: u64,
    /// Commands inside them (a pipeline counts each).
    pub commands: u64,
    pub requests_per_request: Option<f64>,
    pub commands_per_request: Option<f64>,
}

/// `POST /_tollgate/invalidate`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Invalidated {
    /// `key`, `pattern`, `tag` or `namespace`.
    pub kind: String,
    pub target: String,
    pub deleted: u64,
}

/// `POST /_tollgate/warm`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Warmed {
    pub count: u64,
    pub warmed: Vec<WarmedKey>,
}

/// One key's warming.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WarmedKey {
    pub route: String,
    pub key: String,
    /// `MISS` (filled now), `HIT` (already cached) or `ERROR`.
    pub status: String,
    pub error: Option<String>,
}

/// `POST /_tollgate/keys`: the only reply that carries the key itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreatedKey {
    pub id: String,
    pub key: String,
    pub tier: String,
    pub subject_hash: String,
    pub name: Option<String>,
    pub created_ms: Option<u64>,
}

/// `GET /_tollgate/keys`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// A registered API key, without the key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyInfo {
    pub id: String,
    pub tier: String,
    pub subject_hash: String,
    pub name: Option<String>,
    pub created_ms: Option<u64>,
}

/// `GET /_tollgate/limits/{subject}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SubjectLimits {
    pub subject_hash: String,
    pub tier: String,
    /// The stored override, as the Worker stores it; `null` without one.
    #[serde(rename = "override")]
    pub override_: Option<Value>,
    /// The Worker's clock when it answered, Unix ms.
    pub now_ms: Option<u64>,
    pub limits: Vec<LimitState>,
    /// Concurrency leases in flight, per route with a `concurrency` rule (absent from older Workers).
    #[serde(default)]
    pub leases: Vec<LeaseState>,
    /// Usage reservations in flight, per unit a route reserves (absent from older Workers).
    #[serde(default)]
    pub reservations: Vec<ReservationState>,
}

/// The usage reservations of one unit that the subject has in flight (charged, not yet settled).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReservationState {
    pub unit: String,
    /// Reservations in flight; `None` when Redis could not say.
    pub in_flight: Option<u64>,
    /// The units they hold; `None` when Redis could not say.
    pub units: Option<u64>,
}

/// The concurrency slots of one route that the subject holds now.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LeaseState {
    pub route: String,
    pub id: String,
    /// Leases not yet released whose deadline is ahead; `None` when Redis could not say.
    pub in_flight: Option<u64>,
    pub limit: u64,
}

/// One limit that applies to the subject, and where it stands.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LimitState {
    pub id: String,
    /// `tier` or `route:<name>`.
    pub scope: String,
    pub algorithm: String,
    pub limit: u64,
    pub window_ms: u64,
    pub remaining: Option<u64>,
    /// When the limit is fully available again, Unix ms.
    pub reset_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stats_read_the_documented_shape() {
        let stats: Stats = serde_json::from_value(json!({
            "since_ms": 1, "now_ms": 2,
            "routes": [{"route": "config", "tier": "ANON", "allowed": 120, "denied": 3, "hit": 100,
                        "miss": 5, "stale": 2, "bypass": 0, "hit_rate": 0.9}],
            "totals": {"requests": 123, "allowed": 120, "denied": 3, "hit": 100, "miss": 5, "stale": 2,
                       "bypass": 0, "hit_rate": 0.9},
            "redis": {"requests": 118, "commands": 190, "requests_per_request": 0.96, "commands_per_request": 1.54}
        }))
        .unwrap();
        assert_eq!(stats.routes[0].route, "config");
        assert_eq!(stats.routes[0].counters.allowed, 120);
        assert_eq!(stats.routes[0].counters.requests(), 123);
        assert_eq!(stats.totals.requests(), 123);
        assert_eq!(stats.redis.commands, 190);
    }

    #[test]
    fn missing_fields_take_defaults() {
        let health: Health = serde_json::from_value(json!({"status": "ok"})).unwrap();
        assert_eq!(health.status, "ok");
        assert!(health.redis.is_none());
        let stats: Stats = serde_json::from_value(json!({})).unwrap();
        assert!(stats.routes.is_empty());
        assert_eq!(stats.totals.hit_rate(), None);
    }

    #[test]
    fn hit_rate_counts_stale_as_served() {
        assert_eq!(hit_rate(0, 0, 0), None);
        assert_eq!(hit_rate(3, 1, 4), Some(0.5));
        let c = Counters { hit: 9, miss: 1, ..Counters::default() };
        assert_eq!(c.hit_rate(), Some(0.9));
    }
}
