//! Shared dicts: declared in `le_config`, shared by all workers, and reachable by the host to
//! pre-seed or inspect them (`le_engine_dict`).

use std::ffi::c_void;
use std::sync::Arc;

use super::engine::le_engine;
use super::error::{call, le_error, le_result};
use super::host::{
    le_value, Views, LE_VALUE_BOOLEAN, LE_VALUE_INTEGER, LE_VALUE_NIL, LE_VALUE_NUMBER, LE_VALUE_STRING,
};
use super::{handle, le_str, require_out, slice, write_out};
use crate::error::{Error, ErrorCode};
use crate::host::HostValue;
use crate::shdict::{DictError, DictValue, End, SharedDict, StoreMode};

/// A shared dict to create: scripts reach it as `ngx.shared.<name>`.
#[repr(C)]
pub struct le_dict_config {
    /// UTF-8, unique within the engine.
    pub name: le_str,
    /// Bytes the dict may hold (keys, values and a per-entry overhead); at least 32 KiB.
    pub capacity: usize,
}

/// The engine's copy of the dicts in a config.
///
/// # Safety
/// `dicts` must hold `n` valid `le_dict_config`s.
pub(crate) unsafe fn dict_configs(dicts: *const le_dict_config, n: usize) -> Result<Vec<(String, usize)>, Error> {
    let dicts = unsafe { slice(dicts, n, "config.shared_dicts")? };
    dicts
        .iter()
        .map(|dict| Ok((unsafe { dict.name.text("config.shared_dicts name")? }.to_string(), dict.capacity)))
        .collect()
}

/// A host's handle on one shared dict, the same store scripts reach as `ngx.shared.<name>`.
/// Thread-safe: use it from any number of threads at once, while scripts use the dict too. It
/// keeps the dict (not the engine) alive: free it with `le_dict_free`, before or after the engine.
///
/// Dict failures return lua-nginx-module's message in the `le_error`: `LE_ERR_INVALID_STATE`
/// for `"exists"`, `"not found"`, `"not a number"`, `"value is a list"` (a scalar read of a list)
/// and `"value not a list"` (a list operation on a scalar); `LE_ERR_MEMORY` for
/// `"no memory"`; `LE_ERR_INVALID_ARGUMENT` for `"empty key"`, `"key too long"` (over 65535
/// bytes), `"bad value type"` and NULL or out-of-range arguments.
pub struct le_dict {
    dict: Arc<SharedDict>,
}

/// How `le_dict_set` treats an existing key and a full dict (lua-nginx-module's store methods).
pub type le_dict_mode = u32;
/// `set`: always stores, evicting least recently used entries when the dict is full.
pub const LE_DICT_SET: le_dict_mode = 0;
/// `safe_set`: like set, but fails with `"no memory"` rather than evicting live entries.
pub const LE_DICT_SAFE_SET: le_dict_mode = 1;
/// `add`: only when the key is absent (or expired); fails with `"exists"` otherwise.
pub const LE_DICT_ADD: le_dict_mode = 2;
/// `safe_add`: add without evicting live entries.
pub const LE_DICT_SAFE_ADD: le_dict_mode = 3;
/// `replace`: only when the key is present; fails with `"not found"` otherwise.
pub const LE_DICT_REPLACE: le_dict_mode = 4;

/// Called by `le_dict_keys` once per key, on the caller's thread. `key` is valid during the call.
pub type le_dict_key_fn = Option<unsafe extern "C" fn(key: le_str, user_data: *mut c_void)>;

fn dict_error(error: DictError) -> Error {
    let code = match error {
        DictError::NoMemory => ErrorCode::Memory,
        DictError::NilKey | DictError::EmptyKey | DictError::KeyTooLong | DictError::BadValueType => {
            ErrorCode::InvalidArgument
        }
        DictError::NotFound | DictError::Exists | DictError::NotANumber | DictError::NotAList | DictError::IsAList => {
            ErrorCode::InvalidState
        }
    };
    Error::new(code, error.to_string())
}

fn store_mode(mode: le_dict_mode) -> Result<StoreMode, Error> {
    Ok(match mode {
        LE_DICT_SET => StoreMode::Set,
        LE_DICT_SAFE_SET => StoreMode::SafeSet,
        LE_DICT_ADD => StoreMode::Add,
        LE_DICT_SAFE_ADD => StoreMode::SafeAdd,
        LE_DICT_REPLACE => StoreMode::Replace,
        other => return Err(Error::invalid_argument(format!("{other} is not an le_dict_mode"))),
    })
}

/// Seconds until expiry: finite and not negative (0 = never).
fn seconds(value: f64, what: &str) -> Result<f64, Error> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(Error::invalid_argument(format!("{what} must be a finite number of seconds >= 0, not {value}")))
    }
}

/// What a host value stores: None (delete) for nil, integers as numbers, no tables.
///
/// # Safety
/// A string value's pointer must be valid for its length.
unsafe fn stored_value(value: &le_value) -> Result<Option<DictValue>, Error> {
    Ok(Some(match value.type_ {
        LE_VALUE_NIL => return Ok(None),
        LE_VALUE_BOOLEAN => DictValue::Boolean(value.boolean),
        LE_VALUE_INTEGER => DictValue::Number(value.integer as f64),
        LE_VALUE_NUMBER => DictValue::Number(value.number),
        LE_VALUE_STRING => DictValue::String(unsafe { value.string.bytes("value.string")? }.to_vec()),
        _ => return Err(dict_error(DictError::BadValueType)),
    }))
}

/// A read value handed to the caller; a string's bytes are a leaked `Box<[u8]>` that
/// `le_dict_value_free` takes back.
fn owned_value(value: Option<DictValue>) -> le_value {
    let mut out = Views::default().view(&HostValue::Nil);
    match value {
        None => {}
        Some(DictValue::Boolean(b)) => (out.type_, out.boolean) = (LE_VALUE_BOOLEAN, b),
        Some(DictValue::Number(n)) => (out.type_, out.number) = (LE_VALUE_NUMBER, n),
        Some(DictValue::String(bytes)) => {
            out.type_ = LE_VALUE_STRING;
            if !bytes.is_empty() {
                let len = bytes.len();
                out.string = le_str { ptr: Box::into_raw(bytes.into_boxed_slice()).cast::<u8>(), len };
            }
        }
    }
    out
}

/// Writes `value` to an out-parameter the caller may leave NULL.
///
/// # Safety
/// A non-NULL `out` must be writable.
unsafe fn write_optional<T>(out: *mut T, value: T) {
    if !out.is_null() {
        unsafe { write_out(out, value) }
    }
}

/// Writes an entry read for the caller (None: absent, flags 0) to `*value_out` and, if not NULL,
/// `*flags_out`.
///
/// # Safety
/// `value_out` must be writable, `flags_out` NULL or writable.
unsafe fn write_entry(value_out: *mut le_value, flags_out: *mut u32, found: Option<(DictValue, u32)>) {
    let (value, flags) = found.map_or((None, 0), |(value, flags)| (Some(value), flags));
    unsafe { write_out(value_out, owned_value(value)) };
    unsafe { write_optional(flags_out, flags) };
}

/// # Safety
/// `key`'s pointer must be valid for its length.
unsafe fn key_bytes<'a>(key: le_str) -> Result<&'a [u8], Error> {
    unsafe { key.bytes("key") }
}

/// Looks up the engine's shared dict `name` (as declared in `le_config.shared_dicts`) and
/// writes a new handle on it to `*out`; free it with `le_dict_free`. Fails with
/// `LE_ERR_INVALID_ARGUMENT` when the engine has no dict of that name.
#[no_mangle]
pub extern "C" fn le_engine_dict(
    engine: *const le_engine,
    name: le_str,
    out: *mut *mut le_dict,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let engine = unsafe { handle(engine, "engine")? };
        require_out(out, "out")?;
        let name = unsafe { name.text("name")? };
        let dict = engine
            .engine
            .shared_dict(name)
            .ok_or_else(|| Error::invalid_argument(format!("the engine has no shared dict named '{name}'")))?;
        unsafe { write_out(out, Box::into_raw(Box::new(le_dict { dict: dict.clone() }))) };
        Ok(())
    })
}

/// Frees a dict handle (the dict lives on while its engine or other handles use it). NULL is
/// ignored.
#[no_mangle]
pub extern "C" fn le_dict_free(dict: *mut le_dict) {
    super::free_handle(dict)
}

/// Reads a live key (`dict:get`): `*value_out` gets its value, `LE_VALUE_NIL` when the key is
/// absent or expired; numbers come back as `LE_VALUE_NUMBER` (the dict stores doubles).
/// `*flags_out` (if not NULL) gets the user flags, 0 for an absent key. A string's bytes are
/// copied for the caller: release them with `le_dict_value_free`, which accepts every value this
/// function wrote, so calling it unconditionally is fine. Fails with `"value is a list"` on a
/// list.
#[no_mangle]
pub extern "C" fn le_dict_get(
    dict: *const le_dict,
    key: le_str,
    value_out: *mut le_value,
    flags_out: *mut u32,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        require_out(value_out, "value_out")?;
        let found = dict.dict.get(unsafe { key_bytes(key)? }).map_err(dict_error)?;
        unsafe { write_entry(value_out, flags_out, found) };
        Ok(())
    })
}

/// Reads `key` like `le_dict_get`, but an entry that has expired still reads until its memory
/// is reclaimed (by a store that needs the room, `le_dict_flush_expired` or a new value under
/// the key) (`dict:get_stale`): serve a stale value while a fresh one is fetched.
/// `*stale_out` (if not NULL) tells whether the entry had expired; false for an absent key.
/// The value, its ownership and the failures are `le_dict_get`'s.
#[no_mangle]
pub extern "C" fn le_dict_get_stale(
    dict: *const le_dict,
    key: le_str,
    value_out: *mut le_value,
    flags_out: *mut u32,
    stale_out: *mut bool,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        require_out(value_out, "value_out")?;
        let found = dict.dict.get_stale(unsafe { key_bytes(key)? }).map_err(dict_error)?;
        let stale = found.as_ref().is_some_and(|found| found.stale);
        unsafe { write_entry(value_out, flags_out, found.map(|found| (found.value, found.flags))) };
        unsafe { write_optional(stale_out, stale) };
        Ok(())
    })
}

/// Releases the string bytes of a value `le_dict_get`, `le_dict_get_stale`, `le_dict_lpop` or
/// `le_dict_rpop` wrote and makes it `LE_VALUE_NIL`. Does nothing to other values' memory; NULL
/// is ignored. Pass only values those functions wrote.
#[no_mangle]
pub extern "C" fn le_dict_value_free(value: *mut le_value) {
    super::guard((), || {
        let Some(value) = (unsafe { value.as_mut() }) else { return };
        if value.type_ == LE_VALUE_STRING && !value.string.ptr.is_null() && value.string.len > 0 {
            let bytes = std::ptr::slice_from_raw_parts_mut(value.string.ptr.cast_mut(), value.string.len);
            // SAFETY: owned_value leaked exactly this Box<[u8]> for the caller.
            drop(unsafe { Box::from_raw(bytes) });
        }
        *value = owned_value(None);
    })
}

/// Stores `*value` under `key` as `mode` says (`set`, `safe_set`, `add`, `safe_add`,
/// `replace`), expiring after `exptime` seconds (0 = never), with user `flags`. `value` may be
/// nil (deletes the key, like `dict:set(key, nil)`), boolean, integer (stored as a number),
/// number or string (copied); arrays and maps fail with `"bad value type"`. `*forcible` (if
/// not NULL) tells whether live entries were evicted to make room. Fails with `"exists"`
/// (add), `"not found"` (replace) or `"no memory"` (the value does not fit, or a safe mode
/// would have to evict).
#[no_mangle]
pub extern "C" fn le_dict_set(
    dict: *const le_dict,
    mode: le_dict_mode,
    key: le_str,
    value: *const le_value,
    exptime: f64,
    flags: u32,
    forcible: *mut bool,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        let mode = store_mode(mode)?;
        let value = unsafe { stored_value(handle(value, "value")?)? };
        let exptime = seconds(exptime, "exptime")?;
        let evicted =
            dict.dict.store(mode, unsafe { key_bytes(key)? }, value, exptime, flags).map_err(|(e, _)| dict_error(e))?;
        unsafe { write_optional(forcible, evicted) };
        Ok(())
    })
}

/// What a list holds: a string or a number (integers as numbers); nil, booleans, arrays and maps
/// are `"bad value type"`, as `dict:lpush` answers.
///
/// # Safety
/// A string value's pointer must be valid for its length.
unsafe fn list_value(value: &le_value) -> Result<DictValue, Error> {
    unsafe { stored_value(value)? }
        .filter(|value| !matches!(value, DictValue::Boolean(_)))
        .ok_or_else(|| dict_error(DictError::BadValueType))
}

/// `le_dict_lpush`/`le_dict_rpush` at `end`.
fn push(
    dict: *const le_dict,
    end: End,
    key: le_str,
    value: *const le_value,
    length: *mut usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        let value = unsafe { list_value(handle(value, "value")?)? };
        let len = dict.dict.push(end, unsafe { key_bytes(key)? }, value).map_err(dict_error)?;
        unsafe { write_optional(length, len) };
        Ok(())
    })
}

/// `le_dict_lpop`/`le_dict_rpop` at `end`.
fn pop(dict: *const le_dict, end: End, key: le_str, value_out: *mut le_value, err: *mut *mut le_error) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        require_out(value_out, "value_out")?;
        let value = dict.dict.pop(end, unsafe { key_bytes(key)? }).map_err(dict_error)?;
        unsafe { write_out(value_out, owned_value(value)) };
        Ok(())
    })
}

/// Inserts `*value` at the head of the list under `key` (`dict:lpush`), creating the list when
/// the key is absent or expired, and writes the list's new length to `*length` (if not NULL).
/// `value` must be a string (copied) or a number (integers are stored as numbers); anything
/// else fails with `"bad value type"`. Lists never expire on their own and carry no flags.
/// Fails with `"value not a list"` when the key holds a scalar, and with `"no memory"` when
/// the element does not fit even after evicting least recently used entries.
#[no_mangle]
pub extern "C" fn le_dict_lpush(
    dict: *const le_dict,
    key: le_str,
    value: *const le_value,
    length: *mut usize,
    err: *mut *mut le_error,
) -> le_result {
    push(dict, End::Left, key, value, length, err)
}

/// `le_dict_lpush` at the tail of the list (`dict:rpush`): pushed with rpush and popped with
/// lpop, the list is a FIFO queue.
#[no_mangle]
pub extern "C" fn le_dict_rpush(
    dict: *const le_dict,
    key: le_str,
    value: *const le_value,
    length: *mut usize,
    err: *mut *mut le_error,
) -> le_result {
    push(dict, End::Right, key, value, length, err)
}

/// Removes the head of the list under `key` (`dict:lpop`) and writes it to `*value_out`:
/// `LE_VALUE_STRING` or `LE_VALUE_NUMBER`, or `LE_VALUE_NIL` when the key is absent, expired or
/// the list empty (the last element taken removes the key). A string's bytes are copied for the
/// caller: release them with `le_dict_value_free`, which accepts every value this function
/// wrote. Fails with `"value not a list"` when the key holds a scalar; `*value_out` is then left
/// as it was.
#[no_mangle]
pub extern "C" fn le_dict_lpop(
    dict: *const le_dict,
    key: le_str,
    value_out: *mut le_value,
    err: *mut *mut le_error,
) -> le_result {
    pop(dict, End::Left, key, value_out, err)
}

/// `le_dict_lpop` at the tail of the list (`dict:rpop`).
#[no_mangle]
pub extern "C" fn le_dict_rpop(
    dict: *const le_dict,
    key: le_str,
    value_out: *mut le_value,
    err: *mut *mut le_error,
) -> le_result {
    pop(dict, End::Right, key, value_out, err)
}

/// The number of elements in the list under `key` (`dict:llen`), 0 when the key is absent or
/// expired. Fails with `"value not a list"` when the key holds a scalar.
#[no_mangle]
pub extern "C" fn le_dict_llen(
    dict: *const le_dict,
    key: le_str,
    out: *mut usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        require_out(out, "out")?;
        let len = dict.dict.llen(unsafe { key_bytes(key)? }).map_err(dict_error)?;
        unsafe { write_out(out, len) };
        Ok(())
    })
}

/// Removes `key` (`dict:delete`); an absent key is not an error.
#[no_mangle]
pub extern "C" fn le_dict_delete(dict: *const le_dict, key: le_str, err: *mut *mut le_error) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        let key = unsafe { key_bytes(key)? };
        dict.dict.store(StoreMode::Set, key, None, 0.0, 0).map_err(|(e, _)| dict_error(e))?;
        Ok(())
    })
}

/// Adds `by` to the number under `key` (`dict:incr`) and writes the new value to `*out` (if not
/// NULL). When the key is absent: with `init` not NULL it stores `*init + by`, expiring after
/// `init_ttl` seconds (0 = never); with `init` NULL it fails with `"not found"`. Fails with
/// `"not a number"` when the value is not a number.
#[no_mangle]
pub extern "C" fn le_dict_incr(
    dict: *const le_dict,
    key: le_str,
    by: f64,
    init: *const f64,
    init_ttl: f64,
    out: *mut f64,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        let init = unsafe { init.as_ref() }.copied();
        let init_ttl = seconds(init_ttl, "init_ttl")?;
        let (value, _) = dict.dict.incr(unsafe { key_bytes(key)? }, by, init, init_ttl).map_err(dict_error)?;
        unsafe { write_optional(out, value) };
        Ok(())
    })
}

/// Seconds before a live `key` expires, 0 when it never does (`dict:ttl`). Fails with
/// `"not found"`.
#[no_mangle]
pub extern "C" fn le_dict_ttl(dict: *const le_dict, key: le_str, out: *mut f64, err: *mut *mut le_error) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        require_out(out, "out")?;
        let ttl = dict.dict.ttl(unsafe { key_bytes(key)? }).map_err(dict_error)?;
        unsafe { write_out(out, ttl) };
        Ok(())
    })
}

/// Makes a live `key` expire `exptime` seconds from now, 0 = never (`dict:expire`). Fails with
/// `"not found"`.
#[no_mangle]
pub extern "C" fn le_dict_expire(
    dict: *const le_dict,
    key: le_str,
    exptime: f64,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        let exptime = seconds(exptime, "exptime")?;
        dict.dict.expire(unsafe { key_bytes(key)? }, exptime).map_err(dict_error)
    })
}

/// Calls `visit` with up to `max` live keys (0 = all), most recently used first
/// (`dict:get_keys`). The keys are copied before the first call, so `visit` may use the dict.
#[no_mangle]
pub extern "C" fn le_dict_keys(
    dict: *const le_dict,
    max: usize,
    visit: le_dict_key_fn,
    user_data: *mut c_void,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let dict = unsafe { handle(dict, "dict")? };
        let visit = visit.ok_or_else(|| Error::invalid_argument("visit is NULL"))?;
        for key in dict.dict.keys(max) {
            unsafe { visit(le_str::of(&key), user_data) };
        }
        Ok(())
    })
}

/// Makes every entry expire now (`dict:flush_all`); their memory is reclaimed by later stores
/// or `le_dict_flush_expired`.
#[no_mangle]
pub extern "C" fn le_dict_flush_all(dict: *const le_dict, err: *mut *mut le_error) -> le_result {
    call(err, || {
        unsafe { handle(dict, "dict")? }.dict.flush_all();
        Ok(())
    })
}

/// Removes up to `max` expired entries (0 = all) and writes how many to `*flushed` (if not
/// NULL) (`dict:flush_expired`).
#[no_mangle]
pub extern "C" fn le_dict_flush_expired(
    dict: *const le_dict,
    max: usize,
    flushed: *mut usize,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let count = unsafe { handle(dict, "dict")? }.dict.flush_expired(max);
        unsafe { write_optional(flushed, count) };
        Ok(())
    })
}

/// The dict's size in bytes as configured (`dict:capacity`); 0 for NULL.
#[no_mangle]
pub extern "C" fn le_dict_capacity(dict: *const le_dict) -> usize {
    super::guard(0, || unsafe { dict.as_ref() }.map_or(0, |d| d.dict.capacity()))
}

/// Bytes not used by entries, expired ones included until removed (`dict:free_space`); 0 for
/// NULL.
#[no_mangle]
pub extern "C" fn le_dict_free_space(dict: *const le_dict) -> usize {
    super::guard(0, || unsafe { dict.as_ref() }.map_or(0, |d| d.dict.free_space()))
}
