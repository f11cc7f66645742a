//! The edge: requests in, answers out. Configuration from the environment, the gate (limits,
//! cache, proxy), the admin API, headers (CORS, problem+json) and the wasm glue.

pub mod admin;
pub mod body;
pub mod config;
pub mod cors;
pub mod gate;
pub mod http;
pub mod problem;
pub mod proxy;
pub mod signature;
pub mod stats;
#[cfg(target_arch = "wasm32")]
mod worker;

pub use config::{Config, ConfigError};
pub use gate::{Gate, Handled, Outcome, ProxyPlan};
pub use http::{EdgeRequest, EdgeResponse};
pub use problem::Problem;
