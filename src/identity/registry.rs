//! The API-key registry in Redis, as one isolate sees it: resolving a presented key (through a
//! bounded cache of recent outcomes, with concurrent lookups of one key sharing ONE Redis
//! request), creating, listing and revoking keys.
//!
//! While Redis cannot be read, a key verified before (however long ago, until evicted) keeps its
//! record; a key never verified is [`RegistryError::Unavailable`], never anonymous.

use std::cell::RefCell;
use std::rc::Rc;

use thiserror::Error;

use crate::cache::SingleFlight;
use crate::clock::{Clock, Random, Sleeper};
use crate::keys::Keys;
use crate::redis::{Client, RedisError, Reply, Transport};

use super::api_key::{self, KeyCache, KeyRecord};
use super::AuthError;

/// API-key lookups kept per isolate.
pub const KEY_CACHE_CAPACITY: usize = 4096;

/// Why a key could not be resolved or a registry operation not done.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// The key is malformed, unknown or revoked (`401`).
    #[error(transparent)]
    Refused(#[from] AuthError),
    /// The registry could not be read, and the key was never verified here.
    #[error("the key registry could not be read: {0}")]
    Unavailable(RedisError),
    /// Tollgate runs without Redis: there is no registry.
    #[error("API keys need Redis; Tollgate runs in memory mode")]
    NotConfigured,
    /// A new key collided with an existing id or hash (try again).
    #[error("a key with this id already exists")]
    Conflict,
}

/// The registry of one isolate.
pub struct KeyRegistry<T: Transport, S: Sleeper> {
    redis: Option<Client<T>>,
    keys: Keys,
    clock: Rc<dyn Clock>,
    sleeper: Rc<S>,
    cache: RefCell<KeyCache>,
    flights: SingleFlight<String, Result<Reply, RedisError>>,
}

impl<T: Transport + Clone + 'static, S: Sleeper + 'static> KeyRegistry<T, S> {
    /// A registry over `redis` (`None` in memory mode), keeping found keys `positive_ttl_ms`.
    pub fn new(
        redis: Option<Client<T>>,
        keys: Keys,
        clock: Rc<dyn Clock>,
        sleeper: Rc<S>,
        positive_ttl_ms: u64,
    ) -> Self {
        Self {
            redis,
            keys,
            clock,
            sleeper,
            cache: RefCell::new(KeyCache::new(KEY_CACHE_CAPACITY, positive_ttl_ms)),
            flights: SingleFlight::new(),
        }
    }

    /// Whether `key` was verified in this isolate before (its record is remembered, fresh or not).
    pub fn knows(&self, key: &str) -> bool {
        self.cache.borrow().last_known(&api_key::key_hash(key)).is_some()
    }

    /// What this isolate knows of `key` and may still act on without asking Redis: a record or
    /// a refusal within its cache time. `None`: the key must be verified (by a lookup, or by a
    /// check that reads its record).
    pub fn fresh(&self, key: &str) -> Option<Result<KeyRecord, AuthError>> {
        self.cache.borrow_mut().get(&api_key::key_hash(key), self.clock.now_ms())
    }

    /// Remembers what a check that read `key`'s record found, as a lookup's outcome.
    pub fn learn(&self, key: &str, outcome: Result<KeyRecord, AuthError>) {
        self.cache.borrow_mut().put(&api_key::key_hash(key), outcome, self.clock.now_ms());
    }

    /// The record of a presented key.
    pub async fn resolve(&self, key: &str) -> Result<KeyRecord, RegistryError> {
        if api_key::parse(key).is_none() {
            return Err(AuthError::Malformed("not a Tollgate API key").into());
        }
        let hash = api_key::key_hash(key);
        if let Some(cached) = self.cache.borrow_mut().get(&hash, self.clock.now_ms()) {
            return cached.map_err(RegistryError::Refused);
        }
        let redis = self.redis.as_ref().ok_or(RegistryError::NotConfigured)?;
        // A lookup waits up to the budget's ceiling: in a cold burst the isolate itself is the
        // queue, and a slow answer is not a missing one (a failed one demotes the caller).
        let reply = self.lookup(redis, &hash).await;
        let outcome = match reply {
            Ok(reply) => api_key::parse_lookup(&reply),
            Err(e) => {
                return self.cache.borrow().last_known(&hash).ok_or(RegistryError::Unavailable(e));
            }
        };
        self.cache.borrow_mut().put(&hash, outcome.clone(), self.clock.now_ms());
        outcome.map_err(RegistryError::Refused)
    }

    /// One lookup of `hash` in the registry, shared by every concurrent caller of this isolate.
    async fn lookup(&self, redis: &Client<T>, hash: &str) -> Result<Reply, RedisError> {
        let command = api_key::lookup_command(&self.keys, hash);
        let client = redis.clone();
        self.flights.run(hash.to_owned(), || async move { client.command_patient(command).await }, &*self.sleeper).await
    }

    /// Creates a key for `subject_hash` in `tier`: the plaintext (shown once) and its record.
    pub async fn create(
        &self,
        random: &dyn Random,
        subject_hash: &str,
        tier: &str,
        name: Option<String>,
    ) -> Result<(String, KeyRecord), RegistryError> {
        let redis = self.redis.as_ref().ok_or(RegistryError::NotConfigured)?;
        let (key, mut record) = api_key::generate(random, subject_hash, tier, self.clock.now_ms());
        record.name = name;
        let hash = api_key::key_hash(&key);
        let replies = redis
            .multi_exec(api_key::create_commands(&self.keys, &record, &hash))
            .await
            .map_err(RegistryError::Unavailable)?;
        let replies: Vec<Reply> = replies.into_iter().filter_map(Result::ok).collect();
        if !api_key::created(&replies) {
            return Err(RegistryError::Conflict);
        }
        Ok((key, record))
    }

    /// Every live key's record, sorted by id.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, RegistryError> {
        let redis = self.redis.as_ref().ok_or(RegistryError::NotConfigured)?;
        let index = redis.command(api_key::index_command(&self.keys)).await.map_err(RegistryError::Unavailable)?;
        let entries = api_key::parse_index(&index);
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let lookups = entries.iter().map(|(_, hash)| api_key::lookup_command(&self.keys, hash)).collect();
        let replies = redis.pipeline(lookups).await.map_err(RegistryError::Unavailable)?;
        Ok(replies.into_iter().flatten().filter_map(|r| api_key::parse_lookup(&r).ok()).collect())
    }

    /// Revokes the key with `id`; `false` when no live key has it.
    pub async fn revoke(&self, id: &str) -> Result<bool, RegistryError> {
        let redis = self.redis.as_ref().ok_or(RegistryError::NotConfigured)?;
        if !api_key::is_key_id(id) {
            return Ok(false);
        }
        let reply =
            redis.command(api_key::index_lookup_command(&self.keys, id)).await.map_err(RegistryError::Unavailable)?;
        let Some(hash) = api_key::parse_index_lookup(&reply) else { return Ok(false) };
        redis
            .multi_exec(api_key::revoke_commands(&self.keys, id, &hash, self.clock.now_ms()))
            .await
            .map_err(RegistryError::Unavailable)?;
        self.cache.borrow_mut().remove(&hash);
        Ok(true)
    }
}
