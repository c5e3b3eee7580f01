//! ngx.get_phase, the time functions (ngx.now, time, update_time, today, localtime, utctime,
//! cookie_time, http_time, parse_http_time), ngx.config, ngx.worker and the ngx.* constants.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use luaengine::{EngineConfig, LogLevel, Phase, RequestInit};

#[test]
fn get_phase_names_the_running_phase() {
    let (engine, lines) = logging_engine(LogLevel::Debug);
    run_everywhere(&engine, "ngx.log(ngx.NOTICE, ngx.get_phase())");
    let logged: Vec<(Option<Phase>, String)> = lines.lock().unwrap().iter().map(|l| (l.1, l.3.clone())).collect();
    let expected: Vec<(Option<Phase>, String)> =
        REQUEST_PHASES.iter().map(|p| (Some(*p), p.name().to_string())).collect();
    assert_eq!(logged, expected);
}

#[test]
fn get_phase_inside_coroutines_and_modules() {
    let body =
        content("local f = coroutine.wrap(function() return ngx.get_phase() end) ngx.say(f(), ' ', ngx.get_phase())");
    assert_eq!(body, "content content\n");
}

#[test]
fn now_and_time_read_the_cached_clock() {
    let cases = [
        // Milliseconds at most.
        ("local ms = ngx.now() * 1000 ngx.say(math.abs(ms - math.floor(ms + 0.5)) < 1e-3)", "true\n"),
        ("ngx.say(math.abs(ngx.now() - os.time()) < 2)", "true\n"),
        ("ngx.say(ngx.time() == math.floor(ngx.now()), ' ', ngx.time() % 1)", "true 0\n"),
        // The cache holds while a script computes...
        ("local a = ngx.now() local t0 = os.clock() while os.clock() - t0 < 0.02 do end ngx.say(ngx.now() == a)", "true\n"),
        // ...until update_time refreshes it.
        (
            "local a = ngx.now() local t0 = os.clock() while os.clock() - t0 < 0.02 do end ngx.update_time() ngx.say(ngx.now() > a)",
            "true\n",
        ),
        ("ngx.say(select('#', ngx.update_time()))", "0\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn the_clock_is_refreshed_for_every_phase() {
    let engine = engine();
    let mut request = request(&engine, "/", &[]);
    let access = engine.compile("access", "ngx.ctx.t = ngx.now()").unwrap();
    request.run(Phase::Access, &access).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let content = engine.compile("content", "ngx.say(ngx.now() - ngx.ctx.t >= 0.015)").unwrap();
    request.run(Phase::Content, &content).unwrap();
    assert_eq!(request.response().body, b"true\n");
}

#[test]
fn the_clock_is_refreshed_after_a_wait() {
    assert_eq!(
        content_waking("local t = ngx.now() ngx.sleep(0.02) ngx.say(ngx.now() - t >= 0.015, ' ', ngx.time() > 0)"),
        "true true\n"
    );
}

#[test]
fn dates_format_the_cached_time() {
    let cases = [
        (r#"ngx.say(ngx.today():match("^%d%d%d%d%-%d%d%-%d%d$") ~= nil)"#, "true\n"),
        (r#"ngx.say(ngx.localtime():match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$") ~= nil)"#, "true\n"),
        (r#"ngx.say(ngx.today() == os.date("%Y-%m-%d", ngx.time()))"#, "true\n"),
        (r#"ngx.say(ngx.localtime() == os.date("%Y-%m-%d %H:%M:%S", ngx.time()))"#, "true\n"),
        (r#"ngx.say(ngx.localtime():sub(1, 10) == ngx.today())"#, "true\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn utctime_is_utc() {
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let body = content("ngx.say(ngx.time(), ' ', ngx.utctime())");
    let (seconds, utc) = body.trim_end().split_once(' ').unwrap();
    let seconds: u64 = seconds.parse().unwrap();
    assert!(seconds.abs_diff(before) <= 1, "{seconds} vs {before}");
    assert_eq!(utc, utc_text(seconds));
}

/// "yyyy-mm-dd hh:mm:ss" in UTC (Howard Hinnant's days-to-civil).
fn utc_text(seconds: u64) -> String {
    let (days, rest) = ((seconds / 86400) as i64, seconds % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest / 60 % 60, rest % 60)
}

#[test]
fn http_dates_format_and_parse() {
    assert_bodies(&[
        ("ngx.say(ngx.cookie_time(1290079655))", "Thu, 18-Nov-10 11:27:35 GMT\n"),
        // Four-digit years after 2037, as nginx.
        ("ngx.say(ngx.cookie_time(2200000000))", "Sun, 18-Sep-2039 23:06:40 GMT\n"),
        ("ngx.say(ngx.http_time(1290079655))", "Thu, 18 Nov 2010 11:27:35 GMT\n"),
        (
            "ngx.say(ngx.http_time(0), '|', ngx.http_time(1290079655.9))",
            "Thu, 01 Jan 1970 00:00:00 GMT|Thu, 18 Nov 2010 11:27:35 GMT\n",
        ),
        ("ngx.say(ngx.parse_http_time('Thu, 18 Nov 2010 11:27:35 GMT'))", "1290079655\n"),
        ("ngx.say(ngx.parse_http_time('Thursday, 18-Nov-10 11:27:35 GMT'))", "1290079655\n"),
        ("ngx.say(ngx.parse_http_time('Thu Nov 18 11:27:35 2010'))", "1290079655\n"),
        ("ngx.say(ngx.parse_http_time('Thu, Nov 18 2010 11:27:35 GMT'))", "nil\n"),
        ("ngx.say(ngx.parse_http_time('Mon, 29 Feb 2010 00:00:00 GMT'), ' ', ngx.parse_http_time(''))", "nil nil\n"),
        ("ngx.say(ngx.parse_http_time(ngx.http_time(ngx.time())) == ngx.time())", "true\n"),
        ("local t = ngx.parse_http_time(ngx.cookie_time(1290079655)) ngx.say(t)", "1290079655\n"),
    ]);
    assert_errors(&[
        ("ngx.cookie_time('1290079655')", "number argument only"),
        ("ngx.http_time(nil)", "number argument only"),
        ("ngx.parse_http_time(1290079655)", "string argument only"),
    ]);
}

#[test]
fn time_functions_work_in_every_request_phase() {
    let script = "assert(ngx.now() > 0 and ngx.time() > 0 and #ngx.today() == 10 and #ngx.utctime() == 19 \
and #ngx.http_time(ngx.time()) == 29 and ngx.parse_http_time(ngx.cookie_time(0)) == 0) ngx.update_time()";
    run_everywhere(&engine(), script);
}

#[test]
fn config_describes_the_api_followed() {
    assert_bodies(&[
        (
            "ngx.say(ngx.config.subsystem, ' ', tostring(ngx.config.debug), ' [', ngx.config.prefix(), '] [', \
ngx.config.nginx_configure(), ']')",
            "http false [] []\n",
        ),
        // lua-nginx-module 0.10.28 in OpenResty 1.27.1.2 (nginx 1.27.1).
        ("ngx.say(ngx.config.ngx_lua_version, ' ', ngx.config.nginx_version)", "10028 1027001\n"),
        ("ngx.say(type(ngx.config.nginx_version), ' ', ngx.config.ngx_lua_version >= 10000)", "number true\n"),
    ]);
}

#[test]
fn worker_id_count_and_pid_map_to_engine_workers() {
    let engine = engine_with(EngineConfig { workers: 3, ..Default::default() });
    let script = engine
        .compile(
            "content",
            "ngx.say(ngx.worker.id(), ' ', ngx.worker.count(), ' ', ngx.worker.pid(), ' ', ngx.worker.exiting())",
        )
        .unwrap();
    for index in 0..3 {
        let mut request = engine.new_request(&RequestInit::default(), [], Some(index));
        request.run(Phase::Content, &script).unwrap();
        let expected = format!("{index} 3 {} false\n", std::process::id());
        assert_eq!(String::from_utf8_lossy(&request.response().body), expected);
    }
}

#[test]
fn worker_exiting_once_the_engine_is_dropped() {
    let engine = engine();
    let mut request = request(&engine, "/", &[]);
    let scripts = [
        (Phase::Rewrite, "ngx.ctx.seen = {tostring(ngx.worker.exiting())}"),
        (Phase::Access, "table.insert(ngx.ctx.seen, tostring(ngx.worker.exiting()))"),
        (
            Phase::Content,
            "table.insert(ngx.ctx.seen, tostring(ngx.worker.exiting())) ngx.say(table.concat(ngx.ctx.seen, ' '))",
        ),
    ]
    .map(|(phase, lua)| (phase, engine.compile(phase.name(), lua).unwrap()));
    let clone = engine.clone();
    request.run(scripts[0].0, &scripts[0].1).unwrap();
    drop(engine);
    request.run(scripts[1].0, &scripts[1].1).unwrap();
    // The last handle gone, the request in flight still runs, told the engine is going away.
    drop(clone);
    request.run(scripts[2].0, &scripts[2].1).unwrap();
    assert_eq!(request.response().body, b"false false true\n");
}

#[test]
fn config_and_worker_work_in_every_request_phase() {
    let script = "assert(ngx.config.subsystem == 'http' and ngx.worker.id() == 0 and ngx.worker.count() == 1 \
and ngx.worker.pid() > 0 and ngx.worker.exiting() == false and ngx.config.prefix() == '')";
    run_everywhere(&engine(), script);
}

#[test]
fn constants_match_lua_nginx_module() {
    let constants = [
        ("OK", 0),
        ("ERROR", -1),
        ("AGAIN", -2),
        ("DONE", -4),
        ("DECLINED", -5),
        ("HTTP_GET", 2),
        ("HTTP_HEAD", 4),
        ("HTTP_POST", 8),
        ("HTTP_PUT", 16),
        ("HTTP_DELETE", 32),
        ("HTTP_MKCOL", 64),
        ("HTTP_COPY", 128),
        ("HTTP_MOVE", 256),
        ("HTTP_OPTIONS", 512),
        ("HTTP_PROPFIND", 1024),
        ("HTTP_PROPPATCH", 2048),
        ("HTTP_LOCK", 4096),
        ("HTTP_UNLOCK", 8192),
        ("HTTP_PATCH", 16384),
        ("HTTP_TRACE", 32768),
        ("HTTP_CONTINUE", 100),
        ("HTTP_SWITCHING_PROTOCOLS", 101),
        ("HTTP_OK", 200),
        ("HTTP_CREATED", 201),
        ("HTTP_ACCEPTED", 202),
        ("HTTP_NO_CONTENT", 204),
        ("HTTP_PARTIAL_CONTENT", 206),
        ("HTTP_SPECIAL_RESPONSE", 300),
        ("HTTP_MOVED_PERMANENTLY", 301),
        ("HTTP_MOVED_TEMPORARILY", 302),
        ("HTTP_FOUND", 302),
        ("HTTP_SEE_OTHER", 303),
        ("HTTP_NOT_MODIFIED", 304),
        ("HTTP_TEMPORARY_REDIRECT", 307),
        ("HTTP_PERMANENT_REDIRECT", 308),
        ("HTTP_BAD_REQUEST", 400),
        ("HTTP_UNAUTHORIZED", 401),
        ("HTTP_PAYMENT_REQUIRED", 402),
        ("HTTP_FORBIDDEN", 403),
        ("HTTP_NOT_FOUND", 404),
        ("HTTP_NOT_ALLOWED", 405),
        ("HTTP_NOT_ACCEPTABLE", 406),
        ("HTTP_REQUEST_TIMEOUT", 408),
        ("HTTP_CONFLICT", 409),
        ("HTTP_GONE", 410),
        ("HTTP_UPGRADE_REQUIRED", 426),
        ("HTTP_TOO_MANY_REQUESTS", 429),
        ("HTTP_CLOSE", 444),
        ("HTTP_ILLEGAL", 451),
        ("HTTP_INTERNAL_SERVER_ERROR", 500),
        ("HTTP_NOT_IMPLEMENTED", 501),
        ("HTTP_METHOD_NOT_IMPLEMENTED", 501),
        ("HTTP_BAD_GATEWAY", 502),
        ("HTTP_SERVICE_UNAVAILABLE", 503),
        ("HTTP_GATEWAY_TIMEOUT", 504),
        ("HTTP_VERSION_NOT_SUPPORTED", 505),
        ("HTTP_INSUFFICIENT_STORAGE", 507),
        ("STDERR", 0),
        ("EMERG", 1),
        ("ALERT", 2),
        ("CRIT", 3),
        ("ERR", 4),
        ("WARN", 5),
        ("NOTICE", 6),
        ("INFO", 7),
        ("DEBUG", 8),
    ];
    let lua: String = constants.iter().map(|(name, _)| format!("ngx.say('{name} ', ngx.{name})\n")).collect();
    let expected: String = constants.iter().map(|(name, value)| format!("{name} {value}\n")).collect();
    assert_eq!(content(&lua), expected);
    assert_eq!(
        content("ngx.say(ngx.null == nil, ' ', type(ngx.null), ' ', ngx.HTTP_MISDIRECTED_REQUEST)"),
        "false userdata nil\n"
    );
}
