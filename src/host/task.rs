//! The Worker's executor and its bridge from JS promises (wasm32 only).
//!
//! `wasm-bindgen-futures` turns every awaited promise into two closure objects (each registered
//! with a finalizer) and every wake-up into a `queueMicrotask` call; profiles of the Worker showed
//! that machinery costing about a tenth of a proxied request. Here a promise settles into a slot
//! named by a number, through one callback installed once per isolate ([`Settled`]), and the task
//! waiting on it is polled right there ([`spawn`]). Futures of other kinds (a `JsFuture`, a Rust
//! channel) still work: their wake-ups queue the task and schedule one microtask to run it.
//!
//! Invariants: a slot's callback may arrive after its future is gone (ignored) or twice (a
//! timeout, then the answer: the second is ignored); a task is never polled while it is being
//! polled; running never nests.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A hasher for slot numbers, which are unique already.
#[derive(Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

enum Slot {
    Waiting(Option<Waker>),
    Done(Result<JsValue, JsValue>),
}

#[derive(Default)]
struct Executor {
    tasks: RefCell<Vec<Option<Task>>>,
    /// One waker per task slot, made once.
    wakers: RefCell<Vec<Waker>>,
    queued: RefCell<Vec<bool>>,
    free: RefCell<Vec<usize>>,
    ready: RefCell<VecDeque<usize>>,
    /// Tasks are being polled, or will be before control returns to JS.
    running: Cell<bool>,
    /// A microtask that runs the ready tasks is pending.
    scheduled: Cell<bool>,
    slots: RefCell<HashMap<u32, Slot, BuildHasherDefault<SlotHasher>>>,
    next_slot: Cell<u32>,
    installed: Cell<bool>,
}

thread_local! {
    static EXECUTOR: Executor = Executor::default();
}

impl Executor {
    fn install(&self) {
        if self.installed.replace(true) {
            return;
        }
        let settle = Closure::<dyn FnMut(u32, bool, JsValue)>::new(|id: u32, ok: bool, value: JsValue| {
            EXECUTOR.with(|e| e.settle(id, if ok { Ok(value) } else { Err(value) }));
        });
        let run = Closure::<dyn FnMut()>::new(|| {
            EXECUTOR.with(|e| {
                e.scheduled.set(false);
                e.run();
            });
        });
        super::install(settle.as_ref().unchecked_ref(), run.as_ref().unchecked_ref());
        // Both live as long as the isolate.
        settle.forget();
        run.forget();
    }

    fn spawn(&self, task: Task) {
        self.install();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => {
                self.tasks.borrow_mut()[i] = Some(task);
                i
            }
            None => {
                let mut tasks = self.tasks.borrow_mut();
                tasks.push(Some(task));
                self.queued.borrow_mut().push(false);
                let index = tasks.len() - 1;
                self.wakers.borrow_mut().push(Waker::from(Arc::new(TaskWaker(index))));
                index
            }
        };
        self.enqueue(index);
        if !self.running.get() {
            self.run();
        }
    }

    /// Marks task `index` ready; outside a run, a microtask will run it.
    fn wake(&self, index: usize) {
        self.enqueue(index);
        if !self.running.get() && !self.scheduled.replace(true) {
            super::schedule();
        }
    }

    fn enqueue(&self, index: usize) {
        let mut queued = self.queued.borrow_mut();
        if let Some(q) = queued.get_mut(index) {
            if !*q {
                *q = true;
                self.ready.borrow_mut().push_back(index);
            }
        }
    }

    /// Polls ready tasks until none is left.
    fn run(&self) {
        if self.running.replace(true) {
            return;
        }
        loop {
            let Some(index) = self.ready.borrow_mut().pop_front() else { break };
            if let Some(q) = self.queued.borrow_mut().get_mut(index) {
                *q = false;
            }
            let Some(waker) = self.wakers.borrow().get(index).cloned() else { continue };
            let Some(mut task) = self.tasks.borrow_mut().get_mut(index).and_then(Option::take) else { continue };
            let mut cx = Context::from_waker(&waker);
            match task.as_mut().poll(&mut cx) {
                Poll::Ready(()) => self.free.borrow_mut().push(index),
                Poll::Pending => {
                    if let Some(slot) = self.tasks.borrow_mut().get_mut(index) {
                        *slot = Some(task);
                    }
                }
            }
        }
        self.running.set(false);
    }

    fn new_slot(&self) -> u32 {
        self.install();
        let id = self.next_slot.get().wrapping_add(1);
        self.next_slot.set(id);
        self.slots.borrow_mut().insert(id, Slot::Waiting(None));
        id
    }

    /// A promise settled: its value goes to the slot, and the task waiting on it runs now.
    fn settle(&self, id: u32, result: Result<JsValue, JsValue>) {
        let waker = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(&id) {
                Some(slot @ Slot::Waiting(_)) => match std::mem::replace(slot, Slot::Done(result)) {
                    Slot::Waiting(waker) => waker,
                    Slot::Done(_) => None,
                },
                // Gone (its future was dropped) or settled already (a timeout before the answer).
                _ => None,
            }
        };
        let Some(waker) = waker else { return };
        // The run below polls the woken task; no microtask is needed for it.
        let was_running = self.running.replace(true);
        waker.wake();
        self.running.set(was_running);
        if !was_running {
            self.run();
        }
    }
}

/// Wakes task `index` of the isolate's executor.
struct TaskWaker(usize);

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        EXECUTOR.with(|e| e.wake(self.0));
    }

    fn wake_by_ref(self: &Arc<Self>) {
        EXECUTOR.with(|e| e.wake(self.0));
    }
}

/// Runs `future` to completion on the isolate's executor; it is first polled before this returns.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    EXECUTOR.with(|e| e.spawn(Box::pin(future)));
}

/// The outcome of a JS promise as a future, settled through the isolate's one callback.
pub struct Settled {
    id: u32,
}

impl Settled {
    /// `promise`'s outcome.
    pub fn of(promise: &js_sys::Promise) -> Self {
        let id = EXECUTOR.with(Executor::new_slot);
        super::settle_on(promise, id);
        Self { id }
    }

    /// `promise`'s outcome, or `Ok(undefined)` when it has not settled within `ms` (the promise
    /// goes on; asking again waits for the same answer).
    pub fn within(promise: &js_sys::Promise, ms: u32) -> Self {
        let id = EXECUTOR.with(Executor::new_slot);
        super::settle_within(promise, ms, id);
        Self { id }
    }
}

impl Future for Settled {
    type Output = Result<JsValue, JsValue>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        EXECUTOR.with(|e| {
            let mut slots = e.slots.borrow_mut();
            match slots.get_mut(&self.id) {
                Some(Slot::Waiting(waker)) => {
                    *waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                Some(Slot::Done(_)) => match slots.remove(&self.id) {
                    Some(Slot::Done(result)) => Poll::Ready(result),
                    _ => Poll::Ready(Err(JsValue::UNDEFINED)),
                },
                None => Poll::Ready(Err(JsValue::UNDEFINED)),
            }
        })
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        EXECUTOR.with(|e| e.slots.borrow_mut().remove(&self.id));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use wasm_bindgen::JsValue;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    /// A promise of `value` after `ms`.
    fn later(ms: u32, value: &str) -> js_sys::Promise {
        let make = js_sys::Function::new_with_args("ms, v", "return new Promise((r) => setTimeout(() => r(v), ms))");
        make.call2(&JsValue::NULL, &JsValue::from(ms), &JsValue::from_str(value)).unwrap().unchecked_into()
    }

    #[wasm_bindgen_test]
    async fn a_settled_promise_delivers_its_value_and_its_error() {
        assert_eq!(Settled::of(&later(1, "v")).await.ok().and_then(|v| v.as_string()).as_deref(), Some("v"));
        let refused = js_sys::Promise::reject(&JsValue::from_str("no"));
        assert_eq!(Settled::of(&refused).await.err().and_then(|v| v.as_string()).as_deref(), Some("no"));
    }

    #[wasm_bindgen_test]
    async fn within_gives_undefined_at_the_deadline_and_ignores_the_late_answer() {
        let slow = later(60, "late");
        let first = Settled::within(&slow, 5).await;
        assert!(first.is_ok_and(|v| v.is_undefined()), "the deadline came first");
        // The same promise, asked again with room to spare, gives its answer.
        let second = Settled::within(&slow, 1_000).await;
        assert_eq!(second.ok().and_then(|v| v.as_string()).as_deref(), Some("late"));
    }

    #[wasm_bindgen_test]
    async fn a_dropped_wait_does_not_disturb_the_others() {
        drop(Settled::of(&later(5, "dropped")));
        let kept = Settled::of(&later(10, "kept")).await;
        assert_eq!(kept.ok().and_then(|v| v.as_string()).as_deref(), Some("kept"));
    }

    #[wasm_bindgen_test]
    async fn spawned_tasks_run_to_completion_across_awaits_and_in_order() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        for (name, ms) in [("b", 20), ("a", 5)] {
            let seen = seen.clone();
            spawn(async move {
                seen.borrow_mut().push(format!("{name} start"));
                let _ = Settled::of(&later(ms, name)).await;
                seen.borrow_mut().push(format!("{name} end"));
            });
        }
        let seen_last = seen.clone();
        spawn(async move {
            let _ = Settled::of(&later(40, "last")).await;
            seen_last.borrow_mut().push("last".to_owned());
            let _ = tx.send(());
        });
        // Spawning polls at once, before this test's next await.
        assert_eq!(seen.borrow().as_slice(), ["b start", "a start"]);
        let _ = rx.await;
        assert_eq!(seen.borrow().as_slice(), ["b start", "a start", "a end", "b end", "last"]);
    }
}
