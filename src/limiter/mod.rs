//! The rate limiter: every limit that applies to a request (tier or override, and route) decided
//! at once, all or nothing, by one Lua script on Redis, with pure Rust models as its specification
//! and as the in-isolate fallback.
//!
//! - one file per algorithm ([`fixed_window`], [`sliding_window`], [`token_bucket`], [`gcra`]),
//!   each `decide(state, now_ms, limit, cost) -> (Verdict, Option<State>)`, no I/O, no clock;
//! - [`evaluate`], the all-or-nothing rule over a limit set, mirrored by `scripts/check.lua`;
//! - [`Check`] builds the script's one `EVALSHA` (one billed command per check, however many
//!   limits) and [`parse_reply`] reads it back into a [`Decision`];
//! - units other than requests are reserved in the check and settled after the answer
//!   ([`Settlement`], `scripts/settle.lua`, model in [`settle`]); concurrency slots are leases
//!   with a deadline in the same check, ended by [`Release`] (`scripts/release.lua`, model in
//!   [`concurrency`]); each reservation is recorded in flight until it settles
//!   ([`reservations`]); shadow limits are counted but never refuse; quota warnings are published
//!   from inside the scripts;
//! - [`Override`]: per-subject tier and limits, changed without a redeploy;
//! - [`rate_limit_headers`]: the `X-RateLimit-*`, IETF `RateLimit*` and `Retry-After` headers;
//! - [`RemoteLimiter`]: the check on Redis in one round trip, with a command riding along;
//! - [`MemoryLimiter`], [`BlockCache`]: the fallback and the local block list, both bounded and
//!   driven by time passed in (the circuit breaker guards every Redis call: [`crate::redis::Breaker`]).

mod block_cache;
mod check;
pub mod concurrency;
mod decision;
mod error;
pub mod fixed_window;
pub mod gcra;
mod headers;
mod key_check;
mod memory;
mod model;
mod overrides;
mod remote;
pub mod reservations;
pub mod settle;
pub mod sliding_window;
pub mod token_bucket;
mod usage;

pub use block_cache::BlockCache;
#[cfg(any(test, feature = "testing"))]
pub use check::encode_reply;
pub use check::{
    check_and_read_script, check_key_and_read_script, check_key_script, check_script, parse_reply, parse_settle_reply,
    release_script, settle_script, Check, Mode, Release, Reservation, ScriptCall, SettleReply, Settlement, Slot,
};
pub use concurrency::Leases;
pub use decision::{ConcurrencyState, Decision, LimitState, Snapshot, Warning};
pub use error::LimiterError;
pub use headers::{rate_limit_headers, SHADOW_DENIED_HEADER};
pub use key_check::{parse_key_reply, KeyCheck, KeyChecked};
pub use memory::MemoryLimiter;
pub use model::{
    check_bounds, decide, evaluate, merge_shared, Charge, Crossing, Evaluation, Outcome, SlotRequest, State, Verdict,
    MAX_LIMIT_TIMES_WINDOW, MAX_WINDOW_MS,
};
pub use overrides::{Override, OverrideError, MAX_OVERRIDE_LIMITS, MAX_OVERRIDE_NAME};
pub use remote::{Checked, FillLock, RemoteError, RemoteLimiter};
pub use reservations::{InFlight, Reservations};
pub use usage::UsageMeter;

/// Default sizes of the bounded in-isolate structures.
pub mod capacity {
    pub use super::block_cache::DEFAULT_CAPACITY as BLOCK_CACHE;
    pub use super::memory::DEFAULT_CAPACITY as MEMORY_LIMITER;
}
