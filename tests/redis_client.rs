//! The REST client against a real redis-server behind redis-rest: what the unit tests' fakes assume.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::{Resp, Stack};
use tollgate::redis::{Arg, Client, Command, Entry, RedisError, RedisErrorKind, Reply, ReqwestTransport, Script};

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

#[tokio::test]
async fn set_then_get_returns_the_value_and_a_missing_key_is_nil() {
    let stack = Stack::start().await;
    let client = stack.client();
    assert_eq!(client.command(Command::set_px("greeting", "hello", 60_000)).await, Ok(Reply::Ok));
    assert_eq!(client.command(Command::get("greeting")).await, Ok(bulk("hello")));
    assert_eq!(client.command(Command::get("missing")).await, Ok(Reply::Nil));
    assert_eq!(client.command(Command::del(["greeting", "missing"])).await, Ok(Reply::Int(1)));
    let ttl = client.command(Command::new("PTTL").arg("greeting")).await;
    assert_eq!(ttl, Ok(Reply::Int(-2)));
}

#[tokio::test]
async fn a_simple_string_other_than_ok_arrives_as_bytes() {
    let stack = Stack::start().await;
    let client = stack.client();
    assert_eq!(client.command(Command::new("PING")).await, Ok(bulk("PONG")));
    client.command(Command::set_px("s", "v", 60_000)).await.unwrap();
    assert_eq!(client.command(Command::new("TYPE").arg("s")).await, Ok(bulk("string")));
}

#[tokio::test]
async fn a_rejected_command_is_a_classified_redis_error() {
    let stack = Stack::start().await;
    let client = stack.client();
    client.command(Command::set_px("text", "abc", 60_000)).await.unwrap();
    let got = client.command(Command::new("INCR").arg("text")).await;
    assert_eq!(got, Err(RedisError::reply("ERR value is not an integer or out of range")));
    client.command(Command::new("LPUSH").arg("list").arg("x")).await.unwrap();
    let got = client.command(Command::get("list")).await;
    assert!(matches!(got, Err(RedisError::Redis { kind: RedisErrorKind::WrongType, .. })), "{got:?}");
}

#[tokio::test]
async fn binary_values_written_directly_come_back_byte_for_byte() {
    let stack = Stack::start().await;
    let client = stack.client();
    let value: Vec<u8> = (0..=255u8).chain([0xFF, 0xFE, 0x00, b'\r', b'\n']).collect();
    stack.redis(&[b"SET".as_slice(), b"bin", &value]);
    assert_eq!(client.command(Command::get("bin")).await, Ok(Reply::Bulk(value)));
}

#[tokio::test]
async fn unicode_keys_and_values_round_trip() {
    let stack = Stack::start().await;
    let client = stack.client();
    let key = "ключ:🔑:\"quoted\"\\";
    let value = "värde 🦀 \u{0} \n ∑ 日本語";
    client.command(Command::set_px(key, value, 60_000)).await.unwrap();
    assert_eq!(client.command(Command::get(key)).await, Ok(bulk(value)));
    assert_eq!(stack.redis(&["GET", key]), Resp::Bulk(Some(value.as_bytes().to_vec())));
}

#[tokio::test]
async fn empty_and_large_values_round_trip() {
    let stack = Stack::start().await;
    let client = stack.client();
    client.command(Command::set_px("empty", "", 60_000)).await.unwrap();
    assert_eq!(client.command(Command::get("empty")).await, Ok(Reply::Bulk(Vec::new())));
    let large: String = (0..1_000_000u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    client.command(Command::set_px("large", large.clone(), 60_000)).await.unwrap();
    assert_eq!(client.command(Command::get("large")).await, Ok(Reply::Bulk(large.into_bytes())));
}

#[tokio::test]
async fn integers_keep_their_exact_value_both_ways() {
    let stack = Stack::start().await;
    let client = stack.client();
    client.command(Command::new("SET").arg("n").arg(i64::MAX - 1)).await.unwrap();
    assert_eq!(client.command(Command::new("INCR").arg("n")).await, Ok(Reply::Int(i64::MAX)));
    client.command(Command::new("SET").arg("m").arg(i64::MIN)).await.unwrap();
    assert_eq!(stack.redis(&["GET", "m"]), Resp::Bulk(Some(i64::MIN.to_string().into_bytes())));
}

#[tokio::test]
async fn a_pipeline_is_one_request_and_a_failing_entry_fails_alone() {
    let stack = Stack::start().await;
    let client = stack.client();
    stack.reset_stats().await;
    let got = client
        .pipeline(vec![
            Command::new("SET").arg("k1").arg("valuex"),
            Command::new("INCR").arg("k1"),
            Command::new("MGET").arg("k1").arg("nokey"),
            Command::new("EVAL").arg("return {1,\"a\",{\"b\"}}").arg(0u32),
        ])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Ok(Reply::Ok),
            Err(RedisError::reply("ERR value is not an integer or out of range")),
            Ok(Reply::Array(vec![bulk("valuex"), Reply::Nil])),
            Ok(Reply::Array(vec![Reply::Int(1), bulk("a"), Reply::Array(vec![bulk("b")])])),
        ]
    );
    let stats = stack.stats().await;
    assert_eq!((stats.http_requests, stats.commands), (1, 4));
    assert_eq!((client.requests_sent(), client.commands_sent()), (1, 4));
}

#[tokio::test]
async fn an_applied_transaction_reports_runtime_errors_per_entry() {
    let stack = Stack::start().await;
    let client = stack.client();
    let got = client
        .multi_exec(vec![Command::new("SET").arg("k2").arg("v"), Command::new("INCR").arg("k2"), Command::get("k2")])
        .await
        .unwrap();
    assert_eq!(got[0], Ok(Reply::Ok));
    assert!(matches!(got[1], Err(RedisError::Redis { kind: RedisErrorKind::Other, .. })), "{:?}", got[1]);
    assert_eq!(got[2], Ok(bulk("v")));
}

#[tokio::test]
async fn a_discarded_transaction_is_execabort_and_applies_nothing() {
    let stack = Stack::start().await;
    let client = stack.client();
    let got = client.multi_exec(vec![Command::new("SET").arg("k3").arg("v"), Command::new("GET")]).await;
    assert!(matches!(got, Err(RedisError::Redis { kind: RedisErrorKind::ExecAbort, .. })), "{got:?}");
    assert_eq!(stack.redis(&["EXISTS", "k3"]), Resp::Int(0));
}

#[tokio::test]
async fn eval_costs_two_requests_the_first_time_and_one_after() {
    let stack = Stack::start().await;
    let client = stack.client();
    let script = Script::new("return {tonumber(ARGV[1]) + 1, KEYS[1]}");
    let keys = ["{s}:k".to_owned()];
    stack.redis(&["SCRIPT", "FLUSH"]);
    stack.reset_stats().await;

    let first = client.eval(&script, &keys, &[Arg::Int(41)]).await;
    assert_eq!(first, Ok(Reply::Array(vec![Reply::Int(42), bulk("{s}:k")])));
    let stats = stack.stats().await;
    assert_eq!(stats.http_requests, 2);
    assert_eq!((stats.command("EVALSHA"), stats.command("EVAL")), (1, 1));

    let second = client.eval(&script, &keys, &[Arg::Int(1)]).await;
    assert_eq!(second, Ok(Reply::Array(vec![Reply::Int(2), bulk("{s}:k")])));
    let stats = stack.stats().await;
    assert_eq!(stats.http_requests, 3);
    assert_eq!((stats.command("EVALSHA"), stats.command("EVAL")), (2, 1));
    assert_eq!(client.requests_sent(), 3);
}

#[tokio::test]
async fn scripts_in_a_pipeline_fall_back_in_one_more_request_and_keep_their_places() {
    let stack = Stack::start().await;
    let client = stack.client();
    let incr = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let echo = Script::new("return ARGV[1]");
    let keys = ["{p}:n".to_owned()];
    stack.redis(&["SCRIPT", "FLUSH"]);
    stack.reset_stats().await;

    let entries = || {
        vec![
            Entry::script(&incr, &keys, &[Arg::Int(5)]),
            Command::get("{p}:n").into(),
            Entry::script(&echo, &[], &[Arg::from("hi")]),
        ]
    };
    let first = client.pipeline_with_scripts(entries()).await.unwrap();
    // The GET ran in the first request, before the INCRBY that the EVAL fallback ran.
    assert_eq!(first, vec![Ok(Reply::Int(5)), Ok(Reply::Nil), Ok(bulk("hi"))]);
    let stats = stack.stats().await;
    assert_eq!(stats.http_requests, 2);
    assert_eq!((stats.command("EVALSHA"), stats.command("EVAL"), stats.command("GET")), (2, 2, 1));

    // Now the scripts are cached: entries run in order, so the GET sees the INCRBY.
    let second = client.pipeline_with_scripts(entries()).await.unwrap();
    assert_eq!(second, vec![Ok(Reply::Int(10)), Ok(bulk("10")), Ok(bulk("hi"))]);
    assert_eq!(stack.stats().await.http_requests, 3);
    assert_eq!(client.requests_sent(), 3);
}

#[tokio::test]
async fn a_script_error_is_not_mistaken_for_noscript() {
    let stack = Stack::start().await;
    let client = stack.client();
    let failing = Script::new("return redis.error_reply('BUSY pretend')");
    stack.reset_stats().await;
    let got = client.eval(&failing, &[], &[]).await.unwrap_err();
    assert!(matches!(got, RedisError::Redis { kind: RedisErrorKind::Busy, .. }), "{got:?}");
    // EVALSHA → NOSCRIPT → EVAL → the script's own error, with no further retry.
    assert_eq!(stack.stats().await.http_requests, 2);
}

#[tokio::test]
async fn the_sync_token_changes_with_every_response_and_is_kept() {
    let stack = Stack::start().await;
    let client = stack.client();
    assert_eq!(client.sync_token(), None);
    client.command(Command::set_px("a", "1", 60_000)).await.unwrap();
    let first = client.sync_token().expect("a token after the first response");
    client.pipeline(vec![Command::get("a"), Command::get("b")]).await.unwrap();
    let second = client.sync_token().expect("a token after the pipeline");
    client.eval(&Script::new("return 1"), &[], &[]).await.unwrap();
    let third = client.sync_token().expect("a token after the script");
    assert_ne!(first, second);
    assert_ne!(second, third);
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_not_transient() {
    let stack = Stack::start().await;
    let client = Client::new(ReqwestTransport::new(&stack.rest_url, "not-the-token", 5_000).unwrap());
    let got = client.command(Command::get("a")).await.unwrap_err();
    assert_eq!(got, RedisError::Unauthorized);
    assert!(!got.is_transient());
    assert_eq!(client.pipeline(vec![Command::get("a")]).await, Err(RedisError::Unauthorized));
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_transient_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts connections and holds them open without ever answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = Client::new(ReqwestTransport::new(&url, "t", 100).unwrap());
    let got = client.command(Command::get("a")).await.unwrap_err();
    assert_eq!(got, RedisError::Timeout(100));
    assert!(got.is_transient());
    assert_eq!(client.pipeline(vec![Command::get("a")]).await, Err(RedisError::Timeout(100)));
    holder.abort();
}

#[tokio::test]
async fn nothing_listening_is_a_transient_transport_error() {
    let port = support::free_port();
    let client = Client::new(ReqwestTransport::new(&format!("http://127.0.0.1:{port}"), "t", 5_000).unwrap());
    let got = client.command(Command::get("a")).await.unwrap_err();
    assert!(matches!(got, RedisError::Transport(_)), "{got:?}");
    assert!(got.is_transient());
}

#[tokio::test]
async fn redis_stopped_is_transient_and_a_restart_recovers() {
    let mut stack = Stack::start().await;
    let client = stack.client();
    assert_eq!(client.command(Command::new("PING")).await, Ok(bulk("PONG")));

    stack.stop_redis();
    let single = client.command(Command::get("a")).await.unwrap_err();
    assert!(single.is_transient(), "{single:?}");
    let batch = client.pipeline(vec![Command::get("a")]).await;
    assert!(batch.as_ref().is_err_and(RedisError::is_transient), "{batch:?}");

    stack.start_redis();
    assert_eq!(client.command(Command::set_px("a", "back", 60_000)).await, Ok(Reply::Ok));
    assert_eq!(client.pipeline(vec![Command::get("a")]).await, Ok(vec![Ok(bulk("back"))]));
}

#[tokio::test]
async fn client_counters_match_the_servers() {
    let stack = Stack::start().await;
    let client = stack.client();
    stack.reset_stats().await;
    client.command(Command::set_px("c", "1", 60_000)).await.unwrap();
    client.pipeline(vec![Command::get("c"), Command::get("d"), Command::get("e")]).await.unwrap();
    client.multi_exec(vec![Command::new("INCR").arg("c"), Command::get("c")]).await.unwrap();
    let stats = stack.stats().await;
    assert_eq!((client.requests_sent(), client.commands_sent()), (3, 6));
    assert_eq!((stats.http_requests, stats.commands), (3, 6));
}
