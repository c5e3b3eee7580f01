//! `ngx.md5`, `md5_bin`, `sha1_bin`, `hmac_sha1`, `crc32_short`, `crc32_long`, `encode_base64`,
//! `decode_base64`, `decode_base64mime`, `escape_uri`, `unescape_uri`, `encode_args`,
//! `decode_args` and `quote_sql_str`. They need no request, so they work in every context, as in
//! lua-nginx-module. Arguments are taken the way OpenResty takes them: lua-resty-core's rule for
//! the functions it implements (strings as they are, nil and false as "", anything else through
//! `tostring`), lauxlib's checks for those still written in C (`hmac_sha1`, `quote_sql_str`,
//! `encode_args`).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use mlua::{BString, Function, Lua, LuaString, MultiValue, Table, Value};
use sha1::Sha1;

use super::req::scalar_arg;
use super::uri::{args_table, encode_args, escape, unescape, EscapeType};
use super::{add_function, format_number, string_or_number, type_name};

/// `ngx.decode_args`' default cap on arguments, as `get_uri_args`.
const DEFAULT_MAX_ARGS: usize = 100;

/// nginx's base64 decoder: decoding stops at the first `=` (so padding is optional), and the
/// unused bits of the last character are ignored.
const NGINX_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Registers the functions in `functions`; the prelude puts them into `ngx`.
pub(crate) fn register(lua: &Lua, functions: &Table) -> mlua::Result<()> {
    let text = Text(lua.globals().get("tostring")?);
    let t = text.clone();
    add_function(lua, functions, "md5", move |_, s: Value| {
        t.with(&s, |bytes| Ok(BString::from(hex(&Md5::digest(bytes)))))
    })?;
    let t = text.clone();
    add_function(lua, functions, "md5_bin", move |_, s: Value| {
        t.with(&s, |bytes| Ok(BString::from(Md5::digest(bytes).to_vec())))
    })?;
    let t = text.clone();
    add_function(lua, functions, "sha1_bin", move |_, s: Value| {
        t.with(&s, |bytes| Ok(BString::from(Sha1::digest(bytes).to_vec())))
    })?;
    // nginx's short and long CRC32 differ in their tables, not in their results.
    for name in ["crc32_short", "crc32_long"] {
        let t = text.clone();
        add_function(lua, functions, name, move |_, s: Value| t.with(&s, |bytes| Ok(crc32fast::hash(bytes))))?;
    }
    add_function(lua, functions, "hmac_sha1", |_, args: MultiValue| {
        if args.len() != 2 {
            return Ok(Err(format!("expecting 2 arguments, but got {}", args.len())));
        }
        let (key, message) = match (scalar_arg(&args[0], 1, "hmac_sha1"), scalar_arg(&args[1], 2, "hmac_sha1")) {
            (Ok(key), Ok(message)) => (key, message),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        };
        let mut mac = Hmac::<Sha1>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(&message);
        Ok(Ok(BString::from(mac.finalize().into_bytes().to_vec())))
    })?;
    let t = text.clone();
    add_function(lua, functions, "encode_base64", move |_, (s, no_padding): (Value, Value)| {
        let engine = match no_padding {
            Value::Nil | Value::Boolean(false) => &STANDARD,
            Value::Boolean(true) => &STANDARD_NO_PAD,
            other => return Ok(Err(format!("bad no_padding: boolean expected, got {}", type_name(&other)))),
        };
        t.with(&s, |bytes| Ok(BString::from(engine.encode(bytes))))
    })?;
    add_function(lua, functions, "decode_base64", |_, s: Value| {
        Ok(string_only(&s).map(|s| decode_base64(&s.as_bytes()).map(BString::from)))
    })?;
    // MIME bodies wrap lines and may carry other noise: bytes outside the alphabet are skipped.
    add_function(lua, functions, "decode_base64mime", |_, s: Value| {
        Ok(string_only(&s).map(|s| {
            let kept: Vec<u8> = s.as_bytes().iter().copied().filter(|&b| b == b'=' || is_base64(b)).collect();
            decode_base64(&kept).map(BString::from)
        }))
    })?;
    let t = text.clone();
    add_function(lua, functions, "escape_uri", move |_, (s, kind): (Value, Value)| {
        let kind = match escape_type(&kind) {
            Ok(kind) => kind,
            Err(message) => return Ok(Err(message)),
        };
        t.with(&s, |bytes| {
            let mut out = Vec::with_capacity(bytes.len());
            escape(&mut out, bytes, |byte| kind.escapes(byte));
            Ok(BString::from(out))
        })
    })?;
    let t = text.clone();
    add_function(lua, functions, "unescape_uri", move |_, s: Value| {
        t.with(&s, |bytes| {
            let mut out = Vec::with_capacity(bytes.len());
            unescape(&mut out, bytes);
            Ok(BString::from(out))
        })
    })?;
    add_function(lua, functions, "encode_args", |_, args: MultiValue| {
        Ok(match args.len() {
            1 => match &args[0] {
                Value::Table(table) => encode_args(table).map(BString::from),
                other => Err(format!("bad argument #1 to 'encode_args' (table expected, got {})", type_name(other))),
            },
            n => Err(format!("expecting 1 argument but seen {n}")),
        })
    })?;
    add_function(lua, functions, "decode_args", |lua, (s, max): (Value, Value)| {
        let Value::String(query) = s else {
            return Ok(Err(format!("bad argument #1 to 'decode_args' (string expected, got {})", type_name(&s))));
        };
        Ok(Ok(args_table(lua, &query.as_bytes(), max_args(&max), None)?.0))
    })?;
    add_function(lua, functions, "quote_sql_str", |_, args: MultiValue| {
        if args.len() != 1 {
            return Ok(Err("expecting one argument".into()));
        }
        Ok(scalar_arg(&args[0], 1, "quote_sql_str").map(|raw| BString::from(quote_sql_str(&raw))))
    })
}

/// lua-resty-core's argument rule: strings as they are, nil and false as "", numbers as Lua
/// prints them, other values through `tostring`.
#[derive(Clone)]
struct Text(Function);

impl Text {
    fn with<R>(&self, value: &Value, f: impl FnOnce(&[u8]) -> R) -> mlua::Result<R> {
        match value {
            Value::String(s) => Ok(f(&s.as_bytes())),
            Value::Nil | Value::Boolean(false) => Ok(f(b"")),
            other => match string_or_number(other) {
                Some(text) => Ok(f(&text)),
                None => Ok(f(&self.0.call::<LuaString>(other)?.as_bytes())),
            },
        }
    }
}

/// The string argument of the base64 decoders, which take nothing else.
fn string_only(value: &Value) -> Result<&LuaString, String> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err("string argument only".into()),
    }
}

fn is_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/'
}

/// nginx's `ngx_decode_base64`: None for bytes outside the alphabet or a length that cannot be
/// base64 (one character left over).
fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    let end = input.iter().position(|&b| b == b'=').unwrap_or(input.len());
    NGINX_BASE64.decode(&input[..end]).ok()
}

/// `escape_uri`'s type argument, checked as lua-resty-core does; nil is a URI component.
fn escape_type(value: &Value) -> Result<EscapeType, String> {
    let number = match value {
        Value::Nil => return Ok(EscapeType::UriComponent),
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        _ => return Err("\"esc_type\" is not number".into()),
    };
    // The FFI call takes an int: fractions are dropped once the range is checked.
    (0.0..=6.0)
        .contains(&number)
        .then(|| EscapeType::from_number(number as i64))
        .flatten()
        .ok_or_else(|| format!("\"esc_type\" {} out of range", format_number(number)))
}

/// `decode_args`' `max_args`, read with `tonumber`: absent, unreadable or negative is the
/// default of 100, 0 is no limit.
fn max_args(value: &Value) -> usize {
    let number = match value {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => s.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()),
        _ => None,
    };
    match number {
        Some(n) if n >= 1.0 => n as usize,
        Some(n) if n >= 0.0 => usize::MAX,
        _ => DEFAULT_MAX_ARGS,
    }
}

/// Lowercase hex, as nginx's `ngx_hex_dump`.
fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|&b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]).collect()
}

/// A MySQL string literal, as lua-nginx-module quotes it: quotes, backslashes and the bytes
/// MySQL treats specially escaped; bytes ≥ 0x80 (UTF-8) are kept.
fn quote_sql_str(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 2);
    out.push(b'\'');
    for &byte in raw {
        let escaped = match byte {
            0 => b'0',
            8 => b'b',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            26 => b'Z',
            b'\\' | b'\'' | b'"' => byte,
            _ => {
                out.push(byte);
                continue;
            }
        };
        out.extend_from_slice(&[b'\\', escaped]);
    }
    out.push(b'\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_as_nginx() {
        let decode = |s: &str| decode_base64(s.as_bytes()).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(decode("aGVsbG8="), Some("hello".into()));
        assert_eq!(decode("aGVsbG8"), Some("hello".into()));
        assert_eq!(decode("aGVsbG9="), Some("hello".into()), "unused bits are ignored");
        assert_eq!(decode("YQ==garbage"), Some("a".into()), "decoding stops at '='");
        assert_eq!(decode(""), Some("".into()));
        assert_eq!(decode("Y"), None);
        assert_eq!(decode("aGV sbG8="), None);
        assert_eq!(decode("_w"), None);
    }

    #[test]
    fn sql_strings_are_quoted_for_mysql() {
        assert_eq!(quote_sql_str(b"a'b\"c\\\n\r\t\x00\x08\x1a\xe4"), b"'a\\'b\\\"c\\\\\\n\\r\\t\\0\\b\\Z\xe4'");
        assert_eq!(quote_sql_str(b""), b"''");
    }

    #[test]
    fn max_args_reads_like_tonumber() {
        assert_eq!(max_args(&Value::Nil), 100);
        assert_eq!(max_args(&Value::Integer(-1)), 100);
        assert_eq!(max_args(&Value::Integer(0)), usize::MAX);
        assert_eq!(max_args(&Value::Number(2.5)), 2);
    }
}
