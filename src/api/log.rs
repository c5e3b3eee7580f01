//! `ngx.log(level, ...)` and `print(...)` (= `ngx.log(ngx.NOTICE, ...)`), to the host's sink
//! with the phase, the caller's chunk:line and the request id.

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{append_scalar, fail, type_name, CurrentRequest};
use crate::log::{LogLevel, LogRecord, Logger};
use crate::phase::Phase;

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, impl_table: &Table, logger: Logger) -> mlua::Result<()> {
    let (print_logger, print_current) = (logger.clone(), current.clone());
    let current = current.clone();
    impl_table.set(
        "log",
        lua.create_function(move |lua, mut args: MultiValue| {
            let level = match level_arg(args.pop_front().unwrap_or(Value::Nil)) {
                Ok(level) => level,
                Err(reason) => return fail(lua, format!("bad argument #1 to 'log' ({reason})")),
            };
            log(lua, &current, &logger, level, "log", &args)
        })?,
    )?;
    impl_table.set(
        "print_log",
        lua.create_function(move |lua, args: MultiValue| {
            log(lua, &print_current, &print_logger, LogLevel::Notice, "print", &args)
        })?,
    )
}

/// `ngx.log`'s level: an integer (as luaL_checkint reads it) among nginx's levels.
fn level_arg(value: Value) -> Result<LogLevel, String> {
    let number = match &value {
        Value::Integer(n) => Some(*n),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(*n as i64),
        Value::String(s) => s.to_str().ok().and_then(|s| s.trim().parse().ok()),
        _ => None,
    };
    let number = number.ok_or_else(|| format!("number expected, got {}", type_name(&value)))?;
    LogLevel::from_number(number).ok_or_else(|| format!("bad log level: {number}"))
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
        let position = index + if api == "log" { 2 } else { 1 };
        match arg {
            // A light userdata other than ngx.null adds nothing, as in lua-nginx-module.
            Value::LightUserData(ud) if !ud.0.is_null() => {}
            Value::Table(table) => match tostring_metamethod(table) {
                Some(tostring) => message.extend_from_slice(&tostring.call::<mlua::LuaString>(arg)?.as_bytes()),
                None => {
                    let reason = "expected table to have __tostring metamethod";
                    return fail(lua, format!("bad argument #{position} to '{api}' ({reason})"));
                }
            },
            scalar if append_scalar(&mut message, scalar) => {}
            other => {
                let reason = format!("string, number, boolean, or nil expected, got {}", type_name(other));
                return fail(lua, format!("bad argument #{position} to '{api}' ({reason})"));
            }
        }
    }
    let (phase, request_id) = current.peek(|request| (request.and_then(|r| r.phase), request.map_or(0, |r| r.id)));
    let message = String::from_utf8_lossy(&message);
    script_log(lua, logger, level, phase, request_id, &message);
    Ok((Value::Nil, Value::Nil))
}

/// Logs `message` at the line of the script that called the running ngx.* function (through
/// one Lua wrapper of the prelude: level 0 is the Rust function, 1 the wrapper, 2 the script).
pub(crate) fn script_log(
    lua: &Lua,
    logger: &Logger,
    level: LogLevel,
    phase: Option<Phase>,
    request_id: u64,
    message: &str,
) {
    if !logger.enabled(level) {
        return;
    }
    let location = lua
        .inspect_stack(2, |debug| {
            let line = debug.current_line().unwrap_or(0);
            format!("{}:{line}", debug.source().short_src.as_deref().unwrap_or("?"))
        })
        .unwrap_or_default();
    logger.log(&LogRecord { level, phase, location: &location, message, request_id });
}

fn tostring_metamethod(table: &Table) -> Option<Function> {
    table.metatable()?.raw_get::<Function>("__tostring").ok()
}
