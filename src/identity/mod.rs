//! Who is calling, and in which tier: an API key, a JWT (HS256 with a shared secret, or ES256,
//! RS256, EdDSA from key sets), or anonymous by client IP.
//!
//! Identification runs in two steps so that the I/O stays in the caller's hands:
//!
//! 1. [`credential_from`] reads the headers (and the token cookie, if the policy names one) —
//!    no I/O. A credential that is present but malformed is an [`AuthError`] (`401`), never
//!    silently anonymous.
//! 2. The credential becomes an [`Identity`]:
//!    - a JWT ([`Credential::Jwt`]): [`TokenVerifier::verify`] (which may fetch a key set), then
//!      [`Identity::from_token`]. A token whose `role` is one of `identity.anonymous_roles`
//!      (Supabase's anon key) is the anonymous caller, by IP;
//!    - an API key ([`Credential::ApiKey`]): [`api_key::key_hash`], then
//!      [`api_key::KeyCache::get`], else one `GET` ([`api_key::lookup_command`] →
//!      [`api_key::parse_lookup`], remembered with [`api_key::KeyCache::put`]), then
//!      [`Identity::from_key`];
//!    - nobody ([`Credential::Anonymous`]): [`Identity::anonymous`].
//!
//! Subjects never appear raw in Redis: a JWT's subject, the subject an API key was issued for,
//! and a caller's IP group all pass through the deployment's [`IdentifierHasher`] (keyed by
//! `TOLLGATE_HASH_SECRET`). A key issued for a user's `sub` therefore shares that user's limits
//! with their JWT. What identifies a caller to Tollgate is removed before the origin sees the
//! request by the same parser that read it ([`is_tollgate_credential`]); JWTs and Supabase's
//! `apikey` header pass through untouched.

pub mod api_key;
pub mod client_ip;
pub mod cookie;
mod error;
pub mod jwk;
pub mod jwks;
pub mod jwt;
mod registry;
pub mod verify;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::AuthError;
pub use registry::{KeyRegistry, RegistryError, KEY_CACHE_CAPACITY};

use crate::keys::IdentifierHasher;
use crate::policy::{IdentitySettings, Policy};
use api_key::KeyRecord;
use jwks::KeySets;
use jwt::{Alg, Token, TokenCaller};

/// Header carrying an API key (alternative to `Authorization: Bearer <key>`).
pub const API_KEY_HEADER: &str = "X-API-Key";

/// Prefix of Supabase's publishable keys: public, they name a project, not a caller.
pub const SUPABASE_PUBLISHABLE_PREFIX: &str = "sb_publishable_";

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

/// The token of an `Authorization` value whose scheme is `Bearer` (any case); `Some("")` for a
/// bearer without one, `None` for another scheme.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Reads the credential from request headers; `header` looks a header up by name, ignoring case.
///
/// - `X-API-Key: <key>` wins when present, and must be a well-formed key.
/// - `Authorization: Bearer <token>` (the scheme in any case): an API key if it starts with `tg_`
///   (and then must be well-formed), a Supabase publishable key (`sb_publishable_…`, public:
///   anonymous), else a JWT if it has three dot-separated parts, else malformed.
/// - `Authorization` with another scheme (`Basic …`) is not a Tollgate credential and is left for
///   the origin; the request is then anonymous, as it would be without the header.
/// - No `Authorization` header and `identity.token_cookie` set: the token in that cookie, if the
///   request carries it ([`cookie::token_from_cookies`]).
/// - Nothing: anonymous, grouped by `CF-Connecting-IP`. Supabase's `apikey` header is never read.
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
    let anonymous = || {
        let ip = header(client_ip::HEADER);
        Credential::Anonymous(client_ip::ip_group(ip.as_deref(), settings.ipv6_prefix))
    };
    match header("Authorization") {
        Some(value) => {
            let Some(token) = bearer_token(&value) else { return Ok(anonymous()) };
            if token.is_empty() {
                return Err(AuthError::Malformed("the bearer token is empty"));
            }
            if token.contains(char::is_whitespace) {
                return Err(AuthError::Malformed("the bearer token contains spaces"));
            }
            if api_key::looks_like_key(token) {
                return api_key_credential(token);
            }
            if token.starts_with(SUPABASE_PUBLISHABLE_PREFIX) {
                return Ok(anonymous());
            }
            let parts: Vec<&str> = token.split('.').collect();
            if parts.len() == 3 && parts.iter().all(|p| !p.is_empty()) {
                return Ok(Credential::Jwt(token.to_owned()));
            }
            Err(AuthError::Malformed("the bearer token is neither an API key nor a JWT"))
        }
        None => {
            let from_cookie = settings
                .token_cookie
                .as_deref()
                .and_then(|name| header("Cookie").and_then(|c| cookie::token_from_cookies(&c, name)));
            match from_cookie {
                Some(token) => Ok(Credential::Jwt(token?)),
                None => Ok(anonymous()),
            }
        }
    }
}

/// Whether a request header is a Tollgate credential, which the origin must never see:
/// `X-API-Key`, and an `Authorization` whose bearer token is an API key, read with the parser
/// [`credential_from`] uses (so `BEARER tg_…` is as much a key here as there). JWTs, other
/// schemes, cookies and Supabase's `apikey` header are the origin's to read.
pub fn is_tollgate_credential(name: &str, value: &str) -> bool {
    if name.eq_ignore_ascii_case(API_KEY_HEADER) {
        return true;
    }
    name.eq_ignore_ascii_case("authorization") && bearer_token(value).is_some_and(api_key::looks_like_key)
}

fn api_key_credential(key: &str) -> Result<Credential, AuthError> {
    match api_key::parse(key) {
        Some(_) => Ok(Credential::ApiKey(key.to_owned())),
        None => Err(AuthError::Malformed("the API key does not have the shape tg_<id>_<secret>")),
    }
}

/// Checks JWTs: HS256 with `TOLLGATE_JWT_SECRET`, ES256/RS256/EdDSA with the key sets of
/// `TOLLGATE_JWKS_URL`. The token's `alg` picks which of the two, never the key: each refuses
/// every algorithm but its own.
pub struct TokenVerifier {
    secret: Option<Vec<u8>>,
    key_sets: Option<KeySets>,
}

impl TokenVerifier {
    /// A verifier with the shared secret (empty = none) and the key sets, when configured.
    pub fn new(secret: Option<&str>, key_sets: Option<KeySets>) -> Self {
        let secret = secret.filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec());
        Self { secret, key_sets }
    }

    /// The key sets, when configured.
    pub fn key_sets(&self) -> Option<&KeySets> {
        self.key_sets.as_ref()
    }

    /// Verifies `token` at `now_ms`: signature, then the claims of `settings`.
    pub async fn verify(
        &self,
        token: &str,
        settings: &IdentitySettings,
        now_ms: u64,
    ) -> Result<TokenCaller, AuthError> {
        let token = Token::parse(token)?;
        match token.alg {
            Alg::Hs256 => jwt::verify_hs256(&token, self.secret.as_deref().ok_or(AuthError::NotConfigured)?)?,
            _ => self.key_sets.as_ref().ok_or(AuthError::NotConfigured)?.verify(&token, now_ms).await?,
        }
        jwt::check_claims(&token, settings, now_ms / 1000)
    }
}

/// Everything an isolate identifies callers with: how subjects are hashed, and how tokens are
/// checked. One per gate.
pub struct Identifier {
    hasher: IdentifierHasher,
    tokens: TokenVerifier,
}

impl Identifier {
    /// Hashing keyed by `hash_secret` (when set) and tokens checked with `jwt_secret` and
    /// `key_sets` (when configured).
    pub fn new(hash_secret: Option<&str>, jwt_secret: Option<&str>, key_sets: Option<KeySets>) -> Self {
        Self {
            hasher: IdentifierHasher::new(hash_secret.map(str::as_bytes)),
            tokens: TokenVerifier::new(jwt_secret, key_sets),
        }
    }

    /// The same identifier with `key_sets` checking asymmetric tokens.
    pub fn with_key_sets(self, key_sets: KeySets) -> Self {
        Self { tokens: TokenVerifier { key_sets: Some(key_sets), ..self.tokens }, ..self }
    }

    /// How subjects are hashed.
    pub fn hasher(&self) -> &IdentifierHasher {
        &self.hasher
    }

    /// The key sets, when configured.
    pub fn key_sets(&self) -> Option<&KeySets> {
        self.tokens.key_sets()
    }

    /// The anonymous caller from `ip_group`.
    pub fn anonymous(&self, ip_group: &str, policy: &Policy) -> Identity {
        Identity::anonymous(ip_group, policy, &self.hasher)
    }

    /// The caller a JWT stands for at `now_ms`; `ip_group` is theirs should the token carry an
    /// anonymous role.
    pub async fn identify_token(
        &self,
        token: &str,
        ip_group: &str,
        policy: &Policy,
        now_ms: u64,
    ) -> Result<Identity, AuthError> {
        let caller = self.tokens.verify(token, &policy.identity, now_ms).await?;
        Ok(Identity::from_token(&caller, ip_group, policy, &self.hasher))
    }

    /// [`subject_hash_of`] with this deployment's hashing.
    pub fn subject_hash_of(&self, raw: &str, settings: &IdentitySettings) -> Option<String> {
        subject_hash_of(raw, settings, &self.hasher)
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
    pub fn anonymous(ip_group: &str, policy: &Policy, hasher: &IdentifierHasher) -> Self {
        Self {
            subject_hash: hasher.hash("ip", ip_group),
            tier: policy.anonymous_tier.clone(),
            kind: CallerKind::Anonymous,
        }
    }

    /// A JWT caller: their subject, and the tier their token names if the policy defines it,
    /// else the default tier.
    pub fn from_jwt(jwt: &jwt::VerifiedJwt, policy: &Policy, hasher: &IdentifierHasher) -> Self {
        Self {
            subject_hash: user_subject_hash(&jwt.subject, hasher),
            tier: tier_or_default(jwt.tier.as_deref(), policy),
            kind: CallerKind::Jwt,
        }
    }

    /// The caller a verified token stands for: its user, or for an anonymous role the
    /// anonymous caller from `ip_group`.
    pub fn from_token(caller: &TokenCaller, ip_group: &str, policy: &Policy, hasher: &IdentifierHasher) -> Self {
        match caller {
            TokenCaller::User(jwt) => Self::from_jwt(jwt, policy, hasher),
            TokenCaller::Anonymous => Self::anonymous(ip_group, policy, hasher),
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

fn tier_or_default(named: Option<&str>, policy: &Policy) -> String {
    match named {
        Some(t) if policy.tier(t).is_some() => t.to_owned(),
        _ => policy.default_tier.clone(),
    }
}

/// The subject hash of a user id (a JWT's subject).
pub fn user_subject_hash(sub: &str, hasher: &IdentifierHasher) -> String {
    hasher.hash("user", sub)
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
pub fn subject_hash_of(raw: &str, settings: &IdentitySettings, hasher: &IdentifierHasher) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    if let Some(ip) = raw.strip_prefix("ip:") {
        return client_ip::parse_group(ip, settings.ipv6_prefix).map(|group| hasher.hash("ip", &group));
    }
    if let Some(hash) = raw.strip_prefix("hash:") {
        let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        return ok.then(|| hash.to_owned());
    }
    let sub = raw.strip_prefix("user:").unwrap_or(raw);
    (!sub.is_empty()).then(|| user_subject_hash(sub, hasher))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::clock::SystemRandom;
    use crate::keys::hash_identifier;

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

    fn plain() -> IdentifierHasher {
        IdentifierHasher::plain()
    }

    /// Verifies an HS256 token (no I/O: the future is ready at its first poll).
    fn identify_jwt(token: &str, secret: Option<&[u8]>, policy: &Policy, now_s: u64) -> Result<Identity, AuthError> {
        let secret = secret.map(|s| String::from_utf8_lossy(s).into_owned());
        let verifier = TokenVerifier::new(secret.as_deref(), None);
        let fut = verifier.verify(token, &policy.identity, now_s * 1000);
        use std::future::Future;
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => {
                r.map(|caller| Identity::from_token(&caller, "198.51.100.1", policy, &plain()))
            }
            std::task::Poll::Pending => panic!("an HS256 check does no I/O"),
        }
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
        let id = Identity::anonymous("203.0.113.7", &policy, &plain());
        assert_eq!(id.tier, "ANON");
        assert_eq!(id.subject_hash, hash_identifier("ip", "203.0.113.7"));
        assert_eq!(id.kind.as_str(), "anonymous");
    }

    #[test]
    fn ipv6_callers_in_one_64_share_a_subject() {
        let policy = Policy::default();
        let subject = |ip: &str| match cred(&[("CF-Connecting-IP", ip)]) {
            Ok(Credential::Anonymous(group)) => Identity::anonymous(&group, &policy, &plain()).subject_hash,
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
        let subject_hash = subject_hash_of("u1", &policy.identity, &plain()).unwrap();
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
        assert_eq!(subject_hash_of("u1", &s, &plain()), Some(hash_identifier("user", "u1")));
        assert_eq!(subject_hash_of("user:u1", &s, &plain()), Some(hash_identifier("user", "u1")));
        assert_eq!(subject_hash_of("user:ip:1.2.3.4", &s, &plain()), Some(hash_identifier("user", "ip:1.2.3.4")));
        assert_eq!(subject_hash_of("ip:1.2.3.4", &s, &plain()), Some(hash_identifier("ip", "1.2.3.4")));
        assert_eq!(
            subject_hash_of("ip:2001:db8:1:2::5", &s, &plain()),
            Some(hash_identifier("ip", "2001:db8:1:2::/64"))
        );
        assert_eq!(subject_hash_of("ip:::ffff:1.2.3.4", &s, &plain()), Some(hash_identifier("ip", "1.2.3.4")));
        assert_eq!(subject_hash_of("ip:unknown", &s, &plain()), Some(hash_identifier("ip", client_ip::UNKNOWN)));
        let h = hash_identifier("user", "u1");
        assert_eq!(subject_hash_of(&format!("hash:{h}"), &s, &plain()), Some(h));
        for bad in ["", "  ", "ip:", "ip:nope", "hash:abc", "user:"] {
            assert_eq!(subject_hash_of(bad, &s, &plain()), None, "{bad:?}");
        }
    }

    #[test]
    fn an_anonymous_request_and_its_operator_name_agree() {
        let policy = Policy::default();
        let group = client_ip::ip_group(Some("2001:db8:1:2::77"), policy.identity.ipv6_prefix);
        assert_eq!(
            Some(Identity::anonymous(&group, &policy, &plain()).subject_hash),
            subject_hash_of("ip:2001:db8:1:2::1", &policy.identity, &plain())
        );
    }

    #[test]
    fn the_scheme_is_read_in_any_case_and_the_same_parser_strips_keys() {
        let key = a_key();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            for sep in [" ", "  ", "\t"] {
                let value = format!("{scheme}{sep}{key}");
                assert_eq!(cred(&[("Authorization", &value)]), Ok(Credential::ApiKey(key.clone())), "{value:?}");
                assert!(is_tollgate_credential("Authorization", &value), "{value:?}");
                assert!(is_tollgate_credential("authorization", &format!(" {value} ")), "{value:?}");
            }
        }
        assert!(is_tollgate_credential("X-API-Key", "anything"));
        assert!(is_tollgate_credential("x-api-key", ""));
        for (name, value) in [
            ("Authorization", "Bearer a.b.c"),
            ("Authorization", "Basic dGdfeDp5"),
            ("Authorization", "tg_abc"),
            ("apikey", &key),
            ("Cookie", "sb-x-auth-token=a.b.c"),
        ] {
            assert!(!is_tollgate_credential(name, value), "{name}: {value}");
        }
    }

    #[test]
    fn supabase_apikey_headers_and_publishable_keys_are_not_caller_credentials() {
        let got = cred(&[("apikey", "sb_publishable_abc123"), ("CF-Connecting-IP", "10.0.0.9")]);
        assert_eq!(got, Ok(Credential::Anonymous("10.0.0.9".into())));
        let got = cred(&[("Authorization", "Bearer sb_publishable_abc123"), ("CF-Connecting-IP", "10.0.0.9")]);
        assert_eq!(got, Ok(Credential::Anonymous("10.0.0.9".into())));
        let got = cred(&[("apikey", "x.y.z"), ("Authorization", "Bearer a.b.c")]);
        assert_eq!(got, Ok(Credential::Jwt("a.b.c".into())));
    }

    #[test]
    fn the_token_cookie_is_read_only_without_an_authorization_header() {
        let mut s = settings();
        s.token_cookie = Some("sb-ref-auth-token".into());
        let with = |pairs: &[(&str, &str)]| credential_from(headers(pairs), &s);
        assert_eq!(with(&[("Cookie", "a=1; sb-ref-auth-token=h.p.s")]), Ok(Credential::Jwt("h.p.s".into())));
        assert_eq!(
            with(&[("Cookie", "sb-ref-auth-token=h.p.s"), ("Authorization", "Bearer x.y.z")]),
            Ok(Credential::Jwt("x.y.z".into()))
        );
        assert_eq!(
            with(&[
                ("Cookie", "sb-ref-auth-token=h.p.s"),
                ("Authorization", "Basic dTpw"),
                ("CF-Connecting-IP", "10.0.0.1")
            ]),
            Ok(Credential::Anonymous("10.0.0.1".into()))
        );
        assert_eq!(
            with(&[("Cookie", "other=h.p.s"), ("CF-Connecting-IP", "10.0.0.1")]),
            Ok(Credential::Anonymous("10.0.0.1".into()))
        );
        assert!(matches!(with(&[("Cookie", "sb-ref-auth-token=garbage")]), Err(AuthError::Malformed(_))));
        // Not configured: cookies are the origin's business.
        assert_eq!(
            cred(&[("Cookie", "sb-ref-auth-token=h.p.s")]),
            Ok(Credential::Anonymous(client_ip::UNKNOWN.into()))
        );
    }

    #[test]
    fn a_supabase_anon_key_is_the_anonymous_caller_by_ip() {
        let policy = Policy::default();
        let anon = jwt::sign_hs256(&json!({"iss": "supabase", "role": "anon", "exp": NOW_S + 60}), SECRET);
        let id = identify_jwt(&anon, Some(SECRET), &policy, NOW_S).unwrap();
        assert_eq!(id, Identity::anonymous("198.51.100.1", &policy, &plain()));
        assert_eq!((id.tier.as_str(), id.kind.as_str()), ("ANON", "anonymous"));
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn asymmetric_tokens_without_key_sets_are_not_configured() {
        let key = verify::native::TestKey::es256("k");
        let t = key.sign(&json!({"sub": "u1", "exp": NOW_S + 60}));
        assert_eq!(identify_jwt(&t, Some(SECRET), &Policy::default(), NOW_S), Err(AuthError::NotConfigured));
    }

    #[test]
    fn a_hash_secret_changes_every_subject_hash() {
        let policy = Policy::default();
        let keyed = IdentifierHasher::new(Some(b"s3cret"));
        let ip = Identity::anonymous("203.0.113.7", &policy, &keyed).subject_hash;
        assert_eq!(ip, keyed.hash("ip", "203.0.113.7"));
        assert_ne!(ip, hash_identifier("ip", "203.0.113.7"));
        assert_eq!(subject_hash_of("ip:203.0.113.7", &policy.identity, &keyed), Some(ip));
        assert_eq!(subject_hash_of("u1", &policy.identity, &keyed), Some(keyed.hash("user", "u1")));
    }
}
