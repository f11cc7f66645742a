//! `check.lua`, `settle.lua` and `release.lua` against their Rust models on a real Redis (through
//! `redis-rest`): random limit sets (request and token units, enforced and shadow, with warning
//! fractions, with and without a concurrency slot) and random sequences of checks, settlements
//! and releases must give identical decisions, remaining units, reset times, leases, shadow
//! denials, warnings and reservations in flight (the set's members, deadlines and expiry); plus the scripts' contracts (overrides, peek, TTLs, NOSCRIPT after a
//! flush, one command per check, warnings published once).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::cell::Cell;
use std::num::{NonZeroU32, NonZeroU64};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use tollgate::keys::Keys;
use tollgate::limiter::{
    check_key_script, check_script, parse_key_reply, parse_reply, parse_settle_reply, release_script, settle_script,
    Check, Decision, KeyCheck, KeyChecked, MemoryLimiter, Mode, Override, Release, Reservation, Settlement, Slot,
    Warning,
};
use tollgate::policy::{Algorithm, ConcurrencyRule, Limit, LimitMode, Tier, Unit, WarnAt};
use tollgate::redis::{Client, Entry, Reply, ReqwestTransport};

use support::{Resp, Stack};

const HOUR: u64 = 3_600_000;

fn limit(id: &str, algorithm: Algorithm, limit: u32, window_ms: u64) -> Limit {
    Limit::requests(
        id,
        algorithm,
        NonZeroU32::new(limit).expect("non-zero limit"),
        NonZeroU64::new(window_ms).expect("non-zero window"),
    )
}

fn tokens() -> Unit {
    Unit::parse("tokens").expect("unit")
}

fn check<'a>(subject: &'a str, tier: &'a [Limit], route: &'a [Limit], cost: u32, mode: Mode) -> Check<'a> {
    Check {
        subject_hash: subject,
        tier_limits: tier,
        route_limits: route,
        cost: NonZeroU32::new(cost).expect("non-zero cost"),
        mode,
        usage: None,
        concurrency: None,
    }
}

/// Runs a check on Redis, at Redis `TIME`.
async fn run(client: &Client<ReqwestTransport>, keys: &Keys, c: &Check<'_>) -> Decision {
    c.run(client, keys).await.expect("check runs")
}

/// Runs a check on Redis at a given time (the script's test-only `now_ms` override).
async fn run_at(client: &Client<ReqwestTransport>, keys: &Keys, c: &Check<'_>, now_ms: u64) -> Decision {
    let call = c.command_at(keys, now_ms).expect("valid check");
    let reply = client.eval(check_script(), &call.keys, &call.args).await.expect("script runs");
    parse_reply(&reply).expect("well-formed reply")
}

fn pttl(stack: &Stack, key: &str) -> i64 {
    match stack.redis(&["PTTL", key]) {
        Resp::Int(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    }
}

/// The reservations in flight Redis holds for `subject`: (member, deadline) in member order, and
/// the set's absolute expiry (Unix ms; `None` without the key).
fn reservations_in_redis(stack: &Stack, keys: &Keys, subject: &str) -> (Vec<(String, u64)>, Option<u64>) {
    let key = keys.limit_reservations(subject);
    let text = |r: &Resp| match r {
        Resp::Bulk(Some(b)) => String::from_utf8(b.clone()).expect("UTF-8"),
        other => panic!("ZRANGE item: {other:?}"),
    };
    let mut records: Vec<(String, u64)> = match stack.redis(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]) {
        Resp::Array(Some(items)) => {
            items.chunks(2).map(|p| (text(&p[0]), text(&p[1]).parse().expect("integer score"))).collect()
        }
        other => panic!("ZRANGE: {other:?}"),
    };
    records.sort();
    let expiry = match stack.redis(&["PEXPIRETIME", &key]) {
        Resp::Int(-2) => None,
        Resp::Int(at) => Some(u64::try_from(at).expect("a key with an expiry")),
        other => panic!("PEXPIRETIME: {other:?}"),
    };
    (records, expiry)
}

fn subject_keys(stack: &Stack, keys: &Keys, subject: &str) -> Vec<String> {
    match stack.redis(&["KEYS", &keys.limit_subject_pattern(subject)]) {
        Resp::Array(Some(items)) => items
            .into_iter()
            .filter_map(|r| match r {
                Resp::Bulk(Some(b)) => String::from_utf8(b).ok(),
                _ => None,
            })
            .collect(),
        other => panic!("KEYS: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The property: script == model.

/// One limit of a generated case: algorithm, units, window, counts tokens, shadow, warn fractions (ppm).
type LimitSpec = (Algorithm, u32, u64, bool, bool, Vec<u32>);

#[derive(Debug, Clone)]
enum Op {
    /// A check of `cost` requests (and the case's reservation), or a peek.
    Check { cost: u32, peek: bool },
    /// Settles the latest allowed reservation at `actual` tokens.
    Settle { actual: u32 },
    /// Releases one of the leases taken so far.
    Release { which: prop::sample::Index },
}

#[derive(Debug, Clone)]
struct Step {
    /// Milliseconds since the previous step.
    dt: u64,
    op: Op,
}

#[derive(Debug, Clone)]
struct Case {
    /// The first `n_tier` are tier limits, the rest route limits.
    limits: Vec<LimitSpec>,
    n_tier: usize,
    /// Whether the first route limit shares the first tier limit's id (and so its key).
    share: bool,
    /// Limits of an override set before the first step, if any, and the prefix of their ids
    /// (`o` own keys, `t` the tier limits' keys, `r` clashing or merging with route limits).
    override_limits: Option<(Vec<LimitSpec>, &'static str)>,
    /// The route's token reservation, if it reports tokens.
    reserve: Option<u32>,
    /// The route's concurrency slot: limit, lease ms, shadow.
    slot: Option<(u32, u64, bool)>,
    /// Start time; far in the future so no key expires in real time during the run.
    start_ms: u64,
    steps: Vec<Step>,
}

fn limit_spec() -> impl Strategy<Value = LimitSpec> {
    let algorithm = prop_oneof![
        Just(Algorithm::FixedWindow),
        Just(Algorithm::SlidingWindow),
        Just(Algorithm::TokenBucket),
        Just(Algorithm::Gcra)
    ];
    let window = prop_oneof![1u64..=10, 11u64..=1_000, 1_001u64..=7_000];
    let warn = prop::option::weighted(0.3, prop::collection::btree_set(1u32..=1_000_000, 1..=3));
    (algorithm, 1u32..=6, window, prop::bool::weighted(0.5), prop::bool::weighted(0.2), warn).prop_map(
        |(algorithm, units, window, tokens, shadow, warn)| {
            // Token limits are settled, which only the window algorithms do; give them room.
            let (algorithm, units) = match (tokens, algorithm) {
                (true, Algorithm::TokenBucket) => (Algorithm::FixedWindow, units * 10),
                (true, Algorithm::Gcra) => (Algorithm::SlidingWindow, units * 10),
                (true, a) => (a, units * 10),
                (false, a) => (a, units),
            };
            (algorithm, units, window, tokens, shadow, warn.map(|w| w.into_iter().collect()).unwrap_or_default())
        },
    )
}

fn step() -> impl Strategy<Value = Step> {
    let dt = prop_oneof![Just(0u64), 1u64..=20, 0u64..=2_000, 0u64..=15_000];
    let op = prop_oneof![
        6 => (1u32..=7, prop::bool::weighted(0.2)).prop_map(|(cost, peek)| Op::Check { cost, peek }),
        2 => (0u32..=40).prop_map(|actual| Op::Settle { actual }),
        2 => any::<prop::sample::Index>().prop_map(|which| Op::Release { which }),
    ];
    (dt, op).prop_map(|(dt, op)| Step { dt, op })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(limit_spec(), 1..=3),
        any::<prop::sample::Index>(),
        prop::bool::weighted(0.2),
        prop::option::weighted(
            0.3,
            (prop::collection::vec(limit_spec(), 0..=2), prop::sample::select(vec!["o", "t", "r"])),
        ),
        prop::option::weighted(0.5, 1u32..=20),
        prop::option::weighted(0.4, (1u32..=3, prop_oneof![1u64..=50, 51u64..=20_000], prop::bool::weighted(0.3))),
        0u64..10_000_000,
        prop::collection::vec(step(), 1..=30),
    )
        .prop_map(|(limits, split, share, override_limits, reserve, slot, offset, steps)| Case {
            n_tier: split.index(limits.len() + 1),
            limits,
            share,
            // Overrides hold request limits only.
            override_limits: override_limits.map(|(specs, p)| {
                (specs.into_iter().map(|(a, l, w, _, _, _)| (a, l, w, false, false, Vec::new())).collect(), p)
            }),
            reserve,
            slot,
            // Year 2096, below the 2^42 ms the script's exact math assumes.
            start_ms: 4_000_000_000_000 + offset,
            steps,
        })
}

fn spec_limit(id: &str, (a, l, w, tokens_unit, shadow, warn): &LimitSpec) -> Limit {
    let mut out = limit(id, *a, *l, *w);
    if *tokens_unit {
        out.unit = tokens();
    }
    if *shadow {
        out.mode = LimitMode::Shadow;
    }
    out.warn_at = warn.iter().filter_map(|ppm| WarnAt::from_ppm(*ppm)).collect();
    out
}

/// Counts of what the property exercised, printed at the end.
#[derive(Debug, Default)]
struct Seen {
    checks: u64,
    denied_by_slot: u64,
    shadow_denials: u64,
    warnings: u64,
    settles: u64,
    releases: u64,
    /// Reservations recorded in flight by a check, removed by a settlement, and dropped as
    /// expired when a later one was recorded.
    recorded: u64,
    removed: u64,
    expired: u64,
}

#[test]
fn the_scripts_decide_exactly_as_the_rust_models() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let stack = rt.block_on(Stack::start());
    let client = stack.client();
    let keys = Keys::new("prop");
    let counter = Cell::new(0u64);
    let seen = std::cell::RefCell::new(Seen::default());
    let unit = tokens();

    // 256 cases by default (a few seconds); PROPTEST_CASES asks for more.
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { Config::default().cases } else { 256 };
    let mut runner = TestRunner::new(Config { cases, source_file: Some(file!()), ..Config::default() });
    let result = runner.run(&case(), |case| {
        counter.set(counter.get() + 1);
        let subject = format!("case{}", counter.get());
        let named = |prefix: &str, specs: &[LimitSpec]| -> Vec<Limit> {
            specs.iter().enumerate().map(|(i, spec)| spec_limit(&format!("{prefix}{i}"), spec)).collect()
        };
        let tier = named("t", &case.limits[..case.n_tier]);
        let mut route = named("r", &case.limits[case.n_tier..]);
        if let (true, Some(t), Some(r)) = (case.share, tier.first(), route.first_mut()) {
            *r = Limit { id: t.id.clone(), limit: r.limit, warn_at: r.warn_at.clone(), ..t.clone() };
        }
        let rule = case.slot.map(|(l, lease, shadow)| ConcurrencyRule {
            id: "route-p-concurrency".into(),
            limit: NonZeroU32::new(l).expect("slot limit"),
            lease_ms: NonZeroU64::new(lease).expect("lease"),
            mode: if shadow { LimitMode::Shadow } else { LimitMode::Enforce },
        });
        let mut model = MemoryLimiter::new(10_000);
        rt.block_on(async {
            if let Some((specs, prefix)) = &case.override_limits {
                let o = Override { tier: "OVR".into(), limits: named(prefix, specs) };
                client.command(o.set_command(&keys, &subject, None)).await.expect("SET override");
                model.set_override(&subject, Some(o));
            }
            let mut now = case.start_ms;
            let mut leases: Vec<String> = Vec::new();
            // The latest allowed check, and the step it ran at (its reservation id).
            let mut reserved: Option<(Decision, usize)> = None;
            let ids: Vec<String> = (0..case.steps.len()).map(|i| format!("req{i}")).collect();
            let base_at = |i: usize| Check {
                usage: case.reserve.map(|r| Reservation {
                    unit: &unit,
                    reserve: NonZeroU32::new(r).expect("reserve"),
                    id: &ids[i],
                }),
                concurrency: rule.as_ref().map(|rule| Slot { rule, route: "p", lease_id: &ids[i] }),
                ..check(&subject, &tier, &route, 1, Mode::Consume)
            };
            let records = |model: &MemoryLimiter| -> Vec<(String, u64)> {
                let mut r: Vec<(String, u64)> = model
                    .reservations(&subject)
                    .map(|r| r.records().map(|(m, d)| (m.to_owned(), d)).collect())
                    .unwrap_or_default();
                r.sort();
                r
            };
            for (i, step) in case.steps.iter().enumerate() {
                now += step.dt;
                let base = base_at(i);
                let before = records(&model);
                match &step.op {
                    Op::Check { cost, peek } => {
                        let mode = if *peek { Mode::Peek } else { Mode::Consume };
                        let c = Check { cost: NonZeroU32::new(*cost).expect("cost"), mode, ..base };
                        let from_script = run_at(&client, &keys, &c, now).await;
                        let from_model =
                            model.check(&c, now).map_err(|e| TestCaseError::fail(format!("model: {e}")))?;
                        prop_assert_eq!(&from_script, &from_model, "step {} at now = {} ({:?})", i, now, step);
                        let mut s = seen.borrow_mut();
                        s.checks += 1;
                        s.denied_by_slot += u64::from(from_model.refused_by_concurrency());
                        s.shadow_denials += from_model.snapshot().shadow_denied.len() as u64;
                        s.warnings += from_model.snapshot().warnings.len() as u64;
                        if from_model.snapshot().concurrency.as_ref().is_some_and(|c| c.acquired) {
                            leases.push(ids[i].clone());
                        }
                        let after = records(&model);
                        let member = format!("req{i}:");
                        let added = after.iter().any(|(m, _)| m.starts_with(&member));
                        prop_assert_eq!(
                            added,
                            from_model.is_allowed() && c.settlement(&from_model, 0).is_some(),
                            "a reservation is recorded exactly when a settlement will follow"
                        );
                        s.recorded += u64::from(added);
                        if added {
                            s.expired += before.iter().filter(|b| !after.contains(b)).count() as u64;
                        }
                        if from_model.is_allowed() && mode == Mode::Consume {
                            reserved = Some((from_model, i));
                        }
                    }
                    Op::Settle { actual } => {
                        let Some((decision, at)) = reserved.take() else { continue };
                        let Some(settlement) = base_at(at).settlement(&decision, *actual) else { continue };
                        let from_script = settle_at(&client, &keys, &settlement, now).await;
                        let from_model = model.settle(&settlement, now);
                        prop_assert_eq!(&from_script, &from_model, "settle at step {} at now = {}", i, now);
                        let mut s = seen.borrow_mut();
                        s.settles += 1;
                        s.warnings += from_model.len() as u64;
                        s.removed += u64::from(before.len() > records(&model).len());
                    }
                    Op::Release { which } => {
                        if leases.is_empty() {
                            continue;
                        }
                        let id = leases.remove(which.index(leases.len()));
                        let release = Release { subject_hash: &subject, route: "p", lease_id: &id };
                        let call = release.command(&keys);
                        let reply = client.eval(release_script(), &call.keys, &call.args).await.expect("release runs");
                        let from_model = model.release(&subject, "p", &id);
                        prop_assert_eq!(reply.to_i64() == Some(1), from_model, "release {} at step {}", id, i);
                        seen.borrow_mut().releases += 1;
                    }
                }
                // The reservations in flight: the same members with the same deadlines, and the
                // set expiring at its latest deadline.
                let (in_redis, expiry) = reservations_in_redis(&stack, &keys, &subject);
                prop_assert_eq!(&in_redis, &records(&model), "reservations after step {} ({:?})", i, step);
                let latest = model.reservations(&subject).and_then(|r| r.expires_at());
                prop_assert_eq!(expiry, latest, "the set's expiry after step {}", i);
            }
            // Every key expires; the override (set here without a TTL) is the one exception.
            let override_key = keys.limit_override(&subject);
            for key in subject_keys(&stack, &keys, &subject).into_iter().filter(|k| *k != override_key) {
                let ttl = pttl(&stack, &key);
                prop_assert!(ttl > 0, "{} has PTTL {}", key, ttl);
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let s = seen.into_inner();
    eprintln!("script == model over {} cases: {s:?}", counter.get());
    // The generator reaches every feature; a change that starved one would make this property weaker.
    assert!(s.denied_by_slot > 0 && s.shadow_denials > 0 && s.warnings > 0 && s.settles > 0 && s.releases > 0, "{s:?}");
    assert!(s.recorded > 0 && s.removed > 0 && s.expired > 0, "{s:?}");
}

/// Runs a settlement on Redis at a given time; the warnings it published.
async fn settle_at(client: &Client<ReqwestTransport>, keys: &Keys, s: &Settlement<'_>, now_ms: u64) -> Vec<Warning> {
    let call = s.command_at(keys, now_ms);
    let reply = client.eval(settle_script(), &call.keys, &call.args).await.expect("settle runs");
    parse_settle_reply(&reply).expect("well-formed settle reply").warnings
}

// ---------------------------------------------------------------------------------------------
// Contracts of the script on a real Redis, at Redis TIME.

#[tokio::test]
async fn an_override_replaces_the_tier_limits_and_keeps_the_route_limits() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier = [limit("tier-basic", Algorithm::TokenBucket, 1, HOUR)];
    let route = [limit("route-chat", Algorithm::TokenBucket, 5, HOUR)];
    let pro = Override::parse_json(
        r#"{"tier":"PRO","limits":[{"id":"tier-pro","alg":"gcra","limit":3,"window_ms":3600000}]}"#,
    )
    .expect("valid override");
    client.command(pro.set_command(&keys, "subj", None)).await.expect("SET override");

    for i in 0..3 {
        let d = run(&client, &keys, &check("subj", &tier, &route, 1, Mode::Consume)).await;
        assert!(d.is_allowed(), "request {} of the PRO limit of 3: {d:?}", i + 1);
        let s = d.snapshot();
        assert_eq!(s.tier.as_deref(), Some("PRO"));
        let ids: Vec<&str> = s.limits.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["tier-pro", "route-chat"]);
    }
    let d = run(&client, &keys, &check("subj", &tier, &route, 1, Mode::Consume)).await;
    assert_eq!(d.violated(), Some("tier-pro"));
    assert_eq!(d.snapshot().limit("route-chat").map(|l| l.remaining), Some(2), "the denial charged nothing");
    assert_eq!(pttl(&stack, &keys.limit_override("subj")), -1, "an override set without TTL lasts");

    client.command(Override::delete_command(&keys, "subj")).await.expect("DEL override");
    let d = run(&client, &keys, &check("subj", &tier, &route, 1, Mode::Peek)).await;
    assert_eq!(d.snapshot().tier, None);
    assert_eq!(d.snapshot().limits[0].id, "tier-basic");

    let temporary = pro.set_command(&keys, "subj", NonZeroU64::new(60_000));
    client.command(temporary).await.expect("SET override PX");
    let ttl = pttl(&stack, &keys.limit_override("subj"));
    assert!(ttl > 0 && ttl <= 60_000, "temporary override PTTL {ttl}");
}

#[tokio::test]
async fn a_malformed_override_is_ignored_and_reported() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier = [limit("tier-basic", Algorithm::FixedWindow, 10, HOUR)];
    let route = [limit("route-chat", Algorithm::FixedWindow, 10, HOUR)];
    for bad in [
        "not json",
        r#"{"tier":"PRO"}"#,
        r#"{"tier":"PRO","limits":[{"id":"x","alg":"leaky","limit":1,"window_ms":1}]}"#,
        r#"{"tier":"PRO","limits":[{"id":"route-chat","alg":"gcra","limit":1,"window_ms":1000}]}"#,
    ] {
        client.command(tollgate::redis::Command::new("SET").arg(keys.limit_override("s")).arg(bad)).await.expect("SET");
        let d = run(&client, &keys, &check("s", &tier, &route, 1, Mode::Peek)).await;
        assert!(d.snapshot().override_ignored, "{bad}");
        assert_eq!(d.snapshot().tier, None, "{bad}");
        assert_eq!(d.snapshot().limits[0].id, "tier-basic", "{bad}");
    }
}

#[tokio::test]
async fn peek_does_not_consume_and_writes_nothing() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier = [limit("tier-basic", Algorithm::TokenBucket, 5, HOUR)];
    let route = [limit("route-chat", Algorithm::Gcra, 5, HOUR)];
    for _ in 0..10 {
        let d = run(&client, &keys, &check("peeker", &tier, &route, 2, Mode::Peek)).await;
        assert!(d.is_allowed());
        assert!(d.snapshot().limits.iter().all(|l| l.remaining == 5), "{d:?}");
    }
    assert!(subject_keys(&stack, &keys, "peeker").is_empty(), "peek wrote a key");
    let d = run(&client, &keys, &check("peeker", &tier, &route, 2, Mode::Consume)).await;
    assert!(d.snapshot().limits.iter().all(|l| l.remaining == 3), "{d:?}");
    let d = run(&client, &keys, &check("peeker", &tier, &route, 1, Mode::Peek)).await;
    assert!(d.snapshot().limits.iter().all(|l| l.remaining == 3), "{d:?}");
}

#[tokio::test]
async fn every_key_written_has_a_ttl_no_longer_than_its_state_matters() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier =
        [limit("fixed", Algorithm::FixedWindow, 10, 60_000), limit("sliding", Algorithm::SlidingWindow, 10, 60_000)];
    let route = [limit("bucket", Algorithm::TokenBucket, 10, 60_000), limit("gcra", Algorithm::Gcra, 10, 60_000)];
    let d = run(&client, &keys, &check("ttl", &tier, &route, 3, Mode::Consume)).await;
    assert!(d.is_allowed());
    let written = subject_keys(&stack, &keys, "ttl");
    assert_eq!(written.len(), 4);
    let bound = |key: &str| if key.ends_with(":sliding") { 120_000 } else { 60_000 };
    for key in written {
        let ttl = pttl(&stack, &key);
        assert!(ttl > 0 && ttl <= bound(&key), "{key}: PTTL {ttl}");
    }
    // The bucket and GCRA keys live until the 3 units are back: 3 × 6 s.
    let ttl = pttl(&stack, &keys.limit_state("ttl", "gcra"));
    assert!(ttl > 17_000 && ttl <= 18_000, "gcra PTTL {ttl}");
}

#[tokio::test]
async fn a_denial_consumes_nothing_from_other_limits() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier = [limit("tier-basic", Algorithm::SlidingWindow, 100, HOUR)];
    let route = [limit("route-chat", Algorithm::TokenBucket, 2, HOUR)];
    for _ in 0..2 {
        assert!(run(&client, &keys, &check("s", &tier, &route, 1, Mode::Consume)).await.is_allowed());
    }
    for _ in 0..5 {
        let d = run(&client, &keys, &check("s", &tier, &route, 1, Mode::Consume)).await;
        assert_eq!(d.violated(), Some("route-chat"));
        assert!(d.retry_after_ms().is_some_and(|ms| ms > 0));
    }
    let d = run(&client, &keys, &check("s", &tier, &[], 1, Mode::Peek)).await;
    assert_eq!(d.snapshot().limits[0].remaining, 98);
    let d = run(&client, &keys, &check("s", &tier, &route, 3, Mode::Consume)).await;
    assert_eq!(d.as_str(), "impossible", "a cost above a limit is not a retry");
    assert_eq!(d.retry_after_ms(), None);
}

#[tokio::test]
async fn evalsha_works_after_script_flush() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier = [limit("tier-basic", Algorithm::Gcra, 100, HOUR)];
    let c = check("flush", &tier, &[], 1, Mode::Consume);
    run(&client, &keys, &c).await;
    let before = client.requests_sent();
    run(&client, &keys, &c).await;
    assert_eq!(client.requests_sent() - before, 1, "a cached script costs one request");

    stack.redis(&["SCRIPT", "FLUSH"]);
    let before = client.requests_sent();
    let d = run(&client, &keys, &c).await;
    assert_eq!(d.snapshot().limits[0].remaining, 97);
    assert_eq!(client.requests_sent() - before, 2, "NOSCRIPT, then EVAL once");
    let before = client.requests_sent();
    run(&client, &keys, &c).await;
    assert_eq!(client.requests_sent() - before, 1, "EVAL cached the script again");
}

#[tokio::test]
async fn one_check_is_one_command_however_many_limits() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier = [
        limit("tier-hour", Algorithm::SlidingWindow, 100, HOUR),
        limit("tier-day", Algorithm::FixedWindow, 1_000, 24 * HOUR),
    ];
    let route = [limit("route-chat", Algorithm::Gcra, 20, 60_000)];
    let c = check("cost", &tier, &route, 1, Mode::Consume);
    run(&client, &keys, &c).await;
    stack.reset_stats().await;
    for _ in 0..5 {
        run(&client, &keys, &c).await;
    }
    let stats = stack.stats().await;
    assert_eq!(stats.commands, 5, "{:?}", stats.raw);
    assert_eq!(stats.http_requests, 5, "{:?}", stats.raw);
    assert_eq!(stats.command("EVALSHA"), 5, "{:?}", stats.raw);
}

#[tokio::test]
async fn the_check_rides_in_one_pipeline_with_the_cache_read() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tier = [limit("tier-basic", Algorithm::TokenBucket, 10, HOUR)];
    let call = check("piped", &tier, &[], 1, Mode::Consume).command(&keys).expect("valid");
    let entries = vec![
        Entry::script(check_script(), &call.keys, &call.args),
        Entry::from(tollgate::redis::Command::get("factory:cache:v1:{c:config}:e:nothing")),
    ];
    let results = client.pipeline_with_scripts(entries).await.expect("pipeline");
    assert_eq!(results.len(), 2);
    let decision = parse_reply(results[0].as_ref().expect("script result")).expect("decision");
    assert_eq!(decision.snapshot().limits[0].remaining, 9);
    assert_eq!(results[1], Ok(Reply::Nil));
}

#[tokio::test]
async fn the_check_and_the_cache_read_share_one_command_and_decide_as_the_check_alone() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    stack.redis(&["SET", "gen-key", "7"]);
    stack.redis(&["SET", "entry-key", "the entry"]);
    let read = ["gen-key".to_owned(), "entry-key".to_owned()];
    let tier = [limit("tier-basic", Algorithm::FixedWindow, 2, HOUR)];
    let remote = tollgate::limiter::RemoteLimiter::new(&client, &keys);
    for round in 0..3 {
        let c = check("combined", &tier, &[], 1, Mode::Consume);
        let commands = client.commands_sent();
        let checked = remote.check_and_read(&c, &read, None).await.expect("decided");
        assert!(client.commands_sent() - commands <= 2, "one EVALSHA (and one EVAL after NOSCRIPT)");
        if round < 2 {
            assert!(checked.decision.is_allowed());
            let expected = Reply::Array(vec![Reply::Bulk(b"7".to_vec()), Reply::Bulk(b"the entry".to_vec())]);
            assert_eq!(checked.ride_along, Some(Ok(expected)));
        } else {
            assert_eq!(checked.decision.violated(), Some("tier-basic"), "the third of two per hour");
            assert_eq!(checked.ride_along, None, "a refused check reads nothing");
        }
    }
    // The plain check sees the same state: nothing was charged twice or skipped.
    let d = run(&client, &keys, &check("combined", &tier, &[], 1, Mode::Peek)).await;
    assert_eq!(d.snapshot().limits[0].remaining, 0);
    let before = client.commands_sent();
    remote.check_and_read(&check("other", &tier, &[], 1, Mode::Consume), &read, None).await.expect("decided");
    assert_eq!(client.commands_sent() - before, 1, "a cached script: exactly one command");

    // A miss takes the fill lock in the same call; a second filler finds it held; an entry
    // that exists is read, and no lock is taken for it.
    let missing = ["gen-key".to_owned(), "no-entry".to_owned()];
    let lock = |token| tollgate::limiter::FillLock { key: "fill-lock", token, ttl_ms: 5_000 };
    let first = remote.check_and_read(&check("m1", &tier, &[], 1, Mode::Consume), &missing, Some(lock("t1"))).await;
    assert_eq!(first.expect("decided").lock, Some(true));
    assert_eq!(stack.redis(&["GET", "fill-lock"]), Resp::Bulk(Some(b"t1".to_vec())));
    let second = remote.check_and_read(&check("m2", &tier, &[], 1, Mode::Consume), &missing, Some(lock("t2"))).await;
    assert_eq!(second.expect("decided").lock, Some(false), "held by the first filler");
    let hit = remote.check_and_read(&check("m3", &tier, &[], 1, Mode::Consume), &read, Some(lock("t3"))).await;
    assert_eq!(hit.expect("decided").lock, None, "an entry exists: nothing to lock");
}

#[tokio::test]
async fn a_reservation_is_in_flight_from_its_check_to_its_settlement() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let mut day = limit("tokens-day", Algorithm::FixedWindow, 1_000, 24 * HOUR);
    day.unit = tokens();
    let tier = [limit("tier-basic", Algorithm::FixedWindow, 100, HOUR)];
    let route = [day.clone()];
    let rule = ConcurrencyRule {
        id: "route-chat-concurrency".into(),
        limit: NonZeroU32::new(2).expect("2"),
        lease_ms: NonZeroU64::new(30_000).expect("lease"),
        mode: LimitMode::Enforce,
    };
    let reserve = NonZeroU32::new(300).expect("300");
    let set = keys.limit_reservations("res");
    let at = |id| Check {
        usage: Some(Reservation { unit: &day.unit, reserve, id }),
        ..check("res", &tier, &route, 1, Mode::Consume)
    };

    // Without a slot: until the end of the day window the 300 tokens were charged to.
    let first = run(&client, &keys, &at("r1")).await;
    let now = first.snapshot().now_ms;
    let day_end = now - now % (24 * HOUR) + 24 * HOUR;
    let (held, expiry) = reservations_in_redis(&stack, &keys, "res");
    assert_eq!(held, [("r1:300:tokens".to_owned(), day_end)]);
    assert_eq!(expiry, Some(day_end));

    // With a slot: until the lease's deadline.
    let slotted = Check { concurrency: Some(Slot { rule: &rule, route: "chat", lease_id: "r2" }), ..at("r2") };
    let second = run(&client, &keys, &slotted).await;
    let lease_deadline = second.snapshot().now_ms + 30_000;
    let (held, expiry) = reservations_in_redis(&stack, &keys, "res");
    assert_eq!(held, [("r1:300:tokens".to_owned(), day_end), ("r2:300:tokens".to_owned(), lease_deadline)]);
    assert_eq!(expiry, Some(day_end), "the set lasts as long as its latest record");

    // A peek and a refused check record nothing.
    run(&client, &keys, &Check { mode: Mode::Peek, ..at("r3") }).await;
    let big = Check {
        usage: Some(Reservation { reserve: NonZeroU32::new(900).expect("900"), ..at("r4").usage.expect("usage") }),
        ..at("r4")
    };
    assert_eq!(run(&client, &keys, &big).await.violated(), Some("tokens-day"));
    assert_eq!(reservations_in_redis(&stack, &keys, "res").0.len(), 2);

    // Each settlement removes its own record; the last one removes the key.
    for (decision, id, check) in [(&first, "r1", at("r1")), (&second, "r2", slotted)] {
        let settlement = check.settlement(decision, 120).expect("reserved");
        let call = settlement.command(&keys);
        client.eval(settle_script(), &call.keys, &call.args).await.expect("settle runs");
        let (held, _) = reservations_in_redis(&stack, &keys, "res");
        assert!(held.iter().all(|(m, _)| !m.starts_with(id)), "{id} settled: {held:?}");
    }
    assert_eq!(stack.redis(&["EXISTS", &set]), Resp::Int(0));
    let d = run(&client, &keys, &check("res", &tier, &route, 1, Mode::Peek)).await;
    assert_eq!(d.snapshot().limit("tokens-day").map(|l| l.remaining), Some(1_000 - 240), "settled at 120 each");
}

/// A key check and a plain check on twin states (two namespaces) at the same times.
async fn key_check_at(client: &Client<ReqwestTransport>, keys: &Keys, c: &KeyCheck<'_>, now_ms: u64) -> KeyChecked {
    let call = c.command_at(keys, now_ms).expect("valid key check");
    let reply = client.eval(check_key_script(), &call.keys, &call.args).await.expect("script runs");
    parse_key_reply(&reply).expect("well-formed reply")
}

#[tokio::test]
async fn a_key_check_decides_as_the_check_of_the_records_subject_and_tier() {
    let stack = Stack::start().await;
    let client = stack.client();
    let (via_key, direct) = (Keys::new("viakey"), Keys::new("direct"));
    let mut day = limit("tokens-day", Algorithm::FixedWindow, 1_000, 24 * HOUR);
    day.unit = tokens();
    let tiers = [
        Tier { name: "BASIC".into(), limits: vec![limit("tier-basic", Algorithm::SlidingWindow, 3, HOUR)] },
        Tier {
            name: "PRO".into(),
            limits: vec![
                limit("tier-pro", Algorithm::Gcra, 5, HOUR),
                limit("tier-pro-day", Algorithm::FixedWindow, 7, 24 * HOUR),
            ],
        },
    ];
    let route = [limit("route-chat-1m", Algorithm::TokenBucket, 6, 60_000), day.clone()];
    let rule = ConcurrencyRule {
        id: "route-chat-concurrency".into(),
        limit: NonZeroU32::new(4).expect("4"),
        lease_ms: NonZeroU64::new(30_000).expect("lease"),
        mode: LimitMode::Enforce,
    };
    let reserve = NonZeroU32::new(200).expect("200");
    let record = |tier: &str| {
        format!(r#"{{"id":"0123456789ab","subject_hash":"{}","tier":"{tier}","created_ms":1}}"#, "ab".repeat(32))
    };
    let subject = "ab".repeat(32);
    let t0 = 1_900_000_000_000u64;
    for (tier, applies) in [("PRO", 1usize), ("BASIC", 0), ("GONE", 0)] {
        let record_key = via_key.api_key(&format!("key-{tier}"));
        stack.redis(&["SET", &record_key, &record(tier)]);
        for i in 0..9u64 {
            let id = format!("req{tier}{i}");
            let base = Check {
                usage: Some(Reservation { unit: &day.unit, reserve, id: &id }),
                concurrency: Some(Slot { rule: &rule, route: "chat", lease_id: &id }),
                ..check(&subject, &tiers[applies].limits, &route, 1, Mode::Consume)
            };
            // A record naming no tier of the table gets the fallback (BASIC here).
            let keyed = KeyCheck { record_key: &record_key, tiers: &tiers, fallback_tier: "BASIC", check: base };
            let now = t0 + i * 1_000;
            let KeyChecked::Valid { record: stored, decision } = key_check_at(&client, &via_key, &keyed, now).await
            else {
                panic!("{tier}: the record is valid");
            };
            assert_eq!(stored, Reply::Bulk(record(tier).into_bytes()));
            let expected = run_at(&client, &direct, &base, now).await;
            assert_eq!(*decision, expected, "{tier}, check {i}");
        }
        // Twin states: the same keys under each namespace, with the same values.
        let named = |ns: &Keys| {
            let mut keys: Vec<String> = subject_keys(&stack, ns, &subject)
                .into_iter()
                .map(|k| k.trim_start_matches(ns.namespace()).to_owned())
                .collect();
            keys.sort();
            keys
        };
        assert_eq!(named(&via_key), named(&direct), "{tier}: the script wrote the keys the Worker names");
        stack.redis(&["FLUSHDB"]);
    }
}

#[tokio::test]
async fn a_key_check_of_an_unknown_revoked_or_malformed_record_checks_nothing() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    let tiers = [Tier { name: "BASIC".into(), limits: vec![limit("tier-basic", Algorithm::FixedWindow, 3, HOUR)] }];
    let subject = "cd".repeat(32);
    let base = check(&subject, &[], &[], 1, Mode::Consume);
    let record_key = keys.api_key("some-key");
    let at = |record_key| KeyCheck { record_key, tiers: &tiers, fallback_tier: "BASIC", check: base };
    let remote = tollgate::limiter::RemoteLimiter::new(&client, &keys);
    assert_eq!(remote.check_key(&at(&record_key)).await.expect("runs"), KeyChecked::Unknown);
    let tombstone =
        format!(r#"{{"id":"0123456789ab","subject_hash":"{subject}","tier":"BASIC","created_ms":1,"revoked_ms":2}}"#);
    stack.redis(&["SET", &record_key, &tombstone]);
    assert_eq!(remote.check_key(&at(&record_key)).await.expect("runs"), KeyChecked::Revoked);
    for bad in [
        "not json".to_owned(),
        r#"{"id":"x","tier":"BASIC"}"#.to_owned(),
        r#"{"id":"x","subject_hash":"a}:b","tier":"BASIC"}"#.to_owned(),
        format!(r#"{{"id":"x","subject_hash":"{subject}","tier":""}}"#),
    ] {
        stack.redis(&["SET", &record_key, &bad]);
        assert_eq!(remote.check_key(&at(&record_key)).await.expect("runs"), KeyChecked::Corrupt, "{bad}");
    }
    assert!(subject_keys(&stack, &keys, &subject).is_empty(), "nothing was charged to anyone");
    stack.redis(&["DEL", &record_key]);
    stack.redis(&["HSET", &record_key, "f", "v"]);
    assert_eq!(
        remote.check_key(&at(&record_key)).await.expect("runs"),
        KeyChecked::Corrupt,
        "a record of another type"
    );
}

#[tokio::test]
async fn a_key_check_reads_the_cache_entry_in_the_same_call_only_for_a_valid_key_it_allows() {
    let stack = Stack::start().await;
    let client = stack.client();
    let keys = Keys::default();
    stack.redis(&["SET", "gen-key", "3"]);
    stack.redis(&["SET", "entry-key", "the entry"]);
    let entry = ["gen-key".to_owned(), "entry-key".to_owned()];
    let tiers = [Tier { name: "BASIC".into(), limits: vec![limit("tier-basic", Algorithm::FixedWindow, 1, HOUR)] }];
    let subject = "ef".repeat(32);
    let record_key = keys.api_key("a-key");
    let keyed = KeyCheck {
        record_key: &record_key,
        tiers: &tiers,
        fallback_tier: "BASIC",
        check: check(&subject, &[], &[], 1, Mode::Consume),
    };
    let remote = tollgate::limiter::RemoteLimiter::new(&client, &keys);
    let (found, read, lock) = remote.check_key_and_read(&keyed, &entry, None).await.expect("runs");
    assert_eq!((found, read, lock), (KeyChecked::Unknown, None, None), "an unknown key reads nothing");
    let record = format!(r#"{{"id":"0123456789ab","subject_hash":"{subject}","tier":"BASIC","created_ms":1}}"#);
    stack.redis(&["SET", &record_key, &record]);
    let commands = client.commands_sent();
    let (found, read, _) = remote.check_key_and_read(&keyed, &entry, None).await.expect("runs");
    assert!(client.commands_sent() - commands <= 2, "one EVALSHA (and one EVAL after NOSCRIPT)");
    let KeyChecked::Valid { decision, .. } = found else { panic!("valid: {found:?}") };
    assert!(decision.is_allowed());
    let expected = Reply::Array(vec![Reply::Bulk(b"3".to_vec()), Reply::Bulk(b"the entry".to_vec())]);
    assert_eq!(read, Some(Ok(expected)));
    // The tier's one request per hour is spent: refused, and nothing read.
    let missing = ["gen-key".to_owned(), "no-entry".to_owned()];
    let lock = tollgate::limiter::FillLock { key: "fill-lock", token: "t", ttl_ms: 5_000 };
    let (found, read, taken) = remote.check_key_and_read(&keyed, &missing, Some(lock)).await.expect("runs");
    let KeyChecked::Valid { decision, .. } = found else { panic!("valid: {found:?}") };
    assert_eq!(decision.violated(), Some("tier-basic"));
    assert_eq!((read, taken), (None, None));
    assert_eq!(stack.redis(&["EXISTS", "fill-lock"]), Resp::Int(0));
    let d = run(&client, &keys, &check(&subject, &tiers[0].limits, &[], 1, Mode::Peek)).await;
    assert_eq!(d.snapshot().limits[0].remaining, 0, "the key check charged the record's subject");
}
