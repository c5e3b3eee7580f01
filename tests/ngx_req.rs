//! ngx.req.get_headers, get_method, get_body_data, and ngx.ctx.

mod common;

use common::*;
use luaengine::{Phase, RequestInit};

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
