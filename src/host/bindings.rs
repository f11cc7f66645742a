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

    /// Installs the executor's callbacks (`settle(id, ok, value)`, `run()`).
    pub fn install(settle: &js_sys::Function, run: &js_sys::Function);

    /// Runs the executor's woken tasks in a microtask.
    pub fn schedule();

    /// Settles slot `id` with `promise`'s outcome.
    #[wasm_bindgen(js_name = settleOn)]
    pub fn settle_on(promise: &js_sys::Promise, id: u32);

    /// Settles slot `id` with `promise`'s outcome, or with `undefined` after `ms`.
    #[wasm_bindgen(js_name = settleWithin)]
    pub fn settle_within(promise: &js_sys::Promise, ms: u32, id: u32);

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

    /// `request` sent on to `url` with its headers copied, the `removed` names (one per line)
    /// deleted and the `added` lines set: the origin's `Response` once its headers arrived, or
    /// `undefined` after `ms`. `body` replaces the request's own stream when given.
    #[wasm_bindgen(catch)]
    pub fn forward(
        request: &web_sys::Request,
        url: &str,
        method: &str,
        removed: &str,
        added: &str,
        body: Option<&[u8]>,
        ms: u32,
    ) -> Result<js_sys::Promise, JsValue>;

    /// Resolves when the client of `request` goes away (its signal aborts).
    #[wasm_bindgen(js_name = whenGone)]
    pub fn when_gone(request: &web_sys::Request) -> js_sys::Promise;

    /// `STATUS\n` and the response's header lines.
    #[wasm_bindgen(js_name = responseHead)]
    pub fn response_head(response: &web_sys::Response) -> String;

    /// Keeps the invocation of `ctx` alive until the returned function is called.
    #[wasm_bindgen(js_name = keepAlive)]
    pub fn keep_alive(ctx: &JsValue) -> js_sys::Function;

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
