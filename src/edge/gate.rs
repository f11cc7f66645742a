//! The gated path of one request, as a pipeline of stages:
//!
//! identify → check every limit (+ read the cache, in the same round trip) → deny | serve | fill
//! | proxy.
//!
//! Each stage is a function of what it is handed; the only state is the isolate's [`Services`].

use std::num::NonZeroU32;
use std::rc::Rc;

use crate::cache::{self, CacheTarget, OriginRequest, Served};
use crate::identity::CallerKind;
use crate::limiter::{Check, Decision, Mode, Reservation, Slot};
use crate::policy::{CacheKeySource, CacheScope, FailurePolicy, Limit, Route, RouteMatch};
use crate::redis::RedisError;

use super::aftercare::Aftercare;
use super::caller::{self, Caller};
use super::decide::{self, ByKey, Verdict};
use super::error::GateError;
use super::http::{EdgeRequest, EdgeResponse};
use super::proxy::{self, Forwarded};
use super::respond::{self, Decoration, Handled, LimitMode, Outcome, ProxyPlan};
use super::services::{Background, Platform, Services};
use super::signature;
use super::stats::BackgroundWork;

/// A request with its route resolved.
struct Routed<'p> {
    req: EdgeRequest,
    route: Option<(&'p Route, RouteMatch)>,
}

impl Routed<'_> {
    fn route_name(&self) -> &str {
        self.route.as_ref().map_or("-", |(r, _)| r.name.as_str())
    }

    fn failure(&self) -> FailurePolicy {
        self.route.as_ref().map_or(FailurePolicy::Local, |(r, _)| r.on_redis_failure)
    }
}

/// Handles a request that is neither a preflight nor an admin call.
pub async fn gated<P: Platform>(services: &Rc<Services<P>>, req: EdgeRequest) -> Handled {
    services.stats.borrow_mut().request();
    let policy = &services.config.policy;
    let routed = Routed { route: policy.route_for(&req.method, &req.path), req };
    // A made-up API key costs a registry lookup: once the caller's address has spent its
    // anonymous allowance on them, a key not verified here before is refused before the lookup.
    // The credential is read once; every stage below is handed it.
    let credential = caller::credential(services, &routed.req);
    if caller::presents_unknown_api_key(services, &credential) {
        if let Some((anon, blocked)) = caller::anonymous_blocked(services, &routed.req) {
            return deny(services, &routed, &anon, &blocked, LimitMode::Redis);
        }
    }
    let no_limits: [Limit; 0] = [];
    let route = routed.route.as_ref().map(|(r, _)| *r);
    // An id per request on routes with concurrency slots or a usage reservation: it names the
    // lease (released when the body ends) and the reservation in flight (removed when it settles).
    let request_id = route
        .filter(|r| r.concurrency.is_some() || r.usage.is_some())
        .map(|_| services.random.token())
        .unwrap_or_default();
    // The route's part of the check; the caller's subject and tier complete it.
    let route_check = Check {
        subject_hash: "",
        tier_limits: &no_limits,
        route_limits: route.map_or(&no_limits[..], |r| &r.limits),
        cost: route.map_or(NonZeroU32::MIN, |r| r.cost),
        mode: Mode::Consume,
        usage: route.and_then(|r| r.usage.as_ref()).map(|u| Reservation {
            unit: &u.unit,
            reserve: u.reserve,
            id: &request_id,
        }),
        concurrency: route
            .and_then(|r| r.concurrency.as_ref().map(|rule| Slot { rule, route: &r.name, lease_id: &request_id })),
    };
    // An API key not verified here has its record read by the check itself (with the cache
    // read, on a cacheable route): one round trip before the origin. Routes whose entries are
    // the caller's own look the key up first, and so does every key while Redis does not answer.
    let per_caller = per_caller_cache(route);
    let mut decided = None;
    let mut caller = None;
    if let Some(key) = caller::unverified_key(services, &credential).filter(|_| !per_caller) {
        let shared = match cache_target_of(services, &routed, "") {
            Ok(t) => t,
            Err(e) => return finish(services, &routed.req, respond::error(&e), Decoration::NONE),
        };
        match decide::decide_by_key(services, &key, &route_check, shared.as_ref()).await {
            ByKey::Decided(record, verdict) => {
                caller = Some(caller::from_record(services, &record));
                decided = Some(*verdict);
            }
            ByKey::Refused(e) => return refuse_credential(services, &routed, GateError::Auth(e)).await,
            ByKey::Unanswered => {}
        }
    }
    let caller = match caller {
        Some(c) => c,
        None => match caller::identify_by(services, &routed.req, credential, routed.failure()).await {
            Ok(c) => c,
            Err(e) => return refuse_credential(services, &routed, e).await,
        },
    };
    let check = Check { subject_hash: &caller.identity.subject_hash, tier_limits: &caller.tier.limits, ..route_check };
    let target = match cache_target(services, &routed, &caller) {
        Ok(t) => t,
        Err(e) => return finish(services, &routed.req, respond::error(&e), Decoration::NONE),
    };

    // A blocked caller is refused without a round trip; an isolate-fresh entry is served without
    // one and consumes nothing (its headers report the caller's last check here).
    let now = services.clock.now_ms();
    let shared_mode = if services.redis.is_some() { LimitMode::Redis } else { LimitMode::Memory };
    if let Some(blocked) = services.limits.blocks.borrow_mut().get(&check, now).filter(|_| decided.is_none()) {
        return deny(services, &routed, &caller, &blocked, shared_mode);
    }
    if let (Some(cache), Some(t), None) = (&services.cache, &target, &decided) {
        if let Some(served) = cache.local(t) {
            let last = services.limits.last_seen(&caller.identity.subject_hash);
            return serve(
                services,
                &routed,
                &caller,
                t,
                served,
                Decoration { decision: last.as_ref(), mode: Some(shared_mode), timing: &[] },
            );
        }
    }

    let verdict = match decided {
        Some(v) => v,
        None => match decide::decide(services, &check, target.as_ref(), routed.failure(), routed.route_name()).await {
            Ok(v) => v,
            Err(e) => return finish(services, &routed.req, respond::error(&e), Decoration::NONE),
        },
    };
    // A request some shadow limit would have refused, whatever the enforced outcome.
    let warned = verdict.decision.as_ref().map_or(0, |d| d.snapshot().warnings.len() as u64);
    if warned > 0 {
        services.stats.borrow_mut().add(routed.route_name(), &caller.tier.name, "warned", warned);
    }
    if verdict.decision.as_ref().is_some_and(|d| !d.snapshot().shadow_denied.is_empty()) {
        services.stats.borrow_mut().add(routed.route_name(), &caller.tier.name, "shadow_denied", 1);
    }
    if let Some(d) = verdict.decision.as_ref().filter(|d| !d.is_allowed()) {
        // Reservations are refunded and slots freed before any window ends: a local block
        // would outlive them, so those checks are always asked again.
        if matches!(d, Decision::Denied { .. }) && check.usage.is_none() && check.concurrency.is_none() {
            services.limits.blocks.borrow_mut().insert(&check, d, services.clock.now_ms());
        }
        return deny(services, &routed, &caller, d, verdict.mode);
    }
    if let Some(d) = &verdict.decision {
        services.limits.remember(&caller.identity.subject_hash, d);
    }
    services.stats.borrow_mut().add(routed.route_name(), &caller.tier.name, "allowed", 1);
    let aftercare = verdict.decision.as_ref().and_then(|d| {
        Aftercare::of(services, &check, d, verdict.mode, route.and_then(|r| r.usage.as_ref()).map(|u| &u.source))
    });
    forward(services, &routed, &caller, target, verdict, aftercare).await
}

/// A refused credential (or a failed identification): every refused credential is charged to
/// the anonymous limits of its address, and answered `429` once those are exhausted.
async fn refuse_credential<P: Platform>(services: &Rc<Services<P>>, routed: &Routed<'_>, e: GateError) -> Handled {
    if let (GateError::Auth(_), Err((anon, refused))) = (&e, caller::charge_anonymous(services, &routed.req).await) {
        return deny(services, routed, &anon, &refused, LimitMode::Redis);
    }
    finish(services, &routed.req, respond::error(&e), Decoration::NONE)
}

/// The last stage of an allowed request: serve or fill from the cache, or proxy to the origin.
async fn forward<P: Platform>(
    services: &Rc<Services<P>>,
    routed: &Routed<'_>,
    caller: &Caller,
    target: Option<CacheTarget>,
    verdict: Verdict,
    aftercare: Option<Aftercare>,
) -> Handled {
    let decoration = |timing| Decoration { decision: verdict.decision.as_ref(), mode: Some(verdict.mode), timing };
    // Answers assembled here are complete: what they owe is paid at once, at the reservation
    // (the cache and bypass paths do not read usage reports).
    let proxied = target.is_none() && services.config.origin_url.is_some();
    let mut aftercare = aftercare;
    let owed: Vec<_> =
        if proxied { Vec::new() } else { aftercare.take().map(|a| a.finish(None)).into_iter().collect() };
    let mut handled = match (target, &services.cache, &routed.route) {
        (Some(t), Some(cache), Some((route, m))) => {
            let lookup = match verdict.read {
                Some(Ok(reply)) => Ok(cache.classify(&reply)),
                Some(Err(e)) => Err(e),
                // The check failed (open or local): the cache steps aside too.
                None => Err(RedisError::CircuitOpen),
            };
            let request = origin_request(services, &routed.req, route, m, caller);
            let started = services.clock.now_ms();
            let served = cache.serve_with(&t, lookup, request, verdict.locked.clone()).await;
            let mut timing = verdict.timing.clone();
            timing.push(format!("origin;dur={}", services.clock.now_ms().saturating_sub(started)));
            match served {
                Ok(served) => serve(services, routed, caller, &t, served, decoration(&timing)),
                Err(e) => finish(services, &routed.req, respond::error(&GateError::Load(e)), decoration(&timing)),
            }
        }
        (Some(_), None, Some((route, m))) => {
            // Memory mode: cacheable routes go to the origin (BYPASS).
            let request = origin_request(services, &routed.req, route, m, caller);
            let started = services.clock.now_ms();
            let result = cache::Origin::fetch(&*services.origin, &request).await;
            let mut timing = verdict.timing.clone();
            timing.push(format!("origin;dur={}", services.clock.now_ms().saturating_sub(started)));
            services.stats.borrow_mut().add(&route.name, &caller.tier.name, "bypass", 1);
            let resp = match result {
                Ok(o) => respond::passed_through(o, cache::CacheStatus::Bypass),
                Err(e) => respond::error(&GateError::Load(e.into())),
            };
            finish(services, &routed.req, resp, decoration(&timing))
        }
        _ if services.config.origin_url.is_none() => {
            finish(services, &routed.req, respond::error(&GateError::NoOrigin), decoration(&[]))
        }
        _ => {
            let mut plan = proxy_plan(services, routed, caller, decoration(&[]), verdict.timing.clone());
            plan.aftercare = aftercare;
            Handled { outcome: Outcome::Proxy(Box::new(plan)), background: Vec::new() }
        }
    };
    handled.background.extend(owed);
    handled
}

/// The cache target of a cacheable route for this request.
fn cache_target<P: Platform>(
    services: &Services<P>,
    routed: &Routed<'_>,
    caller: &Caller,
) -> Result<Option<CacheTarget>, GateError> {
    // A per-caller entry is shared only by requests of one authenticated subject: an address is
    // not a subject (a NAT or a /64 holds many people), so anonymous callers bypass.
    if per_caller_cache(routed.route.as_ref().map(|(r, _)| *r)) && caller.identity.kind == CallerKind::Anonymous {
        return Ok(None);
    }
    cache_target_of(services, routed, &caller.identity.subject_hash)
}

/// Whether `route` caches entries that are each caller's own.
fn per_caller_cache(route: Option<&Route>) -> bool {
    route.and_then(|r| r.cache.as_ref()).is_some_and(|c| c.scope == CacheScope::Caller)
}

/// The cache target of a request of the subject `subject_hash` (used only by per-caller
/// entries), when its route and method are cacheable.
fn cache_target_of<P: Platform>(
    services: &Services<P>,
    routed: &Routed<'_>,
    subject_hash: &str,
) -> Result<Option<CacheTarget>, GateError> {
    let Some((route, matched)) = &routed.route else { return Ok(None) };
    let Some(rule) = route.cache.as_ref() else { return Ok(None) };
    let req = &routed.req;
    let cacheable_method = match rule.key {
        CacheKeySource::Path => req.method == "GET" || req.method == "HEAD",
        CacheKeySource::JsonBody => req.method == "POST",
    };
    let Some(class) = services.config.policy.cache_class(&rule.class).filter(|_| cacheable_method) else {
        return Ok(None);
    };
    let query = (!req.query.is_empty()).then_some(req.query.as_str());
    let key = cache::key::cache_key(rule, matched, query, &req.body, subject_hash).map_err(GateError::CacheKey)?;
    Ok(Some(CacheTarget::new(&route.name, rule, class.clone(), key)))
}

/// The origin request of a cacheable route: a `GET` (or the JSON body's `POST`) of the fill
/// path, with only what the key covers forwarded on shared routes, signed when the origin
/// secret is set.
fn origin_request<P: Platform>(
    services: &Services<P>,
    req: &EdgeRequest,
    route: &Route,
    matched: &RouteMatch,
    caller: &Caller,
) -> OriginRequest {
    let path = route.fill_path(matched);
    let path_and_query = if req.query.is_empty() { path } else { format!("{path}?{}", req.query) };
    let method = if req.method == "HEAD" { "GET".to_owned() } else { req.method.clone() };
    let mut headers = match route.cache.as_ref().map(|c| c.scope) {
        Some(CacheScope::Global) => proxy::shared_fill_headers(!req.body.is_empty()),
        _ => proxy::upstream_request_headers(&req.headers, Some(&forwarded(caller))),
    };
    sign(services, &method, &path_and_query, &mut headers);
    OriginRequest { method, path_and_query, headers, body: req.body.clone() }
}

/// Adds `X-Tollgate-Signature` when `TOLLGATE_ORIGIN_SECRET` is set.
fn sign<P: Platform>(services: &Services<P>, method: &str, path_and_query: &str, headers: &mut Vec<(String, String)>) {
    if let Some(secret) = &services.config.origin_secret {
        let now_s = services.clock.now_ms() / 1000;
        signature::add(secret.as_bytes(), now_s, method, path_and_query, headers);
    }
}

/// A 429 for `decision`.
fn deny<P: Platform>(
    services: &Services<P>,
    routed: &Routed<'_>,
    caller: &Caller,
    decision: &Decision,
    mode: LimitMode,
) -> Handled {
    services.stats.borrow_mut().add(routed.route_name(), &caller.tier.name, "denied", 1);
    let resp = respond::denied(decision, routed.route_name(), &caller.tier.name);
    finish(services, &routed.req, resp, Decoration { decision: Some(decision), mode: Some(mode), timing: &[] })
}

/// A response from a cache answer, with its background refresh.
fn serve<P: Platform>(
    services: &Rc<Services<P>>,
    routed: &Routed<'_>,
    caller: &Caller,
    target: &CacheTarget,
    served: Served,
    decoration: Decoration<'_>,
) -> Handled {
    services.stats.borrow_mut().add(routed.route_name(), &caller.tier.name, served.status.stat_name(), 1);
    let mut served = served;
    let refresh = served.background.take();
    let resp = respond::cached(&routed.req, target, served, services.clock.now_ms());
    let mut handled = finish(services, &routed.req, resp, decoration);
    if let Some(refresh) = refresh {
        let services = services.clone();
        let route = target.route.clone();
        handled.background.push(Box::pin(async move {
            let outcome = refresh.run().await;
            if let Some(reason) = outcome.failure() {
                services.stats.borrow_mut().background_failed(BackgroundWork::Refresh);
                crate::log::error("cache_refresh_failed", &[("route", route.into()), ("reason", reason.into())]);
            }
        }));
    }
    handled
}

/// `resp`, decorated.
fn finish<P: Platform>(
    services: &Services<P>,
    req: &EdgeRequest,
    mut resp: EdgeResponse,
    decoration: Decoration<'_>,
) -> Handled {
    decoration.apply(&services.config.policy.cors, req, &mut resp);
    Handled::respond(resp)
}

/// The plan for streaming a request to the origin.
fn proxy_plan<P: Platform>(
    services: &Rc<Services<P>>,
    routed: &Routed<'_>,
    caller: &Caller,
    decoration: Decoration<'_>,
    timing: Vec<String>,
) -> ProxyPlan {
    let req = &routed.req;
    let path = routed.route.as_ref().map_or_else(|| req.path.clone(), |(r, m)| r.upstream_path(&req.path, m));
    let origin = services.config.origin_url.as_deref().unwrap_or_default();
    let mut shell = EdgeResponse::new(200);
    decoration.apply_limits(&mut shell);
    if routed.route.as_ref().is_some_and(|(r, _)| r.cache.is_some()) {
        // A cached route proxied: an anonymous caller on a per-caller route.
        shell.set_header("x-cache", "BYPASS");
    }
    let path_and_query = if req.query.is_empty() { path.clone() } else { format!("{path}?{}", req.query) };
    let mut changes = proxy::upstream_changes(&req.headers, Some(&forwarded(caller)));
    if services.config.origin_secret.is_some() {
        // The signature covers every header the origin receives.
        let mut sent = changes.apply(&req.headers);
        sign(services, &req.method, &path_and_query, &mut sent);
        if let Some(signed) = sent.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(signature::HEADER)) {
            changes.added.push(signed);
        }
    }
    let after_write =
        cache::key_for_write(&services.config.policy, &req.method, &req.path, &caller.identity.subject_hash)
            .map(|write| invalidate_later(services, write));
    ProxyPlan {
        url: proxy::upstream_url(origin, &path, &req.query),
        method: req.method.clone(),
        forwarded: changes,
        body: (!req.body.is_empty()).then(|| req.body.clone()),
        response_headers: shell.headers,
        cors: (services.config.policy.cors.clone(), req.header("origin").map(str::to_owned)),
        timeout_ms: services.config.policy.proxy.timeout_ms.get(),
        server_timing: timing,
        after_write,
        aftercare: None,
    }
}

/// The invalidation a successful write runs before its answer is returned.
fn invalidate_later<P: Platform>(
    services: &Rc<Services<P>>,
    write: cache::WriteTarget,
) -> Box<dyn FnOnce() -> Background> {
    let services = services.clone();
    Box::new(move || -> Background {
        Box::pin(async move {
            if let Some(cache) = &services.cache {
                if let Err(e) = cache.invalidate(&write.target, &services.config.policy.cache_classes).await {
                    services.stats.borrow_mut().background_failed(BackgroundWork::Invalidate);
                    crate::log::error(
                        "cache_invalidation_failed",
                        &[("route", write.route.clone().into()), ("reason", e.reason().into())],
                    );
                }
            }
        })
    })
}

/// The identity headers for the origin.
fn forwarded(caller: &Caller) -> Forwarded<'_> {
    Forwarded {
        subject_hash: &caller.identity.subject_hash,
        tier: &caller.tier.name,
        caller: caller.identity.kind.as_str(),
    }
}
