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

/// The version of this C ABI, also the shared library's SONAME number. It changes when a
/// published declaration changes incompatibly; structs that carry their size grow without it.
pub const LE_ABI_VERSION: u32 = 2;

/// The version of the library this header comes with (`le_version()` names the one linked),
/// for `#if` in hosts. Cargo.toml's version: the build fails when they differ.
pub const LE_VERSION_MAJOR: u32 = 0;
pub const LE_VERSION_MINOR: u32 = 1;
pub const LE_VERSION_PATCH: u32 = 0;

const _: () = assert!(
    LE_VERSION_MAJOR == decimal(env!("CARGO_PKG_VERSION_MAJOR"))
        && LE_VERSION_MINOR == decimal(env!("CARGO_PKG_VERSION_MINOR"))
        && LE_VERSION_PATCH == decimal(env!("CARGO_PKG_VERSION_PATCH")),
    "LE_VERSION_MAJOR/MINOR/PATCH in src/ffi/mod.rs must match the version in Cargo.toml"
);

const fn decimal(digits: &str) -> u32 {
    let (bytes, mut i, mut n) = (digits.as_bytes(), 0, 0);
    while i < bytes.len() {
        n = n * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    n
}

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

/// A struct the host allocates and the library reads or writes whole, which carries its size so
/// that it can grow without breaking hosts built against an older header (DESIGN.md §8). Its
/// first field is `size`, which the host sets to `sizeof` the struct as it was compiled. The
/// library reads or writes only that many bytes: a field beyond them (added after the host was
/// built) is not written, and is read as its default; a field the host has and this library
/// does not (a newer header) is ignored when read and zeroed when written. A size smaller than
/// the struct's first version is refused with `LE_ERR_INVALID_ARGUMENT`.
///
/// Growing one: add fields only at the end, each at an offset no smaller than the previous
/// version's `sizeof` (pad to it), so that an older size covers exactly the older fields.
///
/// # Safety
/// Implement it (with `versioned!`) only for `#[repr(C)]` plain-data structs whose first field
/// is `size: usize`, and for which all-zero bytes are a valid value.
pub(crate) unsafe trait Versioned: Sized {
    const NAME: &'static str;
    /// Where the fields of the struct's first version end.
    const FIRST_VERSION_END: usize;
}

/// Declares a struct `Versioned`, its first version ending with field `$last` of type `$ty`.
macro_rules! versioned {
    ($name:ident, $last:ident: $ty:ty) => {
        // SAFETY: the struct is `#[repr(C)]` plain data that starts with `size: usize`.
        unsafe impl $crate::ffi::Versioned for $name {
            const NAME: &'static str = stringify!($name);
            const FIRST_VERSION_END: usize = std::mem::offset_of!($name, $last) + std::mem::size_of::<$ty>();
        }
    };
}
pub(crate) use versioned;

/// A host's size for a `T`, which must cover at least its first version.
fn checked_size<T: Versioned>(size: usize) -> Result<usize, Error> {
    if size < T::FIRST_VERSION_END {
        return Err(Error::invalid_argument(format!(
            "{name}.size is {size}, smaller than any version of {name} ({min} bytes): set it to sizeof({name})",
            name = T::NAME,
            min = T::FIRST_VERSION_END
        )));
    }
    Ok(size)
}

/// Checks a versioned struct the host passes (NULL, or a size too small) before any work.
///
/// # Safety
/// A non-NULL `ptr` must point to a `T` whose `size` field the host set.
pub(crate) unsafe fn require_versioned<T: Versioned>(ptr: *const T, what: &str) -> Result<usize, Error> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    checked_size::<T>(unsafe { ptr.cast::<usize>().read_unaligned() })
}

/// Reads the host's struct: the fields its size covers, the rest from `defaults`.
///
/// # Safety
/// A non-NULL `ptr` must point to `size` readable bytes, `size` being its first field.
pub(crate) unsafe fn read_versioned<T: Versioned>(ptr: *const T, what: &str, mut defaults: T) -> Result<T, Error> {
    let size = unsafe { require_versioned(ptr, what)? };
    let known = size.min(std::mem::size_of::<T>());
    unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut defaults as *mut T).cast::<u8>(), known) };
    Ok(defaults)
}

/// Writes `value` to the host's struct: the fields its size covers, keeping its size and
/// leaving the bytes after it alone; fields of a newer version than this library's are zeroed.
///
/// # Safety
/// A non-NULL `ptr` must point to `size` writable bytes, `size` being its first field.
pub(crate) unsafe fn write_versioned<T: Versioned>(ptr: *mut T, what: &str, value: T) -> Result<(), Error> {
    let size = unsafe { require_versioned(ptr, what)? };
    unsafe { copy_after_size(ptr, size, &value) };
    Ok(())
}

/// Copies `value` but its `size` field to the `size` bytes at `ptr`, zeroing what it lacks.
///
/// # Safety
/// `ptr` must point to `size` writable bytes, and `size` be at least a `usize`.
unsafe fn copy_after_size<T: Versioned>(ptr: *mut T, size: usize, value: &T) {
    let start = std::mem::size_of::<usize>();
    let known = size.min(std::mem::size_of::<T>());
    let (to, from) = (ptr.cast::<u8>(), (value as *const T).cast::<u8>());
    unsafe {
        std::ptr::copy_nonoverlapping(from.add(start), to.add(start), known - start);
        std::ptr::write_bytes(to.add(known), 0, size - known);
    }
}

/// Initialises the host's struct of `size` bytes to `value`, `size` included.
///
/// # Safety
/// A non-NULL `ptr` must point to `size` writable bytes.
pub(crate) unsafe fn init_versioned<T: Versioned>(ptr: *mut T, size: usize, what: &str, value: T) -> Result<(), Error> {
    require_out(ptr, what)?;
    let size = checked_size::<T>(size)?;
    unsafe {
        ptr.cast::<usize>().write_unaligned(size);
        copy_after_size(ptr, size, &value);
    }
    Ok(())
}

/// A versioned struct's value with every field zero (NULL, false, empty) but its size.
pub(crate) fn zeroed<T: Versioned>() -> T {
    // SAFETY: `Versioned` structs are valid as all-zero bytes.
    unsafe { std::mem::zeroed() }
}
