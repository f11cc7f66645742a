//! Failed admin authentication, throttled per address: after [`MAX_FAILURES`] wrong tokens
//! within [`WINDOW_MS`] from one IP group, every admin call from it answers `429` until the window
//! ends, so the token cannot be guessed at request rate. The count is per isolate (a cache of
//! failures, like the block cache): an attacker spread over many locations gets
//! `MAX_FAILURES` tries per window in each, which against a 24-byte random token is nothing.

use std::collections::HashMap;

/// Wrong tokens allowed per address and window.
pub const MAX_FAILURES: u32 = 10;
/// The window, ms.
pub const WINDOW_MS: u64 = 60_000;
/// Addresses remembered; when full, the map starts over.
const CAPACITY: usize = 4096;

/// Failures per address in the current window.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    failures: HashMap<String, (u32, u64)>,
}

impl AuthThrottle {
    /// How long `who` must wait, ms, when it is throttled at `now_ms`.
    pub fn blocked(&mut self, who: &str, now_ms: u64) -> Option<u64> {
        let &(count, since) = self.failures.get(who)?;
        let ends = since.saturating_add(WINDOW_MS);
        if now_ms >= ends {
            self.failures.remove(who);
            return None;
        }
        (count >= MAX_FAILURES).then(|| ends - now_ms)
    }

    /// Records a wrong token from `who` at `now_ms`.
    pub fn failed(&mut self, who: &str, now_ms: u64) {
        if self.failures.len() >= CAPACITY && !self.failures.contains_key(who) {
            self.failures.clear();
        }
        let slot = self.failures.entry(who.to_owned()).or_insert((0, now_ms));
        if now_ms >= slot.1.saturating_add(WINDOW_MS) {
            *slot = (0, now_ms);
        }
        slot.0 = slot.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_after_ten_wrong_tokens_until_the_window_ends() {
        let mut t = AuthThrottle::default();
        for i in 0..MAX_FAILURES {
            assert_eq!(t.blocked("a", 1_000 + u64::from(i)), None);
            t.failed("a", 1_000 + u64::from(i));
        }
        assert_eq!(t.blocked("a", 2_000), Some(WINDOW_MS - 1_000));
        assert_eq!(t.blocked("b", 2_000), None, "another address is not affected");
        assert_eq!(t.blocked("a", 1_000 + WINDOW_MS), None, "the window ended");
        t.failed("a", 1_000 + WINDOW_MS);
        assert_eq!(t.blocked("a", 1_001 + WINDOW_MS), None, "a new window starts at one");
    }
}
