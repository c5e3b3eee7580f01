//! The raw Lua C API (DESIGN.md §11a): the one place besides `ffi/` where `unsafe` is allowed.
//! Each function here keeps Rust values with destructors out of the way of Lua's longjmp.

pub(crate) mod interrupt;
pub(crate) mod memory;
