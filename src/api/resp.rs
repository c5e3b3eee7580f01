//! Response output and control: `ngx.say`, `ngx.print`, `ngx.flush`, `ngx.exit`,
//! `ngx.redirect`, `ngx.status`, `ngx.headers_sent`.

use std::sync::Arc;

use mlua::{BString, Lua, MultiValue, Table, Value};

use super::header::unsafe_in_value;
use super::log::script_log;
use super::{append_scalar, reply, type_name, CurrentRequest};
use crate::log::{LogLevel, Logger};
use crate::phase::{Phase, Phases};
use crate::request::RequestState;

const OUTPUT: Phases = Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content]);
const EXIT: Phases = Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content, Phase::HeaderFilter, Phase::Timer]);

/// Exit statuses that close the connection rather than answer: nginx lets them through even
/// after the headers went out (request timeout, client closed, close).
const CLOSING_STATUSES: [i64; 3] = [408, 499, 444];

/// nginx allows these statuses in `ngx.redirect`.
const REDIRECT_STATUSES: [i64; 5] = [301, 302, 303, 307, 308];

/// Nested tables deeper than this are refused rather than overflowing the stack.
const MAX_NESTING: usize = 100;

pub(crate) fn register(
    lua: &Lua,
    current: &CurrentRequest,
    impl_table: &Table,
    logger: &Logger,
    default_type: &Arc<str>,
    max_body: usize,
) -> mlua::Result<()> {
    for (api, newline) in [("say", true), ("print", false)] {
        let (slot, default) = (current.clone(), default_type.clone());
        let write = move |lua: &Lua, append: &dyn Fn(&mut Vec<u8>) -> Result<(), String>| {
            output(lua, &slot, &default, api, newline, max_body, append)
        };
        let write_values = write.clone();
        impl_table.set(
            api,
            lua.create_function(move |lua, args: MultiValue| {
                write_values(lua, &|body| append_arguments(body, &args, api))
            })?,
        )?;
        // The prelude calls this one for a single string argument, the common case: it comes
        // copied straight off the Lua stack, without the generic conversion of the arguments.
        impl_table.set(
            format!("{api}_string"),
            lua.create_function(move |lua, text: BString| {
                write(lua, &|body| {
                    body.extend_from_slice(&text);
                    Ok(())
                })
            })?,
        )?;
    }
    let (slot, default) = (current.clone(), default_type.clone());
    impl_table.set(
        "flush",
        lua.create_function(move |lua, _: MultiValue| {
            reply(
                lua,
                slot.try_with("ngx.flush", OUTPUT, |request| {
                    request.send_headers(&default);
                    Ok(Value::Integer(1))
                }),
            )
        })?,
    )?;
    let (slot, log) = (current.clone(), logger.clone());
    impl_table.set(
        "exit",
        lua.create_function(move |lua, status: Value| {
            reply(
                lua,
                slot.try_with("ngx.exit", EXIT, |request| {
                    let mut code = integer_arg(&status, 1, "exit")?;
                    // The status line is gone: an error status can only end the request.
                    if request.headers_out() && code >= 300 && !CLOSING_STATUSES.contains(&code) {
                        let sent = request.response.status;
                        if code != i64::from(sent) {
                            let message =
                                format!("attempt to set status {code} via ngx.exit after sending out the response status {sent}");
                            script_log(lua, &log, LogLevel::Err, request.phase, request.id, &message);
                        }
                        code = 200;
                    }
                    request.response.exit_code = Some(code);
                    Ok(Value::Nil)
                }),
            )
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "redirect",
        lua.create_function(move |lua, (uri, status): (Value, Value)| {
            reply(lua, slot.try_with("ngx.redirect", OUTPUT, |request| redirect(request, &uri, &status)))
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "get_status",
        lua.create_function(move |lua, ()| {
            reply(
                lua,
                slot.try_with("ngx.status", Phases::REQUEST, |request| {
                    Ok(Value::Integer(request.response.status.into()))
                }),
            )
        })?,
    )?;
    let (slot, log) = (current.clone(), logger.clone());
    impl_table.set(
        "set_status",
        lua.create_function(move |lua, status: Value| {
            reply(
                lua,
                slot.try_with("ngx.status", Phases::REQUEST, |request| {
                    let code = integer_arg(&status, 1, "status")?;
                    let code = u16::try_from(code).ok().filter(|code| (100..=999).contains(code));
                    let code = code.ok_or_else(|| "bad argument #1 to 'status' (invalid HTTP status)".to_string())?;
                    // As in nginx, a status set after the headers went out changes nothing.
                    if request.headers_out() {
                        let message = "attempt to set ngx.status after sending out response headers";
                        script_log(lua, &log, LogLevel::Err, request.phase, request.id, message);
                    } else {
                        request.response.status = code;
                    }
                    Ok(Value::Nil)
                }),
            )
        })?,
    )?;
    let slot = current.clone();
    impl_table.set(
        "headers_sent",
        lua.create_function(move |lua, ()| {
            reply(
                lua,
                slot.try_with("ngx.headers_sent", Phases::REQUEST, |request| {
                    Ok(Value::Boolean(request.response.headers_sent))
                }),
            )
        })?,
    )?;
    Ok(())
}

fn output(
    lua: &Lua,
    slot: &CurrentRequest,
    default_type: &str,
    api: &str,
    newline: bool,
    max_body: usize,
    append: &dyn Fn(&mut Vec<u8>) -> Result<(), String>,
) -> mlua::Result<(Value, Value)> {
    reply(
        lua,
        slot.try_with(api, OUTPUT, |request| {
            let body = &mut request.response.body;
            let mark = body.len();
            if let Err(message) = append(body) {
                body.truncate(mark);
                return Err(message);
            }
            if newline {
                body.push(b'\n');
            }
            // The body waits in the host's memory until the phase ends: a loop of ngx.print is
            // a memory bomb the Lua heap's cap does not see.
            if max_body > 0 && body.len() > max_body {
                body.truncate(mark);
                return Err(format!(
                    "ngx.{api}: the response body would exceed {max_body} bytes, the worker's memory cap"
                ));
            }
            // The first output sends the headers in nginx.
            request.send_headers(default_type);
            Ok(Value::Integer(1))
        }),
    )
}

/// Appends the arguments of `ngx.say`/`ngx.print` in order.
fn append_arguments(body: &mut Vec<u8>, args: &MultiValue, api: &str) -> Result<(), String> {
    for (index, arg) in args.iter().enumerate() {
        append_output(body, arg, 0).map_err(|reason| format!("bad argument #{} to '{api}' ({reason})", index + 1))?;
    }
    Ok(())
}

/// Appends one argument of `ngx.say`/`ngx.print`: a scalar, or an array table of them
/// (OpenResty's iolist), nested.
pub(crate) fn append_output(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), String> {
    match value {
        Value::Table(table) => {
            if depth >= MAX_NESTING {
                return Err("table nested too deep".into());
            }
            let len = array_len(table).ok_or("non-array table found")?;
            for index in 1..=len {
                let element: Value = table.raw_get(index).map_err(|e| e.to_string())?;
                match element {
                    Value::Table(_) => append_output(out, &element, depth + 1)?,
                    Value::LightUserData(ud) if !ud.0.is_null() => {}
                    scalar if append_scalar(out, &scalar) => {}
                    other => return Err(format!("bad data type {} found", type_name(&other))),
                }
            }
            Ok(())
        }
        // A light userdata other than ngx.null prints nothing, as in lua-nginx-module.
        Value::LightUserData(ud) if !ud.0.is_null() => Ok(()),
        other if append_scalar(out, other) => Ok(()),
        other => Err(format!(
            "string, number, boolean, nil, ngx.null, or array table expected, but got {}",
            type_name(other)
        )),
    }
}

/// The length of a table whose keys are exactly 1..n, or None.
fn array_len(table: &Table) -> Option<usize> {
    let mut count = 0usize;
    let mut max = 0usize;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair.ok()?;
        let index = match key {
            Value::Integer(i) if i >= 1 => usize::try_from(i).ok()?,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n as usize,
            _ => return None,
        };
        count += 1;
        max = max.max(index);
    }
    (count == max).then_some(max)
}

fn redirect(request: &mut RequestState, uri: &Value, status: &Value) -> Result<Value, String> {
    let Value::String(uri) = uri else {
        return Err(format!("bad argument #1 to 'redirect' (string expected, got {})", type_name(uri)));
    };
    let status = match status {
        Value::Nil => 302,
        other => integer_arg(other, 2, "redirect")?,
    };
    if !REDIRECT_STATUSES.contains(&status) {
        return Err(format!(
            "only ngx.HTTP_MOVED_TEMPORARILY, ngx.HTTP_MOVED_PERMANENTLY, ngx.HTTP_PERMANENT_REDIRECT, \
             ngx.HTTP_SEE_OTHER, and ngx.HTTP_TEMPORARY_REDIRECT are allowed (got {status})"
        ));
    }
    if request.response.headers_sent {
        return Err("attempt to call ngx.redirect after sending out the headers".into());
    }
    if uri.as_bytes().iter().any(|&byte| unsafe_in_value(byte)) {
        return Err("attempt to set unsafe redirect uri".into());
    }
    let response = &mut request.response;
    response.headers.retain(|(name, _)| !name.eq_ignore_ascii_case(b"location"));
    response.headers.push((b"Location".to_vec(), uri.as_bytes().to_vec()));
    response.exit_code = Some(status);
    Ok(Value::Nil)
}

/// An integral number argument, with lauxlib's wording when it is not one.
pub(super) fn integer_arg(value: &Value, position: usize, api: &str) -> Result<i64, String> {
    match value {
        Value::Integer(i) => Ok(*i),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Ok(*n as i64),
        Value::Number(_) => Err(format!("bad argument #{position} to '{api}' (number has no integer representation)")),
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("bad argument #{position} to '{api}' (number expected, got string)")),
        other => Err(format!("bad argument #{position} to '{api}' (number expected, got {})", type_name(other))),
    }
}
