//! `require` of Lua modules from the configured search path, through the engine's code cache:
//! each module file is compiled once per engine and loaded once per worker. The Lua side of
//! `require` (package.loaded, loops, environments) is in `api/prelude.lua`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use mlua::{Lua, Table, Value};
use parking_lot::Mutex;

use crate::cache::{CodeCache, Script};
use crate::worker::FunctionCache;

/// Module names are dotted identifiers; anything else (slashes, `..`) could walk out of the
/// search path.
fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Registers `find_module(name)`: returns (function, path), or (nil, "no file ..." lines) when
/// nothing matches, or (false, message) when the file exists but does not compile.
pub(crate) fn register(
    lua: &Lua,
    impl_table: &Table,
    cache: Arc<CodeCache>,
    functions: FunctionCache,
    templates: &[String],
) -> mlua::Result<()> {
    let templates = templates.to_vec();
    // Keeps this worker's module scripts alive, so other workers find them compiled.
    let scripts: Mutex<HashMap<String, Script>> = Mutex::default();
    let find = lua.create_function(move |lua, name: mlua::LuaString| {
        let name = name.to_str()?.to_string();
        if !valid_module_name(&name) {
            return Ok((Value::Boolean(false), format!("bad module name '{name}'")));
        }
        let relative = name.replace('.', "/");
        let mut tried = String::new();
        for template in &templates {
            let path = template.replace('?', &relative);
            if !Path::new(&path).is_file() {
                tried.push_str(&format!("\n\tno file '{path}'"));
                continue;
            }
            let script = match cache.compile_file(Path::new(&path)) {
                Ok(script) => script,
                Err(error) => {
                    return Ok((Value::Boolean(false), format!("error loading module '{name}': {}", error.message)))
                }
            };
            let function = functions.get(lua, &script.current())?;
            scripts.lock().insert(path.clone(), script);
            return Ok((Value::Function(function), path));
        }
        Ok((Value::Nil, tried))
    })?;
    impl_table.set("find_module", find)
}

#[cfg(test)]
mod tests {
    use super::valid_module_name;

    #[test]
    fn module_names_cannot_leave_the_search_path() {
        assert!(valid_module_name("resty.core"));
        assert!(valid_module_name("my_mod-2"));
        for bad in ["", "../etc/passwd", "a..b", "/abs", ".hidden", "a/b", "trail."] {
            assert!(!valid_module_name(bad), "{bad}");
        }
    }
}
