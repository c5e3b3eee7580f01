//! `ngx.ctx`: one Lua table per request, shared by all its phases, created on first use; and
//! the request's globals table, for `load` in the sandbox.

use mlua::{Lua, Table, Value};

use super::{fail, with_request};
use crate::phase::{Phase, Phases};

const CTX: Phases = Phases::of(&[
    Phase::Rewrite,
    Phase::Access,
    Phase::Content,
    Phase::HeaderFilter,
    Phase::BodyFilter,
    Phase::Log,
    Phase::Timer,
]);

pub(crate) fn register(lua: &Lua, impl_table: &Table) -> mlua::Result<()> {
    impl_table.set(
        "get_ctx",
        lua.create_function(|lua, ()| {
            let created = lua.create_table()?;
            match with_request(lua, "ngx.ctx", CTX, |request| request.ctx.get_or_insert(created).clone()) {
                Ok(ctx) => Ok((Value::Table(ctx), Value::Nil)),
                Err(message) => fail(lua, message),
            }
        })?,
    )?;
    impl_table.set(
        "set_ctx",
        lua.create_function(|lua, value: Value| {
            let Value::Table(table) = value else {
                return fail(lua, format!("ctx should be a table while getting a {}", value.type_name()));
            };
            match with_request(lua, "ngx.ctx", CTX, |request| request.ctx = Some(table)) {
                Ok(()) => Ok((Value::Nil, Value::Nil)),
                Err(message) => fail(lua, message),
            }
        })?,
    )?;
    impl_table.set(
        "current_env",
        lua.create_function(|lua, ()| {
            let current = lua.try_app_data_ref::<super::CurrentRequest>().ok().flatten();
            Ok(current.and_then(|current| current.0.as_ref().and_then(|request| request.env.clone())))
        })?,
    )?;
    Ok(())
}
