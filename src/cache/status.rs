//! How a cacheable request was answered, in the one string form headers, logs and stats share.

/// How a cacheable request was answered (the `X-Cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheStatus {
    /// Served from a fresh entry (in Redis, in the isolate, or filled by another caller).
    Hit,
    /// Fetched from the origin, and stored when storable.
    Miss,
    /// Served from a copy past its freshness (being refreshed, or the origin failed).
    Stale,
    /// The cache was not usable (Redis unreachable); the origin answered directly.
    Bypass,
}

impl CacheStatus {
    /// Every status, in a stable order.
    pub const ALL: [CacheStatus; 4] = [CacheStatus::Hit, CacheStatus::Miss, CacheStatus::Stale, CacheStatus::Bypass];

    /// The header value: `HIT`, `MISS`, `STALE` or `BYPASS`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// Lower-case name used in stats fields (`hit`, `miss`, `stale`, `bypass`).
    pub fn stat_name(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Bypass => "bypass",
        }
    }
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_stable() {
        let all: Vec<&str> = CacheStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(all, ["HIT", "MISS", "STALE", "BYPASS"]);
        assert_eq!(CacheStatus::Stale.to_string(), "STALE");
        assert_eq!(CacheStatus::Bypass.stat_name(), "bypass");
    }
}
