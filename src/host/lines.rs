//! Header sets as "name:value" lines joined by `\n`, the form `host.js` reads and writes: one
//! string crosses the boundary instead of one call per header.
//!
//! A header value never holds a line break (the Fetch standard refuses one) and a name never
//! holds `:`, so the form is unambiguous; a pair that could break it is left out when encoding
//! (the runtime would refuse it anyway).

/// Whether `(name, value)` can be written as one line.
fn encodable(name: &str, value: &str) -> bool {
    !name.is_empty() && !name.contains([':', '\n', '\r']) && !value.contains(['\n', '\r'])
}

/// Appends one header as a line to `out`; a pair that cannot be a header is left out.
pub fn push_header_line(out: &mut String, name: &str, value: &str) {
    if !encodable(name, value) {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(name);
    out.push(':');
    out.push_str(value);
}

/// `headers` as lines.
pub fn header_lines(headers: &[(String, String)]) -> String {
    let mut out = String::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (name, value) in headers {
        push_header_line(&mut out, name, value);
    }
    out
}

/// Lines back into pairs, in order; a line without `:` is skipped.
pub fn parse_header_lines(text: &str) -> Vec<(String, String)> {
    text.split('\n')
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| !name.is_empty())
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// What the gate reads of a request, as `host.js` hands it over: the method, the URL and the
/// header lines (names lower-case, as the runtime iterates them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method as received.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// Parses `METHOD\nURL` followed by header lines.
    pub fn parse(text: &str) -> Self {
        let mut parts = text.splitn(3, '\n');
        let method = parts.next().unwrap_or_default().to_owned();
        let url = parts.next().unwrap_or_default().to_owned();
        let mut headers = parse_header_lines(parts.next().unwrap_or_default());
        for (name, _) in &mut headers {
            name.make_ascii_lowercase();
        }
        Self { method, url, headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn headers_round_trip_through_lines() {
        let headers = h(&[("content-type", "text/plain"), ("vary", "Origin"), ("vary", "Accept"), ("x-empty", "")]);
        let text = header_lines(&headers);
        assert_eq!(text, "content-type:text/plain\nvary:Origin\nvary:Accept\nx-empty:");
        assert_eq!(parse_header_lines(&text), headers);
    }

    #[test]
    fn values_keep_their_colons() {
        let headers = h(&[("location", "https://a.example:8443/x"), ("server-timing", "redis;dur=3")]);
        assert_eq!(parse_header_lines(&header_lines(&headers)), headers);
    }

    #[test]
    fn pairs_that_cannot_be_headers_are_left_out() {
        let headers =
            h(&[("ok", "1"), ("bad\nname", "x"), ("split", "a\r\nb"), ("", "v"), ("a:b", "c"), ("last", "2")]);
        assert_eq!(header_lines(&headers), "ok:1\nlast:2");
        assert!(header_lines(&[]).is_empty());
        assert!(parse_header_lines("").is_empty());
    }

    #[test]
    fn a_request_head_parses_into_method_url_and_lower_case_headers() {
        let head = RequestHead::parse("POST\nhttps://h.example/a?b=1\nAccept:*/*\ncf-connecting-ip:203.0.113.7");
        assert_eq!(head.method, "POST");
        assert_eq!(head.url, "https://h.example/a?b=1");
        assert_eq!(head.headers, h(&[("accept", "*/*"), ("cf-connecting-ip", "203.0.113.7")]));
        let bare = RequestHead::parse("GET\nhttp://127.0.0.1/");
        assert_eq!((bare.method.as_str(), bare.url.as_str(), bare.headers.len()), ("GET", "http://127.0.0.1/", 0));
    }

    #[test]
    fn malformed_heads_never_panic() {
        for text in ["", "\n", "GET", "GET\n", "\n\n\n", "GET\nu\n:novalue\nnocolon\n"] {
            let head = RequestHead::parse(text);
            assert!(head.headers.iter().all(|(n, _)| !n.is_empty()), "{text:?}");
        }
    }
}
