//! Engine configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::host::HostFunction;
use crate::limits::{DEFAULT_MEMORY_LIMIT, DEFAULT_TIME_BUDGET};
use crate::log::{LogLevel, LogSink};
use crate::phase::Phase;
use crate::timer::TimerOpHandler;

/// What a script asked the host for: `ngx.var.NAME` for a name that is neither one of the
/// engine's variables nor one a script of this request set.
#[derive(Clone, Copy, Debug)]
pub struct VariableLookup<'a> {
    /// The request's id (`Request::id`).
    pub request_id: u64,
    /// The phase asking.
    pub phase: Phase,
    /// The variable's name without `$`, lowercased (nginx's names are case-insensitive).
    pub name: &'a [u8],
}

/// Answers `ngx.var` lookups the engine cannot: `Some(value)` for a variable the host knows
/// (`$server_name`, `$upstream_addr`...), `None` for an undefined one (the script reads nil).
/// Called on the thread running the phase, on every lookup: answers are not cached, as values
/// like `$upstream_response_time` change while a request runs. It must not run phases on the
/// engine. A panic becomes a Lua error in the script.
pub type VariableResolver = Arc<dyn Fn(&VariableLookup<'_>) -> Option<Vec<u8>> + Send + Sync>;

/// Lua code the engine runs on its own rather than for a request: `EngineConfig::init` and
/// `init_worker`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LuaSource {
    /// Source text, with the chunk name errors and logs show (`init:3: oops`).
    Inline { name: String, source: Vec<u8> },
    /// A Lua file, read when the engine is built; errors show its path.
    File(PathBuf),
}

impl LuaSource {
    pub fn inline(name: impl Into<String>, source: impl Into<Vec<u8>>) -> LuaSource {
        LuaSource::Inline { name: name.into(), source: source.into() }
    }

    pub fn file(path: impl Into<PathBuf>) -> LuaSource {
        LuaSource::File(path.into())
    }
}

/// nginx's default `default_type`.
pub(crate) const DEFAULT_TYPE: &str = "text/plain";

/// How an engine is built. `EngineConfig::default()` is a sandboxed engine with one worker per
/// CPU, a 5 s time budget per phase run and a 512 MiB Lua memory cap per worker (safe by
/// default: set either to zero to turn it off), and no instruction budget.
#[derive(Clone)]
pub struct EngineConfig {
    /// Number of workers (Lua states). 0 means one per available CPU.
    pub workers: usize,
    /// Trusted scripts see the full standard library (io, os, debug, ffi, C modules); by default
    /// scripts run in the sandbox of DESIGN.md §7.
    pub trusted: bool,
    /// Templates searched by `require`, like `package.path` (`/srv/lua/?.lua`). A module file
    /// is loaded once per worker and its table is shared by every request of that worker, as in
    /// OpenResty (module-level caches work), sandbox or not. In the sandbox, what a request
    /// writes to `package.loaded`/`package.preload` is its own, and built-in modules (`cjson`,
    /// `host`) are read-only.
    pub package_path: Vec<String>,
    /// Where log records go; `None` writes them to stderr.
    pub log: Option<LogSink>,
    /// Records below this level are dropped before reaching the sink.
    pub log_level: LogLevel,
    /// Lua VM instructions one phase run may execute before it fails with
    /// `ErrorCode::Budget`; 0 (the default) disables the budget. Off by default because any count
    /// hook slows every script: with one set, LuaJIT runs interpreted (`limits.rs`).
    pub instruction_budget: u64,
    /// Wall time one phase run may take before it fails with `ErrorCode::Budget`; zero disables
    /// the budget. On by default (`DEFAULT_TIME_BUDGET`, 5 s): a runaway loop must not pin a
    /// worker. It counts while the phase's Lua code runs, including the ngx.* and library
    /// functions it calls; time suspended in a yield does not count. The engine's watchdog
    /// checks it every 10 ms and stops the script at its next VM instruction, so a script pays
    /// nothing for it; one long call into C, such as a `gsub` over a huge string, overruns it by
    /// that call's duration.
    pub time_budget: Duration,
    /// Bytes of Lua memory per worker; 0 means no cap. On by default (`DEFAULT_MEMORY_LIMIT`,
    /// 512 MiB): an allocation bomb fails its script instead of growing the host until the
    /// kernel kills it.
    pub memory_limit: usize,
    /// How many idle coroutines a worker keeps for reuse.
    pub coroutine_pool: usize,
    /// How often a file script (and a module file `require` loads) checks its file for changes
    /// (mtime, size). Zero checks on every run. A change is taken only once it has stood for an
    /// interval: the check that first sees it keeps the running version, and a check at least
    /// one interval later that finds the file the same compiles it and switches. So a file
    /// caught half-written is not served unless it stays so for a whole interval; replace files
    /// by renaming to be safe. A first load compiles at once; `Engine::reload` does not wait.
    pub file_check_interval: Duration,
    /// Functions scripts call as `require("host").name(...)`. Names must be unique.
    pub host_functions: Vec<HostFunction>,
    /// Async host functions: scripts call them like the others (`require("host").name(...)`),
    /// but the phase yields with a `PendingOp` that the host performs and completes
    /// (`Request::pending`, `Request::complete`) before resuming; meanwhile the worker serves
    /// other requests.
    pub async_functions: Vec<String>,
    /// `ngx.shared.<name>` dicts as (name, capacity in bytes), shared by all workers, like
    /// nginx's `lua_shared_dict name size`.
    pub shared_dicts: Vec<(String, usize)>,
    /// Resolves the `ngx.var` names the engine does not know; without one they read as nil.
    pub variables: Option<VariableResolver>,
    /// nginx's `default_type`: the `Content-Type` a response gets when the engine sends its
    /// headers (first `ngx.say`/`print`/`flush`, the end of content, `ngx.exit` with a 2xx
    /// other than 204) and no script set or cleared `ngx.header.content_type`. Until then,
    /// reading `ngx.header.content_type` gives nil, as in lua-nginx-module. Empty adds none.
    pub default_type: String,
    /// `init_by_lua`: runs when the engine is built, in every worker's Lua state before anything
    /// else runs there (OpenResty runs it once in the master, whose state every worker inherits;
    /// our workers are separate states). Its globals land in the base environment and the
    /// modules it `require`s stay loaded, so every request sees them: treat both as read-only.
    /// `ngx.log` and `ngx.shared` work there; request APIs and timers do not. An error makes
    /// `Engine::new` fail with it.
    pub init: Option<LuaSource>,
    /// `init_worker_by_lua`: runs once in each worker after `init` (on every worker's state),
    /// with the same globals; the place to start timers (`ngx.timer.every`). An error makes
    /// `Engine::new` fail with it.
    pub init_worker: Option<LuaSource>,
    /// `lua_max_pending_timers`: timers of one worker waiting to expire; beyond it
    /// `ngx.timer.at` returns `nil, "too many pending timers"`.
    pub max_pending_timers: usize,
    /// `lua_max_running_timers`: timer callbacks of one worker running at once (a callback that
    /// sleeps still runs); a timer expiring beyond it is logged (`N lua_max_running_timers are
    /// not enough`) and its callback is not run.
    pub max_running_timers: usize,
    /// Receives the async host function calls of timer callbacks, which have no request for
    /// the host to complete them through; without it such a call fails in the callback.
    pub timer_ops: Option<TimerOpHandler>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 0,
            trusted: false,
            package_path: Vec::new(),
            log: None,
            log_level: LogLevel::Debug,
            instruction_budget: 0,
            time_budget: DEFAULT_TIME_BUDGET,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            coroutine_pool: 1024,
            file_check_interval: Duration::from_secs(1),
            host_functions: Vec::new(),
            async_functions: Vec::new(),
            shared_dicts: Vec::new(),
            variables: None,
            default_type: DEFAULT_TYPE.into(),
            init: None,
            init_worker: None,
            max_pending_timers: 1024,
            max_running_timers: 256,
            timer_ops: None,
        }
    }
}

impl EngineConfig {
    /// The worker count after resolving 0 to the CPU count.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }
}
