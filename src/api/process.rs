//! `ngx.config` and `ngx.worker`: what a script learns about the engine it runs in, mapped from
//! nginx's process model. The engine's workers are nginx's worker processes (each its own Lua
//! state), all in the host's process. Both work in every context.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mlua::{Lua, Table};

/// The lua-nginx-module release whose API the engine follows (0.10.28), as
/// `ngx.config.ngx_lua_version` encodes it: major * 1000000 + minor * 1000 + patch.
pub(crate) const NGX_LUA_VERSION: i64 = 10_028;

/// The nginx core of the OpenResty release bundling that module (OpenResty 1.27.1.2, nginx
/// 1.27.1), as `ngx.config.nginx_version` encodes it, for scripts that test it to pick features.
pub(crate) const NGINX_VERSION: i64 = 1_027_001;

/// Where a worker stands among the engine's.
pub(crate) struct WorkerInfo {
    /// 0-based, as `ngx.worker.id()`.
    pub index: usize,
    pub count: usize,
    /// Set once the host dropped its last `Engine` handle: the engine is shutting down.
    pub exiting: Arc<AtomicBool>,
}

pub(crate) fn register(lua: &Lua, ngx: &Table, worker: WorkerInfo) -> mlua::Result<()> {
    let config = lua.create_table()?;
    config.set("subsystem", "http")?;
    config.set("debug", false)?;
    config.set("nginx_version", NGINX_VERSION)?;
    config.set("ngx_lua_version", NGX_LUA_VERSION)?;
    // No nginx build and no prefix directory (-p): relative paths are the host's business.
    config.set("prefix", lua.create_function(|_, ()| Ok(""))?)?;
    config.set("nginx_configure", lua.create_function(|_, ()| Ok(""))?)?;
    ngx.set("config", config)?;

    let functions = lua.create_table()?;
    functions.set("id", lua.create_function(move |_, ()| Ok(worker.index))?)?;
    functions.set("count", lua.create_function(move |_, ()| Ok(worker.count))?)?;
    functions.set("pid", lua.create_function(|_, ()| Ok(std::process::id()))?)?;
    let exiting = worker.exiting;
    functions.set("exiting", lua.create_function(move |_, ()| Ok(exiting.load(Ordering::Relaxed)))?)?;
    ngx.set("worker", functions)
}
