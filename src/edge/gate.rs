//! The gate: one request's path through Tollgate. Identify the caller, check every limit that
//! applies and read the cache in ONE Redis round trip, then answer 429, serve from cache, or
//! proxy to the origin. Plain values in and out, so it runs natively under test and in the Worker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::rc::Rc;

use crate::cache::{
    self, CacheAside, CacheDeps, CacheStatus, CacheTarget, IsolateState, LoadError, Origin, OriginRequest,
    OriginResponse, Payload, Served, Sleeper, WriteTarget,
};
use crate::clock::{Clock, Random};
use crate::identity::{self, api_key, Credential, Identity};
use crate::keys::Keys;
use crate::limiter::{
    check_script, parse_reply, rate_limit_headers, BlockCache, Breaker, Check, Decision, MemoryLimiter, Mode,
};
use crate::policy::raw::format_duration_ms;
use crate::policy::{CacheKeySource, CacheScope, FailurePolicy, Limit, Route, RouteMatch, Tier};
use crate::redis::{Client, Entry, RedisError, Transport};

use super::config::Config;
use super::cors;
use super::http::{EdgeRequest, EdgeResponse};
use super::problem::Problem;
use super::proxy::{self, Forwarded};
use super::stats::{self, Stats};

/// Work to run after the response is sent (`ctx.wait_until` in the Worker).
pub type Background = Pin<Box<dyn Future<Output = ()>>>;

/// How often an isolate flushes its counters to Redis, ms.
const STATS_FLUSH_MS: u64 = 10_000;

/// API-key lookups kept per isolate.
const KEY_CACHE_CAPACITY: usize = 4096;

/// What the Worker should do with a request.
pub enum Outcome {
    /// Send this response.
    Respond(EdgeResponse),
    /// Stream the request to the origin and its answer back (see [`ProxyPlan`]).
    Proxy(ProxyPlan),
}

/// A request the Worker streams to the origin.
pub struct ProxyPlan {
    /// Absolute origin URL.
    pub url: String,
    /// Method.
    pub method: String,
    /// Headers for the origin (hop-by-hop removed, caller identity added).
    pub request_headers: Vec<(String, String)>,
    /// The body when the gate read it; `None` streams the original body.
    pub body: Option<Vec<u8>>,
    /// Headers added to the origin's answer (rate limit, CORS, Server-Timing of Redis).
    pub response_headers: Vec<(String, String)>,
    /// Server-Timing entries measured before the proxy (`redis;dur=3`).
    server_timing: Vec<String>,
    /// Invalidation to run when the origin accepts a write to a cached resource.
    after_write: Option<Box<dyn FnOnce() -> Background>>,
}

impl ProxyPlan {
    /// Adds Tollgate's headers to the origin's answer (or to the error standing in for it).
    pub fn decorate(&self, resp: &mut EdgeResponse, origin_ms: u64) {
        for (name, value) in &self.response_headers {
            resp.set_header(name, value.clone());
        }
        let mut timing = self.server_timing.clone();
        timing.push(format!("origin;dur={origin_ms}"));
        resp.set_header("server-timing", timing.join(", "));
    }

    /// The background work due once the origin answered `status` (a 2xx write to a cached
    /// resource invalidates it).
    pub fn after_response(self, status: u16) -> Option<Background> {
        match self.after_write {
            Some(task) if (200..300).contains(&status) => Some(task()),
            _ => None,
        }
    }
}

/// A handled request: what to answer, and what to run afterwards.
pub struct Handled {
    /// The answer.
    pub outcome: Outcome,
    /// Background work (refreshes, invalidations, counter flushes).
    pub background: Vec<Background>,
}

impl Handled {
    fn respond(resp: EdgeResponse) -> Self {
        Self { outcome: Outcome::Respond(resp), background: Vec::new() }
    }
}

/// Where limits were decided, reported in `X-Tollgate-Mode` and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// In Redis, shared by every location.
    Redis,
    /// In this isolate: Redis is not configured.
    Memory,
    /// In this isolate: Redis failed and the route falls back locally.
    Local,
    /// Not at all: Redis failed and the route fails open.
    Open,
}

impl LimitMode {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMode::Redis => "redis",
            LimitMode::Memory => "memory",
            LimitMode::Local => "local",
            LimitMode::Open => "open",
        }
    }
}

/// The state an isolate keeps between requests. Every piece is a cache or a degraded-mode
/// fallback; nothing here is needed for correctness across locations.
pub struct Isolate {
    pub(crate) breaker: RefCell<Breaker>,
    pub(crate) blocks: RefCell<BlockCache>,
    pub(crate) memory: RefCell<MemoryLimiter>,
    pub(crate) key_cache: RefCell<api_key::KeyCache>,
    pub(crate) stats: RefCell<Stats>,
    /// Each caller's latest allowed decision, for the headers of hits served from isolate memory.
    pub(crate) last_seen: RefCell<HashMap<String, Decision>>,
    pub(crate) started_ms: u64,
}

/// Callers whose latest decision is kept for the headers of in-isolate hits.
const LAST_SEEN_CAPACITY: usize = 4096;

impl Isolate {
    /// Remembers a caller's latest decision (bounded: when full, the map starts over).
    fn remember(&self, subject_hash: &str, decision: &Decision) {
        let mut seen = self.last_seen.borrow_mut();
        if seen.len() >= LAST_SEEN_CAPACITY && !seen.contains_key(subject_hash) {
            seen.clear();
        }
        seen.insert(subject_hash.to_owned(), decision.clone());
    }
}

/// The gate of one isolate for one configuration.
pub struct Gate<T: Transport + 'static, O: Origin + 'static, S: Sleeper + 'static> {
    pub(crate) config: Config,
    pub(crate) keys: Keys,
    pub(crate) redis: Option<Client<T>>,
    pub(crate) cache: Option<CacheAside<T, Rc<O>, Rc<S>>>,
    pub(crate) origin: Rc<O>,
    pub(crate) clock: Rc<dyn Clock>,
    pub(crate) random: Rc<dyn Random>,
    pub(crate) isolate: Isolate,
}

/// Why an API key could not be resolved.
enum KeyFailure {
    /// The key is malformed, unknown or revoked: 401.
    Refused(EdgeResponse),
    /// The registry could not be read: 503, or anonymous where the route does not fail closed.
    Unavailable(EdgeResponse),
}

/// A caller after identification, with the limits that apply to them.
struct Caller {
    identity: Identity,
    tier: Tier,
}

impl<T: Transport + Clone + 'static, O: Origin + 'static, S: Sleeper + 'static> Gate<T, O, S> {
    /// A gate over `config`; `transport` is `None` in memory mode.
    pub fn new(
        config: Config,
        transport: Option<T>,
        origin: O,
        sleeper: S,
        clock: Rc<dyn Clock>,
        random: Rc<dyn Random>,
    ) -> Self {
        let policy = &config.policy;
        let keys = Keys::new(policy.namespace.clone());
        let redis = transport.map(Client::new);
        let origin = Rc::new(origin);
        let sleeper = Rc::new(sleeper);
        let cache = redis.as_ref().map(|client| {
            let deps = CacheDeps {
                redis: client.clone(),
                origin: origin.clone(),
                sleeper,
                clock: clock.clone(),
                random: random.clone(),
                keys: keys.clone(),
                settings: policy.cache.clone(),
            };
            CacheAside::new(deps, Rc::new(IsolateState::new(&policy.cache)))
        });
        let isolate = Isolate {
            breaker: RefCell::new(Breaker::from_settings(&policy.redis)),
            blocks: RefCell::new(BlockCache::new(crate::limiter::capacity::BLOCK_CACHE)),
            memory: RefCell::new(MemoryLimiter::new(crate::limiter::capacity::MEMORY_LIMITER)),
            key_cache: RefCell::new(api_key::KeyCache::new(
                KEY_CACHE_CAPACITY,
                u64::from(policy.identity.api_key_cache_ms),
            )),
            stats: RefCell::new(Stats::default()),
            last_seen: RefCell::new(HashMap::new()),
            started_ms: clock.now_ms(),
        };
        Self { config, keys, redis, cache, origin, clock, random, isolate }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Redis client, when Redis is configured.
    pub fn redis(&self) -> Option<&Client<T>> {
        self.redis.as_ref()
    }

    /// Whether the gate needs the request body before deciding (cache keys of JSON bodies,
    /// admin calls); other bodies are streamed to the origin untouched.
    pub fn needs_body(&self, method: &str, path: &str) -> bool {
        path.starts_with("/_tollgate/")
            || self
                .config
                .policy
                .route_for(method, path)
                .is_some_and(|(route, _)| route.cache.as_ref().is_some_and(|c| c.key == CacheKeySource::JsonBody))
    }

    /// Handles one request.
    pub async fn handle(self: &Rc<Self>, req: EdgeRequest) -> Handled {
        let mut handled = if cors::is_preflight(&req) {
            Handled::respond(cors::preflight(&self.config.policy.cors, &req))
        } else if req.path == "/_tollgate" {
            Handled::respond(EdgeResponse::new(308).with_header("location", "/_tollgate/"))
        } else if req.path.starts_with("/_tollgate/") {
            let mut resp = super::admin::handle(self, &req).await;
            cors::decorate(&self.config.policy.cors, &req, &mut resp);
            Handled::respond(resp)
        } else {
            self.gated(req).await
        };
        if let Some(flush) = self.flush_if_due() {
            handled.background.push(flush);
        }
        handled
    }

    /// The stats flush, when one is due.
    fn flush_if_due(self: &Rc<Self>) -> Option<Background> {
        let now = self.clock.now_ms();
        let redis = self.redis.clone()?;
        if !self.isolate.stats.borrow().due(now, STATS_FLUSH_MS) {
            return None;
        }
        let counts = self.isolate.stats.borrow_mut().drain(now);
        let this = self.clone();
        Some(Box::pin(async move {
            let cmds = stats::flush_commands(&this.keys, &counts, now);
            if redis.pipeline(cmds).await.is_err() {
                this.isolate.stats.borrow_mut().restore(counts);
            }
        }))
    }

    /// Flushes this isolate's counters now (before `stats` reads them back).
    pub(crate) async fn flush_stats(&self) {
        let Some(redis) = &self.redis else { return };
        let now = self.clock.now_ms();
        let counts = self.isolate.stats.borrow_mut().drain(now);
        let cmds = stats::flush_commands(&self.keys, &counts, now);
        if cmds.is_empty() {
            return;
        }
        if redis.pipeline(cmds).await.is_err() {
            self.isolate.stats.borrow_mut().restore(counts);
        }
    }

    /// Identifies the caller: `Err` is the 401 (or 503) to answer with. While Redis cannot be
    /// reached, an API key that is not in the isolate's cache cannot be checked: routes that fail
    /// `closed` answer 503, the others treat the caller as anonymous (by IP), which grants nothing
    /// an anonymous caller would not get.
    async fn identify(&self, req: &EdgeRequest, failure: FailurePolicy) -> Result<Caller, EdgeResponse> {
        let policy = &self.config.policy;
        let credential = identity::credential_from(|name| req.header(name).map(str::to_owned), &policy.identity)
            .map_err(|e| Problem::unauthorized(e.detail()).with("reason", e.as_str()).to_response())?;
        let identity = match credential {
            Credential::Anonymous(group) => Identity::anonymous(&group, policy),
            Credential::Jwt(token) => {
                let now_s = self.clock.now_ms() / 1000;
                identity::identify_jwt(&token, self.config.jwt_secret.as_deref().map(str::as_bytes), policy, now_s)
                    .map_err(|e| Problem::unauthorized(e.detail()).with("reason", e.as_str()).to_response())?
            }
            Credential::ApiKey(key) => match self.identify_key(&key).await {
                Ok(identity) => identity,
                Err(KeyFailure::Refused(resp)) => return Err(resp),
                Err(KeyFailure::Unavailable(_)) if failure != FailurePolicy::Closed => {
                    let ip = req.header(identity::client_ip::HEADER);
                    let group = identity::client_ip::ip_group(ip, policy.identity.ipv6_prefix);
                    Identity::anonymous(&group, policy)
                }
                Err(KeyFailure::Unavailable(resp)) => return Err(resp),
            },
        };
        let tier = policy
            .tier(&identity.tier)
            .or_else(|| policy.tier(&policy.default_tier))
            .cloned()
            .unwrap_or_else(|| Tier { name: identity.tier.clone(), limits: Vec::new() });
        Ok(Caller { identity, tier })
    }

    /// The caller's identity with their tier resolved against the policy (for `GET /_tollgate/me`).
    pub(crate) async fn caller_identity(&self, req: &EdgeRequest) -> Result<Identity, EdgeResponse> {
        let caller = self.identify(req, FailurePolicy::Closed).await?;
        Ok(Identity { tier: caller.tier.name, ..caller.identity })
    }

    /// Resolves an API key through the isolate's cache or the registry in Redis.
    async fn identify_key(&self, key: &str) -> Result<Identity, KeyFailure> {
        let refused = |e: identity::AuthError| {
            KeyFailure::Refused(Problem::unauthorized(e.detail()).with("reason", e.as_str()).to_response())
        };
        let unavailable = |detail: String| {
            KeyFailure::Unavailable(
                Problem::new(503, "key-registry-unavailable", "API key registry unavailable", detail)
                    .to_response()
                    .with_header("retry-after", "5"),
            )
        };
        if api_key::parse(key).is_none() {
            return Err(refused(identity::AuthError::Malformed("not a Tollgate API key")));
        }
        let hash = api_key::key_hash(key);
        let now = self.clock.now_ms();
        if let Some(cached) = self.isolate.key_cache.borrow_mut().get(&hash, now) {
            return cached.map(|r| Identity::from_key(&r, &self.config.policy)).map_err(refused);
        }
        let Some(redis) = &self.redis else {
            return Err(KeyFailure::Refused(
                Problem::unauthorized("API keys need Redis; Tollgate runs in memory mode")
                    .with("reason", "not_configured")
                    .to_response(),
            ));
        };
        if !self.isolate.breaker.borrow_mut().try_acquire(now) {
            return Err(unavailable("Redis is unreachable; API keys cannot be checked".into()));
        }
        let reply = redis.command(api_key::lookup_command(&self.keys, &hash)).await;
        self.isolate.breaker.borrow_mut().record(&reply, self.clock.now_ms());
        let outcome = match reply {
            Ok(reply) => api_key::parse_lookup(&reply),
            Err(e) => return Err(unavailable(format!("the key registry could not be read ({})", redis_failure(&e)))),
        };
        if outcome.as_ref().map_or_else(|e| e.is_definitive(), |_| true) {
            self.isolate.key_cache.borrow_mut().put(&hash, outcome.clone(), now);
        }
        outcome.map(|r| Identity::from_key(&r, &self.config.policy)).map_err(refused)
    }

    /// The gated path: limits, then cache or proxy.
    async fn gated(self: &Rc<Self>, req: EdgeRequest) -> Handled {
        self.isolate.stats.borrow_mut().request();
        let policy = &self.config.policy;
        let matched = policy.route_for(&req.method, &req.path);
        let route = matched.as_ref().map(|(r, _)| *r);
        let route_name = route.map_or("-", |r| r.name.as_str());

        let failure = route.map_or(FailurePolicy::Local, |r| r.on_redis_failure);
        let caller = match self.identify(&req, failure).await {
            Ok(c) => c,
            Err(mut resp) => {
                cors::decorate(&policy.cors, &req, &mut resp);
                return Handled::respond(resp);
            }
        };
        let no_limits: [Limit; 0] = [];
        let check = Check {
            subject_hash: &caller.identity.subject_hash,
            tier_limits: &caller.tier.limits,
            route_limits: route.map_or(&no_limits[..], |r| &r.limits),
            cost: route.map_or(NonZeroU32::MIN, |r| r.cost),
            mode: Mode::Consume,
            usage: None,
            concurrency: None,
        };

        // The cache target, when the route is cacheable for this method.
        let target = match matched
            .as_ref()
            .and_then(|(r, m)| self.cache_target(r, m, &req, &caller).map(|t| t.map(|t| (t, *r, m))))
        {
            Some(Ok(t)) => Some(t),
            Some(Err(problem)) => return self.finish(&req, problem.to_response(), None, &[], None),
            None => None,
        };

        // An isolate-fresh entry is served without any Redis round trip and consumes nothing; its
        // headers report the caller's limits as of their last check here. A blocked caller is
        // still refused first.
        let now = self.clock.now_ms();
        let shared_mode = if self.redis.is_some() { LimitMode::Redis } else { LimitMode::Memory };
        if let Some(blocked) = self.isolate.blocks.borrow_mut().get(&check, now) {
            return self.deny(&req, route_name, &caller, &blocked, shared_mode);
        }
        if let (Some(cache), Some((t, _, _))) = (&self.cache, &target) {
            if let Some(served) = cache.local(t) {
                self.isolate.stats.borrow_mut().add(route_name, &caller.tier.name, cache_stat(served.status), 1);
                let last = self.isolate.last_seen.borrow().get(&caller.identity.subject_hash).cloned();
                return self.serve_cached(&req, t, served, last.as_ref(), shared_mode, &[]);
            }
        }

        let (decision, read, mode, timing) = match self.check_remote(&check, target.as_ref().map(|(t, _, _)| t)).await {
            Some(Ok((decision, read, ms))) => (Some(decision), read, LimitMode::Redis, vec![format!("redis;dur={ms}")]),
            Some(Err(e)) => {
                let read = Some(Err(e.clone()));
                match failure {
                    FailurePolicy::Closed => {
                        let resp = Problem::limiter_unavailable(route_name)
                            .with("reason", redis_failure(&e))
                            .to_response()
                            .with_header("retry-after", "5")
                            .with_header("x-tollgate-mode", "closed");
                        return self.finish(&req, resp, None, &[], None);
                    }
                    FailurePolicy::Open => (None, read, LimitMode::Open, Vec::new()),
                    FailurePolicy::Local => (Some(self.check_local(&check)), read, LimitMode::Local, Vec::new()),
                }
            }
            None => (Some(self.check_local(&check)), None, LimitMode::Memory, Vec::new()),
        };

        if let Some(d) = &decision {
            if !d.is_allowed() {
                if matches!(d, Decision::Denied { .. }) {
                    self.isolate.blocks.borrow_mut().insert(&check, d, self.clock.now_ms());
                }
                return self.deny(&req, route_name, &caller, d, mode);
            }
        }
        if let Some(d) = &decision {
            self.isolate.remember(&caller.identity.subject_hash, d);
        }
        self.isolate.stats.borrow_mut().add(route_name, &caller.tier.name, "allowed", 1);

        match (target, &self.cache) {
            (Some((t, route, m)), Some(cache)) => {
                let lookup = match read {
                    Some(Ok(reply)) => Ok(cache.classify(&reply)),
                    Some(Err(e)) => Err(e),
                    None => Err(RedisError::Transport("no cache read".into())),
                };
                let origin_req = self.origin_request(&req, route, m, &caller);
                let started = self.clock.now_ms();
                let served = cache.serve(&t, lookup, origin_req).await;
                let mut timing = timing;
                timing.push(format!("origin;dur={}", self.clock.now_ms().saturating_sub(started)));
                match served {
                    Ok(served) => {
                        self.isolate.stats.borrow_mut().add(
                            route_name,
                            &caller.tier.name,
                            cache_stat(served.status),
                            1,
                        );
                        self.serve_cached(&req, &t, served, decision.as_ref(), mode, &timing)
                    }
                    Err(e) => {
                        let resp = load_problem(&e).to_response();
                        self.finish(&req, resp, decision.as_ref(), &timing, Some(mode))
                    }
                }
            }
            (Some((_, route, m)), None) => {
                // Memory mode: cacheable routes go to the origin (BYPASS).
                self.passthrough(&req, route, m, &caller, decision.as_ref(), mode, timing).await
            }
            (None, _) if self.config.origin_url.is_none() => {
                let resp = Problem::origin_unreachable("ORIGIN_URL is not set: Tollgate has no origin to proxy to")
                    .to_response();
                self.finish(&req, resp, decision.as_ref(), &timing, Some(mode))
            }
            (None, _) => {
                let plan = self.proxy_plan(&req, matched.as_ref(), &caller, decision.as_ref(), mode, timing);
                Handled { outcome: Outcome::Proxy(plan), background: Vec::new() }
            }
        }
    }

    /// The check and the cache read in one `/pipeline`. `None` without Redis (memory mode);
    /// `Some(Err)` when Redis failed or the breaker is open, for the failure policy to decide.
    async fn check_remote(
        &self,
        check: &Check<'_>,
        target: Option<&CacheTarget>,
    ) -> Option<Result<(Decision, Option<Result<crate::redis::Reply, RedisError>>, u64), RedisError>> {
        let redis = self.redis.as_ref()?;
        let now = self.clock.now_ms();
        if !self.isolate.breaker.borrow_mut().try_acquire(now) {
            return Some(Err(RedisError::Transport("circuit breaker open".into())));
        }
        let call = match check.command(&self.keys) {
            Ok(c) => c,
            Err(e) => return Some(Err(RedisError::Malformed(e.to_string()))),
        };
        let mut entries = vec![Entry::script(check_script(), &call.keys, &call.args)];
        if let (Some(cache), Some(t)) = (&self.cache, target) {
            entries.push(Entry::Command(cache.read_command(t)));
        }
        let (req_before, cmd_before) = (redis.requests_sent(), redis.commands_sent());
        let result = redis.pipeline_with_scripts(entries).await;
        let elapsed = self.clock.now_ms().saturating_sub(now);
        self.isolate.stats.borrow_mut().redis(redis.requests_sent() - req_before, redis.commands_sent() - cmd_before);
        self.isolate.breaker.borrow_mut().record(&result, self.clock.now_ms());
        let mut replies = match result {
            Ok(r) => r.into_iter(),
            Err(e) => return Some(Err(e)),
        };
        let decision = match replies.next() {
            Some(Ok(reply)) => match parse_reply(&reply) {
                Ok(d) => d,
                Err(e) => return Some(Err(RedisError::Malformed(e.to_string()))),
            },
            Some(Err(e)) => return Some(Err(e)),
            None => return Some(Err(RedisError::Malformed("empty pipeline reply".into()))),
        };
        Some(Ok((decision, replies.next(), elapsed)))
    }

    /// The same check in this isolate only.
    fn check_local(&self, check: &Check<'_>) -> Decision {
        let now = self.clock.now_ms();
        match self.isolate.memory.borrow_mut().check(check, now) {
            Ok(d) => d,
            // Limits are validated at config load; an unexpected refusal lets the request through
            // rather than failing it.
            Err(_) => Decision::Allowed(crate::limiter::Snapshot::empty(now)),
        }
    }

    /// The cache target of a cacheable route for this request, or a problem (invalid JSON body).
    fn cache_target(
        &self,
        route: &Route,
        matched: &RouteMatch,
        req: &EdgeRequest,
        caller: &Caller,
    ) -> Option<Result<CacheTarget, Problem>> {
        let rule = route.cache.as_ref()?;
        let cacheable_method = match rule.key {
            CacheKeySource::Path => req.method == "GET" || req.method == "HEAD",
            CacheKeySource::JsonBody => req.method == "POST",
        };
        if !cacheable_method {
            return None;
        }
        let class = self.config.policy.cache_class(&rule.class)?.clone();
        let query = (!req.query.is_empty()).then_some(req.query.as_str());
        Some(
            cache::key::cache_key(rule, matched, query, &req.body, &caller.identity.subject_hash)
                .map(|key| CacheTarget::new(&route.name, rule, class, key))
                .map_err(|e| Problem::bad_request(e.to_string())),
        )
    }

    /// The origin request of a cacheable route (upstream path, forwarded headers).
    fn origin_request(&self, req: &EdgeRequest, route: &Route, matched: &RouteMatch, caller: &Caller) -> OriginRequest {
        let path = upstream_path(req, route, matched);
        let path_and_query = if req.query.is_empty() { path } else { format!("{path}?{}", req.query) };
        OriginRequest {
            method: req.method.clone(),
            path_and_query,
            headers: match route.cache.as_ref().map(|c| c.scope) {
                Some(CacheScope::Global) => proxy::shared_fill_headers(&req.headers),
                _ => proxy::upstream_request_headers(&req.headers, Some(&forwarded(caller))),
            },
            body: req.body.clone(),
        }
    }

    /// Memory mode on a cacheable route: fetch the origin directly.
    #[allow(clippy::too_many_arguments)]
    async fn passthrough(
        &self,
        req: &EdgeRequest,
        route: &Route,
        matched: &RouteMatch,
        caller: &Caller,
        decision: Option<&Decision>,
        mode: LimitMode,
        mut timing: Vec<String>,
    ) -> Handled {
        let origin_req = self.origin_request(req, route, matched, caller);
        let started = self.clock.now_ms();
        let result = self.origin.fetch(&origin_req).await;
        timing.push(format!("origin;dur={}", self.clock.now_ms().saturating_sub(started)));
        self.isolate.stats.borrow_mut().add(&route.name, &caller.tier.name, "bypass", 1);
        let resp = match result {
            Ok(o) => origin_response(o, CacheStatus::Bypass),
            Err(e) => load_problem(&LoadError::from(e)).to_response(),
        };
        self.finish(req, resp, decision, &timing, Some(mode))
    }

    /// A 429 for `decision`.
    fn deny(
        &self,
        req: &EdgeRequest,
        route_name: &str,
        caller: &Caller,
        decision: &Decision,
        mode: LimitMode,
    ) -> Handled {
        self.isolate.stats.borrow_mut().add(route_name, &caller.tier.name, "denied", 1);
        let violated = decision.violated().unwrap_or("").to_owned();
        let state = decision.binding();
        let detail = match (decision, state) {
            (Decision::Impossible { .. }, Some(s)) => {
                format!(
                    "this request costs more than limit \"{violated}\" allows at all ({} per {})",
                    s.limit,
                    format_duration_ms(s.window_ms)
                )
            }
            (_, Some(s)) => format!(
                "limit \"{violated}\" ({} per {}) is exhausted; retry in {} s",
                s.limit,
                format_duration_ms(s.window_ms),
                decision.retry_after_ms().map_or(0, |ms| ms.div_ceil(1000))
            ),
            _ => "rate limit exceeded".to_owned(),
        };
        let mut problem = Problem::new(429, "rate-limited", "Too Many Requests", detail)
            .with("limit", violated)
            .with("tier", caller.tier.name.clone())
            .with("route", route_name);
        if let Some(ms) = decision.retry_after_ms() {
            problem = problem.with("retry_after_s", ms.div_ceil(1000));
        }
        let resp = problem.to_response();
        self.finish(req, resp, Some(decision), &[], Some(mode))
    }

    /// A response built from a cache answer.
    fn serve_cached(
        &self,
        req: &EdgeRequest,
        target: &CacheTarget,
        served: Served,
        decision: Option<&Decision>,
        mode: LimitMode,
        timing: &[String],
    ) -> Handled {
        let now = self.clock.now_ms();
        let resp = match served.payload {
            Payload::Cached(entry) => {
                let not_modified =
                    req.header("if-none-match").is_some_and(|h| cache::http::if_none_match(h, &entry.etag));
                let mut r = EdgeResponse::new(if not_modified { 304 } else { entry.status });
                if let Some(ct) = &entry.content_type {
                    r.set_header("content-type", ct.clone());
                }
                for (n, v) in &entry.headers {
                    r.append_header(n, v.clone());
                }
                r.set_header("etag", entry.etag.clone());
                r.set_header("age", cache::http::age_seconds(entry.stored_ms, now).to_string());
                r.set_header("cache-control", cache::http::cache_control(&target.class, target.scope));
                r.set_header("x-cache", served.status.as_str());
                if !not_modified && req.method != "HEAD" {
                    r.body = entry.body;
                }
                r
            }
            Payload::Passthrough(o) => origin_response(o, served.status),
        };
        let mut handled = self.finish(req, resp, decision, timing, Some(mode));
        if let Some(refresh) = served.background {
            handled.background.push(Box::pin(async move {
                let _ = refresh.run().await;
            }));
        }
        handled
    }

    /// Adds rate-limit, mode, timing and CORS headers to a response.
    fn finish(
        &self,
        req: &EdgeRequest,
        mut resp: EdgeResponse,
        decision: Option<&Decision>,
        timing: &[String],
        mode: Option<LimitMode>,
    ) -> Handled {
        if let Some(d) = decision {
            for (name, value) in rate_limit_headers(d) {
                resp.set_header(name, value);
            }
        }
        if let Some(m) = mode {
            resp.set_header("x-tollgate-mode", m.as_str());
        }
        if !timing.is_empty() {
            resp.set_header("server-timing", timing.join(", "));
        }
        cors::decorate(&self.config.policy.cors, req, &mut resp);
        Handled::respond(resp)
    }

    /// The plan for streaming a request to the origin.
    fn proxy_plan(
        self: &Rc<Self>,
        req: &EdgeRequest,
        matched: Option<&(&Route, RouteMatch)>,
        caller: &Caller,
        decision: Option<&Decision>,
        mode: LimitMode,
        timing: Vec<String>,
    ) -> ProxyPlan {
        let path = matched.map_or_else(|| req.path.clone(), |(r, m)| upstream_path(req, r, m));
        let origin = self.config.origin_url.as_deref().unwrap_or_default();
        let mut shell = EdgeResponse::new(200);
        if let Some(d) = decision {
            for (name, value) in rate_limit_headers(d) {
                shell.set_header(name, value);
            }
        }
        shell.set_header("x-tollgate-mode", mode.as_str());
        cors::decorate(&self.config.policy.cors, req, &mut shell);
        let after_write =
            cache::key_for_write(&self.config.policy, &req.method, &req.path, &caller.identity.subject_hash)
                .map(|write| self.invalidate_later(write));
        ProxyPlan {
            url: proxy::upstream_url(origin, &path, &req.query),
            method: req.method.clone(),
            request_headers: proxy::upstream_request_headers(&req.headers, Some(&forwarded(caller))),
            body: (!req.body.is_empty()).then(|| req.body.clone()),
            response_headers: shell.headers,
            server_timing: timing,
            after_write,
        }
    }

    /// The invalidation a successful write runs in the background.
    fn invalidate_later(self: &Rc<Self>, write: WriteTarget) -> Box<dyn FnOnce() -> Background> {
        let this = self.clone();
        Box::new(move || -> Background {
            Box::pin(async move {
                if let Some(cache) = &this.cache {
                    let _ = cache.invalidate(&write.target, &this.config.policy.cache_classes).await;
                }
            })
        })
    }

    /// Warms every configured hot key (cron trigger).
    pub async fn warm_all(self: &Rc<Self>) {
        let _ = super::admin::warm(self, None, &[]).await;
    }
}

/// Stats field of a cache outcome.
fn cache_stat(status: CacheStatus) -> &'static str {
    match status {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
        CacheStatus::Stale => "stale",
        CacheStatus::Bypass => "bypass",
    }
}

/// The origin path of a request on a route (the route's upstream template, or the same path).
pub(crate) fn upstream_path(req: &EdgeRequest, route: &Route, matched: &RouteMatch) -> String {
    match &route.upstream_path {
        Some(template) => crate::policy::pattern::fill(template, matched),
        None => req.path.clone(),
    }
}

/// The identity headers for the origin.
fn forwarded(caller: &Caller) -> Forwarded<'_> {
    Forwarded {
        subject_hash: &caller.identity.subject_hash,
        tier: &caller.tier.name,
        caller: caller.identity.kind.as_str(),
    }
}

/// An origin answer passed through (not from an entry).
fn origin_response(o: OriginResponse, status: CacheStatus) -> EdgeResponse {
    let mut r =
        EdgeResponse { status: o.status, headers: proxy::downstream_response_headers(&o.headers, true), body: o.body };
    r.set_header("x-cache", status.as_str());
    r
}

/// The problem for a cache fill that produced nothing to serve.
fn load_problem(e: &LoadError) -> Problem {
    match e {
        LoadError::OriginTimeout => {
            Problem::origin_timeout("the origin did not answer in time and no cached copy exists")
        }
        LoadError::OriginUnreachable(why) => {
            Problem::origin_unreachable(format!("the origin could not be reached ({why}) and no cached copy exists"))
        }
        LoadError::OriginStatus(s) => {
            Problem::origin_unreachable(format!("the origin answered {s} and no cached copy exists"))
                .with("origin_status", *s)
        }
    }
}

/// A short, internals-free description of a Redis failure.
pub(crate) fn redis_failure(e: &RedisError) -> &'static str {
    match e {
        RedisError::Timeout(_) => "redis_timeout",
        RedisError::Transport(_) => "redis_unreachable",
        RedisError::Unauthorized => "redis_unauthorized",
        RedisError::Http { .. } => "redis_http_error",
        RedisError::Malformed(_) => "redis_malformed_reply",
        RedisError::Redis { .. } => "redis_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_stats_fields() {
        assert_eq!(cache_stat(CacheStatus::Stale), "stale");
        assert_eq!(cache_stat(CacheStatus::Bypass), "bypass");
    }
}
