//! Shared by the CLI's integration tests: running the built binary, and a fake admin API on
//! 127.0.0.1 that answers canned replies and records what it was asked.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

/// What one run of `tollgate` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `tollgate` with no `TOLLGATE_*` or `NO_COLOR` inherited from the environment and stdin closed.
pub fn tollgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.env_remove("TOLLGATE_URL").env_remove("TOLLGATE_ADMIN_TOKEN").env_remove("NO_COLOR");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("tollgate runs");
    Run {
        code: out.status.code().expect("tollgate exits with a code, not a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// A URL on 127.0.0.1 where nothing listens (a port just freed).
pub fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// A canned reply for `METHOD path` (path with query).
#[derive(Debug, Clone)]
pub struct Canned {
    pub method: &'static str,
    pub path: &'static str,
    pub status: u16,
    pub body: String,
}

/// An admin API that answers canned replies (404 for anything else).
pub struct FakeWorker {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeWorker {
    pub fn start(replies: Vec<Canned>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake worker");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // One request per connection; errors just drop the connection.
                let _ = serve(stream, &replies, &log);
            }
        });
        Self { url, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log lock").clone()
    }
}

fn serve(stream: TcpStream, replies: &[Canned], log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    log.lock().expect("log lock").push(Seen { method: method.clone(), path: path.clone(), authorization, body });

    let (status, reply) = replies
        .iter()
        .find(|c| c.method == method && c.path == path)
        .map(|c| (c.status, c.body.clone()))
        .unwrap_or((404, r#"{"type":"about:blank","title":"Not Found","status":404}"#.to_owned()));
    let content_type = if status >= 400 { "application/problem+json" } else { "application/json" };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}
