//! ngx.say, ngx.print, ngx.flush, ngx.exit, ngx.redirect, ngx.status, ngx.headers_sent.

mod common;

use common::*;
use luaengine::{ErrorCode, LogLevel, Phase, Status};

#[test]
fn say_and_print_write_scalars_and_iolists() {
    let cases = [
        (r#"ngx.say("hello")"#, "hello\n"),
        (r#"ngx.print("a", "b") ngx.print("c")"#, "abc"),
        (r#"ngx.say(1, " ", 2.5, " ", -3, " ", 1e20, " ", 0.1)"#, "1 2.5 -3 1e+20 0.1\n"),
        (r#"ngx.say(true, false, nil)"#, "truefalsenil\n"),
        (r#"ngx.say(ngx.null)"#, "null\n"),
        (r#"ngx.say({"a", {"b", 1}, "c"})"#, "ab1c\n"),
        (r#"ngx.say({})"#, "\n"),
        (r#"ngx.say()"#, "\n"),
        (r#"ngx.print("bin\0ary")"#, "bin\0ary"),
        (r#"ngx.say(ngx.say("x"))"#, "x\n1\n"),
        // Up to four strings take a joined fast path; other arguments the generic one.
        (r#"ngx.say("a", "b") ngx.say("a", "b", "c") ngx.print("a", "b", "c", "d")"#, "ab\nabc\nabcd"),
        (r#"ngx.say("a", "b", "c", "d", "e") ngx.say("a", 1) ngx.say("a", "b", nil)"#, "abcde\na1\nabnil\n"),
        (r#"ngx.print("\0", "\0x") ngx.say(1, "b")"#, "\0\0x1b\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn say_refuses_other_types_with_lua_nginx_module_messages() {
    let cases = [
        ("ngx.say(function() end)", "bad argument #1 to 'say' (string, number, boolean, nil, ngx.null, or array table expected, but got function)"),
        ("ngx.print('ok', {a = 1})", "bad argument #2 to 'print' (non-array table found)"),
        ("ngx.say({function() end})", "bad argument #1 to 'say' (bad data type function found)"),
    ];
    assert_errors(&cases);
}

#[test]
fn output_sets_status_200_and_headers_sent() {
    let outcome = serve(
        &engine(),
        "/",
        &[],
        &[(Phase::Content, "ngx.say(ngx.headers_sent) ngx.say(ngx.headers_sent, ' ', ngx.status)")],
    );
    assert_eq!(outcome.body(), "false\ntrue 200\n");
    assert!(outcome.response.headers_sent);
}

#[test]
fn status_is_read_and_written() {
    let outcome = serve(&engine(), "/", &[], &[(Phase::Content, "ngx.status = 201 ngx.say(ngx.status)")]);
    assert_eq!((outcome.response.status, outcome.body().as_str()), (201, "201\n"));
    let ignored = serve(&engine(), "/", &[], &[(Phase::Content, "ngx.say('x') ngx.status = 500")]);
    assert_eq!(ignored.response.status, 200, "a status set after the headers went out is ignored, as in nginx");
    let bad = content("local ok, err = pcall(function() ngx.status = 'abc' end) ngx.say(err)");
    assert_eq!(bad, "content:1: bad argument #1 to 'status' (number expected, got string)\n");
}

#[test]
fn flush_sends_the_headers() {
    let outcome =
        serve(&engine(), "/", &[], &[(Phase::Access, "ngx.flush()"), (Phase::Content, "ngx.say('unreached')")]);
    assert_eq!(outcome.statuses, [Status::Done]);
    assert!(outcome.response.headers_sent);
}

#[test]
fn exit_with_a_status_in_content_finishes_with_it() {
    let outcome = serve(&engine(), "/", &[], &[(Phase::Content, "ngx.exit(404)")]);
    assert_eq!((outcome.last(), outcome.response.status, outcome.response.exit_code), (Status::Done, 404, Some(404)));
}

#[test]
fn exit_after_output_keeps_the_status() {
    let outcome = serve(&engine(), "/", &[], &[(Phase::Content, "ngx.say('partial') ngx.exit(500)")]);
    assert_eq!((outcome.response.status, outcome.body().as_str()), (200, "partial\n"));
}

#[test]
fn exit_in_rewrite_with_200_finishes_the_request() {
    let outcome = serve(
        &engine(),
        "/",
        &[],
        &[(Phase::Rewrite, "ngx.say('done early') return ngx.exit(ngx.HTTP_OK)"), (Phase::Content, "error('no')")],
    );
    assert_eq!((outcome.statuses.as_slice(), outcome.body().as_str()), ([Status::Done].as_slice(), "done early\n"));
}

#[test]
fn exit_needs_a_number() {
    let body = content("local ok, err = pcall(ngx.exit, 'x') ngx.say(err)");
    assert_eq!(body, "bad argument #1 to 'exit' (number expected, got string)\n");
}

#[test]
fn exit_is_disabled_in_body_filter_and_log() {
    for phase in [Phase::BodyFilter, Phase::Log] {
        let outcome = serve(&engine(), "/", &[], &[(phase, "ngx.exit(200)")]);
        assert_eq!(outcome.error().code, ErrorCode::Runtime);
        assert!(
            outcome.error().message.ends_with(&format!("API disabled in the context of {}", phase.name())),
            "{:?}",
            outcome.error
        );
    }
}

#[test]
fn redirect_sets_location_and_status() {
    let outcome = serve(&engine(), "/", &[], &[(Phase::Access, "return ngx.redirect('/login?next=/t')")]);
    assert_eq!((outcome.last(), outcome.response.status), (Status::Done, 302));
    assert_eq!(outcome.response.header("location"), Some(&b"/login?next=/t"[..]));
    let permanent = serve(
        &engine(),
        "/",
        &[],
        &[(Phase::Content, "ngx.redirect('https://example.com/', ngx.HTTP_MOVED_PERMANENTLY)")],
    );
    assert_eq!(permanent.response.status, 301);
}

#[test]
fn redirect_checks_its_arguments() {
    let body = content("local ok, err = pcall(ngx.redirect, '/x', 200) ngx.say(err)");
    assert!(body.starts_with("only ngx.HTTP_MOVED_TEMPORARILY"), "{body}");
    let body = content("ngx.say('sent') local ok, err = pcall(ngx.redirect, '/x') ngx.say(err)");
    assert_eq!(body, "sent\nattempt to call ngx.redirect after sending out the headers\n");
}

#[test]
fn output_is_disabled_in_filters_and_log() {
    let outcome = serve(&engine(), "/", &[], &[(Phase::Log, "ngx.say('x')")]);
    assert!(outcome.error().message.ends_with("API disabled in the context of log"), "{:?}", outcome.error);
}

#[test]
fn constants_match_nginx() {
    let body = content("ngx.say(ngx.OK, ' ', ngx.ERROR, ' ', ngx.AGAIN, ' ', ngx.DONE, ' ', ngx.DECLINED, ' ', ngx.HTTP_FORBIDDEN, ' ', ngx.HTTP_GET, ' ', ngx.ERR, ' ', ngx.DEBUG)");
    assert_eq!(body, "0 -1 -2 -4 -5 403 2 4 8\n");
}

/// Phases to run, then the statuses they return, the response status, whether the headers
/// were sent, and the body.
type ExitCase = (Vec<(Phase, &'static str)>, Vec<Status>, u16, bool, &'static str);

#[test]
fn exit_follows_each_phase() {
    let cases: [ExitCase; 9] = [
        (vec![(Phase::Access, "ngx.exit(404)"), (Phase::Content, "error('no')")], vec![Status::Done], 404, false, ""),
        (vec![(Phase::Content, "ngx.exit(201)")], vec![Status::Done], 201, true, ""),
        (
            vec![
                (Phase::Rewrite, "ngx.exit(ngx.OK) error('no')"),
                (Phase::Access, "ngx.ctx.a = 1"),
                (Phase::Content, "ngx.say(ngx.ctx.a)"),
            ],
            vec![Status::Ok, Status::Ok, Status::Done],
            200,
            true,
            "1\n",
        ),
        (
            vec![(Phase::Access, "ngx.exit(ngx.HTTP_OK)"), (Phase::Content, "error('no')")],
            vec![Status::Done],
            200,
            true,
            "",
        ),
        (vec![(Phase::Content, "ngx.status = 201 ngx.exit(ngx.HTTP_OK)")], vec![Status::Done], 201, true, ""),
        (vec![(Phase::Access, "ngx.status = 500 ngx.exit(403)")], vec![Status::Done], 403, false, ""),
        (vec![(Phase::Content, "ngx.exit(204)")], vec![Status::Done], 204, false, ""),
        (vec![(Phase::Content, "ngx.header.foo = 'bar'")], vec![Status::Done], 200, true, ""),
        (
            vec![(Phase::Rewrite, "ngx.exit(ngx.DECLINED)"), (Phase::Content, "ngx.print('c')")],
            vec![Status::Ok, Status::Done],
            200,
            true,
            "c",
        ),
    ];
    for (phases, statuses, status, sent, body) in cases {
        let outcome = serve(&engine(), "/", &[], &phases);
        assert!(outcome.error.is_none(), "{phases:?}: {:?}", outcome.error);
        let got = (outcome.statuses.clone(), outcome.response.status, outcome.response.headers_sent, outcome.body());
        assert_eq!(got, (statuses, status, sent, body.to_string()), "{phases:?}");
    }
}

#[test]
fn exit_error_aborts_in_every_phase_that_may_exit() {
    for phase in [Phase::Rewrite, Phase::Access, Phase::Content, Phase::HeaderFilter] {
        let outcome = serve(&engine(), "/", &[], &[(phase, "ngx.exit(ngx.ERROR)")]);
        assert_eq!(outcome.error().code, ErrorCode::Aborted, "{phase:?}");
    }
}

#[test]
fn an_error_exit_after_the_headers_went_out_is_logged_and_ends_with_200() {
    let (engine, lines) = logging_engine(LogLevel::Debug);
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, "ngx.say('partial')\nngx.exit(500)")]);
    assert_eq!((outcome.response.status, outcome.response.exit_code), (200, Some(200)));
    let (level, phase, location, message, _) = lines.lock().unwrap()[0].clone();
    assert_eq!((level, phase, location.as_str()), (LogLevel::Err, Some(Phase::Content), "content:2"));
    assert_eq!(message, "attempt to set status 500 via ngx.exit after sending out the response status 200");
}

#[test]
fn status_can_change_until_header_filter_and_not_after() {
    let (engine, lines) = logging_engine(LogLevel::Debug);
    let mut request = request(&engine, "/", &[]);
    let (results, response) = run_all(
        &engine,
        &mut request,
        &[
            (Phase::Content, "ngx.say('x') ngx.status = 500"),
            (Phase::HeaderFilter, "ngx.status = 201"),
            (Phase::BodyFilter, "ngx.status = 202"),
            (Phase::Log, "ngx.status = 203"),
        ],
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(response.status, 201);
    let logged: Vec<(Option<Phase>, String)> = lines.lock().unwrap().iter().map(|l| (l.1, l.3.clone())).collect();
    let message = "attempt to set ngx.status after sending out response headers".to_string();
    assert_eq!(
        logged,
        [
            (Some(Phase::Content), message.clone()),
            (Some(Phase::BodyFilter), message.clone()),
            (Some(Phase::Log), message)
        ]
    );
}

#[test]
fn redirect_refuses_unsafe_uris() {
    for uri in ["/a\\r\\nSet-Cookie: x=1", "/a\\0b", "/a\\127"] {
        let body = content(&format!("local ok, err = pcall(ngx.redirect, \"{uri}\") ngx.say(err)"));
        assert_eq!(body, "attempt to set unsafe redirect uri\n", "{uri}");
    }
    let outcome = serve(&engine(), "/", &[], &[(Phase::Content, "ngx.redirect('/a\\tb c')")]);
    assert_eq!(outcome.response.header("location"), Some(&b"/a\tb c"[..]));
}
