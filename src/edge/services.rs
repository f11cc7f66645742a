//! What every handler of one isolate shares: the configuration, the Redis client (with its
//! breaker), the cache, the key registry, the local limiter state and the counters. Every piece
//! is a cache or a degraded-mode fallback; nothing here is needed for correctness across
//! locations.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::cache::{CacheAside, CacheDeps, IsolateState, Origin};
use crate::clock::{Clock, Random, Sleeper};
use crate::identity::jwks::{KeySets, KeySource};
use crate::identity::verify::SignatureVerifier;
use crate::identity::{Identifier, KeyRegistry};
use crate::keys::Keys;
use crate::limiter::{BlockCache, Decision, MemoryLimiter};
use crate::redis::{Breaker, Client, Transport};

use super::config::Config;
use super::stats::{self, Stats};

/// Work to run after the response is sent (`ctx.wait_until` in the Worker).
pub type Background = Pin<Box<dyn Future<Output = ()>>>;

/// The outside world of a deployment: how Redis and the origin are reached and how to wait.
pub trait Platform: 'static {
    /// Redis over REST.
    type Transport: Transport + Clone + 'static;
    /// The origin, for cache fills.
    type Origin: Origin + 'static;
    /// Timers.
    type Sleeper: Sleeper + 'static;
}

/// How often an isolate flushes its counters to Redis, ms.
pub const STATS_FLUSH_MS: u64 = 10_000;

/// Callers whose latest decision is kept for the headers of in-isolate hits.
const LAST_SEEN_CAPACITY: usize = 4096;

/// Limits whose last Redis state is kept for the fallback.
const SEED_CAPACITY: usize = 16_384;

/// What Redis last said of one limit of one caller, and what the fallback admitted since.
#[derive(Debug, Clone, Copy)]
struct Seed {
    remaining: u32,
    until_ms: u64,
    used: u32,
}

/// The in-isolate limiter state: the fallback limiter, the block list, each caller's latest
/// allowed decision (the headers of hits served from isolate memory), and what Redis last said
/// of each limit, so the fallback starts from there instead of from zero.
pub struct LocalLimits {
    /// Blocked callers, until their limit resets.
    pub blocks: RefCell<BlockCache>,
    /// The fallback limiter (memory mode, and `local` routes while Redis fails).
    pub memory: RefCell<MemoryLimiter>,
    last_seen: RefCell<HashMap<String, Decision>>,
    seeds: RefCell<HashMap<(String, String), Seed>>,
    /// Requests each caller was admitted here while Redis failed, not yet charged to Redis.
    debts: RefCell<HashMap<String, u32>>,
}

impl LocalLimits {
    fn new() -> Self {
        Self {
            blocks: RefCell::new(BlockCache::new(crate::limiter::capacity::BLOCK_CACHE)),
            memory: RefCell::new(MemoryLimiter::new(crate::limiter::capacity::MEMORY_LIMITER)),
            last_seen: RefCell::new(HashMap::new()),
            seeds: RefCell::new(HashMap::new()),
            debts: RefCell::new(HashMap::new()),
        }
    }

    /// Notes `cost` units admitted for `subject_hash` by the fallback, owed to Redis.
    pub fn owe(&self, subject_hash: &str, cost: u32) {
        let mut debts = self.debts.borrow_mut();
        if debts.len() >= SEED_CAPACITY && !debts.contains_key(subject_hash) {
            return;
        }
        let debt = debts.entry(subject_hash.to_owned()).or_default();
        *debt = debt.saturating_add(cost);
    }

    /// Takes what `subject_hash` owes Redis, if anything.
    pub fn take_debt(&self, subject_hash: &str) -> Option<u32> {
        self.debts.borrow_mut().remove(subject_hash).filter(|&d| d > 0)
    }

    /// Notes what Redis decided for `subject_hash`: each limit's remaining units until its reset.
    pub fn seed(&self, subject_hash: &str, decision: &Decision) {
        let mut seeds = self.seeds.borrow_mut();
        let snapshot = decision.snapshot();
        if seeds.len() >= SEED_CAPACITY {
            seeds.retain(|_, s| s.until_ms > snapshot.now_ms);
            if seeds.len() >= SEED_CAPACITY {
                seeds.clear();
            }
        }
        for l in &snapshot.limits {
            let until_ms = l.reset_ms.min(snapshot.now_ms.saturating_add(l.window_ms));
            seeds.insert((subject_hash.to_owned(), l.id.clone()), Seed { remaining: l.remaining, until_ms, used: 0 });
        }
    }

    /// The fallback's decision `local` for `subject_hash`, held to what Redis last said remained:
    /// a limit Redis reported at `remaining` admits at most that many units here until its reset.
    pub fn hold_to_seed(&self, subject_hash: &str, cost: u32, local: Decision) -> Decision {
        let Decision::Allowed(mut snapshot) = local else { return local };
        let now = snapshot.now_ms;
        let mut seeds = self.seeds.borrow_mut();
        let live = |id: &str, seeds: &HashMap<(String, String), Seed>| {
            seeds.get(&(subject_hash.to_owned(), id.to_owned())).copied().filter(|s| s.until_ms > now)
        };
        for l in &snapshot.limits {
            if let Some(seed) = live(&l.id, &seeds) {
                if seed.used.saturating_add(cost) > seed.remaining {
                    let retry_after_ms = seed.until_ms.saturating_sub(now).max(1);
                    return Decision::Denied { violated: l.id.clone(), retry_after_ms, snapshot };
                }
            }
        }
        for l in &mut snapshot.limits {
            if let Some(mut seed) = live(&l.id, &seeds) {
                seed.used = seed.used.saturating_add(cost);
                l.remaining = l.remaining.min(seed.remaining - seed.used);
                seeds.insert((subject_hash.to_owned(), l.id.clone()), seed);
            }
        }
        Decision::Allowed(snapshot)
    }

    /// Remembers a caller's latest decision (bounded: when full, the map starts over).
    pub fn remember(&self, subject_hash: &str, decision: &Decision) {
        let mut seen = self.last_seen.borrow_mut();
        if seen.len() >= LAST_SEEN_CAPACITY && !seen.contains_key(subject_hash) {
            seen.clear();
        }
        seen.insert(subject_hash.to_owned(), decision.clone());
    }

    /// A caller's latest decision seen here.
    pub fn last_seen(&self, subject_hash: &str) -> Option<Decision> {
        self.last_seen.borrow().get(subject_hash).cloned()
    }
}

/// The cache of an isolate over its platform.
pub type Cache<P> = CacheAside<<P as Platform>::Transport, Rc<<P as Platform>::Origin>, Rc<<P as Platform>::Sleeper>>;

/// Everything one isolate's handlers share, for one configuration.
pub struct Services<P: Platform> {
    /// The configuration.
    pub config: Config,
    /// The key namespace.
    pub keys: Keys,
    /// Redis, behind the breaker; `None` in memory mode.
    pub redis: Option<Client<P::Transport>>,
    /// Cache-aside; `None` in memory mode.
    pub cache: Option<Cache<P>>,
    /// The origin, for fills.
    pub origin: Rc<P::Origin>,
    /// The clock.
    pub clock: Rc<dyn Clock>,
    /// Randomness.
    pub random: Rc<dyn Random>,
    /// The API-key registry.
    pub registry: KeyRegistry<P::Transport, P::Sleeper>,
    /// Subject hashing and token checks.
    pub identifier: Identifier,
    /// Local limiter state.
    pub limits: LocalLimits,
    /// Counters since the last flush.
    pub stats: RefCell<Stats>,
    /// The client's wire counters (requests, commands) already handed to `stats`.
    wire_seen: Cell<(u64, u64)>,
    /// When this isolate started, Unix ms.
    pub started_ms: u64,
    /// Wrong admin tokens per address (see [`super::admin::throttle`]).
    pub admin_failures: RefCell<super::admin::throttle::AuthThrottle>,
}

impl<P: Platform> Services<P> {
    /// The services over `config`; `transport` is `None` in memory mode.
    pub fn new(
        config: Config,
        transport: Option<P::Transport>,
        origin: P::Origin,
        sleeper: P::Sleeper,
        clock: Rc<dyn Clock>,
        random: Rc<dyn Random>,
    ) -> Self {
        let policy = &config.policy;
        let keys = Keys::new(policy.namespace.clone());
        let redis = transport.map(|t| Client::guarded(t, Breaker::from_settings(&policy.redis), clock.clone()));
        let origin = Rc::new(origin);
        let sleeper = Rc::new(sleeper);
        let cache = redis.as_ref().map(|client| {
            let deps = CacheDeps {
                redis: client.clone(),
                origin: origin.clone(),
                sleeper: sleeper.clone(),
                clock: clock.clone(),
                random: random.clone(),
                keys: keys.clone(),
                settings: policy.cache.clone(),
            };
            CacheAside::new(deps, Rc::new(IsolateState::new(&policy.cache)))
        });
        let registry = KeyRegistry::new(
            redis.clone(),
            keys.clone(),
            clock.clone(),
            sleeper,
            u64::from(policy.identity.api_key_cache_ms),
        );
        let started_ms = clock.now_ms();
        let identifier = Identifier::new(config.hash_secret.as_deref(), config.jwt_secret.as_deref(), None);
        Self {
            config,
            keys,
            redis,
            cache,
            origin,
            clock,
            random,
            registry,
            identifier,
            limits: LocalLimits::new(),
            stats: RefCell::new(Stats::default()),
            wire_seen: Cell::new((0, 0)),
            started_ms,
            admin_failures: RefCell::new(super::admin::throttle::AuthThrottle::default()),
        }
    }

    /// The same services checking ES256, RS256 and EdDSA tokens against the key sets of
    /// `TOLLGATE_JWKS_URL` (when set), fetched through `source` and checked with `verifier`.
    pub fn with_key_sets(mut self, source: Rc<dyn KeySource>, verifier: Rc<dyn SignatureVerifier>) -> Self {
        if !self.config.jwks_urls.is_empty() {
            let interval = u64::from(self.config.policy.identity.jwks_refetch_interval_ms);
            let sets = KeySets::new(&self.config.jwks_urls, source, verifier, interval);
            self.identifier = self.identifier.with_key_sets(sets);
        }
        self
    }

    /// Takes the counters to flush, the Redis traffic since the last flush included.
    fn take_counts(&self, now: u64) -> std::collections::BTreeMap<String, u64> {
        let mut stats = self.stats.borrow_mut();
        if let Some(client) = &self.redis {
            let now_seen = (client.requests_sent(), client.commands_sent());
            let (req, cmd) = self.wire_seen.replace(now_seen);
            stats.redis(now_seen.0.saturating_sub(req), now_seen.1.saturating_sub(cmd));
        }
        stats.drain(now)
    }

    /// The stats flush, when one is due.
    pub fn flush_if_due(self: &Rc<Self>) -> Option<Background> {
        self.redis.as_ref()?;
        if !self.stats.borrow().due(self.clock.now_ms(), STATS_FLUSH_MS) {
            return None;
        }
        let this = self.clone();
        Some(Box::pin(async move { this.flush_stats().await }))
    }

    /// Flushes this isolate's counters now; a failed flush keeps them for the next one.
    pub async fn flush_stats(&self) {
        let Some(redis) = &self.redis else { return };
        let now = self.clock.now_ms();
        let counts = self.take_counts(now);
        let cmds = stats::flush_commands(&self.keys, &counts, now);
        if cmds.is_empty() {
            return;
        }
        // A flush that may have reached Redis is not retried: counting it twice would be worse
        // than losing it. Only a flush that surely did not arrive is kept for the next one.
        if let Err(e) = redis.multi_exec(cmds).await {
            if !e.reached_server() {
                self.stats.borrow_mut().restore(counts);
            }
        }
    }
}
