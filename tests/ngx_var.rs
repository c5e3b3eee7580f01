//! ngx.var: variables computed from the request snapshot.

mod common;

use common::*;
use luaengine::{Engine, EngineConfig, Phase, RequestInit};

fn var(name: &str) -> String {
    let engine = Engine::new(EngineConfig { workers: 1, ..Default::default() }).unwrap();
    let init = RequestInit {
        method: b"POST",
        path: b"/a/b",
        query: b"x=1&Y=two&flag",
        http_version: b"HTTP/1.0",
        scheme: b"https",
        remote_addr: b"10.1.2.3",
        body: None,
    };
    let headers = [
        (&b"Host"[..], &b"Example.COM:8443"[..]),
        (b"User-Agent", b"curl/8"),
        (b"Accept", b"a"),
        (b"Accept", b"b"),
        (b"Cookie", b"sid=abc; theme=dark"),
        (b"Content-Type", b"text/plain"),
        (b"Content-Length", b"12"),
    ];
    let mut request = engine.new_request(&init, headers, None);
    let outcome =
        serve_request(&engine, &mut request, &[(Phase::Content, &format!("ngx.say(tostring(ngx.var.{name}))"))]);
    outcome.body().trim_end().to_string()
}

#[test]
fn request_variables() {
    let cases = [
        ("uri", "/a/b"),
        ("document_uri", "/a/b"),
        ("request_uri", "/a/b?x=1&Y=two&flag"),
        ("args", "x=1&Y=two&flag"),
        ("query_string", "x=1&Y=two&flag"),
        ("is_args", "?"),
        ("request_method", "POST"),
        ("host", "example.com"),
        ("remote_addr", "10.1.2.3"),
        ("scheme", "https"),
        ("server_protocol", "HTTP/1.0"),
        ("content_type", "text/plain"),
        ("content_length", "12"),
        ("http_user_agent", "curl/8"),
        ("http_accept", "a, b"),
        ("arg_x", "1"),
        ("arg_y", "two"),
        ("arg_flag", ""),
        ("arg_missing", "nil"),
        ("cookie_theme", "dark"),
        ("cookie_none", "nil"),
        ("no_such_variable", "nil"),
    ];
    for (name, expected) in cases {
        assert_eq!(var(name), expected, "$${name}");
    }
}

#[test]
fn variables_without_a_query() {
    assert_eq!(
        content("ngx.say(tostring(ngx.var.args), ' [', ngx.var.is_args, '] ', ngx.var.request_uri)"),
        "nil [] /t\n"
    );
}

#[test]
fn status_and_request_time() {
    let body = content(
        "ngx.say(ngx.var.status) ngx.status = 204 ngx.say(ngx.var.status, ' ', tonumber(ngx.var.request_time) >= 0)",
    );
    assert_eq!(body, "000\n200 true\n");
}

#[test]
fn unknown_variables_cannot_be_written() {
    let body = content("local ok, err = pcall(function() ngx.var.foo = 1 end) ngx.say(err)");
    assert!(body.contains("variable \"foo\" not found for writing"), "{body}");
}
