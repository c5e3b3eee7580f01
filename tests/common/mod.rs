//! Helpers shared by the integration tests: an engine with one worker and a way to run Lua
//! snippets through phases the way a host does, as lua-nginx-module's t/*.t blocks do.
#![allow(dead_code)]

use luaengine::{Engine, EngineConfig, Error, Phase, Request, RequestInit, Response, Status};

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
