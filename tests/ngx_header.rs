//! ngx.header.HEADER and ngx.resp.get_headers, after lua-nginx-module's t/016-resp-header.t.

mod common;

use common::*;
use luaengine::{EngineConfig, LogLevel, Phase, Response};

/// The response headers as (name, value) strings.
fn headers(response: &Response) -> Vec<(String, String)> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    response.headers.iter().map(|(name, value)| (text(name), text(value))).collect()
}

/// The response a content snippet produces on `GET /t`.
fn content_response(lua: &str) -> Response {
    let outcome = serve(&engine(), "/t", &[], &[(Phase::Content, lua)]);
    if let Some(error) = &outcome.error {
        panic!("content failed: {error}");
    }
    outcome.response
}

#[test]
fn headers_read_back_as_set() {
    let cases = [
        (r#"ngx.header.content_type = "text/my-plain" ngx.say(ngx.header.content_type)"#, "text/my-plain\n"),
        (r#"ngx.header["X-Foo"] = "a" ngx.say(ngx.header.x_foo, ngx.header["x-foo"], ngx.header["X-FOO"])"#, "aaa\n"),
        (r#"ngx.header.foo_bar = "Hello" ngx.say(ngx.header.foo_bar, " ", ngx.header["foo-bar"])"#, "Hello Hello\n"),
        ("ngx.say(ngx.header.foo)", "nil\n"),
        (r#"ngx.header.foo = {"bah", "baz", "blah"} ngx.header.foo = nil ngx.say(ngx.header.foo)"#, "nil\n"),
        (r#"ngx.header.baz = {"bah", "blah"} ngx.say(table.concat(ngx.header.baz, ", "))"#, "bah, blah\n"),
        (
            "ngx.header.content_length = 2 ngx.say(ngx.header.content_length, type(ngx.header.content_length))",
            "2string\n",
        ),
        (r#"ngx.header[32] = "private" ngx.say(ngx.header[32], ngx.header["32"])"#, "privateprivate\n"),
        (r#"ngx.header.foo = {32, true, 1.5} ngx.say(table.concat(ngx.header.foo, ","))"#, "32,true,1.5\n"),
        ("ngx.header.f = print ngx.say(ngx.header.f:sub(1, 9))", "function:\n"),
        (
            r#"ngx.header.cache_control = {"private", "no-store"} ngx.header.cache_control = {"no-cache"}
               ngx.say(ngx.header.cache_control)"#,
            "no-cache\n",
        ),
        (r#"ngx.header.content_type = {"a", "bc"} ngx.say(ngx.header.content_type)"#, "bc\n"),
        (r#"ngx.header.foo = "x" ngx.header.foo = "" ngx.say(ngx.header.foo)"#, "nil\n"),
        (r#"ngx.say(ngx.header["content-type"])"#, "nil\n"),
        (r#"ngx.print("hello, ") ngx.say(ngx.header.content_type)"#, "hello, text/plain\n"),
        (
            r#"for i = 1, 50 do ngx.header["X-Direct-" .. i] = "v" .. i end
               for i = 1, 49 do ngx.header["X-Direct-" .. i] = nil end
               ngx.say(ngx.header["X-Direct-50"], ngx.header["X-Direct-49"])"#,
            "v50nil\n",
        ),
        (r#"local s = "content_type" local v = ngx.header[s] ngx.say(s, " ", v)"#, "content_type nil\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn response_headers_follow_nginx() {
    let ct = ("Content-Type", "text/plain");
    let cases: [(&str, Vec<(&str, &str)>); 14] = [
        (r#"ngx.header["X-Foo"] = {"a", "bc"} ngx.say("Hello")"#, vec![("X-Foo", "a"), ("X-Foo", "bc"), ct]),
        (
            r#"ngx.header["Foo"] = {"c", "d"} ngx.header["Foo"] = {} ngx.header["Foo"] = {"a", "b"}"#,
            vec![("Foo", "a"), ("Foo", "b"), ct],
        ),
        ("ngx.header.content_length = 3 ngx.header.content_length = nil", vec![ct]),
        (
            r#"ngx.header.content_type = "text/my-plain" ngx.header.content_type = "text/my-plain-2" ngx.say("Hi")"#,
            vec![("Content-Type", "text/my-plain-2")],
        ),
        (r#"ngx.header["Content-Type"] = nil ngx.say("foo")"#, vec![]),
        (r#"ngx.header.blah = "foo" ngx.say("foo")"#, vec![("blah", "foo"), ct]),
        (r#"ngx.header.foo = "1" ngx.header.bar = "2" ngx.header.foo = "3""#, vec![("foo", "3"), ("bar", "2"), ct]),
        (r#"ngx.header.Foo = "a" ngx.header.FOO = "b""#, vec![("FOO", "b"), ct]),
        (r#"ngx.header.last_modified = {"a", "b"}"#, vec![("last-modified", "b"), ct]),
        (r#"ngx.header.etag = {"a", ""}"#, vec![ct]),
        (r#"ngx.header.header = "value\rfoo:bar\nbar:foo""#, vec![("header", "value%0Dfoo:bar%0Abar:foo"), ct]),
        (r#"ngx.header["header: value\rfoo"] = "xx""#, vec![("header%3A%20value%0Dfoo", "xx"), ct]),
        (r#"ngx.header.x = "tab\there é""#, vec![("x", "tab\there é"), ct]),
        (
            r#"ngx.status = 302 ngx.header["Location"] = "http://agentzh.org/foo""#,
            vec![("Location", "http://agentzh.org/foo"), ct],
        ),
    ];
    for (lua, expected) in cases {
        let expected: Vec<(String, String)> = expected.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(headers(&content_response(lua)), expected, "{lua}");
    }
}

#[test]
fn content_length_must_be_a_number() {
    let body =
        content(r#"local ok, err = pcall(function() ngx.header.content_length = "text/my-plain" end) ngx.say(err)"#);
    assert_eq!(body, "content:1: failed to set header\n");
}

#[test]
fn the_default_type_is_added_when_the_headers_are_sent() {
    let html = engine_with(EngineConfig { workers: 1, default_type: "text/html".into(), ..Default::default() });
    let said = serve(&html, "/", &[], &[(Phase::Content, "ngx.say('x')")]);
    assert_eq!(said.response.header("content-type"), Some(&b"text/html"[..]));
    let none = engine_with(EngineConfig { workers: 1, default_type: String::new(), ..Default::default() });
    let bare = serve(&none, "/", &[], &[(Phase::Content, "ngx.say('x')")]);
    assert_eq!(headers(&bare.response), []);
    let cases = [
        // (phases, Content-Type expected, headers sent)
        (vec![(Phase::Content, "ngx.exit(201)")], true, true),
        (vec![(Phase::Content, "ngx.exit(ngx.OK)")], true, true),
        (vec![(Phase::Access, "ngx.exit(ngx.HTTP_OK)")], true, true),
        (vec![(Phase::Content, "ngx.exit(204)")], false, false),
        (vec![(Phase::Content, "ngx.exit(404)")], false, false),
        (vec![(Phase::Content, "ngx.status = 304 ngx.say('')")], false, true),
        (
            vec![(Phase::Rewrite, "ngx.header.blah = 'foo'"), (Phase::Access, "local h = ngx.header.content_length")],
            false,
            false,
        ),
    ];
    for (phases, content_type, sent) in cases {
        let outcome = serve(&engine(), "/", &[], &phases);
        let found = outcome.response.header("content-type").is_some();
        assert_eq!((found, outcome.response.headers_sent), (content_type, sent), "{phases:?}");
    }
}

#[test]
fn header_filter_rewrites_headers_after_content_output() {
    let engine = engine();
    let mut request = request(&engine, "/", &[]);
    let (results, response) = run_all(
        &engine,
        &mut request,
        &[
            (Phase::Content, "ngx.header.baz = {'bah', 'hah'} ngx.print('Hello')"),
            (
                Phase::HeaderFilter,
                "ngx.header.baz = {'foo', ngx.header.content_type} ngx.header.content_type = 'text/blah' ngx.status = 201",
            ),
            (Phase::Log, "assert(ngx.header.content_type == 'text/blah') assert(#ngx.header.baz == 2)"),
        ],
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(response.status, 201);
    assert_eq!(
        headers(&response),
        [("baz", "foo"), ("baz", "text/plain"), ("Content-Type", "text/blah")].map(|(n, v)| (n.into(), v.into()))
    );
}

#[test]
fn setting_after_the_headers_went_out_logs_and_changes_nothing() {
    let cases = [
        (
            vec![(Phase::Content, "ngx.print('hello') ngx.header.content_type = 'text/foo'")],
            Phase::Content,
            "content:1",
        ),
        (
            vec![(Phase::Content, "ngx.say('x')"), (Phase::BodyFilter, "ngx.header.foo = 'bar'")],
            Phase::BodyFilter,
            "body_filter:1",
        ),
        (vec![(Phase::Log, "\nngx.header.foo = 'bar'")], Phase::Log, "log:2"),
    ];
    for (phases, phase, location) in cases {
        let (engine, lines) = logging_engine(LogLevel::Debug);
        let mut request = request(&engine, "/", &[]);
        let (results, response) = run_all(&engine, &mut request, &phases);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(response.header("foo").is_none() && response.header("content-type") != Some(b"text/foo"));
        let message = "attempt to set ngx.header.HEADER after sending out response headers".to_string();
        let expected = (LogLevel::Err, Some(phase), location.to_string(), message, request.id());
        assert_eq!(lines.lock().unwrap().as_slice(), [expected], "{phases:?}");
    }
}

#[test]
fn resp_get_headers_reads_the_response_headers() {
    let cases = [
        (
            r#"ngx.header["Foo"] = "bar" ngx.header["Bar"] = "baz"
               local h = ngx.resp.get_headers()
               ngx.say(h["Foo"], " ", h.foo, " ", h["Bar"], " ", h.bar)"#,
            "bar bar baz baz\n",
        ),
        (
            r#"ngx.header["Foo"] = "bar" ngx.header["Bar"] = "baz"
               local h = {} for k, v in pairs(ngx.resp.get_headers(nil, true)) do h[k] = v end
               ngx.say(h.Foo, " ", h.foo, " ", h.Bar, " ", h.bar)"#,
            "bar nil baz nil\n",
        ),
        (
            r#"ngx.header["Foo"] = "bar" ngx.header["Foo"] = nil ngx.header["Bar"] = "baz"
               local h = ngx.resp.get_headers() ngx.say(h.foo, " ", h.bar)"#,
            "nil baz\n",
        ),
        (
            r#"ngx.header.x_multi = {"a", "b"} local h = ngx.resp.get_headers()
               ngx.say(table.concat(h.x_multi, ","), " ", h.content_type)"#,
            "a,b nil\n",
        ),
        (r#"ngx.say("x") local h = ngx.resp.get_headers() ngx.say(h["Content-Type"])"#, "x\ntext/plain\n"),
        (
            r#"for i = 1, 101 do ngx.header["Foo" .. i] = "Foo" end
               local h, err = ngx.resp.get_headers() local n = 0 for _ in pairs(h) do n = n + 1 end
               ngx.say(err, " ", n)"#,
            "truncated 100\n",
        ),
        (
            r#"for i = 1, 100 do ngx.header["Foo" .. i] = "Foo" end
               local h, err = ngx.resp.get_headers() local n = 0 for _ in pairs(h) do n = n + 1 end
               ngx.say(err, " ", n)"#,
            "nil 100\n",
        ),
        (
            r#"for i = 1, 4 do ngx.header["Foo" .. i] = "Foo" end
               local h, err = ngx.resp.get_headers(3) local n = 0 for _ in pairs(h) do n = n + 1 end
               local all = 0 for _ in pairs(ngx.resp.get_headers(0)) do all = all + 1 end
               ngx.say(err, " ", n, " ", all)"#,
            "truncated 3 4\n",
        ),
        // A negative max is the default of 100, as in lua-resty-core.
        (r#"ngx.header.a = 1 local h, err = ngx.resp.get_headers(-1) ngx.say(h.a, " ", err)"#, "1 nil\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn header_api_phases() {
    run_everywhere(&engine(), "local v = ngx.header.foo local h = ngx.resp.get_headers()");
}
