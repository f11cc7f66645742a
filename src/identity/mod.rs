//! Who is calling, and in which tier: an API key, an HS256 JWT, or anonymous by client IP.
//!
//! Identification runs in two steps so that the Redis part stays in the caller's hands:
//!
//! 1. [`credential_from`] reads the headers — no I/O. A credential that is present but malformed
//!    is an [`AuthError`] (`401`), never silently anonymous.
//! 2. The credential becomes an [`Identity`]:
//!    - a JWT ([`Credential::Jwt`]): [`jwt::verify`] then [`Identity::from_jwt`] (no I/O), or
//!      both at once with [`identify_jwt`];
//!    - an API key ([`Credential::ApiKey`]): [`api_key::key_hash`], then
//!      [`api_key::KeyCache::get`], else one `GET` ([`api_key::lookup_command`] →
//!      [`api_key::parse_lookup`], remembered with [`api_key::KeyCache::put`]), then
//!      [`Identity::from_key`];
//!    - nobody ([`Credential::Anonymous`]): [`Identity::anonymous`].
//!
//! Subjects never appear raw in Redis: a JWT's `sub`, the subject an API key was issued for, and a
//! caller's IP group all pass through [`crate::keys::hash_identifier`]. A key issued for a user's
//! `sub` therefore shares that user's limits with their JWT.

pub mod api_key;
pub mod client_ip;
mod error;
pub mod jwt;
mod registry;

pub use error::AuthError;
pub use registry::{KeyRegistry, RegistryError, KEY_CACHE_CAPACITY};

use crate::keys::hash_identifier;
use crate::policy::{IdentitySettings, Policy};
use api_key::KeyRecord;
use jwt::VerifiedJwt;

/// Header carrying an API key (alternative to `Authorization: Bearer <key>`).
pub const API_KEY_HEADER: &str = "X-API-Key";

/// What a request presents to prove who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A well-formed API key (`tg_<id>_<secret>`), still to be looked up.
    ApiKey(String),
    /// Something shaped like a JWT (three dot-separated parts), still to be verified.
    Jwt(String),
    /// No credential: the caller's normalized IP group ([`client_ip::ip_group`]).
    Anonymous(String),
}

/// Reads the credential from request headers; `header` looks a header up by name, ignoring case.
///
/// - `X-API-Key: <key>` wins when present, and must be a well-formed key.
/// - `Authorization: Bearer <token>`: an API key if it starts with `tg_` (and then must be
///   well-formed), else a JWT if it has three dot-separated parts, else malformed.
/// - `Authorization` with another scheme (`Basic …`) is not a Tollgate credential and is left for
///   the origin; the request is then anonymous, as it would be without the header.
/// - Nothing: anonymous, grouped by `CF-Connecting-IP`.
pub fn credential_from(
    header: impl Fn(&str) -> Option<String>,
    settings: &IdentitySettings,
) -> Result<Credential, AuthError> {
    if let Some(value) = header(API_KEY_HEADER) {
        let key = value.trim();
        if key.is_empty() {
            return Err(AuthError::Malformed("the X-API-Key header is empty"));
        }
        return api_key_credential(key);
    }
    if let Some(value) = header("Authorization") {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            if token.is_empty() {
                return Err(AuthError::Malformed("the bearer token is empty"));
            }
            if token.contains(char::is_whitespace) {
                return Err(AuthError::Malformed("the bearer token contains spaces"));
            }
            if api_key::looks_like_key(token) {
                return api_key_credential(token);
            }
            let parts: Vec<&str> = token.split('.').collect();
            if parts.len() == 3 && parts.iter().all(|p| !p.is_empty()) {
                return Ok(Credential::Jwt(token.to_owned()));
            }
            return Err(AuthError::Malformed("the bearer token is neither an API key nor a JWT"));
        }
    }
    let ip = header(client_ip::HEADER);
    Ok(Credential::Anonymous(client_ip::ip_group(ip.as_deref(), settings.ipv6_prefix)))
}

fn api_key_credential(key: &str) -> Result<Credential, AuthError> {
    match api_key::parse(key) {
        Some(_) => Ok(Credential::ApiKey(key.to_owned())),
        None => Err(AuthError::Malformed("the API key does not have the shape tg_<id>_<secret>")),
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerKind {
    /// By the API key with this id.
    ApiKey {
        /// The key's id (never the key).
        id: String,
    },
    /// By a verified JWT.
    Jwt,
    /// Not at all: counted by IP group.
    Anonymous,
}

impl CallerKind {
    /// Stable name for stats and logs: `api_key`, `jwt`, `anonymous`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallerKind::ApiKey { .. } => "api_key",
            CallerKind::Jwt => "jwt",
            CallerKind::Anonymous => "anonymous",
        }
    }
}

/// A caller as the limiter sees them: whose limits, which tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Hash of the subject; names the caller's limiter keys.
    pub subject_hash: String,
    /// A tier defined in the policy.
    pub tier: String,
    /// How the caller was identified.
    pub kind: CallerKind,
}

impl Identity {
    /// An anonymous caller from `ip_group`, in the policy's anonymous tier.
    pub fn anonymous(ip_group: &str, policy: &Policy) -> Self {
        Self {
            subject_hash: hash_identifier("ip", ip_group),
            tier: policy.anonymous_tier.clone(),
            kind: CallerKind::Anonymous,
        }
    }

    /// A JWT caller: their `sub`, and the tier their token names if the policy defines it, else
    /// the default tier.
    pub fn from_jwt(jwt: &VerifiedJwt, policy: &Policy) -> Self {
        Self {
            subject_hash: user_subject_hash(&jwt.subject),
            tier: tier_or_default(jwt.tier.as_deref(), policy),
            kind: CallerKind::Jwt,
        }
    }

    /// An API-key caller: the key's subject, and its tier if the policy (still) defines it, else
    /// the default tier.
    pub fn from_key(record: &KeyRecord, policy: &Policy) -> Self {
        Self {
            subject_hash: record.subject_hash.clone(),
            tier: tier_or_default(Some(&record.tier), policy),
            kind: CallerKind::ApiKey { id: record.id.clone() },
        }
    }
}

/// Verifies a JWT credential into an identity; without a secret configured, every JWT is refused.
pub fn identify_jwt(token: &str, secret: Option<&[u8]>, policy: &Policy, now_s: u64) -> Result<Identity, AuthError> {
    let secret = secret.filter(|s| !s.is_empty()).ok_or(AuthError::NotConfigured)?;
    let verified = jwt::verify(token, secret, &policy.identity, now_s)?;
    Ok(Identity::from_jwt(&verified, policy))
}

fn tier_or_default(named: Option<&str>, policy: &Policy) -> String {
    match named {
        Some(t) if policy.tier(t).is_some() => t.to_owned(),
        _ => policy.default_tier.clone(),
    }
}

/// The subject hash of a user id (a JWT's `sub`).
pub fn user_subject_hash(sub: &str) -> String {
    hash_identifier("user", sub)
}

/// The subject hash of a subject named by an operator (admin `POST keys`, `… limits/{subject}`):
///
/// - `ip:<address>` (or `ip:<network>/<prefix>`, or `ip:unknown`): anonymous callers from there;
/// - `hash:<64 hex>`: a subject hash as listings show it, taken as is;
/// - `user:<sub>`: the user with that `sub` (the prefix is needed only if the `sub` itself starts
///   with one of these prefixes);
/// - anything else: the user with that `sub`, exactly as written.
///
/// `None` for an empty subject, an address that is not one, or a malformed hash.
pub fn subject_hash_of(raw: &str, settings: &IdentitySettings) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    if let Some(ip) = raw.strip_prefix("ip:") {
        return client_ip::parse_group(ip, settings.ipv6_prefix).map(|group| hash_identifier("ip", &group));
    }
    if let Some(hash) = raw.strip_prefix("hash:") {
        let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        return ok.then(|| hash.to_owned());
    }
    let sub = raw.strip_prefix("user:").unwrap_or(raw);
    (!sub.is_empty()).then(|| user_subject_hash(sub))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::clock::SystemRandom;

    const SECRET: &[u8] = b"a-test-secret";
    const NOW_S: u64 = 1_700_000_000;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
        move |name: &str| map.get(&name.to_ascii_lowercase()).cloned()
    }

    fn settings() -> IdentitySettings {
        Policy::default().identity
    }

    fn cred(pairs: &[(&str, &str)]) -> Result<Credential, AuthError> {
        credential_from(headers(pairs), &settings())
    }

    fn a_key() -> String {
        api_key::generate(&SystemRandom, "s", "PRO", 0).0
    }

    #[test]
    fn no_credentials_is_anonymous_by_ip() {
        assert_eq!(cred(&[("CF-Connecting-IP", "203.0.113.7")]), Ok(Credential::Anonymous("203.0.113.7".into())));
        assert_eq!(cred(&[]), Ok(Credential::Anonymous(client_ip::UNKNOWN.into())));
    }

    #[test]
    fn x_forwarded_for_is_not_trusted() {
        assert_eq!(cred(&[("X-Forwarded-For", "198.51.100.1")]), Ok(Credential::Anonymous(client_ip::UNKNOWN.into())));
    }

    #[test]
    fn an_api_key_header_is_an_api_key() {
        let key = a_key();
        assert_eq!(cred(&[("x-api-key", &key)]), Ok(Credential::ApiKey(key.clone())));
        assert_eq!(cred(&[("X-API-Key", &key), ("Authorization", "Bearer a.b.c")]), Ok(Credential::ApiKey(key)));
    }

    #[test]
    fn a_bearer_api_key_is_an_api_key_and_a_bearer_jwt_a_jwt() {
        let key = a_key();
        assert_eq!(cred(&[("Authorization", &format!("Bearer {key}"))]), Ok(Credential::ApiKey(key)));
        assert_eq!(cred(&[("Authorization", "bearer  x.y.z ")]), Ok(Credential::Jwt("x.y.z".into())));
    }

    #[test]
    fn a_malformed_bearer_is_401_not_anonymous() {
        for value in
            ["Bearer", "Bearer ", "Bearer abc", "Bearer a.b", "Bearer a..c", "Bearer tg_short", "Bearer a.b.c d"]
        {
            let got = cred(&[("Authorization", value), ("CF-Connecting-IP", "203.0.113.7")]);
            match got {
                Err(e) => assert_eq!(e.status(), 401, "{value}"),
                Ok(c) => panic!("{value:?} gave {c:?}"),
            }
        }
    }

    #[test]
    fn a_malformed_api_key_header_is_401_not_anonymous() {
        for value in ["", "  ", "tg_0123", "some-other-key"] {
            assert!(matches!(cred(&[("X-API-Key", value)]), Err(AuthError::Malformed(_))), "{value:?}");
        }
    }

    #[test]
    fn other_authorization_schemes_are_left_for_the_origin() {
        assert_eq!(
            cred(&[("Authorization", "Basic dXNlcjpwdw=="), ("CF-Connecting-IP", "10.0.0.1")]),
            Ok(Credential::Anonymous("10.0.0.1".into()))
        );
    }

    #[test]
    fn anonymous_callers_get_the_anonymous_tier_and_an_ip_hash() {
        let policy = Policy::default();
        let id = Identity::anonymous("203.0.113.7", &policy);
        assert_eq!(id.tier, "ANON");
        assert_eq!(id.subject_hash, hash_identifier("ip", "203.0.113.7"));
        assert_eq!(id.kind.as_str(), "anonymous");
    }

    #[test]
    fn ipv6_callers_in_one_64_share_a_subject() {
        let policy = Policy::default();
        let subject = |ip: &str| match cred(&[("CF-Connecting-IP", ip)]) {
            Ok(Credential::Anonymous(group)) => Identity::anonymous(&group, &policy).subject_hash,
            other => panic!("{other:?}"),
        };
        assert_eq!(subject("2001:db8:7:8::1"), subject("2001:db8:7:8:ffff::2"));
        assert_ne!(subject("2001:db8:7:8::1"), subject("2001:db8:7:9::1"));
    }

    #[test]
    fn jwt_callers_get_their_claimed_tier_if_it_exists() {
        let policy = Policy::default();
        let pro = jwt::sign_hs256(&json!({"sub": "u1", "exp": NOW_S + 60, "app_metadata": {"tier": "pro"}}), SECRET);
        let id = identify_jwt(&pro, Some(SECRET), &policy, NOW_S).unwrap();
        assert_eq!((id.tier.as_str(), id.kind.as_str()), ("PRO", "jwt"));
        assert_eq!(id.subject_hash, hash_identifier("user", "u1"));

        let gold = jwt::sign_hs256(&json!({"sub": "u1", "exp": NOW_S + 60, "app_metadata": {"tier": "gold"}}), SECRET);
        assert_eq!(identify_jwt(&gold, Some(SECRET), &policy, NOW_S).unwrap().tier, "BASIC");
        let none = jwt::sign_hs256(&json!({"sub": "u1", "exp": NOW_S + 60}), SECRET);
        assert_eq!(identify_jwt(&none, Some(SECRET), &policy, NOW_S).unwrap().tier, "BASIC");
    }

    #[test]
    fn jwts_are_refused_when_no_secret_is_configured() {
        let t = jwt::sign_hs256(&json!({"sub": "u1", "exp": NOW_S + 60}), SECRET);
        assert_eq!(identify_jwt(&t, None, &Policy::default(), NOW_S), Err(AuthError::NotConfigured));
        assert_eq!(identify_jwt(&t, Some(b""), &Policy::default(), NOW_S), Err(AuthError::NotConfigured));
    }

    #[test]
    fn a_key_issued_for_a_user_shares_their_jwt_limits() {
        let policy = Policy::default();
        let subject_hash = subject_hash_of("u1", &policy.identity).unwrap();
        let (_, record) = api_key::generate(&SystemRandom, &subject_hash, "PRO", 0);
        let by_key = Identity::from_key(&record, &policy);
        let token = jwt::sign_hs256(&json!({"sub": "u1", "exp": NOW_S + 60}), SECRET);
        let by_jwt = identify_jwt(&token, Some(SECRET), &policy, NOW_S).unwrap();
        assert_eq!(by_key.subject_hash, by_jwt.subject_hash);
        assert_eq!(by_key.tier, "PRO");
        assert_eq!(by_key.kind, CallerKind::ApiKey { id: record.id.clone() });
        assert_eq!(by_key.kind.as_str(), "api_key");
    }

    #[test]
    fn a_key_whose_tier_left_the_policy_falls_back_to_the_default_tier() {
        let policy = Policy::default();
        let (_, record) = api_key::generate(&SystemRandom, "s", "ENTERPRISE", 0);
        assert_eq!(Identity::from_key(&record, &policy).tier, "BASIC");
    }

    #[test]
    fn operators_name_subjects_by_user_ip_or_hash() {
        let s = settings();
        assert_eq!(subject_hash_of("u1", &s), Some(hash_identifier("user", "u1")));
        assert_eq!(subject_hash_of("user:u1", &s), Some(hash_identifier("user", "u1")));
        assert_eq!(subject_hash_of("user:ip:1.2.3.4", &s), Some(hash_identifier("user", "ip:1.2.3.4")));
        assert_eq!(subject_hash_of("ip:1.2.3.4", &s), Some(hash_identifier("ip", "1.2.3.4")));
        assert_eq!(subject_hash_of("ip:2001:db8:1:2::5", &s), Some(hash_identifier("ip", "2001:db8:1:2::/64")));
        assert_eq!(subject_hash_of("ip:::ffff:1.2.3.4", &s), Some(hash_identifier("ip", "1.2.3.4")));
        assert_eq!(subject_hash_of("ip:unknown", &s), Some(hash_identifier("ip", client_ip::UNKNOWN)));
        let h = hash_identifier("user", "u1");
        assert_eq!(subject_hash_of(&format!("hash:{h}"), &s), Some(h));
        for bad in ["", "  ", "ip:", "ip:nope", "hash:abc", "user:"] {
            assert_eq!(subject_hash_of(bad, &s), None, "{bad:?}");
        }
    }

    #[test]
    fn an_anonymous_request_and_its_operator_name_agree() {
        let policy = Policy::default();
        let group = client_ip::ip_group(Some("2001:db8:1:2::77"), policy.identity.ipv6_prefix);
        assert_eq!(
            Some(Identity::anonymous(&group, &policy).subject_hash),
            subject_hash_of("ip:2001:db8:1:2::1", &policy.identity)
        );
    }
}
