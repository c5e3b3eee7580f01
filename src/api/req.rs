//! `ngx.req.*`: reading the request and rewriting it. Rewrites change the request's snapshot,
//! so later phases, `ngx.var` and the host (`Request::path()`...) all see them.

use std::cell::Cell;

use mlua::{FromLuaMulti, IntoLua, Lua, Table, Value};

use super::consts::METHODS;
use super::resp::integer_arg;
use super::uri::{args_table, encode_args, escape, insert_multi};
use super::{fail, string_or_number, type_name, CurrentRequest, YIELDING};
use crate::phase::{Phase, Phases};
use crate::request::RequestState;
use crate::wait::READ_BODY;

/// Reading functions work in every request phase.
const ANY: Phases = Phases::REQUEST;
/// Rewriting the URI and the headers stops at the log phase.
const REWRITE: Phases =
    Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content, Phase::HeaderFilter, Phase::BodyFilter]);
/// Reading, discarding and rewriting the body: before the response (lua-nginx-module's
/// `rewrite_by_lua*`, `access_by_lua*`, `content_by_lua*`).
const BODY: Phases = Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content]);
/// `set_method`, `http_version` and `raw_header` stop after the header filter.
const HEADERS: Phases = Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content, Phase::HeaderFilter]);

/// lua-nginx-module's default cap on returned headers and arguments.
const DEFAULT_MAX: i64 = 100;

/// Registers the functions in `impl.req`; the prelude wraps them into `ngx.req`.
pub(crate) fn register(
    lua: &Lua,
    current: &CurrentRequest,
    impl_table: &Table,
    headers_mt: &Table,
) -> mlua::Result<()> {
    let req = Functions { lua, table: lua.create_table()?, current, prefix: "ngx.req" };
    impl_table.set("req", &req.table)?;

    let mt = headers_mt.clone();
    req.add("get_headers", ANY, move |lua, request, (max, raw): (Value, Value)| {
        headers_reply(lua, || request.input.headers(), &max, &raw, "get_headers", &mt)
    })?;
    let resp = Functions { lua, table: lua.create_table()?, current, prefix: "ngx.resp" };
    impl_table.set("resp", &resp.table)?;
    let mt = headers_mt.clone();
    resp.add("get_headers", ANY, move |lua, request, (max, raw): (Value, Value)| {
        let headers = || request.response.headers.iter().map(|(name, value)| (name.as_slice(), value.as_slice()));
        headers_reply(lua, headers, &max, &raw, "get_headers", &mt)
    })?;
    req.add("get_body_data", ANY, |lua, request, ()| {
        Ok(request.input.body().map(|body| lua.create_string(body)).transpose()?)
    })?;
    // Without a body from the host, a host-driven wait for it (the body arrives as the result).
    req.add("read_body", YIELDING, |_, request, ()| {
        let unread = request.input.body().is_none() && !request.body_discarded;
        Ok(unread.then(|| request.waits.host(READ_BODY.into(), Vec::new())))
    })?;
    // The body is dropped at once; the host learns it from `Request::body_discarded`.
    req.add("discard_body", BODY, |_, request, ()| {
        request.input.clear_body();
        request.body_discarded = true;
        request.body_building = false;
        Ok(Value::Nil)
    })?;
    // Bodies are kept in memory, never in a file.
    req.add("get_body_file", BODY, |_, _, ()| Ok(Value::Nil))?;
    req.add("init_body", BODY, |_, request, size: Value| {
        if !size.is_nil() {
            let size = integer_arg(&size, 1, "init_body")?;
            if size < 0 {
                return Err(format!("bad size argument: {size}").into());
            }
        }
        require_body_read(request)?;
        // The size is nginx's buffer before it spills to a file: in memory, there is no limit.
        request.input.replace_body(b"");
        request.body_building = true;
        Ok(Value::Nil)
    })?;
    req.add("set_body_data", BODY, |_, request, data: Value| {
        let data = scalar_arg(&data, 1, "set_body_data")?;
        require_body_read(request)?;
        request.input.replace_body(&data);
        set_content_length(request);
        Ok(Value::Nil)
    })?;
    req.add("append_body", BODY, |_, request, data: Value| {
        let data = scalar_arg(&data, 1, "append_body")?;
        if !request.body_building {
            return Err("request_body not initialized".into());
        }
        request.input.append_body(&data);
        Ok(Value::Nil)
    })?;
    req.add("finish_body", BODY, |_, request, ()| {
        if !request.body_building {
            return Err("request_body not initialized".into());
        }
        request.body_building = false;
        set_content_length(request);
        Ok(Value::Nil)
    })?;
    // The engine makes no internal redirects: every request is the client's.
    req.add("is_internal", ANY, |_, _, ()| Ok(false))?;
    req.add("get_method", ANY, |lua, request, ()| Ok(lua.create_string(request.input.method())?))?;
    req.add("get_uri_args", ANY, |lua, request, (max, tab): (Value, Value)| {
        let max = max_arg(&max, "get_uri_args")?;
        let table = match tab {
            Value::Nil => None,
            Value::Table(table) => Some(table),
            other => {
                return Err(
                    format!("bad argument #2 to 'get_uri_args' (table expected, got {})", type_name(&other)).into()
                )
            }
        };
        let (table, truncated) = args_table(lua, request.input.query(), max, table)?;
        Ok(Truncated(table, truncated))
    })?;
    req.add("get_post_args", ANY, |lua, request, max: Value| {
        let max = max_arg(&max, "get_post_args")?;
        if request.body_discarded {
            return Ok(Truncated(lua.create_table()?, false));
        }
        // The host hands the body over up front or not at all: none is nginx's unread body.
        let body =
            request.input.body().ok_or("no request body found; maybe you should turn on lua_need_request_body?")?;
        let (table, truncated) = args_table(lua, body, max, None)?;
        Ok(Truncated(table, truncated))
    })?;
    req.add("set_header", REWRITE, |_, request, (name, value): (Value, Value)| {
        Ok(set_header(request, &name, &value)?)
    })?;
    req.add("clear_header", REWRITE, |_, request, name: Value| Ok(set_header(request, &name, &Value::Nil)?))?;
    req.add("set_uri", REWRITE, |_, request, (uri, jump, binary): (Value, Value, Value)| {
        Ok(set_uri(request, &uri, &jump, &binary)?)
    })?;
    req.add("set_uri_args", REWRITE, |_, request, args: Value| {
        let query = match &args {
            Value::Table(table) => encode_args(table)?,
            other => {
                let text = string_or_number(other).ok_or_else(|| {
                    format!(
                        "bad argument #1 to 'set_uri_args' (string, number, or table expected, but got {})",
                        type_name(other)
                    )
                })?;
                // A ready query string only gets its controls and blanks escaped.
                let mut query = Vec::with_capacity(text.len());
                escape(&mut query, &text, |byte| byte <= b' ' || byte == 0x7f);
                query
            }
        };
        request.input.set_query(&query);
        Ok(Value::Nil)
    })?;
    req.add("set_method", HEADERS, |_, request, method: Value| {
        let id = match method {
            Value::Integer(id) => id,
            Value::Number(n) if n.fract() == 0.0 => n as i64,
            _ => return Err("bad method number".into()),
        };
        let (name, _) = METHODS
            .iter()
            .find(|(_, constant)| *constant == id)
            .ok_or_else(|| format!("unsupported HTTP method: {id}"))?;
        request.input.set_method(name.trim_start_matches("HTTP_").as_bytes());
        Ok(Value::Nil)
    })?;
    req.add("http_version", HEADERS, |_, request, ()| Ok(http_version(request.input.http_version())))?;
    req.add("start_time", ANY, |_, request, ()| Ok(request.start_time))?;
    req.add("raw_header", HEADERS, |lua, request, no_request_line: Value| {
        Ok(lua.create_string(raw_header(request, is_true(&no_request_line))?)?)
    })
}

/// Why a request function failed: a bad argument or call (the glue raises it at the caller's
/// level), or a Lua failure such as running out of memory (raised as is).
enum Failure {
    Argument(String),
    Lua(mlua::Error),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Argument(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Argument(message.into())
    }
}

impl From<mlua::Error> for Failure {
    fn from(error: mlua::Error) -> Self {
        Failure::Lua(error)
    }
}

/// What a request function gives Lua: the value and a second result.
trait Reply {
    fn into_pair(self, lua: &Lua) -> mlua::Result<(Value, Value)>;
}

impl<T: IntoLua> Reply for T {
    fn into_pair(self, lua: &Lua) -> mlua::Result<(Value, Value)> {
        Ok((self.into_lua(lua)?, Value::Nil))
    }
}

/// A table, and whether entries were left out: then "truncated" comes second.
struct Truncated(Table, bool);

impl Reply for Truncated {
    fn into_pair(self, lua: &Lua) -> mlua::Result<(Value, Value)> {
        let note = if self.1 { Value::String(lua.create_string("truncated")?) } else { Value::Nil };
        Ok((Value::Table(self.0), note))
    }
}

/// The `impl.req` table being filled.
struct Functions<'a> {
    lua: &'a Lua,
    table: Table,
    current: &'a CurrentRequest,
    /// `ngx.req` or `ngx.resp`, for error messages.
    prefix: &'static str,
}

impl Functions<'_> {
    /// Adds `name`: a function that checks the phase, then runs `f` on the running request.
    fn add<A, R>(
        &self,
        name: &str,
        phases: Phases,
        f: impl Fn(&Lua, &mut RequestState, A) -> Result<R, Failure> + Send + 'static,
    ) -> mlua::Result<()>
    where
        A: FromLuaMulti,
        R: Reply,
    {
        let slot = self.current.clone();
        let api = format!("{}.{name}", self.prefix);
        let function = self.lua.create_function(move |lua, args: A| {
            match slot.with(&api, phases, |request| f(lua, request, args)) {
                Ok(Ok(reply)) => reply.into_pair(lua),
                Ok(Err(Failure::Lua(error))) => Err(error),
                Ok(Err(Failure::Argument(message))) | Err(message) => fail(lua, message),
            }
        })?;
        self.table.set(name, function)
    }
}

/// `get_headers(max?, raw?)` of the request or the response: at most `max` headers (default
/// 100, 0 for all; "truncated" second when there were more), names lowercased and looked up
/// through `headers_mt` unless `raw`. `headers` gives the headers afresh on each call: the
/// table is built in passes over them, without copying them.
fn headers_reply<'a, I>(
    lua: &Lua,
    headers: impl Fn() -> I,
    max: &Value,
    raw: &Value,
    api: &str,
    headers_mt: &Table,
) -> Result<Truncated, Failure>
where
    I: ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
{
    let max = max_arg(max, api)?;
    let raw = is_true(raw);
    let truncated = headers().len() > max;
    let table = headers_table(lua, || headers().take(max), raw)?;
    if !raw {
        table.set_metatable(Some(headers_mt.clone()))?;
    }
    Ok(Truncated(table, truncated))
}

/// Lua truthiness.
fn is_true(value: &Value) -> bool {
    !matches!(value, Value::Nil | Value::Boolean(false))
}

/// The `max_headers`/`max_args` argument: nil or negative is the default of 100, 0 is no limit.
fn max_arg(max: &Value, api: &str) -> Result<usize, String> {
    let max = match max {
        Value::Nil => DEFAULT_MAX,
        max => integer_arg(max, 1, api)?,
    };
    Ok(match max {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(DEFAULT_MAX as usize),
    })
}

/// The table `get_headers` returns: names lowercased (unless `raw`), repeated headers as arrays
/// of their values in order.
fn headers_table<'a, I>(lua: &Lua, headers: impl Fn() -> I, raw: bool) -> mlua::Result<Table>
where
    I: ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
{
    // All names, lowercased, in one buffer (on the stack when they fit: this runs per request).
    let mut stack = [0; 512];
    let mut heap;
    let total = headers().map(|(name, _)| name.len()).sum();
    let names = if total <= stack.len() {
        &mut stack[..total]
    } else {
        heap = vec![0; total];
        &mut heap[..]
    };
    let mut at = 0;
    for (name, _) in headers() {
        let lowered = &mut names[at..at + name.len()];
        lowered.copy_from_slice(name);
        if !raw {
            lowered.make_ascii_lowercase();
        }
        at += name.len();
    }
    let names = &*names;
    // Each header with its name's place in `names`.
    let spans = || {
        let at = Cell::new(0);
        headers().map(move |(name, value)| {
            let start = at.replace(at.get() + name.len());
            (start..start + name.len(), value)
        })
    };
    let repeated =
        spans().enumerate().any(|(i, (name, _))| spans().take(i).any(|(other, _)| names[other] == names[name.clone()]));
    if !repeated {
        // The common case, in one call into Lua: distinct UTF-8 names and values. Anything else
        // takes the general way below, dropping this table.
        let text = std::str::from_utf8(names).ok();
        let bad = Cell::new(text.is_none());
        let table = lua.create_table_from(spans().map(|(name, value)| {
            match (text.and_then(|text| text.get(name)), std::str::from_utf8(value)) {
                (Some(name), Ok(value)) => (name, value),
                _ => {
                    bad.set(true);
                    ("", "")
                }
            }
        }))?;
        if !bad.get() {
            return Ok(table);
        }
    }
    let table = lua.create_table_with_capacity(0, headers().len())?;
    for (name, value) in spans() {
        insert_multi(lua, &table, lua.create_string(&names[name])?, Value::String(lua.create_string(value)?))?;
    }
    Ok(table)
}

/// Header name bytes `set_header` escapes (lua-nginx-module's list): separators, controls and
/// non-ASCII, so a name cannot smuggle another header to the host.
fn unsafe_in_name(byte: u8) -> bool {
    !(0x20..0x7f).contains(&byte) || b" \"(),/:;?<=>@[\\]{}".contains(&byte)
}

/// Header value bytes `set_header` escapes: controls other than tab (CR and LF above all).
fn unsafe_in_value(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// `ngx.req.set_header(name, value)`: a string or number replaces the header, an array of them
/// replaces it with several, nil (or an empty array or string) removes it.
fn set_header(request: &mut RequestState, name: &Value, value: &Value) -> Result<Value, String> {
    let name = scalar_arg(name, 1, "set_header")?;
    let mut escaped_name = Vec::with_capacity(name.len());
    escape(&mut escaped_name, &name, unsafe_in_name);
    let values = match value {
        Value::Nil => Vec::new(),
        Value::Table(table) => (1..=table.raw_len())
            .map(|i| scalar_arg(&table.raw_get(i).unwrap_or(Value::Nil), 2, "set_header"))
            .collect::<Result<_, _>>()?,
        value => vec![scalar_arg(value, 2, "set_header")?],
    };
    let escaped: Vec<Vec<u8>> = values
        .iter()
        .filter(|value| !value.is_empty())
        .map(|value| {
            let mut out = Vec::with_capacity(value.len());
            escape(&mut out, value, unsafe_in_value);
            out
        })
        .collect();
    let values: Vec<&[u8]> = escaped.iter().map(Vec::as_slice).collect();
    request.input.set_header(&escaped_name, &values);
    Ok(Value::Nil)
}

/// Replacing the body needs one to replace, as in nginx; a discarded body counts as an empty one.
fn require_body_read(request: &RequestState) -> Result<(), String> {
    if request.input.body().is_none() && !request.body_discarded {
        return Err("request body not read yet".into());
    }
    Ok(())
}

/// As nginx, a new body's length replaces the Content-Length request header.
fn set_content_length(request: &mut RequestState) {
    let length = request.input.body().map_or(0, <[u8]>::len).to_string();
    request.input.set_header(b"Content-Length", &[length.as_bytes()]);
}

/// A string argument (numbers are turned into strings, as `luaL_checklstring` does).
pub(super) fn scalar_arg(value: &Value, position: usize, api: &str) -> Result<Vec<u8>, String> {
    string_or_number(value)
        .ok_or_else(|| format!("bad argument #{position} to '{api}' (string expected, got {})", type_name(value)))
}

/// An optional boolean argument.
fn flag_arg(value: &Value, position: usize, api: &str) -> Result<bool, String> {
    match value {
        Value::Nil => Ok(false),
        Value::Boolean(flag) => Ok(*flag),
        other => Err(format!("bad argument #{position} to '{api}' (boolean expected, got {})", type_name(other))),
    }
}

/// `ngx.req.set_uri(uri, jump?, binary?)`; returns true when the phase must end for a jump.
fn set_uri(request: &mut RequestState, uri: &Value, jump: &Value, binary: &Value) -> Result<bool, String> {
    let uri = scalar_arg(uri, 1, "set_uri")?;
    if uri.is_empty() {
        return Err("attempt to use zero-length uri".into());
    }
    if !flag_arg(binary, 3, "set_uri")? {
        if let Some(&byte) = uri.iter().find(|&&byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f) {
            return Err(format!(
                "ngx.req.set_uri unsafe byte \"0x{byte:02x}\" in \"{}\" (maybe you want to set the 'binary' argument?)",
                escape_log(&uri)
            ));
        }
    }
    let jump = flag_arg(jump, 2, "set_uri")?;
    match request.phase {
        Some(phase) if jump && phase != Phase::Rewrite => {
            return Err(format!("API disabled in the context of {}", phase.name()));
        }
        _ => {}
    }
    request.input.set_path(&uri);
    request.location_jump = jump;
    Ok(jump)
}

/// Bytes for an error message: printable ASCII as is, the rest as `\xHH`.
fn escape_log(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&byte| match byte {
            b'"' | b'\\' => format!("\\x{byte:02x}"),
            0x20..=0x7e => char::from(byte).to_string(),
            _ => format!("\\x{byte:02x}"),
        })
        .collect()
}

/// `HTTP/1.1` as 1.1; nil for versions nginx does not name.
fn http_version(version: &[u8]) -> Option<f64> {
    match version {
        b"HTTP/0.9" => Some(0.9),
        b"HTTP/1.0" => Some(1.0),
        b"HTTP/1.1" => Some(1.1),
        b"HTTP/2" | b"HTTP/2.0" => Some(2.0),
        _ => None,
    }
}

/// The request head as the host received it: request line and headers, each ending in CRLF,
/// then the blank line.
fn raw_header(request: &RequestState, no_request_line: bool) -> Result<Vec<u8>, String> {
    let input = &request.input;
    let version = input.http_version();
    if let Some(major @ b'2'..=b'9') = version.strip_prefix(b"HTTP/").and_then(|rest| rest.first().copied()) {
        return Err(format!("http{} requests not supported yet", char::from(major)));
    }
    let mut out = Vec::with_capacity(256);
    if !no_request_line {
        input.append_request_line(&mut out, false);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in input.received_headers() {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}
