//! The entrance: every request meets it once. It decides what kind of request this is
//! (preflight, admin, gated) and applies what holds for all of them, then hands the request to
//! the one handler for its kind; no handler calls back into another.
//!
//! What holds for all of them: the path is normalized once ([`crate::path`]) and the normalized
//! path is the one matched and forwarded; a body is read only where the edge needs it, within a
//! cap, and an admin body only once its token checked out ([`super::body`]).

use std::rc::Rc;

use crate::clock::{Clock, Random};
use crate::policy::CacheKeySource;

use super::admin;
use super::body::ADMIN_BODY_BYTES;
use super::config::Config;
use super::cors;
use super::error::GateError;
use super::gate;
use super::http::{EdgeRequest, EdgeResponse};
use super::respond::{Handled, Outcome};
use super::services::{Platform, Services};

/// The edge of one isolate for one configuration.
pub struct Edge<P: Platform> {
    services: Rc<Services<P>>,
}

impl<P: Platform> Edge<P> {
    /// The edge over `config`; `transport` is `None` in memory mode.
    pub fn new(
        config: Config,
        transport: Option<P::Transport>,
        origin: P::Origin,
        sleeper: P::Sleeper,
        clock: Rc<dyn Clock>,
        random: Rc<dyn Random>,
    ) -> Self {
        Self::from_services(Services::new(config, transport, origin, sleeper, clock, random))
    }

    /// The edge over services built by the caller (with key sets, say).
    pub fn from_services(services: Services<P>) -> Self {
        Self { services: Rc::new(services) }
    }

    /// The isolate's shared services.
    pub fn services(&self) -> &Rc<Services<P>> {
        &self.services
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.services.config
    }

    /// How many bytes of the body of a request to (normalized) `path` the edge reads: `None`
    /// streams it to the origin (or drops it) unread. Admin calls are read, up to
    /// [`ADMIN_BODY_BYTES`], only when `authorization` carries the admin token; JSON-body cache
    /// routes up to `cache.max_body_bytes`.
    pub fn body_cap(&self, method: &str, path: &str, authorization: Option<&str>) -> Option<usize> {
        let services = &self.services;
        if path.starts_with("/_tollgate/") {
            return admin::token_matches(services, authorization).then_some(ADMIN_BODY_BYTES);
        }
        let json_body = services
            .config
            .policy
            .route_for(method, path)
            .is_some_and(|(route, _)| route.cache.as_ref().is_some_and(|c| c.key == CacheKeySource::JsonBody));
        json_body.then_some(services.config.policy.cache.max_body_bytes as usize)
    }

    /// The request path in normal form, or the `400` problem to answer with.
    pub fn normalize_path(path: &str) -> Result<String, EdgeResponse> {
        crate::path::normalize(path)
            .map_err(|e| GateError::BadRequest(format!("{e}")).problem().with("reason", e.as_str()).to_response())
    }

    /// Handles one request.
    pub async fn handle(&self, mut req: EdgeRequest) -> Handled {
        let services = &self.services;
        match Self::normalize_path(&req.path) {
            Ok(path) => req.path = path,
            Err(mut resp) => {
                cors::decorate(&services.config.policy.cors, &req, &mut resp);
                return Handled::respond(resp);
            }
        }
        let mut handled = if cors::is_preflight(&req) {
            Handled::respond(cors::preflight(&services.config.policy.cors, &req))
        } else if req.path == "/_tollgate" {
            Handled::respond(EdgeResponse::new(308).with_header("location", "/_tollgate/"))
        } else if req.path.starts_with("/_tollgate/") {
            let mut outcome = admin::handle(services, &req).await;
            match &mut outcome {
                Outcome::Respond(resp) => cors::decorate(&services.config.policy.cors, &req, resp),
                Outcome::Events(plan) => cors::decorate(&services.config.policy.cors, &req, &mut plan.head),
                Outcome::Proxy(_) => {}
            }
            Handled { outcome, background: Vec::new() }
        } else {
            gate::gated(services, req).await
        };
        if let Some(flush) = services.flush_if_due() {
            handled.background.push(flush);
        }
        handled
    }

    /// Warms every configured hot key (cron trigger).
    pub async fn warm_all(&self) {
        if let Some(cache) = &self.services.cache {
            let _ = crate::cache::warm(cache, &self.services.config.policy, None, &[]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::clock::{FakeClock, FakeRandom};
    use crate::edge::respond::Outcome;
    use crate::testing::{run_with_timer, FakeOrigin, FakeRedis, FakeTimer};

    struct TestPlatform;

    impl Platform for TestPlatform {
        type Transport = Rc<FakeRedis>;
        type Origin = FakeOrigin;
        type Sleeper = Rc<FakeTimer>;
    }

    const POLICY: &str = r#"{
        "tiers": { "ANON": { "limits": [ { "limit": 3, "window": "1h" } ] },
                   "BASIC": { "limits": [ { "limit": 100, "window": "1h" } ] } },
        "routes": [
            { "name": "auth", "path": "/api/auth*", "limits": [ { "limit": 1, "window": "15m" } ] },
            { "name": "mine", "path": "/api/mine", "methods": ["GET"], "cache": { "class": "SESSION", "scope": "caller" } },
            { "name": "rag", "path": "/api/rag", "methods": ["POST"], "cache": { "class": "FREQUENT_DATA", "key": "json_body" } }
        ],
        "cache": { "max_body_bytes": 1000 }
    }"#;

    struct Fixture {
        edge: Edge<TestPlatform>,
        timer: Rc<FakeTimer>,
    }

    fn fixture() -> Fixture {
        let clock = Rc::new(FakeClock::new(1_800_000_000_000));
        let timer = Rc::new(FakeTimer::new(clock.clone()));
        let vars = [
            ("ORIGIN_URL", "http://origin.test"),
            ("TOLLGATE_ADMIN_TOKEN", "admin-token"),
            ("TOLLGATE_POLICY", POLICY),
            ("UPSTASH_REDIS_REST_URL", "http://redis.test"),
            ("UPSTASH_REDIS_REST_TOKEN", "t"),
        ];
        let config =
            Config::from_env(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())).unwrap();
        let redis = Rc::new(FakeRedis::new(clock.clone()));
        let origin = FakeOrigin::new(timer.clone(), "{}");
        let edge = Edge::new(config, Some(redis), origin, timer.clone(), clock, Rc::new(FakeRandom::new(vec![0.5])));
        Fixture { edge, timer }
    }

    impl Fixture {
        fn handle(&self, req: EdgeRequest) -> Handled {
            run_with_timer(Some(&self.timer), self.edge.handle(req))
        }

        /// The status answered, or 0 for a request proxied (with the origin URL it goes to).
        fn outcome(&self, req: EdgeRequest) -> (u16, String) {
            match self.handle(req).outcome {
                Outcome::Respond(r) => (r.status, r.header("x-cache").unwrap_or("").to_owned()),
                Outcome::Proxy(plan) => {
                    let cache = plan.response_headers.iter().find(|(n, _)| n == "x-cache").map(|(_, v)| v.clone());
                    (0, format!("{} {}", plan.url, cache.unwrap_or_default()))
                }
                Outcome::Events(plan) => (plan.head.status, String::new()),
            }
        }
    }

    fn from(ip: &str, method: &str, path: &str) -> EdgeRequest {
        EdgeRequest::new(method, path).with_header("cf-connecting-ip", ip)
    }

    #[test]
    fn the_normalized_path_is_matched_and_forwarded() {
        let f = fixture();
        assert_eq!(f.outcome(from("10.0.0.1", "POST", "/api/%61uth/./login")).1, "http://origin.test/api/auth/login ");
        for spelling in ["/api/auth/login", "//api/auth/login", "/API/auth/login", "/api/x/../auth/login"] {
            assert_eq!(f.outcome(from("10.0.0.1", "POST", spelling)).0, 429, "{spelling}");
        }
        for bad in ["/api%2Fauth/login", "/api/auth%5Clogin", "/api/%zz"] {
            assert_eq!(f.outcome(from("10.0.0.2", "POST", bad)).0, 400, "{bad}");
        }
    }

    #[test]
    fn bodies_are_read_only_where_needed_and_within_their_cap() {
        let f = fixture();
        assert_eq!(f.edge.body_cap("POST", "/api/rag", None), Some(1000));
        assert_eq!(f.edge.body_cap("POST", "/api/chat", None), None, "streamed to the origin");
        assert_eq!(f.edge.body_cap("POST", "/_tollgate/warm", None), None, "no token, no read");
        assert_eq!(f.edge.body_cap("POST", "/_tollgate/warm", Some("Bearer wrong")), None);
        assert_eq!(f.edge.body_cap("POST", "/_tollgate/warm", Some("Bearer admin-token")), Some(ADMIN_BODY_BYTES));
    }

    #[test]
    fn anonymous_callers_bypass_per_caller_entries() {
        let f = fixture();
        let (status, plan) = f.outcome(from("10.0.0.3", "GET", "/api/mine"));
        assert_eq!((status, plan.as_str()), (0, "http://origin.test/api/mine BYPASS"));
    }

    #[test]
    fn wrong_admin_tokens_are_throttled_per_address() {
        let f = fixture();
        let attempt = |ip: &str, token: &str| {
            f.outcome(
                EdgeRequest::new("GET", "/_tollgate/nothing-here")
                    .with_header("cf-connecting-ip", ip)
                    .with_header("authorization", &format!("Bearer {token}")),
            )
            .0
        };
        for _ in 0..admin::throttle::MAX_FAILURES {
            assert_eq!(attempt("10.0.0.4", "wrong"), 401);
        }
        assert_eq!(attempt("10.0.0.4", "wrong"), 429);
        assert_eq!(attempt("10.0.0.4", "admin-token"), 429, "the address waits out the window");
        assert_eq!(attempt("10.0.0.5", "admin-token"), 404, "another address gets through to the routes");
    }

    #[test]
    fn me_and_refused_credentials_are_charged_to_the_anonymous_limit() {
        let f = fixture();
        let me = || f.outcome(from("10.0.0.6", "GET", "/_tollgate/me")).0;
        assert_eq!([me(), me(), me()], [200, 200, 200]);
        assert_eq!(me(), 429, "the anonymous tier allows 3 an hour");
        let bad_key = |ip: &str| {
            f.outcome(
                from(ip, "GET", "/anything")
                    .with_header("x-api-key", "tg_abcdefghijkl_0123456789abcdef0123456789abcdef"),
            )
            .0
        };
        let statuses: Vec<u16> = (0..5).map(|_| bad_key("10.0.0.7")).collect();
        assert!(statuses.starts_with(&[401, 401]), "{statuses:?}");
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    }
}
