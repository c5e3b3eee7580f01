//! Query strings as lua-nginx-module reads and writes them: `a=1&b&c=` parsed with URI
//! unescaping (`+` is a space), Lua tables encoded like `ngx.encode_args`, and the escape sets of
//! `ngx.escape_uri`.

use mlua::{Lua, LuaString, Table, Value};

use super::{string_or_number, type_name};

/// What `ngx.escape_uri(str, type)` escapes, by its type number (lua-nginx-module's
/// `ngx_http_lua_escape_uri` sets, which differ from the README's prose for 0: the code is what
/// OpenResty users get). Every type escapes the control bytes below 0x20.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EscapeType {
    /// 0: a full URI; also what `ngx.encode_args` escapes keys and values with.
    Uri,
    /// 1: query arguments.
    Args,
    /// 2 (the default): a URI component: all but letters, digits and `-._~!*'()`.
    UriComponent,
    /// 3: text for HTML attributes.
    Html,
    /// 4: a Refresh header's URL.
    Refresh,
    /// 5 and 6: memcached keys and mail auth: only blanks, `%` and controls, bytes ≥ 0x7f kept.
    Memcached,
}

impl EscapeType {
    /// The type for `ngx.escape_uri`'s number, None when it is out of range (0 to 6).
    pub(crate) fn from_number(number: i64) -> Option<EscapeType> {
        Some(match number {
            0 => EscapeType::Uri,
            1 => EscapeType::Args,
            2 => EscapeType::UriComponent,
            3 => EscapeType::Html,
            4 => EscapeType::Refresh,
            5 | 6 => EscapeType::Memcached,
            _ => return None,
        })
    }

    pub(crate) fn escapes(self, byte: u8) -> bool {
        if byte < 0x20 {
            return true;
        }
        if byte >= 0x7f {
            return self != EscapeType::Memcached;
        }
        let printable: &[u8] = match self {
            EscapeType::Uri => b" \"#%&+/:;<=>?[\\]^{}",
            EscapeType::Args => b" #%+?",
            EscapeType::UriComponent => return !(byte.is_ascii_alphanumeric() || b"-._~!*'()".contains(&byte)),
            EscapeType::Html => b" \"#%'",
            EscapeType::Refresh => b" \"'",
            EscapeType::Memcached => b" %",
        };
        printable.contains(&byte)
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `input` with the bytes `escape` picks written as `%XX`.
pub(crate) fn escape(out: &mut Vec<u8>, input: &[u8], escape: impl Fn(u8) -> bool) {
    for &byte in input {
        if escape(byte) {
            out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
        } else {
            out.push(byte);
        }
    }
}

/// Appends `input` unescaped as a URI component: `%XX` decoded, `+` as a space; malformed
/// escapes are kept as they are.
pub(crate) fn unescape(out: &mut Vec<u8>, input: &[u8]) {
    let hex = |byte: u8| char::from(byte).to_digit(16).map(|digit| digit as u8);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => match (input.get(i + 1).copied().and_then(hex), input.get(i + 2).copied().and_then(hex)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
}

/// Calls `f(key, value)` for the first `max` `&`-separated arguments of `query`,
/// unescaped; an argument without `=` has no value, empty keys are skipped (they still count
/// toward `max`, as in lua-nginx-module). Returns whether arguments were left out.
pub(crate) fn for_each_arg<E>(
    query: &[u8],
    max: usize,
    mut f: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), E>,
) -> Result<bool, E> {
    if query.is_empty() {
        return Ok(false);
    }
    let mut scratch = Vec::with_capacity(query.len());
    for (index, pair) in query.split(|&b| b == b'&').enumerate() {
        if index == max {
            return Ok(true);
        }
        scratch.clear();
        let value_at = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => {
                unescape(&mut scratch, &pair[..eq]);
                let key_len = scratch.len();
                unescape(&mut scratch, &pair[eq + 1..]);
                Some(key_len)
            }
            None => {
                unescape(&mut scratch, pair);
                None
            }
        };
        let (key, value) = match value_at {
            Some(at) => (&scratch[..at], Some(&scratch[at..])),
            None => (&scratch[..], None),
        };
        if !key.is_empty() {
            f(key, value)?;
        }
    }
    Ok(false)
}

/// The table `get_uri_args`/`get_post_args` return (into `table` when given, cleared first):
/// repeated keys as arrays, bare keys as `true`; true second when arguments were left out.
pub(crate) fn args_table(lua: &Lua, query: &[u8], max: usize, table: Option<Table>) -> mlua::Result<(Table, bool)> {
    let table = match table {
        Some(table) => {
            table.clear()?;
            table
        }
        None => lua.create_table()?,
    };
    let truncated = for_each_arg(query, max, |key, value| {
        let value = match value {
            Some(value) => Value::String(lua.create_string(value)?),
            None => Value::Boolean(true),
        };
        insert_multi(lua, &table, lua.create_string(key)?, value)
    })?;
    Ok((table, truncated))
}

/// Sets `table[key] = value`, turning a repeated key into an array of its values in order.
pub(crate) fn insert_multi(lua: &Lua, table: &Table, key: LuaString, value: Value) -> mlua::Result<()> {
    match table.raw_get::<Value>(&key)? {
        Value::Nil => table.raw_set(key, value),
        Value::Table(values) => values.raw_push(value),
        first => table.raw_set(key, lua.create_sequence_from([first, value])?),
    }
}

/// A table of arguments as a query string, as `ngx.encode_args` builds it: `key=value` escaped
/// as a URI (type 0), `true` as a bare key, `false` left out, arrays as repeated keys; in the
/// table's own order.
pub(crate) fn encode_args(table: &Table) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair.map_err(|e| e.to_string())?;
        let Value::String(key) = key else {
            return Err("attempt to use a non-string key in the \"args\" option table".into());
        };
        let key = key.as_bytes();
        match value {
            Value::Table(values) => {
                for value in values.pairs::<Value, Value>() {
                    encode_arg(&mut out, &key, &value.map_err(|e| e.to_string())?.1)?;
                }
            }
            value => encode_arg(&mut out, &key, &value)?,
        }
    }
    Ok(out)
}

fn encode_arg(out: &mut Vec<u8>, key: &[u8], value: &Value) -> Result<(), String> {
    let text = match value {
        Value::Boolean(false) => return Ok(()),
        Value::Boolean(true) => None,
        other => Some(
            string_or_number(other).ok_or_else(|| format!("attempt to use {} as query arg value", type_name(other)))?,
        ),
    };
    if !out.is_empty() {
        out.push(b'&');
    }
    escape(out, key, |byte| EscapeType::Uri.escapes(byte));
    if let Some(text) = text {
        out.push(b'=');
        escape(out, &text, |byte| EscapeType::Uri.escapes(byte));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(query: &str, max: usize) -> (Vec<(String, Option<String>)>, bool) {
        let mut out = Vec::new();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let truncated = for_each_arg::<()>(query.as_bytes(), max, |key, value| {
            out.push((text(key), value.map(text)));
            Ok(())
        })
        .unwrap();
        (out, truncated)
    }

    #[test]
    fn arguments_are_unescaped_and_counted() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            args("a%20b=1%61+2&flag&e=&=x&c=%zz%4", usize::MAX).0,
            [("a b".into(), some("1a 2")), ("flag".into(), None), ("e".into(), some("")), ("c".into(), some("%zz%4"))]
        );
        assert_eq!(args("a=1&b=2&c=3", 2), (vec![("a".into(), some("1")), ("b".into(), some("2"))], true));
        assert!(!args("a=1&b=2", 2).1);
        assert_eq!(args("", 1), (vec![], false));
    }

    #[test]
    fn escape_types_escape_their_sets() {
        let escaped = |kind: EscapeType| {
            let mut out = Vec::new();
            escape(&mut out, b"a b&c=d/~*@$,|'\x7f\xff\n", |byte| kind.escapes(byte));
            out
        };
        assert_eq!(escaped(EscapeType::UriComponent), b"a%20b%26c%3Dd%2F~*%40%24%2C%7C'%7F%FF%0A");
        assert_eq!(escaped(EscapeType::Uri), b"a%20b%26c%3Dd%2F~*@$,|'%7F%FF%0A");
        assert_eq!(escaped(EscapeType::Args), b"a%20b&c=d/~*@$,|'%7F%FF%0A");
        assert_eq!(escaped(EscapeType::Html), b"a%20b&c=d/~*@$,|%27%7F%FF%0A");
        assert_eq!(escaped(EscapeType::Memcached), b"a%20b&c=d/~*@$,|'\x7f\xff%0A");
        assert_eq!(EscapeType::from_number(6), Some(EscapeType::Memcached));
        assert_eq!(EscapeType::from_number(7), None);
    }
}
