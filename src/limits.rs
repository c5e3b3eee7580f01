//! The per-phase instruction budget and the per-worker memory cap (DESIGN.md §7).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use mlua::{HookTriggers, Lua, VmState};

use crate::error::{Error, ErrorCode};

/// How many instructions run between two budget checks: small enough to stop a runaway phase
/// promptly, large enough that the hook costs nothing measurable.
const CHECK_EVERY: u32 = 1000;

/// Instructions left to the phase running on one worker. The hook counts them down; once they
/// are gone every further check raises again, so a `pcall` cannot swallow the stop for long.
pub(crate) struct Budget {
    limit: i64,
    left: AtomicI64,
    exceeded: AtomicBool,
}

impl Budget {
    /// Installs the counting hook on a worker state (for the coroutines created afterwards).
    pub(crate) fn install(lua: &Lua, limit: u64) -> mlua::Result<Arc<Budget>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let budget = Arc::new(Budget { limit, left: AtomicI64::new(limit), exceeded: AtomicBool::new(false) });
        let step = CHECK_EVERY.min(u32::try_from(limit).unwrap_or(u32::MAX)).max(1);
        let counter = budget.clone();
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(step), move |_lua, debug| {
            if counter.left.fetch_sub(i64::from(step), Ordering::Relaxed) > i64::from(step) {
                return Ok(VmState::Continue);
            }
            counter.exceeded.store(true, Ordering::Relaxed);
            let source = debug.source();
            let chunk = source.short_src.as_deref().unwrap_or("?");
            let line = debug.current_line().unwrap_or(0);
            let message = format!("{chunk}:{line}: instruction budget of {} exceeded", counter.limit);
            Err(Error::from_lua_message(ErrorCode::Budget, &message).into())
        })?;
        Ok(budget)
    }

    /// The budget of a phase that starts now.
    pub(crate) fn full(&self) -> i64 {
        self.limit
    }

    /// Arms the counter for a run or a resume with what the phase has left.
    pub(crate) fn arm(&self, left: i64) {
        self.left.store(left, Ordering::Relaxed);
        self.exceeded.store(false, Ordering::Relaxed);
    }

    pub(crate) fn left(&self) -> i64 {
        self.left.load(Ordering::Relaxed)
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }
}

/// Caps a worker's Lua heap; an allocation past it fails the running script with a memory error.
pub(crate) fn cap_memory(lua: &Lua, bytes: usize) -> mlua::Result<()> {
    if bytes > 0 {
        lua.set_memory_limit(bytes)?;
    }
    Ok(())
}
