//! The `ngx.*` Lua API, one file per area as in lua-nginx-module. Rust functions here find the
//! running request through the worker's app data; `prelude.lua` adds the Lua glue (argument
//! errors raised at the caller's level, ngx.exit's yield, `ngx.ctx`/`ngx.status` fields, the
//! coroutine wrappers and `require`).

mod arg;
mod cjson;
mod codec;
pub(crate) mod consts;
mod ctx;
mod header;
mod host;
mod log;
mod phase;
mod process;
mod re;
mod req;
mod resp;
mod shdict;
mod sleep;
pub(crate) mod time;
mod timer;
mod uri;
mod var;

use std::ffi::c_void;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mlua::{FromLuaMulti, Function, IntoLua, LightUserData, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;

use crate::cache::CodeCache;
use crate::config::VariableResolver;
use crate::host::HostFunction;
use crate::limits::Budget;
use crate::log::Logger;
use crate::lua::interrupt::Interrupt;
use crate::phase::{Phase, Phases};
use crate::request::RequestState;
use crate::shdict::SharedDict;
use crate::timer::Timers;
use crate::wait::Event;
use crate::worker::FunctionCache;

/// The request whose coroutine is running on this worker, if any: the worker installs it for
/// the duration of a run or resume, and the `ngx.*` functions (which share this slot) reach it
/// here. The lock is uncontended (the worker lock is held around it); `try_lock` turns a
/// re-entrant use, such as a `__gc` finalizer calling ngx.* inside an ngx.* call, into an error.
#[derive(Clone, Default)]
pub(crate) struct CurrentRequest(Arc<Mutex<Option<Box<RequestState>>>>);

impl CurrentRequest {
    /// Installs `state` as the running request, returning the one that was there.
    pub(crate) fn replace(&self, state: Option<Box<RequestState>>) -> Option<Box<RequestState>> {
        std::mem::replace(&mut *self.0.lock(), state)
    }

    /// Runs `f` on the running request after checking that `api` may run in its phase; the error
    /// is the message lua-nginx-module gives.
    pub(crate) fn with<R>(
        &self,
        api: &str,
        phases: Phases,
        f: impl FnOnce(&mut RequestState) -> R,
    ) -> Result<R, String> {
        let mut current = self
            .0
            .try_lock()
            .ok_or_else(|| format!("{api} cannot run inside another ngx.* call (from a __gc metamethod?)"))?;
        let request =
            current.as_deref_mut().ok_or_else(|| format!("no request found (calling {api} outside a request)"))?;
        match request.phase {
            Some(phase) if phases.contains(phase) => Ok(f(request)),
            Some(phase) => Err(format!("API disabled in the context of {}", phase.name())),
            None => Err(format!("no request found (calling {api} outside a phase)")),
        }
    }

    /// Like `with`, for functions that can fail with an argument error of their own.
    pub(crate) fn try_with<R>(
        &self,
        api: &str,
        phases: Phases,
        f: impl FnOnce(&mut RequestState) -> Result<R, String>,
    ) -> Result<R, String> {
        self.with(api, phases, f)?
    }

    /// Reads the running request, if there is one and it is free.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(Option<&RequestState>) -> R) -> R {
        match self.0.try_lock() {
            Some(current) => f(current.as_deref()),
            None => f(None),
        }
    }
}

/// What a worker keeps from the installed API.
pub(crate) struct Installed {
    /// `run_chunk(chunk, env, fresh, ...)`: the body of every pooled coroutine.
    pub run_chunk: Function,
    pub current: CurrentRequest,
    /// The worker's cached time, refreshed before every phase run and resume.
    pub clock: time::Clock,
    /// Timer callbacks by id, and the chunk that runs one (see `timer.rs`).
    pub timer_entries: Table,
    pub timer_chunk: Function,
}

/// Everything `install` needs from the engine.
pub(crate) struct Setup<'a> {
    pub cache: Arc<CodeCache>,
    pub logger: Logger,
    pub package_path: &'a [String],
    pub trusted: bool,
    /// The worker's instruction budget, when one is configured.
    pub budget: Option<Arc<Budget>>,
    /// The worker state's interrupt, which stops runaway scripts (`lua/interrupt.rs`).
    pub interrupt: Arc<Interrupt>,
    pub functions: FunctionCache,
    pub host_functions: &'a [HostFunction],
    pub async_functions: &'a [String],
    pub dicts: &'a [Arc<SharedDict>],
    /// The host's resolver for `ngx.var` names the engine does not know.
    pub variables: Option<VariableResolver>,
    /// `EngineConfig::default_type`, added when the engine sends the response headers.
    pub default_type: Arc<str>,
    /// The worker's memory cap (0: none), which also bounds a request's buffered response body:
    /// the host holds that body as the script makes it.
    pub memory_limit: usize,
    /// This worker's index and the number of workers (`ngx.worker.id`, `count`).
    pub worker: (usize, usize),
    /// Set when the engine starts shutting down (`ngx.worker.exiting`).
    pub exiting: Arc<AtomicBool>,
    pub timers: Timers,
}

static SIGNAL_ANCHOR: u8 = 0;

/// The engine's private marker: first value of engine yields, and of (marker, message) error
/// returns from Rust functions. Scripts cannot forge it: it is never exposed to them.
pub(crate) fn signal() -> LightUserData {
    LightUserData(&SIGNAL_ANCHOR as *const u8 as *mut c_void)
}

pub(crate) fn is_signal(value: &Value) -> bool {
    matches!(value, Value::LightUserData(ud) if *ud == signal())
}

/// The second value of a (signal, "wait") yield: the phase waits for an event.
pub(crate) fn is_wait(value: &Value) -> bool {
    matches!(value, Value::String(kind) if kind.as_bytes() == b"wait")
}

/// Phases that may wait (sleep, async calls): lua-nginx-module's yieldable contexts.
pub(crate) const YIELDING: Phases = Phases::of(&[Phase::Rewrite, Phase::Access, Phase::Content, Phase::Timer]);

/// What a waiting script receives when its wait completes: (id, true, values...) or
/// (id, false, message).
pub(crate) fn event_values(lua: &Lua, event: Event) -> mlua::Result<MultiValue> {
    let mut values = vec![Value::Integer(event.id as i64)];
    match event.result {
        Ok(results) => {
            values.push(Value::Boolean(true));
            for value in results {
                values.push(host::lua_value(lua, value)?);
            }
        }
        Err(message) => {
            values.push(Value::Boolean(false));
            values.push(Value::String(lua.create_string(message)?));
        }
    }
    Ok(MultiValue::from_vec(values))
}

/// The name Lua's `type()` gives a value (mlua tells integers and light userdata apart).
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) | Value::Number(_) => "number",
        Value::LightUserData(_) => "userdata",
        other => other.type_name(),
    }
}

/// A request function's Lua results: its value, or an argument error for the glue to raise.
pub(crate) fn reply<V: IntoLua>(lua: &Lua, result: Result<V, String>) -> mlua::Result<(Value, Value)> {
    match result {
        Ok(value) => Ok((value.into_lua(lua)?, Value::Nil)),
        Err(message) => fail(lua, message),
    }
}

/// Adds `name` to `table`: a function whose result is its value, or an argument error (`Err`) for
/// the `checked` glue to raise at the caller's level.
pub(crate) fn add_function<A, R>(
    lua: &Lua,
    table: &Table,
    name: &str,
    f: impl Fn(&Lua, A) -> mlua::Result<Result<R, String>> + Send + 'static,
) -> mlua::Result<()>
where
    A: FromLuaMulti,
    R: IntoLua,
{
    table.set(name, lua.create_function(move |lua, args: A| reply(lua, f(lua, args)?))?)
}

/// Separates a Lua failure (out of memory while building a value: raised as is) from an
/// argument error (handed to the glue).
pub(crate) fn lua_failure<T>(result: Result<mlua::Result<T>, String>) -> mlua::Result<Result<T, String>> {
    match result {
        Ok(inner) => inner.map(Ok),
        Err(message) => Ok(Err(message)),
    }
}

/// An argument error for the Lua glue to raise at the caller's level.
pub(crate) fn fail(lua: &Lua, message: impl AsRef<[u8]>) -> mlua::Result<(Value, Value)> {
    Ok((Value::LightUserData(signal()), Value::String(lua.create_string(message)?)))
}

/// Builds `ngx` and the engine glue in a fresh worker state, and completes the base
/// environment scripts see (`ngx`, `coroutine`, `require`, `print`, `package`, `load`).
pub(crate) fn install(lua: &Lua, base: &Table, setup: Setup<'_>) -> mlua::Result<Installed> {
    let current = CurrentRequest::default();
    let ngx = lua.create_table()?;
    let impl_table = lua.create_table()?;
    ngx.set("req", lua.create_table()?)?;
    consts::register(&ngx)?;
    // Functions for `ngx` itself that need no request and only check their arguments.
    let ngx_functions = lua.create_table()?;
    impl_table.set("ngx", &ngx_functions)?;
    codec::register(lua, &ngx_functions)?;
    let clock = time::Clock::new();
    time::register(lua, &ngx, &ngx_functions, &clock)?;
    re::register(lua, &ngx)?;
    phase::register(lua, &ngx, &current)?;
    let (index, count) = setup.worker;
    process::register(lua, &ngx, process::WorkerInfo { index, count, exiting: setup.exiting.clone() })?;
    resp::register(lua, &current, &impl_table, &setup.logger, &setup.default_type, setup.memory_limit)?;
    ctx::register(lua, &current, &impl_table)?;
    var::register(lua, &current, &impl_table, setup.variables.clone())?;
    let headers_mt = lua.create_table()?;
    req::register(lua, &current, &impl_table, &headers_mt)?;
    header::register(lua, &current, &impl_table, &setup.logger)?;
    log::register(lua, &current, &impl_table, setup.logger.clone())?;
    crate::modules::register(lua, &impl_table, setup.cache.clone(), setup.functions.clone(), setup.package_path)?;

    let globals = lua.globals();
    let (loaded, preload) = if setup.trusted {
        let package: Table = globals.get("package")?;
        let default_path: String = package.get("path")?;
        let mut path = setup.package_path.to_vec();
        path.push(default_path);
        package.set("path", path.join(";"))?;
        (package.get("loaded")?, package.get("preload")?)
    } else {
        (lua.create_table()?, lua.create_table()?)
    };
    let module_env = lua.create_table()?;
    let params = lua.create_table()?;
    params.set("ngx", &ngx)?;
    params.set("impl", &impl_table)?;
    params.set("signal", signal())?;
    params.set("setfenv", globals.get::<Value>("setfenv")?)?;
    params.set("checked", vec!["say", "print", "flush", "log"])?;
    params.set("headers_mt", &headers_mt)?;
    params.set("loaded", &loaded)?;
    params.set("preload", &preload)?;
    params.set("module_env", &module_env)?;
    params.set("base", base)?;
    params.set("host", host::module(lua, &current, setup.host_functions, setup.async_functions)?)?;
    sleep::register(lua, &current, &impl_table)?;
    arg::register(lua, &current, &impl_table)?;
    let timers = timer::register(lua, &current, &setup.timers, setup.worker.0)?;
    let dict_methods = lua.create_table()?;
    shdict::register(lua, setup.dicts, &dict_methods)?;
    params.set("dict_methods", dict_methods)?;
    params.set("dict_names", setup.dicts.iter().map(|dict| dict.name()).collect::<Vec<_>>())?;
    let builtins = lua.create_table()?;
    params.set("builtins", &builtins)?;
    if let Some((enter, leave)) = setup.interrupt.tracking_functions(lua)? {
        params.set("track_enter", enter)?;
        params.set("track_leave", leave)?;
    }
    params.set("isolated", !setup.trusted)?;
    if let Some(budget) = setup.budget {
        params.set("budget_spent", lua.create_function(move |_, ()| Ok(budget.exceeded()))?)?;
    }
    if setup.trusted {
        params.set("fallback_require", globals.get::<Function>("require")?)?;
    }
    let glue: Table = lua.load(include_str!("prelude.lua")).set_name("=[luaengine prelude]").call(params)?;
    cjson::register(lua, &preload, glue.get("request_scope")?)?;

    base.set("ngx", &ngx)?;
    base.set("coroutine", glue.get::<Table>("coroutine")?)?;
    base.set("require", glue.get::<Function>("require")?)?;
    base.set("pcall", glue.get::<Function>("pcall")?)?;
    base.set("xpcall", glue.get::<Function>("xpcall")?)?;
    let checked: Function = glue.get("checked")?;
    timer::install(lua, &ngx, &checked, &timers)?;
    let print: Function = checked.call(impl_table.get::<Function>("print_log")?)?;
    base.set("print", print)?;
    if !setup.trusted {
        let package = lua.create_table()?;
        package.set("loaded", glue.get::<Table>("package_loaded")?)?;
        package.set("preload", glue.get::<Table>("package_preload")?)?;
        package.set("path", setup.package_path.join(";"))?;
        base.set("package", package)?;
        let load: Function = glue.get("load")?;
        base.set("load", &load)?;
        if cfg!(feature = "luajit") {
            base.set("loadstring", load)?;
        }
    }
    // Modules get globals of their own, shared by the worker like OpenResty's _G.
    let module_mt = lua.create_table()?;
    module_mt.set("__index", base)?;
    module_mt.set("__metatable", false)?;
    module_env.set_metatable(Some(module_mt))?;
    module_env.raw_set("_G", &module_env)?;
    if !setup.trusted {
        crate::sandbox::seal(lua, base, &builtins, &glue.get("modules")?, &[&headers_mt])?;
    }
    Ok(Installed {
        run_chunk: glue.get("run_chunk")?,
        current,
        clock,
        timer_entries: timers.entries,
        timer_chunk: timers.chunk,
    })
}

/// Appends what `ngx.say` prints for a scalar: strings as they are, numbers as
/// lua-nginx-module formats them (integers plainly, others with `%.14g`), booleans, `nil`, and
/// `null` for `ngx.null`. Returns false for other types.
pub(crate) fn append_scalar(out: &mut Vec<u8>, value: &Value) -> bool {
    match value {
        Value::String(s) => out.extend_from_slice(&s.as_bytes()),
        Value::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Number(n) => out.extend_from_slice(format_number(*n).as_bytes()),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Nil => out.extend_from_slice(b"nil"),
        Value::LightUserData(ud) if ud.0.is_null() => out.extend_from_slice(b"null"),
        _ => return false,
    }
    true
}

/// A string or number as Lua's `tostring` gives it (numbers formatted as `ngx.say` prints them);
/// None for other types. What lua-nginx-module's `luaL_checklstring` arguments accept.
pub(crate) fn string_or_number(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(_) | Value::Integer(_) | Value::Number(_) => {
            let mut text = Vec::new();
            append_scalar(&mut text, value);
            Some(text)
        }
        _ => None,
    }
}

/// C's `%.14g`, which nginx and Lua use for non-integral numbers; integral values print plainly.
pub(crate) fn format_number(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{}", n as i64);
    }
    cjson::format_g(n, 14)
}

#[cfg(test)]
mod tests {
    use super::format_number;

    #[test]
    fn numbers_print_like_printf_g14() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(-0.5), "-0.5");
        assert_eq!(format_number(1.23456), "1.23456");
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(1e20), "1e+20");
        assert_eq!(format_number(1.5e-7), "1.5e-07");
        assert_eq!(format_number(123456789.123), "123456789.123");
        assert_eq!(format_number(f64::INFINITY), "inf");
    }
}
