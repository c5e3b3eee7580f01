//! `ngx.shared.DICT:*`: the Lua face of `shdict.rs`, with lua-resty-core's results: failures
//! are returned as `nil, "message"` (or `false, "message", forcible` for stores), argument
//! mistakes raise.

use std::sync::Arc;

use mlua::{BString, Either, FromLuaMulti, Function, IntoLua, Lua, Table, Value};

use super::{append_scalar, type_name};
use crate::shdict::{DictError, DictValue, End, SharedDict, StoreMode};

/// A method's arguments after the zone: methods take at most four, missing ones are nil. The
/// first is the key: a string's bytes are copied straight off the Lua stack (cheaper than a
/// string reference).
type Args = (Either<BString, Value>, Value, Value, Value);

/// A method's results, in a fixed shape Rust returns without building a `MultiValue` (an
/// allocation per call): how many of the three values Lua gets, and the values. A count of -1
/// has the Lua glue raise the first value as an argument error at the caller's level.
type Results = (i8, Value, Value, Value);

/// lua-nginx-module's default for `get_keys`.
const DEFAULT_MAX_KEYS: usize = 1024;

/// The `methods` table being filled.
struct Methods<'a> {
    lua: &'a Lua,
    table: &'a Table,
    dicts: Arc<[Arc<SharedDict>]>,
    tostring: Function,
}

impl Methods<'_> {
    /// Adds `name`: a function of the dict's index (the Lua glue checks the `zone` argument and
    /// passes its index) and the method's arguments `A`, run on that dict.
    fn add<A: FromLuaMulti>(
        &self,
        name: &str,
        body: impl Fn(&Lua, &Function, &SharedDict, A) -> mlua::Result<Results> + Send + 'static,
    ) -> mlua::Result<()> {
        let (dicts, tostring) = (self.dicts.clone(), self.tostring.clone());
        let function = self.lua.create_function(move |lua, (index, args): (usize, A)| match dicts.get(index) {
            Some(dict) => body(lua, &tostring, dict, args),
            None => raise(lua, "bad \"zone\" argument"),
        })?;
        self.table.set(name, function)
    }
}

/// Registers the dict methods in `methods`.
pub(crate) fn register(lua: &Lua, dicts: &[Arc<SharedDict>], methods: &Table) -> mlua::Result<()> {
    let methods = Methods { lua, table: methods, dicts: dicts.into(), tostring: lua.globals().get("tostring")? };
    for (name, mode) in [
        ("set", StoreMode::Set),
        ("safe_set", StoreMode::SafeSet),
        ("add", StoreMode::Add),
        ("safe_add", StoreMode::SafeAdd),
        ("replace", StoreMode::Replace),
    ] {
        methods.add::<Args>(name, move |lua, tostring, dict, args| store(lua, tostring, dict, mode, args))?;
    }
    methods.add::<Args>("delete", |lua, tostring, dict, (key, ..)| {
        store(lua, tostring, dict, StoreMode::Set, (key, Value::Nil, Value::Nil, Value::Nil))
    })?;
    methods.add::<Args>("get", |lua, tostring, dict, (key, ..)| get(lua, tostring, dict, key, false))?;
    methods.add::<Args>("get_stale", |lua, tostring, dict, (key, ..)| get(lua, tostring, dict, key, true))?;
    methods.add::<Args>("incr", incr)?;
    methods.add::<Args>("lpush", |lua, tostring, dict, args| push(lua, tostring, dict, End::Left, args))?;
    methods.add::<Args>("rpush", |lua, tostring, dict, args| push(lua, tostring, dict, End::Right, args))?;
    methods.add::<Args>("lpop", |lua, tostring, dict, (key, ..)| pop(lua, tostring, dict, End::Left, key))?;
    methods.add::<Args>("rpop", |lua, tostring, dict, (key, ..)| pop(lua, tostring, dict, End::Right, key))?;
    methods.add::<Args>("llen", |lua, tostring, dict, (key, ..)| {
        let key = key_arg(tostring, key)?;
        answer(lua, key.and_then(|key| dict.llen(&key)))
    })?;
    methods.add::<Args>("ttl", |lua, tostring, dict, (key, ..)| {
        let key = key_arg(tostring, key)?;
        answer(lua, key.and_then(|key| dict.ttl(&key)))
    })?;
    methods.add::<Args>("expire", |lua, tostring, dict, (key, exptime, ..)| {
        // lua-resty-core: `if not exptime then error(...)`.
        let exptime = match exptime {
            Value::Nil => Err("bad \"exptime\" argument".to_string()),
            exptime => seconds_arg(&exptime, "exptime"),
        };
        let exptime = match exptime {
            Ok(exptime) => exptime,
            Err(message) => return raise(lua, message),
        };
        let key = key_arg(tostring, key)?;
        answer(lua, key.and_then(|key| dict.expire(&key, exptime).map(|()| true)))
    })?;
    methods.add("flush_all", |_, _, dict, (): ()| {
        dict.flush_all();
        Ok(none())
    })?;
    methods.add("flush_expired", |lua, _, dict, max: Value| match count_arg(&max, 0) {
        Ok(max) => Ok(one(dict.flush_expired(max).into_lua(lua)?)),
        Err(message) => raise(lua, message),
    })?;
    methods.add("get_keys", |lua, _, dict, max: Value| match count_arg(&max, DEFAULT_MAX_KEYS) {
        Ok(max) => {
            let keys =
                dict.keys(max).into_iter().map(|key| lua.create_string(key)).collect::<mlua::Result<Vec<_>>>()?;
            Ok(one(Value::Table(lua.create_sequence_from(keys)?)))
        }
        Err(message) => raise(lua, message),
    })?;
    methods.add("capacity", |lua, _, dict, (): ()| Ok(one(dict.capacity().into_lua(lua)?)))?;
    methods.add("free_space", |lua, _, dict, (): ()| Ok(one(dict.free_space().into_lua(lua)?)))?;
    Ok(())
}

fn none() -> Results {
    (0, Value::Nil, Value::Nil, Value::Nil)
}

fn one(value: Value) -> Results {
    (1, value, Value::Nil, Value::Nil)
}

fn three(first: Value, second: Value, third: Value) -> Results {
    (3, first, second, third)
}

/// `nil, "message"`.
fn failure(lua: &Lua, error: DictError) -> mlua::Result<Results> {
    Ok((2, Value::Nil, Value::String(lua.create_string(error.to_string())?), Value::Nil))
}

/// An argument error, raised by the glue.
fn raise(lua: &Lua, message: impl AsRef<[u8]>) -> mlua::Result<Results> {
    Ok((-1, Value::String(lua.create_string(message)?), Value::Nil, Value::Nil))
}

/// `value` or `nil, "message"`.
fn answer<T: IntoLua>(lua: &Lua, result: Result<T, DictError>) -> mlua::Result<Results> {
    match result {
        Ok(value) => Ok(one(value.into_lua(lua)?)),
        Err(error) => failure(lua, error),
    }
}

/// The key as lua-resty-core takes it: `nil` is an error result, other types go through
/// `tostring`. The outer error is a Lua failure (out of memory); the inner one a result.
fn key_arg(tostring: &Function, key: Either<BString, Value>) -> mlua::Result<Result<Vec<u8>, DictError>> {
    let key = match key {
        // Strings, and numbers as Lua turns them into strings (as `tostring` does).
        Either::Left(key) => key.into(),
        Either::Right(Value::Nil) => return Ok(Err(DictError::NilKey)),
        Either::Right(other) => {
            let mut text = Vec::new();
            if !append_scalar(&mut text, &other) {
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

fn count_arg(value: &Value, default: usize) -> Result<usize, String> {
    match value {
        Value::Nil => Ok(default),
        Value::Integer(i) if *i >= 0 => Ok(usize::try_from(*i).unwrap_or(usize::MAX)),
        Value::Number(n) if *n >= 0.0 => Ok(*n as usize),
        other => Err(format!("bad argument #1 (non-negative number expected, got {})", type_name(other))),
    }
}

fn flags_arg(value: &Value) -> Result<u32, String> {
    match value {
        Value::Nil => Ok(0),
        Value::Integer(i) => u32::try_from(*i).map_err(|_| "bad \"flags\" argument".to_string()),
        Value::Number(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n) => Ok(*n as u32),
        _ => Err("bad \"flags\" argument".into()),
    }
}

/// set/safe_set/add/safe_add/replace(key, value, exptime?, flags?) → ok, err, forcible.
fn store(
    lua: &Lua,
    tostring: &Function,
    dict: &SharedDict,
    mode: StoreMode,
    (key, value, exptime, flags): Args,
) -> mlua::Result<Results> {
    let (exptime, flags) = match (seconds_arg(&exptime, "exptime"), flags_arg(&flags)) {
        (Ok(exptime), Ok(flags)) => (exptime, flags),
        (Err(message), _) | (_, Err(message)) => return raise(lua, message),
    };
    let key = match key_arg(tostring, key)? {
        Ok(key) => key,
        Err(error) => return failure(lua, error),
    };
    let value = match dict_value(&value) {
        Ok(value) => value,
        Err(error) => return failure(lua, error),
    };
    match dict.store(mode, &key, value, exptime, flags) {
        Ok(forcible) => Ok(three(Value::Boolean(true), Value::Nil, Value::Boolean(forcible))),
        Err((error, forcible)) => {
            let message = Value::String(lua.create_string(error.to_string())?);
            Ok(three(Value::Boolean(false), message, Value::Boolean(forcible)))
        }
    }
}

/// get(key) → value, flags (when not 0); get_stale(key) → value, flags, stale.
fn get(
    lua: &Lua,
    tostring: &Function,
    dict: &SharedDict,
    key: Either<BString, Value>,
    stale: bool,
) -> mlua::Result<Results> {
    let key = match key_arg(tostring, key)? {
        Ok(key) => key,
        Err(error) => return failure(lua, error),
    };
    let flags = |flags: u32| if flags == 0 { Value::Nil } else { Value::Integer(flags.into()) };
    if stale {
        return match dict.get_stale(&key) {
            Ok(Some(found)) => Ok(three(lua_value(lua, found.value)?, flags(found.flags), Value::Boolean(found.stale))),
            Ok(None) => Ok(one(Value::Nil)),
            Err(error) => failure(lua, error),
        };
    }
    match dict.get(&key) {
        Ok(Some((value, 0))) => Ok(one(lua_value(lua, value)?)),
        Ok(Some((value, user_flags))) => Ok((2, lua_value(lua, value)?, flags(user_flags), Value::Nil)),
        Ok(None) => Ok(one(Value::Nil)),
        Err(error) => failure(lua, error),
    }
}

/// incr(key, value, init?, init_ttl?) → new value (plus nil, forcible when `init` is given).
fn incr(lua: &Lua, tostring: &Function, dict: &SharedDict, (key, by, init, init_ttl): Args) -> mlua::Result<Results> {
    let (by, init, init_ttl) = match incr_args(&by, &init, &init_ttl) {
        Ok(parsed) => parsed,
        Err(message) => return raise(lua, message),
    };
    let key = match key_arg(tostring, key)? {
        Ok(key) => key,
        Err(error) => return failure(lua, error),
    };
    match dict.incr(&key, by, init, init_ttl) {
        Ok((value, _)) if init.is_none() => Ok(one(number(value))),
        Ok((value, forcible)) => Ok(three(number(value), Value::Nil, Value::Boolean(forcible))),
        Err(error) => failure(lua, error),
    }
}

/// incr's (value, init, init_ttl), checked as lua-resty-core checks them.
fn incr_args(by: &Value, init: &Value, init_ttl: &Value) -> Result<(f64, Option<f64>, f64), String> {
    let number_arg = |value: &Value, what: &str| -> Result<Option<f64>, String> {
        match value {
            Value::Nil => Ok(None),
            Value::Integer(i) => Ok(Some(*i as f64)),
            Value::Number(n) => Ok(Some(*n)),
            Value::String(s) => match s.to_str().ok().and_then(|s| s.trim().parse().ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(format!("bad {what} arg: number expected, got string")),
            },
            other => Err(format!("bad {what} arg: number expected, got {}", type_name(other))),
        }
    };
    let by = number_arg(by, "value")?.ok_or_else(|| "bad value arg: number expected, got nil".to_string())?;
    let init = number_arg(init, "init")?;
    let init_ttl = match number_arg(init_ttl, "init_ttl")? {
        None => 0.0,
        Some(ttl) if ttl < 0.0 => return Err("bad \"init_ttl\" argument".into()),
        Some(_) if init.is_none() => return Err("must provide \"init\" when providing \"init_ttl\"".into()),
        Some(ttl) => ttl,
    };
    Ok((by, init, init_ttl))
}

/// lpush/rpush(key, value) → new length.
fn push(lua: &Lua, tostring: &Function, dict: &SharedDict, end: End, (key, value, ..): Args) -> mlua::Result<Results> {
    let key = key_arg(tostring, key)?;
    let value = match value {
        Value::String(_) | Value::Integer(_) | Value::Number(_) => dict_value(&value),
        _ => Err(DictError::BadValueType),
    };
    let result = key.and_then(|key| Ok((key, value?.expect("strings and numbers are values"))));
    answer(lua, result.and_then(|(key, value)| dict.push(end, &key, value)))
}

/// lpop/rpop(key) → the element, or nil.
fn pop(
    lua: &Lua,
    tostring: &Function,
    dict: &SharedDict,
    end: End,
    key: Either<BString, Value>,
) -> mlua::Result<Results> {
    let key = key_arg(tostring, key)?;
    match key.and_then(|key| dict.pop(end, &key)) {
        Ok(Some(value)) => Ok(one(lua_value(lua, value)?)),
        Ok(None) => Ok(one(Value::Nil)),
        Err(error) => failure(lua, error),
    }
}
