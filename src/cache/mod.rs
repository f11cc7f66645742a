//! Cache-aside for hot data: entries in Redis with jittered TTLs, a short-lived in-isolate layer,
//! single-flight fills under a Redis lock, stale-while-revalidate, stale-if-error, XFetch early
//! refresh and cheap invalidation (exact key, glob pattern, tag, whole namespace).
//!
//! The edge reads an entry in the same `/pipeline` as the rate-limit check ([`read_command`],
//! [`classify_read`]) and hands the resulting [`Lookup`] to [`CacheAside::serve`], which answers
//! with a [`Served`] response and, at times, a [`Refresh`] to run in `ctx.wait_until`.
//!
//! Guarantees, in one place:
//! - nothing is written without an expiry: an entry lives `fresh TTL ± jitter + stale window`;
//! - only 2xx responses without `Set-Cookie`, `no-store` or (for shared entries) `private` are
//!   stored, and a value that fails to decode is a miss, never served;
//! - one isolate makes one origin fetch per key at a time ([`SingleFlight`]); across isolates a
//!   Redis lock lets one fill while the others wait at most `lock_wait_ms`;
//! - the in-isolate layer serves an entry at most `isolate_ttl_ms` after it was read, which bounds
//!   how long an invalidation takes to reach every location;
//! - when Redis fails the cache steps aside (`BYPASS`), it never turns a request into a 5xx.

mod aside;
mod entry;
pub mod http;
mod invalidate;
mod isolate;
pub mod key;
mod lock;
mod lookup;
mod origin;
mod single_flight;
mod status;
pub mod storable;
pub mod ttl;
mod warm;

pub use aside::{
    CacheAside, CacheDeps, CacheTarget, FillLockPlan, IsolateState, LoadError, Payload, Refresh, RefreshOutcome,
    RefreshReason, Served, WAIT_POLLS,
};
pub use entry::{Entry, EntryError, ENTRY_FORMAT, MAX_DECODED_BODY_BYTES, REPLAYED_HEADERS};
pub use invalidate::{
    bump_script, entry_match, key_for_write, tag_args, tag_script, Invalidation, InvalidationTarget, Invalidator,
    WriteTarget, INVALIDATION_CHANNEL,
};
pub use isolate::IsolateCache;
pub use key::KeyError;
pub use lock::{acquire_command, lock_acquired, lock_key, release_args, release_script, store_script, LockRelease};
pub use lookup::{classify_read, classify_read_limited, read_command, Lookup};
pub use origin::{Origin, OriginError, OriginRequest, OriginResponse};
pub use single_flight::SingleFlight;
pub use status::CacheStatus;
pub use storable::NotStorable;
pub use warm::{warm, Warmed};
