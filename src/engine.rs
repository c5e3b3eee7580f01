//! The engine: configuration, workers, the code cache and engine-wide counters. Shared by all
//! host threads (`Send + Sync`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cache::{CacheStats, CodeCache, Script};
use crate::config::{EngineConfig, LuaSource};
use crate::error::{Error, ErrorCode, Result};
use crate::limits::Watchdog;
use crate::log::Logger;
use crate::phase::Phase;
use crate::request::{Request, RequestInit};
use crate::scheduler::Scheduler;
use crate::shdict::SharedDict;
use crate::timer::Timers;
use crate::worker::{Worker, WorkerStats};

/// More workers than this is a configuration mistake, not a server.
const MAX_WORKERS: usize = 1024;

/// nginx refuses shared zones under 8 pages; a dict this small holds a handful of entries.
const MIN_DICT_CAPACITY: usize = 8 * 4096;

/// A Lua request engine. Cheap to clone: clones share workers, scripts and stats. Requests
/// keep it running too; when the last clone and request are dropped, the engine stops before
/// that drop returns: timer callbacks running finish (their sleeps end at once) and pending
/// timers run once with `premature = true`, as nginx does when a worker exits.
#[derive(Clone)]
pub struct Engine {
    // Declared first so it drops first: the flag is up before the last handle takes the shared
    // state down.
    _exiting: Arc<ExitingFlag>,
    shared: Arc<Hold>,
}

/// A host's hold on the engine: every `Engine` clone and every `Request` shares one. When the
/// last goes, the engine stops its timers (see `timer.rs`) before that drop returns, or, when
/// it happens inside a timer callback, as soon as the callback returns. Engine threads use
/// `Shared` directly, so they never delay that.
pub(crate) struct Hold(Arc<Shared>);

impl std::ops::Deref for Hold {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.timers.release(&self.0);
    }
}

/// Raises `ngx.worker.exiting()` when the host drops its last `Engine` handle: requests still in
/// flight (they keep the shared state alive) finish seeing it true, as nginx's workers do while
/// they finish their requests on quit or reload.
struct ExitingFlag(Arc<AtomicBool>);

impl Drop for ExitingFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What requests and scripts share with the engine.
pub(crate) struct Shared {
    workers: Vec<Arc<Worker>>,
    cache: Arc<CodeCache>,
    dicts: Vec<Arc<SharedDict>>,
    pub logger: Logger,
    pub scheduler: Arc<Scheduler>,
    pub timers: Timers,
    watchdog: Arc<Watchdog>,
    /// init and init_worker, compiled: each worker runs them again when its state is rebuilt.
    init_scripts: Vec<(Phase, Script)>,
    next_request: AtomicU64,
    next_worker: AtomicUsize,
    phases_run: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    pub(crate) fn worker(&self, index: usize) -> &Worker {
        &self.workers[index]
    }

    pub(crate) fn init_scripts(&self) -> &[(Phase, Script)] {
        &self.init_scripts
    }

    pub(crate) fn count_phase(&self) {
        self.phases_run.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of the engine's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub cache: CacheStats,
    /// Phase runs and resumes, finished or not.
    pub phases_run: u64,
    /// Phase runs and resumes that ended in an error.
    pub errors: u64,
    pub workers: Vec<WorkerStats>,
}

impl Engine {
    /// Creates the workers (one Lua state each) and the code cache, then runs
    /// `EngineConfig::init` and `init_worker` in each worker; their errors are returned.
    pub fn new(config: EngineConfig) -> Result<Engine> {
        Engine::validate(&config)?;
        let logger = Logger::new(config.log.clone(), config.log_level);
        let dicts: Vec<Arc<SharedDict>> = config
            .shared_dicts
            .iter()
            .map(|(name, capacity)| Arc::new(SharedDict::new(name.clone(), *capacity)))
            .collect();
        let cache = Arc::new(CodeCache::new(config.file_check_interval, logger.clone()));
        let exiting = Arc::new(AtomicBool::new(false));
        let scheduler = Arc::new(
            Scheduler::start()
                .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start the clock thread: {e}")))?,
        );
        let watchdog = Watchdog::start(config.time_budget)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start the watchdog thread: {e}")))?;
        let worker_count = config.worker_count();
        let timers = Timers::new(
            scheduler.clone(),
            worker_count,
            config.max_pending_timers,
            config.max_running_timers,
            config.timer_ops.clone(),
        );
        let workers = (0..worker_count)
            .map(|index| {
                Worker::new(index, &config, cache.clone(), logger.clone(), &dicts, &timers, &exiting, &watchdog)
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        let init_scripts = Engine::compile_init(&cache, &config)?;
        let shared = Arc::new(Shared {
            workers,
            cache,
            dicts,
            logger,
            scheduler,
            timers,
            watchdog,
            init_scripts,
            next_request: AtomicU64::new(1),
            next_worker: AtomicUsize::new(0),
            phases_run: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        shared.timers.attach(Arc::downgrade(&shared));
        // On failure the engine drops here, which runs the timers init_worker started, premature.
        let engine = Engine { _exiting: Arc::new(ExitingFlag(exiting)), shared: Arc::new(Hold(shared)) };
        Engine::run_init(&engine.shared)?;
        Ok(engine)
    }

    fn compile_init(cache: &Arc<CodeCache>, config: &EngineConfig) -> Result<Vec<(Phase, Script)>> {
        let sources = [(Phase::Init, &config.init), (Phase::InitWorker, &config.init_worker)];
        let sources = sources.into_iter().filter_map(|(phase, source)| Some((phase, source.as_ref()?)));
        sources
            .map(|(phase, source)| {
                let script = match source {
                    LuaSource::Inline { name, source } => cache.compile(name, source)?,
                    LuaSource::File(path) => cache.compile_file(path)?,
                };
                Ok((phase, script))
            })
            .collect()
    }

    /// init in every worker (OpenResty runs it before forking them), then init_worker in each.
    fn run_init(shared: &Shared) -> Result<()> {
        for (phase, script) in &shared.init_scripts {
            for worker in &shared.workers {
                worker.run_init(shared, *phase, script.current())?;
            }
        }
        Ok(())
    }

    /// The shared dict `name` (`ngx.shared.<name>` in scripts), for a host to seed or inspect.
    pub fn shared_dict(&self, name: &str) -> Option<&Arc<SharedDict>> {
        self.shared.dicts.iter().find(|dict| dict.name() == name)
    }

    /// Compiles inline Lua source. Compiling the same (name, source) again is a cache hit and
    /// does not parse (the cache forgets unused scripts only when it holds over a thousand).
    pub fn compile(&self, name: &str, source: impl AsRef<[u8]>) -> Result<Script> {
        self.shared.cache.compile(name, source.as_ref())
    }

    /// Compiles a Lua file. The script follows the file: when its (mtime, size) changes and then
    /// stays the same for a check interval (`EngineConfig::file_check_interval`), runs starting
    /// after that use the new version.
    pub fn compile_file(&self, path: impl AsRef<Path>) -> Result<Script> {
        self.shared.cache.compile_file(path.as_ref())
    }

    /// Checks every file script now; returns how many changed. A file that fails to compile
    /// keeps its previous version and its error is returned (after all files were checked).
    pub fn reload(&self) -> Result<usize> {
        self.shared.cache.reload()
    }

    /// Creates a request from the host's snapshot, bound to worker `worker % workers` or, with
    /// `None`, to the next worker in round robin.
    pub fn new_request<'h, I>(&self, init: &RequestInit<'_>, headers: I, worker: Option<usize>) -> Request
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
        I::IntoIter: Clone,
    {
        let workers = &self.shared.workers;
        let index = worker.unwrap_or_else(|| self.shared.next_worker.fetch_add(1, Ordering::Relaxed)) % workers.len();
        let id = self.shared.next_request.fetch_add(1, Ordering::Relaxed);
        Request::new(self.shared.clone(), workers[index].clone(), id, init, headers)
    }

    /// Stops every script running now, wherever it is (a runaway loop included), and makes every
    /// later phase run fail at once: for a host that is shutting down and must not wait for
    /// scripts. Both fail with `ErrorCode::Budget` ("the engine is shutting down"). Requests
    /// waiting in a yield are not woken; the host drops them. Cannot be undone.
    pub fn shutdown(&self) {
        self.shared.watchdog.shut_down();
    }

    pub fn worker_count(&self) -> usize {
        self.shared.workers.len()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            cache: self.shared.cache.stats(),
            phases_run: self.shared.phases_run.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            workers: self
                .shared
                .workers
                .iter()
                .map(|worker| WorkerStats {
                    pending_timers: self.shared.timers.pending(worker.index),
                    running_timers: self.shared.timers.running(worker.index),
                    ..worker.stats()
                })
                .collect(),
        }
    }

    /// Checks a config before building anything from it.
    fn validate(config: &EngineConfig) -> Result<()> {
        if config.workers > MAX_WORKERS {
            let message = format!("{} workers is more than the {MAX_WORKERS} allowed", config.workers);
            return Err(Error::invalid_argument(message));
        }
        let sync = config.host_functions.iter().map(|function| function.name());
        unique_names("host function", sync.chain(config.async_functions.iter().map(String::as_str)))?;
        unique_names("shared dict", config.shared_dicts.iter().map(|(name, _)| name.as_str()))?;
        if let Some((name, _)) = config.shared_dicts.iter().find(|(_, capacity)| *capacity < MIN_DICT_CAPACITY) {
            let message = format!("shared dict '{name}' is smaller than the {MIN_DICT_CAPACITY} bytes allowed");
            return Err(Error::invalid_argument(message));
        }
        Ok(())
    }
}

/// Names in a config must be non-empty and unique.
fn unique_names<'a>(what: &str, names: impl Iterator<Item = &'a str> + Clone) -> Result<()> {
    for (index, name) in names.clone().enumerate() {
        if name.is_empty() {
            return Err(Error::invalid_argument(format!("a {what} has an empty name")));
        }
        if names.clone().take(index).any(|earlier| earlier == name) {
            return Err(Error::invalid_argument(format!("{what} '{name}' is registered twice")));
        }
    }
    Ok(())
}
