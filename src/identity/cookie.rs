//! Tokens kept in a cookie (`identity.token_cookie`), as Supabase's SSR helpers keep them: the
//! cookie `name`, or its chunks `name.0`, `name.1`, … joined in order; a `base64-` prefix means
//! base64url of the rest; the text is the token itself or a JSON session holding `access_token`
//! (older helpers: a JSON array whose first item is the token).

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

use super::AuthError;

/// Longest cookie value read (all chunks together), bytes.
pub const MAX_COOKIE_BYTES: usize = 16 * 1024;
/// Most chunks read.
const MAX_CHUNKS: usize = 16;

const UNREADABLE: AuthError = AuthError::Malformed("the token cookie does not hold a readable token");

/// The token in cookie `name` of a `Cookie` header value: `None` without such a cookie, an
/// error when it is there but holds no token.
pub fn token_from_cookies(header: &str, name: &str) -> Option<Result<String, AuthError>> {
    let cookies: Vec<(&str, &str)> =
        header.split(';').filter_map(|c| c.split_once('=')).map(|(n, v)| (n.trim(), v.trim())).collect();
    let find = |wanted: &str| cookies.iter().find(|(n, _)| *n == wanted).map(|(_, v)| *v);
    let value = match find(name) {
        Some(v) => v.to_owned(),
        None => {
            let chunks: Vec<&str> = (0..MAX_CHUNKS).map_while(|i| find(&format!("{name}.{i}"))).collect();
            if chunks.is_empty() {
                return None;
            }
            chunks.concat()
        }
    };
    Some(read_token(&value))
}

fn read_token(value: &str) -> Result<String, AuthError> {
    if value.len() > MAX_COOKIE_BYTES {
        return Err(AuthError::Malformed("the token cookie is too long"));
    }
    let value = value.trim_matches('"');
    let text = if value.contains('%') { percent_decode(value).ok_or(UNREADABLE)? } else { value.to_owned() };
    let text = match text.strip_prefix("base64-") {
        Some(encoded) => {
            let encoded = encoded.trim_end_matches('=');
            let bytes = URL_SAFE_NO_PAD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded));
            String::from_utf8(bytes.map_err(|_| UNREADABLE)?).map_err(|_| UNREADABLE)?
        }
        None => text,
    };
    let token = if text.starts_with('{') || text.starts_with('[') || text.starts_with('"') {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(session)) => session.get("access_token").and_then(Value::as_str).map(str::to_owned),
            Ok(Value::Array(items)) => items.first().and_then(Value::as_str).map(str::to_owned),
            Ok(Value::String(s)) => Some(s),
            _ => None,
        }
        .ok_or(UNREADABLE)?
    } else {
        text
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(is_base64url)) {
        Ok(token)
    } else {
        Err(UNREADABLE)
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `%XX`-decodes `s`; `None` for a broken escape or text that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NAME: &str = "sb-abcd-auth-token";
    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl";

    fn session() -> String {
        json!({"access_token": JWT, "token_type": "bearer", "refresh_token": "r", "user": {"id": "u1"}}).to_string()
    }

    #[test]
    fn reads_a_base64_prefixed_supabase_session() {
        let value = format!("base64-{}", URL_SAFE_NO_PAD.encode(session()));
        let header = format!("theme=dark; {NAME}={value}; other=1");
        assert_eq!(token_from_cookies(&header, NAME), Some(Ok(JWT.to_owned())));
    }

    #[test]
    fn joins_chunked_cookies_in_order() {
        let value = format!("base64-{}", URL_SAFE_NO_PAD.encode(session()));
        let (a, b) = value.split_at(value.len() / 2);
        let (b, c) = b.split_at(b.len() / 2);
        let header = format!("{NAME}.1={b}; {NAME}.0={a}; {NAME}.2={c}");
        assert_eq!(token_from_cookies(&header, NAME), Some(Ok(JWT.to_owned())));
    }

    #[test]
    fn reads_a_bare_token_a_url_encoded_session_and_an_array() {
        assert_eq!(token_from_cookies(&format!("{NAME}={JWT}"), NAME), Some(Ok(JWT.to_owned())));
        let encoded: String = session()
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        assert_eq!(token_from_cookies(&format!("{NAME}={encoded}"), NAME), Some(Ok(JWT.to_owned())));
        let array = json!([JWT, "refresh", null]).to_string();
        assert_eq!(token_from_cookies(&format!("{NAME}={array}"), NAME), Some(Ok(JWT.to_owned())));
    }

    #[test]
    fn without_the_cookie_there_is_no_token() {
        assert_eq!(token_from_cookies("a=1; b=2", NAME), None);
        assert_eq!(token_from_cookies("", NAME), None);
        assert_eq!(token_from_cookies(&format!("x{NAME}={JWT}"), NAME), None);
    }

    #[test]
    fn a_cookie_without_a_readable_token_is_malformed() {
        for value in [
            "base64-!!!".to_owned(),
            format!("base64-{}", URL_SAFE_NO_PAD.encode("{\"refresh_token\": \"r\"}")),
            "not-a-token".to_owned(),
            "%ZZ".to_owned(),
            "a.b".to_owned(),
            "a.b.c d".to_owned(),
            "x".repeat(MAX_COOKIE_BYTES + 1),
        ] {
            let got = token_from_cookies(&format!("{NAME}={value}"), NAME);
            assert!(matches!(got, Some(Err(AuthError::Malformed(_)))), "{value:.40}: {got:?}");
        }
    }
}
