//! `ngx.now`, `ngx.time`, `ngx.update_time`, `ngx.today`, `ngx.localtime`, `ngx.utctime`. Like
//! nginx, each worker caches the time and refreshes it at the start of every phase run and
//! resume, so these are cheap and stay constant while a script computes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{Function, Lua, LuaString, Table};

/// A worker's cached time, in milliseconds since the Unix epoch.
#[derive(Clone)]
pub(crate) struct Clock(Arc<AtomicU64>);

impl Clock {
    pub(crate) fn new() -> Clock {
        let clock = Clock(Arc::default());
        clock.update();
        clock
    }

    /// Reads the system clock into the cache (`ngx.update_time`).
    pub(crate) fn update(&self) {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.0.store(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn seconds(&self) -> i64 {
        i64::try_from(self.millis() / 1000).unwrap_or(i64::MAX)
    }
}

/// The time functions work in every context, so they go straight into `ngx`.
pub(crate) fn register(lua: &Lua, ngx: &Table, clock: &Clock) -> mlua::Result<()> {
    let cached = clock.clone();
    ngx.set("now", lua.create_function(move |_, ()| Ok(cached.millis() as f64 / 1000.0))?)?;
    let cached = clock.clone();
    ngx.set("time", lua.create_function(move |_, ()| Ok(cached.seconds()))?)?;
    let cached = clock.clone();
    ngx.set(
        "update_time",
        lua.create_function(move |_, ()| {
            cached.update();
            Ok(())
        })?,
    )?;
    // Lua's os.date formats with localtime_r (gmtime_r after "!"): local time without unsafe
    // code or a time zone database of our own.
    let os_date: Function = lua.globals().get::<Table>("os")?.get("date")?;
    let formats = [("today", "%Y-%m-%d"), ("localtime", "%Y-%m-%d %H:%M:%S"), ("utctime", "!%Y-%m-%d %H:%M:%S")];
    for (name, format) in formats {
        let (cached, date) = (clock.clone(), os_date.clone());
        ngx.set(name, lua.create_function(move |_, ()| date.call::<LuaString>((format, cached.seconds())))?)?;
    }
    Ok(())
}
