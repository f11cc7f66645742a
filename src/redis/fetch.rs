//! The Worker's transport: the runtime's own `fetch` (through `host.js`, one call per exchange),
//! raced against the budget.
//!
//! It speaks the same protocol as [`super::ReqwestTransport`] with less work per call: no URL
//! parsing or header-map conversion, and no `AbortController`. Profiles of the Worker showed
//! reqwest's wasm client aborting a controller after every request, completed or not, at about a
//! tenth of the isolate's CPU. Here a request that overruns its budget is abandoned (its answer is
//! ignored, and the runtime cancels it when the invocation ends); one that completes costs nothing
//! more.

use wasm_bindgen::{JsCast, JsValue};

use super::budget::BudgetConfig;
use super::transport::{now_ms, Budget};
use super::{HttpReply, RedisError, Transport};

/// The Upstash REST protocol over the global `fetch`.
#[derive(Debug, Clone)]
pub struct FetchTransport {
    base_url: String,
    authorization: String,
    budget: Budget,
}

impl FetchTransport {
    /// A transport to the REST server at `base_url` (`http://` or `https://`), authenticating with
    /// `token`, giving every request the time `budget` allows.
    pub fn new(base_url: &str, token: &str, budget: BudgetConfig) -> Result<Self, RedisError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let host = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(RedisError::Transport("invalid REST URL: expected http(s)://host".to_owned()));
        }
        if token.is_empty() || token.chars().any(|c| c.is_control() || !c.is_ascii()) {
            return Err(RedisError::Transport("invalid REST token: not a valid header value".to_owned()));
        }
        Ok(Self { base_url: trimmed.to_owned(), authorization: format!("Bearer {token}"), budget: Budget::new(budget) })
    }
}

/// The text of a rejected promise's reason.
fn reason(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| "fetch failed".to_owned())
}

impl Transport for FetchTransport {
    async fn post(&self, path: &str, body: String, sync_token: Option<String>) -> Result<HttpReply, RedisError> {
        self.send(path, body, sync_token, false).await
    }

    async fn post_patient(
        &self,
        path: &str,
        body: String,
        sync_token: Option<String>,
    ) -> Result<HttpReply, RedisError> {
        self.send(path, body, sync_token, true).await
    }
}

impl FetchTransport {
    async fn send(
        &self,
        path: &str,
        body: String,
        sync_token: Option<String>,
        patient: bool,
    ) -> Result<HttpReply, RedisError> {
        let budget = self.budget.next_ms();
        let started = now_ms();
        let url = format!("{}{}", self.base_url, path);
        let token = sync_token.filter(|t| t.chars().all(|c| c.is_ascii_graphic())).unwrap_or_default();
        // One promise for the whole exchange (request, status, sync token and body), raced here
        // against the budget: a wait costs no timer object on this side.
        let answer = crate::host::rest_post(&url, &self.authorization, &body, &token);
        // Wait while Redis makes progress (see `budget`): re-armed after every wake-up until the
        // call's deadline, which moves on with every answer any call of this isolate receives.
        // A timer that fires late shows the isolate itself was busy (a burst being handled), not
        // Redis slow: that lateness does not count against the call.
        let mut stalled = 0u64;
        loop {
            let Some(wait) = self.budget.wait_ms(started.saturating_add(stalled), patient) else {
                self.budget.timed_out();
                return Err(RedisError::Timeout(budget));
            };
            let armed = now_ms();
            let settled = crate::host::Settled::within(&answer, wait).await;
            match settled {
                Ok(value) if value.is_undefined() => {
                    let late = now_ms().saturating_sub(armed.saturating_add(u64::from(wait)));
                    stalled = stalled.saturating_add(late).min(MAX_STALL_MS);
                }
                Ok(value) => {
                    let reply = reply_of(&value);
                    match &reply {
                        Ok(_) => self.budget.completed(now_ms().saturating_sub(started)),
                        Err(_) => self.budget.answered(),
                    }
                    return reply;
                }
                Err(e) => {
                    self.budget.answered();
                    return Err(RedisError::Transport(reason(&e)));
                }
            }
        }
    }
}

/// The reply in `[status, sync token or null, ArrayBuffer]`.
fn reply_of(value: &JsValue) -> Result<HttpReply, RedisError> {
    let parts: &js_sys::Array = value.unchecked_ref();
    let status = parts.get(0).as_f64().and_then(|s| u16::try_from(s as u32).ok());
    let Some(status) = status else {
        return Err(RedisError::Transport("the REST answer had no status".to_owned()));
    };
    let sync_token = parts.get(1).as_string();
    let body = js_sys::Uint8Array::new(&parts.get(2)).to_vec();
    Ok(HttpReply { status, body, sync_token })
}

/// The most a call's deadline moves for the isolate's own busyness, ms.
const MAX_STALL_MS: u64 = 10_000;
