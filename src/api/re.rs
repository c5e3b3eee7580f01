//! `ngx.re.match`, `find`, `gmatch`, `sub` and `gsub` on PCRE2 (`crate::regex_cache`), with
//! lua-resty-core's arguments, results and error strings. They need no request, so they work in
//! every phase and in timers. `re.lua` wires them into `ngx.re` and runs `sub`/`gsub` with a
//! function replacement in Lua, so that the function's own errors (and yields) pass through
//! untouched.

use std::ops::Range;
use std::sync::Arc;

use mlua::{FromLuaMulti, Function, IntoLuaMulti, Lua, LuaString, MultiValue, Table, Value};
use parking_lot::Mutex;

use super::{signal, string_or_number, type_name};
use crate::regex_cache::{self, Captures, Options, Pattern};

/// Why a call returns early: an argument error raised at the caller (`Raise`), or an error
/// returned as the `err` result (`Return`), as lua-resty-core does for bad patterns.
enum Failure {
    Raise(String),
    Return(String),
}

/// lua-nginx-module's message for any replacement template it cannot compile (it logs the
/// reason).
const BAD_TEMPLATE: &str = "failed to compile the replacement template";

pub(crate) fn register(lua: &Lua, ngx: &Table) -> mlua::Result<()> {
    let tostring: Function = lua.globals().get("tostring")?;
    let rust = lua.create_table()?;
    type Five = (Value, Value, Value, Value, Value);
    add(lua, &rust, "match", &tostring, |lua, to_text, (subject, regex, opts, ctx, res): Five| {
        re_match(lua, to_text, subject, &regex, &opts, ctx, res)
    })?;
    add(lua, &rust, "find", &tostring, |lua, to_text, (subject, regex, opts, ctx, nth): Five| {
        re_find(lua, to_text, subject, &regex, &opts, ctx, nth)
    })?;
    add(lua, &rust, "gmatch", &tostring, |lua, to_text, (subject, regex, opts): (Value, Value, Value)| {
        gmatch(lua, to_text, subject, &regex, &opts)
    })?;
    type Substitute = (Value, Value, Value, Value, bool);
    add(lua, &rust, "substitute", &tostring, |lua, to_text, (subject, regex, replace, opts, global): Substitute| {
        substitute(lua, to_text, subject, &regex, replace, &opts, global)
    })?;
    rust.set(
        "exec",
        lua.create_function(|lua, (api, subject, regex, opts, start): (LuaString, LuaString, Value, Value, usize)| {
            exec(lua, &api.to_str()?, &subject, &regex, &opts, start)
        })?,
    )?;
    let params = lua.create_table()?;
    params.set("signal", signal())?;
    params.set("rust", rust)?;
    let re: Table = lua.load(include_str!("re.lua")).set_name("=[luaengine ngx.re]").call(params)?;
    ngx.set("re", re)
}

/// Adds the Rust side of an ngx.re function to `rust`; `f` also gets Lua's `tostring`, which
/// turns subjects and replacements into text as lua-nginx-module does.
fn add<A: FromLuaMulti, R: IntoLuaMulti>(
    lua: &Lua,
    rust: &Table,
    name: &str,
    tostring: &Function,
    f: impl Fn(&Lua, &Function, A) -> mlua::Result<R> + Send + 'static,
) -> mlua::Result<()> {
    let tostring = tostring.clone();
    rust.set(name, lua.create_function(move |lua, args: A| f(lua, &tostring, args))?)
}

/// The compiled pattern for `regex` under `opts` (arguments #2 and #3 of every ngx.re function).
fn pattern(api: &str, regex: &Value, opts: &Value) -> Result<Arc<Pattern>, Failure> {
    let source = string_or_number(regex).ok_or_else(|| {
        Failure::Raise(format!("bad argument #2 to '{api}' (string expected, got {})", type_name(regex)))
    })?;
    let options = match opts {
        Value::Nil => Options::default(),
        Value::String(text) => Options::parse(&text.as_bytes()).map_err(|error| match error {
            Some(message) => Failure::Raise(message),
            None => Failure::Return("regex DFA mode (option \"d\") is not supported".into()),
        })?,
        other => {
            let got = type_name(other);
            return Err(Failure::Raise(format!("bad argument #3 to '{api}' (string expected, got {got})")));
        }
    };
    regex_cache::compile(&source, options).map_err(Failure::Return)
}

/// A failure as Lua results: (signal, message) to raise, or `nils` nils before the message.
fn failure(lua: &Lua, failure: Failure, nils: usize) -> mlua::Result<MultiValue> {
    let (mut values, message) = match failure {
        Failure::Raise(message) => (vec![Value::LightUserData(signal())], message),
        Failure::Return(message) => (vec![Value::Nil; nils], message),
    };
    values.push(Value::String(lua.create_string(message)?));
    Ok(MultiValue::from_vec(values))
}

/// The subject as lua-resty-core takes it: `tostring(subject)`.
fn text(lua: &Lua, tostring: &Function, value: Value) -> mlua::Result<LuaString> {
    match value {
        Value::String(s) => Ok(s),
        other => match string_or_number(&other) {
            Some(bytes) => lua.create_string(bytes),
            None => tostring.call(other),
        },
    }
}

/// An optional table argument (`ctx`, `res_table`).
fn table_arg(api: &str, index: usize, value: Value) -> Result<Option<Table>, Failure> {
    match value {
        Value::Nil => Ok(None),
        Value::Table(table) => Ok(Some(table)),
        other => {
            let got = type_name(&other);
            Err(Failure::Raise(format!("bad argument #{index} to '{api}' (table expected, got {got})")))
        }
    }
}

/// Where matching starts: `ctx.pos` (1-based; absent or below 1 means the start).
fn ctx_start(lua: &Lua, ctx: Option<&Table>) -> mlua::Result<usize> {
    let Some(ctx) = ctx else { return Ok(0) };
    let pos = lua.coerce_number(ctx.get::<Value>("pos")?)?.unwrap_or(0.0);
    Ok(if pos >= 1.0 { pos as usize - 1 } else { 0 })
}

fn re_match(
    lua: &Lua,
    tostring: &Function,
    subject: Value,
    regex: &Value,
    opts: &Value,
    ctx: Value,
    res: Value,
) -> mlua::Result<MultiValue> {
    let arguments = pattern("match", regex, opts)
        .and_then(|pattern| Ok((pattern, table_arg("match", 4, ctx)?, table_arg("match", 5, res)?)));
    let (pattern, ctx, res) = match arguments {
        Ok(arguments) => arguments,
        Err(f) => return failure(lua, f, 1),
    };
    let subject = text(lua, tostring, subject)?;
    let bytes = subject.as_bytes();
    let outcome = pattern.exec(&bytes, ctx_start(lua, ctx.as_ref())?);
    match outcome {
        Err(message) => failure(lua, Failure::Return(message), 1),
        Ok(None) => Value::Nil.into_lua_multi(lua),
        Ok(Some(captures)) => {
            if let Some(ctx) = ctx {
                ctx.set("pos", captures.whole().1 + 1)?;
            }
            captures_table(lua, res, &pattern, &captures, &bytes)?.into_lua_multi(lua)
        }
    }
}

fn re_find(
    lua: &Lua,
    tostring: &Function,
    subject: Value,
    regex: &Value,
    opts: &Value,
    ctx: Value,
    nth: Value,
) -> mlua::Result<MultiValue> {
    let arguments = pattern("find", regex, opts).and_then(|pattern| Ok((pattern, table_arg("find", 4, ctx)?)));
    let (pattern, ctx) = match arguments {
        Ok(arguments) => arguments,
        Err(f) => return failure(lua, f, 2),
    };
    let nth = match nth {
        Value::Nil => 0.0,
        other => match lua.coerce_number(other.clone())? {
            Some(n) => n.max(0.0),
            None => {
                let got = type_name(&other);
                let message = format!("bad argument #5 to 'find' (number expected, got {got})");
                return failure(lua, Failure::Raise(message), 2);
            }
        },
    };
    let subject = text(lua, tostring, subject)?;
    let bytes = subject.as_bytes();
    let outcome = pattern.exec(&bytes, ctx_start(lua, ctx.as_ref())?);
    match outcome {
        Err(message) => failure(lua, Failure::Return(message), 2),
        Ok(None) => Value::Nil.into_lua_multi(lua),
        Ok(Some(captures)) => {
            if let Some(ctx) = ctx {
                ctx.set("pos", captures.whole().1 + 1)?;
            }
            if nth > pattern.groups() as f64 {
                return failure(lua, Failure::Return("nth out of bound".into()), 2);
            }
            match captures.get(nth as usize) {
                Some((from, to)) => (from + 1, to).into_lua_multi(lua),
                None => (Value::Nil, Value::Nil).into_lua_multi(lua),
            }
        }
    }
}

fn gmatch(lua: &Lua, tostring: &Function, subject: Value, regex: &Value, opts: &Value) -> mlua::Result<MultiValue> {
    let pattern = match pattern("gmatch", regex, opts) {
        Ok(pattern) => pattern,
        Err(f) => return failure(lua, f, 1),
    };
    let subject = text(lua, tostring, subject)?;
    // Where the next match starts; None once the iterator is exhausted.
    let next = Mutex::new(Some(0));
    let iterator = lua.create_function(move |lua, _: MultiValue| {
        let mut next = next.lock();
        let Some(start) = *next else { return Value::Nil.into_lua_multi(lua) };
        let bytes = subject.as_bytes();
        let outcome = pattern.exec(&bytes, start);
        match outcome {
            Err(message) => {
                *next = None;
                failure(lua, Failure::Return(message), 1)
            }
            Ok(None) => {
                *next = None;
                Value::Nil.into_lua_multi(lua)
            }
            Ok(Some(captures)) => {
                let after = pattern.next_start(&bytes, captures.whole());
                *next = (after <= bytes.len()).then_some(after);
                captures_table(lua, None, &pattern, &captures, &bytes)?.into_lua_multi(lua)
            }
        }
    })?;
    iterator.into_lua_multi(lua)
}

/// One match for the Lua loop of `sub`/`gsub` with a function replacement: (captures, from, to,
/// next start), 0-based; nil when nothing matches; (nil, err) on errors.
fn exec(
    lua: &Lua,
    api: &str,
    subject: &LuaString,
    regex: &Value,
    opts: &Value,
    start: usize,
) -> mlua::Result<MultiValue> {
    let pattern = match pattern(api, regex, opts) {
        Ok(pattern) => pattern,
        Err(f) => return failure(lua, f, 1),
    };
    let bytes = subject.as_bytes();
    let outcome = pattern.exec(&bytes, start);
    match outcome {
        Err(message) => failure(lua, Failure::Return(message), 1),
        Ok(None) => Value::Nil.into_lua_multi(lua),
        Ok(Some(captures)) => {
            let (from, to) = captures.whole();
            let table = captures_table(lua, None, &pattern, &captures, &bytes)?;
            (table, from, to, pattern.next_start(&bytes, (from, to))).into_lua_multi(lua)
        }
    }
}

fn substitute(
    lua: &Lua,
    tostring: &Function,
    subject: Value,
    regex: &Value,
    replace: Value,
    opts: &Value,
    global: bool,
) -> mlua::Result<MultiValue> {
    let api = if global { "gsub" } else { "sub" };
    let pattern = match pattern(api, regex, opts) {
        Ok(pattern) => pattern,
        Err(f) => return failure(lua, f, 2),
    };
    let replace = text(lua, tostring, replace)?;
    let replace = replace.as_bytes();
    let Some(template) = Template::parse(&replace, &pattern) else {
        return failure(lua, Failure::Return(BAD_TEMPLATE.into()), 2);
    };
    let subject = text(lua, tostring, subject)?;
    let bytes = subject.as_bytes();
    let (mut out, mut copied, mut start, mut count) = (Vec::new(), 0, 0, 0);
    while start <= bytes.len() {
        let captures = match pattern.exec(&bytes, start) {
            Ok(Some(captures)) => captures,
            Ok(None) => break,
            Err(message) => return failure(lua, Failure::Return(message), 2),
        };
        count += 1;
        let whole = captures.whole();
        out.extend_from_slice(&bytes[copied..whole.0]);
        template.expand(&replace, &captures, &bytes, &mut out);
        copied = whole.1;
        start = pattern.next_start(&bytes, whole);
        if !global {
            break;
        }
    }
    if count == 0 {
        drop(bytes);
        return (subject, 0).into_lua_multi(lua);
    }
    out.extend_from_slice(&bytes[copied..]);
    (lua.create_string(out)?, count).into_lua_multi(lua)
}

/// The result table of a match: groups 0..n (strings, or false when a group did not take
/// part) and named groups by name (with `D`, tables of the values of the groups that matched).
/// `res` is filled in place when given, as lua-resty-core does with `res_table`.
fn captures_table(
    lua: &Lua,
    res: Option<Table>,
    pattern: &Pattern,
    captures: &Captures,
    subject: &[u8],
) -> mlua::Result<Table> {
    let groups = pattern.groups();
    let table = match res {
        Some(table) => table,
        None => lua.create_table_with_capacity(groups + 1, pattern.names().len())?,
    };
    let mut values = Vec::with_capacity(groups + 1);
    for group in 0..=groups {
        let value = match captures.get(group) {
            Some((from, to)) => Value::String(lua.create_string(&subject[from..to])?),
            None => Value::Boolean(false),
        };
        table.raw_set(group, &value)?;
        values.push(value);
    }
    for (name, group) in pattern.names() {
        let value = &values[*group];
        if !pattern.dupnames() {
            table.raw_set(name.as_str(), value)?;
        } else if value.as_boolean() != Some(false) {
            match table.raw_get::<Value>(name.as_str())? {
                Value::Table(list) => list.raw_push(value)?,
                _ => table.raw_set(name.as_str(), lua.create_sequence_from([value])?)?,
            }
        }
    }
    Ok(table)
}

/// A replacement template, as lua-nginx-module compiles it: `$0`..`$N` and `${N}` insert
/// groups, `$$` is a dollar sign. Beyond lua-nginx-module (which refuses names), `$name` and
/// `${name}` insert the named group.
struct Template(Vec<Piece>);

enum Piece {
    Text(Range<usize>),
    Group(usize),
}

impl Template {
    fn parse(template: &[u8], pattern: &Pattern) -> Option<Template> {
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < template.len() {
            if template[i] != b'$' {
                let end = template[i..].iter().position(|&b| b == b'$').map_or(template.len(), |at| i + at);
                pieces.push(Piece::Text(i..end));
                i = end;
                continue;
            }
            i += 1;
            match template.get(i) {
                None => return None,
                Some(b'$') => {
                    pieces.push(Piece::Text(i..i + 1));
                    i += 1;
                    continue;
                }
                Some(_) => {}
            }
            let mut bracket = template[i] == b'{';
            if bracket {
                i += 1;
            }
            let numeric = template.get(i)?.is_ascii_digit();
            let start = i;
            let mut end = i;
            while i < template.len() {
                let ch = template[i];
                if ch == b'}' && bracket {
                    i += 1;
                    bracket = false;
                    break;
                }
                let part_of_name = if numeric { ch.is_ascii_digit() } else { ch.is_ascii_alphanumeric() || ch == b'_' };
                if !part_of_name {
                    break;
                }
                i += 1;
                end = i;
            }
            if bracket || end == start {
                return None;
            }
            let name = &template[start..end];
            let group = if numeric {
                name.iter().fold(0usize, |n, d| n.saturating_mul(10).saturating_add(usize::from(d - b'0')))
            } else {
                pattern.group_named(name)?
            };
            pieces.push(Piece::Group(group));
        }
        Some(Template(pieces))
    }

    /// Appends the replacement for one match; groups that did not take part (or do not
    /// exist) insert nothing.
    fn expand(&self, template: &[u8], captures: &Captures, subject: &[u8], out: &mut Vec<u8>) {
        for piece in &self.0 {
            match piece {
                Piece::Text(range) => out.extend_from_slice(&template[range.clone()]),
                Piece::Group(group) => {
                    if let Some((from, to)) = captures.get(*group) {
                        out.extend_from_slice(&subject[from..to]);
                    }
                }
            }
        }
    }
}
