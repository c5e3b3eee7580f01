//! Stopping a running script from another thread, at no cost while nothing is stopped.
//!
//! A count hook set for good would cost every script: Lua 5.4 then traps on every instruction
//! (2.3× slower measured on a CPU-bound loop) and LuaJIT must leave its compiled code. Instead
//! no hook is set while scripts run, and the engine's watchdog thread sets one, with a count of
//! one instruction, on the state that runs away, the way `lua.c` and `luajit.c` stop a script on
//! Ctrl-C from their signal handler. The hook raises the stop at the next VM instruction, and
//! again at every instruction after, so `pcall` cannot swallow it.
//!
//! Where the hook goes differs by backend. LuaJIT's hooks are global to the VM: one call covers
//! every coroutine, and the worker clears it when the run is over. Lua 5.4's hooks belong to
//! one coroutine: the worker tells us which coroutines are running (the phase's, and the user
//! coroutines it resumed, nested: `track_enter`/`track_leave` around `coroutine.resume`), and the
//! hook goes on each. Every one of them is alive while tracked (each is on its resumer's stack),
//! and the lock held while hooking keeps it so. A hook found on a coroutine after its run is over
//! removes itself.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mlua::ffi::{self, lua_Debug, lua_State};
use mlua::{Function, Lua};
use parking_lot::Mutex;

use crate::error::ErrorCode;

/// The registry key of a state's `Interrupt` (its address is the key).
static REGISTRY_KEY: u8 = 0;

/// Coroutines tracked at once; deeper nesting (Lua's C stack allows about 200) still counts
/// depth, and the outer ones hooked stop it all the same.
const TRACKED: usize = 64;

/// A worker state's interrupt: set from any thread, raised in the state at its next instruction.
pub(crate) struct Interrupt {
    /// A state of the worker's VM; LuaJIT's hook set on it covers all its coroutines.
    vm: *mut lua_State,
    /// A count hook of the engine's own (the instruction budget) is installed and polls
    /// `stopping`: then no hook is set here, which would replace it.
    polled: bool,
    stopping: AtomicBool,
    /// A phase run is in progress (between `begin` and `end`).
    running: AtomicBool,
    inner: Mutex<Inner>,
}

struct Inner {
    /// What the stop is (`Budget` or `Memory`), and what its error says after `chunk:line: `.
    code: ErrorCode,
    reason: String,
    /// The message raised, once the hook composed it.
    message: Option<String>,
    /// Lua 5.4: the coroutines running now, outermost first.
    running: [*mut lua_State; TRACKED],
    depth: usize,
}

// SAFETY: the raw states are only used under `inner`'s lock, and only through `lua_sethook`,
// which Lua documents as safe to call asynchronously (its interpreters call it from a signal
// handler); tracked states are alive while tracked (see the module's comment).
unsafe impl Send for Interrupt {}
unsafe impl Sync for Interrupt {}

impl Interrupt {
    /// Creates the interrupt of `lua`'s state. `lua` must keep it alive as long as it runs code
    /// (the worker holds both and drops the state first). With `polled`, the engine's own count
    /// hook checks `stopping()` and raises.
    pub(crate) fn install(lua: &Lua, polled: bool) -> mlua::Result<Arc<Interrupt>> {
        let mut interrupt = Arc::new(Interrupt {
            vm: std::ptr::null_mut(),
            polled,
            stopping: AtomicBool::new(false),
            running: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                code: ErrorCode::Budget,
                reason: String::new(),
                message: None,
                running: [std::ptr::null_mut(); TRACKED],
                depth: 0,
            }),
        });
        let address = Arc::as_ptr(&interrupt) as *mut c_void;
        let mut vm = std::ptr::null_mut();
        // SAFETY: exec_raw hands us the state with room on its stack for two values.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                vm = state;
                ffi::lua_pushlightuserdata(state, address);
                ffi::lua_rawsetp(state, ffi::LUA_REGISTRYINDEX, &REGISTRY_KEY as *const u8 as *const c_void);
            })?;
        }
        Arc::get_mut(&mut interrupt).expect("not shared yet").vm = vm;
        Ok(interrupt)
    }

    /// `coroutine.resume`'s companions on Lua 5.4, for the prelude: `track_enter(co)` before
    /// resuming `co`, `track_leave(...)` around what the resume returned (it returns it all).
    /// Each tracked coroutine is also kept in a Lua table until `track_leave` (or, when an error
    /// unwinds past it, until its slot is reused), so a freed coroutine is never tracked.
    pub(crate) fn tracking_functions(self: &Arc<Self>, lua: &Lua) -> mlua::Result<Option<(Function, Function)>> {
        if cfg!(feature = "luajit") {
            return Ok(None);
        }
        let address = Arc::as_ptr(self) as *mut c_void;
        // SAFETY: exec_raw hands us the state with room for three values; both closures follow
        // the Lua C API's rules (see each) and this interrupt outlives the state's code.
        unsafe {
            lua.exec_raw::<(Function, Function)>((), |state| {
                ffi::lua_createtable(state, TRACKED as c_int, 0);
                ffi::lua_pushlightuserdata(state, address);
                ffi::lua_pushvalue(state, -2);
                ffi::lua_pushcclosure(state, track_enter, 2);
                ffi::lua_pushlightuserdata(state, address);
                ffi::lua_pushvalue(state, -3);
                ffi::lua_pushcclosure(state, track_leave, 2);
                ffi::lua_remove(state, -3);
            })
            .map(Some)
        }
    }

    /// Starts a run on `thread`, the phase's coroutine, as the only one tracked.
    pub(crate) fn begin(&self, thread: *mut lua_State) {
        self.running.store(true, Ordering::Release);
        if cfg!(feature = "luajit") {
            return;
        }
        let mut inner = self.inner.lock();
        inner.running[0] = thread;
        inner.depth = 1;
    }

    /// Stops the running script at its next instruction with `chunk:line: {reason}`, an error
    /// of `code`. Called again while the stop is pending, hooks the coroutines running by then
    /// (Lua 5.4).
    pub(crate) fn fire(&self, code: ErrorCode, reason: &str) {
        let mut inner = self.inner.lock();
        if !self.stopping.swap(true, Ordering::AcqRel) {
            inner.code = code;
            inner.reason.clear();
            inner.reason.push_str(reason);
            inner.message = None;
        }
        if self.polled {
            return;
        }
        let hook = Some(stop_hook as ffi::lua_Hook);
        if cfg!(feature = "luajit") {
            // SAFETY: the VM outlives this interrupt's use (see `install`); lua_sethook is
            // async-safe.
            unsafe { ffi::lua_sethook(self.vm, hook, ffi::LUA_MASKCOUNT, 1) };
            return;
        }
        let depth = inner.depth.min(TRACKED);
        for &state in &inner.running[..depth] {
            // SAFETY: tracked coroutines are alive while tracked, and the lock is held.
            unsafe { ffi::lua_sethook(state, hook, ffi::LUA_MASKCOUNT, 1) };
        }
    }

    /// Whether a stop is pending; the engine's own count hook polls it.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The reason of the pending stop.
    pub(crate) fn reason(&self) -> String {
        self.inner.lock().reason.clone()
    }

    /// Whether a phase run is in progress.
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Ends the run on the worker's own thread (no Lua code runs): clears the stop and its hook,
    /// and returns the stop's code and the message raised, if the run was stopped.
    pub(crate) fn end(&self) -> Option<(ErrorCode, String)> {
        self.running.store(false, Ordering::Release);
        if !self.stopping.swap(false, Ordering::AcqRel) {
            return None;
        }
        let mut inner = self.inner.lock();
        inner.depth = 0;
        if cfg!(feature = "luajit") && !self.polled {
            // SAFETY: on the worker's thread, with no Lua code running.
            unsafe { ffi::lua_sethook(self.vm, None, 0, 0) };
        }
        let reason = std::mem::take(&mut inner.reason);
        let message = inner.message.take().unwrap_or_else(|| format!("?: {reason}"));
        Some((inner.code, message))
    }

    /// Composes the message raised at `chunk:line`, once per stop; returns it for the hook.
    fn message(&self, chunk: &CStr, line: c_int) -> (*const c_char, usize) {
        let mut inner = self.inner.lock();
        if inner.message.is_none() {
            let message = format!("{}:{line}: {}", chunk.to_string_lossy(), inner.reason);
            inner.message = Some(message);
        }
        let message = inner.message.as_deref().unwrap_or_default();
        // The string stays where it is until `end`, after the error has been raised and caught.
        (message.as_ptr() as *const c_char, message.len())
    }

    /// The depth a coroutine resumed now will have (its anchor slot is this + 1).
    fn depth(&self) -> usize {
        self.inner.lock().depth
    }

    fn push(&self, thread: *mut lua_State) {
        let mut inner = self.inner.lock();
        let depth = inner.depth;
        if depth < TRACKED {
            inner.running[depth] = thread;
        }
        inner.depth = depth + 1;
    }

    /// Returns the depth left, whose anchor slot (+ 1) is free again.
    fn pop(&self) -> usize {
        let mut inner = self.inner.lock();
        inner.depth = inner.depth.saturating_sub(1);
        inner.depth
    }
}

/// The state's interrupt, from the registry; null in a state without one.
///
/// # Safety
/// `state` is a running Lua state with a free stack slot (hooks and C functions have 20).
unsafe fn lookup(state: *mut lua_State) -> *const Interrupt {
    ffi::lua_rawgetp(state, ffi::LUA_REGISTRYINDEX, &REGISTRY_KEY as *const u8 as *const c_void);
    let interrupt = ffi::lua_touserdata(state, -1) as *const Interrupt;
    ffi::lua_pop(state, 1);
    interrupt
}

/// Raises the pending stop, or removes itself from a coroutine whose run is over.
unsafe extern "C-unwind" fn stop_hook(state: *mut lua_State, debug: *mut lua_Debug) {
    let interrupt = lookup(state);
    if interrupt.is_null() || !(*interrupt).stopping() {
        ffi::lua_sethook(state, None, 0, 0);
        return;
    }
    ffi::lua_getinfo(state, c"Sl".as_ptr(), debug);
    let (mut source, mut line) = ((*debug).short_src, (*debug).currentline);
    // The script's line rather than the engine's glue it may be in (a coroutine wrapper).
    let mut frame: lua_Debug = std::mem::zeroed();
    let mut level = 0;
    while engine_chunk(&source, line) && ffi::lua_getstack(state, level, &mut frame) != 0 {
        ffi::lua_getinfo(state, c"Sl".as_ptr(), &mut frame);
        if !engine_chunk(&frame.short_src, frame.currentline) {
            (source, line) = (frame.short_src, frame.currentline);
        }
        level += 1;
    }
    let chunk = CStr::from_ptr(source.as_ptr());
    // No Rust value with a destructor is alive past this statement: lua_error longjmps.
    let (message, len) =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (*interrupt).message(chunk, line))) {
            Ok(message) => message,
            Err(_) => (c"budget exceeded".as_ptr(), "budget exceeded".len()),
        };
    ffi::lua_pushlstring(state, message, len);
    ffi::lua_error(state);
}

/// Whether a frame runs the engine's own Lua (`[luaengine prelude]`) or a C function.
fn engine_chunk(source: &[c_char], line: c_int) -> bool {
    line < 0 || source.iter().take(10).map(|&c| c as u8).eq(b"[luaengine".iter().copied())
}

/// `track_enter(co)`: coroutine `co` is about to be resumed by the running one. Upvalues: the
/// interrupt, and the table anchoring tracked coroutines (`TRACKED` array slots, preallocated:
/// storing into them allocates nothing, so nothing here can raise).
unsafe extern "C-unwind" fn track_enter(state: *mut lua_State) -> c_int {
    let interrupt = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)) as *const Interrupt;
    let thread = ffi::lua_tothread(state, 1);
    if thread.is_null() {
        return 0;
    }
    let depth = (*interrupt).depth();
    if depth < TRACKED {
        ffi::lua_pushvalue(state, 1);
        ffi::lua_rawseti(state, ffi::lua_upvalueindex(2), (depth + 1) as _);
    }
    (*interrupt).push(thread);
    0
}

/// `track_leave(...)`: the resume is over; returns its arguments. Upvalues as `track_enter`'s.
unsafe extern "C-unwind" fn track_leave(state: *mut lua_State) -> c_int {
    let interrupt = ffi::lua_touserdata(state, ffi::lua_upvalueindex(1)) as *const Interrupt;
    let depth = (*interrupt).pop();
    let results = ffi::lua_gettop(state);
    if depth < TRACKED && ffi::lua_checkstack(state, 1) != 0 {
        ffi::lua_pushnil(state);
        ffi::lua_rawseti(state, ffi::lua_upvalueindex(2), (depth + 1) as _);
    }
    results
}
