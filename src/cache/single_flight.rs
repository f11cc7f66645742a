//! Single-flight within one isolate: concurrent callers of one key share one run of the work.
//!
//! Scope: one isolate (one thread, one event loop); across isolates the fill lock in Redis
//! ([`super::lock`]) does the same job. The first caller (the leader) runs the work in its own
//! request; the others (followers) never await the leader's future: they look at a shared result
//! slot each time a timer of their own fires. On the Workers runtime this matters twice over: a
//! request waiting only on another request's I/O is cancelled as hung, and code resumed by
//! another request's I/O runs in that request's context, where the response it builds cannot be
//! sent. The key is removed when the run ends (with any result, errors included); a leader that
//! is dropped mid-run marks its slot abandoned, and one follower takes over.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::rc::{Rc, Weak};

use crate::clock::Sleeper;

/// How soon a follower first looks at the slot, ms; each later look waits half again as long, up
/// to [`MAX_POLL_MS`]. A burst of a hundred followers polling every 10 ms would keep the isolate
/// busy enough to delay the leader's own answer.
pub const POLL_MS: u32 = 10;

/// The longest wait between two looks of a follower, ms.
pub const MAX_POLL_MS: u32 = 100;

/// Where a run stands.
#[derive(Debug)]
enum Slot<V> {
    /// The leader is still working.
    Pending,
    /// The leader's result, for every follower.
    Done(V),
    /// The leader went away without a result.
    Abandoned,
}

type Flights<K, V> = RefCell<HashMap<K, Rc<RefCell<Slot<V>>>>>;

/// Deduplicates concurrent work by key; `!Send`, for one isolate.
pub struct SingleFlight<K, V> {
    flights: Rc<Flights<K, V>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self { flights: Rc::new(RefCell::new(HashMap::new())) }
    }
}

impl<K, V> std::fmt::Debug for SingleFlight<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").field("in_flight", &self.flights.borrow().len()).finish()
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    /// An empty single-flight map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `make()` for `key` unless a run for `key` is already in flight, in which case this
    /// call waits (on `sleeper`, from [`POLL_MS`] up to [`MAX_POLL_MS`]) for that run's result; every caller gets a
    /// clone of the one result.
    pub async fn run<F, Fut, S>(&self, key: K, make: F, sleeper: &S) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
        S: Sleeper + ?Sized,
    {
        let mut poll = POLL_MS;
        loop {
            let existing = self.flights.borrow().get(&key).cloned();
            let Some(slot) = existing else { break };
            loop {
                match &*slot.borrow() {
                    Slot::Done(v) => return v.clone(),
                    Slot::Abandoned => break,
                    Slot::Pending => {}
                }
                sleeper.sleep(poll).await;
                poll = (poll + poll / 2).min(MAX_POLL_MS);
            }
        }
        let slot = Rc::new(RefCell::new(Slot::Pending));
        self.flights.borrow_mut().insert(key.clone(), Rc::clone(&slot));
        let landing = Landing { flights: Rc::downgrade(&self.flights), key, slot: Rc::clone(&slot) };
        let value = make().await;
        *slot.borrow_mut() = Slot::Done(value.clone());
        drop(landing);
        value
    }

    /// Whether a run for `key` is in flight.
    pub fn in_flight(&self, key: &K) -> bool {
        self.flights.borrow().contains_key(key)
    }

    /// How many keys are in flight.
    pub fn len(&self) -> usize {
        self.flights.borrow().len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes its run's key from the map when the run ends, and marks the slot abandoned when the
/// leader is dropped before it has a result.
struct Landing<K: Hash + Eq, V> {
    flights: Weak<Flights<K, V>>,
    key: K,
    slot: Rc<RefCell<Slot<V>>>,
}

impl<K: Hash + Eq, V> Drop for Landing<K, V> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.slot.try_borrow_mut() {
            if matches!(*slot, Slot::Pending) {
                *slot = Slot::Abandoned;
            }
        }
        let Some(flights) = self.flights.upgrade() else { return };
        let Ok(mut map) = flights.try_borrow_mut() else { return };
        if map.get(&self.key).is_some_and(|s| Rc::ptr_eq(s, &self.slot)) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use futures::future::join_all;

    use super::*;
    use crate::clock::Sleeper;
    use crate::clock::{Clock, FakeClock};
    use crate::testing::{block_on, run_with_timer, yield_now, FakeTimer};

    fn timer() -> Rc<FakeTimer> {
        Rc::new(FakeTimer::new(Rc::new(FakeClock::new(0))))
    }

    #[test]
    fn fifty_concurrent_callers_share_one_run() {
        let timer = timer();
        let sf: SingleFlight<&'static str, Result<String, String>> = SingleFlight::new();
        let calls = Rc::new(Cell::new(0u32));
        let results = run_with_timer(
            Some(&timer),
            join_all((0..50).map(|_| {
                let (calls, timer) = (Rc::clone(&calls), Rc::clone(&timer));
                let sleeper = Rc::clone(&timer);
                let sf = &sf;
                async move {
                    sf.run(
                        "k",
                        move || async move {
                            calls.set(calls.get() + 1);
                            timer.sleep(100).await;
                            Ok("body".to_owned())
                        },
                        &sleeper,
                    )
                    .await
                }
            })),
        );
        assert_eq!(calls.get(), 1);
        assert!(results.iter().all(|r| r.as_deref() == Ok("body")));
        let done = timer.clock.now_ms();
        assert!((100..=100 + u64::from(MAX_POLL_MS)).contains(&done), "everyone waited for the one run: {done}");
        assert!(timer.sleeps.get() <= 50 * 8, "followers back off: {} looks", timer.sleeps.get());
        assert!(sf.is_empty(), "the key is removed when the run ends");
    }

    #[test]
    fn different_keys_run_separately() {
        let timer = timer();
        let sf: SingleFlight<u32, u32> = SingleFlight::new();
        let calls = Rc::new(Cell::new(0u32));
        let results = run_with_timer(
            Some(&timer),
            join_all((0..6).map(|i| {
                let (calls, timer) = (Rc::clone(&calls), Rc::clone(&timer));
                let sleeper = Rc::clone(&timer);
                let sf = &sf;
                async move {
                    sf.run(
                        i % 3,
                        move || async move {
                            calls.set(calls.get() + 1);
                            timer.sleep(10).await;
                            i % 3
                        },
                        &sleeper,
                    )
                    .await
                }
            })),
        );
        assert_eq!(calls.get(), 3);
        assert_eq!(results, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn an_error_is_shared_and_the_next_call_runs_again() {
        let timer = timer();
        let sf: SingleFlight<&'static str, Result<u32, &'static str>> = SingleFlight::new();
        let calls = Rc::new(Cell::new(0u32));
        let run = |fail: bool| {
            let (calls, timer, sleeper) = (Rc::clone(&calls), Rc::clone(&timer), Rc::clone(&timer));
            let sf = &sf;
            async move {
                sf.run(
                    "k",
                    move || async move {
                        calls.set(calls.get() + 1);
                        timer.sleep(10).await;
                        if fail {
                            Err("origin down")
                        } else {
                            Ok(7)
                        }
                    },
                    &sleeper,
                )
                .await
            }
        };
        let first = run_with_timer(Some(&timer), join_all([run(true), run(false)]));
        assert_eq!(first, [Err("origin down"), Err("origin down")]);
        assert!(sf.is_empty());
        assert_eq!(run_with_timer(Some(&timer), run(false)), Ok(7));
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn a_run_abandoned_by_its_leader_is_forgotten() {
        let timer = timer();
        let sf: SingleFlight<&'static str, u32> = SingleFlight::new();
        {
            let mut fut = Box::pin(sf.run(
                "k",
                || async {
                    yield_now().await;
                    1
                },
                &*timer,
            ));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert!(sf.in_flight(&"k"));
        }
        assert!(!sf.in_flight(&"k"));
        assert!(sf.flights.borrow().is_empty());
        assert_eq!(block_on(sf.run("k", || async { 2 }, &*timer)), 2);
    }

    #[test]
    fn a_follower_takes_over_when_the_leader_is_dropped() {
        let timer = timer();
        let sf: SingleFlight<&'static str, u32> = SingleFlight::new();
        let calls = Rc::new(Cell::new(0u32));
        let mut leader = Box::pin(sf.run(
            "k",
            || async {
                yield_now().await;
                1
            },
            &*timer,
        ));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        let c = Rc::clone(&calls);
        let follower = sf.run(
            "k",
            move || async move {
                c.set(c.get() + 1);
                2
            },
            &*timer,
        );
        let mut follower = Box::pin(follower);
        assert!(follower.as_mut().poll(&mut cx).is_pending(), "waits for the leader");
        drop(leader);
        assert_eq!(run_with_timer(Some(&timer), follower), 2);
        assert_eq!(calls.get(), 1, "the follower ran the work itself");
    }
}
