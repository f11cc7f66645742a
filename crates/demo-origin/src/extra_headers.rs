//! Response headers on demand: each `_header=Name:Value` query parameter (percent-encoded) adds
//! that header to the answer of a counted route, so tests can make the origin answer with
//! `Vary`, `Set-Cookie` or CORS headers of their choosing through a cached route (whose fills
//! forward the query but none of the caller's headers).

use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;

/// The query parameter's name.
pub const PARAM: &str = "_header";

/// The `(name, value)` pairs asked for in `query`; malformed ones are skipped.
pub fn requested(query: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
    let Some(query) = query else { return Vec::new() };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == PARAM)
        .filter_map(|(_, v)| {
            let text = percent_decode(v)?;
            let (name, value) = text.split_once(':')?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.trim()).ok()?;
            Some((name, value))
        })
        .collect()
}

/// Appends the requested headers to `headers`.
pub fn apply(query: Option<&str>, headers: &mut HeaderMap) {
    for (name, value) in requested(query) {
        headers.append(name, value);
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_become_response_headers() {
        let got = requested(Some("a=1&_header=Vary%3A%20Accept&_header=Set-Cookie:sid%3D1&_header=bad&_header=%zz"));
        let got: Vec<(String, String)> =
            got.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
        assert_eq!(got, [("vary".to_owned(), "Accept".to_owned()), ("set-cookie".to_owned(), "sid=1".to_owned())]);
        assert!(requested(None).is_empty());
    }
}
