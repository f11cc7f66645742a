//! The rate-limit response headers, rendered from a [`Decision`] in this one place.
//!
//! - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds, rounded
//!   up: when the limit is whole again) for the binding limit;
//! - `RateLimit-Policy` and `RateLimit` as in draft-ietf-httpapi-ratelimit-headers (-10):
//!   Structured Field lists of quoted policy names, `q` = quota, `w` = window in whole seconds
//!   (rounded up), `r` = remaining, `t` = seconds until more quota is available (rounded up;
//!   left out while the quota is whole). `RateLimit` carries the binding limit only;
//! - `Retry-After` (seconds, rounded up, at least 1) on a denial. An impossible request gets
//!   none: no wait helps it.
//!
//! The binding limit is the violated one for a refusal, else the one with the fewest units left
//! (see [`Decision::binding`]).

use super::decision::Decision;

/// The headers for a decision; empty when no limit applied.
pub fn rate_limit_headers(decision: &Decision) -> Vec<(&'static str, String)> {
    let snapshot = decision.snapshot();
    let Some(binding) = decision.binding() else { return Vec::new() };
    let now = snapshot.now_ms;
    // One moment for all three forms: when refused, the moment the request may be retried
    // (Retry-After, `t` and X-RateLimit-Reset agree); when allowed, when the binding limit is
    // whole again — never further than one window ahead.
    let retry_s = decision.retry_after_ms().map(|ms| ms.div_ceil(1_000).max(1));
    let reset_s = match retry_s {
        Some(s) => now.div_ceil(1_000) + s,
        None => binding.reset_ms.min(now.saturating_add(binding.window_ms)).div_ceil(1_000),
    };
    let mut headers = vec![
        ("X-RateLimit-Limit", binding.limit.to_string()),
        ("X-RateLimit-Remaining", binding.remaining.to_string()),
        ("X-RateLimit-Reset", reset_s.to_string()),
    ];
    let policy: Vec<String> = snapshot
        .limits
        .iter()
        .map(|l| format!("{};q={};w={}", sf_string(&l.id), l.limit, l.window_ms.div_ceil(1_000).max(1)))
        .collect();
    headers.push(("RateLimit-Policy", policy.join(", ")));
    let mut current = format!("{};r={}", sf_string(&binding.id), binding.remaining);
    match retry_s {
        Some(t) => current.push_str(&format!(";t={t}")),
        None if binding.remaining < binding.limit => {
            let t = binding.next_ms.min(now.saturating_add(binding.window_ms)).saturating_sub(now).div_ceil(1_000);
            current.push_str(&format!(";t={t}"));
        }
        None => {}
    }
    headers.push(("RateLimit", current));
    if let Some(s) = retry_s {
        headers.push(("Retry-After", s.to_string()));
    }
    headers
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
    use crate::policy::Algorithm;

    const NOW: u64 = 1_700_000_000_000;

    fn state(id: &str, limit: u32, window_ms: u64, remaining: u32, reset_ms: u64, next_ms: u64) -> LimitState {
        LimitState { id: id.into(), algorithm: Algorithm::FixedWindow, limit, window_ms, remaining, reset_ms, next_ms }
    }

    fn snapshot(limits: Vec<LimitState>) -> Snapshot {
        Snapshot { now_ms: NOW, tier: None, override_ignored: false, limits }
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
    fn policy_names_are_escaped_as_structured_field_strings() {
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sf_string("é\n"), r#""__""#);
    }
}
