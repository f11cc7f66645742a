//! Being limited is a decision, not an error: [`Decision`] and the [`Snapshot`] of every limit
//! that headers, problem bodies, stats and the admin API render from.

use crate::policy::{Algorithm, LimitMode, Unit, WarnAt};

/// One limit as it stands after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    /// The limit's id (`tier-basic`, `route-chat`).
    pub id: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Units per window.
    pub limit: u32,
    /// The window, ms.
    pub window_ms: u64,
    /// Units left: after this request if it was allowed and consumed, else untouched.
    pub remaining: u32,
    /// Unix ms at which, with nothing more consumed, `remaining` is the full limit again (the
    /// check's `now_ms` when it already is).
    pub reset_ms: u64,
    /// Unix ms at which at least one more unit is available (`now_ms` when `remaining` is full).
    pub next_ms: u64,
    /// What the limit counts.
    pub unit: Unit,
    /// Enforced or shadow.
    pub mode: LimitMode,
    /// Units this check charged to the limit: its cost when it consumed, else 0. A settlement
    /// adjusts exactly the limits with a charge.
    pub charged: u32,
}

/// A route's concurrency slots of one caller, as the check found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyState {
    /// The rule's id (`route-chat-concurrency`).
    pub id: String,
    /// Slots at most.
    pub limit: u32,
    /// Live leases after the check (the new one included when acquired).
    pub in_flight: u32,
    /// How long a lease is held at most, ms.
    pub lease_ms: u64,
    /// Enforced or shadow.
    pub mode: LimitMode,
    /// Whether this check took a slot (its lease id must be released at the end of the body).
    pub acquired: bool,
    /// Unix ms by which one more slot is free at the latest (lease deadlines; `now_ms` when one is).
    pub reset_ms: u64,
}

impl ConcurrencyState {
    /// Slots left after the check.
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.in_flight)
    }
}

/// A quota warning the check published: the limit's usage crossed `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The limit's id.
    pub limit_id: String,
    /// The fraction crossed.
    pub at: WarnAt,
    /// Units used after the charge.
    pub used: u64,
}

/// Every limit that applied to a request, as Redis (or the memory fallback) saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The time of the check, Unix ms (Redis server time for shared limits).
    pub now_ms: u64,
    /// The tier named by the subject's override, when one replaced the tier's limits.
    pub tier: Option<String>,
    /// Whether the subject has an override that was ignored because it is malformed.
    pub override_ignored: bool,
    /// The limits: the tier's (or the override's) first, then the route's, in policy order.
    pub limits: Vec<LimitState>,
    /// The route's concurrency slots, when the route has them.
    pub concurrency: Option<ConcurrencyState>,
    /// Ids of the shadow limits (and shadow concurrency) that would have refused this request.
    pub shadow_denied: Vec<String>,
    /// Quota warnings this check published (each once per window, whichever isolate crossed).
    pub warnings: Vec<Warning>,
}

impl Snapshot {
    /// No limits at all, at `now_ms`.
    pub fn empty(now_ms: u64) -> Self {
        Snapshot {
            now_ms,
            tier: None,
            override_ignored: false,
            limits: Vec::new(),
            concurrency: None,
            shadow_denied: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The enforced limit that binds: the fewest units remaining; on a tie, the one resetting
    /// last. Shadow limits never bind.
    pub fn binding(&self) -> Option<&LimitState> {
        self.limits.iter().filter(|l| l.mode == LimitMode::Enforce).reduce(|best, l| {
            if l.remaining < best.remaining || (l.remaining == best.remaining && l.reset_ms > best.reset_ms) {
                l
            } else {
                best
            }
        })
    }

    /// The limit with this id.
    pub fn limit(&self, id: &str) -> Option<&LimitState> {
        self.limits.iter().find(|l| l.id == id)
    }
}

/// The answer to one check of every limit that applies to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every limit had room; in consume mode each was charged the cost.
    Allowed(Snapshot),
    /// Some limit has no room now; nothing was charged to any limit.
    Denied {
        /// The limits, untouched.
        snapshot: Snapshot,
        /// Id of the limit that frees up last.
        violated: String,
        /// Milliseconds until every limit has room for the cost (at least 1).
        retry_after_ms: u64,
    },
    /// The cost exceeds a limit itself: no wait makes it fit. Nothing was charged.
    Impossible {
        /// The limits, untouched.
        snapshot: Snapshot,
        /// Id of the first limit smaller than the cost.
        violated: String,
    },
}

impl Decision {
    /// The limits as they stand.
    pub fn snapshot(&self) -> &Snapshot {
        match self {
            Decision::Allowed(s) => s,
            Decision::Denied { snapshot, .. } | Decision::Impossible { snapshot, .. } => snapshot,
        }
    }

    /// Mutable access to the limits (the block cache moves their clock on).
    pub(crate) fn snapshot_mut(&mut self) -> &mut Snapshot {
        match self {
            Decision::Allowed(s) => s,
            Decision::Denied { snapshot, .. } | Decision::Impossible { snapshot, .. } => snapshot,
        }
    }

    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }

    /// Id of the limit that refused the request.
    pub fn violated(&self) -> Option<&str> {
        match self {
            Decision::Allowed(_) => None,
            Decision::Denied { violated, .. } | Decision::Impossible { violated, .. } => Some(violated),
        }
    }

    /// Milliseconds until a retry can succeed; `None` when allowed or impossible.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Decision::Denied { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// The limit headers report: the violated one for a refusal, else [`Snapshot::binding`].
    pub fn binding(&self) -> Option<&LimitState> {
        match self.violated() {
            Some(id) => self.snapshot().limit(id).or_else(|| self.snapshot().binding()),
            None => self.snapshot().binding(),
        }
    }

    /// Whether the route's concurrency slots refused the request.
    pub fn refused_by_concurrency(&self) -> bool {
        match (self.violated(), &self.snapshot().concurrency) {
            (Some(id), Some(c)) => c.id == id,
            _ => false,
        }
    }

    /// Stable name for logs and stats: `allowed`, `denied`, `impossible`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allowed(_) => "allowed",
            Decision::Denied { .. } => "denied",
            Decision::Impossible { .. } => "impossible",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, remaining: u32, reset_ms: u64) -> LimitState {
        LimitState {
            id: id.to_owned(),
            algorithm: Algorithm::FixedWindow,
            limit: 100,
            window_ms: 1_000,
            remaining,
            reset_ms,
            next_ms: reset_ms,
            unit: Unit::requests(),
            mode: LimitMode::Enforce,
            charged: 0,
        }
    }

    #[test]
    fn the_binding_limit_has_the_fewest_remaining_then_the_latest_reset() {
        let mut snapshot = Snapshot::empty(0);
        snapshot.limits = vec![state("a", 5, 10), state("b", 3, 10), state("c", 3, 20), state("d", 3, 20)];
        assert_eq!(snapshot.binding().map(|l| l.id.as_str()), Some("c"));
        let mut shadowed = snapshot.clone();
        shadowed.limits[2].mode = LimitMode::Shadow;
        shadowed.limits[3].mode = LimitMode::Shadow;
        assert_eq!(shadowed.binding().map(|l| l.id.as_str()), Some("b"), "shadow limits never bind");
        let empty = Snapshot { limits: vec![], ..snapshot };
        assert_eq!(empty.binding(), None);
    }

    #[test]
    fn a_denial_binds_on_its_violated_limit() {
        let mut snapshot = Snapshot::empty(0);
        snapshot.limits = vec![state("few-left", 1, 10), state("bucket", 2, 10)];
        let d = Decision::Denied { snapshot, violated: "bucket".into(), retry_after_ms: 5 };
        assert_eq!(d.binding().map(|l| l.id.as_str()), Some("bucket"));
        assert_eq!(d.retry_after_ms(), Some(5));
        assert_eq!(d.as_str(), "denied");
    }
}
