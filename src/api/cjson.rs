//! lua-cjson 2.1.0.11 (OpenResty's fork) as `require "cjson"` and `require "cjson.safe"`:
//! `encode`, `decode`, the configuration functions, `null`, `empty_array`, `array_mt` and
//! `empty_array_mt`, with lua-cjson's output, number formatting and error messages.
//!
//! Hand-written rather than on serde_json: lua-cjson's behaviour lives in the details serde
//! would hide (error positions and token names, `%.14g` numbers, strtoll's hex and octal
//! integers, sparse-array rules, escaping `/`), and building Lua values straight from the
//! bytes avoids an intermediate tree. Both directions walk nested values with an explicit stack,
//! so a deep document cannot overflow the host thread's stack.

use std::ffi::c_void;
use std::sync::Arc;

use mlua::{Function, IntoLuaMulti, LightUserData, Lua, LuaString, MultiValue, Table, Value};
use parking_lot::Mutex;

use super::{signal, string_or_number, type_name};

static EMPTY_ARRAY_ANCHOR: u8 = 0;

/// `cjson.empty_array`: a light userdata encoded as `[]`.
fn empty_array() -> LightUserData {
    LightUserData(&EMPTY_ARRAY_ANCHOR as *const u8 as *mut c_void)
}

/// Nesting the encoder follows at most, whatever `encode_max_depth` says: lua-cjson stops
/// where the Lua stack does (lua_checkstack), with the same message.
const ENCODE_DEPTH_CEILING: usize = 100_000;

/// One module table's settings (lua-cjson's json_config_t), with lua-cjson's defaults.
#[derive(Clone, Copy, Debug)]
struct Config {
    sparse_convert: bool,
    sparse_ratio: i64,
    sparse_safe: i64,
    encode_max_depth: i64,
    decode_max_depth: i64,
    /// 0: error, 1: `NaN`/`Infinity`, 2: `null`.
    encode_invalid_numbers: u8,
    decode_invalid_numbers: bool,
    keep_buffer: bool,
    precision: usize,
    empty_table_as_object: bool,
    decode_array_with_array_mt: bool,
    escape_forward_slash: bool,
    skip_unsupported: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: true,
            keep_buffer: true,
            precision: 14,
            empty_table_as_object: true,
            decode_array_with_array_mt: false,
            escape_forward_slash: true,
            skip_unsupported: false,
        }
    }
}

/// The metatables shared by every cjson module table of a worker (lua-cjson keeps them in the
/// registry).
#[derive(Clone)]
struct Metatables {
    array: Table,
    empty_array: Table,
}

/// Registers the `cjson` and `cjson.safe` loaders in `preload`. With `scope` (the sandbox's: the
/// running request's key, nil for worker code), request code configures a copy of its own.
pub(crate) fn register(lua: &Lua, preload: &Table, scope: Option<Function>) -> mlua::Result<()> {
    let metatables = Metatables { array: lua.create_table()?, empty_array: lua.create_table()? };
    let params = lua.create_table()?;
    params.set("signal", signal())?;
    params.set("preload", preload)?;
    params.set("scope", scope)?;
    params.set("null", LightUserData(std::ptr::null_mut()))?;
    params.set("empty_array", empty_array())?;
    params.set("array_mt", &metatables.array)?;
    params.set("empty_array_mt", &metatables.empty_array)?;
    params.set("functions", lua.create_function(move |lua, ()| functions(lua, &metatables))?)?;
    lua.load(include_str!("cjson.lua")).set_name("=[luaengine cjson]").call(params)
}

/// A module table's functions, sharing one fresh configuration. Each returns its results, or
/// (signal, message) for the Lua side to raise or return.
fn functions(lua: &Lua, metatables: &Metatables) -> mlua::Result<Table> {
    let config = Arc::new(Mutex::new(Config::default()));
    let table = lua.create_table()?;
    let (cfg, mt) = (config.clone(), metatables.clone());
    table.set(
        "encode",
        lua.create_function(move |lua, args: MultiValue| {
            let settings = *cfg.lock();
            let result = single_argument("encode", args)
                .and_then(|value| Encoder { config: settings, metatables: &mt, out: Vec::new() }.run(value));
            reply(lua, result.and_then(|json| lua.create_string(json).map_err(|e| e.to_string())))
        })?,
    )?;
    let (cfg, mt) = (config.clone(), metatables.clone());
    table.set(
        "decode",
        lua.create_function(move |lua, args: MultiValue| {
            let settings = *cfg.lock();
            let array_mt = settings.decode_array_with_array_mt.then_some(&mt.array);
            let result = single_argument("decode", args).and_then(|value| {
                let text = match value {
                    Value::String(text) => text,
                    other => match string_or_number(&other) {
                        Some(number) => lua.create_string(number).map_err(|e| e.to_string())?,
                        None => {
                            let got = type_name(&other);
                            return Err(format!("bad argument #1 to 'decode' (string expected, got {got})"));
                        }
                    },
                };
                let bytes = text.as_bytes();
                Decoder::new(lua, &bytes, settings, array_mt).run()
            });
            reply(lua, result)
        })?,
    )?;
    type Setter = fn(&mut Config, &Options) -> Result<Vec<Setting>, String>;
    let setters: [(&str, usize, Setter); 11] = [
        ("encode_sparse_array", 3, |c, o| {
            Ok(vec![
                o.boolean(0, &mut c.sparse_convert)?,
                o.integer(1, &mut c.sparse_ratio, 0, i32::MAX.into())?,
                o.integer(2, &mut c.sparse_safe, 0, i32::MAX.into())?,
            ])
        }),
        ("encode_max_depth", 1, |c, o| Ok(vec![o.integer(0, &mut c.encode_max_depth, 1, i32::MAX.into())?])),
        ("decode_max_depth", 1, |c, o| Ok(vec![o.integer(0, &mut c.decode_max_depth, 1, i32::MAX.into())?])),
        ("encode_number_precision", 1, |c, o| {
            let mut precision = c.precision as i64;
            let setting = o.integer(0, &mut precision, 1, 16)?;
            c.precision = precision as usize;
            Ok(vec![setting])
        }),
        ("encode_keep_buffer", 1, |c, o| Ok(vec![o.boolean(0, &mut c.keep_buffer)?])),
        ("encode_invalid_numbers", 1, |c, o| Ok(vec![o.invalid_numbers(&mut c.encode_invalid_numbers)?])),
        ("decode_invalid_numbers", 1, |c, o| Ok(vec![o.boolean(0, &mut c.decode_invalid_numbers)?])),
        ("encode_empty_table_as_object", 1, |c, o| Ok(vec![o.boolean(0, &mut c.empty_table_as_object)?])),
        ("decode_array_with_array_mt", 1, |c, o| Ok(vec![o.boolean(0, &mut c.decode_array_with_array_mt)?])),
        ("encode_escape_forward_slash", 1, |c, o| Ok(vec![o.boolean(0, &mut c.escape_forward_slash)?])),
        ("encode_skip_unsupported_value_types", 1, |c, o| Ok(vec![o.boolean(0, &mut c.skip_unsupported)?])),
    ];
    for (name, count, setter) in setters {
        let cfg = config.clone();
        table.set(
            name,
            lua.create_function(move |lua, args: MultiValue| {
                let options = Options { name, args: args.into_vec() };
                if options.args.len() > count {
                    let message = format!("bad argument #{} to '{name}' (found too many arguments)", count + 1);
                    return failure(lua, message);
                }
                match setter(&mut cfg.lock(), &options) {
                    // One value per setting, as lua-cjson returns them (a Vec would be one table).
                    Ok(settings) => mlua::Variadic::from_iter(settings).into_lua_multi(lua),
                    Err(message) => failure(lua, message),
                }
            })?,
        )?;
    }
    Ok(table)
}

fn single_argument(name: &str, args: MultiValue) -> Result<Value, String> {
    let mut args = args.into_vec();
    if args.len() != 1 {
        return Err(format!("bad argument #1 to '{name}' (expected 1 argument)"));
    }
    Ok(args.remove(0))
}

fn reply(lua: &Lua, result: Result<impl mlua::IntoLua, String>) -> mlua::Result<MultiValue> {
    match result {
        Ok(value) => value.into_lua_multi(lua),
        Err(message) => failure(lua, message),
    }
}

fn failure(lua: &Lua, message: String) -> mlua::Result<MultiValue> {
    (signal(), message).into_lua_multi(lua)
}

/// A configuration function's current value, as lua-cjson returns it.
#[derive(Clone, Copy)]
enum Setting {
    Boolean(bool),
    Integer(i64),
    Text(&'static str),
}

impl mlua::IntoLua for Setting {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        match self {
            Setting::Boolean(b) => Ok(Value::Boolean(b)),
            Setting::Integer(i) => Ok(Value::Integer(i)),
            Setting::Text(text) => text.into_lua(lua),
        }
    }
}

/// A configuration function's arguments, read as lua-cjson's json_*_option helpers do.
struct Options {
    name: &'static str,
    args: Vec<Value>,
}

impl Options {
    fn arg(&self, index: usize) -> &Value {
        self.args.get(index).unwrap_or(&Value::Nil)
    }

    fn bad(&self, index: usize, reason: impl std::fmt::Display) -> String {
        format!("bad argument #{} to '{}' ({reason})", index + 1, self.name)
    }

    /// An integer in min..=max. (lua-cjson's range error always names argument #1.)
    fn integer(&self, index: usize, setting: &mut i64, min: i64, max: i64) -> Result<Setting, String> {
        let value = self.arg(index);
        if !value.is_nil() {
            let number = match value {
                Value::Integer(i) => *i as f64,
                Value::Number(n) => *n,
                Value::String(s) => s.to_str().ok().and_then(|s| s.trim().parse().ok()).unwrap_or(f64::NAN),
                _ => f64::NAN,
            };
            if number.is_nan() {
                return Err(self.bad(index, format!("number expected, got {}", type_name(value))));
            }
            let number = number as i64;
            if !(min..=max).contains(&number) {
                return Err(self.bad(0, format!("expected integer between {min} and {max}")));
            }
            *setting = number;
        }
        Ok(Setting::Integer(*setting))
    }

    /// true/false, or luaL_checkoption's "off"/"on".
    fn boolean(&self, index: usize, setting: &mut bool) -> Result<Setting, String> {
        let mut level = u8::from(*setting);
        self.option(index, &mut level, &["off", "on"])?;
        *setting = level == 1;
        Ok(Setting::Boolean(*setting))
    }

    /// `encode_invalid_numbers`: true/false, "off", "on" or "null".
    fn invalid_numbers(&self, setting: &mut u8) -> Result<Setting, String> {
        self.option(0, setting, &["off", "on", "null"])?;
        Ok(match *setting {
            2 => Setting::Text("null"),
            level => Setting::Boolean(level == 1),
        })
    }

    fn option(&self, index: usize, setting: &mut u8, names: &[&str]) -> Result<(), String> {
        match self.arg(index) {
            Value::Nil => {}
            Value::Boolean(b) => *setting = u8::from(*b),
            Value::String(s) => {
                let text = s.to_string_lossy();
                let found = names.iter().position(|name| *name == text);
                *setting = found.ok_or_else(|| self.bad(index, format!("invalid option '{text}'")))? as u8;
            }
            other => return Err(self.bad(index, format!("string expected, got {}", type_name(other)))),
        }
        Ok(())
    }
}

/// C's `%.<precision>g`, which lua-cjson uses for numbers (fpconv_g_fmt).
pub(crate) fn format_g(n: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if n.fract() == 0.0 && n.abs() < 10f64.powi(precision as i32) {
        // Integers with at most `precision` digits print plainly (and -0 keeps its sign).
        return if n == 0.0 && n.is_sign_negative() { "-0".into() } else { format!("{}", n as i64) };
    }
    // %g rounds the exact value to `precision` digits. When the shortest digits that read back
    // as `n` are no more than that, and precision <= 15 (so the double's error stays below half
    // a unit of the last digit; subnormals have less), the rounding gives those digits: skip
    // the slow exact path.
    if precision <= 15 && n.is_normal() {
        let shortest = format!("{n:e}");
        let (mantissa, exponent) = shortest.split_once('e').expect("{:e} has an exponent");
        if mantissa.bytes().filter(u8::is_ascii_digit).count() <= precision {
            let exponent: i32 = exponent.parse().expect("{:e} exponent is a number");
            if exponent < -4 || exponent >= precision as i32 {
                let sign = if exponent < 0 { '-' } else { '+' };
                return format!("{mantissa}e{sign}{:02}", exponent.abs());
            }
            return format!("{n}");
        }
    }
    format_g_exact(n, precision)
}

/// `%.<precision>g` from the exactly rounded digits.
fn format_g_exact(n: f64, precision: usize) -> String {
    let scientific = format!("{n:.*e}", precision - 1);
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} exponent is a number");
    if exponent < -4 || exponent >= precision as i32 {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_fraction(mantissa), exponent.abs());
    }
    let decimals = usize::try_from(precision as i32 - 1 - exponent).unwrap_or(0);
    trim_fraction(&format!("{n:.decimals$}")).to_string()
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// A table being written: the position of the next element and how many were written.
enum Frame {
    Array {
        table: Table,
        len: i64,
        next: i64,
        written: usize,
    },
    /// An array whose (key, value) pairs were already read in index order.
    Values {
        entries: std::vec::IntoIter<(Value, Value)>,
        written: usize,
    },
    Object {
        entries: std::vec::IntoIter<(Value, Value)>,
        written: usize,
    },
}

struct Encoder<'a> {
    config: Config,
    metatables: &'a Metatables,
    out: Vec<u8>,
}

impl Encoder<'_> {
    fn run(mut self, value: Value) -> Result<Vec<u8>, String> {
        let mut stack: Vec<Frame> = Vec::new();
        // The value to write next, and where the output stood before its comma and key.
        let mut pending = Some((value, 0));
        loop {
            if let Some((value, mark)) = pending.take() {
                if !self.value(value, &mut stack)? {
                    // An unsupported value skipped: drop its comma and key too.
                    self.out.truncate(mark);
                    if let Some(
                        Frame::Array { written, .. } | Frame::Values { written, .. } | Frame::Object { written, .. },
                    ) = stack.last_mut()
                    {
                        *written -= 1;
                    }
                }
            }
            let Some(frame) = stack.last_mut() else { return Ok(self.out) };
            let mark = self.out.len();
            let (item, written, close) = match frame {
                Frame::Array { table, len, next, written } => {
                    let item = if *next > *len { None } else { Some((None, table.raw_get(*next))) };
                    *next += 1;
                    (item, written, b']')
                }
                Frame::Values { entries, written } => (entries.next().map(|(_, v)| (None, Ok(v))), written, b']'),
                Frame::Object { entries, written } => (entries.next().map(|(k, v)| (Some(k), Ok(v))), written, b'}'),
            };
            let Some((key, value)) = item else {
                self.out.push(close);
                stack.pop();
                continue;
            };
            if *written > 0 {
                self.out.push(b',');
            }
            *written += 1;
            if let Some(key) = key {
                self.key(&key)?;
            }
            pending = Some((value.map_err(|e| e.to_string())?, mark));
        }
    }

    /// Writes a scalar, or opens a table (pushing its frame). False when the value was
    /// skipped (`encode_skip_unsupported_value_types`).
    fn value(&mut self, value: Value, stack: &mut Vec<Frame>) -> Result<bool, String> {
        match value {
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::Boolean(b) => self.out.extend_from_slice(if b { b"true" } else { b"false" }),
            Value::Integer(i) => self.integer(i),
            Value::Number(n) => self.number(n)?,
            Value::String(s) => self.string(&s.as_bytes()),
            Value::Table(table) => self.open(table, stack)?,
            Value::LightUserData(ud) if ud.0.is_null() => self.out.extend_from_slice(b"null"),
            Value::LightUserData(ud) if ud == empty_array() => self.out.extend_from_slice(b"[]"),
            other if self.config.skip_unsupported => {
                drop(other);
                return Ok(false);
            }
            other => return Err(format!("Cannot serialise {}: type not supported", type_name(&other))),
        }
        Ok(true)
    }

    /// Lua 5.4 integers print plainly; LuaJIT has only doubles, which lua-cjson formats with
    /// `%.14g` whatever their value.
    fn integer(&mut self, i: i64) {
        if cfg!(feature = "luajit") {
            self.out.extend_from_slice(format_g(i as f64, self.config.precision).as_bytes());
        } else {
            self.out.extend_from_slice(i.to_string().as_bytes());
        }
    }

    fn number(&mut self, n: f64) -> Result<(), String> {
        if n.is_finite() {
            self.out.extend_from_slice(format_g(n, self.config.precision).as_bytes());
            return Ok(());
        }
        let text: &[u8] = match self.config.encode_invalid_numbers {
            0 => return Err("Cannot serialise number: must not be NaN or Infinity".into()),
            1 if n.is_nan() => b"NaN",
            1 if n < 0.0 => b"-Infinity",
            1 => b"Infinity",
            _ => b"null",
        };
        self.out.extend_from_slice(text);
        Ok(())
    }

    fn key(&mut self, key: &Value) -> Result<(), String> {
        match key {
            Value::String(s) => self.string(&s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => {
                self.out.push(b'"');
                match key {
                    Value::Integer(i) => self.integer(*i),
                    Value::Number(n) => self.number(*n)?,
                    _ => unreachable!("a number key"),
                }
                self.out.push(b'"');
            }
            other => {
                return Err(format!("Cannot serialise {}: table key must be a number or string", type_name(other)))
            }
        }
        self.out.push(b':');
        Ok(())
    }

    fn string(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.out.reserve(bytes.len() + 2);
        self.out.push(b'"');
        let mut copied = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'/' if self.config.escape_forward_slash => b"\\/",
                b'\n' => b"\\n",
                b'\t' => b"\\t",
                b'\r' => b"\\r",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0..=0x1f | 0x7f => &[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]],
                _ => continue,
            };
            self.out.extend_from_slice(&bytes[copied..i]);
            self.out.extend_from_slice(short);
            copied = i + 1;
        }
        self.out.extend_from_slice(&bytes[copied..]);
        self.out.push(b'"');
    }

    /// Starts writing a table as an array or an object, following lua-cjson's rules.
    fn open(&mut self, table: Table, stack: &mut Vec<Frame>) -> Result<(), String> {
        let depth = stack.len() + 1;
        if depth as i64 > self.config.encode_max_depth || depth > ENCODE_DEPTH_CEILING {
            return Err(format!("Cannot serialise, excessive nesting ({depth})"));
        }
        let lua_error = |e: mlua::Error| e.to_string();
        let metatable = table.metatable();
        let as_array = match &metatable {
            Some(mt) => *mt == self.metatables.array || !mt.raw_get::<Value>("__len").map_err(lua_error)?.is_nil(),
            None => false,
        };
        if as_array {
            let len = table.len().map_err(lua_error)?;
            self.out.push(b'[');
            stack.push(Frame::Array { table, len, next: 1, written: 0 });
            return Ok(());
        }
        let entries: Vec<(Value, Value)> = table.pairs().collect::<mlua::Result<_>>().map_err(lua_error)?;
        match self.array_length(&entries)? {
            Some(len) if len > 0 || !self.config.empty_table_as_object => {
                self.out.push(b'[');
                // lua_next walks a table's array part in order: when the keys read are exactly
                // 1..=len, the values are already at hand.
                let in_order = entries.len() as i64 == len
                    && entries.iter().zip(1..).all(|((key, _), index)| matches!(key, Value::Integer(k) if *k == index));
                if in_order {
                    stack.push(Frame::Values { entries: entries.into_iter(), written: 0 });
                } else {
                    stack.push(Frame::Array { table, len, next: 1, written: 0 });
                }
            }
            _ if metatable.is_some_and(|mt| mt == self.metatables.empty_array) => self.out.extend_from_slice(b"[]"),
            _ => {
                self.out.push(b'{');
                stack.push(Frame::Object { entries: entries.into_iter(), written: 0 });
            }
        }
        Ok(())
    }

    /// lua_array_length: the largest index when every key is a positive integer (None for an
    /// object), after the sparse-array check.
    fn array_length(&self, entries: &[(Value, Value)]) -> Result<Option<i64>, String> {
        let (mut max, mut items) = (0i64, 0i64);
        for (key, _) in entries {
            let index = match key {
                Value::Integer(i) if *i >= 1 => *i,
                Value::Number(n) if n.floor() == *n && *n >= 1.0 => *n as i64,
                _ => return Ok(None),
            };
            max = max.max(index);
            items += 1;
        }
        let config = &self.config;
        if config.sparse_ratio > 0 && max > items.saturating_mul(config.sparse_ratio) && max > config.sparse_safe {
            if !config.sparse_convert {
                return Err("Cannot serialise table: excessively sparse array".into());
            }
            return Ok(None);
        }
        Ok(Some(max))
    }
}

/// lua-cjson's tokens, named as its errors name them.
#[derive(Debug)]
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    /// A string: its bytes are in the decoder's scratch buffer.
    String,
    Number(f64),
    Integer(i64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Token {
    fn name(&self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::String => "T_STRING",
            Token::Number(_) => "T_NUMBER",
            Token::Integer(_) => "T_INTEGER",
            Token::Boolean(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(reason) => reason,
        }
    }
}

/// An array or object being read.
enum Open {
    Array(Vec<Value>),
    Object(Vec<(LuaString, Value)>, LuaString),
}

struct Decoder<'a> {
    lua: &'a Lua,
    json: &'a [u8],
    pos: usize,
    config: Config,
    array_mt: Option<&'a Table>,
    /// The bytes of the last string token.
    scratch: Vec<u8>,
}

impl<'a> Decoder<'a> {
    fn new(lua: &'a Lua, json: &'a [u8], config: Config, array_mt: Option<&'a Table>) -> Decoder<'a> {
        Decoder { lua, json, pos: 0, config, array_mt, scratch: Vec::new() }
    }

    /// lua-cjson reads C strings: a NUL byte ends the input.
    fn byte_at(&self, at: usize) -> u8 {
        self.json.get(at).copied().unwrap_or(0)
    }

    fn run(mut self) -> Result<Value, String> {
        if self.json.len() >= 2 && (self.json[0] == 0 || self.json[1] == 0) {
            return Err("JSON parser does not support UTF-16 or UTF-32".into());
        }
        let mut stack: Vec<Open> = Vec::new();
        let mut token = self.next_token();
        loop {
            // A value starts at `token`.
            let mut value = match token.0 {
                Token::ObjBegin => {
                    self.descend(stack.len() + 1)?;
                    let first = self.next_token();
                    if matches!(first.0, Token::ObjEnd) {
                        Value::Table(self.lua.create_table().map_err(|e| e.to_string())?)
                    } else {
                        let key = self.key(first)?;
                        stack.push(Open::Object(Vec::new(), key));
                        token = self.next_token();
                        continue;
                    }
                }
                Token::ArrBegin => {
                    self.descend(stack.len() + 1)?;
                    token = self.next_token();
                    if matches!(token.0, Token::ArrEnd) {
                        self.array(Vec::new())?
                    } else {
                        stack.push(Open::Array(Vec::new()));
                        continue;
                    }
                }
                _ => self.scalar(token)?,
            };
            // Hand the value to the enclosing arrays and objects that it completes.
            loop {
                match stack.last_mut() {
                    None => {
                        let end = self.next_token();
                        if !matches!(end.0, Token::End) {
                            return Err(expected("the end", &end));
                        }
                        return Ok(value);
                    }
                    Some(Open::Array(items)) => {
                        items.push(value);
                        let next = self.next_token();
                        match next.0 {
                            Token::Comma => {
                                token = self.next_token();
                                break;
                            }
                            Token::ArrEnd => {
                                let Some(Open::Array(items)) = stack.pop() else { unreachable!("an array") };
                                value = self.array(items)?;
                            }
                            _ => return Err(expected("comma or array end", &next)),
                        }
                    }
                    Some(Open::Object(entries, key)) => {
                        entries.push((key.clone(), value));
                        let next = self.next_token();
                        match next.0 {
                            Token::Comma => {
                                let key_token = self.next_token();
                                *key = self.key(key_token)?;
                                token = self.next_token();
                                break;
                            }
                            Token::ObjEnd => {
                                let Some(Open::Object(entries, _)) = stack.pop() else { unreachable!("an object") };
                                value = self.object(entries)?;
                            }
                            _ => return Err(expected("comma or object end", &next)),
                        }
                    }
                }
            }
        }
    }

    fn descend(&self, depth: usize) -> Result<(), String> {
        if depth as i64 > self.config.decode_max_depth {
            return Err(format!("Found too many nested data structures ({depth}) at character {}", self.pos));
        }
        Ok(())
    }

    /// An object key and its colon.
    fn key(&mut self, token: (Token, usize)) -> Result<LuaString, String> {
        if !matches!(token.0, Token::String) {
            return Err(expected("object key string", &token));
        }
        let key = self.lua.create_string(&self.scratch).map_err(|e| e.to_string())?;
        let colon = self.next_token();
        if !matches!(colon.0, Token::Colon) {
            return Err(expected("colon", &colon));
        }
        Ok(key)
    }

    fn scalar(&mut self, token: (Token, usize)) -> Result<Value, String> {
        Ok(match token.0 {
            Token::String => Value::String(self.lua.create_string(&self.scratch).map_err(|e| e.to_string())?),
            Token::Number(n) => Value::Number(n),
            Token::Integer(i) => Value::Integer(i),
            Token::Boolean(b) => Value::Boolean(b),
            Token::Null => Value::LightUserData(LightUserData(std::ptr::null_mut())),
            _ => return Err(expected("value", &token)),
        })
    }

    fn array(&self, items: Vec<Value>) -> Result<Value, String> {
        let table = self.lua.create_sequence_from(items).map_err(|e| e.to_string())?;
        if let Some(mt) = self.array_mt {
            table.set_metatable(Some(mt.clone())).map_err(|e| e.to_string())?;
        }
        Ok(Value::Table(table))
    }

    fn object(&self, entries: Vec<(LuaString, Value)>) -> Result<Value, String> {
        let table = self.lua.create_table_with_capacity(0, entries.len()).map_err(|e| e.to_string())?;
        for (key, value) in entries {
            table.raw_set(key, value).map_err(|e| e.to_string())?;
        }
        Ok(Value::Table(table))
    }

    /// The next token and its 0-based index, as json_next_token reads it.
    fn next_token(&mut self) -> (Token, usize) {
        while matches!(self.byte_at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let index = self.pos;
        let single = match self.byte_at(index) {
            0 => return (Token::End, index),
            b'{' => Token::ObjBegin,
            b'}' => Token::ObjEnd,
            b'[' => Token::ArrBegin,
            b']' => Token::ArrEnd,
            b',' => Token::Comma,
            b':' => Token::Colon,
            b'"' => return self.string(),
            b'-' | b'0'..=b'9' => {
                if !self.config.decode_invalid_numbers && self.invalid_number() {
                    return (Token::Error("invalid number"), index);
                }
                return self.number();
            }
            b't' | b'f' | b'n' | b'i' | b'I' | b'N' | b'+' => return self.word(),
            _ => Token::Error("invalid token"),
        };
        if !matches!(single, Token::Error(_)) {
            self.pos += 1;
        }
        (single, index)
    }

    fn word(&mut self) -> (Token, usize) {
        let index = self.pos;
        let rest = &self.json[index..];
        for (word, token, len) in
            [(&b"true"[..], Token::Boolean(true), 4), (b"false", Token::Boolean(false), 5), (b"null", Token::Null, 4)]
        {
            if rest.starts_with(word) {
                self.pos += len;
                return (token, index);
            }
        }
        if self.config.decode_invalid_numbers && self.invalid_number() {
            return self.number();
        }
        (Token::Error("invalid token"), index)
    }

    /// json_is_invalid_number: forms strtod/strtoll accept but JSON does not (`+1`, hex,
    /// leading zeros, inf, nan).
    fn invalid_number(&self) -> bool {
        let mut p = self.pos;
        match self.byte_at(p) {
            b'+' => return true,
            b'-' => p += 1,
            _ => {}
        }
        let next = self.byte_at(p + 1);
        match self.byte_at(p) {
            b'0' => next | 0x20 == b'x' || next.is_ascii_digit(),
            b if b <= b'9' => false,
            _ => {
                let word = self.json.get(p..p + 3).unwrap_or_default().to_ascii_lowercase();
                word == b"inf" || word == b"nan"
            }
        }
    }

    /// json_next_number_token: strtoll with base 0 (so `0x1f` is hex and `017` octal), or
    /// strtod when a fraction or exponent follows.
    fn number(&mut self) -> (Token, usize) {
        let start = self.pos;
        let negative = self.byte_at(start) == b'-';
        let p = start + usize::from(matches!(self.byte_at(start), b'-' | b'+'));
        let (radix, first) = match (self.byte_at(p), self.byte_at(p + 1) | 0x20) {
            (b'0', b'x') if self.byte_at(p + 2).is_ascii_hexdigit() => (16, p + 2),
            (b'0', _) => (8, p),
            _ => (10, p),
        };
        let mut end = first;
        let mut magnitude: i128 = 0;
        while let Some(digit) = char::from(self.byte_at(end)).to_digit(radix) {
            magnitude = (magnitude * i128::from(radix) + i128::from(digit)).min(i128::from(u64::MAX));
            end += 1;
        }
        if end == first {
            return (Token::Error("invalid number"), start);
        }
        if matches!(self.byte_at(end), b'.' | b'e' | b'E') {
            let (value, after) = self.strtod(start);
            self.pos = after;
            return (Token::Number(value), start);
        }
        self.pos = end;
        let value = if negative { -magnitude } else { magnitude };
        (Token::Integer(value.clamp(i64::MIN.into(), i64::MAX.into()) as i64), start)
    }

    /// The longest decimal floating-point number at `start` (C's strtod) and where it ends.
    fn strtod(&self, start: usize) -> (f64, usize) {
        let digits = |mut at: usize| {
            while self.byte_at(at).is_ascii_digit() {
                at += 1;
            }
            at
        };
        let mut end = digits(start + usize::from(matches!(self.byte_at(start), b'-' | b'+')));
        let mut text = String::from_utf8_lossy(&self.json[start..end]).into_owned();
        if self.byte_at(end) == b'.' {
            let fraction_end = digits(end + 1);
            text.push_str(&String::from_utf8_lossy(&self.json[end..fraction_end]));
            text.push('0');
            end = fraction_end;
        }
        if matches!(self.byte_at(end), b'e' | b'E') {
            let sign = usize::from(matches!(self.byte_at(end + 1), b'-' | b'+'));
            let exponent_end = digits(end + 1 + sign);
            if exponent_end > end + 1 + sign {
                text.push_str(&String::from_utf8_lossy(&self.json[end..exponent_end]));
                end = exponent_end;
            }
        }
        (text.parse().unwrap_or(0.0), end)
    }

    /// json_next_string_token: the string's bytes go to `scratch`.
    fn string(&mut self) -> (Token, usize) {
        let index = self.pos;
        self.pos += 1;
        self.scratch.clear();
        loop {
            let rest = &self.json[self.pos..];
            let run = rest.iter().position(|&b| b == b'"' || b == b'\\' || b == 0).unwrap_or(rest.len());
            self.scratch.extend_from_slice(&self.json[self.pos..self.pos + run]);
            self.pos += run;
            match self.byte_at(self.pos) {
                b'"' => {
                    self.pos += 1;
                    return (Token::String, index);
                }
                0 => return (Token::Error("unexpected end of string"), self.pos),
                _ => {}
            }
            let decoded = match self.byte_at(self.pos + 1) {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => match self.unicode_escape() {
                    Some(()) => continue,
                    None => return (Token::Error("invalid unicode escape code"), self.pos),
                },
                _ => return (Token::Error("invalid escape code"), self.pos),
            };
            self.scratch.push(decoded);
            self.pos += 2;
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.json.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    }

    /// `\uXXXX` at `pos`, with UTF-16 surrogate pairs, appended as UTF-8.
    fn unicode_escape(&mut self) -> Option<()> {
        let mut codepoint = self.hex4(self.pos + 2)?;
        let mut len = 6;
        if codepoint & 0xF800 == 0xD800 {
            if codepoint & 0x400 != 0 || self.json.get(self.pos + 6..self.pos + 8) != Some(b"\\u") {
                return None;
            }
            let low = self.hex4(self.pos + 8)?;
            if low & 0xFC00 != 0xDC00 {
                return None;
            }
            codepoint = (((codepoint & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        let ch = char::from_u32(codepoint)?;
        self.scratch.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
        self.pos += len;
        Some(())
    }
}

/// lua-cjson's syntax error: what it wanted, what it found and where (1-based).
fn expected(what: &str, (token, index): &(Token, usize)) -> String {
    format!("Expected {what} but found {} at character {}", token.name(), index + 1)
}

#[cfg(test)]
mod tests {
    use super::{format_g, format_g_exact};

    /// The shortcut through the shortest digits agrees with exact rounding.
    #[test]
    fn fast_number_formatting_matches_exact_rounding() {
        let mut bits: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5_000 {
            bits = bits.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let candidates = [f64::from_bits(bits), (bits % 100_000) as f64 / 1000.0, (bits % 1000) as f64 * 0.1];
            for n in candidates.into_iter().filter(|n| n.is_finite()) {
                for precision in 1..=16 {
                    assert_eq!(format_g(n, precision), format_g_exact(n, precision), "{n:e} at {precision}");
                }
            }
        }
    }

    #[test]
    fn numbers_format_like_printf_g() {
        assert_eq!(format_g(0.1, 14), "0.1");
        assert_eq!(format_g(1e15, 14), "1e+15");
        assert_eq!(format_g(123456789012345.0, 14), "1.2345678901234e+14");
        assert_eq!(format_g(1.23456, 3), "1.23");
        assert_eq!(format_g(-0.0, 14), "-0");
        assert_eq!(format_g(1.5e-7, 14), "1.5e-07");
        assert_eq!(format_g(100.0, 14), "100");
        assert_eq!(format_g(0.1 + 0.2, 14), "0.3");
        assert_eq!(format_g(0.1 + 0.2, 17), "0.30000000000000004");
        assert_eq!(format_g(1.0 / 3.0, 14), "0.33333333333333");
        assert_eq!(format_g(0.00012345, 14), "0.00012345");
        assert_eq!(format_g(1.5e-5, 14), "1.5e-05");
        assert_eq!(format_g(-2.5e20, 14), "-2.5e+20");
        assert_eq!(format_g(1234.5, 3), "1.23e+03");
        assert_eq!(format_g(99999.5, 5), "1e+05");
        assert_eq!(format_g(f64::MAX, 14), "1.7976931348623e+308");
        assert_eq!(format_g(5e-324, 14), "4.9406564584125e-324");
    }
}
