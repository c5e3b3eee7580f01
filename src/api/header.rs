//! `ngx.header.HEADER` (read, set, clear) and `ngx.resp.get_headers`, over the response headers
//! scripts build (`Response::headers`), with lua-nginx-module's rules: `_` in names becomes `-`,
//! names compare case-insensitively, a table sets several header lines, nil or `{}` clears, and
//! nginx's single-value headers keep only the last value.

use mlua::{Function, Lua, Table, Value};

use super::log::script_log;
use super::{format_number, lua_failure, reply, CurrentRequest};
use crate::log::{LogLevel, Logger};
use crate::phase::Phases;
use crate::request::RequestState;

/// nginx's builtin response headers that hold one value (ngx_http_lua_headers_out.c).
const SINGLE_VALUE: [&str; 14] = [
    "Server",
    "Date",
    "Content-Encoding",
    "Location",
    "Refresh",
    "Last-Modified",
    "Content-Range",
    "Accept-Ranges",
    "WWW-Authenticate",
    "Expires",
    "E-Tag",
    "ETag",
    "Content-Length",
    "Content-Type",
];

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, impl_table: &Table, logger: &Logger) -> mlua::Result<()> {
    let tostring: Function = lua.globals().get("tostring")?;
    let (slot, to_text) = (current.clone(), tostring.clone());
    impl_table.set(
        "header_get",
        lua.create_function(move |lua, (_, key): (Value, Value)| {
            let name = lookup_name(&text(&to_text, &key)?);
            let values = slot.with("ngx.header", Phases::REQUEST, |request| header_value(lua, request, &name));
            reply(lua, lua_failure(values)?)
        })?,
    )?;
    let (slot, logger) = (current.clone(), logger.clone());
    impl_table.set(
        "header_set",
        lua.create_function(move |lua, (_, key, value): (Value, Value, Value)| {
            // Converted before taking the request: tostring may run a script's __tostring.
            let name = text(&tostring, &key)?;
            let values = match &value {
                Value::Nil => Vec::new(),
                Value::Table(table) => (1..=table.raw_len())
                    .map(|index| text(&tostring, &table.raw_get(index)?))
                    .collect::<mlua::Result<_>>()?,
                single => vec![text(&tostring, single)?],
            };
            let result = slot.try_with("ngx.header", Phases::REQUEST, |request| {
                if request.headers_out() {
                    let message = "attempt to set ngx.header.HEADER after sending out response headers";
                    script_log(lua, &logger, LogLevel::Err, request.phase, request.id, message);
                    return Ok(());
                }
                set_header(request, &name, values)
            });
            reply(lua, result.map(|()| Value::Nil))
        })?,
    )
}

/// A header name or value as lua-resty-core makes it: strings as they are, numbers as
/// `ngx.say` prints them, anything else through `tostring`.
fn text(tostring: &Function, value: &Value) -> mlua::Result<Vec<u8>> {
    Ok(match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) => i.to_string().into_bytes(),
        Value::Number(n) => format_number(*n).into_bytes(),
        Value::Boolean(b) => b.to_string().into_bytes(),
        other => tostring.call::<mlua::LuaString>(other)?.as_bytes().to_vec(),
    })
}

/// `ngx.header.x_token` reads `X-Token`: lua-nginx-module turns `_` into `-` by default.
fn lookup_name(key: &[u8]) -> Vec<u8> {
    key.iter().map(|&b| if b == b'_' { b'-' } else { b }).collect()
}

/// The value(s) of a response header: nil, a string, or a table when it has several lines.
fn header_value(lua: &Lua, request: &RequestState, name: &[u8]) -> mlua::Result<Value> {
    let mut values = request.response.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let Some(first) = values.next() else {
        return Ok(Value::Nil);
    };
    let first = lua.create_string(first)?;
    match values.next() {
        None => Ok(Value::String(first)),
        Some(second) => {
            let table = lua.create_sequence_from([first, lua.create_string(second)?])?;
            for value in values {
                table.raw_push(lua.create_string(value)?)?;
            }
            Ok(Value::Table(table))
        }
    }
}

/// Replaces every line of the header with `values` (none clears it), at the place of its first
/// line. Names and values are %-escaped where they could split the header line, as
/// lua-nginx-module does; empty values are no header at all in nginx.
fn set_header(request: &mut RequestState, key: &[u8], values: Vec<Vec<u8>>) -> Result<(), String> {
    let mut name = escape(&lookup_name(key), unsafe_in_name);
    let mut values: Vec<Vec<u8>> = values.iter().map(|value| escape(value, unsafe_in_value)).collect();
    if SINGLE_VALUE.iter().any(|single| single.as_bytes().eq_ignore_ascii_case(&name)) {
        values.drain(..values.len().saturating_sub(1));
    }
    values.retain(|value| !value.is_empty());
    if name.eq_ignore_ascii_case(b"content-length") && !values.iter().all(|value| is_length(value)) {
        return Err("failed to set header".into());
    }
    if name.eq_ignore_ascii_case(b"content-type") {
        // nginx keeps the type apart and always writes it as `Content-Type`.
        name = b"Content-Type".to_vec();
        request.content_type_set = true;
    }
    let headers = &mut request.response.headers;
    let at = headers.iter().position(|(n, _)| n.eq_ignore_ascii_case(&name)).unwrap_or(headers.len());
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
    headers.splice(at..at, values.into_iter().map(|value| (name.clone(), value)));
    Ok(())
}

/// nginx's `ngx_atosz`: decimal digits only, within `off_t`.
fn is_length(value: &[u8]) -> bool {
    value.iter().all(u8::is_ascii_digit) && std::str::from_utf8(value).is_ok_and(|text| text.parse::<i64>().is_ok())
}

/// Bytes that would end or split a header line: controls other than tab, and DEL
/// (lua-nginx-module's header value and redirect URI checks).
pub(crate) fn unsafe_in_value(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// Bytes not allowed in a header name: controls, space, separators and non-ASCII.
fn unsafe_in_name(byte: u8) -> bool {
    byte <= b' ' || byte >= 0x7f || b"\"(),/:;<=>?@[\\]{}".contains(&byte)
}

fn escape(bytes: &[u8], unsafe_byte: fn(u8) -> bool) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        if unsafe_byte(byte) {
            out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
        } else {
            out.push(byte);
        }
    }
    out
}
