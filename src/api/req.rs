//! `ngx.req.*` reading the request snapshot (the first API slice's readers; the rest of
//! ngx.req comes with the next issue).

use mlua::{Lua, Table, Value};

use super::{fail, with_request};
use crate::phase::{Phase, Phases};

const REQUEST: Phases = Phases::of(&[
    Phase::Rewrite,
    Phase::Access,
    Phase::Content,
    Phase::HeaderFilter,
    Phase::BodyFilter,
    Phase::Log,
]);

/// lua-nginx-module's default cap on returned headers.
const DEFAULT_MAX_HEADERS: i64 = 100;

pub(crate) fn register(lua: &Lua, impl_table: &Table, headers_mt: &Table) -> mlua::Result<()> {
    let headers_mt = headers_mt.clone();
    impl_table.set(
        "get_headers",
        lua.create_function(move |lua, (max, raw): (Option<i64>, Option<bool>)| {
            let max = match max.unwrap_or(DEFAULT_MAX_HEADERS) {
                0 => i64::MAX,
                n if n < 0 => return fail(lua, "bad argument #1 to 'get_headers' (max must be >= 0)"),
                n => n,
            };
            let raw = raw.unwrap_or(false);
            let result = with_request(lua, "ngx.req.get_headers", REQUEST, |request| {
                let headers = request.input.headers();
                let table = lua.create_table_with_capacity(0, headers.len())?;
                let mut truncated = false;
                for (count, (name, value)) in headers.enumerate() {
                    if count as i64 >= max {
                        truncated = true;
                        break;
                    }
                    let key = if raw { lua.create_string(name)? } else { lua.create_string(name.to_ascii_lowercase())? };
                    let value = lua.create_string(value)?;
                    match table.raw_get::<Value>(&key)? {
                        Value::Nil => table.raw_set(key, value)?,
                        Value::Table(values) => values.raw_push(value)?,
                        first => table.raw_set(key, lua.create_sequence_from([first, Value::String(value)])?)?,
                    }
                }
                if !raw {
                    table.set_metatable(Some(headers_mt.clone()))?;
                }
                Ok::<_, mlua::Error>((table, truncated))
            });
            match result {
                Ok(Ok((table, true))) => Ok((Value::Table(table), Value::String(lua.create_string("truncated")?))),
                Ok(Ok((table, false))) => Ok((Value::Table(table), Value::Nil)),
                Ok(Err(error)) => Err(error),
                Err(message) => fail(lua, message),
            }
        })?,
    )?;
    impl_table.set(
        "get_body_data",
        lua.create_function(|lua, ()| {
            let body = with_request(lua, "ngx.req.get_body_data", REQUEST, |request| {
                request.input.body().map(|body| lua.create_string(body)).transpose()
            });
            match body {
                Ok(body) => Ok((body?.map_or(Value::Nil, Value::String), Value::Nil)),
                Err(message) => fail(lua, message),
            }
        })?,
    )?;
    impl_table.set(
        "get_method",
        lua.create_function(|lua, ()| {
            match with_request(lua, "ngx.req.get_method", REQUEST, |request| lua.create_string(request.input.method())) {
                Ok(method) => Ok((Value::String(method?), Value::Nil)),
                Err(message) => fail(lua, message),
            }
        })?,
    )
}
