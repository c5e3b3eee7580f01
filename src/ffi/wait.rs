//! Waits (DESIGN.md §5): the wake callback for engine-driven waits (`ngx.sleep`), and the
//! pending operations a host completes (async host functions, `ngx.req.read_body`), including
//! those of timer callbacks, which no request carries.

use std::ffi::c_void;
use std::sync::Arc;

use super::error::{call, le_error, le_result};
use super::host::{copy_value, le_value, Views};
use super::request::{deliver_wake, exclusive, le_request};
use super::{le_str, require_out, slice, write_out};
use crate::error::Error;
use crate::host::HostValue;
use crate::timer::{TimerOp, TimerOpHandler};

/// Called from the engine's clock thread when an engine-driven wait of `request` completes
/// (`ngx.sleep`), and soon after a phase yields plainly (`coroutine.yield()` in the entry
/// thread of rewrite, access or content): the host should resume the request, typically by
/// scheduling `le_request_resume` on its own thread. It may also resume or free the request
/// right here: a wake that completes while a call is still using the request is held back
/// until that call returns. Never called for a request after `le_request_free` returned. Keep
/// it short (one clock thread serves every wake of the engine), and do not free the request
/// while holding a lock this callback takes: the free waits for a callback in flight.
pub type le_wake_fn = Option<unsafe extern "C" fn(request: *mut le_request, user_data: *mut c_void)>;

/// A host-driven wait of a suspended request: perform it, then `le_request_complete` it by
/// `id` and resume. `name` is the async host function's name, or `"ngx.req.read_body"` (complete
/// it with the body as one string). For a timer's operation (`le_timer_op_fn`) `id` is unused.
#[repr(C)]
pub struct le_pending {
    pub id: u64,
    pub name: le_str,
    pub args: *const le_value,
    pub n_args: usize,
}

struct CWaker {
    callback: unsafe extern "C" fn(*mut le_request, *mut c_void),
    request: *mut le_request,
    user_data: *mut c_void,
}

// SAFETY: le_wake_fn's contract makes the callback and its user data usable from any thread;
// the request outlives every call (its free waits for a call in flight).
unsafe impl Send for CWaker {}
unsafe impl Sync for CWaker {}

impl CWaker {
    fn wake(&self) {
        // SAFETY: the request outlives every wake (le_request_free cancels waits and waits for
        // a wake in flight).
        let handle = unsafe { &*self.request };
        deliver_wake(handle, || unsafe { (self.callback)(self.request, self.user_data) });
    }
}

/// Sets the request's wake callback (NULL removes it; the host then polls with resume). Set it
/// before the run that may wait: a wake that comes while no callback is set is not repeated
/// (a zero sleep or a plain yield may already be due: resume once after setting it).
#[no_mangle]
pub extern "C" fn le_request_set_waker(
    request: *mut le_request,
    wake: le_wake_fn,
    user_data: *mut c_void,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        exclusive(request, |rust_request, _| {
            let waker = wake.map(|callback| Arc::new(CWaker { callback, request, user_data }));
            rust_request.set_waker(waker.map(|waker| Arc::new(move || waker.wake()) as crate::Waker));
        })
    })
}

/// The pending operations of a suspended request: `*n` of them at `*ops`, valid until the next
/// call that takes this request. None when the request waits for nothing the host must do.
#[no_mangle]
pub extern "C" fn le_request_pending(
    request: *mut le_request,
    ops: *mut *const le_pending,
    n: *mut usize,
) -> le_result {
    call(std::ptr::null_mut(), || {
        require_out(ops, "ops")?;
        require_out(n, "n")?;
        let (ptr, len) = exclusive(request, |rust_request, views| {
            views.values = Default::default();
            views.pending_args = rust_request
                .pending()
                .iter()
                .map(|op| op.args.iter().map(|arg| views.values.view(arg)).collect())
                .collect();
            views.pending = rust_request
                .pending()
                .iter()
                .zip(&views.pending_args)
                .map(|(op, args)| le_pending {
                    id: op.id,
                    name: le_str::of(op.name.as_bytes()),
                    args: args.as_ptr(),
                    n_args: args.len(),
                })
                .collect();
            (views.pending.as_ptr(), views.pending.len())
        })?;
        unsafe {
            write_out(ops, if len == 0 { std::ptr::null() } else { ptr });
            write_out(n, len);
        }
        Ok(())
    })
}

/// Completes pending operation `id` with `n` results (deep-copied), which the waiting script
/// receives. Then resume the request.
#[no_mangle]
pub extern "C" fn le_request_complete(
    request: *mut le_request,
    id: u64,
    values: *const le_value,
    n: usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let values = unsafe { slice(values, n, "values")? };
        let results = values.iter().map(|value| unsafe { copy_value(value, 0) }).collect::<Result<Vec<_>, _>>()?;
        exclusive(request, |rust_request, _| rust_request.complete(id, Ok(results)))?
    })
}

/// Completes pending operation `id` with a failure: the waiting script raises `message`.
#[no_mangle]
pub extern "C" fn le_request_complete_error(
    request: *mut le_request,
    id: u64,
    message: le_str,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let message = String::from_utf8_lossy(unsafe { message.bytes("message")? }).into_owned();
        exclusive(request, |rust_request, _| rust_request.complete(id, Err(message)))?
    })
}

/// An async host function called by a timer callback. No request carries it: the host gets
/// this handle from its `le_timer_op_fn` and owns it until it passes it to exactly one of
/// `le_timer_op_complete`, `le_timer_op_complete_error` or `le_timer_op_free`, from any thread.
pub struct le_timer_op {
    op: TimerOp,
}

/// Receives the async host function calls of timer callbacks (`le_config.timer_op`). `op` is
/// the host's to complete later; `pending` (the function's name and arguments) is valid only
/// during this call. Called on an engine thread right after the callback yields: it must be
/// thread-safe and must not block (complete `op` here if the answer is at hand) or throw.
pub type le_timer_op_fn =
    Option<unsafe extern "C" fn(op: *mut le_timer_op, pending: *const le_pending, user_data: *mut c_void)>;

struct CTimerOps {
    callback: unsafe extern "C" fn(*mut le_timer_op, *const le_pending, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: le_timer_op_fn's contract makes the callback and its user data usable from any thread.
unsafe impl Send for CTimerOps {}
unsafe impl Sync for CTimerOps {}

impl CTimerOps {
    fn hand_over(&self, op: TimerOp) {
        let handle = Box::into_raw(Box::new(le_timer_op { op }));
        // Views into the boxed op, which stays put until the host releases it; no Rust
        // reference to it outlives this block, as the host may release it during the call.
        let (_views, name, args) = {
            let op = unsafe { &(*handle).op }.op();
            let mut views = Views::default();
            let args: Vec<le_value> = op.args.iter().map(|arg| views.view(arg)).collect();
            (views, le_str::of(op.name.as_bytes()), args)
        };
        let pending = le_pending { id: 0, name, args: args.as_ptr(), n_args: args.len() };
        unsafe { (self.callback)(handle, &pending, self.user_data) };
    }
}

/// The engine's handler for a config's `timer_op` callback.
pub(crate) fn timer_ops(callback: le_timer_op_fn, user_data: *mut c_void) -> Option<TimerOpHandler> {
    let c_ops = CTimerOps { callback: callback?, user_data };
    Some(Arc::new(move |op: TimerOp| c_ops.hand_over(op)))
}

/// Takes back a timer operation the host releases.
fn take_timer_op(op: *mut le_timer_op) -> Result<TimerOp, Error> {
    if op.is_null() {
        return Err(Error::invalid_argument("op is NULL"));
    }
    // SAFETY: non-NULL ops come from Box::into_raw in `hand_over`, released once.
    Ok(unsafe { Box::from_raw(op) }.op)
}

/// Releases `op`, completing it with what `answer` reads from the host's arguments. Arguments
/// that cannot be read fail the call in the callback, and the host gets the error too.
fn finish_timer_op(
    op: *mut le_timer_op,
    answer: impl FnOnce() -> Result<Result<Vec<HostValue>, String>, Error>,
) -> Result<(), Error> {
    let op = take_timer_op(op)?;
    match answer() {
        Ok(result) => {
            op.complete(result);
            Ok(())
        }
        Err(error) => {
            op.complete(Err(error.message.clone()));
            Err(error)
        }
    }
}

/// Completes a timer's operation with `n` results (deep-copied), which the callback receives,
/// and releases `op`.
#[no_mangle]
pub extern "C" fn le_timer_op_complete(
    op: *mut le_timer_op,
    values: *const le_value,
    n: usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        finish_timer_op(op, || {
            let values = unsafe { slice(values, n, "values")? };
            Ok(Ok(values.iter().map(|value| unsafe { copy_value(value, 0) }).collect::<Result<_, _>>()?))
        })
    })
}

/// Fails a timer's operation: the callback raises `message`. Releases `op`.
#[no_mangle]
pub extern "C" fn le_timer_op_complete_error(
    op: *mut le_timer_op,
    message: le_str,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        finish_timer_op(op, || Ok(Err(String::from_utf8_lossy(unsafe { message.bytes("message")? }).into_owned())))
    })
}

/// Releases a timer's operation without completing it: the callback raises "the host dropped
/// the operation without completing it". NULL is ignored.
#[no_mangle]
pub extern "C" fn le_timer_op_free(op: *mut le_timer_op) {
    super::free_handle(op)
}
