//! A worker: one Lua state behind its own lock, its pool of coroutines and the functions it
//! loaded from shared bytecode. Requests bound to a worker run their phases on pooled
//! coroutines here; a waiting request holds its coroutine but not the lock.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use mlua::chunk::ChunkMode;
use mlua::{Function, IntoLuaMulti, Lua, Table, Thread, Value};
use parking_lot::{Mutex, ReentrantMutex};
use rustc_hash::FxHashMap;

use crate::api::{self, CurrentRequest};
use crate::cache::{Bytecode, CodeCache};
use crate::config::EngineConfig;
use crate::engine::Shared;
use crate::error::{Error, ErrorCode, Result};
use crate::limits::{Budget, Left, RunClock, Watchdog};
use crate::log::{LogLevel, LogRecord, Logger};
use crate::lua::interrupt::Interrupt;
use crate::lua::memory::MemoryCap;
use crate::phase::{exit_outcome, ExitOutcome, Phase, Status};
use crate::request::{RequestState, Suspended};
use crate::sandbox;
use crate::shdict::SharedDict;
use crate::timer::Timers;
use crate::wait::Event;

/// Counters a worker publishes without taking its lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Idle coroutines kept for reuse.
    pub pooled_coroutines: usize,
    /// Bytes of Lua memory (read when the worker was last free).
    pub lua_memory: usize,
    /// Bytecode versions this worker turned into functions.
    pub functions_loaded: u64,
    /// Timers of this worker waiting to expire (`ngx.timer.pending_count()`).
    pub pending_timers: usize,
    /// Timer callbacks of this worker running, waiting ones included (`ngx.timer.running_count()`).
    pub running_timers: usize,
    /// Times this worker's Lua state was built anew because three runs in a row failed for
    /// memory, each after a full collection (see `Worker::rebuild`).
    pub rebuilds: u64,
}

pub(crate) struct Worker {
    pub index: usize,
    /// The state, replaced whole when it is rebuilt; borrowed mutably only then.
    lua: ReentrantMutex<RefCell<WorkerLua>>,
    pooled: AtomicUsize,
    memory: AtomicUsize,
    /// Functions loaded, over every state this worker had.
    functions_loaded: Arc<AtomicU64>,
    /// What building a state takes, kept to build it again.
    build: Build,
    /// Runs kept failing for memory, each after a full collection: the next run starts on a
    /// new state.
    stuck: AtomicBool,
    rebuilds: AtomicU64,
    /// Timers with a lower id belong to a state that was discarded: their callbacks are gone.
    timer_floor: AtomicU64,
}

/// Everything a worker's state is built from.
struct Build {
    config: EngineConfig,
    cache: Arc<CodeCache>,
    logger: Logger,
    dicts: Vec<Arc<SharedDict>>,
    timers: Timers,
    exiting: Arc<AtomicBool>,
    watchdog: Arc<Watchdog>,
}

struct WorkerLua {
    lua: Lua,
    /// Which of the worker's states this is (0 for the first): requests that hold Lua values
    /// of an earlier one cannot go on.
    generation: u64,
    /// Functions loaded in this state (shared with `require`); used under the lock.
    functions: FunctionCache,
    run_chunk: Function,
    current: CurrentRequest,
    /// Metatable of every request's globals: reads fall through to the base environment.
    env_mt: Table,
    /// The base environment: the globals of init and init_worker.
    base: Table,
    /// Timer callbacks and their arguments by timer id, and the chunk that runs one.
    timer_entries: Table,
    timer_chunk: Function,
    pool: RefCell<Vec<Thread>>,
    pool_max: usize,
    /// Set while a script runs, so a host callback re-entering this worker gets an error
    /// instead of a deadlock.
    running: Cell<bool>,
    /// A run failed for want of memory: the next run first collects what the failed request
    /// held (its ngx.ctx, its globals), freed only with the request, after the failure.
    collect_first: Cell<bool>,
    /// Runs in a row that failed for memory (`Worker::count_memory_failure`).
    memory_failures: Cell<u32>,
    memory_cap: Option<MemoryCap>,
    limits: Arc<RunClock>,
    clock: api::time::Clock,
    default_type: Arc<str>,
}

/// Runs in a row failing for memory, each after a full collection, that make a worker rebuild
/// its state.
const STUCK_AFTER: u32 = 3;

/// A function loaded from bytecode, forgotten once the bytecode is gone.
type LoadedFunction = (Weak<Bytecode>, Function);

/// Functions this worker loaded, by bytecode id; shared with `require`'s loader.
#[derive(Clone, Default)]
pub(crate) struct FunctionCache {
    functions: Arc<Mutex<FxHashMap<u64, LoadedFunction>>>,
    loaded: Arc<AtomicU64>,
}

impl FunctionCache {
    /// The worker's function for `bytecode`, loading it on first use.
    pub(crate) fn get(&self, lua: &Lua, bytecode: &Arc<Bytecode>) -> mlua::Result<Function> {
        if let Some((_, function)) = self.functions.lock().get(&bytecode.id) {
            return Ok(function.clone());
        }
        // Loaded without the lock held: a finalizer running during the load may `require`.
        // Our own bytecode, produced by the code cache: the one place binary chunks are loaded.
        let function = lua
            .load(bytecode.code.as_slice())
            .set_name(bytecode.chunk_name.as_str())
            .set_mode(ChunkMode::Binary)
            .into_function()?;
        let mut functions = self.functions.lock();
        if functions.len() >= 64 && functions.len().is_power_of_two() {
            functions.retain(|_, (weak, _)| weak.strong_count() > 0);
        }
        functions.insert(bytecode.id, (Arc::downgrade(bytecode), function.clone()));
        self.loaded.fetch_add(1, Ordering::Relaxed);
        Ok(function)
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        config: &EngineConfig,
        cache: Arc<CodeCache>,
        logger: Logger,
        dicts: &[Arc<SharedDict>],
        timers: &Timers,
        exiting: &Arc<AtomicBool>,
        watchdog: &Arc<Watchdog>,
    ) -> Result<Worker> {
        let build = Build {
            config: config.clone(),
            cache,
            logger,
            dicts: dicts.to_vec(),
            timers: timers.clone(),
            exiting: exiting.clone(),
            watchdog: watchdog.clone(),
        };
        let functions_loaded = Arc::new(AtomicU64::new(0));
        let state = WorkerLua::new(index, &build, &functions_loaded, 0)?;
        Ok(Worker {
            index,
            memory: AtomicUsize::new(state.lua.used_memory()),
            lua: ReentrantMutex::new(RefCell::new(state)),
            pooled: AtomicUsize::new(0),
            functions_loaded,
            build,
            stuck: AtomicBool::new(false),
            rebuilds: AtomicU64::new(0),
            timer_floor: AtomicU64::new(0),
        })
    }

    /// Builds the worker's state anew when its runs kept failing for memory, then runs init and init_worker there (`init`, compiled by the engine). Requests
    /// and timer callbacks holding Lua values of the old state fail when they go on; pending
    /// timers of the old state are dropped when they expire, as their callbacks are gone.
    fn rebuild(&self, shared: &Shared, guard: &RefCell<WorkerLua>) {
        if !self.stuck.load(Ordering::Acquire) {
            return;
        }
        // Only at the outermost entry into the worker: nothing else borrows the state then.
        let Ok(mut state) = guard.try_borrow_mut() else { return };
        self.stuck.store(false, Ordering::Release);
        let generation = state.generation + 1;
        let fresh = match WorkerLua::new(self.index, &self.build, &self.functions_loaded, generation) {
            Ok(fresh) => fresh,
            Err(error) => {
                let message = format!("worker {}: cannot rebuild its Lua state: {}", self.index, error.summary());
                return shared.logger.log_engine(LogLevel::Alert, &message);
            }
        };
        self.timer_floor.store(self.build.timers.reserve_id(), Ordering::Release);
        // The old state goes now; values requests still hold of it become inert.
        *state = fresh;
        drop(state);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        let message = format!(
            "worker {}: Lua state rebuilt: {STUCK_AFTER} runs in a row failed for memory, each after a full collection (cap {} bytes)",
            self.index, self.build.config.memory_limit
        );
        shared.logger.log_engine(LogLevel::Alert, &message);
        for (phase, script) in shared.init_scripts() {
            if let Err(error) = self.run_init(shared, *phase, script.current()) {
                let message =
                    format!("worker {}: {} failed on the rebuilt state: {}", self.index, phase.name(), error.summary());
                shared.logger.log_engine(LogLevel::Alert, &message);
            }
        }
    }

    /// A state over its cap (grown outside any run: init, the engine's own calls) runs nothing
    /// until a collection brings it back under; one that stays over is rebuilt.
    fn check_memory(&self, w: &WorkerLua) -> Result<()> {
        let Some(cap) = &w.memory_cap else { return Ok(()) };
        if !cap.over() {
            return Ok(());
        }
        let _ = w.lua.gc_collect();
        if !cap.over() {
            return Ok(());
        }
        self.count_memory_failure(w);
        Err(Error::new(ErrorCode::Memory, format!("the worker's Lua state holds {} bytes, over its cap", cap.used())))
    }

    /// A run failed for memory after a full collection. A state whose runs keep failing so holds
    /// what it cannot free (a module cache that keeps growing, leaked values): rebuild it. One
    /// failure proves nothing: the failed request itself may hold the memory until it is freed.
    fn count_memory_failure(&self, w: &WorkerLua) {
        let failures = w.memory_failures.get() + 1;
        w.memory_failures.set(failures);
        if failures >= STUCK_AFTER {
            self.stuck.store(true, Ordering::Release);
        }
    }

    /// Whether timer `id` was started in a state this worker since discarded.
    pub(crate) fn timer_discarded(&self, id: u64) -> bool {
        id < self.timer_floor.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> WorkerStats {
        // Lua memory is read when the worker is free; a busy worker reports its last reading.
        if let Some(guard) = self.lua.try_lock() {
            if let Ok(state) = guard.try_borrow() {
                self.memory.store(state.lua.used_memory(), Ordering::Relaxed);
            }
        }
        WorkerStats {
            pooled_coroutines: self.pooled.load(Ordering::Relaxed),
            lua_memory: self.memory.load(Ordering::Relaxed),
            functions_loaded: self.functions_loaded.load(Ordering::Relaxed),
            pending_timers: 0,
            running_timers: 0,
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
        }
    }

    /// Starts `phase` of a request with `bytecode`. The request state comes back in every case.
    pub(crate) fn run(
        &self,
        shared: &Shared,
        state: Box<RequestState>,
        phase: Phase,
        bytecode: Arc<Bytecode>,
    ) -> (Box<RequestState>, Result<Status>) {
        self.start(shared, state, phase, |w| Ok((w.functions.get(&w.lua, &bytecode)?, ())))
    }

    /// Runs init or init_worker with `bytecode`, its globals being the base environment.
    pub(crate) fn run_init(&self, shared: &Shared, phase: Phase, bytecode: Arc<Bytecode>) -> Result<()> {
        let mut state = RequestState::detached();
        let guard = self.lua.lock();
        let w = guard.borrow();
        state.env = Some(w.base.clone());
        state.generation = w.generation;
        drop(w);
        drop(guard);
        match self.run(shared, state, phase, bytecode).1? {
            Status::Yield => Err(Error::invalid_state(format!("{} yielded; it cannot wait", phase.name()))),
            _ => Ok(()),
        }
    }

    /// Runs the callback of timer `id` (forgetting it if this is its `last` run).
    pub(crate) fn run_timer(
        &self,
        shared: &Shared,
        state: Box<RequestState>,
        id: u64,
        premature: bool,
        last: bool,
    ) -> (Box<RequestState>, Result<Status>) {
        self.start(shared, state, Phase::Timer, |w| Ok((w.timer_chunk.clone(), (id, last, premature))))
    }

    /// Where the callback of timer `id` was defined (`chunk:line`) for a log line about a run
    /// that will not happen; forgets the callback if that was its `last` run.
    pub(crate) fn forget_timer(&self, id: u64, last: bool) -> String {
        let guard = self.lua.lock();
        let w = guard.borrow();
        let entries = &w.timer_entries;
        let defined_at = entries.raw_get::<Table>(id).and_then(|entry| entry.raw_get::<Function>("fn")).map(|f| {
            let info = f.info();
            format!("{}:{}", info.short_src.unwrap_or_default(), info.line_defined.unwrap_or(0))
        });
        if last {
            let _ = entries.raw_set(id, Value::Nil);
        }
        defined_at.unwrap_or_else(|_| "?".into())
    }

    /// Runs `prepare`'s function on a pooled coroutine as `run_chunk(function, env, fresh, args...)`.
    fn start<A: IntoLuaMulti>(
        &self,
        shared: &Shared,
        mut state: Box<RequestState>,
        phase: Phase,
        prepare: impl FnOnce(&WorkerLua) -> mlua::Result<(Function, A)>,
    ) -> (Box<RequestState>, Result<Status>) {
        let guard = self.lua.lock();
        self.rebuild(shared, &guard);
        let w = &*guard.borrow();
        if w.running.get() {
            return (state, Err(reentered()));
        }
        if let Err(error) = w.check_generation(&mut state) {
            return (state, Err(error));
        }
        w.collect_after_memory_error();
        if let Err(error) = self.check_memory(w) {
            return (state, Err(error));
        }
        let prepared = (|| {
            let (function, args) = prepare(w)?;
            let (env, fresh) = w.request_env(&mut state)?;
            Ok::<_, mlua::Error>((function, env, fresh, args, w.take_thread()?))
        })();
        let (function, env, fresh, args, thread) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                let error = Error::from_lua(&e);
                // Nobody else would hear of it: init fails the engine, but a timer has no caller.
                if phase == Phase::Timer {
                    log_failure(&shared.logger, &error, phase, state.id);
                }
                return (state, Err(error));
            }
        };
        let budget_left = w.limits.full();
        self.drive(w, shared, state, phase, thread, budget_left, (function, env, fresh, args))
    }

    /// Continues a suspended phase, handing it `event` (what its wait produced) if it waits.
    pub(crate) fn resume(
        &self,
        shared: &Shared,
        mut state: Box<RequestState>,
        event: Option<Event>,
    ) -> (Box<RequestState>, Result<Status>) {
        let guard = self.lua.lock();
        self.rebuild(shared, &guard);
        let w = &*guard.borrow();
        if w.running.get() {
            return (state, Err(reentered()));
        }
        if let Err(error) = w.check_generation(&mut state) {
            return (state, Err(error));
        }
        w.collect_after_memory_error();
        if let Err(error) = self.check_memory(w) {
            return (state, Err(error));
        }
        let Some(Suspended { phase, thread, budget_left, .. }) = state.suspended.take() else {
            return (state, Err(Error::invalid_state("the request is not suspended")));
        };
        let args = match event.map(|event| api::event_values(&w.lua, event)).transpose() {
            Ok(args) => args.unwrap_or_default(),
            Err(e) => return (state, Err(Error::from_lua(&e))),
        };
        self.drive(w, shared, state, phase, thread, budget_left, args)
    }

    /// Resumes the request's coroutine with the request installed as the current one, then
    /// turns what the coroutine did into a status.
    #[allow(clippy::too_many_arguments)]
    fn drive(
        &self,
        w: &WorkerLua,
        shared: &Shared,
        mut state: Box<RequestState>,
        phase: Phase,
        thread: Thread,
        budget_left: Left,
        args: impl mlua::IntoLuaMulti,
    ) -> (Box<RequestState>, Result<Status>) {
        state.phase = Some(phase);
        w.clock.mark_stale();
        if let Err(error) = w.limits.arm(&budget_left, thread.state()) {
            state.phase = None;
            return (state, Err(error));
        }
        let outcome = {
            let _running = RunningFlag::set(&w.running);
            w.current.replace(Some(state));
            let outcome = thread.resume::<(Value, Value)>(args);
            state = w.current.replace(None).expect("the running request stays installed");
            outcome
        };
        state.phase = None;
        shared.count_phase();
        let (budget_left, stopped) = w.limits.disarm();
        let result = match outcome {
            // `run_chunk` yields the signal alone when the script finished, ready for the next.
            Ok((first, Value::Nil)) if api::is_signal(&first) => {
                w.pool_ready(thread);
                Ok(finished(phase, &mut state, &w.default_type))
            }
            // (signal, "wait"): ngx.sleep, an async host call, a body read.
            Ok((first, kind)) if api::is_signal(&first) && api::is_wait(&kind) => {
                state.suspended = Some(Suspended { phase, thread, budget_left, waiting: true });
                Ok(Status::Yield)
            }
            // Engine yields: (signal, "exit") from ngx.exit and ngx.redirect.
            Ok((first, _)) if api::is_signal(&first) => {
                w.recycle(thread);
                exited(phase, &mut state, &w.default_type)
            }
            // Anything else is a plain yield of the entry coroutine: wait for resume.
            Ok(_) => {
                state.suspended = Some(Suspended { phase, thread, budget_left, waiting: false });
                Ok(Status::Yield)
            }
            // An errored coroutine is dropped, not pooled: on Lua 5.4 an error raised from a hook
            // (the budget) leaves the coroutine with hooks disabled for good.
            Err(lua_error) => {
                drop(thread);
                let mut error = Error::from_lua(&lua_error);
                // A spent budget is what failed the run, even when the error that got out is
                // another one (an xpcall handler stopped in turn: "error in error handling").
                if let Some((code, stop)) = stopped {
                    let traceback = error.traceback.take();
                    error = Error::from_lua_message(code, &stop);
                    error.traceback = traceback;
                }
                if error.code == ErrorCode::Memory {
                    // LuaJIT has no emergency collection: without a full one here its next cycle
                    // starts above the cap and every later run on this worker fails too.
                    let _ = w.lua.gc_collect();
                    w.collect_first.set(true);
                    self.count_memory_failure(w);
                }
                log_failure(&shared.logger, &error, phase, state.id);
                Err(error)
            }
        };
        match &result {
            Ok(_) => w.memory_failures.set(0),
            Err(_) => shared.count_error(),
        }
        self.pooled.store(w.pool.borrow().len(), Ordering::Relaxed);
        (state, result)
    }
}

impl WorkerLua {
    fn new(index: usize, build: &Build, functions_loaded: &Arc<AtomicU64>, generation: u64) -> Result<WorkerLua> {
        let config = &build.config;
        let lua_error = |e: mlua::Error| Error::new(ErrorCode::Internal, format!("worker {index}: {e}"));
        let lua = sandbox::new_lua(config.trusted).map_err(lua_error)?;
        let functions = FunctionCache { functions: Arc::default(), loaded: functions_loaded.clone() };
        let base = sandbox::base_env(&lua, config.trusted).map_err(lua_error)?;
        let interrupt = Interrupt::install(&lua, config.instruction_budget > 0).map_err(lua_error)?;
        let budget = Budget::install(&lua, config.instruction_budget, interrupt.clone()).map_err(lua_error)?;
        let limits = RunClock::new(&build.watchdog, interrupt.clone(), budget.clone(), config.time_budget);
        let default_type: Arc<str> = Arc::from(config.default_type.as_str());
        let setup = api::Setup {
            cache: build.cache.clone(),
            logger: build.logger.clone(),
            package_path: &config.package_path,
            trusted: config.trusted,
            budget,
            interrupt: interrupt.clone(),
            functions: functions.clone(),
            host_functions: &config.host_functions,
            async_functions: &config.async_functions,
            dicts: &build.dicts,
            variables: config.variables.clone(),
            default_type: default_type.clone(),
            memory_limit: config.memory_limit,
            worker: (index, config.worker_count()),
            exiting: build.exiting.clone(),
            timers: build.timers.clone(),
        };
        let installed = api::install(&lua, &base, setup).map_err(lua_error)?;
        let env_mt = lua.create_table().map_err(lua_error)?;
        env_mt.raw_set("__index", &base).map_err(lua_error)?;
        env_mt.raw_set("__metatable", false).map_err(lua_error)?;
        // Building the API (the prelude's compilation above all) leaves about a third of the
        // heap as garbage: a worker starts without it.
        lua.gc_collect().map_err(lua_error)?;
        let memory_cap = MemoryCap::install(&lua, config.memory_limit, interrupt).map_err(lua_error)?;
        Ok(WorkerLua {
            lua,
            generation,
            functions,
            run_chunk: installed.run_chunk,
            current: installed.current,
            env_mt,
            base,
            timer_entries: installed.timer_entries,
            timer_chunk: installed.timer_chunk,
            pool: RefCell::new(Vec::new()),
            pool_max: config.coroutine_pool,
            running: Cell::new(false),
            collect_first: Cell::new(false),
            memory_failures: Cell::new(0),
            memory_cap,
            limits,
            clock: installed.clock,
            default_type,
        })
    }

    /// Fails a request that holds Lua values of a state this worker discarded: they are gone.
    /// Its state is emptied of them, so the request can still be read and freed.
    fn check_generation(&self, state: &mut RequestState) -> Result<()> {
        if state.generation == self.generation || (state.env.is_none() && state.suspended.is_none()) {
            state.generation = self.generation;
            return Ok(());
        }
        state.env = None;
        state.ctx = None;
        state.threads = None;
        state.suspended = None;
        Err(Error::new(
            ErrorCode::Memory,
            "the worker's Lua state was rebuilt after it ran out of memory: this request's Lua values are gone",
        ))
    }

    /// The request's globals table, and whether it is new: run_chunk then sets its `_G`
    /// (cheaper in Lua than through the API).
    fn request_env(&self, state: &mut RequestState) -> mlua::Result<(Table, bool)> {
        if let Some(env) = &state.env {
            return Ok((env.clone(), false));
        }
        let env = self.lua.create_table_with_capacity(0, 1)?;
        env.set_metatable(Some(self.env_mt.clone()))?;
        state.env = Some(env.clone());
        Ok((env, true))
    }

    fn collect_after_memory_error(&self) {
        if self.collect_first.replace(false) {
            let _ = self.lua.gc_collect();
        }
    }

    fn take_thread(&self) -> mlua::Result<Thread> {
        match self.pool.borrow_mut().pop() {
            Some(thread) => Ok(thread),
            None => self.lua.create_thread(self.run_chunk.clone()),
        }
    }

    /// Pools a coroutine that finished its phase: it waits in `run_chunk` for the next one.
    fn pool_ready(&self, thread: Thread) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < self.pool_max {
            pool.push(thread);
        }
    }

    /// Pools a coroutine that ngx.exit left suspended inside the script when it can be reset
    /// (Lua 5.4 can; LuaJIT resets only finished coroutines, so there it is dropped).
    fn recycle(&self, thread: Thread) {
        if thread.reset(self.run_chunk.clone()).is_ok() {
            self.pool_ready(thread);
        }
    }
}

impl Drop for WorkerLua {
    fn drop(&mut self) {
        // The state closes after this, with its own allocator.
        if let Some(cap) = &mut self.memory_cap {
            cap.restore();
        }
    }
}

/// Clears the running flag even if a callback's panic unwinds through `drive`.
struct RunningFlag<'a>(&'a Cell<bool>);

impl<'a> RunningFlag<'a> {
    fn set(flag: &'a Cell<bool>) -> Self {
        flag.set(true);
        RunningFlag(flag)
    }
}

impl Drop for RunningFlag<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

fn reentered() -> Error {
    Error::invalid_state("this worker is already running a script on this thread (a callback re-entered the engine)")
}

/// The status of a phase whose script returned normally. Output in rewrite or access answers
/// the request, as in lua-nginx-module (headers sent there end the request); the end of content
/// sends the headers, as lua-nginx-module's last buffer does.
fn finished(phase: Phase, state: &mut RequestState, default_type: &str) -> Status {
    match phase {
        Phase::Content => {
            state.send_headers(default_type);
            Status::Done
        }
        Phase::Rewrite | Phase::Access if state.response.headers_sent => Status::Done,
        _ => Status::Ok,
    }
}

/// The status after `ngx.exit(code)` (or `ngx.redirect`) ended the phase. As in nginx, a 2xx
/// exit keeps a status the script set and sends the headers (but 204, like ≥ 300, is a special
/// response the host makes); a status ≥ 300 replaces it.
fn exited(phase: Phase, state: &mut RequestState, default_type: &str) -> Result<Status> {
    let code = state.response.exit_code.unwrap_or(0);
    match exit_outcome(phase, code) {
        ExitOutcome::Continue => Ok(finished(phase, state, default_type)),
        ExitOutcome::Finish => {
            let response = &mut state.response;
            if !response.headers_sent && (code >= 300 || (code >= 200 && response.status == 0)) {
                response.status = u16::try_from(code).unwrap_or(500);
            }
            if code == 0 || ((200..300).contains(&code) && code != 204) {
                state.send_headers(default_type);
            }
            Ok(Status::Done)
        }
        ExitOutcome::Abort => Err(Error::new(ErrorCode::Aborted, "the script called ngx.exit(ngx.ERROR)")),
    }
}

/// Logs a failed phase as nginx does ("lua entry thread aborted: runtime error: ...").
fn log_failure(logger: &Logger, error: &Error, phase: Phase, request_id: u64) {
    if error.code == ErrorCode::Aborted || !logger.enabled(LogLevel::Err) {
        return;
    }
    let location = match (&error.chunk, error.line) {
        (Some(chunk), Some(line)) => format!("{chunk}:{line}"),
        _ => String::new(),
    };
    let mut message = format!("lua entry thread aborted: {}", error.summary());
    if let Some(traceback) = &error.traceback {
        message.push('\n');
        message.push_str(traceback);
    }
    logger.log(&LogRecord {
        level: LogLevel::Err,
        phase: Some(phase),
        location: &location,
        message: &message,
        request_id,
    });
}
