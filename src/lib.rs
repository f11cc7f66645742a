//! Tollgate: tiered rate limiting and cache-aside at the edge, over the Upstash Redis REST protocol.
//!
//! The core (policy, identity, key naming, the Redis REST client, the limiter algorithms and the
//! cache policy) is plain Rust that builds and is tested natively; only [`edge::worker`] touches
//! `worker` types and exists on wasm32 alone.
#![forbid(unsafe_code)]

pub mod cache;
pub mod clock;
pub mod edge;
pub mod host;
pub mod identity;
pub mod keys;
pub mod limiter;
pub mod log;
pub mod path;
pub mod policy;
pub mod redis;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use policy::{Policy, PolicyError};
