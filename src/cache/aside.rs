//! Get-or-load: what to serve for a cacheable request once the edge's read says what Redis holds,
//! with single-flight fills, the fill lock, stale-while-revalidate and stale-if-error.
//!
//! | read | served | then |
//! | --- | --- | --- |
//! | in-isolate layer, fresh ([`CacheAside::local`]) | `HIT` | nothing (no Redis command) |
//! | fresh | `HIT` | XFetch may ask for an early [`Refresh`] |
//! | stale | `STALE`, at once | a [`Refresh`] under the fill lock |
//! | miss | `MISS` after one origin fetch | stored with `PX` = jittered TTL + stale window |
//! | Redis failed | `BYPASS`: origin answer, nothing stored | |
//!
//! Fills and refreshes always `GET` (a `HEAD` request is answered from the entry a `GET` fills).
//!
//! Stampede protection, stated: within an isolate, concurrent misses of one key share one fill
//! ([`SingleFlight`]). An answer meant for its own caller only (`Set-Cookie`, `no-store`,
//! `private`) is never handed to the waiters: each of them fetches the origin for itself. Across isolates the fill takes a Redis lock (`SET NX PX lock_ttl_ms`, so a
//! crashed holder frees it within `lock_ttl_ms`); an isolate that finds the lock held polls for the
//! entry [`WAIT_POLLS`] times within `lock_wait_ms` and serves it as a `HIT` as soon as it appears,
//! or after the wait fetches the origin itself (and stores what it got). A stale copy is never made
//! to wait: it is served at once while one refresh runs in the background. When the origin is
//! unreachable, slow beyond `origin_timeout_ms` or answers 5xx, a refresh leaves the stale copy in
//! place (stale-if-error) and a miss becomes a [`LoadError`] (502 or 504). When Redis fails, the
//! cache steps aside: the origin answers (`BYPASS`) and the cache itself never causes a 5xx.

use std::cell::RefCell;
use std::collections::HashSet;
use std::pin::pin;
use std::rc::Rc;

use futures::future::{select, Either, LocalBoxFuture};
use futures::FutureExt;
use thiserror::Error;

use crate::clock::{Clock, Random};
use crate::keys::Keys;
use crate::policy::{CacheClass, CacheRule, CacheScope, CacheSettings};
use crate::redis::{Arg, Client, Command, RedisError, Reply, Transport};

use super::entry::{Entry, ENTRY_FORMAT, REPLAYED_HEADERS};
use super::http::etag_for;
use super::invalidate::{Invalidation, InvalidationTarget, Invalidator};
use super::isolate::IsolateCache;
use crate::clock::Sleeper;

use super::key::namespace;
use super::lock::{acquire_command, lock_acquired, lock_key, release_args, release_script, store_script};
use super::lookup::{classify_read_limited, read_command, Lookup};
use super::origin::{Origin, OriginError, OriginRequest, OriginResponse};
use super::single_flight::SingleFlight;
use super::status::CacheStatus;
use super::storable::{self, NotStorable};
use super::ttl::{expiry, jittered_ttl_ms, should_refresh_early};

/// Reads of the entry while another isolate holds the fill lock, spread over `lock_wait_ms`.
pub const WAIT_POLLS: u32 = 5;

/// Why a cacheable request got no response to serve (the edge maps it with [`LoadError::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    /// The origin did not answer within `origin_timeout_ms`.
    #[error("origin timed out")]
    OriginTimeout,
    /// The origin could not be reached.
    #[error("origin unreachable: {0}")]
    OriginUnreachable(String),
    /// The origin answered with this 5xx status.
    #[error("origin answered {0}")]
    OriginStatus(u16),
}

impl LoadError {
    /// `504` for a timeout, `502` otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            LoadError::OriginTimeout => 504,
            LoadError::OriginUnreachable(_) | LoadError::OriginStatus(_) => 502,
        }
    }
}

impl From<OriginError> for LoadError {
    fn from(e: OriginError) -> Self {
        match e {
            OriginError::Timeout => LoadError::OriginTimeout,
            OriginError::Unreachable(why) => LoadError::OriginUnreachable(why),
        }
    }
}

/// What to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A cached (or just stored) entry.
    Cached(Entry),
    /// The origin's answer as it came, not stored (not storable, or the cache was bypassed).
    Passthrough(OriginResponse),
}

/// The answer to a cacheable request.
#[derive(Debug)]
pub struct Served {
    /// `X-Cache`.
    pub status: CacheStatus,
    /// What to send.
    pub payload: Payload,
    /// Work to run after responding (`ctx.wait_until`), if any.
    pub background: Option<Refresh>,
}

/// Why a background refresh was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// XFetch chose this reader to refresh a fresh entry before it goes stale.
    Early,
    /// The entry was served stale.
    Stale,
}

/// What a background refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new entry is stored.
    Refreshed,
    /// Another isolate holds the fill lock and is refreshing it.
    LockHeld,
    /// Redis failed; nothing changed.
    RedisFailed(RedisError),
    /// The origin failed; the old copy stays (stale-if-error).
    OriginFailed(LoadError),
    /// The origin's new answer may not be stored; the old entry was deleted.
    Removed(NotStorable),
}

impl RefreshOutcome {
    /// Why the refresh failed (a stable reason for logs), or `None` when it did its job or had
    /// none to do.
    pub fn failure(&self) -> Option<&'static str> {
        match self {
            RefreshOutcome::Refreshed | RefreshOutcome::LockHeld | RefreshOutcome::Removed(_) => None,
            RefreshOutcome::RedisFailed(e) if e.is_transient() => Some("redis_unavailable"),
            RefreshOutcome::RedisFailed(_) => Some("redis_error"),
            RefreshOutcome::OriginFailed(LoadError::OriginTimeout) => Some("origin_timeout"),
            RefreshOutcome::OriginFailed(LoadError::OriginUnreachable(_)) => Some("origin_unreachable"),
            RefreshOutcome::OriginFailed(LoadError::OriginStatus(_)) => Some("origin_status"),
        }
    }
}

/// A background refresh of one entry; nothing happens until it is awaited (`ctx.wait_until`).
pub struct Refresh {
    reason: RefreshReason,
    work: LocalBoxFuture<'static, RefreshOutcome>,
}

impl Refresh {
    /// Why it was asked for.
    pub fn reason(&self) -> RefreshReason {
        self.reason
    }

    /// The work, to hand to `ctx.wait_until` (map the outcome to `()` first) or to await.
    pub fn into_future(self) -> LocalBoxFuture<'static, RefreshOutcome> {
        self.work
    }

    /// Runs the refresh to its end.
    pub async fn run(self) -> RefreshOutcome {
        self.work.await
    }
}

impl std::fmt::Debug for Refresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresh").field("reason", &self.reason).finish_non_exhaustive()
    }
}

/// One cacheable request's place in the cache: route, namespace, key, class, scope and tags.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTarget {
    /// Route name, for stats.
    pub route: String,
    /// Cache namespace ([`namespace`]).
    pub ns: String,
    /// Cache key within the namespace ([`super::key::cache_key`]).
    pub key: String,
    /// TTL class of the route.
    pub class: CacheClass,
    /// Shared or per caller.
    pub scope: CacheScope,
    /// Tags stored with the entry.
    pub tags: Vec<String>,
}

impl CacheTarget {
    /// The target of `key` on route `route_name` with cache `rule` and its resolved `class`.
    pub fn new(route_name: &str, rule: &CacheRule, class: CacheClass, key: String) -> Self {
        Self {
            route: route_name.to_owned(),
            ns: namespace(route_name, rule.scope),
            key,
            class,
            scope: rule.scope,
            tags: rule.tags.clone(),
        }
    }

    /// The Redis key of the entry.
    pub fn entry_key(&self, keys: &Keys) -> String {
        keys.cache_entry(&self.ns, &self.key)
    }
}

/// A fill's result, shared by every caller of one single-flight.
#[derive(Debug, Clone)]
enum Filled {
    /// Fetched and stored by this isolate (`MISS`).
    Stored(Rc<Entry>),
    /// Stored by another isolate while this one waited (`HIT`).
    Waited(Rc<Entry>),
    /// Fetched, not storable (`MISS`), and why.
    Uncached(Rc<OriginResponse>, NotStorable),
    /// Fetched without the cache (`BYPASS`).
    Bypassed(Rc<OriginResponse>),
}

type FillResult = Result<Filled, LoadError>;

/// Per-isolate cache state, shared by every request the isolate serves: the in-isolate layer,
/// fills and refreshes in flight, and counters.
#[derive(Debug)]
pub struct IsolateState {
    layer: RefCell<IsolateCache>,
    flights: SingleFlight<String, FillResult>,
    refreshing: RefCell<HashSet<String>>,
}

impl IsolateState {
    /// Fresh state sized by `settings`.
    pub fn new(settings: &CacheSettings) -> Self {
        Self {
            layer: RefCell::new(IsolateCache::from_settings(settings)),
            flights: SingleFlight::new(),
            refreshing: RefCell::new(HashSet::new()),
        }
    }

    /// Drops what `target` covers from the in-isolate layer (a pattern drops its whole
    /// namespace); how many entries.
    pub fn forget(&self, keys: &Keys, target: &InvalidationTarget) -> usize {
        let mut layer = self.layer.borrow_mut();
        match target {
            InvalidationTarget::Key { ns, key } => usize::from(layer.remove(&keys.cache_entry(ns, key))),
            InvalidationTarget::Pattern { ns, .. } | InvalidationTarget::Namespace(ns) => {
                layer.remove_prefix(&keys.cache_entry(ns, ""))
            }
            InvalidationTarget::Tag(tag) => layer.remove_tagged(tag),
        }
    }
}

/// What the cache needs from the outside, all `!Send`-friendly.
pub struct CacheDeps<T: Transport, O: Origin, S: Sleeper> {
    /// The Redis client (clones share counters and the sync token).
    pub redis: Client<T>,
    /// The origin.
    pub origin: O,
    /// Timers for lock waits and the origin timeout.
    pub sleeper: S,
    /// The isolate's clock.
    pub clock: Rc<dyn Clock>,
    /// Randomness for jitter, XFetch and lock tokens.
    pub random: Rc<dyn Random>,
    /// The key namespace.
    pub keys: Keys,
    /// Cache settings from the policy.
    pub settings: CacheSettings,
}

/// The cache-aside client of one request (cheap to clone), over the isolate's shared state.
pub struct CacheAside<T: Transport, O: Origin, S: Sleeper> {
    deps: Rc<CacheDeps<T, O, S>>,
    state: Rc<IsolateState>,
}

impl<T: Transport, O: Origin, S: Sleeper> Clone for CacheAside<T, O, S> {
    fn clone(&self) -> Self {
        Self { deps: Rc::clone(&self.deps), state: Rc::clone(&self.state) }
    }
}

impl<T: Transport + 'static, O: Origin + 'static, S: Sleeper + 'static> CacheAside<T, O, S> {
    /// A cache over `deps` and the isolate's `state`.
    pub fn new(deps: CacheDeps<T, O, S>, state: Rc<IsolateState>) -> Self {
        Self { deps: Rc::new(deps), state }
    }

    /// The isolate state this cache uses.
    pub fn state(&self) -> &Rc<IsolateState> {
        &self.state
    }

    /// The key namespace.
    pub fn keys(&self) -> &Keys {
        &self.deps.keys
    }

    /// Invalidates `target` in this isolate's layer and in Redis, and announces it (see
    /// [`Invalidator`]); `classes` are the policy's cache classes (they bound the generation's life).
    pub async fn invalidate(
        &self,
        target: &InvalidationTarget,
        classes: &[CacheClass],
    ) -> Result<Invalidation, RedisError> {
        self.state.forget(&self.deps.keys, target);
        Invalidator::new(&self.deps.redis, &self.deps.keys, classes).run(target, self.deps.clock.now_ms()).await
    }

    /// A fresh entry from the in-isolate layer (`HIT`, no Redis command), if there is one; the
    /// edge asks this first and leaves the cache read out of its pipeline when it answers.
    pub fn local(&self, target: &CacheTarget) -> Option<Served> {
        let now = self.deps.clock.now_ms();
        let entry = self.state.layer.borrow_mut().get(&target.entry_key(&self.deps.keys), now)?;
        if !entry.is_fresh(now) {
            return None;
        }
        Some(Served { status: CacheStatus::Hit, payload: Payload::Cached((*entry).clone()), background: None })
    }

    /// The read to put in the edge's pipeline for `target` ([`read_command`]).
    pub fn read_command(&self, target: &CacheTarget) -> Command {
        read_command(&self.deps.keys, &target.ns, &target.key)
    }

    /// The keys of the read (generation, entry), for a check that reads them itself.
    pub fn read_keys(&self, target: &CacheTarget) -> [String; 2] {
        [self.deps.keys.cache_generation(&target.ns), self.deps.keys.cache_entry(&target.ns, &target.key)]
    }

    /// Classifies the read's reply now, with the policy's body limit.
    pub fn classify(&self, reply: &Reply) -> Lookup {
        classify_read_limited(reply, self.deps.clock.now_ms(), self.deps.settings.max_body_bytes)
    }

    /// Reads and serves in one go, for callers without a pipeline of their own (warming, tests).
    pub async fn get_or_load(&self, target: &CacheTarget, request: OriginRequest) -> Result<Served, LoadError> {
        if let Some(served) = self.local(target) {
            return Ok(served);
        }
        let read = self.deps.redis.command(self.read_command(target)).await;
        let lookup = read.map(|reply| self.classify(&reply));
        self.serve(target, lookup, request).await
    }

    /// Serves `target` given what the edge's read found (`Err` when the read failed), fetching
    /// `request` from the origin when needed. See the module documentation for the flow.
    pub async fn serve(
        &self,
        target: &CacheTarget,
        read: Result<Lookup, RedisError>,
        request: OriginRequest,
    ) -> Result<Served, LoadError> {
        let request = request.for_fill();
        let now = self.deps.clock.now_ms();
        match read {
            Ok(Lookup::Fresh(entry)) => {
                let entry = Rc::new(entry);
                self.remember(target, &entry, now);
                let early =
                    should_refresh_early(&entry, now, self.deps.settings.early_refresh_beta, self.deps.random.unit());
                let background =
                    if early { self.refresh(target, request, entry.generation, RefreshReason::Early) } else { None };
                Ok(Served { status: CacheStatus::Hit, payload: Payload::Cached((*entry).clone()), background })
            }
            Ok(Lookup::Stale(entry)) => {
                let background = self.refresh(target, request, entry.generation, RefreshReason::Stale);
                Ok(Served { status: CacheStatus::Stale, payload: Payload::Cached(entry), background })
            }
            Ok(Lookup::Miss { generation }) => self.fill(target, request, Some(generation)).await,
            Err(_) => self.fill(target, request, None).await,
        }
    }

    /// A background refresh of `target`, unless one is already running in this isolate.
    pub fn refresh(
        &self,
        target: &CacheTarget,
        request: OriginRequest,
        generation: u64,
        reason: RefreshReason,
    ) -> Option<Refresh> {
        let entry_key = target.entry_key(&self.deps.keys);
        if self.state.flights.in_flight(&entry_key) || !self.state.refreshing.borrow_mut().insert(entry_key.clone()) {
            return None;
        }
        let request = request.for_fill();
        let guard = Refreshing { state: Rc::clone(&self.state), entry_key };
        let this = self.clone();
        let target = target.clone();
        let work = async move {
            let _running = guard;
            this.refresh_now(&target, &request, generation).await
        };
        Some(Refresh { reason, work: work.boxed_local() })
    }

    /// Fills a miss (`generation` known) or bypasses the cache (`None`), single-flighted per key.
    async fn fill(
        &self,
        target: &CacheTarget,
        request: OriginRequest,
        generation: Option<u64>,
    ) -> Result<Served, LoadError> {
        let this = self.clone();
        let owned = target.clone();
        let own_request = request.clone();
        let led = Rc::new(std::cell::Cell::new(false));
        let leader = Rc::clone(&led);
        let work = move || {
            leader.set(true);
            async move {
                match generation {
                    Some(generation) => this.fill_under_lock(&owned, &request, generation).await,
                    None => this.bypass(&request).await,
                }
            }
        };
        let filled = self.state.flights.run(target.entry_key(&self.deps.keys), work, &self.deps.sleeper).await?;
        let personal = match &filled {
            Filled::Uncached(_, reason) => reason.is_personal(),
            Filled::Bypassed(response) => self.is_personal(target, response),
            Filled::Stored(_) | Filled::Waited(_) => false,
        };
        if personal && !led.get() {
            // The leader's answer was for the leader alone: this waiter asks for its own.
            let (response, _) = self.fetch_origin(&own_request).await?;
            let status = if matches!(filled, Filled::Bypassed(_)) { CacheStatus::Bypass } else { CacheStatus::Miss };
            return Ok(Served { status, payload: Payload::Passthrough(response), background: None });
        }
        let (status, payload) = match filled {
            Filled::Stored(entry) => (CacheStatus::Miss, Payload::Cached((*entry).clone())),
            Filled::Waited(entry) => (CacheStatus::Hit, Payload::Cached((*entry).clone())),
            Filled::Uncached(response, _) => (CacheStatus::Miss, Payload::Passthrough((*response).clone())),
            Filled::Bypassed(response) => (CacheStatus::Bypass, Payload::Passthrough((*response).clone())),
        };
        Ok(Served { status, payload, background: None })
    }

    /// Whether `response` was meant for its own caller only ([`NotStorable::is_personal`]).
    fn is_personal(&self, target: &CacheTarget, response: &OriginResponse) -> bool {
        let max = self.deps.settings.max_body_bytes;
        storable::check(response.status, &response.headers, response.body.len(), target.scope, max)
            .is_err_and(NotStorable::is_personal)
    }

    async fn fill_under_lock(&self, target: &CacheTarget, request: &OriginRequest, generation: u64) -> FillResult {
        let lock = lock_key(&self.deps.keys, &target.entry_key(&self.deps.keys));
        let token = self.deps.random.token();
        let acquire = acquire_command(&lock, &token, self.deps.settings.lock_ttl_ms.get());
        match self.deps.redis.command(acquire).await {
            Err(_) => self.bypass(request).await,
            Ok(reply) if lock_acquired(&reply) => {
                self.fetch_and_store(target, request, generation, Some(Held { key: &lock, token: &token })).await
            }
            Ok(_) => self.wait_for_fill(target, request, generation).await,
        }
    }

    /// Polls for the entry another isolate is filling; after `lock_wait_ms`, fetches itself.
    async fn wait_for_fill(&self, target: &CacheTarget, request: &OriginRequest, generation: u64) -> FillResult {
        let wait = self.deps.settings.lock_wait_ms;
        let polls = WAIT_POLLS.min(wait);
        for _ in 0..polls {
            self.deps.sleeper.sleep(wait / polls).await;
            let Ok(reply) = self.deps.redis.command(self.read_command(target)).await else {
                break;
            };
            if let Lookup::Fresh(entry) = self.classify(&reply) {
                let entry = Rc::new(entry);
                self.remember(target, &entry, self.deps.clock.now_ms());
                return Ok(Filled::Waited(entry));
            }
        }
        self.fetch_and_store(target, request, generation, None).await
    }

    async fn bypass(&self, request: &OriginRequest) -> FillResult {
        let (response, _) = self.fetch_origin(request).await?;
        Ok(Filled::Bypassed(Rc::new(response)))
    }

    /// Fetches and stores; a held lock is released with the write, or separately when nothing is
    /// written.
    async fn fetch_and_store(
        &self,
        target: &CacheTarget,
        request: &OriginRequest,
        generation: u64,
        lock: Option<Held<'_>>,
    ) -> FillResult {
        let fetched = self.fetch_origin(request).await;
        let now = self.deps.clock.now_ms();
        let built = fetched.map(|(response, fetch_ms)| {
            let entry = self.build_entry(target, &response, generation, fetch_ms, now);
            (response, entry)
        });
        match built {
            Ok((_, Ok(entry))) => {
                let entry = Rc::new(entry);
                // A failed write only costs a later miss; the response is served either way.
                let _ = self.store(target, &entry, lock).await;
                self.remember(target, &entry, now);
                Ok(Filled::Stored(entry))
            }
            Ok((response, Err(reason))) => {
                self.release_held(lock).await;
                Ok(Filled::Uncached(Rc::new(response), reason))
            }
            Err(e) => {
                self.release_held(lock).await;
                Err(e)
            }
        }
    }

    /// Background refresh: under the lock, fetch and store; keep the old copy if the origin fails.
    async fn refresh_now(&self, target: &CacheTarget, request: &OriginRequest, generation: u64) -> RefreshOutcome {
        let entry_key = target.entry_key(&self.deps.keys);
        let lock = lock_key(&self.deps.keys, &entry_key);
        let token = self.deps.random.token();
        match self.deps.redis.command(acquire_command(&lock, &token, self.deps.settings.lock_ttl_ms.get())).await {
            Err(e) => return RefreshOutcome::RedisFailed(e),
            Ok(reply) if !lock_acquired(&reply) => return RefreshOutcome::LockHeld,
            Ok(_) => {}
        }
        let outcome = match self.fetch_origin(request).await {
            Err(e) => RefreshOutcome::OriginFailed(e),
            Ok((response, fetch_ms)) => {
                let now = self.deps.clock.now_ms();
                match self.build_entry(target, &response, generation, fetch_ms, now) {
                    Ok(entry) => {
                        let entry = Rc::new(entry);
                        let stored = self.store(target, &entry, Some(Held { key: &lock, token: &token })).await;
                        return match stored {
                            Ok(()) => {
                                self.remember(target, &entry, now);
                                RefreshOutcome::Refreshed
                            }
                            Err(e) => RefreshOutcome::RedisFailed(e),
                        };
                    }
                    Err(reason) => {
                        self.state.layer.borrow_mut().remove(&entry_key);
                        match self.deps.redis.command(Command::del([entry_key])).await {
                            Ok(_) => RefreshOutcome::Removed(reason),
                            Err(e) => RefreshOutcome::RedisFailed(e),
                        }
                    }
                }
            }
        };
        self.release(&lock, &token).await;
        outcome
    }

    /// Fetches with the origin timeout; a 5xx answer counts as a failure. Returns the fetch time.
    async fn fetch_origin(&self, request: &OriginRequest) -> Result<(OriginResponse, u32), LoadError> {
        let started = self.deps.clock.now_ms();
        let fetch = pin!(self.deps.origin.fetch(request));
        let deadline = pin!(self.deps.sleeper.sleep(self.deps.settings.origin_timeout_ms.get()));
        let response = match select(fetch, deadline).await {
            Either::Left((result, _)) => result?,
            Either::Right(_) => return Err(LoadError::OriginTimeout),
        };
        if response.status >= 500 {
            return Err(LoadError::OriginStatus(response.status));
        }
        let took = self.deps.clock.now_ms().saturating_sub(started);
        Ok((response, u32::try_from(took).unwrap_or(u32::MAX)))
    }

    /// The entry to store for `response`, or why it may not be stored.
    fn build_entry(
        &self,
        target: &CacheTarget,
        response: &OriginResponse,
        generation: u64,
        fetch_ms: u32,
        now: u64,
    ) -> Result<Entry, NotStorable> {
        let settings = &self.deps.settings;
        storable::check(
            response.status,
            &response.headers,
            response.body.len(),
            target.scope,
            settings.max_body_bytes,
        )?;
        let fresh_ms = jittered_ttl_ms(&target.class, self.deps.random.unit());
        let headers = response
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                REPLAYED_HEADERS.contains(&lower.as_str()).then(|| (lower, value.clone()))
            })
            .collect();
        Ok(Entry {
            format_version: ENTRY_FORMAT,
            status: response.status,
            body: response.body.clone(),
            content_type: response.header("content-type").map(str::to_owned),
            etag: etag_for(&response.body),
            stored_ms: now,
            fresh_until_ms: now.saturating_add(fresh_ms),
            stale_until_ms: now.saturating_add(expiry(&target.class, fresh_ms)),
            fetch_ms,
            generation,
            tags: target.tags.clone(),
            headers,
        })
    }

    /// `SET entry value PX expiry`, and per tag `SADD` + `PEXPIRE … NX` + `PEXPIRE … GT` (the tag
    /// set lives as long as its longest-lived member), in one pipeline.
    async fn store(&self, target: &CacheTarget, entry: &Entry, lock: Option<Held<'_>>) -> Result<(), RedisError> {
        let entry_key = target.entry_key(&self.deps.keys);
        let px = entry.stale_until_ms.saturating_sub(entry.stored_ms).max(1);
        let lock_key_name = lock.as_ref().map_or_else(|| lock_key(&self.deps.keys, &entry_key), |h| h.key.to_owned());
        let mut keys = vec![entry_key, lock_key_name];
        keys.extend(entry.tags.iter().map(|tag| self.deps.keys.cache_tag(tag)));
        let args = [
            Arg::Str(entry.encode(self.deps.settings.compress_min_bytes)),
            Arg::from(px),
            Arg::from(lock.as_ref().map_or("", |h| h.token)),
        ];
        // The write, the tags and the lock's release: one command.
        self.deps.redis.eval(store_script(), &keys, &args).await.map(|_| ())
    }

    /// Gives a held lock back, if there is one.
    async fn release_held(&self, lock: Option<Held<'_>>) {
        if let Some(held) = lock {
            self.release(held.key, held.token).await;
        }
    }

    /// Gives the lock back; a failure only leaves it to expire.
    async fn release(&self, lock: &str, token: &str) {
        let (keys, args) = release_args(lock, token);
        let _ = self.deps.redis.eval(release_script(), &keys, &args).await;
    }

    fn remember(&self, target: &CacheTarget, entry: &Rc<Entry>, now: u64) {
        self.state.layer.borrow_mut().put(target.entry_key(&self.deps.keys), Rc::clone(entry), now);
    }
}

/// A fill lock this isolate holds: its key and the token that proves ownership.
#[derive(Debug, Clone, Copy)]
struct Held<'a> {
    key: &'a str,
    token: &'a str,
}

/// Marks a refresh as running in this isolate until it ends or is dropped.
struct Refreshing {
    state: Rc<IsolateState>,
    entry_key: String,
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        if let Ok(mut running) = self.state.refreshing.try_borrow_mut() {
            running.remove(&self.entry_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroU64};

    use futures::future::join_all;

    use super::*;
    use crate::cache::invalidate::InvalidationTarget;
    use crate::clock::{FakeClock, FakeRandom};
    use crate::testing::{ok, run_with_timer, Behaviour, FakeOrigin, FakeRedis, FakeTimer};

    type TestCache = CacheAside<Rc<FakeRedis>, Rc<FakeOrigin>, Rc<FakeTimer>>;

    const START: u64 = 1_000_000;
    const TTL: u64 = 60_000;
    const STALE: u64 = 30_000;

    struct Fixture {
        clock: Rc<FakeClock>,
        timer: Rc<FakeTimer>,
        redis: Rc<FakeRedis>,
        origin: Rc<FakeOrigin>,
        random: Rc<FakeRandom>,
    }

    fn settings() -> CacheSettings {
        CacheSettings {
            isolate_ttl_ms: 5_000,
            isolate_capacity: 100,
            isolate_max_bytes: 16 << 20,
            max_body_bytes: 1 << 20,
            compress_min_bytes: 1024,
            lock_ttl_ms: NonZeroU32::new(5_000).unwrap(),
            lock_wait_ms: 500,
            origin_timeout_ms: NonZeroU32::new(2_000).unwrap(),
            early_refresh_beta: 1.0,
        }
    }

    fn fixture() -> Fixture {
        let clock = Rc::new(FakeClock::new(START));
        let timer = Rc::new(FakeTimer::new(Rc::clone(&clock)));
        Fixture {
            redis: Rc::new(FakeRedis::new(Rc::clone(&clock))),
            origin: Rc::new(FakeOrigin::new(Rc::clone(&timer), r#"{"name":"app","on":true}"#)),
            random: Rc::new(FakeRandom::new(vec![0.5])),
            clock,
            timer,
        }
    }

    impl Fixture {
        /// A cache as one isolate sees it (its own layer, fills and counters).
        fn isolate(&self) -> TestCache {
            let deps = CacheDeps {
                redis: Client::new(Rc::clone(&self.redis)),
                origin: Rc::clone(&self.origin),
                sleeper: Rc::clone(&self.timer),
                clock: self.clock.clone(),
                random: self.random.clone(),
                keys: Keys::default(),
                settings: settings(),
            };
            CacheAside::new(deps, Rc::new(IsolateState::new(&settings())))
        }

        fn run<F: std::future::Future>(&self, fut: F) -> F::Output {
            run_with_timer(Some(&self.timer), fut)
        }

        fn entry_key(&self) -> String {
            target().entry_key(&Keys::default())
        }
    }

    fn target() -> CacheTarget {
        CacheTarget {
            route: "config".into(),
            ns: "config".into(),
            key: "app".into(),
            class: CacheClass {
                name: "STATIC_CONFIG".into(),
                ttl_ms: NonZeroU64::new(TTL).unwrap(),
                jitter: 0.1,
                stale_ms: STALE,
                browser_max_age_s: 60,
            },
            scope: CacheScope::Global,
            tags: vec!["config".into()],
        }
    }

    fn request() -> OriginRequest {
        OriginRequest { method: "GET".into(), path_and_query: "/config/app".into(), ..Default::default() }
    }

    fn body(served: &Served) -> &[u8] {
        match &served.payload {
            Payload::Cached(e) => &e.body,
            Payload::Passthrough(r) => &r.body,
        }
    }

    #[test]
    fn a_miss_fetches_once_stores_with_expiry_and_then_hits() {
        let f = fixture();
        let cache = f.isolate();
        let first = f.run(cache.get_or_load(&target(), request())).unwrap();
        assert_eq!(first.status, CacheStatus::Miss);
        assert_eq!(body(&first), br#"{"name":"app","on":true}"#);
        assert_eq!(f.origin.calls.get(), 1);
        let Payload::Cached(entry) = &first.payload else { panic!("stored entries are served as entries") };
        assert_eq!(entry.fresh_until_ms - entry.stored_ms, TTL, "jitter at r = 0.5 is zero");
        assert_eq!(entry.stale_until_ms - entry.fresh_until_ms, STALE);
        assert_eq!(entry.headers, [("content-language".to_owned(), "en".to_owned())]);
        assert_eq!(f.redis.pttl(&f.entry_key()), (TTL + STALE) as i64);

        // The same isolate answers from its layer without a Redis command.
        let before = f.redis.commands().len();
        let again = f.run(cache.get_or_load(&target(), request())).unwrap();
        assert_eq!(again.status, CacheStatus::Hit);
        assert_eq!(f.redis.commands().len(), before);

        // Another isolate reads Redis: one MGET.
        let other = f.isolate();
        let hit = f.run(other.get_or_load(&target(), request())).unwrap();
        assert_eq!((hit.status, body(&hit)), (CacheStatus::Hit, body(&first)));
        assert_eq!(&f.redis.commands()[before..], ["MGET"]);
        assert_eq!(f.origin.calls.get(), 1);
    }

    #[test]
    fn every_key_the_cache_writes_expires() {
        let f = fixture();
        let cache = f.isolate();
        f.run(cache.get_or_load(&target(), request())).unwrap();
        let keys = f.redis.keys();
        assert_eq!(keys.len(), 2, "the entry and its tag set; the lock is released: {keys:?}");
        for key in keys {
            assert!(f.redis.pttl(&key) > 0, "{key} has no expiry");
        }
    }

    #[test]
    fn fifty_concurrent_misses_in_one_isolate_make_one_origin_call() {
        let f = fixture();
        let cache = f.isolate();
        let t = target();
        let all = f.run(join_all((0..50).map(|_| cache.get_or_load(&t, request()))));
        assert_eq!(f.origin.calls.get(), 1);
        assert!(all.iter().all(|s| s.as_ref().is_ok_and(|s| s.status == CacheStatus::Miss)));
        assert!(all.iter().all(|s| body(s.as_ref().unwrap()) == br#"{"name":"app","on":true}"#));
        let commands = f.redis.commands();
        let misses: Vec<&str> = commands.iter().map(String::as_str).filter(|c| *c != "MGET").collect();
        assert_eq!(misses, ["SET", "EVALSHA"], "one lock taken, then one script writes the entry and frees the lock");
        assert!(cache.state().flights.is_empty());
    }

    #[test]
    fn waiters_of_an_answer_meant_for_one_caller_fetch_for_themselves() {
        let personal = |name: &str, value: &str| {
            let mut r = ok("for one caller");
            r.headers.push((name.to_owned(), value.to_owned()));
            r
        };
        let cases = [
            personal("Set-Cookie", "sid=leader"),
            personal("Cache-Control", "no-store"),
            personal("Cache-Control", "private, max-age=60"),
        ];
        for response in cases {
            let f = fixture();
            f.origin.set(Behaviour::Respond(response.clone()));
            let cache = f.isolate();
            let t = target();
            let all = f.run(join_all((0..5).map(|_| cache.get_or_load(&t, request()))));
            assert_eq!(f.origin.calls.get(), 5, "leader and each waiter fetched: {:?}", response.headers);
            assert!(all.iter().all(|s| s.as_ref().is_ok_and(|s| s.status == CacheStatus::Miss)));
            assert!(f.redis.get(&f.entry_key()).is_none());
        }
        // With Redis down the fill bypasses the cache; the rule is the same.
        let f = fixture();
        f.redis.down.set(true);
        f.origin.set(Behaviour::Respond(personal("Set-Cookie", "sid=leader")));
        let cache = f.isolate();
        let t = target();
        let all = f.run(join_all((0..4).map(|_| cache.get_or_load(&t, request()))));
        assert_eq!(f.origin.calls.get(), 4);
        assert!(all.iter().all(|s| s.as_ref().is_ok_and(|s| s.status == CacheStatus::Bypass)));
    }

    #[test]
    fn waiters_share_an_unstorable_answer_that_is_the_same_for_everyone() {
        let f = fixture();
        f.origin.set(Behaviour::Respond(OriginResponse { status: 404, body: b"none".to_vec(), ..Default::default() }));
        let cache = f.isolate();
        let t = target();
        let all = f.run(join_all((0..5).map(|_| cache.get_or_load(&t, request()))));
        assert_eq!(f.origin.calls.get(), 1, "a 404 is nobody's secret: one fetch");
        assert!(all.iter().all(|s| s.as_ref().is_ok_and(|s| body(s) == b"none")));
    }

    #[test]
    fn a_head_request_fills_and_refreshes_with_get() {
        let f = fixture();
        let head = OriginRequest { method: "HEAD".into(), ..request() };
        let served = f.run(f.isolate().get_or_load(&target(), head.clone())).unwrap();
        assert_eq!(served.status, CacheStatus::Miss);
        assert_eq!(f.origin.last_request.borrow().as_ref().map(|r| r.method.clone()).as_deref(), Some("GET"));
        assert_eq!(body(&served), br#"{"name":"app","on":true}"#, "the entry holds the GET body");
        let entry = Entry::decode(&f.redis.get(&f.entry_key()).unwrap(), 1 << 20).unwrap();
        assert_eq!(entry.body, br#"{"name":"app","on":true}"#);
        // A stale entry refreshed on a HEAD is refreshed with a GET too.
        f.clock.advance(TTL + 1_000);
        *f.origin.last_request.borrow_mut() = None;
        let stale = f.run(f.isolate().get_or_load(&target(), head)).unwrap();
        assert_eq!(stale.status, CacheStatus::Stale);
        assert_eq!(f.run(stale.background.unwrap().run()), RefreshOutcome::Refreshed);
        assert_eq!(f.origin.last_request.borrow().as_ref().map(|r| r.method.clone()).as_deref(), Some("GET"));
        let entry = Entry::decode(&f.redis.get(&f.entry_key()).unwrap(), 1 << 20).unwrap();
        assert!(!entry.body.is_empty());
    }

    #[test]
    fn a_waiter_gets_the_entry_another_isolate_fills() {
        let f = fixture();
        let lock = lock_key(&Keys::default(), &f.entry_key());
        f.redis.exec_strs(&["SET", &lock, "another-isolate", "NX", "PX", "5000"]).unwrap();
        let cache = f.isolate();
        let other_fills = async {
            f.timer.sleep(150).await;
            let mut e = crate::cache::entry::tests::sample(b"filled elsewhere");
            e.generation = 0;
            e.stored_ms = f.clock.now_ms();
            e.fresh_until_ms = e.stored_ms + TTL;
            e.stale_until_ms = e.fresh_until_ms + STALE;
            f.redis.exec_strs(&["SET", &f.entry_key(), &e.encode(0), "PX", "90000"]).unwrap();
        };
        let (served, ()) = f.run(futures::future::join(cache.get_or_load(&target(), request()), other_fills));
        let served = served.unwrap();
        assert_eq!(served.status, CacheStatus::Hit);
        assert_eq!(body(&served), b"filled elsewhere");
        assert_eq!(f.origin.calls.get(), 0);
        assert_eq!(f.clock.now_ms(), START + 200, "found on the second poll");
        assert_eq!(f.redis.get(&lock).as_deref(), Some(&b"another-isolate"[..]), "the owner's lock is untouched");
    }

    #[test]
    fn a_waiter_fetches_itself_after_the_lock_wait() {
        let f = fixture();
        let lock = lock_key(&Keys::default(), &f.entry_key());
        f.redis.exec_strs(&["SET", &lock, "stuck-isolate", "NX", "PX", "5000"]).unwrap();
        let cache = f.isolate();
        let served = f.run(cache.get_or_load(&target(), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Miss);
        assert_eq!(f.origin.calls.get(), 1);
        assert_eq!(f.redis.commands().iter().filter(|c| *c == "MGET").count(), 1 + WAIT_POLLS as usize);
        assert!(f.redis.get(&f.entry_key()).is_some(), "the waiter stores what it fetched");
        assert_eq!(f.redis.get(&lock).as_deref(), Some(&b"stuck-isolate"[..]));
    }

    /// Fills the entry at START, then moves the clock into its stale window.
    fn stale_fixture() -> Fixture {
        let f = fixture();
        f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        f.clock.advance(TTL + 1_000);
        f
    }

    #[test]
    fn a_stale_entry_is_served_at_once_and_refreshed_in_the_background() {
        let f = stale_fixture();
        f.origin.set(Behaviour::Respond(ok(r#"{"name":"app","on":false}"#)));
        let cache = f.isolate();
        let served = f.run(cache.get_or_load(&target(), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Stale);
        assert_eq!(body(&served), br#"{"name":"app","on":true}"#);
        assert_eq!(f.origin.calls.get(), 1, "nothing waits for the origin");
        let refresh = served.background.expect("a refresh is due");
        assert_eq!(refresh.reason(), RefreshReason::Stale);
        assert!(cache.refresh(&target(), request(), 0, RefreshReason::Stale).is_none(), "one refresh per key");
        assert_eq!(f.run(refresh.run()), RefreshOutcome::Refreshed);
        assert_eq!(f.origin.calls.get(), 2);
        let next = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        assert_eq!((next.status, body(&next)), (CacheStatus::Hit, &br#"{"name":"app","on":false}"#[..]));
        assert!(
            cache.refresh(&target(), request(), 0, RefreshReason::Stale).is_some(),
            "finished refreshes are forgotten"
        );
    }

    #[test]
    fn with_the_origin_down_a_stale_copy_is_served_and_kept() {
        let f = stale_fixture();
        f.origin.set(Behaviour::Down);
        let served = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Stale);
        let outcome = f.run(served.background.unwrap().run());
        assert_eq!(outcome, RefreshOutcome::OriginFailed(LoadError::OriginUnreachable("connection refused".into())));
        assert_eq!(outcome.failure(), Some("origin_unreachable"));
        assert_eq!(RefreshOutcome::Refreshed.failure(), None);
        assert_eq!(RefreshOutcome::LockHeld.failure(), None);
        assert_eq!(RefreshOutcome::RedisFailed(RedisError::Timeout(5)).failure(), Some("redis_unavailable"));
        let again = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        assert_eq!((again.status, body(&again)), (CacheStatus::Stale, &br#"{"name":"app","on":true}"#[..]));
        assert!(f.redis.keys().iter().all(|k| !k.contains(":lock:")), "the lock was released");
    }

    #[test]
    fn without_a_stale_copy_origin_failures_are_errors_and_nothing_is_stored() {
        let cases: [(Behaviour, u32, LoadError); 3] = [
            (Behaviour::Down, 20, LoadError::OriginUnreachable("connection refused".into())),
            (
                Behaviour::Respond(OriginResponse { status: 503, ..Default::default() }),
                20,
                LoadError::OriginStatus(503),
            ),
            (Behaviour::Respond(ok("late")), 10_000, LoadError::OriginTimeout),
        ];
        for (behaviour, latency, expected) in cases {
            let f = fixture();
            f.origin.set(behaviour);
            f.origin.latency_ms.set(latency);
            let err = f.run(f.isolate().get_or_load(&target(), request())).unwrap_err();
            assert_eq!(err, expected);
            assert!(f.redis.get(&f.entry_key()).is_none());
        }
        assert_eq!(LoadError::OriginTimeout.http_status(), 504);
        assert_eq!(LoadError::OriginStatus(500).http_status(), 502);
        assert_eq!(LoadError::OriginUnreachable(String::new()).http_status(), 502);
    }

    #[test]
    fn with_redis_down_the_cache_steps_aside() {
        let f = fixture();
        f.redis.down.set(true);
        let cache = f.isolate();
        let served = f.run(cache.get_or_load(&target(), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Bypass);
        assert_eq!(body(&served), br#"{"name":"app","on":true}"#);
        assert!(matches!(served.payload, Payload::Passthrough(_)));
        // The edge's own read failed: the same.
        let served = f.run(cache.serve(&target(), Err(RedisError::Timeout(50)), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Bypass);
        f.redis.down.set(false);
        assert!(f.redis.keys().is_empty());
    }

    #[test]
    fn responses_that_may_not_be_stored_pass_through() {
        let mut cookie = ok("personal");
        cookie.headers.push(("Set-Cookie".into(), "sid=1".into()));
        let not_found = OriginResponse { status: 404, body: b"no such config".to_vec(), ..Default::default() };
        for response in [cookie, not_found] {
            let f = fixture();
            f.origin.set(Behaviour::Respond(response.clone()));
            let served = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
            assert_eq!(served.status, CacheStatus::Miss);
            assert_eq!(served.payload, Payload::Passthrough(response));
            assert!(f.redis.get(&f.entry_key()).is_none());
        }
    }

    #[test]
    fn a_refresh_finding_the_resource_gone_deletes_the_entry() {
        let f = stale_fixture();
        f.origin.set(Behaviour::Respond(OriginResponse { status: 404, ..Default::default() }));
        let served = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        let outcome = f.run(served.background.unwrap().run());
        assert_eq!(outcome, RefreshOutcome::Removed(NotStorable::Status(404)));
        assert!(f.redis.get(&f.entry_key()).is_none());
    }

    #[test]
    fn xfetch_asks_a_reader_near_expiry_for_an_early_refresh() {
        let f = fixture();
        f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        // Fetch took 20 ms; with r = 0.5 the lead is 20·ln 2 ≈ 14 ms.
        f.clock.set(START + 20 + TTL - 100);
        let far = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        assert!(far.background.is_none());
        f.clock.set(START + 20 + TTL - 10);
        let near = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        assert_eq!(near.status, CacheStatus::Hit);
        let refresh = near.background.expect("early refresh");
        assert_eq!(refresh.reason(), RefreshReason::Early);
        assert_eq!(f.run(refresh.run()), RefreshOutcome::Refreshed);
        assert_eq!(f.origin.calls.get(), 2);
    }

    #[test]
    fn a_namespace_bump_turns_entries_into_misses() {
        let f = fixture();
        let cache = f.isolate();
        f.run(cache.get_or_load(&target(), request())).unwrap();
        let inv = f.run(cache.invalidate(&InvalidationTarget::Namespace("config".into()), &[target().class])).unwrap();
        assert_eq!((inv.kind, inv.deleted), ("namespace", 0));
        assert!(inv.generation.unwrap() >= START);
        assert!(f.redis.pttl(&Keys::default().cache_generation("config")) > 0);
        let served = f.run(cache.get_or_load(&target(), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Miss, "the isolate layer forgot it and Redis misses");
        assert_eq!(f.origin.calls.get(), 2);
        let hit = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        assert_eq!(hit.status, CacheStatus::Hit, "the refill carries the new generation");
        let (channel, message) = f.redis.published.borrow()[0].clone();
        assert_eq!(channel, "system:cache_invalidation");
        assert!(message.starts_with(r#"{"kind":"namespace","target":"config","deleted":0,"#));
    }

    #[test]
    fn key_and_tag_invalidation_delete_entries_and_clear_the_layer() {
        let f = fixture();
        let cache = f.isolate();
        f.run(cache.get_or_load(&target(), request())).unwrap();
        let key = InvalidationTarget::Key { ns: "config".into(), key: "app".into() };
        assert_eq!(f.run(cache.invalidate(&key, &[])).unwrap().deleted, 1);
        assert_eq!(f.run(cache.get_or_load(&target(), request())).unwrap().status, CacheStatus::Miss);
        let tag = InvalidationTarget::Tag("config".into());
        assert_eq!(f.run(cache.invalidate(&tag, &[])).unwrap().deleted, 1);
        assert!(f.redis.keys().is_empty(), "entry and tag set are gone: {:?}", f.redis.keys());
        assert_eq!(f.run(cache.get_or_load(&target(), request())).unwrap().status, CacheStatus::Miss);
        assert_eq!(f.redis.published.borrow().len(), 2);
    }

    #[test]
    fn a_corrupted_value_is_a_miss_and_is_overwritten() {
        let f = fixture();
        f.redis.exec_strs(&["SET", &f.entry_key(), "tgc1:{\"v\":1,broken", "PX", "60000"]).unwrap();
        let served = f.run(f.isolate().get_or_load(&target(), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Miss);
        let value = f.redis.get(&f.entry_key()).unwrap();
        assert!(Entry::decode(&value, 1 << 20).is_ok());
    }

    #[test]
    fn the_edge_read_path_classifies_its_pipeline_reply() {
        let f = fixture();
        let cache = f.isolate();
        f.run(cache.get_or_load(&target(), request())).unwrap();
        let other = f.isolate();
        assert!(other.local(&target()).is_none());
        let client = Client::new(Rc::clone(&f.redis));
        let replies = f.run(client.pipeline(vec![Command::new("PING"), other.read_command(&target())])).unwrap();
        let lookup = other.classify(replies[1].as_ref().unwrap());
        assert!(matches!(lookup, Lookup::Fresh(_)));
        let served = f.run(other.serve(&target(), Ok(lookup), request())).unwrap();
        assert_eq!(served.status, CacheStatus::Hit);
        assert!(other.local(&target()).is_some(), "the layer keeps what Redis returned");
    }
}
