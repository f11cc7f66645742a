//! The built-in policy (docs/design.md, "Default policy"), used for everything `TOLLGATE_POLICY` leaves out.
//!
//! Requests that match no route are still limited by the caller's tier; that needs no route here.

use std::num::{NonZeroU32, NonZeroU64};

use super::pattern::PathPattern;
use super::{
    Algorithm, CacheClass, CacheKeySource, CacheRule, CacheScope, CacheSettings, CorsSettings, FailurePolicy,
    IdentitySettings, Limit, Policy, ProxySettings, RedisSettings, Route, Tier,
};

/// Default Redis key namespace.
pub const NAMESPACE: &str = "factory";
/// Default tier of callers without credentials.
pub const ANONYMOUS_TIER: &str = "ANON";
/// Default tier of authenticated callers whose credential names no tier.
pub const DEFAULT_TIER: &str = "BASIC";
/// Default TTL jitter of a cache class (±10%).
pub const JITTER: f64 = 0.1;

/// Algorithm of limits that name none.
///
/// Sliding window everywhere: it approximates a rolling window with two counters (as cheap as a
/// fixed window in Redis), avoids the fixed window's 2× burst at each window edge — which at an
/// hourly tier limit would be a 200-request burst — and, unlike a bucket or GCRA, its "remaining"
/// reads the way the `X-RateLimit-*` headers are usually understood. One default for tiers and
/// routes alike means nobody has to remember which is which.
pub const ALGORITHM: Algorithm = Algorithm::SlidingWindow;

/// Anonymous callers get 30 requests per hour per IP (IPv6: per /64).
///
/// Below `BASIC` so that signing up is worth it, high enough for a visitor browsing a few pages.
/// Callers behind one NAT share it; deployments with many such users should raise it.
const ANON_PER_HOUR: u32 = 30;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// A non-zero `u32`, checked when the constant is built.
const fn nz32(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(v) => v,
        None => panic!("default is zero"),
    }
}

/// A non-zero `u64`, checked when the constant is built.
const fn nz64(n: u64) -> NonZeroU64 {
    match NonZeroU64::new(n) {
        Some(v) => v,
        None => panic!("default is zero"),
    }
}

const ONE: NonZeroU32 = nz32(1);
const N5: NonZeroU32 = nz32(5);
const N20: NonZeroU32 = nz32(20);
const N30: NonZeroU32 = nz32(30);
const N100: NonZeroU32 = nz32(100);
const N1000: NonZeroU32 = nz32(1000);
const ANON_LIMIT: NonZeroU32 = nz32(ANON_PER_HOUR);
const W_MINUTE: NonZeroU64 = nz64(MINUTE_MS);
const W_15_MINUTES: NonZeroU64 = nz64(15 * MINUTE_MS);
const W_HOUR: NonZeroU64 = nz64(HOUR_MS);
const TTL_5_MINUTES: NonZeroU64 = nz64(5 * MINUTE_MS);
const TTL_HOUR: NonZeroU64 = nz64(HOUR_MS);
const TTL_DAY: NonZeroU64 = nz64(DAY_MS);
const BUDGET_FLOOR_MS: NonZeroU32 = nz32(500);
const BUDGET_CEILING_MS: NonZeroU32 = nz32(5_000);
const BREAKER_WINDOW_MS: NonZeroU32 = nz32(10_000);
const BREAKER_COOLDOWN_MS: NonZeroU32 = nz32(5_000);
const LOCK_TTL_MS: NonZeroU32 = nz32(5_000);
const ORIGIN_TIMEOUT_MS: NonZeroU32 = nz32(5_000);
/// How long a streamed origin may take to send its headers: longer than a cache fill's budget,
/// since proxied routes include slow ones (chat, uploads).
const PROXY_TIMEOUT_MS: NonZeroU32 = nz32(30_000);
/// Bytes of bodies the in-isolate cache layer holds: an eighth of an isolate's 128 MB.
pub const ISOLATE_MAX_BYTES: u32 = 16 * 1024 * 1024;

/// The default policy: the documented tiers, route limits, cache classes and cacheable routes.
pub fn policy() -> Policy {
    Policy {
        namespace: NAMESPACE.to_owned(),
        tiers: vec![
            tier(ANONYMOUS_TIER, ANON_LIMIT, W_HOUR),
            tier(DEFAULT_TIER, N100, W_HOUR),
            tier("PRO", N1000, W_HOUR),
        ],
        anonymous_tier: ANONYMOUS_TIER.to_owned(),
        default_tier: DEFAULT_TIER.to_owned(),
        routes: routes(),
        cache_classes: cache_classes(),
        redis: RedisSettings {
            timeout_ms: None,
            budget_floor_ms: BUDGET_FLOOR_MS,
            budget_ceiling_ms: BUDGET_CEILING_MS,
            breaker_failures: N5,
            breaker_failure_rate: 0.5,
            breaker_window_ms: BREAKER_WINDOW_MS,
            breaker_cooldown_ms: BREAKER_COOLDOWN_MS,
        },
        identity: IdentitySettings {
            tier_claim: vec!["app_metadata".to_owned(), "tier".to_owned()],
            jwt_leeway_s: 30,
            api_key_cache_ms: 30_000,
            ipv6_prefix: 64,
            issuers: Vec::new(),
            audiences: Vec::new(),
            subject_claim: vec!["sub".to_owned()],
            anonymous_roles: vec!["anon".to_owned()],
            token_cookie: None,
            jwks_refetch_interval_ms: 30_000,
        },
        cache: CacheSettings {
            isolate_ttl_ms: 2_000,
            isolate_capacity: 256,
            isolate_max_bytes: ISOLATE_MAX_BYTES,
            max_body_bytes: 1024 * 1024,
            compress_min_bytes: 1024,
            lock_ttl_ms: LOCK_TTL_MS,
            lock_wait_ms: 2_000,
            origin_timeout_ms: ORIGIN_TIMEOUT_MS,
            early_refresh_beta: 1.0,
        },
        cors: CorsSettings { allow_origins: vec!["*".to_owned()], max_age_s: 600 },
        proxy: ProxySettings { timeout_ms: PROXY_TIMEOUT_MS },
    }
}

/// The default cache classes: `SESSION` 1 h, `FREQUENT_DATA` 5 min, `STATIC_CONFIG` 24 h.
///
/// Stale windows: session data is per user and may have changed meaning (no stale serving);
/// frequent data may be served up to one TTL late while it is refreshed or the origin is down;
/// static configuration up to a day. Only static configuration is worth a browser cache minute.
pub fn cache_classes() -> Vec<CacheClass> {
    vec![
        CacheClass { name: "SESSION".to_owned(), ttl_ms: TTL_HOUR, jitter: JITTER, stale_ms: 0, browser_max_age_s: 0 },
        CacheClass {
            name: "FREQUENT_DATA".to_owned(),
            ttl_ms: TTL_5_MINUTES,
            jitter: JITTER,
            stale_ms: 5 * MINUTE_MS,
            browser_max_age_s: 0,
        },
        CacheClass {
            name: "STATIC_CONFIG".to_owned(),
            ttl_ms: TTL_DAY,
            jitter: JITTER,
            stale_ms: DAY_MS,
            browser_max_age_s: 60,
        },
    ]
}

/// The default routes: four limited prefixes, then the two cacheable routes.
pub fn routes() -> Vec<Route> {
    vec![
        limited("chat", "/api/chat*", N20, W_MINUTE),
        limited("auth", "/api/auth*", N5, W_15_MINUTES),
        limited("upload", "/api/upload*", N5, W_MINUTE),
        limited("search", "/api/search*", N30, W_MINUTE),
        Route {
            name: "config".to_owned(),
            pattern: pattern("/api/config/{name}"),
            methods: vec!["GET".to_owned()],
            limits: Vec::new(),
            cost: ONE,
            on_redis_failure: FailurePolicy::Local,
            upstream_path: Some("/config/{name}".to_owned()),
            cache: Some(CacheRule {
                class: "STATIC_CONFIG".to_owned(),
                key: CacheKeySource::Path,
                scope: CacheScope::Global,
                tags: vec!["config".to_owned()],
                warm: vec!["app".to_owned()],
                invalidate_on: write_methods(),
            }),
            usage: None,
            concurrency: None,
        },
        Route {
            name: "rag".to_owned(),
            pattern: pattern("/api/rag/context"),
            methods: vec!["POST".to_owned()],
            limits: Vec::new(),
            cost: ONE,
            on_redis_failure: FailurePolicy::Local,
            upstream_path: Some("/rag/context".to_owned()),
            cache: Some(CacheRule {
                class: "FREQUENT_DATA".to_owned(),
                key: CacheKeySource::JsonBody,
                scope: CacheScope::Global,
                tags: Vec::new(),
                warm: Vec::new(),
                invalidate_on: write_methods(),
            }),
            usage: None,
            concurrency: None,
        },
    ]
}

/// The methods whose 2xx answer invalidates a cached route's entry, unless the route says
/// otherwise.
pub fn write_methods() -> Vec<String> {
    ["PUT", "PATCH", "DELETE", "POST"].iter().map(|m| (*m).to_owned()).collect()
}

/// A tier with one limit, its id derived as for user-written tiers (`tier-basic-1h`).
fn tier(name: &str, limit: NonZeroU32, window_ms: NonZeroU64) -> Tier {
    Tier {
        name: name.to_owned(),
        limits: vec![Limit::requests(Limit::derived_id("tier", name, window_ms.get()), ALGORITHM, limit, window_ms)],
    }
}

/// An uncached route with one limit (`route-chat-1m`), applying to every method.
fn limited(name: &str, path: &str, limit: NonZeroU32, window_ms: NonZeroU64) -> Route {
    Route {
        name: name.to_owned(),
        pattern: pattern(path),
        methods: Vec::new(),
        limits: vec![Limit::requests(Limit::derived_id("route", name, window_ms.get()), ALGORITHM, limit, window_ms)],
        cost: ONE,
        on_redis_failure: FailurePolicy::Local,
        upstream_path: None,
        cache: None,
        usage: None,
        concurrency: None,
    }
}

/// A built-in pattern: a fixed string no request or config can influence, parsed by every test.
fn pattern(source: &str) -> PathPattern {
    PathPattern::parse(source).expect("built-in route patterns are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_of(limits: &[Limit]) -> (u32, u64, &str) {
        assert_eq!(limits.len(), 1);
        (limits[0].limit.get(), limits[0].window_ms.get(), limits[0].id.as_str())
    }

    #[test]
    fn tiers_are_those_of_design_md() {
        let p = policy();
        assert_eq!(p.namespace, "factory");
        assert_eq!((p.anonymous_tier.as_str(), p.default_tier.as_str()), ("ANON", "BASIC"));
        let names: Vec<&str> = p.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ANON", "BASIC", "PRO"]);
        assert_eq!(limit_of(&p.tier("ANON").unwrap().limits), (30, HOUR_MS, "tier-anon-1h"));
        assert_eq!(limit_of(&p.tier("BASIC").unwrap().limits), (100, HOUR_MS, "tier-basic-1h"));
        assert_eq!(limit_of(&p.tier("PRO").unwrap().limits), (1000, HOUR_MS, "tier-pro-1h"));
        assert!(p.tiers.iter().flat_map(|t| &t.limits).all(|l| l.algorithm == Algorithm::SlidingWindow));
    }

    #[test]
    fn route_limits_are_those_of_design_md() {
        let p = policy();
        let expect = [
            ("chat", "/api/chat*", 20, MINUTE_MS, "route-chat-1m"),
            ("auth", "/api/auth*", 5, 15 * MINUTE_MS, "route-auth-15m"),
            ("upload", "/api/upload*", 5, MINUTE_MS, "route-upload-1m"),
            ("search", "/api/search*", 30, MINUTE_MS, "route-search-1m"),
        ];
        for (name, path, limit, window, id) in expect {
            let r = p.routes.iter().find(|r| r.name == name).unwrap();
            assert_eq!(r.pattern.as_str(), path);
            assert_eq!(limit_of(&r.limits), (limit, window, id));
            assert!(r.methods.is_empty() && r.cache.is_none() && r.upstream_path.is_none());
            assert_eq!((r.cost.get(), r.on_redis_failure), (1, FailurePolicy::Local));
        }
        assert_eq!(p.route_for("POST", "/api/chat/completions").unwrap().0.name, "chat");
        assert_eq!(p.route_for("GET", "/api/auth").unwrap().0.name, "auth");
        assert!(p.route_for("GET", "/other").is_none());
    }

    #[test]
    fn cache_classes_are_those_of_design_md() {
        let p = policy();
        let ttl = |name: &str| p.cache_class(name).map(|c| (c.ttl_ms.get(), c.jitter));
        assert_eq!(ttl("SESSION"), Some((HOUR_MS, 0.1)));
        assert_eq!(ttl("FREQUENT_DATA"), Some((5 * MINUTE_MS, 0.1)));
        assert_eq!(ttl("STATIC_CONFIG"), Some((DAY_MS, 0.1)));
    }

    #[test]
    fn cacheable_routes_are_those_of_design_md() {
        let p = policy();
        let (config, m) = p.route_for("GET", "/api/config/app").unwrap();
        assert_eq!(config.name, "config");
        assert_eq!(m.get("name"), Some("app"));
        assert_eq!(config.upstream_path.as_deref(), Some("/config/{name}"));
        let rule = config.cache.as_ref().unwrap();
        assert_eq!(
            (rule.class.as_str(), rule.key, rule.scope),
            ("STATIC_CONFIG", CacheKeySource::Path, CacheScope::Global)
        );
        assert_eq!((rule.tags.as_slice(), rule.warm.as_slice()), (&["config".to_owned()][..], &["app".to_owned()][..]));
        assert!(p.route_for("POST", "/api/config/app").is_none());

        let (rag, _) = p.route_for("POST", "/api/rag/context").unwrap();
        assert_eq!(rag.upstream_path.as_deref(), Some("/rag/context"));
        let rule = rag.cache.as_ref().unwrap();
        assert_eq!(
            (rule.class.as_str(), rule.key, rule.scope),
            ("FREQUENT_DATA", CacheKeySource::JsonBody, CacheScope::Global)
        );
        assert!(p.route_for("GET", "/api/rag/context").is_none());
    }

    #[test]
    fn settings_are_those_of_the_brief() {
        let p = policy();
        assert_eq!(
            (
                p.redis.timeout_ms,
                p.redis.budget_floor_ms.get(),
                p.redis.budget_ceiling_ms.get(),
                p.redis.breaker_failures.get(),
                p.redis.breaker_window_ms.get(),
                p.redis.breaker_cooldown_ms.get()
            ),
            (None, 500, 5000, 5, 10_000, 5000)
        );
        assert_eq!(p.identity.tier_claim, ["app_metadata", "tier"]);
        assert_eq!((p.identity.jwt_leeway_s, p.identity.api_key_cache_ms, p.identity.ipv6_prefix), (30, 30_000, 64));
        let c = &p.cache;
        assert_eq!(
            (c.isolate_ttl_ms, c.isolate_capacity, c.max_body_bytes, c.compress_min_bytes),
            (2000, 256, 1 << 20, 1024)
        );
        assert_eq!(
            (c.lock_ttl_ms.get(), c.lock_wait_ms, c.origin_timeout_ms.get(), c.early_refresh_beta),
            (5000, 2000, 5000, 1.0)
        );
        assert_eq!((p.cors.allow_origins.as_slice(), p.cors.max_age_s), (&["*".to_owned()][..], 600));
        assert_eq!((c.isolate_max_bytes, p.proxy.timeout_ms.get()), (16 << 20, 30_000));
        assert_eq!(
            p.routes
                .iter()
                .find(|r| r.name == "config")
                .and_then(|r| r.cache.as_ref())
                .map(|c| c.invalidate_on.clone()),
            Some(write_methods())
        );
        assert_eq!(Policy::default(), p);
    }
}
