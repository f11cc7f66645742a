//! The request-path normalizer and the route matcher: normalization is idempotent and leaves no
//! spelling that could dodge a route; matching never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::path::normalize;
use tollgate::policy::PathPattern;
use tollgate::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, path) = text.split_once('\n').unwrap_or(("/api/chat*", text));
    if let Ok(n) = normalize(path) {
        assert_eq!(normalize(&n).as_ref(), Ok(&n));
        assert!(!n.contains("//") && !n.contains("/./") && !n.contains("/../"));
        assert!(!n.ends_with("/.") && !n.ends_with("/..") && !n.contains('\\'));
        let lower = n.to_ascii_lowercase();
        assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"));
        let _ = Policy::default().route_for("GET", &n);
        if let Ok(p) = PathPattern::parse(pattern) {
            let _ = p.matches(&n);
        }
    }
    if let Ok(p) = PathPattern::parse(pattern) {
        let _ = p.warm_match(path);
        let _ = p.check_template(path);
    }
});
