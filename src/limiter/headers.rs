//! The rate-limit response headers, rendered from a [`Decision`] in this one place.
//!
//! - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds, rounded
//!   up: when the limit is whole again) for the binding limit;
//! - `RateLimit-Policy` and `RateLimit` as in draft-ietf-httpapi-ratelimit-headers:
//!   Structured Field lists of quoted policy names, `q` = quota, `qu` = quota unit (left out for
//!   the default `requests`; `concurrent-requests` for a route's concurrency slots, which have no
//!   `w`; the unit's own name, like `tokens`, otherwise), `w` = window in whole seconds (rounded
//!   up), `r` = remaining, `t` = seconds until more quota is available (rounded up; left out
//!   while the quota is whole). `RateLimit` carries the binding limit only;
//! - `Retry-After` (seconds, rounded up, at least 1) on a denial. An impossible request gets
//!   none: no wait helps it;
//! - `X-RateLimit-Shadow-Denied`: a Structured Field list of the shadow limits that would have
//!   refused the request (absent when none would).
//!
//! The binding limit is the violated one for a refusal (the concurrency slots when they refused),
//! else the enforced limit with the fewest units left (see [`Decision::binding`]). Shadow limits
//! are never advertised as policies: they do not apply yet.

use super::decision::{ConcurrencyState, Decision};
use crate::policy::LimitMode;

/// Header naming the shadow limits that would have refused the request.
pub const SHADOW_DENIED_HEADER: &str = "X-RateLimit-Shadow-Denied";

/// The `qu` quota unit of concurrency slots.
const CONCURRENT: &str = "concurrent-requests";

/// What the headers report: the binding limit, or the concurrency slots that refused.
struct Bound<'a> {
    id: &'a str,
    limit: u32,
    remaining: u32,
    /// When whole again (allowed requests), Unix ms.
    reset_ms: u64,
    /// When one more unit is there, Unix ms; `None` while whole.
    next_ms: Option<u64>,
}

/// The headers for a decision; empty when no limit applied.
pub fn rate_limit_headers(decision: &Decision) -> Vec<(&'static str, String)> {
    let snapshot = decision.snapshot();
    let now = snapshot.now_ms;
    let slot = snapshot.concurrency.as_ref().filter(|c| c.mode == LimitMode::Enforce);
    let bound = match (decision.refused_by_concurrency(), decision.binding(), slot) {
        (true, _, Some(c)) => Some(slot_bound(c)),
        (_, Some(b), _) => {
            // Never further than one window ahead.
            let horizon = now.saturating_add(b.window_ms);
            Some(Bound {
                id: &b.id,
                limit: b.limit,
                remaining: b.remaining,
                reset_ms: b.reset_ms.min(horizon),
                next_ms: (b.remaining < b.limit).then(|| b.next_ms.min(horizon)),
            })
        }
        (_, None, Some(c)) => Some(slot_bound(c)),
        (_, None, None) => None,
    };
    let mut headers = Vec::new();
    if let Some(b) = bound {
        // One moment for all three forms: when refused, the moment the request may be retried
        // (Retry-After, `t` and X-RateLimit-Reset agree); when allowed, when the binding limit
        // is whole again.
        let retry_s = decision.retry_after_ms().map(|ms| ms.div_ceil(1_000).max(1));
        let reset_s = match retry_s {
            Some(s) => now.div_ceil(1_000) + s,
            None => b.reset_ms.div_ceil(1_000),
        };
        headers.push(("X-RateLimit-Limit", b.limit.to_string()));
        headers.push(("X-RateLimit-Remaining", b.remaining.to_string()));
        headers.push(("X-RateLimit-Reset", reset_s.to_string()));
        let mut policy: Vec<String> = snapshot
            .limits
            .iter()
            .filter(|l| l.mode == LimitMode::Enforce)
            .map(|l| {
                let unit =
                    if l.unit.is_requests() { String::new() } else { format!(";qu={}", sf_string(l.unit.as_str())) };
                format!("{};q={}{unit};w={}", sf_string(&l.id), l.limit, l.window_ms.div_ceil(1_000).max(1))
            })
            .collect();
        if let Some(c) = slot {
            policy.push(format!("{};q={};qu={}", sf_string(&c.id), c.limit, sf_string(CONCURRENT)));
        }
        headers.push(("RateLimit-Policy", policy.join(", ")));
        let mut current = format!("{};r={}", sf_string(b.id), b.remaining);
        match (retry_s, b.next_ms) {
            (Some(t), _) => current.push_str(&format!(";t={t}")),
            (None, Some(next)) => current.push_str(&format!(";t={}", next.saturating_sub(now).div_ceil(1_000))),
            (None, None) => {}
        }
        headers.push(("RateLimit", current));
        if let Some(s) = retry_s {
            headers.push(("Retry-After", s.to_string()));
        }
    }
    if !snapshot.shadow_denied.is_empty() {
        let ids: Vec<String> = snapshot.shadow_denied.iter().map(|id| sf_string(id)).collect();
        headers.push((SHADOW_DENIED_HEADER, ids.join(", ")));
    }
    headers
}

fn slot_bound(c: &ConcurrencyState) -> Bound<'_> {
    Bound {
        id: &c.id,
        limit: c.limit,
        remaining: c.remaining(),
        reset_ms: c.reset_ms,
        next_ms: (c.remaining() == 0).then_some(c.reset_ms),
    }
}

/// A Structured Field String (RFC 9651 §3.3.3): quoted, `"` and `\` escaped; characters it
/// cannot carry (controls, non-ASCII) become `_`.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::decision::{LimitState, Snapshot};
    use crate::policy::{Algorithm, Unit};

    const NOW: u64 = 1_700_000_000_000;

    fn state(id: &str, limit: u32, window_ms: u64, remaining: u32, reset_ms: u64, next_ms: u64) -> LimitState {
        LimitState {
            id: id.into(),
            algorithm: Algorithm::FixedWindow,
            limit,
            window_ms,
            remaining,
            reset_ms,
            next_ms,
            unit: Unit::requests(),
            mode: LimitMode::Enforce,
            charged: 0,
        }
    }

    fn snapshot(limits: Vec<LimitState>) -> Snapshot {
        Snapshot { limits, ..Snapshot::empty(NOW) }
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_allowed_request_reports_the_binding_limit_in_both_forms() {
        let d = Decision::Allowed(snapshot(vec![
            state("tier-basic", 100, 3_600_000, 42, NOW + 1_800_000, NOW + 1_800_000),
            state("route-chat", 20, 60_000, 19, NOW + 30_500, NOW + 30_500),
        ]));
        let h = rate_limit_headers(&d);
        assert_eq!(header(&h, "X-RateLimit-Limit"), Some("20"));
        assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("19"));
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some("1700000031"));
        assert_eq!(header(&h, "RateLimit-Policy"), Some(r#""tier-basic";q=100;w=3600, "route-chat";q=20;w=60"#));
        assert_eq!(header(&h, "RateLimit"), Some(r#""route-chat";r=19;t=31"#));
        assert_eq!(header(&h, "Retry-After"), None);
    }

    #[test]
    fn a_denial_reports_the_violated_limit_and_retry_after() {
        let snap = snapshot(vec![
            state("tier-basic", 100, 3_600_000, 1, NOW + 1_800_000, NOW + 36_000),
            state("bucket", 10, 1_000, 2, NOW + 800, NOW + 100),
        ]);
        let d = Decision::Denied { snapshot: snap, violated: "bucket".into(), retry_after_ms: 1_001 };
        let h = rate_limit_headers(&d);
        assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("2"));
        assert_eq!(header(&h, "RateLimit"), Some(r#""bucket";r=2;t=2"#), "t agrees with Retry-After");
        assert_eq!(header(&h, "Retry-After"), Some("2"));
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some(((NOW / 1_000) + 2).to_string().as_str()));
    }

    #[test]
    fn the_reset_never_points_past_the_window() {
        // A sliding window whole again only in 1.5 windows.
        let d = Decision::Allowed(snapshot(vec![state("w", 100, 3_600_000, 0, NOW + 5_400_000, NOW + 5_400_000)]));
        let h = rate_limit_headers(&d);
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some(((NOW + 3_600_000) / 1_000).to_string().as_str()));
        assert_eq!(header(&h, "RateLimit"), Some(r#""w";r=0;t=3600"#));
    }

    #[test]
    fn retry_after_is_at_least_one_second_and_impossible_has_none() {
        let snap = snapshot(vec![state("l", 5, 500, 0, NOW + 10, NOW + 10)]);
        let d = Decision::Denied { snapshot: snap.clone(), violated: "l".into(), retry_after_ms: 10 };
        assert_eq!(header(&rate_limit_headers(&d), "Retry-After"), Some("1"));
        assert_eq!(header(&rate_limit_headers(&d), "RateLimit-Policy"), Some(r#""l";q=5;w=1"#));
        let d = Decision::Impossible { snapshot: snap, violated: "l".into() };
        assert_eq!(header(&rate_limit_headers(&d), "Retry-After"), None);
    }

    #[test]
    fn a_whole_quota_has_no_t_and_no_limits_no_headers() {
        let d = Decision::Allowed(snapshot(vec![state("l", 5, 60_000, 5, NOW, NOW)]));
        assert_eq!(header(&rate_limit_headers(&d), "RateLimit"), Some(r#""l";r=5"#));
        assert!(rate_limit_headers(&Decision::Allowed(snapshot(vec![]))).is_empty());
    }

    #[test]
    fn units_carry_qu_and_shadow_limits_are_only_named_when_they_would_refuse() {
        let mut tokens = state("tier-tokens", 1_000, 86_400_000, 400, NOW + 3_600_000, NOW + 3_600_000);
        tokens.unit = Unit::parse("tokens").expect("unit");
        let mut shadow = state("route-new", 5, 60_000, 0, NOW + 60_000, NOW + 12_000);
        shadow.mode = LimitMode::Shadow;
        let mut snap =
            snapshot(vec![state("tier-basic", 100, 3_600_000, 90, NOW + 600_000, NOW + 36_000), tokens, shadow]);
        snap.shadow_denied = vec!["route-new".into()];
        let h = rate_limit_headers(&Decision::Allowed(snap));
        assert_eq!(
            header(&h, "RateLimit-Policy"),
            Some(r#""tier-basic";q=100;w=3600, "tier-tokens";q=1000;qu="tokens";w=86400"#)
        );
        assert_eq!(header(&h, "RateLimit"), Some(r#""tier-basic";r=90;t=36"#), "a shadow limit never binds");
        assert_eq!(header(&h, SHADOW_DENIED_HEADER), Some(r#""route-new""#));
    }

    #[test]
    fn a_concurrency_refusal_reports_the_slots_with_retry_after() {
        let mut snap = snapshot(vec![state("tier-basic", 100, 3_600_000, 90, NOW + 600_000, NOW + 36_000)]);
        snap.concurrency = Some(ConcurrencyState {
            id: "route-chat-concurrency".into(),
            limit: 2,
            in_flight: 2,
            lease_ms: 120_000,
            mode: LimitMode::Enforce,
            acquired: false,
            reset_ms: NOW + 100_500,
        });
        let d = Decision::Denied { snapshot: snap, violated: "route-chat-concurrency".into(), retry_after_ms: 1_000 };
        let h = rate_limit_headers(&d);
        assert_eq!(header(&h, "X-RateLimit-Limit"), Some("2"));
        assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("0"));
        assert_eq!(
            header(&h, "RateLimit-Policy"),
            Some(r#""tier-basic";q=100;w=3600, "route-chat-concurrency";q=2;qu="concurrent-requests""#)
        );
        assert_eq!(header(&h, "RateLimit"), Some(r#""route-chat-concurrency";r=0;t=1"#), "t is the retry moment");
        assert_eq!(header(&h, "X-RateLimit-Reset"), Some("1700000001"));
        assert_eq!(header(&h, "Retry-After"), Some("1"));
        assert_eq!(header(&h, SHADOW_DENIED_HEADER), None);
    }

    #[test]
    fn policy_names_are_escaped_as_structured_field_strings() {
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sf_string("é\n"), r#""__""#);
    }
}
