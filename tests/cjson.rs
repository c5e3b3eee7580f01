//! `require "cjson"` and `require "cjson.safe"`, modelled on lua-cjson's tests/test.lua and
//! OpenResty's tests/agentzh.t: output, number formatting, configuration and error messages.

mod common;

use common::*;

/// Runs each snippet after `local cjson = require "cjson"`.
fn assert_cjson(cases: &[(&str, &str)]) {
    for (lua, expected) in cases {
        let body = content(&format!("local cjson = require \"cjson\" local safe = require \"cjson.safe\" {lua}"));
        assert_eq!(body, *expected, "{lua}");
    }
}

/// Checks the error each snippet raises: lua-cjson raises from C, so messages have no position.
fn assert_raises(cases: &[(&str, &str)]) {
    let cases: Vec<(String, String)> = cases
        .iter()
        .map(|(lua, message)| {
            (format!("local ok, err = pcall(function() {lua} end) ngx.say(ok, ' ', err)"), format!("false {message}\n"))
        })
        .collect();
    let cases: Vec<(&str, &str)> = cases.iter().map(|(lua, expected)| (lua.as_str(), expected.as_str())).collect();
    assert_cjson(&cases);
}

#[test]
fn encode_scalars() {
    let cases = [
        (
            "ngx.say(cjson.encode(true), cjson.encode(false), cjson.encode(nil), cjson.encode(cjson.null))",
            "truefalsenullnull\n",
        ),
        ("ngx.say(cjson.encode(1), ' ', cjson.encode(-1), ' ', cjson.encode(0))", "1 -1 0\n"),
        ("ngx.say(cjson.encode(0.1), ' ', cjson.encode(-1.5), ' ', cjson.encode(1/3))", "0.1 -1.5 0.33333333333333\n"),
        (
            "ngx.say(cjson.encode(1e300), ' ', cjson.encode(1.5e-7), ' ', cjson.encode(2^53))",
            "1e+300 1.5e-07 9.007199254741e+15\n",
        ),
        ("ngx.say(cjson.encode(123456789012))", "123456789012\n"),
        (r#"ngx.say(cjson.encode("hello"))"#, "\"hello\"\n"),
        (r#"ngx.say(cjson.encode("\"\\/\b\f\n\r\t"))"#, "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"\n"),
        (r#"ngx.say(cjson.encode("\1\31\127 é"))"#, "\"\\u0001\\u001f\\u007f é\"\n"),
        (r#"ngx.say(cjson.encode("a\0b"))"#, "\"a\\u0000b\"\n"),
        (r#"ngx.say(cjson.encode("\255\254"))"#, "\"\u{FFFD}\u{FFFD}\"\n"),
        (r#"cjson.encode_escape_forward_slash(false) ngx.say(cjson.encode("a/b"))"#, "\"a/b\"\n"),
        ("ngx.say(cjson.encode(cjson.empty_array))", "[]\n"),
    ];
    // ngx.say writes the raw bytes; the body check above reads them lossily.
    assert_cjson(&cases);
}

/// LuaJIT has only doubles, which lua-cjson prints with %.14g; Lua 5.4 integers print plainly.
#[test]
fn integers_follow_the_backend() {
    let expected = if luaengine::BACKEND == "LuaJIT" { "9.007199254741e+15\n" } else { "9007199254740992\n" };
    assert_cjson(&[("ngx.say(cjson.encode(9007199254740992))", expected)]);
    if luaengine::BACKEND != "LuaJIT" {
        assert_cjson(&[
            (r#"ngx.say(math.type(cjson.decode("1")), math.type(cjson.decode("1.0")))"#, "integerfloat\n"),
            (r#"ngx.say(cjson.encode(math.maxinteger))"#, "9223372036854775807\n"),
        ]);
    }
}

#[test]
fn encode_tables() {
    let cases = [
        ("ngx.say(cjson.encode({1, 2, 3}))", "[1,2,3]\n"),
        ("ngx.say(cjson.encode({1, nil, 3}))", "[1,null,3]\n"),
        ("ngx.say(cjson.encode({[3] = 'x'}))", "[null,null,\"x\"]\n"),
        ("ngx.say(cjson.encode({a = {b = {c = {1, 'two'}}}}))", "{\"a\":{\"b\":{\"c\":[1,\"two\"]}}}\n"),
        ("ngx.say(cjson.encode({[1.5] = 'x'}))", "{\"1.5\":\"x\"}\n"),
        ("ngx.say(cjson.encode({[0] = 'x'}))", "{\"0\":\"x\"}\n"),
        ("ngx.say(cjson.encode({[-1] = 'x'}))", "{\"-1\":\"x\"}\n"),
        ("local t = cjson.decode(cjson.encode({1, 2, a = 'b'})) ngx.say(t['1'], t['2'], t.a)", "12b\n"),
        ("ngx.say(#cjson.encode({a = 1, b = 2, c = 3}))", "19\n"),
        // Tables with a __len metamethod are arrays of that length.
        ("ngx.say(cjson.encode(setmetatable({}, { __len = function() return 2 end })))", "[null,null]\n"),
    ];
    assert_cjson(&cases);
}

/// tests/agentzh.t: empty tables, empty_array, empty_array_mt, array_mt.
#[test]
fn empty_tables_and_array_metatables() {
    let cases = [
        ("ngx.say(cjson.encode({}), cjson.encode({dogs = {}}))", "{}{\"dogs\":{}}\n"),
        ("cjson.encode_empty_table_as_object(false) ngx.say(cjson.encode({}), cjson.encode({dogs = {}}))", "[]{\"dogs\":[]}\n"),
        ("cjson.encode_empty_table_as_object('on') ngx.say(cjson.encode({}))", "{}\n"),
        ("ngx.say(cjson.encode({arr = cjson.empty_array}))", "{\"arr\":[]}\n"),
        ("ngx.say(cjson.encode({arr = setmetatable({}, cjson.empty_array_mt)}))", "{\"arr\":[]}\n"),
        ("ngx.say(cjson.encode(setmetatable({'hello', 'world'}, cjson.empty_array_mt)))", "[\"hello\",\"world\"]\n"),
        ("ngx.say(cjson.encode(setmetatable({}, cjson.array_mt)))", "[]\n"),
        ("ngx.say(cjson.encode(setmetatable({'foo', 'bar'}, cjson.array_mt)))", "[\"foo\",\"bar\"]\n"),
        ("local t = {foo = 'bar'} t[1] = 'hello' ngx.say(cjson.encode(setmetatable(t, cjson.array_mt)))", "[\"hello\"]\n"),
        (
            "local t = {} t[1] = 'foo' t[2] = 'bar' t[4] = 'last' ngx.say(cjson.encode(setmetatable(t, cjson.array_mt)))",
            "[\"foo\",\"bar\",null,\"last\"]\n",
        ),
        (
            r#"local t = cjson.decode('{"my_array":[]}') ngx.say(getmetatable(t.my_array) == cjson.array_mt, cjson.encode(t))"#,
            "false{\"my_array\":{}}\n",
        ),
        (
            r#"cjson.decode_array_with_array_mt(true) local t = cjson.decode('{"a":["hello","world"]}') t.a.x = 1 t.a[1] = nil t.a[2] = nil ngx.say(getmetatable(t.a) == cjson.array_mt, cjson.encode(t))"#,
            "true{\"a\":[]}\n",
        ),
        (
            r#"cjson.decode_array_with_array_mt(true) cjson.decode_array_with_array_mt(false) ngx.say(getmetatable(cjson.decode("[]")))"#,
            "nil\n",
        ),
        ("ngx.say(safe.array_mt == cjson.array_mt, cjson.new().empty_array_mt == cjson.empty_array_mt)", "truetrue\n"),
        ("ngx.say(cjson.null == ngx.null, type(cjson.empty_array), cjson._NAME, ' ', cjson._VERSION)", "trueuserdatacjson 2.1.0.11\n"),
    ];
    assert_cjson(&cases);
}

#[test]
fn sparse_arrays() {
    let cases = [
        ("ngx.say(cjson.encode({[1] = 1, [10] = 10}))", "[1,null,null,null,null,null,null,null,null,10]\n"),
        ("ngx.say(cjson.encode_sparse_array())", "false210\n"),
        ("ngx.say(cjson.encode_sparse_array(true))", "true210\n"),
        ("cjson.encode_sparse_array(true) ngx.say(cjson.encode({[20] = 1}))", "{\"20\":1}\n"),
        ("cjson.encode_sparse_array(false, 0) ngx.say(#cjson.encode({[20] = 1}))", "98\n"),
        ("cjson.encode_sparse_array(nil, nil, 30) ngx.say(#cjson.encode({[20] = 1}))", "98\n"),
    ];
    assert_cjson(&cases);
    assert_raises(&[
        ("cjson.encode({[1] = 1, [100] = 2})", "Cannot serialise table: excessively sparse array"),
        ("cjson.encode({a = {[20] = 1}})", "Cannot serialise table: excessively sparse array"),
    ]);
}

#[test]
fn encode_errors() {
    assert_raises(&[
        ("cjson.encode(function() end)", "Cannot serialise function: type not supported"),
        ("cjson.encode({f = print})", "Cannot serialise function: type not supported"),
        ("cjson.encode(coroutine.create(print))", "Cannot serialise thread: type not supported"),
        ("cjson.encode({[true] = 1})", "Cannot serialise boolean: table key must be a number or string"),
        ("cjson.encode(0/0)", "Cannot serialise number: must not be NaN or Infinity"),
        ("cjson.encode({math.huge})", "Cannot serialise number: must not be NaN or Infinity"),
        ("cjson.encode()", "bad argument #1 to 'encode' (expected 1 argument)"),
        ("cjson.encode(1, 2)", "bad argument #1 to 'encode' (expected 1 argument)"),
        ("local t = {} t.t = t cjson.encode(t)", "Cannot serialise, excessive nesting (1001)"),
        ("cjson.encode_max_depth(3) cjson.encode({{{{}}}})", "Cannot serialise, excessive nesting (4)"),
    ]);
    let cases = [
        ("cjson.encode_max_depth(3) ngx.say(cjson.encode({{{1}}}))", "[[[1]]]\n"),
        (
            "cjson.encode_invalid_numbers(true) ngx.say(cjson.encode({0/0, math.huge, -math.huge}))",
            "[NaN,Infinity,-Infinity]\n",
        ),
        ("ngx.say(cjson.encode_invalid_numbers('null'), cjson.encode({math.huge}))", "null[null]\n"),
        ("cjson.encode_skip_unsupported_value_types(true) ngx.say(cjson.encode({1, print, 3}))", "[1,3]\n"),
        ("cjson.encode_skip_unsupported_value_types(true) ngx.say(cjson.encode({f = print}))", "{}\n"),
        ("cjson.encode_skip_unsupported_value_types(true) ngx.say(cjson.encode({print, 2}))", "[2]\n"),
        (
            "local deep = {} local t = deep for i = 1, 999 do t[1] = {} t = t[1] end ngx.say(#cjson.encode(deep))",
            "2000\n",
        ),
    ];
    assert_cjson(&cases);
}

#[test]
fn decode_values() {
    let cases = [
        (
            r#"ngx.say(cjson.decode("1"), " ", cjson.decode("-1.5"), " ", cjson.decode("1e3"), " ", cjson.decode("1.5E-3"))"#,
            "1 -1.5 1000 0.0015\n",
        ),
        (
            r#"ngx.say(cjson.decode('"str"'), cjson.decode("true"), cjson.decode("false"), cjson.decode("null") == cjson.null)"#,
            "strtruefalsetrue\n",
        ),
        (r#"ngx.say(cjson.decode(" \t\r\n[1, 2 ,3] \n")[3])"#, "3\n"),
        (
            r#"local t = cjson.decode('{"a":{"b":[1,{"c":null}]}}') ngx.say(t.a.b[1], " ", t.a.b[2].c == cjson.null)"#,
            "1 true\n",
        ),
        (r#"local t = cjson.decode('{"a":1,"a":2}') ngx.say(t.a)"#, "2\n"),
        (r#"ngx.say(cjson.decode(123))"#, "123\n"),
        (r#"ngx.say(#cjson.decode("[]"), next(cjson.decode("{}")))"#, "0nil\n"),
        // strtoll with base 0 reads hex and octal; strtod reads fractions.
        (
            r#"ngx.say(cjson.decode("0x10"), " ", cjson.decode("010"), " ", cjson.decode("+1"), " ", cjson.decode("-0"))"#,
            "16 8 1 0\n",
        ),
        (r#"ngx.say(cjson.decode("1."), " ", cjson.decode("2.5e+1"))"#, "1 25\n"),
        (r#"ngx.say(cjson.decode("[1]\0garbage")[1])"#, "1\n"),
        (r#"ngx.say(cjson.decode("12345678901234567890") > 9e18)"#, "true\n"),
    ];
    assert_cjson(&cases);
}

#[test]
fn decode_strings() {
    let cases = [
        (r#"ngx.say(cjson.decode([["\"\\\/\b\f\n\r\t"]]) == "\"\\/\b\f\n\r\t")"#, "true\n"),
        (r#"ngx.say(cjson.decode([["\u00e9\u7AE0"]]))"#, "é章\n"),
        (r#"ngx.say(cjson.decode([["\ud83d\ude00"]]))"#, "😀\n"),
        (r#"ngx.say(cjson.decode([["\u0000"]]) == "\0")"#, "true\n"),
        (r#"ngx.say(cjson.decode('"raw é\1"') == "raw é\1")"#, "true\n"),
        (r#"ngx.say(cjson.encode(cjson.decode('["a=1&b=2"]')))"#, "[\"a=1&b=2\"]\n"),
    ];
    assert_cjson(&cases);
}

/// Errors name what lua-cjson expected, the token it found and its 1-based position.
#[test]
fn decode_errors() {
    assert_raises(&[
        (r#"cjson.decode("")"#, "Expected value but found T_END at character 1"),
        (r#"cjson.decode("x")"#, "Expected value but found invalid token at character 1"),
        (r#"cjson.decode("  nul")"#, "Expected value but found invalid token at character 3"),
        (r#"cjson.decode("[1,2")"#, "Expected comma or array end but found T_END at character 5"),
        (r#"cjson.decode("[1,]")"#, "Expected value but found T_ARR_END at character 4"),
        (r#"cjson.decode("[1 2]")"#, "Expected comma or array end but found T_INTEGER at character 4"),
        (r#"cjson.decode("[1 2.5]")"#, "Expected comma or array end but found T_NUMBER at character 4"),
        (r#"cjson.decode('{"a" 1}')"#, "Expected colon but found T_INTEGER at character 6"),
        (r#"cjson.decode('{1:2}')"#, "Expected object key string but found T_INTEGER at character 2"),
        (r#"cjson.decode('{"a":1,}')"#, "Expected object key string but found T_OBJ_END at character 8"),
        (r#"cjson.decode('{"a":1 "b"}')"#, "Expected comma or object end but found T_STRING at character 8"),
        (r#"cjson.decode("[1e]")"#, "Expected comma or array end but found invalid token at character 3"),
        (r#"cjson.decode("[1] x")"#, "Expected the end but found invalid token at character 5"),
        (r#"cjson.decode("[1],")"#, "Expected the end but found T_COMMA at character 4"),
        (r#"cjson.decode("{}}")"#, "Expected the end but found T_OBJ_END at character 3"),
        (r#"cjson.decode('"abc')"#, "Expected value but found unexpected end of string at character 5"),
        (r#"cjson.decode([["a\x"]])"#, "Expected value but found invalid escape code at character 3"),
        (r#"cjson.decode([["\udc00"]])"#, "Expected value but found invalid unicode escape code at character 2"),
        (r#"cjson.decode([["\ud83d"]])"#, "Expected value but found invalid unicode escape code at character 2"),
        (r#"cjson.decode([["\u12"]])"#, "Expected value but found invalid unicode escape code at character 2"),
        (r#"cjson.decode("-")"#, "Expected value but found invalid number at character 1"),
        (r#"cjson.decode("[inf]")"#, "Expected value but found invalid number at character 2"),
        (r#"cjson.decode("NaN")"#, "Expected value but found invalid number at character 1"),
        (r#"cjson.decode(".5")"#, "Expected value but found invalid token at character 1"),
        (r#"cjson.decode("\0[")"#, "JSON parser does not support UTF-16 or UTF-32"),
        (r#"cjson.decode(nil)"#, "bad argument #1 to 'decode' (string expected, got nil)"),
        (r#"cjson.decode({})"#, "bad argument #1 to 'decode' (string expected, got table)"),
        (r#"cjson.decode()"#, "bad argument #1 to 'decode' (expected 1 argument)"),
        (r#"cjson.decode("[" .. ("[1],"):rep(3) .. "1]", 1)"#, "bad argument #1 to 'decode' (expected 1 argument)"),
    ]);
    assert_raises(&[
        (
            r#"cjson.decode_invalid_numbers(false) cjson.decode("0x10")"#,
            "Expected value but found invalid number at character 1",
        ),
        (
            r#"cjson.decode_invalid_numbers(false) cjson.decode("[+1]")"#,
            "Expected value but found invalid token at character 2",
        ),
        (
            r#"cjson.decode_invalid_numbers(false) cjson.decode("-01")"#,
            "Expected value but found invalid number at character 1",
        ),
    ]);
}

#[test]
fn decode_depth() {
    assert_raises(&[
        (
            r#"cjson.decode_max_depth(2) cjson.decode("[[[1]]]")"#,
            "Found too many nested data structures (3) at character 3",
        ),
        (
            r#"cjson.decode_max_depth(2) cjson.decode('{"a":{"b":{}}}')"#,
            "Found too many nested data structures (3) at character 11",
        ),
        (
            r#"cjson.decode(("["):rep(1001) .. ("]"):rep(1001))"#,
            "Found too many nested data structures (1001) at character 1001",
        ),
    ]);
    assert_cjson(&[
        (r#"ngx.say(#cjson.encode(cjson.decode(("["):rep(1000) .. ("]"):rep(1000))))"#, "2000\n"),
        (r#"cjson.decode_max_depth(2) ngx.say(cjson.decode("[[1]]")[1][1])"#, "1\n"),
    ]);
}

#[test]
fn configuration_functions() {
    let cases = [
        (
            "ngx.say(cjson.encode_max_depth(), cjson.decode_max_depth(), cjson.encode_number_precision())",
            "1000100014\n",
        ),
        ("ngx.say(cjson.encode_number_precision(3), cjson.encode(3.14159), cjson.encode(1234.5))", "33.141.23e+03\n"),
        (
            "cjson.encode_number_precision(16) ngx.say(cjson.encode(2^53), ' ', cjson.encode(0.1))",
            "9007199254740992 0.1\n",
        ),
        ("ngx.say(cjson.encode_keep_buffer(false), cjson.encode_keep_buffer())", "falsefalse\n"),
        ("ngx.say(cjson.encode_invalid_numbers(), cjson.decode_invalid_numbers())", "falsetrue\n"),
        ("ngx.say(cjson.encode_empty_table_as_object('off'), cjson.encode({}))", "false[]\n"),
        ("ngx.say(cjson.encode_escape_forward_slash(), cjson.encode_skip_unsupported_value_types())", "truefalse\n"),
        ("ngx.say(cjson.decode_array_with_array_mt(), cjson.decode_array_with_array_mt(true))", "falsetrue\n"),
        // Settings come back as values, one each, not as a table.
        ("ngx.say(type(cjson.decode_max_depth()), select('#', cjson.encode_sparse_array()))", "number3\n"),
        ("local convert, ratio, safe = cjson.encode_sparse_array() ngx.say(convert, ratio, safe)", "false210\n"),
    ];
    assert_cjson(&cases);
    assert_raises(&[
        (
            "cjson.encode_number_precision(17)",
            "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 16)",
        ),
        (
            "cjson.encode_number_precision(0)",
            "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 16)",
        ),
        (
            "cjson.encode_max_depth(0)",
            "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)",
        ),
        ("cjson.encode_max_depth('x')", "bad argument #1 to 'encode_max_depth' (number expected, got string)"),
        ("cjson.encode_max_depth(1, 2)", "bad argument #2 to 'encode_max_depth' (found too many arguments)"),
        (
            "cjson.encode_sparse_array(true, 1, 1, 1)",
            "bad argument #4 to 'encode_sparse_array' (found too many arguments)",
        ),
        (
            "cjson.encode_sparse_array(true, -1)",
            "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)",
        ),
        (
            "cjson.encode_empty_table_as_object('maybe')",
            "bad argument #1 to 'encode_empty_table_as_object' (invalid option 'maybe')",
        ),
        (
            "cjson.encode_empty_table_as_object(1)",
            "bad argument #1 to 'encode_empty_table_as_object' (string expected, got number)",
        ),
        ("cjson.encode_invalid_numbers('nil')", "bad argument #1 to 'encode_invalid_numbers' (invalid option 'nil')"),
    ]);
}

/// Every module table (`require "cjson"`, `require "cjson.safe"`, `new()`) has its own settings.
#[test]
fn instances_have_their_own_configuration() {
    let cases = [
        (
            "local c2 = cjson.new() c2.encode_empty_table_as_object(false) ngx.say(cjson.encode({}), c2.encode({}))",
            "{}[]\n",
        ),
        ("cjson.encode_empty_table_as_object(false) ngx.say(safe.encode({}), cjson.encode({}))", "{}[]\n"),
        ("ngx.say(require('cjson') == cjson, require('cjson.safe') == safe, cjson ~= safe)", "truetruetrue\n"),
        (
            "ngx.say(cjson.new() ~= cjson, safe.new().decode('x'))",
            "truenilExpected value but found invalid token at character 1\n",
        ),
    ];
    assert_cjson(&cases);
}

#[test]
fn safe_returns_errors() {
    let cases = [
        ("ngx.say(safe.decode('{'))", "nilExpected object key string but found T_END at character 2\n"),
        ("ngx.say(safe.encode(print))", "nilCannot serialise function: type not supported\n"),
        ("ngx.say(safe.decode(nil))", "nilbad argument #1 to 'decode' (string expected, got nil)\n"),
        ("ngx.say(safe.decode('[1,2]')[2], safe.encode({1}))", "2[1]\n"),
        ("local t = {} t.t = t ngx.say(safe.encode(t))", "nilCannot serialise, excessive nesting (1001)\n"),
    ];
    assert_cjson(&cases);
    // A wrong argument count still raises, as lua-cjson checks it before its protected call.
    assert_raises(&[
        ("safe.encode()", "bad argument #1 to 'encode' (expected 1 argument)"),
        ("safe.decode('1', 2)", "bad argument #1 to 'decode' (expected 1 argument)"),
        (
            "safe.encode_max_depth(0)",
            "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)",
        ),
    ]);
}

#[test]
fn round_trips_a_document() {
    let body = content(
        r#"local cjson = require "cjson"
           local doc = { id = 42, name = "caf\195\169 \"quoted\"", tags = { "a", "b" }, nested = { ok = true, none = cjson.null },
                         ratio = 0.25, list = { 1, 2.5, -3, { x = "y" } } }
           local back = cjson.decode(cjson.encode(doc))
           ngx.say(back.id, " ", back.name, " ", back.tags[2], " ", back.nested.ok, " ", back.nested.none == cjson.null,
                   " ", back.ratio, " ", back.list[2], " ", back.list[4].x)
           ngx.say(cjson.encode(cjson.decode(cjson.encode(doc))) == cjson.encode(back))"#,
    );
    assert_eq!(body, "42 café \"quoted\" b true true 0.25 2.5 y\ntrue\n");
}

#[test]
fn cjson_loads_in_every_request_phase() {
    let engine = engine();
    run_everywhere(
        &engine,
        r#"local cjson = require "cjson" assert(cjson.encode(cjson.decode('[1,"a"]')) == '[1,"a"]')"#,
    );
}
