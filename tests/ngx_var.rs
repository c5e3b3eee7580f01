//! ngx.var: variables computed from the request snapshot, following rewrites; variables
//! scripts set, read back by the host; the host's resolver for the names the engine lacks.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use luaengine::{Engine, EngineConfig, Phase, RequestInit, VariableResolver};

/// `$name` of a POST to https://example.com:8443/a/b?x=1&Y=two&flag. With `buffer_padding`, the
/// strings come in one host buffer (`RequestInit::buffer`) followed by that many other bytes, as
/// an HTTP parser leaves them, except the remote address, which lies outside it.
fn var_of(name: &str, buffer_padding: Option<usize>) -> String {
    let engine = Engine::new(EngineConfig { workers: 1, ..Default::default() }).unwrap();
    let strings = [
        "POST",
        "/a/b",
        "x=1&Y=two&flag",
        "HTTP/1.0",
        "https",
        "Host",
        "Example.COM:8443",
        "User-Agent",
        "curl/8",
        "Accept",
        "a",
        "Accept",
        "b",
        "Cookie",
        "sid=abc; theme=dark",
        "Content-Type",
        "text/plain",
        "Content-Length",
        "12",
    ];
    let from_buffer = buffer_padding.is_some();
    let buffer = strings.concat() + &"-".repeat(buffer_padding.unwrap_or(0));
    let mut offset = 0;
    let parts: Vec<&[u8]> = strings
        .iter()
        .map(|text| {
            offset += text.len();
            if from_buffer {
                &buffer.as_bytes()[offset - text.len()..offset]
            } else {
                text.as_bytes()
            }
        })
        .collect();
    let init = RequestInit {
        method: parts[0],
        path: parts[1],
        query: parts[2],
        http_version: parts[3],
        scheme: parts[4],
        remote_addr: b"10.1.2.3",
        body: None,
        buffer: from_buffer.then_some(buffer.as_bytes()),
    };
    let headers = parts[5..].chunks(2).map(|pair| (pair[0], pair[1]));
    let mut request = engine.new_request(&init, headers, None);
    let outcome =
        serve_request(&engine, &mut request, &[(Phase::Content, &format!("ngx.say(tostring(ngx.var.{name}))"))]);
    outcome.body().trim_end().to_string()
}

fn var(name: &str) -> String {
    var_of(name, None)
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
        ("request", "POST /a/b?x=1&Y=two&flag HTTP/1.0"),
        ("request_body", "nil"),
        ("URI", "/a/b"),
        ("Request_Method", "POST"),
        ("cookie_sid", "abc"),
    ];
    for (name, expected) in cases {
        assert_eq!(var(name), expected, "$${name}");
        assert_eq!(var_of(name, Some(0)), expected, "$${name} from the host's buffer");
        // A buffer much larger than the strings is not copied whole: the strings still read.
        assert_eq!(var_of(name, Some(4096)), expected, "$${name} from a large buffer");
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

/// Runs each content snippet on `GET /t?a=1` with a Host and a cookie.
fn check(cases: &[(&str, &str)]) {
    let engine = engine();
    check_bodies(&engine, || request(&engine, "/t?a=1", &[("Host", "example.com"), ("Cookie", "sid=abc")]), cases);
}

#[test]
fn user_variables() {
    check(&[
        (
            "ngx.var.foo = 'bar' ngx.say(ngx.var.foo, ' ', ngx.var.FOO)",
            "bar bar
",
        ),
        (
            "ngx.var.Mixed = 'x' ngx.say(ngx.var.mixed)",
            "x
",
        ),
        (
            "ngx.var.n = 42 ngx.say(ngx.var.n, ' ', type(ngx.var.n))",
            "42 string
",
        ),
        (
            "ngx.var.f = 1.5 ngx.say(ngx.var.f)",
            "1.5
",
        ),
        (
            "ngx.var.x = '1' ngx.var.x = nil ngx.say(tostring(ngx.var.x))",
            "nil
",
        ),
        (
            "ngx.var.e = '' ngx.say('[', ngx.var.e, ']')",
            "[]
",
        ),
        (
            "ngx.var.x = 'a' ngx.var.x = 'b' ngx.say(ngx.var.x)",
            "b
",
        ),
        (
            "local ok, err = pcall(function() ngx.var.x = {} end) ngx.say(err)",
            "content:1: bad argument #1 to '?' (string, number, or nil expected, but got table)\n",
        ),
        ("local ok, err = pcall(function() ngx.var[true] = 1 end) ngx.say(err)", "content:1: bad variable name\n"),
        ("local ok, err = pcall(function() return ngx.var[{}] end) ngx.say(err)", "content:1: bad variable name\n"),
        ("ngx.say(tostring(ngx.var[1]))", "nil\n"),
        ("ngx.say(tostring(ngx.var[1.5]), ' ', tostring(ngx.var['1']))", "nil nil\n"),
        // Text values and binary ones come back by different ways.
        ("ngx.var.bin = '\\255\\0x' ngx.var.txt = 'ok' ngx.say(#ngx.var.bin, ngx.var.bin == '\\255\\0x', ngx.var.txt)", "3trueok\n"),
    ]);
}

#[test]
fn built_in_variables_refuse_writes_but_args() {
    check(&[
        ("local ok, err = pcall(function() ngx.var.uri = '/x' end) ngx.say(err)", "content:1: variable \"uri\" not changeable\n"),
        ("local ok, err = pcall(function() ngx.var.Request_URI = '/x' end) ngx.say(err)",
            "content:1: variable \"request_uri\" not changeable\n"),
        (
            "local ok, err = pcall(function() ngx.var.http_host = 'x' end) ngx.say(err)",
            "content:1: variable \"http_host\" not found for writing; maybe it is a built-in variable that is not changeable \
             or you forgot to use \"set $http_host '';\" in the config file to define it first\n",
        ),
        (
            "ngx.var.args = 'a=3&b=42' local a = ngx.req.get_uri_args()
ngx.say(a.a, ' ', a.b, ' ', ngx.var.is_args, ngx.var.query_string, ' ', ngx.var.arg_b, ' ', ngx.var.request_uri)",
            "3 42 ?a=3&b=42 42 /t?a=1\n",
        ),
        ("ngx.var.args = nil ngx.say(tostring(ngx.var.args), ' [', ngx.var.is_args, ']')", "nil []\n"),
        ("ngx.var.args = 7 ngx.say(ngx.var.args)", "7\n"),
    ]);
}

#[test]
fn variables_follow_rewrites() {
    check(&[
        ("ngx.req.set_uri('/new') ngx.say(ngx.var.uri, ' ', ngx.var.request_uri)", "/new /t?a=1\n"),
        (
            "ngx.req.set_header('Host', 'Other.ORG:81') ngx.say(ngx.var.host, ' ', ngx.var.http_host)",
            "other.org Other.ORG:81\n",
        ),
        ("ngx.req.set_header('Cookie', 'sid=xyz') ngx.say(ngx.var.cookie_sid)", "xyz\n"),
        (
            "ngx.req.set_header('Content-Type', 'text/css') ngx.req.set_header('Content-Length', 3)
ngx.say(ngx.var.content_type, ' ', ngx.var.content_length)",
            "text/css 3\n",
        ),
        (
            "ngx.req.set_method(ngx.HTTP_DELETE) ngx.say(ngx.var.request_method, ' ', ngx.var.request)",
            "DELETE GET /t?a=1 HTTP/1.1\n",
        ),
        ("ngx.req.set_uri_args('q=1') ngx.say(ngx.var.arg_q, ' ', tostring(ngx.var.arg_a))", "1 nil\n"),
    ]);
}

#[test]
fn user_variables_live_across_phases_and_reach_the_host() {
    let engine = engine();
    let mut request = request(&engine, "/t", &[]);
    let outcome = serve_request(
        &engine,
        &mut request,
        &[
            (Phase::Rewrite, "ngx.var.backend = 'pool-a' ngx.var.Gone = 'x' ngx.var.weight = 3"),
            (Phase::Access, "ngx.var.gone = nil ngx.var.backend = ngx.var.backend .. '/2'"),
            (Phase::Content, "ngx.say(ngx.var.backend, ' ', ngx.var.weight, ' ', tostring(ngx.var.gone))"),
        ],
    );
    assert_eq!(outcome.body(), "pool-a/2 3 nil\n");
    let log = engine.compile("log", "ngx.var.logged = ngx.var.status").unwrap();
    request.run(Phase::Log, &log).unwrap();
    assert_eq!(request.variable("BACKEND"), Some(&b"pool-a/2"[..]));
    assert_eq!(request.variable("gone"), None);
    assert_eq!(request.variable("never"), None);
    let all: Vec<(&[u8], &[u8])> = request.variables().collect();
    assert_eq!(all, [(&b"backend"[..], &b"pool-a/2"[..]), (b"weight", b"3"), (b"logged", b"200")]);
}

/// An engine whose resolver knows `$server_name` and `$boom` (which panics), recording lookups.
fn resolving_engine(lookups: Arc<Mutex<Vec<String>>>) -> Engine {
    let resolver: VariableResolver = Arc::new(move |lookup| {
        let name = String::from_utf8_lossy(lookup.name).into_owned();
        lookups.lock().unwrap().push(format!("{} {} {name}", lookup.request_id, lookup.phase.name()));
        match lookup.name {
            b"server_name" => Some(b"example.org".to_vec()),
            b"boom" => panic!("resolver failure"),
            _ => None,
        }
    });
    engine_with(EngineConfig { workers: 1, variables: Some(resolver), ..Default::default() })
}

#[test]
fn the_resolver_answers_unknown_names_only_and_is_not_cached() {
    let lookups = Arc::new(Mutex::new(Vec::new()));
    let engine = resolving_engine(lookups.clone());
    let mut request = request(&engine, "/t", &[]);
    let outcome = serve_request(
        &engine,
        &mut request,
        &[
            (Phase::Rewrite, "ngx.ctx.first = ngx.var.server_name"),
            (
                Phase::Content,
                "ngx.var.mine = 'm' ngx.say(ngx.ctx.first, ' ', ngx.var.SERVER_NAME, ' ', tostring(ngx.var.unknown), ' ',
ngx.var.uri, ' ', ngx.var.mine, ' ', tostring(ngx.var.http_none))",
            ),
        ],
    );
    assert_eq!(outcome.body(), "example.org example.org nil /t m nil\n");
    let id = request.id();
    assert_eq!(
        *lookups.lock().unwrap(),
        [format!("{id} rewrite server_name"), format!("{id} content server_name"), format!("{id} content unknown")]
    );
}

#[test]
fn a_resolver_panic_is_a_lua_error() {
    let engine = resolving_engine(Arc::default());
    let lua =
        "local ok, err = pcall(function() return ngx.var.boom .. '' end) ngx.say(err) ngx.say(ngx.var.server_name)";
    let outcome = serve(&engine, "/t", &[], &[(Phase::Content, lua)]);
    assert_eq!(outcome.body(), "content:1: the host's variable resolver panicked on \"boom\"\nexample.org\n");
    let outcome = serve(&engine, "/t", &[], &[(Phase::Content, "local x = ngx.var.boom")]);
    assert!(outcome.error().message.contains("panicked on \"boom\""), "{}", outcome.error());
}
