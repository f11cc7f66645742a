//! The isolate's cache of key sets (`TOLLGATE_JWKS_URL`): fetched once, kept for their HTTP
//! cache lifetime, refetched on an unknown `kid` at most once per interval, and kept through an
//! outage of the key server.
//!
//! # The contract
//!
//! - **Lifetime.** A fetched set is fresh for its `Cache-Control: max-age`, held between
//!   [`LIFETIME_FLOOR_MS`] and [`LIFETIME_CEILING_MS`] ([`DEFAULT_LIFETIME_MS`] without one). A
//!   token arriving once it is stale waits for one refetch.
//! - **Unknown `kid`.** A token whose `kid` no set holds refetches the sets, but a set is
//!   fetched at most once per `identity.jwks_refetch_interval` (30 s by default): a flood of
//!   made-up `kid`s costs at most one fetch per set per interval, per isolate.
//! - **Single flight.** Concurrent requests wait for the fetch already in flight for a set instead
//!   of starting their own ([`SingleFlight`]: followers look at its result on timers of their
//!   own, since on the Workers runtime a request waiting only on another request's I/O is
//!   cancelled as hung).
//! - **Outage.** A failed fetch (unreachable, timeout, non-2xx, not a key set) keeps the keys
//!   already known; it is retried at most once per interval. Tokens are refused with `503` only
//!   while no set has ever been fetched.
//!
//! The state of each set ([`KeySetState`]) is pure and takes the time as input; [`KeySets`]
//! drives it over a [`KeySource`] (the Worker's `fetch`) and a [`SignatureVerifier`].

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::{join_all, LocalBoxFuture};
use thiserror::Error;

use crate::cache::SingleFlight;
use crate::clock::Sleeper;

use super::jwk::{parse_key_set, KeySetError, PublicKey};
use super::jwt::Token;
use super::verify::{verify_with_keys, SignatureVerifier};
use super::AuthError;

/// Shortest lifetime given to a fetched set, ms (a `max-age=0` set is not fetched per request).
pub const LIFETIME_FLOOR_MS: u64 = 60_000;
/// Longest lifetime given to a fetched set, ms (keys removed by the provider stop working within
/// a day at most).
pub const LIFETIME_CEILING_MS: u64 = 24 * 3_600_000;
/// Lifetime of a set served without `max-age`, ms.
pub const DEFAULT_LIFETIME_MS: u64 = 10 * 60_000;
/// Timeout of one key set fetch, ms.
pub const FETCH_TIMEOUT_MS: u32 = 3_000;

/// A key set document as the key server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedKeySet {
    /// HTTP status.
    pub status: u16,
    /// The `Cache-Control` header, if any.
    pub cache_control: Option<String>,
    /// The body (the source may stop reading past [`super::jwk::MAX_KEY_SET_BYTES`]).
    pub body: Vec<u8>,
}

/// Why a key set could not be had.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeySourceError {
    /// The key server could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It did not answer within [`FETCH_TIMEOUT_MS`].
    #[error("timed out")]
    Timeout,
    /// It answered with a status other than 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// It answered with something that is not a usable key set.
    #[error("{0}")]
    Invalid(#[from] KeySetError),
}

/// A future fetching one key set.
pub type FetchFuture<'a> = LocalBoxFuture<'a, Result<FetchedKeySet, KeySourceError>>;

/// Where key sets come from: one GET of a URL, and the timers waiting for one run on. Need not
/// be `Send`.
pub trait KeySource {
    /// Fetches the document at `url`.
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a>;

    /// Resolves after `ms` milliseconds.
    fn sleep(&self, ms: u32) -> LocalBoxFuture<'_, ()>;
}

/// A key source's timers as a [`Sleeper`].
struct SourceTimers<'a>(&'a dyn KeySource);

impl Sleeper for SourceTimers<'_> {
    async fn sleep(&self, ms: u32) {
        self.0.sleep(ms).await;
    }
}

/// How long a set answered with `cache_control` stays fresh, ms: its `max-age` (`s-maxage` is for
/// shared caches, and this one is private), clamped; `no-store`/`no-cache` count as zero.
pub fn lifetime_ms(cache_control: Option<&str>) -> u64 {
    let Some(header) = cache_control else { return DEFAULT_LIFETIME_MS };
    let mut max_age: Option<u64> = None;
    for directive in header.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return LIFETIME_FLOOR_MS,
            "max-age" => {
                max_age = value.trim().trim_matches('"').parse::<u64>().ok().or(Some(0));
            }
            _ => {}
        }
    }
    match max_age {
        Some(s) => s.saturating_mul(1000).clamp(LIFETIME_FLOOR_MS, LIFETIME_CEILING_MS),
        None => DEFAULT_LIFETIME_MS,
    }
}

/// What one key set URL is known to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetState {
    url: String,
    keys: Vec<Rc<PublicKey>>,
    /// Until when the keys are fresh, ms since the epoch (0: never fetched).
    fresh_until_ms: u64,
    /// When the last fetch started, ms.
    last_attempt_ms: Option<u64>,
    /// Whether any fetch has ever succeeded.
    fetched: bool,
    /// How the last fetch failed, if it did.
    last_error: Option<KeySourceError>,
}

impl KeySetState {
    /// A set not fetched yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            keys: Vec::new(),
            fresh_until_ms: 0,
            last_attempt_ms: None,
            fetched: false,
            last_error: None,
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The keys known.
    pub fn keys(&self) -> &[Rc<PublicKey>] {
        &self.keys
    }

    /// Whether a fetch has ever succeeded.
    pub fn fetched(&self) -> bool {
        self.fetched
    }

    /// How the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<&KeySourceError> {
        self.last_error.as_ref()
    }

    /// Whether to fetch now, at `now_ms`, for a token whose key is `unknown` (or not): always
    /// for a set never tried; else only once `interval_ms` has passed since the last try, and
    /// then if the set is stale or the key is unknown.
    pub fn fetch_due(&self, now_ms: u64, unknown: bool, interval_ms: u64) -> bool {
        match self.last_attempt_ms {
            None => true,
            Some(last) if now_ms.saturating_sub(last) < interval_ms => false,
            Some(_) => unknown || now_ms >= self.fresh_until_ms,
        }
    }

    /// Notes that a fetch starts at `now_ms`.
    pub fn begin(&mut self, now_ms: u64) {
        self.last_attempt_ms = Some(now_ms);
    }

    /// Takes in the outcome of the fetch begun at `started_ms`: new keys and lifetime, or an
    /// error that keeps the keys already known.
    pub fn record(&mut self, outcome: Result<FetchedKeySet, KeySourceError>, started_ms: u64) {
        let parsed = outcome.and_then(|doc| {
            if !(200..300).contains(&doc.status) {
                return Err(KeySourceError::Status(doc.status));
            }
            let keys = parse_key_set(&doc.body)?;
            Ok((keys, lifetime_ms(doc.cache_control.as_deref())))
        });
        match parsed {
            Ok((keys, lifetime)) => {
                self.keys = keys.into_iter().map(Rc::new).collect();
                self.fresh_until_ms = started_ms.saturating_add(lifetime);
                self.fetched = true;
                self.last_error = None;
            }
            Err(e) => self.last_error = Some(e),
        }
    }
}

/// The keys among `sets` a token may be checked with: those with its `kid` when it names one,
/// else every key; in both cases only keys whose type verifies its `alg`. `Err(KeyMismatch)` when
/// the `kid` is known but only for keys of another type.
pub fn candidates<'s>(
    sets: impl IntoIterator<Item = &'s KeySetState>,
    token: &Token<'_>,
) -> Result<Vec<Rc<PublicKey>>, AuthError> {
    let named: Vec<&Rc<PublicKey>> =
        sets.into_iter().flat_map(|s| s.keys.iter()).filter(|k| token.kid.is_none() || k.kid == token.kid).collect();
    let fitting: Vec<Rc<PublicKey>> = named.iter().filter(|k| k.fits(token.alg)).map(|k| Rc::clone(k)).collect();
    if fitting.is_empty() && token.kid.is_some() && !named.is_empty() {
        return Err(AuthError::KeyMismatch);
    }
    Ok(fitting)
}

/// A summary of one set for health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetStatus {
    /// The URL.
    pub url: String,
    /// Keys known.
    pub keys: usize,
    /// Whether a fetch has ever succeeded.
    pub fetched: bool,
    /// How the last fetch failed, if it did.
    pub last_error: Option<String>,
}

/// The isolate's key sets, their fetches and the signature checks against them.
pub struct KeySets {
    states: Vec<RefCell<KeySetState>>,
    flights: SingleFlight<usize, ()>,
    source: Rc<dyn KeySource>,
    verifier: Rc<dyn SignatureVerifier>,
    interval_ms: u64,
}

impl KeySets {
    /// Key sets at `urls`, fetched through `source`, at most once per `interval_ms` each.
    pub fn new(
        urls: &[String],
        source: Rc<dyn KeySource>,
        verifier: Rc<dyn SignatureVerifier>,
        interval_ms: u64,
    ) -> Self {
        let states = urls.iter().map(|u| RefCell::new(KeySetState::new(u.clone()))).collect();
        Self { states, flights: SingleFlight::new(), source, verifier, interval_ms }
    }

    /// Checks `token`'s signature at `now_ms`, fetching the sets first where due.
    pub async fn verify(&self, token: &Token<'_>, now_ms: u64) -> Result<(), AuthError> {
        let known = self.candidates(token)?;
        let unknown = known.is_empty();
        let due: Vec<usize> = (0..self.states.len())
            .filter(|i| {
                self.flights.in_flight(i) || self.states[*i].borrow().fetch_due(now_ms, unknown, self.interval_ms)
            })
            .collect();
        let keys = if due.is_empty() {
            known
        } else {
            join_all(due.into_iter().map(|i| self.fetch(i, now_ms))).await;
            self.candidates(token)?
        };
        if keys.is_empty() {
            let none_fetched = self.states.iter().all(|s| !s.borrow().fetched());
            return Err(if none_fetched { AuthError::KeysUnavailable } else { AuthError::UnknownSigningKey });
        }
        verify_with_keys(self.verifier.as_ref(), token, &keys).await
    }

    /// Each set's state, for health.
    pub fn status(&self) -> Vec<KeySetStatus> {
        self.states
            .iter()
            .map(|s| {
                let state = s.borrow();
                KeySetStatus {
                    url: state.url().to_owned(),
                    keys: state.keys().len(),
                    fetched: state.fetched(),
                    last_error: state.last_error().map(ToString::to_string),
                }
            })
            .collect()
    }

    fn candidates(&self, token: &Token<'_>) -> Result<Vec<Rc<PublicKey>>, AuthError> {
        let states: Vec<std::cell::Ref<'_, KeySetState>> = self.states.iter().map(RefCell::borrow).collect();
        candidates(states.iter().map(|s| &**s), token)
    }

    /// Fetches set `i`, or waits for the fetch of it already in flight.
    async fn fetch(&self, i: usize, now_ms: u64) {
        let Some(state) = self.states.get(i) else { return };
        let lead = || async move {
            state.borrow_mut().begin(now_ms);
            let url = state.borrow().url().to_owned();
            let outcome = self.source.fetch(&url).await;
            state.borrow_mut().record(outcome, now_ms);
        };
        self.flights.run(i, lead, &SourceTimers(self.source.as_ref())).await;
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::cell::Cell;

    use serde_json::{json, Value};

    use super::*;
    use crate::identity::verify::native::{RingVerifier, TestKey};

    const T0: u64 = 1_700_000_000_000;
    const INTERVAL: u64 = 30_000;

    fn doc(keys: &[&TestKey], cache_control: Option<&str>) -> FetchedKeySet {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
        FetchedKeySet {
            status: 200,
            cache_control: cache_control.map(str::to_owned),
            body: json!({ "keys": keys }).to_string().into_bytes(),
        }
    }

    #[test]
    fn lifetimes_follow_max_age_within_floor_and_ceiling() {
        assert_eq!(lifetime_ms(Some("public, max-age=600")), 600_000);
        assert_eq!(lifetime_ms(Some("max-age=\"120\", must-revalidate")), 120_000);
        assert_eq!(lifetime_ms(Some("max-age=1")), LIFETIME_FLOOR_MS);
        assert_eq!(lifetime_ms(Some("max-age=0")), LIFETIME_FLOOR_MS);
        assert_eq!(lifetime_ms(Some("no-store")), LIFETIME_FLOOR_MS);
        assert_eq!(lifetime_ms(Some("Max-Age=99999999999")), LIFETIME_CEILING_MS);
        assert_eq!(lifetime_ms(Some("max-age=soon")), LIFETIME_FLOOR_MS);
        assert_eq!(lifetime_ms(Some("public")), DEFAULT_LIFETIME_MS);
        assert_eq!(lifetime_ms(None), DEFAULT_LIFETIME_MS);
    }

    #[test]
    fn a_set_is_fetched_first_then_only_when_stale_or_a_kid_is_unknown() {
        let mut s = KeySetState::new("https://a.example/jwks.json");
        assert!(s.fetch_due(T0, false, INTERVAL));
        s.begin(T0);
        s.record(Ok(doc(&[&TestKey::eddsa("a")], Some("max-age=300"))), T0);
        assert!(s.fetched() && s.keys().len() == 1);
        // Fresh, key known: never.
        assert!(!s.fetch_due(T0 + 299_000, false, INTERVAL));
        // Stale: yes.
        assert!(s.fetch_due(T0 + 300_000, false, INTERVAL));
        // Unknown kid: once the interval has passed since the last try.
        assert!(!s.fetch_due(T0 + INTERVAL - 1, true, INTERVAL));
        assert!(s.fetch_due(T0 + INTERVAL, true, INTERVAL));
    }

    #[test]
    fn an_outage_keeps_the_known_keys_and_retries_once_per_interval() {
        let mut s = KeySetState::new("u");
        s.begin(T0);
        s.record(Ok(doc(&[&TestKey::eddsa("a")], Some("max-age=60"))), T0);
        let later = T0 + 61_000;
        assert!(s.fetch_due(later, false, INTERVAL));
        for failure in [
            Err(KeySourceError::Timeout),
            Err(KeySourceError::Unreachable("refused".into())),
            Ok(FetchedKeySet { status: 503, cache_control: None, body: Vec::new() }),
            Ok(FetchedKeySet { status: 200, cache_control: None, body: b"<html>".to_vec() }),
        ] {
            s.begin(later);
            s.record(failure, later);
            assert_eq!(s.keys().len(), 1, "keys kept");
            assert!(s.last_error().is_some());
            assert!(!s.fetch_due(later + INTERVAL - 1, false, INTERVAL));
            assert!(s.fetch_due(later + INTERVAL, false, INTERVAL));
        }
        assert_eq!(s.last_error(), Some(&KeySourceError::Invalid(KeySetError::NotAKeySet)));
        s.record(Ok(doc(&[], None)), later);
        assert!(s.keys().is_empty() && s.last_error().is_none(), "a good answer replaces the keys");
    }

    fn token_of(text: &str) -> Token<'_> {
        Token::parse(text).unwrap()
    }

    #[test]
    fn candidates_are_chosen_by_kid_and_key_type() {
        let (ec, ed, rsa) = (TestKey::es256("ec"), TestKey::eddsa("ed"), TestKey::rs256("rsa"));
        let mut a = KeySetState::new("a");
        a.record(Ok(doc(&[&ec, &ed], None)), T0);
        let mut b = KeySetState::new("b");
        b.record(Ok(doc(&[&rsa], None)), T0);
        let sets = [a, b];
        let kids = |t: &str| -> Result<Vec<Option<String>>, AuthError> {
            Ok(candidates(&sets, &token_of(t))?.iter().map(|k| k.kid.clone()).collect())
        };
        let claims = json!({"sub": "u1"});
        assert_eq!(kids(&rsa.sign(&claims)), Ok(vec![Some("rsa".into())]));
        assert_eq!(kids(&ed.sign(&claims)), Ok(vec![Some("ed".into())]));
        // No kid: every key of the right type.
        assert_eq!(kids(&ec.sign_with_header(&json!({"alg": "ES256"}), &claims)), Ok(vec![Some("ec".into())]));
        // A kid nobody has: none.
        assert_eq!(kids(&ec.sign_with_header(&json!({"alg": "ES256", "kid": "zz"}), &claims)), Ok(vec![]));
        // The EC key's kid with an RS256 header: algorithm confusion.
        let confused = rsa.sign_with_header(&json!({"alg": "RS256", "kid": "ec"}), &claims);
        assert_eq!(kids(&confused), Err(AuthError::KeyMismatch));
    }

    /// A key server whose documents and availability a test changes, counting fetches.
    struct FakeSource {
        doc: RefCell<Result<FetchedKeySet, KeySourceError>>,
        fetches: Cell<usize>,
    }

    impl FakeSource {
        fn new(keys: &[&TestKey]) -> Rc<Self> {
            Rc::new(Self { doc: RefCell::new(Ok(doc(keys, Some("max-age=600")))), fetches: Cell::new(0) })
        }
    }

    impl KeySource for FakeSource {
        fn fetch<'a>(&'a self, _url: &'a str) -> FetchFuture<'a> {
            self.fetches.set(self.fetches.get() + 1);
            let doc = self.doc.borrow().clone();
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                doc
            })
        }

        fn sleep(&self, ms: u32) -> LocalBoxFuture<'_, ()> {
            Box::pin(tokio::time::sleep(std::time::Duration::from_millis(u64::from(ms))))
        }
    }

    fn key_sets(source: &Rc<FakeSource>) -> KeySets {
        KeySets::new(&["https://auth.example/jwks.json".to_owned()], source.clone(), Rc::new(RingVerifier), INTERVAL)
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_then_served_from_the_isolate() {
        let key = TestKey::es256("k1");
        let source = FakeSource::new(&[&key]);
        let sets = key_sets(&source);
        let token = key.sign(&json!({"sub": "u1"}));
        for i in 0..5 {
            assert_eq!(sets.verify(&token_of(&token), T0 + i * 1000).await, Ok(()));
        }
        assert_eq!(source.fetches.get(), 1);
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_fetch() {
        let key = TestKey::eddsa("k1");
        let source = FakeSource::new(&[&key]);
        let sets = key_sets(&source);
        let token = key.sign(&json!({"sub": "u1"}));
        let parsed = token_of(&token);
        let all = join_all((0..20).map(|_| sets.verify(&parsed, T0))).await;
        assert!(all.iter().all(|r| r == &Ok(())), "{all:?}");
        assert_eq!(source.fetches.get(), 1);
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_by_refetching_on_its_unknown_kid() {
        let (old, new) = (TestKey::rs256("old"), TestKey::es256("new"));
        let source = FakeSource::new(&[&old]);
        let sets = key_sets(&source);
        assert_eq!(sets.verify(&token_of(&old.sign(&json!({"sub": "u"}))), T0).await, Ok(()));
        *source.doc.borrow_mut() = Ok(doc(&[&new, &old], Some("max-age=600")));
        let rotated = new.sign(&json!({"sub": "u"}));
        // Within the interval of the first fetch, the new kid is not looked for yet.
        assert_eq!(sets.verify(&token_of(&rotated), T0 + 1_000).await, Err(AuthError::UnknownSigningKey));
        assert_eq!(sets.verify(&token_of(&rotated), T0 + INTERVAL).await, Ok(()));
        assert_eq!(source.fetches.get(), 2);
    }

    #[tokio::test]
    async fn a_flood_of_made_up_kids_costs_one_fetch_per_interval() {
        let key = TestKey::es256("real");
        let source = FakeSource::new(&[&key]);
        let sets = key_sets(&source);
        let mut refused = 0;
        for i in 0..1000u64 {
            let t = key.sign_with_header(&json!({"alg": "ES256", "kid": format!("fake-{i}")}), &json!({"sub": "u"}));
            // 1000 tokens over 90 s: the first fetch, then one per 30 s interval.
            if sets.verify(&token_of(&t), T0 + i * 90).await == Err(AuthError::UnknownSigningKey) {
                refused += 1;
            }
        }
        assert_eq!(refused, 1000);
        assert_eq!(source.fetches.get(), 3);
        // The real key still works without another fetch.
        assert_eq!(sets.verify(&token_of(&key.sign(&json!({"sub": "u"}))), T0 + 90_000).await, Ok(()));
        assert_eq!(source.fetches.get(), 3);
    }

    #[tokio::test]
    async fn an_outage_keeps_serving_known_keys() {
        let key = TestKey::eddsa("k");
        let source = FakeSource::new(&[&key]);
        let sets = key_sets(&source);
        let token = key.sign(&json!({"sub": "u"}));
        assert_eq!(sets.verify(&token_of(&token), T0).await, Ok(()));
        *source.doc.borrow_mut() = Err(KeySourceError::Unreachable("connection refused".into()));
        // Stale after 600 s: refetched (fails), the known key still verifies.
        for minute in 10..20 {
            assert_eq!(sets.verify(&token_of(&token), T0 + minute * 60_000).await, Ok(()));
        }
        assert_eq!(source.fetches.get(), 11);
        let status = sets.status();
        assert_eq!((status[0].keys, status[0].fetched), (1, true));
        assert_eq!(status[0].last_error.as_deref(), Some("unreachable: connection refused"));
    }

    #[tokio::test]
    async fn without_any_set_fetched_tokens_are_refused_as_unavailable() {
        let key = TestKey::es256("k");
        let source = FakeSource::new(&[]);
        *source.doc.borrow_mut() = Err(KeySourceError::Timeout);
        let sets = key_sets(&source);
        let token = key.sign(&json!({"sub": "u"}));
        assert_eq!(sets.verify(&token_of(&token), T0).await, Err(AuthError::KeysUnavailable));
        assert_eq!(sets.verify(&token_of(&token), T0 + 1).await, Err(AuthError::KeysUnavailable));
        assert_eq!(source.fetches.get(), 1);
        *source.doc.borrow_mut() = Ok(doc(&[&key], None));
        assert_eq!(sets.verify(&token_of(&token), T0 + INTERVAL).await, Ok(()));
    }

    #[tokio::test]
    async fn keys_from_every_url_count() {
        let (a, b) = (TestKey::es256("a"), TestKey::rs256("b"));
        let (sa, sb) = (FakeSource::new(&[&a]), FakeSource::new(&[&b]));
        struct ByUrl(Rc<FakeSource>, Rc<FakeSource>);
        impl KeySource for ByUrl {
            fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
                if url.contains("one") {
                    self.0.fetch(url)
                } else {
                    self.1.fetch(url)
                }
            }

            fn sleep(&self, ms: u32) -> LocalBoxFuture<'_, ()> {
                self.0.sleep(ms)
            }
        }
        let urls = ["https://one.example/k".to_owned(), "https://two.example/k".to_owned()];
        let sets = KeySets::new(&urls, Rc::new(ByUrl(sa.clone(), sb.clone())), Rc::new(RingVerifier), INTERVAL);
        assert_eq!(sets.verify(&token_of(&a.sign(&json!({"sub": "u"}))), T0).await, Ok(()));
        assert_eq!(sets.verify(&token_of(&b.sign(&json!({"sub": "u"}))), T0).await, Ok(()));
        assert_eq!((sa.fetches.get(), sb.fetches.get()), (1, 1));
    }

    #[tokio::test]
    async fn a_public_key_is_never_an_hmac_secret() {
        // HS256 signed with the published key's bytes: no key in a set fits HS256.
        let key = TestKey::rs256("k");
        let source = FakeSource::new(&[&key]);
        let sets = key_sets(&source);
        let secret = key.jwk().to_string();
        let forged = crate::identity::jwt::sign_hs256(&json!({"sub": "u"}), secret.as_bytes());
        let parsed = token_of(&forged);
        assert_eq!(sets.verify(&parsed, T0).await, Err(AuthError::UnknownSigningKey));
        let with_kid = {
            use base64::Engine;
            let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            let input = format!("{}.{}", b64(json!({"alg": "HS256", "kid": "k"})), b64(json!({"sub": "u"})));
            format!("{input}.{}", forged.rsplit('.').next().unwrap_or_default())
        };
        assert_eq!(sets.verify(&token_of(&with_kid), T0).await, Err(AuthError::KeyMismatch));
    }
}
