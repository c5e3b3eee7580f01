//! ngx.req.*: reading the request, rewriting it for later phases and the host; and ngx.ctx.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use luaengine::{Engine, Phase, Request, RequestInit, Status};

fn with_headers(lua: &str, headers: &[(&str, &str)]) -> String {
    let outcome = serve(&engine(), "/t", headers, &[(Phase::Content, lua)]);
    if let Some(error) = &outcome.error {
        panic!("{error}");
    }
    outcome.body()
}

#[test]
fn get_headers_lowercases_names_and_collects_repeats() {
    let headers = [("Host", "example.com"), ("X-Multi", "a"), ("X-Multi", "b"), ("Content-Type", "text/plain")];
    let lua = r#"local h = ngx.req.get_headers()
ngx.say(h.host, " ", h["content-type"], " ", table.concat(h["x-multi"], ","))"#;
    assert_eq!(with_headers(lua, &headers), "example.com text/plain a,b\n");
}

#[test]
fn get_headers_lookups_normalize_case_and_underscores() {
    let lua = r#"local h = ngx.req.get_headers() ngx.say(h["X-Token"], " ", h.x_token)"#;
    assert_eq!(with_headers(lua, &[("X-Token", "s3")]), "s3 s3\n");
}

#[test]
fn get_headers_raw_keeps_the_case() {
    let lua = r#"local h = ngx.req.get_headers(nil, true) ngx.say(h["X-Token"], " ", tostring(h["x-token"]))"#;
    assert_eq!(with_headers(lua, &[("X-Token", "s3")]), "s3 nil\n");
}

#[test]
fn get_headers_truncates_at_max() {
    let headers: Vec<(String, String)> = (0..105).map(|i| (format!("h{i}"), i.to_string())).collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let lua = r#"local h, err = ngx.req.get_headers() local n = 0 for _ in pairs(h) do n = n + 1 end ngx.say(n, " ", err)
local h2, err2 = ngx.req.get_headers(3) n = 0 for _ in pairs(h2) do n = n + 1 end ngx.say(n, " ", err2)
local h3, err3 = ngx.req.get_headers(0) n = 0 for _ in pairs(h3) do n = n + 1 end ngx.say(n, " ", err3)"#;
    assert_eq!(with_headers(lua, &headers), "100 truncated\n3 truncated\n105 nil\n");
}

#[test]
fn get_headers_keeps_binary_values() {
    let lua = r#"local h = ngx.req.get_headers() ngx.say(#h["x-bin"])"#;
    let engine = engine();
    let init = RequestInit { path: b"/", ..Default::default() };
    let mut request = engine.new_request(&init, [(&b"X-Bin"[..], &b"\xff\xfe\x00"[..])], None);
    let outcome = serve_request(&engine, &mut request, &[(Phase::Content, lua)]);
    assert_eq!(outcome.body(), "3\n");
}

// Names past the engine's stack buffer, and a binary value among text ones (the table is then
// built the general way): the same table either way.
#[test]
fn get_headers_with_long_names_or_binary_values() {
    let names: Vec<String> = (0..20).map(|i| format!("X-Long-Header-Name-Padded-To-Forty-{i:04}")).collect();
    let long: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "v")).collect();
    let lua = r#"local h = ngx.req.get_headers() local n = 0 for _ in pairs(h) do n = n + 1 end
ngx.say(n, " ", h["x-long-header-name-padded-to-forty-0019"], " ", h.X_LONG_HEADER_NAME_PADDED_TO_FORTY_0000)"#;
    assert_eq!(with_headers(lua, &long), "20 v v\n");

    let lua = r#"local h = ngx.req.get_headers() ngx.say(h.host, " ", #h["x-bin"], " ", h["x-after"])"#;
    let engine = engine();
    let init = RequestInit { path: b"/", ..Default::default() };
    let headers = [(&b"Host"[..], &b"a"[..]), (b"X-Bin", b"\xff\xfe"), (b"X-After", b"z")];
    let mut request = engine.new_request(&init, headers, None);
    let outcome = serve_request(&engine, &mut request, &[(Phase::Content, lua)]);
    assert_eq!(outcome.body(), "a 2 z\n");
}

#[test]
fn get_method_and_body() {
    let engine = engine();
    let init = RequestInit { method: b"POST", path: b"/form", body: Some(b"a=1&b=2"), ..Default::default() };
    let mut request = engine.new_request(&init, [], None);
    let outcome = serve_request(
        &engine,
        &mut request,
        &[(Phase::Content, "ngx.say(ngx.req.get_method(), ' ', ngx.req.get_body_data())")],
    );
    assert_eq!(outcome.body(), "POST a=1&b=2\n");
    assert_eq!(content("ngx.say(ngx.req.get_method(), ' ', tostring(ngx.req.get_body_data()))"), "GET nil\n");
}

#[test]
fn ctx_is_shared_by_the_phases_of_a_request_and_can_be_replaced() {
    let outcome = serve(
        &engine(),
        "/",
        &[],
        &[
            (Phase::Rewrite, "ngx.ctx.trail = {'rewrite'}"),
            (Phase::Access, "table.insert(ngx.ctx.trail, 'access')"),
            (Phase::Content, "table.insert(ngx.ctx.trail, 'content') ngx.say(table.concat(ngx.ctx.trail, ' > '))"),
        ],
    );
    assert_eq!(outcome.body(), "rewrite > access > content\n");
    let bad = content("local ok, err = pcall(function() ngx.ctx = 1 end) ngx.say(err)");
    assert_eq!(bad, "content:1: ctx should be a table while getting a number\n");
}

/// The request most cases run on: `GET /t?QUERY` with a few headers and a form body.
const QUERY: &str = "a=1&b=2&b=3&flag&empty=&sp=a+b%20c";
const HEADERS: [(&str, &str); 4] = [("Host", "example.com"), ("X-Foo", "bar"), ("X-Multi", "1"), ("X-Multi", "2")];

fn standard(engine: &Engine, version: &str, body: Option<&'static [u8]>) -> Request {
    let init = RequestInit {
        method: b"GET",
        path: b"/t",
        query: QUERY.as_bytes(),
        http_version: version.as_bytes(),
        remote_addr: b"127.0.0.1",
        body,
        ..Default::default()
    };
    engine.new_request(&init, HEADERS.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), None)
}

/// The body a content snippet produces on a standard request of that HTTP version and body.
fn content_on(version: &str, body: Option<&'static [u8]>, lua: &str) -> String {
    let engine = engine();
    let mut request = standard(&engine, version, body);
    serve_request(&engine, &mut request, &[(Phase::Content, lua)]).body()
}

/// Runs each content snippet on a fresh standard request (with a form body).
fn check(cases: &[(&str, &str)]) {
    let engine = engine();
    check_bodies(&engine, || standard(&engine, "", Some(b"p=1&q=x+y&q=z")), cases);
}

#[test]
fn get_uri_args() {
    check(&[
        (
            r#"local a = ngx.req.get_uri_args()
ngx.say(a.a, " ", table.concat(a.b, ","), " ", tostring(a.flag), " [", a.empty, "] ", a.sp)"#,
            "1 2,3 true [] a b c\n",
        ),
        (
            "local a, err = ngx.req.get_uri_args(2) ngx.say(a.a, ' ', a.b, ' ', tostring(a.flag), ' ', err)",
            "1 2 nil truncated\n",
        ),
        (
            "local a, err = ngx.req.get_uri_args(0) local n = 0 for _ in pairs(a) do n = n + 1 end ngx.say(n, ' ', err)",
            "5 nil\n",
        ),
        ("local a, err = ngx.req.get_uri_args(-1) ngx.say(#a.b, ' ', err)", "2 nil\n"),
        (
            "local t = {stale = 1} local a = ngx.req.get_uri_args(nil, t) ngx.say(a == t, ' ', tostring(t.stale), ' ', t.a)",
            "true nil 1\n",
        ),
        (
            "ngx.req.set_uri_args('=hello&=world&k&%41%zz=1%2') local a = ngx.req.get_uri_args()
local n = 0 for _ in pairs(a) do n = n + 1 end ngx.say(n, ' ', tostring(a.k), ' ', a['A%zz'])",
            "2 true 1%2\n",
        ),
        ("local ok, err = pcall(function() ngx.req.get_uri_args({}) end) ngx.say(err)",
            "content:1: bad argument #1 to 'get_uri_args' (number expected, got table)\n"),
        ("local ok, err = pcall(function() ngx.req.get_uri_args(nil, 1) end) ngx.say(err)",
            "content:1: bad argument #2 to 'get_uri_args' (table expected, got number)\n"),
    ]);
}

#[test]
fn get_uri_args_truncates_at_100_by_default() {
    let query: Vec<String> = (0..101).map(|i| format!("k{i}={i}")).collect();
    let lua = "local a, err = ngx.req.get_uri_args() local n = 0 for _ in pairs(a) do n = n + 1 end
ngx.say(n, ' ', err, ' ', tostring(a.k100))";
    let outcome = serve(&engine(), &format!("/t?{}", query.join("&")), &[], &[(Phase::Content, lua)]);
    assert_eq!(outcome.body(), "100 truncated nil\n");
}

#[test]
fn get_post_args() {
    check(&[
        ("local a = ngx.req.get_post_args() ngx.say(a.p, ' ', table.concat(a.q, ','))", "1 x y,z\n"),
        ("local a, err = ngx.req.get_post_args(1) ngx.say(a.p, ' ', tostring(a.q), ' ', err)", "1 nil truncated\n"),
    ]);
    let engine = engine();
    let cases: [(Option<&'static [u8]>, &str); 2] = [
        (Some(b""), "0 nil\n"),
        (None, "content:1: no request body found; maybe you should turn on lua_need_request_body?\n"),
    ];
    let lua = "local ok, a, err = pcall(function() local a, err = ngx.req.get_post_args() return a, err end)
if not ok then ngx.say(a) return end
local n = 0 for _ in pairs(a) do n = n + 1 end ngx.say(n, ' ', err)";
    for (body, expected) in cases {
        let mut request = standard(&engine, "", body);
        let outcome = serve_request(&engine, &mut request, &[(Phase::Content, lua)]);
        assert_eq!(outcome.body(), expected);
    }
}

#[test]
fn set_header_and_clear_header() {
    check(&[
        ("ngx.req.set_header('X-Foo', 'baz') ngx.say(ngx.req.get_headers()['x-foo'], ' ', ngx.var.http_x_foo)", "baz baz\n"),
        (
            "ngx.req.set_header('X-Multi', {'a', 'b', 'c'})
ngx.say(table.concat(ngx.req.get_headers()['x-multi'], ','), ' ', ngx.var.http_x_multi)",
            "a,b,c a, b, c\n",
        ),
        ("ngx.req.set_header('X-New', 42) ngx.say(ngx.var.http_x_new)", "42\n"),
        ("ngx.req.set_header('X-Foo', nil) ngx.say(tostring(ngx.var.http_x_foo))", "nil\n"),
        ("ngx.req.clear_header('x-multi') ngx.say(tostring(ngx.req.get_headers()['x-multi']))", "nil\n"),
        (
            "ngx.req.set_header('X-Foo', {}) ngx.req.set_header('Host', '')
ngx.say(tostring(ngx.var.http_x_foo), ' ', tostring(ngx.var.http_host))",
            "nil nil\n",
        ),
        (
            "ngx.req.set_header('x-foo', 'new') local h = ngx.req.get_headers(nil, true) ngx.say(h['X-Foo'], ' ', tostring(h['x-foo']))",
            "new nil\n",
        ),
        ("ngx.req.set_header('X-Evil', 'a\\r\\nInjected: 1') ngx.say(ngx.var.http_x_evil)", "a%0D%0AInjected: 1\n"),
        (
            "ngx.req.set_header('X Bad:', 'v') for k, v in pairs(ngx.req.get_headers()) do if v == 'v' then ngx.say(k) end end",
            "x%20bad%3a\n",
        ),
        ("local ok, err = pcall(function() ngx.req.set_header('X', true) end) ngx.say(err)",
            "content:1: bad argument #2 to 'set_header' (string expected, got boolean)\n"),
        ("local ok, err = pcall(function() ngx.req.clear_header() end) ngx.say(err)",
            "content:1: bad argument #1 to 'set_header' (string expected, got nil)\n"),
    ]);
}

#[test]
fn set_uri() {
    check(&[
        (
            "ngx.req.set_uri('/new') ngx.say(ngx.var.uri, ' ', ngx.var.document_uri, ' ', ngx.var.request_uri)",
            "/new /new /t?a=1&b=2&b=3&flag&empty=&sp=a+b%20c\n",
        ),
        ("ngx.req.set_uri('/x', false) ngx.say(ngx.var.uri, ' ', ngx.var.args == ngx.var.query_string)", "/x true\n"),
        ("local ok, err = pcall(function() ngx.req.set_uri('') end) ngx.say(err)", "content:1: attempt to use zero-length uri\n"),
        (
            "local ok, err = pcall(function() ngx.req.set_uri('/a\\0b') end) ngx.say(err)",
            "content:1: ngx.req.set_uri unsafe byte \"0x00\" in \"/a\\x00b\" (maybe you want to set the 'binary' argument?)\n",
        ),
        ("ngx.req.set_uri('/a\\nb', false, true) ngx.say(#ngx.var.uri)", "4\n"),
        ("local ok, err = pcall(function() ngx.req.set_uri('/x', true) end) ngx.say(err)",
            "content:1: API disabled in the context of content\n"),
        ("local ok, err = pcall(function() ngx.req.set_uri('/x', 'yes') end) ngx.say(err)",
            "content:1: bad argument #2 to 'set_uri' (boolean expected, got string)\n"),
        ("local ok, err = pcall(function() ngx.req.set_uri({}) end) ngx.say(err)",
            "content:1: bad argument #1 to 'set_uri' (string expected, got table)\n"),
    ]);
}

#[test]
fn set_uri_jump_ends_rewrite_and_tells_the_host() {
    let engine = engine();
    let mut request = standard(&engine, "", None);
    let rewrite = engine.compile("rewrite", "ngx.req.set_uri('/jumped', true) ngx.ctx.after = true").unwrap();
    assert_eq!(request.run(Phase::Rewrite, &rewrite).unwrap(), Status::Ok);
    assert!(request.location_jump());
    assert_eq!(request.path(), b"/jumped");
    let content = engine.compile("content", "ngx.say(ngx.var.uri, ' ', tostring(ngx.ctx.after))").unwrap();
    assert_eq!(request.run(Phase::Content, &content).unwrap(), Status::Done);
    assert_eq!(request.response().body, b"/jumped nil\n");
    assert!(!request.location_jump(), "cleared by the next phase");
}

#[test]
fn set_uri_args() {
    check(&[
        ("ngx.req.set_uri_args('x=1 2&y') ngx.say(ngx.var.args, ' ', ngx.var.arg_x)", "x=1%202&y 1%202\n"),
        ("ngx.req.set_uri_args({b = {'1', '2 3'}}) ngx.say(ngx.var.args)", "b=1&b=2%203\n"),
        (
            "ngx.req.set_uri_args({a = true}) ngx.say(ngx.var.args) ngx.req.set_uri_args({a = false})
ngx.say(tostring(ngx.var.args)) ngx.req.set_uri_args({n = 3.5}) ngx.say(ngx.var.args)",
            "a\nnil\nn=3.5\n",
        ),
        (
            "ngx.req.set_uri_args({k = \"a&b=c/d~e!f\"}) ngx.say(ngx.var.args, ' ', ngx.req.get_uri_args().k)",
            "k=a%26b%3Dc%2Fd~e!f a&b=c/d~e!f\n",
        ),
        ("ngx.req.set_uri_args(42) ngx.say(ngx.var.args)", "42\n"),
        ("ngx.req.set_uri_args('z=9') ngx.say(ngx.var.request_uri)", "/t?a=1&b=2&b=3&flag&empty=&sp=a+b%20c\n"),
        (
            "local ok, err = pcall(function() ngx.req.set_uri_args(nil) end) ngx.say(err)",
            "content:1: bad argument #1 to 'set_uri_args' (string, number, or table expected, but got nil)\n",
        ),
        (
            "local ok, err = pcall(function() ngx.req.set_uri_args({a = print}) end) ngx.say(err)",
            "content:1: attempt to use function as query arg value\n",
        ),
        (
            "local ok, err = pcall(function() ngx.req.set_uri_args({'x'}) end) ngx.say(err)",
            "content:1: attempt to use a non-string key in the \"args\" option table\n",
        ),
    ]);
}

#[test]
fn set_method() {
    check(&[
        ("ngx.req.set_method(ngx.HTTP_POST) ngx.say(ngx.req.get_method(), ' ', ngx.var.request_method)", "POST POST\n"),
        (
            "ngx.req.set_method(ngx.HTTP_OPTIONS) ngx.say(ngx.var.request)",
            "GET /t?a=1&b=2&b=3&flag&empty=&sp=a+b%20c HTTP/1.1\n",
        ),
        (
            "local ok, err = pcall(function() ngx.req.set_method('GET') end) ngx.say(err)",
            "content:1: bad method number\n",
        ),
        (
            "local ok, err = pcall(function() ngx.req.set_method(3) end) ngx.say(err)",
            "content:1: unsupported HTTP method: 3\n",
        ),
    ]);
}

#[test]
fn http_version() {
    let engine = engine();
    let cases = [("", "1.1"), ("HTTP/1.0", "1"), ("HTTP/2.0", "2"), ("HTTP/0.9", "0.9"), ("HTTP/3", "nil")];
    for (version, expected) in cases {
        let mut request = standard(&engine, version, None);
        let lua = "ngx.say(ngx.req.http_version())";
        let outcome = serve_request(&engine, &mut request, &[(Phase::Content, lua)]);
        assert_eq!(outcome.body().trim_end(), expected, "{version}");
    }
}

#[test]
fn start_time_is_the_creation_time_in_every_phase() {
    let engine = engine();
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let before = now();
    let mut request = standard(&engine, "", None);
    let after = now();
    let outcome = serve_request(
        &engine,
        &mut request,
        &[
            (Phase::Rewrite, "ngx.ctx.t = ngx.req.start_time()"),
            (Phase::Content, "ngx.say(ngx.ctx.t == ngx.req.start_time(), ' ', string.format('%.3f', ngx.ctx.t))"),
        ],
    );
    let body = outcome.body();
    let (same, time) = body.trim_end().split_once(' ').unwrap();
    assert_eq!(same, "true");
    let time: f64 = time.parse().unwrap();
    assert!(time >= before - 0.001 && time <= after, "{before} <= {time} <= {after}");
}

#[test]
fn raw_header_rebuilds_the_received_head() {
    let head = "GET /t?a=1&b=2&b=3&flag&empty=&sp=a+b%20c HTTP/1.1\r\nHost: example.com\r\nX-Foo: bar\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n";
    let headers_only = &head[head.find("\r\n").unwrap() + 2..];
    check(&[
        ("ngx.print(ngx.req.raw_header())", head),
        ("ngx.print(ngx.req.raw_header(true))", headers_only),
        ("ngx.req.set_header('X-Foo', 'changed') ngx.req.set_method(ngx.HTTP_PUT) ngx.req.set_uri('/other') ngx.print(ngx.req.raw_header())", head),
    ]);
    let lua = "local ok, err = pcall(function() ngx.req.raw_header() end) ngx.say(err)";
    assert_eq!(content_on("HTTP/2.0", None, lua), "content:1: http2 requests not supported yet\n");
}

#[test]
fn phase_restrictions_follow_the_context_lines() {
    let cases: [(Phase, &str, Option<&str>); 22] = [
        (Phase::Log, "ngx.req.set_uri('/x')", Some("API disabled in the context of log")),
        (Phase::Log, "ngx.req.set_header('a', 'b')", Some("API disabled in the context of log")),
        (Phase::Log, "ngx.req.clear_header('a')", Some("API disabled in the context of log")),
        (Phase::Log, "ngx.req.set_uri_args('a=1')", Some("API disabled in the context of log")),
        (Phase::BodyFilter, "ngx.req.set_method(ngx.HTTP_POST)", Some("API disabled in the context of body_filter")),
        (Phase::BodyFilter, "ngx.req.http_version()", Some("API disabled in the context of body_filter")),
        (Phase::BodyFilter, "ngx.req.raw_header()", Some("API disabled in the context of body_filter")),
        (Phase::Access, "ngx.req.set_uri('/x', true)", Some("API disabled in the context of access")),
        (Phase::Log, "assert(ngx.req.get_post_args().p == '1')", None),
        (Phase::Log, "assert(ngx.req.get_uri_args().a == '1')", None),
        (Phase::Log, "assert(ngx.req.start_time() > 0 and ngx.req.get_method() == 'GET')", None),
        (Phase::HeaderFilter, "ngx.req.set_method(ngx.HTTP_PUT) assert(ngx.req.raw_header())", None),
        (Phase::BodyFilter, "ngx.req.set_uri('/x') ngx.req.set_header('a', 'b') ngx.req.set_uri_args('q')", None),
        (Phase::Rewrite, "ngx.req.set_uri('/x', true)", None),
        (Phase::HeaderFilter, "ngx.req.discard_body()", Some("API disabled in the context of header_filter")),
        (Phase::Log, "ngx.req.init_body()", Some("API disabled in the context of log")),
        (Phase::BodyFilter, "ngx.req.get_body_file()", Some("API disabled in the context of body_filter")),
        (Phase::Rewrite, "ngx.req.init_body() ngx.req.append_body('x') ngx.req.finish_body()", None),
        (Phase::Access, "ngx.req.discard_body() assert(ngx.req.get_body_file() == nil)", None),
        (Phase::Log, "assert(ngx.req.is_internal() == false)", None),
        (Phase::HeaderFilter, "ngx.req.set_body_data('x')", Some("API disabled in the context of header_filter")),
        (Phase::Access, "ngx.req.set_body_data('x')", None),
    ];
    let engine = engine();
    for (phase, lua, expected) in cases {
        let mut request = standard(&engine, "", Some(b"p=1"));
        let script = engine.compile(phase.name(), lua).unwrap();
        match (request.run(phase, &script), expected) {
            (Ok(_), None) => {}
            (Err(error), Some(message)) => assert!(error.message.contains(message), "{lua}: {error}"),
            (result, _) => panic!("{} {lua}: {result:?}", phase.name()),
        }
    }
}

#[test]
fn discard_body() {
    // lua-nginx-module: no body data afterwards, and get_post_args gives an empty table.
    check(&[(
        "ngx.req.discard_body() ngx.say(tostring(ngx.req.get_body_data()), ' ', next(ngx.req.get_post_args()))",
        "nil nil\n",
    )]);
    // Without a body from the host, read_body after discard_body has nothing to wait for.
    let engine = engine();
    let mut request = standard(&engine, "", None);
    let lua = "ngx.req.discard_body() ngx.req.read_body() ngx.say(tostring(ngx.req.get_body_data()))";
    let outcome = serve_request(&engine, &mut request, &[(Phase::Access, lua)]);
    assert_eq!((outcome.last(), outcome.body().as_str()), (Status::Done, "nil\n"));
    assert!(request.body_discarded());
    assert_eq!(request.body(), None);
    assert!(!standard(&engine, "", Some(b"x")).body_discarded());
}

#[test]
fn get_body_file_is_nil_as_bodies_stay_in_memory() {
    check(&[("ngx.say(tostring(ngx.req.get_body_file()), ' ', ngx.req.get_body_data())", "nil p=1&q=x+y&q=z\n")]);
}

#[test]
fn init_append_and_finish_body_replace_the_body() {
    check(&[
        // t/044-req-body.t: a new body written in pieces.
        (
            "ngx.req.init_body() ngx.req.append_body('hello, ') ngx.req.append_body('world') ngx.req.finish_body()
ngx.say('data: ', ngx.req.get_body_data())",
            "data: hello, world\n",
        ),
        (
            "ngx.req.init_body(128 * 1024) ngx.req.append_body('a=') ngx.req.append_body(42) ngx.req.finish_body()
ngx.say(ngx.req.get_post_args().a, ' ', ngx.req.get_headers()['content-length'])",
            "42 4\n",
        ),
        // Before finish_body the new body is what was appended so far.
        ("ngx.req.init_body() ngx.say('[', ngx.req.get_body_data(), ']')", "[]\n"),
        (
            "ngx.req.init_body() ngx.req.append_body('ab') ngx.req.set_header('X', 'y') ngx.req.append_body('cd')
ngx.req.finish_body() ngx.say(ngx.req.get_body_data())",
            "abcd\n",
        ),
        ("ngx.req.discard_body() ngx.req.init_body() ngx.req.append_body('z') ngx.req.finish_body() ngx.say(ngx.req.get_body_data())", "z\n"),
    ]);
    let engine = engine();
    let mut request = standard(&engine, "", Some(b"old"));
    let outcome = serve_request(
        &engine,
        &mut request,
        &[
            (Phase::Rewrite, "ngx.req.init_body() ngx.req.append_body('new body')"),
            (Phase::Access, "ngx.req.append_body('!') ngx.req.finish_body()"),
            (Phase::Content, "ngx.say(ngx.req.get_body_data())"),
        ],
    );
    assert_eq!(outcome.body(), "new body!\n");
    assert_eq!(request.body(), Some(&b"new body!"[..]));
    assert_eq!(request.header("Content-Length"), Some(&b"9"[..]));
}

#[test]
fn set_body_data_replaces_the_body() {
    check(&[
        // t/044-req-body.t: the new body and its Content-Length.
        (
            "ngx.req.set_body_data('hello') ngx.say(ngx.req.get_body_data(), ' ', ngx.req.get_headers()['content-length'])",
            "hello 5\n",
        ),
        ("ngx.req.set_body_data('a=1&b=2') local args = ngx.req.get_post_args() ngx.say(args.a, args.b, args.p)", "12nil\n"),
        ("ngx.req.set_body_data(42) ngx.say(ngx.req.get_body_data())", "42\n"),
        ("ngx.req.set_body_data('') ngx.say(ngx.req.get_headers()['content-length'])", "0\n"),
        ("ngx.req.set_body_data('one') ngx.req.set_body_data('two') ngx.say(ngx.req.get_body_data())", "two\n"),
        ("ngx.req.discard_body() ngx.req.set_body_data('z') ngx.say(ngx.req.get_body_data())", "z\n"),
        ("local ok, err = pcall(ngx.req.set_body_data) ngx.say(err)", "bad argument #1 to 'set_body_data' (string expected, got nil)\n"),
        ("local ok, err = pcall(ngx.req.set_body_data, {}) ngx.say(err)", "bad argument #1 to 'set_body_data' (string expected, got table)\n"),
    ]);
    let lua = "local ok, err = pcall(ngx.req.set_body_data, 'x') ngx.say(err)";
    assert_eq!(content_on("", None, lua), "request body not read yet\n");
}

#[test]
fn the_host_learns_whether_scripts_replaced_the_body() {
    let engine = engine();
    let cases: [(&str, Option<&[u8]>, bool); 5] = [
        ("ngx.req.read_body() ngx.req.get_body_data()", Some(b"old"), false),
        ("ngx.req.set_header('X', 'y') ngx.req.set_uri('/u')", Some(b"old"), false),
        ("ngx.req.set_body_data('changed')", Some(b"changed"), true),
        ("ngx.req.init_body() ngx.req.append_body('new') ngx.req.finish_body()", Some(b"new"), true),
        ("ngx.req.set_body_data('x') ngx.req.discard_body()", None, true),
    ];
    for (lua, body, changed) in cases {
        let mut request = standard(&engine, "", Some(b"old"));
        let outcome = serve_request(&engine, &mut request, &[(Phase::Access, lua)]);
        assert_eq!(outcome.last(), Status::Ok, "{lua}");
        assert_eq!((request.body(), request.body_changed()), (body, changed), "{lua}");
    }
    let mut request = standard(&engine, "", Some(b"old"));
    serve_request(&engine, &mut request, &[(Phase::Rewrite, "ngx.req.set_body_data('changed')")]);
    assert_eq!(request.header("Content-Length"), Some(&b"7"[..]));
    assert!(!standard(&engine, "", None).body_changed());
}

#[test]
fn body_rewrites_check_their_order() {
    check(&[
        (
            "local ok, err = pcall(ngx.req.append_body, 'x') ngx.say(err) ok, err = pcall(ngx.req.finish_body) ngx.say(err)",
            "request_body not initialized\nrequest_body not initialized\n",
        ),
        (
            "ngx.req.init_body() ngx.req.finish_body() local ok, err = pcall(ngx.req.append_body, 'x') ngx.say(err)",
            "request_body not initialized\n",
        ),
        ("local ok, err = pcall(ngx.req.init_body, -1) ngx.say(err)", "bad size argument: -1\n"),
        ("local ok, err = pcall(ngx.req.init_body, 'big') ngx.say(err)", "bad argument #1 to 'init_body' (number expected, got string)\n"),
        ("ngx.req.init_body() local ok, err = pcall(ngx.req.append_body) ngx.say(err)", "bad argument #1 to 'append_body' (string expected, got nil)\n"),
    ]);
    let lua = "local ok, err = pcall(ngx.req.init_body) ngx.say(err)";
    assert_eq!(content_on("", None, lua), "request body not read yet\n");
}

#[test]
fn is_internal_is_false_as_there_are_no_internal_redirects() {
    let engine = engine();
    run_everywhere(&engine, "assert(ngx.req.is_internal() == false)");
}

#[test]
fn rewrites_reach_later_phases_and_the_host() {
    let engine = engine();
    let mut request = standard(&engine, "", None);
    let outcome = serve_request(
        &engine,
        &mut request,
        &[
            (
                Phase::Rewrite,
                "ngx.req.set_uri('/r') ngx.req.set_uri_args({k = 'v w'}) ngx.req.set_header('X-Auth', 'tok')
ngx.req.clear_header('X-Foo') ngx.req.set_method(ngx.HTTP_PUT)",
            ),
            (Phase::Access, "ngx.req.set_header('X-Multi', 'one')"),
            (
                Phase::Content,
                "local h = ngx.req.get_headers()
ngx.say(ngx.var.uri, ' ', ngx.var.args, ' ', ngx.req.get_method(), ' ', h.x_auth, ' ', tostring(h.x_foo), ' ', h.x_multi)",
            ),
        ],
    );
    assert_eq!(outcome.body(), "/r k=v%20w PUT tok nil one\n");
    assert_eq!(request.method(), b"PUT");
    assert_eq!(request.path(), b"/r");
    assert_eq!(request.query(), b"k=v%20w");
    assert_eq!(request.header("x-auth"), Some(&b"tok"[..]));
    assert_eq!(request.header("X-Foo"), None);
    let headers: Vec<(&[u8], &[u8])> = request.headers().collect();
    assert_eq!(
        headers,
        [(&b"Host"[..], &b"example.com"[..]), (b"X-Multi", b"one"), (b"X-Auth", b"tok")],
        "a replaced header keeps its place, added ones come last"
    );
}
