//! The cache against a real redis-server behind redis-rest: expiry on everything written, the
//! invalidation scripts and patterns, generations, the fill lock, and the one-request read.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use support::{Resp, Stack};
use tollgate::cache::{
    acquire_command, classify_read, key, lock_acquired, read_command, release_args, release_script, CacheAside,
    CacheDeps, CacheStatus, CacheTarget, InvalidationTarget, IsolateState, LockRelease, Lookup, Origin, OriginError,
    OriginRequest, OriginResponse, Payload, INVALIDATION_CHANNEL,
};
use tollgate::clock::{Sleeper, SystemClock, SystemRandom};
use tollgate::keys::Keys;
use tollgate::policy::{CacheClass, CacheScope, Policy};
use tollgate::redis::{Command, ReqwestTransport};

/// An origin answering `200` with its path in the body, counting calls.
#[derive(Default)]
struct CountingOrigin {
    calls: Cell<u32>,
}

impl Origin for CountingOrigin {
    async fn fetch(&self, req: &OriginRequest) -> Result<OriginResponse, OriginError> {
        self.calls.set(self.calls.get() + 1);
        Ok(OriginResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!("{{\"path\":\"{}\",\"n\":{}}}", req.path_and_query, self.calls.get()).into_bytes(),
        })
    }
}

/// Real timers; only the origin-timeout race uses them here, and the origin always wins it.
struct TokioSleeper;

impl Sleeper for TokioSleeper {
    async fn sleep(&self, ms: u32) {
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
    }
}

type Cache = CacheAside<ReqwestTransport, Rc<CountingOrigin>, TokioSleeper>;

/// One isolate's cache over `stack`.
fn isolate(stack: &Stack, origin: &Rc<CountingOrigin>) -> Cache {
    let policy = Policy::default();
    let deps = CacheDeps {
        redis: stack.client(),
        origin: Rc::clone(origin),
        sleeper: TokioSleeper,
        clock: Rc::new(SystemClock),
        random: Rc::new(SystemRandom),
        keys: Keys::default(),
        settings: policy.cache.clone(),
    };
    CacheAside::new(deps, Rc::new(IsolateState::new(&policy.cache)))
}

fn class(name: &str) -> CacheClass {
    Policy::default().cache_class(name).cloned().expect("default class")
}

fn target(ns: &str, key: &str, tags: &[&str]) -> CacheTarget {
    CacheTarget {
        route: ns.to_owned(),
        ns: ns.to_owned(),
        key: key.to_owned(),
        class: class("STATIC_CONFIG"),
        scope: CacheScope::Global,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn get(path: &str) -> OriginRequest {
    OriginRequest { method: "GET".into(), path_and_query: path.to_owned(), ..Default::default() }
}

async fn load(cache: &Cache, t: &CacheTarget) -> CacheStatus {
    cache.get_or_load(t, get(&format!("/{}/{}", t.ns, t.key))).await.expect("served").status
}

/// Every key in the server, by SCAN.
fn all_keys(stack: &Stack) -> Vec<String> {
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    loop {
        let Resp::Array(Some(parts)) = stack.redis(&["SCAN", &cursor, "COUNT", "1000"]) else { panic!("SCAN reply") };
        let [Resp::Bulk(Some(next)), Resp::Array(Some(found))] = parts.as_slice() else { panic!("SCAN parts") };
        keys.extend(found.iter().map(|k| match k {
            Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("key {other:?}"),
        }));
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            keys.sort();
            return keys;
        }
    }
}

fn pttl(stack: &Stack, key: &str) -> i64 {
    match stack.redis(&["PTTL", key]) {
        Resp::Int(n) => n,
        other => panic!("PTTL {other:?}"),
    }
}

fn exists(stack: &Stack, key: &str) -> bool {
    stack.redis(&["EXISTS", key]) == Resp::Int(1)
}

#[tokio::test]
async fn every_key_the_cache_writes_has_an_expiry() {
    let stack = Stack::start().await;
    let origin = Rc::new(CountingOrigin::default());
    let cache = isolate(&stack, &origin);
    let rag =
        CacheTarget { class: class("FREQUENT_DATA"), ..target("rag", &key::json_body_key(b"{\"q\":1}").unwrap(), &[]) };
    for t in [target("config", "app", &["config"]), target("config", "billing", &["config", "billing"]), rag] {
        assert_eq!(load(&cache, &t).await, CacheStatus::Miss);
    }
    cache.invalidate(&InvalidationTarget::Namespace("other".into()), &Policy::default().cache_classes).await.unwrap();
    let keys = all_keys(&stack);
    // 3 entries, 2 tag sets, 1 generation; no lock left behind.
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains(":lock:")), "{keys:?}");
    for k in &keys {
        assert!(pttl(&stack, k) > 0, "{k} has no expiry");
    }
    // An entry lives its fresh TTL (±10%) plus the stale window.
    let static_config = class("STATIC_CONFIG");
    let entry_ttl = pttl(&stack, &Keys::default().cache_entry("config", "app")) as f64;
    let (ttl, stale) = (static_config.ttl_ms.get() as f64, static_config.stale_ms as f64);
    assert!(entry_ttl > ttl * 0.9 + stale - 60_000.0 && entry_ttl <= ttl * 1.1 + stale, "{entry_ttl}");
    // The tag set lives as long as its longest-lived member.
    assert!(
        pttl(&stack, &Keys::default().cache_tag("config"))
            >= pttl(&stack, &Keys::default().cache_entry("config", "billing")) - 1_000
    );
}

#[tokio::test]
async fn the_cache_read_shares_one_request_with_other_commands() {
    let stack = Stack::start().await;
    let origin = Rc::new(CountingOrigin::default());
    let t = target("config", "app", &["config"]);
    assert_eq!(load(&isolate(&stack, &origin), &t).await, CacheStatus::Miss);
    let client = stack.client();
    stack.reset_stats().await;
    let replies =
        client.pipeline(vec![Command::new("PING"), read_command(&Keys::default(), "config", "app")]).await.unwrap();
    let now = tollgate::clock::Clock::now_ms(&SystemClock);
    let lookup = classify_read(replies[1].as_ref().unwrap(), now);
    let Lookup::Fresh(entry) = lookup else { panic!("expected a fresh entry, got {lookup:?}") };
    assert_eq!(entry.body, br#"{"path":"/config/app","n":1}"#);
    let stats = stack.stats().await;
    assert_eq!(stats.http_requests, 1);
    assert_eq!(stats.command("MGET"), 1);
}

#[tokio::test]
async fn tag_invalidation_deletes_exactly_the_tagged_entries() {
    let stack = Stack::start().await;
    let origin = Rc::new(CountingOrigin::default());
    let cache = isolate(&stack, &origin);
    let tagged = [target("config", "app", &["config"]), target("config", "billing", &["config", "billing"])];
    let untagged = [target("config", "plain", &[]), target("docs", "intro", &["docs"])];
    for t in tagged.iter().chain(&untagged) {
        load(&cache, t).await;
    }
    // A damaged tag set naming a key outside the cache must not reach it.
    let outsider = "factory:ratelimit:v1:{someone}:tier-basic-1h";
    stack.redis(&["SET", outsider, "5", "PX", "60000"]);
    stack.redis(&["SADD", &Keys::default().cache_tag("config"), outsider]);
    stack.reset_stats().await;

    let done = cache.invalidate(&InvalidationTarget::Tag("config".into()), &[]).await.unwrap();
    assert_eq!((done.kind, done.deleted), ("tag", 2));
    assert!(done.published);
    let keys = Keys::default();
    for t in &tagged {
        assert!(!exists(&stack, &t.entry_key(&keys)), "{} survived", t.key);
    }
    for t in &untagged {
        assert!(exists(&stack, &t.entry_key(&keys)), "{} was deleted", t.key);
    }
    assert!(exists(&stack, outsider));
    assert!(!exists(&stack, &keys.cache_tag("config")));
    assert_eq!(stack.stats().await.command("PUBLISH"), 1);
    // A tagged entry is a miss now, even in the isolate that held it.
    assert_eq!(load(&cache, &tagged[0]).await, CacheStatus::Miss);
}

#[tokio::test]
async fn pattern_invalidation_matches_names_and_literal_stars() {
    let stack = Stack::start().await;
    let origin = Rc::new(CountingOrigin::default());
    let cache = isolate(&stack, &origin);
    let keys = Keys::default();
    let names = ["feature*flags", "feature*x", "featureA", "app"];
    for name in names {
        load(&cache, &target("config", name, &[])).await;
    }
    // Namespaces with glob characters are matched literally.
    load(&cache, &target("config*", "feature*flags", &[])).await;
    load(&cache, &target("confi?", "app", &[])).await;

    let literal = InvalidationTarget::Pattern { ns: "config".into(), pattern: "feature\\**".into() };
    assert_eq!(cache.invalidate(&literal, &[]).await.unwrap().deleted, 2);
    let left: Vec<bool> = names.iter().map(|n| exists(&stack, &keys.cache_entry("config", n))).collect();
    assert_eq!(left, [false, false, true, true]);

    let everything = InvalidationTarget::Pattern { ns: "config".into(), pattern: "*".into() };
    assert_eq!(cache.invalidate(&everything, &[]).await.unwrap().deleted, 2);
    assert!(exists(&stack, &keys.cache_entry("config*", "feature*flags")));
    assert!(exists(&stack, &keys.cache_entry("confi?", "app")));

    let exact = InvalidationTarget::Key { ns: "config*".into(), key: "feature*flags".into() };
    assert_eq!(cache.invalidate(&exact, &[]).await.unwrap().deleted, 1);
    assert_eq!(cache.invalidate(&exact, &[]).await.unwrap().deleted, 0);
}

#[tokio::test]
async fn a_namespace_bump_makes_every_entry_a_miss() {
    let stack = Stack::start().await;
    let origin = Rc::new(CountingOrigin::default());
    let classes = Policy::default().cache_classes;
    let (a, b) = (target("config", "app", &[]), target("config", "billing", &[]));
    let first = isolate(&stack, &origin);
    load(&first, &a).await;
    load(&first, &b).await;
    assert_eq!(load(&isolate(&stack, &origin), &a).await, CacheStatus::Hit);

    let bump = first.invalidate(&InvalidationTarget::Namespace("config".into()), &classes).await.unwrap();
    let generation = bump.generation.expect("a generation");
    let gen_key = Keys::default().cache_generation("config");
    assert!(pttl(&stack, &gen_key) > 0);
    assert!(exists(&stack, &a.entry_key(&Keys::default())), "entries stay until they expire");

    let second = isolate(&stack, &origin);
    assert_eq!(load(&second, &a).await, CacheStatus::Miss);
    assert_eq!(load(&second, &b).await, CacheStatus::Miss);
    assert_eq!(origin.calls.get(), 4);
    assert_eq!(load(&isolate(&stack, &origin), &a).await, CacheStatus::Hit, "refills carry the new generation");

    let again = first.invalidate(&InvalidationTarget::Namespace("config".into()), &classes).await.unwrap();
    assert!(again.generation.unwrap() > generation);
    // Another namespace is untouched.
    let other = target("docs", "intro", &[]);
    load(&second, &other).await;
    assert_eq!(load(&isolate(&stack, &origin), &other).await, CacheStatus::Hit);
}

#[tokio::test]
async fn the_fill_lock_is_released_only_by_its_owner() {
    let stack = Stack::start().await;
    let client = stack.client();
    let lock = tollgate::cache::lock_key(&Keys::default(), &Keys::default().cache_entry("config", "app"));
    assert!(lock_acquired(&client.command(acquire_command(&lock, "owner-a", 60_000)).await.unwrap()));
    assert!(!lock_acquired(&client.command(acquire_command(&lock, "owner-b", 60_000)).await.unwrap()));
    assert!(pttl(&stack, &lock) > 0);

    let release = |token: &'static str| {
        let client = client.clone();
        let lock = lock.clone();
        async move {
            let (keys, args) = release_args(&lock, token);
            LockRelease::from_reply(&client.eval(release_script(), &keys, &args).await.unwrap()).unwrap()
        }
    };
    assert_eq!(release("owner-b").await, LockRelease::NotOwner);
    assert_eq!(stack.redis(&["GET", &lock]), Resp::Bulk(Some(b"owner-a".to_vec())));
    assert_eq!(release("owner-a").await, LockRelease::Released);
    assert!(!exists(&stack, &lock));

    // A's lock expired and B took it: A's late release leaves B's alone.
    assert!(lock_acquired(&client.command(acquire_command(&lock, "owner-b", 60_000)).await.unwrap()));
    assert_eq!(release("owner-a").await, LockRelease::NotOwner);
    assert_eq!(stack.redis(&["GET", &lock]), Resp::Bulk(Some(b"owner-b".to_vec())));
}

#[tokio::test]
async fn with_redis_down_requests_bypass_the_cache() {
    let mut stack = Stack::start().await;
    let origin = Rc::new(CountingOrigin::default());
    let t = target("config", "app", &[]);
    stack.stop_redis();
    let cache = isolate(&stack, &origin);
    let served = cache.get_or_load(&t, get("/config/app")).await.expect("the origin answers");
    assert_eq!(served.status, CacheStatus::Bypass);
    assert!(matches!(served.payload, Payload::Passthrough(ref r) if r.status == 200));
    stack.start_redis();
    assert_eq!(load(&cache, &t).await, CacheStatus::Miss, "the cache resumes when Redis is back");
    assert_eq!(INVALIDATION_CHANNEL, "system:cache_invalidation");
}
