//! Callers identified through the edge: tokens from a key set, Supabase's anon key, keyed
//! subject hashes, and what health says about them.

use std::cell::{Cell, RefCell};

use futures::future::LocalBoxFuture;
use serde_json::json;

use super::*;
use crate::clock::Sleeper;
use crate::edge::Services;
use crate::identity::jwks::{FetchFuture, FetchedKeySet, KeySource, KeySourceError};
use crate::identity::jwt::sign_hs256;
use crate::identity::verify::native::{RingVerifier, TestKey};
use crate::keys::IdentifierHasher;

const JWKS_URL: &str = "http://auth.test/.well-known/jwks.json";
const HASH_SECRET: &str = "hash-secret-for-tests";
const JWT_SECRET: &str = "jwt-secret-for-tests";

/// A key server serving one document (or failing), counting fetches.
struct KeyServer {
    doc: RefCell<Result<FetchedKeySet, KeySourceError>>,
    fetches: Cell<u32>,
    timer: Rc<FakeTimer>,
}

impl KeySource for KeyServer {
    fn fetch<'a>(&'a self, _url: &'a str) -> FetchFuture<'a> {
        self.fetches.set(self.fetches.get() + 1);
        let doc = self.doc.borrow().clone();
        Box::pin(async move { doc })
    }

    fn sleep(&self, ms: u32) -> LocalBoxFuture<'_, ()> {
        Box::pin(async move { self.timer.sleep(ms).await })
    }
}

struct IdWorld {
    world: World,
    server: Rc<KeyServer>,
    edge: Edge<Fakes>,
}

impl IdWorld {
    fn new(keys: &[&TestKey]) -> Self {
        let world = World::new(true);
        let body = json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string().into_bytes();
        let doc = Ok(FetchedKeySet { status: 200, cache_control: Some("max-age=600".into()), body });
        let server = Rc::new(KeyServer { doc: RefCell::new(doc), fetches: Cell::new(0), timer: world.timer.clone() });
        let config = Config::from_env(|name| match name {
            "TOLLGATE_POLICY" => Some(POLICY.to_owned()),
            "ORIGIN_URL" => Some("http://origin.test".to_owned()),
            "TOLLGATE_ADMIN_TOKEN" => Some(ADMIN.to_owned()),
            "UPSTASH_REDIS_REST_URL" => Some("http://redis.test".to_owned()),
            "UPSTASH_REDIS_REST_TOKEN" => Some("t".to_owned()),
            "TOLLGATE_JWKS_URL" => Some(JWKS_URL.to_owned()),
            "TOLLGATE_HASH_SECRET" => Some(HASH_SECRET.to_owned()),
            "TOLLGATE_JWT_SECRET" => Some(JWT_SECRET.to_owned()),
            _ => None,
        })
        .expect("valid test configuration");
        let services = Services::new(
            config,
            Some(world.redis.clone()),
            world.origin.clone(),
            world.timer.clone(),
            world.clock.clone(),
            Rc::new(FakeRandom::new(vec![0.5])),
        )
        .with_key_sets(server.clone(), Rc::new(RingVerifier));
        Self { edge: Edge::from_services(services), world, server }
    }

    fn send(&self, req: EdgeRequest) -> Handled {
        run_with_timer(Some(&self.world.timer), self.edge.handle(req))
    }

    /// The headers the origin would get, or the response refusing the request.
    fn forwarded(&self, req: EdgeRequest) -> Result<Vec<(String, String)>, EdgeResponse> {
        let sent = req.headers.clone();
        match self.send(req).outcome {
            Outcome::Proxy(plan) => Ok(plan.forwarded.apply(&sent)),
            Outcome::Respond(resp) => Err(resp),
            Outcome::Events(plan) => Err(plan.head),
        }
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn keyed(kind: &str, raw: &str) -> String {
    IdentifierHasher::new(Some(HASH_SECRET.as_bytes())).hash(kind, raw)
}

fn bearer(path: &str, token: &str) -> EdgeRequest {
    EdgeRequest::new("GET", path).with_header("authorization", &format!("Bearer {token}"))
}

fn exp() -> u64 {
    START / 1000 + 3600
}

#[test]
fn tokens_of_each_algorithm_are_checked_against_the_key_set_fetched_once() {
    let keys = [TestKey::es256("ec"), TestKey::rs256("rsa"), TestKey::eddsa("ed")];
    let w = IdWorld::new(&keys.iter().collect::<Vec<_>>());
    for key in &keys {
        let token = key.sign(&json!({"sub": format!("user-{}", key.kid()), "exp": exp()}));
        let headers = w.forwarded(bearer("/x", &token)).unwrap_or_else(|r| panic!("{}: {}", key.alg(), r.status));
        assert_eq!(header(&headers, "x-tollgate-caller"), Some("jwt"));
        assert_eq!(
            header(&headers, "x-tollgate-subject"),
            Some(keyed("user", &format!("user-{}", key.kid())).as_str())
        );
        assert_eq!(header(&headers, "authorization"), Some(format!("Bearer {token}").as_str()));
    }
    assert_eq!(w.server.fetches.get(), 1);
}

#[test]
fn a_token_from_another_key_or_of_an_unknown_kid_is_refused_with_its_reason() {
    let w = IdWorld::new(&[&TestKey::es256("ec")]);
    let stranger = TestKey::es256("ec").sign(&json!({"sub": "u", "exp": exp()}));
    let unknown = TestKey::eddsa("nobody").sign(&json!({"sub": "u", "exp": exp()}));
    for (token, reason) in [(stranger, "bad_signature"), (unknown, "unknown_signing_key")] {
        let resp = w.forwarded(bearer("/x", &token)).expect_err("refused");
        assert_eq!((resp.status, json(&resp)["reason"].as_str()), (401, Some(reason)));
        assert_eq!(resp.header("content-type"), Some("application/problem+json"));
    }
}

#[test]
fn without_any_key_set_fetched_a_token_gets_503_to_retry() {
    let w = IdWorld::new(&[]);
    *w.server.doc.borrow_mut() = Err(KeySourceError::Timeout);
    let token = TestKey::es256("ec").sign(&json!({"sub": "u", "exp": exp()}));
    let resp = w.forwarded(bearer("/x", &token)).expect_err("refused");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("5"));
    assert_eq!(json(&resp)["type"], "https://tollgate.dev/problems/signing-keys-unavailable");
}

#[test]
fn the_supabase_anon_key_is_the_anonymous_caller_of_its_ip() {
    let w = IdWorld::new(&[]);
    let anon = sign_hs256(&json!({"iss": "supabase", "role": "anon", "exp": exp()}), JWT_SECRET.as_bytes());
    let req = || bearer("/x", &anon).with_header("apikey", &anon).with_header("cf-connecting-ip", "203.0.113.9");
    let headers = w.forwarded(req()).expect("proxied");
    assert_eq!(header(&headers, "x-tollgate-caller"), Some("anonymous"));
    assert_eq!(header(&headers, "x-tollgate-subject"), Some(keyed("ip", "203.0.113.9").as_str()));
    assert_eq!(header(&headers, "apikey"), Some(anon.as_str()));
    // ANON allows 3 per hour: the key adds nothing to the address's quota.
    assert!(w.forwarded(req()).is_ok());
    assert!(w.forwarded(from_ip("GET", "/x", "203.0.113.9")).is_ok());
    assert_eq!(w.forwarded(req()).expect_err("limited").status, 429);
}

#[test]
fn health_reports_the_key_sets_and_warns_without_a_hash_secret() {
    let w = IdWorld::new(&[&TestKey::eddsa("ed")]);
    let token = TestKey::eddsa("ed").sign(&json!({"sub": "u", "exp": exp()}));
    let _ = w.forwarded(bearer("/x", &token));
    let req = EdgeRequest::new("GET", "/_tollgate/health").with_header("authorization", &format!("Bearer {ADMIN}"));
    let health = json(&answer_of(w.send(req)));
    assert_eq!(health["identity"]["hash_secret"], true);
    assert_eq!(health["identity"]["jwks"][0]["url"], JWKS_URL);
    assert_eq!(health["identity"]["jwks"][0]["fetched"], true);
    assert_eq!(health["warnings"], json!([]));

    let plain = World::new(true);
    let health = json(&plain.admin("GET", "/_tollgate/health", ""));
    assert_eq!(health["identity"]["hash_secret"], false);
    assert!(health["warnings"][0].as_str().unwrap_or_default().contains("TOLLGATE_HASH_SECRET"), "{health}");
}
