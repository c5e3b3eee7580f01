//! The request snapshot through the C ABI: arbitrary method, path, query, version, address,
//! headers and body go through `le_request_new`, a fixed content script reads every view of
//! them (`ngx.var.*`, `ngx.req.*`, argument decoding), and the response view is read back.
//!
//! Input, one field a line: method, path, query, http version, remote address, then headers
//! (`name:value`) up to an empty line, then the body (absent when there is no empty line).
#![no_main]

use std::ptr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use luaengine::ffi::*;

const SCRIPT: &str = r#"
local r, v = ngx.req, ngx.var
local out = {}
local function try(f, ...)
  local ok, a, b = pcall(f, ...)
  out[#out + 1] = tostring(a)
  if type(a) == "table" then
    for k, x in pairs(a) do
      out[#out + 1] = tostring(k) .. "=" .. (type(x) == "table" and table.concat(x, ",") or tostring(x))
    end
  end
end
for _, name in ipairs({ "uri", "document_uri", "request_uri", "args", "query_string", "is_args",
    "request", "request_method", "host", "remote_addr", "scheme", "server_protocol",
    "content_type", "content_length", "cookie_a", "arg_a", "http_host", "http_cookie",
    "http_user_agent", "status", "body_bytes_sent", "request_body" }) do
  try(function() return v[name] end)
end
try(r.get_method)
try(r.http_version)
try(r.raw_header)
try(r.raw_header, true)
try(r.get_headers)
try(r.get_headers, 3, true)
try(r.get_uri_args)
try(r.get_uri_args, 2)
try(r.read_body)
try(r.get_body_data)
try(r.get_post_args)
try(r.get_post_args, 1)
try(ngx.decode_args, v.args or "")
try(ngx.unescape_uri, v.request_uri or "")
try(ngx.escape_uri, v.uri or "")
try(function() ngx.header["X-Echo"] = r.get_headers()["x-echo"] end)
try(r.set_uri_args, r.get_uri_args())
try(function() return v.args end)
ngx.print(table.concat(out, "\n"))
"#;

/// Splits `data` at the first `\n`: (line, rest), or (all, None).
fn line(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}

fn text(bytes: &[u8]) -> le_str {
    le_str { ptr: bytes.as_ptr(), len: bytes.len() }
}

/// A handle made once per process.
struct Handle<T>(*mut T);

// SAFETY: engine and script handles may be used from any thread (luaengine.h).
unsafe impl<T> Send for Handle<T> {}
unsafe impl<T> Sync for Handle<T> {}

/// The engine (with the limits of `luaengine_fuzz`) and the compiled script, made on first use.
fn handles() -> (*mut le_engine, *mut le_script) {
    static HANDLES: OnceLock<(Handle<le_engine>, Handle<le_script>)> = OnceLock::new();
    let (engine, script) = HANDLES.get_or_init(|| {
        let config = le_config {
            workers: 1,
            instruction_budget: luaengine_fuzz::INSTRUCTION_BUDGET,
            memory_limit: luaengine_fuzz::MEMORY_LIMIT,
            time_budget_ms: luaengine_fuzz::TIME_BUDGET.as_millis() as u32,
            log_level: LE_LOG_EMERG,
            ..Default::default()
        };
        let (mut engine, mut script, mut err) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        assert_eq!(le_engine_new(&config, &mut engine, &mut err), le_result::LE_OK);
        let compiled = le_script_compile(engine, text(b"content"), text(SCRIPT.as_bytes()), &mut script, &mut err);
        assert_eq!(compiled, le_result::LE_OK);
        (Handle(engine), Handle(script))
    });
    (engine.0, script.0)
}

/// The bytes a view lends, summed so that every one is read: a sanitizer then sees a bad range.
fn touch(s: &le_str) -> usize {
    if s.len == 0 {
        return 0;
    }
    // SAFETY: the response view lends `len` bytes at `ptr` until the next call on the request.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }.iter().map(|&b| b as usize).sum()
}

fuzz_target!(|data: &[u8]| {
    let mut fields = [&data[..0]; 5];
    let mut rest = Some(data);
    for field in fields.iter_mut() {
        let Some(input) = rest else { break };
        (*field, rest) = line(input);
    }
    let mut headers = Vec::new();
    let mut body = None;
    while let Some(input) = rest {
        let (header, next) = line(input);
        rest = next;
        if header.is_empty() {
            body = rest;
            break;
        }
        let (name, value) = match header.iter().position(|&b| b == b':') {
            Some(at) => (&header[..at], &header[at + 1..]),
            None => (header, &header[..0]),
        };
        headers.push(le_header { name: text(name), value: text(value) });
    }
    let [method, path, query, version, address] = fields;
    let init = le_request_init {
        size: std::mem::size_of::<le_request_init>(),
        method: text(method),
        path: text(path),
        query: text(query),
        http_version: text(version),
        scheme: text(b"http"),
        remote_addr: text(address),
        body: text(body.unwrap_or_default()),
        headers: headers.as_ptr(),
        n_headers: headers.len(),
        has_body: body.is_some(),
        buffer: le_str { ptr: ptr::null(), len: 0 },
    };
    let (engine, script) = handles();
    let mut request = ptr::null_mut();
    let mut err = ptr::null_mut();
    if le_request_new(engine, &init, LE_WORKER_ANY, &mut request, &mut err) != le_result::LE_OK {
        // A snapshot the ABI refuses is fine; it must say so with an error, not crash.
        assert!(!err.is_null());
        le_error_free(err);
        return;
    }
    let status = le_request_run(request, LE_PHASE_CONTENT, script, &mut err);
    if status == le_status::LE_STATUS_ERROR {
        le_error_free(err);
    }
    // SAFETY: a plain C struct, all zeros is a valid value; the call fills it in.
    let mut view: le_response_view = unsafe { std::mem::zeroed() };
    view.size = std::mem::size_of::<le_response_view>();
    if le_request_response(request, &mut view) == le_result::LE_OK {
        let mut sum = touch(&view.body);
        if view.n_headers > 0 {
            // SAFETY: the view lends `n_headers` headers until the next call on the request.
            for header in unsafe { std::slice::from_raw_parts(view.headers, view.n_headers) } {
                sum += touch(&header.name) + touch(&header.value);
            }
        }
        std::hint::black_box(sum);
    }
    le_request_free(request);
});
