//! Which globals a script sees (DESIGN.md §7). Sandboxed scripts get a fresh base table with a
//! whitelist of the standard library; trusted scripts see the full standard library.
//! Either way each request gets its own globals table on top of the base (see `worker.rs`).

use mlua::{Lua, LuaOptions, StdLib, Table, Value};

/// Functions of the base library a sandboxed script keeps. `load` is replaced by a text-only
/// version; `dofile`, `loadfile`, `collectgarbage` and the module loaders are gone.
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

/// Libraries copied whole (a missing one, like `utf8` on LuaJIT, is skipped).
const LIBRARIES: &[&str] = &["string", "table", "math", "bit", "utf8"];

/// The only `os` functions a sandboxed script keeps.
const OS_FUNCTIONS: &[&str] = &["time", "clock", "date", "difftime"];

/// A worker's Lua state. The sandbox still opens `jit` (LuaJIT compiles only when it is
/// opened) and hides it from scripts.
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
    for name in LIBRARIES {
        if let Value::Table(library) = globals.raw_get::<Value>(*name)? {
            base.raw_set(*name, shallow_copy(lua, &library)?)?;
        }
    }
    let os: Table = globals.raw_get("os")?;
    let safe_os = lua.create_table()?;
    for name in OS_FUNCTIONS {
        safe_os.raw_set(*name, os.raw_get::<Value>(*name)?)?;
    }
    base.raw_set("os", safe_os)?;
    Ok(base)
}

fn shallow_copy(lua: &Lua, table: &Table) -> mlua::Result<Table> {
    let copy = lua.create_table()?;
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair?;
        copy.raw_set(key, value)?;
    }
    Ok(copy)
}
