//! Where a request's limits were decided: the `X-Tollgate-Mode` header and health report it.

/// Where limits were decided, reported in `X-Tollgate-Mode` and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// In Redis, shared by every location.
    Redis,
    /// In this isolate: Redis is not configured.
    Memory,
    /// In this isolate: Redis failed and the route falls back locally.
    Local,
    /// Not at all: Redis failed and the route fails open.
    Open,
}

impl LimitMode {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMode::Redis => "redis",
            LimitMode::Memory => "memory",
            LimitMode::Local => "local",
            LimitMode::Open => "open",
        }
    }
}
