//! `ngx.var.*`: nginx variables computed from the request snapshot and the response.

use std::borrow::Cow;

use mlua::{Lua, Table, Value};

use super::{fail, lua_failure, reply, CurrentRequest};
use crate::phase::{Phase, Phases};
use crate::request::RequestState;

const VAR: Phases =
    Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content, Phase::HeaderFilter, Phase::BodyFilter, Phase::Log]);

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, impl_table: &Table) -> mlua::Result<()> {
    let slot = current.clone();
    impl_table.set(
        "var_get",
        lua.create_function(move |lua, name: mlua::LuaString| {
            let name = name.as_bytes();
            let value =
                slot.with("ngx.var", VAR, |request| variable(request, &name).map(|v| lua.create_string(v)).transpose());
            reply(lua, lua_failure(value)?)
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "var_set",
        lua.create_function(move |lua, (_, name, _): (Value, mlua::LuaString, Value)| {
            let name = name.to_string_lossy();
            let result = slot.with("ngx.var", VAR, |_| ());
            let message = match result {
                Err(message) => message,
                Ok(()) => format!(
                    "variable \"{name}\" not found for writing; maybe it is a built-in variable that is not \
                     changeable or you forgot to use \"set ${name} '';\" in the config file to define it"
                ),
            };
            fail(lua, message)
        })?,
    )
}

/// The value of `$name`, or None when the variable is unknown or has no value.
fn variable<'a>(request: &'a RequestState, name: &[u8]) -> Option<Cow<'a, [u8]>> {
    let input = &request.input;
    let query = input.query();
    let borrowed = |bytes: &'a [u8]| Some(Cow::Borrowed(bytes));
    match name {
        b"uri" | b"document_uri" => borrowed(input.path()),
        b"request_uri" if query.is_empty() => borrowed(input.path()),
        b"request_uri" => Some(Cow::Owned([input.path(), b"?", query].concat())),
        b"args" | b"query_string" => (!query.is_empty()).then_some(Cow::Borrowed(query)),
        b"is_args" => borrowed(if query.is_empty() { b"" } else { b"?" }),
        b"request_method" => borrowed(input.method()),
        b"host" => Some(Cow::Owned(host(input.header(b"host").unwrap_or_default()))),
        b"remote_addr" => borrowed(input.remote_addr()),
        b"scheme" => borrowed(input.scheme()),
        b"server_protocol" => borrowed(input.http_version()),
        b"content_type" => input.header(b"content-type").map(Cow::Borrowed),
        b"content_length" => input.header(b"content-length").map(Cow::Borrowed),
        b"status" => Some(Cow::Owned(format!("{:03}", request.response.status).into_bytes())),
        b"request_time" => {
            let elapsed = request.started_at.elapsed().as_secs_f64();
            Some(Cow::Owned(format!("{elapsed:.3}").into_bytes()))
        }
        _ => {
            if let Some(header) = name.strip_prefix(b"http_") {
                joined_header(request, header)
            } else if let Some(arg) = name.strip_prefix(b"arg_") {
                query_arg(query, arg).map(Cow::Borrowed)
            } else if let Some(cookie) = name.strip_prefix(b"cookie_") {
                input
                    .headers()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
                    .find_map(|(_, v)| cookie_value(v, cookie))
                    .map(Cow::Borrowed)
            } else {
                None
            }
        }
    }
}

/// `$host`: the Host header without its port, lowercased.
fn host(header: &[u8]) -> Vec<u8> {
    let end = if header.starts_with(b"[") {
        header.iter().position(|&b| b == b']').map_or(header.len(), |i| i + 1)
    } else {
        header.iter().position(|&b| b == b':').unwrap_or(header.len())
    };
    header[..end].to_ascii_lowercase()
}

/// `$http_x_name`: every `X-Name` header, joined as nginx joins repeated headers.
fn joined_header<'a>(request: &'a RequestState, var_name: &[u8]) -> Option<Cow<'a, [u8]>> {
    let matches = |name: &[u8]| {
        name.len() == var_name.len()
            && name
                .iter()
                .zip(var_name)
                .all(|(&n, &v)| n.to_ascii_lowercase() == if v == b'_' { b'-' } else { v.to_ascii_lowercase() })
    };
    let mut values = request.input.headers().filter(|(name, _)| matches(name)).map(|(_, value)| value);
    let first = values.next()?;
    let separator: &[u8] = if var_name.eq_ignore_ascii_case(b"cookie") { b"; " } else { b", " };
    let mut joined: Option<Vec<u8>> = None;
    for value in values {
        let all = joined.get_or_insert_with(|| first.to_vec());
        all.extend_from_slice(separator);
        all.extend_from_slice(value);
    }
    Some(joined.map_or(Cow::Borrowed(first), Cow::Owned))
}

/// `$arg_name`: the raw value of the first `name=` argument (names compare case-insensitively).
fn query_arg<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

/// The value of cookie `name` in a Cookie header.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii_start();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq] == *name).then_some(pair[eq + 1..].trim_ascii_end())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_strips_port_and_lowercases() {
        assert_eq!(host(b"Example.COM:8080"), b"example.com");
        assert_eq!(host(b"[::1]:80"), b"[::1]");
    }

    #[test]
    fn args_and_cookies_are_found_by_name() {
        assert_eq!(query_arg(b"a=1&B=2&c", b"b"), Some(&b"2"[..]));
        assert_eq!(query_arg(b"a=1&c", b"c"), Some(&b""[..]));
        assert_eq!(query_arg(b"a=1", b"z"), None);
        assert_eq!(cookie_value(b"sid=abc; theme=dark", b"theme"), Some(&b"dark"[..]));
        assert_eq!(cookie_value(b"sid=abc", b"none"), None);
    }
}
