//! Compiling scripts.

use super::engine::le_engine;
use super::error::{call, le_error, le_result};
use super::{handle, le_str, require_out, write_out};
use crate::cache::Script;

/// A compiled script. Thread-safe and independent of the engine handle's lifetime; free it with
/// `le_script_free` (requests that are running it are not affected).
pub struct le_script {
    pub(crate) script: Script,
}

fn hand_out(out: *mut *mut le_script, script: Script) {
    unsafe { write_out(out, Box::into_raw(Box::new(le_script { script }))) };
}

/// Compiles Lua source. `name` (UTF-8) names the chunk in errors and logs (`content:3: ...`).
/// Compiling the same name and source again reuses its bytecode
/// without parsing. Binary chunks are refused with `LE_ERR_SYNTAX`; so is bad Lua, with the
/// chunk and line in `*err`.
#[no_mangle]
pub extern "C" fn le_script_compile(
    engine: *const le_engine,
    name: le_str,
    source: le_str,
    out: *mut *mut le_script,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let engine = unsafe { handle(engine, "engine")? };
        require_out(out, "out")?;
        let name = unsafe { name.text("name")? };
        let source = unsafe { source.bytes("source")? };
        hand_out(out, engine.engine.compile(name, source)?);
        Ok(())
    })
}

/// Compiles a Lua file (path in UTF-8). The script follows its file: when the file's mtime or
/// size changes it is recompiled at the next check (`le_config.file_check_interval_ms`) or
/// `le_engine_reload`. `LE_ERR_IO` if the file cannot be read.
#[no_mangle]
pub extern "C" fn le_script_compile_file(
    engine: *const le_engine,
    path: le_str,
    out: *mut *mut le_script,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let engine = unsafe { handle(engine, "engine")? };
        require_out(out, "out")?;
        let path = unsafe { path.text("path")? };
        hand_out(out, engine.engine.compile_file(path)?);
        Ok(())
    })
}

/// Frees a script. NULL is ignored.
#[no_mangle]
pub extern "C" fn le_script_free(script: *mut le_script) {
    super::free_handle(script)
}
