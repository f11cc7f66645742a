//! Drives the real `demo-origin` binary over HTTP, one process per test on a free port.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::{header, Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_demo-origin");
const PATIENCE: Duration = Duration::from_secs(10);

/// A running demo-origin; killed when dropped if the test did not stop it.
struct Running {
    child: Child,
    url: String,
    client: Client,
}

impl Running {
    async fn start(extra_args: &[&str]) -> Self {
        let mut command = Command::new(BIN);
        command.args(["--listen", "127.0.0.1:0"]).args(extra_args);
        Self::spawn(command).await
    }

    async fn spawn(mut command: Command) -> Self {
        let mut child =
            command.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().expect("spawn demo-origin");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = timeout(PATIENCE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("demo-origin printed its URL in time")
            .expect("read stdout")
            .expect("a first line");
        let url = line
            .strip_prefix("demo-origin listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let client = Client::builder().no_proxy().build().expect("client");
        Self { child, url, client }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.request(Method::GET, path).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON body")
    }

    async fn send_json(&self, method: Method, path: &str, body: Value) -> reqwest::Response {
        self.request(method, path).json(&body).send().await.expect("request")
    }

    async fn hits(&self) -> Value {
        self.get_json("/_origin/hits").await
    }

    /// Sends SIGTERM and waits for the exit.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
        timeout(PATIENCE, self.child.wait()).await.expect("exited within the drain timeout").expect("wait")
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

async fn expect_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(content_type(&response), "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], json!(status.as_u16()));
    body
}

#[tokio::test]
async fn serves_seeded_and_generated_configs_with_cache_headers() {
    let origin = Running::start(&[]).await;
    let response = origin.request(Method::GET, "/config/app").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/json");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=60");
    let app: Value = response.json().await.unwrap();
    assert_eq!(app["name"], "app");
    assert_eq!(app["version"], 1);
    assert_eq!(app["value"]["theme"], "dark");
    assert!(app["served_at_ms"].as_u64().unwrap() > 1_600_000_000_000);

    let features = origin.get_json("/config/features").await;
    assert_eq!(features["value"]["chat"], true);
    let other = origin.get_json("/config/anything-at-all").await;
    assert_eq!(other["name"], "anything-at-all");
    assert_eq!(other["version"], 1);
    assert_eq!(other["value"]["generated"], true);

    let head = origin.request(Method::HEAD, "/config/app").send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn writes_bump_the_version() {
    let origin = Running::start(&[]).await;
    let put = origin.send_json(Method::PUT, "/config/app", json!({"theme": "light"})).await;
    assert_eq!(put.status(), StatusCode::OK);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["version"], 2);
    assert_eq!(put["value"], json!({"theme": "light"}));

    let patched: Value =
        origin.send_json(Method::PATCH, "/config/app", json!({"beta": true})).await.json().await.unwrap();
    assert_eq!(patched["version"], 3);
    assert_eq!(patched["value"], json!({"theme": "light", "beta": true}));
    assert_eq!(origin.get_json("/config/app").await["value"], patched["value"]);

    let deleted = origin.request(Method::DELETE, "/config/app").send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let after = origin.get_json("/config/app").await;
    assert_eq!(after["version"], 4);
    assert_eq!(after["value"]["generated"], true);

    let bad = origin.request(Method::PUT, "/config/app").body("{not json").send().await.unwrap();
    expect_problem(bad, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn rag_context_is_deterministic_and_rejects_bad_json() {
    let origin = Running::start(&[]).await;
    let body = json!({"query": "How do tiers work?", "top_k": 4});
    let first: Value = origin.send_json(Method::POST, "/rag/context", body.clone()).await.json().await.unwrap();
    let second: Value = origin.send_json(Method::POST, "/rag/context", body).await.json().await.unwrap();
    assert_eq!(first["query"], "How do tiers work?");
    assert_eq!(first["chunks"].as_array().map(Vec::len), Some(4));
    assert_eq!(first["chunks"], second["chunks"]);
    assert!(first["generated_at_ms"].is_u64());

    let bad = origin
        .request(Method::POST, "/rag/context")
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"query\":")
        .send()
        .await
        .unwrap();
    let problem = expect_problem(bad, StatusCode::BAD_REQUEST).await;
    assert!(problem["detail"].as_str().unwrap().contains("JSON"));

    let no_query = origin.send_json(Method::POST, "/rag/context", json!({"q": "x"})).await;
    expect_problem(no_query, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn echoes_everything_else() {
    let origin = Running::start(&[]).await;
    let echoed: Value = origin
        .request(Method::POST, "/api/chat/send?room=1&x=y")
        .header("X-Custom", "hello")
        .body("plain text body")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/api/chat/send");
    assert_eq!(echoed["query"], "room=1&x=y");
    assert_eq!(echoed["headers"]["x-custom"], "hello");
    assert_eq!(echoed["body"], "plain text body");
    assert_eq!(echoed["body_encoding"], "utf8");

    let binary: Value = origin
        .request(Method::PUT, "/upload")
        .body(vec![0xde, 0xad, 0xbe, 0xef])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(binary["body"], "3q2+7w==");
    assert_eq!(binary["body_encoding"], "base64");

    let config_post: Value = origin.request(Method::POST, "/config/app").send().await.unwrap().json().await.unwrap();
    assert_eq!(config_post["method"], "POST", "POST on a config echoes");
}

#[tokio::test]
async fn counts_hits_but_not_control_requests_and_resets() {
    let origin = Running::start(&[]).await;
    origin.get_json("/config/app").await;
    origin.get_json("/config/app").await;
    origin.send_json(Method::PUT, "/config/features", json!({"chat": false})).await;
    origin.send_json(Method::POST, "/rag/context", json!({"query": "q"})).await;
    origin.get_json("/elsewhere?ignored=1").await;
    origin.get_json("/_origin/settings").await;
    origin.get_json("/_origin/health").await;
    assert_eq!(
        origin.hits().await,
        json!({
            "total": 5,
            "by_path": {"/config/app": 2, "/config/features": 1, "/rag/context": 1, "/elsewhere": 1},
            "by_route": {"config": 3, "rag": 1, "echo": 1},
        })
    );

    let reset = origin.request(Method::POST, "/_origin/reset").send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(origin.hits().await, json!({"total": 0, "by_path": {}, "by_route": {"config": 0, "rag": 0, "echo": 0}}));
    let features = origin.get_json("/config/features").await;
    assert_eq!(features["version"], 1, "reset restores the seeded configs");
    assert_eq!(features["value"]["chat"], true);

    let wrong_method = origin.request(Method::GET, "/_origin/reset").send().await.unwrap();
    assert_eq!(wrong_method.headers()[header::ALLOW], "POST");
    expect_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    let unknown = origin.request(Method::GET, "/_origin/nothing").send().await.unwrap();
    expect_problem(unknown, StatusCode::NOT_FOUND).await;
    assert_eq!(origin.hits().await["total"], 1);
}

#[tokio::test]
async fn per_request_headers_inject_delay_and_failures_after_counting() {
    let origin = Running::start(&[]).await;
    let failed = origin.request(Method::GET, "/config/app").header("X-Origin-Fail", "503").send().await.unwrap();
    let problem = expect_problem(failed, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(problem["title"], "Service Unavailable");

    let closed = origin.request(Method::GET, "/config/app").header("X-Origin-Fail", "close").send().await;
    assert!(closed.is_err(), "close answers nothing: {closed:?}");

    let started = Instant::now();
    let delayed = origin.request(Method::GET, "/config/app").header("X-Origin-Delay-Ms", "200").send().await.unwrap();
    assert_eq!(delayed.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let held = origin
        .request(Method::POST, "/rag/context")
        .header("X-Origin-Fail", "timeout")
        .timeout(Duration::from_millis(300))
        .json(&json!({"query": "q"}))
        .send()
        .await;
    assert!(held.is_err_and(|err| err.is_timeout()));

    let bad = origin.request(Method::GET, "/config/app").header("X-Origin-Fail", "sometimes").send().await.unwrap();
    expect_problem(bad, StatusCode::BAD_REQUEST).await;

    let hits = origin.hits().await;
    assert_eq!(hits["by_path"]["/config/app"], 4, "{hits}");
    assert_eq!(hits["by_route"]["rag"], 1, "{hits}");
}

#[tokio::test]
async fn global_settings_apply_until_changed_or_reset() {
    let origin = Running::start(&["--delay-ms", "5"]).await;
    assert_eq!(origin.get_json("/_origin/settings").await, json!({"delay_ms": 5, "fail": null}));
    let set = origin.send_json(Method::POST, "/_origin/settings", json!({"fail": 502})).await;
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(set.json::<Value>().await.unwrap(), json!({"delay_ms": 5, "fail": "502"}));
    let failed = origin.request(Method::GET, "/anything").send().await.unwrap();
    expect_problem(failed, StatusCode::BAD_GATEWAY).await;
    let spared = origin.request(Method::GET, "/anything").header("X-Origin-Fail", "none").send().await.unwrap();
    assert_eq!(spared.status(), StatusCode::OK);
    assert_eq!(origin.hits().await["total"], 2, "control is never delayed or failed");

    let invalid = origin.send_json(Method::POST, "/_origin/settings", json!({"delay_ms": "soon"})).await;
    expect_problem(invalid, StatusCode::BAD_REQUEST).await;

    origin.request(Method::POST, "/_origin/reset").send().await.unwrap();
    assert_eq!(
        origin.get_json("/_origin/settings").await,
        json!({"delay_ms": 5, "fail": null}),
        "reset returns to the start flags"
    );
}

#[tokio::test]
async fn start_flag_failures_apply_to_every_counted_request() {
    let origin = Running::start(&["--fail", "close"]).await;
    assert!(origin.request(Method::GET, "/config/app").send().await.is_err());
    assert_eq!(origin.hits().await["total"], 1);
}

#[tokio::test]
async fn sigterm_interrupts_held_requests_and_exits_cleanly() {
    let origin = Running::start(&[]).await;
    let held = origin.request(Method::GET, "/config/app").header("X-Origin-Fail", "timeout").send();
    let held = tokio::spawn(held);
    let deadline = Instant::now() + PATIENCE;
    while origin.hits().await["total"] != 1 {
        assert!(Instant::now() < deadline, "the held request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let status = origin.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(held.await.unwrap().is_err(), "the held request got no answer");
}

#[tokio::test]
async fn listens_where_the_environment_says() {
    let mut command = Command::new(BIN);
    command.env("DEMO_ORIGIN_LISTEN", "127.0.0.1:0");
    let origin = Running::spawn(command).await;
    assert!(origin.url.starts_with("http://127.0.0.1:"));
    assert_eq!(origin.get_json("/_origin/health").await["status"], "ok");
    assert!(origin.terminate().await.success());
}

#[tokio::test]
async fn refuses_to_bind_anything_but_loopback() {
    let output = Command::new(BIN).args(["--listen", "0.0.0.0:0"]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not loopback"));
}

/// The `data:` payloads of a server-sent event stream, in order.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n").filter_map(|event| event.strip_prefix("data: ")).map(str::to_owned).collect()
}

async fn chat_stats(origin: &Running) -> Value {
    origin.get_json("/_origin/chat").await
}

#[tokio::test]
async fn chat_completions_report_deterministic_usage() {
    let origin = Running::start(&[]).await;
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": "four words of prompt"}], "max_tokens": 296});
    let response = origin.send_json(Method::POST, "/v1/chat/completions", body.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/json");
    assert_eq!(response.headers()["x-usage-tokens"], "300");
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(first["usage"], json!({"prompt_tokens": 4, "completion_tokens": 296, "total_tokens": 300}));
    let second: Value = origin.send_json(Method::POST, "/v1/chat/completions", body).await.json().await.unwrap();
    assert_eq!(first["choices"], second["choices"], "the same request gets the same answer");
    let stats = chat_stats(&origin).await;
    assert_eq!(
        (stats["requests"].as_u64(), stats["finished"].as_u64(), stats["tokens"].as_u64()),
        (Some(2), Some(2), Some(600))
    );
    assert_eq!(origin.hits().await["total"], 0, "chat completions are counted apart from the hits");

    let bad = origin.send_json(Method::POST, "/v1/chat/completions", json!({"messages": []})).await;
    let problem = expect_problem(bad, StatusCode::BAD_REQUEST).await;
    assert!(problem["detail"].as_str().unwrap().contains("messages"), "{problem}");
    let bad = origin
        .request(Method::POST, "/v1/chat/completions")
        .header("X-Origin-Token-Delay-Ms", "lots")
        .json(&json!({"messages": [{"content": "x"}]}))
        .send()
        .await
        .unwrap();
    expect_problem(bad, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_streamed_completion_ends_in_a_usage_chunk_and_done() {
    let origin = Running::start(&[]).await;
    let body = json!({"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 5, "stream": true});
    let response = origin.send_json(Method::POST, "/v1/chat/completions", body.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "text/event-stream");
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.len(), 5 + 2, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&events[5]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 7);
    let text: String = events[..5]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"].as_str().unwrap().to_owned()
        })
        .collect();
    let buffered: Value = origin
        .send_json(Method::POST, "/v1/chat/completions", json!({"messages": body["messages"], "max_tokens": 5}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(buffered["choices"][0]["message"]["content"], text.as_str());
}

#[tokio::test]
async fn streams_in_flight_are_counted_and_an_abort_is_seen() {
    let origin = Running::start(&[]).await;
    let body = json!({"messages": [{"content": "slow"}], "max_tokens": 50, "stream": true});
    let slow = || {
        origin.request(Method::POST, "/v1/chat/completions").header("X-Origin-Token-Delay-Ms", "100").json(&body).send()
    };
    let (mut a, mut b) = (slow().await.unwrap(), slow().await.unwrap());
    assert!(a.chunk().await.unwrap().is_some() && b.chunk().await.unwrap().is_some(), "both started streaming");
    let stats = chat_stats(&origin).await;
    assert_eq!((stats["in_flight"].as_u64(), stats["max_in_flight"].as_u64()), (Some(2), Some(2)), "{stats}");
    drop(a);
    drop(b);
    // The producer notices the closed connection at its next token (100 ms); poll, never sleep blindly long.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = chat_stats(&origin).await;
        if stats["in_flight"] == 0 {
            assert_eq!(stats["aborted"], 2, "{stats}");
            assert_eq!(stats["finished"], 0, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "streams never ended: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
#[tokio::test]
async fn serves_a_key_set_and_mints_tokens_for_its_keys_without_counting_them_as_hits() {
    let origin = Running::start(&[]).await;
    let response = origin.request(Method::GET, "/.well-known/jwks.json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=300");
    let jwks: Value = response.json().await.unwrap();
    let kinds: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ES256", "RS256", "EdDSA"]);

    let minted =
        origin.send_json(Method::POST, "/_origin/tokens", json!({"alg": "RS256", "claims": {"sub": "alice"}})).await;
    assert_eq!(minted.status(), StatusCode::OK);
    let minted: Value = minted.json().await.unwrap();
    assert_eq!(minted["kid"], jwks["keys"][1]["kid"]);
    assert_eq!(minted["token"].as_str().unwrap().split('.').count(), 3);

    let rotated: Value =
        origin.send_json(Method::POST, "/_origin/jwks/rotate", json!({"alg": "EdDSA"})).await.json().await.unwrap();
    let status = origin.get_json("/_origin/jwks").await;
    assert_eq!(status["kids"][0], rotated["kid"]);
    assert_eq!(status["fetches"], 1);
    assert_eq!(origin.hits().await["total"], 0, "the key set and its control routes are not origin hits");

    let outage = origin.send_json(Method::POST, "/_origin/jwks", json!({"fail": 503})).await;
    assert_eq!(outage.status(), StatusCode::OK);
    let failed = origin.request(Method::GET, "/.well-known/jwks.json").send().await.unwrap();
    expect_problem(failed, StatusCode::SERVICE_UNAVAILABLE).await;
    let bad = origin.send_json(Method::POST, "/_origin/tokens", json!({"alg": "none"})).await;
    expect_problem(bad, StatusCode::BAD_REQUEST).await;
}
