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
    assert!(plan.forwarded.added.iter().any(|(n, v)| n == "x-tollgate-tier" && v == "ANON"), "{:?}", plan.forwarded);
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

/// [`POLICY`] with a route whose entries are each caller's own.
const PER_CALLER_POLICY: &str = r#"{
  "tiers": {
    "ANON": { "limits": [ { "limit": 3, "window": "1h", "algorithm": "fixed_window" } ] },
    "BASIC": { "limits": [ { "limit": 5, "window": "1h", "algorithm": "fixed_window" } ] }
  },
  "routes": [
    { "name": "mine", "path": "/api/mine/{name}", "methods": ["GET"], "upstream": "/config/{name}",
      "cache": { "class": "STATIC_CONFIG", "key": "path", "scope": "caller" } },
    { "name": "config", "path": "/api/config/{name}", "methods": ["GET", "HEAD"], "upstream": "/config/{name}",
      "cache": { "class": "STATIC_CONFIG", "key": "path", "scope": "global" } }
  ],
  "cache_classes": { "STATIC_CONFIG": { "ttl": "1m", "jitter": 0.0, "stale": "1m" } }
}"#;

#[test]
fn concurrent_lookups_of_one_key_share_one_redis_request() {
    // On a route with per-caller entries the key is looked up before the check (the entry key
    // is the caller's).
    let w = World::with_policy(true, PER_CALLER_POLICY);
    let key = w.key("user-2", "BASIC");
    let count = |name: &str| w.redis.commands().iter().filter(|c| *c == name).count();
    let (gets, scripts) = (count("GET"), count("EVALSHA"));
    let requests =
        (0..5).map(|_| w.edge.handle(EdgeRequest::new("GET", "/api/mine/site").with_header("x-api-key", &key)));
    let answers = run_with_timer(Some(&w.timer), futures::future::join_all(requests));
    let limits: Vec<_> =
        answers.into_iter().map(|h| answer_of(h).header("x-ratelimit-limit").map(str::to_owned)).collect();
    assert!(limits.iter().all(|l| l.as_deref() == Some("5")), "{limits:?}");
    assert_eq!(count("GET") - gets, 1, "one lookup for five requests");
    assert_eq!(count("EVALSHA") - scripts, 5, "then one check each");
}

#[test]
fn on_a_shared_cached_route_a_never_seen_key_is_checked_and_the_entry_read_in_one_command() {
    let w = World::with_policy(true, PER_CALLER_POLICY);
    let warm = w.key("user-warm", "BASIC");
    assert_eq!(w.answer(EdgeRequest::new("GET", "/api/config/site").with_header("x-api-key", &warm)).status, 200);
    let fresh = w.other_isolate();
    let key = w.key("user-cached", "BASIC");
    let before = w.redis.commands().len();
    let mut handled = run_with_timer(
        Some(&w.timer),
        fresh.handle(EdgeRequest::new("GET", "/api/config/site").with_header("x-api-key", &key)),
    );
    handled.background.clear();
    let resp = answer_of(handled);
    assert_eq!((resp.status, resp.header("x-cache")), (200, Some("HIT")), "served from Redis");
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("4"), "charged to the record's subject");
    assert_eq!(&w.redis.commands()[before..], ["EVALSHA"], "the key, the limits and the entry in one command");
}

#[test]
fn a_key_never_seen_here_costs_one_command_its_check_which_reads_the_record() {
    let w = World::new(true);
    let key = w.key("user-one-trip", "BASIC");
    let fresh = w.other_isolate();
    let send = |edge: &Edge<Fakes>, req| {
        let mut handled = run_with_timer(Some(&w.timer), edge.handle(req));
        handled.background.clear();
        answer_of(handled)
    };
    let before = w.redis.commands().len();
    let resp = send(&fresh, EdgeRequest::new("GET", "/x").with_header("x-api-key", &key));
    assert_eq!((resp.status, resp.header("x-ratelimit-limit")), (0, Some("5")), "proxied under BASIC");
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("4"));
    assert_eq!(&w.redis.commands()[before..], ["EVALSHA"], "no lookup of its own");
    // The record is remembered: the next request is the plain check.
    let before = w.redis.commands().len();
    let again = send(&fresh, EdgeRequest::new("GET", "/x").with_header("x-api-key", &key));
    assert_eq!(again.header("x-ratelimit-remaining"), Some("3"), "the same subject's limits");
    assert_eq!(&w.redis.commands()[before..], ["EVALSHA"]);
    // The subject's limits are the same whichever way the key was verified.
    let third = w.answer(EdgeRequest::new("GET", "/x").with_header("x-api-key", &key));
    assert_eq!(third.header("x-ratelimit-remaining"), Some("2"));
}

#[test]
fn an_unknown_or_revoked_key_checked_by_its_record_is_refused_and_charges_its_address() {
    let w = World::new(true);
    let key = w.key("user-revoked", "BASIC");
    let listed = json(&w.admin("GET", "/_tollgate/keys", ""));
    let id = listed["keys"][0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(w.admin("DELETE", &format!("/_tollgate/keys/{id}"), "").status, 204);
    let made_up = format!("tg_{:012x}_{}", 7, "B".repeat(43));
    for (k, why) in [(&key, "revoked"), (&made_up, "unknown")] {
        let fresh = w.other_isolate();
        let mut handled = run_with_timer(
            Some(&w.timer),
            fresh.handle(from_ip("GET", "/x", "203.0.113.9").with_header("x-api-key", k)),
        );
        handled.background.clear();
        let resp = answer_of(handled);
        assert_eq!(resp.status, 401, "{why}");
    }
    // Both refusals were charged to the address's anonymous limits (3 per hour).
    let anon = w.answer(from_ip("GET", "/x", "203.0.113.9"));
    assert_eq!(anon.header("x-ratelimit-remaining"), Some("0"), "two refusals and this request");
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
