//! The origin over the Workers `fetch` (cache fills), and timers.

use super::*;

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
        let init = web_sys::RequestInit::new();
        init.set_method(&req.method);
        init.set_redirect(web_sys::RequestRedirect::Manual);
        let headers = web_sys::Headers::new().map_err(|_| OriginError::Unreachable("headers".into()))?;
        for (name, value) in &req.headers {
            let _ = headers.append(name, value);
        }
        init.set_headers(&headers);
        if !req.body.is_empty() && !matches!(req.method.as_str(), "GET" | "HEAD") {
            init.set_body(&js_sys::Uint8Array::from(req.body.as_slice()).into());
        }
        let controller = web_sys::AbortController::new().ok();
        if let Some(c) = &controller {
            init.set_signal(Some(&c.signal()));
        }
        let url = format!("{}{}", self.base, req.path_and_query);
        let request = web_sys::Request::new_with_str_and_init(&url, &init)
            .map_err(|_| OriginError::Unreachable(format!("invalid origin URL {url}")))?;
        let promise = js_sys::global().unchecked_into::<web_sys::WorkerGlobalScope>().fetch_with_request(&request);
        let work = async {
            let value = wasm_bindgen_futures::JsFuture::from(promise)
                .await
                .map_err(|e| OriginError::Unreachable(e.as_string().unwrap_or_else(|| "fetch failed".into())))?;
            let resp: web_sys::Response =
                value.dyn_into().map_err(|_| OriginError::Unreachable("not a response".into()))?;
            let headers = header_list(&resp.headers());
            let buffer = resp.array_buffer().map_err(|_| OriginError::Unreachable("unreadable body".into()))?;
            let buffer = wasm_bindgen_futures::JsFuture::from(buffer)
                .await
                .map_err(|_| OriginError::Unreachable("the origin closed the connection mid-body".into()))?;
            let body = js_sys::Uint8Array::new(&buffer).to_vec();
            Ok(OriginResponse { status: resp.status(), headers, body })
        };
        let timer = Timer::after(self.timeout_ms);
        futures::pin_mut!(work);
        match select(work, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => {
                if let Some(c) = controller {
                    c.abort();
                }
                Err(OriginError::Timeout)
            }
        }
    }
}
