//! libluaengine: OpenResty's lua-nginx-module phases, freed from nginx.
//!
//! A host builds an [`Engine`], compiles [`Script`]s, and for each HTTP request creates a
//! [`Request`] from one snapshot and runs phases on it; each run returns a [`Status`]
//! (`Ok`, `Done`, `Yield`) or an [`Error`]. See DESIGN.md for the architecture and the C ABI
//! in `src/ffi/` (header `include/luaengine.h`).
//!
//! ```
//! use luaengine::{Engine, EngineConfig, Phase, RequestInit, Status};
//!
//! let engine = Engine::new(EngineConfig { workers: 1, ..Default::default() }).unwrap();
//! let script = engine.compile("content", r#"ngx.say("hello ", ngx.var.uri)"#).unwrap();
//! let init = RequestInit { method: b"GET", path: b"/t", ..Default::default() };
//! let mut request = engine.new_request(&init, [], None);
//! assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Done);
//! assert_eq!(request.response().body, b"hello /t\n");
//! ```

#![deny(unsafe_code)]

#[cfg(all(feature = "luajit", feature = "lua54"))]
compile_error!("features `luajit` and `lua54` pick the Lua backend: enable exactly one");
#[cfg(not(any(feature = "luajit", feature = "lua54")))]
compile_error!("enable one Lua backend feature: `luajit` (default) or `lua54`");

mod api;
mod cache;
mod config;
mod engine;
mod error;
#[allow(unsafe_code)]
pub mod ffi;
mod host;
mod limits;
mod log;
#[allow(unsafe_code)]
mod lua;
mod modules;
mod phase;
mod regex_cache;
mod request;
mod sandbox;
mod scheduler;
pub mod shdict;
mod spare;
mod timer;
mod wait;
mod worker;

pub use cache::{CacheStats, Script};
pub use config::{EngineConfig, LuaSource, VariableLookup, VariableResolver};
pub use engine::{Engine, Stats};
pub use error::{Error, ErrorCode, Result};
pub use host::{HostCall, HostFn, HostFunction, HostValue, MAX_VALUE_DEPTH};
pub use limits::{DEFAULT_MEMORY_LIMIT, DEFAULT_TIME_BUDGET};
pub use log::{LogLevel, LogRecord, LogSink};
pub use phase::{Phase, Status};
pub use request::{BodyChunk, Request, RequestInit, Response};
pub use timer::{TimerOp, TimerOpHandler};
pub use wait::{PendingOp, Waker, READ_BODY};
pub use worker::WorkerStats;

/// The library's version (`CARGO_PKG_VERSION`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Lua backend this build runs: `"LuaJIT"` or `"Lua 5.4"`.
pub const BACKEND: &str = if cfg!(feature = "luajit") { "LuaJIT" } else { "Lua 5.4" };
