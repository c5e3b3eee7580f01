//! File scripts: keyed by path, revalidated by (mtime, size), reloaded without failing requests
//! in flight, and never switched to a file caught half-written.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use luaengine::{EngineConfig, ErrorCode, Phase, Status};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("luaengine-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rewrites a file so that its (mtime, size) surely changes.
fn rewrite(path: &PathBuf, text: &str) {
    let before = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(before + Duration::from_secs(5)).unwrap();
}

fn body_of(engine: &luaengine::Engine, script: &luaengine::Script) -> String {
    let mut request = request(engine, "/", &[]);
    request.run(Phase::Content, script).unwrap();
    String::from_utf8(request.response().body.clone()).unwrap()
}

#[test]
fn a_file_script_runs_and_names_its_file_in_errors() {
    let dir = temp_dir("file-errors");
    let path = dir.join("content.lua");
    std::fs::write(&path, "ngx.say('from file')\nerror('oops')").unwrap();
    let engine = engine();
    let script = engine.compile_file(&path).unwrap();
    assert!(script.path().is_some());
    let error = request(&engine, "/", &[]).run(Phase::Content, &script).unwrap_err();
    assert_eq!(error.line, Some(2));
    assert!(error.chunk.as_deref().unwrap().ends_with("content.lua"), "{error:?}");
}

#[test]
fn compiling_the_same_path_again_is_a_cache_hit() {
    let dir = temp_dir("file-hit");
    let path = dir.join("a.lua");
    std::fs::write(&path, "ngx.say(1)").unwrap();
    let engine = engine();
    let _first = engine.compile_file(&path).unwrap();
    let _second = engine.compile_file(&path).unwrap();
    let stats = engine.stats();
    assert_eq!((stats.cache.compiled, stats.cache.hits), (1, 1));
}

#[test]
fn missing_files_are_io_errors() {
    let error = engine().compile_file("/nonexistent/luaengine/x.lua").err().unwrap();
    assert_eq!(error.code, ErrorCode::Io);
    assert!(error.message.contains("/nonexistent/luaengine/x.lua"));
}

#[test]
fn reload_switches_new_requests_while_requests_in_flight_finish_on_the_old_version() {
    let dir = temp_dir("file-reload");
    let path = dir.join("content.lua");
    std::fs::write(&path, "local v = 'v1' coroutine.yield() ngx.say(v)").unwrap();
    let engine =
        engine_with(EngineConfig { workers: 1, file_check_interval: Duration::from_secs(3600), ..Default::default() });
    let script = engine.compile_file(&path).unwrap();
    let mut in_flight = request(&engine, "/", &[]);
    assert_eq!(in_flight.run(Phase::Content, &script).unwrap(), Status::Yield);

    rewrite(&path, "ngx.say('v2, a longer version')");
    assert_eq!(body_of(&engine, &script), "", "not reloaded before the interval: the old version still yields");
    assert_eq!(engine.reload().unwrap(), 1);
    assert_eq!(body_of(&engine, &script), "v2, a longer version\n");
    assert_eq!(in_flight.resume().unwrap(), Status::Done);
    assert_eq!(in_flight.response().body, b"v1\n");
    assert_eq!(engine.reload().unwrap(), 0, "nothing changed since");
}

#[test]
fn files_are_revalidated_after_the_check_interval() {
    let dir = temp_dir("file-interval");
    let path = dir.join("content.lua");
    std::fs::write(&path, "ngx.say('one')").unwrap();
    let engine = engine_with(EngineConfig { workers: 1, file_check_interval: Duration::ZERO, ..Default::default() });
    let script = engine.compile_file(&path).unwrap();
    assert_eq!(body_of(&engine, &script), "one\n");
    rewrite(&path, "ngx.say('two!')");
    assert_eq!(body_of(&engine, &script), "one\n", "the check that first sees the change keeps the old version");
    assert_eq!(body_of(&engine, &script), "two!\n", "the next check finds it unchanged and takes it");
}

/// Truncates a file (its mtime moves on, as an editor's or a copy's truncation does).
fn truncate(path: &PathBuf) {
    let before = std::fs::metadata(path).unwrap().modified().unwrap();
    let file = std::fs::File::options().write(true).truncate(true).open(path).unwrap();
    file.set_modified(before + Duration::from_secs(1)).unwrap();
}

const SETTLE: Duration = Duration::from_millis(100);

/// Serves `script` (whose body is `old` while `path` holds `old_text`) while `path` is truncated
/// and then rewritten with `new_text`: the old body is served through the check that sees the
/// truncated file, no body is ever the empty one, and `new` comes within 2 s.
fn rewrite_by_halves(engine: &luaengine::Engine, script: &luaengine::Script, path: &PathBuf, new_text: &str) {
    assert_eq!(body_of(engine, script), "old\n");
    truncate(path);
    std::thread::sleep(SETTLE + SETTLE / 5);
    assert_eq!(body_of(engine, script), "old\n", "a check that sees the file truncated keeps the old version");
    // Written before another check could find the empty file unchanged.
    rewrite(path, new_text);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let body = body_of(engine, script);
        assert_ne!(body, "", "the truncated version was served");
        if body == "new\n" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the new version not served within 2 s, still {body:?}");
        std::thread::sleep(SETTLE / 4);
    }
}

#[test]
fn a_half_written_file_is_never_served() {
    let path = temp_dir("file-half-written").join("content.lua");
    std::fs::write(&path, "ngx.say('old')").unwrap();
    let engine = engine_with(EngineConfig { workers: 1, file_check_interval: SETTLE, ..Default::default() });
    let script = engine.compile_file(&path).unwrap();
    rewrite_by_halves(&engine, &script, &path, "ngx.say('new')");
}

#[test]
fn a_half_written_module_is_never_loaded() {
    let dir = temp_dir("module-half-written");
    std::fs::write(dir.join("m.lua"), "return 'old'").unwrap();
    let engine = engine_with(EngineConfig {
        workers: 1,
        file_check_interval: SETTLE,
        package_path: vec![format!("{}/?.lua", dir.display())],
        ..Default::default()
    });
    // The request forgets the worker's copy, so that its `require` loads the file again.
    let script = engine.compile("content", "package.loaded.m = nil ngx.say(require('m'))").unwrap();
    rewrite_by_halves(&engine, &script, &dir.join("m.lua"), "return 'new'");
}

#[test]
fn a_file_that_stops_compiling_keeps_its_last_good_version() {
    let dir = temp_dir("file-broken");
    let path = dir.join("content.lua");
    std::fs::write(&path, "ngx.say('good')").unwrap();
    let engine =
        engine_with(EngineConfig { workers: 1, file_check_interval: Duration::from_secs(3600), ..Default::default() });
    let script = engine.compile_file(&path).unwrap();
    rewrite(&path, "ngx.say('bad'");
    let error = engine.reload().unwrap_err();
    assert_eq!(error.code, ErrorCode::Syntax);
    assert_eq!(error.line, Some(1));
    assert_eq!(body_of(&engine, &script), "good\n");
}
