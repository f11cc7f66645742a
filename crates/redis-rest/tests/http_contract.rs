//! The HTTP contract around the commands: auth and its precedence, methods, routing, headers,
//! argument encoding, base64 and resp2 formats, size cap, health.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::collections::HashSet;

use support::*;

#[tokio::test]
async fn auth_header_wins_over_token_query_and_both_are_checked() {
    let s = Stack::start().await;
    let ok = |a: &Answer| a.status == 200;
    // Missing entirely.
    let a = s.send("POST", "/", &[], Some(br#"["PING"]"#.to_vec())).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json(), json!({"error": "WRONGPASS invalid or missing auth token"}));
    assert_eq!(a.header("content-type").as_deref(), Some("application/json"));
    assert!(a.header("upstash-sync-token").is_some());
    // A wrong header is not rescued by a right _token.
    let a = s.send("GET", &format!("/ping?_token={TOKEN}"), &[("Authorization", "Bearer wrong")], None).await;
    assert_eq!(a.status, 401);
    // A right header with a wrong _token is fine (the header wins).
    let a = s.send("GET", "/ping?_token=wrong", &[("Authorization", &bearer())], None).await;
    assert!(ok(&a), "{}", a.text());
    // Scheme is case-insensitive; other schemes are refused.
    let a = s.send("GET", "/ping", &[("authorization", &format!("bearer {TOKEN}"))], None).await;
    assert!(ok(&a));
    let a = s.send("GET", "/ping", &[("Authorization", &format!("Basic {TOKEN}"))], None).await;
    assert_eq!(a.status, 401);
    // _token alone, percent-encoded or not; a prefix of the token is not the token.
    let a = s.send("GET", &format!("/ping?_token={TOKEN}"), &[], None).await;
    assert!(ok(&a));
    let a = s.send("GET", "/ping?_token=test-tok", &[], None).await;
    assert_eq!(a.status, 401);
    let a = s.send("GET", "/ping?_token=test%2Dtoken", &[], None).await;
    assert!(ok(&a));
    // Reserved endpoints and stats need the token too.
    for (m, p) in
        [("POST", "/pipeline"), ("POST", "/multi-exec"), ("GET", "/_rest/stats"), ("POST", "/_rest/stats/reset")]
    {
        let a = s.send(m, p, &[], Some(b"[[\"PING\"]]".to_vec())).await;
        assert_eq!(a.status, 401, "{m} {p}");
    }
}

#[tokio::test]
async fn methods_other_than_get_head_post_put_are_405_after_auth() {
    let s = Stack::start().await;
    for m in ["DELETE", "PATCH", "OPTIONS"] {
        let a = s.send(m, "/get/foo", &[("Authorization", &bearer())], None).await;
        assert_eq!(a.status, 405, "{m}");
        assert_eq!(a.json(), json!({"error": "Method Not Allowed"}));
        let a = s.send(m, "/get/foo", &[], None).await;
        assert_eq!(a.status, 401, "auth comes first for {m}");
    }
    let a = s.get("/pipeline").await;
    assert_eq!(a.status, 405);
    let a = s.get("/multi-exec").await;
    assert_eq!(a.status, 405);
}

#[tokio::test]
async fn path_form_decodes_segments_and_takes_query_args_in_order() {
    let s = Stack::start().await;
    let a = s.get("/set/a%2Fb/hello%20world/NX").await;
    assert_eq!(a.json(), json!({"result": "OK"}));
    assert_eq!(s.result(json!(["GET", "a/b"])).await, json!("hello world"));
    // Query parameters become arguments; `_token` never does.
    let a = s.send("PUT", &format!("/set/q?_token={TOKEN}&EX=100&GET"), &[], Some(b"v2".to_vec())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), json!({"result": null}), "SET q v2 EX 100 GET");
    assert_eq!(s.result(json!(["GET", "q"])).await, json!("v2"));
    let ttl = s.result(json!(["TTL", "q"])).await;
    assert!(ttl.as_i64().is_some_and(|t| t > 0));
    // HEAD runs the command and answers headers only.
    let a = s.send("HEAD", "/incr/headcount", &[("Authorization", &bearer())], None).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty());
    assert_eq!(s.result(json!(["GET", "headcount"])).await, json!("1"));
    // A body with raw bytes (not JSON) is one argument, verbatim.
    let a = s.send("POST", "/set/raw", &[("Authorization", &bearer())], Some(b"[1, 2]\n".to_vec())).await;
    assert_eq!(a.status, 200);
    assert_eq!(s.result(json!(["GET", "raw"])).await, json!("[1, 2]\n"));
}

#[tokio::test]
async fn get_slash_is_harmless_and_unknown_admin_paths_are_404() {
    let s = Stack::start().await;
    let a = s.get("/").await;
    assert_eq!(a.status, 200);
    assert!(a.json().get("result").is_some());
    let a = s.get("/_rest/nope").await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn every_response_has_json_content_type_and_a_fresh_sync_token() {
    let s = Stack::start().await;
    let mut seen = HashSet::new();
    let answers = vec![
        s.post("/", r#"["SET","a","1"]"#).await,
        s.post("/", r#"["INCR","nope","x"]"#).await,
        s.post("/pipeline", r#"[["GET","a"]]"#).await,
        s.post("/multi-exec", r#"[["GET","a"]]"#).await,
        s.post("/", "not json").await,
        s.send("GET", "/get/a", &[], None).await,
        s.send("DELETE", "/", &[("Authorization", &bearer())], None).await,
        s.get("/health").await,
        s.get("/_rest/stats").await,
    ];
    for a in &answers {
        assert_eq!(a.header("content-type").as_deref(), Some("application/json"));
        let token = a.header("upstash-sync-token").expect("sync token");
        assert!(!token.is_empty());
        assert!(seen.insert(token), "sync token repeated");
    }
}

#[tokio::test]
async fn numbers_reach_redis_as_their_literal_text() {
    let s = Stack::start().await;
    for literal in
        ["1e21", "0.30000000000000004", "12345678901234567890", "-0.0", "1E+400", "123456789012345678901234567890.5e-3"]
    {
        let a = s.post("/", &format!(r#"["SET","n",{literal}]"#)).await;
        assert_eq!(a.status, 200, "{literal}: {}", a.text());
        let a = s.post("/", r#"["GET","n"]"#).await;
        assert_eq!(a.text(), format!(r#"{{"result":"{literal}"}}"#));
    }
    // Numbers work as numeric arguments too.
    s.result(json!(["SET", "counter", 10])).await;
    assert_eq!(s.post("/", r#"["INCRBY","counter",9007199254740993]"#).await.text(), r#"{"result":9007199254741003}"#);
    assert_eq!(s.post("/", r#"["INCRBYFLOAT","f",0.1]"#).await.text(), r#"{"result":"0.1"}"#);
    assert_eq!(s.post("/", r#"["ZADD","z",1e3,"m"]"#).await.text(), r#"{"result":1}"#);
    assert_eq!(s.result(json!(["ZSCORE", "z", "m"])).await, json!("1000"));
}

#[tokio::test]
async fn booleans_become_strings_and_non_scalars_are_rejected() {
    let s = Stack::start().await;
    s.post("/", r#"["SET","b",true]"#).await;
    assert_eq!(s.result(json!(["GET", "b"])).await, json!("true"));
    s.post("/", r#"["SET","b",false]"#).await;
    assert_eq!(s.result(json!(["GET", "b"])).await, json!("false"));
    for body in [
        r#"["SET","k",null]"#,
        r#"["SET","k",{"a":1}]"#,
        r#"["SET","k",["v"]]"#,
        r#"[]"#,
        r#"[1,"k"]"#,
        r#"{"cmd":"GET"}"#,
        r#"["GET","k""#,
        "",
    ] {
        let a = s.post("/", body).await;
        assert_eq!(a.status, 400, "{body}");
        let err = a.json()["error"].as_str().map(str::to_owned).unwrap_or_default();
        assert!(err.starts_with("ERR "), "{body}: {err}");
    }
    for body in [r#"[]"#, r#"[["GET","a"],[]]"#, r#"["GET","a"]"#, r#"[["SET","a",null]]"#] {
        assert_eq!(s.post("/pipeline", body).await.status, 400, "pipeline {body}");
        assert_eq!(s.post("/multi-exec", body).await.status, 400, "multi-exec {body}");
    }
    // Nothing above reached Redis.
    assert_eq!(s.result(json!(["EXISTS", "k"])).await, json!(0));
}

#[tokio::test]
async fn unicode_survives_both_encodings() {
    let s = Stack::start().await;
    let value = "héllo ✓ 😀 \u{0} \"quoted\" \\ \n";
    s.result(json!(["SET", "u", value])).await;
    assert_eq!(s.result(json!(["GET", "u"])).await, json!(value));
    let a = s.post_b64("/", r#"["GET","u"]"#).await;
    let b64 = a.json()["result"].as_str().map(str::to_owned).unwrap_or_default();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(b64).expect("valid base64");
    assert_eq!(decoded, value.as_bytes());
}

#[tokio::test]
async fn base64_spares_only_the_top_level_simple_ok() {
    let s = Stack::start().await;
    // Top-level OK (simple string) stays "OK" in single, pipeline and transaction entries.
    assert_eq!(s.post_b64("/", r#"["SET","a","OK"]"#).await.text(), r#"{"result":"OK"}"#);
    // A *bulk* "OK" is encoded.
    assert_eq!(s.post_b64("/", r#"["GET","a"]"#).await.text(), r#"{"result":"T0s="}"#);
    // TYPE answers a simple string other than OK: encoded.
    assert_eq!(s.post_b64("/", r#"["TYPE","a"]"#).await.text(), r#"{"result":"c3RyaW5n"}"#);
    assert_eq!(
        s.post_b64("/pipeline", r#"[["SET","b","1"],["PING"],["INCR","b"]]"#).await.text(),
        r#"[{"result":"OK"},{"result":"UE9ORw=="},{"result":2}]"#
    );
    assert_eq!(
        s.post_b64("/multi-exec", r#"[["SET","c","x"],["GET","c"]]"#).await.text(),
        r#"[{"result":"OK"},{"result":"eA=="}]"#
    );
    // A nested simple OK (Lua status reply inside a table) is encoded.
    assert_eq!(
        s.post_b64("/", r#"["EVAL","return {redis.status_reply('OK')}",0]"#).await.text(),
        r#"{"result":["T0s="]}"#
    );
    // Any casing of the header value; other values mean no encoding.
    let a = s
        .send(
            "POST",
            "/",
            &[("Authorization", &bearer()), ("Upstash-Encoding", "BASE64")],
            Some(br#"["GET","c"]"#.to_vec()),
        )
        .await;
    assert_eq!(a.text(), r#"{"result":"eA=="}"#);
    let a = s
        .send(
            "POST",
            "/",
            &[("Authorization", &bearer()), ("Upstash-Encoding", "utf-8")],
            Some(br#"["GET","c"]"#.to_vec()),
        )
        .await;
    assert_eq!(a.text(), r#"{"result":"x"}"#);
}

#[tokio::test]
async fn resp2_response_format_returns_raw_replies() {
    let s = Stack::start().await;
    let h = |fmt: &'static str| vec![("Authorization", bearer()), ("Upstash-Response-Format", fmt.to_owned())];
    let send = |fmt: &'static str, path: &'static str, body: &'static str| {
        let headers = h(fmt);
        let s = &s;
        async move {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.send("POST", path, &hs, Some(body.as_bytes().to_vec())).await
        }
    };
    let a = send("resp2", "/", r#"["SET","r","v"]"#).await;
    assert_eq!((a.status, a.body.as_slice()), (200, &b"+OK\r\n"[..]));
    assert_eq!(a.header("content-type").as_deref(), Some("application/octet-stream"));
    let a = send("RESP2", "/pipeline", r#"[["GET","r"],["INCR","r"],["GET","nope"]]"#).await;
    assert_eq!(a.body.as_slice(), &b"$1\r\nv\r\n-ERR value is not an integer or out of range\r\n$-1\r\n"[..]);
    let a = send("json", "/", r#"["GET","r"]"#).await;
    assert_eq!(a.text(), r#"{"result":"v"}"#);
    let a = send("xml", "/", r#"["GET","r"]"#).await;
    assert_eq!(a.status, 400);
    let a = s
        .send(
            "POST",
            "/",
            &[("Authorization", &bearer()), ("Upstash-Response-Format", "resp2"), ("Upstash-Encoding", "base64")],
            Some(br#"["GET","r"]"#.to_vec()),
        )
        .await;
    assert_eq!(a.status, 400);
    // /multi-exec is always JSON.
    let a = send("resp2", "/multi-exec", r#"[["GET","r"]]"#).await;
    assert_eq!(a.text(), r#"[{"result":"v"}]"#);
}

#[tokio::test]
async fn bodies_over_ten_mebibytes_are_refused() {
    let s = Stack::start().await;
    let limit = 10 * 1024 * 1024;
    // Just under the cap works.
    let value = "x".repeat(limit - 64);
    let body = format!(r#"["SET","big","{value}"]"#);
    assert!(body.len() <= limit);
    let a = s.post("/", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(s.result(json!(["STRLEN", "big"])).await, json!(limit - 64));
    // Over it: refused with the Upstash text, on every endpoint, and nothing is written.
    let value = "y".repeat(limit + 1);
    for (path, body) in [
        ("/", format!(r#"["SET","big","{value}"]"#)),
        ("/pipeline", format!(r#"[["SET","big","{value}"]]"#)),
        ("/multi-exec", format!(r#"[["SET","big","{value}"]]"#)),
        ("/set/big", value.clone()),
    ] {
        let a = s.post(path, &body).await;
        assert_eq!(a.status, 400, "{path}");
        assert_eq!(a.json(), json!({"error": "ERR max request size exceeded"}), "{path}");
    }
    // Chunked (no Content-Length) is capped too.
    let response = chunked_post(&s, "/set/big", 11, 1024 * 1024).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("ERR max request size exceeded"), "{response}");
    assert_eq!(s.result(json!(["STRLEN", "big"])).await, json!(limit - 64));
}

/// POSTs `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked` over a raw socket and
/// returns the response head and body as text.
async fn chunked_post(s: &Stack, path: &str, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", s.rest.port)).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        bearer()
    );
    sock.write_all(head.as_bytes()).await.expect("write head");
    let chunk = vec![b'z'; size];
    for _ in 0..chunks {
        let mut frame = format!("{size:x}\r\n").into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if sock.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn health_needs_no_token() {
    let s = Stack::start().await;
    let a = s.send("GET", "/health", &[], None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), json!({"status": "ok", "redis": "up"}));
}

#[tokio::test]
async fn scan_withtype_is_emulated() {
    let s = Stack::start().await;
    s.result(json!(["SET", "s1", "v"])).await;
    s.result(json!(["HSET", "h1", "f", "v"])).await;
    let r = s.result(json!(["scan", 0, "withtype", "count", 100])).await;
    assert_eq!(r[0], json!("0"));
    let mut pairs: Vec<(String, String)> = r[1]
        .as_array()
        .expect("array")
        .chunks(2)
        .map(|c| (c[0].as_str().unwrap_or("").to_owned(), c[1].as_str().unwrap_or("").to_owned()))
        .collect();
    pairs.sort();
    assert_eq!(pairs, vec![("h1".into(), "hash".into()), ("s1".into(), "string".into())]);
    let r = s.result(json!(["SCAN", 0, "MATCH", "h*", "WITHTYPE"])).await;
    assert_eq!(r, json!(["0", ["h1", "hash"]]));
}
