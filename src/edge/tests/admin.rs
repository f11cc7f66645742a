//! Admin authentication and a few calls through the router.

use super::*;

#[test]
fn the_admin_api_needs_the_token() {
    let w = World::new(true);
    let none = w.answer(EdgeRequest::new("GET", "/_tollgate/stats"));
    assert_eq!((none.status, none.header("www-authenticate").is_some()), (401, true));
    let wrong = w.answer(EdgeRequest::new("GET", "/_tollgate/stats").with_header("authorization", "Bearer nope"));
    assert_eq!(wrong.status, 401);
    let ok = w.admin("GET", "/_tollgate/stats", "");
    assert_eq!((ok.status, ok.header("cache-control")), (200, Some("no-store")));
    let public = w.answer(EdgeRequest::new("GET", "/_tollgate/health"));
    assert_eq!(json(&public), serde_json::json!({"status": "ok"}), "the public part says nothing more");
    assert_eq!(w.admin("PATCH", "/_tollgate/keys", "").status, 405);
    assert_eq!(w.admin("GET", "/_tollgate/nothing", "").status, 404);
    assert_eq!(w.admin("POST", "/_tollgate/keys", "{not json").status, 400);
}

#[test]
fn limits_show_says_which_tier_each_line_is_for() {
    let w = World::new(true);
    w.key("user-4", "BASIC");
    let shown = w.admin("GET", "/_tollgate/limits/user-4", "");
    let body = json(&shown);
    assert_eq!(body["key_tiers"], serde_json::json!(["BASIC"]));
    assert_eq!(body["limits"][0]["scope"], "tier");
    assert_eq!(body["limits"][0]["tier"], "BASIC");
}

#[test]
fn stats_count_what_the_gate_decided_and_what_reached_redis() {
    let w = World::new(true);
    for _ in 0..4 {
        w.answer(from_ip("GET", "/x", "198.51.100.40"));
    }
    let stats = json(&w.admin("GET", "/_tollgate/stats", ""));
    let text = stats.to_string();
    assert!(text.contains("\"allowed\":3") && text.contains("\"denied\":1"), "{text}");
}

#[test]
fn the_event_stream_is_a_subscription_to_tollgates_channels_with_the_workers_credentials() {
    let w = World::new(true);
    let req = EdgeRequest::new("GET", "/_tollgate/events?channels=invalidation")
        .with_header("authorization", &format!("Bearer {ADMIN}"));
    let Outcome::Events(plan) = w.send(req).outcome else { panic!("an event stream") };
    assert_eq!(plan.url, "http://redis.test/subscribe/system:cache_invalidation");
    assert!(plan.request_headers.contains(&("authorization".to_owned(), "Bearer t".to_owned())));
    assert_eq!((plan.head.status, plan.head.header("content-type")), (200, Some("text/event-stream; charset=utf-8")));
    let all = w.admin("GET", "/_tollgate/events", "");
    assert_eq!(all.header("cache-control"), Some("no-store"));
}

#[test]
fn the_event_stream_needs_the_token_tollgates_channels_and_redis() {
    let w = World::new(true);
    let none = w.answer(EdgeRequest::new("GET", "/_tollgate/events"));
    assert_eq!(none.status, 401);
    let wrong =
        w.answer(EdgeRequest::new("GET", "/_tollgate/events").with_header("authorization", "Bearer admin-tokenX"));
    assert_eq!(wrong.status, 401);
    let other = w.admin("GET", "/_tollgate/events?channels=system:*", "");
    assert_eq!(other.status, 400);
    assert!(String::from_utf8_lossy(&other.body).contains("channels: unknown channel"));
    assert_eq!(w.admin("POST", "/_tollgate/events", "").status, 405);
    let memory = World::new(false).admin("GET", "/_tollgate/events", "");
    assert_eq!((memory.status, memory.header("content-type")), (503, Some("application/problem+json")));
}
