//! What every algorithm shares: the per-limit [`Verdict`], stored [`State`] and its text form, the
//! bounds that keep the integer math exact in Lua, and the all-or-nothing evaluation of a limit set.
//!
//! The functions here are the specification of `scripts/check.lua`: same inputs, same integers.

use crate::policy::{Algorithm, ConcurrencyRule, Limit, LimitMode, Unit, WarnAt};

use super::concurrency::{slot_free_at, Leases, RETRY_HINT_MS};
use super::decision::{ConcurrencyState, Decision, LimitState, Snapshot};
use super::{fixed_window, gcra, sliding_window, token_bucket, LimiterError, Mode};

/// Longest window the limiter accepts: 2^40 ms (about 34.8 years).
///
/// Lua numbers are doubles; with Unix-ms times below 2^42 (year 2109) every sum of times stays an
/// exact integer.
pub const MAX_WINDOW_MS: u64 = 1 << 40;

/// Largest `limit × window_ms` the limiter accepts: 2^52 (e.g. 1 M per day, 250 k per year).
///
/// Every product the algorithms form is at most `(limit + 1) × window_ms`, so it stays below 2^53,
/// where doubles still hold every integer exactly.
pub const MAX_LIMIT_TIMES_WINDOW: u64 = 1 << 52;

/// Largest integer a stored state field may hold (2^53); larger text reads as no state.
pub(crate) const MAX_EXACT: u64 = 1 << 53;

/// Whether a limit is within the bounds the Lua script computes exactly.
pub fn check_bounds(limit: &Limit) -> Result<(), LimiterError> {
    let window = limit.window_ms.get();
    let product = u128::from(limit.limit.get()) * u128::from(window);
    if window > MAX_WINDOW_MS || product > u128::from(MAX_LIMIT_TIMES_WINDOW) {
        return Err(LimiterError::LimitOutOfRange { id: limit.id.clone() });
    }
    Ok(())
}

/// Folds limits sharing an id into one, in the place of the first, with the smaller `limit`: they
/// share one Redis key, so one request must charge it once. Limits sharing an id must agree on
/// algorithm and window (the policy requires it); if they do not, the id is returned as an error.
pub fn merge_shared<'l>(limits: impl IntoIterator<Item = &'l Limit>) -> Result<Vec<&'l Limit>, LimiterError> {
    let mut merged: Vec<&Limit> = Vec::new();
    for limit in limits {
        match merged.iter_mut().find(|m| m.id == limit.id) {
            None => merged.push(limit),
            Some(first) if first.algorithm == limit.algorithm && first.window_ms == limit.window_ms => {
                if limit.limit < first.limit {
                    *first = limit;
                }
            }
            Some(_) => return Err(LimiterError::DuplicateLimitId { id: limit.id.clone() }),
        }
    }
    Ok(merged)
}

/// The result of one limit for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `cost` units fit now.
    Allowed,
    /// `cost` units do not fit now; they will in `retry_after_ms` if nothing else is consumed.
    Denied {
        /// Milliseconds until `cost` units fit (at least 1).
        retry_after_ms: u64,
    },
    /// `cost` exceeds the limit itself: it can never fit, waiting does not help.
    Impossible,
}

/// One limit's verdict: the outcome and the limit's state as it stands after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether `cost` fits.
    pub outcome: Outcome,
    /// Units left after the decision (after consuming `cost` if allowed; untouched otherwise).
    pub remaining: u32,
    /// Unix ms at which, with nothing more consumed, `remaining` is back to the full limit
    /// (`now` when it already is).
    pub reset_ms: u64,
    /// Unix ms at which at least one more unit is available (`now` when `remaining` is the full
    /// limit); the IETF `RateLimit` `t` parameter.
    pub next_ms: u64,
}

impl Verdict {
    /// Builds a verdict from the units left and the algorithm's "earliest time `need` units fit".
    pub(crate) fn new(outcome: Outcome, remaining: u64, limit: u64, earliest: impl Fn(u64) -> u64) -> Self {
        let remaining = remaining.min(limit);
        Verdict {
            outcome,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_ms: earliest(limit),
            next_ms: earliest((remaining + 1).min(limit)),
        }
    }
}

/// The stored state of one limit, whichever its algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// See [`fixed_window::State`].
    FixedWindow(fixed_window::State),
    /// See [`sliding_window::State`].
    SlidingWindow(sliding_window::State),
    /// See [`token_bucket::State`].
    TokenBucket(token_bucket::State),
    /// See [`gcra::State`].
    Gcra(gcra::State),
}

impl State {
    /// The algorithm this state belongs to.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            State::FixedWindow(_) => Algorithm::FixedWindow,
            State::SlidingWindow(_) => Algorithm::SlidingWindow,
            State::TokenBucket(_) => Algorithm::TokenBucket,
            State::Gcra(_) => Algorithm::Gcra,
        }
    }

    /// Unix ms from which this state decides exactly as no state would; its key expires then.
    pub fn expires_at(&self, limit: &Limit) -> u64 {
        match self {
            State::FixedWindow(s) => s.expires_at(limit),
            State::SlidingWindow(s) => s.expires_at(limit),
            State::TokenBucket(s) => s.expires_at(limit),
            State::Gcra(s) => s.expires_at(limit),
        }
    }

    /// The value stored in Redis: a tag and decimal integers joined by `:` (`fw:start:count`,
    /// `sw:start:current:previous`, `tb:level:updated`, `gc:tat_ms:tat_rem`).
    pub fn encode(&self) -> String {
        match self {
            State::FixedWindow(s) => format!("fw:{}:{}", s.window_start_ms, s.count),
            State::SlidingWindow(s) => format!("sw:{}:{}:{}", s.window_start_ms, s.current, s.previous),
            State::TokenBucket(s) => format!("tb:{}:{}", s.level, s.updated_ms),
            State::Gcra(s) => format!("gc:{}:{}", s.tat_ms, s.tat_rem),
        }
    }

    /// Reads a stored value; anything not exactly in [`State::encode`]'s form (or with a number
    /// above 2^53) is `None`, which the limiter treats as no state, as the script does.
    pub fn decode(text: &str) -> Option<State> {
        let mut parts = text.split(':');
        let tag = parts.next()?;
        let numbers: Vec<u64> = parts.map(decode_number).collect::<Option<_>>()?;
        match (tag, numbers.as_slice()) {
            ("fw", &[window_start_ms, count]) => {
                Some(State::FixedWindow(fixed_window::State { window_start_ms, count }))
            }
            ("sw", &[window_start_ms, current, previous]) => {
                Some(State::SlidingWindow(sliding_window::State { window_start_ms, current, previous }))
            }
            ("tb", &[level, updated_ms]) => Some(State::TokenBucket(token_bucket::State { level, updated_ms })),
            ("gc", &[tat_ms, tat_rem]) => Some(State::Gcra(gcra::State { tat_ms, tat_rem })),
            _ => None,
        }
    }
}

/// One field of a stored state: 1 to 16 ASCII digits, at most 2^53 (the script's `%d+` rule).
fn decode_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|n| *n <= MAX_EXACT)
}

/// Decides one limit with its algorithm; a state of another algorithm counts as none.
pub fn decide(state: Option<&State>, now_ms: u64, limit: &Limit, cost: u32) -> (Verdict, Option<State>) {
    match limit.algorithm {
        Algorithm::FixedWindow => {
            let s = match state {
                Some(State::FixedWindow(s)) => Some(*s),
                _ => None,
            };
            let (v, s) = fixed_window::decide(s, now_ms, limit, cost);
            (v, s.map(State::FixedWindow))
        }
        Algorithm::SlidingWindow => {
            let s = match state {
                Some(State::SlidingWindow(s)) => Some(*s),
                _ => None,
            };
            let (v, s) = sliding_window::decide(s, now_ms, limit, cost);
            (v, s.map(State::SlidingWindow))
        }
        Algorithm::TokenBucket => {
            let s = match state {
                Some(State::TokenBucket(s)) => Some(*s),
                _ => None,
            };
            let (v, s) = token_bucket::decide(s, now_ms, limit, cost);
            (v, s.map(State::TokenBucket))
        }
        Algorithm::Gcra => {
            let s = match state {
                Some(State::Gcra(s)) => Some(*s),
                _ => None,
            };
            let (v, s) = gcra::decide(s, now_ms, limit, cost);
            (v, s.map(State::Gcra))
        }
    }
}

/// One limit of a check: what it is, what this request would charge it, and its stored state.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    /// The limit.
    pub limit: &'a Limit,
    /// Units this request takes from it (the route's cost, or its usage reservation).
    pub cost: u32,
    /// Its state, if one is stored.
    pub state: Option<&'a State>,
}

/// The concurrency slot a check asks for.
#[derive(Debug, Clone, Copy)]
pub struct SlotRequest<'a> {
    /// The route's rule.
    pub rule: &'a ConcurrencyRule,
    /// The caller's leases on the route.
    pub leases: &'a Leases,
}

/// A limit's usage crossing one of its warning fractions in a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    /// Index of the limit in the check.
    pub index: usize,
    /// The fraction crossed.
    pub at: WarnAt,
    /// Units used after the charge.
    pub used: u64,
    /// When this window ends: one warning per (subject, limit, fraction) until then.
    pub until_ms: u64,
}

/// The all-or-nothing result of a limit set: the decision, the states to store (one per limit,
/// in order; `None` where nothing is written), the lease to take, the reservation to record and
/// the warnings crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// What the caller is told.
    pub decision: Decision,
    /// New state of each limit, to be written (with its expiry) only when present.
    pub writes: Vec<Option<State>>,
    /// The deadline of the lease to add, when the check takes a concurrency slot.
    pub lease_until: Option<u64>,
    /// The deadline of the reservation to record, when the check charged the usage unit to at
    /// least one limit (see [`super::reservations`]).
    pub reservation_until: Option<u64>,
    /// Warning fractions the charge crossed, before de-duplication per window.
    pub crossings: Vec<Crossing>,
}

/// Checks every limit at once, exactly as `check.lua` does; `charges` are distinct (see
/// [`merge_shared`]).
///
/// 1. Each limit decides its own cost; the concurrency slot fits when fewer than `limit` leases
///    are live.
/// 2. Only enforced limits refuse. Any enforced `Impossible` makes the check impossible (the
///    first such limit is the violated one); otherwise any enforced denial (a full enforced
///    concurrency slot included, checked after the limits) denies it, the violated one being the
///    one that frees up last (the first on a tie), with its `retry_after_ms`.
/// 3. Only an allowed check in [`Mode::Consume`] writes: every enforced limit, each shadow limit
///    that allows by itself (as if enforced, the request having gone through), and a lease when
///    the slot fits. A refused check writes nothing anywhere, shadow limits included. Limits not
///    written report their untouched state (their verdict for a cost of 0).
/// 4. Shadow limits (and a shadow slot) whose own verdict is not `Allowed` are listed in
///    `shadow_denied`, whatever the outcome.
/// 5. Every limit written with `warn_at` reports the fractions its usage crossed: `used` before
///    the charge `< ⌈f × limit⌉ ≤` used after, `used = limit − remaining`.
/// 6. With `reserving` (the route's usage unit), a check that wrote at least one limit of that
///    unit records its reservation until the latest expiry of those states, capped at the
///    deadline of the lease it took.
pub fn evaluate(
    charges: &[Charge<'_>],
    slot: Option<SlotRequest<'_>>,
    now_ms: u64,
    mode: Mode,
    reserving: Option<&Unit>,
    tier: Option<String>,
    override_ignored: bool,
) -> Evaluation {
    let verdicts: Vec<(Verdict, Option<State>)> =
        charges.iter().map(|c| decide(c.state, now_ms, c.limit, c.cost)).collect();
    let enforced = |i: usize| charges.get(i).is_some_and(|c| !c.limit.is_shadow());

    let impossible =
        verdicts.iter().enumerate().position(|(i, (v, _))| enforced(i) && v.outcome == Outcome::Impossible);
    let mut denied: Option<(usize, u64)> = None;
    for (i, (v, _)) in verdicts.iter().enumerate() {
        if let Outcome::Denied { retry_after_ms } = v.outcome {
            if enforced(i) && denied.is_none_or(|(_, best)| retry_after_ms > best) {
                denied = Some((i, retry_after_ms));
            }
        }
    }
    // The slot: index `charges.len()` in the denial bookkeeping.
    let slot_view = slot.map(|s| {
        let deadlines = s.leases.live_deadlines(now_ms);
        let live = u32::try_from(deadlines.len()).unwrap_or(u32::MAX);
        let fits = live < s.rule.limit.get();
        (s, deadlines, live, fits)
    });
    if let Some((s, deadlines, _, false)) = &slot_view {
        if s.rule.mode == LimitMode::Enforce {
            let free_at = slot_free_at(deadlines, s.rule.limit.get(), now_ms);
            let retry = free_at.saturating_sub(now_ms).clamp(1, RETRY_HINT_MS);
            if denied.is_none_or(|(_, best)| retry > best) {
                denied = Some((charges.len(), retry));
            }
        }
    }
    let commit = impossible.is_none() && denied.is_none() && mode == Mode::Consume;

    let written: Vec<bool> = verdicts
        .iter()
        .enumerate()
        .map(|(i, (v, _))| commit && (enforced(i) || v.outcome == Outcome::Allowed))
        .collect();
    let mut states = Vec::with_capacity(charges.len());
    let mut crossings = Vec::new();
    let mut shadow_denied = Vec::new();
    for (i, (c, (verdict, _))) in charges.iter().zip(&verdicts).enumerate() {
        let before = decide(c.state, now_ms, c.limit, 0).0;
        let shown = if written[i] { *verdict } else { before };
        if c.limit.is_shadow() && verdict.outcome != Outcome::Allowed {
            shadow_denied.push(c.limit.id.clone());
        }
        if written[i] {
            let l = c.limit.limit.get();
            let used_before = u64::from(l - before.remaining.min(l));
            let used_after = u64::from(l - shown.remaining.min(l));
            for at in &c.limit.warn_at {
                let t = at.threshold(l);
                if used_before < t && t <= used_after {
                    let until_ms = warning_window_end(c.limit, now_ms, shown.reset_ms);
                    crossings.push(Crossing { index: i, at: *at, used: used_after, until_ms });
                }
            }
        }
        states.push(LimitState {
            id: c.limit.id.clone(),
            algorithm: c.limit.algorithm,
            limit: c.limit.limit.get(),
            window_ms: c.limit.window_ms.get(),
            remaining: shown.remaining,
            reset_ms: shown.reset_ms,
            next_ms: shown.next_ms,
            unit: c.limit.unit.clone(),
            mode: c.limit.mode,
            charged: if written[i] { c.cost } else { 0 },
        });
    }
    let mut lease_until = None;
    let concurrency = slot_view.map(|(s, mut deadlines, live, fits)| {
        let acquired = commit && fits;
        if !fits && s.rule.mode == LimitMode::Shadow {
            shadow_denied.push(s.rule.id.clone());
        }
        let mut in_flight = live;
        if acquired {
            let until = now_ms.saturating_add(s.rule.lease_ms.get());
            lease_until = Some(until);
            let at = deadlines.partition_point(|d| *d <= until);
            deadlines.insert(at, until);
            in_flight += 1;
        }
        ConcurrencyState {
            id: s.rule.id.clone(),
            limit: s.rule.limit.get(),
            in_flight,
            lease_ms: s.rule.lease_ms.get(),
            mode: s.rule.mode,
            acquired,
            reset_ms: slot_free_at(&deadlines, s.rule.limit.get(), now_ms),
        }
    });
    let writes: Vec<Option<State>> =
        verdicts.into_iter().zip(&written).map(|((_, s), w)| if *w { s } else { None }).collect();
    let reservation_until = reserving
        .and_then(|unit| {
            charges
                .iter()
                .zip(&writes)
                .filter(|(c, _)| c.limit.unit == *unit)
                .filter_map(|(c, w)| w.as_ref().map(|s| s.expires_at(c.limit)))
                .max()
        })
        .map(|until| lease_until.map_or(until, |lease| until.min(lease)));

    let id_of = |i: usize| match (charges.get(i), &concurrency) {
        (Some(c), _) => c.limit.id.clone(),
        (None, Some(c)) => c.id.clone(),
        (None, None) => String::new(),
    };
    let violated = impossible.map(|i| (i, None)).or(denied.map(|(i, r)| (i, Some(r))));
    let violated = violated.map(|(i, r)| (id_of(i), r));
    let snapshot =
        Snapshot { now_ms, tier, override_ignored, limits: states, concurrency, shadow_denied, warnings: Vec::new() };
    let decision = match violated {
        Some((violated, None)) => Decision::Impossible { violated, snapshot },
        Some((violated, Some(retry_after_ms))) => Decision::Denied { violated, retry_after_ms, snapshot },
        None => Decision::Allowed(snapshot),
    };
    Evaluation { decision, writes, lease_until, reservation_until, crossings }
}

/// Until when one warning per fraction holds: the end of the aligned window for the window
/// algorithms; for buckets and GCRA, when the limit is whole again after this charge.
pub fn warning_window_end(limit: &Limit, now_ms: u64, reset_ms: u64) -> u64 {
    match limit.algorithm {
        Algorithm::FixedWindow | Algorithm::SlidingWindow => {
            let w = limit.window_ms.get();
            (now_ms - now_ms % w).saturating_add(w)
        }
        Algorithm::TokenBucket | Algorithm::Gcra => reset_ms.max(now_ms + 1),
    }
}

/// `⌊a × b / c⌋` without overflow (saturating at `u64::MAX`); `c` must not be 0.
pub(crate) fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    let q = u128::from(a) * u128::from(b) / u128::from(c.max(1));
    u64::try_from(q).unwrap_or(u64::MAX)
}

/// `⌈a / b⌉`; `b` must not be 0.
pub(crate) fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Limits for the algorithm tests.
    use std::num::{NonZeroU32, NonZeroU64};

    use crate::policy::{Algorithm, Limit};

    /// `limit` units per `window_ms` with `algorithm`, id `id`.
    pub fn limit(id: &str, algorithm: Algorithm, limit: u32, window_ms: u64) -> Limit {
        Limit::requests(
            id,
            algorithm,
            NonZeroU32::new(limit).expect("non-zero limit"),
            NonZeroU64::new(window_ms).expect("non-zero window"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::limit;
    use super::*;

    const HOUR: u64 = 3_600_000;
    const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR;

    /// Every limit charged `cost`, no slot.
    fn eval(limits: &[(&Limit, Option<&State>)], now: u64, cost: u32, mode: Mode) -> Evaluation {
        let charges: Vec<Charge<'_>> =
            limits.iter().map(|(limit, state)| Charge { limit, cost, state: *state }).collect();
        evaluate(&charges, None, now, mode, None, None, false)
    }

    #[test]
    fn state_text_round_trips_for_every_algorithm() {
        let states = [
            State::FixedWindow(fixed_window::State { window_start_ms: 1, count: 2 }),
            State::SlidingWindow(sliding_window::State { window_start_ms: 3, current: 4, previous: 5 }),
            State::TokenBucket(token_bucket::State { level: 6, updated_ms: 7 }),
            State::Gcra(gcra::State { tat_ms: 8, tat_rem: 9 }),
        ];
        for s in states {
            assert_eq!(State::decode(&s.encode()), Some(s));
        }
    }

    #[test]
    fn malformed_state_text_reads_as_no_state() {
        for text in ["", "fw", "fw:1", "fw:1:2:3", "fw::2", "fw:-1:2", "fw:1.5:2", "xx:1:2", "fw:99999999999999999:1"] {
            assert_eq!(State::decode(text), None, "{text:?}");
        }
        assert_eq!(State::decode("fw:9007199254740993:1"), None);
    }

    #[test]
    fn bounds_reject_products_the_script_cannot_compute_exactly() {
        assert!(check_bounds(&limit("ok", Algorithm::Gcra, 1_000_000, 86_400_000)).is_ok());
        assert!(check_bounds(&limit("big", Algorithm::Gcra, u32::MAX, 86_400_000)).is_err());
        assert!(check_bounds(&limit("long", Algorithm::FixedWindow, 1, MAX_WINDOW_MS + 1)).is_err());
    }

    #[test]
    fn a_denial_consumes_nothing_from_other_limits() {
        let hourly = limit("tier-basic", Algorithm::FixedWindow, 100, HOUR);
        let chat = limit("route-chat", Algorithm::FixedWindow, 2, 60_000);
        let mut states: Vec<Option<State>> = vec![None, None];
        for _ in 0..2 {
            let inputs: Vec<_> = [&hourly, &chat].into_iter().zip(states.iter().map(Option::as_ref)).collect();
            let ev = eval(&inputs, T0, 1, Mode::Consume);
            assert!(ev.decision.is_allowed());
            states = ev.writes;
        }
        let inputs: Vec<_> = [&hourly, &chat].into_iter().zip(states.iter().map(Option::as_ref)).collect();
        let ev = eval(&inputs, T0 + 1, 1, Mode::Consume);
        match &ev.decision {
            Decision::Denied { violated, snapshot, .. } => {
                assert_eq!(violated, "route-chat");
                assert_eq!(snapshot.limits[0].remaining, 98, "the hourly limit keeps what it had");
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        assert!(ev.writes.iter().all(Option::is_none), "a denial writes nothing");
    }

    #[test]
    fn impossible_wins_over_denied_and_names_the_limit() {
        let small = limit("small", Algorithm::TokenBucket, 2, 1_000);
        let big = limit("big", Algorithm::FixedWindow, 10, 1_000);
        let ev = eval(&[(&big, None), (&small, None)], T0, 3, Mode::Consume);
        assert_eq!(ev.decision.as_str(), "impossible");
        assert!(matches!(&ev.decision, Decision::Impossible { violated, .. } if violated == "small"));
    }

    #[test]
    fn the_violated_limit_is_the_one_that_frees_up_last() {
        let minute = limit("minute", Algorithm::FixedWindow, 1, 60_000);
        let hour = limit("hour", Algorithm::FixedWindow, 1, HOUR);
        let first = eval(&[(&minute, None), (&hour, None)], T0, 1, Mode::Consume);
        let states = first.writes;
        let ev = eval(&[(&minute, states[0].as_ref()), (&hour, states[1].as_ref())], T0 + 10, 1, Mode::Consume);
        match ev.decision {
            Decision::Denied { violated, retry_after_ms, .. } => {
                assert_eq!(violated, "hour");
                assert_eq!(retry_after_ms, HOUR - 10);
            }
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn peek_decides_without_writing_and_shows_the_untouched_state() {
        let l = limit("l", Algorithm::Gcra, 10, 10_000);
        let ev = eval(&[(&l, None)], T0, 3, Mode::Peek);
        assert!(ev.decision.is_allowed());
        assert_eq!(ev.decision.snapshot().limits[0].remaining, 10);
        assert!(ev.writes.iter().all(Option::is_none));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    //! The timing promises of every algorithm, on random histories: `retry_after_ms`, `reset_ms`
    //! and `next_ms` name the first millisecond at which the promised units are there.
    use proptest::prelude::*;

    use super::test_support::limit;
    use super::*;

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::FixedWindow),
            Just(Algorithm::SlidingWindow),
            Just(Algorithm::TokenBucket),
            Just(Algorithm::Gcra)
        ]
    }

    fn remaining_at(state: Option<&State>, at: u64, l: &Limit) -> u32 {
        decide(state, at, l, 0).0.remaining
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn retry_reset_and_next_are_the_first_millisecond_that_fits(
            algorithm in algorithm(),
            units in 1u32..=8,
            window in prop_oneof![1u64..=10, 1u64..=5_000],
            history in prop::collection::vec((0u64..=3_000, 1u32..=8), 0..12),
            cost in 1u32..=9,
            start in 1_000_000u64..2_000_000,
        ) {
            let l = limit("p", algorithm, units, window);
            let mut state: Option<State> = None;
            let mut now = start;
            for (dt, c) in history {
                now += dt;
                if let (_, Some(s)) = decide(state.as_ref(), now, &l, c) {
                    state = Some(s);
                }
            }
            let s = state.as_ref();
            let (verdict, _) = decide(s, now, &l, cost);
            let view = decide(s, now, &l, 0).0;

            // cost fits exactly when it is at most what remains.
            match verdict.outcome {
                Outcome::Impossible => prop_assert!(cost > units),
                Outcome::Allowed => prop_assert!(cost <= view.remaining),
                Outcome::Denied { retry_after_ms } => {
                    prop_assert!(cost <= units && cost > view.remaining);
                    prop_assert!(retry_after_ms >= 1);
                    let at = now + retry_after_ms;
                    prop_assert_eq!(decide(s, at, &l, cost).0.outcome, Outcome::Allowed);
                    prop_assert_ne!(decide(s, at - 1, &l, cost).0.outcome, Outcome::Allowed);
                }
            }

            // reset: whole again then, not a millisecond before.
            prop_assert!(view.reset_ms >= now);
            prop_assert_eq!(remaining_at(s, view.reset_ms, &l), units);
            if view.reset_ms > now {
                prop_assert!(remaining_at(s, view.reset_ms - 1, &l) < units);
            }
            // next: one more unit then, not before.
            if view.remaining < units {
                prop_assert!(view.next_ms > now);
                prop_assert!(remaining_at(s, view.next_ms, &l) > view.remaining);
                prop_assert_eq!(remaining_at(s, view.next_ms - 1, &l), view.remaining);
            } else {
                prop_assert_eq!(view.next_ms, now);
            }
            // With nothing consumed, what remains never shrinks, and a state past its expiry
            // decides as no state.
            let mut last = view.remaining;
            let mut offsets = [1, window / 2, window, window + 1, 2 * window];
            offsets.sort_unstable();
            for dt in offsets {
                let r = remaining_at(s, now + dt, &l);
                prop_assert!(r >= last);
                last = r;
            }
            if let Some(st) = s {
                let at = st.expires_at(&l).max(now);
                prop_assert_eq!(decide(s, at, &l, cost), decide(None, at, &l, cost));
            }
        }
    }
}
