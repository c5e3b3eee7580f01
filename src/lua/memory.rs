//! The per-worker memory cap, at no cost to scripts.
//!
//! mlua's own limit makes every mlua call that may allocate run protected (a C closure and a
//! `lua_pcall` each): 2.4× the instructions of a request that builds a few tables through the
//! API, measured. So mlua runs without a limit, and this allocator, wrapped around mlua's,
//! enforces the cap instead:
//! - Growth past the cap during a phase run stops the script at its next VM instruction, like
//!   the time budget (`Interrupt`), with a memory error. Allocations never fail for it, so no
//!   mlua call that assumes they cannot ever sees one fail.
//! - An allocation that could never fit (larger than the cap alone), or that would take the
//!   state past twice the cap, fails outright: only the VM and the string library make such
//!   allocations, and they raise Lua's memory error, which is safe where they run.
//! - Outside runs (init, the engine's own Lua calls), growth only counts; the next run finds
//!   the state over its cap (`over`).

use std::ffi::c_void;
use std::sync::Arc;

use mlua::ffi::{self, lua_Alloc, lua_State};
use mlua::Lua;

use crate::error::ErrorCode;
use crate::lua::interrupt::Interrupt;

/// A worker state's memory cap. Must be `restore`d before the state closes (the worker's
/// state does it when it drops).
pub(crate) struct MemoryCap {
    vm: *mut lua_State,
    state: Box<CapState>,
}

struct CapState {
    /// mlua's allocator and its data: every call goes on to it.
    inner: lua_Alloc,
    inner_data: *mut c_void,
    cap: usize,
    used: usize,
    interrupt: Arc<Interrupt>,
    reason: String,
}

// SAFETY: used only by the thread holding the worker's lock (the allocator runs there, as does
// everything that reads `used`).
unsafe impl Send for MemoryCap {}
unsafe impl Sync for MemoryCap {}

impl MemoryCap {
    /// Caps `lua`'s heap at `cap` bytes; `None` for no cap.
    pub(crate) fn install(lua: &Lua, cap: usize, interrupt: Arc<Interrupt>) -> mlua::Result<Option<MemoryCap>> {
        if cap == 0 {
            return Ok(None);
        }
        let used = lua.used_memory();
        let mut cap = MemoryCap {
            vm: std::ptr::null_mut(),
            state: Box::new(CapState {
                inner: allocate,
                inner_data: std::ptr::null_mut(),
                cap,
                used,
                interrupt,
                reason: format!("memory limit of {cap} bytes exceeded"),
            }),
        };
        let data = &mut *cap.state as *mut CapState as *mut c_void;
        let (mut vm, mut inner, mut inner_data) = (std::ptr::null_mut(), None, std::ptr::null_mut());
        // SAFETY: the allocator is swapped while no Lua code runs; `state` is boxed, so its
        // address holds until `restore`.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                vm = state;
                inner = Some(ffi::lua_getallocf(state, &mut inner_data));
                ffi::lua_setallocf(state, allocate, data);
            })?;
        }
        cap.vm = vm;
        cap.state.inner = inner.expect("exec_raw ran");
        cap.state.inner_data = inner_data;
        Ok(Some(cap))
    }

    /// Whether the state holds more than its cap.
    pub(crate) fn over(&self) -> bool {
        self.state.used > self.state.cap
    }

    /// Bytes the state holds.
    pub(crate) fn used(&self) -> usize {
        self.state.used
    }

    /// Gives the state its own allocator back, before it closes.
    pub(crate) fn restore(&mut self) {
        // SAFETY: the state is alive (its owner calls this before dropping it) and runs no code.
        unsafe { ffi::lua_setallocf(self.vm, self.state.inner, self.state.inner_data) };
    }
}

/// `lua_Alloc` over mlua's allocator: counts, refuses what can never fit, and stops a run that
/// grows past the cap.
unsafe extern "C" fn allocate(data: *mut c_void, ptr: *mut c_void, old: usize, new: usize) -> *mut c_void {
    let state = &mut *(data as *mut CapState);
    // Lua passes a type tag, not a size, as `old` for a new block.
    let old = if ptr.is_null() { 0 } else { old };
    if new > old {
        let grown = state.used.saturating_add(new - old);
        if new > state.cap || grown > state.cap.saturating_mul(2) {
            return std::ptr::null_mut();
        }
        if grown > state.cap && state.interrupt.running() && !state.interrupt.stopping() {
            state.interrupt.fire(ErrorCode::Memory, &state.reason);
        }
    }
    let block = (state.inner)(state.inner_data, ptr, old, new);
    if new == 0 || !block.is_null() {
        state.used = state.used.saturating_sub(old) + new;
    }
    block
}
