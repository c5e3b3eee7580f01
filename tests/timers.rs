//! ngx.timer.at/every/running_count/pending_count: callbacks run in phase `timer` on the worker
//! that created them, with their arguments, upvalues and an ngx.ctx of their own; they may
//! sleep; errors are logged; limits answer with OpenResty's strings; dropping the engine runs
//! pending timers once with premature = true.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use luaengine::{Engine, EngineConfig, HostFunction, HostValue, LogLevel, LogRecord, LuaSource, Phase, TimerOp};

/// An engine with one worker (unless `config` says otherwise) whose log lines are kept.
fn logged(config: EngineConfig) -> (Engine, Lines) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let config = EngineConfig {
        workers: config.workers.max(1),
        log: Some(Arc::new(move |r: &LogRecord<'_>| {
            sink.lock().unwrap().push((r.level, r.phase, r.location.to_string(), r.message.to_string(), r.request_id))
        })),
        ..config
    };
    (Engine::new(config).expect("engine"), lines)
}

/// The messages of log lines matching `keep`, once there are `n` of them (fails after 5 s).
fn wait_lines(
    lines: &Lines,
    n: usize,
    keep: impl Fn(&(LogLevel, Option<Phase>, String, String, u64)) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<String> =
            lines.lock().unwrap().iter().filter(|line| keep(line)).map(|line| line.3.clone()).collect();
        if found.len() >= n || Instant::now() > deadline {
            assert_eq!(found.len(), n, "log lines: {:?}", lines.lock().unwrap());
            return found;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What timer callbacks logged with ngx.NOTICE, once there are `n` lines.
fn notices(lines: &Lines, n: usize) -> Vec<String> {
    wait_lines(lines, n, |line| line.0 == LogLevel::Notice)
}

/// Runs `lua` in content on a fresh engine; returns the body and the first `n` notices.
fn run_timers(lua: &str, n: usize) -> (String, Vec<String>) {
    let (engine, lines) = logged(EngineConfig::default());
    let outcome = serve(&engine, "/t", &[], &[(Phase::Content, lua)]);
    assert!(outcome.error.is_none(), "{lua}: {:?}", outcome.error);
    (outcome.body(), notices(&lines, n))
}

#[test]
fn callbacks_get_premature_their_args_and_upvalues_in_phase_timer() {
    let cases: &[(&str, &[&str])] = &[
        (
            "local up = 'up' ngx.timer.at(0, function(premature, a, b) ngx.log(ngx.NOTICE, premature, ' ', a, ' ', b, ' ', up) end, 'a', 2)",
            &["false a 2 up"],
        ),
        ("ngx.timer.at(0, function(p, a, b, c) ngx.log(ngx.NOTICE, a, b, c) end, nil, 2, nil)", &["nil2nil"]),
        ("ngx.timer.at(0, function() ngx.log(ngx.NOTICE, ngx.get_phase()) end)", &["timer"]),
        ("local t = {n = 1} ngx.timer.at(0.001, function(_, t) t.n = t.n + 1 ngx.log(ngx.NOTICE, t.n) end, t)", &["2"]),
        // Each callback has an ngx.ctx of its own, apart from the request's.
        (
            "ngx.ctx.x = 'request' for i = 1, 2 do ngx.timer.at(0, function() ngx.log(ngx.NOTICE, tostring(ngx.ctx.x)) ngx.ctx.x = i end) end",
            &["nil", "nil"],
        ),
        // Globals `load`ed in a callback are its own, not the request's.
        ("g = 'request' ngx.timer.at(0, function() ngx.log(ngx.NOTICE, tostring(load('return g')())) end)", &["nil"]),
        // Callbacks create timers too.
        (
            "ngx.timer.at(0, function() ngx.timer.at(0, function() ngx.log(ngx.NOTICE, 'nested ', ngx.get_phase()) end) end)",
            &["nested timer"],
        ),
        // A callback may sleep: the worker serves others meanwhile.
        (
            "ngx.timer.at(0, function() local t = ngx.now() ngx.sleep(0.05) ngx.update_time() ngx.log(ngx.NOTICE, ngx.now() - t >= 0.04) end)",
            &["true"],
        ),
        (
            "ngx.timer.at(0, function() local f = coroutine.wrap(function() ngx.sleep(0.01) return 'wrapped' end) ngx.log(ngx.NOTICE, f()) end)",
            &["wrapped"],
        ),
        ("ngx.timer.at(0, function() coroutine.yield() ngx.log(ngx.NOTICE, 'after a plain yield') end)", &["after a plain yield"]),
        // ngx.exit ends a callback.
        ("ngx.timer.at(0, function() ngx.log(ngx.NOTICE, 'a') ngx.exit(0) ngx.log(ngx.NOTICE, 'b') end)", &["a"]),
    ];
    for (lua, expected) in cases {
        assert_eq!(run_timers(lua, expected.len()).1, *expected, "{lua}");
    }
}

#[test]
fn at_and_every_return_one_or_nil_and_an_error() {
    let cases = [
        ("ngx.say(ngx.timer.at(0, function() end))", "1\n"),
        ("ngx.say(ngx.timer.every(1, function() end))", "1\n"),
        ("ngx.say(ngx.timer.at('0.5', function() end))", "1\n"),
        ("ngx.say(ngx.timer.at(0.0001, function() end))", "1\n"),
    ];
    for (lua, body) in cases {
        assert_eq!(run_timers(lua, 0).0, body, "{lua}");
    }
}

#[test]
fn bad_arguments_raise_as_in_lua_nginx_module() {
    assert_errors(&[
        ("ngx.timer.at(0)", "expecting at least 2 arguments but got 1"),
        ("ngx.timer.every()", "expecting at least 2 arguments but got 0"),
        ("ngx.timer.at({}, function() end)", "bad argument #1 to 'at' (number expected, got table)"),
        ("ngx.timer.at(-1, function() end)", "bad argument #1 to 'at' (invalid delay)"),
        ("ngx.timer.at(0/0, function() end)", "bad argument #1 to 'at' (invalid delay)"),
        ("ngx.timer.at(0, 'f')", "bad argument #2 to 'at' (Lua function expected)"),
        ("ngx.timer.at(0, ipairs)", "bad argument #2 to 'at' (Lua function expected)"),
        ("ngx.timer.every(0, function() end)", "delay cannot be zero"),
        ("ngx.timer.every(0.0009, function() end)", "delay cannot be zero"),
        ("ngx.timer.every(1, nil)", "bad argument #2 to 'every' (Lua function expected)"),
    ]);
}

#[test]
fn every_repeats_until_the_engine_stops() {
    let lua = "local n = 0 ngx.timer.every(0.005, function(premature) n = n + 1 if n <= 3 then ngx.log(ngx.NOTICE, n, ' ', premature) end end)";
    assert_eq!(run_timers(lua, 3).1, ["1 false", "2 false", "3 false"]);
}

#[test]
fn counts_follow_pending_and_running_timers() {
    let cases = [
        ("ngx.say(ngx.timer.pending_count(), ' ', ngx.timer.running_count())", "0 0\n", vec![]),
        (
            "local f = function() end ngx.timer.at(10, f) ngx.timer.every(10, f) ngx.say(ngx.timer.pending_count(), ' ', ngx.timer.running_count())",
            "2 0\n",
            vec![],
        ),
        // Inside a callback it runs, and is no longer pending; an every timer's next run is.
        (
            "ngx.timer.at(0, function() ngx.log(ngx.NOTICE, ngx.timer.running_count(), ' ', ngx.timer.pending_count()) end)",
            "",
            vec!["1 0"],
        ),
        (
            "local done ngx.timer.every(0.01, function() if not done then done = true ngx.log(ngx.NOTICE, ngx.timer.running_count(), ' ', ngx.timer.pending_count()) end end)",
            "",
            vec!["1 1"],
        ),
    ];
    for (lua, body, logged) in cases {
        assert_eq!(
            run_timers(lua, logged.len()),
            (body.to_string(), logged.iter().map(|s| s.to_string()).collect()),
            "{lua}"
        );
    }
}

#[test]
fn stats_show_timers_per_worker() {
    let (engine, lines) = logged(EngineConfig { workers: 2, ..Default::default() });
    let mut first = request(&engine, "/", &[]);
    assert_eq!(first.worker(), 0);
    let lua = "ngx.timer.at(10, function() end) ngx.timer.at(0, function() ngx.sleep(10) end)";
    assert!(serve_request(&engine, &mut first, &[(Phase::Content, lua)]).error.is_none());
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.stats().workers[0].running_timers == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let stats = engine.stats();
    assert_eq!((stats.workers[0].pending_timers, stats.workers[0].running_timers), (1, 1));
    assert_eq!((stats.workers[1].pending_timers, stats.workers[1].running_timers), (0, 0));
    drop((first, engine));
    assert!(lines.lock().unwrap().iter().all(|line| line.0 > LogLevel::Err), "{lines:?}");
}

#[test]
fn the_pending_limit_refuses_new_timers() {
    let (engine, _) = logged(EngineConfig { max_pending_timers: 2, ..Default::default() });
    let lua = "local f = function() end
        ngx.say(ngx.timer.at(10, f), ' ', ngx.timer.every(10, f))
        ngx.say(ngx.timer.at(10, f))
        ngx.say(ngx.timer.every(10, f))
        ngx.say(ngx.timer.pending_count())";
    let outcome = serve(&engine, "/t", &[], &[(Phase::Content, lua)]);
    assert_eq!(outcome.body(), "1 1\nniltoo many pending timers\nniltoo many pending timers\n2\n");
}

#[test]
fn the_running_limit_skips_callbacks_and_logs() {
    let (engine, lines) = logged(EngineConfig { max_running_timers: 1, ..Default::default() });
    let lua = "ngx.timer.at(0, function() ngx.log(ngx.NOTICE, 'first') ngx.sleep(0.2) end)
        ngx.timer.at(0.02, function() ngx.log(ngx.NOTICE, 'second') end)";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    let alerts = wait_lines(&lines, 1, |line| line.0 == LogLevel::Alert);
    assert_eq!(
        alerts,
        ["lua failed to run timer with function defined at content:2: 1 lua_max_running_timers are not enough"]
    );
    assert_eq!(notices(&lines, 1), ["first"]);
    // Once the first callback is done, timers run again.
    std::thread::sleep(Duration::from_millis(250));
    let outcome =
        serve(&engine, "/t", &[], &[(Phase::Content, "ngx.timer.at(0, function() ngx.log(ngx.NOTICE, 'third') end)")]);
    assert!(outcome.error.is_none());
    assert_eq!(notices(&lines, 2), ["first", "third"]);
}

#[test]
fn callback_errors_are_logged_and_the_worker_keeps_serving() {
    let (engine, lines) = logged(EngineConfig::default());
    let lua = "ngx.timer.at(0, function() error('boom') end)
        ngx.timer.at(0, function() ngx.say('no output here') end)
        ngx.timer.at(0, function() ngx.sleep(0.01) error('late') end)";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    let mut errors = wait_lines(&lines, 3, |line| line.0 == LogLevel::Err && line.1 == Some(Phase::Timer));
    errors.iter_mut().for_each(|error| *error = error.lines().next().unwrap_or_default().to_string());
    errors.sort();
    assert_eq!(
        errors,
        [
            "lua entry thread aborted: runtime error: content:1: boom",
            "lua entry thread aborted: runtime error: content:2: API disabled in the context of timer",
            "lua entry thread aborted: runtime error: content:3: late",
        ]
    );
    assert_eq!(content_on(&engine, "ngx.say(ngx.timer.running_count(), ' ok')"), "0 ok\n");
}

fn content_on(engine: &Engine, lua: &str) -> String {
    let outcome = serve(engine, "/t", &[], &[(Phase::Content, lua)]);
    assert!(outcome.error.is_none(), "{lua}: {:?}", outcome.error);
    outcome.body()
}

#[test]
fn timers_are_refused_where_lua_nginx_module_refuses_them_and_request_apis_in_timers() {
    let (engine, lines) = logged(EngineConfig::default());
    let lua = "for _, f in ipairs({
            function() local _ = ngx.var.uri end,
            function() local _ = ngx.req.get_headers() end,
            function() ngx.status = 201 end,
            function() local _ = ngx.header.foo end,
        }) do
          ngx.timer.at(0, function() local ok, err = pcall(f) ngx.log(ngx.NOTICE, err) end)
        end";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    let mut logged = notices(&lines, 4);
    logged.sort();
    assert_eq!(
        logged,
        [
            "content:2: API disabled in the context of timer",
            "content:3: API disabled in the context of timer",
            "content:4: API disabled in the context of timer",
            "content:5: API disabled in the context of timer",
        ]
    );
}

#[test]
fn dropping_the_engine_runs_pending_timers_once_premature() {
    let (engine, lines) = logged(EngineConfig::default());
    let lua = "local f = function(premature, what)
            ngx.log(ngx.NOTICE, what, ' ', premature, ' ', ngx.get_phase(), ' ', ngx.timer.pending_count())
            local ok, err = ngx.timer.at(0, function() end)
            ngx.log(ngx.NOTICE, 'new timer: ', ok, ' ', err)
        end
        ngx.timer.at(100, f, 'at')
        ngx.timer.every(100, f, 'every')";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    assert!(notices(&lines, 0).is_empty());
    drop(engine);
    let logged =
        lines.lock().unwrap().iter().filter(|l| l.0 == LogLevel::Notice).map(|l| l.3.clone()).collect::<Vec<_>>();
    assert_eq!(
        logged,
        ["at true timer 1", "new timer: nil process exiting", "every true timer 0", "new timer: nil process exiting"]
    );
}

#[test]
fn dropping_the_engine_ends_the_sleeps_of_running_callbacks() {
    let (engine, lines) = logged(EngineConfig::default());
    let lua = "ngx.timer.at(0, function(premature)
            ngx.log(ngx.NOTICE, 'sleeping ', premature)
            ngx.sleep(100)
            ngx.log(ngx.NOTICE, 'woke')
            while true do ngx.sleep(100) end
        end)";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    assert_eq!(notices(&lines, 1), ["sleeping false"]);
    let started = Instant::now();
    drop(engine);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(notices(&lines, 2), ["sleeping false", "woke"]);
    let alerts = wait_lines(&lines, 1, |line| line.0 == LogLevel::Alert);
    assert_eq!(alerts, ["lua timer abandoned at engine shutdown: it still runs after 100 resumes"]);
}

#[test]
fn dropping_the_engine_waits_for_running_callbacks() {
    let (engine, lines) = logged(EngineConfig::default());
    let lua = "ngx.timer.at(0, function()
            ngx.log(ngx.NOTICE, 'started')
            local t = os.clock() while os.clock() - t < 0.05 do end
            ngx.log(ngx.NOTICE, 'finished')
        end)";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    assert_eq!(notices(&lines, 1), ["started"]);
    drop(engine);
    // Nothing reaches the host's callbacks once the drop returned.
    let logged = lines.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(lines.lock().unwrap().len(), logged);
    assert_eq!(notices(&lines, 2), ["started", "finished"]);
}

#[test]
fn the_engine_can_be_dropped_from_inside_a_callback() {
    let keep: Arc<Mutex<Option<Engine>>> = Arc::default();
    let slot = keep.clone();
    let release = HostFunction::new("release", move |_| {
        drop(slot.lock().unwrap().take());
        Ok(vec![])
    });
    let (engine, lines) = logged(EngineConfig { host_functions: vec![release], ..Default::default() });
    *keep.lock().unwrap() = Some(engine.clone());
    let lua = "ngx.timer.at(100, function(premature) ngx.log(ngx.NOTICE, 'pending one, premature ', premature) end)
        ngx.timer.at(0.01, function(premature)
            require('host').release()
            ngx.log(ngx.NOTICE, 'released ', premature)
        end)";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    drop(engine);
    // The callback that dropped the last handle finishes, then the engine stops on its thread.
    assert_eq!(notices(&lines, 2), ["released false", "pending one, premature true"]);
}

#[test]
fn async_host_functions_in_callbacks_go_to_the_timer_op_handler() {
    // Without a handler the call fails in the callback.
    let (engine, lines) = logged(EngineConfig { async_functions: vec!["fetch".into()], ..Default::default() });
    let lua =
        "ngx.timer.at(0, function() ngx.log(ngx.NOTICE, pcall(function() local r = require('host').fetch(1) end)) end)";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    assert_eq!(
        notices(&lines, 1),
        ["falsecontent:1: host function 'fetch' cannot run in a timer: the host set no timer operation handler"]
    );

    // With one, the host completes it from another thread, or drops it.
    let handler = Arc::new(|op: TimerOp| {
        std::thread::spawn(move || {
            let args = op.op().args.clone();
            match args.first() {
                Some(HostValue::Integer(1)) => op.complete(Ok(vec![HostValue::from("fetched"), HostValue::Integer(2)])),
                Some(HostValue::Integer(2)) => op.complete(Err("upstream down".into())),
                _ => drop(op),
            }
        });
    });
    let (engine, lines) =
        logged(EngineConfig { async_functions: vec!["fetch".into()], timer_ops: Some(handler), ..Default::default() });
    let lua = "for i = 1, 3 do
            ngx.timer.at(0, function()
                ngx.log(ngx.NOTICE, i, ' ', select(2, pcall(function() local r = require('host').fetch(i) return r end)))
            end)
        end";
    assert!(serve(&engine, "/t", &[], &[(Phase::Content, lua)]).error.is_none());
    let mut logged = notices(&lines, 3);
    logged.sort();
    assert_eq!(
        logged,
        [
            "1 fetched",
            "2 content:3: upstream down",
            "3 content:3: the host dropped the operation without completing it"
        ]
    );
}

#[test]
fn timers_run_on_the_worker_that_created_them() {
    let (engine, lines) = logged(EngineConfig {
        workers: 3,
        shared_dicts: vec![("d".into(), 1 << 20)],
        // Each worker's base environment gets its own number.
        init_worker: Some(LuaSource::inline("init_worker", "worker_number = ngx.shared.d:incr('n', 1, -1)")),
        ..Default::default()
    });
    for worker in 0..3 {
        let init = luaengine::RequestInit { path: b"/t", ..Default::default() };
        let mut request = engine.new_request(&init, [], Some(worker));
        let lua = format!(
            "ngx.timer.at(0, function(_, w) ngx.log(ngx.NOTICE, w, ' ', worker_number, ' ', ngx.timer.running_count()) end, {worker})"
        );
        assert!(serve_request(&engine, &mut request, &[(Phase::Content, &lua)]).error.is_none());
    }
    let mut logged = notices(&lines, 3);
    logged.sort();
    assert_eq!(logged, ["0 0 1", "1 1 1", "2 2 1"]);
}
