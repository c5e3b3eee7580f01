//! The `host` module: `require("host").name(...)` calls the host function registered under
//! that name, converting arguments and results between Lua values and `HostValue`s.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::{Lua, MultiValue, Table, Value};

use super::{fail, reply, type_name, CurrentRequest, YIELDING};
use crate::host::{HostCall, HostFunction, HostValue, MAX_VALUE_DEPTH};

/// Builds the module's functions, still raw: `sync` ones return results (or an error for the
/// glue to raise), `async` ones start a host-driven wait and return its id.
pub(crate) fn module(
    lua: &Lua,
    current: &CurrentRequest,
    functions: &[HostFunction],
    async_functions: &[String],
) -> mlua::Result<Table> {
    let sync = lua.create_table_with_capacity(0, functions.len())?;
    for function in functions {
        sync.raw_set(function.name.as_str(), host_function(lua, current, function)?)?;
    }
    let asynchronous = lua.create_table_with_capacity(0, async_functions.len())?;
    for name in async_functions {
        asynchronous.raw_set(name.as_str(), async_function(lua, current, name)?)?;
    }
    let module = lua.create_table()?;
    module.raw_set("sync", sync)?;
    module.raw_set("async", asynchronous)?;
    Ok(module)
}

fn async_function(lua: &Lua, current: &CurrentRequest, name: &str) -> mlua::Result<mlua::Function> {
    let (name, slot) = (name.to_string(), current.clone());
    let api = format!("host function '{name}'");
    lua.create_function(move |lua, args: MultiValue| {
        let args = args.iter().enumerate().map(|(i, arg)| host_arg(&name, i, arg)).collect::<Result<Vec<_>, _>>();
        reply(lua, args.and_then(|args| slot.with(&api, YIELDING, |request| request.waits.host(name.clone(), args))))
    })
}

fn host_function(lua: &Lua, current: &CurrentRequest, function: &HostFunction) -> mlua::Result<mlua::Function> {
    let (function, slot) = (function.clone(), current.clone());
    lua.create_function(move |lua, args: MultiValue| {
        let request_id = slot.peek(|request| request.map_or(0, |request| request.id));
        match call_host(&function, request_id, &args) {
            Ok(results) => results.into_iter().map(|value| lua_value(lua, value)).collect(),
            Err(message) => fail(lua, message).map(|(signal, message)| MultiValue::from_vec(vec![signal, message])),
        }
    })
}

/// Calls the host with the script's arguments; a host panic is one more error for the script.
fn call_host(function: &HostFunction, request_id: u64, args: &MultiValue) -> Result<Vec<HostValue>, String> {
    let args =
        args.iter().enumerate().map(|(i, arg)| host_arg(&function.name, i, arg)).collect::<Result<Vec<_>, _>>()?;
    let call = HostCall { name: &function.name, request_id, args: &args };
    catch_unwind(AssertUnwindSafe(|| (function.function)(&call)))
        .unwrap_or_else(|_| Err(format!("host function '{}' panicked", function.name)))
}

fn host_arg(name: &str, index: usize, value: &Value) -> Result<HostValue, String> {
    host_value(value, 0).map_err(|reason| format!("bad argument #{} to '{name}' ({reason})", index + 1))
}

/// A Lua value as the host sees it.
fn host_value(value: &Value, depth: usize) -> Result<HostValue, String> {
    Ok(match value {
        Value::Nil => HostValue::Nil,
        Value::LightUserData(ud) if ud.0.is_null() => HostValue::Nil,
        Value::Boolean(b) => HostValue::Boolean(*b),
        Value::Integer(i) => HostValue::Integer(*i),
        Value::Number(n) => HostValue::Number(*n),
        Value::String(s) => HostValue::String(s.as_bytes().to_vec()),
        Value::Table(table) => host_table(table, depth)?,
        other => return Err(format!("{} cannot be passed to the host", type_name(other))),
    })
}

fn host_table(table: &Table, depth: usize) -> Result<HostValue, String> {
    if depth >= MAX_VALUE_DEPTH {
        return Err("table nested too deep".into());
    }
    let mut items = Vec::new();
    let mut fields = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| e.to_string())?;
        let value = host_value(&value, depth + 1)?;
        match key {
            Value::String(key) => fields.push((key.as_bytes().to_vec(), value)),
            Value::Integer(i) if i >= 1 => items.push((i, value)),
            _ => return Err("table keys must be strings or array indexes".into()),
        }
    }
    if !items.is_empty() {
        items.sort_unstable_by_key(|(index, _)| *index);
        let dense = items.iter().enumerate().all(|(i, (index, _))| usize::try_from(*index) == Ok(i + 1));
        if !fields.is_empty() || !dense {
            return Err("table mixes array and map keys, or its array has holes".into());
        }
        return Ok(HostValue::Array(items.into_iter().map(|(_, value)| value).collect()));
    }
    Ok(HostValue::Map(fields))
}

/// A host result as a Lua value.
pub(crate) fn lua_value(lua: &Lua, value: HostValue) -> mlua::Result<Value> {
    Ok(match value {
        HostValue::Nil => Value::Nil,
        HostValue::Boolean(b) => Value::Boolean(b),
        HostValue::Integer(i) => Value::Integer(i),
        HostValue::Number(n) => Value::Number(n),
        HostValue::String(bytes) => Value::String(lua.create_string(bytes)?),
        HostValue::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.into_iter().enumerate() {
                table.raw_set(index + 1, lua_value(lua, item)?)?;
            }
            Value::Table(table)
        }
        HostValue::Map(fields) => {
            let table = lua.create_table_with_capacity(0, fields.len())?;
            for (key, value) in fields {
                table.raw_set(lua.create_string(key)?, lua_value(lua, value)?)?;
            }
            Value::Table(table)
        }
    })
}
