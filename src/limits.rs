//! The per-phase budgets (wall time and instructions) and the per-worker memory cap (DESIGN.md §7).
//!
//! **Time.** Each worker has a `RunClock` armed for every run or resume of a phase. The engine's
//! watchdog thread ticks every `TICK` and stops a run that outlives its deadline through the
//! worker state's `Interrupt` (`lua/interrupt.rs`), which costs a script nothing until then: no
//! hook is set and LuaJIT keeps compiling. The budget counts wall time while the phase's
//! coroutine runs on the worker: its Lua code and everything it calls (ngx.* functions, string
//! functions, the garbage collector). Time spent suspended in a yield does not count: a resumed
//! phase goes on with what it had left. A single long call into C (one `gsub` over a huge string)
//! is stopped at the first instruction after it returns. The same path stops every running
//! script when the host shuts the engine down.
//!
//! **Instructions.** A count hook checks the instruction budget every `CHECK_EVERY` VM
//! instructions; it is only installed when that budget is set, since any count hook slows every
//! script (see `Budget::install`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use mlua::{HookTriggers, Lua, VmState};
use parking_lot::Mutex;

use crate::error::{Error, ErrorCode};
use crate::lua::interrupt::Interrupt;

/// How many instructions run between two instruction-budget checks: small enough to stop a
/// runaway phase promptly, large enough that the hook costs little.
const CHECK_EVERY: u32 = 1000;

/// The watchdog's period: the time budget's resolution.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// The default time budget of a phase run: no request's Lua code computes for seconds on end,
/// and an nginx worker that did would stall every connection it serves.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(5);

/// The default cap of a worker's Lua heap: an order of magnitude above what OpenResty sites keep
/// in a worker (their big caches live in shared dicts, outside the Lua heap), and low enough that
/// an allocation bomb stops long before it hurts the machine.
pub const DEFAULT_MEMORY_LIMIT: usize = 512 << 20;

/// The message of a run stopped because the host shut the engine down.
const SHUTDOWN: &str = "stopped: the engine is shutting down";

/// The instruction budget of the phase running on one worker. Once spent every further check
/// raises again, so a `pcall` cannot swallow the stop for long.
pub(crate) struct Budget {
    instructions: i64,
    left: AtomicI64,
    /// The error of the budget that ran out during this run, once one did.
    stop: Mutex<Option<String>>,
}

/// What a phase has left of its budgets; a suspended phase carries it to its resume.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Left {
    instructions: i64,
    /// Watchdog ticks.
    ticks: u64,
}

impl Budget {
    /// Installs the checking hook on a worker state (for the coroutines created afterwards), or
    /// nothing when no instruction budget is set. The hook also raises the stop the watchdog
    /// asks `interrupt` for, as no other hook may be set beside it.
    pub(crate) fn install(
        lua: &Lua,
        instructions: u64,
        interrupt: Arc<Interrupt>,
    ) -> mlua::Result<Option<Arc<Budget>>> {
        if instructions == 0 {
            return Ok(None);
        }
        let instructions = i64::try_from(instructions).unwrap_or(i64::MAX);
        let budget = Arc::new(Budget { instructions, left: AtomicI64::new(instructions), stop: Mutex::new(None) });
        let step = CHECK_EVERY.min(u32::try_from(instructions).unwrap_or(u32::MAX));
        // While a count hook is set, LuaJIT's compiled loops (LUAJIT_ENABLE_CHECKHOOK) leave
        // their trace at every iteration: 100x slower than compiled code and 10x slower than
        // the interpreter under the same hook. Budgeted workers run LuaJIT as an interpreter.
        if cfg!(feature = "luajit") {
            lua.load("jit.off()").set_name("=[luaengine limits]").exec()?;
        }
        let checker = budget.clone();
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(step), move |_lua, debug| {
            let spent = if interrupt.stopping() {
                interrupt.reason()
            } else if checker.left.fetch_sub(i64::from(step), Ordering::Relaxed) <= i64::from(step) {
                format!("instruction budget of {} exceeded", checker.instructions)
            } else {
                return Ok(VmState::Continue);
            };
            let source = debug.source();
            let chunk = source.short_src.as_deref().unwrap_or("?");
            let line = debug.current_line().unwrap_or(0);
            let message = format!("{chunk}:{line}: {spent}");
            let error = Error::from_lua_message(ErrorCode::Budget, &message);
            checker.stop.lock().get_or_insert(message);
            Err(error.into())
        })?;
        Ok(Some(budget))
    }

    pub(crate) fn arm(&self, left: &Left) {
        self.left.store(left.instructions, Ordering::Relaxed);
        *self.stop.lock() = None;
    }

    pub(crate) fn left(&self) -> i64 {
        self.left.load(Ordering::Relaxed)
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.stop.lock().is_some()
    }

    /// The error of the first check that failed in this run, if one did.
    fn stopped(&self) -> Option<String> {
        self.stop.lock().clone()
    }
}

/// A worker state's limits for the run in progress: its deadline, watched by the engine's
/// watchdog, and its instruction budget.
pub(crate) struct RunClock {
    /// `deadline << 2 | state`: the deadline in watchdog ticks and where the run stands, in
    /// one word, so the watchdog never stops a later run for an earlier one's deadline.
    slot: AtomicU64,
    watchdog: Arc<Watchdog>,
    interrupt: Arc<Interrupt>,
    budget: Option<Arc<Budget>>,
    /// The time budget in ticks; 0 for none.
    ticks: u64,
}

const IDLE: u64 = 0;
const ARMED: u64 = 1;
/// The watchdog is stopping the run; the worker waits for it to be done before ending the run.
const FIRING: u64 = 2;
const FIRED: u64 = 3;
const STATE: u64 = 3;
const NO_DEADLINE: u64 = u64::MAX >> 2;

impl RunClock {
    pub(crate) fn new(
        watchdog: &Arc<Watchdog>,
        interrupt: Arc<Interrupt>,
        budget: Option<Arc<Budget>>,
        time: Duration,
    ) -> Arc<RunClock> {
        let ticks = match time.is_zero() {
            true => 0,
            false => u64::try_from(time.as_nanos().div_ceil(TICK.as_nanos())).unwrap_or(NO_DEADLINE).max(1),
        };
        let clock =
            Arc::new(RunClock { slot: AtomicU64::new(IDLE), watchdog: watchdog.clone(), interrupt, budget, ticks });
        watchdog.clocks.lock().push(Arc::downgrade(&clock));
        clock
    }

    /// The budgets of a phase that starts now.
    pub(crate) fn full(&self) -> Left {
        Left { instructions: self.budget.as_ref().map_or(0, |budget| budget.instructions), ticks: self.ticks }
    }

    /// Arms the limits for a run or a resume of `thread` with what its phase has left; fails
    /// once the engine is shutting down.
    pub(crate) fn arm(&self, left: &Left, thread: *mut mlua::ffi::lua_State) -> Result<(), Error> {
        self.interrupt.begin(thread);
        if let Some(budget) = &self.budget {
            budget.arm(left);
        }
        let deadline = match self.ticks {
            0 => NO_DEADLINE,
            _ => self.watchdog.now().saturating_add(left.ticks).min(NO_DEADLINE),
        };
        self.slot.store(deadline << 2 | ARMED, Ordering::SeqCst);
        // After arming: a shutdown that starts now either sees this run or is seen here.
        if self.watchdog.shutdown.load(Ordering::SeqCst) {
            self.disarm();
            return Err(Error::new(ErrorCode::Budget, SHUTDOWN));
        }
        Ok(())
    }

    /// Ends a run or resume: what its phase has left, and the message of the stop that ended
    /// it (a spent budget or a shutdown), if one did.
    pub(crate) fn disarm(&self) -> (Left, Option<(ErrorCode, String)>) {
        let mut stopped = None;
        let deadline = loop {
            let slot = self.slot.load(Ordering::SeqCst);
            match slot & STATE {
                ARMED if self.slot.compare_exchange(slot, IDLE, Ordering::SeqCst, Ordering::SeqCst).is_ok() => {
                    break slot >> 2;
                }
                FIRING | ARMED => std::hint::spin_loop(),
                FIRED => {
                    stopped = self.interrupt.end();
                    self.slot.store(IDLE, Ordering::SeqCst);
                    break slot >> 2;
                }
                _ => break NO_DEADLINE,
            }
        };
        // A run that was not stopped still ends here (the memory cap watches runs).
        let stopped = stopped.or_else(|| self.interrupt.end());
        let ticks = match deadline {
            NO_DEADLINE => self.ticks,
            deadline => deadline.saturating_sub(self.watchdog.now()),
        };
        // The instruction budget's own stop, or the message its hook raised for the watchdog.
        let budget_stop = self.budget.as_ref().and_then(|budget| budget.stopped());
        let stopped = match (stopped, budget_stop) {
            (Some((code, _)), Some(message)) => Some((code, message)),
            (None, Some(message)) => Some((ErrorCode::Budget, message)),
            (stopped, None) => stopped,
        };
        let instructions = self.budget.as_ref().map_or(0, |budget| budget.left());
        (Left { instructions, ticks }, stopped)
    }

    /// The watchdog's check at tick `now`: stops a run past its deadline, or any run once the
    /// engine shuts down; a stop still pending is raised again (it hooks the coroutines that
    /// run by now).
    fn check(&self, now: u64, shutdown: bool, time: Duration) {
        let slot = self.slot.load(Ordering::SeqCst);
        let deadline = slot >> 2;
        let reason = match slot & STATE {
            ARMED if shutdown => SHUTDOWN.to_string(),
            ARMED if deadline <= now => format!("time budget of {time:?} exceeded"),
            FIRED => String::new(),
            _ => return,
        };
        if self.slot.compare_exchange(slot, deadline << 2 | FIRING, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.interrupt.fire(ErrorCode::Budget, &reason);
            self.slot.store(deadline << 2 | FIRED, Ordering::SeqCst);
        }
    }
}

/// The engine's watchdog: a thread that ticks every `TICK` and checks every worker's run.
pub(crate) struct Watchdog {
    ticks: AtomicU64,
    shutdown: AtomicBool,
    clocks: Mutex<Vec<Weak<RunClock>>>,
    /// The configured time budget, for messages.
    time: Duration,
}

impl Watchdog {
    /// Starts the watchdog thread, which ends once the engine drops the returned handle.
    pub(crate) fn start(time: Duration) -> std::io::Result<Arc<Watchdog>> {
        let watchdog = Arc::new(Watchdog {
            ticks: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            clocks: Mutex::default(),
            time,
        });
        let weak = Arc::downgrade(&watchdog);
        std::thread::Builder::new().name("luaengine-watchdog".into()).spawn(move || loop {
            std::thread::sleep(TICK);
            let Some(watchdog) = weak.upgrade() else { return };
            watchdog.tick();
        })?;
        Ok(watchdog)
    }

    fn now(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    fn tick(&self) {
        let now = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let shutdown = self.shutdown.load(Ordering::SeqCst);
        let mut clocks = self.clocks.lock();
        clocks.retain(|clock| match clock.upgrade() {
            Some(clock) => {
                clock.check(now, shutdown, self.time);
                true
            }
            None => false,
        });
    }

    /// Stops every script running now and fails every run that starts later.
    pub(crate) fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.tick();
    }
}
