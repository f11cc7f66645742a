//! The edge: requests in, answers out. The entrance ([`router`]) sends each request to the gated
//! pipeline ([`gate`]) or the admin API ([`admin`]); both share the isolate's [`Services`].
//! Configuration, headers (CORS, problem+json), errors and the wasm glue live beside them.

pub mod admin;
mod aftercare;
pub mod body;
mod caller;
pub mod config;
pub mod cors;
mod decide;
pub mod error;
pub mod events;
mod gate;
pub mod http;
pub mod mode;
pub mod problem;
pub mod proxy;
pub mod respond;
pub mod router;
pub mod services;
pub mod signature;
pub mod stats;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "wasm32")]
mod worker;

pub use caller::Caller;
pub use config::{Config, ConfigError};
pub use error::{AdminError, GateError};
pub use events::{EventChannel, EventsPlan};
pub use http::{EdgeRequest, EdgeResponse};
pub use problem::{Problem, ProblemKind};
pub use respond::{Handled, LimitMode, Outcome, ProxyPlan};
pub use router::Edge;
pub use services::{Background, Platform, Services};
