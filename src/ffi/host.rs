//! Host functions: C functions registered in `le_config` that scripts call as
//! `require("host").name(...)`, with typed values both ways.

use std::ffi::c_void;
use std::sync::Arc;

use super::error::{call, le_error, le_result};
use super::{le_str, slice};
use crate::error::Error;
use crate::host::{HostCall, HostFunction, HostValue, MAX_VALUE_DEPTH};

/// The type of an `le_value`.
pub type le_value_type = u32;
pub const LE_VALUE_NIL: le_value_type = 0;
pub const LE_VALUE_BOOLEAN: le_value_type = 1;
pub const LE_VALUE_INTEGER: le_value_type = 2;
pub const LE_VALUE_NUMBER: le_value_type = 3;
pub const LE_VALUE_STRING: le_value_type = 4;
/// A Lua table with keys 1..len.
pub const LE_VALUE_ARRAY: le_value_type = 5;
/// A Lua table with string keys. An empty Lua table arrives as an empty map.
pub const LE_VALUE_MAP: le_value_type = 6;

/// A value crossing between Lua and a host function. Only the fields of its `type` are read;
/// zero-initialise the others. Arrays and maps nest up to `LE_MAX_VALUE_DEPTH` levels.
///
/// Values the engine passes in point into engine memory valid during the callback; values the
/// host returns point into host memory that the engine copies before `le_call_return` returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct le_value {
    pub type_: le_value_type,
    pub boolean: bool,
    /// On LuaJIT, whose numbers are all doubles, integral numbers arrive as integers.
    pub integer: i64,
    pub number: f64,
    /// Binary-safe.
    pub string: le_str,
    /// `LE_VALUE_ARRAY`: the `len` elements. `LE_VALUE_MAP`: the `len` values, `keys[i]` naming
    /// `items[i]`.
    pub items: *const le_value,
    pub keys: *const le_str,
    pub len: usize,
}

/// How deeply arrays and maps may nest.
pub const LE_MAX_VALUE_DEPTH: usize = 100;

// Spelled out above for the header, which cannot name the core's constant.
const _: () = assert!(LE_MAX_VALUE_DEPTH == MAX_VALUE_DEPTH);

/// One call of a host function, valid only during the callback.
pub struct le_call {
    name: String,
    request_id: u64,
    args: Vec<le_value>,
    results: Vec<HostValue>,
    failure: Option<String>,
}

/// A host function. It gets the call (arguments, request id) and answers with
/// `le_call_return` or `le_call_fail`; returning without either returns nothing to Lua.
///
/// It runs on the thread that runs the script, while the worker's lock is held: keep it quick
/// and thread-safe (workers call it concurrently), and do not throw across it. From inside it,
/// running or resuming a request on the same worker fails with `LE_ERR_INVALID_STATE`.
pub type le_host_fn = Option<unsafe extern "C" fn(call: *mut le_call, user_data: *mut c_void)>;

/// A host function to register: scripts call it as `require("host").<name>(...)`.
#[repr(C)]
pub struct le_function {
    /// UTF-8, unique within the engine.
    pub name: le_str,
    pub function: le_host_fn,
    /// Passed to `function`; the engine never frees it.
    pub user_data: *mut c_void,
}

/// The host's callback with its user data, callable from any thread.
struct CFunction {
    function: unsafe extern "C" fn(*mut le_call, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: le_host_fn's contract makes the callback and its user data usable from any thread.
unsafe impl Send for CFunction {}
unsafe impl Sync for CFunction {}

impl CFunction {
    fn call(&self, host_call: &HostCall<'_>) -> Result<Vec<HostValue>, String> {
        let mut views = Views::default();
        let args = host_call.args.iter().map(|arg| views.view(arg)).collect();
        let mut c_call = le_call {
            name: host_call.name.to_string(),
            request_id: host_call.request_id,
            args,
            results: Vec::new(),
            failure: None,
        };
        unsafe { (self.function)(&mut c_call, self.user_data) };
        match c_call.failure {
            Some(message) => Err(message),
            None => Ok(c_call.results),
        }
    }
}

/// Storage behind the `le_value` views of a call's arguments: nested arrays and map keys.
#[derive(Default)]
pub(crate) struct Views {
    items: Vec<Vec<le_value>>,
    keys: Vec<Vec<le_str>>,
}

impl Views {
    pub(crate) fn view(&mut self, value: &HostValue) -> le_value {
        let mut view = le_value {
            type_: LE_VALUE_NIL,
            boolean: false,
            integer: 0,
            number: 0.0,
            string: le_str::EMPTY,
            items: std::ptr::null(),
            keys: std::ptr::null(),
            len: 0,
        };
        match value {
            HostValue::Nil => {}
            HostValue::Boolean(b) => (view.type_, view.boolean) = (LE_VALUE_BOOLEAN, *b),
            HostValue::Integer(i) => (view.type_, view.integer) = (LE_VALUE_INTEGER, *i),
            HostValue::Number(n) => (view.type_, view.number) = (LE_VALUE_NUMBER, *n),
            HostValue::String(bytes) => (view.type_, view.string) = (LE_VALUE_STRING, le_str::of(bytes)),
            HostValue::Array(elements) => {
                let items: Vec<le_value> = elements.iter().map(|element| self.view(element)).collect();
                (view.type_, view.items, view.len) = (LE_VALUE_ARRAY, items.as_ptr(), items.len());
                // The heap buffer does not move when `self.items` grows.
                self.items.push(items);
            }
            HostValue::Map(fields) => {
                let items: Vec<le_value> = fields.iter().map(|(_, value)| self.view(value)).collect();
                let keys: Vec<le_str> = fields.iter().map(|(key, _)| le_str::of(key)).collect();
                (view.type_, view.items, view.keys, view.len) =
                    (LE_VALUE_MAP, items.as_ptr(), keys.as_ptr(), keys.len());
                self.items.push(items);
                self.keys.push(keys);
            }
        }
        view
    }
}

/// A host value copied out of C memory, checked on the way.
///
/// # Safety
/// Pointers in `value` must be valid for the lengths it gives.
pub(crate) unsafe fn copy_value(value: &le_value, depth: usize) -> Result<HostValue, Error> {
    if depth >= MAX_VALUE_DEPTH {
        return Err(Error::invalid_argument(format!("values nest deeper than {MAX_VALUE_DEPTH} levels")));
    }
    Ok(match value.type_ {
        LE_VALUE_NIL => HostValue::Nil,
        LE_VALUE_BOOLEAN => HostValue::Boolean(value.boolean),
        LE_VALUE_INTEGER => HostValue::Integer(value.integer),
        LE_VALUE_NUMBER => HostValue::Number(value.number),
        LE_VALUE_STRING => HostValue::String(unsafe { value.string.bytes("value.string")? }.to_vec()),
        LE_VALUE_ARRAY => {
            let items = unsafe { slice(value.items, value.len, "array value.items")? };
            HostValue::Array(items.iter().map(|item| unsafe { copy_value(item, depth + 1) }).collect::<Result<_, _>>()?)
        }
        LE_VALUE_MAP => {
            let items = unsafe { slice(value.items, value.len, "map value.items")? };
            let keys = unsafe { slice(value.keys, value.len, "map value.keys")? };
            let fields = keys.iter().zip(items).map(|(key, item)| {
                Ok((unsafe { key.bytes("map key")? }.to_vec(), unsafe { copy_value(item, depth + 1)? }))
            });
            HostValue::Map(fields.collect::<Result<_, Error>>()?)
        }
        other => return Err(Error::invalid_argument(format!("{other} is not an le_value_type"))),
    })
}

/// The engine's copy of the host functions in a config.
///
/// # Safety
/// `functions` must hold `n` valid `le_function`s.
pub(crate) unsafe fn host_functions(functions: *const le_function, n: usize) -> Result<Vec<HostFunction>, Error> {
    let functions = unsafe { slice(functions, n, "config.functions")? };
    functions
        .iter()
        .map(|function| {
            let name = unsafe { function.name.text("config.functions name")? };
            let callback = function
                .function
                .ok_or_else(|| Error::invalid_argument(format!("host function '{name}' has a NULL function")))?;
            let c_function = Arc::new(CFunction { function: callback, user_data: function.user_data });
            Ok(HostFunction::new(name, move |call: &HostCall<'_>| c_function.call(call)))
        })
        .collect()
}

/// The call's arguments: `*n` values valid until the callback returns. `n` may be NULL.
#[no_mangle]
pub extern "C" fn le_call_args(call: *const le_call, n: *mut usize) -> *const le_value {
    super::guard(std::ptr::null(), || {
        let args = unsafe { call.as_ref() }.map_or(&[][..], |call| call.args.as_slice());
        if let Some(n) = unsafe { n.as_mut() } {
            *n = args.len();
        }
        if args.is_empty() {
            std::ptr::null()
        } else {
            args.as_ptr()
        }
    })
}

/// The name the function was registered under, valid until the callback returns.
#[no_mangle]
pub extern "C" fn le_call_name(call: *const le_call) -> le_str {
    super::guard(le_str::EMPTY, || {
        unsafe { call.as_ref() }.map_or(le_str::EMPTY, |call| le_str::of(call.name.as_bytes()))
    })
}

/// The id of the request whose script made the call (as `le_request_id`), or 0 when the script
/// runs outside a request.
#[no_mangle]
pub extern "C" fn le_call_request_id(call: *const le_call) -> u64 {
    super::guard(0, || unsafe { call.as_ref() }.map_or(0, |call| call.request_id))
}

/// Sets the call's results: `n` values, deep-copied before this returns (a later call replaces
/// them). Fails with `LE_ERR_INVALID_ARGUMENT` on a malformed value, leaving the results as
/// they were.
#[no_mangle]
pub extern "C" fn le_call_return(
    call_: *mut le_call,
    values: *const le_value,
    n: usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let host_call = unsafe { call_.as_mut() }.ok_or_else(|| Error::invalid_argument("call is NULL"))?;
        let values = unsafe { slice(values, n, "values")? };
        host_call.results = values.iter().map(|value| unsafe { copy_value(value, 0) }).collect::<Result<_, _>>()?;
        Ok(())
    })
}

/// Makes the call fail: the script gets a Lua error with `message` (copied), prefixed with its
/// chunk:line. Results set with `le_call_return` are dropped.
#[no_mangle]
pub extern "C" fn le_call_fail(call_: *mut le_call, message: le_str, err: *mut *mut le_error) -> le_result {
    call(err, || {
        let host_call = unsafe { call_.as_mut() }.ok_or_else(|| Error::invalid_argument("call is NULL"))?;
        let message = unsafe { message.bytes("message")? };
        host_call.failure = Some(String::from_utf8_lossy(message).into_owned());
        Ok(())
    })
}
