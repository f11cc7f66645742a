//! Pipelines and transactions, and the commands that must never reach a pooled connection.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::*;

#[tokio::test]
async fn pipeline_runs_in_order_and_reports_errors_per_entry() {
    let s = Stack::start().await;
    let a = s
        .post("/pipeline", r#"[["SET","a","1"],["INCR","a"],["HSET","a","f","v"],["GET","a"],["DEL","a"],["GET","a"]]"#)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        json!([
            {"result": "OK"},
            {"result": 2},
            {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"},
            {"result": "2"},
            {"result": 1},
            {"result": null}
        ])
    );
}

#[tokio::test]
async fn a_single_element_pipeline_is_what_auto_pipelining_sends() {
    let s = Stack::start().await;
    let a = s.post_b64("/pipeline", r#"[["set","k","v"]]"#).await;
    assert_eq!(a.text(), r#"[{"result":"OK"}]"#);
    let a = s.post_b64("/pipeline", r#"[["get","k"]]"#).await;
    assert_eq!(a.text(), r#"[{"result":"dg=="}]"#);
}

#[tokio::test]
async fn transactions_apply_atomically_or_not_at_all() {
    let s = Stack::start().await;
    let a = s.post("/multi-exec", r#"[["SET","t","1"],["INCRBY","t",41],["GET","t"]]"#).await;
    assert_eq!(a.json(), json!([{"result": "OK"}, {"result": 42}, {"result": "42"}]));
    // A queue-time error (unknown command) discards everything, including the earlier SET.
    let a = s.post("/multi-exec", r#"[["SET","t","changed"],["NOSUCHCOMMAND","x"]]"#).await;
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().is_some_and(|e| e.starts_with("EXECABORT")), "{}", a.text());
    assert_eq!(s.result(json!(["GET", "t"])).await, json!("42"));
    // The connection used for the aborted transaction is healthy afterwards.
    for _ in 0..20 {
        assert_eq!(s.result(json!(["GET", "t"])).await, json!("42"));
    }
}

#[tokio::test]
async fn denied_commands_fail_alone_in_pipelines_and_discard_transactions() {
    let s = Stack::start().await;
    for body in [
        json!(["SUBSCRIBE", "ch"]),
        json!(["multi"]),
        json!(["SELECT", 1]),
        json!(["BLPOP", "q", 0]),
        json!(["HELLO", 3]),
        json!(["CLIENT", "REPLY", "OFF"]),
        json!(["XREAD", "BLOCK", 0, "STREAMS", "s", "$"]),
        json!(["WATCH", "k"]),
    ] {
        let (status, answer) = s.cmd(body.clone()).await;
        let name = body[0].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer, json!({"error": format!("ERR Command is not available: '{name}'")}));
    }
    let a = s.post("/pipeline", r#"[["SET","p","1"],["SUBSCRIBE","ch"],["GET","p"]]"#).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        json!([
            {"result": "OK"},
            {"error": "ERR Command is not available: 'SUBSCRIBE'"},
            {"result": "1"}
        ])
    );
    let a = s.post("/multi-exec", r#"[["SET","p","2"],["SELECT",1],["GET","p"]]"#).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json(), json!({"error": "ERR Command is not available: 'SELECT'"}));
    assert_eq!(s.result(json!(["GET", "p"])).await, json!("1"));
    // A pipeline of only refused commands still answers entry by entry.
    let a = s.post("/pipeline", r#"[["QUIT"]]"#).await;
    assert_eq!(a.json(), json!([{"error": "ERR Command is not available: 'QUIT'"}]));
}

#[tokio::test]
async fn no_pooled_connection_is_poisoned_by_concurrent_mixed_traffic() {
    // Many concurrent requests over a small pool, interleaving refused commands, errors,
    // transactions and pipelines: every reply must belong to its own request.
    let s = Stack::start_with(&["--pool-size", "3"]).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let http = s.http.clone();
        let base = s.rest.base.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("key{i}");
            let post = |path: &str, body: String| {
                http.post(format!("{base}{path}")).header("Authorization", bearer()).body(body).send()
            };
            let r = post("/", json!(["SUBSCRIBE", key]).to_string()).await.expect("send");
            assert_eq!(r.status().as_u16(), 400);
            let r = post("/multi-exec", json!([["SET", key, i], ["INCR", key]]).to_string()).await.expect("send");
            let v: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
            assert_eq!(v, json!([{"result": "OK"}, {"result": i + 1}]));
            let r = post("/pipeline", json!([["GET", key], ["INCR", "shared"]]).to_string()).await.expect("send");
            let v: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
            assert_eq!(v[0], json!({"result": (i + 1).to_string()}));
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(s.result(json!(["GET", "shared"])).await, json!("60"));
}

#[tokio::test]
async fn an_abandoned_request_does_not_leave_its_reply_for_the_next_one() {
    let s = Stack::start_with(&["--pool-size", "1"]).await;
    // A slow script whose client gives up before the answer.
    let slow = json!(["EVAL", "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] while true do local n = redis.call('TIME') if n[1] * 1000000 + n[2] - s > 300000 then break end end return 'slow'", 0]);
    let res = s
        .http
        .post(s.url("/"))
        .header("Authorization", bearer())
        .body(slow.to_string())
        .timeout(std::time::Duration::from_millis(50))
        .send()
        .await;
    assert!(res.is_err(), "the client should have timed out");
    // The only pooled connection must not hand 'slow' to the next request.
    for i in 0..5 {
        let r = s.result(json!(["ECHO", format!("fresh{i}")])).await;
        assert_eq!(r, json!(format!("fresh{i}")));
    }
}

#[tokio::test]
async fn concurrent_transactions_on_one_key_never_interleave() {
    // Requests are pipelined together on few connections; each MULTI … EXEC must still run as
    // one block: the GET inside a transaction sees that transaction's own SET.
    let s = Stack::start_with(&["--pool-size", "2"]).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let http = s.http.clone();
        let url = s.url("/multi-exec");
        tasks.push(tokio::spawn(async move {
            let body = json!([["SET", "shared", i], ["INCR", "shared"], ["GET", "shared"]]);
            let r = http.post(url).header("Authorization", bearer()).body(body.to_string()).send().await.expect("send");
            let v: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
            assert_eq!(v, json!([{"result": "OK"}, {"result": i + 1}, {"result": (i + 1).to_string()}]));
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}
