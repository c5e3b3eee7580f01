//! Which globals a script sees (DESIGN.md §7). Sandboxed scripts get a fresh base table with a
//! whitelist of the standard library, sealed read-only once the API is installed (`seal`);
//! trusted scripts see the full standard library, all writable.
//! Either way each request gets its own globals table on top of the base (see `worker.rs`).
//!
//! Modules in the sandbox: every module the engine registers before sealing (cjson, host, and
//! any later `ngx.*`/`resty.*` one put in the worker's `package.loaded`/`package.preload`) is a
//! read-only built-in that scripts cannot replace. Module files found on the package path are
//! loaded once per worker and shared, as in OpenResty. `package.loaded`/`package.preload` are
//! views: request code writes entries of its own, worker code (init, init_worker, module
//! bodies) the worker's (`api/prelude.lua`).

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

/// Functions of the base library a sandboxed script keeps. `load` is replaced by a text-only
/// version, `collectgarbage` by one that only counts (`sandbox.lua`); `dofile`, `loadfile` and
/// the module loaders are gone.
const BASE_FUNCTIONS: &[&str] = &[
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawlen",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "_VERSION",
];

/// Libraries kept whole (a missing one, like `utf8` on LuaJIT, is skipped). `string.dump` is
/// removed: its only use is to feed `load` a binary chunk.
const LIBRARIES: &[&str] = &["string", "table", "math", "bit", "utf8"];

/// The only `os` functions a sandboxed script keeps.
const OS_FUNCTIONS: &[&str] = &["time", "clock", "date", "difftime"];

/// A worker's Lua state. The sandbox still opens `jit` (LuaJIT compiles only when it is
/// opened) and hides it from scripts.
#[allow(unsafe_code)]
pub(crate) fn new_lua(trusted: bool) -> mlua::Result<Lua> {
    if trusted {
        // SAFETY: trusted mode is the host's explicit opt-in to debug, ffi and C modules.
        Ok(unsafe { Lua::unsafe_new_with(StdLib::ALL, LuaOptions::default()) })
    } else {
        Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default())
    }
}

/// The table every request's globals inherit from.
pub(crate) fn base_env(lua: &Lua, trusted: bool) -> mlua::Result<Table> {
    let globals = lua.globals();
    if trusted {
        return Ok(globals);
    }
    let base = lua.create_table()?;
    for name in BASE_FUNCTIONS {
        base.raw_set(*name, globals.raw_get::<Value>(*name)?)?;
    }
    // The real library tables: `seal` hides them behind read-only proxies.
    for name in LIBRARIES {
        if let Value::Table(library) = globals.raw_get::<Value>(*name)? {
            base.raw_set(*name, library)?;
        }
    }
    globals.raw_get::<Table>("string")?.raw_set("dump", Value::Nil)?;
    let os: Table = globals.raw_get("os")?;
    let safe_os = lua.create_table()?;
    for name in OS_FUNCTIONS {
        safe_os.raw_set(*name, os.raw_get::<Value>(*name)?)?;
    }
    base.raw_set("os", safe_os)?;
    let debug = lua.create_table()?;
    debug.raw_set("traceback", traceback(lua)?)?;
    base.raw_set("debug", debug)?;
    Ok(base)
}

/// Makes the sandbox read-only for scripts (see `sandbox.lua`): the tables in `base`, `ngx`
/// included, and the string metatable become read-only proxies, and `pairs`, `rawset`,
/// LuaJIT's `table.insert` and `collectgarbage` are replaced to match. `builtins` is `require`'s table of
/// the names it answers itself: the libraries and the built-in modules, read-only, or false
/// for a hidden module. Every module the engine has put in the worker's `package.loaded` or
/// `package.preload` (`modules.loaded`, `modules.preload`) by then is a built-in one;
/// `modules.listings` lists the entries of the script-facing views of both, for `pairs`. `metatables` are metatables the
/// engine shares between per-request tables; they are hidden from `getmetatable`. Run once the
/// API is installed, so that every table in `ngx` and every built-in module is covered.
pub(crate) fn seal(
    lua: &Lua,
    base: &Table,
    builtins: &Table,
    modules: &Table,
    metatables: &[&Table],
) -> mlua::Result<()> {
    let params = lua.create_table()?;
    params.set("base", base)?;
    params.set("builtins", builtins)?;
    params.set("modules", modules)?;
    params.set("metatables", metatables)?;
    lua.load(include_str!("sandbox.lua")).set_name("=[luaengine sandbox]").call(params)
}

/// `debug.traceback([message [, level]])`, the one function of `debug` the sandbox keeps. As in
/// Lua, a message that is neither a string nor a number comes back unchanged (so it serves as an
/// `xpcall` handler for error objects). Another coroutine's stack is out of reach without the
/// debug library: given a coroutine, it returns the message alone.
fn traceback(lua: &Lua) -> mlua::Result<Function> {
    lua.create_function(|lua, args: MultiValue| {
        let mut args = args.into_iter();
        let message = match args.next() {
            Some(Value::Thread(_)) => return Ok(args.next().unwrap_or(Value::Nil)),
            Some(Value::String(text)) => Some(text.to_string_lossy()),
            Some(number @ (Value::Integer(_) | Value::Number(_))) => Some(number.to_string()?),
            None | Some(Value::Nil) => None,
            Some(other) => return Ok(other),
        };
        let level = match args.next() {
            Some(Value::Integer(level)) => usize::try_from(level).unwrap_or(0),
            Some(Value::Number(level)) if level >= 0.0 => level as usize,
            _ => 1,
        };
        Ok(Value::String(lua.traceback(message.as_deref(), level)?))
    })
}
