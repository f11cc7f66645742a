//! `/subscribe/…` and `/psubscribe/…` as server-sent events: the framing the official client
//! parses, order, the dedicated Redis connection and its release, the bound, keep-alives.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::Duration;

use support::*;

/// An open event stream and what has been read from it so far.
struct Stream {
    resp: reqwest::Response,
    seen: String,
}

impl Stream {
    async fn open(s: &Stack, path: &str) -> Self {
        let resp = s
            .http
            .post(s.url(path))
            .header("Authorization", bearer())
            .header("Accept", "text/event-stream")
            .header("Upstash-Encoding", "base64")
            .body("[]")
            .send()
            .await
            .expect("open stream");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
        Self { resp, seen: String::new() }
    }

    /// Reads until `want` has been seen in full (or fails after 5 s).
    async fn until(&mut self, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.seen.contains(want) {
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("stream ended or stalled ({other:?}) before {want:?}; saw {:?}", self.seen),
            }
        }
    }

    /// The `data:` lines seen, without keep-alive comments.
    fn data(&self) -> Vec<&str> {
        self.seen.lines().filter(|l| l.starts_with("data: ")).collect()
    }
}

#[tokio::test]
async fn streams_the_confirmation_then_messages_in_order_unencoded() {
    let s = Stack::start().await;
    let mut stream = Stream::open(&s, "/subscribe/chat/sys%3Aevents").await;
    stream.until("data: subscribe,chat,1\n\ndata: subscribe,sys:events,2\n\n").await;
    for i in 0..20 {
        let n = s.result(json!(["PUBLISH", "chat", format!("{{\"n\":{i},\"t\":\"a,b\"}}")])).await;
        assert_eq!(n, json!(1));
    }
    s.result(json!(["PUBLISH", "sys:events", "plain text"])).await;
    stream.until("data: message,sys:events,plain text\n\n").await;
    let data = stream.data();
    let expected: Vec<String> = ["data: subscribe,chat,1".to_owned(), "data: subscribe,sys:events,2".to_owned()]
        .into_iter()
        .chain((0..20).map(|i| format!("data: message,chat,{{\"n\":{i},\"t\":\"a,b\"}}")))
        .chain(["data: message,sys:events,plain text".to_owned()])
        .collect();
    assert_eq!(data, expected);
}

#[tokio::test]
async fn psubscribe_frames_the_pattern_and_channel() {
    let s = Stack::start().await;
    let mut stream = Stream::open(&s, "/psubscribe/system:*").await;
    stream.until("data: psubscribe,system:*,1\n\n").await;
    s.result(json!(["PUBLISH", "system:cache_invalidation", "{\"kind\":\"key\"}"])).await;
    s.result(json!(["PUBLISH", "other", "not for us"])).await;
    s.result(json!(["PUBLISH", "system:quota_warning", "q"])).await;
    stream.until("data: pmessage,system:*,system:quota_warning,q\n\n").await;
    assert_eq!(
        stream.data(),
        [
            "data: psubscribe,system:*,1",
            "data: pmessage,system:*,system:cache_invalidation,{\"kind\":\"key\"}",
            "data: pmessage,system:*,system:quota_warning,q",
        ]
    );
}

#[tokio::test]
async fn each_stream_has_its_own_redis_connection_released_when_the_client_leaves() {
    let s = Stack::start_with(&["--pool-size", "1"]).await;
    s.result(json!(["PING"])).await;
    let port = s.redis.port;
    let baseline = redis_clients(port);
    assert_eq!(redis_subscribers(port), 0);
    let mut a = Stream::open(&s, "/subscribe/one").await;
    let mut b = Stream::open(&s, "/subscribe/two").await;
    a.until("data: subscribe,one,1").await;
    b.until("data: subscribe,two,1").await;
    assert_eq!(redis_clients(port), baseline + 2);
    assert_eq!(redis_subscribers(port), 2);
    assert_eq!(s.levels().await["subscriptions"], json!({"open": 2, "opened": 2}));
    // Streams are not command requests.
    assert_eq!(s.stats().await["http_requests"]["total"], json!(1));
    // Commands still flow through the pool meanwhile.
    assert_eq!(s.result(json!(["PUBLISH", "one", "x"])).await, json!(1));

    drop(a);
    assert!(eventually(Duration::from_secs(5), || redis_clients(port) == baseline + 1).await);
    assert_eq!(redis_subscribers(port), 1);
    assert_eq!(s.levels().await["subscriptions"]["open"], json!(1));
    assert_eq!(s.result(json!(["PUBLISH", "one", "x"])).await, json!(0));
    drop(b);
    assert!(eventually(Duration::from_secs(5), || redis_clients(port) == baseline).await);
    assert_eq!(redis_subscribers(port), 0);
    assert_eq!(s.levels().await["subscriptions"], json!({"open": 0, "opened": 2}));
}

#[tokio::test]
async fn past_the_bound_a_clear_error_until_a_stream_closes() {
    let s = Stack::start_with(&["--max-subscriptions", "2"]).await;
    let mut a = Stream::open(&s, "/subscribe/a").await;
    let mut b = Stream::open(&s, "/psubscribe/b*").await;
    a.until("subscribe,a,1").await;
    b.until("psubscribe,b*,1").await;
    let third = s.post("/subscribe/c", "[]").await;
    assert_eq!(third.status, 429);
    assert_eq!(
        third.json(),
        json!({"error": "ERR max concurrent subscriptions exceeded (2 open); raise --max-subscriptions"})
    );
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = s.http.get(s.url("/subscribe/c")).header("Authorization", bearer()).send().await.expect("open");
        if resp.status().as_u16() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keepalive_comments_flow_while_nothing_is_published() {
    let s = Stack::start_with(&["--sse-keepalive-ms", "100"]).await;
    let mut stream = Stream::open(&s, "/subscribe/quiet").await;
    stream.until(": keepalive\n\n: keepalive\n\n").await;
    assert_eq!(stream.data(), ["data: subscribe,quiet,1"]);
}

#[tokio::test]
async fn refuses_bad_subscription_requests_like_commands() {
    let s = Stack::start().await;
    let a = s.send("POST", "/subscribe/x", &[], Some(b"[]".to_vec())).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json(), json!({"error": "WRONGPASS invalid or missing auth token"}));
    let a = s.send("DELETE", "/subscribe/x", &[("Authorization", &bearer())], None).await;
    assert_eq!(a.status, 405);
    let a = s.post("/subscribe", "[]").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json(), json!({"error": "ERR wrong number of arguments for 'subscribe' command"}));
    // SUBSCRIBE as a command (not the stream endpoint) is still refused, and MONITOR too.
    assert_eq!(s.cmd(json!(["SUBSCRIBE", "x"])).await.0, 400);
    assert_eq!(s.get("/monitor").await.json(), json!({"error": "ERR Command is not available: 'monitor'"}));
    assert_eq!(s.levels().await["subscriptions"]["opened"], json!(0));
}

#[tokio::test]
async fn the_stream_ends_when_redis_goes_away() {
    let mut s = Stack::start().await;
    let mut stream = Stream::open(&s, "/subscribe/gone").await;
    stream.until("data: subscribe,gone,1").await;
    s.redis.kill();
    let end =
        tokio::time::timeout(Duration::from_secs(5), async { while let Ok(Some(_)) = stream.resp.chunk().await {} })
            .await;
    assert!(end.is_ok(), "the stream outlived its Redis connection");
    let mut open = s.levels().await["subscriptions"]["open"].clone();
    for _ in 0..100 {
        if open == json!(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        open = s.levels().await["subscriptions"]["open"].clone();
    }
    assert_eq!(open, json!(0));
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_exits_promptly() {
    let mut s = Stack::start().await;
    let mut stream = Stream::open(&s, "/subscribe/until-shutdown").await;
    stream.until("data: subscribe,until-shutdown,1").await;
    let status = s.rest.terminate(Duration::from_secs(4)).expect("exited while a stream was open");
    assert!(status.success(), "{status:?}");
    let end =
        tokio::time::timeout(Duration::from_secs(2), async { while let Ok(Some(_)) = stream.resp.chunk().await {} })
            .await;
    assert!(end.is_ok(), "the stream did not end");
    assert_eq!(redis_subscribers(s.redis.port), 0);
}

#[tokio::test]
async fn an_open_stream_outlives_the_header_timeout() {
    // The header timeout closes connections waiting for a request head; a stream is not.
    let s = Stack::start_with(&["--header-timeout-ms", "200", "--sse-keepalive-ms", "60000"]).await;
    let mut stream = Stream::open(&s, "/subscribe/long").await;
    stream.until("data: subscribe,long,1").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(s.result(json!(["PUBLISH", "long", "still here"])).await, json!(1));
    stream.until("data: message,long,still here\n\n").await;
}
