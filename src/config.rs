//! Engine configuration.

use std::time::Duration;

use crate::log::{LogLevel, LogSink};

/// How an engine is built. `EngineConfig::default()` is a sandboxed engine with one worker per
/// CPU, no instruction or time budget and no memory cap.
#[derive(Clone)]
pub struct EngineConfig {
    /// Number of workers (Lua states). 0 means one per available CPU.
    pub workers: usize,
    /// Trusted scripts see the full standard library (io, os, debug, ffi, C modules); by default
    /// scripts run in the sandbox of DESIGN.md §7.
    pub trusted: bool,
    /// Templates searched by `require`, like `package.path` (`/srv/lua/?.lua`).
    pub package_path: Vec<String>,
    /// Where log records go; `None` writes them to stderr.
    pub log: Option<LogSink>,
    /// Records below this level are dropped before reaching the sink.
    pub log_level: LogLevel,
    /// Lua VM instructions one phase run may execute before it fails with
    /// `ErrorCode::Budget`; 0 disables the budget.
    pub instruction_budget: u64,
    /// Wall time one phase run may take before it fails with `ErrorCode::Budget`; zero disables
    /// the budget. It counts while the phase's Lua code runs, including the ngx.* and library
    /// functions it calls; time suspended in a yield does not count. It is checked every 1000
    /// VM instructions (with the instruction budget), so one long C call, such as a `gsub` over
    /// a huge string, overruns it by that call's duration.
    pub time_budget: Duration,
    /// Bytes of Lua memory per worker; 0 means no cap.
    pub memory_limit: usize,
    /// How many idle coroutines a worker keeps for reuse.
    pub coroutine_pool: usize,
    /// How often a file script checks its file for changes (mtime, size). Zero checks on every run.
    pub file_check_interval: Duration,
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
            time_budget: Duration::ZERO,
            memory_limit: 0,
            coroutine_pool: 1024,
            file_check_interval: Duration::from_secs(1),
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
