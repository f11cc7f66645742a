//! The signed identity header: with `TOLLGATE_ORIGIN_SECRET` set, every request Tollgate sends
//! to the origin carries `X-Tollgate-Signature`, so an origin that can be reached other than
//! through the Worker can still tell Tollgate's identity headers from forged ones.
//!
//! `X-Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the HMAC, keyed with the
//! secret's bytes, covers these lines joined by `\n`:
//!
//! ```text
//! tollgate-v1
//! <t>
//! <method>
//! <path and query as sent to the origin>
//! <x-tollgate-subject>   (empty when absent)
//! <x-tollgate-tier>      (empty when absent)
//! <x-tollgate-caller>
//! ```
//!
//! The origin verifies by recomputing the HMAC over the same lines from the request it received,
//! comparing in constant time, and refusing a `t` more than a few minutes from its own clock
//! (replays of an old request stop there; method and path bind the signature to one resource).
//! [`verify`] is that check, and is what the tests and the demo origin use.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The header's name.
pub const HEADER: &str = "x-tollgate-signature";

/// The environment variable holding the shared secret.
pub const SECRET_VAR: &str = "TOLLGATE_ORIGIN_SECRET";

/// The identity headers the signature covers, in order.
pub const SIGNED_HEADERS: [&str; 3] = ["x-tollgate-subject", "x-tollgate-tier", "x-tollgate-caller"];

/// Why a signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// No `X-Tollgate-Signature` header.
    #[error("no signature")]
    Missing,
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// `t` is further from now than the allowed skew.
    #[error("signature timestamp outside the allowed window")]
    Expired,
    /// The HMAC does not match.
    #[error("signature mismatch")]
    Mismatch,
}

fn mac(secret: &[u8], t: u64, method: &str, path_and_query: &str, headers: &[(String, String)]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(b"tollgate-v1\n");
    mac.update(t.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path_and_query.as_bytes());
    for name in SIGNED_HEADERS {
        mac.update(b"\n");
        let value = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str());
        mac.update(value.as_bytes());
    }
    Some(mac)
}

/// The `X-Tollgate-Signature` value for a request to the origin at `now_s` (Unix seconds).
pub fn sign(secret: &[u8], now_s: u64, method: &str, path_and_query: &str, headers: &[(String, String)]) -> String {
    let digest = mac(secret, now_s, method, path_and_query, headers).map(|m| hex::encode(m.finalize().into_bytes()));
    format!("t={now_s},v1={}", digest.unwrap_or_default())
}

/// Adds the signature header to `headers` (the ones sent to the origin, identity included).
pub fn add(secret: &[u8], now_s: u64, method: &str, path_and_query: &str, headers: &mut Vec<(String, String)>) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(HEADER));
    let value = sign(secret, now_s, method, path_and_query, headers);
    headers.push((HEADER.to_owned(), value));
}

/// Checks a request the origin received: the signature header against `secret`, and its time
/// within `max_skew_s` of `now_s`.
pub fn verify(
    secret: &[u8],
    now_s: u64,
    max_skew_s: u64,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
) -> Result<(), SignatureError> {
    let value = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(HEADER))
        .map(|(_, v)| v.as_str())
        .ok_or(SignatureError::Missing)?;
    let (t, digest) = parse(value).ok_or(SignatureError::Malformed)?;
    if t.abs_diff(now_s) > max_skew_s {
        return Err(SignatureError::Expired);
    }
    let mac = mac(secret, t, method, path_and_query, headers).ok_or(SignatureError::Mismatch)?;
    mac.verify_slice(&digest).map_err(|_| SignatureError::Mismatch)
}

/// `t=<seconds>,v1=<hex>` → (seconds, digest bytes).
fn parse(value: &str) -> Option<(u64, Vec<u8>)> {
    let (t, v1) = value.trim().split_once(',')?;
    let t = t.trim().strip_prefix("t=")?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digest = hex::decode(v1.trim().strip_prefix("v1=")?).ok()?;
    (digest.len() == 32).then_some(())?;
    Some((t.parse().ok()?, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"origin-secret";
    const NOW: u64 = 1_800_000_000;

    fn identity() -> Vec<(String, String)> {
        [("accept", "*/*"), ("x-tollgate-subject", "abc"), ("x-tollgate-tier", "PRO"), ("x-tollgate-caller", "jwt")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn signed() -> Vec<(String, String)> {
        let mut h = identity();
        add(SECRET, NOW, "GET", "/api/me?x=1", &mut h);
        h
    }

    #[test]
    fn the_origin_accepts_what_tollgate_signed() {
        let h = signed();
        assert_eq!(verify(SECRET, NOW, 300, "GET", "/api/me?x=1", &h), Ok(()));
        assert_eq!(verify(SECRET, NOW + 299, 300, "GET", "/api/me?x=1", &h), Ok(()));
        let value = &h.iter().find(|(n, _)| n == HEADER).unwrap().1;
        assert!(value.starts_with("t=1800000000,v1=") && value.len() == "t=1800000000,v1=".len() + 64);
    }

    #[test]
    fn forged_replayed_or_moved_requests_are_refused() {
        let h = signed();
        let with = |name: &str, value: &str| {
            let mut h = h.clone();
            h.retain(|(n, _)| n != name);
            h.push((name.to_owned(), value.to_owned()));
            h
        };
        assert_eq!(
            verify(SECRET, NOW, 300, "GET", "/api/me?x=1", &with("x-tollgate-tier", "ENTERPRISE")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, NOW, 300, "GET", "/api/me?x=1", &with("x-tollgate-subject", "other")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(SECRET, NOW, 300, "DELETE", "/api/me?x=1", &h), Err(SignatureError::Mismatch));
        assert_eq!(verify(SECRET, NOW, 300, "GET", "/api/admin", &h), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other-secret", NOW, 300, "GET", "/api/me?x=1", &h), Err(SignatureError::Mismatch));
        assert_eq!(verify(SECRET, NOW + 301, 300, "GET", "/api/me?x=1", &h), Err(SignatureError::Expired));
        assert_eq!(verify(SECRET, NOW, 300, "GET", "/api/me?x=1", &identity()), Err(SignatureError::Missing));
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "t=1,v1=00", "t=-1,v1=00"] {
            assert_eq!(
                verify(SECRET, NOW, 300, "GET", "/", &with(HEADER, bad)),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_client_sent_signature_is_replaced() {
        let mut h = identity();
        h.push(("X-Tollgate-Signature".into(), "t=1,v1=forged".into()));
        add(SECRET, NOW, "GET", "/", &mut h);
        assert_eq!(h.iter().filter(|(n, _)| n.eq_ignore_ascii_case(HEADER)).count(), 1);
        assert_eq!(verify(SECRET, NOW, 300, "GET", "/", &h), Ok(()));
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn never_panics_and_never_accepts_garbage(value in "\\PC{0,120}", method in "[A-Z]{1,7}") {
                let mut h = identity();
                h.push((HEADER.to_owned(), value));
                prop_assert!(verify(SECRET, NOW, 300, &method, "/", &h).is_err());
            }
        }
    }
}
