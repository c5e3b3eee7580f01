//! `ngx.sleep(seconds)`: an engine-driven wait. The phase yields; the engine's clock wakes the
//! request when the time is up (0 yields once). Also the phase check of `ngx.thread.*`.

use std::time::Duration;

use mlua::{Lua, Table, Value};

use super::{reply, CurrentRequest, YIELDING};

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, impl_table: &Table) -> mlua::Result<()> {
    let slot = current.clone();
    // ngx.thread.* check their phase with this (the rest of them is Lua).
    impl_table.set(
        "check_yield",
        lua.create_function(move |lua, api: String| reply(lua, slot.with(&api, YIELDING, |_| Value::Nil)))?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "sleep",
        lua.create_function(move |lua, seconds: Value| {
            reply(
                lua,
                slot.try_with("ngx.sleep", YIELDING, |request| {
                    let seconds = match seconds {
                        Value::Integer(i) => i as f64,
                        Value::Number(n) => n,
                        _ => return Err("bad argument #1 to 'sleep' (number expected)".to_string()),
                    };
                    if !(0.0..=1e9).contains(&seconds) {
                        return Err(format!("invalid sleep duration \"{}\"", super::format_number(seconds)));
                    }
                    Ok(request.waits.sleep(Duration::from_secs_f64(seconds)))
                }),
            )
        })?,
    )
}
