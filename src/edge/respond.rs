//! The gate's answers: a 429 for a decision, a response from a cache answer, an origin answer
//! passed through, the plan of a streamed proxy, and the one decorator that adds Tollgate's
//! headers (rate limit, mode, timing, CORS) to whatever goes out.

use crate::cache::{self, CacheStatus, CacheTarget, OriginResponse, Payload, Served};
use crate::limiter::{rate_limit_headers, Decision};
use crate::policy::raw::format_duration_ms;
use crate::policy::CorsSettings;

use super::aftercare::Aftercare;
use super::cors;
use super::error::GateError;
use super::events::EventsPlan;
use super::http::{EdgeRequest, EdgeResponse};
pub use super::mode::LimitMode;
use super::problem::{Problem, ProblemKind};
use super::proxy;
use super::services::Background;

/// What the Worker should do with a request.
pub enum Outcome {
    /// Send this response.
    Respond(EdgeResponse),
    /// Stream the request to the origin and its answer back (see [`ProxyPlan`]); boxed, it is
    /// the larger by far.
    Proxy(Box<ProxyPlan>),
    /// Open a Redis subscription and stream its events, re-framed, to the client (see
    /// [`EventsPlan`]).
    Events(EventsPlan),
}

/// A handled request: what to answer, and what to run afterwards.
pub struct Handled {
    /// The answer.
    pub outcome: Outcome,
    /// Background work (refreshes, invalidations, counter flushes).
    pub background: Vec<Background>,
}

impl Handled {
    /// A plain response, nothing to run afterwards.
    pub fn respond(resp: EdgeResponse) -> Self {
        Self { outcome: Outcome::Respond(resp), background: Vec::new() }
    }
}

/// A request the Worker streams to the origin.
pub struct ProxyPlan {
    /// Absolute origin URL.
    pub url: String,
    /// Method.
    pub method: String,
    /// How the caller's headers change for the origin (hop-by-hop and credentials removed,
    /// caller identity added).
    pub forwarded: proxy::HeaderChanges,
    /// The body when the gate read it; `None` streams the original body.
    pub body: Option<Vec<u8>>,
    /// Headers set on the origin's answer (rate limit, mode).
    pub response_headers: Vec<(String, String)>,
    /// The CORS settings and the request's `Origin`, merged with the origin's own CORS
    /// headers once they are known ([`cors::merge_for`]).
    pub cors: (CorsSettings, Option<String>),
    /// Server-Timing entries measured before the proxy (`redis;dur=3`).
    pub server_timing: Vec<String>,
    /// How long the origin may take to send its response headers, ms (then `504`).
    pub timeout_ms: u32,
    /// Invalidation to run when the origin accepts a write to a cached resource, before the
    /// answer is returned (read-your-writes).
    pub after_write: Option<Box<dyn FnOnce() -> Background>>,
    /// The settlement and lease release owed when the answer's body ends or its client leaves.
    pub aftercare: Option<Aftercare>,
}

impl ProxyPlan {
    /// Adds Tollgate's headers to the origin's answer (or to the error standing in for it),
    /// whose own headers `resp` holds: rate limit, mode and timing are set, CORS is merged.
    pub fn decorate(&self, resp: &mut EdgeResponse, origin_ms: u64) {
        for (name, value) in &self.response_headers {
            resp.set_header(name, value.clone());
        }
        let mut timing = self.server_timing.clone();
        timing.push(format!("origin;dur={origin_ms}"));
        resp.set_header("server-timing", timing.join(", "));
        cors::merge_for(&self.cors.0, self.cors.1.as_deref(), &mut resp.headers);
    }

    /// The names of the headers [`ProxyPlan::decorate`] may set or change.
    pub fn decorated_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.response_headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        names.extend(cors::MERGED.iter().map(|n| (*n).to_owned()));
        names.push("server-timing".to_owned());
        names.sort();
        names.dedup();
        names
    }

    /// The work due once the origin answered `status` (a 2xx write to a cached resource
    /// invalidates it), to be awaited before the answer goes out.
    pub fn after_response(&mut self, status: u16) -> Option<Background> {
        match self.after_write.take() {
            Some(task) if (200..300).contains(&status) => Some(task()),
            _ => None,
        }
    }
}

/// The decorator every gated response passes: rate-limit headers of `decision`, the mode, the
/// timing and CORS.
pub struct Decoration<'a> {
    /// The decision whose headers go out.
    pub decision: Option<&'a Decision>,
    /// Where it was decided.
    pub mode: Option<LimitMode>,
    /// Server-Timing entries.
    pub timing: &'a [String],
}

impl Decoration<'_> {
    /// Nothing but CORS.
    pub const NONE: Decoration<'static> = Decoration { decision: None, mode: None, timing: &[] };

    /// Adds the headers to `resp`.
    pub fn apply(&self, cors_settings: &CorsSettings, req: &EdgeRequest, resp: &mut EdgeResponse) {
        self.apply_limits(resp);
        cors::decorate(cors_settings, req, resp);
    }

    /// Adds every header but CORS (the streamed proxy merges CORS once the origin answered).
    pub fn apply_limits(&self, resp: &mut EdgeResponse) {
        if let Some(d) = self.decision {
            for (name, value) in rate_limit_headers(d) {
                resp.set_header(name, value);
            }
        }
        if let Some(m) = self.mode {
            resp.set_header("x-tollgate-mode", m.as_str());
        }
        if !self.timing.is_empty() {
            resp.set_header("server-timing", self.timing.join(", "));
        }
    }
}

/// The 429 of a refused decision.
pub fn denied(decision: &Decision, route_name: &str, tier: &str) -> EdgeResponse {
    let violated = decision.violated().unwrap_or("").to_owned();
    let slots = decision.snapshot().concurrency.as_ref().filter(|_| decision.refused_by_concurrency());
    let detail = match (decision, decision.binding()) {
        _ if slots.is_some() => format!(
            "all {} concurrency slots \"{violated}\" are in use; retry in {} s",
            slots.map_or(0, |c| c.limit),
            decision.retry_after_ms().map_or(0, |ms| ms.div_ceil(1000))
        ),
        (Decision::Impossible { .. }, Some(s)) => format!(
            "this request costs more than limit \"{violated}\" allows at all ({} per {})",
            s.limit,
            format_duration_ms(s.window_ms)
        ),
        (_, Some(s)) => format!(
            "limit \"{violated}\" ({} per {}) is exhausted; retry in {} s",
            s.limit,
            format_duration_ms(s.window_ms),
            decision.retry_after_ms().map_or(0, |ms| ms.div_ceil(1000))
        ),
        _ => "rate limit exceeded".to_owned(),
    };
    let mut problem = Problem::new(ProblemKind::RateLimited, detail)
        .with("limit", violated)
        .with("tier", tier)
        .with("route", route_name);
    if let Some(ms) = decision.retry_after_ms() {
        problem = problem.with("retry_after_s", ms.div_ceil(1000));
    }
    problem.to_response()
}

/// The response for a cache answer to `req` (a `304` when its `If-None-Match` matches; no body
/// for `HEAD`).
pub fn cached(req: &EdgeRequest, target: &CacheTarget, served: Served, now_ms: u64) -> EdgeResponse {
    match served.payload {
        Payload::Cached(entry) => {
            let not_modified = req.header("if-none-match").is_some_and(|h| cache::http::if_none_match(h, &entry.etag));
            let mut r = EdgeResponse::new(if not_modified { 304 } else { entry.status });
            if let Some(ct) = &entry.content_type {
                r.set_header("content-type", ct.clone());
            }
            for (n, v) in &entry.headers {
                r.append_header(n, v.clone());
            }
            r.set_header("etag", entry.etag.clone());
            r.set_header("age", cache::http::age_seconds(entry.stored_ms, now_ms).to_string());
            r.set_header("cache-control", cache::http::cache_control(&target.class, target.scope));
            r.set_header("x-cache", served.status.as_str());
            if !not_modified && req.method != "HEAD" {
                r.body = entry.body;
            }
            r
        }
        Payload::Passthrough(o) => {
            let mut r = passed_through(o, served.status);
            if req.method == "HEAD" {
                r.body.clear();
            }
            r
        }
    }
}

/// An origin answer passed through (not from an entry).
pub fn passed_through(o: OriginResponse, status: CacheStatus) -> EdgeResponse {
    let mut r =
        EdgeResponse { status: o.status, headers: proxy::downstream_response_headers(&o.headers, true), body: o.body };
    r.set_header("x-cache", status.as_str());
    r
}

/// The response for an error of the gate.
pub fn error(e: &GateError) -> EdgeResponse {
    e.problem().to_response()
}
