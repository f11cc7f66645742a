//! Time, waiting and randomness as inputs: the request path asks these traits, tests hand in fakes.

use std::cell::Cell;

/// Milliseconds since the Unix epoch, as this isolate sees them.
///
/// Shared limits never use this clock (Redis `TIME` is the authority); it serves local caches,
/// the circuit breaker and the memory fallback.
pub trait Clock {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system clock: `Date.now()` on wasm32, `SystemTime` natively.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(target_arch = "wasm32")]
    fn now_ms(&self) -> u64 {
        js_sys::Date::now() as u64
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Cell<u64>,
}

impl FakeClock {
    /// A fake clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self { now: Cell::new(start_ms) }
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get().saturating_add(ms));
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: u64) {
        self.now.set(ms);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Waits: a JS timer in the Worker, `tokio::time::sleep` natively, a fake clock in tests.
// `async fn` in a public trait cannot promise `Send`; that is the point here (JS futures are !Send).
#[allow(async_fn_in_trait)]
pub trait Sleeper {
    /// Resolves after `ms` milliseconds.
    async fn sleep(&self, ms: u32);
}

impl<S: Sleeper + ?Sized> Sleeper for std::rc::Rc<S> {
    async fn sleep(&self, ms: u32) {
        (**self).sleep(ms).await;
    }
}

/// A source of uniform random numbers (TTL jitter, early refresh, lock tokens).
pub trait Random {
    /// A uniform sample in `[0, 1)`.
    fn unit(&self) -> f64;
    /// 16 random bytes, hex-encoded (lock tokens, sync ids).
    fn token(&self) -> String;
}

/// Randomness from the platform (`crypto.getRandomValues` on wasm32).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

impl Random for SystemRandom {
    fn unit(&self) -> f64 {
        let mut b = [0u8; 8];
        if getrandom::getrandom(&mut b).is_err() {
            return 0.5;
        }
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn token(&self) -> String {
        let mut b = [0u8; 16];
        let _ = getrandom::getrandom(&mut b);
        hex::encode(b)
    }
}

/// Randomness that replays a fixed sequence; for tests.
#[derive(Debug, Default)]
pub struct FakeRandom {
    values: Vec<f64>,
    next: Cell<usize>,
}

impl FakeRandom {
    /// Cycles through `values` (each in `[0, 1)`).
    pub fn new(values: Vec<f64>) -> Self {
        Self { values, next: Cell::new(0) }
    }
}

impl Random for FakeRandom {
    fn unit(&self) -> f64 {
        if self.values.is_empty() {
            return 0.5;
        }
        let i = self.next.get();
        self.next.set(i.wrapping_add(1));
        self.values[i % self.values.len()]
    }

    fn token(&self) -> String {
        let i = self.next.get();
        self.next.set(i.wrapping_add(1));
        format!("{i:032x}")
    }
}

/// A JS timer as a future (wasm32): resolves after `ms`, and stops its timeout when dropped
/// early.
#[cfg(target_arch = "wasm32")]
pub struct Timer {
    wait: crate::host::Settled,
    promise: js_sys::Promise,
    done: bool,
}

#[cfg(target_arch = "wasm32")]
impl Timer {
    /// A timer of `ms` milliseconds.
    pub fn after(ms: u32) -> Self {
        let promise = crate::host::sleep(ms);
        Self { wait: crate::host::Settled::of(&promise), promise, done: false }
    }
}

#[cfg(target_arch = "wasm32")]
impl Drop for Timer {
    fn drop(&mut self) {
        if !self.done {
            crate::host::cancel(&self.promise);
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl std::future::Future for Timer {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let polled = std::pin::Pin::new(&mut self.wait).poll(cx).map(|_| ());
        if polled.is_ready() {
            self.done = true;
        }
        polled
    }
}
