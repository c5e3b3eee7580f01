//! Engine configuration, creation, stats and reload; the library version.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::error::{call, le_error, le_result};
use super::host::{host_functions, le_function};
use super::shdict::{dict_configs, le_dict_config};
use super::variable::{le_variable_fn, resolver};
use super::wait::{le_timer_op_fn, timer_ops};
use super::{
    handle, le_str, read_versioned, require_out, require_versioned, slice, versioned, write_out, write_versioned,
};
use crate::config::{EngineConfig, LuaSource, DEFAULT_TYPE};
use crate::engine::Engine;
use crate::error::Error;
use crate::log::{LogLevel, LogRecord, LogSink};

/// A log level, with nginx's numbers.
pub type le_log_level = u32;
pub const LE_LOG_STDERR: le_log_level = 0;
pub const LE_LOG_EMERG: le_log_level = 1;
pub const LE_LOG_ALERT: le_log_level = 2;
pub const LE_LOG_CRIT: le_log_level = 3;
pub const LE_LOG_ERR: le_log_level = 4;
pub const LE_LOG_WARN: le_log_level = 5;
pub const LE_LOG_NOTICE: le_log_level = 6;
pub const LE_LOG_INFO: le_log_level = 7;
pub const LE_LOG_DEBUG: le_log_level = 8;

/// One log line, valid only during the callback.
#[repr(C)]
pub struct le_log_record {
    pub level: le_log_level,
    /// The `le_phase` that logged, or -1 when no script was running.
    pub phase: i32,
    /// `chunk:line` of the Lua code that logged, or empty.
    pub location: le_str,
    pub message: le_str,
    /// The request that logged, or 0.
    pub request_id: u64,
}

/// Receives log records. Called on whatever thread runs the script, so it must be thread-safe,
/// and must not throw. From inside it, running or resuming a request on the same worker fails
/// with `LE_ERR_INVALID_STATE`; reading the logging request's id, and freeing it (released when
/// its phase returns), are allowed.
pub type le_log_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, record: *const le_log_record)>;

/// How to build an engine. Start from `le_config_default()` (or `le_config_init`) and change
/// fields. It carries its size: `le_engine_new` reads only the fields of the header the host
/// was built with, and gives the fields added since their defaults.
#[repr(C)]
pub struct le_config {
    /// `sizeof(le_config)` as the host was compiled, set by `le_config_init`.
    pub size: usize,
    /// Number of workers (Lua states); 0 means one per CPU.
    pub workers: u32,
    /// Give scripts the full standard library (io, os, debug, ffi, C modules). Default: sandbox.
    pub trusted: bool,
    /// `require` search templates such as `/srv/lua/?.lua`; `n_package_path` of them.
    /// Copied by `le_engine_new`.
    pub package_path: *const le_str,
    pub n_package_path: usize,
    /// Where log records go; NULL writes them to stderr.
    pub log: le_log_fn,
    /// Passed to `log`; the engine never frees it.
    pub log_user_data: *mut c_void,
    /// Records above this level (less severe) are dropped. Default `LE_LOG_DEBUG`.
    pub log_level: le_log_level,
    /// VM instructions one phase may execute before failing with `LE_ERR_BUDGET`; 0 = none
    /// (the default). A phase that yields keeps what it has left when it is resumed.
    pub instruction_budget: u64,
    /// Wall time one phase run may take, in milliseconds, before failing with
    /// `LE_ERR_BUDGET`; 0 = none. Default 5000: a runaway loop must not pin a worker. Time
    /// suspended in a yield does not count. Checked by a watchdog every 10 ms at no cost to
    /// scripts. With an instruction budget set, LuaJIT workers run interpreted (its hook makes
    /// compiled code far slower).
    pub time_budget_ms: u32,
    /// Lua memory cap per worker in bytes; 0 = none. Default 512 MiB: an allocation bomb fails
    /// its script instead of growing the host.
    pub memory_limit: usize,
    /// Idle coroutines each worker keeps for reuse. Default 1024.
    pub coroutine_pool: u32,
    /// How often file scripts check their file for changes, in milliseconds. Default 1000.
    pub file_check_interval_ms: u32,
    /// Host functions scripts call as `require("host").name(...)`; `n_functions` of them.
    /// Copied by `le_engine_new` (names included); their `user_data` must outlive the engine.
    pub functions: *const le_function,
    pub n_functions: usize,
    /// Names of async host functions: a script calling one yields (`LE_STATUS_YIELD`) with a
    /// pending operation (`le_request_pending`) that the host performs, completes
    /// (`le_request_complete`) and resumes. `n_async_functions` names, copied.
    pub async_functions: *const le_str,
    pub n_async_functions: usize,
    /// Shared dicts (`ngx.shared.<name>`); `n_shared_dicts` of them, copied by `le_engine_new`.
    pub shared_dicts: *const le_dict_config,
    pub n_shared_dicts: usize,
    /// nginx's `default_type`: the Content-Type a response gets when the engine sends its
    /// headers and no script set one. Default `text/plain`; empty adds none. Copied.
    pub default_type: le_str,
    /// Answers `ngx.var` names the engine does not know; NULL leaves them undefined.
    pub variable: le_variable_fn,
    /// Passed to `variable`; the engine never frees it.
    pub variable_user_data: *mut c_void,
    /// `init_by_lua`: Lua source run in every worker's state when the engine is built, before
    /// anything else (chunk name `init`). Its globals and `require`d modules are visible to
    /// every request (treat them as read-only). Empty for none. Copied.
    pub init: le_str,
    /// `init_by_lua_file`: a Lua file run instead of `init` (not both); empty for none.
    pub init_file: le_str,
    /// `init_worker_by_lua`: Lua source run once in each worker after `init` (chunk name
    /// `init_worker`), where timers are typically started. Empty for none. Copied.
    pub init_worker: le_str,
    /// `init_worker_by_lua_file`: a Lua file run instead of `init_worker`; empty for none.
    pub init_worker_file: le_str,
    /// `lua_max_pending_timers`, per worker. Default 1024.
    pub max_pending_timers: u32,
    /// `lua_max_running_timers`, per worker. Default 256.
    pub max_running_timers: u32,
    /// Receives the async host function calls of timer callbacks, which no request carries;
    /// NULL makes such calls fail in the callback.
    pub timer_op: le_timer_op_fn,
    /// Passed to `timer_op`; the engine never frees it.
    pub timer_op_user_data: *mut c_void,
}

versioned!(le_config, timer_op_user_data: *mut c_void);

/// An engine: workers, code cache and stats. Thread-safe: share one between host threads.
pub struct le_engine {
    pub(crate) engine: Engine,
}

/// Counters of an engine. It carries its size: set `size` to `sizeof(le_stats)` before
/// `le_engine_stats`, which writes only the fields that fit in it.
#[repr(C)]
#[derive(Default)]
pub struct le_stats {
    pub size: usize,
    /// Sources parsed and compiled.
    pub scripts_compiled: u64,
    /// Compiles answered from the code cache.
    pub cache_hits: u64,
    /// Compiles that had to parse.
    pub cache_misses: u64,
    /// Phase runs and resumes.
    pub phases_run: u64,
    /// Phase runs and resumes that failed.
    pub errors: u64,
    pub workers: u32,
}

versioned!(le_stats, workers: u32);

/// Counters of one worker. It carries its size: set `size` to `sizeof(le_worker_stats)`
/// before `le_engine_worker_stats`, which writes only the fields that fit in it.
#[repr(C)]
#[derive(Default)]
pub struct le_worker_stats {
    pub size: usize,
    /// Idle coroutines kept for reuse.
    pub pooled_coroutines: usize,
    /// Bytes of Lua memory after the worker's last phase run.
    pub lua_memory: usize,
    /// Script versions this worker loaded into functions.
    pub functions_loaded: u64,
    /// Timers of this worker waiting to expire.
    pub pending_timers: usize,
    /// Timer callbacks of this worker running now (those waiting included).
    pub running_timers: usize,
    /// Times the worker's Lua state was built anew because three runs in a row failed for
    /// memory, each after a full collection (init and init_worker ran again there).
    pub rebuilds: u64,
}

versioned!(le_worker_stats, running_timers: usize);

/// Sets `*config`, of `size` bytes (`sizeof(le_config)`), to the defaults: one worker per CPU,
/// sandboxed, stderr logging, a 5 s time budget per phase run and a 512 MiB Lua memory cap per
/// worker (set either to 0 to turn it off), no instruction budget. `le_config_default()`,
/// defined in this header, calls it with the size of the `le_config` it declares. Fails with
/// `LE_ERR_INVALID_ARGUMENT` for a NULL config or a size smaller than any `le_config`.
#[no_mangle]
pub extern "C" fn le_config_init(config: *mut le_config, size: usize) -> le_result {
    call(std::ptr::null_mut(), || unsafe { super::init_versioned(config, size, "config", config_defaults()) })
}

/// The defaults, for Rust code driving the C ABI (benchmarks, fuzz targets), as
/// `le_config_default()` gives them to C.
impl Default for le_config {
    fn default() -> le_config {
        config_defaults()
    }
}

/// The defaults, for le_config_init and for the fields a host's older `le_config` lacks.
fn config_defaults() -> le_config {
    let defaults = EngineConfig::default();
    le_config {
        size: std::mem::size_of::<le_config>(),
        workers: 0,
        trusted: false,
        package_path: std::ptr::null(),
        n_package_path: 0,
        log: None,
        log_user_data: std::ptr::null_mut(),
        log_level: defaults.log_level as le_log_level,
        instruction_budget: defaults.instruction_budget,
        time_budget_ms: u32::try_from(defaults.time_budget.as_millis()).unwrap_or(u32::MAX),
        memory_limit: defaults.memory_limit,
        coroutine_pool: u32::try_from(defaults.coroutine_pool).unwrap_or(u32::MAX),
        file_check_interval_ms: u32::try_from(defaults.file_check_interval.as_millis()).unwrap_or(u32::MAX),
        functions: std::ptr::null(),
        n_functions: 0,
        async_functions: std::ptr::null(),
        n_async_functions: 0,
        shared_dicts: std::ptr::null(),
        n_shared_dicts: 0,
        default_type: le_str::of(DEFAULT_TYPE.as_bytes()),
        variable: None,
        variable_user_data: std::ptr::null_mut(),
        init: le_str::EMPTY,
        init_file: le_str::EMPTY,
        init_worker: le_str::EMPTY,
        init_worker_file: le_str::EMPTY,
        max_pending_timers: u32::try_from(defaults.max_pending_timers).unwrap_or(u32::MAX),
        max_running_timers: u32::try_from(defaults.max_running_timers).unwrap_or(u32::MAX),
        timer_op: None,
        timer_op_user_data: std::ptr::null_mut(),
    }
}

/// The host's log callback with its user data, callable from any thread.
struct HostLog {
    callback: unsafe extern "C" fn(*mut c_void, *const le_log_record),
    user_data: *mut c_void,
}

// SAFETY: le_log_fn's contract makes the callback and its user data usable from any thread.
unsafe impl Send for HostLog {}
unsafe impl Sync for HostLog {}

impl HostLog {
    fn sink(self) -> LogSink {
        Arc::new(move |record: &LogRecord<'_>| self.emit(record))
    }

    fn emit(&self, record: &LogRecord<'_>) {
        let c_record = le_log_record {
            level: record.level as le_log_level,
            phase: record.phase.map_or(-1, |phase| phase as i32),
            location: le_str::of(record.location.as_bytes()),
            message: le_str::of(record.message.as_bytes()),
            request_id: record.request_id,
        };
        unsafe { (self.callback)(self.user_data, &c_record) };
    }
}

/// # Safety
/// `config` must be a valid `le_config` whose `package_path` holds `n_package_path` strings.
unsafe fn engine_config(config: &le_config) -> Result<EngineConfig, Error> {
    let paths = unsafe { slice(config.package_path, config.n_package_path, "config.package_path")? };
    let package_path = paths
        .iter()
        .map(|path| unsafe { path.text("config.package_path entry") }.map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    let log_level = LogLevel::from_number(i64::from(config.log_level))
        .ok_or_else(|| Error::invalid_argument(format!("config.log_level {} is not a log level", config.log_level)))?;
    let log = config.log.map(|callback| HostLog { callback, user_data: config.log_user_data }.sink());
    Ok(EngineConfig {
        workers: config.workers as usize,
        trusted: config.trusted,
        package_path,
        log,
        log_level,
        instruction_budget: config.instruction_budget,
        time_budget: Duration::from_millis(u64::from(config.time_budget_ms)),
        memory_limit: config.memory_limit,
        coroutine_pool: config.coroutine_pool as usize,
        file_check_interval: Duration::from_millis(u64::from(config.file_check_interval_ms)),
        host_functions: unsafe { host_functions(config.functions, config.n_functions)? },
        async_functions: unsafe { slice(config.async_functions, config.n_async_functions, "config.async_functions")? }
            .iter()
            .map(|name| unsafe { name.text("config.async_functions name") }.map(str::to_string))
            .collect::<Result<_, _>>()?,
        shared_dicts: unsafe { dict_configs(config.shared_dicts, config.n_shared_dicts)? },
        variables: resolver(config.variable, config.variable_user_data),
        default_type: unsafe { config.default_type.text("config.default_type")? }.to_string(),
        init: unsafe { lua_source("init", config.init, config.init_file)? },
        init_worker: unsafe { lua_source("init_worker", config.init_worker, config.init_worker_file)? },
        max_pending_timers: config.max_pending_timers as usize,
        max_running_timers: config.max_running_timers as usize,
        timer_ops: timer_ops(config.timer_op, config.timer_op_user_data),
    })
}

/// The `phase` code of a config: inline source (named after the phase) or a file, not both.
///
/// # Safety
/// Both strings must be valid `le_str`s.
unsafe fn lua_source(phase: &str, source: le_str, file: le_str) -> Result<Option<LuaSource>, Error> {
    let source = unsafe { source.bytes(&format!("config.{phase}"))? };
    let file = unsafe { file.text(&format!("config.{phase}_file"))? };
    match (source.is_empty(), file.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Ok(Some(LuaSource::inline(phase, source))),
        (true, false) => Ok(Some(LuaSource::file(file))),
        (false, false) => Err(Error::invalid_argument(format!("config.{phase} and config.{phase}_file are both set"))),
    }
}

/// Creates an engine. `config` may be NULL for the defaults; `LE_ERR_INVALID_ARGUMENT` when its
/// `size` is smaller than any `le_config`. On success `*out` owns the engine
/// (free it with `le_engine_free`); on failure `*err` (if `err` is not NULL) says why.
#[no_mangle]
pub extern "C" fn le_engine_new(
    config: *const le_config,
    out: *mut *mut le_engine,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        require_out(out, "out")?;
        let config = if config.is_null() {
            EngineConfig::default()
        } else {
            unsafe { engine_config(&read_versioned(config, "config", config_defaults())?)? }
        };
        let engine = Engine::new(config)?;
        unsafe { write_out(out, Box::into_raw(Box::new(le_engine { engine }))) };
        Ok(())
    })
}

/// Frees an engine. Scripts and requests still alive keep working and keep what they need
/// until they are freed. When the last engine handle and request are gone, the engine stops
/// before the freeing call returns: running timer callbacks finish (their sleeps end at once),
/// pending timers run once with `premature = true`, and no callback reaches the host after
/// that (a timer callback that frees them defers this until it returns). NULL is ignored.
#[no_mangle]
pub extern "C" fn le_engine_free(engine: *mut le_engine) {
    super::free_handle(engine)
}

/// The number of workers; 0 for NULL.
#[no_mangle]
pub extern "C" fn le_engine_worker_count(engine: *const le_engine) -> u32 {
    super::guard(0, || unsafe { engine.as_ref() }.map_or(0, |e| e.engine.worker_count() as u32))
}

/// Reads the engine's counters into `*out`, whose `size` the host set.
#[no_mangle]
pub extern "C" fn le_engine_stats(engine: *const le_engine, out: *mut le_stats) -> le_result {
    call(std::ptr::null_mut(), || {
        let engine = unsafe { handle(engine, "engine")? };
        unsafe { require_versioned(out, "out")? };
        let stats = engine.engine.stats();
        let c_stats = le_stats {
            size: 0,
            scripts_compiled: stats.cache.compiled,
            cache_hits: stats.cache.hits,
            cache_misses: stats.cache.misses,
            phases_run: stats.phases_run,
            errors: stats.errors,
            workers: stats.workers.len() as u32,
        };
        unsafe { write_versioned(out, "out", c_stats) }
    })
}

/// Reads one worker's counters into `*out`, whose `size` the host set; `LE_ERR_INVALID_ARGUMENT`
/// for a worker index out of range.
#[no_mangle]
pub extern "C" fn le_engine_worker_stats(
    engine: *const le_engine,
    worker: u32,
    out: *mut le_worker_stats,
) -> le_result {
    call(std::ptr::null_mut(), || {
        let engine = unsafe { handle(engine, "engine")? };
        unsafe { require_versioned(out, "out")? };
        let stats = engine.engine.stats();
        let worker = stats
            .workers
            .get(worker as usize)
            .ok_or_else(|| Error::invalid_argument(format!("worker {worker} does not exist")))?;
        let c_stats = le_worker_stats {
            size: 0,
            pooled_coroutines: worker.pooled_coroutines,
            lua_memory: worker.lua_memory,
            functions_loaded: worker.functions_loaded,
            pending_timers: worker.pending_timers,
            running_timers: worker.running_timers,
            rebuilds: worker.rebuilds,
        };
        unsafe { write_versioned(out, "out", c_stats) }
    })
}

/// Checks every file script now. Changed files are recompiled: phases that start afterwards run
/// the new version, phases already running finish on the old one. `*reloaded` (if not NULL)
/// receives the number of changed scripts. A file that no longer compiles keeps its previous
/// version and its error is reported.
#[no_mangle]
pub extern "C" fn le_engine_reload(
    engine: *const le_engine,
    reloaded: *mut usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let engine = unsafe { handle(engine, "engine")? };
        let count = engine.engine.reload()?;
        if !reloaded.is_null() {
            unsafe { write_out(reloaded, count) };
        }
        Ok(())
    })
}

/// Stops every script running on the engine now, a runaway loop included (it fails with
/// `LE_ERR_BUDGET`, "the engine is shutting down", at its next VM instruction, within about
/// 10 ms), and makes every phase run or resume that starts afterwards fail the same way at once.
/// For a host that is stopping and must not wait for scripts; it cannot be undone. Requests
/// waiting in a yield are not woken: free them. Safe from any thread (it takes no lock a script
/// holds), but not from a signal handler. Does nothing for a NULL engine.
#[no_mangle]
pub extern "C" fn le_engine_shutdown(engine: *const le_engine) {
    let _ = call(std::ptr::null_mut(), || {
        let engine = unsafe { handle(engine, "engine")? };
        engine.engine.shutdown();
        Ok(())
    });
}

/// The library version, a static NUL-terminated string such as `"0.1.0"`.
#[no_mangle]
pub extern "C" fn le_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version this library implements (compare with `LE_ABI_VERSION` from the header).
#[no_mangle]
pub extern "C" fn le_abi_version() -> u32 {
    super::LE_ABI_VERSION
}

/// The Lua backend, a static NUL-terminated string: `"LuaJIT"` or `"Lua 5.4"`.
#[no_mangle]
pub extern "C" fn le_backend() -> *const c_char {
    let name: &'static std::ffi::CStr = if cfg!(feature = "luajit") { c"LuaJIT" } else { c"Lua 5.4" };
    name.as_ptr()
}
