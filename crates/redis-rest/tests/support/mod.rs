//! Shared helpers for the integration tests: a real `redis-server` on a free loopback port, the
//! built `redis-rest` binary in front of it, and a small HTTP client. Processes are stopped by
//! PID (their `Child` handle), never by name.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

pub const TOKEN: &str = "test-token";

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Finds `redis-server`; a missing binary fails the test (it is a required dependency).
pub fn redis_server_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("redis-server"));
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!("redis-server not found on PATH or in /usr/bin: install it (apt-get install redis-server)");
}

/// A `redis-server` child process without persistence.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts on `port` (e.g. again after [`RedisServer::kill`]) and waits until it answers PING.
    pub fn start_on(port: u16) -> Self {
        let child = Command::new(redis_server_binary())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let server = Self { child: Some(child), port };
        server.wait_ready();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not become ready", self.port);
    }

    /// SIGKILL by PID and reap: Redis disappears without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The built `redis-rest` binary, listening on a free port.
pub struct RestServer {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    pub log: PathBuf,
}

impl RestServer {
    pub async fn start(redis_url: &str) -> Self {
        Self::start_with(redis_url, &[]).await
    }

    /// Starts with extra flags and waits until it accepts HTTP requests.
    pub async fn start_with(redis_url: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("redis-rest-test-{}-{port}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_redis-rest"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--redis", redis_url, "--token", TOKEN])
            .args(extra)
            .env_remove("REDIS_REST_LISTEN")
            .env_remove("REDIS_REST_REDIS_URL")
            .env_remove("REDIS_REST_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn redis-rest");
        let server = Self { child: Some(child), port, base: format!("http://127.0.0.1:{port}"), log };
        server.wait_listening().await;
        server
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-rest did not start listening; log: {}", self.log_text());
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM by PID and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An HTTP answer, read completely.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// redis-server + redis-rest + a client that knows the token.
pub struct Stack {
    pub redis: RedisServer,
    pub rest: RestServer,
    pub http: reqwest::Client,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Self {
        let redis = RedisServer::start();
        let rest = RestServer::start_with(&redis.url(), extra).await;
        Self { redis, rest, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.rest.base, path)
    }

    /// Sends a request; `headers` are added as given (no implicit auth).
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("read body").to_vec();
        Answer { status, headers, body }
    }

    /// POSTs `body` to `path` with the bearer token.
    pub async fn post(&self, path: &str, body: &str) -> Answer {
        self.send("POST", path, &[("Authorization", &bearer())], Some(body.as_bytes().to_vec())).await
    }

    /// Same, asking for base64-encoded results.
    pub async fn post_b64(&self, path: &str, body: &str) -> Answer {
        self.send(
            "POST",
            path,
            &[("Authorization", &bearer()), ("Upstash-Encoding", "base64")],
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    /// GETs `path` with the bearer token.
    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[("Authorization", &bearer())], None).await
    }

    /// Runs one JSON command on `POST /` and returns (status, body JSON).
    pub async fn cmd(&self, command: Value) -> (u16, Value) {
        let a = self.post("/", &command.to_string()).await;
        (a.status, a.json())
    }

    /// Runs one command and returns its `result`, failing the test on anything else.
    pub async fn result(&self, command: Value) -> Value {
        let (status, body) = self.cmd(command.clone()).await;
        assert_eq!(status, 200, "{command} -> {body}");
        body.get("result").cloned().unwrap_or_else(|| panic!("no result: {body}"))
    }

    /// POSTs the same body `n` times concurrently (each on its own task).
    pub async fn post_concurrently(&self, path: &str, body: &str, n: usize) -> Vec<Answer> {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let http = self.http.clone();
                let url = self.url(path);
                let body = body.to_owned();
                tokio::spawn(async move {
                    let resp =
                        http.post(url).header("Authorization", bearer()).body(body).send().await.expect("HTTP request");
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let body = resp.bytes().await.expect("read body").to_vec();
                    Answer { status, headers, body }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            out.push(h.await.expect("request task"));
        }
        out
    }

    pub async fn stats(&self) -> Value {
        let a = self.get("/_rest/stats").await;
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()
    }

    /// `GET /_rest/levels`: open connections and subscriptions.
    pub async fn levels(&self) -> Value {
        let a = self.get("/_rest/levels").await;
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()
    }

    pub async fn reset_stats(&self) {
        let a = self.post("/_rest/stats/reset", "").await;
        assert_eq!(a.status, 200, "{}", a.text());
    }
}

pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Path of the built binary, for tests that start it by hand.
pub fn rest_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_redis-rest"))
}

/// Sends one command straight to Redis (not through redis-rest) and returns the raw RESP
/// reply text: for checking what redis-rest did or did not do to the server.
pub fn redis_raw(port: u16, parts: &[&str]) -> String {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    let mut wire = format!("*{}\r\n", parts.len());
    for p in parts {
        wire.push_str(&format!("${}\r\n{}\r\n", p.len(), p));
    }
    sock.write_all(wire.as_bytes()).expect("write to redis");
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    // Replies here are small; read until a pause after the first bytes.
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                sock.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Client connections Redis has open now (`CLIENT LIST`, minus the one asking).
pub fn redis_clients(port: u16) -> usize {
    redis_raw(port, &["CLIENT", "LIST"]).lines().filter(|l| l.contains("addr=")).count().saturating_sub(1)
}

/// Polls `probe` every 25 ms until it is true or `within` passes; returns the last answer.
pub async fn eventually(within: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Redis clients in subscribe mode now (`sub=` or `psub=` above zero in `CLIENT LIST`).
pub fn redis_subscribers(port: u16) -> usize {
    redis_raw(port, &["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.split(' ').any(|f| (f.starts_with("sub=") || f.starts_with("psub=")) && !f.ends_with("=0")))
        .count()
}
