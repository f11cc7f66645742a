//! The policy: tiers, routes, limits, cache classes and CORS, parsed once at the boundary into
//! types that cannot be wrong. Everything after parsing trusts these values.
//!
//! The raw form ([`raw`]) is what users write in `TOLLGATE_POLICY` (JSON, or a TOML table under
//! `[vars]`); [`Policy::parse_json`] turns it into a [`Policy`] or a [`PolicyError`] naming the
//! offending field. Anything left out takes the defaults of [`defaults`].

pub mod defaults;
mod error;
pub mod pattern;
pub mod raw;
mod validate;

use std::num::{NonZeroU32, NonZeroU64};

pub use error::PolicyError;
pub use pattern::{PathPattern, RouteMatch};

/// The whole validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// First segment of every Redis key (`factory` by default).
    pub namespace: String,
    /// All tiers, `ANON` included.
    pub tiers: Vec<Tier>,
    /// Tier of callers without credentials (`ANON`).
    pub anonymous_tier: String,
    /// Tier of authenticated callers whose credential names none (`BASIC`).
    pub default_tier: String,
    /// Routes, matched in order; the first match wins.
    pub routes: Vec<Route>,
    /// Cache TTL classes by name.
    pub cache_classes: Vec<CacheClass>,
    /// How Redis is called and when it is considered down.
    pub redis: RedisSettings,
    /// How callers are identified.
    pub identity: IdentitySettings,
    /// Cache-wide settings (in-isolate layer, locks, size limits).
    pub cache: CacheSettings,
    /// Cross-origin access for browser frontends.
    pub cors: CorsSettings,
    /// Requests streamed to the origin (routes that are not cached).
    pub proxy: ProxySettings,
}

impl Policy {
    /// Parses a `TOLLGATE_POLICY` JSON document; missing fields take the defaults.
    pub fn parse_json(text: &str) -> Result<Self, PolicyError> {
        validate::from_json(text)
    }

    /// Parses `TOLLGATE_POLICY` from a `wrangler.toml` document's `[vars]` table.
    pub fn parse_wrangler_toml(text: &str) -> Result<Self, PolicyError> {
        validate::from_wrangler_toml(text)
    }

    /// The tier with this name, if the policy has one.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// The cache class with this name, if the policy has one.
    pub fn cache_class(&self, name: &str) -> Option<&CacheClass> {
        self.cache_classes.iter().find(|c| c.name == name)
    }

    /// The first route matching `method` and `path`, with its captured parameters.
    pub fn route_for<'p>(&'p self, method: &str, path: &str) -> Option<(&'p Route, RouteMatch)> {
        self.routes.iter().find_map(|route| {
            if !route.methods.is_empty() && !route.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                return None;
            }
            route.pattern.matches(path).map(|m| (route, m))
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        defaults::policy()
    }
}

/// A subscription tier and the limits every caller in it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Upper-case name (`BASIC`, `PRO`, …).
    pub name: String,
    /// Limits applied to each caller of the tier (an hourly rate, a daily quota, …).
    pub limits: Vec<Limit>,
}

/// The algorithm a limit is enforced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Counter per aligned window; cheapest, allows a burst of 2× at a window edge.
    FixedWindow,
    /// Two aligned windows, the previous one weighted by its overlap; smooth and cheap.
    SlidingWindow,
    /// A bucket of `limit` tokens refilled continuously at `limit` per window.
    TokenBucket,
    /// Generic cell rate algorithm: one timestamp per key, burst of `limit`.
    Gcra,
}

impl Algorithm {
    /// Stable name used in the policy, headers and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::Gcra => "gcra",
        }
    }

    /// Parses the policy name of an algorithm.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "fixed_window" => Some(Algorithm::FixedWindow),
            "sliding_window" => Some(Algorithm::SlidingWindow),
            "token_bucket" => Some(Algorithm::TokenBucket),
            "gcra" => Some(Algorithm::Gcra),
            _ => None,
        }
    }
}

/// "`limit` units per `window_ms`", enforced with `algorithm`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Stable identifier, part of the Redis key and of `RateLimit-Policy` (`tier-basic-1h`, `route-chat`).
    pub id: String,
    /// How the limit is enforced.
    pub algorithm: Algorithm,
    /// Units allowed per window (for buckets and GCRA: the burst capacity).
    pub limit: NonZeroU32,
    /// The window, in milliseconds.
    pub window_ms: NonZeroU64,
    /// What the limit counts (`requests` unless the policy names another unit, like `tokens`).
    pub unit: Unit,
    /// Enforced, or only evaluated and reported (shadow).
    pub mode: LimitMode,
    /// Fractions of the limit at which a quota warning is published, ascending, distinct.
    pub warn_at: Vec<WarnAt>,
}

impl Limit {
    /// An enforced limit of requests without warnings: the common case.
    pub fn requests(id: impl Into<String>, algorithm: Algorithm, limit: NonZeroU32, window_ms: NonZeroU64) -> Self {
        Limit {
            id: id.into(),
            algorithm,
            limit,
            window_ms,
            unit: Unit::requests(),
            mode: LimitMode::Enforce,
            warn_at: Vec::new(),
        }
    }

    /// Whether the limit only reports what it would do.
    pub fn is_shadow(&self) -> bool {
        self.mode == LimitMode::Shadow
    }
}

/// The unit a limit counts: `requests`, or a name the origin reports usage in (`tokens`).
///
/// Names are lower case (`[a-z][a-z0-9_-]*`, at most 32), so they are safe in headers, stats and
/// the quota-warning messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit(String);

impl Unit {
    /// The name of the default unit.
    pub const REQUESTS: &'static str = "requests";

    /// The default unit: one per request (times the route's `cost`).
    pub fn requests() -> Self {
        Unit(Self::REQUESTS.to_owned())
    }

    /// A unit of this name, if it is a valid unit name.
    pub fn parse(name: &str) -> Option<Self> {
        let mut chars = name.chars();
        let ok = name.len() <= 32
            && matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        ok.then(|| Unit(name.to_owned()))
    }

    /// Whether this is the default unit.
    pub fn is_requests(&self) -> bool {
        self.0 == Self::REQUESTS
    }

    /// The unit's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a limit refuses requests or only says it would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LimitMode {
    /// Refuses requests over the limit (the default).
    #[default]
    Enforce,
    /// Evaluated and counted in its own keys exactly as if enforced, never refuses; responses and
    /// stats report when it would have.
    Shadow,
}

impl LimitMode {
    /// Stable name used in the policy, headers, stats and quota warnings.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMode::Enforce => "enforce",
            LimitMode::Shadow => "shadow",
        }
    }

    /// Parses the policy name of a mode.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "enforce" => Some(LimitMode::Enforce),
            "shadow" => Some(LimitMode::Shadow),
            _ => None,
        }
    }
}

/// A fraction of a limit, in (0, 1], held as parts per million so limits stay `Eq` and `Hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WarnAt(u32);

impl WarnAt {
    /// Parts per million of a whole limit.
    pub const WHOLE: u32 = 1_000_000;

    /// The fraction rounded to parts per million; `None` outside (0, 1] or when it rounds to 0.
    pub fn from_fraction(f: f64) -> Option<Self> {
        if !(f > 0.0 && f <= 1.0) {
            return None;
        }
        let ppm = (f * f64::from(Self::WHOLE)).round();
        // In range by the check above: 0 < ppm <= 1e6.
        let ppm = ppm as u32;
        (ppm >= 1).then_some(WarnAt(ppm))
    }

    /// From parts per million, 1 to 1 000 000.
    pub fn from_ppm(ppm: u32) -> Option<Self> {
        (1..=Self::WHOLE).contains(&ppm).then_some(WarnAt(ppm))
    }

    /// Parts per million (800 000 for 0.8).
    pub fn ppm(self) -> u32 {
        self.0
    }

    /// The fraction (0.8).
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / f64::from(Self::WHOLE)
    }

    /// Units of `limit` at which the warning fires: `⌈fraction × limit⌉`, at least 1.
    pub fn threshold(self, limit: u32) -> u64 {
        (u64::from(limit) * u64::from(self.0)).div_ceil(u64::from(Self::WHOLE)).max(1)
    }
}

impl Limit {
    /// The id of a limit that names none: owner kind, owner name and window (`tier-basic-1h`).
    pub fn derived_id(kind: &str, owner: &str, window_ms: u64) -> String {
        format!("{kind}-{}-{}", owner.to_ascii_lowercase(), raw::format_duration_ms(window_ms))
    }
}

/// What to do with a route's requests while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Let requests through unlimited.
    Open,
    /// Refuse them with `503`.
    Closed,
    /// Enforce the same limits in this isolate only (the default).
    #[default]
    Local,
}

impl FailurePolicy {
    /// Stable name used in the policy, headers and health.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Open => "open",
            FailurePolicy::Closed => "closed",
            FailurePolicy::Local => "local",
        }
    }
}

/// A route: where it matches, what it costs, its own limits and how it is cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Short name used in stats and problem bodies (`chat`, `config`).
    pub name: String,
    /// Path pattern (`/api/chat*`, `/api/config/{name}`).
    pub pattern: PathPattern,
    /// HTTP methods it applies to, upper case; empty = all.
    pub methods: Vec<String>,
    /// Limits of this route, checked together with the caller's tier limits.
    pub limits: Vec<Limit>,
    /// Units one request consumes from every limit that applies.
    pub cost: NonZeroU32,
    /// Behaviour while Redis is unreachable.
    pub on_redis_failure: FailurePolicy,
    /// Path at the origin, a template over the pattern's parameters (`/config/{name}`); `None` = same path.
    pub upstream_path: Option<String>,
    /// Cache-aside rule, when the route is cacheable.
    pub cache: Option<CacheRule>,
    /// Where the origin reports what a request used, and how much to reserve before forwarding.
    pub usage: Option<UsageRule>,
    /// At most this many requests of one caller in flight on the route.
    pub concurrency: Option<ConcurrencyRule>,
}

/// Reserve-then-settle for limits of one unit: `reserve` units are charged in the check, the
/// difference to what the origin reports is settled after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRule {
    /// The unit the origin reports; limits of this unit are charged on the route.
    pub unit: Unit,
    /// Where the report is.
    pub source: UsageSource,
    /// Units held before forwarding; an answer without a report settles at this.
    pub reserve: NonZeroU32,
}

/// Where an origin reports usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSource {
    /// A response header holding a whole number (`X-Usage-Tokens`), name in lower case.
    Header(String),
    /// An RFC 6901 JSON pointer (`/usage/total_tokens`) into a JSON answer, or into the last
    /// `data:` event carrying it of a `text/event-stream` answer.
    Json(String),
}

/// Concurrency slots of one caller on one route: leases with a deadline held in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyRule {
    /// Name in headers and problem bodies (`route-chat-concurrency`).
    pub id: String,
    /// Requests in flight at most.
    pub limit: NonZeroU32,
    /// How long a slot is held at most, ms; a lease its holder never released frees then.
    pub lease_ms: NonZeroU64,
    /// Enforced, or shadow (counted, never refuses).
    pub mode: LimitMode,
}

impl Route {
    /// The origin path of a request to `path` that matched this route as `matched`: the route's
    /// upstream template filled with the match, or the same path.
    pub fn upstream_path(&self, path: &str, matched: &RouteMatch) -> String {
        match &self.upstream_path {
            Some(template) => pattern::fill(template, matched),
            None => path.to_owned(),
        }
    }

    /// The origin path of a cache fill: the upstream template filled with the match, or the
    /// route's own pattern rebuilt from it (its literal text as the policy writes it, then the
    /// captured values). The key is made of the captured values, so the path a fill forwards
    /// must be a function of them alone: `/API/config/app` and `/api/config/app` share an entry,
    /// and both fill from the same origin path.
    pub fn fill_path(&self, matched: &RouteMatch) -> String {
        match &self.upstream_path {
            Some(template) => pattern::fill(template, matched),
            None => self.pattern.render(matched),
        }
    }
}

/// How a cacheable route builds its key and stores its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRule {
    /// Name of the TTL class (must exist in [`Policy::cache_classes`]).
    pub class: String,
    /// What identifies an entry.
    pub key: CacheKeySource,
    /// Shared by all callers, or private to each.
    pub scope: CacheScope,
    /// Tags attached to every entry of the route, for invalidation by tag.
    pub tags: Vec<String>,
    /// Keys (the route's path parameters joined by `/`, e.g. `app`) filled by warming.
    pub warm: Vec<String>,
    /// Methods whose 2xx answer to a path of this route invalidates its entry (upper case;
    /// `PUT`, `PATCH`, `DELETE`, `POST` by default; empty: no write invalidates).
    pub invalidate_on: Vec<String>,
}

/// What identifies a cache entry of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKeySource {
    /// The request path (after the route prefix) and sorted query.
    Path,
    /// SHA-256 of the normalized JSON body (key order and whitespace do not matter).
    JsonBody,
}

/// Who may see a cache entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// One entry for all callers.
    Global,
    /// One entry per caller; the key includes the caller's hash.
    Caller,
}

/// A TTL class: how long entries stay fresh, and how long a stale copy may still be served.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheClass {
    /// Upper-case name (`STATIC_CONFIG`).
    pub name: String,
    /// Freshness lifetime before jitter, in milliseconds (never zero, never infinite).
    pub ttl_ms: NonZeroU64,
    /// Relative jitter applied to the TTL, in `[0, 0.5]` (0.1 = ±10%).
    pub jitter: f64,
    /// How long past freshness a stale copy may be served (revalidation or origin failure), ms.
    pub stale_ms: u64,
    /// `Cache-Control: max-age` given to browsers, seconds.
    pub browser_max_age_s: u32,
}

/// Redis call budget and circuit breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    /// A fixed timeout of one REST call, ms; `None` (the default) derives each call's budget from
    /// the round-trip times this isolate observes, between the floor and the ceiling.
    pub timeout_ms: Option<NonZeroU32>,
    /// The adaptive budget never goes below this, ms.
    pub budget_floor_ms: NonZeroU32,
    /// The adaptive budget never goes above this, ms: the longest a call waits for a Redis that
    /// stopped answering.
    pub budget_ceiling_ms: NonZeroU32,
    /// Failures within the breaker's window needed before it may open.
    pub breaker_failures: NonZeroU32,
    /// Share of failed calls within the window that opens the breaker, in (0, 1].
    pub breaker_failure_rate: f64,
    /// How far back call outcomes count for the breaker, ms.
    pub breaker_window_ms: NonZeroU32,
    /// How long the breaker stays open before one probe, ms.
    pub breaker_cooldown_ms: NonZeroU32,
}

/// How callers are identified.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentitySettings {
    /// Path of the JWT claim holding the tier (`app_metadata.tier` → `["app_metadata", "tier"]`).
    pub tier_claim: Vec<String>,
    /// Leeway for `exp` / `nbf`, seconds.
    pub jwt_leeway_s: u32,
    /// How long an API-key lookup is cached in the isolate, ms.
    pub api_key_cache_ms: u32,
    /// IPv6 callers are grouped by this prefix length (64).
    pub ipv6_prefix: u8,
    /// Accepted `iss` values; empty: not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values, one of which the token must carry; empty: not checked.
    pub audiences: Vec<String>,
    /// Path of the claim naming the user (`sub` → `["sub"]`).
    pub subject_claim: Vec<String>,
    /// `role` values that make a validly signed token the anonymous caller (Supabase's anon key).
    pub anonymous_roles: Vec<String>,
    /// Cookie read for the token when no `Authorization` header is present.
    pub token_cookie: Option<String>,
    /// Shortest time between two fetches of one key set, ms.
    pub jwks_refetch_interval_ms: u32,
}

/// Cache-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Maximum age of an entry in the in-isolate layer, ms (the documented staleness bound).
    pub isolate_ttl_ms: u32,
    /// Entries kept in the in-isolate layer.
    pub isolate_capacity: u32,
    /// Bytes of bodies the in-isolate layer holds at most (an isolate has 128 MB in all).
    pub isolate_max_bytes: u32,
    /// Bodies larger than this are never cached, bytes.
    pub max_body_bytes: u32,
    /// Bodies at least this large are stored compressed, bytes.
    pub compress_min_bytes: u32,
    /// Lifetime of the fill lock in Redis, ms.
    pub lock_ttl_ms: NonZeroU32,
    /// How long a caller waits for another's fill before fetching itself, ms.
    pub lock_wait_ms: u32,
    /// Timeout of one origin fetch for a cacheable route, ms.
    pub origin_timeout_ms: NonZeroU32,
    /// XFetch β: 0 disables probabilistic early refresh; 1 is the usual setting.
    pub early_refresh_beta: f64,
}

/// Requests streamed to the origin.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// How long the origin may take to send its response headers, ms (then `504`).
    pub timeout_ms: NonZeroU32,
}

/// Cross-origin access.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsSettings {
    /// Allowed origins; `*` allows any. Empty: no CORS headers.
    pub allow_origins: Vec<String>,
    /// Preflight cache lifetime, seconds.
    pub max_age_s: u32,
}

/// Validates limits given outside the policy (an admin override), as the policy's own limits are.
pub fn override_limits(raw: &[raw::RawLimit]) -> Result<Vec<Limit>, PolicyError> {
    validate::override_limits(raw)
}
