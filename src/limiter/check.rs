//! One check of every limit that applies to a request, as ONE `EVALSHA` of `scripts/check.lua`:
//! building its `KEYS`/`ARGV`, and reading its reply back into a [`Decision`].
//!
//! Cost: one command per check (one billed Upstash command), however many limits apply; inside a
//! `/pipeline` with the cache read it shares the request's single HTTP round trip.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use crate::keys::Keys;
use crate::policy::{Algorithm, ConcurrencyRule, Limit, LimitMode, Unit, WarnAt};
use crate::redis::{Arg, Client, Command, Reply, Script, Transport};

use super::decision::{ConcurrencyState, Decision, LimitState, Snapshot, Warning};
use super::model::{check_bounds, merge_shared};
use super::LimiterError;

/// Whether a check charges the limits or only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Decide, and charge every limit if all of them allow.
    #[default]
    Consume,
    /// Decide without writing anything ("show my state").
    Peek,
}

impl Mode {
    /// Stable name, also the script's `ARGV[2]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Consume => "consume",
            Mode::Peek => "peek",
        }
    }
}

/// The usage reservation of a route: limits of `unit` are charged `reserve` in the check, and the
/// reservation is recorded as in flight under `id` until its settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation<'a> {
    /// The unit the route's origin reports.
    pub unit: &'a Unit,
    /// Units held until the answer settles.
    pub reserve: NonZeroU32,
    /// This request's reservation id, unique per request (its settlement removes the record).
    pub id: &'a str,
}

/// The concurrency slot a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot<'a> {
    /// The route's rule.
    pub rule: &'a ConcurrencyRule,
    /// The route's name (the lease set is per caller and route).
    pub route: &'a str,
    /// This request's lease id, unique per request (released at the end of its body).
    pub lease_id: &'a str,
}

/// Everything one check needs: who, which limits, what it costs, and whether to charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// The subject's hash ([`crate::keys::hash_identifier`]); the hash tag of all its keys.
    pub subject_hash: &'a str,
    /// The tier's limits; a subject's override replaces them.
    pub tier_limits: &'a [Limit],
    /// The route's limits; they apply whatever the override.
    pub route_limits: &'a [Limit],
    /// Units the request takes from every limit of `requests`.
    pub cost: NonZeroU32,
    /// Charge or only look.
    pub mode: Mode,
    /// The route's usage reservation, when it reports a unit.
    pub usage: Option<Reservation<'a>>,
    /// The route's concurrency slot, when it has one.
    pub concurrency: Option<Slot<'a>>,
}

/// The `KEYS` and `ARGV` of one run of the check script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    /// `KEYS`: the override key, then one state key per tier limit and per route limit.
    pub keys: Vec<String>,
    /// `ARGV`, as documented in the script's header.
    pub args: Vec<Arg>,
}

impl ScriptCall {
    /// `EVALSHA` of the check script with these keys and arguments (for a `/pipeline`).
    pub fn evalsha(&self) -> Command {
        check_script().evalsha(&self.keys, &self.args)
    }
}

impl<'a> Check<'a> {
    /// Every limit of the check, tier limits first.
    pub fn limits(&self) -> impl Iterator<Item = &'a Limit> {
        self.tier_limits.iter().chain(self.route_limits)
    }

    /// What this request charges a limit: `cost` for `requests`, the reservation for the
    /// route's usage unit, `None` (not part of the check) for any other unit. A peek looks at
    /// every limit, charging other units 1 (it writes nothing).
    pub fn cost_of(&self, limit: &Limit) -> Option<u32> {
        if limit.unit.is_requests() {
            return Some(self.cost.get());
        }
        match self.usage {
            Some(u) if *u.unit == limit.unit => Some(u.reserve.get()),
            _ if self.mode == Mode::Peek => Some(1),
            _ => None,
        }
    }

    /// The tier limits this check charges, with their cost.
    pub fn tier_charges(&self) -> impl Iterator<Item = (&'a Limit, u32)> + '_ {
        self.tier_limits.iter().filter_map(|l| self.cost_of(l).map(|c| (l, c)))
    }

    /// The route limits this check charges, with their cost.
    pub fn route_charges(&self) -> impl Iterator<Item = (&'a Limit, u32)> + '_ {
        self.route_limits.iter().filter_map(|l| self.cost_of(l).map(|c| (l, c)))
    }

    /// Refuses limits outside the exact-math bounds, ids shared by limits that disagree on
    /// algorithm or window (limits agreeing on both are checked once; see [`merge_shared`]),
    /// and malformed lease and reservation ids.
    pub fn validate(&self) -> Result<(), LimiterError> {
        for limit in self.limits() {
            check_bounds(limit)?;
        }
        if self.concurrency.is_some_and(|slot| !is_request_id(slot.lease_id)) {
            return Err(LimiterError::BadLeaseId);
        }
        if self.usage.is_some_and(|usage| !is_request_id(usage.id)) {
            return Err(LimiterError::BadReservationId);
        }
        merge_shared(self.limits()).map(|_| ())
    }

    /// The script's keys and arguments; time comes from Redis `TIME`.
    pub fn command(&self, keys: &Keys) -> Result<ScriptCall, LimiterError> {
        self.build(keys, None)
    }

    /// Like [`Check::command`] but at a given time instead of Redis `TIME`: for the property
    /// tests that hold the script to the Rust model. Never used on the request path.
    pub fn command_at(&self, keys: &Keys, now_ms: u64) -> Result<ScriptCall, LimiterError> {
        self.build(keys, Some(now_ms))
    }

    fn build(&self, keys: &Keys, now_ms: Option<u64>) -> Result<ScriptCall, LimiterError> {
        self.validate()?;
        let tier: Vec<(&Limit, u32)> = self.tier_charges().collect();
        let route: Vec<(&Limit, u32)> = self.route_charges().collect();
        let mut key_list = vec![keys.limit_override(self.subject_hash)];
        key_list.extend(tier.iter().chain(&route).map(|(l, _)| keys.limit_state(self.subject_hash, &l.id)));
        let mut args: Vec<Arg> = vec![
            now_ms.map_or(Arg::Str(String::new()), Arg::from),
            Arg::from(self.mode.as_str()),
            Arg::from(self.cost.get()),
            Arg::from(keys.limit_state(self.subject_hash, "")),
            Arg::from(tier.len()),
            Arg::from(route.len()),
            Arg::from(self.subject_hash),
        ];
        match self.concurrency {
            Some(slot) => {
                key_list.push(keys.limit_leases(self.subject_hash, slot.route));
                args.push(Arg::from(slot.rule.limit.get()));
                args.push(Arg::from(slot.rule.lease_ms.get()));
                args.push(Arg::from(if self.mode == Mode::Peek { "" } else { slot.lease_id }));
                args.push(Arg::from(slot.rule.mode.as_str()));
                args.push(Arg::from(slot.rule.id.as_str()));
            }
            None => {
                args.extend([Arg::from(0u32), Arg::from(0u32), Arg::from(""), Arg::from("enforce"), Arg::from("")]);
            }
        }
        match self.usage.filter(|_| self.mode == Mode::Consume) {
            Some(usage) => {
                args.push(Arg::from(usage.id));
                args.push(Arg::from(usage.unit.as_str()));
                args.push(Arg::from(usage.reserve.get()));
            }
            None => args.extend([Arg::from(""), Arg::from(""), Arg::from(0u32)]),
        }
        for (limit, cost) in tier.iter().chain(&route) {
            push_limit(&mut args, limit, *cost);
        }
        Ok(ScriptCall { keys: key_list, args })
    }

    /// Runs the check on Redis (`EVALSHA`, `EVAL` once on `NOSCRIPT`) and reads the decision.
    pub async fn run<T: Transport>(&self, client: &Client<T>, keys: &Keys) -> Result<Decision, LimiterError> {
        let call = self.command(keys)?;
        let reply = client.eval(check_script(), &call.keys, &call.args).await?;
        parse_reply(&reply)
    }

    /// The settlement of this check's reservation once the origin reported `actual` units (the
    /// reservation itself when it reported none): the limits of the usage unit the decision
    /// charged. `None` when nothing was reserved.
    pub fn settlement(&self, decision: &Decision, actual: u32) -> Option<Settlement<'a>> {
        let usage = self.usage?;
        let snapshot = decision.snapshot();
        let limits: Vec<&'a Limit> = self
            .limits()
            .filter(|l| l.unit == *usage.unit)
            .filter(|l| snapshot.limit(&l.id).is_some_and(|s| s.charged > 0 && s.unit == *usage.unit))
            .fold(Vec::new(), |mut acc, l| {
                if !acc.iter().any(|a: &&Limit| a.id == l.id) {
                    acc.push(l);
                }
                acc
            });
        if limits.is_empty() {
            return None;
        }
        Some(Settlement {
            subject_hash: self.subject_hash,
            limits,
            reserved_at_ms: snapshot.now_ms,
            reserve: usage.reserve.get(),
            actual,
            reservation_id: usage.id,
            unit: usage.unit,
        })
    }

    /// The release of this check's lease, when it took one.
    pub fn release(&self, decision: &Decision) -> Option<Release<'a>> {
        let slot = self.concurrency?;
        let acquired = decision.snapshot().concurrency.as_ref().is_some_and(|c| c.acquired);
        acquired.then_some(Release { subject_hash: self.subject_hash, route: slot.route, lease_id: slot.lease_id })
    }
}

/// Whether `id` can name a lease or a reservation: 1 to 64 ASCII letters, digits, `_` or `-`.
fn is_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The script's 8 fields of one limit charged `cost`: id, algorithm, limit, window_ms, cost,
/// unit, mode, warn.
pub(super) fn push_limit(args: &mut Vec<Arg>, limit: &Limit, cost: u32) {
    args.push(Arg::from(limit.id.as_str()));
    args.push(Arg::from(limit.algorithm.as_str()));
    args.push(Arg::from(limit.limit.get()));
    args.push(Arg::from(limit.window_ms.get()));
    args.push(Arg::from(cost));
    args.push(Arg::from(limit.unit.as_str()));
    args.push(Arg::from(limit.mode.as_str()));
    args.push(Arg::from(warn_list(limit)));
}

/// `warn_at` as the script takes it: parts per million, comma-separated, `""` for none.
fn warn_list(limit: &Limit) -> String {
    limit.warn_at.iter().map(|w| w.ppm().to_string()).collect::<Vec<_>>().join(",")
}

/// The after-the-answer adjustment of a reservation: one `EVALSHA` of `scripts/settle.lua`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement<'a> {
    /// The subject's hash.
    pub subject_hash: &'a str,
    /// The limits the reservation was charged to.
    pub limits: Vec<&'a Limit>,
    /// The check's time (its reply's `now_ms`): which window holds the reservation.
    pub reserved_at_ms: u64,
    /// Units reserved.
    pub reserve: u32,
    /// Units the origin reported.
    pub actual: u32,
    /// The check's reservation id: the record of the reservation in flight that the settlement
    /// removes.
    pub reservation_id: &'a str,
    /// The unit reserved.
    pub unit: &'a Unit,
}

impl Settlement<'_> {
    /// The record of the reservation in flight (see [`super::reservations`]).
    pub fn member(&self) -> String {
        super::reservations::member(self.reservation_id, self.reserve, self.unit)
    }

    /// The script's keys and arguments; time comes from Redis `TIME`.
    pub fn command(&self, keys: &Keys) -> ScriptCall {
        self.build(keys, None)
    }

    /// At a given time, for the property tests only.
    pub fn command_at(&self, keys: &Keys, now_ms: u64) -> ScriptCall {
        self.build(keys, Some(now_ms))
    }

    fn build(&self, keys: &Keys, now_ms: Option<u64>) -> ScriptCall {
        let key_list = self.limits.iter().map(|l| keys.limit_state(self.subject_hash, &l.id)).collect();
        let mut args: Vec<Arg> = vec![
            now_ms.map_or(Arg::Str(String::new()), Arg::from),
            Arg::from(keys.limit_state(self.subject_hash, "")),
            Arg::from(self.subject_hash),
            Arg::from(self.reserved_at_ms),
            Arg::from(self.reserve),
            Arg::from(self.actual),
            Arg::from(self.reservation_id),
            Arg::from(self.unit.as_str()),
            Arg::from(self.limits.len()),
        ];
        for limit in &self.limits {
            args.push(Arg::from(limit.id.as_str()));
            args.push(Arg::from(limit.algorithm.as_str()));
            args.push(Arg::from(limit.limit.get()));
            args.push(Arg::from(limit.window_ms.get()));
            args.push(Arg::from(limit.unit.as_str()));
            args.push(Arg::from(limit.mode.as_str()));
            args.push(Arg::from(warn_list(limit)));
        }
        ScriptCall { keys: key_list, args }
    }

    /// `EVALSHA` of the settle script (for a `/pipeline` with the release).
    pub fn evalsha(&self, keys: &Keys) -> Command {
        let call = self.command(keys);
        settle_script().evalsha(&call.keys, &call.args)
    }
}

/// The end of a request's concurrency lease: one `EVALSHA` of `scripts/release.lua`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release<'a> {
    /// The subject's hash.
    pub subject_hash: &'a str,
    /// The route's name.
    pub route: &'a str,
    /// The lease id the check took.
    pub lease_id: &'a str,
}

impl Release<'_> {
    /// The script's keys and arguments.
    pub fn command(&self, keys: &Keys) -> ScriptCall {
        ScriptCall {
            keys: vec![keys.limit_leases(self.subject_hash, self.route)],
            args: vec![Arg::from(self.lease_id)],
        }
    }

    /// `EVALSHA` of the release script (for a `/pipeline` with the settlement).
    pub fn evalsha(&self, keys: &Keys) -> Command {
        let call = self.command(keys);
        release_script().evalsha(&call.keys, &call.args)
    }
}

/// The check script (`scripts/check.lua`), hashed once per isolate.
pub fn check_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("scripts/check.lua")))
}

/// The check and the cache read in one script ([`scripts/check_and_read.lua`] around
/// `scripts/check.lua`), hashed once per isolate.
pub fn check_and_read_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let wrapper = include_str!("scripts/check_and_read.lua");
        Script::new(wrapper.replacen("-- @@CHECK_LUA@@", include_str!("scripts/check.lua"), 1))
    })
}

/// The check of a caller known by an API key not verified yet ([`scripts/check_key.lua`]
/// around `scripts/check.lua`), hashed once per isolate.
pub fn check_key_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let wrapper = include_str!("scripts/check_key.lua");
        Script::new(wrapper.replacen("-- @@CHECK_LUA@@", include_str!("scripts/check.lua"), 1))
    })
}

/// The key check and the cache read in one script (`scripts/check_and_read.lua` around
/// `scripts/check_key.lua` around `scripts/check.lua`), hashed once per isolate.
pub fn check_key_and_read_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let wrapper = include_str!("scripts/check_and_read.lua").replacen(
            "local keyed = false -- @@KEYED@@",
            "local keyed = true",
            1,
        );
        Script::new(wrapper.replacen("-- @@CHECK_LUA@@", check_key_script().source(), 1))
    })
}

/// The settle script (`scripts/settle.lua`), hashed once per isolate.
pub fn settle_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("scripts/settle.lua")))
}

/// The release script (`scripts/release.lua`), hashed once per isolate.
pub fn release_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("scripts/release.lua")))
}

/// Fields per limit in the reply: id, algorithm, limit, window_ms, remaining, reset_ms, next_ms,
/// unit, mode, charged.
const FIELDS_PER_LIMIT: usize = 10;
/// Fields before the limits: now_ms, outcome, violated index, retry_after_ms, tier, override status, count.
const HEADER_FIELDS: usize = 7;
/// Fields of the slot: id, limit, in_flight, lease_ms, mode, acquired, reset_ms.
const SLOT_FIELDS: usize = 7;

/// Reads the script's reply (shape in the script's header); any other shape is an error, never a panic.
pub fn parse_reply(reply: &Reply) -> Result<Decision, LimiterError> {
    let items = reply.as_array().ok_or(LimiterError::MalformedReply("not an array"))?;
    let header = items.get(..HEADER_FIELDS).ok_or(LimiterError::MalformedReply("short header"))?;
    let now_ms = uint(&header[0], "now_ms")?;
    let outcome = header[1].to_i64().ok_or(LimiterError::MalformedReply("outcome"))?;
    let violated = usize::try_from(uint(&header[2], "violated index")?)
        .map_err(|_| LimiterError::MalformedReply("violated index"))?;
    let retry_after_ms = uint(&header[3], "retry_after_ms")?;
    let tier = text(&header[4], "tier")?;
    let override_status = uint(&header[5], "override status")?;
    let count =
        usize::try_from(uint(&header[6], "limit count")?).map_err(|_| LimiterError::MalformedReply("limit count"))?;
    let mut rest = &items[HEADER_FIELDS..];
    let body_len = count.checked_mul(FIELDS_PER_LIMIT).filter(|n| *n <= rest.len());
    let body_len = body_len.ok_or(LimiterError::MalformedReply("limit count does not match the fields"))?;
    let limits = rest[..body_len].chunks_exact(FIELDS_PER_LIMIT).map(parse_limit).collect::<Result<Vec<_>, _>>()?;
    rest = &rest[body_len..];
    let slot = rest.get(..SLOT_FIELDS).ok_or(LimiterError::MalformedReply("slot fields"))?;
    let concurrency = parse_slot(slot)?;
    rest = &rest[SLOT_FIELDS..];
    let (shadow_denied, after) = counted(rest, 1, "shadow list")?;
    let shadow_denied = shadow_denied.iter().map(|r| text(r, "shadow id")).collect::<Result<Vec<_>, _>>()?;
    let (warnings, after) = counted(after, 3, "warning list")?;
    if !after.is_empty() {
        return Err(LimiterError::MalformedReply("trailing fields"));
    }
    let warnings = parse_warnings(warnings)?;
    let (tier, override_ignored) = match override_status {
        0 => (None, false),
        1 => (Some(tier), false),
        2 => (None, true),
        _ => return Err(LimiterError::MalformedReply("override status")),
    };
    let snapshot = Snapshot { now_ms, tier, override_ignored, limits, concurrency, shadow_denied, warnings };
    let violated_id = || {
        let i = violated.checked_sub(1).ok_or(LimiterError::MalformedReply("violated index"))?;
        match (snapshot.limits.get(i), &snapshot.concurrency) {
            (Some(l), _) => Ok(l.id.clone()),
            (None, Some(c)) if i == snapshot.limits.len() => Ok(c.id.clone()),
            _ => Err(LimiterError::MalformedReply("violated index")),
        }
    };
    match outcome {
        1 => Ok(Decision::Allowed(snapshot)),
        0 => {
            let violated = violated_id()?;
            Ok(Decision::Denied { snapshot, violated, retry_after_ms })
        }
        -1 => {
            let violated = violated_id()?;
            Ok(Decision::Impossible { snapshot, violated })
        }
        _ => Err(LimiterError::MalformedReply("outcome")),
    }
}

/// A count followed by `count × width` fields: those fields and what follows them.
fn counted<'r>(
    items: &'r [Reply],
    width: usize,
    what: &'static str,
) -> Result<(&'r [Reply], &'r [Reply]), LimiterError> {
    let (n, rest) = items.split_first().ok_or(LimiterError::MalformedReply(what))?;
    let n = usize::try_from(uint(n, what)?).map_err(|_| LimiterError::MalformedReply(what))?;
    let len = n.checked_mul(width).filter(|len| *len <= rest.len()).ok_or(LimiterError::MalformedReply(what))?;
    Ok(rest.split_at(len))
}

fn parse_warnings(fields: &[Reply]) -> Result<Vec<Warning>, LimiterError> {
    fields
        .chunks_exact(3)
        .map(|w| {
            let at = u32::try_from(uint(&w[1], "warning fraction")?)
                .ok()
                .and_then(WarnAt::from_ppm)
                .ok_or(LimiterError::MalformedReply("warning fraction"))?;
            Ok(Warning { limit_id: text(&w[0], "warning limit")?, at, used: uint(&w[2], "warning used")? })
        })
        .collect()
}

fn small(r: &Reply, what: &'static str) -> Result<u32, LimiterError> {
    uint(r, what).and_then(|n| u32::try_from(n).map_err(|_| LimiterError::MalformedReply(what)))
}

fn limit_mode(r: &Reply) -> Result<LimitMode, LimiterError> {
    LimitMode::parse(&text(r, "mode")?).ok_or(LimiterError::MalformedReply("mode"))
}

fn parse_limit(fields: &[Reply]) -> Result<LimitState, LimiterError> {
    let [id, algorithm, limit, window_ms, remaining, reset_ms, next_ms, unit, mode, charged] = fields else {
        return Err(LimiterError::MalformedReply("limit fields"));
    };
    Ok(LimitState {
        id: text(id, "limit id")?,
        algorithm: Algorithm::parse(&text(algorithm, "algorithm")?).ok_or(LimiterError::MalformedReply("algorithm"))?,
        limit: small(limit, "limit")?,
        window_ms: uint(window_ms, "window_ms")?,
        remaining: small(remaining, "remaining")?,
        reset_ms: uint(reset_ms, "reset_ms")?,
        next_ms: uint(next_ms, "next_ms")?,
        unit: Unit::parse(&text(unit, "unit")?).ok_or(LimiterError::MalformedReply("unit"))?,
        mode: limit_mode(mode)?,
        charged: small(charged, "charged")?,
    })
}

fn parse_slot(fields: &[Reply]) -> Result<Option<ConcurrencyState>, LimiterError> {
    let [id, limit, in_flight, lease_ms, mode, acquired, reset_ms] = fields else {
        return Err(LimiterError::MalformedReply("slot fields"));
    };
    let id = text(id, "slot id")?;
    if id.is_empty() {
        return Ok(None);
    }
    Ok(Some(ConcurrencyState {
        id,
        limit: small(limit, "slot limit")?,
        in_flight: small(in_flight, "in flight")?,
        lease_ms: uint(lease_ms, "lease_ms")?,
        mode: limit_mode(mode)?,
        acquired: match uint(acquired, "acquired")? {
            0 => false,
            1 => true,
            _ => return Err(LimiterError::MalformedReply("acquired")),
        },
        reset_ms: uint(reset_ms, "slot reset_ms")?,
    }))
}

/// What a settlement did: the time it ran and the warnings it published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleReply {
    /// Redis time of the settlement, Unix ms.
    pub now_ms: u64,
    /// Limits whose state was written.
    pub written: u32,
    /// Quota warnings it published.
    pub warnings: Vec<Warning>,
}

/// Reads `settle.lua`'s reply: `[now_ms, written, n, (limit id, ppm, used) × n]`.
pub fn parse_settle_reply(reply: &Reply) -> Result<SettleReply, LimiterError> {
    let items = reply.as_array().ok_or(LimiterError::MalformedReply("not an array"))?;
    let [now, written, rest @ ..] = items else {
        return Err(LimiterError::MalformedReply("short settle reply"));
    };
    let (warnings, after) = counted(rest, 3, "warning list")?;
    if !after.is_empty() {
        return Err(LimiterError::MalformedReply("trailing fields"));
    }
    Ok(SettleReply {
        now_ms: uint(now, "now_ms")?,
        written: small(written, "written")?,
        warnings: parse_warnings(warnings)?,
    })
}

fn uint(reply: &Reply, what: &'static str) -> Result<u64, LimiterError> {
    reply.to_i64().and_then(|n| u64::try_from(n).ok()).ok_or(LimiterError::MalformedReply(what))
}

fn text(reply: &Reply, what: &'static str) -> Result<String, LimiterError> {
    reply.as_str().map(str::to_owned).ok_or(LimiterError::MalformedReply(what))
}

/// The script's reply for `decision` (the inverse of [`parse_reply`]): lets fakes answer the check
/// with the Rust model. Tests and the `testing` feature only.
#[cfg(any(test, feature = "testing"))]
pub fn encode_reply(decision: &Decision) -> Reply {
    let snapshot = decision.snapshot();
    let int = |n: u64| Reply::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let (outcome, violated) = match decision {
        Decision::Allowed(_) => (1, None),
        Decision::Denied { violated, .. } => (0, Some(violated)),
        Decision::Impossible { violated, .. } => (-1, Some(violated)),
    };
    let slot_index = |id: &String| snapshot.concurrency.as_ref().filter(|c| &c.id == id).map(|_| snapshot.limits.len());
    let index = violated
        .and_then(|id| snapshot.limits.iter().position(|l| &l.id == id).or_else(|| slot_index(id)))
        .map_or(0, |i| i as u64 + 1);
    let status = match (&snapshot.tier, snapshot.override_ignored) {
        (Some(_), _) => 1,
        (None, true) => 2,
        (None, false) => 0,
    };
    let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
    let mut items = vec![
        int(snapshot.now_ms),
        Reply::Int(outcome),
        int(index),
        int(decision.retry_after_ms().unwrap_or(0)),
        Reply::Bulk(snapshot.tier.clone().unwrap_or_default().into_bytes()),
        Reply::Int(status),
        int(snapshot.limits.len() as u64),
    ];
    for l in &snapshot.limits {
        items.extend([
            bulk(&l.id),
            bulk(l.algorithm.as_str()),
            int(u64::from(l.limit)),
            int(l.window_ms),
            int(u64::from(l.remaining)),
            int(l.reset_ms),
            int(l.next_ms),
            bulk(l.unit.as_str()),
            bulk(l.mode.as_str()),
            int(u64::from(l.charged)),
        ]);
    }
    match &snapshot.concurrency {
        Some(c) => items.extend([
            bulk(&c.id),
            int(u64::from(c.limit)),
            int(u64::from(c.in_flight)),
            int(c.lease_ms),
            bulk(c.mode.as_str()),
            int(u64::from(c.acquired)),
            int(c.reset_ms),
        ]),
        None => items.extend([bulk(""), int(0), int(0), int(0), bulk("enforce"), int(0), int(0)]),
    }
    items.push(int(snapshot.shadow_denied.len() as u64));
    items.extend(snapshot.shadow_denied.iter().map(|id| bulk(id)));
    items.push(int(snapshot.warnings.len() as u64));
    for w in &snapshot.warnings {
        items.extend([bulk(&w.limit_id), int(u64::from(w.at.ppm())), int(w.used)]);
    }
    Reply::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::model::test_support::limit;

    #[test]
    fn encoded_replies_parse_back_to_the_same_decision() {
        let tier = [limit("tier-basic", Algorithm::FixedWindow, 2, 60_000)];
        let check = Check {
            subject_hash: "abc",
            tier_limits: &tier,
            route_limits: &[],
            cost: NonZeroU32::MIN,
            mode: Mode::Consume,
            usage: None,
            concurrency: None,
        };
        let mut memory = crate::limiter::MemoryLimiter::new(16);
        for _ in 0..3 {
            let decision = memory.check(&check, 1_000).expect("valid");
            assert_eq!(parse_reply(&encode_reply(&decision)).expect("parses"), decision);
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn command_lists_the_override_key_then_one_key_per_limit() {
        let tier = [limit("tier-basic", Algorithm::SlidingWindow, 100, 3_600_000)];
        let route = [limit("route-chat", Algorithm::Gcra, 20, 60_000)];
        let check = Check {
            subject_hash: "abc",
            tier_limits: &tier,
            route_limits: &route,
            cost: NonZeroU32::MIN,
            mode: Mode::Consume,
            usage: None,
            concurrency: None,
        };
        let call = check.command(&Keys::new("ns")).expect("valid");
        assert_eq!(
            call.keys,
            ["ns:ratelimit:v1:{abc}:override", "ns:ratelimit:v1:{abc}:tier-basic", "ns:ratelimit:v1:{abc}:route-chat"]
        );
        assert_eq!(call.args[0], Arg::Str(String::new()), "production time comes from Redis TIME");
        assert_eq!(call.args[3], Arg::Str("ns:ratelimit:v1:{abc}:".into()));
        assert_eq!(call.args.len(), 15 + 8 * 2);
        assert_eq!(call.args[12..15], [Arg::from(""), Arg::from(""), Arg::from(0u32)], "no reservation");
        assert_eq!(check.command_at(&Keys::new("ns"), 42).expect("valid").args[0], Arg::Int(42));
        assert_eq!(call.evalsha().name(), "EVALSHA");
    }

    #[test]
    fn shared_ids_must_agree_on_algorithm_and_window() {
        let tier = [limit("same", Algorithm::Gcra, 1, 1_000)];
        let agreeing = [limit("same", Algorithm::Gcra, 5, 1_000)];
        let check = Check {
            subject_hash: "s",
            tier_limits: &tier,
            route_limits: &agreeing,
            cost: NonZeroU32::MIN,
            mode: Mode::Peek,
            usage: None,
            concurrency: None,
        };
        assert_eq!(check.validate(), Ok(()));
        let other = [limit("same", Algorithm::Gcra, 1, 2_000)];
        let check = Check { route_limits: &other, ..check };
        assert_eq!(check.validate(), Err(LimiterError::DuplicateLimitId { id: "same".into() }));
    }

    /// The fields of a reply with no slot, no shadow denial and no warning after `limits`.
    fn tail() -> Vec<Reply> {
        vec![
            bulk(""),
            Reply::Int(0),
            Reply::Int(0),
            Reply::Int(0),
            bulk("enforce"),
            Reply::Int(0),
            Reply::Int(0),
            Reply::Int(0),
            Reply::Int(0),
        ]
    }

    #[test]
    fn a_denied_reply_parses_into_a_decision() {
        let mut items = vec![
            Reply::Int(1_000),
            Reply::Int(0),
            Reply::Int(1),
            Reply::Int(250),
            bulk("PRO"),
            Reply::Int(1),
            Reply::Int(1),
            bulk("tier-pro"),
            bulk("gcra"),
            Reply::Int(10),
            Reply::Int(60_000),
            Reply::Int(0),
            Reply::Int(61_000),
            Reply::Int(1_250),
            bulk("requests"),
            bulk("enforce"),
            Reply::Int(0),
        ];
        items.extend(tail());
        let d = parse_reply(&Reply::Array(items)).expect("valid reply");
        assert_eq!(d.violated(), Some("tier-pro"));
        assert_eq!(d.retry_after_ms(), Some(250));
        assert_eq!(d.snapshot().tier.as_deref(), Some("PRO"));
        assert_eq!(d.snapshot().limits[0].algorithm, Algorithm::Gcra);
        assert_eq!(d.snapshot().concurrency, None);
    }

    #[test]
    fn a_concurrency_refusal_names_the_slot_and_lists_shadow_denials_and_warnings() {
        let items = vec![
            Reply::Int(1_000),
            Reply::Int(0),
            Reply::Int(1),
            Reply::Int(1_000),
            bulk(""),
            Reply::Int(0),
            Reply::Int(0),
            bulk("route-chat-concurrency"),
            Reply::Int(2),
            Reply::Int(2),
            Reply::Int(120_000),
            bulk("enforce"),
            Reply::Int(0),
            Reply::Int(90_000),
            Reply::Int(1),
            bulk("new-limit"),
            Reply::Int(1),
            bulk("tier-tokens"),
            Reply::Int(800_000),
            Reply::Int(810),
        ];
        let d = parse_reply(&Reply::Array(items)).expect("valid reply");
        assert_eq!(d.violated(), Some("route-chat-concurrency"));
        assert!(d.refused_by_concurrency());
        let c = d.snapshot().concurrency.as_ref().expect("slot");
        assert_eq!((c.limit, c.in_flight, c.acquired, c.remaining()), (2, 2, false, 0));
        assert_eq!(d.snapshot().shadow_denied, ["new-limit"]);
        assert_eq!(d.snapshot().warnings[0].at.ppm(), 800_000);
    }

    #[test]
    fn command_charges_the_reservation_to_limits_of_the_usage_unit_only() {
        let mut tokens = limit("tier-tokens", Algorithm::FixedWindow, 1_000, 86_400_000);
        tokens.unit = Unit::parse("tokens").expect("unit");
        let mut bytes = limit("tier-bytes", Algorithm::FixedWindow, 1_000, 86_400_000);
        bytes.unit = Unit::parse("bytes").expect("unit");
        let tier = [limit("tier-basic", Algorithm::SlidingWindow, 100, 3_600_000), tokens.clone(), bytes];
        let rule = ConcurrencyRule {
            id: "route-chat-concurrency".into(),
            limit: NonZeroU32::new(2).expect("2"),
            lease_ms: std::num::NonZeroU64::new(120_000).expect("lease"),
            mode: LimitMode::Enforce,
        };
        let check = Check {
            subject_hash: "abc",
            tier_limits: &tier,
            route_limits: &[],
            cost: NonZeroU32::MIN,
            mode: Mode::Consume,
            usage: Some(Reservation { unit: &tokens.unit, reserve: NonZeroU32::new(300).expect("300"), id: "r1" }),
            concurrency: Some(Slot { rule: &rule, route: "chat", lease_id: "l1" }),
        };
        let call = check.command(&Keys::new("ns")).expect("valid");
        assert_eq!(call.keys.len(), 1 + 2 + 1, "bytes are not reported on this route: not charged");
        assert_eq!(call.keys[3], "ns:ratelimit:v1:{abc}:lease:chat");
        assert_eq!(call.args[12..15], [Arg::from("r1"), Arg::from("tokens"), Arg::from(300u32)], "the reservation");
        assert_eq!(call.args[15 + 8 + 4], Arg::from(300u32), "the token limit costs the reservation");
        assert_eq!(call.args[15 + 4], Arg::from(1u32), "the request limit costs the route's cost");
        let peek = Check { mode: Mode::Peek, ..check }.command(&Keys::new("ns")).expect("valid");
        assert_eq!(peek.args[12..15], [Arg::from(""), Arg::from(""), Arg::from(0u32)], "a peek records nothing");
        let bad = Check { concurrency: Some(Slot { rule: &rule, route: "chat", lease_id: "no spaces" }), ..check };
        assert_eq!(bad.validate(), Err(LimiterError::BadLeaseId));
        for id in ["", "a:b", &"x".repeat(65)] {
            let usage = Some(Reservation { id, ..check.usage.expect("usage") });
            assert_eq!(Check { usage, ..check }.validate(), Err(LimiterError::BadReservationId), "{id:?}");
        }
    }

    #[test]
    fn a_settlement_names_the_reservation_it_removes() {
        let mut tokens = limit("tier-tokens", Algorithm::FixedWindow, 1_000, 86_400_000);
        tokens.unit = Unit::parse("tokens").expect("unit");
        let tier = [tokens.clone()];
        let check = Check {
            subject_hash: "abc",
            tier_limits: &tier,
            route_limits: &[],
            cost: NonZeroU32::MIN,
            mode: Mode::Consume,
            usage: Some(Reservation { unit: &tokens.unit, reserve: NonZeroU32::new(300).expect("300"), id: "r1" }),
            concurrency: None,
        };
        let decision = crate::limiter::MemoryLimiter::new(16).check(&check, 5_000).expect("valid");
        let settlement = check.settlement(&decision, 120).expect("a reservation was charged");
        assert_eq!(settlement.member(), "r1:300:tokens");
        let call = settlement.command(&Keys::new("ns"));
        assert_eq!(call.args[1], Arg::from("ns:ratelimit:v1:{abc}:"), "the set is found under the prefix");
        assert_eq!(
            call.args[4..9],
            [Arg::from(300u32), Arg::from(120u32), Arg::from("r1"), Arg::from("tokens"), Arg::from(1usize)]
        );
        assert_eq!(call.args.len(), 9 + 7);
    }

    #[test]
    fn a_settle_reply_parses_and_rejects_other_shapes() {
        let ok = Reply::Array(vec![
            Reply::Int(5),
            Reply::Int(1),
            Reply::Int(1),
            bulk("t"),
            Reply::Int(1_000_000),
            Reply::Int(9),
        ]);
        let r = parse_settle_reply(&ok).expect("valid");
        assert_eq!((r.now_ms, r.written, r.warnings.len()), (5, 1, 1));
        for bad in [
            Reply::Nil,
            Reply::Array(vec![Reply::Int(5)]),
            Reply::Array(vec![Reply::Int(5), Reply::Int(0), Reply::Int(1)]),
        ] {
            assert!(parse_settle_reply(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let with_tail = |mut head: Vec<Reply>| {
            head.extend(tail());
            Reply::Array(head)
        };
        let cases = [
            Reply::Nil,
            Reply::Int(1),
            Reply::Array(vec![]),
            Reply::Array(vec![Reply::Int(1); 7]),
            with_tail(vec![
                Reply::Int(1),
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(0),
                bulk(""),
                Reply::Int(0),
                Reply::Int(1),
            ]),
            with_tail(vec![
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(9),
                Reply::Int(0),
                bulk(""),
                Reply::Int(0),
                Reply::Int(0),
            ]),
            with_tail(vec![
                Reply::Int(-1),
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(0),
                bulk(""),
                Reply::Int(0),
                Reply::Int(0),
            ]),
            {
                let mut ok = vec![
                    Reply::Int(1),
                    Reply::Int(1),
                    Reply::Int(0),
                    Reply::Int(0),
                    bulk(""),
                    Reply::Int(0),
                    Reply::Int(0),
                ];
                ok.extend(tail());
                ok.push(Reply::Int(0));
                Reply::Array(ok)
            },
        ];
        let mut fine =
            vec![Reply::Int(1), Reply::Int(1), Reply::Int(0), Reply::Int(0), bulk(""), Reply::Int(0), Reply::Int(0)];
        fine.extend(tail());
        assert!(parse_reply(&Reply::Array(fine)).is_ok(), "the cases below differ from a valid reply in one way");
        for reply in cases {
            assert!(parse_reply(&reply).is_err(), "{reply:?}");
        }
    }
}
