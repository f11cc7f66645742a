//! JSON Web Tokens: split and read without trusting anything, the signature checked (HS256 here
//! with the shared secret; ES256, RS256 and EdDSA against a key set, see [`super::jwks`]), and only
//! then the claims believed: `exp` required, `nbf`, the anonymous roles, `iss`, `aud`, the subject
//! and the tier, each read from the policy's settings.
//!
//! The algorithm named in the header picks how a token is checked, never with what: HS256 only
//! with `TOLLGATE_JWT_SECRET`, the others only with a key of their own type from a key set. `none`
//! and every other name are refused, so a token cannot choose a weaker check (no algorithm
//! confusion). Time is an input (`now_s`), never read here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::AuthError;
use crate::policy::IdentitySettings;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in bytes; longer ones are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Longest `kid` accepted, in bytes.
pub const MAX_KID_LEN: usize = 256;

/// A signature algorithm Tollgate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC-SHA256 with `TOLLGATE_JWT_SECRET` (Supabase's legacy secret).
    Hs256,
    /// ECDSA P-256 with SHA-256, from a key set.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, from a key set.
    Rs256,
    /// Ed25519, from a key set.
    EdDsa,
}

impl Alg {
    /// The algorithm a JWS header names (case-sensitive, RFC 7518); `None` for any other.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Alg::Hs256),
            "ES256" => Some(Alg::Es256),
            "RS256" => Some(Alg::Rs256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    /// The JWS name (`ES256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// A token split into its parts with its header read: nothing in it is trusted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'t> {
    /// The algorithm its header names.
    pub alg: Alg,
    /// The `kid` its header names, if any.
    pub kid: Option<String>,
    signing_input: &'t str,
    payload_b64: &'t str,
    signature: Vec<u8>,
}

impl<'t> Token<'t> {
    /// Splits `token` and reads its header; a token that is not a JWS Tollgate can check is an
    /// error here, before any key is looked at.
    pub fn parse(token: &'t str) -> Result<Self, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("the token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("a JWT has three dot-separated parts"));
        };
        let header = decode_object(header_b64, "the JWT header is not base64url-encoded JSON")?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => {
                Alg::from_name(name).ok_or_else(|| AuthError::UnsupportedAlg(sanitize(name)))?
            }
            _ => return Err(AuthError::UnsupportedAlg("missing".to_owned())),
        };
        // RFC 7515 §4.1.11: extensions marked critical that we do not understand must be refused.
        if header.contains_key("crit") {
            return Err(AuthError::Malformed("the JWT header has critical extensions"));
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => Some(kid.clone()),
            Some(_) => return Err(AuthError::Malformed("the JWT key id (kid) is not a short string")),
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::Malformed("the JWT signature is not base64url"))?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Self { alg, kid, signing_input, payload_b64, signature })
    }

    /// The bytes the signature covers: `header.payload` as sent.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// The decoded signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The claims; only to be read once the signature has been checked.
    fn claims(&self) -> Result<Map<String, Value>, AuthError> {
        decode_object(self.payload_b64, "the JWT payload is not base64url-encoded JSON")
    }
}

/// Checks an HS256 token's signature with `secret`, in constant time.
pub fn verify_hs256(token: &Token<'_>, secret: &[u8]) -> Result<(), AuthError> {
    if token.alg != Alg::Hs256 {
        return Err(AuthError::UnsupportedAlg(token.alg.as_str().to_owned()));
    }
    if secret.is_empty() {
        return Err(AuthError::NotConfigured);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| AuthError::NotConfigured)?;
    mac.update(token.signing_input());
    mac.verify_slice(token.signature()).map_err(|_| AuthError::BadSignature)
}

/// What a valid token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJwt {
    /// The subject claim, raw (hash it before it goes anywhere).
    pub subject: String,
    /// The tier claim, upper-cased; `None` when the token names none.
    pub tier: Option<String>,
    /// The `exp` claim, Unix seconds.
    pub expires_at_s: u64,
}

/// Who a token with a valid signature and valid claims stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCaller {
    /// A user: their subject and tier.
    User(VerifiedJwt),
    /// Nobody in particular: the token's `role` is one of `identity.anonymous_roles` (Supabase's
    /// anon key). It grants nothing beyond anonymity, so no issuer, audience or subject is asked.
    Anonymous,
}

/// Reads the claims of a token whose signature has been checked, at `now_s` (Unix seconds).
///
/// In order: `exp` (required) and `nbf` within the leeway; an anonymous `role` ends it there;
/// else `iss` among `identity.issuers` and `aud` meeting `identity.audiences` (each when the list
/// is not empty), a non-empty string at `identity.subject_claim`, and the tier.
pub fn check_claims(token: &Token<'_>, settings: &IdentitySettings, now_s: u64) -> Result<TokenCaller, AuthError> {
    let claims = token.claims()?;
    let leeway = u64::from(settings.jwt_leeway_s);
    let expires_at_s = numeric_date(&claims, "exp")?.ok_or(AuthError::MissingExpiry)?;
    if now_s >= expires_at_s.saturating_add(leeway) {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if now_s.saturating_add(leeway) < nbf {
            return Err(AuthError::NotYetValid);
        }
    }
    if let Some(Value::String(role)) = claims.get("role") {
        if settings.anonymous_roles.iter().any(|r| r == role) {
            return Ok(TokenCaller::Anonymous);
        }
    }
    if !settings.issuers.is_empty() {
        let ok = matches!(claims.get("iss"), Some(Value::String(iss)) if settings.issuers.contains(iss));
        if !ok {
            return Err(AuthError::WrongIssuer);
        }
    }
    if !settings.audiences.is_empty() {
        let listed = |a: &Value| a.as_str().is_some_and(|a| settings.audiences.iter().any(|x| x == a));
        let ok = match claims.get("aud") {
            Some(aud @ Value::String(_)) => listed(aud),
            Some(Value::Array(auds)) => auds.iter().any(listed),
            _ => false,
        };
        if !ok {
            return Err(AuthError::WrongAudience);
        }
    }
    let subject = match claim_at(&claims, &settings.subject_claim) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(AuthError::MissingSubject),
    };
    let tier = claim_at(&claims, &settings.tier_claim)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_uppercase);
    Ok(TokenCaller::User(VerifiedJwt { subject, tier, expires_at_s }))
}

/// Verifies an HS256 `token` with `secret` at `now_s` (Unix seconds): signature, then claims.
/// Tokens of any other algorithm are refused here (they are checked against key sets).
pub fn verify(token: &str, secret: &[u8], settings: &IdentitySettings, now_s: u64) -> Result<TokenCaller, AuthError> {
    let token = Token::parse(token)?;
    verify_hs256(&token, secret)?;
    check_claims(&token, settings, now_s)
}

/// Signs `claims` as an HS256 JWT; for tests, the CLI and local tooling (the Worker only verifies).
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let signature = match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{signing_input}.{signature}")
}

/// Decodes one base64url part into a JSON object.
fn decode_object(part: &str, reason: &'static str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::Malformed(reason))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::Malformed(reason)),
    }
}

/// A NumericDate claim (seconds, possibly fractional) rounded down; `None` when absent.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    if let Some(n) = value.as_u64() {
        return Ok(Some(n));
    }
    match value.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
        _ => Err(AuthError::Malformed("a JWT time claim (exp, nbf) is not a non-negative number")),
    }
}

/// The value at a claim path (`["app_metadata", "tier"]`).
fn claim_at<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(claims.get(first)?, |value, key| value.as_object()?.get(key))
}

/// An algorithm name fit to echo back: at most 16 ASCII alphanumerics.
fn sanitize(alg: &str) -> String {
    let clean: String = alg.chars().filter(char::is_ascii_alphanumeric).take(16).collect();
    if clean.is_empty() {
        "unnamed".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::defaults;

    const SECRET: &[u8] = b"super-secret-jwt-token-with-at-least-32-characters-long";
    const NOW: u64 = 1_700_000_000;

    fn settings() -> IdentitySettings {
        defaults::policy().identity
    }

    fn user(verified: Result<TokenCaller, AuthError>) -> VerifiedJwt {
        match verified {
            Ok(TokenCaller::User(v)) => v,
            other => panic!("expected a user, got {other:?}"),
        }
    }

    fn token(claims: Value) -> String {
        sign_hs256(&claims, SECRET)
    }

    /// A token with a hand-made header and the right signature over it.
    fn token_with_header(header: &str, claims: Value) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn supabase_claims() -> Value {
        json!({
            "aud": "authenticated", "exp": NOW + 3600, "iat": NOW, "sub": "8f2c3a52-1e55-4c1b-9f6b-3c8d1c9c0a11",
            "role": "authenticated", "app_metadata": {"provider": "email", "tier": "pro"}
        })
    }

    #[test]
    fn accepts_a_supabase_style_token_and_reads_its_tier() {
        let v = user(verify(&token(supabase_claims()), SECRET, &settings(), NOW));
        assert_eq!(v.subject, "8f2c3a52-1e55-4c1b-9f6b-3c8d1c9c0a11");
        assert_eq!(v.tier.as_deref(), Some("PRO"));
        assert_eq!(v.expires_at_s, NOW + 3600);
    }

    #[test]
    fn a_token_without_the_tier_claim_has_no_tier() {
        let v = user(verify(&token(json!({"sub": "u1", "exp": NOW + 60})), SECRET, &settings(), NOW));
        assert_eq!(v.tier, None);
        let v = user(verify(
            &token(json!({"sub": "u1", "exp": NOW + 60, "app_metadata": {"tier": 3}})),
            SECRET,
            &settings(),
            NOW,
        ));
        assert_eq!(v.tier, None);
    }

    #[test]
    fn the_tier_claim_path_is_configurable() {
        let mut s = settings();
        s.tier_claim = vec!["plan".to_owned()];
        let v = user(verify(&token(json!({"sub": "u1", "exp": NOW + 60, "plan": " basic "})), SECRET, &s, NOW));
        assert_eq!(v.tier.as_deref(), Some("BASIC"));
    }

    #[test]
    fn rejects_a_token_signed_with_another_secret() {
        let forged = sign_hs256(&supabase_claims(), b"another-secret");
        assert_eq!(verify(&forged, SECRET, &settings(), NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn rejects_a_token_whose_payload_was_changed() {
        let t = token(json!({"sub": "u1", "exp": NOW + 60, "app_metadata": {"tier": "basic"}}));
        let parts: Vec<&str> = t.split('.').collect();
        let tampered_payload =
            URL_SAFE_NO_PAD.encode(json!({"sub": "u1", "exp": NOW + 60, "app_metadata": {"tier": "pro"}}).to_string());
        let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);
        assert_eq!(verify(&tampered, SECRET, &settings(), NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn rejects_alg_none() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(json!({"sub": "u1", "exp": NOW + 60}).to_string());
        for t in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            let got = verify(&t, SECRET, &settings(), NOW);
            assert!(matches!(got, Err(AuthError::UnsupportedAlg(_)) | Err(AuthError::Malformed(_))), "{got:?}");
        }
        assert_eq!(
            verify(&format!("{header}.{payload}."), SECRET, &settings(), NOW),
            Err(AuthError::UnsupportedAlg("none".into()))
        );
    }

    #[test]
    fn rejects_other_algorithms_even_when_the_hmac_would_match() {
        let claims = json!({"sub": "u1", "exp": NOW + 60});
        for (header, alg) in [
            (r#"{"alg":"HS512","typ":"JWT"}"#, "HS512"),
            (r#"{"alg":"RS256"}"#, "RS256"),
            (r#"{"alg":"hs256"}"#, "hs256"),
            (r#"{"typ":"JWT"}"#, "missing"),
            (r#"{"alg":5}"#, "missing"),
        ] {
            let t = token_with_header(header, claims.clone());
            assert_eq!(verify(&t, SECRET, &settings(), NOW), Err(AuthError::UnsupportedAlg(alg.into())), "{header}");
        }
    }

    #[test]
    fn rejects_critical_header_extensions() {
        let t = token_with_header(r#"{"alg":"HS256","crit":["exp"]}"#, json!({"sub": "u1", "exp": NOW + 60}));
        assert!(matches!(verify(&t, SECRET, &settings(), NOW), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn expired_token_within_leeway_is_accepted() {
        let t = token(json!({"sub": "u1", "exp": NOW - 29}));
        assert!(verify(&t, SECRET, &settings(), NOW).is_ok());
    }

    #[test]
    fn expired_token_beyond_leeway_is_rejected() {
        assert_eq!(
            verify(&token(json!({"sub": "u1", "exp": NOW - 30})), SECRET, &settings(), NOW),
            Err(AuthError::Expired)
        );
        let mut strict = settings();
        strict.jwt_leeway_s = 0;
        assert_eq!(verify(&token(json!({"sub": "u1", "exp": NOW})), SECRET, &strict, NOW), Err(AuthError::Expired));
        assert!(verify(&token(json!({"sub": "u1", "exp": NOW + 1})), SECRET, &strict, NOW).is_ok());
    }

    #[test]
    fn a_token_without_exp_is_rejected() {
        assert_eq!(verify(&token(json!({"sub": "u1"})), SECRET, &settings(), NOW), Err(AuthError::MissingExpiry));
        assert!(matches!(
            verify(&token(json!({"sub": "u1", "exp": "tomorrow"})), SECRET, &settings(), NOW),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn fractional_exp_is_rounded_down() {
        let v = user(verify(&token(json!({"sub": "u1", "exp": (NOW + 10) as f64 + 0.9})), SECRET, &settings(), NOW));
        assert_eq!(v.expires_at_s, NOW + 10);
    }

    #[test]
    fn nbf_in_the_future_is_rejected_beyond_leeway() {
        let soon = token(json!({"sub": "u1", "exp": NOW + 600, "nbf": NOW + 30}));
        assert!(verify(&soon, SECRET, &settings(), NOW).is_ok());
        let later = token(json!({"sub": "u1", "exp": NOW + 600, "nbf": NOW + 31}));
        assert_eq!(verify(&later, SECRET, &settings(), NOW), Err(AuthError::NotYetValid));
    }

    #[test]
    fn a_token_without_a_subject_is_rejected() {
        for claims in
            [json!({"exp": NOW + 60}), json!({"exp": NOW + 60, "sub": ""}), json!({"exp": NOW + 60, "sub": 42})]
        {
            assert_eq!(verify(&token(claims), SECRET, &settings(), NOW), Err(AuthError::MissingSubject));
        }
    }

    #[test]
    fn malformed_tokens_are_malformed() {
        let good = token(json!({"sub": "u1", "exp": NOW + 60}));
        let (head, _) = good.rsplit_once('.').unwrap();
        let cases = [
            "".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{good}.x"),
            format!("{head}.!!!"),
            format!("{head}.{}=", good.rsplit('.').next().unwrap()),
            format!("{}.e30.x", URL_SAFE_NO_PAD.encode("not json")),
            format!("{}.e30.x", URL_SAFE_NO_PAD.encode("[1]")),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for t in cases {
            assert!(matches!(verify(&t, SECRET, &settings(), NOW), Err(AuthError::Malformed(_))), "{t:.60}");
        }
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_malformed_even_when_signed() {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#), URL_SAFE_NO_PAD.encode("[1,2]"));
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        assert!(matches!(verify(&t, SECRET, &settings(), NOW), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let t = sign_hs256(&json!({"sub": "u1", "exp": NOW + 60}), b"");
        assert_eq!(verify(&t, b"", &settings(), NOW), Err(AuthError::NotConfigured));
    }

    /// RFC 7515 Appendix A.1: the HS256 example JWS. Its signature must verify (the token then
    /// fails only for lack of a subject, which RFC's example does not carry).
    #[test]
    fn rfc_7515_a1_vector_verifies() {
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let jws = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
                   .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
                   .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(verify(jws, &key, &settings(), 1_300_819_370), Err(AuthError::MissingSubject));
        assert_eq!(verify(jws, &key, &settings(), 1_300_819_380 + 30), Err(AuthError::Expired));
        assert_eq!(verify(jws, b"wrong key", &settings(), 1_300_819_370), Err(AuthError::BadSignature));
    }

    /// The well-known jwt.io HS256 example (secret `your-256-bit-secret`): signature valid, no `exp`.
    #[test]
    fn jwt_io_vector_verifies() {
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9\
                 .eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ\
                 .SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert_eq!(verify(t, b"your-256-bit-secret", &settings(), NOW), Err(AuthError::MissingExpiry));
        assert_eq!(verify(t, b"your-256-bit-secreT", &settings(), NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn algorithm_names_are_sanitized_before_being_echoed() {
        let t = token_with_header(r#"{"alg":"<script>alert(1)</script>xxxxxxxxxxxxxxxx"}"#, json!({}));
        match verify(&t, SECRET, &settings(), NOW) {
            Err(AuthError::UnsupportedAlg(a)) => assert_eq!(a, "scriptalert1scri"),
            other => panic!("{other:?}"),
        }
    }

    fn supabase_anon_key() -> String {
        token(json!({"iss": "supabase", "ref": "abcdefghijklmnop", "role": "anon", "iat": NOW, "exp": NOW + 3600}))
    }

    #[test]
    fn a_supabase_anon_key_is_the_anonymous_caller_even_with_issuer_and_audience_checks() {
        assert_eq!(verify(&supabase_anon_key(), SECRET, &settings(), NOW), Ok(TokenCaller::Anonymous));
        let mut strict = settings();
        strict.issuers = vec!["https://abcdefghijklmnop.supabase.co/auth/v1".into()];
        strict.audiences = vec!["authenticated".into()];
        assert_eq!(verify(&supabase_anon_key(), SECRET, &strict, NOW), Ok(TokenCaller::Anonymous));
    }

    #[test]
    fn an_anonymous_role_still_needs_a_valid_signature_and_expiry() {
        let forged = sign_hs256(&json!({"role": "anon", "exp": NOW + 60}), b"another-secret");
        assert_eq!(verify(&forged, SECRET, &settings(), NOW), Err(AuthError::BadSignature));
        assert_eq!(
            verify(&token(json!({"role": "anon", "exp": NOW - 60})), SECRET, &settings(), NOW),
            Err(AuthError::Expired)
        );
        assert_eq!(verify(&token(json!({"role": "anon"})), SECRET, &settings(), NOW), Err(AuthError::MissingExpiry));
    }

    #[test]
    fn without_anonymous_roles_an_anon_key_needs_a_subject() {
        let mut s = settings();
        s.anonymous_roles.clear();
        assert_eq!(verify(&supabase_anon_key(), SECRET, &s, NOW), Err(AuthError::MissingSubject));
        // Other roles are users like any other.
        let t = token(json!({"role": "authenticated", "sub": "u1", "exp": NOW + 60}));
        assert_eq!(user(verify(&t, SECRET, &settings(), NOW)).subject, "u1");
    }

    #[test]
    fn issuers_are_checked_when_listed() {
        let mut s = settings();
        s.issuers = vec!["https://a.example/".into(), "https://b.example/".into()];
        let with = |iss: Value| token(json!({"sub": "u1", "exp": NOW + 60, "iss": iss}));
        assert_eq!(user(verify(&with(json!("https://b.example/")), SECRET, &s, NOW)).subject, "u1");
        for bad in [json!("https://c.example/"), json!("https://a.example"), json!(["https://a.example/"]), json!(null)]
        {
            assert_eq!(verify(&with(bad.clone()), SECRET, &s, NOW), Err(AuthError::WrongIssuer), "{bad}");
        }
        assert_eq!(verify(&token(json!({"sub": "u1", "exp": NOW + 60})), SECRET, &s, NOW), Err(AuthError::WrongIssuer));
        // Unlisted: any issuer, or none.
        assert!(verify(&with(json!("https://c.example/")), SECRET, &settings(), NOW).is_ok());
    }

    #[test]
    fn audiences_are_checked_when_listed_as_a_string_or_within_an_array() {
        let mut s = settings();
        s.audiences = vec!["authenticated".into()];
        let with = |aud: Value| token(json!({"sub": "u1", "exp": NOW + 60, "aud": aud}));
        assert!(verify(&with(json!("authenticated")), SECRET, &s, NOW).is_ok());
        assert!(verify(&with(json!(["other", "authenticated"])), SECRET, &s, NOW).is_ok());
        for bad in [json!("other"), json!(["other"]), json!([]), json!(7), json!("Authenticated")] {
            assert_eq!(verify(&with(bad.clone()), SECRET, &s, NOW), Err(AuthError::WrongAudience), "{bad}");
        }
        assert_eq!(
            verify(&token(json!({"sub": "u1", "exp": NOW + 60})), SECRET, &s, NOW),
            Err(AuthError::WrongAudience)
        );
    }

    #[test]
    fn the_subject_claim_path_is_configurable() {
        let mut s = settings();
        s.subject_claim = vec!["user".into(), "id".into()];
        let t = token(json!({"sub": "ignored", "user": {"id": "u-42"}, "exp": NOW + 60}));
        assert_eq!(user(verify(&t, SECRET, &s, NOW)).subject, "u-42");
        let t = token(json!({"sub": "u1", "exp": NOW + 60}));
        assert_eq!(verify(&t, SECRET, &s, NOW), Err(AuthError::MissingSubject));
    }

    #[test]
    fn the_header_names_the_algorithm_and_key_id() {
        for (header, alg, kid) in [
            (r#"{"alg":"ES256","kid":"k1"}"#, Alg::Es256, Some("k1")),
            (r#"{"alg":"RS256","kid":"k2","typ":"JWT"}"#, Alg::Rs256, Some("k2")),
            (r#"{"alg":"EdDSA"}"#, Alg::EdDsa, None),
            (r#"{"alg":"HS256","kid":null}"#, Alg::Hs256, None),
        ] {
            let t = token_with_header(header, json!({}));
            let parsed = Token::parse(&t).unwrap();
            assert_eq!((parsed.alg, parsed.kid.as_deref()), (alg, kid), "{header}");
            assert_eq!(Alg::from_name(alg.as_str()), Some(alg));
        }
        for header in [r#"{"alg":"ES256","kid":7}"#, r#"{"alg":"ES256","kid":""}"#] {
            assert!(matches!(Token::parse(&token_with_header(header, json!({}))), Err(AuthError::Malformed(_))));
        }
        let long = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(MAX_KID_LEN + 1));
        assert!(matches!(Token::parse(&token_with_header(&long, json!({}))), Err(AuthError::Malformed(_))));
        for name in ["ES384", "RS512", "PS256", "Ed25519", "eddsa", "none"] {
            assert_eq!(Alg::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn the_signing_input_is_the_first_two_parts_as_sent() {
        let t = token(json!({"sub": "u1", "exp": NOW + 60}));
        let parsed = Token::parse(&t).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(parsed.signing_input(), input.as_bytes());
        assert_eq!(parsed.signature(), URL_SAFE_NO_PAD.decode(sig).unwrap());
    }
}
