//! The code cache: Lua source becomes bytecode once per engine, shared by every worker
//! (each worker turns it into a function once, see `worker.rs`).
//!
//! Inline scripts are keyed by (chunk name, source); file scripts by path, revalidated by
//! (mtime, size) every check interval. A changed file is taken only once it has stopped
//! changing for one interval, so that a file caught half-written (truncated, say) is never
//! served. A script's bytecode wraps its source as `return function(_ENV, ...) <source>
//! end` on one line, so every run gets a fresh closure whose globals are the request's own
//! table (DESIGN.md §6) while line numbers stay those of the source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use mlua::chunk::ChunkMode;
use mlua::Lua;
use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;

use crate::error::{Error, ErrorCode, Result};
use crate::log::{LogLevel, Logger};

/// Compiled code of one version of one script.
#[derive(Debug)]
pub(crate) struct Bytecode {
    /// Unique per compilation: workers key their loaded functions by it.
    pub id: u64,
    /// Lua's chunk name (`=name` for inline scripts, `@path` for files).
    pub chunk_name: String,
    pub code: Vec<u8>,
}

/// A compiled script, cheap to clone and safe to share between threads. A file script always
/// runs its newest valid version; a phase that already started keeps the version it started with.
#[derive(Clone)]
pub struct Script {
    slot: Arc<ScriptSlot>,
}

struct ScriptSlot {
    name: String,
    source: ScriptSource,
}

enum ScriptSource {
    Inline(Arc<Bytecode>),
    File { path: PathBuf, cache: Arc<CodeCache>, state: Mutex<FileState> },
}

struct FileState {
    bytecode: Arc<Bytecode>,
    stamp: FileStamp,
    checked: Instant,
    /// The (mtime, size) a check found in place of `stamp`, and when: the file is taken once a
    /// check at least one interval later finds it the same.
    changed: Option<(FileStamp, Instant)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileStamp {
    modified: SystemTime,
    len: u64,
}

impl Script {
    /// The name errors and logs use for this script.
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// The file behind a file script.
    pub fn path(&self) -> Option<&Path> {
        match &self.slot.source {
            ScriptSource::File { path, .. } => Some(path),
            ScriptSource::Inline(_) => None,
        }
    }

    /// The version a run starting now uses; a file script first checks its file if the check
    /// interval has passed, and switches to a change that has stood for an interval. A file
    /// that stopped compiling keeps its last good version (and logs).
    pub(crate) fn current(&self) -> Arc<Bytecode> {
        match &self.slot.source {
            ScriptSource::Inline(bytecode) => bytecode.clone(),
            ScriptSource::File { path, cache, state } => {
                let mut state = state.lock();
                if state.checked.elapsed() >= cache.file_check_interval {
                    if let Err(error) = cache.revalidate(path, &mut state, Settle::Wait) {
                        cache
                            .logger
                            .log_engine(LogLevel::Err, &format!("keeping the previous version: {}", error.summary()));
                    }
                }
                state.bytecode.clone()
            }
        }
    }

    fn reload(&self) -> Result<bool> {
        match &self.slot.source {
            ScriptSource::Inline(_) => Ok(false),
            ScriptSource::File { path, cache, state } => cache.revalidate(path, &mut state.lock(), Settle::Now),
        }
    }
}

/// Whether a changed file is taken at once (`reload`) or once it has stood for a check interval.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Now,
    Wait,
}

/// Counters of the code cache, as reported by `Engine::stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Sources parsed and compiled to bytecode.
    pub compiled: u64,
    /// `compile` calls answered from the cache without parsing.
    pub hits: u64,
    /// `compile` calls that had to parse.
    pub misses: u64,
}

/// (chunk name, source) of an inline script.
type InlineKey = (String, Vec<u8>);

pub(crate) struct CodeCache {
    /// A Lua state used only to compile and dump; it never runs user code.
    compiler: Mutex<Lua>,
    inline: Mutex<HashMap<InlineKey, Arc<Bytecode>, FxBuildHasher>>,
    files: Mutex<HashMap<PathBuf, Weak<ScriptSlot>, FxBuildHasher>>,
    next_id: AtomicU64,
    compiled: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    file_check_interval: Duration,
    logger: Logger,
}

/// Inline scripts kept compiled after their last handle is gone, before the cache forgets them.
const MAX_UNUSED_INLINE: usize = 1024;

/// Signatures of binary chunks (PUC Lua and LuaJIT): user code is text only.
const BINARY_SIGNATURES: [&[u8]; 2] = [b"\x1bLua", b"\x1bLJ"];

impl CodeCache {
    pub(crate) fn new(file_check_interval: Duration, logger: Logger) -> CodeCache {
        CodeCache {
            compiler: Mutex::new(Lua::new()),
            inline: Mutex::default(),
            files: Mutex::default(),
            next_id: AtomicU64::new(1),
            compiled: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            file_check_interval,
            logger,
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Compiles inline source, or finds the bytecode of an identical (name, source) compiled
    /// before.
    pub(crate) fn compile(&self, name: &str, source: &[u8]) -> Result<Script> {
        if name.is_empty() {
            return Err(Error::invalid_argument("a script needs a name"));
        }
        let mut inline = self.inline.lock();
        let key = (name.to_string(), source.to_vec());
        let bytecode = match inline.get(&key) {
            Some(bytecode) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                bytecode.clone()
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let bytecode = Arc::new(self.compile_source(format!("={name}"), source)?);
                if inline.len() >= MAX_UNUSED_INLINE {
                    // Bound the cache for hosts that generate scripts: forget those no script uses.
                    inline.retain(|_, bytecode| Arc::strong_count(bytecode) > 1);
                }
                inline.insert(key, bytecode.clone());
                bytecode
            }
        };
        Ok(Script { slot: Arc::new(ScriptSlot { name: name.to_string(), source: ScriptSource::Inline(bytecode) }) })
    }

    /// Compiles a script file, or returns the live script already compiled from that path
    /// (after checking the file for changes).
    pub(crate) fn compile_file(self: &Arc<Self>, path: &Path) -> Result<Script> {
        let path = std::fs::canonicalize(path)
            .map_err(|e| Error::new(ErrorCode::Io, format!("cannot open {}: {e}", path.display())))?;
        let mut files = self.files.lock();
        if let Some(slot) = files.get(&path).and_then(Weak::upgrade) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            let script = Script { slot };
            script.current();
            return Ok(script);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let (stamp, source) = read_file(&path)?;
        let bytecode = Arc::new(self.compile_source(format!("@{}", path.display()), &source)?);
        let state = Mutex::new(FileState { bytecode, stamp, checked: Instant::now(), changed: None });
        let slot = Arc::new(ScriptSlot {
            name: path.display().to_string(),
            source: ScriptSource::File { path: path.clone(), cache: self.clone(), state },
        });
        files.retain(|_, weak| weak.strong_count() > 0);
        files.insert(path, Arc::downgrade(&slot));
        Ok(Script { slot })
    }

    /// Checks every live file script now. Scripts whose file changed switch to the new version
    /// for runs that start from now on, without waiting for the change to stand (the host says
    /// the files are ready); the first failure is returned after all were tried.
    pub(crate) fn reload(&self) -> Result<usize> {
        let scripts: Vec<Script> =
            self.files.lock().values().filter_map(Weak::upgrade).map(|slot| Script { slot }).collect();
        let mut reloaded = 0;
        let mut first_error = None;
        for script in scripts {
            match script.reload() {
                Ok(changed) => reloaded += changed as usize,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(reloaded), Err)
    }

    /// Checks a file script's file; returns whether it switched to a new version.
    fn revalidate(&self, path: &Path, state: &mut FileState, settle: Settle) -> Result<bool> {
        let now = Instant::now();
        state.checked = now;
        let stamp = stat(path)?;
        if stamp == state.stamp {
            state.changed = None;
            return Ok(false);
        }
        if settle == Settle::Wait {
            match state.changed {
                Some((seen, since)) if seen == stamp => {
                    if now.duration_since(since) < self.file_check_interval {
                        return Ok(false);
                    }
                }
                // New, or changed again: it has to stand for an interval from now.
                _ => {
                    state.changed = Some((stamp, now));
                    return Ok(false);
                }
            }
        }
        let (read, source) = read_file(path)?;
        if settle == Settle::Wait && read != stamp {
            state.changed = Some((read, now));
            return Ok(false);
        }
        state.bytecode = Arc::new(self.compile_source(format!("@{}", path.display()), &source)?);
        state.stamp = read;
        state.changed = None;
        Ok(true)
    }

    /// Parses once as written (so syntax errors read as the author expects), then compiles the
    /// wrapped form whose bytecode workers run.
    fn compile_source(&self, chunk_name: String, source: &[u8]) -> Result<Bytecode> {
        if BINARY_SIGNATURES.iter().any(|signature| source.starts_with(signature)) {
            return Err(Error::new(
                ErrorCode::Syntax,
                format!("{}: binary chunks are refused; pass Lua source", chunk_name.trim_start_matches(['=', '@'])),
            ));
        }
        let compiler = self.compiler.lock();
        let load =
            |text: &[u8]| compiler.load(text).set_name(chunk_name.as_str()).set_mode(ChunkMode::Text).into_function();
        load(source).map_err(|e| Error::from_lua(&e))?;
        let mut wrapped = Vec::with_capacity(source.len() + 40);
        wrapped.extend_from_slice(b"return function(_ENV, ...) ");
        wrapped.extend_from_slice(source);
        wrapped.extend_from_slice(b"\nend");
        let function = load(&wrapped).map_err(|e| Error::from_lua(&e))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        Ok(Bytecode { id: self.next_id.fetch_add(1, Ordering::Relaxed), chunk_name, code: function.dump(false) })
    }
}

fn stat(path: &Path) -> Result<FileStamp> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::new(ErrorCode::Io, format!("cannot stat {}: {e}", path.display())))?;
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(FileStamp { modified, len: meta.len() })
}

fn read_file(path: &Path) -> Result<(FileStamp, Vec<u8>)> {
    let stamp = stat(path)?;
    let source =
        std::fs::read(path).map_err(|e| Error::new(ErrorCode::Io, format!("cannot read {}: {e}", path.display())))?;
    Ok((stamp, source))
}
