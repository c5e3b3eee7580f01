//! The default sandbox (DESIGN.md §7) and trusted mode. Every hostile snippet is refused with a
//! Lua error at its chunk:line, and the same worker then serves a normal request; nothing one
//! request does to the libraries, `ngx` or the string metatable reaches the next one.

mod common;

use common::*;
use luaengine::{Engine, EngineConfig, ErrorCode, Phase};

/// Lua's message for indexing or calling a missing name, which the two backends word differently:
/// `nil_value("call", "field", "execute")`.
fn nil_value(what: &str, kind: &str, name: &str) -> String {
    if cfg!(feature = "luajit") {
        format!("attempt to {what} {kind} '{name}' (a nil value)")
    } else {
        format!("attempt to {what} a nil value ({kind} '{name}')")
    }
}

fn read_only(name: &str) -> String {
    format!("attempt to modify read-only table '{name}'")
}

fn not_available(module: &str) -> String {
    format!("module '{module}' is not available in the sandbox")
}

fn built_in(module: &str) -> String {
    format!("attempt to replace built-in module '{module}'")
}

fn not_allowed(option: &str) -> String {
    format!("bad argument #1 to 'collectgarbage' ('{option}' is not allowed in the sandbox, only 'count')")
}

const PROTECTED: &str = "cannot change a protected metatable";

/// Snippets the sandbox refuses, and the error each raises after `content:1: `.
fn refused() -> Vec<(&'static str, String)> {
    // The library only one backend has: `bit` on LuaJIT, `utf8` on Lua 5.4.
    let (own_library, own_write) =
        if cfg!(feature = "luajit") { ("bit", "bit.band = nil") } else { ("utf8", "utf8.char = nil") };
    vec![
        // Missing libraries and functions.
        ("io.open('/etc/passwd')", nil_value("index", "global", "io")),
        ("io.write('x')", nil_value("index", "global", "io")),
        ("os.execute('ls')", nil_value("call", "field", "execute")),
        ("os.exit(1)", nil_value("call", "field", "exit")),
        ("os.getenv('HOME')", nil_value("call", "field", "getenv")),
        ("os.remove('/tmp/x')", nil_value("call", "field", "remove")),
        ("dofile('/etc/passwd')", nil_value("call", "global", "dofile")),
        ("loadfile('/etc/passwd')", nil_value("call", "global", "loadfile")),
        ("string.dump(print)", nil_value("call", "field", "dump")),
        ("load(string.dump(function() return 1 end))()", nil_value("call", "field", "dump")),
        ("debug.sethook(print, '', 1)", nil_value("call", "field", "sethook")),
        ("debug.getregistry()", nil_value("call", "field", "getregistry")),
        ("debug.getupvalue(print, 1)", nil_value("call", "field", "getupvalue")),
        ("debug.getinfo(1)", nil_value("call", "field", "getinfo")),
        ("debug.setmetatable('', {})", nil_value("call", "field", "setmetatable")),
        ("package.loadlib('libc.so.6', 'system')", nil_value("call", "field", "loadlib")),
        ("ffi.new('int')", nil_value("index", "global", "ffi")),
        ("jit.off()", nil_value("index", "global", "jit")),
        // Modules: C modules are never searched for, built-in unsafe ones are refused by name.
        ("require 'socket.core'", "module 'socket.core' not found:".to_string()),
        ("require 'lfs'", "module 'lfs' not found:".to_string()),
        ("require 'ffi'", not_available("ffi")),
        ("require 'jit'", not_available("jit")),
        ("require 'io'", not_available("io")),
        ("require '_G'", not_available("_G")),
        ("local ok, err = pcall(require, 'ffi') error(err)", not_available("ffi")),
        // The collector belongs to the whole worker.
        ("collectgarbage('stop')", not_allowed("stop")),
        ("collectgarbage()", not_allowed("collect")),
        ("collectgarbage('step')", not_allowed("step")),
        ("collectgarbage('setpause', 1000)", not_allowed("setpause")),
        // The random generator is the worker's: only code that runs once per worker seeds it.
        (
            "math.randomseed(42)",
            "'randomseed' is not allowed in a request in the sandbox (it seeds the whole worker: seed in init_worker)"
                .to_string(),
        ),
        // Shared tables are read-only.
        ("string.upper = function() return 'pwned' end", read_only("string")),
        ("getmetatable('').__index.upper = function() return 'pwned' end", read_only("string")),
        ("getmetatable('').__index = {}", read_only("string metatable")),
        ("getmetatable('').__newindex = print", read_only("string metatable")),
        ("rawset(getmetatable(''), '__index', {})", read_only("string metatable")),
        ("rawset(string, 'upper', print)", read_only("string")),
        ("table.concat = nil", read_only("table")),
        ("math.floor = nil", read_only("math")),
        ("os.time = function() return 0 end", read_only("os")),
        ("coroutine.wrap = nil", read_only("coroutine")),
        ("debug.traceback = nil", read_only("debug")),
        (own_write, read_only(own_library)),
        ("ngx.say = function() end", read_only("ngx")),
        ("ngx.foo = 1", read_only("ngx")),
        ("ngx.HTTP_OK = 500", read_only("ngx")),
        ("ngx.req.get_method = nil", read_only("ngx.req")),
        ("rawset(ngx, 'say', print)", read_only("ngx")),
        ("rawset(ngx.req, 'get_headers', print)", read_only("ngx.req")),
        ("rawset(ngx.var, 'uri', '/pwned')", read_only("ngx.var")),
        ("for k in pairs(ngx) do if k == 'req' then ngx[k].x = 1 end end", read_only("ngx.req")),
        // Built-in modules are read-only and stay in place; `package` is read-only but for the
        // request's own package.loaded/preload entries.
        ("require('cjson').encode = function() return 'pwned' end", read_only("cjson")),
        ("require('cjson.safe').decode = nil", read_only("cjson.safe")),
        ("require('cjson').array_mt.__index = print", read_only("cjson.array_mt")),
        ("require('cjson').empty_array_mt.x = 1", read_only("cjson.empty_array_mt")),
        ("rawset(require('cjson').array_mt, '__index', print)", read_only("cjson.array_mt")),
        ("require('host').leak = 1", read_only("host")),
        ("package.loaded.cjson = {}", built_in("cjson")),
        ("package.loaded['cjson.safe'] = nil", built_in("cjson.safe")),
        ("package.loaded.string = {}", built_in("string")),
        ("package.loaded.ngx = nil", built_in("ngx")),
        ("package.preload.cjson = function() return {} end", built_in("cjson")),
        ("package.preload.host = print", built_in("host")),
        ("rawset(package.loaded, 'x', 1)", read_only("package.loaded")),
        ("rawset(package.preload, 'x', print)", read_only("package.preload")),
        ("package.path = '/tmp/?.lua'", read_only("package")),
        ("package.cpath = '/usr/lib/lua/5.1/?.so'", read_only("package")),
        ("package.loaders = {}", read_only("package")),
        ("package.loaded = {}", read_only("package")),
        ("setmetatable(package.loaded, {})", PROTECTED.to_string()),
        // Metatables of shared tables are hidden and fixed.
        ("setmetatable(_G, {__index = function() return 'pwned' end})", PROTECTED.to_string()),
        ("setmetatable(string, {})", PROTECTED.to_string()),
        ("setmetatable(ngx, {})", PROTECTED.to_string()),
        ("setmetatable(ngx.var, {})", PROTECTED.to_string()),
        ("getmetatable(ngx.var).__index = print", "attempt to index a boolean value".to_string()),
        ("getmetatable(ngx.req.get_headers()).__index = print", "attempt to index a boolean value".to_string()),
    ]
}

/// Snippets that run in the sandbox, and the body each prints.
const ALLOWED: &[(&str, &str)] = &[
    (
        "ngx.say(type(io), type(os.execute), type(os.getenv), type(dofile), type(loadfile), type(ffi), type(jit))",
        "nilnilnilnilnilnilnil",
    ),
    ("ngx.say(type(string.dump), type(('').dump), type(debug.sethook), type(package.loadlib))", "nilnilnilnil"),
    ("ngx.say(type(setfenv), type(getfenv), type(newproxy), type(package.cpath))", "nilnilnilnil"),
    ("ngx.say(type(debug), type(debug.traceback), type(os.time), type(os.clock), type(os.date))", "tablefunctionfunctionfunctionfunction"),
    ("ngx.say(load(string.char(27) .. 'LuaS'))", "nilattempt to load a binary chunk"),
    ("local f = load('return 1 + 1') ngx.say(f())", "2"),
    ("answer = 42 ngx.say(load('return answer')())", "42"),
    ("ngx.say(collectgarbage('count') > 0)", "true"),
    ("ngx.say(('x'):upper(), ('%d'):format(5), #string.rep('ab', 3))", "X56"),
    ("ngx.say(getmetatable('').__index == string, getmetatable(string), getmetatable(ngx), getmetatable(ngx.var))", "truefalsefalsefalse"),
    ("ngx.say(getmetatable(_G), getmetatable(ngx.req.get_headers()))", "falsefalse"),
    ("ngx.say(require('string') == string, require('table') == table, require('ngx') == ngx, require('package') == package)", "truetruetruetrue"),
    ("local n = 0 for k, v in pairs(string) do n = n + 1 end ngx.say(n > 10)", "true"),
    ("for k, v in pairs(math) do if k == 'floor' then ngx.say(v == math.floor) end end", "true"),
    ("for k, v in pairs(ngx) do if k == 'req' then ngx.say(v == ngx.req) end end", "true"),
    ("local n = 0 for k in pairs({a = 1, b = 2}) do n = n + 1 end ngx.say(n)", "2"),
    ("ngx.ctx.a = 1 ngx.ctx = {b = 2} ngx.status = 201 ngx.say(ngx.ctx.b, ngx.status, ngx.var.uri)", "2201/t"),
    ("local t = {} table.insert(t, 'a') table.insert(t, 1, 'b') ngx.say(table.concat(t))", "ba"),
    ("ngx.say(rawset({}, 'a', 1).a, rawget(string, 'upper'))", "1nil"),
    ("local t = setmetatable({}, {__index = string}) ngx.say(t.upper('a'), getmetatable(t).__index == string)", "Atrue"),
    ("local ok, tb = xpcall(function() error('boom') end, debug.traceback) ngx.say(tb:match('^content:1: boom\\nstack traceback:\\n') ~= nil)", "true"),
    ("ngx.say(debug.traceback('here'):match('^here\\nstack traceback:\\n\\tcontent:1:') ~= nil)", "true"),
    ("local e = {} ngx.say(debug.traceback(e) == e, debug.traceback(coroutine.create(print), 'msg'))", "truemsg"),
    ("local ok, err = pcall(function() string.upper = nil end) ngx.say(ok, ' ', err)", "false content:1: attempt to modify read-only table 'string'"),
    // Built-in modules read as before; a script registers modules of its own.
    ("local cjson = require('cjson') local n = 0 for k in pairs(cjson) do n = n + 1 end ngx.say(n > 10, cjson.encode({a = 1}))", "true{\"a\":1}"),
    ("ngx.say(require('cjson') == package.loaded.cjson, require('cjson.safe') == package.loaded['cjson.safe'], require('cjson') ~= require('cjson.safe'))", "truetruetrue"),
    ("local cjson = require('cjson') ngx.say(cjson.encode(setmetatable({}, cjson.array_mt)), cjson.encode(cjson.decode('[]')), getmetatable(cjson.array_mt))", "[]{}false"),
    ("local c = require('cjson').new() c.encode = function() return 'own' end ngx.say(c.encode({}), require('cjson').encode({}))", "own{}"),
    ("ngx.say(type(package.loaded.io), type(package.loaded.ffi), type(package.preload.cjson), type(package.searchers))", "nilnilnilnil"),
    ("package.loaded.mine = {v = 1} ngx.say(require('mine').v, package.loaded.mine.v)", "11"),
    (
        "local cjson = require('cjson') package.loaded.mine = true local seen = {} for name, module in pairs(package.loaded) do seen[name] = module end ngx.say(seen.mine, seen.string == string, seen.cjson == cjson, seen.io)",
        "truetruetruenil",
    ),
    ("package.preload.mine = function(name) return {v = name} end ngx.say(require('mine').v, package.loaded.mine.v)", "minemine"),
    ("package.loaded.mine = 1 package.loaded.mine = nil ngx.say((pcall(require, 'mine')))", "false"),
    (
        "local cjson = require('cjson') cjson.encode_empty_table_as_object(false) cjson.encode_sparse_array(true) ngx.say(cjson.encode({}), cjson.encode({[3] = 1}), cjson.encode_empty_table_as_object(), cjson.encode_sparse_array())",
        "[][null,null,1]falsetrue210",
    ),
];

fn check_worker_serves(engine: &Engine, after: &str) {
    let outcome = serve(engine, "/t", &[], &[(Phase::Content, "ngx.say('ok')")]);
    assert_eq!(outcome.body(), "ok\n", "after {after}: {:?}", outcome.error);
}

#[test]
fn hostile_snippets_are_refused_and_the_worker_goes_on() {
    let engine = engine();
    for (lua, expected) in refused() {
        let outcome = serve(&engine, "/t", &[], &[(Phase::Content, lua)]);
        let error = outcome.error.unwrap_or_else(|| panic!("{lua}: not refused, body {:?}", outcome.response.body));
        assert_eq!(error.code, ErrorCode::Runtime, "{lua}");
        assert_eq!(error.message, format!("content:1: {expected}"), "{lua}");
        assert_eq!((error.chunk.as_deref(), error.line), (Some("content"), Some(1)), "{lua}");
        check_worker_serves(&engine, lua);
    }
}

#[test]
fn table_insert_cannot_write_into_shared_tables() {
    // LuaJIT's table.insert writes raw; Lua 5.4's goes through __newindex (from C, so the
    // message has no position there).
    let engine = engine();
    let outcome = serve(&engine, "/t", &[], &[(Phase::Content, "table.insert(string, 'leak')")]);
    assert!(outcome.error().message.ends_with(&read_only("string")), "{:?}", outcome.error);
    check_worker_serves(&engine, "table.insert");
}

#[test]
fn safe_snippets_run() {
    let engine = engine();
    for (lua, expected) in ALLOWED {
        let outcome = serve(&engine, "/t", &[], &[(Phase::Content, lua)]);
        assert_eq!(outcome.error, None, "{lua}");
        assert_eq!(outcome.body(), format!("{expected}\n"), "{lua}");
        check_worker_serves(&engine, lua);
    }
}

/// (attack, check): the attack runs in one request (its errors caught), the check in the next
/// request on the same worker and prints what an untouched sandbox prints.
const LEAKS: &[(&str, &str, &str)] = &[
    ("string.upper = function() return 'pwned' end", "ngx.say(('a'):upper(), string.upper('a'))", "AA"),
    ("getmetatable('').__index.upper = function() return 'pwned' end", "ngx.say(('a'):upper())", "A"),
    ("getmetatable('').__index = {upper = function() return 'pwned' end}", "ngx.say(('a'):upper())", "A"),
    ("rawset(string, 'upper', function() return 'pwned' end)", "ngx.say(string.upper('a'))", "A"),
    ("setmetatable(_G, {__index = function() return 'pwned' end})", "ngx.say(tostring(undefined_name))", "nil"),
    ("ngx.say = function() end", "ngx.say('said')", "said"),
    ("ngx.leak = 'pwned'", "ngx.say(tostring(ngx.leak))", "nil"),
    ("ngx.req.get_headers = function() return {} end", "ngx.say(type(ngx.req.get_headers()['host']))", "nil"),
    ("table.insert(string, 'pwned')", "ngx.say(tostring(string[1]))", "nil"),
    ("table.insert(ngx.var, 'pwned')", "ngx.say(tostring(ngx.var[1]))", "nil"),
    ("rawset(ngx.var, 'uri', '/pwned')", "ngx.say(ngx.var.uri)", "/t"),
    ("package.loaded.string = {upper = 'pwned'}", "ngx.say(require('string') == string)", "true"),
    ("leaked_global = 'pwned'", "ngx.say(tostring(leaked_global))", "nil"),
    // `ngx` is a field of each request's globals (as in OpenResty's _G): replacing it stays there.
    ("ngx = {say = function() end}", "ngx.say(rawget(_G, 'ngx') == ngx)", "true"),
    ("_G.ngx = nil", "ngx.say(type(ngx))", "table"),
    ("package.loaded.x = 'pwned'", "ngx.say(tostring(package.loaded.x), (pcall(require, 'x')))", "nilfalse"),
    (
        "package.preload.x = function() return 'pwned' end",
        "ngx.say(type(package.preload.x), (pcall(require, 'x')))",
        "nilfalse",
    ),
    ("rawset(package.loaded, 'x', 'pwned')", "ngx.say(tostring(package.loaded.x))", "nil"),
    ("require('cjson').encode = function() return 'pwned' end", "ngx.say(require('cjson').encode({1}))", "[1]"),
    ("package.loaded.cjson = {encode = function() return 'pwned' end}", "ngx.say(require('cjson').encode({1}))", "[1]"),
    ("package.preload['cjson.safe'] = function() return {} end", "ngx.say(require('cjson.safe').encode({1}))", "[1]"),
    (
        "require('cjson').array_mt.__index = function() return 'pwned' end",
        "ngx.say(tostring(setmetatable({}, require('cjson').array_mt).x))",
        "nil",
    ),
    ("require('host').leak = 'pwned'", "ngx.say(tostring(require('host').leak))", "nil"),
    ("package.path = 'pwned'", "ngx.say(#package.path)", "0"),
    ("package.cpath = 'pwned'", "ngx.say(tostring(package.cpath))", "nil"),
    ("package.loaded = {x = 'pwned'}", "ngx.say(tostring(package.loaded.x))", "nil"),
    // A request's cjson configuration is its own.
    ("require('cjson').encode_empty_table_as_object(false)", "ngx.say(require('cjson').encode({}))", "{}"),
    (
        "require('cjson.safe').decode_array_with_array_mt(true)",
        "ngx.say(getmetatable(require('cjson.safe').decode('[]')))",
        "nil",
    ),
    (
        "require('cjson').encode_number_precision(3)",
        "ngx.say(require('cjson').encode(1/3), require('cjson').encode_number_precision())",
        "0.3333333333333314",
    ),
];

#[test]
fn nothing_leaks_into_the_next_request() {
    let engine = engine();
    for (attack, check, expected) in LEAKS {
        let attack = format!("pcall(function() {attack} end)");
        assert_eq!(serve(&engine, "/t", &[], &[(Phase::Content, &attack)]).error, None, "{attack}");
        let outcome = serve(&engine, "/t", &[], &[(Phase::Content, check)]);
        assert_eq!(outcome.body(), format!("{expected}\n"), "{attack} then {check}: {:?}", outcome.error);
    }
}

/// A one-worker sandboxed engine whose `require` finds `files` (name, text) in a fresh directory.
fn engine_with_modules(name: &str, files: &[(&str, &str)], init: Option<&str>) -> Engine {
    let dir = std::env::temp_dir().join(format!("luaengine-sandbox-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    engine_with(EngineConfig {
        workers: 1,
        package_path: vec![format!("{}/?.lua", dir.display())],
        init: init.map(|source| luaengine::LuaSource::inline("init", source)),
        ..Default::default()
    })
}

/// Runs each content snippet in its own request, in order, on `engine`, checking its body.
fn in_turn(engine: &Engine, cases: &[(&str, &str)]) {
    for (lua, expected) in cases {
        let outcome = serve(engine, "/t", &[], &[(Phase::Content, lua)]);
        assert_eq!(outcome.error, None, "{lua}");
        assert_eq!(outcome.body(), format!("{expected}\n"), "{lua}");
    }
}

#[test]
fn module_files_are_shared_by_the_worker_and_package_loaded_writes_are_the_requests_own() {
    let engine = engine_with_modules(
        "shared",
        &[
            ("counter.lua", "return { n = 0 }"),
            // A module body runs once per worker: what it registers is the worker's.
            ("registers.lua", "package.loaded['registers.extra'] = { v = 'extra' } return {}"),
            ("configures.lua", "require('cjson').encode_empty_table_as_object(false) math.randomseed(2) return {}"),
        ],
        Some("package.loaded.from_init = { v = 'init' } require('cjson.safe').encode_number_precision(3) math.randomseed(1)"),
    );
    in_turn(
        &engine,
        &[
            // A module's table is the worker's (OpenResty keeps caches there).
            ("require('counter').n = 5 ngx.say(require('counter').n)", "5"),
            ("ngx.say(require('counter').n)", "5"),
            // Forgetting it in package.loaded reloads it for this request only.
            ("package.loaded.counter = nil ngx.say(require('counter').n, package.loaded.counter.n)", "00"),
            ("ngx.say(require('counter').n, package.loaded.counter.n)", "55"),
            // A request's own entry hides the worker's for that request only.
            ("package.loaded.counter = { n = 'mine' } ngx.say(require('counter').n)", "mine"),
            ("ngx.say(require('counter').n)", "5"),
            (
                "package.loaded.mine = 1 package.loaded.counter = nil local n = 0 for name in pairs(package.loaded) do if name == 'counter' then n = n + 10 elseif name == 'mine' then n = n + 1 end end ngx.say(n)",
                "1",
            ),
            ("local n = 0 for name in pairs(package.loaded) do if name == 'counter' then n = n + 10 elseif name == 'mine' then n = n + 1 end end ngx.say(n)", "10"),
            ("require('registers') ngx.say(package.loaded['registers.extra'].v)", "extra"),
            ("ngx.say(require('registers.extra').v)", "extra"),
            // A loader the request registered runs as request code: its writes stay there.
            ("package.preload.p = function() package.loaded.q = 'q' return 'p' end ngx.say(require('p'), package.loaded.q)", "pq"),
            ("ngx.say(tostring(package.loaded.p), tostring(package.loaded.q))", "nilnil"),
            // init runs once per worker: its entries and settings are every request's, and so
            // are a module body's.
            ("ngx.say(require('from_init').v, require('cjson.safe').encode(1/3))", "init0.333"),
            ("ngx.say(require('cjson').encode({}))", "{}"),
            ("require('configures') ngx.say(require('cjson').encode({}))", "[]"),
            ("ngx.say(require('cjson').encode({}))", "[]"),
        ],
    );
}

#[test]
fn trusted_mode_keeps_everything_open() {
    let engine = engine_with(EngineConfig { workers: 1, trusted: true, ..Default::default() });
    let cases = [
        (
            "ngx.say(type(io.open), type(os.getenv), type(debug.sethook), type(string.dump))",
            "functionfunctionfunctionfunction",
        ),
        ("ngx.say(getmetatable('').__index == string, type(collectgarbage('count')))", "truenumber"),
        // Trusted scripts may change the worker's shared tables, as in OpenResty.
        ("string.trusted_helper = function() return 'shared' end ngx.foo = 1 math.randomseed(1)", ""),
        ("ngx.say(string.trusted_helper(), ngx.foo)", "shared1"),
        // As in OpenResty, package.loaded and built-in modules are the worker's, writable.
        ("package.loaded.shared_mod = {v = 'shared'} require('cjson').answer = 42", ""),
        ("ngx.say(require('shared_mod').v, require('cjson').answer)", "shared42"),
    ];
    for (lua, expected) in cases {
        let outcome = serve(&engine, "/t", &[], &[(Phase::Content, lua)]);
        assert_eq!(outcome.error, None, "{lua}");
        assert_eq!(outcome.body(), expected.to_string() + if expected.is_empty() { "" } else { "\n" }, "{lua}");
    }
}

#[test]
fn trusted_mode_loads_ffi_on_luajit() {
    if cfg!(feature = "luajit") {
        let engine = engine_with(EngineConfig { workers: 1, trusted: true, ..Default::default() });
        let outcome = serve(&engine, "/t", &[], &[(Phase::Content, "ngx.say(require('ffi').sizeof('int'))")]);
        assert_eq!(outcome.body(), "4\n", "{:?}", outcome.error);
    }
}
