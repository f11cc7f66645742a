//! Allowed and proxied, denied first and from the block cache, headers that agree.

use super::*;

#[test]
fn an_allowed_request_is_proxied_with_its_rate_limit_headers() {
    let w = World::new(true);
    let handled = w.send(from_ip("GET", "/anything?x=1", "198.51.100.7"));
    let Outcome::Proxy(plan) = handled.outcome else { panic!("proxied") };
    assert_eq!(plan.url, "http://origin.test/anything?x=1");
    let shell = EdgeResponse { status: 0, headers: plan.response_headers, body: Vec::new() };
    assert_eq!(shell.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(shell.header("x-ratelimit-remaining"), Some("2"));
    assert_eq!(shell.header("x-tollgate-mode"), Some("redis"));
    assert!(
        plan.request_headers.iter().any(|(n, v)| n == "x-tollgate-tier" && v == "ANON"),
        "{:?}",
        plan.request_headers
    );
}

#[test]
fn the_request_over_the_limit_is_denied_and_then_refused_without_redis() {
    let w = World::new(true);
    for _ in 0..3 {
        assert_eq!(w.answer(from_ip("GET", "/x", "198.51.100.8")).status, 0);
    }
    let denied = w.answer(from_ip("GET", "/x", "198.51.100.8"));
    assert_eq!(denied.status, 429);
    assert_eq!(denied.header("content-type"), Some("application/problem+json"));
    let body = json(&denied);
    assert_eq!(body["type"], "https://tollgate.dev/problems/rate-limited");
    let retry: u64 = denied.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    let reset: u64 = denied.header("x-ratelimit-reset").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(retry > 0 && retry <= 3600, "{retry}");
    assert!(reset.abs_diff(START / 1000 + retry) <= 1, "reset {reset} agrees with retry-after {retry}");

    let evalsha_before = w.redis.commands().iter().filter(|c| *c == "EVALSHA").count();
    let again = w.answer(from_ip("GET", "/x", "198.51.100.8"));
    assert_eq!(again.status, 429, "refused from the block cache");
    assert_eq!(w.redis.commands().iter().filter(|c| *c == "EVALSHA").count(), evalsha_before, "no Redis call");
    assert_eq!(w.answer(from_ip("GET", "/x", "198.51.100.9")).status, 0, "another caller is not blocked");
}

#[test]
fn an_api_key_is_limited_by_its_tier_and_a_bad_one_is_refused() {
    let w = World::new(true);
    let key = w.key("user-1", "BASIC");
    let resp = w.answer(EdgeRequest::new("GET", "/x").with_header("x-api-key", &key));
    assert_eq!((resp.status, resp.header("x-ratelimit-limit")), (0, Some("5")));
    for bad in ["tg_000000000000_nope", "Bearer not.a.jwt", "tg_x"] {
        let req = if bad.starts_with("Bearer") {
            EdgeRequest::new("GET", "/x").with_header("authorization", bad)
        } else {
            EdgeRequest::new("GET", "/x").with_header("x-api-key", bad)
        };
        let resp = w.answer(req);
        assert_eq!(resp.status, 401, "{bad}");
        assert_eq!(json(&resp)["type"], "https://tollgate.dev/problems/unauthorized");
    }
}

#[test]
fn concurrent_lookups_of_one_key_share_one_redis_request() {
    let w = World::new(true);
    let key = w.key("user-2", "BASIC");
    let before = w.redis.commands().iter().filter(|c| *c == "GET").count();
    let requests = (0..5).map(|_| w.edge.handle(EdgeRequest::new("GET", "/x").with_header("x-api-key", &key)));
    let answers = run_with_timer(Some(&w.timer), futures::future::join_all(requests));
    let limits: Vec<_> =
        answers.into_iter().map(|h| answer_of(h).header("x-ratelimit-limit").map(str::to_owned)).collect();
    assert!(limits.iter().all(|l| l.as_deref() == Some("5")), "{limits:?}");
    assert_eq!(w.redis.commands().iter().filter(|c| *c == "GET").count() - before, 1, "one lookup for five requests");
}

#[test]
fn memory_mode_limits_in_the_isolate() {
    let w = World::new(false);
    for _ in 0..3 {
        assert_eq!(w.answer(from_ip("GET", "/x", "192.0.2.1")).header("x-tollgate-mode"), Some("memory"));
    }
    assert_eq!(w.answer(from_ip("GET", "/x", "192.0.2.1")).status, 429);
}

#[test]
fn a_verified_key_is_not_held_back_by_made_up_keys_from_its_address() {
    let w = World::new(true);
    let shared_ip = "198.51.100.77";
    let key = w.key("user-nat", "BASIC");
    let with_key = |k: &str| from_ip("GET", "/x", shared_ip).with_header("x-api-key", k);
    assert_eq!(w.answer(with_key(&key)).status, 0, "verified once");
    let made_up = |i: u32| format!("tg_{i:012x}_{}", "B".repeat(43));
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(w.answer(with_key(&made_up(i))).status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429], "refusals are charged to the address (3 per hour)");
    assert_eq!(w.answer(with_key(&key)).status, 0, "the customer behind the same address still gets in");
    let new_key = w.key("user-nat-2", "BASIC");
    assert_eq!(w.answer(with_key(&new_key)).status, 429, "a key never seen here waits for the address's allowance");
}

/// One metered, slotted chat route: 300 tokens reserved per request.
const CHAT_POLICY: &str = r#"{
  "tiers": {
    "ANON": { "limits": [ { "limit": 10, "window": "1h", "algorithm": "fixed_window" } ] },
    "BASIC": { "limits": [ { "limit": 10, "window": "1h", "algorithm": "fixed_window" } ] }
  },
  "routes": [
    { "name": "chat", "path": "/v1/chat*", "methods": ["POST"],
      "limits": [ { "id": "chat-tokens-1d", "unit": "tokens", "limit": 1000, "window": "1d", "algorithm": "fixed_window" } ],
      "usage": { "unit": "tokens", "from": "header", "name": "X-Usage-Tokens", "reserve": 300 },
      "concurrency": { "limit": 2, "lease": "30s" } }
  ]
}"#;

#[test]
fn the_limits_view_shows_a_reservation_in_flight_until_it_settles() {
    let w = World::with_policy(false, CHAT_POLICY);
    let view = || {
        let body = json(&w.admin("GET", "/_tollgate/limits/ip:203.0.113.5?tier=ANON", ""));
        let used = body["limits"].as_array().and_then(|ls| ls.iter().find(|l| l["id"] == "chat-tokens-1d")).cloned();
        (used.map(|l| l["used"].clone()), body["reservations"].clone(), body["leases"][0]["in_flight"].clone())
    };
    assert_eq!(
        view(),
        (Some(serde_json::json!(0)), serde_json::json!([{"unit": "tokens", "in_flight": 0, "units": 0}]), 0.into())
    );
    let handled = w.send(from_ip("POST", "/v1/chat/completions", "203.0.113.5"));
    let Outcome::Proxy(mut plan) = handled.outcome else { panic!("proxied") };
    assert_eq!(
        view(),
        (Some(serde_json::json!(300)), serde_json::json!([{"unit": "tokens", "in_flight": 1, "units": 300}]), 1.into()),
        "while the answer streams: the reservation and the lease are in flight"
    );
    let aftercare = plan.aftercare.take().expect("the request owes a settlement and a release");
    run_with_timer(Some(&w.timer), aftercare.finish(Some(120)));
    assert_eq!(
        view(),
        (Some(serde_json::json!(120)), serde_json::json!([{"unit": "tokens", "in_flight": 0, "units": 0}]), 0.into()),
        "settled at what the origin reported, nothing left in flight"
    );
}
