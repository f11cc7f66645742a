//! The functions of `host.js` as Rust sees them (wasm32 only).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/host/host.js")]
extern "C" {
    /// `METHOD\nURL` and the request's header lines.
    #[wasm_bindgen(js_name = requestHead)]
    pub fn request_head(request: &web_sys::Request) -> String;

    /// A response of `status` with the header lines and a copy of `body` (none when empty).
    /// Throws when the runtime refuses the status.
    #[wasm_bindgen(catch)]
    pub fn response(status: u16, header_lines: &str, body: &[u8]) -> Result<web_sys::Response, JsValue>;

    /// `promise`'s value, or `undefined` when it has not settled within `ms` (it goes on).
    pub fn within(promise: &js_sys::Promise, ms: u32) -> js_sys::Promise;

    /// Resolves after `ms` milliseconds.
    pub fn sleep(ms: u32) -> js_sys::Promise;

    /// Stops the timer of a promise from [`sleep`].
    pub fn cancel(promise: &js_sys::Promise);

    /// POSTs to a REST server: `[status, sync token or null, ArrayBuffer]`.
    #[wasm_bindgen(js_name = restPost)]
    pub fn rest_post(url: &str, authorization: &str, body: &str, sync_token: &str) -> js_sys::Promise;

    /// A subrequest read whole: `[status, header lines, ArrayBuffer]`, or `undefined` after `ms`.
    #[wasm_bindgen(catch, js_name = fetchWhole)]
    pub fn fetch_whole(
        url: &str,
        method: &str,
        header_lines: &str,
        body: &[u8],
        ms: u32,
    ) -> Result<js_sys::Promise, JsValue>;

    /// `request` sent on to `url`: the origin's `Response` once its headers arrived, or
    /// `undefined` after `ms`. `body` replaces the request's own stream when given.
    #[wasm_bindgen(catch)]
    pub fn forward(
        request: &web_sys::Request,
        url: &str,
        method: &str,
        header_lines: &str,
        body: Option<&[u8]>,
        ms: u32,
    ) -> Result<js_sys::Promise, JsValue>;

    /// `STATUS\n` and the response's header lines.
    #[wasm_bindgen(js_name = responseHead)]
    pub fn response_head(response: &web_sys::Response) -> String;

    /// `ctx.waitUntil(promise)`.
    #[wasm_bindgen(js_name = waitUntil)]
    pub fn wait_until(ctx: &JsValue, promise: &js_sys::Promise);

    /// One error line for the logs.
    #[wasm_bindgen(js_name = errorLine)]
    pub fn log_error(text: &str);

    /// `response` passed on with its headers changed by the lines (the first line of a name
    /// replaces, later ones append) and `body` (`None`: its own).
    #[wasm_bindgen(catch, js_name = passOn)]
    pub fn pass_on(
        response: &web_sys::Response,
        header_lines: &str,
        body: Option<web_sys::ReadableStream>,
    ) -> Result<web_sys::Response, JsValue>;
}
