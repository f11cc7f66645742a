//! Both transports on wasm32 (reqwest's and the Worker's own over `fetch`), run under Node: the
//! same headers, deadline and errors as natively.
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Promise, Reflect};
use tollgate::redis::{BudgetConfig, Client, Command, FetchTransport, RedisError, Reply, ReqwestTransport, Transport};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

/// A loopback TCP server that accepts connections and never answers.
const SILENT_SERVER: &str = r#"
const net = process.getBuiltinModule('net');
return new Promise((resolve) => {
  const held = [];
  const server = net.createServer((socket) => held.push(socket));
  server.unref();
  server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port,
    close: () => { held.forEach((s) => s.destroy()); server.close(); },
  }));
});
"#;

/// A loopback TCP server that sends a response head and the start of a body, then stalls.
const STALLING_SERVER: &str = r#"
const net = process.getBuiltinModule('net');
return new Promise((resolve) => {
  const held = [];
  const server = net.createServer((socket) => {
    held.push(socket);
    socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"result"'));
  });
  server.unref();
  server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port,
    close: () => { held.forEach((s) => s.destroy()); server.close(); },
  }));
});
"#;

/// A loopback HTTP server that records requests and answers `{"result":"OK"}` with a sync token.
const RECORDING_SERVER: &str = r#"
const http = process.getBuiltinModule('http');
return new Promise((resolve) => {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      seen.push({ url: req.url, headers: req.headers, body });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Upstash-Sync-Token': 'w-' + seen.length });
      res.end('{"result":"OK"}');
    });
  });
  server.unref();
  server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port,
    seen,
    close: () => { server.closeAllConnections(); server.close(); },
  }));
});
"#;

/// Runs one of the scripts above and returns its handle object.
async fn start(script: &str) -> JsValue {
    let promise: Promise = Function::new_no_args(script).call0(&JsValue::NULL).unwrap().unchecked_into();
    JsFuture::from(promise).await.unwrap()
}

fn get(object: &JsValue, path: &[&str]) -> JsValue {
    path.iter().fold(object.clone(), |o, key| Reflect::get(&o, &JsValue::from_str(key)).unwrap())
}

fn url(server: &JsValue) -> String {
    format!("http://127.0.0.1:{}", get(server, &["port"]).as_f64().unwrap())
}

fn close(server: &JsValue) {
    let close: Function = get(server, &["close"]).unchecked_into();
    close.call0(&JsValue::NULL).unwrap();
}

/// Builds a transport of one kind for `url`, `token` and timeout.
type Make<T> = fn(&str, &str, u32) -> T;

fn reqwest(url: &str, token: &str, ms: u32) -> ReqwestTransport {
    ReqwestTransport::new(url, token, ms).unwrap()
}

fn fetch(url: &str, token: &str, ms: u32) -> FetchTransport {
    FetchTransport::new(url, token, BudgetConfig::fixed(ms)).unwrap()
}

async fn times_out_when_the_server_never_answers<T: Transport>(make: Make<T>) {
    let server = start(SILENT_SERVER).await;
    let got = make(&url(&server), "t", 100).post("/", "[\"PING\"]".to_owned(), None).await;
    close(&server);
    assert_eq!(got, Err(RedisError::Timeout(100)));
}

async fn times_out_when_the_body_stalls<T: Transport>(make: Make<T>) {
    let server = start(STALLING_SERVER).await;
    let got = make(&url(&server), "t", 100).post("/", "[\"PING\"]".to_owned(), None).await;
    close(&server);
    assert_eq!(got, Err(RedisError::Timeout(100)));
}

async fn sends_the_protocol_headers_and_echoes_the_sync_token<T: Transport>(make: Make<T>) {
    let server = start(RECORDING_SERVER).await;
    let client = Client::new(make(&format!("{}/", url(&server)), "secret", 5_000));
    assert_eq!(client.command(Command::get("a")).await, Ok(Reply::Ok));
    assert_eq!(client.sync_token().as_deref(), Some("w-1"));
    assert_eq!(client.command(Command::get("b")).await, Ok(Reply::Ok));
    close(&server);
    let first = get(&server, &["seen", "0"]);
    let second = get(&server, &["seen", "1"]);
    assert_eq!(get(&first, &["url"]).as_string().as_deref(), Some("/"));
    assert_eq!(get(&first, &["body"]).as_string().as_deref(), Some("[\"GET\",\"a\"]"));
    assert_eq!(get(&first, &["headers", "authorization"]).as_string().as_deref(), Some("Bearer secret"));
    assert_eq!(get(&first, &["headers", "upstash-encoding"]).as_string().as_deref(), Some("base64"));
    assert_eq!(get(&first, &["headers", "content-type"]).as_string().as_deref(), Some("application/json"));
    assert!(get(&first, &["headers", "upstash-sync-token"]).is_undefined());
    assert_eq!(get(&second, &["headers", "upstash-sync-token"]).as_string().as_deref(), Some("w-1"));
}

async fn reports_nothing_listening_as_a_transport_error<T: Transport>(make: Make<T>) {
    let server = start(SILENT_SERVER).await;
    let url = url(&server);
    close(&server);
    let got = make(&url, "t", 5_000).post("/", "[]".to_owned(), None).await;
    assert!(matches!(got, Err(RedisError::Transport(_))), "{got:?}");
}

#[wasm_bindgen_test]
async fn a_server_that_never_answers_times_out() {
    times_out_when_the_server_never_answers(reqwest).await;
    times_out_when_the_server_never_answers(fetch).await;
}

#[wasm_bindgen_test]
async fn a_body_that_stalls_times_out() {
    times_out_when_the_body_stalls(reqwest).await;
    times_out_when_the_body_stalls(fetch).await;
}

#[wasm_bindgen_test]
async fn both_send_the_protocol_headers_and_echo_the_sync_token() {
    sends_the_protocol_headers_and_echoes_the_sync_token(reqwest).await;
    sends_the_protocol_headers_and_echoes_the_sync_token(fetch).await;
}

#[wasm_bindgen_test]
async fn nothing_listening_is_a_transport_error() {
    reports_nothing_listening_as_a_transport_error(reqwest).await;
    reports_nothing_listening_as_a_transport_error(fetch).await;
}

#[wasm_bindgen_test]
fn the_fetch_transport_refuses_a_url_without_a_host_or_a_bad_token() {
    assert!(FetchTransport::new("127.0.0.1:8079", "t", BudgetConfig::fixed(50)).is_err());
    assert!(FetchTransport::new("http://", "t", BudgetConfig::fixed(50)).is_err());
    assert!(FetchTransport::new("http://127.0.0.1:8079", "bad\ntoken", BudgetConfig::fixed(50)).is_err());
}
