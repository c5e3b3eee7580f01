//! Requests: create from one snapshot, run phases, resume, read the response, free.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::engine::le_engine;
use super::error::{call, le_error, le_result, report};
use super::host::{le_value, Views as ValueViews};
use super::script::le_script;
use super::wait::le_pending;
use super::{
    handle, le_header, le_str, read_versioned, require_out, require_versioned, slice, versioned, write_out,
    write_versioned, zeroed,
};
use crate::error::Error;
use crate::phase::{Phase, Status};
use crate::request::{Request, RequestInit};

/// A request phase.
pub type le_phase = u32;
pub const LE_PHASE_INIT: le_phase = 0;
pub const LE_PHASE_INIT_WORKER: le_phase = 1;
pub const LE_PHASE_REWRITE: le_phase = 2;
pub const LE_PHASE_ACCESS: le_phase = 3;
pub const LE_PHASE_CONTENT: le_phase = 4;
pub const LE_PHASE_HEADER_FILTER: le_phase = 5;
pub const LE_PHASE_BODY_FILTER: le_phase = 6;
pub const LE_PHASE_LOG: le_phase = 7;
pub const LE_PHASE_TIMER: le_phase = 8;

/// `le_request_new`'s worker hint meaning "any worker" (round robin).
pub const LE_WORKER_ANY: u32 = u32::MAX;

/// What running or resuming a phase returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum le_status {
    /// The phase finished: go on to the next phase.
    LE_STATUS_OK = 0,
    /// The request is answered (ngx.exit with a status, a redirect, or content): send the
    /// response and skip the remaining request phases up to header_filter.
    LE_STATUS_DONE = 1,
    /// The script waits (`ngx.sleep`, an async host function, a body read, or a plain
    /// `coroutine.yield()`, which the engine wakes soon by itself, as nginx resumes it from its
    /// event loop): call `le_request_resume` when the wake callback says so, or after
    /// completing a pending operation (polling `le_request_resume` works too).
    LE_STATUS_YIELD = 2,
    /// The phase failed; `*err` says why. Hosts usually answer 500.
    LE_STATUS_ERROR = 3,
}

/// Everything a request starts from, copied by `le_request_new` in one call. It carries its
/// size: set `size` to `sizeof(le_request_init)` (fields added after the host's header was made
/// are then empty).
#[repr(C)]
pub struct le_request_init {
    pub size: usize,
    pub method: le_str,
    /// The URI path without the query string.
    pub path: le_str,
    /// The query string without `?`; empty when there is none.
    pub query: le_str,
    /// `HTTP/1.1` (the default when empty), `HTTP/2.0`, ...
    pub http_version: le_str,
    /// `http` (the default when empty) or `https`.
    pub scheme: le_str,
    pub remote_addr: le_str,
    /// The request body, used when `has_body` is true.
    pub body: le_str,
    pub headers: *const le_header,
    pub n_headers: usize,
    pub has_body: bool,
    /// Optional (`{NULL, 0}` for none): a buffer holding the strings above and the headers'
    /// (an HTTP parser's read buffer, say). When it is not much larger than they are, it is
    /// copied in one piece rather than string by string; strings outside it are copied one by
    /// one.
    pub buffer: le_str,
}

versioned!(le_request_init, buffer: le_str);

/// What the scripts produced. Every pointer in it points into the request and stays valid
/// until the next call that takes this request. It carries its size: set `size` to
/// `sizeof(le_response_view)`; the library writes only the fields that fit in it.
#[repr(C)]
pub struct le_response_view {
    pub size: usize,
    /// The status scripts set (ngx.status, ngx.exit, ngx.redirect, or 200 once output started);
    /// 0 if none did.
    pub status: u16,
    /// Whether scripts produced output (nginx would have sent the headers).
    pub headers_sent: bool,
    /// Whether a script called ngx.exit or ngx.redirect; `exit_code` holds its argument.
    pub exited: bool,
    pub exit_code: i64,
    /// Headers scripts set, in order (a redirect's `Location` among them).
    pub headers: *const le_header,
    pub n_headers: usize,
    /// The body ngx.say/ngx.print wrote.
    pub body: le_str,
}

versioned!(le_response_view, body: le_str);

/// The handle's state: bits over IDLE. BUSY while a call uses the request; FREE when
/// `le_request_free` left the release to that call; WAKE when a wake came during that call
/// (the call hands it back to the clock thread when it ends, so the callback finds the request
/// free to resume).
const IDLE: u8 = 0;
const BUSY: u8 = 1;
const FREE: u8 = 2;
const WAKE: u8 = 4;

/// A request bound to one worker. Use it from one thread at a time (any thread). It may be
/// freed at any point, even from a callback while one of its phases runs: it is then released
/// when that phase returns.
pub struct le_request {
    request: UnsafeCell<Request>,
    pub(crate) state: AtomicU8,
    views: UnsafeCell<Views>,
    /// Readable while a phase runs (from callbacks), so kept outside the exclusive cell.
    id: u64,
    suspended: AtomicBool,
}

/// Arrays behind the views handed to the host, rebuilt by each call that returns a view.
#[derive(Default)]
pub(crate) struct Views {
    response_headers: Vec<le_header>,
    request_headers: Vec<le_header>,
    variables: Vec<le_header>,
    pub pending: Vec<le_pending>,
    pub pending_args: Vec<Vec<le_value>>,
    pub values: ValueViews,
}

/// What scripts made of the request (ngx.req.set_*, ngx.var writes). Every pointer in it points
/// into the request and stays valid until the next call that takes this request. It carries
/// its size: set `size` to `sizeof(le_request_view)`; the library writes only the fields that
/// fit in it.
#[repr(C)]
pub struct le_request_view {
    pub size: usize,
    pub method: le_str,
    /// The URI path, after `ngx.req.set_uri`.
    pub path: le_str,
    /// The query string without `?`, after `ngx.req.set_uri_args` or `ngx.var.args = ...`.
    pub query: le_str,
    /// The request headers after `ngx.req.set_header`/`clear_header`, in order.
    pub headers: *const le_header,
    pub n_headers: usize,
    /// Variables scripts set that the engine does not define (`ngx.var.backend = "b1"`).
    pub variables: *const le_header,
    pub n_variables: usize,
    /// Whether rewrite called `ngx.req.set_uri(uri, true)`: route the request again by `path`.
    pub location_jump: bool,
    /// The request body now: the host's (given to `le_request_new` or completing
    /// `ngx.req.read_body`), or the one scripts wrote; empty when there is none. Not copied.
    pub body: le_str,
    /// Whether a script replaced the body (`ngx.req.set_body_data`, `init_body`/`append_body`/
    /// `finish_body`, which also set the Content-Length header): hand `body` to whatever reads
    /// the request next instead of the client's. False: the client's body is still the one (a
    /// host that streams it need not look at `body`).
    pub body_changed: bool,
}

versioned!(le_request_view, body_changed: bool);

/// Runs `f` with exclusive access to the request, or fails if another call is using it. If the
/// request was freed during `f` (from a callback), it is released here.
pub(crate) fn exclusive<T>(ptr: *mut le_request, f: impl FnOnce(&mut Request, &mut Views) -> T) -> Result<T, Error> {
    let handle = unsafe { handle(ptr, "request")? };
    if handle.state.compare_exchange(IDLE, BUSY, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return Err(Error::invalid_state("the request is in use by another call (or was freed)"));
    }
    // SAFETY: the BUSY state makes this the only access to the cells until it is released.
    let request = unsafe { &mut *handle.request.get() };
    let result = f(request, unsafe { &mut *handle.views.get() });
    handle.suspended.store(request.is_suspended(), Ordering::Release);
    // A wake that came meanwhile goes back to the clock thread once the request is released,
    // but what sending it takes is gathered before: from the release on, the wake callback may
    // resume or free the request on another thread, so nothing here may touch it any more.
    let mut later = None;
    let mut state = handle.state.load(Ordering::Acquire);
    loop {
        if state & FREE != 0 {
            // le_request_free ran meanwhile and left the release to us: no wake is wanted.
            drop(unsafe { Box::from_raw(ptr) });
            return Ok(result);
        }
        if state & WAKE != 0 && later.is_none() {
            later = Some(request.wake_later());
        }
        match handle.state.compare_exchange_weak(state, IDLE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(actual) => state = actual,
        }
    }
    if let Some(wake) = later {
        wake.send();
    }
    Ok(result)
}

/// What the clock thread does with a wake for this request: call the host's callback when the
/// request is free, or leave the wake to the call that is using it (see `WAKE`).
pub(crate) fn deliver_wake(handle: &le_request, callback: impl FnOnce()) {
    let mut state = handle.state.load(Ordering::Acquire);
    loop {
        let next = match state {
            IDLE => return callback(),
            s if s & FREE != 0 => return,
            s => s | WAKE,
        };
        match handle.state.compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(actual) => state = actual,
        }
    }
}

/// Creates a request from the host's snapshot, bound to worker `worker_hint % workers`, or to
/// the next worker in turn with `LE_WORKER_ANY`. Copies everything `init` points to. Free the
/// request with `le_request_free`.
#[no_mangle]
pub extern "C" fn le_request_new(
    engine: *const le_engine,
    init: *const le_request_init,
    worker_hint: u32,
    out: *mut *mut le_request,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let engine = unsafe { handle(engine, "engine")? };
        let init = unsafe { read_versioned(init, "init", zeroed())? };
        require_out(out, "out")?;
        let headers = unsafe { slice(init.headers, init.n_headers, "init.headers")? };
        for header in headers {
            unsafe {
                header.name.bytes("header name")?;
                header.value.bytes("header value")?;
            }
        }
        let rust_init = unsafe {
            RequestInit {
                method: init.method.bytes("init.method")?,
                path: init.path.bytes("init.path")?,
                query: init.query.bytes("init.query")?,
                http_version: init.http_version.bytes("init.http_version")?,
                scheme: init.scheme.bytes("init.scheme")?,
                remote_addr: init.remote_addr.bytes("init.remote_addr")?,
                body: if init.has_body { Some(init.body.bytes("init.body")?) } else { None },
                buffer: Some(init.buffer.bytes("init.buffer")?).filter(|buffer| !buffer.is_empty()),
            }
        };
        // Checked above: every header's pointers are valid.
        let pairs =
            headers.iter().map(|h| unsafe { (h.name.bytes("").unwrap_or(&[]), h.value.bytes("").unwrap_or(&[])) });
        let hint = (worker_hint != LE_WORKER_ANY).then_some(worker_hint as usize);
        let request = engine.engine.new_request(&rust_init, pairs, hint);
        let handle = le_request {
            id: request.id(),
            request: UnsafeCell::new(request),
            state: AtomicU8::new(IDLE),
            views: UnsafeCell::default(),
            suspended: AtomicBool::new(false),
        };
        unsafe { write_out(out, Box::into_raw(Box::new(handle))) };
        Ok(())
    })
}

fn status_of(result: Result<Result<Status, Error>, Error>, err: *mut *mut le_error) -> le_status {
    match result.and_then(|inner| inner) {
        Ok(Status::Ok) => le_status::LE_STATUS_OK,
        Ok(Status::Done) => le_status::LE_STATUS_DONE,
        Ok(Status::Yield) => le_status::LE_STATUS_YIELD,
        Err(error) => {
            unsafe { report(err, error) };
            le_status::LE_STATUS_ERROR
        }
    }
}

fn run_guarded(err: *mut *mut le_error, body: impl FnOnce() -> Result<Result<Status, Error>, Error>) -> le_status {
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|_| Err(super::internal_panic()));
    status_of(result, err)
}

/// Runs one phase's script on the request: `LE_PHASE_REWRITE` through `LE_PHASE_LOG`.
/// Returns `LE_STATUS_ERROR` with `*err` for script errors and for bad arguments (NULL
/// handles, unknown phases, a request that waits in another phase).
#[no_mangle]
pub extern "C" fn le_request_run(
    request: *mut le_request,
    phase: le_phase,
    script: *const le_script,
    err: *mut *mut le_error,
) -> le_status {
    run_guarded(err, || {
        let script = unsafe { handle(script, "script")? };
        let phase =
            Phase::from_number(phase).ok_or_else(|| Error::invalid_argument(format!("unknown phase {phase}")))?;
        exclusive(request, |request, _| request.run(phase, &script.script))
    })
}

/// Continues a phase that returned `LE_STATUS_YIELD`. May be called from any thread.
#[no_mangle]
pub extern "C" fn le_request_resume(request: *mut le_request, err: *mut *mut le_error) -> le_status {
    run_guarded(err, || exclusive(request, |request, _| request.resume()))
}

/// Ends a phase that waits (it returned `LE_STATUS_YIELD`) without resuming it, as nginx ends
/// a handler whose client went away (`lua_check_client_abort`): its Lua code, light threads
/// included, stops where it waits. Its pending operations are dropped (`le_request_pending`
/// lists none; completing one fails with `LE_ERR_INVALID_ARGUMENT`); its sleeps and other
/// waits are abandoned and no longer call the wake callback (a wake already under way may
/// still arrive once: resuming then fails with `LE_ERR_INVALID_STATE`, as nothing waits). The
/// response stays as the phase left it, and the request is no longer suspended: run the
/// phases still wanted (the log phase, typically), then free it. Does nothing when no phase
/// waits.
#[no_mangle]
pub extern "C" fn le_request_cancel(request: *mut le_request, err: *mut *mut le_error) -> le_result {
    call(err, || exclusive(request, |request, _| request.cancel())?)
}

/// Reads the response in one call. The view points into the request and stays valid until the
/// next call that takes this request (including `le_request_free`).
#[no_mangle]
pub extern "C" fn le_request_response(request: *mut le_request, out: *mut le_response_view) -> le_result {
    call(std::ptr::null_mut(), || {
        unsafe { require_versioned(out, "out")? };
        let view = exclusive(request, |request, views| {
            let response = request.response();
            let headers = &mut views.response_headers;
            fill_headers(headers, response.headers.iter().map(|(name, value)| (name.as_slice(), value.as_slice())));
            le_response_view {
                size: 0,
                status: response.status,
                headers_sent: response.headers_sent,
                exited: response.exit_code.is_some(),
                exit_code: response.exit_code.unwrap_or(0),
                headers: headers.as_ptr(),
                n_headers: headers.len(),
                body: le_str::of(&response.body),
            }
        })?;
        unsafe { write_versioned(out, "out", view) }
    })
}

/// Reads the request as scripts left it, in one call: method, path, query, headers, the
/// variables scripts set, the body and whether a script replaced it. Nothing is copied: the
/// view points into the request and stays valid until the next call that takes this request.
#[no_mangle]
pub extern "C" fn le_request_inspect(request: *mut le_request, out: *mut le_request_view) -> le_result {
    call(std::ptr::null_mut(), || {
        unsafe { require_versioned(out, "out")? };
        let view = exclusive(request, |request, views| {
            fill_headers(&mut views.request_headers, request.headers());
            fill_headers(&mut views.variables, request.variables());
            le_request_view {
                size: 0,
                method: le_str::of(request.method()),
                path: le_str::of(request.path()),
                query: le_str::of(request.query()),
                headers: views.request_headers.as_ptr(),
                n_headers: views.request_headers.len(),
                variables: views.variables.as_ptr(),
                n_variables: views.variables.len(),
                location_jump: request.location_jump(),
                body: request.body().map_or(le_str::EMPTY, le_str::of),
                body_changed: request.body_changed(),
            }
        })?;
        unsafe { write_versioned(out, "out", view) }
    })
}

fn fill_headers<'a>(out: &mut Vec<le_header>, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    out.clear();
    out.extend(pairs.map(|(name, value)| le_header { name: le_str::of(name), value: le_str::of(value) }));
}

/// Hands the host's own response to the filters: `status` and `n_headers` headers (copied)
/// replace what scripts set, for header_filter to see and change.
#[no_mangle]
pub extern "C" fn le_request_set_response(
    request: *mut le_request,
    status: u16,
    headers: *const le_header,
    n_headers: usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let headers = unsafe { slice(headers, n_headers, "headers")? };
        let pairs = headers
            .iter()
            .map(|h| unsafe { Ok((h.name.bytes("header name")?, h.value.bytes("header value")?)) })
            .collect::<Result<Vec<_>, Error>>()?;
        exclusive(request, |request, _| request.set_response(status, pairs))?
    })
}

/// What body_filter made of a chunk; `data` points into the request and stays valid until the
/// next call that takes this request. It carries its size: set `size` to
/// `sizeof(le_body_chunk)`; the library writes only the fields that fit in it.
#[repr(C)]
pub struct le_body_chunk {
    pub size: usize,
    pub data: le_str,
    /// Whether the body ends with this chunk (a filter may end it early: send nothing after).
    pub eof: bool,
}

versioned!(le_body_chunk, eof: bool);

/// Runs body_filter on one chunk of the host's response body (`ngx.arg[1]`, `ngx.arg[2]` =
/// `eof`) and writes the filtered chunk to `*out`. For a body produced by scripts, running
/// `LE_PHASE_BODY_FILTER` with `le_request_run` filters it whole.
#[no_mangle]
pub extern "C" fn le_request_body_filter(
    request: *mut le_request,
    script: *const le_script,
    chunk: le_str,
    eof: bool,
    out: *mut le_body_chunk,
    err: *mut *mut le_error,
) -> le_status {
    run_guarded(err, || {
        let script = unsafe { handle(script, "script")? };
        let chunk = unsafe { chunk.bytes("chunk")? };
        unsafe { require_versioned(out, "out")? };
        exclusive(request, |request, _| {
            let status = request.filter_body(&script.script, chunk, eof)?;
            let filtered = request.filtered_chunk();
            let view = le_body_chunk { size: 0, data: le_str::of(&filtered.data), eof: filtered.eof };
            unsafe { write_versioned(out, "out", view)? };
            Ok(status)
        })
    })
}

/// The request's engine-wide id (as in log records); 0 for NULL.
#[no_mangle]
pub extern "C" fn le_request_id(request: *const le_request) -> u64 {
    super::guard(0, || unsafe { request.as_ref() }.map_or(0, |r| r.id))
}

/// Whether the request waits for `le_request_resume`.
#[no_mangle]
pub extern "C" fn le_request_is_suspended(request: *const le_request) -> bool {
    super::guard(false, || unsafe { request.as_ref() }.is_some_and(|r| r.suspended.load(Ordering::Acquire)))
}

/// Frees a request, cancelling a phase that waits. Called while one of the request's phases runs
/// (from a callback), it takes effect when that phase returns. NULL is ignored.
#[no_mangle]
pub extern "C" fn le_request_free(request: *mut le_request) {
    super::guard((), || {
        let Some(handle) = (unsafe { request.as_ref() }) else { return };
        let mut state = handle.state.load(Ordering::Acquire);
        loop {
            if state & FREE != 0 {
                return; // already being freed
            }
            // A call is running it: leave the release to that call, unless it just ended.
            match handle.state.compare_exchange_weak(state, state | FREE, Ordering::AcqRel, Ordering::Acquire) {
                Ok(IDLE) => return drop(unsafe { Box::from_raw(request) }),
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    })
}
