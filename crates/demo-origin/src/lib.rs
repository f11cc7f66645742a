//! The demo origin of Tollgate's local stack, end-to-end tests and benchmarks.
//!
//! It serves configuration documents (`/config/{name}`), deterministic RAG context
//! (`POST /rag/context`), OpenAI-compatible chat completions with deterministic usage, streamed
//! or not (`POST /v1/chat/completions`, see [`chat`]), and echoes everything else; it counts the requests that reach it and
//! delays or fails them on demand, globally (`/_origin/settings`, start flags) or per request
//! (`X-Origin-Delay-Ms`, `X-Origin-Fail`), and adds response headers asked for in the query
//! (`_header=Name:Value`), so tests can see what the gate let through. It also stands in for an
//! auth provider: a key set and test tokens signed with ES256, RS256 and EdDSA ([`tokens`]).
#![forbid(unsafe_code)]

pub mod behaviour;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config_store;
pub mod echo;
pub mod extra_headers;
pub mod hits;
pub mod origin;
pub mod problem;
pub mod rag;
pub mod route;
pub mod server;
pub mod tokens;

pub use behaviour::{Behaviour, FailMode};
pub use origin::Origin;
pub use server::serve;
