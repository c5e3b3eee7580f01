//! ngx.log and print reach the host's sink with level, phase, chunk:line and request id.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use luaengine::{Engine, EngineConfig, LogLevel, Phase};

type Lines = Arc<Mutex<Vec<(LogLevel, Option<Phase>, String, String, u64)>>>;

fn logging_engine(level: LogLevel) -> (Engine, Lines) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let config = EngineConfig {
        workers: 1,
        log_level: level,
        log: Some(Arc::new(move |r: &luaengine::LogRecord<'_>| {
            sink.lock().unwrap().push((r.level, r.phase, r.location.to_string(), r.message.to_string(), r.request_id))
        })),
        ..Default::default()
    };
    (Engine::new(config).unwrap(), lines)
}

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
    assert!(body.contains("bad argument #1 to 'log' (bad log level)\n"), "{body}");
}
