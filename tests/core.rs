//! The spine: code cache, workers and pooled coroutines, phases and their statuses, ngx.ctx,
//! per-request globals, errors with chunk and line.

mod common;

use common::*;
use luaengine::{Engine, EngineConfig, ErrorCode, Phase, Status};

#[test]
fn content_answers_the_request() {
    let outcome = serve(&engine(), "/t", &[], &[(Phase::Content, r#"ngx.say("hello")"#)]);
    assert_eq!(outcome.statuses, [Status::Done]);
    assert_eq!(outcome.body(), "hello\n");
    assert_eq!(outcome.response.status, 200);
}

#[test]
fn rewrite_and_access_continue_to_content() {
    let outcome = serve(
        &engine(),
        "/t",
        &[],
        &[
            (Phase::Rewrite, "ngx.ctx.seen = 'r'"),
            (Phase::Access, "ngx.ctx.seen = ngx.ctx.seen .. 'a'"),
            (Phase::Content, "ngx.say(ngx.ctx.seen, 'c')"),
        ],
    );
    assert_eq!(outcome.statuses, [Status::Ok, Status::Ok, Status::Done]);
    assert_eq!(outcome.body(), "rac\n");
}

#[test]
fn access_denies_with_exit() {
    let access = r#"local h = ngx.req.get_headers()
if h["x-token"] ~= "secret" then return ngx.exit(403) end
ngx.ctx.user = "u1""#;
    let content = r#"ngx.say("hello ", ngx.ctx.user, " ", ngx.var.uri)"#;
    let engine = engine();
    let denied = serve(&engine, "/t", &[], &[(Phase::Access, access), (Phase::Content, content)]);
    assert_eq!(denied.statuses, [Status::Done]);
    assert_eq!(denied.response.status, 403);
    assert_eq!(denied.response.exit_code, Some(403));
    assert_eq!(denied.body(), "");
    let allowed = serve(&engine, "/t", &[("X-Token", "secret")], &[(Phase::Access, access), (Phase::Content, content)]);
    assert_eq!(allowed.statuses, [Status::Ok, Status::Done]);
    assert_eq!(allowed.body(), "hello u1 /t\n");
}

#[test]
fn exit_ok_in_access_only_ends_the_phase() {
    let outcome = serve(
        &engine(),
        "/t",
        &[],
        &[(Phase::Access, "ngx.exit(ngx.OK) error('not reached')"), (Phase::Content, "ngx.say('on')")],
    );
    assert_eq!(outcome.statuses, [Status::Ok, Status::Done]);
    assert_eq!(outcome.body(), "on\n");
}

#[test]
fn output_in_access_answers_the_request() {
    let outcome =
        serve(&engine(), "/t", &[], &[(Phase::Access, "ngx.say('early')"), (Phase::Content, "ngx.say('late')")]);
    assert_eq!(outcome.statuses, [Status::Done]);
    assert_eq!(outcome.body(), "early\n");
}

#[test]
fn exit_error_aborts() {
    let outcome = serve(&engine(), "/t", &[], &[(Phase::Content, "ngx.exit(ngx.ERROR)")]);
    assert_eq!(outcome.error().code, ErrorCode::Aborted);
}

#[test]
fn exit_inside_pcall_and_user_coroutines_still_exits() {
    let engine = engine();
    let outcome = serve(&engine, "/t", &[], &[(Phase::Access, "pcall(ngx.exit, 401) error('not reached')")]);
    assert_eq!((outcome.last(), outcome.response.status), (Status::Done, 401));
    let wrapped = "coroutine.wrap(function() ngx.exit(402) end)() error('not reached')";
    let outcome = serve(&engine, "/t", &[], &[(Phase::Access, wrapped)]);
    assert_eq!((outcome.last(), outcome.response.status), (Status::Done, 402));
}

#[test]
fn plain_user_coroutines_work_as_in_lua() {
    let body = content(
        r#"local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
local _, x = coroutine.resume(co, 1)
local _, y = coroutine.resume(co, 10)
local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
ngx.say(x, " ", y, " ", coroutine.status(co), " ", gen(), gen(), gen())"#,
    );
    assert_eq!(body, "2 20 dead 123\n");
}

#[test]
fn runtime_errors_carry_chunk_line_and_traceback() {
    let outcome = serve(&engine(), "/t", &[], &[(Phase::Content, "local x = 1\nerror('boom')")]);
    let error = outcome.error();
    assert_eq!(error.code, ErrorCode::Runtime);
    assert_eq!(error.chunk.as_deref(), Some("content"));
    assert_eq!(error.line, Some(2));
    assert!(error.message.ends_with("content:2: boom"), "{}", error.message);
    assert!(error.traceback.as_deref().unwrap_or("").contains("stack traceback"), "{error:?}");
}

#[test]
fn compile_errors_name_chunk_and_line() {
    let error = engine().compile("bad.lua", "local x = 1\nlocal = 2").err().expect("syntax error");
    assert_eq!(error.code, ErrorCode::Syntax);
    assert_eq!(error.chunk.as_deref(), Some("bad.lua"));
    assert_eq!(error.line, Some(2));
}

#[test]
fn binary_chunks_are_refused() {
    let engine = engine();
    let error = engine.compile("bin", b"\x1bLua\x54\x00junk").err().expect("refused");
    assert_eq!(error.code, ErrorCode::Syntax);
    assert!(error.message.contains("binary chunks are refused"), "{}", error.message);
    let error = engine.compile("bin", b"\x1bLJ\x02junk").err().expect("refused");
    assert_eq!(error.code, ErrorCode::Syntax);
}

#[test]
fn a_cache_hit_does_not_parse_again() {
    let engine = engine();
    let first = engine.compile("content", "ngx.say('x')").unwrap();
    let stats = engine.stats();
    assert_eq!((stats.cache.compiled, stats.cache.misses, stats.cache.hits), (1, 1, 0));
    let second = engine.compile("content", "ngx.say('x')").unwrap();
    let stats = engine.stats();
    assert_eq!((stats.cache.compiled, stats.cache.misses, stats.cache.hits), (1, 1, 1));
    // Another name is another chunk (errors name it), so it compiles.
    let _third = engine.compile("other", "ngx.say('x')").unwrap();
    assert_eq!(engine.stats().cache.compiled, 2);
    drop((first, second));
}

#[test]
fn each_worker_loads_a_script_once() {
    let engine = engine_with(EngineConfig { workers: 2, ..Default::default() });
    let script = engine.compile("content", "ngx.say('x')").unwrap();
    for i in 0..10 {
        let mut request = request(&engine, "/", &[]);
        assert_eq!(request.worker(), i % 2, "round robin");
        assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Done);
    }
    let stats = engine.stats();
    assert_eq!(stats.workers.iter().map(|w| w.functions_loaded).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(stats.cache.compiled, 1);
    assert_eq!(stats.phases_run, 10);
}

#[test]
fn a_worker_hint_binds_the_request() {
    let engine = engine_with(EngineConfig { workers: 3, ..Default::default() });
    let init = luaengine::RequestInit::default();
    assert_eq!(engine.new_request(&init, [], Some(2)).worker(), 2);
    assert_eq!(engine.new_request(&init, [], Some(4)).worker(), 1);
}

#[test]
fn coroutines_are_pooled_and_bounded() {
    let engine = engine_with(EngineConfig { workers: 1, coroutine_pool: 2, ..Default::default() });
    let script = engine.compile("content", "coroutine.yield()").unwrap();
    let mut waiting: Vec<_> = (0..5).map(|_| request(&engine, "/", &[])).collect();
    for request in &mut waiting {
        assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    }
    assert_eq!(engine.stats().workers[0].pooled_coroutines, 0, "waiting requests hold their coroutines");
    for request in &mut waiting {
        assert_eq!(request.resume().unwrap(), Status::Done);
    }
    assert_eq!(engine.stats().workers[0].pooled_coroutines, 2, "the pool keeps at most 2");
    // A pooled coroutine serves the next request.
    let quick = engine.compile("quick", "ngx.say(1)").unwrap();
    request(&engine, "/", &[]).run(Phase::Content, &quick).unwrap();
    assert_eq!(engine.stats().workers[0].pooled_coroutines, 2);
}

#[test]
fn a_pooled_coroutine_keeps_nothing_of_the_request_it_served() {
    // `seen` (made by init, so every request reads it) holds each request's globals weakly.
    let engine = engine_with(EngineConfig {
        workers: 1,
        trusted: true,
        init: Some(luaengine::LuaSource::inline("init", r#"seen = setmetatable({}, { __mode = "k" })"#)),
        ..Default::default()
    });
    let wait = engine.compile("wait", "coroutine.yield()").unwrap();
    let remember = engine.compile("remember", "seen[_G] = true").unwrap();
    let (mut first, mut second) = (request(&engine, "/", &[]), request(&engine, "/", &[]));
    first.run(Phase::Content, &wait).unwrap();
    second.run(Phase::Content, &wait).unwrap();
    first.resume().unwrap();
    // The coroutine `first` used serves this request, then waits in the pool under the one
    // `second` returns, which the counting request takes.
    request(&engine, "/", &[]).run(Phase::Content, &remember).unwrap();
    second.resume().unwrap();
    assert_eq!(engine.stats().workers[0].pooled_coroutines, 2);
    let count = "collectgarbage() collectgarbage() local n = 0 for _ in pairs(seen) do n = n + 1 end ngx.say(n)";
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, count)]).body(), "0\n", "their globals were collected");
}

#[test]
fn a_request_made_after_a_freed_one_starts_empty() {
    // The second request reuses the first one's state and buffers (kept by this thread): none
    // of its data shows through.
    let engine = engine();
    let first = serve(
        &engine,
        "/first?secret=1",
        &[("X-Secret", "s3cr3t"), ("Cookie", "a=b")],
        &[(
            Phase::Content,
            "ngx.ctx.secret = 1 ngx.var.mine = 'v' leaked = true ngx.status = 201 \
             ngx.header['X-Out'] = 'o' ngx.say('first body')",
        )],
    );
    assert_eq!(first.body(), "first body\n");
    assert_eq!(first.response.status, 201);
    let second = serve(
        &engine,
        "/2",
        &[("Host", "h")],
        &[(
            Phase::Content,
            r#"local names = {}
for name in pairs(ngx.req.get_headers()) do names[#names + 1] = name end
ngx.print(table.concat(names, ","), " ", ngx.var.args, " ", tostring(ngx.header["X-Out"]), " ",
          tostring(ngx.ctx.secret), " ", tostring(ngx.var.mine), " ", tostring(leaked), " ", ngx.status)"#,
        )],
    );
    assert_eq!(second.body(), "host nil nil nil nil nil 0");
    assert_eq!(second.response.status, 200);
    assert_eq!(second.response.headers, [(b"Content-Type".to_vec(), b"text/plain".to_vec())]);
}

#[test]
fn globals_are_isolated_between_interleaved_requests() {
    let engine = engine();
    let script = engine
        .compile(
            "content",
            r#"counter = (counter or 0) + 1
local mine = ngx.var.arg_name
name = mine
coroutine.yield()
ngx.say(name, " ", counter, " ", tostring(mine == name))"#,
        )
        .unwrap();
    let mut a = request(&engine, "/?name=a", &[]);
    let mut b = request(&engine, "/?name=b", &[]);
    assert_eq!((a.worker(), b.worker()), (0, 0));
    assert_eq!(a.run(Phase::Content, &script).unwrap(), Status::Yield);
    assert_eq!(b.run(Phase::Content, &script).unwrap(), Status::Yield);
    assert_eq!(a.resume().unwrap(), Status::Done);
    assert_eq!(b.resume().unwrap(), Status::Done);
    assert_eq!(a.response().body, b"a 1 true\n");
    assert_eq!(b.response().body, b"b 1 true\n");
}

#[test]
fn globals_persist_across_the_phases_of_one_request() {
    let outcome = serve(
        &engine(),
        "/",
        &[],
        &[(Phase::Access, "seen_in_access = 42"), (Phase::Content, "ngx.say(seen_in_access)")],
    );
    assert_eq!(outcome.body(), "42\n");
}

#[test]
fn ctx_belongs_to_one_request() {
    let engine = engine();
    let first = serve(&engine, "/", &[], &[(Phase::Access, "ngx.ctx.v = 1"), (Phase::Content, "ngx.say(ngx.ctx.v)")]);
    let second = serve(&engine, "/", &[], &[(Phase::Content, "ngx.say(ngx.ctx.v)")]);
    assert_eq!((first.body().as_str(), second.body().as_str()), ("1\n", "nil\n"));
    let replaced =
        serve(&engine, "/", &[], &[(Phase::Access, "ngx.ctx = { v = 'new' }"), (Phase::Content, "ngx.say(ngx.ctx.v)")]);
    assert_eq!(replaced.body(), "new\n");
}

#[test]
fn running_a_phase_while_suspended_is_an_error() {
    let engine = engine();
    let wait = engine.compile("content", "coroutine.yield() ngx.say('resumed')").unwrap();
    let mut request = request(&engine, "/", &[]);
    assert_eq!(request.run(Phase::Content, &wait).unwrap(), Status::Yield);
    assert!(request.is_suspended());
    assert_eq!(request.run(Phase::Log, &wait).unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(request.resume().unwrap(), Status::Done);
    assert_eq!(request.resume().unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(request.response().body, b"resumed\n");
}

#[test]
fn dropping_a_suspended_request_releases_it() {
    let engine = engine();
    let wait = engine.compile("content", "coroutine.yield()").unwrap();
    for _ in 0..100 {
        let mut request = request(&engine, "/", &[]);
        assert_eq!(request.run(Phase::Content, &wait).unwrap(), Status::Yield);
    }
    let hello = engine.compile("hello", "ngx.say('still serving')").unwrap();
    let mut next = request(&engine, "/", &[]);
    next.run(Phase::Content, &hello).unwrap();
    assert_eq!(next.response().body, b"still serving\n");
}

#[test]
fn init_phases_are_not_request_phases() {
    let engine = engine();
    let script = engine.compile("x", "return").unwrap();
    let error = request(&engine, "/", &[]).run(Phase::Init, &script).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidArgument);
}

#[test]
fn the_worker_survives_errors() {
    let engine = engine();
    for _ in 0..3 {
        let outcome = serve(&engine, "/", &[], &[(Phase::Content, "error({})")]);
        assert_eq!(outcome.error().code, ErrorCode::Runtime);
    }
    assert_eq!(serve(&engine, "/", &[], &[(Phase::Content, "ngx.say('ok')")]).body(), "ok\n");
    assert_eq!(engine.stats().errors, 3);
}

#[test]
fn errors_are_logged_with_phase_location_and_request() {
    use std::sync::{Arc, Mutex};
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let config = EngineConfig {
        workers: 1,
        log: Some(Arc::new(move |r: &luaengine::LogRecord<'_>| {
            sink_lines.lock().unwrap().push((
                r.level,
                r.phase,
                r.location.to_string(),
                r.message.to_string(),
                r.request_id,
            ))
        })),
        ..Default::default()
    };
    let engine = Engine::new(config).unwrap();
    let mut req = request(&engine, "/", &[]);
    let id = req.id();
    serve_request(&engine, &mut req, &[(Phase::Access, "\nerror('denied')")]);
    let lines = lines.lock().unwrap();
    let (level, phase, location, message, request_id) = lines.last().expect("logged").clone();
    assert_eq!(
        (level, phase, location.as_str(), request_id),
        (luaengine::LogLevel::Err, Some(Phase::Access), "access:2", id)
    );
    assert!(message.starts_with("lua entry thread aborted: runtime error: access:2: denied"), "{message}");
}

#[test]
fn engines_and_scripts_are_shared_between_threads_and_requests_move() {
    fn shared<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    shared::<Engine>();
    shared::<luaengine::Script>();
    movable::<luaengine::Request>();

    let engine = engine_with(EngineConfig { workers: 2, ..Default::default() });
    let script = engine
        .compile("content", "local n = tonumber(ngx.var.arg_n) counter = n ngx.say(n * 2, ' ', counter == n)")
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (engine, script) = (engine.clone(), script.clone());
            std::thread::spawn(move || {
                for i in 0..500 {
                    let n = t * 1000 + i;
                    let mut request = request(&engine, &format!("/?n={n}"), &[]);
                    assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Done);
                    assert_eq!(request.response().body, format!("{} true\n", n * 2).into_bytes());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(engine.stats().phases_run, 2000);
}

#[test]
fn a_request_suspended_on_one_thread_resumes_on_another() {
    let engine = engine();
    let script = engine.compile("content", "local a = 'before' coroutine.yield() ngx.say(a, ' after')").unwrap();
    let mut waiting = request(&engine, "/", &[]);
    assert_eq!(waiting.run(Phase::Content, &script).unwrap(), Status::Yield);
    let body = std::thread::spawn(move || {
        assert_eq!(waiting.resume().unwrap(), Status::Done);
        waiting.response().body.clone()
    })
    .join()
    .unwrap();
    assert_eq!(body, b"before after\n");
}
