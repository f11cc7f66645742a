//! Public keys from a JSON Web Key Set (RFC 7517): which keys Tollgate can use, and for which
//! algorithm each one may be used.
//!
//! A key set is read leniently and its keys strictly: a key of a type Tollgate does not verify
//! (`oct`, P-384, an encryption key) is skipped, so one odd key does not take a provider's whole
//! set down, but a key is only kept with the exact shape its type demands (P-256 coordinates of
//! 32 bytes, an RSA modulus of 2048 to 8192 bits, an Ed25519 key of 32 bytes). Symmetric keys
//! are never taken from a key set: HS256 is checked only with `TOLLGATE_JWT_SECRET`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use thiserror::Error;

use super::jwt::{Alg, MAX_KID_LEN};

/// Largest key set body read, bytes.
pub const MAX_KEY_SET_BYTES: usize = 64 * 1024;
/// Most keys kept from one key set.
pub const MAX_KEYS: usize = 64;

/// The key itself, as base64url text (the form WebCrypto imports), checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An ECDSA P-256 point.
    P256 {
        /// X coordinate, 32 bytes.
        x: String,
        /// Y coordinate, 32 bytes.
        y: String,
    },
    /// An RSA public key.
    Rsa {
        /// Modulus, 256 to 1024 bytes.
        n: String,
        /// Public exponent.
        e: String,
    },
    /// An Ed25519 public key.
    Ed25519 {
        /// The key, 32 bytes.
        x: String,
    },
}

impl KeyMaterial {
    /// The one algorithm this kind of key verifies.
    pub fn alg(&self) -> Alg {
        match self {
            KeyMaterial::P256 { .. } => Alg::Es256,
            KeyMaterial::Rsa { .. } => Alg::Rs256,
            KeyMaterial::Ed25519 { .. } => Alg::EdDsa,
        }
    }

    /// The signature length this key produces, bytes.
    pub fn signature_len(&self) -> usize {
        match self {
            KeyMaterial::P256 { .. } | KeyMaterial::Ed25519 { .. } => 64,
            KeyMaterial::Rsa { n, .. } => URL_SAFE_NO_PAD.decode(n).map_or(0, |n| significant(&n).len()),
        }
    }
}

/// A usable public key from a key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Its `kid`, if the set names one.
    pub kid: Option<String>,
    /// The key.
    pub material: KeyMaterial,
}

impl PublicKey {
    /// Whether a token naming `alg` may be checked with this key: only the key's own algorithm,
    /// never HS256 (a public key is not a shared secret).
    pub fn fits(&self, alg: Alg) -> bool {
        self.material.alg() == alg
    }
}

/// Why a key of a set is not used (it is skipped, the rest of the set still counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SkippedKey {
    /// `kty`/`crv` of a kind Tollgate does not verify (`oct`, P-384, X25519, …).
    #[error("unsupported key type")]
    UnsupportedType,
    /// `alg` names an algorithm other than the one the key type verifies here.
    #[error("unsupported algorithm")]
    UnsupportedAlg,
    /// `use` or `key_ops` say the key is not for verifying signatures.
    #[error("not a signature key")]
    NotForSignatures,
    /// A member is missing or has the wrong length or encoding.
    #[error("malformed key")]
    Malformed,
}

/// A key set that cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeySetError {
    /// The body is larger than [`MAX_KEY_SET_BYTES`].
    #[error("the key set is larger than {MAX_KEY_SET_BYTES} bytes")]
    TooLarge,
    /// The body is not a JSON object with a `keys` array.
    #[error("the key set is not a JSON object with a \"keys\" array")]
    NotAKeySet,
}

/// Reads a JWK into a key, or says why it is skipped.
pub fn parse_key(jwk: &Value) -> Result<PublicKey, SkippedKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if let Some(usage) = jwk.get("use") {
        if usage.as_str() != Some("sig") {
            return Err(SkippedKey::NotForSignatures);
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops.as_array().is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err(SkippedKey::NotForSignatures);
        }
    }
    let material = match (text("kty"), text("crv")) {
        (Some("EC"), Some("P-256")) => KeyMaterial::P256 { x: exact(text("x"), 32)?, y: exact(text("y"), 32)? },
        (Some("OKP"), Some("Ed25519")) => KeyMaterial::Ed25519 { x: exact(text("x"), 32)? },
        (Some("RSA"), _) => {
            let n = text("n").ok_or(SkippedKey::Malformed)?;
            let e = text("e").ok_or(SkippedKey::Malformed)?;
            let n_bytes = URL_SAFE_NO_PAD.decode(n).map_err(|_| SkippedKey::Malformed)?;
            let e_bytes = URL_SAFE_NO_PAD.decode(e).map_err(|_| SkippedKey::Malformed)?;
            let modulus = significant(&n_bytes).len();
            let exponent = significant(&e_bytes);
            let odd_exponent = exponent.last().is_some_and(|b| b & 1 == 1) && exponent != [1];
            if !(256..=1024).contains(&modulus) || exponent.len() > 8 || !odd_exponent {
                return Err(SkippedKey::Malformed);
            }
            KeyMaterial::Rsa { n: n.to_owned(), e: e.to_owned() }
        }
        _ => return Err(SkippedKey::UnsupportedType),
    };
    if let Some(alg) = jwk.get("alg") {
        if alg.as_str().and_then(Alg::from_name) != Some(material.alg()) {
            return Err(SkippedKey::UnsupportedAlg);
        }
    }
    let kid = match jwk.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => Some(kid.clone()),
        Some(_) => return Err(SkippedKey::Malformed),
    };
    Ok(PublicKey { kid, material })
}

/// Reads a key set document: its usable keys (at most [`MAX_KEYS`]), unusable ones skipped.
pub fn parse_key_set(body: &[u8]) -> Result<Vec<PublicKey>, KeySetError> {
    if body.len() > MAX_KEY_SET_BYTES {
        return Err(KeySetError::TooLarge);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| KeySetError::NotAKeySet)?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or(KeySetError::NotAKeySet)?;
    Ok(keys.iter().filter_map(|k| parse_key(k).ok()).take(MAX_KEYS).collect())
}

/// `value` if it is base64url text of exactly `len` bytes.
fn exact(value: Option<&str>, len: usize) -> Result<String, SkippedKey> {
    let value = value.ok_or(SkippedKey::Malformed)?;
    match URL_SAFE_NO_PAD.decode(value) {
        Ok(bytes) if bytes.len() == len => Ok(value.to_owned()),
        _ => Err(SkippedKey::Malformed),
    }
}

/// A big-endian integer without its leading zero bytes.
fn significant(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(len: usize, fill: u8) -> String {
        URL_SAFE_NO_PAD.encode(vec![fill; len])
    }

    fn ec() -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": b64(32, 1), "y": b64(32, 2), "kid": "ec-1", "alg": "ES256", "use": "sig"})
    }

    fn rsa() -> Value {
        json!({"kty": "RSA", "n": b64(256, 0xc3), "e": "AQAB", "kid": "rsa-1"})
    }

    fn ed() -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(32, 7), "kid": "ed-1", "key_ops": ["verify"]})
    }

    #[test]
    fn each_supported_key_type_verifies_only_its_own_algorithm() {
        for (jwk, alg) in [(ec(), Alg::Es256), (rsa(), Alg::Rs256), (ed(), Alg::EdDsa)] {
            let key = parse_key(&jwk).unwrap();
            assert_eq!(key.material.alg(), alg);
            for other in [Alg::Hs256, Alg::Es256, Alg::Rs256, Alg::EdDsa] {
                assert_eq!(key.fits(other), other == alg, "{alg:?} key, {other:?} token");
            }
        }
        assert_eq!(parse_key(&ec()).unwrap().kid.as_deref(), Some("ec-1"));
    }

    #[test]
    fn symmetric_and_unsupported_keys_are_skipped() {
        for jwk in [
            json!({"kty": "oct", "k": b64(32, 1), "kid": "hmac"}),
            json!({"kty": "EC", "crv": "P-384", "x": b64(48, 1), "y": b64(48, 2)}),
            json!({"kty": "OKP", "crv": "X25519", "x": b64(32, 1)}),
            json!({"kid": "no-type"}),
        ] {
            assert_eq!(parse_key(&jwk), Err(SkippedKey::UnsupportedType), "{jwk}");
        }
    }

    #[test]
    fn a_key_whose_alg_is_not_its_types_algorithm_is_skipped() {
        for (mut jwk, alg) in [(ec(), "RS256"), (rsa(), "RS512"), (rsa(), "HS256"), (ed(), "ES256"), (ec(), "none")] {
            jwk["alg"] = json!(alg);
            assert_eq!(parse_key(&jwk), Err(SkippedKey::UnsupportedAlg), "{jwk}");
        }
        let mut ed_named = ed();
        ed_named["alg"] = json!("EdDSA");
        assert!(parse_key(&ed_named).is_ok());
    }

    #[test]
    fn encryption_keys_are_skipped() {
        let mut enc = rsa();
        enc["use"] = json!("enc");
        assert_eq!(parse_key(&enc), Err(SkippedKey::NotForSignatures));
        let mut sign_only = ed();
        sign_only["key_ops"] = json!(["sign"]);
        assert_eq!(parse_key(&sign_only), Err(SkippedKey::NotForSignatures));
    }

    #[test]
    fn keys_of_the_wrong_shape_are_malformed() {
        let cases = [
            json!({"kty": "EC", "crv": "P-256", "x": b64(31, 1), "y": b64(32, 2)}),
            json!({"kty": "EC", "crv": "P-256", "x": b64(32, 1)}),
            json!({"kty": "EC", "crv": "P-256", "x": "not base64!", "y": b64(32, 2)}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(33, 1)}),
            json!({"kty": "RSA", "n": b64(128, 0xc3), "e": "AQAB"}),
            json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([vec![0; 130], vec![0xc3; 128]].concat()), "e": "AQAB"}),
            json!({"kty": "RSA", "n": b64(256, 0xc3), "e": "AQ"}),
            json!({"kty": "RSA", "n": b64(256, 0xc3), "e": "AAI"}),
            json!({"kty": "RSA", "n": b64(256, 0xc3)}),
            json!({"kty": "EC", "crv": "P-256", "x": b64(32, 1), "y": b64(32, 2), "kid": 5}),
        ];
        for jwk in cases {
            assert_eq!(parse_key(&jwk), Err(SkippedKey::Malformed), "{jwk}");
        }
    }

    #[test]
    fn a_key_set_keeps_its_usable_keys() {
        let body = json!({"keys": [ec(), {"kty": "oct", "k": "AA"}, rsa(), ed(), "garbage"]}).to_string();
        let keys = parse_key_set(body.as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap_or_default()).collect();
        assert_eq!(kids, ["ec-1", "rsa-1", "ed-1"]);
        assert_eq!(parse_key_set(br#"{"keys": []}"#), Ok(Vec::new()));
    }

    #[test]
    fn a_document_that_is_not_a_key_set_is_refused() {
        for body in [&b"[]"[..], b"{}", b"{\"keys\": {}}", b"not json", b""] {
            assert_eq!(parse_key_set(body), Err(KeySetError::NotAKeySet), "{:?}", String::from_utf8_lossy(body));
        }
        let huge = format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(MAX_KEY_SET_BYTES));
        assert_eq!(parse_key_set(huge.as_bytes()), Err(KeySetError::TooLarge));
    }

    #[test]
    fn at_most_max_keys_are_kept() {
        let many: Vec<Value> = (0..MAX_KEYS + 5).map(|_| ed()).collect();
        let body = json!({ "keys": many }).to_string();
        assert_eq!(parse_key_set(body.as_bytes()).unwrap().len(), MAX_KEYS);
    }

    #[test]
    fn rsa_signatures_are_as_long_as_the_modulus() {
        assert_eq!(parse_key(&rsa()).unwrap().material.signature_len(), 256);
        assert_eq!(parse_key(&ec()).unwrap().material.signature_len(), 64);
    }
}
