//! A stand-in auth provider for the local stack: a key set served at
//! `GET /.well-known/jwks.json` and test tokens signed on request, with ES256, RS256 and EdDSA.
//!
//! The ES256 and EdDSA keys are generated at start, so their tokens are good only while this
//! process runs. The two RSA keys are fixed files in the crate (`keys/`): generating RSA keys
//! takes long, and these keys sign nothing but local test tokens. Never trust this key set
//! anywhere but on a developer's machine.
//!
//! Control (under `/_origin/`, never counted):
//! - `POST /_origin/tokens` `{"alg", "claims"?, "header"?}` → `{"token", "kid"}`: signs `claims`
//!   (over defaults `iat` = now, `exp` = now + 1 h) with the newest key of `alg`; `header` members
//!   are merged over `{"alg", "kid", "typ"}` (a made-up `kid`, say).
//! - `POST /_origin/jwks/rotate` `{"alg"}` → `{"kid"}`: publishes a new key for `alg`, which signs
//!   from then on; the old keys stay published.
//! - `GET /_origin/jwks` → `{"fetches", "kids", "fail", "max_age"}`; `POST /_origin/jwks`
//!   `{"fail"?: status|null, "max_age"?: seconds, "reset_fetches"?: true}` changes how the key set
//!   is served (an outage, its cache lifetime).

use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The fixed RSA keys, in the order rotation publishes them.
const RSA_KEYS: [&[u8]; 2] = [include_bytes!("../keys/rsa-a.pk8"), include_bytes!("../keys/rsa-b.pk8")];

/// Cache lifetime of the key set when none is set, seconds.
pub const DEFAULT_MAX_AGE_S: u64 = 300;

/// Why a control request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub String);

enum Pair {
    Es256(sig::EcdsaKeyPair),
    Rs256(sig::RsaKeyPair),
    EdDsa(sig::Ed25519KeyPair),
}

/// One signing key and its `kid`.
struct SigningKey {
    kid: String,
    pair: Pair,
}

impl SigningKey {
    fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Es256(_) => "ES256",
            Pair::Rs256(_) => "RS256",
            Pair::EdDsa(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.pair {
            Pair::Es256(p) => {
                let point = p.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
                       "kid": self.kid, "alg": "ES256", "use": "sig"})
            }
            Pair::Rs256(p) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(p.public());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e), "kid": self.kid, "alg": "RS256", "use": "sig"})
            }
            Pair::EdDsa(p) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(p.public_key().as_ref()), "kid": self.kid,
                       "alg": "EdDSA", "use": "sig"})
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let failed = || TokenError("signing failed".to_owned());
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Es256(p) => p.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| failed()),
            Pair::Rs256(p) => {
                let mut out = vec![0; p.public().modulus_len()];
                p.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out).map_err(|_| failed())?;
                Ok(out)
            }
            Pair::EdDsa(p) => Ok(p.sign(message).as_ref().to_vec()),
        }
    }
}

/// `alg-<12 hex of the public key's SHA-256>`.
fn kid_for(alg: &str, public: &[u8]) -> String {
    format!("{}-{}", alg.to_ascii_lowercase(), &hex(&Sha256::digest(public))[..12])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_key(alg: &str, rsa_index: usize) -> Result<SigningKey, TokenError> {
    let rng = SystemRandom::new();
    let bad = |what: &str| TokenError(format!("cannot make a {alg} key: {what}"));
    let pair = match alg {
        "ES256" => {
            let a = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(a, &rng).map_err(|_| bad("generate"))?;
            Pair::Es256(sig::EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref(), &rng).map_err(|_| bad("load"))?)
        }
        "EdDSA" => {
            let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| bad("generate"))?;
            Pair::EdDsa(sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| bad("load"))?)
        }
        "RS256" => {
            let der = RSA_KEYS.get(rsa_index).ok_or_else(|| bad("both fixed RSA keys are published already"))?;
            Pair::Rs256(sig::RsaKeyPair::from_pkcs8(der).map_err(|_| bad("load"))?)
        }
        other => return Err(TokenError(format!("alg {other:?} is not one of ES256, RS256, EdDSA"))),
    };
    let public: Vec<u8> = match &pair {
        Pair::Es256(p) => p.public_key().as_ref().to_vec(),
        Pair::Rs256(p) => p.public().as_ref().to_vec(),
        Pair::EdDsa(p) => p.public_key().as_ref().to_vec(),
    };
    Ok(SigningKey { kid: kid_for(alg, &public), pair })
}

/// The published keys, newest first, and how the key set is served.
pub struct Tokens {
    keys: Vec<SigningKey>,
    rsa_published: usize,
    /// Key set fetches served (or failed on purpose) since start or the last reset.
    pub fetches: u64,
    /// A status to answer key set fetches with instead (an outage).
    pub fail: Option<u16>,
    /// `Cache-Control: max-age` of the key set, seconds.
    pub max_age_s: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("kids", &self.kids()).field("fetches", &self.fetches).finish()
    }
}

impl Tokens {
    /// One key per algorithm.
    pub fn new() -> Result<Self, TokenError> {
        let keys = vec![new_key("ES256", 0)?, new_key("RS256", 0)?, new_key("EdDSA", 0)?];
        Ok(Self { keys, rsa_published: 1, fetches: 0, fail: None, max_age_s: DEFAULT_MAX_AGE_S })
    }

    /// The published `kid`s, newest first.
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// The key set document.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() })
    }

    /// Publishes a new key for `alg`; it signs from now on. Returns its `kid`.
    pub fn rotate(&mut self, alg: &str) -> Result<String, TokenError> {
        let key = new_key(alg, self.rsa_published)?;
        if alg == "RS256" {
            self.rsa_published += 1;
        }
        let kid = key.kid.clone();
        self.keys.insert(0, key);
        Ok(kid)
    }

    /// Signs a token: `{"alg", "claims"?, "header"?}` → `{"token", "kid"}`.
    pub fn mint(&self, request: &Value, now_s: u64) -> Result<Value, TokenError> {
        let alg = request.get("alg").and_then(Value::as_str).unwrap_or("ES256");
        let key = self
            .keys
            .iter()
            .find(|k| k.alg() == alg)
            .ok_or_else(|| TokenError(format!("alg {alg:?} is not one of ES256, RS256, EdDSA")))?;
        let mut claims = Map::new();
        claims.insert("iat".into(), json!(now_s));
        claims.insert("exp".into(), json!(now_s + 3600));
        match request.get("claims") {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => claims.extend(given.clone()),
            Some(_) => return Err(TokenError("\"claims\" must be an object".to_owned())),
        }
        let mut header = Map::new();
        header.insert("alg".into(), json!(alg));
        header.insert("kid".into(), json!(key.kid));
        header.insert("typ".into(), json!("JWT"));
        match request.get("header") {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => header.extend(given.clone()),
            Some(_) => return Err(TokenError("\"header\" must be an object".to_owned())),
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header.clone()).to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let signature = key.sign(input.as_bytes())?;
        Ok(json!({ "token": format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)), "kid": header.get("kid") }))
    }

    /// `{"fetches", "kids", "fail", "max_age"}`.
    pub fn status(&self) -> Value {
        json!({ "fetches": self.fetches, "kids": self.kids(), "fail": self.fail, "max_age": self.max_age_s })
    }

    /// Applies `{"fail"?, "max_age"?, "reset_fetches"?}`.
    pub fn update(&mut self, update: &Value) -> Result<(), TokenError> {
        let Some(fields) = update.as_object() else {
            return Err(TokenError("expected a JSON object".to_owned()));
        };
        for (name, value) in fields {
            match (name.as_str(), value) {
                ("fail", Value::Null) => self.fail = None,
                ("fail", v) => match v.as_u64() {
                    Some(code @ 400..=599) => self.fail = Some(code as u16),
                    _ => return Err(TokenError("\"fail\" must be a status 400..=599 or null".to_owned())),
                },
                ("max_age", v) => {
                    self.max_age_s = v.as_u64().ok_or_else(|| TokenError("\"max_age\" must be seconds".to_owned()))?
                }
                ("reset_fetches", Value::Bool(true)) => self.fetches = 0,
                ("reset_fetches", _) => {}
                (other, _) => return Err(TokenError(format!("unknown field {other:?}"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(token: &str) -> (Value, Value, Vec<u8>, String) {
        let p: Vec<&str> = token.split('.').collect();
        let decode = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
        (decode(p[0]), decode(p[1]), URL_SAFE_NO_PAD.decode(p[2]).unwrap(), format!("{}.{}", p[0], p[1]))
    }

    fn verify(jwk: &Value, message: &[u8], signature: &[u8]) -> bool {
        let d = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
        match jwk["kty"].as_str().unwrap() {
            "EC" => {
                let point = [vec![4], d("x"), d("y")].concat();
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
            "RSA" => sig::RsaPublicKeyComponents { n: d("n"), e: d("e") }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            _ => sig::UnparsedPublicKey::new(&sig::ED25519, d("x")).verify(message, signature).is_ok(),
        }
    }

    #[test]
    fn minted_tokens_verify_against_the_published_key_of_their_kid() {
        let tokens = Tokens::new().unwrap();
        let jwks = tokens.jwks();
        for alg in ["ES256", "RS256", "EdDSA"] {
            let minted = tokens.mint(&json!({"alg": alg, "claims": {"sub": "alice"}}), 1_000).unwrap();
            let (header, claims, signature, input) = parts(minted["token"].as_str().unwrap());
            assert_eq!(header["alg"], alg);
            assert_eq!(
                (claims["sub"].as_str(), claims["iat"].as_u64(), claims["exp"].as_u64()),
                (Some("alice"), Some(1_000), Some(4_600))
            );
            let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).unwrap();
            assert_eq!(jwk["alg"], alg);
            assert!(verify(jwk, input.as_bytes(), &signature), "{alg}");
        }
    }

    #[test]
    fn rotation_publishes_a_new_key_that_signs_from_then_on() {
        let mut tokens = Tokens::new().unwrap();
        for alg in ["ES256", "RS256", "EdDSA"] {
            let before = tokens.kids();
            let kid = tokens.rotate(alg).unwrap();
            assert!(!before.contains(&kid));
            assert_eq!(tokens.kids().len(), before.len() + 1);
            let minted = tokens.mint(&json!({"alg": alg}), 0).unwrap();
            assert_eq!(minted["kid"], kid);
        }
        assert!(tokens.rotate("RS256").is_err(), "only two fixed RSA keys");
        assert!(tokens.rotate("HS256").is_err());
    }

    #[test]
    fn header_members_can_be_overridden_for_tests() {
        let tokens = Tokens::new().unwrap();
        let minted = tokens.mint(&json!({"alg": "EdDSA", "header": {"kid": "made-up"}}), 0).unwrap();
        assert_eq!(parts(minted["token"].as_str().unwrap()).0["kid"], "made-up");
        assert!(tokens.mint(&json!({"alg": "PS256"}), 0).is_err());
        assert!(tokens.mint(&json!({"alg": "ES256", "claims": []}), 0).is_err());
    }

    #[test]
    fn serving_can_fail_and_counts_are_reset() {
        let mut tokens = Tokens::new().unwrap();
        tokens.fetches = 3;
        tokens.update(&json!({"fail": 503, "max_age": 1, "reset_fetches": true})).unwrap();
        assert_eq!(tokens.status()["fail"], 503);
        assert_eq!((tokens.fetches, tokens.max_age_s), (0, 1));
        tokens.update(&json!({"fail": null})).unwrap();
        assert_eq!(tokens.fail, None);
        assert!(tokens.update(&json!({"fail": 200})).is_err());
        assert!(tokens.update(&json!({"bogus": 1})).is_err());
    }
}
