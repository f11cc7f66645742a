//! Plain request and response values, so the gate's logic runs and is tested natively; the wasm
//! glue converts `worker` types to and from these at the boundary.

/// An incoming request, fully read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeRequest {
    /// Upper-case method.
    pub method: String,
    /// Path, percent-encoded as received, without the query.
    pub path: String,
    /// Query string without `?`, empty when absent.
    pub query: String,
    /// Headers with lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl EdgeRequest {
    /// A request without headers or body.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path_and_query, ""),
        };
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (name lower-cased).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Path and query as one string.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// Path and query of an absolute URL as the runtime serialises it (`https://host/p/a?x=1#f` →
/// `("/p/a", "x=1")`), without parsing it again: the path starts at the first `/` after the host,
/// and `?` and `#` cannot appear in it unescaped.
pub fn split_url(url: &str) -> (String, String) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let Some(slash) = rest.find('/') else {
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        return ("/".to_owned(), query.split('#').next().unwrap_or("").to_owned());
    };
    let path_and_more = &rest[slash..];
    let without_fragment = path_and_more.split('#').next().unwrap_or("");
    match without_fragment.split_once('?') {
        Some((path, query)) => (path.to_owned(), query.to_owned()),
        None => (without_fragment.to_owned(), String::new()),
    }
}

/// An outgoing response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names as written.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl EdgeResponse {
    /// A response with a status and nothing else.
    pub fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Self::new(status).with_header("content-type", "application/json").with_body(body)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a header, replacing any value it had.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.into()));
    }

    /// Appends a header, keeping earlier values.
    pub fn append_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_owned(), value.into()));
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_path_and_query() {
        assert_eq!(split_url("https://h.example/a/b?x=1&y=2#frag"), ("/a/b".into(), "x=1&y=2".into()));
        assert_eq!(split_url("http://127.0.0.1:8787/"), ("/".into(), String::new()));
        assert_eq!(split_url("http://127.0.0.1:8787"), ("/".into(), String::new()));
        assert_eq!(split_url("http://h?q=1"), ("/".into(), "q=1".into()));
        assert_eq!(split_url("http://h/p%20q?a=%3F"), ("/p%20q".into(), "a=%3F".into()));
    }
}
