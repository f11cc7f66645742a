//! Scripting over REST (`docs/upstash-rest-protocol.md` §9): NOSCRIPT passes through, flagged scripts are normalized and
//! their client-side SHA aliased, in single commands, pipelines and transactions.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use sha1::{Digest, Sha1};
use support::*;

fn sha1_hex(s: &str) -> String {
    hex::encode(Sha1::digest(s.as_bytes()))
}

const FLAGGED: &str =
    "#!lua flags=allow-key-locking\n  local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n  return {v, 'done'}\n";

#[tokio::test]
async fn stock_redis_rejects_the_flag_so_normalization_is_needed() {
    // Guard: proves this suite's premise against the real redis-server, directly (not via REST).
    use std::io::{Read, Write};
    let redis = RedisServer::start();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    let script = FLAGGED;
    let cmd = format!("*3\r\n$4\r\nEVAL\r\n${}\r\n{}\r\n$1\r\n0\r\n", script.len(), script);
    sock.write_all(cmd.as_bytes()).expect("write");
    let mut buf = [0u8; 256];
    let n = sock.read(&mut buf).expect("read");
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.contains("allow-key-locking"), "{reply}");
}

#[tokio::test]
async fn evalsha_of_an_unknown_script_is_noscript_then_eval_aliases_it() {
    let s = Stack::start().await;
    let client_sha = sha1_hex(FLAGGED);
    // What @upstash/ratelimit does: EVALSHA first…
    let (status, body) = s.cmd(json!(["evalsha", client_sha, 1, "k", 5])).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("NOSCRIPT")), "{body}");
    // …then EVAL, which works despite the Upstash-only flag…
    assert_eq!(s.result(json!(["eval", FLAGGED, 1, "k", 5])).await, json!([5, "done"]));
    // …and from then on the client's own SHA works (one round trip per call).
    assert_eq!(s.result(json!(["evalsha", client_sha, 1, "k", 2])).await, json!([7, "done"]));
    assert_eq!(s.result(json!(["EVALSHA", client_sha.to_uppercase(), 1, "k", 1])).await, json!([8, "done"]));
    // The read-only variants are aliased too.
    let ro = "#!lua flags=no-writes,allow-key-locking\nreturn redis.call('GET', KEYS[1])";
    assert_eq!(s.result(json!(["EVAL_RO", ro, 1, "k"])).await, json!("8"));
    assert_eq!(s.result(json!(["EVALSHA_RO", sha1_hex(ro), 1, "k"])).await, json!("8"));
}

#[tokio::test]
async fn script_load_answers_the_clients_sha_and_exists_knows_it() {
    let s = Stack::start().await;
    let client_sha = sha1_hex(FLAGGED);
    assert_eq!(s.result(json!(["SCRIPT", "LOAD", FLAGGED])).await, json!(client_sha));
    assert_eq!(
        s.result(json!(["SCRIPT", "EXISTS", client_sha, "0000000000000000000000000000000000000000"])).await,
        json!([1, 0])
    );
    assert_eq!(s.result(json!(["EVALSHA", client_sha, 1, "k", 3])).await, json!([3, "done"]));
    // An unflagged script keeps Redis's own answer.
    assert_eq!(s.result(json!(["script", "load", "return 1"])).await, json!(sha1_hex("return 1")));
}

#[tokio::test]
async fn aliasing_works_inside_pipelines_and_transactions() {
    let s = Stack::start().await;
    let script = "#!lua flags=allow-key-locking\nreturn redis.call('INCR', KEYS[1])";
    let sha = sha1_hex(script);
    let body = json!([["EVAL", script, 1, "p"], ["EVALSHA", sha, 1, "p"], ["SCRIPT", "LOAD", script]]);
    let a = s.post("/pipeline", &body.to_string()).await;
    assert_eq!(a.json(), json!([{"result": 1}, {"result": 2}, {"result": sha}]));
    let body = json!([["EVALSHA", sha, 1, "p"], ["SCRIPT", "LOAD", script], ["SCRIPT", "EXISTS", sha]]);
    let a = s.post("/multi-exec", &body.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), json!([{"result": 3}, {"result": sha}, {"result": [1]}]));
}

#[tokio::test]
async fn script_errors_and_lua_conversions_follow_redis() {
    let s = Stack::start().await;
    // Lua true → 1, false → null, numbers truncated.
    assert_eq!(s.result(json!(["EVAL", "return {true, false, 3.99, 'x'}", 0])).await, json!([1, null, 3, "x"]));
    let (status, body) = s.cmd(json!(["EVAL", "return redis.error_reply('MYERR bad')", 0])).await;
    assert_eq!((status, body), (400, json!({"error": "MYERR bad"})));
    // A nested error reply has no JSON form; it comes back as its text and the server lives on.
    let (status, body) = s.cmd(json!(["EVAL", "return {1, redis.error_reply('ERR inner')}", 0])).await;
    assert_eq!((status, body), (200, json!({"result": [1, "ERR inner"]})));
    // Deep nesting beyond what the server decodes is refused without crashing it.
    let deep = "local t = 1 for i = 1, 600 do t = {t} end return t";
    let (status, body) = s.cmd(json!(["EVAL", deep, 0])).await;
    assert_eq!(status, 502);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("nested deeper")), "{body}");
    assert_eq!(s.result(json!(["PING"])).await, json!("PONG"));
    let ok_deep = "local t = 1 for i = 1, 100 do t = {t} end return t";
    assert_eq!(s.cmd(json!(["EVAL", ok_deep, 0])).await.0, 200);
}

const LIBRARY: &str = "#!lua name=rolib
redis.register_function('set_value', function(keys, args) return redis.call('SET', keys[1], args[1]) end)
redis.register_function('plain_get', function(keys, args) return redis.call('GET', keys[1]) end)
redis.register_function{function_name='ro_get', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}
redis.register_function{function_name='bad_ro_write', callback=function(keys, args) return redis.call('SET', keys[1], args[1]) end, flags={'no-writes'}}
";

const READ_ONLY_WRITE: &str = "Write commands are not allowed from read-only scripts";

#[tokio::test]
async fn stock_redis_refuses_fcall_ro_of_an_unflagged_reader() {
    // Guard: the premise of the emulation, straight against redis-server.
    let redis = RedisServer::start();
    assert!(redis_raw(redis.port, &["FUNCTION", "LOAD", LIBRARY]).contains("rolib"));
    let reply = redis_raw(redis.port, &["FCALL_RO", "plain_get", "1", "k"]);
    assert!(reply.contains("Can not execute a script with write flag using *_ro command"), "{reply}");
}

#[tokio::test]
async fn fcall_ro_runs_readers_without_the_flag_and_refuses_writes_with_the_read_only_wording() {
    let s = Stack::start().await;
    assert_eq!(s.result(json!(["FUNCTION", "LOAD", LIBRARY])).await, json!("rolib"));
    s.result(json!(["SET", "k", "v"])).await;
    // A reader, flagged or not, answers through FCALL_RO.
    assert_eq!(s.result(json!(["FCALL_RO", "plain_get", 1, "k"])).await, json!("v"));
    assert_eq!(s.result(json!(["fcall_ro", "ro_get", 1, "k"])).await, json!("v"));
    // A writer is refused before it writes, whether or not it claims no-writes.
    for f in ["set_value", "bad_ro_write"] {
        let (status, body) = s.cmd(json!(["FCALL_RO", f, 1, "k", "changed"])).await;
        assert_eq!(status, 400, "{f}: {body}");
        let err = body["error"].as_str().unwrap_or_default();
        assert!(err.starts_with(&format!("ERR {READ_ONLY_WRITE}")), "{f}: {err}");
        assert!(err.contains(&format!("script: {f}")), "{f}: {err}");
    }
    assert_eq!(s.result(json!(["GET", "k"])).await, json!("v"));
    // FCALL is untouched: it still writes.
    assert_eq!(s.result(json!(["FCALL", "set_value", 1, "k", "w"])).await, json!("OK"));
    assert_eq!(s.result(json!(["GET", "k"])).await, json!("w"));
}

#[tokio::test]
async fn fcall_ro_in_a_pipeline_keeps_its_place_and_order() {
    let s = Stack::start().await;
    s.result(json!(["FUNCTION", "LOAD", LIBRARY])).await;
    let a = s
        .post(
            "/pipeline",
            &json!([
                ["SET", "p", "1"],
                ["fcall_ro", "plain_get", 1, "p"],
                ["SET", "p", "2"],
                ["FCALL_RO", "set_value", 1, "p", "3"],
                ["fcall_ro", "plain_get", 1, "p"],
                ["GET", "p"]
            ])
            .to_string(),
        )
        .await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v[0], json!({"result": "OK"}));
    assert_eq!(v[1], json!({"result": "1"}));
    assert_eq!(v[2], json!({"result": "OK"}));
    assert!(v[3]["error"].as_str().is_some_and(|e| e.contains(READ_ONLY_WRITE)), "{v}");
    assert_eq!(v[4], json!({"result": "2"}));
    assert_eq!(v[5], json!({"result": "2"}));
    // Base64 answers are encoded as for any command.
    let a = s.post_b64("/pipeline", &json!([["FCALL_RO", "plain_get", 1, "p"]]).to_string()).await;
    assert_eq!(a.json(), json!([{"result": "Mg=="}]));
}

#[tokio::test]
async fn fcall_ro_keeps_redis_rules_inside_a_transaction() {
    let s = Stack::start().await;
    s.result(json!(["FUNCTION", "LOAD", LIBRARY])).await;
    s.result(json!(["SET", "t", "v"])).await;
    let a = s
        .post("/multi-exec", &json!([["FCALL_RO", "ro_get", 1, "t"], ["FCALL_RO", "plain_get", 1, "t"]]).to_string())
        .await;
    assert_eq!(a.status, 200);
    let v = a.json();
    assert_eq!(v[0], json!({"result": "v"}));
    assert!(v[1]["error"].as_str().is_some_and(|e| e.contains("write flag using *_ro")), "{v}");
}

#[tokio::test]
async fn fcall_ro_survives_a_redis_restart() {
    // The read-only ACL user lives in Redis's memory; a restarted Redis has forgotten it.
    let mut s = Stack::start().await;
    s.result(json!(["FUNCTION", "LOAD", LIBRARY])).await;
    s.result(json!(["SET", "k", "v"])).await;
    assert_eq!(s.result(json!(["FCALL_RO", "plain_get", 1, "k"])).await, json!("v"));
    let port = s.redis.port;
    s.redis.kill();
    s.redis = RedisServer::start_on(port);
    s.result(json!(["FUNCTION", "LOAD", LIBRARY])).await;
    s.result(json!(["SET", "k", "again"])).await;
    // The pooled read-only connections broke with the old server; the next call re-creates
    // the user and answers (one 502 while the broken connections are dropped is allowed).
    let mut last = (0, json!(null));
    for _ in 0..3 {
        last = s.cmd(json!(["FCALL_RO", "plain_get", 1, "k"])).await;
        if last.0 == 200 {
            break;
        }
    }
    assert_eq!(last, (200, json!({"result": "again"})));
}
