//! What a hostile or careless client cannot do to the shared Redis or to other clients:
//! administration, debugging and replication commands are refused in every form, silent and
//! slow connections give their slots back, `/health` cannot make Redis work.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// Commands that would stop, reconfigure, debug or replicate the shared server.
fn refused() -> Vec<Vec<&'static str>> {
    vec![
        vec!["SCRIPT", "DEBUG", "YES"],
        vec!["CLIENT", "PAUSE", "1000"],
        vec!["CLIENT", "KILL", "TYPE", "normal"],
        vec!["CLIENT", "NO-EVICT", "on"],
        vec!["CONFIG", "SET", "maxmemory", "1"],
        vec!["CONFIG", "GET", "requirepass"],
        vec!["CONFIG", "REWRITE"],
        vec!["DEBUG", "SLEEP", "2"],
        vec!["SHUTDOWN", "NOSAVE"],
        vec!["MONITOR"],
        vec!["REPLICAOF", "127.0.0.1", "1"],
        vec!["SLAVEOF", "127.0.0.1", "1"],
        vec!["FAILOVER"],
        vec!["SYNC"],
        vec!["PSYNC", "?", "-1"],
        vec!["BGSAVE"],
        vec!["SAVE"],
        vec!["BGREWRITEAOF"],
        vec!["MODULE", "LIST"],
        vec!["ACL", "SETUSER", "default", "off"],
        vec!["ACL", "DELUSER", "someone"],
        vec!["SLOWLOG", "RESET"],
        vec!["LATENCY", "RESET"],
        vec!["MEMORY", "PURGE"],
        vec!["CLUSTER", "INFO"],
        vec!["SWAPDB", "0", "1"],
        vec!["PFDEBUG", "GETREG", "h"],
    ]
}

fn error_for(name: &str) -> Value {
    json!({"error": format!("ERR Command is not available: '{name}'")})
}

#[tokio::test]
async fn every_refused_command_is_refused_in_every_form_and_the_server_keeps_serving() {
    let s = Stack::start().await;
    s.result(json!(["SET", "canary", "alive"])).await;
    for cmd in refused() {
        let name = cmd[0];
        let body = json!(cmd);
        // Single command.
        let a = s.post("/", &body.to_string()).await;
        assert_eq!((a.status, a.json()), (400, error_for(name)), "single {cmd:?}");
        // Pipeline: an error in place, the neighbours run.
        let a = s.post("/pipeline", &json!([["INCR", "n"], cmd, ["GET", "canary"]]).to_string()).await;
        assert_eq!(a.status, 200, "pipeline {cmd:?}");
        let entries = a.json();
        assert_eq!(entries[1], error_for(name), "pipeline {cmd:?}");
        assert_eq!(entries[2], json!({"result": "alive"}), "pipeline {cmd:?}");
        // Transaction: discarded as a whole, nothing runs.
        let before = s.result(json!(["GET", "n"])).await;
        let a = s.post("/multi-exec", &json!([["INCR", "n"], cmd]).to_string()).await;
        assert_eq!((a.status, a.json()), (400, error_for(name)), "multi-exec {cmd:?}");
        assert_eq!(s.result(json!(["GET", "n"])).await, before, "multi-exec {cmd:?} ran something");
        // Path form, lowercase as a curl user might type it.
        let path: Vec<String> = cmd.iter().map(|p| p.to_lowercase().replace('?', "%3F")).collect();
        let a = s.get(&format!("/{}", path.join("/"))).await;
        assert_eq!(a.status, 400, "path {cmd:?}");
        assert_eq!(a.json(), error_for(&path[0]), "path {cmd:?}");
        // Still serving, promptly (a CLIENT PAUSE or DEBUG SLEEP that ran would stall this).
        let started = Instant::now();
        assert_eq!(s.result(json!(["GET", "canary"])).await, json!("alive"), "after {cmd:?}");
        assert!(started.elapsed() < Duration::from_millis(500), "slow after {cmd:?}");
    }
    // And the server itself was left alone.
    let port = s.redis.port;
    assert!(redis_raw(port, &["CONFIG", "GET", "maxmemory"]).contains("\r\n0\r\n"));
    assert!(redis_raw(port, &["INFO", "replication"]).contains("role:master"));
    assert!(redis_raw(port, &["ACL", "LIST"]).contains("user default on"));
}

#[tokio::test]
async fn harmless_client_and_config_calls_still_work() {
    let s = Stack::start().await;
    assert!(s.result(json!(["CLIENT", "ID"])).await.is_i64());
    assert!(s.result(json!(["CLIENT", "LIST"])).await.is_string());
    assert_eq!(s.result(json!(["CONFIG", "SET", "notify-keyspace-events", "Kh"])).await, json!("OK"));
    assert!(redis_raw(s.redis.port, &["CONFIG", "GET", "notify-keyspace-events"]).contains("hK"));
    assert_eq!(s.result(json!(["ACL", "WHOAMI"])).await, json!("default"));
    assert_eq!(s.result(json!(["SCRIPT", "FLUSH"])).await, json!("OK"));
    assert_eq!(s.result(json!(["FLUSHDB"])).await, json!("OK"));
}

/// Opens a connection that sends the start of a request head and then nothing.
fn half_open(port: u16) -> TcpStream {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ").expect("write");
    sock
}

#[tokio::test]
async fn half_open_connections_do_not_starve_real_clients() {
    let s = Stack::start_with(&["--max-connections", "16", "--header-timeout-ms", "500"]).await;
    // Under the bound: a real client is answered at once.
    let few: Vec<TcpStream> = (0..8).map(|_| half_open(s.rest.port)).collect();
    let started = Instant::now();
    assert_eq!(s.result(json!(["PING"])).await, json!("PONG"));
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());

    // Far past the bound: the real client waits at most about one header timeout.
    let many: Vec<TcpStream> = (0..48).map(|_| half_open(s.rest.port)).collect();
    let started = Instant::now();
    let fresh = reqwest::Client::new();
    let resp = fresh
        .post(s.url("/"))
        .header("Authorization", bearer())
        .body(r#"["PING"]"#)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("a real client is answered");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap_or_default(), r#"{"result":"PONG"}"#);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");

    // The slow ones were closed by the server, not left hanging.
    let mut closed = 0;
    for mut sock in few.into_iter().chain(many) {
        sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut buf = [0u8; 512];
        let answer = sock.read(&mut buf);
        let text = String::from_utf8_lossy(answer.as_ref().map(|n| &buf[..*n]).unwrap_or(&[])).into_owned();
        match answer {
            Ok(0) => closed += 1,
            Ok(_) if text.starts_with("HTTP/1.1 408") => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            other => panic!("a slow connection was not closed: {other:?} {text:?}"),
        }
    }
    assert_eq!(closed, 56);
    assert_eq!(s.send("GET", "/_rest/levels", &[], None).await.status, 401);
    let levels = s.levels().await;
    assert_eq!(levels["connections"]["max"], json!(16));
    assert!(levels["connections"]["open"].as_u64().is_some_and(|n| (1..=16).contains(&n)), "{levels}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let s = Stack::start_with(&["--header-timeout-ms", "300"]).await;
    let mut silent = TcpStream::connect(("127.0.0.1", s.rest.port)).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => assert!(buf[..n].starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "not closed: {e}"),
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn health_is_one_ping_however_many_ask() {
    let s = Stack::start().await;
    let port = s.redis.port;
    let pings = || {
        let info = redis_raw(port, &["INFO", "commandstats"]);
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = pings();
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let http = s.http.clone();
            let url = s.url("/health");
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0) })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap_or(0), 200);
    }
    let used = pings() - before;
    assert!((1..=3).contains(&used), "{used} PINGs for 200 health checks");
}
