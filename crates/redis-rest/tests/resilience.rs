//! Life of the process: Redis dying and coming back under a running redis-rest, start-up with
//! Redis down, graceful shutdown on SIGTERM, the start-up log line.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::Duration;

use support::*;

#[tokio::test]
async fn survives_redis_being_killed_and_restarted_on_the_same_port() {
    let mut s = Stack::start().await;
    s.result(json!(["SET", "before", "1"])).await;
    // Warm several pooled connections so that stale idle ones exist after the restart.
    for a in s.post_concurrently("/", r#"["PING"]"#, 8).await {
        assert_eq!(a.status, 200);
    }

    let port = s.redis.port;
    let pid = s.redis.pid();
    assert!(pid.is_some());
    s.redis.kill();

    // While Redis is down: clear 502s (single and pipeline), and health says so.
    let (status, body) = s.cmd(json!(["GET", "before"])).await;
    assert_eq!(status, 502, "{body}");
    let err = body["error"].as_str().unwrap_or_default().to_owned();
    assert!(err.starts_with("ERR redis unavailable: "), "{err}");
    let a = s.post("/pipeline", r#"[["GET","before"]]"#).await;
    assert_eq!(a.status, 502);
    assert!(a.json()["error"].as_str().is_some_and(|e| e.starts_with("ERR redis unavailable")));
    let a = s.post("/multi-exec", r#"[["GET","before"]]"#).await;
    assert_eq!(a.status, 502);
    let a = s.send("GET", "/health", &[], None).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["redis"], json!("down"));
    // Auth and parsing still work without Redis.
    assert_eq!(s.send("GET", "/get/x", &[], None).await.status, 401);
    assert_eq!(s.post("/", "[]").await.status, 400);

    // Same port, fresh (empty) Redis; redis-rest is not restarted.
    s.redis = RedisServer::start_on(port);
    assert_ne!(s.redis.pid(), pid);
    assert_eq!(s.send("GET", "/health", &[], None).await.status, 200);
    assert_eq!(s.result(json!(["GET", "before"])).await, json!(null));
    s.result(json!(["SET", "after", "2"])).await;
    // Every request succeeds again, including on connections dialled to the old server.
    for a in s.post_concurrently("/", r#"["GET","after"]"#, 32).await {
        assert_eq!(a.text(), r#"{"result":"2"}"#);
    }
    let a = s.post("/multi-exec", r#"[["INCR","n"],["INCR","n"]]"#).await;
    assert_eq!(a.json(), json!([{"result": 1}, {"result": 2}]));
}

#[tokio::test]
async fn starts_without_redis_and_connects_once_it_appears() {
    let port = free_port();
    let rest = RestServer::start(&format!("redis://127.0.0.1:{port}")).await;
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/health", rest.base)).send().await.expect("health");
    assert_eq!(health.status().as_u16(), 503);
    let _redis = RedisServer::start_on(port);
    let r = http
        .post(format!("{}/", rest.base))
        .header("Authorization", bearer())
        .body(r#"["PING"]"#)
        .send()
        .await
        .expect("ping");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap_or_default(), r#"{"result":"PONG"}"#);
}

#[tokio::test]
async fn logs_one_start_line_and_stops_cleanly_on_sigterm() {
    let mut s = Stack::start().await;
    s.result(json!(["PING"])).await;
    let log = s.rest.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains(&format!("listening on http://127.0.0.1:{}", s.rest.port)), "{log}");
    assert!(!log.contains(TOKEN), "the token must not be logged");
    // An idle keep-alive connection must not hold shutdown up.
    let status = s.rest.terminate(Duration::from_secs(10)).expect("exited in time");
    assert!(status.success(), "{status:?}");
    // Nothing was logged per request.
    assert_eq!(s.rest.log_text().lines().count(), 1);
}

#[tokio::test]
async fn refuses_to_start_without_a_token() {
    let out = std::process::Command::new(rest_binary())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("REDIS_REST_TOKEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
}

#[tokio::test]
async fn takes_its_settings_from_the_environment() {
    let redis = RedisServer::start();
    let port = free_port();
    let mut child = std::process::Command::new(rest_binary())
        .env("REDIS_REST_LISTEN", format!("127.0.0.1:{port}"))
        .env("REDIS_REST_REDIS_URL", redis.url())
        .env("REDIS_REST_TOKEN", "from-env")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    let mut answer = None;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/ping?_token=from-env")).send().await {
            answer = Some(r.text().await.unwrap_or_default());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.as_deref(), Some(r#"{"result":"PONG"}"#));
}

#[tokio::test]
async fn a_restart_between_requests_is_invisible_to_clients() {
    // Idle pooled connections to the old server are detected as dead before use, so no
    // request after the restart sees an error.
    let mut s = Stack::start().await;
    for a in s.post_concurrently("/", r#"["PING"]"#, 16).await {
        assert_eq!(a.status, 200);
    }
    let port = s.redis.port;
    s.redis.kill();
    s.redis = RedisServer::start_on(port);
    for a in s.post_concurrently("/", r#"["PING"]"#, 16).await {
        assert_eq!(a.text(), r#"{"result":"PONG"}"#);
    }
}
