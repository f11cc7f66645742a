//! Checking a token's signature with public keys from a key set, behind one narrow trait: the
//! Worker implements it with the runtime's WebCrypto ([`super::web`]), tests with a native crypto
//! library. Choosing the keys and refusing what cannot be right is pure code, here.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use thiserror::Error;

use super::jwk::PublicKey;
use super::jwt::Token;
use super::AuthError;

/// A signature check in progress: `Ok(true)` when the signature is the key's.
pub type VerifyFuture<'a> = LocalBoxFuture<'a, Result<bool, VerifyError>>;

/// The crypto back end could not check a signature at all (not: the signature is wrong).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The key could not be imported.
    #[error("the key could not be imported")]
    Import,
    /// The back end failed.
    #[error("the signature check failed to run")]
    Runtime,
}

/// Checks a signature with a public key, under the one algorithm the key's type verifies
/// ([`super::jwk::KeyMaterial::alg`]). Implementations need not be `Send` (JS futures are not).
pub trait SignatureVerifier {
    /// Whether `signature` over `message` was made with `key`.
    fn verify<'a>(&'a self, key: &'a PublicKey, message: &'a [u8], signature: &'a [u8]) -> VerifyFuture<'a>;
}

/// Keys tried for one token without a `kid`, at most.
pub const MAX_KEYS_TRIED: usize = 4;

/// Checks `token`'s signature against `keys`, the keys that fit it (same `kid` if it names one,
/// a type that verifies its `alg`). A signature of the wrong length for a key is refused without
/// asking the back end; a back-end failure on one key lets the next one try.
pub async fn verify_with_keys(
    verifier: &dyn SignatureVerifier,
    token: &Token<'_>,
    keys: &[Rc<PublicKey>],
) -> Result<(), AuthError> {
    for key in keys.iter().filter(|k| k.fits(token.alg)).take(MAX_KEYS_TRIED) {
        if token.signature().len() != key.material.signature_len() {
            continue;
        }
        if let Ok(true) = verifier.verify(key, token.signing_input(), token.signature()).await {
            return Ok(());
        }
    }
    Err(AuthError::BadSignature)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod native {
    //! A native verifier and signing keys for tests (the `ring` crate, a dev-dependency).

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{self as sig, KeyPair};
    use serde_json::{json, Value};

    use super::*;
    use crate::identity::jwk::{parse_key, KeyMaterial};

    /// Verifies with `ring`.
    #[derive(Debug, Default)]
    pub struct RingVerifier;

    impl SignatureVerifier for RingVerifier {
        fn verify<'a>(&'a self, key: &'a PublicKey, message: &'a [u8], signature: &'a [u8]) -> VerifyFuture<'a> {
            let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| VerifyError::Import);
            let outcome = (|| match &key.material {
                KeyMaterial::P256 { x, y } => {
                    let point = [vec![4u8], decode(x)?, decode(y)?].concat();
                    let key = sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point);
                    Ok(key.verify(message, signature).is_ok())
                }
                KeyMaterial::Rsa { n, e } => {
                    let key = sig::RsaPublicKeyComponents { n: decode(n)?, e: decode(e)? };
                    Ok(key.verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature).is_ok())
                }
                KeyMaterial::Ed25519 { x } => {
                    let key = sig::UnparsedPublicKey::new(&sig::ED25519, decode(x)?);
                    Ok(key.verify(message, signature).is_ok())
                }
            })();
            Box::pin(async move { outcome })
        }
    }

    /// A private key that signs test tokens, with its public JWK.
    pub enum TestKey {
        Es256(sig::EcdsaKeyPair, String),
        Rs256(sig::RsaKeyPair, String),
        EdDsa(sig::Ed25519KeyPair, String),
    }

    impl TestKey {
        pub fn es256(kid: &str) -> Self {
            let rng = SystemRandom::new();
            let alg = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            Self::Es256(sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap(), kid.to_owned())
        }

        pub fn rs256(kid: &str) -> Self {
            let pair = sig::RsaKeyPair::from_pkcs8(include_bytes!("testdata/rsa-2048.pk8")).unwrap();
            Self::Rs256(pair, kid.to_owned())
        }

        pub fn eddsa(kid: &str) -> Self {
            let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Self::EdDsa(sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(), kid.to_owned())
        }

        pub fn alg(&self) -> &'static str {
            match self {
                Self::Es256(..) => "ES256",
                Self::Rs256(..) => "RS256",
                Self::EdDsa(..) => "EdDSA",
            }
        }

        pub fn kid(&self) -> &str {
            match self {
                Self::Es256(_, k) | Self::Rs256(_, k) | Self::EdDsa(_, k) => k,
            }
        }

        pub fn jwk(&self) -> Value {
            let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            match self {
                Self::Es256(pair, kid) => {
                    let point = pair.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]), "kid": kid, "alg": "ES256", "use": "sig"})
                }
                Self::Rs256(pair, kid) => {
                    let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                    json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e), "kid": kid, "alg": "RS256", "use": "sig"})
                }
                Self::EdDsa(pair, kid) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()), "kid": kid})
                }
            }
        }

        pub fn public_key(&self) -> PublicKey {
            parse_key(&self.jwk()).unwrap()
        }

        /// Signs `message` with this key.
        pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                Self::Es256(pair, _) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
                Self::Rs256(pair, _) => {
                    let mut out = vec![0; pair.public().modulus_len()];
                    pair.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out).unwrap();
                    out
                }
                Self::EdDsa(pair, _) => pair.sign(message).as_ref().to_vec(),
            }
        }

        /// A token with `header` (as given) and `claims`, signed with this key.
        pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = self.sign_bytes(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }

        /// A token with this key's `alg` and `kid`, signed with it.
        pub fn sign(&self, claims: &Value) -> String {
            self.sign_with_header(&json!({"alg": self.alg(), "kid": self.kid(), "typ": "JWT"}), claims)
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::native::{RingVerifier, TestKey};
    use super::*;

    fn check(key: &TestKey, token: &str, keys: &[&TestKey]) -> Result<(), AuthError> {
        let keys: Vec<Rc<PublicKey>> = keys.iter().map(|k| Rc::new(k.public_key())).collect();
        let token = Token::parse(token)?;
        let _ = key;
        futures_lite_block_on(verify_with_keys(&RingVerifier, &token, &keys))
    }

    /// The verifier used here completes at once; poll it to completion without a runtime.
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn es256_rs256_and_eddsa_tokens_verify_with_their_key() {
        for key in [TestKey::es256("e"), TestKey::rs256("r"), TestKey::eddsa("d")] {
            let token = key.sign(&json!({"sub": "u1"}));
            assert_eq!(check(&key, &token, &[&key]), Ok(()), "{}", key.alg());
        }
    }

    #[test]
    fn a_token_signed_with_another_key_of_the_same_type_is_refused() {
        let (signer, published) = (TestKey::es256("k"), TestKey::es256("k"));
        let token = signer.sign(&json!({"sub": "u1"}));
        assert_eq!(check(&signer, &token, &[&published]), Err(AuthError::BadSignature));
        let (signer, published) = (TestKey::eddsa("k"), TestKey::eddsa("k"));
        let token = signer.sign(&json!({"sub": "u1"}));
        assert_eq!(check(&signer, &token, &[&published]), Err(AuthError::BadSignature));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        for key in [TestKey::es256("e"), TestKey::rs256("r"), TestKey::eddsa("d")] {
            let token = key.sign(&json!({"sub": "u1", "tier": "basic"}));
            let parts: Vec<&str> = token.split('.').collect();
            let forged = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                json!({"sub": "u1", "tier": "pro"}).to_string(),
            );
            let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
            assert_eq!(check(&key, &tampered, &[&key]), Err(AuthError::BadSignature), "{}", key.alg());
        }
    }

    #[test]
    fn a_key_is_never_used_for_another_algorithm() {
        let ec = TestKey::es256("k");
        let ed = TestKey::eddsa("k");
        // An EdDSA signature under an ES256 header: the only key is EC, which does not fit EdDSA,
        // and the Ed25519 key is not offered for ES256.
        let header = json!({"alg": "EdDSA", "kid": "k"});
        let token = ed.sign_with_header(&header, &json!({"sub": "u1"}));
        assert_eq!(check(&ed, &token, &[&ec]), Err(AuthError::BadSignature));
        let header = json!({"alg": "ES256", "kid": "k"});
        let token = ed.sign_with_header(&header, &json!({"sub": "u1"}));
        assert_eq!(check(&ed, &token, &[&ed]), Err(AuthError::BadSignature));
    }

    #[test]
    fn signatures_of_the_wrong_length_never_reach_the_back_end() {
        struct Refuses;
        impl SignatureVerifier for Refuses {
            fn verify<'a>(&'a self, _: &'a PublicKey, _: &'a [u8], _: &'a [u8]) -> VerifyFuture<'a> {
                Box::pin(async { panic!("called") })
            }
        }
        let key = TestKey::es256("k");
        let token = key.sign(&json!({"sub": "u1"}));
        let (input, _) = token.rsplit_once('.').unwrap();
        let short =
            format!("{input}.{}", base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [1u8; 63]));
        let keys = vec![Rc::new(key.public_key())];
        let parsed = Token::parse(&short).unwrap();
        assert_eq!(futures_lite_block_on(verify_with_keys(&Refuses, &parsed, &keys)), Err(AuthError::BadSignature));
    }

    #[test]
    fn a_failing_back_end_lets_the_next_key_try() {
        struct FailsFirst(std::cell::Cell<bool>);
        impl SignatureVerifier for FailsFirst {
            fn verify<'a>(&'a self, key: &'a PublicKey, m: &'a [u8], s: &'a [u8]) -> VerifyFuture<'a> {
                if self.0.replace(false) {
                    return Box::pin(async { Err(VerifyError::Import) });
                }
                RingVerifier.verify(key, m, s)
            }
        }
        let key = TestKey::eddsa("k");
        let token = key.sign_with_header(&json!({"alg": "EdDSA"}), &json!({"sub": "u1"}));
        let keys = vec![Rc::new(key.public_key()), Rc::new(key.public_key())];
        let parsed = Token::parse(&token).unwrap();
        let verifier = FailsFirst(std::cell::Cell::new(true));
        assert_eq!(futures_lite_block_on(verify_with_keys(&verifier, &parsed, &keys)), Ok(()));
    }
}
