//! `ngx.ctx`: one Lua table per request, shared by all its phases, created on first use; and
//! the request's globals table, for `load` in the sandbox; and the light threads of the
//! running phase, for `ngx.thread` (prelude.lua).

use mlua::{Lua, Table, Value};

use super::{fail, lua_failure, reply, type_name, CurrentRequest, YIELDING};
use crate::phase::Phases;

/// Everywhere but init (a timer run has a ctx of its own, as in lua-nginx-module).
const CTX: Phases = Phases::NOT_INIT;

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, impl_table: &Table) -> mlua::Result<()> {
    let slot = current.clone();
    impl_table.set(
        "get_ctx",
        lua.create_function(move |lua, ()| {
            let ctx = slot.with("ngx.ctx", CTX, |request| match &request.ctx {
                Some(ctx) => Ok(ctx.clone()),
                None => lua.create_table().inspect(|ctx| request.ctx = Some(ctx.clone())),
            });
            reply(lua, lua_failure(ctx)?)
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "set_ctx",
        lua.create_function(move |lua, value: Value| {
            let Value::Table(table) = value else {
                return fail(lua, format!("ctx should be a table while getting a {}", type_name(&value)));
            };
            reply(lua, slot.with("ngx.ctx", CTX, |request| request.ctx = Some(table)).map(|()| Value::Nil))
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "current_env",
        lua.create_function(move |_, ()| Ok(slot.peek(|request| request.and_then(|request| request.env.clone()))))?,
    )?;
    // The light threads of the running phase; `new` becomes them when it has none yet.
    let slot = current.clone();
    impl_table.set(
        "current_threads",
        lua.create_function(move |lua, new: Option<Table>| {
            let threads = slot.with("ngx.thread", YIELDING, |request| {
                if request.threads.is_none() {
                    request.threads = new;
                }
                request.threads.clone()
            });
            reply(lua, threads)
        })?,
    )?;
    Ok(())
}
