//! The wasm32 glue: the exports `src/host/entry.js` calls for each event, turning runtime objects
//! into the gate's plain values and back; the origin over `fetch`, timers, the streaming proxy
//! and the event stream. Nothing here decides anything.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

use crate::clock::{SystemClock, SystemRandom};
use crate::edge::body::{check_declared, BodyRefusal, CappedBody};
use crate::edge::config::Config;
use crate::edge::http::{split_url, EdgeRequest, EdgeResponse};
use crate::edge::problem::{Problem, ProblemKind};
use crate::edge::{Background, Edge, Outcome, Platform, Services};
use crate::host::{self, header_lines, RequestHead};
use crate::identity::web::{FetchKeySource, WebCryptoVerifier};
use crate::redis::{BudgetConfig, FetchTransport};

mod origin;
mod stream;

pub use origin::{FetchOrigin, WorkerSleeper};
use stream::{stream_events, stream_proxy};

/// The variables the Worker reads; their values together key the isolate's gate.
const VARS: [&str; 10] = [
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "REDIS_ENABLED",
    "ORIGIN_URL",
    "TOLLGATE_ADMIN_TOKEN",
    "TOLLGATE_JWT_SECRET",
    "TOLLGATE_JWKS_URL",
    "TOLLGATE_HASH_SECRET",
    "TOLLGATE_POLICY",
    "TOLLGATE_ORIGIN_SECRET",
];

/// The Workers runtime: Redis and the origin over `fetch`, JS timers.
pub struct WorkerPlatform;

impl Platform for WorkerPlatform {
    type Transport = FetchTransport;
    type Origin = FetchOrigin;
    type Sleeper = WorkerSleeper;
}

type WorkerGate = Edge<WorkerPlatform>;

thread_local! {
    /// The isolate's gate, rebuilt only when the environment changes.
    static GATE: RefCell<Option<(String, Rc<WorkerGate>)>> = const { RefCell::new(None) };
    /// The `env` object the gate was last handed out for: the runtime passes the same object to
    /// every request of an isolate, so most requests skip reading the variables at all.
    static LAST_ENV: RefCell<Option<(JsValue, Rc<WorkerGate>)>> = const { RefCell::new(None) };
}

/// A variable's text; a JSON object (a TOML table under `[vars]`) arrives as its JSON text.
fn env_text(env: &JsValue, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env, &JsValue::from_str(name)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    if let Some(s) = value.as_string() {
        return Some(s);
    }
    js_sys::JSON::stringify(&value).ok().and_then(|s| s.as_string())
}

/// The isolate's gate for this environment, or the configuration error to answer with.
fn gate_for(env: &JsValue) -> Result<Rc<WorkerGate>, String> {
    let same = LAST_ENV
        .with(|last| last.borrow().as_ref().filter(|(seen, _)| js_sys::Object::is(seen, env)).map(|(_, g)| g.clone()));
    if let Some(gate) = same {
        return Ok(gate);
    }
    let gate = gate_for_values(env)?;
    LAST_ENV.with(|last| *last.borrow_mut() = Some((env.clone(), gate.clone())));
    Ok(gate)
}

/// The gate for the environment's variable values, built when they differ from the last ones.
fn gate_for_values(env: &JsValue) -> Result<Rc<WorkerGate>, String> {
    let values: Vec<Option<String>> = VARS.iter().map(|n| env_text(env, n)).collect();
    let fingerprint = format!("{values:?}");
    if let Some(g) = GATE.with(|g| g.borrow().as_ref().filter(|(f, _)| *f == fingerprint).map(|(_, g)| g.clone())) {
        return Ok(g);
    }
    let config = Config::from_env(|name| VARS.iter().position(|n| *n == name).and_then(|i| values[i].clone()))
        .map_err(|e| e.to_string())?;
    let origin = FetchOrigin {
        base: config.origin_url.clone().unwrap_or_default(),
        timeout_ms: config.policy.cache.origin_timeout_ms.get(),
    };
    let transport = match &config.redis {
        Some(r) => Some(
            FetchTransport::new(&r.url, &r.token, BudgetConfig::from_settings(&config.policy.redis))
                .map_err(|e| format!("UPSTASH_REDIS_REST_URL: {e}"))?,
        ),
        None => None,
    };
    let services = Services::new(config, transport, origin, WorkerSleeper, Rc::new(SystemClock), Rc::new(SystemRandom))
        .with_key_sets(Rc::new(FetchKeySource), Rc::new(WebCryptoVerifier::default()));
    let gate = Rc::new(Edge::from_services(services));
    GATE.with(|g| *g.borrow_mut() = Some((fingerprint, gate.clone())));
    Ok(gate)
}

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The `fetch` event: the `Response` to `req` goes to `resolve` (or an error to `reject`). `ctx`
/// is the runtime's execution context (its `waitUntil` keeps background work alive after the
/// answer).
#[wasm_bindgen]
pub fn fetch(req: web_sys::Request, env: JsValue, ctx: JsValue, resolve: js_sys::Function, reject: js_sys::Function) {
    host::spawn(async move {
        let _ = match answer(req, &env, &ctx).await {
            Ok(resp) => resolve.call1(&JsValue::UNDEFINED, &resp),
            Err(e) => reject.call1(&JsValue::UNDEFINED, &e),
        };
    });
}

/// The `scheduled` event (the cron trigger): warms every configured hot key in the background.
#[wasm_bindgen]
pub fn scheduled(_controller: JsValue, env: JsValue, ctx: JsValue) {
    if let Ok(gate) = gate_for(&env) {
        wait_until(&ctx, Box::pin(async move { gate.warm_all().await }));
    }
}

/// Keeps `task` running after the answer (`ctx.waitUntil`).
fn wait_until(ctx: &JsValue, task: Background) {
    let done = host::keep_alive(ctx);
    host::spawn(async move {
        task.await;
        let _ = done.call0(&JsValue::UNDEFINED);
    });
}

/// The answer to `req`: the entrance's rules, the edge's decision, then the response, the proxied
/// stream or the event stream; background work goes to `ctx.waitUntil`.
async fn answer(req: web_sys::Request, env: &JsValue, ctx: &JsValue) -> Result<web_sys::Response, JsValue> {
    let gate = match gate_for(env) {
        Ok(g) => g,
        Err(message) => return to_response(Problem::new(ProblemKind::InvalidConfig, message).to_response()),
    };
    // Method, URL and headers in one crossing of the boundary.
    let RequestHead { method, url, headers } = RequestHead::parse(&host::request_head(&req));
    let (raw_path, query) = split_url(&url);
    // The entrance's rules, applied before a byte of the body is read: the normalized path is
    // the one the body rule, the routes and the origin see.
    let path = match Edge::<WorkerPlatform>::normalize_path(&raw_path) {
        Ok(p) => p,
        Err(resp) => return to_response(resp),
    };
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let body = match gate.body_cap(&method, &path, header("authorization")) {
        None => Vec::new(),
        Some(cap) => match read_capped(&req, header("content-length"), cap).await {
            Ok(bytes) => bytes,
            Err(refusal) => return to_response(refusal.error().problem().to_response()),
        },
    };
    let edge_req = EdgeRequest { method, path, query, headers, body };

    let handled = gate.handle(edge_req).await;
    for task in handled.background {
        wait_until(ctx, task);
    }
    match handled.outcome {
        Outcome::Respond(resp) => to_response(resp),
        Outcome::Proxy(plan) => {
            let (resp, after) = stream_proxy(&req, *plan).await?;
            if let Some(task) = after {
                wait_until(ctx, task);
            }
            Ok(resp)
        }
        Outcome::Events(plan) => stream_events(plan).await,
    }
}

/// The request body, at most `cap` bytes: a declared `Content-Length` over the cap is refused
/// before reading, and the stream is read chunk by chunk and abandoned as soon as it passes the
/// cap (a chunked body, or one longer than it said). Empty when there is none or it cannot be
/// read.
async fn read_capped(req: &web_sys::Request, content_length: Option<&str>, cap: usize) -> Result<Vec<u8>, BodyRefusal> {
    check_declared(content_length, cap)?;
    let Some(stream) = req.body() else { return Ok(Vec::new()) };
    let Ok(reader) = stream.get_reader().dyn_into::<web_sys::ReadableStreamDefaultReader>() else {
        return Ok(Vec::new());
    };
    let mut body = CappedBody::new(cap);
    loop {
        let Ok(chunk) = wasm_bindgen_futures::JsFuture::from(reader.read()).await else { break };
        let done = js_sys::Reflect::get(&chunk, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool());
        if done != Some(false) {
            break;
        }
        let Ok(value) = js_sys::Reflect::get(&chunk, &JsValue::from_str("value")) else { break };
        let bytes = js_sys::Uint8Array::new(&value);
        if let Err(refusal) = body.push(&bytes.to_vec()) {
            let _ = reader.cancel();
            return Err(refusal);
        }
    }
    Ok(body.into_bytes())
}

/// Converts a plain response into a runtime one, in one call: its headers travel as one string.
fn to_response(resp: EdgeResponse) -> Result<web_sys::Response, JsValue> {
    let body: &[u8] = if matches!(resp.status, 101 | 204 | 205 | 304) { &[] } else { &resp.body };
    host::response(resp.status, &header_lines(&resp.headers), body)
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    fn env(pairs: &[(&str, JsValue)]) -> JsValue {
        let obj = js_sys::Object::new();
        for (k, v) in pairs {
            let _ = js_sys::Reflect::set(&obj, &JsValue::from_str(k), v);
        }
        obj.into()
    }

    #[wasm_bindgen_test]
    fn env_text_reads_strings_and_serialises_objects() {
        let policy = js_sys::JSON::parse(r#"{"tiers":{"PRO":{"limits":[]}}}"#).unwrap();
        let e = env(&[("A", JsValue::from_str("plain")), ("TOLLGATE_POLICY", policy), ("N", JsValue::NULL)]);
        assert_eq!(env_text(&e, "A").as_deref(), Some("plain"));
        assert_eq!(env_text(&e, "TOLLGATE_POLICY").as_deref(), Some(r#"{"tiers":{"PRO":{"limits":[]}}}"#));
        assert_eq!(env_text(&e, "N"), None);
        assert_eq!(env_text(&e, "MISSING"), None);
    }

    #[wasm_bindgen_test]
    fn an_invalid_policy_in_the_environment_is_an_error_naming_the_field() {
        let bad = js_sys::JSON::parse(r#"{"cache_classes":{"SESSION":{"ttl":"0s"}}}"#).unwrap();
        let e = env(&[("TOLLGATE_POLICY", bad)]);
        let err = gate_for(&e).err().unwrap_or_default();
        assert!(err.contains("cache_classes.SESSION.ttl"), "{err}");
    }

    #[wasm_bindgen_test]
    fn a_valid_environment_builds_one_gate_per_isolate() {
        let e = env(&[("ORIGIN_URL", JsValue::from_str("http://127.0.0.1:9"))]);
        let a = gate_for(&e).map_err(|e| e.to_string()).unwrap();
        let b = gate_for(&e).map_err(|e| e.to_string()).unwrap();
        assert!(Rc::ptr_eq(&a, &b), "the gate is reused while the environment is unchanged");
        let other = env(&[("ORIGIN_URL", JsValue::from_str("http://127.0.0.1:10"))]);
        let c = gate_for(&other).map_err(|e| e.to_string()).unwrap();
        assert!(!Rc::ptr_eq(&a, &c), "a changed environment rebuilds it");
    }

    #[wasm_bindgen_test]
    async fn plain_responses_become_worker_responses() {
        let resp = EdgeResponse::new(429)
            .with_header("content-type", "application/problem+json")
            .with_header("vary", "Origin")
            .with_header("vary", "Accept")
            .with_body(b"{}".to_vec());
        let out = to_response(resp).unwrap();
        assert_eq!(out.status(), 429);
        assert_eq!(out.headers().get("content-type").unwrap().as_deref(), Some("application/problem+json"));
        assert_eq!(out.headers().get("vary").unwrap().as_deref(), Some("Origin, Accept"));
        let text = wasm_bindgen_futures::JsFuture::from(out.text().unwrap()).await.unwrap();
        assert_eq!(text.as_string().as_deref(), Some("{}"));
        let empty = to_response(EdgeResponse::new(304)).unwrap();
        assert_eq!(empty.status(), 304);
    }
}
