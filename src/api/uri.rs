//! Query strings as lua-nginx-module reads and writes them: `a=1&b&c=` parsed with URI
//! unescaping (`+` is a space), Lua tables encoded like `ngx.encode_args`.

use mlua::{Table, Value};

use super::{string_or_number, type_name};

/// Bytes `ngx.encode_args` leaves as they are: letters, digits and `-._~!*'()`, as
/// lua-nginx-module's URI component escaping.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!*'()".contains(&byte)
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

/// A table of arguments as a query string, as `ngx.encode_args` builds it: `key=value` escaped,
/// `true` as a bare key, `false` left out, arrays as repeated keys; in the table's own order.
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
    escape(out, key, |byte| !is_unreserved(byte));
    if let Some(text) = text {
        out.push(b'=');
        escape(out, &text, |byte| !is_unreserved(byte));
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
    fn escaping_keeps_unreserved_bytes() {
        let mut out = Vec::new();
        escape(&mut out, b"a b&c=d/~*\xff", |byte| !is_unreserved(byte));
        assert_eq!(out, b"a%20b%26c%3Dd%2F~*%FF");
    }
}
