//! Result codes and error objects.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{internal_panic, le_str};
use crate::error::{Error, ErrorCode};

/// What a fallible function returns. `LE_OK` is success; every other value names the failure,
/// and the `le_error` written through the function's `err` parameter (when it is not NULL)
/// says more.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum le_result {
    LE_OK = 0,
    /// A NULL handle or out-parameter, bad UTF-8, an unknown phase, an out-of-range value.
    LE_ERR_INVALID_ARGUMENT = 1,
    /// The object is in the wrong state for the call (e.g. running a phase while another waits).
    LE_ERR_INVALID_STATE = 2,
    /// Lua source failed to compile.
    LE_ERR_SYNTAX = 3,
    /// A script raised an error.
    LE_ERR_RUNTIME = 4,
    /// A phase used up its instruction or time budget.
    LE_ERR_BUDGET = 5,
    /// A worker hit its Lua memory cap, or a shared dict is full ("no memory").
    LE_ERR_MEMORY = 6,
    /// A script file could not be read.
    LE_ERR_IO = 7,
    /// A script aborted the request with `ngx.exit(ngx.ERROR)`.
    LE_ERR_ABORTED = 8,
    /// A bug in the library (a caught panic); the engine stays usable.
    LE_ERR_INTERNAL = 9,
}

impl From<ErrorCode> for le_result {
    fn from(code: ErrorCode) -> le_result {
        match code {
            ErrorCode::InvalidArgument => le_result::LE_ERR_INVALID_ARGUMENT,
            ErrorCode::InvalidState => le_result::LE_ERR_INVALID_STATE,
            ErrorCode::Syntax => le_result::LE_ERR_SYNTAX,
            ErrorCode::Runtime => le_result::LE_ERR_RUNTIME,
            ErrorCode::Budget => le_result::LE_ERR_BUDGET,
            ErrorCode::Memory => le_result::LE_ERR_MEMORY,
            ErrorCode::Io => le_result::LE_ERR_IO,
            ErrorCode::Aborted => le_result::LE_ERR_ABORTED,
            ErrorCode::Internal => le_result::LE_ERR_INTERNAL,
        }
    }
}

/// An error: a code, a message and, for Lua errors, the chunk, line and traceback. Owned by the
/// caller once returned; release it with `le_error_free`.
pub struct le_error {
    error: Error,
}

/// Hands `error` to the caller through `err` (when not NULL) and returns its code.
///
/// # Safety
/// A non-NULL `err` must be writable.
pub(crate) unsafe fn report(err: *mut *mut le_error, error: Error) -> le_result {
    let code = error.code.into();
    if !err.is_null() {
        unsafe { err.write(Box::into_raw(Box::new(le_error { error }))) };
    }
    code
}

/// Runs an exported function's body: a panic becomes `LE_ERR_INTERNAL`, an `Err` is reported
/// through `err`.
pub(crate) fn call(err: *mut *mut le_error, body: impl FnOnce() -> Result<(), Error>) -> le_result {
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| Err(internal_panic()));
    match result {
        Ok(()) => le_result::LE_OK,
        Err(error) => unsafe { report(err, error) },
    }
}

fn error_ref<'a>(error: *const le_error) -> Option<&'a Error> {
    unsafe { error.as_ref() }.map(|e| &e.error)
}

/// The error's code; `LE_ERR_INVALID_ARGUMENT` for a NULL error.
#[no_mangle]
pub extern "C" fn le_error_code(error: *const le_error) -> le_result {
    super::guard(le_result::LE_ERR_INTERNAL, || {
        error_ref(error).map_or(le_result::LE_ERR_INVALID_ARGUMENT, |e| e.code.into())
    })
}

/// The message, e.g. `content:3: boom`. Valid until the error is freed; empty for NULL.
#[no_mangle]
pub extern "C" fn le_error_message(error: *const le_error) -> le_str {
    super::guard(le_str::EMPTY, || error_ref(error).map_or(le_str::EMPTY, |e| le_str::of(e.message.as_bytes())))
}

/// The Lua chunk the error was raised in (`content`, a file path), or empty when unknown.
/// Valid until the error is freed.
#[no_mangle]
pub extern "C" fn le_error_chunk(error: *const le_error) -> le_str {
    super::guard(le_str::EMPTY, || {
        error_ref(error).and_then(|e| e.chunk.as_deref()).map_or(le_str::EMPTY, |c| le_str::of(c.as_bytes()))
    })
}

/// The line in that chunk, or 0 when unknown.
#[no_mangle]
pub extern "C" fn le_error_line(error: *const le_error) -> u32 {
    super::guard(0, || error_ref(error).and_then(|e| e.line).unwrap_or(0))
}

/// Lua's stack traceback (`stack traceback:\n...`), or empty. Valid until the error is freed.
#[no_mangle]
pub extern "C" fn le_error_traceback(error: *const le_error) -> le_str {
    super::guard(le_str::EMPTY, || {
        error_ref(error).and_then(|e| e.traceback.as_deref()).map_or(le_str::EMPTY, |t| le_str::of(t.as_bytes()))
    })
}

/// Frees an error. NULL is ignored.
#[no_mangle]
pub extern "C" fn le_error_free(error: *mut le_error) {
    super::free_handle(error)
}

/// A static, NUL-terminated name for a result code (`"LE_ERR_SYNTAX"`), or `"LE_UNKNOWN"`.
#[no_mangle]
pub extern "C" fn le_result_name(result: u32) -> *const std::ffi::c_char {
    let name: &'static std::ffi::CStr = match result {
        0 => c"LE_OK",
        1 => c"LE_ERR_INVALID_ARGUMENT",
        2 => c"LE_ERR_INVALID_STATE",
        3 => c"LE_ERR_SYNTAX",
        4 => c"LE_ERR_RUNTIME",
        5 => c"LE_ERR_BUDGET",
        6 => c"LE_ERR_MEMORY",
        7 => c"LE_ERR_IO",
        8 => c"LE_ERR_ABORTED",
        9 => c"LE_ERR_INTERNAL",
        _ => c"LE_UNKNOWN",
    };
    name.as_ptr()
}
