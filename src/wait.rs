//! What a suspended request waits for (DESIGN.md §5): engine-driven waits (`ngx.sleep`) that
//! the scheduler completes and announces through the request's waker, and host-driven waits
//! (async host functions, reading the body) that the host completes. Completed waits queue up
//! as events; `Request::resume` hands them to the script one by one.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::host::HostValue;
use crate::scheduler::Scheduler;

/// Called when an engine-driven wait of a request completes: the host should resume the
/// request (from any thread, but not necessarily from inside this call).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A host-driven wait: the host performs it and calls `Request::complete` with its id.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingOp {
    pub id: u64,
    /// The async host function's name, or `ngx.req.read_body` for a body read.
    pub name: String,
    pub args: Vec<HostValue>,
}

/// The name of the pending operation `ngx.req.read_body()` creates; complete it with the body
/// as one string (or no value for an empty body).
pub const READ_BODY: &str = "ngx.req.read_body";

/// A completed wait: its id and what the waiting script gets (values, or an error message it
/// raises).
pub(crate) struct Event {
    pub id: u64,
    pub result: Result<Vec<HostValue>, String>,
}

/// A request's waits. Ids are never reused within a request, so a completion that arrives
/// after its phase ended matches nothing and is dropped.
#[derive(Default)]
pub(crate) struct Waits {
    next_id: u64,
    /// The last id when the waits were last forgotten.
    forgotten_through: u64,
    /// Sleeps for the clock, handed over when the phase yields.
    pub sleeps: Vec<(u64, Duration)>,
    /// Host-driven waits not completed yet.
    pub pending: Vec<PendingOp>,
    /// Every wait whose completion the phase has not received yet.
    live: Vec<u64>,
}

impl Waits {
    pub(crate) fn sleep(&mut self, duration: Duration) -> u64 {
        let id = self.next();
        self.sleeps.push((id, duration));
        id
    }

    pub(crate) fn host(&mut self, name: String, args: Vec<HostValue>) -> u64 {
        let id = self.next();
        self.pending.push(PendingOp { id, name, args });
        id
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.live.push(self.next_id);
        self.next_id
    }

    /// Whether the phase waits for `id`; if so it no longer does.
    pub(crate) fn settle(&mut self, id: u64) -> bool {
        let index = self.live.iter().position(|&live| live == id);
        index.map(|index| self.live.swap_remove(index)).is_some()
    }

    /// The phase ended: whatever it still waited for no longer matters. Returns the last id
    /// given out, if any since the last time, for `WakeSlot::forget_through`.
    pub(crate) fn forget(&mut self) -> Option<u64> {
        self.sleeps.clear();
        self.pending.clear();
        self.live.clear();
        let last = self.next_id;
        (std::mem::replace(&mut self.forgotten_through, last) < last).then_some(last)
    }

    /// Hands the sleeps of a phase that just yielded to the clock, which completes each
    /// through `slot` (unless its owner is gone by then).
    pub(crate) fn start_sleeps(&mut self, scheduler: &Scheduler, slot: &Arc<WakeSlot>) {
        let now = Instant::now();
        for (id, duration) in self.sleeps.drain(..) {
            let slot = Arc::downgrade(slot);
            scheduler.at(
                now + duration,
                Box::new(move |_| {
                    if let Some(slot) = slot.upgrade() {
                        slot.wake(Event { id, result: Ok(Vec::new()) });
                    }
                }),
            );
        }
    }

    /// Takes the pending operation `id` off the list.
    pub(crate) fn take_pending(&mut self, id: u64) -> Option<PendingOp> {
        let index = self.pending.iter().position(|op| op.id == id)?;
        Some(self.pending.remove(index))
    }
}

/// A request's `WakeSlot`, made on first use: most requests never wait.
#[derive(Default)]
pub(crate) struct LazyWakeSlot(OnceCell<Arc<WakeSlot>>);

impl LazyWakeSlot {
    pub(crate) fn slot(&self) -> &Arc<WakeSlot> {
        self.0.get_or_init(Arc::default)
    }

    /// The slot, if anything made it.
    pub(crate) fn made(&self) -> Option<&Arc<WakeSlot>> {
        self.0.get()
    }
}

/// The part of a request that other threads reach: completed waits and the waker. The
/// scheduler holds it weakly, so a freed request is simply skipped.
#[derive(Default)]
pub(crate) struct WakeSlot {
    state: Mutex<WakeState>,
    idle: Condvar,
}

#[derive(Default)]
struct WakeState {
    ready: VecDeque<Event>,
    waker: Option<Waker>,
    cancelled: bool,
    /// Waits up to this id belong to ended phases: their completions wake no one.
    stale_through: u64,
    /// The phase yielded plainly (`coroutine.yield()`) and its wake has not come yet.
    yielded: bool,
    /// The thread inside the waker right now, if any.
    waking: Option<ThreadId>,
}

impl WakeSlot {
    pub(crate) fn set_waker(&self, waker: Option<Waker>) {
        self.state.lock().waker = waker;
    }

    /// Queues a completed wait without waking anyone (the host completed it and resumes).
    pub(crate) fn push(&self, event: Event) {
        self.state.lock().ready.push_back(event);
    }

    /// Queues a completed engine-driven wait and calls the waker, unless the request was freed.
    pub(crate) fn wake(&self, event: Event) {
        self.notify(Some(event));
    }

    /// Calls the waker again (for a wake its host could not take at the time), unless the
    /// request was freed.
    pub(crate) fn wake_again(&self) {
        self.notify(None);
    }

    /// The phase yielded plainly: `wake_yield` is to call the waker.
    pub(crate) fn expect_yield_wake(&self) {
        self.state.lock().yielded = true;
    }

    /// Calls the waker for a plain yield, unless the host resumed (or cancelled) it already.
    pub(crate) fn wake_yield(&self) {
        if std::mem::take(&mut self.state.lock().yielded) {
            self.notify(None);
        }
    }

    /// A plain yield is being resumed: its wake is no longer needed.
    pub(crate) fn drop_yield_wake(&self) {
        self.state.lock().yielded = false;
    }

    /// The waits up to `id` ended with their phase: their completions, queued or to come, are
    /// dropped without a wake, and so is a plain yield's wake.
    pub(crate) fn forget_through(&self, id: u64) {
        let mut state = self.state.lock();
        state.stale_through = id;
        state.yielded = false;
        state.ready.retain(|event| event.id > id);
    }

    fn notify(&self, event: Option<Event>) {
        let waker = {
            let mut state = self.state.lock();
            if state.cancelled || event.as_ref().is_some_and(|event| event.id <= state.stale_through) {
                return;
            }
            state.ready.extend(event);
            let Some(waker) = state.waker.clone() else { return };
            state.waking = Some(std::thread::current().id());
            waker
        };
        // Called without the lock: the waker may resume or free the request.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker()));
        let mut state = self.state.lock();
        state.waking = None;
        self.idle.notify_all();
        drop(state);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// The next completed wait that `waits` still waits for; stale ones are dropped.
    pub(crate) fn next_for(&self, waits: &mut Waits) -> Option<Event> {
        std::iter::from_fn(|| self.state.lock().ready.pop_front()).find(|event| waits.settle(event.id))
    }

    /// Whether completed waits are queued.
    pub(crate) fn has_ready(&self) -> bool {
        !self.state.lock().ready.is_empty()
    }

    /// The request is being freed: no waker call starts after this returns, and one running on
    /// another thread has finished. (From inside the waker itself, it returns at once.)
    pub(crate) fn cancel(&self) {
        let mut state = self.state.lock();
        state.cancelled = true;
        state.waker = None;
        state.ready.clear();
        let me = std::thread::current().id();
        while state.waking.is_some_and(|thread| thread != me) {
            self.idle.wait(&mut state);
        }
    }
}
