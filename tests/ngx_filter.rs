//! header_filter and body_filter on the host's response, ngx.arg, and what log sees (after
//! lua-nginx-module's t/082-body-filter.t and t/075-logby.t).

mod common;

use common::*;
use luaengine::{BodyChunk, Engine, Phase, Request, Status};

/// Runs body_filter `lua` on each chunk (the last with eof) and returns what came out.
fn filter_chunks(engine: &Engine, request: &mut Request, lua: &str, chunks: &[&str]) -> Vec<BodyChunk> {
    let script = engine.compile("body_filter", lua).unwrap();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let eof = i + 1 == chunks.len();
            assert_eq!(request.filter_body(&script, chunk.as_bytes(), eof).unwrap(), Status::Ok);
            request.filtered_chunk().clone()
        })
        .collect()
}

fn bodies(chunks: &[BodyChunk]) -> Vec<(String, bool)> {
    chunks.iter().map(|c| (String::from_utf8_lossy(&c.data).into_owned(), c.eof)).collect()
}

#[test]
fn body_filter_rewrites_each_chunk() {
    let engine = engine();
    let cases: [(&str, &[(&str, bool)]); 6] = [
        ("ngx.arg[1] = string.upper(ngx.arg[1])", &[("HELLO ", false), ("WORLD", true)]),
        ("if ngx.arg[2] then ngx.arg[1] = ngx.arg[1] .. '!' end", &[("hello ", false), ("world!", true)]),
        ("ngx.arg[1] = nil", &[("", false), ("", true)]),
        ("ngx.arg[1] = {ngx.arg[1], '|', 1}", &[("hello |1", false), ("world|1", true)]),
        ("ngx.arg[1] = tostring(ngx.arg[2])", &[("false", false), ("true", true)]),
        // Setting eof ends the body early: the host sends nothing after that chunk.
        ("ngx.arg[2] = true", &[("hello ", true), ("world", true)]),
    ];
    for (lua, expected) in cases {
        let mut request = request(&engine, "/t", &[]);
        let out = filter_chunks(&engine, &mut request, lua, &["hello ", "world"]);
        let expected: Vec<(String, bool)> = expected.iter().map(|(s, eof)| (s.to_string(), *eof)).collect();
        assert_eq!(bodies(&out), expected, "{lua}");
    }
}

#[test]
fn body_filter_on_what_content_said() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let phases = [
        (Phase::Content, "ngx.say('hello')"),
        (Phase::HeaderFilter, "ngx.header.content_length = nil ngx.header['X-Filtered'] = 'yes'"),
        (Phase::BodyFilter, "ngx.arg[1] = ngx.arg[1]:gsub('hello', 'bye') .. '-- eof: ' .. tostring(ngx.arg[2])"),
        (Phase::Log, "ngx.log(ngx.ERR, 'unused')"),
    ];
    let (results, response) = run_all(&engine, &mut request, &phases);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(String::from_utf8_lossy(&response.body), "bye\n-- eof: true");
    assert_eq!(response.header("X-Filtered"), Some(&b"yes"[..]));
}

#[test]
fn ngx_arg_belongs_to_body_filter() {
    let cases = [
        ("ngx.say(ngx.arg[1], ' ', ngx.arg[2])", "nil nil\n"),
        (
            "local ok, err = pcall(function() ngx.arg[1] = 'x' end) ngx.say(err)",
            "content:1: API disabled in the context of content\n",
        ),
    ];
    for (lua, body) in cases {
        assert_eq!(content(lua), body, "{lua}");
    }
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let script = engine.compile("body_filter", "ngx.arg[3] = 'x'").unwrap();
    let error = request.filter_body(&script, b"a", true).unwrap_err();
    assert_eq!(error.message, "body_filter:1: attempt to write to ngx.arg with an index other than 1 or 2");
    let script = engine.compile("body_filter", "ngx.arg[1] = print").unwrap();
    let error = request.filter_body(&script, b"a", true).unwrap_err();
    assert!(error.message.contains("body chunk"), "{}", error.message);
}

#[test]
fn header_filter_sees_and_changes_the_hosts_response() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let upstream = [(&b"Content-Type"[..], &b"text/html"[..]), (b"Content-Length", b"12"), (b"X-Upstream", b"a")];
    request.set_response(404, upstream).unwrap();
    let lua = "ngx.header['X-Status'] = ngx.status ngx.header.x_upstream = nil
               ngx.header.content_length = nil
               if ngx.status == 404 then ngx.status = 410 end
               ngx.header['X-Type'] = ngx.header.content_type";
    let script = engine.compile("header_filter", lua).unwrap();
    assert_eq!(request.run(Phase::HeaderFilter, &script).unwrap(), Status::Ok);
    let response = request.response();
    assert_eq!(response.status, 410);
    assert_eq!(response.header("X-Status"), Some(&b"404"[..]));
    assert_eq!(response.header("X-Type"), Some(&b"text/html"[..]));
    assert_eq!(response.header("X-Upstream"), None);
    assert_eq!(response.header("Content-Length"), None);
}

#[test]
fn log_sees_the_final_response() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let phases = [
        (Phase::Content, "ngx.status = 201 ngx.header['X-A'] = '1' ngx.print('0123456789')"),
        (Phase::BodyFilter, "ngx.arg[1] = ngx.arg[1]:sub(1, 4)"),
        (
            Phase::Log,
            "ngx.var.summary = table.concat({ngx.status, ngx.header['X-A'], ngx.var.body_bytes_sent, \
             tostring(tonumber(ngx.var.request_time) >= 0)}, ' ')",
        ),
    ];
    let (results, _) = run_all(&engine, &mut request, &phases);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(request.variable("summary"), Some(&b"201 1 4 true"[..]));

    let mut unfiltered = common::request(&engine, "/t", &[]);
    let (_, _) = run_all(
        &engine,
        &mut unfiltered,
        &[(Phase::Content, "ngx.print('abc')"), (Phase::Log, "ngx.var.sent = ngx.var.body_bytes_sent")],
    );
    assert_eq!(unfiltered.variable("sent"), Some(&b"3"[..]));
}

#[test]
fn errors_in_filters_fail_the_phase() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let script = engine.compile("body_filter", "error('bad chunk')").unwrap();
    let error = request.filter_body(&script, b"x", false).unwrap_err();
    assert_eq!(error.message, "body_filter:1: bad chunk");
    let outcome = serve(&engine, "/", &[], &[(Phase::BodyFilter, "ngx.exit(200)")]);
    assert_eq!(outcome.error().message, "body_filter:1: API disabled in the context of body_filter");
    let outcome = serve(&engine, "/", &[], &[(Phase::BodyFilter, "ngx.sleep(0.1)")]);
    assert_eq!(outcome.error().message, "body_filter:1: API disabled in the context of body_filter");
}
