//! What scripts rely on without a real Worker: usage errors exit 2, an unreachable Worker exits 4
//! with one line, a refused token exits 3, and replies render as documented (against a fake
//! admin API on 127.0.0.1).

mod support;

use serde_json::{json, Value};
use support::{run, tollgate, unreachable_url, Canned, FakeWorker};

const TOKEN: &str = "test-admin-token";

fn canned(method: &'static str, path: &'static str, status: u16, body: Value) -> Canned {
    Canned { method, path, status, body: if body.is_null() { String::new() } else { body.to_string() } }
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        vec!["no-such-command"],
        vec!["invalidate"],
        vec!["invalidate", "--key", "app"],
        vec!["invalidate", "--tag", "a", "--namespace", "b"],
        vec!["limits", "override", "user_1"],
        vec!["limits", "override", "user_1", "--limit", "0", "--window", "1h"],
        vec!["limits", "override", "user_1", "--limit", "5", "--window", "90"],
        vec!["keys", "create", "--subject", "u"],
        vec!["monitor", "--count", "0"],
    ] {
        let r = run(tollgate().args(&args));
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {r:?}");
        assert_eq!(r.stdout, "");
    }
}

#[test]
fn help_and_version_exit_0() {
    let r = run(tollgate().arg("--help"));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("check-config"), "{r:?}");
    assert!(r.stdout.contains("Exit codes: 0 ok"), "{r:?}");
    let r = run(tollgate().arg("--version"));
    assert_eq!((r.code, r.stdout.as_str()), (0, concat!("tollgate ", env!("CARGO_PKG_VERSION"), "\n")));
}

#[test]
fn the_token_never_shows_in_help() {
    let r = run(tollgate().arg("--help").env("TOLLGATE_ADMIN_TOKEN", "sekrit-value"));
    assert!(!r.stdout.contains("sekrit-value"), "{r:?}");
}

#[test]
fn an_unreachable_worker_exits_4_with_one_line() {
    let url = unreachable_url();
    for args in [vec!["health"], vec!["stats"], vec!["keys", "list"], vec!["monitor", "--count", "1"]] {
        let r = run(tollgate().args(&args).env("TOLLGATE_URL", &url).env("TOLLGATE_ADMIN_TOKEN", TOKEN));
        assert_eq!(r.code, 4, "{args:?}: {r:?}");
        assert_eq!(r.stderr, format!("error: cannot reach {url}: connection refused\n"), "{args:?}");
        assert_eq!(r.stdout, "");
    }
}

#[test]
fn flags_override_the_environment() {
    let url = unreachable_url();
    let r = run(tollgate().args(["stats", "--url", &url, "--token", TOKEN]).env("TOLLGATE_URL", "http://127.0.0.1:1"));
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains(&url), "{r:?}");
}

#[test]
fn a_missing_token_or_bad_url_is_a_config_error() {
    let r = run(tollgate().args(["stats", "--url", &unreachable_url()]));
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr, "error: no admin token: set TOLLGATE_ADMIN_TOKEN or pass --token\n");

    let r = run(tollgate().args(["health", "--url", "127.0.0.1:8787"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.starts_with("error: invalid URL \"127.0.0.1:8787\""), "{r:?}");
}

#[test]
fn broad_deletes_without_yes_are_refused_before_any_call() {
    let fake = FakeWorker::start(vec![]);
    for args in [vec!["--tag", "config"], vec!["--namespace", "config"], vec!["--pattern", "a*", "--route", "config"]] {
        let r = run(tollgate().arg("invalidate").args(&args).args(["--url", &fake.url, "--token", TOKEN]));
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: refusing to delete every cache entry"), "{r:?}");
        assert!(r.stderr.contains("pass --yes"), "{r:?}");
    }
    assert!(fake.seen().is_empty());
}

#[test]
fn a_refused_token_exits_3_with_one_line() {
    let problem = json!({"type": "about:blank", "title": "Unauthorized", "status": 401});
    let fake = FakeWorker::start(vec![
        canned("GET", "/_tollgate/stats", 401, problem.clone()),
        canned("GET", "/_tollgate/health", 401, problem),
    ]);
    for command in ["stats", "health"] {
        let r = run(tollgate().args([command, "--url", &fake.url, "--token", "wrong"]));
        assert_eq!(r.code, 3, "{r:?}");
        assert_eq!(r.stderr, "error: 401 unauthorized: check TOLLGATE_ADMIN_TOKEN\n");
        assert_eq!(r.stdout, "");
    }
    assert_eq!(fake.seen()[0].authorization.as_deref(), Some("Bearer wrong"));
}

#[test]
fn health_exits_1_unless_ok() {
    let fake = FakeWorker::start(vec![canned(
        "GET",
        "/_tollgate/health",
        503,
        json!({"status": "degraded", "mode": "degraded",
               "redis": {"configured": true, "reachable": false, "latency_ms": null, "breaker": "open",
                         "reason": "connection refused"}}),
    )]);
    let r = run(tollgate().args(["health", "--url", &fake.url, "--token", TOKEN]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("status   degraded\nmode     degraded\n"), "{r:?}");
    assert!(r.stdout.contains("redis    unreachable, breaker open, connection refused"), "{r:?}");
}

#[test]
fn public_health_needs_no_token() {
    let fake = FakeWorker::start(vec![canned("GET", "/_tollgate/health", 200, json!({"status": "ok"}))]);
    let r = run(tollgate().args(["health", "--url", &fake.url]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "status   ok\n");
    assert!(r.stderr.contains("TOLLGATE_ADMIN_TOKEN"), "{r:?}");
    assert_eq!(fake.seen()[0].authorization, None);
}

#[test]
fn stats_render_a_table_and_json_passes_the_reply_through() {
    let reply = json!({
        "since_ms": 1_763_770_000_000u64, "now_ms": 1_763_770_123_000u64,
        "routes": [{"route": "config", "tier": "ANON", "allowed": 120, "denied": 3, "hit": 100, "miss": 5,
                    "stale": 2, "bypass": 0, "hit_rate": 0.9}],
        "totals": {"requests": 123, "allowed": 120, "denied": 3, "hit": 100, "miss": 5, "stale": 2, "bypass": 0,
                   "hit_rate": 0.9},
        "redis": {"requests": 118, "commands": 190, "requests_per_request": 0.96, "commands_per_request": 1.54}
    });
    let fake = FakeWorker::start(vec![canned("GET", "/_tollgate/stats", 200, reply.clone())]);
    let r = run(tollgate().args(["stats", "--url", &fake.url, "--token", TOKEN]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with(
            "ROUTE   TIER  REQUESTS  ALLOWED  DENIED  HIT  MISS  STALE  BYPASS  HIT RATE  SHADOW  WARNED\n"
        ),
        "{r:?}"
    );
    assert!(!r.stdout.contains('\x1b'), "no colours in a pipe: {r:?}");

    let r = run(tollgate().args(["stats", "--json", "--url", &fake.url, "--token", TOKEN]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap(), reply);
}

#[test]
fn limits_show_prints_the_leases_and_the_reservations_in_flight() {
    let view = json!({
        "subject_hash": "508cc0fe2618aa", "tier": "ANON", "override": null, "now_ms": 1_000_000u64,
        "limits": [
            {"id": "tier-anon-1h", "scope": "tier", "algorithm": "sliding_window", "limit": 30,
             "window_ms": 3_600_000u64, "remaining": 29, "reset_ms": 1_060_000u64, "used": 1},
            {"id": "chat-tokens-1d", "scope": "route:chat", "algorithm": "fixed_window", "limit": 20000,
             "window_ms": 86_400_000u64, "remaining": 19700, "reset_ms": 87_400_000u64, "used": 300,
             "unit": "tokens"}
        ],
        "leases": [{"route": "chat", "id": "route-chat-concurrency", "in_flight": 1, "limit": 2, "lease_ms": 30000}],
        "reservations": [{"unit": "tokens", "in_flight": 1, "units": 300}],
        "key_tiers": []
    });
    let fake = FakeWorker::start(vec![
        canned("GET", "/_tollgate/limits/ip:10.0.0.1?tier=ANON", 200, view.clone()),
        canned("GET", "/_tollgate/keys", 200, json!({"keys": []})),
    ]);
    let admin = ["--url", fake.url.as_str(), "--token", TOKEN];
    let r = run(tollgate().args(["limits", "show", "ip:10.0.0.1", "--tier", "ANON"]).args(admin));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\nchat-tokens-1d  route:chat "), "{r:?}");
    assert!(
        r.stdout.ends_with(
            "slots        route chat: 1 of 2 in flight (route-chat-concurrency)\n\
             reserved     300 tokens in flight (1 reservation)\n"
        ),
        "{r:?}"
    );

    let r = run(tollgate().args(["limits", "show", "ip:10.0.0.1", "--tier", "ANON", "--json"]).args(admin));
    assert_eq!(r.code, 0, "{r:?}");
    let shown: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(shown["reservations"], view["reservations"]);
    assert_eq!(shown["leases"], view["leases"]);
}

#[test]
fn requests_carry_the_documented_bodies() {
    let fake = FakeWorker::start(vec![
        canned("POST", "/_tollgate/invalidate", 200, json!({"kind": "tag", "target": "config", "deleted": 2})),
        canned(
            "PUT",
            "/_tollgate/limits/ip:10.0.0.1",
            200,
            json!({"limits": [{"limit": 5000, "window": "1h", "algorithm": "gcra"}]}),
        ),
        canned("DELETE", "/_tollgate/keys/abc", 404, json!({"title": "Not Found", "status": 404})),
    ]);
    let admin = ["--url", fake.url.as_str(), "--token", TOKEN];

    let r = run(tollgate().args(["invalidate", "--tag", "config", "--yes"]).args(admin));
    assert_eq!((r.code, r.stdout.as_str()), (0, "deleted 2 cache entries (tag \"config\")\n"), "{r:?}");

    let r = run(tollgate()
        .args(["limits", "override", "ip:10.0.0.1", "--limit", "5000", "--window", "1h", "--algorithm", "gcra"])
        .args(admin));
    assert_eq!((r.code, r.stdout.as_str()), (0, "override set for ip:10.0.0.1: 5000 per 1h (gcra)\n"), "{r:?}");

    let r = run(tollgate().args(["keys", "revoke", "abc"]).args(admin));
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr, "error: 404 not found: no API key with id \"abc\" (see `tollgate keys list`)\n");

    let seen = fake.seen();
    assert_eq!(serde_json::from_str::<Value>(&seen[0].body).unwrap(), json!({"tag": "config"}));
    assert_eq!(
        serde_json::from_str::<Value>(&seen[1].body).unwrap(),
        json!({"limits": [{"limit": 5000, "window": "1h", "algorithm": "gcra"}]})
    );
    assert_eq!((seen[2].method.as_str(), seen[2].path.as_str()), ("DELETE", "/_tollgate/keys/abc"));
}

#[test]
fn a_server_error_exits_1_with_its_detail() {
    let fake = FakeWorker::start(vec![canned(
        "POST",
        "/_tollgate/warm",
        500,
        json!({"type": "about:blank", "title": "Internal Server Error", "status": 500, "detail": "redis unavailable"}),
    )]);
    let r = run(tollgate().args(["warm", "--url", &fake.url, "--token", TOKEN]));
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr, "error: 500 Internal Server Error: redis unavailable\n");
}
