//! Host functions: named functions a host registers in the engine config, which scripts call as
//! `require("host").name(...)`. Values cross as plain Rust data, never as Lua values, so a host
//! function cannot reach into a worker's Lua state.

use std::fmt;
use std::sync::Arc;

/// A value passed to or returned from a host function. Lua tables cross as arrays (keys
/// exactly 1..n) or as maps with string keys; an empty table arrives as an empty map, as
/// lua-cjson encodes it.
#[derive(Clone, Debug, PartialEq)]
pub enum HostValue {
    Nil,
    Boolean(bool),
    /// On LuaJIT, whose numbers are all doubles, integral numbers arrive as integers.
    Integer(i64),
    Number(f64),
    /// Bytes: Lua strings are binary-safe.
    String(Vec<u8>),
    Array(Vec<HostValue>),
    /// String keys with their values, in no particular order.
    Map(Vec<(Vec<u8>, HostValue)>),
}

impl From<&str> for HostValue {
    fn from(text: &str) -> Self {
        HostValue::String(text.as_bytes().to_vec())
    }
}

/// What a host function is called with.
pub struct HostCall<'a> {
    /// The registered name.
    pub name: &'a str,
    /// The request whose script made the call, or 0 outside a request (init, timers).
    pub request_id: u64,
    pub args: &'a [HostValue],
}

/// The signature of a host function: its results, or an error message that the script
/// receives as a Lua error. It runs on the thread that runs the script, under the worker's
/// lock, so it must be quick (waits belong to async functions) and thread-safe.
pub type HostFn = dyn Fn(&HostCall<'_>) -> Result<Vec<HostValue>, String> + Send + Sync;

/// A named host function, registered through `EngineConfig::host_functions`.
#[derive(Clone)]
pub struct HostFunction {
    pub(crate) name: String,
    pub(crate) function: Arc<HostFn>,
}

impl HostFunction {
    pub fn new(
        name: impl Into<String>,
        function: impl Fn(&HostCall<'_>) -> Result<Vec<HostValue>, String> + Send + Sync + 'static,
    ) -> HostFunction {
        HostFunction { name: name.into(), function: Arc::new(function) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for HostFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFunction").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Tables nested deeper than this are refused both ways, so a cyclic table or a hostile host
/// value cannot exhaust the stack.
pub const MAX_VALUE_DEPTH: usize = 100;
