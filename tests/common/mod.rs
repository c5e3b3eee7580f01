//! Helpers shared by the integration tests: an engine with one worker and a way to run Lua
//! snippets through phases the way a host does, as lua-nginx-module's t/*.t blocks do.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use luaengine::{Engine, EngineConfig, Error, LogLevel, Phase, Request, RequestInit, Response, Status};

pub fn engine() -> Engine {
    engine_with(EngineConfig { workers: 1, ..Default::default() })
}

pub fn engine_with(config: EngineConfig) -> Engine {
    Engine::new(config).expect("engine")
}

/// A GET request for `uri` (`/path?query`) with the given headers.
pub fn request(engine: &Engine, uri: &str, headers: &[(&str, &str)]) -> Request {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let init = RequestInit {
        method: b"GET",
        path: path.as_bytes(),
        query: query.as_bytes(),
        remote_addr: b"127.0.0.1",
        ..Default::default()
    };
    engine.new_request(&init, headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), None)
}

/// What a host sees after running phases in order until one answers or fails.
#[derive(Debug)]
pub struct Outcome {
    pub statuses: Vec<Status>,
    pub error: Option<Error>,
    pub response: Response,
}

impl Outcome {
    pub fn body(&self) -> String {
        String::from_utf8_lossy(&self.response.body).into_owned()
    }

    pub fn last(&self) -> Status {
        *self.statuses.last().expect("a phase ran")
    }

    pub fn error(&self) -> &Error {
        self.error.as_ref().expect("the request failed")
    }
}

/// Runs each (phase, Lua) on one request, stopping after the first that answers, waits or fails.
pub fn serve_request(engine: &Engine, request: &mut Request, phases: &[(Phase, &str)]) -> Outcome {
    let mut statuses = Vec::new();
    let mut error = None;
    for (phase, source) in phases {
        let script = engine.compile(phase.name(), source).expect("compiles");
        match request.run(*phase, &script) {
            Ok(status) => {
                statuses.push(status);
                if status != Status::Ok {
                    break;
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    Outcome { statuses, error, response: request.response().clone() }
}

/// Runs phases on a fresh `GET uri` request.
pub fn serve(engine: &Engine, uri: &str, headers: &[(&str, &str)], phases: &[(Phase, &str)]) -> Outcome {
    let mut request = request(engine, uri, headers);
    serve_request(engine, &mut request, phases)
}

/// The body a content snippet produces on `GET /t`.
pub fn content(lua: &str) -> String {
    let outcome = serve(&engine(), "/t", &[], &[(Phase::Content, lua)]);
    if let Some(error) = &outcome.error {
        panic!("content failed: {error}");
    }
    outcome.body()
}

/// Runs each (content snippet, expected body) case on a fresh request from `new_request`.
pub fn check_bodies(engine: &Engine, new_request: impl Fn() -> Request, cases: &[(&str, &str)]) {
    for (lua, expected) in cases {
        let mut request = new_request();
        let outcome = serve_request(engine, &mut request, &[(Phase::Content, lua)]);
        if let Some(error) = &outcome.error {
            panic!("{lua}: {error}");
        }
        assert_eq!(outcome.body(), *expected, "{lua}");
    }
}
/// Checks the body each content snippet produces.
pub fn assert_bodies(cases: &[(&str, &str)]) {
    for (lua, expected) in cases {
        assert_eq!(content(lua), *expected, "{lua}");
    }
}

/// Checks that each Lua snippet, run in content inside pcall, fails with `content:1: message`.
pub fn assert_errors(cases: &[(&str, &str)]) {
    for (lua, message) in cases {
        let body = content(&format!("local ok, err = pcall(function() {lua} end) ngx.say(err)"));
        assert_eq!(body, format!("content:1: {message}\n"), "{lua}");
    }
}

/// Every phase result of `run_all`, with the response after the last phase.
pub type Runs = (Vec<Result<Status, Error>>, Response);

/// Runs every (phase, Lua) on one request whatever the earlier phases answered, as a host runs
/// header_filter, body_filter and log after content.
pub fn run_all(engine: &Engine, request: &mut Request, phases: &[(Phase, &str)]) -> Runs {
    let results = phases
        .iter()
        .map(|(phase, source)| request.run(*phase, &engine.compile(phase.name(), source).expect("compiles")))
        .collect();
    (results, request.response().clone())
}

/// The phases a host runs on a request, in order.
pub const REQUEST_PHASES: [Phase; 6] =
    [Phase::Rewrite, Phase::Access, Phase::Content, Phase::HeaderFilter, Phase::BodyFilter, Phase::Log];

/// Runs `lua` in every request phase of one request (on `engine`), checking each run succeeds;
/// returns the request's id.
pub fn run_everywhere(engine: &Engine, lua: &str) -> u64 {
    let mut request = request(engine, "/", &[]);
    let phases: Vec<(Phase, &str)> = REQUEST_PHASES.iter().map(|phase| (*phase, lua)).collect();
    let (results, _) = run_all(engine, &mut request, &phases);
    assert!(results.iter().all(Result::is_ok), "{lua}: {results:?}");
    request.id()
}

/// What a log sink received: (level, phase, chunk:line, message, request id).
pub type Lines = Arc<Mutex<Vec<(LogLevel, Option<Phase>, String, String, u64)>>>;

/// A one-worker engine whose log records (from `level` up) are kept in `Lines`.
pub fn logging_engine(level: LogLevel) -> (Engine, Lines) {
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

/// Runs `lua` as `phase` on `request` the way a host with an event loop does: on YIELD it waits
/// for the request's waker, then resumes, until the phase ends.
pub fn run_waking(engine: &Engine, request: &mut Request, phase: Phase, lua: &str) -> Result<Status, Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    request.set_waker(Some(Arc::new(move || {
        let _ = tx.send(());
    })));
    let script = engine.compile(phase.name(), lua).expect("compiles");
    let mut status = request.run(phase, &script)?;
    while status == Status::Yield {
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("woken within 10 s");
        status = request.resume()?;
    }
    Ok(status)
}

/// The body a content snippet produces on `GET /t`, sleeping and waking as needed.
pub fn content_waking(lua: &str) -> String {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    if let Err(error) = run_waking(&engine, &mut request, Phase::Content, lua) {
        panic!("content failed: {error}\n{lua}");
    }
    String::from_utf8_lossy(&request.response().body).into_owned()
}
