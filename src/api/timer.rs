//! `ngx.timer.at`, `ngx.timer.every`, `ngx.timer.running_count`, `ngx.timer.pending_count`.
//! A timer's callback and arguments stay in this worker's Lua state (`entries`, by timer id);
//! `timer.rs` schedules it and runs it here, in phase `timer`, as `callback(premature, ...)`.

use std::time::Duration;

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{fail, type_name, CurrentRequest};
use crate::phase::Phases;
use crate::timer::Timers;

/// Everywhere but init, as in lua-nginx-module (there is no request in init).
const TIMERS: Phases = Phases::NOT_INIT;

/// Delays beyond this (about 31 years) are mistakes, and would overflow the clock.
const MAX_DELAY: f64 = 1e9;

/// What the worker keeps: the callbacks by timer id, and the chunk `run_chunk` runs for one
/// (called with `id, last, premature` after the globals).
pub(crate) struct TimerApi {
    pub entries: Table,
    pub chunk: Function,
    /// The raw functions, wrapped into `ngx.timer` by `install` once the prelude is loaded.
    functions: Table,
}

pub(crate) fn register(lua: &Lua, current: &CurrentRequest, timers: &Timers, worker: usize) -> mlua::Result<TimerApi> {
    let entries = lua.create_table()?;
    let functions = lua.create_table()?;
    for (name, every) in [("at", false), ("every", true)] {
        let (slot, timers, entries) = (current.clone(), timers.clone(), entries.clone());
        let create = move |lua: &Lua, args: MultiValue| {
            let delay = match check(&slot, name, every, &args) {
                Ok(delay) => delay,
                Err(message) => return fail(lua, message),
            };
            let id = timers.reserve_id();
            entries.raw_set(id, entry(lua, args)?)?;
            match timers.start(id, worker, delay, every) {
                // lua-nginx-module returns 1, a "conditional true".
                Ok(()) => Ok((Value::Integer(1), Value::Nil)),
                Err(message) => {
                    entries.raw_set(id, Value::Nil)?;
                    Ok((Value::Nil, Value::String(lua.create_string(message)?)))
                }
            }
        };
        functions.set(name, lua.create_function(create)?)?;
    }
    for (name, running) in [("running_count", true), ("pending_count", false)] {
        let (slot, timers) = (current.clone(), timers.clone());
        let api = format!("ngx.timer.{name}");
        let count = move |lua: &Lua, ()| match slot.with(&api, TIMERS, |_| ()) {
            Ok(()) => {
                let count = if running { timers.running(worker) } else { timers.pending(worker) };
                Ok((Value::Integer(count as i64), Value::Nil))
            }
            Err(message) => fail(lua, message),
        };
        functions.set(name, lua.create_function(count)?)?;
    }
    let chunk = lua
        .load(
            r#"
            local entries = ...
            local unpack = table.unpack or unpack
            -- run_chunk gets its closure from this as it does for a script
            return function()
              return function(_, id, last, premature)
                local entry = entries[id]
                if last then
                  entries[id] = nil
                end
                return entry.fn(premature, unpack(entry, 1, entry.n))
              end
            end
            "#,
        )
        .set_name("=[luaengine timer]")
        .call(&entries)?;
    Ok(TimerApi { entries, chunk, functions })
}

/// Sets `ngx.timer`, its functions raising their argument errors at the caller's level.
pub(crate) fn install(lua: &Lua, ngx: &Table, checked: &Function, api: &TimerApi) -> mlua::Result<()> {
    let timer = lua.create_table()?;
    for pair in api.functions.pairs::<String, Function>() {
        let (name, function) = pair?;
        timer.set(name, checked.call::<Function>(function)?)?;
    }
    ngx.set("timer", timer)
}

/// Checks `ngx.timer.at/every`'s arguments in lua-nginx-module's order; returns the delay.
fn check(slot: &CurrentRequest, name: &str, every: bool, args: &MultiValue) -> Result<Duration, String> {
    if args.len() < 2 {
        return Err(format!("expecting at least 2 arguments but got {}", args.len()));
    }
    let seconds = match &args[0] {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        Value::String(s) => s.to_str().ok().and_then(|s| s.trim().parse().ok()).unwrap_or(f64::NAN),
        other => return Err(format!("bad argument #1 to '{name}' (number expected, got {})", type_name(other))),
    };
    if !(0.0..=MAX_DELAY).contains(&seconds) {
        return Err(format!("bad argument #1 to '{name}' (invalid delay)"));
    }
    // nginx counts in whole milliseconds.
    let delay = Duration::from_millis((seconds * 1000.0) as u64);
    if every && delay.is_zero() {
        return Err("delay cannot be zero".into());
    }
    match &args[1] {
        Value::Function(callback) if callback.info().what != "C" => {}
        _ => return Err(format!("bad argument #2 to '{name}' (Lua function expected)")),
    }
    slot.with(&format!("ngx.timer.{name}"), TIMERS, |_| ())?;
    Ok(delay)
}

/// `{ fn = callback, n = #args, args... }`.
fn entry(lua: &Lua, mut args: MultiValue) -> mlua::Result<Table> {
    args.pop_front();
    let callback = args.pop_front();
    let entry = lua.create_table_with_capacity(args.len(), 2)?;
    entry.raw_set("fn", callback)?;
    entry.raw_set("n", args.len())?;
    for (index, arg) in args.into_iter().enumerate() {
        entry.raw_set(index + 1, arg)?;
    }
    Ok(entry)
}
