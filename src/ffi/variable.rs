//! The host's resolver for `ngx.var` names the engine does not know.

use std::ffi::c_void;
use std::sync::Arc;

use super::error::{call, le_error, le_result};
use super::le_str;
use super::request::le_phase;
use crate::config::{VariableLookup, VariableResolver};
use crate::error::Error;

/// A lookup of `ngx.var.<name>` that the engine could not answer, valid during the callback.
#[repr(C)]
pub struct le_variable_lookup {
    pub request_id: u64,
    pub phase: le_phase,
    /// The name without `$`, lowercased.
    pub name: le_str,
}

/// Where the resolver writes its answer, valid during the callback.
pub struct le_variable_answer {
    value: Option<Vec<u8>>,
}

/// Answers `ngx.var` lookups: call `le_variable_answer_set` to give the value; returning
/// without it makes the variable undefined (nil in Lua). Called on the thread running the
/// phase, on every lookup (answers are not cached): thread-safe, quick, and no running or
/// resuming requests of the same worker from inside it.
pub type le_variable_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, lookup: *const le_variable_lookup, answer: *mut le_variable_answer),
>;

/// Gives the variable's value (copied). A later call replaces it.
#[no_mangle]
pub extern "C" fn le_variable_answer_set(
    answer: *mut le_variable_answer,
    value: le_str,
    err: *mut *mut le_error,
) -> le_result {
    call(err, || {
        let answer = unsafe { answer.as_mut() }.ok_or_else(|| Error::invalid_argument("answer is NULL"))?;
        answer.value = Some(unsafe { value.bytes("value")? }.to_vec());
        Ok(())
    })
}

struct CResolver {
    callback: unsafe extern "C" fn(*mut c_void, *const le_variable_lookup, *mut le_variable_answer),
    user_data: *mut c_void,
}

// SAFETY: le_variable_fn's contract makes the callback and its user data usable from any thread.
unsafe impl Send for CResolver {}
unsafe impl Sync for CResolver {}

impl CResolver {
    fn resolve(&self, lookup: &VariableLookup<'_>) -> Option<Vec<u8>> {
        let c_lookup = le_variable_lookup {
            request_id: lookup.request_id,
            phase: lookup.phase as le_phase,
            name: le_str::of(lookup.name),
        };
        let mut answer = le_variable_answer { value: None };
        unsafe { (self.callback)(self.user_data, &c_lookup, &mut answer) };
        answer.value
    }
}

/// The engine's resolver calling the host's callback, if it set one.
pub(crate) fn resolver(callback: le_variable_fn, user_data: *mut c_void) -> Option<VariableResolver> {
    let resolver = CResolver { callback: callback?, user_data };
    Some(Arc::new(move |lookup: &VariableLookup<'_>| resolver.resolve(lookup)))
}
