//! `ngx.log(level, ...)` and `print(...)` (= `ngx.log(ngx.NOTICE, ...)`), to the host's sink
//! with the phase, the caller's chunk:line and the request id.

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{append_scalar, fail, CurrentRequest};
use crate::log::{LogLevel, LogRecord, Logger};

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, impl_table: &Table, logger: Logger) -> mlua::Result<()> {
    let (print_logger, print_current) = (logger.clone(), current.clone());
    let current = current.clone();
    impl_table.set(
        "log",
        lua.create_function(move |lua, mut args: MultiValue| {
            let level = match args.pop_front() {
                Some(Value::Integer(n)) => LogLevel::from_number(n),
                Some(Value::Number(n)) if n.fract() == 0.0 => LogLevel::from_number(n as i64),
                _ => None,
            };
            match level {
                Some(level) => log(lua, &current, &logger, level, "log", &args),
                None => fail(lua, "bad argument #1 to 'log' (bad log level)"),
            }
        })?,
    )?;
    impl_table.set(
        "print_log",
        lua.create_function(move |lua, args: MultiValue| {
            log(lua, &print_current, &print_logger, LogLevel::Notice, "print", &args)
        })?,
    )
}

fn log(
    lua: &Lua,
    current: &CurrentRequest,
    logger: &Logger,
    level: LogLevel,
    api: &str,
    args: &MultiValue,
) -> mlua::Result<(Value, Value)> {
    if !logger.enabled(level) {
        return Ok((Value::Nil, Value::Nil));
    }
    let mut message = Vec::new();
    for (index, arg) in args.iter().enumerate() {
        if append_scalar(&mut message, arg) {
            continue;
        }
        match tostring_metamethod(arg) {
            Some(tostring) => message.extend_from_slice(&tostring.call::<mlua::LuaString>(arg)?.as_bytes()),
            None => {
                let position = index + if api == "log" { 2 } else { 1 };
                return fail(
                    lua,
                    format!("bad argument #{position} to '{api}' (expected table to have __tostring metamethod)"),
                );
            }
        }
    }
    // Level 0 is this function, 1 the Lua wrapper raising its errors, 2 the script.
    let location = lua
        .inspect_stack(2, |debug| {
            let line = debug.current_line().unwrap_or(0);
            format!("{}:{line}", debug.source().short_src.as_deref().unwrap_or("?"))
        })
        .unwrap_or_default();
    let (phase, request_id) = current.peek(|request| (request.and_then(|r| r.phase), request.map_or(0, |r| r.id)));
    let message = String::from_utf8_lossy(&message);
    logger.log(&LogRecord { level, phase, location: &location, message: &message, request_id });
    Ok((Value::Nil, Value::Nil))
}

fn tostring_metamethod(value: &Value) -> Option<Function> {
    match value {
        Value::Table(table) => table.metatable()?.raw_get::<Function>("__tostring").ok(),
        _ => None,
    }
}
