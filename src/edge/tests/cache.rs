//! Miss with single-flight, hit (Redis and isolate), stale, bypass.

use super::*;
use crate::testing::Behaviour;

fn config(ip: &str) -> EdgeRequest {
    from_ip("GET", "/api/config/app", ip)
}

#[test]
fn concurrent_cold_requests_fill_once_then_hit() {
    let w = World::new(true);
    let requests = (0..8).map(|i| w.edge.handle(config(&format!("203.0.113.{i}"))));
    let answers = run_with_timer(Some(&w.timer), futures::future::join_all(requests));
    let statuses: Vec<_> = answers.into_iter().map(|h| answer_of(h).header("x-cache").map(str::to_owned)).collect();
    assert_eq!(w.origin.calls.get(), 1, "single-flight: one origin fetch for eight requests");
    assert!(statuses.iter().all(|s| s.as_deref() == Some("MISS")), "the waiters share the fill: {statuses:?}");
    let hit = w.answer(config("203.0.113.99"));
    assert_eq!((hit.status, hit.header("x-cache")), (200, Some("HIT")));
    assert_eq!(hit.body, br#"{"on":true}"#);
    let path = w.origin.last_request.borrow().as_ref().map(|r| r.path_and_query.clone());
    assert_eq!(path.as_deref(), Some("/config/app"), "the upstream template");
}

#[test]
fn another_isolate_hits_in_redis_and_a_stale_entry_is_served_stale() {
    let w = World::new(true);
    assert_eq!(w.answer(config("203.0.113.1")).header("x-cache"), Some("MISS"));
    let other = w.other_isolate();
    let before = w.redis.commands().len();
    let hit = answer_of(run_with_timer(Some(&w.timer), other.handle(config("203.0.113.2"))));
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(&w.redis.commands()[before..], ["EVALSHA"], "a Redis hit is one command");
    assert_eq!(w.origin.calls.get(), 1);
    w.clock.advance(61_000);
    let stale = answer_of(run_with_timer(Some(&w.timer), other.handle(config("203.0.113.3"))));
    assert_eq!(stale.header("x-cache"), Some("STALE"));
}

#[test]
fn without_redis_the_cache_is_bypassed_and_a_dead_origin_is_a_502() {
    let w = World::new(false);
    assert_eq!(w.answer(config("203.0.113.4")).header("x-cache"), Some("BYPASS"));
    w.origin.set(Behaviour::Down);
    let resp = w.answer(config("203.0.113.5"));
    assert_eq!(resp.status, 502);
    assert_eq!(json(&resp)["type"], "https://tollgate.dev/problems/origin-unreachable");
}

#[test]
fn a_head_request_is_answered_without_a_body() {
    let w = World::new(true);
    w.answer(config("203.0.113.6"));
    let head = w.answer(from_ip("HEAD", "/api/config/app", "203.0.113.7"));
    assert_eq!((head.status, head.body.len()), (200, 0));
}
