//! The echo route: any other method and path answers with what the origin received.

use std::collections::BTreeMap;

use base64::Engine as _;
use hyper::http::request::Parts;
use serde_json::{json, Value};

/// The echo document: `{"method", "path", "query", "headers", "body", "body_encoding"}`.
///
/// `query` is the raw query string without `?` (empty when absent). Header names are lowercase;
/// repeated headers are joined with `", "`. `body` is the body as text when it is UTF-8
/// (`"body_encoding": "utf8"`), else standard base64 (`"body_encoding": "base64"`).
pub fn echo(parts: &Parts, body: &[u8]) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let (body, encoding) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), "base64"),
    };
    json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn echoes_method_path_query_and_joined_headers() {
        let request =
            Request::post("/v1/things?a=1&b=2").header("X-Test", "one").header("x-test", "two").body(()).unwrap();
        let doc = echo(&parts(request), b"hello");
        assert_eq!(doc["method"], "POST");
        assert_eq!(doc["path"], "/v1/things");
        assert_eq!(doc["query"], "a=1&b=2");
        assert_eq!(doc["headers"]["x-test"], "one, two");
        assert_eq!(doc["body"], "hello");
        assert_eq!(doc["body_encoding"], "utf8");
    }

    #[test]
    fn binary_bodies_come_back_as_base64() {
        let doc = echo(&parts(Request::get("/").body(()).unwrap()), &[0xff, 0x00]);
        assert_eq!(doc["body"], "/wA=");
        assert_eq!(doc["body_encoding"], "base64");
        assert_eq!(doc["query"], "");
    }
}
