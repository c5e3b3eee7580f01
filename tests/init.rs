//! init and init_worker: init runs in every worker's state before anything else, its globals
//! and modules visible to every request; init_worker runs once per worker after it (where
//! timers start); an error in either makes Engine::new fail with it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use luaengine::{Engine, EngineConfig, LogLevel, LuaSource, Phase};

/// A directory of its own for this test's Lua files.
fn lua_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luaengine-init-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, source) in files {
        std::fs::write(dir.join(file), source).unwrap();
    }
    dir
}

fn with_init(workers: usize, init: Option<&str>, init_worker: Option<&str>) -> EngineConfig {
    EngineConfig {
        workers,
        shared_dicts: vec![("d".into(), 1 << 20)],
        init: init.map(|source| LuaSource::inline("init", source)),
        init_worker: init_worker.map(|source| LuaSource::inline("init_worker", source)),
        ..Default::default()
    }
}

/// The body `lua` produces in content on each worker of `engine`.
fn bodies_on_every_worker(engine: &Engine, lua: &str) -> Vec<String> {
    (0..engine.worker_count())
        .map(|worker| {
            let init = luaengine::RequestInit { path: b"/t", ..Default::default() };
            let mut request = engine.new_request(&init, [], Some(worker));
            let outcome = serve_request(engine, &mut request, &[(Phase::Content, lua)]);
            assert!(outcome.error.is_none(), "{lua}: {:?}", outcome.error);
            outcome.body()
        })
        .collect()
}

#[test]
fn init_globals_and_modules_are_visible_to_every_request() {
    let dir = lua_dir("modules", &[("greet.lua", "local M = {} function M.hi(n) return 'hi ' .. n end return M")]);
    let init = "greeting = 'hello' greet = require('greet') seen_phase = ngx.get_phase()";
    let config =
        EngineConfig { package_path: vec![format!("{}/?.lua", dir.display())], ..with_init(2, Some(init), None) };
    let engine = engine_with(config);
    let lua = "ngx.say(greeting, ' ', greet.hi('x'), ' ', seen_phase, ' ', require('greet') == greet)";
    assert_eq!(bodies_on_every_worker(&engine, lua), ["hello hi x init true\n"; 2]);
    // A request's writes stay its own: the next one sees init's value.
    let cases = [("greeting = 'changed' ngx.say(greeting)", "changed\n"), ("ngx.say(greeting)", "hello\n")];
    check_bodies(&engine, || request(&engine, "/t", &[]), &cases);
}

#[test]
fn init_worker_runs_once_per_worker_after_init() {
    let init = "order = {'init'}";
    let init_worker = "order[#order + 1] = ngx.get_phase() ngx.shared.d:incr('workers', 1, 0)";
    let engine = engine_with(with_init(3, Some(init), Some(init_worker)));
    let lua = "ngx.say(table.concat(order, ','), ' ', ngx.shared.d:get('workers'))";
    assert_eq!(bodies_on_every_worker(&engine, lua), ["init,init_worker 3\n"; 3]);
}

#[test]
fn init_worker_starts_timers() {
    let init_worker = "
        local ok, err = ngx.timer.every(0.005, function(premature) ngx.shared.d:incr('ticks', 1, 0) end)
        ngx.shared.d:set('started', tostring(ok) .. ' ' .. tostring(err) .. ' ' .. ngx.timer.pending_count())";
    let engine = engine_with(with_init(2, None, Some(init_worker)));
    let dict = engine.shared_dict("d").unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    let ticks = || content_on(&engine, "ngx.say(ngx.shared.d:get('ticks'))");
    while ticks() == "nil\n" || ticks().trim().parse::<f64>().unwrap() < 4.0 {
        assert!(Instant::now() < deadline, "the timers did not tick");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(content_on(&engine, "ngx.say(ngx.shared.d:get('started'))"), "1 nil 1\n");
    drop(engine);
    // Once the engine is gone, the timers stop.
    let stopped = format!("{:?}", dict.get(b"ticks").unwrap());
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(format!("{:?}", dict.get(b"ticks").unwrap()), stopped);
}

fn content_on(engine: &Engine, lua: &str) -> String {
    let outcome = serve(engine, "/t", &[], &[(Phase::Content, lua)]);
    assert!(outcome.error.is_none(), "{lua}: {:?}", outcome.error);
    outcome.body()
}

#[test]
fn init_and_init_worker_may_log_and_use_shared_dicts() {
    let lines: Lines = Default::default();
    let sink = lines.clone();
    let config = EngineConfig {
        log: Some(std::sync::Arc::new(move |r: &luaengine::LogRecord<'_>| {
            sink.lock().unwrap().push((r.level, r.phase, r.location.to_string(), r.message.to_string(), r.request_id))
        })),
        ..with_init(
            1,
            Some("ngx.log(ngx.WARN, 'in ', ngx.get_phase()) ngx.shared.d:set('from', 'init')"),
            Some("ngx.ctx.n = 1 print('in ', ngx.get_phase(), ' ', ngx.timer.running_count(), ' ', ngx.ctx.n)"),
        )
    };
    let engine = engine_with(config);
    let logged: Vec<_> = lines.lock().unwrap().iter().map(|l| (l.0, l.1, l.2.clone(), l.3.clone(), l.4)).collect();
    assert_eq!(
        logged,
        [
            (LogLevel::Warn, Some(Phase::Init), "init:1".to_string(), "in init".to_string(), 0),
            (
                LogLevel::Notice,
                Some(Phase::InitWorker),
                "init_worker:1".to_string(),
                "in init_worker 0 1".to_string(),
                0
            ),
        ]
    );
    assert_eq!(content_on(&engine, "ngx.say(ngx.shared.d:get('from'))"), "init\n");
}

#[test]
fn errors_in_init_or_init_worker_fail_the_engine() {
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        (Some("local x = 1\nerror('boom')"), None, "init:2: boom"),
        (None, Some("error('boom')"), "init_worker:1: boom"),
        (Some("ngx.timer.at(0, function() end)"), None, "init:1: API disabled in the context of init"),
        (Some("ngx.timer.pending_count()"), None, "init:1: API disabled in the context of init"),
        (Some("ngx.say('x')"), None, "init:1: API disabled in the context of init"),
        (Some("\nngx.print('x', 1)"), None, "init:2: API disabled in the context of init"),
        (None, Some("ngx.print('x')"), "init_worker:1: API disabled in the context of init_worker"),
        (None, Some("\n\nngx.say('x', 'y')"), "init_worker:3: API disabled in the context of init_worker"),
        (Some("local h = ngx.req.get_headers()"), None, "init:1: API disabled in the context of init"),
        (Some("local v = ngx.var.uri"), None, "init:1: API disabled in the context of init"),
        (None, Some("ngx.sleep(0.1)"), "init_worker:1: API disabled in the context of init_worker"),
        (None, Some("ngx.exit(200)"), "init_worker:1: API disabled in the context of init_worker"),
        (Some("local c = ngx.ctx"), None, "init:1: API disabled in the context of init"),
        (Some("local s = ngx.status"), None, "init:1: API disabled in the context of init"),
        (None, Some("coroutine.yield()"), "init_worker yielded; it cannot wait"),
    ];
    for (init, init_worker, message) in cases {
        let error = Engine::new(with_init(2, *init, *init_worker))
            .err()
            .unwrap_or_else(|| panic!("{init:?} {init_worker:?} runs"));
        assert_eq!(error.message, *message, "{init:?} {init_worker:?}");
    }
    let error = Engine::new(with_init(1, Some("local x = = 1"), None)).err().expect("a syntax error");
    assert_eq!((error.chunk.as_deref(), error.line), (Some("init"), Some(1)), "{error}");
}

#[test]
fn init_code_may_come_from_files() {
    let dir = lua_dir("files", &[("init.lua", "from_file = 'yes'"), ("worker.lua", "\n\nerror('in worker file')")]);
    let engine =
        engine_with(EngineConfig { init: Some(LuaSource::file(dir.join("init.lua"))), ..with_init(1, None, None) });
    assert_eq!(content_on(&engine, "ngx.say(from_file)"), "yes\n");
    let config =
        EngineConfig { init_worker: Some(LuaSource::file(dir.join("worker.lua"))), ..with_init(1, None, None) };
    let error = Engine::new(config).err().expect("the engine fails");
    assert!(error.message.ends_with("worker.lua:3: in worker file"), "{}", error.message);
    let missing = EngineConfig { init: Some(LuaSource::file(dir.join("missing.lua"))), ..with_init(1, None, None) };
    assert!(Engine::new(missing).is_err());
}

#[test]
fn timers_started_before_an_init_worker_failure_run_premature() {
    let lines: Lines = Default::default();
    let sink = lines.clone();
    let init_worker = "ngx.timer.at(100, function(premature) ngx.log(ngx.WARN, 'premature ', premature) end)
        if ngx.shared.d:incr('n', 1, 0) == 2 then error('the second worker fails') end";
    let config = EngineConfig {
        log: Some(std::sync::Arc::new(move |r: &luaengine::LogRecord<'_>| {
            sink.lock().unwrap().push((r.level, r.phase, r.location.to_string(), r.message.to_string(), r.request_id))
        })),
        log_level: LogLevel::Warn,
        ..with_init(2, None, Some(init_worker))
    };
    let error = Engine::new(config).err().expect("the engine fails");
    assert_eq!(error.message, "init_worker:2: the second worker fails");
    let warnings: Vec<String> =
        lines.lock().unwrap().iter().filter(|l| l.0 == LogLevel::Warn).map(|l| l.3.clone()).collect();
    assert_eq!(warnings, ["premature true", "premature true"]);
}
