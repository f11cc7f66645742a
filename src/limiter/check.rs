//! One check of every limit that applies to a request, as ONE `EVALSHA` of `scripts/check.lua`:
//! building its `KEYS`/`ARGV`, and reading its reply back into a [`Decision`].
//!
//! Cost: one command per check (one billed Upstash command), however many limits apply; inside a
//! `/pipeline` with the cache read it shares the request's single HTTP round trip.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use crate::keys::Keys;
use crate::policy::{Algorithm, Limit};
use crate::redis::{Arg, Client, Command, Reply, Script, Transport};

use super::decision::{Decision, LimitState, Snapshot};
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

/// Everything one check needs: who, which limits, what it costs, and whether to charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// The subject's hash ([`crate::keys::hash_identifier`]); the hash tag of all its keys.
    pub subject_hash: &'a str,
    /// The tier's limits; a subject's override replaces them.
    pub tier_limits: &'a [Limit],
    /// The route's limits; they apply whatever the override.
    pub route_limits: &'a [Limit],
    /// Units the request takes from every limit.
    pub cost: NonZeroU32,
    /// Charge or only look.
    pub mode: Mode,
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

    /// Refuses limits outside the exact-math bounds, and ids shared by limits that disagree on
    /// algorithm or window (limits agreeing on both are checked once; see [`merge_shared`]).
    pub fn validate(&self) -> Result<(), LimiterError> {
        for limit in self.limits() {
            check_bounds(limit)?;
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
        let mut key_list = vec![keys.limit_override(self.subject_hash)];
        key_list.extend(self.limits().map(|l| keys.limit_state(self.subject_hash, &l.id)));
        let mut args: Vec<Arg> = vec![
            now_ms.map_or(Arg::Str(String::new()), Arg::from),
            Arg::from(self.mode.as_str()),
            Arg::from(self.cost.get()),
            Arg::from(keys.limit_state(self.subject_hash, "")),
            Arg::from(self.tier_limits.len()),
            Arg::from(self.route_limits.len()),
        ];
        for limit in self.limits() {
            args.push(Arg::from(limit.id.as_str()));
            args.push(Arg::from(limit.algorithm.as_str()));
            args.push(Arg::from(limit.limit.get()));
            args.push(Arg::from(limit.window_ms.get()));
        }
        Ok(ScriptCall { keys: key_list, args })
    }

    /// Runs the check on Redis (`EVALSHA`, `EVAL` once on `NOSCRIPT`) and reads the decision.
    pub async fn run<T: Transport>(&self, client: &Client<T>, keys: &Keys) -> Result<Decision, LimiterError> {
        let call = self.command(keys)?;
        let reply = client.eval(check_script(), &call.keys, &call.args).await?;
        parse_reply(&reply)
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

/// Fields per limit in the reply: id, algorithm, limit, window_ms, remaining, reset_ms, next_ms.
const FIELDS_PER_LIMIT: usize = 7;
/// Fields before the limits: now_ms, outcome, violated index, retry_after_ms, tier, override status, count.
const HEADER_FIELDS: usize = 7;

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
    let body = &items[HEADER_FIELDS..];
    if body.len() != count.saturating_mul(FIELDS_PER_LIMIT) {
        return Err(LimiterError::MalformedReply("limit count does not match the fields"));
    }
    let limits = body.chunks_exact(FIELDS_PER_LIMIT).map(parse_limit).collect::<Result<Vec<_>, _>>()?;
    let (tier, override_ignored) = match override_status {
        0 => (None, false),
        1 => (Some(tier), false),
        2 => (None, true),
        _ => return Err(LimiterError::MalformedReply("override status")),
    };
    let snapshot = Snapshot { now_ms, tier, override_ignored, limits };
    let violated_id = || {
        violated
            .checked_sub(1)
            .and_then(|i| snapshot.limits.get(i))
            .map(|l| l.id.clone())
            .ok_or(LimiterError::MalformedReply("violated index"))
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

fn parse_limit(fields: &[Reply]) -> Result<LimitState, LimiterError> {
    let [id, algorithm, limit, window_ms, remaining, reset_ms, next_ms] = fields else {
        return Err(LimiterError::MalformedReply("limit fields"));
    };
    let small = |r: &Reply, what: &'static str| {
        uint(r, what).and_then(|n| u32::try_from(n).map_err(|_| LimiterError::MalformedReply(what)))
    };
    Ok(LimitState {
        id: text(id, "limit id")?,
        algorithm: Algorithm::parse(&text(algorithm, "algorithm")?).ok_or(LimiterError::MalformedReply("algorithm"))?,
        limit: small(limit, "limit")?,
        window_ms: uint(window_ms, "window_ms")?,
        remaining: small(remaining, "remaining")?,
        reset_ms: uint(reset_ms, "reset_ms")?,
        next_ms: uint(next_ms, "next_ms")?,
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
    let index = violated.and_then(|id| snapshot.limits.iter().position(|l| &l.id == id)).map_or(0, |i| i as u64 + 1);
    let status = match (&snapshot.tier, snapshot.override_ignored) {
        (Some(_), _) => 1,
        (None, true) => 2,
        (None, false) => 0,
    };
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
            Reply::Bulk(l.id.clone().into_bytes()),
            Reply::Bulk(l.algorithm.as_str().as_bytes().to_vec()),
            int(u64::from(l.limit)),
            int(l.window_ms),
            int(u64::from(l.remaining)),
            int(l.reset_ms),
            int(l.next_ms),
        ]);
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
        };
        let call = check.command(&Keys::new("ns")).expect("valid");
        assert_eq!(
            call.keys,
            ["ns:ratelimit:v1:{abc}:override", "ns:ratelimit:v1:{abc}:tier-basic", "ns:ratelimit:v1:{abc}:route-chat"]
        );
        assert_eq!(call.args[0], Arg::Str(String::new()), "production time comes from Redis TIME");
        assert_eq!(call.args[3], Arg::Str("ns:ratelimit:v1:{abc}:".into()));
        assert_eq!(call.args.len(), 6 + 4 * 2);
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
        };
        assert_eq!(check.validate(), Ok(()));
        let other = [limit("same", Algorithm::Gcra, 1, 2_000)];
        let check = Check { route_limits: &other, ..check };
        assert_eq!(check.validate(), Err(LimiterError::DuplicateLimitId { id: "same".into() }));
    }

    #[test]
    fn a_denied_reply_parses_into_a_decision() {
        let reply = Reply::Array(vec![
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
        ]);
        let d = parse_reply(&reply).expect("valid reply");
        assert_eq!(d.violated(), Some("tier-pro"));
        assert_eq!(d.retry_after_ms(), Some(250));
        assert_eq!(d.snapshot().tier.as_deref(), Some("PRO"));
        assert_eq!(d.snapshot().limits[0].algorithm, Algorithm::Gcra);
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let cases = [
            Reply::Nil,
            Reply::Int(1),
            Reply::Array(vec![]),
            Reply::Array(vec![Reply::Int(1); 7]),
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(0),
                bulk(""),
                Reply::Int(0),
                Reply::Int(1),
            ]),
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(9),
                Reply::Int(0),
                bulk(""),
                Reply::Int(0),
                Reply::Int(0),
            ]),
            Reply::Array(vec![
                Reply::Int(-1),
                Reply::Int(1),
                Reply::Int(0),
                Reply::Int(0),
                bulk(""),
                Reply::Int(0),
                Reply::Int(0),
            ]),
        ];
        for reply in cases {
            assert!(parse_reply(&reply).is_err(), "{reply:?}");
        }
    }
}
