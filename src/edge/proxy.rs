//! What crosses to the origin and back: hop-by-hop headers dropped, Tollgate's own credentials
//! stripped, and the caller's subject hash and tier added in headers the origin can trust
//! (any `x-tollgate-*` header a client sent is removed first).

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Prefix of the headers Tollgate sets for the origin.
pub const TRUSTED_PREFIX: &str = "x-tollgate-";

/// The caller as the origin learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded<'a> {
    /// SHA-256 of the caller's subject.
    pub subject_hash: &'a str,
    /// The caller's tier.
    pub tier: &'a str,
    /// `api_key`, `jwt` or `anonymous`.
    pub caller: &'a str,
}

fn connection_listed(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_hop_by_hop(name: &str, listed: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str()) || listed.contains(&lower)
}

/// How a request's headers change on their way to the origin: names removed, headers added
/// (set, replacing any of the same name). The Worker applies it to a native copy of the request's
/// headers; [`HeaderChanges::apply`] gives the list the origin receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderChanges {
    /// Lower-case names of the request's headers that are not forwarded.
    pub removed: Vec<String>,
    /// Headers added for the origin.
    pub added: Vec<(String, String)>,
}

impl HeaderChanges {
    /// The headers the origin receives for a request with `headers`.
    pub fn apply(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                !self.removed.iter().any(|r| r.eq_ignore_ascii_case(n))
                    && !self.added.iter().any(|(a, _)| a.eq_ignore_ascii_case(n))
            })
            .cloned()
            .collect();
        out.extend(self.added.iter().cloned());
        out
    }
}

/// What changes for the origin: hop-by-hop, `host`, `content-length`, client-sent
/// `x-tollgate-*` and Tollgate API keys removed; the caller's identity added.
pub fn upstream_changes(headers: &[(String, String)], caller: Option<&Forwarded<'_>>) -> HeaderChanges {
    let listed = connection_listed(headers);
    let mut removed: Vec<String> = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let drop = is_hop_by_hop(&lower, &listed)
            || lower == "host"
            || lower == "content-length"
            || lower.starts_with(TRUSTED_PREFIX)
            || crate::identity::is_tollgate_credential(&lower, value);
        if drop && !removed.contains(&lower) {
            removed.push(lower);
        }
    }
    let added = match caller {
        Some(c) => vec![
            ("x-tollgate-subject".into(), c.subject_hash.to_owned()),
            ("x-tollgate-tier".into(), c.tier.to_owned()),
            ("x-tollgate-caller".into(), c.caller.to_owned()),
        ],
        None => Vec::new(),
    };
    HeaderChanges { removed, added }
}

/// Request headers for the origin (see [`upstream_changes`]).
pub fn upstream_request_headers(headers: &[(String, String)], caller: Option<&Forwarded<'_>>) -> Vec<(String, String)> {
    upstream_changes(headers, caller).apply(headers)
}

/// Request headers for the origin when filling a shared (global) cache entry. The answer is
/// served to every caller whose request has the same key, so nothing the key does not cover is
/// forwarded: no header of the caller at all (no `Accept`, `User-Agent`, credentials, cookies or
/// identity). A fill with a body (a JSON-body route, whose key is the body's canonical form) says
/// `content-type: application/json`; `x-tollgate-caller: cache` tells the origin why.
pub fn shared_fill_headers(with_json_body: bool) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(2);
    if with_json_body {
        out.push(("content-type".into(), "application/json".into()));
    }
    out.push(("x-tollgate-caller".into(), "cache".into()));
    out
}

/// Response headers passed back to the caller: hop-by-hop headers removed, and, when the body
/// was read and re-sent, the length and encoding that described the original bytes.
pub fn downstream_response_headers(headers: &[(String, String)], body_reencoded: bool) -> Vec<(String, String)> {
    let listed = connection_listed(headers);
    headers
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            !(is_hop_by_hop(&lower, &listed)
                || (body_reencoded && (lower == "content-length" || lower == "content-encoding")))
        })
        .cloned()
        .collect()
}

/// The origin URL of a request: `origin` + `path` + `?query`.
pub fn upstream_url(origin: &str, path: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{origin}{path}")
    } else {
        format!("{origin}{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_not_forwarded() {
        let out = upstream_request_headers(
            &h(&[("connection", "keep-alive, x-secret"), ("x-secret", "1"), ("te", "trailers"), ("accept", "*/*")]),
            None,
        );
        assert_eq!(out, h(&[("accept", "*/*")]));
    }

    #[test]
    fn client_sent_tollgate_headers_are_replaced_by_the_real_caller() {
        let caller = Forwarded { subject_hash: "abc", tier: "PRO", caller: "jwt" };
        let out = upstream_request_headers(
            &h(&[("x-tollgate-tier", "PRO"), ("x-tollgate-subject", "forged")]),
            Some(&caller),
        );
        assert_eq!(out, h(&[("x-tollgate-subject", "abc"), ("x-tollgate-tier", "PRO"), ("x-tollgate-caller", "jwt")]));
    }

    #[test]
    fn tollgate_api_keys_stay_at_the_edge_but_jwts_reach_the_origin() {
        let out =
            upstream_request_headers(&h(&[("authorization", "Bearer tg_abc_def"), ("x-api-key", "tg_x_y")]), None);
        assert!(out.is_empty());
        let out = upstream_request_headers(&h(&[("authorization", "Bearer a.b.c")]), None);
        assert_eq!(out, h(&[("authorization", "Bearer a.b.c")]));
    }

    #[test]
    fn api_keys_are_stripped_however_the_scheme_is_spelled() {
        for value in ["BEARER tg_abc_def", "bearer\ttg_abc_def", "  Bearer   tg_abc_def ", "bEaReR tg_x"] {
            let out = upstream_request_headers(&h(&[("authorization", value), ("accept", "*/*")]), None);
            assert_eq!(out, h(&[("accept", "*/*")]), "{value:?}");
        }
    }

    #[test]
    fn supabase_apikey_and_jwt_headers_reach_the_origin_untouched() {
        let sent = h(&[("authorization", "Bearer h.p.s"), ("apikey", "sb_publishable_abc"), ("cookie", "sb-x=1")]);
        assert_eq!(upstream_request_headers(&sent, None), sent);
    }

    #[test]
    fn shared_fills_carry_nothing_the_key_does_not_cover() {
        assert_eq!(shared_fill_headers(false), h(&[("x-tollgate-caller", "cache")]));
        assert_eq!(
            shared_fill_headers(true),
            h(&[("content-type", "application/json"), ("x-tollgate-caller", "cache")])
        );
    }

    #[test]
    fn changes_name_what_is_removed_and_added_and_apply_to_the_forwarded_list() {
        let sent = h(&[
            ("host", "edge.example"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("x-tollgate-tier", "PRO"),
            ("authorization", "Bearer tg_abc_def"),
            ("accept", "*/*"),
        ]);
        let caller = Forwarded { subject_hash: "abc", tier: "ANON", caller: "anonymous" };
        let changes = upstream_changes(&sent, Some(&caller));
        assert_eq!(changes.removed, ["host", "connection", "x-secret", "x-tollgate-tier", "authorization"]);
        assert_eq!(
            changes.apply(&sent),
            h(&[
                ("accept", "*/*"),
                ("x-tollgate-subject", "abc"),
                ("x-tollgate-tier", "ANON"),
                ("x-tollgate-caller", "anonymous")
            ])
        );
    }

    #[test]
    fn reencoded_bodies_drop_length_and_encoding() {
        let out = downstream_response_headers(
            &h(&[("content-length", "5"), ("content-encoding", "gzip"), ("etag", "\"x\"")]),
            true,
        );
        assert_eq!(out, h(&[("etag", "\"x\"")]));
    }
}
