//! Streaming through the Worker: requests to the origin with their answers passed back (metered
//! for usage-charged routes), and the admin event stream.

use std::cell::RefCell;

use futures::future::{select, Either};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use super::to_response;
use crate::clock::{Clock, SystemClock, Timer};
use crate::edge::aftercare::Aftercare;
use crate::edge::events::{KEEPALIVE, KEEPALIVE_MS};
use crate::edge::http::EdgeResponse;
use crate::edge::problem::{Problem, ProblemKind};
use crate::edge::{Background, EventsPlan, ProxyPlan};
use crate::host::{self, header_lines, parse_header_lines};
use crate::limiter::UsageMeter;

/// Sends the request on to the origin with the body streamed through, and streams the answer
/// back with Tollgate's headers added. The origin's headers are copied by the runtime, which also
/// frames the response itself (no hop-by-hop header of the origin's connection reaches the
/// caller).
///
/// A route that reserved usage or took a concurrency slot gets the answer's body through a
/// pass-through stream that reads the usage report on the way; when the body ends or the client
/// goes away, the returned background task settles and releases in one round trip.
pub(super) async fn stream_proxy(
    req: &web_sys::Request,
    mut plan: ProxyPlan,
) -> Result<(web_sys::Response, Option<Background>), JsValue> {
    let aftercare = plan.aftercare.take();
    let unpaid = |aftercare: Option<Aftercare>| aftercare.map(|a| a.finish(None));
    let started = SystemClock.now_ms();
    let problem_response = |kind: ProblemKind, detail: String, origin_ms: u64| {
        let mut problem = Problem::new(kind, detail).to_response();
        plan.decorate(&mut problem, origin_ms);
        to_response(problem)
    };
    // The request, its headers and the race of the origin's response headers against
    // `proxy.timeout` in one call (`host.js`): a hung origin gets a 504, never a request held
    // open.
    let body = if matches!(plan.method.as_str(), "GET" | "HEAD") { None } else { plan.body.as_deref() };
    let removed = plan.forwarded.removed.join("\n");
    let added = header_lines(&plan.forwarded.added);
    let sent = host::forward(req, &plan.url, &plan.method, &removed, &added, body, plan.timeout_ms);
    let answer = match sent {
        Ok(promise) => host::Settled::of(&promise).await,
        Err(_) => {
            let resp = problem_response(ProblemKind::OriginUnreachable, "the origin URL could not be built".into(), 0);
            return Ok((resp?, unpaid(aftercare)));
        }
    };
    let origin_ms = SystemClock.now_ms().saturating_sub(started);
    let resp: web_sys::Response = match answer {
        Ok(r) if r.is_undefined() => {
            let detail = format!("the origin sent no response headers within {} ms", plan.timeout_ms);
            return Ok((problem_response(ProblemKind::OriginTimeout, detail, origin_ms)?, unpaid(aftercare)));
        }
        Ok(r) => r.unchecked_into(),
        Err(e) => {
            let detail = e.as_string().unwrap_or_else(|| "the origin could not be reached".to_owned());
            return Ok((problem_response(ProblemKind::OriginUnreachable, detail, origin_ms)?, unpaid(aftercare)));
        }
    };

    // The origin's status and headers in one crossing, so CORS and Vary are merged with them,
    // never replaced.
    let head = host::response_head(&resp);
    let (status_line, origin_lines) = head.split_once('\n').unwrap_or((head.as_str(), ""));
    let status = status_line.parse().unwrap_or(502);
    let mut added = EdgeResponse { status, headers: parse_header_lines(origin_lines), body: Vec::new() };
    let meter_headers = aftercare.as_ref().and_then(|a| a.source.as_ref()).map(|_| added.headers.clone());
    plan.decorate(&mut added, origin_ms);
    // A write to a cached resource invalidates it before its answer goes out, so the caller's
    // next read sees the new value.
    if let Some(task) = plan.after_response(status) {
        task.await;
    }
    let (body, after) = match (aftercare, resp.body()) {
        (None, _) => (None, None),
        (Some(a), None) => (None, Some(a.finish(None))),
        (Some(a), Some(body)) => {
            let meter = a.source.as_ref().map(|s| UsageMeter::new(s, meter_headers.as_deref().unwrap_or_default()));
            let pass = web_sys::TransformStream::new()?;
            let writer = pass.writable().get_writer()?;
            let gone = host::Settled::of(&host::when_gone(req));
            (Some(pass.readable()), Some(Box::pin(metered_pump(body, writer, meter, a, gone)) as Background))
        }
    };
    // Only the headers Tollgate sets or merges change; the runtime copies the rest.
    let mut changes = String::new();
    for name in plan.decorated_names() {
        for (_, value) in added.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            host::push_header_line(&mut changes, &name, value);
        }
    }
    Ok((host::pass_on(&resp, &changes, body)?, after))
}

/// Copies the origin's body to the caller chunk by chunk, feeding the usage meter; at the end of
/// the body, or as soon as the caller is gone, pays the request's aftercare.
///
/// The caller being gone shows as `gone` settling (the runtime aborts the request's signal when
/// its client disconnects, with the `enable_request_signal` compatibility flag), as a failed
/// write, or as the origin's body erroring while a write waits. Local workerd (2026-04-26)
/// delivers none of them while a read of the origin's body is pending (it cancels the origin's
/// connection and leaves the read unsettled), which is the usual state of a streamed answer: then
/// the lease frees at its deadline, the bound that also covers a vanished isolate.
async fn metered_pump(
    body: web_sys::ReadableStream,
    writer: web_sys::WritableStreamDefaultWriter,
    mut meter: Option<UsageMeter>,
    aftercare: Aftercare,
    mut gone: host::Settled,
) {
    use wasm_bindgen_futures::JsFuture;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut origin_closed = JsFuture::from(reader.closed());
    let mut origin_settled = false;
    let mut complete = false;
    loop {
        let step = match select(JsFuture::from(reader.read()), &mut gone).await {
            Either::Left((Ok(step), _)) => step,
            Either::Left((Err(_), _)) => break,
            Either::Right(_) => {
                // The caller went away: stop reading the origin (not waited for).
                let _ = reader.cancel();
                break;
            }
        };
        let done = js_sys::Reflect::get(&step, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true);
        if done {
            complete = true;
            break;
        }
        let Ok(chunk) = js_sys::Reflect::get(&step, &"value".into()) else { break };
        if let Some(m) = meter.as_mut().filter(|m| m.reads_body()) {
            m.feed(&js_sys::Uint8Array::new(&chunk).to_vec());
        }
        let mut write = JsFuture::from(writer.write_with_chunk(&chunk));
        let written = loop {
            if origin_settled {
                break match select(&mut write, &mut gone).await {
                    Either::Left((result, _)) => result.is_ok(),
                    Either::Right(_) => false,
                };
            }
            match select(&mut write, select(&mut origin_closed, &mut gone)).await {
                Either::Left((result, _)) => break result.is_ok(),
                // The origin's body errored while the caller was not reading: the caller left.
                Either::Right((Either::Left((Err(_), _)), _)) => break false,
                Either::Right((Either::Left((Ok(_), _)), _)) => origin_settled = true,
                Either::Right((Either::Right(_), _)) => break false,
            }
        };
        if !written {
            // The caller went away: stop reading the origin (not waited for).
            let _ = reader.cancel();
            break;
        }
    }
    // Not waited for: closing a stream whose reader is gone may never settle.
    let _ = if complete { writer.close() } else { writer.abort() };
    let reported = meter.and_then(|m| if complete { m.finish() } else { m.so_far() });
    aftercare.finish(reported).await;
}

/// Opens the subscription of `plan` on Redis and streams its events to the client through the
/// plan's re-framer. When the client goes away the runtime cancels the answer's body, and the
/// pipe cancels the subscription's body in turn, which closes the connection to Redis.
pub(super) async fn stream_events(plan: EventsPlan) -> Result<web_sys::Response, JsValue> {
    let unavailable = |detail: String| to_response(Problem::new(ProblemKind::RedisUnavailable, detail).to_response());
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    let headers = web_sys::Headers::new()?;
    for (name, value) in &plan.request_headers {
        headers.append(name, value)?;
    }
    init.set_headers(&headers);
    let Ok(upstream) = web_sys::Request::new_with_str_and_init(&plan.url, &init) else {
        return unavailable("the Redis subscription URL could not be built".to_owned());
    };
    let promise = js_sys::global().unchecked_into::<web_sys::WorkerGlobalScope>().fetch_with_request(&upstream);
    let resp: web_sys::Response = match wasm_bindgen_futures::JsFuture::from(promise).await.and_then(|v| v.dyn_into()) {
        Ok(r) => r,
        Err(_) => return unavailable("the event subscription could not reach Redis".to_owned()),
    };
    let body = match resp.body() {
        Some(body) if resp.ok() => body,
        _ => return unavailable(format!("Redis refused the event subscription ({})", resp.status())),
    };
    let reframer = RefCell::new(plan.reframer());
    let transform =
        Closure::<dyn FnMut(JsValue, web_sys::TransformStreamDefaultController) -> Result<(), JsValue>>::new(
            move |chunk: JsValue, controller: web_sys::TransformStreamDefaultController| {
                let out = reframer.borrow_mut().push(&js_sys::Uint8Array::new(&chunk).to_vec());
                if out.is_empty() {
                    return Ok(());
                }
                controller.enqueue_with_chunk(&js_sys::Uint8Array::from(out.as_slice()).into())
            },
        );
    // A keep-alive of the Worker's own, until the stream is closed or its client gone (then the
    // enqueue throws); the write is also how the runtime notices a client that left.
    let start = Closure::once_into_js(move |controller: web_sys::TransformStreamDefaultController| {
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                Timer::after(KEEPALIVE_MS).await;
                if controller.enqueue_with_chunk(&js_sys::Uint8Array::from(KEEPALIVE).into()).is_err() {
                    break;
                }
            }
        });
    });
    let transformer = web_sys::Transformer::new();
    transformer.set_start(start.unchecked_ref());
    transformer.set_transform(transform.into_js_value().unchecked_ref());
    let stream = web_sys::TransformStream::new_with_transformer(&transformer)?;
    let events = body.pipe_through(stream.unchecked_ref());
    let resp_headers = web_sys::Headers::new()?;
    for (name, value) in &plan.head.headers {
        resp_headers.append(name, value)?;
    }
    let resp_init = web_sys::ResponseInit::new();
    resp_init.set_status(plan.head.status);
    resp_init.set_headers(&resp_headers);
    web_sys::Response::new_with_opt_readable_stream_and_init(Some(&events), &resp_init)
}
