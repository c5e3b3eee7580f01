//! ngx.log and print reach the host's sink with level, phase, chunk:line and request id.

mod common;

use common::*;
use luaengine::{LogLevel, Phase};

#[test]
fn ngx_log_sends_level_phase_location_message_and_request() {
    let (engine, lines) = logging_engine(LogLevel::Debug);
    let mut req = request(&engine, "/", &[]);
    serve_request(
        &engine,
        &mut req,
        &[(Phase::Access, "local x = 1\nngx.log(ngx.WARN, 'count: ', 3, ' ok=', true, ' ', nil)")],
    );
    let lines = lines.lock().unwrap();
    assert_eq!(
        lines.as_slice(),
        [(LogLevel::Warn, Some(Phase::Access), "access:2".to_string(), "count: 3 ok=true nil".to_string(), req.id())]
    );
}

#[test]
fn print_logs_at_notice() {
    let (engine, lines) = logging_engine(LogLevel::Debug);
    serve(&engine, "/", &[], &[(Phase::Content, "print('hello ', 42)")]);
    let (level, _, location, message, _) = lines.lock().unwrap()[0].clone();
    assert_eq!((level, location.as_str(), message.as_str()), (LogLevel::Notice, "content:1", "hello 42"));
}

#[test]
fn records_below_the_configured_level_are_dropped() {
    let (engine, lines) = logging_engine(LogLevel::Warn);
    serve(&engine, "/", &[], &[(Phase::Content, "ngx.log(ngx.INFO, 'quiet') ngx.log(ngx.ERR, 'loud')")]);
    let messages: Vec<String> = lines.lock().unwrap().iter().map(|l| l.3.clone()).collect();
    assert_eq!(messages, ["loud"]);
}

#[test]
fn tables_need_tostring() {
    let (engine, lines) = logging_engine(LogLevel::Debug);
    let lua = "ngx.log(ngx.ERR, setmetatable({}, {__tostring = function() return 'obj' end}))\n\
               local ok, err = pcall(ngx.log, ngx.ERR, {}) ngx.say(err)\n\
               local ok2, err2 = pcall(ngx.log, 99, 'x') ngx.say(err2)";
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, lua)]);
    assert_eq!(lines.lock().unwrap()[0].3, "obj");
    let body = outcome.body();
    assert!(body.contains("bad argument #2 to 'log' (expected table to have __tostring metamethod)\n"), "{body}");
    assert!(body.contains("bad argument #1 to 'log' (bad log level: 99)\n"), "{body}");
}

#[test]
fn every_level_reaches_the_sink() {
    let levels = ["STDERR", "EMERG", "ALERT", "CRIT", "ERR", "WARN", "NOTICE", "INFO", "DEBUG"];
    for (name, level) in levels.iter().zip(LogLevel::ALL) {
        let (engine, lines) = logging_engine(LogLevel::Debug);
        let outcome = serve(&engine, "/", &[], &[(Phase::Rewrite, &format!("ngx.log(ngx.{name}, 'at ', ngx.{name})"))]);
        assert!(outcome.error.is_none(), "{name}: {:?}", outcome.error);
        let (got, phase, location, message, _) = lines.lock().unwrap()[0].clone();
        assert_eq!((got, phase, location.as_str()), (level, Some(Phase::Rewrite), "rewrite:1"), "{name}");
        assert_eq!(message, format!("at {}", level as u32));
    }
}

#[test]
fn log_arguments_follow_lua_nginx_module() {
    let cases = [
        ("ngx.log(ngx.ERR, ngx.null, ' ', 1.5, ' ', -0.25)", "null 1.5 -0.25"),
        ("ngx.log('4', 'numeric string level')", "numeric string level"),
        ("local function f() ngx.log(ngx.ERR, 'in f') end f()", "in f"),
    ];
    for (lua, expected) in cases {
        let (engine, lines) = logging_engine(LogLevel::Debug);
        let outcome = serve(&engine, "/", &[], &[(Phase::Content, lua)]);
        assert!(outcome.error.is_none(), "{lua}: {:?}", outcome.error);
        let (level, _, location, message, _) = lines.lock().unwrap()[0].clone();
        assert_eq!((level, location.as_str(), message.as_str()), (LogLevel::Err, "content:1", expected), "{lua}");
    }
}

#[test]
fn log_argument_errors() {
    let cases = [
        ("ngx.log()", "bad argument #1 to 'log' (number expected, got nil)"),
        ("ngx.log('warn', 'x')", "bad argument #1 to 'log' (number expected, got string)"),
        ("ngx.log(-1, 'x')", "bad argument #1 to 'log' (bad log level: -1)"),
        (
            "ngx.log(ngx.ERR, 'a', print)",
            "bad argument #3 to 'log' (string, number, boolean, or nil expected, got function)",
        ),
        (
            "print(coroutine.create(print))",
            "bad argument #1 to 'print' (string, number, boolean, or nil expected, got thread)",
        ),
        ("print({})", "bad argument #1 to 'print' (expected table to have __tostring metamethod)"),
    ];
    assert_errors(&cases);
}

#[test]
fn log_works_in_every_request_phase() {
    let (engine, lines) = logging_engine(LogLevel::Debug);
    let id = run_everywhere(&engine, "print('p')");
    let logged: Vec<(Option<Phase>, u64)> = lines.lock().unwrap().iter().map(|l| (l.1, l.4)).collect();
    assert_eq!(logged, REQUEST_PHASES.iter().map(|p| (Some(*p), id)).collect::<Vec<_>>());
}
