//! Limits per phase run (DESIGN.md §7): the instruction budget, the wall-time budget and the
//! per-worker memory cap. Each runaway script ends in an error of its own code, and the same
//! worker then serves a normal request.

mod common;

use std::time::{Duration, Instant};

use common::*;
use luaengine::{Engine, EngineConfig, Error, ErrorCode, Phase, Request, Status};

fn limited(instruction_budget: u64, time_budget: Duration) -> Engine {
    engine_with(EngineConfig { workers: 1, instruction_budget, time_budget, ..Default::default() })
}

/// Runs a content snippet that must fail, then checks the worker still answers.
fn stopped(engine: &Engine, lua: &str) -> Error {
    let outcome = serve(engine, "/", &[], &[(Phase::Content, lua)]);
    let error = outcome.error.unwrap_or_else(|| panic!("{lua}: no error, body {:?}", outcome.response.body));
    assert_eq!(serve(engine, "/", &[], &[(Phase::Content, "ngx.say('ok')")]).body(), "ok\n", "after {lua}");
    error
}

/// Runaway scripts and the budget that stops each: (Lua, instruction budget, time budget).
const RUNAWAYS: &[(&str, u64, Duration)] = &[
    ("while true do end", 100_000, Duration::ZERO),
    ("while true do end", 0, Duration::from_millis(50)),
    // A loop LuaJIT compiles, but budgeted workers run interpreted (limits.rs).
    ("local x = 0 while true do x = x + 1 end", 100_000, Duration::ZERO),
    ("local x = 0 while true do x = x + 1 end", 0, Duration::from_millis(50)),
    ("local function f(n) return f(n + 1) end return f(1)", 100_000, Duration::ZERO),
    ("local t = {} for i = 1, math.huge do t[i % 100 + 1] = {i} end", 0, Duration::from_millis(50)),
    // pcall must not swallow the stop, nor a coroutine.
    ("while true do pcall(function() while true do end end) end", 100_000, Duration::ZERO),
    ("while true do pcall(function() while true do end end) end", 0, Duration::from_millis(50)),
    ("while true do xpcall(function() while true do end end, print) end", 100_000, Duration::ZERO),
    ("while true do coroutine.resume(coroutine.create(function() while true do end end)) end", 100_000, Duration::ZERO),
    ("while true do coroutine.wrap(function() while true do end end)() end", 0, Duration::from_millis(50)),
    // The stop reaches the resumer too, not only the coroutine that ran away (Lua 5.4 hooks
    // each running coroutine).
    (
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        0,
        Duration::from_millis(50),
    ),
    (
        "local co = coroutine.wrap(function() while true do coroutine.yield() end end) while true do co() end",
        0,
        Duration::from_millis(50),
    ),
];

#[test]
fn budgets_stop_runaway_scripts() {
    for &(lua, instructions, time) in RUNAWAYS {
        let engine = limited(instructions, time);
        let error = stopped(&engine, lua);
        assert_eq!(error.code, ErrorCode::Budget, "{lua}: {error:?}");
        let which = match instructions {
            0 => format!("time budget of {time:?} exceeded"),
            n => format!("instruction budget of {n} exceeded"),
        };
        assert!(error.message.starts_with("content:1: "), "{lua}: {}", error.message);
        assert!(error.message.ends_with(&which), "{lua}: {}", error.message);
        assert_eq!((error.chunk.as_deref(), error.line), (Some("content"), Some(1)), "{lua}");
    }
}

#[test]
fn the_budget_code_and_message_name_the_budget() {
    let error = stopped(&limited(0, Duration::from_millis(50)), "while true do end");
    assert_eq!(error.summary(), "budget exceeded: content:1: time budget of 50ms exceeded");
}

#[test]
fn gcd_with_a_string_loops_forever_on_luajit_and_fails_at_once_on_lua54() {
    // 24 % '0' is NaN on LuaJIT, so the tail-recursive gcd never reaches b == 0; Lua 5.4
    // converts '0' to the integer 0 and raises "attempt to perform 'n%%0'".
    let lua = "local function gcd(a, b) if b == 0 then return a end return gcd(b, a % b) end return gcd(24, '0')";
    for (instructions, time) in [(1_000_000, Duration::ZERO), (0, Duration::from_millis(50))] {
        let error = stopped(&limited(instructions, time), lua);
        let expected = if cfg!(feature = "luajit") { ErrorCode::Budget } else { ErrorCode::Runtime };
        assert_eq!(error.code, expected, "{error:?}");
    }
}

#[test]
fn the_time_budget_stops_long_string_work_promptly() {
    // Each gsub over 100 KB is one VM instruction: an instruction budget alone takes long here.
    let lua = "local s = string.rep('a', 1e5) while true do s = s:gsub('a', 'b') end";
    let engine = limited(0, Duration::from_millis(50));
    let started = Instant::now();
    let error = stopped(&engine, lua);
    assert_eq!(error.code, ErrorCode::Budget, "{error:?}");
    assert!(error.message.ends_with("time budget of 50ms exceeded"), "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn the_budgets_are_per_phase_run() {
    let engine = limited(100_000, Duration::from_millis(500));
    let script = engine.compile("content", "for i = 1, 20000 do end").unwrap();
    let mut phases = request(&engine, "/", &[]);
    for phase in [Phase::Rewrite, Phase::Access, Phase::Content, Phase::Log] {
        phases.run(phase, &script).unwrap();
    }
    for _ in 0..10 {
        assert_eq!(request(&engine, "/", &[]).run(Phase::Content, &script).unwrap(), Status::Done);
    }
}

/// A request whose content phase ran `lua` up to its first yield, then waited `wait`.
fn waited(engine: &Engine, lua: &str, wait: Duration) -> Request {
    let script = engine.compile("content", lua).unwrap();
    let mut waiting = request(engine, "/", &[]);
    assert_eq!(waiting.run(Phase::Content, &script).unwrap(), Status::Yield);
    std::thread::sleep(wait);
    waiting
}

#[test]
fn time_spent_suspended_does_not_count() {
    let engine = limited(0, Duration::from_millis(50));
    let mut waiting = waited(&engine, "coroutine.yield() ngx.say('done')", Duration::from_millis(150));
    assert_eq!(waiting.resume().unwrap(), Status::Done);
    assert_eq!(waiting.response().body, b"done\n");
}

#[test]
fn a_resumed_phase_keeps_its_time_budget_then_stops() {
    let engine = limited(0, Duration::from_millis(100));
    let mut waiting = waited(&engine, "coroutine.yield()\nwhile true do end", Duration::from_millis(200));
    // Had the wait counted, the resumed loop would fail at its first check.
    let resumed = Instant::now();
    let error = waiting.resume().unwrap_err();
    assert_eq!(error.code, ErrorCode::Budget, "{error:?}");
    assert_eq!(error.line, Some(2));
    assert!(resumed.elapsed() >= Duration::from_millis(50), "stopped after {:?}", resumed.elapsed());
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, "ngx.say('ok')")]).body(), "ok\n");
}

#[test]
fn the_memory_cap_turns_allocation_bombs_into_errors() {
    let engine = engine_with(EngineConfig { workers: 1, memory_limit: 32 << 20, ..Default::default() });
    // Distinct strings: LuaJIT interns strings, so identical 1 MB strings would take no memory.
    let bombs = [
        "local t = {} while true do t[#t + 1] = string.rep('x', 1e6) .. #t end",
        "local t = {} while true do t[#t + 1] = {} end",
        "local s = 'x' while true do s = s .. s end",
        "string.rep('x', 64 * 1024 * 1024)",
        // pcall and coroutines must not swallow the stop.
        "while true do pcall(function() local t = {} for i = 1, 1e9 do t[i] = {i} end end) end",
        "coroutine.wrap(function() local t = {} while true do t[#t + 1] = {} end end)()",
    ];
    for lua in bombs {
        let error = stopped(&engine, lua);
        assert_eq!(error.code, ErrorCode::Memory, "{lua}: {error:?}");
    }
    // Growth stops at the next instruction with the cap in the message; what can never fit is
    // refused at once.
    let error = stopped(&engine, bombs[1]);
    assert!(error.message.starts_with("content:1: memory limit of 33554432 bytes exceeded"), "{}", error.message);
}

#[test]
fn what_a_request_failed_for_memory_held_is_collected_before_the_next_run() {
    // A cap just above what the worker needs: what the bomb's request holds (its ngx.ctx, its
    // globals) is freed with the request, after the failure, and must not fail the next run.
    let baseline = engine_with(EngineConfig { workers: 1, ..Default::default() }).stats().workers[0].lua_memory;
    let engine = engine_with(EngineConfig { workers: 1, memory_limit: baseline + (4 << 20), ..Default::default() });
    for lua in [
        "local t = {} ngx.ctx.t = t for i = 1, 1e8 do t[i] = {i} end",
        "hoard = {} for i = 1, 1e8 do hoard[i] = {i} end",
    ] {
        assert_eq!(stopped(&engine, lua).code, ErrorCode::Memory, "{lua}");
    }
}

#[test]
fn only_an_instruction_budget_makes_luajit_run_interpreted() {
    // Compiled loops would leave their trace at every iteration while the budget's hook is set;
    // the time budget sets no hook until it stops a script, so LuaJIT keeps compiling.
    if cfg!(feature = "luajit") {
        let status = "ngx.say((jit.status()))";
        for (instruction_budget, time_budget, jit) in
            [(0, Duration::ZERO, "true"), (0, Duration::from_secs(1), "true"), (1_000_000, Duration::ZERO, "false")]
        {
            let config =
                EngineConfig { workers: 1, trusted: true, instruction_budget, time_budget, ..Default::default() };
            let engine = engine_with(config);
            assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, status)]).body(), format!("{jit}\n"));
        }
    }
}

#[test]
fn limits_are_on_by_default() {
    let defaults = EngineConfig::default();
    assert_eq!(defaults.time_budget, luaengine::DEFAULT_TIME_BUDGET);
    assert_eq!(defaults.memory_limit, luaengine::DEFAULT_MEMORY_LIMIT);
    assert!(defaults.time_budget >= Duration::from_secs(1), "a real site never hits the default");
    // A bomb in a default engine fails at the default cap instead of growing the host.
    let engine = engine_with(EngineConfig { workers: 1, ..Default::default() });
    let error = stopped(&engine, "local s = 'x' while true do s = s .. s end");
    assert_eq!(error.code, ErrorCode::Memory, "{error:?}");
    let memory = engine.stats().workers[0].lua_memory;
    assert!(memory < luaengine::DEFAULT_MEMORY_LIMIT / 2, "{memory}");
}

#[test]
fn zero_turns_the_limits_off() {
    let config = EngineConfig { workers: 1, time_budget: Duration::ZERO, memory_limit: 0, ..Default::default() };
    let engine = engine_with(config);
    // 150 ms of work and 64 MB: both would pass the defaults too, but run with no watchdog hold.
    let lua = "local t = {} for i = 1, 64 do t[i] = string.rep('x', 1e6) .. i end ngx.say(#t)";
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, lua)]).body(), "64\n");
}

#[test]
fn shutdown_stops_running_scripts_and_later_runs() {
    // A runaway with the time budget off: only the shutdown can stop it.
    let config = EngineConfig { workers: 2, time_budget: Duration::ZERO, ..Default::default() };
    let engine = engine_with(config);
    let runaway = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            serve(&engine, "/", &[], &[(Phase::Content, "local x = 0 while true do x = x + 1 end")])
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    engine.shutdown();
    let outcome = runaway.join().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(1), "took {:?}", stopping.elapsed());
    let error = outcome.error.expect("the runaway is stopped");
    assert_eq!(error.code, ErrorCode::Budget, "{error:?}");
    assert!(error.message.ends_with("the engine is shutting down"), "{}", error.message);
    let later = serve(&engine, "/", &[], &[(Phase::Content, "ngx.say('late')")]);
    assert_eq!(later.error.map(|e| e.code), Some(ErrorCode::Budget));
}

/// An engine whose one worker keeps a user module that hoards a megabyte per request, under a
/// 32 MiB cap; init_worker counts its runs in `ngx.shared.stats` and starts an `every` timer.
fn hoarding_engine() -> Engine {
    let dir = std::env::temp_dir().join(format!("le-hoard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let module =
        "local kept = {} return { add = function() kept[#kept + 1] = string.rep('x', 1e6) .. #kept return #kept end }";
    std::fs::write(dir.join("hoard.lua"), module).unwrap();
    let init_worker = "ngx.shared.stats:incr('init_worker', 1, 0) ngx.timer.every(60, function() end)";
    engine_with(EngineConfig {
        workers: 1,
        memory_limit: 32 << 20,
        package_path: vec![format!("{}/?.lua", dir.display())],
        shared_dicts: vec![("stats".into(), 1 << 20)],
        init_worker: Some(luaengine::LuaSource::inline("init_worker", init_worker)),
        ..Default::default()
    })
}

#[test]
fn a_worker_stuck_over_its_cap_gets_a_fresh_state() {
    let engine = hoarding_engine();
    let hoard = "ngx.say(require('hoard').add())";
    // (failures in a row, longest such streak, requests served after a failure)
    let (mut streak, mut longest, mut served_after_failing) = (0, 0, 0);
    for _ in 0..100 {
        match serve(&engine, "/", &[], &[(Phase::Content, hoard)]).error {
            Some(error) => {
                assert_eq!(error.code, ErrorCode::Memory, "{error:?}");
                streak += 1;
                longest = longest.max(streak);
            }
            None => {
                served_after_failing += usize::from(longest > 0);
                streak = 0;
            }
        }
    }
    // Without the rebuild, every request after the first failure fails; with it, three
    // failures in a row make a fresh state, which serves again.
    assert_eq!(longest, 3);
    assert!(served_after_failing > 20, "{served_after_failing}");
    let stats = engine.stats();
    assert!(stats.workers[0].rebuilds >= 2, "{:?}", stats.workers[0]);
    // init_worker ran again on each new state; the old state's timer went with it.
    let inits = serve(&engine, "/", &[], &[(Phase::Content, "ngx.say(ngx.shared.stats:get('init_worker'))")]);
    assert_eq!(inits.body(), format!("{}\n", stats.workers[0].rebuilds + 1));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(engine.stats().workers[0].pending_timers, 1 + stats.workers[0].rebuilds as usize);
}

#[test]
fn one_bomb_does_not_rebuild_the_worker() {
    // The failed request's globals hold the memory until it is freed: its own log phase and the
    // next request run on the same state.
    let engine = engine_with(EngineConfig { workers: 1, memory_limit: 32 << 20, ..Default::default() });
    let mut bomb = request(&engine, "/", &[]);
    let (results, _) = run_all(
        &engine,
        &mut bomb,
        &[(Phase::Content, "t = {} for i = 1, 1e9 do t[i] = string.rep('#', 1e4) .. i end"), (Phase::Log, "x = 1")],
    );
    assert_eq!(results[0].as_ref().unwrap_err().code, ErrorCode::Memory);
    assert!(results[1].is_ok(), "{:?}", results[1]);
    drop(bomb);
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, "ngx.say('ok')")]).body(), "ok\n");
    assert_eq!(engine.stats().workers[0].rebuilds, 0);
}

#[test]
fn a_request_waiting_across_a_rebuild_fails_cleanly() {
    let engine = hoarding_engine();
    let mut waiting = waited(&engine, "ngx.ctx.x = 1 coroutine.yield() ngx.say(ngx.ctx.x)", Duration::ZERO);
    let hoard = "ngx.say(require('hoard').add())";
    while engine.stats().workers[0].rebuilds == 0 {
        serve(&engine, "/", &[], &[(Phase::Content, hoard)]);
    }
    let error = waiting.resume().unwrap_err();
    assert_eq!(error.code, ErrorCode::Memory, "{error:?}");
    assert!(error.message.contains("rebuilt"), "{}", error.message);
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, "ngx.say('ok')")]).body(), "ok\n");
}

#[test]
fn the_memory_cap_bounds_a_buffered_response_body() {
    // The body waits in the host until the phase ends: outside the Lua heap, under the same cap.
    let engine = engine_with(EngineConfig { workers: 1, memory_limit: 16 << 20, ..Default::default() });
    let bomb = "local s = string.rep('x', 1e5) for i = 1, 5000 do ngx.print(s) end";
    let error = stopped(&engine, bomb);
    assert_eq!(error.code, ErrorCode::Runtime, "{error:?}");
    assert!(error.message.contains("ngx.print: the response body would exceed 16777216 bytes"), "{}", error.message);
    // Under the cap, output is whole.
    let lua = "local s = string.rep('x', 1e5) for i = 1, 100 do ngx.print(s) end";
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, lua)]).response.body.len(), 10_000_000);
}
