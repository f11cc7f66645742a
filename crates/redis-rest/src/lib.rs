//! `redis-rest`: a local Upstash-compatible Redis REST server in front of a real redis-server,
//! so Tollgate (and the official JS clients) can be tested against the protocol they meet in
//! production. The protocol as implemented is described in `docs/upstash-rest-protocol.md`.
#![forbid(unsafe_code)]
#![cfg(not(target_arch = "wasm32"))]

pub mod args;
pub mod command;
pub mod config;
pub mod connection;
pub mod deny;
pub mod encode;
pub mod error;
pub mod execute;
pub mod http;
pub mod percent;
pub mod pool;
pub mod readonly;
pub mod resp;
pub mod response;
pub mod scan_withtype;
pub mod scripts;
pub mod server;
pub mod stats;
pub mod subscribe;

pub use command::Command;
pub use config::{Config, RedisTarget, Token};
pub use error::BackendError;
pub use execute::Gateway;
pub use resp::Reply;
pub use server::{serve, shutdown_signal};
pub use stats::{Endpoint, Stats};
