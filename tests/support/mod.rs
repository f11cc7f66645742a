//! Shared integration-test support: a real `redis-server` behind `redis-rest` on free loopback ports.
//!
//! ```ignore
//! mod support;
//! let stack = support::Stack::start().await;
//! let client = stack.client();
//! ```
//!
//! Every process is started by PID and killed by PID on drop; everything binds 127.0.0.1. The
//! `redis-rest` binary is (re)built once per test binary with `cargo build -p redis-rest`; set
//! `REDIS_REST_BIN` to use a given binary instead, and `REDIS_SERVER_BIN` for `redis-server`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tollgate::redis::{Client, ReqwestTransport};

/// How long processes get to become ready (generous: CI machines are slow, and a failure says so).
const START_DEADLINE: Duration = Duration::from_secs(20);
/// The client timeout used by [`Stack::client`]: far above any local round trip.
pub const CLIENT_TIMEOUT_MS: u32 = 5_000;

/// A running `redis-server` + `redis-rest` pair; both are killed when this is dropped.
pub struct Stack {
    redis: Option<Child>,
    rest: Option<Child>,
    /// The `redis-server` port on 127.0.0.1.
    pub redis_port: u16,
    /// The REST server's port on 127.0.0.1.
    pub rest_port: u16,
    /// `http://127.0.0.1:{rest_port}`.
    pub rest_url: String,
    /// The bearer token `redis-rest` accepts.
    pub token: String,
    http: reqwest::Client,
}

/// The counters of `GET /_rest/stats`.
#[derive(Debug, Clone)]
pub struct RestStats {
    /// `http_requests.total`.
    pub http_requests: u64,
    /// `commands.total`.
    pub commands: u64,
    /// `commands.by_name`, names upper-cased.
    pub by_name: BTreeMap<String, u64>,
    /// The whole JSON answer.
    pub raw: serde_json::Value,
}

impl RestStats {
    /// The count for one command name (any case); 0 when absent.
    pub fn command(&self, name: &str) -> u64 {
        self.by_name.get(&name.to_ascii_uppercase()).copied().unwrap_or(0)
    }
}

impl Stack {
    /// Starts redis-server and redis-rest on free ports and waits until both answer.
    pub async fn start() -> Stack {
        let rest_bin = redis_rest_bin();
        let redis_port = free_port();
        let rest_port = free_port();
        let token = unique_token();
        let mut stack = Stack {
            redis: None,
            rest: None,
            redis_port,
            rest_port,
            rest_url: format!("http://127.0.0.1:{rest_port}"),
            token,
            http: reqwest::Client::new(),
        };
        stack.start_redis();
        let rest = Command::new(&rest_bin)
            .args(["--listen", &format!("127.0.0.1:{rest_port}")])
            .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
            .args(["--token", &stack.token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", rest_bin.display()));
        stack.rest = Some(rest);
        stack.wait_rest_healthy().await;
        stack
    }

    /// A client of this stack with [`CLIENT_TIMEOUT_MS`].
    pub fn client(&self) -> Client<ReqwestTransport> {
        self.client_with_timeout(CLIENT_TIMEOUT_MS)
    }

    /// A client of this stack with the given per-request timeout.
    pub fn client_with_timeout(&self, timeout_ms: u32) -> Client<ReqwestTransport> {
        Client::new(self.transport(timeout_ms))
    }

    /// A transport to this stack with the given per-request timeout.
    pub fn transport(&self, timeout_ms: u32) -> ReqwestTransport {
        ReqwestTransport::new(&self.rest_url, &self.token, timeout_ms).expect("transport")
    }

    /// `GET /_rest/stats`.
    pub async fn stats(&self) -> RestStats {
        let response = self
            .http
            .get(format!("{}/_rest/stats", self.rest_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET /_rest/stats");
        let status = response.status();
        let body = response.bytes().await.expect("stats body");
        assert!(status.is_success(), "GET /_rest/stats: {status}: {}", String::from_utf8_lossy(&body));
        let raw: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
        let http_requests = raw["http_requests"]["total"].as_u64().expect("http_requests.total");
        let commands = raw["commands"]["total"].as_u64().expect("commands.total");
        let by_name = raw["commands"]["by_name"]
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.to_ascii_uppercase(), v.as_u64()?))).collect())
            .unwrap_or_default();
        RestStats { http_requests, commands, by_name, raw }
    }

    /// `POST /_rest/stats/reset`.
    pub async fn reset_stats(&self) {
        let response = self
            .http
            .post(format!("{}/_rest/stats/reset", self.rest_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("POST /_rest/stats/reset");
        assert!(response.status().is_success(), "POST /_rest/stats/reset: {}", response.status());
    }

    /// Kills redis-server (redis-rest keeps running and should report it unreachable).
    pub fn stop_redis(&mut self) {
        if let Some(mut child) = self.redis.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts redis-server on the same port (empty: no persistence) and waits for `PONG`.
    pub fn start_redis(&mut self) {
        self.stop_redis();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(&bin)
            .args(["--port", &self.redis_port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--dir", &std::env::temp_dir().display().to_string()])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (apt install redis-server): {e}"));
        self.redis = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Resp::Simple(s)) = self.redis_raw(&["PING"]) {
                if s == "PONG" {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.redis.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited: {status}", self.redis_port);
            }
            assert!(Instant::now() < deadline, "redis-server on port {} not ready", self.redis_port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command straight to redis-server over RESP (bypassing REST and its counters).
    pub fn redis_raw<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Resp, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.redis_port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).map_err(|e| e.to_string())?;
        read_resp(&mut BufReader::new(stream))
    }

    /// Like [`Stack::redis_raw`] but panics on a connection failure or an error reply.
    pub fn redis<A: AsRef<[u8]>>(&self, args: &[A]) -> Resp {
        let shown = || args.iter().map(|a| String::from_utf8_lossy(a.as_ref()).into_owned()).collect::<Vec<_>>();
        match self.redis_raw(args) {
            Ok(Resp::Error(e)) => panic!("redis {:?}: {e}", shown()),
            Ok(reply) => reply,
            Err(e) => panic!("redis {:?}: {e}", shown()),
        }
    }

    async fn wait_rest_healthy(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        let url = format!("{}/health", self.rest_url);
        loop {
            if let Ok(r) = self.http.get(&url).timeout(Duration::from_secs(2)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.rest.as_mut().map(Child::try_wait) {
                panic!("redis-rest exited: {status}");
            }
            assert!(Instant::now() < deadline, "redis-rest at {url} not healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in [self.rest.take(), self.redis.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A RESP2 reply read straight from redis-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+…`
    Simple(String),
    /// `-…`
    Error(String),
    /// `:…`
    Int(i64),
    /// `$…` (None: null bulk)
    Bulk(Option<Vec<u8>>),
    /// `*…` (None: null array)
    Array(Option<Vec<Resp>>),
}

fn read_resp(reader: &mut impl BufRead) -> Result<Resp, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or("empty RESP line")?;
    let number = || rest.parse::<i64>().map_err(|e| format!("bad RESP number {rest:?}: {e}"));
    match kind {
        "+" => Ok(Resp::Simple(rest.to_owned())),
        "-" => Ok(Resp::Error(rest.to_owned())),
        ":" => Ok(Resp::Int(number()?)),
        "$" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Bulk(None));
            };
            let mut buf = vec![0; len + 2];
            reader.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(len);
            Ok(Resp::Bulk(Some(buf)))
        }
        "*" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Array(None));
            };
            (0..len).map(|_| read_resp(reader)).collect::<Result<_, _>>().map(|v| Resp::Array(Some(v)))
        }
        _ => Err(format!("bad RESP line {line:?}")),
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("test-token-{}-{n}-{nanos:x}", std::process::id())
}

/// The redis-rest binary: `REDIS_REST_BIN`, else built once per test binary into the target dir.
pub fn redis_rest_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("REDIS_REST_BIN") {
            return PathBuf::from(path);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug").join(format!("redis-rest{}", std::env::consts::EXE_SUFFIX));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args(["build", "-p", "redis-rest", "--bin", "redis-rest"])
            .current_dir(&root)
            .output()
            .expect("run cargo build -p redis-rest");
        if !output.status.success() {
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(bin.exists(), "cargo build -p redis-rest failed and no binary exists:\n{log}");
            eprintln!("warning: cargo build -p redis-rest failed; using the existing {}", bin.display());
        }
        bin
    })
    .clone()
}
