//! Codecs and hashes: ngx.md5, md5_bin, sha1_bin, hmac_sha1, crc32_short, crc32_long,
//! encode_base64, decode_base64, decode_base64mime, escape_uri, unescape_uri, encode_args,
//! decode_args, quote_sql_str. Expected values are lua-nginx-module's (t/007-md5.t,
//! t/013-base64.t, t/006-escape.t, t/030-uri-args.t, ...) and lua-resty-core's argument rules.

mod common;

use common::*;

#[test]
fn md5_hex_and_binary() {
    assert_bodies(&[
        ("ngx.say(ngx.md5('hello'))", "5d41402abc4b2a76b9719d911017c592\n"),
        ("ngx.say(ngx.md5(''))", "d41d8cd98f00b204e9800998ecf8427e\n"),
        // lua-resty-core: nil and false hash "", other values their tostring().
        ("ngx.say(ngx.md5(nil))", "d41d8cd98f00b204e9800998ecf8427e\n"),
        ("ngx.say(ngx.md5(false))", "d41d8cd98f00b204e9800998ecf8427e\n"),
        ("ngx.say(ngx.md5(45))", "6c8349cc7260ae62e3b1396831a8398f\n"),
        ("ngx.say(ngx.md5(3.14))", "4beed3b9c4a886067de0e3a094246f78\n"),
        ("ngx.say(ngx.md5(true))", "b326b5062b2f0e69046810717534cb09\n"),
        (
            "local t = setmetatable({}, {__tostring = function() return 'hello' end}) ngx.say(ngx.md5(t))",
            "5d41402abc4b2a76b9719d911017c592\n",
        ),
        (
            "ngx.say(#ngx.md5_bin('hello'), ' ', ngx.encode_base64(ngx.md5_bin('hello')))",
            "16 XUFAKrxLKna5cZ2REBfFkg==\n",
        ),
        ("ngx.say(ngx.encode_base64(ngx.md5_bin(nil)))", "1B2M2Y8AsgTpgAmY7PhCfg==\n"),
        ("local s = string.rep('a', 1024) ngx.say(ngx.md5(s) == ngx.md5(s:sub(1, 512) .. s:sub(513)))", "true\n"),
    ]);
}

#[test]
fn sha1_and_hmac_sha1() {
    assert_bodies(&[
        ("ngx.say(ngx.encode_base64(ngx.sha1_bin('hello')))", "qvTGHdzF6KLavt4PO0gs2a6pQ00=\n"),
        ("ngx.say(#ngx.sha1_bin(nil), ' ', ngx.encode_base64(ngx.sha1_bin('')))", "20 2jmj7l5rSw0yVb/vlWAYkK/YBwk=\n"),
        (
            "ngx.say(ngx.encode_base64(ngx.hmac_sha1('thisisverysecretstuff', 'some string we want to sign')))",
            "R/pvxzHC4NLtj7S+kXFg/NePTmk=\n",
        ),
        ("ngx.say(#ngx.hmac_sha1('', ''), ' ', ngx.hmac_sha1(1, 2) == ngx.hmac_sha1('1', '2'))", "20 true\n"),
    ]);
    assert_errors(&[
        ("ngx.hmac_sha1('k')", "expecting 2 arguments, but got 1"),
        ("ngx.hmac_sha1(nil, 's')", "bad argument #1 to 'hmac_sha1' (string expected, got nil)"),
        ("ngx.hmac_sha1('k', {})", "bad argument #2 to 'hmac_sha1' (string expected, got table)"),
    ]);
}

#[test]
fn crc32_short_and_long() {
    assert_bodies(&[
        ("ngx.say(ngx.crc32_short('hello'), ' ', ngx.crc32_long('hello'))", "907060870 907060870\n"),
        ("ngx.say(ngx.crc32_short(''), ' ', ngx.crc32_long(nil))", "0 0\n"),
        ("ngx.say(ngx.crc32_long(32), ' ', ngx.crc32_short('abc'))", "2103780943 891568578\n"),
        ("ngx.say(ngx.crc32_long(string.rep('x', 5000)) == ngx.crc32_short(string.rep('x', 5000)))", "true\n"),
    ]);
}

#[test]
fn encode_base64() {
    assert_bodies(&[
        ("ngx.say(ngx.encode_base64('hello'))", "aGVsbG8=\n"),
        ("ngx.say('[', ngx.encode_base64(nil), ']')", "[]\n"),
        ("ngx.say(ngx.encode_base64(3.14), ' ', ngx.encode_base64(true))", "My4xNA== dHJ1ZQ==\n"),
        ("ngx.say(ngx.encode_base64('hello', true))", "aGVsbG8\n"),
        ("ngx.say(ngx.encode_base64('a', true), ' ', ngx.encode_base64('ab', false))", "YQ YWI=\n"),
        ("ngx.say(ngx.encode_base64('\\255\\254\\253'))", "//79\n"),
    ]);
    assert_errors(&[
        ("ngx.encode_base64('hello', 'yes')", "bad no_padding: boolean expected, got string"),
        ("ngx.encode_base64('hello', 1)", "bad no_padding: boolean expected, got number"),
    ]);
}

#[test]
fn decode_base64() {
    assert_bodies(&[
        ("ngx.say(ngx.decode_base64('aGVsbG8='))", "hello\n"),
        ("ngx.say(ngx.decode_base64('aGVsbG8'))", "hello\n"),
        ("ngx.say('[', ngx.decode_base64(''), ']')", "[]\n"),
        ("ngx.say(ngx.decode_base64('My4xNA=='), ' ', ngx.decode_base64('dHJ1ZQ=='))", "3.14 true\n"),
        // Not base64: nil, as lua-nginx-module.
        ("ngx.say(ngx.decode_base64('^*~'))", "nil\n"),
        ("ngx.say(ngx.decode_base64('a'))", "nil\n"),
        ("ngx.say(ngx.decode_base64('aGVs bG8='))", "nil\n"),
        (
            "ngx.say(#ngx.decode_base64(string.rep('a', 5460)), ' ', #ngx.decode_base64(string.rep('a', 5462)))",
            "4095 4096\n",
        ),
    ]);
    assert_errors(&[
        ("ngx.decode_base64(nil)", "string argument only"),
        ("ngx.decode_base64(12)", "string argument only"),
    ]);
}

const OPENRESTY: &str = "OpenResty is a full-fledged web platform that integrates the standard Nginx core, LuaJIT, \
many carefully written Lua libraries, lots of high quality 3rd-party Nginx modules, and most of their external \
dependencies. It is designed to help developers easily build scalable web applications, web services, and dynamic \
web gateways.\n";

#[test]
fn decode_base64mime_skips_what_is_not_base64() {
    // lua-resty-core's t/decode-base64.t, TEST 9 to 14.
    let wrapped = "ngx.say(ngx.decode_base64mime(\"T3BlblJlc3R5IGlzIGEgZnVsbC1mbGVkZ2VkIHdlYiBwbGF0Zm9ybSB0aGF0IGludGVncmF0ZXMg\\n\
dGhlIHN0YW5kYXJkIE5naW54IGNvcmUsIEx1YUpJVCwgbWFueSBjYXJlZnVsbHkgd3JpdHRlbiBM\\n\
dWEgbGlicmFyaWVzLCBsb3RzIG9mIGhpZ2ggcXVhbGl0eSAzcmQtcGFydHkgTmdpbnggbW9kdWxl\\n\
cywgYW5kIG1vc3Qgb2YgdGhlaXIgZXh0ZXJuYWwgZGVwZW5kZW5jaWVzLiBJdCBpcyBkZXNpZ25l\\n\
ZCB0byBoZWxwIGRldmVsb3BlcnMgZWFzaWx5IGJ1aWxkIHNjYWxhYmxlIHdlYiBhcHBsaWNhdGlv\\n\
bnMsIHdlYiBzZXJ2aWNlcywgYW5kIGR5bmFtaWMgd2ViIGdhdGV3YXlzLg==\\n\"))";
    let noisy = "ngx.say(ngx.decode_base64mime(\"!T3B#lblJl@c3R5IG\\rlzIGEgZnVs\\nbC1mbGVkZ2Vk&IHdlYiBwbG'F0Zm9ybSB0aGF0[IGludGVncmF0ZXMg\\n\
dGhlIHN0YW]5kYXJkIE5naW54IGNvcmUsIEx1-YUpJVCwg_bWFueSBjYXJlZnVsbHkgd3JpdHRlbiBM\\n\
dWEgbGlicmFyaWVzLCBsb3R$zIG9mIGhpZ2%ggcXVhbGl0eSAzcmQ^tcGFydHkgTm&dpbnggbW9kdWxl\\n\
cywgYW5kIG1vc3Qgb2YgdGhlaXIgZXh0ZXJuYWwgZGVwZW5kZW5jaWVzLiBJdCBpcyBkZXNpZ25l\\n\
ZCB0byBoZWxwIGRldmVsb3BlcnMgZWFzaWx5IGJ1aWxkIHNjYWxhYmxlIHdlYiBhcHBsaWNhdGlv\\n\
bnMsIHdlYiBzZXJ2aWNlcywgYW5kIGR5bmFtaWMgd2ViIGdhdGV3YXlzLg==\\n\"))";
    assert_bodies(&[
        (wrapped, OPENRESTY),
        (noisy, OPENRESTY),
        ("ngx.say(ngx.decode_base64mime('zaaLg=='))", "nil\n"),
        ("ngx.say(ngx.decode_base64mime('') .. 'empty')", "empty\n"),
        ("ngx.say(ngx.decode_base64mime('^&$') .. 'empty')", "empty\n"),
    ]);
    assert_errors(&[("ngx.decode_base64mime(nil)", "string argument only")]);
}

#[test]
fn escape_uri() {
    assert_bodies(&[
        ("ngx.say(ngx.escape_uri('a 你'))", "a%20%E4%BD%A0\n"),
        ("ngx.say(ngx.escape_uri('a+b'))", "a%2Bb\n"),
        (r#"ngx.say(ngx.escape_uri('"a/b={}:<>;&[]\\^'))"#, "%22a%2Fb%3D%7B%7D%3A%3C%3E%3B%26%5B%5D%5C%5E\n"),
        ("ngx.say(ngx.escape_uri('abc'), '[', ngx.escape_uri(''), ']')", "abc[]\n"),
        ("ngx.say('[', ngx.escape_uri(nil), '] ', ngx.escape_uri(32))", "[] 32\n"),
        // Type 2, the default: all but letters, digits and -._~ (and !*'(), as the code does).
        ("ngx.say(ngx.escape_uri('-._~!*\\'()|@$,', 2))", "-._~!*'()%7C%40%24%2C\n"),
        // Type 0, a full URI.
        ("ngx.say(ngx.escape_uri('/a b?c=d#e|@', 0))", "%2Fa%20b%3Fc%3Dd%23e|@\n"),
        ("ngx.say(ngx.escape_uri('a b\\n%', 5), ' ', ngx.escape_uri('a\"b', 3))", "a%20b%0A%25 a%22b\n"),
    ]);
    assert_errors(&[
        ("ngx.escape_uri('a', '2')", "\"esc_type\" is not number"),
        ("ngx.escape_uri('a', 7)", "\"esc_type\" 7 out of range"),
        ("ngx.escape_uri('a', -1)", "\"esc_type\" -1 out of range"),
    ]);
}

#[test]
fn unescape_uri() {
    assert_bodies(&[
        ("ngx.say(ngx.unescape_uri('a%20%e4%bd%a0'))", "a 你\n"),
        ("ngx.say(ngx.unescape_uri('b%20r56+7'))", "b r56 7\n"),
        // Invalid sequences keep their '%' (the README's example).
        ("ngx.say(ngx.unescape_uri('try %search%%20%again%'))", "try %search% %again%\n"),
        ("ngx.say('[', ngx.unescape_uri(nil), '] ', ngx.unescape_uri(32))", "[] 32\n"),
        ("ngx.say(ngx.unescape_uri(ngx.escape_uri('a/b?c=d&e f', 0)))", "a/b?c=d&e f\n"),
    ]);
}

#[test]
fn encode_args() {
    assert_bodies(&[
        (r#"ngx.say(ngx.encode_args({["b r"] = "hello world"}))"#, "b%20r=hello%20world\n"),
        ("ngx.say(ngx.encode_args({foo = 3}))", "foo=3\n"),
        ("ngx.say(ngx.encode_args({baz = {32, 'hello'}}))", "baz=32&baz=hello\n"),
        ("ngx.say(ngx.encode_args({a = true}), '[', ngx.encode_args({a = false}), ']')", "a[]\n"),
        ("ngx.say('[', ngx.encode_args({}), ']', ngx.encode_args({a = {}}), ']')", "[]]\n"),
        ("ngx.say(ngx.encode_args({a = {true, false, 'x'}}))", "a&a=x\n"),
        // Keys and values are escaped as a URI (type 0): separators, not every reserved byte.
        ("ngx.say(ngx.encode_args({k = 'a&b=c/d@e,f'}))", "k=a%26b%3Dc%2Fd@e,f\n"),
    ]);
    assert_errors(&[
        ("ngx.encode_args()", "expecting 1 argument but seen 0"),
        ("ngx.encode_args('a')", "bad argument #1 to 'encode_args' (table expected, got string)"),
        ("ngx.encode_args({a = print})", "attempt to use function as query arg value"),
        ("ngx.encode_args({'x'})", "attempt to use a non-string key in the \"args\" option table"),
    ]);
}

#[test]
fn decode_args() {
    assert_bodies(&[
        (
            "local a = ngx.decode_args('a=bar&b=foo&b=baz&c&d=&e=%20x+y') \
ngx.say(a.a, ' ', table.concat(a.b, ','), ' ', tostring(a.c), ' [', a.d, '] [', a.e, ']')",
            "bar foo,baz true [] [ x y]\n",
        ),
        ("local a = ngx.decode_args('a=1&b=2&c=3', 2) ngx.say(a.a, a.b, tostring(a.c))", "12nil\n"),
        ("local a = ngx.decode_args('a=1&a=2&a=3', 0) ngx.say(#a.a)", "3\n"),
        ("local n = 0 for _ in pairs(ngx.decode_args(string.rep('a=1&', 150))) do n = n + 1 end ngx.say(n)", "1\n"),
        ("local a = ngx.decode_args(string.rep('a=1&', 150)) ngx.say(#a.a)", "100\n"),
        ("local a = ngx.decode_args(string.rep('a=1&', 150), -1) ngx.say(#a.a)", "100\n"),
        ("ngx.say(next(ngx.decode_args('')))", "nil\n"),
        ("local a, err = ngx.decode_args('a=1&b=2', 1) ngx.say(a.a, ' ', tostring(err))", "1 nil\n"),
    ]);
    assert_errors(&[("ngx.decode_args(nil)", "bad argument #1 to 'decode_args' (string expected, got nil)")]);
}

#[test]
fn quote_sql_str() {
    assert_bodies(&[
        ("ngx.say(ngx.quote_sql_str(\"a'b\"))", "'a\\'b'\n"),
        ("ngx.say(ngx.quote_sql_str(''), ngx.quote_sql_str(12))", "'''12'\n"),
        ("ngx.say(ngx.quote_sql_str('\\0\\b\\n\\r\\t\\26\\\\\"你'))", "'\\0\\b\\n\\r\\t\\Z\\\\\\\"你'\n"),
    ]);
    assert_errors(&[
        ("ngx.quote_sql_str()", "expecting one argument"),
        ("ngx.quote_sql_str(nil)", "bad argument #1 to 'quote_sql_str' (string expected, got nil)"),
    ]);
}

#[test]
fn codecs_work_in_every_phase() {
    let lua = "assert(ngx.md5('a') == '0cc175b9c0f1b6a831c399e269772661' and ngx.escape_uri(' ') == '%20' \
and ngx.decode_base64(ngx.encode_base64('x')) == 'x' and ngx.decode_args('a=1').a == '1')";
    run_everywhere(&engine(), lua);
}

#[test]
fn codecs_work_while_a_module_loads() {
    let dir = std::env::temp_dir().join(format!("luaengine-codec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("digest.lua"), "return { hello = ngx.md5('hello') }").unwrap();
    let config = luaengine::EngineConfig {
        workers: 1,
        package_path: vec![format!("{}/?.lua", dir.display())],
        ..Default::default()
    };
    let outcome =
        serve(&engine_with(config), "/t", &[], &[(luaengine::Phase::Content, "ngx.say(require('digest').hello)")]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(outcome.body(), "5d41402abc4b2a76b9719d911017c592\n");
}
