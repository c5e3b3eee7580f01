//! The C ABI: the only place with `extern "C"` and `unsafe`. A thin shell over the Rust API.
//!
//! Conventions (DESIGN.md §8): everything is prefixed `le_`/`LE_`; handles are opaque and every
//! `*_new` has a `*_free`; strings are pointer + length; fallible functions return a status and
//! write outputs only on success; errors come back through an optional `le_error **` that the
//! caller frees. Every function catches panics and checks its pointers.

#![allow(non_camel_case_types)]
// Exported functions take raw pointers from C and check them before use; marking them `unsafe`
// would change nothing for C callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod engine;
mod error;
mod host;
mod request;
mod script;
mod shdict;
mod variable;
mod wait;

pub use engine::*;
pub use error::*;
pub use host::*;
pub use request::*;
pub use script::*;
pub use shdict::*;
pub use variable::*;
pub use wait::*;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, ErrorCode};

/// The version of this C ABI. It changes when a published declaration changes incompatibly.
pub const LE_ABI_VERSION: u32 = 1;

/// A byte string: `len` bytes at `ptr`, not NUL-terminated. `ptr` may be NULL when `len` is 0.
/// Strings the library returns stay valid as long as the function that returned them says.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct le_str {
    pub ptr: *const u8,
    pub len: usize,
}

/// One header: a name and a value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct le_header {
    pub name: le_str,
    pub value: le_str,
}

impl le_str {
    pub(crate) const EMPTY: le_str = le_str { ptr: std::ptr::null(), len: 0 };

    /// A view of bytes owned by the library.
    pub(crate) fn of(bytes: &[u8]) -> le_str {
        le_str { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// The caller's bytes, or an error naming the argument when `ptr` is NULL with a length.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive `'a`.
    pub(crate) unsafe fn bytes<'a>(self, what: &str) -> Result<&'a [u8], Error> {
        unsafe { slice(self.ptr, self.len, what) }
    }

    /// The caller's string, which must be UTF-8.
    ///
    /// # Safety
    /// As for [`le_str::bytes`].
    pub(crate) unsafe fn text<'a>(self, what: &str) -> Result<&'a str, Error> {
        let bytes = unsafe { self.bytes(what)? };
        std::str::from_utf8(bytes).map_err(|e| Error::invalid_argument(format!("{what} is not valid UTF-8: {e}")))
    }
}

/// The caller's array of `len` items at `ptr`, or an error naming it when `ptr` is NULL with a
/// length.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable items that outlive `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], Error> {
    match (ptr.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(Error::invalid_argument(format!("{what}: NULL pointer with length {len}"))),
        (false, len) => Ok(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

/// Runs an exported function's body, turning a panic into `on_panic` so no unwind crosses into C.
pub(crate) fn guard<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// Borrows a handle the caller passed, or fails with `LE_ERR_INVALID_ARGUMENT` naming it.
///
/// # Safety
/// A non-NULL `ptr` must point to a live object of type `T` created by this library.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Error> {
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid_argument(format!("{what} is NULL")))
}

/// Releases a handle this library handed out (NULL is ignored), for the `le_*_free` functions.
pub(crate) fn free_handle<T>(ptr: *mut T) {
    guard((), || {
        if !ptr.is_null() {
            // SAFETY: non-NULL handles come from Box::into_raw in this library, freed once.
            drop(unsafe { Box::from_raw(ptr) });
        }
    })
}

/// Hands `value` to the caller through a required out-parameter.
///
/// # Safety
/// A non-NULL `out` must be writable.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    unsafe { out.write(value) }
}

/// Checks that an out-parameter is there before any work is done.
pub(crate) fn require_out<T>(out: *mut T, what: &str) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    Ok(())
}

pub(crate) fn internal_panic() -> Error {
    Error::new(ErrorCode::Internal, "a panic was caught at the C boundary; the call had no effect")
}
