//! The Workers runtime as the wasm meets it: `host.js`, a handful of JS functions that each do
//! in one call what would otherwise cross the JS↔wasm boundary once per header, property or
//! promise, and the plain encoding they share with Rust (header sets as "name:value" lines).
//!
//! Profiles of the Worker showed those crossings (a `Headers.append` per header, a timer object
//! and two promise callbacks per wait) costing more CPU than the gate's own decisions.

mod lines;

pub use lines::{header_lines, parse_header_lines, push_header_line, RequestHead};

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod task;

#[cfg(target_arch = "wasm32")]
pub use bindings::*;
#[cfg(target_arch = "wasm32")]
pub use task::{spawn, Settled};
