//! `ngx.shared.DICT:*`: the Lua face of `shdict.rs`, with lua-resty-core's results: failures
//! are returned as `nil, "message"` (or `false, "message", forcible` for stores), argument
//! mistakes raise.

use std::sync::Arc;

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Table, Value};

use super::{append_scalar, fail, type_name};
use crate::shdict::{DictError, DictValue, End, SharedDict, StoreMode};

/// A method's body: the dict it was called on and its arguments.
type MethodBody = Box<dyn Fn(&Lua, &Function, &SharedDict, MultiValue) -> mlua::Result<MultiValue> + Send>;

/// lua-nginx-module's default for `get_keys`.
const DEFAULT_MAX_KEYS: usize = 1024;

/// Registers the methods in `methods`: each takes the dict's index (the Lua glue checks the
/// `zone` argument and passes `zone[1]`) and the method's arguments.
pub(crate) fn register(lua: &Lua, dicts: &[Arc<SharedDict>], methods: &Table) -> mlua::Result<()> {
    let tostring: Function = lua.globals().get("tostring")?;
    let dicts: Arc<[Arc<SharedDict>]> = dicts.into();
    let method = |name: &str, body: MethodBody| {
        let (dicts, tostring) = (dicts.clone(), tostring.clone());
        let function = lua.create_function(move |lua, (index, args): (usize, MultiValue)| match dicts.get(index) {
            Some(dict) => body(lua, &tostring, dict, args),
            None => fail(lua, "bad \"zone\" argument")?.into_lua_multi(lua),
        })?;
        methods.set(name, function)
    };
    for (name, mode) in [
        ("set", StoreMode::Set),
        ("safe_set", StoreMode::SafeSet),
        ("add", StoreMode::Add),
        ("safe_add", StoreMode::SafeAdd),
        ("replace", StoreMode::Replace),
    ] {
        method(name, Box::new(move |lua, tostring, dict, args| store(lua, tostring, dict, mode, args)))?;
    }
    method(
        "delete",
        Box::new(|lua, tostring, dict, mut args| {
            args.truncate(1);
            store(lua, tostring, dict, StoreMode::Set, args)
        }),
    )?;
    method("get", Box::new(|lua, tostring, dict, args| get(lua, tostring, dict, args, false)))?;
    method("get_stale", Box::new(|lua, tostring, dict, args| get(lua, tostring, dict, args, true)))?;
    method("incr", Box::new(incr))?;
    method("lpush", Box::new(|lua, tostring, dict, args| push(lua, tostring, dict, End::Left, args)))?;
    method("rpush", Box::new(|lua, tostring, dict, args| push(lua, tostring, dict, End::Right, args)))?;
    method("lpop", Box::new(|lua, tostring, dict, args| pop(lua, tostring, dict, End::Left, args)))?;
    method("rpop", Box::new(|lua, tostring, dict, args| pop(lua, tostring, dict, End::Right, args)))?;
    method(
        "llen",
        Box::new(|lua, tostring, dict, args| {
            let key = key_arg(tostring, args.front())?;
            answer(lua, key.and_then(|key| dict.llen(&key)))
        }),
    )?;
    method(
        "ttl",
        Box::new(|lua, tostring, dict, args| {
            let key = key_arg(tostring, args.front())?;
            answer(lua, key.and_then(|key| dict.ttl(&key)))
        }),
    )?;
    method(
        "expire",
        Box::new(|lua, tostring, dict, args| {
            let exptime = match args.get(1) {
                Some(value) => seconds_arg(value, "exptime"),
                None => Err("bad \"exptime\" argument".to_string()),
            };
            let exptime = match exptime {
                Ok(exptime) => exptime,
                Err(message) => return fail(lua, message)?.into_lua_multi(lua),
            };
            let key = key_arg(tostring, args.front())?;
            answer(lua, key.and_then(|key| dict.expire(&key, exptime).map(|()| true)))
        }),
    )?;
    method(
        "flush_all",
        Box::new(|lua, _, dict, _| {
            dict.flush_all();
            ().into_lua_multi(lua)
        }),
    )?;
    method(
        "flush_expired",
        Box::new(|lua, _, dict, args| match count_arg(args.front(), 0) {
            Ok(max) => dict.flush_expired(max).into_lua_multi(lua),
            Err(message) => fail(lua, message)?.into_lua_multi(lua),
        }),
    )?;
    method(
        "get_keys",
        Box::new(|lua, _, dict, args| match count_arg(args.front(), DEFAULT_MAX_KEYS) {
            Ok(max) => {
                let keys =
                    dict.keys(max).into_iter().map(|key| lua.create_string(key)).collect::<mlua::Result<Vec<_>>>()?;
                lua.create_sequence_from(keys)?.into_lua_multi(lua)
            }
            Err(message) => fail(lua, message)?.into_lua_multi(lua),
        }),
    )?;
    method("capacity", Box::new(|lua, _, dict, _| dict.capacity().into_lua_multi(lua)))?;
    method("free_space", Box::new(|lua, _, dict, _| dict.free_space().into_lua_multi(lua)))?;
    Ok(())
}

/// `value` or `nil, "message"`.
fn answer<T: IntoLuaMulti>(lua: &Lua, result: Result<T, DictError>) -> mlua::Result<MultiValue> {
    match result {
        Ok(value) => value.into_lua_multi(lua),
        Err(error) => (Value::Nil, error.to_string()).into_lua_multi(lua),
    }
}

/// The key as lua-resty-core takes it: `nil` is an error result, other types go through
/// `tostring`. The outer error is a Lua failure (out of memory); the inner one a result.
fn key_arg(tostring: &Function, key: Option<&Value>) -> mlua::Result<Result<Vec<u8>, DictError>> {
    let key = match key {
        None | Some(Value::Nil) => return Ok(Err(DictError::NilKey)),
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(other) => {
            let mut text = Vec::new();
            if !append_scalar(&mut text, other) {
                text = tostring.call::<mlua::LuaString>(other)?.as_bytes().to_vec();
            }
            text
        }
    };
    Ok(crate::shdict::check_key(&key).map(|()| key))
}

/// A value a dict can store; None for nil.
fn dict_value(value: &Value) -> Result<Option<DictValue>, DictError> {
    Ok(Some(match value {
        Value::Nil => return Ok(None),
        Value::Boolean(b) => DictValue::Boolean(*b),
        Value::Integer(i) => DictValue::Number(*i as f64),
        Value::Number(n) => DictValue::Number(*n),
        Value::String(s) => DictValue::String(s.as_bytes().to_vec()),
        _ => return Err(DictError::BadValueType),
    }))
}

/// A stored value as Lua sees it: integral numbers are integers on Lua 5.4, as they print in
/// OpenResty.
fn lua_value(lua: &Lua, value: DictValue) -> mlua::Result<Value> {
    Ok(match value {
        DictValue::Boolean(b) => Value::Boolean(b),
        DictValue::Number(n) => number(n),
        DictValue::String(bytes) => Value::String(lua.create_string(bytes)?),
    })
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Value::Integer(n as i64)
    } else {
        Value::Number(n)
    }
}

/// Seconds for `exptime`/`init_ttl`: a non-negative number.
fn seconds_arg(value: &Value, name: &str) -> Result<f64, String> {
    match value {
        Value::Nil => Ok(0.0),
        Value::Integer(i) if *i >= 0 => Ok(*i as f64),
        Value::Number(n) if *n >= 0.0 => Ok(*n),
        _ => Err(format!("bad \"{name}\" argument")),
    }
}

fn count_arg(value: Option<&Value>, default: usize) -> Result<usize, String> {
    match value {
        None | Some(Value::Nil) => Ok(default),
        Some(Value::Integer(i)) if *i >= 0 => Ok(usize::try_from(*i).unwrap_or(usize::MAX)),
        Some(Value::Number(n)) if *n >= 0.0 => Ok(*n as usize),
        Some(other) => Err(format!("bad argument #1 (non-negative number expected, got {})", type_name(other))),
    }
}

fn flags_arg(value: Option<&Value>) -> Result<u32, String> {
    match value {
        None | Some(Value::Nil) => Ok(0),
        Some(Value::Integer(i)) => u32::try_from(*i).map_err(|_| "bad \"flags\" argument".to_string()),
        Some(Value::Number(n)) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n) => Ok(*n as u32),
        Some(_) => Err("bad \"flags\" argument".into()),
    }
}

/// set/safe_set/add/safe_add/replace(key, value, exptime?, flags?) → ok, err, forcible.
fn store(
    lua: &Lua,
    tostring: &Function,
    dict: &SharedDict,
    mode: StoreMode,
    args: MultiValue,
) -> mlua::Result<MultiValue> {
    let exptime = seconds_arg(args.get(2).unwrap_or(&Value::Nil), "exptime");
    let flags = flags_arg(args.get(3));
    let (exptime, flags) = match (exptime, flags) {
        (Ok(exptime), Ok(flags)) => (exptime, flags),
        (Err(message), _) | (_, Err(message)) => return fail(lua, message)?.into_lua_multi(lua),
    };
    let key = match key_arg(tostring, args.front())? {
        Ok(key) => key,
        Err(error) => return (Value::Nil, error.to_string()).into_lua_multi(lua),
    };
    let value = match dict_value(args.get(1).unwrap_or(&Value::Nil)) {
        Ok(value) => value,
        Err(error) => return (Value::Nil, error.to_string()).into_lua_multi(lua),
    };
    match dict.store(mode, &key, value, exptime, flags) {
        Ok(forcible) => (true, Value::Nil, forcible).into_lua_multi(lua),
        Err((error, forcible)) => (false, error.to_string(), forcible).into_lua_multi(lua),
    }
}

/// get(key) → value, flags (when not 0); get_stale(key) → value, flags, stale.
fn get(lua: &Lua, tostring: &Function, dict: &SharedDict, args: MultiValue, stale: bool) -> mlua::Result<MultiValue> {
    let key = match key_arg(tostring, args.front())? {
        Ok(key) => key,
        Err(error) => return (Value::Nil, error.to_string()).into_lua_multi(lua),
    };
    let flags = |flags: u32| if flags == 0 { Value::Nil } else { Value::Integer(flags.into()) };
    if stale {
        return match dict.get_stale(&key) {
            Ok(Some(found)) => (lua_value(lua, found.value)?, flags(found.flags), found.stale).into_lua_multi(lua),
            Ok(None) => Value::Nil.into_lua_multi(lua),
            Err(error) => (Value::Nil, error.to_string()).into_lua_multi(lua),
        };
    }
    match dict.get(&key) {
        Ok(Some((value, 0))) => lua_value(lua, value)?.into_lua_multi(lua),
        Ok(Some((value, user_flags))) => (lua_value(lua, value)?, flags(user_flags)).into_lua_multi(lua),
        Ok(None) => Value::Nil.into_lua_multi(lua),
        Err(error) => (Value::Nil, error.to_string()).into_lua_multi(lua),
    }
}

/// incr(key, value, init?, init_ttl?) → new value (plus nil, forcible when `init` is given).
fn incr(lua: &Lua, tostring: &Function, dict: &SharedDict, args: MultiValue) -> mlua::Result<MultiValue> {
    let parsed = incr_args(&args);
    let (by, init, init_ttl) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return fail(lua, message)?.into_lua_multi(lua),
    };
    let key = match key_arg(tostring, args.front())? {
        Ok(key) => key,
        Err(error) => return (Value::Nil, error.to_string()).into_lua_multi(lua),
    };
    match dict.incr(&key, by, init, init_ttl) {
        Ok((value, _)) if init.is_none() => number(value).into_lua_multi(lua),
        Ok((value, forcible)) => (number(value), Value::Nil, forcible).into_lua_multi(lua),
        Err(error) => (Value::Nil, error.to_string()).into_lua_multi(lua),
    }
}

/// incr's (value, init, init_ttl), checked as lua-resty-core checks them.
fn incr_args(args: &MultiValue) -> Result<(f64, Option<f64>, f64), String> {
    let number_arg = |position: usize, what: &str| -> Result<Option<f64>, String> {
        match args.get(position) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(Value::Number(n)) => Ok(Some(*n)),
            Some(Value::String(s)) => match s.to_str().ok().and_then(|s| s.trim().parse().ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(format!("bad {what} arg: number expected, got string")),
            },
            Some(other) => Err(format!("bad {what} arg: number expected, got {}", type_name(other))),
        }
    };
    let by = number_arg(1, "value")?.ok_or_else(|| "bad value arg: number expected, got nil".to_string())?;
    let init = number_arg(2, "init")?;
    let init_ttl = match number_arg(3, "init_ttl")? {
        None => 0.0,
        Some(ttl) if ttl < 0.0 => return Err("bad \"init_ttl\" argument".into()),
        Some(_) if init.is_none() => return Err("must provide \"init\" when providing \"init_ttl\"".into()),
        Some(ttl) => ttl,
    };
    Ok((by, init, init_ttl))
}

/// lpush/rpush(key, value) → new length.
fn push(lua: &Lua, tostring: &Function, dict: &SharedDict, end: End, args: MultiValue) -> mlua::Result<MultiValue> {
    let key = key_arg(tostring, args.front())?;
    let value = match args.get(1) {
        Some(value @ (Value::String(_) | Value::Integer(_) | Value::Number(_))) => dict_value(value),
        _ => Err(DictError::BadValueType),
    };
    let result = key.and_then(|key| Ok((key, value?.expect("strings and numbers are values"))));
    answer(lua, result.and_then(|(key, value)| dict.push(end, &key, value)))
}

/// lpop/rpop(key) → the element, or nil.
fn pop(lua: &Lua, tostring: &Function, dict: &SharedDict, end: End, args: MultiValue) -> mlua::Result<MultiValue> {
    let key = key_arg(tostring, args.front())?;
    match key.and_then(|key| dict.pop(end, &key)) {
        Ok(Some(value)) => lua_value(lua, value)?.into_lua_multi(lua),
        Ok(None) => Value::Nil.into_lua_multi(lua),
        Err(error) => (Value::Nil, error.to_string()).into_lua_multi(lua),
    }
}
