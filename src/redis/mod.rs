//! The Upstash REST client: commands as values, replies decoded by the protocol's exact rules,
//! errors classified by what to do about them, scripts run EVALSHA-first. One client serves the
//! Worker (fetch under workerd) and native code (CLI, tests) alike, over [`Transport`].
//!
//! Every request asks for `Upstash-Encoding: base64`, so values are raw bytes ([`Reply::Bulk`])
//! and only the top-level status `OK` is [`Reply::Ok`] ([`decode`] has the exact rules). Batches
//! answer one `Result` per command inside an outer `Result` that fails the batch as a whole
//! (transport, HTTP status, a discarded transaction).
//!
//! Scripts ride in the one `/pipeline` of a request as [`Entry::Script`]: the client sends them
//! as `EVALSHA`, and only the entries answered `NOSCRIPT` go again as `EVAL`, in one more
//! `/pipeline`, their results put back in place — two requests after a `SCRIPT FLUSH` or a
//! restart, one otherwise:
//!
//! ```no_run
//! use tollgate::redis::{Arg, Client, Command, Entry, RedisError, ReqwestTransport, Script};
//!
//! async fn check(client: &Client<ReqwestTransport>, limits: &Script) -> Result<(), RedisError> {
//!     let keys = ["factory:ratelimit:v1:{u1}:hour".to_owned()];
//!     let results = client
//!         .pipeline_with_scripts(vec![
//!             Entry::script(limits, &keys, &[Arg::Int(1)]),
//!             Command::get("factory:cache:v1:config:site").into(),
//!         ])
//!         .await?;
//!     let (_decision, _cached) = (&results[0], &results[1]);
//!     Ok(())
//! }
//! ```

mod breaker;
pub mod budget;
mod client;
mod command;
pub mod decode;
mod error;
mod fast;
#[cfg(target_arch = "wasm32")]
mod fetch;
mod reply;
mod script;
mod transport;

pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use budget::BudgetConfig;
pub use client::{BatchResult, Client, Entry};
pub use command::{Arg, Command};
pub use error::{RedisError, RedisErrorKind};
#[cfg(target_arch = "wasm32")]
pub use fetch::FetchTransport;
pub use reply::Reply;
pub use script::Script;
pub use transport::{HttpReply, ReqwestTransport, Transport};
