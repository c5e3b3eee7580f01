//! ngx.thread.spawn / wait / kill: light threads scheduled on the request's waits, after
//! lua-nginx-module's t/094-uthread-*.t, t/097-uthread-wait.t and t/127-uthread-kill.t.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use luaengine::{EngineConfig, ErrorCode, LogLevel, LogRecord, Phase, Status};

#[test]
fn spawn_runs_the_thread_until_it_waits() {
    let cases = [
        (
            "local function f() ngx.say('in thread') end ngx.say('before') ngx.thread.spawn(f) ngx.say('after')",
            "before\nin thread\nafter\n",
        ),
        (
            "local function f() ngx.say('f 1') ngx.sleep(0.01) ngx.say('f 2') end
             ngx.say('before') ngx.thread.spawn(f) ngx.say('after')",
            "before\nf 1\nafter\nf 2\n",
        ),
        ("local function f(a, b) ngx.say(a + b) end ngx.thread.spawn(f, 1, 2)", "3\n"),
        ("local t = ngx.thread.spawn(function() end) ngx.say(type(t), ' ', coroutine.status(t))", "thread dead\n"),
        ("local t = ngx.thread.spawn(function() ngx.sleep(0.01) end) ngx.say(coroutine.status(t))", "suspended\n"),
    ];
    for (lua, body) in cases {
        assert_eq!(content_waking(lua), body, "{lua}");
    }
}

#[test]
fn threads_interleave_on_their_sleeps() {
    let body = content_waking(
        "local function worker(name, delay)
             for i = 1, 3 do ngx.sleep(delay) ngx.say(name, i) end
         end
         ngx.thread.spawn(worker, 'a', 0.02)
         ngx.thread.spawn(worker, 'b', 0.05)
         ngx.say('main')",
    );
    assert_eq!(body, "main\na1\na2\nb1\na3\nb2\nb3\n");
}

#[test]
fn the_phase_waits_for_every_thread() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let started = Instant::now();
    let lua = "for i = 1, 10 do ngx.thread.spawn(function() ngx.sleep(0.05) ngx.print(i % 10) end) end";
    assert_eq!(run_waking(&engine, &mut request, Phase::Content, lua).unwrap(), Status::Done);
    assert_eq!(request.response().body, b"1234567890");
    assert!(started.elapsed() < Duration::from_millis(400), "the sleeps overlap: {:?}", started.elapsed());
}

#[test]
fn wait_returns_what_the_thread_returned() {
    let cases = [
        ("local t = ngx.thread.spawn(function() return 'a', 2 end) ngx.say(ngx.thread.wait(t))", "truea2\n"),
        (
            "local t = ngx.thread.spawn(function() ngx.sleep(0.01) return 'late' end) ngx.say(ngx.thread.wait(t))",
            "truelate\n",
        ),
        (
            "local t = ngx.thread.spawn(function() error('boom') end) local ok, err = ngx.thread.wait(t) ngx.say(ok, ' ', err)",
            "false content:1: boom\n",
        ),
        (
            "local t = ngx.thread.spawn(function() end) ngx.thread.wait(t) ngx.say(ngx.thread.wait(t))",
            "nilalready waited or killed\n",
        ),
        (
            // Waiting on several threads returns the first to end.
            "local slow = ngx.thread.spawn(function() ngx.sleep(0.1) return 'slow' end)
             local fast = ngx.thread.spawn(function() ngx.sleep(0.01) return 'fast' end)
             ngx.say(ngx.thread.wait(slow, fast)) ngx.say(ngx.thread.wait(slow))",
            "truefast\ntrueslow\n",
        ),
        (
            // A thread may spawn and wait on its own threads.
            "local outer = ngx.thread.spawn(function()
                 local inner = ngx.thread.spawn(function() ngx.sleep(0.01) return 'inner' end)
                 local _, v = ngx.thread.wait(inner) return v .. '+outer'
             end)
             ngx.say(ngx.thread.wait(outer))",
            "trueinner+outer\n",
        ),
        (
            // A plain coroutine.yield() in a light thread lets others run; it continues later.
            "local t = ngx.thread.spawn(function() ngx.say('t 1') coroutine.yield() ngx.say('t 2') return 'done' end)
             ngx.say('main') ngx.say(ngx.thread.wait(t))",
            "t 1\nmain\nt 2\ntruedone\n",
        ),
    ];
    for (lua, body) in cases {
        assert_eq!(content_waking(lua), body, "{lua}");
    }
}

#[test]
fn kill_stops_a_waiting_thread() {
    let cases = [
        (
            "local t = ngx.thread.spawn(function() ngx.say('hello from f()') ngx.sleep(1) ngx.say('never') end)
             ngx.say(ngx.thread.kill(t)) ngx.say('killed')",
            "hello from f()\n1\nkilled\n",
        ),
        ("local t = ngx.thread.spawn(function() end) ngx.say(ngx.thread.kill(t))", "nilalready terminated\n"),
        (
            "local t = ngx.thread.spawn(function() ngx.sleep(1) end) ngx.thread.kill(t) ngx.say(ngx.thread.kill(t))",
            "nilalready waited or killed\n",
        ),
    ];
    let started = Instant::now();
    for (lua, body) in cases {
        assert_eq!(content_waking(lua), body, "{lua}");
    }
    assert!(started.elapsed() < Duration::from_millis(900), "killed threads are not waited for");
}

#[test]
fn misuse_raises_lua_nginx_module_errors() {
    let cases = [
        ("ngx.thread.spawn('f')", "bad argument #1 to 'spawn' (function expected, got string)"),
        ("ngx.thread.wait(1)", "bad argument #1 to 'wait' (lua thread expected)"),
        ("ngx.thread.wait(coroutine.create(print))", "attempt to wait on a coroutine that is not a user thread"),
        ("ngx.thread.kill(coroutine.create(print))", "attempt to kill a coroutine that is not a user thread"),
        (
            "local t = ngx.thread.spawn(function() ngx.sleep(0.01) end)
             local co = coroutine.wrap(function() ngx.thread.wait(t) end) co()",
            "only the parent coroutine can wait on the thread",
        ),
    ];
    for (lua, message) in cases {
        let body = content_waking(&format!("local ok, err = pcall(function() {lua} end) ngx.say(err)"));
        assert!(body.ends_with(&format!("{message}\n")), "{lua}: {body}");
    }
    let outcome = serve(&engine(), "/", &[], &[(Phase::Log, "ngx.thread.spawn(print)")]);
    assert_eq!(outcome.error().message, "log:1: API disabled in the context of log");
}

#[test]
fn exit_in_a_thread_ends_the_request() {
    let engine = engine();
    let cases = [
        (
            "local function f() ngx.say('hello in thread') ngx.exit(0) end
             ngx.say('before') ngx.thread.spawn(f) ngx.say('after') ngx.sleep(1) ngx.say('end')",
            "before\nhello in thread\n",
        ),
        (
            "local function f() ngx.say('hello in thread') ngx.sleep(0.01) ngx.exit(0) end
             ngx.say('before') ngx.thread.spawn(f) ngx.say('after') ngx.sleep(1) ngx.say('end')",
            "before\nhello in thread\nafter\n",
        ),
    ];
    let started = Instant::now();
    for (lua, body) in cases {
        let mut request = request(&engine, "/t", &[]);
        assert_eq!(run_waking(&engine, &mut request, Phase::Rewrite, lua).unwrap(), Status::Done, "{lua}");
        assert_eq!(String::from_utf8_lossy(&request.response().body), body, "{lua}");
    }
    assert!(started.elapsed() < Duration::from_millis(900), "the entry thread's sleep was abandoned");
}

#[test]
fn a_failing_thread_is_logged_and_the_others_go_on() {
    let (engine, lines) = logging_engine(LogLevel::Err);
    let mut request = request(&engine, "/t", &[]);
    let lua = "ngx.thread.spawn(function() ngx.sleep(0.01) error('thread boom') end)
               ngx.thread.spawn(function() ngx.sleep(0.02) ngx.say('other') end)
               ngx.say('main')";
    assert_eq!(run_waking(&engine, &mut request, Phase::Content, lua).unwrap(), Status::Done);
    assert_eq!(request.response().body, b"main\nother\n");
    let lines = lines.lock().unwrap();
    assert!(lines.iter().any(|line| line.3.contains("lua user thread aborted: content:1: thread boom")), "{lines:?}");
}

#[test]
fn threads_mix_with_async_host_calls() {
    let engine = engine_with(luaengine::EngineConfig {
        workers: 1,
        async_functions: vec!["fetch".into()],
        ..Default::default()
    });
    let mut request = request(&engine, "/t", &[]);
    let lua = "local host = require('host')
               local a = ngx.thread.spawn(function() return host.fetch('a') end)
               local b = ngx.thread.spawn(function() return host.fetch('b') end)
               local _, ra = ngx.thread.wait(a) local _, rb = ngx.thread.wait(b)
               ngx.say(ra, rb)";
    let script = engine.compile("content", lua).unwrap();
    assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    let ops: Vec<_> = request.pending().to_vec();
    assert_eq!(ops.len(), 2, "both threads wait at once");
    // Completed in the other order than they were started.
    for op in ops.iter().rev() {
        let luaengine::HostValue::String(arg) = &op.args[0] else { panic!("a string argument") };
        request.complete(op.id, Ok(vec![luaengine::HostValue::String([b"got-", arg.as_slice()].concat())])).unwrap();
    }
    assert_eq!(request.resume().unwrap(), Status::Done);
    assert_eq!(request.response().body, b"got-agot-b\n");
}

/// A request's light threads go with the request, whatever became of them: a worker running
/// thousands of such requests keeps nothing of them. (On LuaJIT, whose weak tables have no
/// ephemerons, a table of thread sets keyed by the request's globals kept every such request's
/// globals through its threads, until each later run failed for want of memory.)
#[test]
fn requests_leave_no_light_threads_behind() {
    let cases = [
        ("a thread that failed", "ngx.thread.spawn(function() error('thread fails') end)"),
        ("a thread asleep when the request was dropped", "ngx.thread.spawn(function() ngx.sleep(10) end)"),
        ("a thread asleep when the entry thread failed", "ngx.thread.spawn(function() ngx.sleep(10) end) error('x')"),
    ];
    for (what, lua) in cases {
        let engine = engine_with(EngineConfig {
            workers: 1,
            memory_limit: 8 << 20,
            instruction_budget: 5_000_000,
            log: Some(Arc::new(|_: &LogRecord<'_>| {})),
            ..Default::default()
        });
        // Globals of about 80 KiB per request: kept, 200 requests would need 16 MiB.
        let script = engine.compile("content", format!("big = {{}} for i = 1, 5000 do big[i] = i end {lua}")).unwrap();
        for n in 0..200 {
            let mut request = request(&engine, "/t", &[]);
            if let Err(error) = request.run(Phase::Content, &script) {
                assert_ne!(error.code, ErrorCode::Memory, "{what}: request {n}: {error}");
            }
        }
        let memory = engine.stats().workers[0].lua_memory;
        assert!(memory < 4 << 20, "{what}: {memory} bytes of Lua memory after 200 requests");
    }
}
