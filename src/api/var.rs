//! `ngx.var.*`: nginx variables computed from the request snapshot and the response; variables
//! scripts set (any name that is not built in, as if the config had `set $name '';` for it);
//! and, for the other names, the host's resolver.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::{BString, Either, Lua, Table, Value};

use super::{fail, reply, string_or_number, type_name, CurrentRequest};
use crate::config::{VariableLookup, VariableResolver};
use crate::phase::Phases;
use crate::request::RequestState;

const VAR: Phases = Phases::REQUEST;

/// Built-in variables named by prefix: read-only, and not defined for writing in nginx.
const PREFIXES: [&[u8]; 3] = [b"http_", b"arg_", b"cookie_"];

pub(crate) fn register(
    lua: &Lua,
    current: &CurrentRequest,
    impl_table: &Table,
    resolver: Option<VariableResolver>,
) -> mlua::Result<()> {
    let slot = current.clone();
    // `ngx.var.name`: the value, or (nil, message) for the glue to raise. The glue answers
    // numbers (`ngx.var[1]` reads regex captures, which requests here never have), so a string
    // name arrives as bytes read straight off the stack; a text value goes back as an owned
    // string Lua copies from, without a string reference either way.
    impl_table.set(
        "var_get",
        lua.create_function(move |lua, name: Either<BString, Value>| {
            let Either::Left(name) = name else {
                return Ok(Err("bad variable name".to_string()));
            };
            let name = lowercase(&name);
            let value = slot.try_with("ngx.var", VAR, |request| {
                let value = lookup(request, &name, resolver.as_ref())?;
                Ok(value.map(|value| match std::str::from_utf8(&value) {
                    Ok(text) => Ok(Either::Left(text.to_owned())),
                    Err(_) => lua.create_string(value).map(Either::Right),
                }))
            });
            Ok(match value {
                Ok(value) => Ok(value.transpose()?),
                Err(message) => Err(message),
            })
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "var_set",
        lua.create_function(move |lua, (_, name, value): (Value, Value, Value)| {
            let Value::String(name) = name else {
                return fail(lua, "bad variable name");
            };
            let name = lowercase(&name.as_bytes()).into_owned();
            let value = match &value {
                Value::Nil => None,
                other => match string_or_number(other) {
                    Some(text) => Some(text),
                    None => {
                        let message = format!(
                            "bad argument #1 to '?' (string, number, or nil expected, but got {})",
                            type_name(other)
                        );
                        return fail(lua, message);
                    }
                },
            };
            reply(
                lua,
                slot.try_with("ngx.var", VAR, |request| set(request, &name, value.as_deref()).map(|()| Value::Nil)),
            )
        })?,
    )
}

/// nginx's variable names are case-insensitive.
fn lowercase(name: &[u8]) -> Cow<'_, [u8]> {
    if name.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// `$name`: built in, set by a script, or the host's answer; None is nil.
fn lookup<'a>(
    request: &'a RequestState,
    name: &[u8],
    resolver: Option<&VariableResolver>,
) -> Result<Option<Cow<'a, [u8]>>, String> {
    if let Some(value) = builtin(request, name) {
        return Ok(value);
    }
    if let Some(value) = request.input.variable(name) {
        return Ok(value.map(Cow::Borrowed));
    }
    let (Some(resolver), Some(phase)) = (resolver, request.phase) else {
        return Ok(None);
    };
    let lookup = VariableLookup { request_id: request.id, phase, name };
    // The host's code must not unwind through Lua.
    match catch_unwind(AssertUnwindSafe(|| resolver(&lookup))) {
        Ok(value) => Ok(value.map(Cow::Owned)),
        Err(_) => Err(format!("the host's variable resolver panicked on \"{}\"", String::from_utf8_lossy(name))),
    }
}

/// `ngx.var.name = value`: `$args` rewrites the query, other built-ins refuse (with nginx's
/// messages), any other name is the request's own variable.
fn set(request: &mut RequestState, name: &[u8], value: Option<&[u8]>) -> Result<(), String> {
    if name == b"args" {
        request.input.set_query(value.unwrap_or_default());
        return Ok(());
    }
    if builtin(request, name).is_some() {
        let name = String::from_utf8_lossy(name);
        if PREFIXES.iter().any(|prefix| name.as_bytes().starts_with(prefix)) {
            return Err(format!(
                "variable \"{name}\" not found for writing; maybe it is a built-in variable that is not \
                 changeable or you forgot to use \"set ${name} '';\" in the config file to define it first"
            ));
        }
        return Err(format!("variable \"{name}\" not changeable"));
    }
    request.input.set_variable(name, value);
    Ok(())
}

/// A built-in variable's value (inner None: no value), or None when `name` is not built in.
fn builtin<'a>(request: &'a RequestState, name: &[u8]) -> Option<Option<Cow<'a, [u8]>>> {
    let input = &request.input;
    let query = input.query();
    let borrowed = |bytes: &'a [u8]| Some(Cow::Borrowed(bytes));
    let value = match name {
        b"uri" | b"document_uri" => borrowed(input.path()),
        b"request_uri" | b"request" => {
            let mut line = Vec::with_capacity(64);
            input.append_request_line(&mut line, name == b"request_uri");
            Some(Cow::Owned(line))
        }
        b"args" | b"query_string" => (!query.is_empty()).then_some(Cow::Borrowed(query)),
        b"is_args" => borrowed(if query.is_empty() { b"" } else { b"?" }),
        b"request_method" => borrowed(input.method()),
        b"host" => Some(Cow::Owned(host(input.header(b"host").unwrap_or_default()))),
        b"remote_addr" => borrowed(input.remote_addr()),
        b"scheme" => borrowed(input.scheme()),
        b"server_protocol" => borrowed(input.http_version()),
        b"content_type" => input.header(b"content-type").map(Cow::Borrowed),
        b"content_length" => input.header(b"content-length").map(Cow::Borrowed),
        b"request_body" => input.body().map(Cow::Borrowed),
        b"status" => Some(Cow::Owned(format!("{:03}", request.response.status).into_bytes())),
        // What left body_filter, or without one the body scripts produced.
        b"body_bytes_sent" => {
            let sent = request.filtered_bytes.unwrap_or(request.response.body.len() as u64);
            Some(Cow::Owned(sent.to_string().into_bytes()))
        }
        // As nginx: wall-clock milliseconds since the start, never negative.
        b"request_time" => {
            let elapsed = (crate::request::unix_millis_now() - request.start_time).max(0.0);
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
                return None;
            }
        }
    };
    Some(value)
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
