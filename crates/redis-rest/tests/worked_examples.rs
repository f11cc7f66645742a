//! The worked examples of `docs/upstash-rest-protocol.md` §15: request as curl sends it, answer
//! as documented.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::*;

#[tokio::test]
async fn set_with_expiry_then_get_three_ways() {
    let s = Stack::start().await;
    // curl -X POST / -H 'Authorization: Bearer T' -d '["SET","foo","bar","EX",100]'
    let a = s
        .send(
            "POST",
            "/",
            &[("Authorization", &bearer()), ("Content-Type", "application/x-www-form-urlencoded")],
            Some(br#"["SET","foo","bar","EX",100]"#.to_vec()),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type").as_deref(), Some("application/json"));
    assert!(a.header("upstash-sync-token").is_some_and(|t| !t.is_empty()));
    assert_eq!(a.text(), r#"{"result":"OK"}"#);

    assert_eq!(s.get("/get/foo").await.text(), r#"{"result":"bar"}"#);
    let a = s.send("GET", &format!("/get/foo?_token={TOKEN}"), &[], None).await;
    assert_eq!((a.status, a.text()), (200, r#"{"result":"bar"}"#.to_owned()));

    let a = s.send("GET", "/get/foo", &[("Authorization", "Bearer nope")], None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.text(), r#"{"error":"WRONGPASS invalid or missing auth token"}"#);
}

#[tokio::test]
async fn path_form_post_body_is_the_last_argument_before_query_args() {
    let s = Stack::start().await;
    // curl -X POST --data-binary '{"a":1}' '/set/jkey?EX=100'
    let a = s.post("/set/jkey?EX=100", r#"{"a":1}"#).await;
    assert_eq!((a.status, a.text()), (200, r#"{"result":"OK"}"#.to_owned()));
    assert_eq!(s.get("/get/jkey").await.text(), r#"{"result":"{\"a\":1}"}"#);
    let ttl = s.result(json!(["TTL", "jkey"])).await;
    assert!(ttl.as_i64().is_some_and(|t| (1..=100).contains(&t)), "{ttl}");
}

#[tokio::test]
async fn base64_examples() {
    let s = Stack::start().await;
    s.result(json!(["SET", "foo", "bar"])).await;
    let a = s.send("GET", "/get/foo", &[("Authorization", &bearer()), ("Upstash-Encoding", "base64")], None).await;
    assert_eq!(a.text(), r#"{"result":"YmFy"}"#);
    assert_eq!(s.post_b64("/", r#"["PING"]"#).await.text(), r#"{"result":"UE9ORw=="}"#);
}

#[tokio::test]
async fn hash_examples() {
    let s = Stack::start().await;
    assert_eq!(s.post("/", r#"["HSET","h","f1","v1","f2",2]"#).await.text(), r#"{"result":2}"#);
    assert_eq!(s.post("/", r#"["HGETALL","h"]"#).await.text(), r#"{"result":["f1","v1","f2","2"]}"#);
    assert_eq!(s.post_b64("/", r#"["HGETALL","h"]"#).await.text(), r#"{"result":["ZjE=","djE=","ZjI=","Mg=="]}"#);
}

#[tokio::test]
async fn sorted_set_scores_come_back_as_strings() {
    let s = Stack::start().await;
    assert_eq!(s.post("/", r#"["ZADD","z",1.5,"m"]"#).await.text(), r#"{"result":1}"#);
    assert_eq!(s.post("/", r#"["ZRANGE","z",0,-1,"WITHSCORES"]"#).await.text(), r#"{"result":["m","1.5"]}"#);
}

#[tokio::test]
async fn missing_keys_are_null_and_redis_errors_are_400() {
    let s = Stack::start().await;
    assert_eq!(s.post("/", r#"["GET","missing"]"#).await.text(), r#"{"result":null}"#);
    s.result(json!(["SET", "foo", "bar"])).await;
    let a = s.post("/", r#"["INCR","foo"]"#).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.text(), r#"{"error":"ERR value is not an integer or out of range"}"#);
    let a = s.post("/", r#"["GET"]"#).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.text(), r#"{"error":"ERR wrong number of arguments for 'get' command"}"#);
}

#[tokio::test]
async fn pipeline_example_with_a_failing_entry() {
    let s = Stack::start().await;
    let a = s
        .post_b64(
            "/pipeline",
            r#"[["SET","k1","valuex"],["INCR","k1"],["MGET","k1","nokey"],["EVAL","return {1,\"a\",{\"b\"}}",0]]"#,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.text(),
        r#"[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":["dmFsdWV4",null]},{"result":[1,"YQ==",["Yg=="]]}]"#
    );
}

#[tokio::test]
async fn multi_exec_examples() {
    let s = Stack::start().await;
    let a = s.post("/multi-exec", r#"[["SET","k2","v"],["INCR","k2"],["GET","k2"]]"#).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), r#"[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":"v"}]"#);
    let a = s.post("/multi-exec", r#"[["SET","k2","v"],["GET"]]"#).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.text(), r#"{"error":"EXECABORT Transaction discarded because of previous errors."}"#);
}

#[tokio::test]
async fn noscript_passes_through() {
    let s = Stack::start().await;
    let a = s.post("/", r#"["EVALSHA","0000000000000000000000000000000000000000",0]"#).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.text(), r#"{"error":"NOSCRIPT No matching script. Please use EVAL."}"#);
}

#[tokio::test]
async fn binary_values_lossy_in_utf8_exact_in_base64() {
    let s = Stack::start().await;
    // Raw bytes FF FE stored via the path form with a POST body.
    let a = s.send("POST", "/set/bin", &[("Authorization", &bearer())], Some(vec![0xff, 0xfe])).await;
    assert_eq!(a.text(), r#"{"result":"OK"}"#);
    assert_eq!(s.post("/", r#"["GET","bin"]"#).await.text(), "{\"result\":\"\u{fffd}\u{fffd}\"}");
    assert_eq!(s.post_b64("/", r#"["GET","bin"]"#).await.text(), r#"{"result":"//4="}"#);
}
