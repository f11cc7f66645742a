//! Shared fakes for native tests of the cache and the gate: a current-thread executor whose timers
//! run on a fake clock, an in-memory Redis behind the REST protocol (the cache's scripts and the
//! limiter's check built in, the latter on the limiter's own Rust model), and an origin that
//! counts its calls. Compiled for tests and behind the `testing` feature; never in the Worker.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use serde_json::Value;

use crate::clock::{Clock, FakeClock};
use crate::redis::decode::encode_entry;
use crate::redis::{HttpReply, RedisError, Reply, Transport};

use crate::cache::{Origin, OriginError, OriginRequest, OriginResponse};
use crate::clock::Sleeper;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs `fut` on this thread; panics if it stalls with nothing to wake it.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    run_with_timer(None, fut)
}

/// Runs `fut` on this thread; when every task waits, moves `timer`'s clock to the next deadline
/// (like a paused runtime), so nothing really sleeps and time is deterministic.
pub fn run_with_timer<F: Future>(timer: Option<&FakeTimer>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        if flag.0.swap(false, Ordering::SeqCst) {
            continue;
        }
        match timer {
            Some(t) if t.advance_to_next() => {}
            _ => panic!("the future stalled with nothing left to wake it"),
        }
    }
}

/// Returns `Pending` once (waking itself), so other futures get polled in between.
pub fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false)
}

/// Timers on a [`FakeClock`], advanced by [`run_with_timer`] when everything waits.
#[derive(Debug)]
pub struct FakeTimer {
    pub clock: Rc<FakeClock>,
    waiting: RefCell<Vec<(u64, Waker)>>,
    pub sleeps: Cell<u32>,
}

impl FakeTimer {
    pub fn new(clock: Rc<FakeClock>) -> Self {
        Self { clock, waiting: RefCell::new(Vec::new()), sleeps: Cell::new(0) }
    }

    /// Moves the clock to the earliest deadline and wakes what is due; false if nothing waits.
    fn advance_to_next(&self) -> bool {
        let mut waiting = self.waiting.borrow_mut();
        let Some(next) = waiting.iter().map(|(d, _)| *d).min() else {
            return false;
        };
        if next > self.clock.now_ms() {
            self.clock.set(next);
        }
        let now = self.clock.now_ms();
        let (due, rest): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|(d, _)| *d <= now);
        *waiting = rest;
        drop(waiting);
        for (_, w) in due {
            w.wake();
        }
        true
    }
}

impl Sleeper for FakeTimer {
    async fn sleep(&self, ms: u32) {
        self.sleeps.set(self.sleeps.get() + 1);
        let deadline = self.clock.now_ms() + u64::from(ms);
        std::future::poll_fn(|cx| {
            if self.clock.now_ms() >= deadline {
                Poll::Ready(())
            } else {
                self.waiting.borrow_mut().push((deadline, cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }
}

/// What the fake origin does.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answers this response after its latency.
    Respond(OriginResponse),
    /// Cannot be reached.
    Down,
}

/// An origin that counts its calls and answers as told, after `latency_ms` on the fake timer.
#[derive(Debug)]
pub struct FakeOrigin {
    timer: Rc<FakeTimer>,
    pub calls: Cell<u32>,
    pub behaviour: RefCell<Behaviour>,
    pub latency_ms: Cell<u32>,
    pub last_request: RefCell<Option<OriginRequest>>,
}

impl FakeOrigin {
    pub fn new(timer: Rc<FakeTimer>, body: &str) -> Self {
        Self {
            timer,
            calls: Cell::new(0),
            behaviour: RefCell::new(Behaviour::Respond(ok(body))),
            latency_ms: Cell::new(20),
            last_request: RefCell::new(None),
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.borrow_mut() = behaviour;
    }
}

/// A `200 application/json` response with `body`.
pub fn ok(body: &str) -> OriginResponse {
    OriginResponse {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into()), ("Content-Language".into(), "en".into())],
        body: body.as_bytes().to_vec(),
    }
}

impl Origin for FakeOrigin {
    async fn fetch(&self, req: &OriginRequest) -> Result<OriginResponse, OriginError> {
        self.calls.set(self.calls.get() + 1);
        *self.last_request.borrow_mut() = Some(req.clone());
        let behaviour = self.behaviour.borrow().clone();
        match self.latency_ms.get() {
            0 => yield_now().await,
            ms => self.timer.sleep(ms).await,
        }
        match behaviour {
            Behaviour::Respond(r) => Ok(r),
            Behaviour::Down => Err(OriginError::Unreachable("connection refused".into())),
        }
    }
}

#[derive(Debug, Clone)]
enum Val {
    Str(Vec<u8>),
    Set(BTreeSet<Vec<u8>>),
    Hash(std::collections::BTreeMap<Vec<u8>, Vec<u8>>),
}

/// A tiny in-memory Redis behind the REST protocol, with the cache's scripts built in.
#[derive(Debug)]
pub struct FakeRedis {
    clock: Rc<FakeClock>,
    data: RefCell<HashMap<String, (Val, Option<u64>)>>,
    pub down: Cell<bool>,
    pub log: RefCell<Vec<String>>,
    pub published: RefCell<Vec<(String, String)>>,
    /// The check script's state, kept by the limiter's model (the script's specification).
    limits: RefCell<crate::limiter::MemoryLimiter>,
}

impl FakeRedis {
    pub fn new(clock: Rc<FakeClock>) -> Self {
        Self {
            clock,
            data: RefCell::new(HashMap::new()),
            down: Cell::new(false),
            log: RefCell::new(Vec::new()),
            published: RefCell::new(Vec::new()),
            limits: RefCell::new(crate::limiter::MemoryLimiter::new(100_000)),
        }
    }

    /// Commands received, by name, in order.
    pub fn commands(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// Runs one command directly (as another isolate would).
    pub fn exec_strs(&self, args: &[&str]) -> Result<Reply, String> {
        self.exec(args.iter().map(|a| a.as_bytes().to_vec()).collect())
    }

    /// The string under `key`, if live.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.exec_strs(&["GET", key]) {
            Ok(Reply::Bulk(b)) => Some(b),
            _ => None,
        }
    }

    /// Remaining life of `key`, ms (`-2` absent, `-1` no expiry).
    pub fn pttl(&self, key: &str) -> i64 {
        self.exec_strs(&["PTTL", key]).ok().and_then(|r| r.as_int()).unwrap_or(-3)
    }

    /// Every live key.
    pub fn keys(&self) -> Vec<String> {
        self.purge();
        let mut keys: Vec<String> = self.data.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn purge(&self) {
        let now = self.clock.now_ms();
        self.data.borrow_mut().retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
    }

    fn exec(&self, args: Vec<Vec<u8>>) -> Result<Reply, String> {
        self.purge();
        let now = self.clock.now_ms();
        let s = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        let name = s(0).to_ascii_uppercase();
        self.log.borrow_mut().push(name.clone());
        let mut data = self.data.borrow_mut();
        match name.as_str() {
            "GET" => match data.get(&s(1)) {
                Some((Val::Str(v), _)) => Ok(Reply::Bulk(v.clone())),
                Some(_) => Err("WRONGTYPE".into()),
                None => Ok(Reply::Nil),
            },
            "MGET" => Ok(Reply::Array(
                (1..args.len())
                    .map(|i| match data.get(&s(i)) {
                        Some((Val::Str(v), _)) => Reply::Bulk(v.clone()),
                        _ => Reply::Nil,
                    })
                    .collect(),
            )),
            "SET" => {
                let (mut nx, mut px) = (false, None);
                let mut i = 3;
                while i < args.len() {
                    match s(i).to_ascii_uppercase().as_str() {
                        "NX" => nx = true,
                        "PX" => {
                            px = Some(s(i + 1).parse::<u64>().map_err(|_| "ERR px")?);
                            i += 1;
                        }
                        other => return Err(format!("ERR syntax {other}")),
                    }
                    i += 1;
                }
                if px == Some(0) {
                    return Err("ERR invalid expire time in 'set' command".into());
                }
                if nx && data.contains_key(&s(1)) {
                    return Ok(Reply::Nil);
                }
                data.insert(s(1), (Val::Str(args[2].clone()), px.map(|p| now + p)));
                Ok(Reply::Ok)
            }
            "DEL" => Ok(Reply::Int((1..args.len()).filter(|&i| data.remove(&s(i)).is_some()).count() as i64)),
            "SADD" => {
                let slot = data.entry(s(1)).or_insert_with(|| (Val::Set(BTreeSet::new()), None));
                let Val::Set(set) = &mut slot.0 else {
                    return Err("WRONGTYPE".into());
                };
                Ok(Reply::Int((2..args.len()).filter(|&i| set.insert(args[i].clone())).count() as i64))
            }
            "SMEMBERS" => match data.get(&s(1)) {
                Some((Val::Set(set), _)) => Ok(Reply::Array(set.iter().map(|m| Reply::Bulk(m.clone())).collect())),
                _ => Ok(Reply::Array(vec![])),
            },
            "PEXPIRE" => {
                let ms: u64 = s(2).parse().map_err(|_| "ERR ms")?;
                let Some(slot) = data.get_mut(&s(1)) else {
                    return Ok(Reply::Int(0));
                };
                let new = now + ms;
                let apply = match s(3).to_ascii_uppercase().as_str() {
                    "" => true,
                    "NX" => slot.1.is_none(),
                    "GT" => slot.1.is_some_and(|cur| new > cur),
                    other => return Err(format!("ERR flag {other}")),
                };
                if apply {
                    slot.1 = Some(new);
                }
                Ok(Reply::Int(i64::from(apply)))
            }
            "PTTL" => Ok(Reply::Int(match data.get(&s(1)) {
                None => -2,
                Some((_, None)) => -1,
                Some((_, Some(e))) => (*e - now) as i64,
            })),
            "PING" => Ok(Reply::Bulk(b"PONG".to_vec())),
            "HSETNX" | "HSET" | "HINCRBY" => {
                let slot = data.entry(s(1)).or_insert_with(|| (Val::Hash(Default::default()), None));
                let Val::Hash(hash) = &mut slot.0 else {
                    return Err("WRONGTYPE".into());
                };
                let field = args.get(2).cloned().unwrap_or_default();
                let value = args.get(3).cloned().unwrap_or_default();
                match name.as_str() {
                    "HSETNX" if hash.contains_key(&field) => Ok(Reply::Int(0)),
                    "HINCRBY" => {
                        let by: i64 = s(3).parse().map_err(|_| "ERR not an integer")?;
                        let old: i64 =
                            hash.get(&field).and_then(|v| String::from_utf8_lossy(v).parse().ok()).unwrap_or(0);
                        hash.insert(field, (old + by).to_string().into_bytes());
                        Ok(Reply::Int(old + by))
                    }
                    _ => Ok(Reply::Int(i64::from(hash.insert(field, value).is_none()))),
                }
            }
            "HGET" => match data.get(&s(1)) {
                Some((Val::Hash(h), _)) => {
                    Ok(h.get(args.get(2).map_or(&[][..], |a| a)).map_or(Reply::Nil, |v| Reply::Bulk(v.clone())))
                }
                _ => Ok(Reply::Nil),
            },
            "HGETALL" => match data.get(&s(1)) {
                Some((Val::Hash(h), _)) => Ok(Reply::Array(
                    h.iter().flat_map(|(k, v)| [Reply::Bulk(k.clone()), Reply::Bulk(v.clone())]).collect(),
                )),
                _ => Ok(Reply::Array(vec![])),
            },
            "HDEL" => match data.get_mut(&s(1)) {
                Some((Val::Hash(h), _)) => {
                    Ok(Reply::Int((2..args.len()).filter(|&i| h.remove(&args[i]).is_some()).count() as i64))
                }
                _ => Ok(Reply::Int(0)),
            },
            "SCAN" => {
                let pattern = s(3);
                let prefix = pattern.trim_end_matches('*');
                let found: Vec<Reply> = data
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .map(|k| Reply::Bulk(k.clone().into_bytes()))
                    .collect();
                Ok(Reply::Array(vec![Reply::Bulk(b"0".to_vec()), Reply::Array(found)]))
            }
            "PUBLISH" => {
                self.published.borrow_mut().push((s(1), s(2)));
                Ok(Reply::Int(0))
            }
            "EVALSHA" if s(1) == crate::limiter::check_script().sha1() => {
                drop(data);
                self.check(&args[2..])
            }
            "EVALSHA" if s(1) == crate::limiter::check_and_read_script().sha1() => {
                drop(data);
                self.check_and_read(&args[2..], false)
            }
            "EVALSHA" if s(1) == crate::limiter::check_key_and_read_script().sha1() => {
                drop(data);
                self.check_and_read(&args[2..], true)
            }
            "EVALSHA" if s(1) == crate::limiter::check_key_script().sha1() => {
                drop(data);
                self.check_key(&args[2..])
            }
            "EVALSHA" => {
                drop(data);
                self.script(&s(1), &args[3..])
            }
            other => Err(format!("ERR unknown command '{other}'")),
        }
    }

    /// The limiter's check script (`numkeys, KEYS…, ARGV…` as documented in its header), decided
    /// by the limiter's Rust model at the fake clock's time.
    fn check(&self, rest: &[Vec<u8>]) -> Result<Reply, String> {
        use crate::limiter::{encode_reply, Check, Mode, Override};
        use crate::policy::{Algorithm, Limit};
        let text = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
        let numkeys: usize = rest.first().map(text).and_then(|n| n.parse().ok()).ok_or("ERR numkeys")?;
        let keys = rest.get(1..1 + numkeys).ok_or("ERR keys")?;
        let argv: Vec<String> = rest.get(1 + numkeys..).ok_or("ERR argv")?.iter().map(text).collect();
        let num = |i: usize| argv.get(i).and_then(|a| a.parse::<u64>().ok()).ok_or(format!("ERR ARGV[{}]", i + 1));
        let charge = if argv.get(1).map(String::as_str) == Some("peek") { Mode::Peek } else { Mode::Consume };
        let cost = std::num::NonZeroU32::new(u32::try_from(num(2)?).map_err(|_| "ERR cost")?).ok_or("ERR cost")?;
        let (n_tier, n_route) = (num(4)? as usize, num(5)? as usize);
        let mut limits = Vec::new();
        let mut usage: Option<(crate::policy::Unit, u32)> = None;
        for i in 0..n_tier + n_route {
            let at = 15 + 8 * i;
            let unit = argv.get(at + 5).and_then(|u| crate::policy::Unit::parse(u)).ok_or("ERR unit")?;
            let limit_cost = u32::try_from(num(at + 4)?).map_err(|_| "ERR limit cost")?;
            if !unit.is_requests() && usage.is_none() && charge == Mode::Consume {
                usage = Some((unit.clone(), limit_cost));
            }
            let warn_at = argv
                .get(at + 7)
                .map(|w| {
                    w.split(',').filter_map(|p| p.parse().ok()).filter_map(crate::policy::WarnAt::from_ppm).collect()
                })
                .unwrap_or_default();
            let limit = Limit {
                id: argv.get(at).cloned().ok_or("ERR limit id")?,
                algorithm: argv.get(at + 1).and_then(|a| Algorithm::parse(a)).ok_or("ERR algorithm")?,
                limit: std::num::NonZeroU32::new(num(at + 2)? as u32).ok_or("ERR limit")?,
                window_ms: std::num::NonZeroU64::new(num(at + 3)?).ok_or("ERR window")?,
                unit,
                mode: argv.get(at + 6).and_then(|m| crate::policy::LimitMode::parse(m)).ok_or("ERR mode")?,
                warn_at,
            };
            limits.push(limit);
        }
        let slot_rule = match num(7)? {
            0 => None,
            n => Some(crate::policy::ConcurrencyRule {
                id: argv.get(11).cloned().unwrap_or_default(),
                limit: std::num::NonZeroU32::new(u32::try_from(n).map_err(|_| "ERR slot")?).ok_or("ERR slot")?,
                lease_ms: std::num::NonZeroU64::new(num(8)?).ok_or("ERR lease")?,
                mode: argv.get(10).and_then(|m| crate::policy::LimitMode::parse(m)).ok_or("ERR slot mode")?,
            }),
        };
        let lease_key = keys.last().map(text).unwrap_or_default();
        let slot_route = lease_key.rsplit(":lease:").next().unwrap_or_default().to_owned();
        let lease_id = argv.get(9).cloned().unwrap_or_default();
        let reservation_id = argv.get(12).cloned().unwrap_or_default();
        let override_key = keys.first().map(text).unwrap_or_default();
        let subject = override_key.split('{').nth(1).and_then(|r| r.split('}').next()).unwrap_or_default().to_owned();
        let stored = match self.data.borrow().get(&override_key) {
            Some((Val::Str(v), _)) => String::from_utf8(v.clone()).ok(),
            _ => None,
        };
        let mut model = self.limits.borrow_mut();
        model.set_override(&subject, stored.and_then(|json| Override::parse_json(&json).ok()));
        let check = Check {
            subject_hash: &subject,
            tier_limits: &limits[..n_tier],
            route_limits: &limits[n_tier..],
            cost,
            mode: charge,
            usage: usage.as_ref().and_then(|(unit, reserve)| {
                std::num::NonZeroU32::new(*reserve).map(|reserve| crate::limiter::Reservation {
                    unit,
                    reserve,
                    id: &reservation_id,
                })
            }),
            concurrency: slot_rule.as_ref().map(|rule| crate::limiter::Slot {
                rule,
                route: &slot_route,
                lease_id: &lease_id,
            }),
        };
        let decision = model.check(&check, self.clock.now_ms()).map_err(|e| format!("ERR {e}"))?;
        Ok(encode_reply(&decision))
    }

    /// The key check script: the record read (unknown, revoked and corrupt records answered as
    /// the registry's lookup reads them), then the check of the record's subject and tier.
    fn check_key(&self, rest: &[Vec<u8>]) -> Result<Reply, String> {
        use crate::identity::{api_key, AuthError};
        let text = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
        let record_key = rest.get(1).map(text).ok_or("ERR keys")?;
        let argv = rest.get(2..).ok_or("ERR argv")?;
        // Run inside the script: not a command the client sent.
        let mark = self.log.borrow().len();
        let stored = self.get(&record_key);
        self.log.borrow_mut().truncate(mark);
        let found = api_key::parse_lookup(&stored.clone().map_or(Reply::Nil, Reply::Bulk));
        let record = match found {
            Ok(record) => record,
            Err(e) => {
                let status = match e {
                    AuthError::UnknownKey => 0,
                    AuthError::Revoked => 2,
                    _ => 3,
                };
                return Ok(Reply::Array(vec![Reply::Int(status), Reply::Nil, Reply::Nil]));
            }
        };
        let arg = |i: usize| argv.get(i).map(text).unwrap_or_default();
        let num = |i: usize| arg(i).parse::<usize>().map_err(|_| format!("ERR ARGV[{}]", i + 1));
        let (base, fallback, route, n_tiers) = (arg(0), arg(1), arg(2), num(3)?);
        let mut chosen = None;
        let mut fallback_at = None;
        let mut at = 4 + 2 * n_tiers;
        for t in 0..n_tiers {
            let count = num(5 + 2 * t)?;
            if arg(4 + 2 * t) == record.tier {
                chosen = Some((at, count));
            }
            if arg(4 + 2 * t) == fallback {
                fallback_at = Some((at, count));
            }
            at += 8 * count;
        }
        let (first, count) = chosen.or(fallback_at).unwrap_or((0, 0));
        let inner_argv = &argv[at..];
        let prefix = format!("{base}{{{}}}:", record.subject_hash);
        let n_route: usize = inner_argv.get(5).map(text).and_then(|n| n.parse().ok()).ok_or("ERR n_route")?;
        let mut check_argv: Vec<Vec<u8>> = inner_argv[..15].to_vec();
        check_argv[3] = prefix.clone().into_bytes();
        check_argv[4] = count.to_string().into_bytes();
        check_argv[6] = record.subject_hash.clone().into_bytes();
        let mut keys = vec![format!("{prefix}override").into_bytes()];
        for i in 0..count {
            let fields = &argv[first + 8 * i..first + 8 * i + 8];
            keys.push(format!("{prefix}{}", text(&fields[0])).into_bytes());
            check_argv.extend(fields.iter().cloned());
        }
        for i in 0..n_route {
            let fields = &inner_argv[15 + 8 * i..15 + 8 * i + 8];
            keys.push(format!("{prefix}{}", text(&fields[0])).into_bytes());
            check_argv.extend(fields.iter().cloned());
        }
        if inner_argv.get(7).map(text).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0 {
            keys.push(format!("{prefix}lease:{route}").into_bytes());
        }
        let mut inner = vec![keys.len().to_string().into_bytes()];
        inner.extend(keys);
        inner.extend(check_argv);
        let decided = self.check(&inner)?;
        Ok(Reply::Array(vec![Reply::Int(1), stored.map_or(Reply::Nil, Reply::Bulk), decided]))
    }

    /// The check-and-read script: the check (the key check when `keyed`) on all but the last
    /// two keys and the last argument, then `MGET` of those two keys when it allowed.
    fn check_and_read(&self, rest: &[Vec<u8>], keyed: bool) -> Result<Reply, String> {
        let numkeys: usize = rest.first().and_then(|n| String::from_utf8_lossy(n).parse().ok()).ok_or("ERR numkeys")?;
        let keys = rest.get(1..1 + numkeys).ok_or("ERR keys")?;
        let argv = rest.get(1 + numkeys..).ok_or("ERR argv")?;
        let n_read: usize =
            argv.last().and_then(|n| String::from_utf8_lossy(n).parse().ok()).ok_or("ERR read count")?;
        let n_extra = if n_read == 3 { 3 } else { 1 };
        let (check_keys, read_keys) = keys.split_at(numkeys.checked_sub(n_read).ok_or("ERR read keys")?);
        let mut inner = vec![check_keys.len().to_string().into_bytes()];
        inner.extend(check_keys.iter().cloned());
        inner.extend(argv[..argv.len().saturating_sub(n_extra)].iter().cloned());
        let (result, decided) = if keyed {
            let found = self.check_key(&inner)?;
            let decided = match found.as_array() {
                Some([Reply::Int(1), _, decided]) => decided.clone(),
                _ => return Ok(Reply::Array(vec![found, Reply::Nil])),
            };
            (found, decided)
        } else {
            let decided = self.check(&inner)?;
            (decided.clone(), decided)
        };
        let allowed = decided.as_array().and_then(|a| a.get(1)).and_then(Reply::as_int) == Some(1);
        if !allowed {
            return Ok(Reply::Array(vec![result, Reply::Nil]));
        }
        // Run inside the script: not commands the client sent.
        let mark = self.log.borrow().len();
        let mut mget = vec![b"MGET".to_vec()];
        mget.extend(read_keys.iter().take(2).cloned());
        let read = self.exec(mget)?;
        let mut reply = vec![result, read.clone()];
        if n_read == 3 {
            let absent = matches!(read.as_array(), Some([_, Reply::Nil]));
            let lock = if absent {
                let token = argv[argv.len() - 3].clone();
                let ttl = argv[argv.len() - 2].clone();
                let set = vec![b"SET".to_vec(), read_keys[2].clone(), token, b"NX".to_vec(), b"PX".to_vec(), ttl];
                Reply::Int(i64::from(self.exec(set)? == Reply::Ok))
            } else {
                Reply::Nil
            };
            reply.push(lock);
        }
        self.log.borrow_mut().truncate(mark);
        Ok(Reply::Array(reply))
    }

    /// The entry store script; `rest` is its `KEYS…, ARGV…` (always three ARGV).
    fn store(&self, rest: &[Vec<u8>]) -> Result<Reply, String> {
        let split = rest.len().checked_sub(3).ok_or("ERR store args")?;
        let (keys, argv) = rest.split_at(split);
        let key = |i: usize| String::from_utf8_lossy(&keys[i]).into_owned();
        let px = String::from_utf8_lossy(&argv[1]).into_owned();
        let entry = key(0);
        self.exec(vec![b"SET".to_vec(), keys[0].clone(), argv[0].clone(), b"PX".to_vec(), px.clone().into_bytes()])?;
        for i in 2..keys.len() {
            self.exec_strs(&["SADD", &key(i), &entry])?;
            self.exec_strs(&["PEXPIRE", &key(i), &px, "NX"])?;
            self.exec_strs(&["PEXPIRE", &key(i), &px, "GT"])?;
        }
        let token = String::from_utf8_lossy(&argv[2]).into_owned();
        if !token.is_empty() && self.get(&key(1)).as_deref() == Some(token.as_bytes()) {
            self.exec_strs(&["DEL", &key(1)])?;
        }
        Ok(Reply::Int(1))
    }

    /// The cache's scripts, by SHA-1, in Rust.
    fn script(&self, sha: &str, rest: &[Vec<u8>]) -> Result<Reply, String> {
        let s = |i: usize| rest.get(i).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        if sha == crate::cache::store_script().sha1() {
            // What runs inside the script is not a command the client sent.
            let mark = self.log.borrow().len();
            let reply = self.store(rest);
            self.log.borrow_mut().truncate(mark);
            return reply;
        }
        if sha == crate::cache::release_script().sha1() {
            if self.get(&s(0)).as_deref() == Some(s(1).as_bytes()) {
                return self.exec_strs(&["DEL", &s(0)]);
            }
            return Ok(Reply::Int(0));
        }
        if sha == crate::cache::tag_script().sha1() {
            let members = match self.exec_strs(&["SMEMBERS", &s(0)])? {
                Reply::Array(m) => m,
                _ => vec![],
            };
            let mut deleted = 0;
            for m in members {
                let key = m.as_str().unwrap_or_default().to_owned();
                if key.starts_with(&s(1)) {
                    deleted += self.exec_strs(&["DEL", &key])?.as_int().unwrap_or(0);
                }
            }
            self.exec_strs(&["DEL", &s(0)])?;
            return Ok(Reply::Int(deleted));
        }
        if sha == crate::cache::bump_script().sha1() {
            let current: u64 = self.get(&s(0)).and_then(|v| String::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
            let generation = (current + 1).max(self.clock.now_ms());
            self.exec_strs(&["SET", &s(0), &generation.to_string(), "PX", &s(1)])?;
            return Ok(Reply::Int(generation as i64));
        }
        Err("NOSCRIPT No matching script.".into())
    }
}

fn args_of(cmd: &Value) -> Vec<Vec<u8>> {
    cmd.as_array()
        .map(|a| {
            a.iter()
                .map(|v| match v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    other => other.to_string().into_bytes(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Transport for FakeRedis {
    async fn post(&self, path: &str, body: String, _sync_token: Option<String>) -> Result<HttpReply, RedisError> {
        yield_now().await;
        if self.down.get() {
            return Err(RedisError::Transport("connection refused".into()));
        }
        let json: Value = serde_json::from_str(&body).map_err(|e| RedisError::Malformed(e.to_string()))?;
        let (status, out) = match path {
            "/" => {
                let result = self.exec(args_of(&json));
                (if result.is_ok() { 200 } else { 400 }, encode_entry(&result))
            }
            _ => {
                let cmds = json.as_array().cloned().unwrap_or_default();
                (200, Value::Array(cmds.iter().map(|c| encode_entry(&self.exec(args_of(c)))).collect()))
            }
        };
        Ok(HttpReply { status, body: out.to_string().into_bytes(), sync_token: None })
    }
}
