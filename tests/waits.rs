//! Waits (DESIGN.md §5): ngx.sleep wakes the host through the request's waker; async host
//! functions and body reads are completed by the host; a freed request is never woken.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use luaengine::{Engine, EngineConfig, HostValue, Phase, Request, RequestInit, Status, READ_BODY};

fn async_engine() -> Engine {
    engine_with(EngineConfig { workers: 1, async_functions: vec!["fetch".into()], ..Default::default() })
}

#[test]
fn sleep_yields_and_the_waker_resumes() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let started = Instant::now();
    let lua = "ngx.say('a') ngx.sleep(0.05) ngx.say('b') ngx.sleep(0) ngx.say('c')";
    assert_eq!(run_waking(&engine, &mut request, Phase::Content, lua).unwrap(), Status::Done);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(request.response().body, b"a\nb\nc\n");
}

#[test]
fn sleep_works_inside_user_coroutines_and_pcall() {
    let engine = engine();
    let cases = [
        ("local f = coroutine.wrap(function() ngx.sleep(0.01) ngx.say('in') coroutine.yield(1) ngx.say('again') end) f() f() ngx.say('out')", "in\nagain\nout\n"),
        ("local co = coroutine.create(function(a) ngx.sleep(0) return a * 2 end) ngx.say(coroutine.resume(co, 21))", "true42\n"),
        ("ngx.say(pcall(ngx.sleep, 0.001))", "true\n"),
        ("local ok, err = pcall(ngx.sleep, -1) ngx.say(err)", "invalid sleep duration \"-1\"\n"),
    ];
    for (lua, body) in cases {
        let mut request = request(&engine, "/t", &[]);
        assert_eq!(run_waking(&engine, &mut request, Phase::Content, lua).unwrap(), Status::Done, "{lua}");
        assert_eq!(String::from_utf8_lossy(&request.response().body), body, "{lua}");
    }
}

#[test]
fn sleep_is_disabled_where_nginx_cannot_yield() {
    let outcome = serve(&engine(), "/", &[], &[(Phase::Log, "ngx.sleep(1)")]);
    assert_eq!(outcome.error().message, "log:1: API disabled in the context of log");
}

#[test]
fn a_resume_before_the_wake_changes_nothing() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let script = engine.compile("content", "ngx.sleep(0.2) ngx.say('late')").unwrap();
    assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    assert_eq!(request.resume().unwrap(), Status::Yield, "nothing completed yet");
    assert!(request.response().body.is_empty());
}

#[test]
fn async_host_functions_are_completed_by_the_host() {
    let engine = async_engine();
    let mut request = request(&engine, "/t", &[]);
    let script =
        engine.compile("content", "local res, n = require('host').fetch('/users', 2) ngx.say(res, ' ', n)").unwrap();
    assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    let op = request.pending()[0].clone();
    assert_eq!((op.name.as_str(), op.args.clone()), ("fetch", vec!["/users".into(), HostValue::Integer(2)]));
    assert!(request.complete(op.id + 100, Ok(vec![])).is_err(), "unknown ids are refused");
    request.complete(op.id, Ok(vec!["alice".into(), HostValue::Integer(1)])).unwrap();
    assert!(request.pending().is_empty());
    assert_eq!(request.resume().unwrap(), Status::Done);
    assert_eq!(request.response().body, b"alice 1\n");
}

#[test]
fn async_host_errors_are_raised_in_the_script() {
    let engine = async_engine();
    let mut request = request(&engine, "/t", &[]);
    let script = engine
        .compile("content", "local ok, err = pcall(function() local r = require('host').fetch() end) ngx.say(err)")
        .unwrap();
    assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    let id = request.pending()[0].id;
    request.complete(id, Err("upstream timed out".into())).unwrap();
    assert_eq!(request.resume().unwrap(), Status::Done);
    assert_eq!(request.response().body, b"content:1: upstream timed out\n");
}

#[test]
fn read_body_waits_for_the_host_when_the_body_is_not_there() {
    let engine = engine();
    let lua = "ngx.req.read_body() ngx.say(ngx.req.get_body_data()) ngx.say(ngx.req.get_post_args().a)";
    let mut request = request(&engine, "/t", &[("Content-Type", "application/x-www-form-urlencoded")]);
    let script = engine.compile("content", lua).unwrap();
    assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    let op = request.pending()[0].clone();
    assert_eq!(op.name, READ_BODY);
    assert!(request.complete(op.id, Ok(vec![HostValue::Integer(1)])).is_err(), "a body is one string");
    request.complete(op.id, Ok(vec!["a=1&b=2".into()])).unwrap();
    assert_eq!(request.resume().unwrap(), Status::Done);
    assert_eq!(request.response().body, b"a=1&b=2\n1\n");
    assert!(!request.body_changed(), "the body the host read is not a script's");

    // With the body up front, read_body returns at once.
    let init = RequestInit { method: b"POST", path: b"/t", body: Some(b"x=y"), ..Default::default() };
    let mut with_body = engine.new_request(&init, std::iter::empty(), None);
    assert_eq!(with_body.run(Phase::Content, &script).unwrap(), Status::Done);
    assert_eq!(with_body.response().body, b"x=y\nnil\n");
}

#[test]
fn a_freed_request_is_never_woken() {
    let engine = engine();
    let woken = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let mut request = request(&engine, "/t", &[]);
        let counter = woken.clone();
        request.set_waker(Some(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })));
        let script = engine.compile("content", "ngx.sleep(0.02)").unwrap();
        assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
        drop(request);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(woken.load(Ordering::SeqCst), 0);
}

#[test]
fn many_sleeping_requests_share_one_worker() {
    let engine = engine();
    let (tx, rx) = mpsc::channel::<usize>();
    let script = engine.compile("content", "ngx.sleep(0.05) ngx.say(ngx.var.uri)").unwrap();
    let mut requests: Vec<Request> = (0..200).map(|i| request(&engine, &format!("/{i}"), &[])).collect();
    let started = Instant::now();
    for (i, request) in requests.iter_mut().enumerate() {
        let tx = tx.clone();
        request.set_waker(Some(Arc::new(move || {
            let _ = tx.send(i);
        })));
        assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    }
    let mut done = 0;
    while done < requests.len() {
        let i = rx.recv_timeout(Duration::from_secs(5)).expect("woken");
        if requests[i].resume().unwrap() == Status::Done {
            done += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(2), "200 sleeps of 50 ms overlap: {:?}", started.elapsed());
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request.response().body, format!("/{i}\n").into_bytes());
    }
}

// lua-nginx-module resumes a plain `coroutine.yield()` of the entry thread from its event loop,
// as it does `ngx.sleep(0)`: the engine wakes the request itself, every time.
#[test]
fn plain_yields_in_the_entry_thread_wake_the_request() {
    let engine = engine();
    let cases = [
        (Phase::Content, "for i = 1, 3 do coroutine.yield() ngx.say(i) end ngx.say('ok')", "1\n2\n3\nok\n"),
        (Phase::Content, "ngx.say(select('#', coroutine.yield())) coroutine.yield() ngx.say('ok')", "0\nok\n"),
        (Phase::Content, "coroutine.yield() ngx.sleep(0.01) coroutine.yield() ngx.sleep(0) ngx.say('ok')", "ok\n"),
        (
            Phase::Content,
            "local t = ngx.thread.spawn(function() ngx.sleep(0.01) return 'thread' end) \
             coroutine.yield() coroutine.yield() ngx.say(select(2, ngx.thread.wait(t)))",
            "thread\n",
        ),
        (Phase::Rewrite, "for _ = 1, 5 do coroutine.yield() end ngx.ctx.n = 5", ""),
        (Phase::Access, "for _ = 1, 5 do coroutine.yield() end ngx.say('access')", "access\n"),
    ];
    for (phase, lua, body) in cases {
        let mut request = request(&engine, "/t", &[]);
        let woken = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let counter = woken.clone();
        request.set_waker(Some(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        })));
        let script = engine.compile(phase.name(), lua).unwrap();
        let mut status = request.run(phase, &script).unwrap();
        while status == Status::Yield {
            rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("woken: {lua}"));
            status = request.resume().unwrap();
        }
        assert!(woken.load(Ordering::SeqCst) >= 2, "{lua}");
        assert_eq!(String::from_utf8_lossy(&request.response().body), body, "{lua}");
    }
}

// A host that polls resumes a plain yield at once; the wake it did not wait for never comes.
#[test]
fn a_polled_plain_yield_needs_no_wake() {
    let engine = engine();
    let script = engine.compile("content", "coroutine.yield() coroutine.yield() ngx.say('ok')").unwrap();
    let mut request = request(&engine, "/t", &[]);
    assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    assert_eq!(request.resume().unwrap(), Status::Yield);
    assert_eq!(request.resume().unwrap(), Status::Done);
    assert_eq!(request.response().body, b"ok\n");
    let woken = Arc::new(AtomicUsize::new(0));
    let counter = woken.clone();
    request.set_waker(Some(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(woken.load(Ordering::SeqCst), 0);
}

// Cancelling a waiting phase (the client went away) drops its coroutine and its waits; the
// request goes on to its log phase, which sees what the phase did before it waited.
#[test]
fn a_cancelled_phase_lets_log_run() {
    let lines = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = lines.clone();
    let engine = engine_with(EngineConfig {
        workers: 1,
        async_functions: vec!["fetch".into()],
        log: Some(Arc::new(move |r: &luaengine::LogRecord<'_>| sink.lock().unwrap().push_str(r.message))),
        ..Default::default()
    });
    let cases = [
        "ngx.ctx.seen = 'before' ngx.say('partial') ngx.sleep(10) ngx.ctx.seen = 'after'",
        "ngx.ctx.seen = 'before' ngx.say('partial') require('host').fetch() ngx.ctx.seen = 'after'",
        "ngx.ctx.seen = 'before' ngx.say('partial') \
         ngx.thread.spawn(function() ngx.sleep(0.02) ngx.ctx.seen = 'thread' end) ngx.sleep(10)",
        // Its wake comes at once: the test waits for it before cancelling.
        "ngx.ctx.seen = 'before' ngx.say('partial') coroutine.yield() ngx.ctx.seen = 'after'",
    ];
    let log = engine.compile("log", "ngx.log(ngx.ERR, 'log: ', ngx.ctx.seen, ' ', ngx.status)").unwrap();
    for lua in cases {
        let mut request = request(&engine, "/t", &[]);
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        let (tx, rx) = mpsc::channel();
        request.set_waker(Some(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        })));
        let script = engine.compile("content", lua).unwrap();
        assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield, "{lua}");
        if lua.contains("coroutine.yield()") {
            rx.recv_timeout(Duration::from_secs(5)).expect("a plain yield is woken");
        }
        let pending = request.pending().to_vec();
        request.cancel().unwrap();
        let woken_before = woken.load(Ordering::SeqCst);
        assert!(!request.is_suspended(), "{lua}");
        assert!(request.pending().is_empty(), "{lua}");
        for op in pending {
            assert!(request.complete(op.id, Ok(vec![])).is_err(), "late completions are refused: {lua}");
        }
        assert_eq!(request.resume().unwrap_err().code, luaengine::ErrorCode::InvalidState, "{lua}");
        request.cancel().unwrap(); // nothing waits: nothing to do
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(woken.load(Ordering::SeqCst), woken_before, "no wake after the cancel: {lua}");
        assert_eq!(request.response().body, b"partial\n", "{lua}");
        assert_eq!(request.run(Phase::Log, &log).unwrap(), Status::Ok, "{lua}");
        assert_eq!(std::mem::take(&mut *lines.lock().unwrap()), "log: before 200", "{lua}");
    }
}
