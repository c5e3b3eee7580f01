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
