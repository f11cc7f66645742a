//! `tollgate monitor --events` against a fake event stream on 127.0.0.1: what it asks for, how
//! events print (lines, `--json`), and how it ends (the stream ending, Ctrl-C, refusals).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{run, tollgate};

const TOKEN: &str = "test-admin-token";

/// What the fake saw of the one request it served.
#[derive(Debug)]
struct Asked {
    target: String,
    authorization: Option<String>,
    accept: Option<String>,
}

/// A Worker that answers one request with `status` and then writes `chunks` (an event stream
/// for a 200), pausing between them, and then closes — or, with `hold`, keeps the connection
/// open for that long.
fn fake_stream(status: u16, chunks: Vec<&'static str>, hold: Duration) -> (String, mpsc::Receiver<Asked>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake worker");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        if let Some(Ok(stream)) = listener.incoming().next() {
            let _ = serve(stream, status, &chunks, hold, &tx);
        }
    });
    (url, rx)
}

fn serve(
    stream: TcpStream,
    status: u16,
    chunks: &[&str],
    hold: Duration,
    tx: &mpsc::Sender<Asked>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (mut authorization, mut accept) = (None, None);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_owned()),
                "accept" => accept = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let _ = tx.send(Asked { target, authorization, accept });
    let mut stream = stream;
    if status != 200 {
        let body = chunks.concat();
        write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return stream.flush();
    }
    write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")?;
    stream.flush()?;
    for chunk in chunks {
        stream.write_all(chunk.as_bytes())?;
        stream.flush()?;
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(hold);
    Ok(())
}

const READY: &str = "event: ready\ndata: {\"channels\":[\"invalidation\",\"quota_warning\"]}\n\n";
const INVALIDATION: &str =
    "event: invalidation\ndata: {\"kind\":\"tag\",\"target\":\"config\",\"deleted\":2,\"at_ms\":1763770123456}\n\n";

#[test]
fn events_print_one_line_each_until_the_stream_ends() {
    let (url, asked) = fake_stream(
        200,
        vec![
            READY,
            ": keepalive\n\n",
            "event: invalid",
            &INVALIDATION[14..],
            "event: quota_warning\ndata: {\"subject\":\"user-7\",\"used\":90}\n\n",
        ],
        Duration::ZERO,
    );
    let r = run(tollgate().args(["monitor", "--events", "--url", &url, "--token", TOKEN]).env("NO_COLOR", "1"));
    let asked = asked.recv_timeout(Duration::from_secs(5)).expect("the fake was asked");
    assert_eq!(asked.target, "/_tollgate/events");
    assert_eq!(asked.authorization.as_deref(), Some("Bearer test-admin-token"));
    assert_eq!(asked.accept.as_deref(), Some("text/event-stream"));
    assert_eq!(r.code, 1, "a stream that ends is not what was asked for: {r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!(lines[0], "00:08:43.456  invalidation   tag config  deleted 2");
    assert!(lines[1].ends_with("  quota_warning  user-7  used=90"), "{r:?}");
    assert_eq!(r.stderr, "listening for invalidation, quota_warning events (Ctrl-C to stop)\nthe event stream ended\n");
}

#[test]
fn json_prints_each_event_as_an_object_and_channels_are_asked_for() {
    let (url, asked) = fake_stream(200, vec![READY, INVALIDATION], Duration::ZERO);
    let r = run(tollgate().args([
        "monitor",
        "--events",
        "--json",
        "--channels",
        "invalidation",
        "--url",
        &url,
        "--token",
        TOKEN,
    ]));
    assert_eq!(
        asked.recv_timeout(Duration::from_secs(5)).expect("asked").target,
        "/_tollgate/events?channels=invalidation"
    );
    let lines: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert_eq!(lines[0]["event"], "invalidation");
    assert_eq!(lines[0]["data"]["target"], "config");
    assert!(lines[0]["received_ms"].as_u64().is_some());
}

#[test]
fn ctrl_c_ends_a_quiet_stream_at_once_with_exit_0() {
    let (url, _asked) = fake_stream(200, vec![READY], Duration::from_secs(30));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["monitor", "--events", "--url", &url, "--token", TOKEN])
        .env_remove("TOLLGATE_URL")
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("a note");
    assert!(first.starts_with("listening for"), "{first}");
    let sent = Instant::now();
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("tollgate ends");
    assert_eq!(status.code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(2), "ended {:?} after Ctrl-C", sent.elapsed());
}

#[test]
fn refusals_exit_like_every_other_admin_call() {
    let (url, _) = fake_stream(401, vec!["{\"title\":\"Unauthorized\",\"status\":401}"], Duration::ZERO);
    let r = run(tollgate().args(["monitor", "--events", "--url", &url, "--token", "wrong"]));
    assert_eq!((r.code, r.stderr.as_str()), (3, "error: 401 unauthorized: check TOLLGATE_ADMIN_TOKEN\n"));
    let problem = "{\"title\":\"Redis required\",\"status\":503,\"detail\":\"this operation needs Redis; Tollgate runs in memory mode\"}";
    let (url, _) = fake_stream(503, vec![problem], Duration::ZERO);
    let r = run(tollgate().args(["monitor", "--events", "--url", &url, "--token", TOKEN]));
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "error: 503 Redis required: this operation needs Redis; Tollgate runs in memory mode\n");
    let r = run(tollgate().args(["monitor", "--events", "--count", "2", "--token", TOKEN]));
    assert_eq!(r.code, 2, "{r:?}");
    let r = run(tollgate().args(["monitor", "--events", "--url", &url]));
    assert_eq!(r.code, 2, "no token is a configuration error: {r:?}");
    assert!(r.stderr.contains("no admin token"), "{r:?}");
    let r = run(tollgate().args(["monitor", "--channels", "invalidation", "--token", TOKEN]));
    assert_eq!(r.code, 2, "--channels needs --events: {r:?}");
}
