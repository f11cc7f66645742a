//! The counters at `/_rest/stats`: what tests and benchmarks use to count round trips.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::*;

#[tokio::test]
async fn counts_requests_by_endpoint_commands_by_name_and_errors() {
    let s = Stack::start().await;
    s.reset_stats().await;
    assert_eq!(
        s.stats().await,
        json!({
            "http_requests": {"total": 0, "single": 0, "pipeline": 0, "multi_exec": 0, "path": 0},
            "commands": {"total": 0, "by_name": {}},
            "errors": 0
        })
    );

    s.post("/", r#"["SET","a","1"]"#).await; // single, set
    s.post("/", r#"["INCR","a","extra"]"#).await; // single, incr, error (arity)
    s.post("/pipeline", r#"[["GET","a"],["incr","a"],["SUBSCRIBE","x"]]"#).await; // 2 cmds, 1 error
    s.post("/multi-exec", r#"[["INCR","a"],["GET","a"]]"#).await; // 2 cmds, MULTI/EXEC not counted
    s.get("/get/a").await; // path, get
    s.post("/", "garbage").await; // single, error, no command
    s.send("GET", "/get/a", &[], None).await; // path, 401 error, no command
    s.get("/health").await; // not counted
    s.get("/_rest/stats").await; // not counted

    assert_eq!(
        s.stats().await,
        json!({
            "http_requests": {"total": 7, "single": 3, "pipeline": 1, "multi_exec": 1, "path": 2},
            "commands": {"total": 7, "by_name": {"set": 1, "incr": 3, "get": 3}},
            "errors": 4
        })
    );

    s.reset_stats().await;
    assert_eq!(s.stats().await["http_requests"]["total"], json!(0));
    assert_eq!(s.stats().await["commands"]["by_name"], json!({}));
}

#[tokio::test]
async fn stats_need_the_token_and_reset_needs_post() {
    let s = Stack::start().await;
    assert_eq!(s.send("GET", "/_rest/stats", &[], None).await.status, 401);
    assert_eq!(s.get("/_rest/stats/reset").await.status, 405);
    let a = s.send("GET", &format!("/_rest/stats?_token={TOKEN}"), &[], None).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn a_steady_state_flagged_evalsha_is_one_request_and_one_command() {
    // What a rate limiter costs per call once its script is known: one HTTP request.
    let s = Stack::start().await;
    let script = "#!lua flags=allow-key-locking\nreturn redis.call('INCR', KEYS[1])";
    s.result(json!(["EVAL", script, 1, "rl"])).await;
    let sha = {
        use sha1::{Digest, Sha1};
        hex::encode(Sha1::digest(script.as_bytes()))
    };
    s.reset_stats().await;
    let a = s.post("/pipeline", &json!([["evalsha", sha, 1, "rl"]]).to_string()).await;
    assert_eq!(a.json(), json!([{"result": 2}]));
    let stats = s.stats().await;
    assert_eq!(stats["http_requests"]["total"], json!(1));
    assert_eq!(stats["commands"], json!({"total": 1, "by_name": {"evalsha": 1}}));
    assert_eq!(stats["errors"], json!(0));
}
