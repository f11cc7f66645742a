//! The origin over the Workers `fetch` (cache fills), and timers.

use wasm_bindgen::JsCast;

use crate::cache::{Origin, OriginError, OriginRequest, OriginResponse};
use crate::clock::{Sleeper, Timer};
use crate::host::{self, header_lines, parse_header_lines};

/// Timers on the Workers runtime.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSleeper;

impl Sleeper for WorkerSleeper {
    async fn sleep(&self, ms: u32) {
        Timer::after(ms).await;
    }
}

/// The origin over the Workers `fetch`, with a timeout; answers are read whole (cache fills).
#[derive(Debug, Clone)]
pub struct FetchOrigin {
    pub(super) base: String,
    pub(super) timeout_ms: u32,
}

impl Origin for FetchOrigin {
    async fn fetch(&self, req: &OriginRequest) -> Result<OriginResponse, OriginError> {
        if self.base.is_empty() {
            return Err(OriginError::Unreachable("ORIGIN_URL is not set".to_owned()));
        }
        let url = format!("{}{}", self.base, req.path_and_query);
        // Request, answer and timeout in one promise (`host.js`); a timed-out request is aborted.
        let promise = host::fetch_whole(&url, &req.method, &header_lines(&req.headers), &req.body, self.timeout_ms)
            .map_err(|_| OriginError::Unreachable(format!("invalid origin URL {url}")))?;
        let answer = host::Settled::of(&promise)
            .await
            .map_err(|e| OriginError::Unreachable(e.as_string().unwrap_or_else(|| "fetch failed".into())))?;
        if answer.is_undefined() {
            return Err(OriginError::Timeout);
        }
        let parts: &js_sys::Array = answer.unchecked_ref();
        let status = parts.get(0).as_f64().and_then(|s| u16::try_from(s as u32).ok());
        let Some(status) = status else { return Err(OriginError::Unreachable("not a response".into())) };
        let headers = parse_header_lines(&parts.get(1).as_string().unwrap_or_default());
        let body = js_sys::Uint8Array::new(&parts.get(2)).to_vec();
        Ok(OriginResponse { status, headers, body })
    }
}
