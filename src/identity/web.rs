//! The Worker's side of token checks: signatures with the runtime's WebCrypto
//! (`crypto.subtle.importKey` with the JWK, then `verify`), key sets over the runtime's `fetch`.
//!
//! WebCrypto rather than a Rust crypto crate keeps the wasm small (no bignum or curve code) and
//! uses the runtime's constant-time, audited implementations. Imported keys are kept per isolate.

use std::cell::RefCell;
use std::collections::HashMap;

use futures::future::{select, Either};
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::jwk::{KeyMaterial, PublicKey, MAX_KEY_SET_BYTES};
use super::jwks::{FetchFuture, FetchedKeySet, KeySource, KeySourceError, FETCH_TIMEOUT_MS};
use super::verify::{SignatureVerifier, VerifyError, VerifyFuture};
use crate::clock::Timer;

/// Imported keys kept per isolate, at most.
const MAX_IMPORTED: usize = 128;

/// Verifies signatures with `crypto.subtle`.
#[derive(Debug, Default)]
pub struct WebCryptoVerifier {
    imported: RefCell<HashMap<String, JsValue>>,
}

/// `{name: value, …}` as a JS object.
fn object(pairs: &[(&str, &str)]) -> Result<Object, VerifyError> {
    let obj = Object::new();
    for (k, v) in pairs {
        Reflect::set(&obj, &JsValue::from_str(k), &JsValue::from_str(v)).map_err(|_| VerifyError::Runtime)?;
    }
    Ok(obj)
}

/// Calls `target.method(...args)` and awaits the promise it returns.
async fn call(target: &JsValue, method: &str, args: &Array) -> Result<JsValue, VerifyError> {
    let f: Function = Reflect::get(target, &JsValue::from_str(method))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or(VerifyError::Runtime)?;
    let promise: Promise = f.apply(target, args).ok().and_then(|p| p.dyn_into().ok()).ok_or(VerifyError::Runtime)?;
    JsFuture::from(promise).await.map_err(|_| VerifyError::Runtime)
}

fn subtle() -> Result<JsValue, VerifyError> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).map_err(|_| VerifyError::Runtime)?;
    Reflect::get(&crypto, &JsValue::from_str("subtle")).map_err(|_| VerifyError::Runtime)
}

/// The JWK to import (only the members that define the key), the import algorithm and the
/// verify algorithm; a cache key naming the key.
fn web_key(material: &KeyMaterial) -> Result<(Object, Object, Object, String), VerifyError> {
    Ok(match material {
        KeyMaterial::P256 { x, y } => (
            object(&[("kty", "EC"), ("crv", "P-256"), ("x", x), ("y", y)])?,
            object(&[("name", "ECDSA"), ("namedCurve", "P-256")])?,
            object(&[("name", "ECDSA"), ("hash", "SHA-256")])?,
            format!("ec:{x}:{y}"),
        ),
        KeyMaterial::Rsa { n, e } => (
            object(&[("kty", "RSA"), ("n", n), ("e", e)])?,
            object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")])?,
            object(&[("name", "RSASSA-PKCS1-v1_5")])?,
            format!("rsa:{e}:{n}"),
        ),
        KeyMaterial::Ed25519 { x } => (
            object(&[("kty", "OKP"), ("crv", "Ed25519"), ("x", x)])?,
            object(&[("name", "Ed25519")])?,
            object(&[("name", "Ed25519")])?,
            format!("ed:{x}"),
        ),
    })
}

impl WebCryptoVerifier {
    async fn check(&self, key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<bool, VerifyError> {
        let subtle = subtle()?;
        let (jwk, import_alg, verify_alg, id) = web_key(&key.material)?;
        let cached = self.imported.borrow().get(&id).cloned();
        let crypto_key = match cached {
            Some(k) => k,
            None => {
                let usages = Array::of1(&JsValue::from_str("verify"));
                let args = Array::of5(&JsValue::from_str("jwk"), &jwk, &import_alg, &JsValue::FALSE, &usages);
                let k = call(&subtle, "importKey", &args).await.map_err(|_| VerifyError::Import)?;
                let mut imported = self.imported.borrow_mut();
                if imported.len() >= MAX_IMPORTED {
                    imported.clear();
                }
                imported.insert(id, k.clone());
                k
            }
        };
        let args = Array::of4(&verify_alg, &crypto_key, &Uint8Array::from(signature), &Uint8Array::from(message));
        Ok(call(&subtle, "verify", &args).await?.as_bool().unwrap_or(false))
    }
}

impl SignatureVerifier for WebCryptoVerifier {
    fn verify<'a>(&'a self, key: &'a PublicKey, message: &'a [u8], signature: &'a [u8]) -> VerifyFuture<'a> {
        Box::pin(self.check(key, message, signature))
    }
}

/// Fetches key sets with the runtime's `fetch`, within [`FETCH_TIMEOUT_MS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchKeySource;

async fn fetch_key_set(url: &str) -> Result<FetchedKeySet, KeySourceError> {
    let unreachable = |what: &str| KeySourceError::Unreachable(what.to_owned());
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    let headers = web_sys::Headers::new().map_err(|_| unreachable("headers"))?;
    let _ = headers.append("accept", "application/json");
    init.set_headers(&headers);
    let controller = web_sys::AbortController::new().ok();
    if let Some(c) = &controller {
        init.set_signal(Some(&c.signal()));
    }
    let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(|_| unreachable("invalid URL"))?;
    let promise = js_sys::global().unchecked_into::<web_sys::WorkerGlobalScope>().fetch_with_request(&request);
    let work = async {
        let resp: web_sys::Response = JsFuture::from(promise)
            .await
            .map_err(|e| KeySourceError::Unreachable(e.as_string().unwrap_or_else(|| "fetch failed".into())))?
            .dyn_into()
            .map_err(|_| unreachable("not a response"))?;
        let cache_control = resp.headers().get("cache-control").ok().flatten();
        let status = resp.status();
        let buffer = resp.array_buffer().map_err(|_| unreachable("unreadable body"))?;
        let buffer = JsFuture::from(buffer).await.map_err(|_| unreachable("the body was cut short"))?;
        let bytes = Uint8Array::new(&buffer);
        // Larger than any key set: keep only enough to be refused as too large.
        let len = bytes.length().min(MAX_KEY_SET_BYTES as u32 + 1);
        Ok(FetchedKeySet { status, cache_control, body: bytes.subarray(0, len).to_vec() })
    };
    futures::pin_mut!(work);
    match select(work, Timer::after(FETCH_TIMEOUT_MS)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            if let Some(c) = controller {
                c.abort();
            }
            Err(KeySourceError::Timeout)
        }
    }
}

impl KeySource for FetchKeySource {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        Box::pin(fetch_key_set(url))
    }

    fn sleep(&self, ms: u32) -> futures::future::LocalBoxFuture<'_, ()> {
        Box::pin(Timer::after(ms))
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::Value;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;
    use crate::identity::jwk::parse_key;

    /// Public keys and signatures over `msg` made with Node's crypto, one per algorithm.
    const VECTORS: &str = include_str!("testdata/webcrypto-vectors.json");

    #[wasm_bindgen_test]
    async fn webcrypto_verifies_es256_rs256_and_ed25519_and_refuses_other_messages() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let msg = v["msg"].as_str().unwrap().as_bytes();
        let verifier = WebCryptoVerifier::default();
        for alg in ["es256", "rs256", "eddsa"] {
            let key = parse_key(&v[alg]["jwk"]).unwrap();
            let sig = URL_SAFE_NO_PAD.decode(v[alg]["sig"].as_str().unwrap()).unwrap();
            assert_eq!(verifier.verify(&key, msg, &sig).await, Ok(true), "{alg}");
            // The second check uses the imported key kept for the isolate.
            assert_eq!(verifier.verify(&key, b"another message", &sig).await, Ok(false), "{alg}");
            let mut flipped = sig.clone();
            flipped[10] ^= 1;
            assert_eq!(verifier.verify(&key, msg, &flipped).await, Ok(false), "{alg}");
        }
        assert_eq!(verifier.imported.borrow().len(), 3);
    }
}
