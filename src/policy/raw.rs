//! What users write in `TOLLGATE_POLICY`: every field optional, unknown fields refused so typos
//! surface as errors instead of silently taking a default.
//!
//! # The document
//!
//! A JSON object (in `wrangler.toml`, a TOML table under `[vars]`, which wrangler hands over as the
//! same object). Every field may be left out; left out means the built-in default of
//! [`super::defaults`]. A complete example, with every field:
//!
//! ```
//! # use tollgate::Policy;
//! # let policy = Policy::parse_json(r#"
//! {
//!   "namespace": "factory",
//!   "tiers": {
//!     "ANON":  { "limits": [ { "limit": 30, "window": "1h" } ] },
//!     "BASIC": { "limits": [ { "limit": 100, "window": "1h", "algorithm": "sliding_window" },
//!                            { "id": "daily", "limit": 1000, "window": "1d" } ] },
//!     "PRO":   { "limits": [ { "limit": 1000, "window": "1h" } ] }
//!   },
//!   "anonymous_tier": "ANON",
//!   "default_tier": "BASIC",
//!   "routes": [
//!     { "name": "chat", "path": "/api/chat*", "limits": [ { "limit": 20, "window": "1m" } ],
//!       "cost": 1, "on_redis_failure": "local" },
//!     { "name": "config", "path": "/api/config/{name}", "methods": ["GET"],
//!       "upstream": "/config/{name}",
//!       "cache": { "class": "STATIC_CONFIG", "key": "path", "scope": "global",
//!                  "tags": ["config"], "warm": ["app"] } }
//!   ],
//!   "cache_classes": {
//!     "STATIC_CONFIG": { "ttl": "24h", "jitter": 0.1, "stale": "24h", "browser_max_age": "60s" }
//!   },
//!   "redis": { "budget_floor": "500ms", "budget_ceiling": "5s", "breaker_failures": 5,
//!              "breaker_failure_rate": 0.5, "breaker_window": "10s", "breaker_cooldown": "5s" },
//!   "identity": { "tier_claim": "app_metadata.tier", "jwt_leeway": "30s", "api_key_cache": "30s",
//!                 "ipv6_prefix": 64, "issuers": ["https://example.supabase.co/auth/v1"],
//!                 "audiences": ["authenticated"], "subject_claim": "sub",
//!                 "anonymous_roles": ["anon"], "token_cookie": "sb-example-auth-token",
//!                 "jwks_refetch_interval": "30s" },
//!   "cache": { "isolate_ttl": "2s", "isolate_capacity": 256, "max_body_bytes": 1048576,
//!              "compress_min_bytes": 1024, "lock_ttl": "5s", "lock_wait": "2s",
//!              "origin_timeout": "5s", "early_refresh_beta": 1.0 },
//!   "cors": { "allow_origins": ["*"], "max_age": "10m" }
//! }
//! # "#).unwrap();
//! # assert_eq!(policy.tier("BASIC").unwrap().limits[1].id, "daily");
//! ```
//!
//! # How it combines with the defaults
//!
//! - `tiers` and `routes`, when given, **replace** the default tiers and routes as a whole (an
//!   empty `routes` list means no route rules; tier limits still apply to every request). The
//!   tiers named by `anonymous_tier` and `default_tier` (`ANON`, `BASIC` unless set) must exist.
//! - `cache_classes` **merge** over the defaults (`SESSION`, `FREQUENT_DATA`, `STATIC_CONFIG`):
//!   a class with a default name overrides only the fields it gives; a new class needs a `ttl`.
//! - `redis`, `identity`, `cache`, `cors`: each field given overrides that one default.
//!
//! # Values
//!
//! - **Durations** are strings of a whole number and a unit: `"150ms"`, `"30s"`, `"15m"`, `"1h"`,
//!   `"1d"`. Plain numbers are refused, so `"ttl": 60` cannot mean seconds to one reader and
//!   milliseconds to another.
//! - **Sizes** (`max_body_bytes`, `compress_min_bytes`) are plain integers of bytes.
//! - **Names**: tiers and cache classes are upper case (`[A-Z][A-Z0-9_]*`); routes are lower case
//!   (`[a-z][a-z0-9_-]*`); limit ids are lower case (`[a-z][a-z0-9_.-]*`) because they appear in
//!   Redis keys and in the `RateLimit-Policy` header.
//! - **Limits**: `limit` units per `window` with `algorithm` (`sliding_window` by default;
//!   `fixed_window`, `token_bucket`, `gcra`). Without an `id`, one is derived from the owner and
//!   the window: `tier-basic-1h`, `route-chat-1m`. Limits with the same id share their state in
//!   Redis (a quota shared by several routes, or kept across a tier change), so they must have the
//!   same window and algorithm.
//! - **Routes** are matched in order, the first match wins; see [`super::pattern`] for the path
//!   syntax. `methods` left out means every method. `upstream` is the path at the origin, a
//!   template over the pattern's parameters. `on_redis_failure` is `local` (enforce in this isolate
//!   only; the default), `open` (let through) or `closed` (refuse with 503).
//! - **Cache rules**: `class` names a cache class; `key` is `path` (routes with `methods` `GET` /
//!   `HEAD` only) or `json_body` (routes whose methods carry a body, e.g. `POST`); `scope` is
//!   `global` (one entry for everyone; the default) or `caller`; `warm` lists parameter values
//!   (joined by `/` when the pattern has several) that warming fills.
//! - **Units, shadow mode, warnings** on a limit: `unit` (`requests` by default; any lower-case
//!   name, like `tokens`, for usage the origin reports), `mode` (`enforce` by default, or
//!   `shadow`: counted, never refuses), `warn_at` (fractions in (0, 1] at which a quota warning is
//!   published on `system:quota_warning`). Limits of a unit other than `requests` use a window
//!   algorithm (`sliding_window` or `fixed_window`), the ones whose usage can be settled exactly.
//! - **Usage** on a route: `{"unit": "tokens", "from": "header", "name": "X-Usage-Tokens",
//!   "reserve": 300}` or `{"unit": "tokens", "from": "json", "pointer": "/usage/total_tokens",
//!   "reserve": 300}`; the route charges limits of that unit `reserve` in the check and settles
//!   the difference after the answer. **Concurrency**: `{"limit": 2, "lease": "2m"}`, slots per
//!   caller held at most `lease`. A route's `mode: "shadow"` applies to all its limits and its
//!   concurrency.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The whole `TOLLGATE_POLICY` document; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a policy object")]
pub struct RawPolicy {
    /// First segment of every Redis key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Tiers by name; replaces the default tiers when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiers: Option<BTreeMap<String, RawTier>>,
    /// Tier of callers without credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_tier: Option<String>,
    /// Tier of authenticated callers whose credential names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_tier: Option<String>,
    /// Routes in match order; replaces the default routes when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RawRoute>>,
    /// Cache classes by name; merged over the default classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_classes: Option<BTreeMap<String, RawCacheClass>>,
    /// Redis call budget and circuit breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RawRedis>,
    /// How callers are identified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<RawIdentity>,
    /// Cache-wide settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<RawCache>,
    /// Cross-origin access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<RawCors>,
    /// Requests streamed to the origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<RawProxy>,
}

/// Requests streamed to the origin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a proxy settings object")]
pub struct RawProxy {
    /// How long the origin may take to send its response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<RawDuration>,
}

/// A tier: the limits each of its callers gets (an empty list means unlimited).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a tier object with \"limits\"")]
pub struct RawTier {
    /// The tier's limits.
    pub limits: Vec<RawLimit>,
}

/// One limit: `limit` units per `window`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a limit object with \"limit\" and \"window\"")]
pub struct RawLimit {
    /// Stable id (Redis key, `RateLimit-Policy`); derived from owner and window when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Units allowed per window.
    pub limit: u64,
    /// The window.
    pub window: RawDuration,
    /// `sliding_window` (default), `fixed_window`, `token_bucket` or `gcra`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// What the limit counts: `requests` (default) or a unit the origin reports (`tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `enforce` (default) or `shadow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Fractions in (0, 1] at which a quota warning is published (`[0.8, 1.0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<Vec<f64>>,
}

/// A route rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a route object with \"name\" and \"path\"")]
pub struct RawRoute {
    /// Short lower-case name (stats, problem bodies, cache namespace).
    pub name: String,
    /// Path pattern.
    pub path: String,
    /// HTTP methods; left out = all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// The route's own limits, on top of the caller's tier limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<RawLimit>>,
    /// Units one request consumes (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
    /// `local` (default), `open` or `closed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_redis_failure: Option<String>,
    /// Path at the origin, a template over the pattern's parameters; left out = same path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Cache-aside rule; left out = not cached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<RawCacheRule>,
    /// Reserve-then-settle of a unit the origin reports; left out = the route reports no usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<RawUsage>,
    /// Concurrency slots per caller; left out = unlimited in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<RawConcurrency>,
    /// `shadow` applies to all the route's limits and its concurrency; `enforce` (default) leaves
    /// each limit's own mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// Where the origin reports usage, and how much to hold before forwarding.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a usage object with \"unit\", \"from\" and \"reserve\"")]
pub struct RawUsage {
    /// The unit reported (`tokens`); limits of this unit are charged on the route.
    pub unit: String,
    /// `header` or `json`.
    pub from: String,
    /// The response header (with `from: header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The JSON pointer (with `from: json`), e.g. `/usage/total_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Units reserved by the check, settled against the report after the answer.
    pub reserve: u64,
}

/// Concurrency slots of one caller on a route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a concurrency object with \"limit\" and \"lease\"")]
pub struct RawConcurrency {
    /// Requests in flight at most.
    pub limit: u64,
    /// How long a slot is held at most (a duration, like `"2m"`).
    pub lease: RawDuration,
}

/// How a route is cached.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a cache rule object with \"class\"")]
pub struct RawCacheRule {
    /// Name of a cache class.
    pub class: String,
    /// `path` (default) or `json_body`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `global` (default) or `caller`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Tags for invalidation by tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Parameter values filled by warming.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<Vec<String>>,
    /// Methods whose 2xx answer to a path of the route invalidates its entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidate_on: Option<Vec<String>>,
}

/// A cache TTL class; fields left out keep the default class's values (or the generic ones).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a cache class object")]
pub struct RawCacheClass {
    /// Freshness lifetime before jitter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<RawDuration>,
    /// Relative jitter in `[0, 0.5]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// How long a stale copy may still be served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<RawDuration>,
    /// Browser `max-age` (whole seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_max_age: Option<RawDuration>,
}

/// Redis call budget and circuit breaker.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a redis settings object")]
pub struct RawRedis {
    /// A fixed timeout of one REST call (unset: adaptive, from observed round trips).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<RawDuration>,
    /// Lowest adaptive budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_floor: Option<RawDuration>,
    /// Highest adaptive budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ceiling: Option<RawDuration>,
    /// Failures within the window needed before the breaker may open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u64>,
    /// Share of failed calls within the window that opens the breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_failure_rate: Option<f64>,
    /// How far back call outcomes count for the breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_window: Option<RawDuration>,
    /// How long the breaker stays open before a probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown: Option<RawDuration>,
}

/// How callers are identified.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an identity settings object")]
pub struct RawIdentity {
    /// Dotted path of the JWT claim holding the tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier_claim: Option<String>,
    /// Leeway for `exp` / `nbf` (whole seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_leeway: Option<RawDuration>,
    /// How long an API-key lookup is cached in the isolate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_cache: Option<RawDuration>,
    /// IPv6 prefix length anonymous callers are grouped by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Option<u64>,
    /// Accepted `iss` values of a JWT; empty or left out: not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuers: Option<Vec<String>>,
    /// Accepted `aud` values (one must match); empty or left out: not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// Dotted path of the JWT claim naming the user (`sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_claim: Option<String>,
    /// `role` claim values that make a validly signed JWT the anonymous caller (`["anon"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_roles: Option<Vec<String>>,
    /// Cookie holding the token when no `Authorization` header is sent (Supabase SSR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_cookie: Option<String>,
    /// Shortest time between two fetches of a key set (an unknown `kid` refetches at most this often).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_refetch_interval: Option<RawDuration>,
}

/// Cache-wide settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a cache settings object")]
pub struct RawCache {
    /// Maximum age of an entry in the in-isolate layer (`"0ms"` disables the layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolate_ttl: Option<RawDuration>,
    /// Entries kept in the in-isolate layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolate_capacity: Option<u64>,
    /// Bytes of bodies the in-isolate layer holds at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolate_max_bytes: Option<u64>,
    /// Bodies larger than this are never cached, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Bodies at least this large are stored compressed, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress_min_bytes: Option<u64>,
    /// Lifetime of the fill lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_ttl: Option<RawDuration>,
    /// How long a caller waits for another's fill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_wait: Option<RawDuration>,
    /// Timeout of one origin fetch for a cacheable route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_timeout: Option<RawDuration>,
    /// XFetch β (0 disables early refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_refresh_beta: Option<f64>,
}

/// Cross-origin access.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a cors settings object")]
pub struct RawCors {
    /// Allowed origins (`["*"]`, or `scheme://host[:port]` each); empty disables CORS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    /// Preflight cache lifetime (whole seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<RawDuration>,
}

/// A duration as written in the policy (`"150ms"`, `"30s"`, `"15m"`, `"1h"`, `"1d"`), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDuration(pub u64);

/// What a duration must look like, for error messages.
pub const DURATION_SYNTAX: &str =
    "a duration string: a whole number and a unit, like \"150ms\", \"30s\", \"15m\", \"1h\" or \"1d\"";

/// Milliseconds per unit, longest first (so formatting picks the largest exact unit).
const UNITS: [(&str, u64); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses `"<digits><unit>"` (unit `ms`, `s`, `m`, `h` or `d`) into milliseconds; `None` for
/// anything else, including plain numbers and values beyond `u64` milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let factor = UNITS.iter().find(|(u, _)| *u == unit)?.1;
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// Writes milliseconds in the largest unit that divides them exactly (`3600000` → `"1h"`).
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let (unit, factor) = UNITS.iter().find(|(_, f)| ms.is_multiple_of(*f)).copied().unwrap_or(("ms", 1));
    format!("{}{unit}", ms / factor)
}

impl fmt::Display for RawDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration_ms(self.0))
    }
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_SYNTAX)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                parse_duration_ms(v)
                    .map(RawDuration)
                    .ok_or_else(|| E::custom(format!("invalid duration {v:?}: expected {DURATION_SYNTAX}")))
            }
        }

        d.deserialize_str(DurationVisitor)
    }
}

impl Serialize for RawDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration_ms(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration_ms("150ms"), Some(150));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("15m"), Some(900_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        for bad in ["", "30", "s", "1.5h", "-1s", "1 h", "1H", "1hr", "1h30m", "99999999999999999999d"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        assert_eq!(format_duration_ms(3_600_000), "1h");
        assert_eq!(format_duration_ms(900_000), "15m");
        assert_eq!(format_duration_ms(5_400_000), "90m");
        assert_eq!(format_duration_ms(86_400_000), "1d");
        assert_eq!(format_duration_ms(1_500), "1500ms");
        assert_eq!(format_duration_ms(0), "0s");
    }

    #[test]
    fn a_plain_number_is_not_a_duration() {
        let err = serde_json::from_str::<RawDuration>("60").unwrap_err().to_string();
        assert!(err.contains("expected a duration string"), "{err}");
        assert_eq!(serde_json::from_str::<RawDuration>("\"60s\"").unwrap(), RawDuration(60_000));
    }

    #[test]
    fn durations_round_trip_through_json() {
        let d = RawDuration(120_000);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"2m\"");
    }
}
