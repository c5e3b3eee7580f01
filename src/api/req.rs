//! `ngx.req.*` reading the request snapshot (the first API slice's readers; the rest of
//! ngx.req comes with the next issue).

use mlua::{Function, Lua, Table, Value};

use super::{fail, lua_failure, reply, CurrentRequest};
use crate::phase::{Phase, Phases};

const REQUEST: Phases =
    Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content, Phase::HeaderFilter, Phase::BodyFilter, Phase::Log]);

/// lua-nginx-module's default cap on returned headers.
const DEFAULT_MAX_HEADERS: i64 = 100;

pub(crate) fn register(
    lua: &Lua,
    current: &CurrentRequest,
    impl_table: &Table,
    headers_mt: &Table,
) -> mlua::Result<()> {
    impl_table.set("get_headers", get_headers(lua, current, Headers::Request, headers_mt)?)?;
    let slot = current.clone();
    impl_table.set(
        "get_body_data",
        lua.create_function(move |lua, ()| {
            let body = slot.with("ngx.req.get_body_data", REQUEST, |request| {
                request.input.body().map(|body| lua.create_string(body)).transpose()
            });
            reply(lua, lua_failure(body)?)
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "get_method",
        lua.create_function(move |lua, ()| {
            let method = slot.with("ngx.req.get_method", REQUEST, |request| lua.create_string(request.input.method()));
            reply(lua, lua_failure(method)?)
        })?,
    )
}

/// Whose headers a `get_headers` function returns.
#[derive(Clone, Copy)]
pub(crate) enum Headers {
    Request,
    Response,
}

/// `ngx.req.get_headers(max?, raw?)` or `ngx.resp.get_headers(max?, raw?)`: a table of at most
/// `max` headers (default 100, 0 for all; "truncated" comes second when there were more), names
/// lowercased and looked up with `headers_mt` unless `raw`.
pub(crate) fn get_headers(
    lua: &Lua,
    current: &CurrentRequest,
    which: Headers,
    headers_mt: &Table,
) -> mlua::Result<Function> {
    let (slot, headers_mt) = (current.clone(), headers_mt.clone());
    lua.create_function(move |lua, (max, raw): (Option<i64>, Option<bool>)| {
        let limit = match max.unwrap_or(DEFAULT_MAX_HEADERS) {
            0 => usize::MAX,
            n if n < 0 => return fail(lua, "bad argument #1 to 'get_headers' (max must be >= 0)"),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let raw = raw.unwrap_or(false);
        let result = match which {
            Headers::Request => slot.with("ngx.req.get_headers", REQUEST, |request| {
                headers_reply(lua, request.input.headers(), limit, raw, &headers_mt)
            }),
            Headers::Response => slot.with("ngx.resp.get_headers", REQUEST, |request| {
                let headers = request.response.headers.iter().map(|(name, value)| (name.as_slice(), value.as_slice()));
                headers_reply(lua, headers, limit, raw, &headers_mt)
            }),
        };
        lua_failure(result)?.or_else(|message| fail(lua, message))
    })
}

fn headers_reply<'a>(
    lua: &Lua,
    headers: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    limit: usize,
    raw: bool,
    headers_mt: &Table,
) -> mlua::Result<(Value, Value)> {
    let truncated = headers.len() > limit;
    let table = headers_table(lua, headers.take(limit), raw)?;
    if !raw {
        table.set_metatable(Some(headers_mt.clone()))?;
    }
    let truncated = if truncated { Value::String(lua.create_string("truncated")?) } else { Value::Nil };
    Ok((Value::Table(table), truncated))
}

/// The table `get_headers` returns: names lowercased (unless `raw`), repeated headers as arrays
/// of their values in order.
fn headers_table<'a>(lua: &Lua, headers: impl Iterator<Item = (&'a [u8], &'a [u8])>, raw: bool) -> mlua::Result<Table> {
    // All names, lowercased, in one buffer; values stay borrowed from the snapshot.
    let mut names = Vec::with_capacity(256);
    let mut fields = Vec::with_capacity(16);
    for (name, value) in headers {
        let start = names.len();
        names.extend(name.iter().map(|b| if raw { *b } else { b.to_ascii_lowercase() }));
        fields.push((start, names.len(), value));
    }
    let name = |i: usize| &names[fields[i].0..fields[i].1];
    let repeated = (1..fields.len()).any(|i| (0..i).any(|j| name(i) == name(j)));
    if !repeated {
        // The common case, in one call into Lua: distinct UTF-8 names and values.
        let text = std::str::from_utf8(&names).ok();
        let utf8: Option<Vec<(&str, &str)>> = fields
            .iter()
            .map(|&(start, end, value)| Some((text?.get(start..end)?, std::str::from_utf8(value).ok()?)))
            .collect();
        if let Some(utf8) = utf8 {
            return lua.create_table_from(utf8);
        }
    }
    let table = lua.create_table_with_capacity(0, fields.len())?;
    for (i, &(_, _, value)) in fields.iter().enumerate() {
        let key = lua.create_string(name(i))?;
        let value = lua.create_string(value)?;
        match table.raw_get::<Value>(&key)? {
            Value::Nil => table.raw_set(key, value)?,
            Value::Table(values) => values.raw_push(value)?,
            first => table.raw_set(key, lua.create_sequence_from([first, Value::String(value)])?)?,
        }
    }
    Ok(table)
}
