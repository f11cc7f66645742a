//! TTL arithmetic: jittered freshness, the Redis expiry of an entry, and XFetch early refresh.
//!
//! Jitter spreads the expiries of entries filled together (after a deploy, a warm-up or a
//! namespace bump) so they do not all miss at once. XFetch ("Optimal Probabilistic Cache Stampede
//! Prevention", Vattani, Chierichetti, Lowenstein, VLDB 2015) lets each reader of a fresh entry
//! refresh it early with a probability that grows as expiry nears and with how long the origin
//! took: `now − Δ·β·ln(r) ≥ fresh_until`, `r` uniform in (0, 1]. At `g` ms before expiry the
//! chance is `exp(−g / (Δ·β))`, so a hot key is refreshed shortly before it would go stale by
//! (usually) one reader, and a cold key simply expires.

use crate::policy::CacheClass;

use super::entry::Entry;

/// Freshness lifetime of a new entry of `class`, ms: uniform in `ttl × [1 − j, 1 + j]` for the
/// class's jitter `j` and `random` in `[0, 1)`, never below 1 ms.
pub fn jittered_ttl_ms(class: &CacheClass, random: f64) -> u64 {
    let (lo, hi) = jitter_bounds(class);
    let r = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.5 };
    let ttl = class.ttl_ms.get() as f64;
    let j = jitter_of(class);
    let value = (ttl * (1.0 - j + 2.0 * j * r)).round();
    // `as` saturates for floats; the clamp keeps rounding inside the closed range.
    (value as u64).clamp(lo, hi)
}

/// Smallest and largest value [`jittered_ttl_ms`] returns for `class`, ms.
pub fn jitter_bounds(class: &CacheClass) -> (u64, u64) {
    let ttl = class.ttl_ms.get() as f64;
    let j = jitter_of(class);
    let lo = ((ttl * (1.0 - j)).ceil() as u64).max(1);
    let hi = ((ttl * (1.0 + j)).floor() as u64).max(lo);
    (lo, hi)
}

/// Redis `PX` of an entry fresh for `fresh_ms`: freshness plus the class's stale window, so the
/// value disappears exactly when it may no longer be served (never zero, never infinite).
pub fn expiry(class: &CacheClass, fresh_ms: u64) -> u64 {
    fresh_ms.saturating_add(class.stale_ms).max(1)
}

/// The longest any entry of these classes can live in Redis, ms (0 for no classes).
pub fn max_entry_lifetime_ms(classes: &[CacheClass]) -> u64 {
    classes.iter().map(|c| expiry(c, jitter_bounds(c).1)).max().unwrap_or(0)
}

/// XFetch: whether a reader at `now_ms` should refresh the fresh `entry` early, given `beta`
/// (0 disables; 1 is the paper's default) and `random` uniform in (0, 1] (0 is taken as the
/// smallest positive float). Δ is the origin fetch time recorded in the entry.
pub fn should_refresh_early(entry: &Entry, now_ms: u64, beta: f64, random: f64) -> bool {
    if now_ms >= entry.fresh_until_ms {
        return true;
    }
    if !(beta.is_finite() && beta > 0.0) || entry.fetch_ms == 0 {
        return false;
    }
    let r = if random.is_finite() { random.clamp(f64::MIN_POSITIVE, 1.0) } else { 1.0 };
    let lead = -(f64::from(entry.fetch_ms)) * beta * r.ln();
    now_ms as f64 + lead >= entry.fresh_until_ms as f64
}

fn jitter_of(class: &CacheClass) -> f64 {
    if class.jitter.is_finite() {
        class.jitter.clamp(0.0, 0.5)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use super::*;
    use crate::cache::entry::tests::sample;
    use crate::clock::{FakeRandom, Random};

    fn class(ttl_ms: u64, jitter: f64, stale_ms: u64) -> CacheClass {
        CacheClass {
            name: "T".into(),
            ttl_ms: NonZeroU64::new(ttl_ms).unwrap(),
            jitter,
            stale_ms,
            browser_max_age_s: 60,
        }
    }

    #[test]
    fn a_thousand_jittered_ttls_spread_across_the_range_and_never_leave_it() {
        let c = class(300_000, 0.1, 60_000);
        let random = FakeRandom::new((0..1000).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect());
        let ttls: Vec<u64> = (0..1000).map(|_| jittered_ttl_ms(&c, random.unit())).collect();
        assert!(ttls.iter().all(|t| (270_000..=330_000).contains(t)), "a TTL left ±10%");
        // Ten equal buckets across the range each get a fair share (uniform spread).
        let mut buckets = [0u32; 10];
        for t in &ttls {
            buckets[(((t - 270_000) * 10) / 60_001) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (80..=120).contains(&n)), "buckets {buckets:?}");
        assert!(ttls.iter().min().unwrap() < &273_000 && ttls.iter().max().unwrap() > &327_000);
    }

    #[test]
    fn extreme_random_values_stay_inside_the_bounds() {
        let c = class(1001, 0.1, 0);
        let (lo, hi) = jitter_bounds(&c);
        assert_eq!((lo, hi), (901, 1101));
        for r in [0.0, 0.999_999_999, 1.0, -3.0, 7.0, f64::NAN, f64::INFINITY] {
            let t = jittered_ttl_ms(&c, r);
            assert!((lo..=hi).contains(&t), "{r} gave {t}");
        }
    }

    #[test]
    fn tiny_ttls_never_reach_zero() {
        let c = class(1, 0.5, 0);
        for r in [0.0, 0.5, 0.99] {
            assert!(jittered_ttl_ms(&c, r) >= 1);
        }
        assert_eq!(expiry(&c, 0), 1);
    }

    #[test]
    fn without_jitter_the_ttl_is_exact() {
        let c = class(86_400_000, 0.0, 0);
        assert_eq!(jittered_ttl_ms(&c, 0.0), 86_400_000);
        assert_eq!(jittered_ttl_ms(&c, 0.99), 86_400_000);
    }

    #[test]
    fn the_redis_expiry_adds_the_stale_window() {
        let c = class(300_000, 0.1, 60_000);
        assert_eq!(expiry(&c, 290_000), 350_000);
        assert_eq!(max_entry_lifetime_ms(&[c, class(1000, 0.0, 5)]), 390_000);
        assert_eq!(max_entry_lifetime_ms(&[]), 0);
    }

    fn entry_fresh_until(fresh_until_ms: u64, fetch_ms: u32) -> Entry {
        let mut e = sample(b"x");
        e.stored_ms = 0;
        e.fresh_until_ms = fresh_until_ms;
        e.stale_until_ms = fresh_until_ms + 1000;
        e.fetch_ms = fetch_ms;
        e
    }

    #[test]
    fn early_refresh_is_certain_at_expiry_and_impossible_with_beta_zero() {
        let e = entry_fresh_until(10_000, 100);
        assert!(should_refresh_early(&e, 10_000, 1.0, 1.0));
        assert!(!should_refresh_early(&e, 9_999, 0.0, 0.000_001));
        assert!(!should_refresh_early(&entry_fresh_until(10_000, 0), 9_999, 1.0, 0.000_001));
        // r = 1 means ln r = 0: no lead at all.
        assert!(!should_refresh_early(&e, 9_999, 1.0, 1.0));
        // r = 0 is the smallest positive float: a huge lead.
        assert!(should_refresh_early(&e, 0, 1.0, 0.0));
    }

    #[test]
    fn early_refresh_probability_is_exp_of_minus_gap_over_delta_beta() {
        // Δ = 100 ms, β = 1: at 100 ms before expiry the chance is e^-1 ≈ 0.368,
        // at 300 ms e^-3 ≈ 0.050, at 10 ms ≈ 0.905.
        let e = entry_fresh_until(10_000, 100);
        for (gap, expected) in [(100u64, (-1.0f64).exp()), (300, (-3.0f64).exp()), (10, (-0.1f64).exp())] {
            let n = 10_000;
            let random = FakeRandom::new((1..=n).map(|i| i as f64 / n as f64).collect());
            let hits = (0..n).filter(|_| should_refresh_early(&e, 10_000 - gap, 1.0, random.unit())).count();
            let p = hits as f64 / n as f64;
            assert!((p - expected).abs() < 0.01, "gap {gap}: {p} vs {expected}");
        }
    }

    #[test]
    fn a_larger_beta_or_slower_origin_refreshes_earlier() {
        let fast = entry_fresh_until(10_000, 50);
        let slow = entry_fresh_until(10_000, 500);
        let r = 0.5; // lead = Δ·β·ln 2 ≈ 0.69·Δ·β
        assert!(!should_refresh_early(&fast, 9_900, 1.0, r));
        assert!(should_refresh_early(&slow, 9_900, 1.0, r));
        assert!(should_refresh_early(&fast, 9_900, 4.0, r));
    }
}
