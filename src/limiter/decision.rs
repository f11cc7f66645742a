//! Being limited is a decision, not an error: [`Decision`] and the [`Snapshot`] of every limit
//! that headers, problem bodies, stats and the admin API render from.

use crate::policy::Algorithm;

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
}

impl Snapshot {
    /// The limit that binds: the fewest units remaining; on a tie, the one resetting last.
    pub fn binding(&self) -> Option<&LimitState> {
        self.limits.iter().reduce(|best, l| {
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
        }
    }

    #[test]
    fn the_binding_limit_has_the_fewest_remaining_then_the_latest_reset() {
        let snapshot = Snapshot {
            now_ms: 0,
            tier: None,
            override_ignored: false,
            limits: vec![state("a", 5, 10), state("b", 3, 10), state("c", 3, 20), state("d", 3, 20)],
        };
        assert_eq!(snapshot.binding().map(|l| l.id.as_str()), Some("c"));
        let empty = Snapshot { limits: vec![], ..snapshot };
        assert_eq!(empty.binding(), None);
    }

    #[test]
    fn a_denial_binds_on_its_violated_limit() {
        let snapshot = Snapshot {
            now_ms: 0,
            tier: None,
            override_ignored: false,
            limits: vec![state("few-left", 1, 10), state("bucket", 2, 10)],
        };
        let d = Decision::Denied { snapshot, violated: "bucket".into(), retry_after_ms: 5 };
        assert_eq!(d.binding().map(|l| l.id.as_str()), Some("bucket"));
        assert_eq!(d.retry_after_ms(), Some(5));
        assert_eq!(d.as_str(), "denied");
    }
}
