//! Native tests of the edge: the real router, gate and admin API over the shared fakes (an
//! in-memory Redis whose check script is the limiter's own model, a counting origin, a fake
//! clock and timer), through every outcome a request can have.

mod admin;
mod cache;
mod failures;
#[cfg(not(target_arch = "wasm32"))]
mod identity;
mod limits;

use std::rc::Rc;

use crate::clock::{FakeClock, FakeRandom};
use crate::testing::{run_with_timer, FakeOrigin, FakeRedis, FakeTimer};

use super::{Config, Edge, EdgeRequest, EdgeResponse, Handled, Outcome, Platform};

/// The fakes as a platform.
struct Fakes;

impl Platform for Fakes {
    type Transport = Rc<FakeRedis>;
    type Origin = Rc<FakeOrigin>;
    type Sleeper = Rc<FakeTimer>;
}

const START: u64 = 1_700_000_000_000;
const ADMIN: &str = "admin-token";

/// A small policy: anonymous callers 3 per hour, BASIC 5, one closed and one open route, one
/// cached config route.
const POLICY: &str = r#"{
  "tiers": {
    "ANON": { "limits": [ { "limit": 3, "window": "1h", "algorithm": "fixed_window" } ] },
    "BASIC": { "limits": [ { "limit": 5, "window": "1h", "algorithm": "fixed_window" } ] }
  },
  "routes": [
    { "name": "auth", "path": "/api/auth*", "on_redis_failure": "closed" },
    { "name": "open", "path": "/api/open*", "on_redis_failure": "open" },
    { "name": "config", "path": "/api/config/{name}", "methods": ["GET", "HEAD"], "upstream": "/config/{name}",
      "cache": { "class": "STATIC_CONFIG", "key": "path", "scope": "global" } }
  ],
  "cache_classes": { "STATIC_CONFIG": { "ttl": "1m", "jitter": 0.0, "stale": "1m" } },
  "cache": { "isolate_ttl": "1s" }
}"#;

struct World {
    policy: &'static str,
    clock: Rc<FakeClock>,
    timer: Rc<FakeTimer>,
    redis: Rc<FakeRedis>,
    origin: Rc<FakeOrigin>,
    edge: Edge<Fakes>,
}

impl World {
    /// An isolate with Redis (or without, in memory mode) and the admin token set.
    fn new(with_redis: bool) -> Self {
        Self::with_policy(with_redis, POLICY)
    }

    /// The same, under another policy.
    fn with_policy(with_redis: bool, policy: &'static str) -> Self {
        let clock = Rc::new(FakeClock::new(START));
        let timer = Rc::new(FakeTimer::new(clock.clone()));
        let redis = Rc::new(FakeRedis::new(clock.clone()));
        let origin = Rc::new(FakeOrigin::new(timer.clone(), r#"{"on":true}"#));
        let edge = Self::edge(policy, &clock, &timer, with_redis.then(|| redis.clone()), &origin);
        Self { policy, clock, timer, redis, origin, edge }
    }

    fn edge(
        policy: &'static str,
        clock: &Rc<FakeClock>,
        timer: &Rc<FakeTimer>,
        redis: Option<Rc<FakeRedis>>,
        origin: &Rc<FakeOrigin>,
    ) -> Edge<Fakes> {
        let with_redis = redis.is_some();
        let config = Config::from_env(|name| match name {
            "TOLLGATE_POLICY" => Some(policy.to_owned()),
            "ORIGIN_URL" => Some("http://origin.test".to_owned()),
            "TOLLGATE_ADMIN_TOKEN" => Some(ADMIN.to_owned()),
            "UPSTASH_REDIS_REST_URL" if with_redis => Some("http://redis.test".to_owned()),
            "UPSTASH_REDIS_REST_TOKEN" if with_redis => Some("t".to_owned()),
            _ => None,
        })
        .expect("valid test configuration");
        Edge::new(config, redis, origin.clone(), timer.clone(), clock.clone(), Rc::new(FakeRandom::new(vec![0.5])))
    }

    /// Another isolate over the same Redis and origin.
    fn other_isolate(&self) -> Edge<Fakes> {
        Self::edge(self.policy, &self.clock, &self.timer, Some(self.redis.clone()), &self.origin)
    }

    /// One request, and then its background work, as the Worker's `ctx.waitUntil` would run it.
    fn send(&self, req: EdgeRequest) -> Handled {
        let mut handled = run_with_timer(Some(&self.timer), self.edge.handle(req));
        for task in std::mem::take(&mut handled.background) {
            run_with_timer(Some(&self.timer), task);
        }
        handled
    }

    /// The response, or the shell of headers a proxied request would carry (status 0).
    fn answer(&self, req: EdgeRequest) -> EdgeResponse {
        answer_of(self.send(req))
    }

    fn admin(&self, method: &str, path: &str, body: &str) -> EdgeResponse {
        let req =
            EdgeRequest::new(method, path).with_header("authorization", &format!("Bearer {ADMIN}")).with_body(body);
        self.answer(req)
    }

    /// A new API key of `tier` for `subject`.
    fn key(&self, subject: &str, tier: &str) -> String {
        let resp = self.admin("POST", "/_tollgate/keys", &format!(r#"{{"subject":"{subject}","tier":"{tier}"}}"#));
        assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
        json(&resp)["key"].as_str().unwrap_or_default().to_owned()
    }
}

fn answer_of(handled: Handled) -> EdgeResponse {
    match handled.outcome {
        Outcome::Respond(resp) => resp,
        Outcome::Proxy(plan) => EdgeResponse { status: 0, headers: plan.response_headers, body: Vec::new() },
        Outcome::Events(plan) => plan.head,
    }
}

fn json(resp: &EdgeResponse) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or(serde_json::Value::Null)
}

/// An anonymous request from `ip`.
fn from_ip(method: &str, path: &str, ip: &str) -> EdgeRequest {
    EdgeRequest::new(method, path).with_header("cf-connecting-ip", ip)
}
