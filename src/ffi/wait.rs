//! Waits (DESIGN.md §5): the wake callback for engine-driven waits (`ngx.sleep`), and the
//! pending operations a host completes (async host functions, `ngx.req.read_body`).

use std::ffi::c_void;
use std::sync::Arc;

use super::error::{call, le_error, le_result};
use super::host::{copy_value, le_value};
use super::request::{deliver_wake, exclusive, le_request};
use super::{le_str, require_out, slice, write_out};

/// Called from the engine's clock thread when an engine-driven wait of `request` completes
/// (`ngx.sleep`): the host should resume the request, typically by scheduling
/// `le_request_resume` on its own thread. It may also resume or free the request right here:
/// a wake that completes while a call is still using the request is held back until that call
/// returns. Never called for a request after `le_request_free` returned. Keep it short (one
/// clock thread serves every wake of the engine), and do not free the request while holding a
/// lock this callback takes: the free waits for a callback in flight.
pub type le_wake_fn = Option<unsafe extern "C" fn(request: *mut le_request, user_data: *mut c_void)>;

/// A host-driven wait of a suspended request: perform it, then `le_request_complete` it by
/// `id` and resume. `name` is the async host function's name, or `"ngx.req.read_body"` (complete
/// it with the body as one string).
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
/// before the run that may wait.
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
