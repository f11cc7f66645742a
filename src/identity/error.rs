//! Why a credential was refused, with a stable code and a detail safe to put in a 401 body.

use thiserror::Error;

/// A refused credential. Every variant but [`AuthError::CorruptRecord`] is the caller's doing
/// (`401`); none is ever turned into anonymous access.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The credential does not have the shape it claims (the reason is our own fixed text).
    #[error("malformed credential: {0}")]
    Malformed(&'static str),
    /// A JWT signed with an algorithm Tollgate does not verify (or none named); holds a sanitized
    /// name.
    #[error("unsupported JWT algorithm {0:?}")]
    UnsupportedAlg(String),
    /// The JWT's signature does not match the configured secret.
    #[error("bad JWT signature")]
    BadSignature,
    /// The JWT's `exp` has passed (beyond the leeway).
    #[error("JWT expired")]
    Expired,
    /// The JWT's `nbf` is still ahead (beyond the leeway).
    #[error("JWT not yet valid")]
    NotYetValid,
    /// The JWT has no `exp` claim; tokens that never expire are refused.
    #[error("JWT without exp")]
    MissingExpiry,
    /// The JWT has no non-empty string `sub`.
    #[error("JWT without subject")]
    MissingSubject,
    /// A JWT arrived but nothing is configured to check it: no `TOLLGATE_JWT_SECRET` for HS256,
    /// no `TOLLGATE_JWKS_URL` for the others.
    #[error("JWT authentication not configured")]
    NotConfigured,
    /// The JWT's `iss` is not one of `identity.issuers`.
    #[error("JWT from another issuer")]
    WrongIssuer,
    /// The JWT's `aud` names none of `identity.audiences`.
    #[error("JWT for another audience")]
    WrongAudience,
    /// No key in the key sets has the JWT's `kid` (after a refetch, where one was allowed).
    #[error("unknown JWT signing key")]
    UnknownSigningKey,
    /// The key named by the JWT's `kid` is of another type than its `alg` (algorithm confusion).
    #[error("JWT algorithm does not fit its key")]
    KeyMismatch,
    /// No key set could be fetched yet, so the JWT cannot be checked; a fault of the key server.
    #[error("JWT key sets unavailable")]
    KeysUnavailable,
    /// The API key is well-formed but not in the registry.
    #[error("unknown API key")]
    UnknownKey,
    /// The API key was revoked.
    #[error("revoked API key")]
    Revoked,
    /// The registry holds a record for the key that cannot be read; a server fault, not the caller's.
    #[error("unreadable API key record")]
    CorruptRecord,
}

impl AuthError {
    /// Stable code for problem bodies, logs and stats (`bad_signature`, `expired`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::UnsupportedAlg(_) => "unsupported_alg",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::MissingExpiry => "missing_expiry",
            AuthError::MissingSubject => "missing_subject",
            AuthError::NotConfigured => "not_configured",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::UnknownSigningKey => "unknown_signing_key",
            AuthError::KeyMismatch => "key_mismatch",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Revoked => "revoked",
            AuthError::CorruptRecord => "corrupt_record",
        }
    }

    /// HTTP status to answer with: `401`, `500` for a registry fault, `503` while no key set
    /// can be fetched.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::CorruptRecord => 500,
            AuthError::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// A sentence for the `detail` of a problem body: says what to fix, reveals nothing secret.
    pub fn detail(&self) -> String {
        match self {
            AuthError::Malformed(reason) => format!("The credential is malformed: {reason}."),
            AuthError::UnsupportedAlg(alg) => {
                format!("The token's algorithm {alg:?} is not accepted; tokens must be signed with HS256, ES256, RS256 or EdDSA.")
            }
            AuthError::BadSignature => "The token's signature is not valid.".to_owned(),
            AuthError::Expired => "The token has expired; sign in again or refresh it.".to_owned(),
            AuthError::NotYetValid => "The token is not valid yet (nbf is in the future).".to_owned(),
            AuthError::MissingExpiry => "The token has no expiry (exp); tokens must expire.".to_owned(),
            AuthError::MissingSubject => "The token has no subject (sub).".to_owned(),
            AuthError::NotConfigured => {
                "Token authentication is not configured for this algorithm; use an API key.".to_owned()
            }
            AuthError::WrongIssuer => {
                "The token was issued by an issuer this service does not accept (iss).".to_owned()
            }
            AuthError::WrongAudience => "The token was not issued for this service (aud).".to_owned(),
            AuthError::UnknownSigningKey => "The token's signing key (kid) is not among the known keys.".to_owned(),
            AuthError::KeyMismatch => "The token's algorithm does not fit the type of its signing key.".to_owned(),
            AuthError::KeysUnavailable => "The signing keys could not be fetched; try again shortly.".to_owned(),
            AuthError::UnknownKey => "The API key is not known.".to_owned(),
            AuthError::Revoked => "The API key has been revoked.".to_owned(),
            AuthError::CorruptRecord => "The API key could not be checked.".to_owned(),
        }
    }

    /// Whether caching this outcome for a while is safe (the answer will not change by retrying).
    pub fn is_definitive(&self) -> bool {
        !matches!(self, AuthError::CorruptRecord | AuthError::KeysUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_errors_are_401_and_registry_faults_500() {
        assert_eq!(AuthError::Expired.status(), 401);
        assert_eq!(AuthError::Malformed("x").status(), 401);
        assert_eq!(AuthError::CorruptRecord.status(), 500);
        assert_eq!(AuthError::WrongAudience.status(), 401);
        assert_eq!(AuthError::KeysUnavailable.status(), 503);
    }

    #[test]
    fn details_are_sentences_without_internals() {
        let all = [
            AuthError::Malformed("the bearer token is empty"),
            AuthError::UnsupportedAlg("none".into()),
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::MissingExpiry,
            AuthError::MissingSubject,
            AuthError::NotConfigured,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::UnknownSigningKey,
            AuthError::KeyMismatch,
            AuthError::KeysUnavailable,
            AuthError::UnknownKey,
            AuthError::Revoked,
            AuthError::CorruptRecord,
        ];
        let mut codes: Vec<&str> = all.iter().map(AuthError::as_str).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for e in &all {
            let d = e.detail();
            assert!(d.ends_with('.') && !d.to_lowercase().contains("redis") && !d.contains("secret"), "{d}");
        }
    }
}
