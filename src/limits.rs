//! The per-phase budgets (instructions and wall time) and the per-worker memory cap (DESIGN.md §7).
//!
//! One count hook checks both budgets every `CHECK_EVERY` VM instructions. The time budget counts
//! wall time while the phase's coroutine runs on the worker: its Lua code and everything it calls
//! (ngx.* functions, string functions, the garbage collector). Time spent suspended in a yield
//! does not count: a resumed phase goes on with what it had left. A single long call into C (one
//! `gsub` over a huge string) is stopped at the first check after it returns.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, VmState};
use parking_lot::Mutex;

use crate::error::{Error, ErrorCode};

/// How many instructions run between two budget checks: small enough to stop a runaway phase
/// promptly, large enough that the hook (and its clock read) costs little.
const CHECK_EVERY: u32 = 1000;

/// `deadline` when no phase is running: Lua code outside a phase run is not timed.
const NO_DEADLINE: u64 = u64::MAX;

/// The budgets of the phase running on one worker. Once one is spent every further check raises
/// again, so a `pcall` cannot swallow the stop for long.
pub(crate) struct Budget {
    /// Instructions per phase run; 0 means no instruction budget.
    instructions: i64,
    /// Wall time per phase run; zero means no time budget.
    time: Duration,
    /// Origin of `deadline`, which is kept in nanoseconds to fit an atomic.
    epoch: Instant,
    left: AtomicI64,
    deadline: AtomicU64,
    /// The error of the budget that ran out during this run, once one did.
    stop: Mutex<Option<String>>,
}

/// What a phase has left of its budgets; a suspended phase carries it to its resume.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Left {
    instructions: i64,
    time: Duration,
}

impl Budget {
    /// Installs the checking hook on a worker state (for the coroutines created afterwards), or
    /// nothing when neither budget is set.
    pub(crate) fn install(lua: &Lua, instructions: u64, time: Duration) -> mlua::Result<Option<Arc<Budget>>> {
        if instructions == 0 && time.is_zero() {
            return Ok(None);
        }
        let instructions = i64::try_from(instructions).unwrap_or(i64::MAX);
        let budget = Arc::new(Budget {
            instructions,
            time,
            epoch: Instant::now(),
            left: AtomicI64::new(instructions),
            deadline: AtomicU64::new(NO_DEADLINE),
            stop: Mutex::new(None),
        });
        let step = match instructions {
            0 => CHECK_EVERY,
            limit => CHECK_EVERY.min(u32::try_from(limit).unwrap_or(u32::MAX)),
        };
        // While a count hook is set, LuaJIT's compiled loops (LUAJIT_ENABLE_CHECKHOOK) leave
        // their trace at every iteration: 100x slower than compiled code and 10x slower than
        // the interpreter under the same hook. Budgeted workers run LuaJIT as an interpreter.
        if cfg!(feature = "luajit") {
            lua.load("jit.off()").set_name("=[luaengine limits]").exec()?;
        }
        let checker = budget.clone();
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(step), move |_lua, debug| {
            let Some(spent) = checker.spent(step) else {
                return Ok(VmState::Continue);
            };
            let source = debug.source();
            let chunk = source.short_src.as_deref().unwrap_or("?");
            let line = debug.current_line().unwrap_or(0);
            let message = format!("{chunk}:{line}: {spent} exceeded");
            let error = Error::from_lua_message(ErrorCode::Budget, &message);
            checker.stop.lock().get_or_insert(message);
            Err(error.into())
        })?;
        Ok(Some(budget))
    }

    /// Counts `step` instructions and reads the clock; names the budget that ran out, if one did.
    fn spent(&self, step: u32) -> Option<String> {
        let step = i64::from(step);
        if self.instructions > 0 && self.left.fetch_sub(step, Ordering::Relaxed) <= step {
            return Some(format!("instruction budget of {}", self.instructions));
        }
        if !self.time.is_zero() && self.now() > self.deadline.load(Ordering::Relaxed) {
            return Some(format!("time budget of {:?}", self.time));
        }
        None
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(NO_DEADLINE)
    }

    /// The budgets of a phase that starts now.
    pub(crate) fn full(&self) -> Left {
        Left { instructions: self.instructions, time: self.time }
    }

    /// Arms the checks for a run or a resume with what the phase has left.
    pub(crate) fn arm(&self, left: Left) {
        self.left.store(left.instructions, Ordering::Relaxed);
        let deadline = match u64::try_from(left.time.as_nanos()) {
            Ok(time) if !self.time.is_zero() => self.now().saturating_add(time),
            _ => NO_DEADLINE,
        };
        self.deadline.store(deadline, Ordering::Relaxed);
        *self.stop.lock() = None;
    }

    /// Stops timing once the run or resume is over, returning what the phase has left.
    pub(crate) fn disarm(&self) -> Left {
        let time = match self.deadline.swap(NO_DEADLINE, Ordering::Relaxed) {
            NO_DEADLINE => Duration::ZERO,
            deadline => Duration::from_nanos(deadline.saturating_sub(self.now())),
        };
        Left { instructions: self.left.load(Ordering::Relaxed), time }
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.stop.lock().is_some()
    }

    /// The error of the first check that failed in this run, if one did.
    pub(crate) fn stopped(&self) -> Option<String> {
        self.stop.lock().clone()
    }
}

/// Caps a worker's Lua heap; an allocation past it fails the running script with a memory error.
pub(crate) fn cap_memory(lua: &Lua, bytes: usize) -> mlua::Result<()> {
    if bytes > 0 {
        lua.set_memory_limit(bytes)?;
    }
    Ok(())
}
