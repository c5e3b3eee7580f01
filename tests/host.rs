//! Host functions: `require("host").name(...)` calls a function the host registered, with
//! typed values both ways; host errors become Lua errors.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use luaengine::{EngineConfig, ErrorCode, HostFunction, HostValue, Phase};

fn host_engine(functions: Vec<HostFunction>) -> luaengine::Engine {
    engine_with(EngineConfig { workers: 1, host_functions: functions, ..Default::default() })
}

fn functions() -> Vec<HostFunction> {
    vec![
        HostFunction::new("echo", |call| Ok(call.args.to_vec())),
        HostFunction::new("describe", |call| Ok(vec![HostValue::String(format!("{:?}", call.args).into_bytes())])),
        HostFunction::new("fail", |call| Err(format!("no such user: {:?}", call.args.first()))),
        HostFunction::new("panics", |_| panic!("host bug")),
        HostFunction::new("nothing", |_| Ok(vec![])),
        HostFunction::new("config", |_| {
            Ok(vec![HostValue::Map(vec![
                (b"name".to_vec(), "api".into()),
                (b"ports".to_vec(), HostValue::Array(vec![HostValue::Integer(80), HostValue::Integer(443)])),
                (b"tls".to_vec(), HostValue::Boolean(true)),
                (b"ratio".to_vec(), HostValue::Number(0.25)),
            ])])
        }),
    ]
}

fn run(lua: &str) -> String {
    let outcome = serve(&host_engine(functions()), "/t", &[], &[(Phase::Content, lua)]);
    if let Some(error) = &outcome.error {
        panic!("content failed: {error}");
    }
    outcome.body()
}

#[test]
fn scalars_cross_both_ways() {
    let cases = [
        ("ngx.say(host.echo('hi'))", "hi\n"),
        ("ngx.say(host.echo(42) + 1)", "43\n"),
        ("ngx.say(host.echo(2.5) * 2)", "5\n"),
        ("ngx.say(host.echo(true), ' ', host.echo(false))", "true false\n"),
        ("ngx.say(select('#', host.echo(nil)), ' ', host.echo(nil))", "1 nil\n"),
        ("ngx.say(select('#', host.echo(1, nil, 3)))", "3\n"),
        ("ngx.say(#host.echo('a\\0b'))", "3\n"),
        ("ngx.say(select('#', host.nothing()))", "0\n"),
        ("ngx.say(host.echo(ngx.null) == nil)", "true\n"),
    ];
    for (lua, expected) in cases {
        assert_eq!(run(&format!("local host = require('host') {lua}")), expected, "{lua}");
    }
}

#[test]
fn the_host_sees_typed_values() {
    let cases = [
        ("host.describe(1, 1.5, 'x', true, nil)", "[Integer(1), Number(1.5), String([120]), Boolean(true), Nil]"),
        ("host.describe({1, 'two', {3}})", "[Array([Integer(1), String([116, 119, 111]), Array([Integer(3)])])]"),
        ("host.describe({k = false})", "[Map([([107], Boolean(false))])]"),
        ("host.describe({})", "[Map([])]"),
    ];
    for (lua, expected) in cases {
        assert_eq!(run(&format!("local host = require('host') ngx.print({lua})")), expected, "{lua}");
    }
}

#[test]
fn tables_come_back_as_lua_tables() {
    let body = run(r#"
        local c = require("host").config()
        ngx.say(c.name, " ", #c.ports, " ", c.ports[1], " ", c.ports[2], " ", c.tls, " ", c.ratio)
        local echoed = require("host").echo({ list = { "a", "b" }, nested = { deeper = { x = 1 } } })
        ngx.say(echoed.list[2], " ", echoed.nested.deeper.x)
    "#);
    assert_eq!(body, "api 2 80 443 true 0.25\nb 1\n");
}

#[test]
fn host_errors_become_lua_errors_with_the_hosts_message() {
    let body = run(r#"
        local ok, err = pcall(function() local user = require("host").fail("bob") end)
        ngx.say(ok, " ", err)
    "#);
    assert_eq!(body, "false content:2: no such user: Some(String([98, 111, 98]))\n");
}

#[test]
fn an_uncaught_host_error_fails_the_phase_with_chunk_and_line() {
    let outcome =
        serve(&host_engine(functions()), "/", &[], &[(Phase::Content, "ngx.say('a')\nrequire('host').fail()")]);
    let error = outcome.error();
    assert_eq!(error.code, ErrorCode::Runtime);
    assert_eq!(error.message, "content:2: no such user: None");
    assert_eq!(error.line, Some(2));
}

#[test]
fn values_the_host_cannot_take_are_argument_errors() {
    let cases = [
        ("host.echo(print)", "bad argument #1 to 'echo' (function cannot be passed to the host)"),
        ("host.echo(1, coroutine.create(print))", "bad argument #2 to 'echo' (thread cannot be passed to the host)"),
        ("host.echo({1, x = 2})", "bad argument #1 to 'echo' (table mixes array and map keys, or its array has holes)"),
        (
            "host.echo({[1] = 1, [3] = 3})",
            "bad argument #1 to 'echo' (table mixes array and map keys, or its array has holes)",
        ),
        ("host.echo({[true] = 1})", "bad argument #1 to 'echo' (table keys must be strings or array indexes)"),
        ("local t = {} t[1] = t host.echo(t)", "bad argument #1 to 'echo' (table nested too deep)"),
    ];
    for (lua, message) in cases {
        let body =
            run(&format!("local host = require('host') local ok, err = pcall(function() {lua} end) ngx.say(err)"));
        assert_eq!(body, format!("content:1: {message}\n"), "{lua}");
    }
}

#[test]
fn a_panicking_host_function_is_an_error_and_the_worker_keeps_serving() {
    let engine = host_engine(functions());
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, "require('host').panics()")]);
    assert_eq!(outcome.error().message, "content:1: host function 'panics' panicked");
    let next = serve(&engine, "/", &[], &[(Phase::Content, "ngx.say(require('host').echo('ok'))")]);
    assert_eq!(next.body(), "ok\n");
}

#[test]
fn host_functions_know_the_calling_request() {
    let seen = Arc::new(AtomicU64::new(0));
    let recorder = seen.clone();
    let engine = host_engine(vec![HostFunction::new("whoami", move |call| {
        recorder.store(call.request_id, Ordering::SeqCst);
        Ok(vec![HostValue::Integer(call.request_id as i64)])
    })]);
    let mut request = request(&engine, "/", &[]);
    let outcome = serve_request(&engine, &mut request, &[(Phase::Access, "ngx.say(require('host').whoami())")]);
    assert_eq!(outcome.body(), format!("{}\n", request.id()));
    assert_eq!(seen.load(Ordering::SeqCst), request.id());
}

#[test]
fn unknown_names_are_nil_and_duplicate_names_are_refused() {
    assert_eq!(run("ngx.say(type(require('host').missing))"), "nil\n");
    let twice = vec![HostFunction::new("f", |_| Ok(vec![])), HostFunction::new("f", |_| Ok(vec![]))];
    let error = luaengine::Engine::new(EngineConfig { host_functions: twice, ..Default::default() }).err().unwrap();
    assert_eq!(
        (error.code, error.message.as_str()),
        (ErrorCode::InvalidArgument, "host function 'f' is registered twice")
    );
}
