//! Each failure policy with Redis failing.

use super::*;

#[test]
fn with_redis_down_each_route_follows_its_failure_policy() {
    let w = World::new(true);
    w.redis.down.set(true);
    let local = w.answer(from_ip("GET", "/x", "198.51.100.20"));
    assert_eq!((local.status, local.header("x-tollgate-mode")), (0, Some("local")));
    assert_eq!(local.header("x-ratelimit-limit"), Some("3"), "limited in the isolate");
    let open = w.answer(from_ip("GET", "/api/open/1", "198.51.100.20"));
    assert_eq!((open.status, open.header("x-tollgate-mode")), (0, Some("open")));
    let closed = w.answer(from_ip("GET", "/api/auth/login", "198.51.100.20"));
    assert_eq!(closed.status, 503);
    assert_eq!(json(&closed)["type"], "https://tollgate.dev/problems/limiter-unavailable");
    assert_eq!(closed.header("retry-after"), Some("5"));
    let cached = w.answer(from_ip("GET", "/api/config/app", "198.51.100.20"));
    assert_eq!(cached.header("x-cache"), Some("BYPASS"), "the cache steps aside");
}

#[test]
fn a_verified_key_keeps_its_tier_through_an_outage_and_an_unknown_one_is_never_anonymous() {
    let w = World::new(true);
    let key = w.key("user-3", "BASIC");
    assert_eq!(w.answer(EdgeRequest::new("GET", "/x").with_header("x-api-key", &key)).status, 0);
    w.clock.advance(60_000);
    w.redis.down.set(true);
    let known = w.answer(EdgeRequest::new("GET", "/x").with_header("x-api-key", &key));
    assert_eq!((known.header("x-ratelimit-limit"), known.header("x-tollgate-mode")), (Some("5"), Some("local")));
    let made_up = |i: u32| format!("tg_{i:012x}_{}", "A".repeat(43));
    let unknown = made_up(1);
    let unknown = unknown.as_str();
    let closed = w.answer(EdgeRequest::new("GET", "/api/auth/x").with_header("x-api-key", unknown));
    assert_eq!(closed.status, 503, "a closed route cannot verify the key");
    let local = w.answer(from_ip("GET", "/x", "198.51.100.30").with_header("x-api-key", unknown));
    assert_eq!(local.header("x-ratelimit-limit"), Some("5"), "the default tier's bucket, not the anonymous one");
    for i in 2..6 {
        let resp = w.answer(from_ip("GET", "/x", "198.51.100.30").with_header("x-api-key", &made_up(i)));
        assert_eq!(resp.status, 0, "key {i}");
    }
    let flooded = w.answer(from_ip("GET", "/x", "198.51.100.30").with_header("x-api-key", unknown));
    assert_eq!(flooded.status, 429, "made-up keys from one address share one bucket");
}

#[test]
fn the_fallback_starts_from_what_redis_last_said_remained() {
    let w = World::new(true);
    let caller = "198.51.100.50";
    assert_eq!(w.answer(from_ip("GET", "/x", caller)).header("x-ratelimit-remaining"), Some("2"));
    assert_eq!(w.answer(from_ip("GET", "/x", caller)).header("x-ratelimit-remaining"), Some("1"));
    w.redis.down.set(true);
    let local = w.answer(from_ip("GET", "/x", caller));
    assert_eq!((local.status, local.header("x-tollgate-mode")), (0, Some("local")));
    assert_eq!(local.header("x-ratelimit-remaining"), Some("0"), "one left, as Redis said");
    let over = w.answer(from_ip("GET", "/x", caller));
    assert_eq!(over.status, 429, "3 per hour across the switch, not 3 more");
}

#[test]
fn what_the_fallback_admitted_is_charged_to_redis_when_it_answers_again() {
    let w = World::new(true);
    let caller = "198.51.100.60";
    assert_eq!(w.answer(from_ip("GET", "/x", caller)).header("x-ratelimit-remaining"), Some("2"));
    w.redis.down.set(true);
    assert_eq!(w.answer(from_ip("GET", "/x", caller)).header("x-tollgate-mode"), Some("local"));
    w.redis.down.set(false);
    w.clock.advance(6_000); // past the breaker's cooldown
    let back = w.answer(from_ip("GET", "/x", caller));
    assert_eq!((back.status, back.header("x-tollgate-mode")), (0, Some("redis")));
    assert_eq!(back.header("x-ratelimit-remaining"), Some("0"), "the local admission was charged first");
    assert_eq!(w.answer(from_ip("GET", "/x", caller)).status, 429, "3 per hour across the outage");
}

#[test]
fn a_long_outage_owes_redis_everything_the_fallback_admitted() {
    let w = World::new(true);
    let caller = "198.51.100.61";
    assert_eq!(w.answer(from_ip("GET", "/x", caller)).header("x-ratelimit-remaining"), Some("2"));
    w.redis.down.set(true);
    // Several requests while Redis is down: every one is owed, none lost to a failed payment.
    assert_eq!(w.answer(from_ip("GET", "/x", caller)).header("x-tollgate-mode"), Some("local"));
    let last = w.answer(from_ip("GET", "/x", caller));
    assert_eq!((last.status, last.header("x-ratelimit-remaining")), (0, Some("0")), "the seed: 2 were left");
    w.redis.down.set(false);
    w.clock.advance(6_000);
    let back = w.answer(from_ip("GET", "/x", caller));
    assert_eq!((back.status, back.header("x-tollgate-mode")), (429, Some("redis")), "Redis was charged both");
}
