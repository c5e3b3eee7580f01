//! Timers (`ngx.timer.at`, `ngx.timer.every`). The clock thread says when a timer expires; a
//! small pool of executor threads runs its callback on the worker that created it (the
//! callback and its arguments live in that worker's Lua state), so a slow callback or a busy
//! worker never holds up the clock. A callback that waits (`ngx.sleep`, an async host call) is
//! parked here and resumed by an executor thread when its wait completes.
//!
//! Shutdown (the host released its last `Engine` and `Request`): new timers are refused
//! ("process exiting"), the executor threads stop, every pending timer expires once with
//! `premature = true` (as nginx expires a worker's timers when it exits; `every` timers too,
//! once), sleeps end at once, and the releasing thread runs all that before its drop returns
//! (an executor thread whose callback released the engine does it once the callback is over).
//! What still waits for the host after that is abandoned.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::engine::Shared;
use crate::error::Result;
use crate::host::HostValue;
use crate::log::LogLevel;
use crate::phase::Status;
use crate::request::RequestState;
use crate::scheduler::Scheduler;
use crate::wait::{Event, PendingOp, WakeSlot};

/// Receives the async host function calls of timer callbacks (`EngineConfig::timer_ops`).
/// Called on an engine thread right after the callback yields; it must not block: perform the
/// operation elsewhere (or right here if it is quick) and complete it from any thread.
pub type TimerOpHandler = Arc<dyn Fn(TimerOp) + Send + Sync>;

/// An async host function called from a timer callback. There is no request to complete it
/// through, so the host gets this handle: `complete` it once, from any thread. Dropping it
/// without completing fails the call in the callback (`the host dropped the operation`).
pub struct TimerOp {
    op: PendingOp,
    slot: Option<Weak<WakeSlot>>,
}

impl TimerOp {
    /// The call: function name and arguments (its id means nothing outside the timer).
    pub fn op(&self) -> &PendingOp {
        &self.op
    }

    /// Hands the callback its results, or an error message it raises, and lets the engine
    /// resume it. Does nothing if the engine shut down meanwhile.
    pub fn complete(mut self, result: std::result::Result<Vec<HostValue>, String>) {
        self.finish(result);
    }

    fn finish(&mut self, result: std::result::Result<Vec<HostValue>, String>) {
        if let Some(slot) = self.slot.take().and_then(|slot| slot.upgrade()) {
            slot.wake(Event { id: self.op.id, result });
        }
    }
}

impl Drop for TimerOp {
    fn drop(&mut self) {
        self.finish(Err("the host dropped the operation without completing it".into()));
    }
}

/// Resumes a callback may take once the engine shuts down (sleeps then end at once): a
/// callback that keeps sleeping in a loop is abandoned rather than spinning forever.
const EXIT_RESUMES: u32 = 100;

/// Executor threads at most: callbacks mostly wait on worker locks, not on CPUs.
const MAX_EXECUTORS: usize = 4;

thread_local! {
    /// The timers whose executor job runs on this thread (their `Core`'s address), if any.
    static RUNNING_JOB_OF: Cell<usize> = const { Cell::new(0) };
}

/// The engine's timers; clones share them.
#[derive(Clone)]
pub(crate) struct Timers(Arc<Core>);

struct Core {
    scheduler: Arc<Scheduler>,
    /// Set once the engine exists; executor threads hold it while they run a job.
    engine: OnceLock<Weak<Shared>>,
    max_pending: usize,
    max_running: usize,
    max_executors: usize,
    /// Per worker, as nginx counts per worker process.
    counts: Vec<Counts>,
    next_id: AtomicU64,
    exiting: AtomicBool,
    /// The engine was released inside a timer callback: the executor shuts down after it.
    release_after_job: AtomicBool,
    queue: Mutex<Queue>,
    work: Condvar,
    /// Callbacks waiting for a sleep or a host operation, by run key.
    parked: Mutex<HashMap<u64, TimerRun>>,
    ops: Option<TimerOpHandler>,
}

#[derive(Default)]
struct Counts {
    pending: AtomicUsize,
    running: AtomicUsize,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    threads: Vec<JoinHandle<()>>,
    idle: usize,
    stopped: bool,
}

enum Job {
    Expire(Expiry),
    /// A parked callback's wait may have completed.
    Resume(u64),
}

/// A timer that expired: run its callback.
#[derive(Clone, Copy)]
struct Expiry {
    id: u64,
    worker: usize,
    /// The period of an `every` timer.
    every: Option<Duration>,
    premature: bool,
}

/// One run of a callback that yielded.
struct TimerRun {
    key: u64,
    worker: usize,
    state: Box<RequestState>,
    wake: Arc<WakeSlot>,
    exit_resumes: u32,
}

impl Timers {
    pub(crate) fn new(
        scheduler: Arc<Scheduler>,
        workers: usize,
        max_pending: usize,
        max_running: usize,
        ops: Option<TimerOpHandler>,
    ) -> Timers {
        Timers(Arc::new(Core {
            scheduler,
            engine: OnceLock::new(),
            max_pending,
            max_running,
            max_executors: workers.clamp(1, MAX_EXECUTORS),
            counts: (0..workers).map(|_| Counts::default()).collect(),
            next_id: AtomicU64::new(1),
            exiting: AtomicBool::new(false),
            release_after_job: AtomicBool::new(false),
            queue: Mutex::default(),
            work: Condvar::new(),
            parked: Mutex::default(),
            ops,
        }))
    }

    /// Tells the executor threads which engine they run callbacks for.
    pub(crate) fn attach(&self, engine: Weak<Shared>) {
        let _ = self.0.engine.set(engine);
    }

    /// An id for a timer about to be created (its callback is stored under it first).
    pub(crate) fn reserve_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts timer `id` of `worker`, expiring after `delay` (then every `delay` for `every`),
    /// or says why not, with lua-nginx-module's message.
    pub(crate) fn start(
        &self,
        id: u64,
        worker: usize,
        delay: Duration,
        every: bool,
    ) -> std::result::Result<(), &'static str> {
        let core = &self.0;
        if core.exiting.load(Ordering::Acquire) {
            return Err("process exiting");
        }
        let pending = &core.counts[worker].pending;
        if pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < core.max_pending).then_some(n + 1))
            .is_err()
        {
            return Err("too many pending timers");
        }
        core.schedule(Expiry { id, worker, every: every.then_some(delay), premature: false }, delay);
        Ok(())
    }

    /// Timers of `worker` waiting to expire.
    pub(crate) fn pending(&self, worker: usize) -> usize {
        self.0.counts[worker].pending.load(Ordering::Acquire)
    }

    /// Callbacks of `worker` running now (waiting ones included).
    pub(crate) fn running(&self, worker: usize) -> usize {
        self.0.counts[worker].running.load(Ordering::Acquire)
    }

    /// The host let go of the engine: shut down now (see the module docs), or, from inside a
    /// timer callback, once it returns: the callback holds its worker's lock.
    pub(crate) fn release(&self, shared: &Shared) {
        if RUNNING_JOB_OF.get() == Arc::as_ptr(&self.0) as usize {
            self.0.exiting.store(true, Ordering::Release);
            self.0.release_after_job.store(true, Ordering::Release);
        } else {
            self.0.shutdown(shared);
        }
    }
}

impl Core {
    fn shutdown(self: &Arc<Core>, shared: &Shared) {
        self.exiting.store(true, Ordering::Release);
        let threads = {
            let mut queue = self.queue.lock();
            queue.stopped = true;
            self.work.notify_all();
            std::mem::take(&mut queue.threads)
        };
        let me = std::thread::current().id();
        for thread in threads {
            // An executor thread that ran the releasing callback shuts down itself.
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
        shared.scheduler.shutdown();
        loop {
            // Not `while let`: the queue's lock must be released before the job runs.
            let job = self.queue.lock().jobs.pop_front();
            let Some(job) = job else { break };
            self.run(shared, job);
        }
        let abandoned: Vec<TimerRun> = self.parked.lock().drain().map(|(_, run)| run).collect();
        for run in abandoned {
            self.abandon(shared, run, "it still waits for the host");
        }
    }

    fn schedule(self: &Arc<Core>, expiry: Expiry, delay: Duration) {
        let core = Arc::downgrade(self);
        let task = move |premature: bool| {
            if let Some(core) = core.upgrade() {
                core.push(Job::Expire(Expiry { premature, ..expiry }));
            }
        };
        self.scheduler.at(Instant::now() + delay, Box::new(task));
    }

    fn push(self: &Arc<Core>, job: Job) {
        let mut queue = self.queue.lock();
        queue.jobs.push_back(job);
        if queue.idle > 0 {
            self.work.notify_one();
        } else if !queue.stopped && queue.threads.len() < self.max_executors {
            let core = self.clone();
            let spawned = std::thread::Builder::new().name("luaengine-timer".into()).spawn(move || core.execute());
            // Without a new thread the job waits for a busy one (or for the shutdown).
            if let Ok(thread) = spawned {
                queue.threads.push(thread);
            }
        }
    }

    /// An executor thread: runs jobs while the engine lives.
    fn execute(self: &Arc<Core>) {
        loop {
            let (job, shared) = {
                let mut queue = self.queue.lock();
                loop {
                    if queue.stopped {
                        return;
                    }
                    if !queue.jobs.is_empty() {
                        // The engine is held before a job is taken, so a job taken is a job run.
                        let Some(shared) = self.engine.get().and_then(Weak::upgrade) else { return };
                        break (queue.jobs.pop_front().expect("a job is queued"), shared);
                    }
                    queue.idle += 1;
                    self.work.wait(&mut queue);
                    queue.idle -= 1;
                }
            };
            RUNNING_JOB_OF.set(Arc::as_ptr(self) as usize);
            // A callback's panic (from a host function) must not take the executor down.
            let _ = catch_unwind(AssertUnwindSafe(|| self.run(&shared, job)));
            RUNNING_JOB_OF.set(0);
            if self.release_after_job.swap(false, Ordering::AcqRel) {
                self.shutdown(&shared);
            }
        }
    }

    fn run(self: &Arc<Core>, shared: &Shared, job: Job) {
        match job {
            Job::Expire(expiry) => self.expire(shared, expiry),
            Job::Resume(key) => self.resume(shared, key),
        }
    }

    /// A timer expired: re-arm an `every` timer, then run the callback unless too many run.
    fn expire(self: &Arc<Core>, shared: &Shared, expiry: Expiry) {
        let counts = &self.counts[expiry.worker];
        counts.pending.fetch_sub(1, Ordering::AcqRel);
        let worker = shared.worker(expiry.worker);
        if worker.timer_discarded(expiry.id) {
            return;
        }
        let again = expiry.every.filter(|_| !expiry.premature && !self.exiting.load(Ordering::Acquire));
        if let Some(period) = again {
            counts.pending.fetch_add(1, Ordering::AcqRel);
            self.schedule(expiry, period);
        }
        let last = again.is_none();
        let max = self.max_running;
        if counts.running.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_err() {
            let defined_at = worker.forget_timer(expiry.id, last);
            let message = format!(
                "lua failed to run timer with function defined at {defined_at}: {max} lua_max_running_timers are not enough"
            );
            shared.logger.log_engine(LogLevel::Alert, &message);
            return;
        }
        let (state, result) = worker.run_timer(shared, RequestState::detached(), expiry.id, expiry.premature, last);
        let key = self.next_id.fetch_add(1, Ordering::Relaxed);
        let run = TimerRun { key, worker: expiry.worker, state, wake: Arc::default(), exit_resumes: 0 };
        self.settle(run, result);
    }

    /// After a run or resume: a callback that waits is parked, one that ended stops running.
    fn settle(self: &Arc<Core>, mut run: TimerRun, result: Result<Status>) {
        if result != Ok(Status::Yield) {
            // Failures were logged by the worker, as nginx logs an aborted entry thread.
            self.counts[run.worker].running.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let key = run.key;
        let waker = Arc::downgrade(self);
        run.wake.set_waker(Some(Arc::new(move || {
            if let Some(core) = waker.upgrade() {
                core.push(Job::Resume(key));
            }
        })));
        run.state.waits.start_sleeps(&self.scheduler, &run.wake);
        let ops = std::mem::take(&mut run.state.waits.pending);
        let wake = run.wake.clone();
        // A plain `coroutine.yield()` waits for nothing: it goes on after the jobs queued so far.
        let plain_yield = run.state.suspended.as_ref().is_some_and(|suspended| !suspended.waiting);
        self.repark(run);
        for op in ops {
            self.hand_over(TimerOp { op, slot: Some(Arc::downgrade(&wake)) });
        }
        if plain_yield {
            self.push(Job::Resume(key));
        }
    }

    /// Parks `run` until its waker queues it; a completion that came meanwhile queues it now.
    fn repark(self: &Arc<Core>, run: TimerRun) {
        let (key, wake) = (run.key, run.wake.clone());
        self.parked.lock().insert(key, run);
        if wake.has_ready() {
            self.push(Job::Resume(key));
        }
    }

    fn hand_over(&self, op: TimerOp) {
        match &self.ops {
            // A panicking handler drops the op, which fails the call.
            Some(handler) => drop(catch_unwind(AssertUnwindSafe(|| handler(op)))),
            None => {
                let message = format!(
                    "host function '{}' cannot run in a timer: the host set no timer operation handler",
                    op.op.name
                );
                op.complete(Err(message));
            }
        }
    }

    fn resume(self: &Arc<Core>, shared: &Shared, key: u64) {
        let Some(mut run) = self.parked.lock().remove(&key) else { return };
        let Some(event) = run.state.resume_event(&run.wake) else { return self.repark(run) };
        if self.exiting.load(Ordering::Acquire) {
            run.exit_resumes += 1;
            if run.exit_resumes > EXIT_RESUMES {
                return self.abandon(shared, run, &format!("it still runs after {EXIT_RESUMES} resumes"));
            }
        }
        let (state, result) = shared.worker(run.worker).resume(shared, run.state, event);
        run.state = state;
        self.settle(run, result);
    }

    /// Gives up on a callback at shutdown.
    fn abandon(&self, shared: &Shared, run: TimerRun, why: &str) {
        self.counts[run.worker].running.fetch_sub(1, Ordering::AcqRel);
        shared.logger.log_engine(LogLevel::Alert, &format!("lua timer abandoned at engine shutdown: {why}"));
    }
}
