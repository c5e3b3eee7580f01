//! ngx.re.match, find, gmatch, sub and gsub, modelled on lua-nginx-module's t/034-match.t,
//! t/035-gmatch.t, t/036-sub.t, t/037-gsub.t, t/038-match-o.t and t/047-match-jit.t (results as
//! lua-resty-core gives them: `false` for groups that did not take part, PCRE2 messages).

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn match_returns_captures() {
    let cases = [
        (r#"local m = ngx.re.match("hello, 1234", "([0-9]+)") ngx.say(m[0])"#, "1234\n"),
        (r#"local m = ngx.re.match("hello, 1234", "(\\d+)") ngx.say(m[0])"#, "1234\n"),
        (r#"local m = ngx.re.match("hello, 1234", [[\d+]]) ngx.say(m[0])"#, "1234\n"),
        (r#"local m = ngx.re.match("hello, 1234", "([0-9]{2})[0-9]+") ngx.say(m[0], " ", m[1])"#, "1234 12\n"),
        (
            r#"local m = ngx.re.match("hello, 1234", "([a-z]+).*?([0-9]{2})[0-9]+", "") ngx.say(m[0], "|", m[1], "|", m[2])"#,
            "hello, 1234|hello|12\n",
        ),
        (
            r#"local m = ngx.re.match("hello, 1234", "([a-z]+).*?([0-9]{2})[0-9]+", "o") ngx.say(m[0], "|", m[1], "|", m[2])"#,
            "hello, 1234|hello|12\n",
        ),
        (r#"local m = ngx.re.match("hello, 1234", "foo") ngx.say("not matched: ", m)"#, "not matched: nil\n"),
        (r##"ngx.say(select("#", ngx.re.match("hello", "foo")))"##, "1\n"),
        // Groups that do not take part are false, trailing ones included.
        (
            r#"local m = ngx.re.match("hello, world", "(world)|(hello)", "x") ngx.say(m[0], " ", m[1], " ", m[2])"#,
            "hello false hello\n",
        ),
        (
            r#"local m = ngx.re.match("hello, 1234", "([0-9]+)(h?)") ngx.say(m[0], "|", m[1], "|", m[2], "|")"#,
            "1234|1234||\n",
        ),
        (r#"local m = ngx.re.match("a", "(a)(b)?(c)?") ngx.say(#m, " ", m[2], " ", m[3])"#, "3 false false\n"),
        (r#"local m = ngx.re.match(1234, 23) ngx.say(m[0])"#, "23\n"),
        (r#"local m = ngx.re.match(nil, "ni") ngx.say(m[0])"#, "ni\n"),
        (r#"local m = ngx.re.match("hello", "hello", "j") ngx.say(m[0])"#, "hello\n"),
        (r#"local m = ngx.re.match("hello", "HELLO", "jo") ngx.say(m)"#, "nil\n"),
        (r#"local m = ngx.re.match("{foobarbaz}", "(?<=foo)bar|(?<=bar)baz") ngx.say(m[0])"#, "bar\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn match_options() {
    let cases = [
        (r#"ngx.say(ngx.re.match("hello, 1234", "HELLO"))"#, "nil\n"),
        (r#"ngx.say(ngx.re.match("hello, 1234", "HELLO", "i")[0])"#, "hello\n"),
        (r#"ngx.say(ngx.re.match("hello\nworld", "^world", "m")[0])"#, "world\n"),
        (r#"ngx.say(ngx.re.match("hello\nworld", ".*", "m")[0])"#, "hello\n"),
        (r#"ngx.say(ngx.re.match("hello\nworld", "^world", "s"))"#, "nil\n"),
        (r#"ngx.say(ngx.re.match("hello\nworld", ".*", "s")[0])"#, "hello\nworld\n"),
        (r#"ngx.say(ngx.re.match("hello\nworld", "\\w     \\w", "x")[0])"#, "he\n"),
        (r#"ngx.say(ngx.re.match("hello", "h e l # a comment", "x")[0])"#, "hel\n"),
        // Anchored: only at the start (or ctx.pos), every alternative.
        (r#"ngx.say(ngx.re.match("hello, 1234", "([0-9]+)", "a"))"#, "nil\n"),
        (r#"ngx.say(ngx.re.match("1234, hello", "([0-9]+)", "a")[0])"#, "1234\n"),
        (r#"ngx.say(ngx.re.match("xb", "a|b", "a"))"#, "nil\n"),
        (r#"ngx.say(ngx.re.match("ab", "x # comment", "ax"))"#, "nil\n"),
        (r#"ngx.say(ngx.re.match("ab", "b", "a", { pos = 2 })[0])"#, "b\n"),
        (r#"ngx.say(ngx.re.match("hello", "h", "ijosmxuU")[0])"#, "h\n"),
        // JavaScript compatibility: \uHHHH.
        (r#"ngx.say(ngx.re.match("章", [[\u7AE0]], "uJ")[0])"#, "章\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn unicode_mode() {
    let cases = [
        (r#"ngx.say(ngx.re.match("hello章亦春", "HELLO.{2}", "iu")[0])"#, "hello章亦\n"),
        (r#"ngx.say(#ngx.re.match("hello章亦春", "HELLO.{2}", "i")[0])"#, "7\n"),
        (r#"ngx.say(ngx.re.match("你好", ".", "U")[0])"#, "你\n"),
        (r#"ngx.say(ngx.re.match("你好", ".", "u")[0])"#, "你\n"),
        // Unicode case folding needs UTF mode.
        (r#"ngx.say(ngx.re.match("ÉCOLE", "école", "iu")[0])"#, "ÉCOLE\n"),
        (r#"ngx.say(ngx.re.match("ÉCOLE", "école", "i"))"#, "nil\n"),
        (r#"ngx.say(ngx.re.match("Straße", "\\p{Lu}\\p{Ll}+", "u")[0])"#, "Straße\n"),
        // A subject that is not UTF-8 is an error in UTF mode (PCRE2's code for a truncated character).
        (r#"ngx.say(ngx.re.match(string.sub("你好", 1, 4), "你好", "u"))"#, "nilpcre_exec() failed: -4\n"),
        (r#"ngx.say(ngx.re.gsub("章亦春", "", "-", "u"))"#, "-章-亦-春-4\n"),
        (r#"local n = 0 for m in ngx.re.gmatch("章亦", "", "u") do n = n + 1 end ngx.say(n)"#, "3\n"),
        (r#"ngx.say(ngx.re.find("a章b", "b", "u"))"#, "55\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn subjects_and_patterns_are_binary_safe() {
    let cases = [
        (r#"local m = ngx.re.match("a\0b\0c", "b\0(c)") ngx.say(#m[0], " ", m[1])"#, "3 c\n"),
        (r#"local m = ngx.re.match("\1\255\254x", "\255\254(.)") ngx.say(m[1])"#, "x\n"),
        (r#"local m = ngx.re.match("\255\254", "[\254]") ngx.say(m[0] == "\254")"#, "true\n"),
        (r#"ngx.say(ngx.re.gsub("a\0b\0", "\0", "-"))"#, "a-b-2\n"),
        (
            r#"ngx.say(ngx.re.match("x", "\255", "u"))"#,
            "nilpcre2_compile() failed: UTF-8 error: invalid byte in \"\u{FFFD}\"\n",
        ),
    ];
    assert_bodies(&cases);
}

#[test]
fn named_captures() {
    let cases = [
        (
            r#"local m = ngx.re.match("hello, 1234", "(?<first>[a-z]+), [0-9]+") ngx.say(m[0], "|", m[1], "|", m.first, "|", m.second)"#,
            "hello, 1234|hello|hello|nil\n",
        ),
        (
            r#"local m = ngx.re.match("hello, 1234", "(?<first>[a-z]+), (?<first>[0-9]+)", "D") ngx.say(m[1], " ", m[2], " ", table.concat(m.first, "-"))"#,
            "hello 1234 hello-1234\n",
        ),
        (
            r#"local m = ngx.re.match("1234", "(?<first>[a-z]*)([0-9]+)") ngx.say("[", m.first, "] [", m[1], "] ", m[2])"#,
            "[] [] 1234\n",
        ),
        (
            r#"local m = ngx.re.match("hello, world", "(world)|(hello)|(?<named>howdy)") ngx.say(m[1], " ", m[2], " ", m[3], " ", m.named)"#,
            "false hello false false\n",
        ),
        // With D, groups that did not match are left out; none leaves the name unset.
        (
            r#"local m = ngx.re.match("test", "^(?:(?<g1>(?:foo))|(?<g2>(?:bar))|(?<g3>(?:test)))$", "D") ngx.say(type(m.g1), " ", type(m.g2), " ", m.g3[1])"#,
            "nil nil test\n",
        ),
        (
            r#"local m = ngx.re.match("b", "(?<n>a)|(?<n>b)", "D") ngx.say(#m.n, " ", m.n[1])"#,
            "1 b\n",
        ),
        (r#"ngx.say(ngx.re.match("ab", "(?<n>a)(?<n>b)"))"#, "nilpcre2_compile() failed: two named subpatterns have the same name (PCRE2_DUPNAMES not set) in \"(?<n>a)(?<n>b)\" at \"b)\"\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn ctx_pos_is_one_based_in_and_out() {
    let cases = [
        (
            r#"local ctx = {} local m = ngx.re.match("1234, hello", "([0-9]+)", "", ctx) ngx.say(m[0], " ", ctx.pos)"#,
            "1234 5\n",
        ),
        (
            r#"local ctx = { pos = 3 } local m = ngx.re.match("1234, hello", "([0-9]+)", "", ctx) ngx.say(m[0], " ", ctx.pos)"#,
            "34 5\n",
        ),
        (
            r#"local ctx = { pos = 0 } local m = ngx.re.match("12", "[0-9]", "", ctx) ngx.say(m[0], " ", ctx.pos)"#,
            "1 2\n",
        ),
        (
            r#"local ctx = { pos = 7 } local m = ngx.re.match("1234, hello", "([0-9]+)", "", ctx) ngx.say(m, " ", ctx.pos)"#,
            "nil 7\n",
        ),
        (
            r#"local ctx = {} local m = ngx.re.match("hello, 1234", "", "", ctx) ngx.say("pos: ", ctx.pos, " m: [", m[0], "]")"#,
            "pos: 1 m: []\n",
        ),
        (
            r#"local ctx = {} local a = ngx.re.match("{foobarbaz}", "(?<=foo)bar|(?<=bar)baz", "", ctx) local b = ngx.re.match("{foobarbaz}", "(?<=foo)bar|(?<=bar)baz", "", ctx) ngx.say(a[0], " ", b[0])"#,
            "bar baz\n",
        ),
        (r#"local ctx = { pos = 3 } ngx.say(ngx.re.match("ab", "x", "", ctx))"#, "nil\n"),
        (r#"local ctx = { pos = 4 } ngx.say(ngx.re.match("ab", "x", "", ctx))"#, "nilpcre_exec() failed: -33\n"),
        (r#"local ctx = { pos = 3 } ngx.say(ngx.re.find("1234", "[0-9]+", "", ctx), " ", ctx.pos)"#, "3 5\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn match_fills_the_result_table() {
    let cases = [
        (
            r#"local res = {} local m = ngx.re.match("hello, 1234", "([a-z]+), ([0-9]+)", "", nil, res) ngx.say(m == res, " ", res[0], " ", res[1], " ", res[2])"#,
            "true hello, 1234 hello 1234\n",
        ),
        (
            r#"local res = { "old", extra = 1 } ngx.re.match("ab", "(a)(?<x>b)", "", nil, res) ngx.say(res[1], " ", res.x, " ", res.extra)"#,
            "a b 1\n",
        ),
        (r#"local res = {} ngx.say(ngx.re.match("ab", "x", "", nil, res), " ", next(res))"#, "nil nil\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn bad_patterns_and_options() {
    let cases = [
        (
            r#"local m, err = ngx.re.match("hello\nworld", "(abc") ngx.say(m, " ", err)"#,
            "nil pcre2_compile() failed: missing closing parenthesis in \"(abc\"\n",
        ),
        (
            r#"local m, err = ngx.re.match("hello, 1234", "([0-9]+") ngx.say(err)"#,
            "pcre2_compile() failed: missing closing parenthesis in \"([0-9]+\"\n",
        ),
        (
            r#"ngx.say(select(3, ngx.re.find("x", "a)b")))"#,
            "pcre2_compile() failed: unmatched closing parenthesis in \"a)b\" at \")b\"\n",
        ),
        (
            r#"ngx.say(ngx.re.gmatch("x", "[a"))"#,
            "nilpcre2_compile() failed: missing terminating ] for character class in \"[a\"\n",
        ),
        (
            r#"ngx.say(ngx.re.sub("x", "*", ""))"#,
            "nilnilpcre2_compile() failed: quantifier does not follow a repeatable item in \"*\" at \"*\"\n",
        ),
        (r#"ngx.say(ngx.re.match("x", "x", "d"))"#, "nilregex DFA mode (option \"d\") is not supported\n"),
    ];
    assert_bodies(&cases);
    let errors = [
        (r#"ngx.re.match("hello", ".*", "H")"#, r#"unknown flag "H" (flags "H")"#),
        (r#"ngx.re.find("hello", ".*", "iz")"#, r#"unknown flag "z" (flags "iz")"#),
        (r#"ngx.re.gmatch("hello", ".*", "Q")"#, r#"unknown flag "Q" (flags "Q")"#),
        (r#"ngx.re.sub("hello", ".*", "", "Q")"#, r#"unknown flag "Q" (flags "Q")"#),
        (r#"ngx.re.gsub("hello", ".*", function() end, "Q")"#, r#"unknown flag "Q" (flags "Q")"#),
        (r#"ngx.re.match("hello", nil)"#, "bad argument #2 to 'match' (string expected, got nil)"),
        (r#"ngx.re.match("hello", "h", {})"#, "bad argument #3 to 'match' (string expected, got table)"),
        (r#"ngx.re.match("hello", "h", "", 1)"#, "bad argument #4 to 'match' (table expected, got number)"),
        (r#"ngx.re.find("hello", "h", "", nil, {})"#, "bad argument #5 to 'find' (number expected, got table)"),
    ];
    assert_errors(&errors);
}

/// A pattern that backtracks exponentially stops at PCRE2's match limit with an error.
#[test]
fn catastrophic_backtracking_is_an_error() {
    let started = Instant::now();
    let cases = [
        (
            r#"local m, err = ngx.re.match(string.rep("a", 40) .. "!", "^(a+)+$") ngx.say(m, " ", err)"#,
            "nil pcre_exec() failed: -47\n",
        ),
        (
            r#"local s, n, err = ngx.re.gsub(string.rep("a", 40) .. "!", "(a|aa)+$", "x") ngx.say(s, " ", n, " ", err)"#,
            "nil nil pcre_exec() failed: -47\n",
        ),
        (
            r#"local it = ngx.re.gmatch(string.rep("a", 40) .. "!", "(a+)+$") local m, err = it() ngx.say(m, " ", err, " ", it())"#,
            "nil pcre_exec() failed: -47 nil\n",
        ),
    ];
    assert_bodies(&cases);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn find_returns_positions() {
    let cases = [
        (r#"ngx.say(ngx.re.find("hello, 1234", "([0-9]+)"))"#, "811\n"),
        (r#"ngx.say(ngx.re.find("hello, 1234", "([0-9])([0-9]+)", "", nil, 2))"#, "911\n"),
        (r#"ngx.say(ngx.re.find("hello, 1234", "([0-9])([0-9]+)", "", nil, 0))"#, "811\n"),
        (r#"ngx.say(ngx.re.find("hello, 1234", "[0-9]+", "", nil, -1))"#, "811\n"),
        (r#"ngx.say(ngx.re.find("hello, 1234", "([0-9])([0-9]+)", "", nil, 3))"#, "nilnilnth out of bound\n"),
        (r#"ngx.say(ngx.re.find("hello, world", "(world)|(hello)", "", nil, 1))"#, "nilnil\n"),
        (r#"ngx.say(ngx.re.find("hello, 1234", "foo"))"#, "nil\n"),
        (r#"ngx.say(ngx.re.find("hello", ""))"#, "10\n"),
        (r#"ngx.say(ngx.re.find("hello", "HE", "i"))"#, "12\n"),
        (
            r#"local ctx = {} local from, to = ngx.re.find("1234, 56", "[0-9]+", "", ctx) ngx.say(from, to, " ", ctx.pos)"#,
            "14 5\n",
        ),
        (
            r#"local ctx = { pos = 5 } local from, to = ngx.re.find("1234, 56", "[0-9]+", "", ctx) ngx.say(from, to, " ", ctx.pos)"#,
            "78 9\n",
        ),
    ];
    assert_bodies(&cases);
}

#[test]
fn gmatch_iterates() {
    let cases = [
        (
            r#"for m in ngx.re.gmatch("hello, world", "([a-z]+)", "i") do ngx.say(m[0], " ", m[1]) end"#,
            "hello hello\nworld world\n",
        ),
        (
            r#"local it = ngx.re.gmatch("hello, world!", "([a-z]+)", "i") ngx.say(it()[0]) ngx.say(it()[0]) ngx.say(it()) ngx.say(it())"#,
            "hello\nworld\nnil\nnil\n",
        ),
        (r#"local it = ngx.re.gmatch("hello", "foo") ngx.say(type(it), " ", it())"#, "function nil\n"),
        (
            r#"local out = {} for m in ngx.re.gmatch("abc", "") do out[#out + 1] = "[" .. m[0] .. "]" end ngx.say(#out)"#,
            "4\n",
        ),
        (
            r#"local out = {} for m in ngx.re.gmatch("a1b22", "[0-9]*") do out[#out + 1] = "[" .. m[0] .. "]" end ngx.say(table.concat(out))"#,
            "[][1][][22][]\n",
        ),
        (
            r#"for m in ngx.re.gmatch("a=1, b=2", "(?<k>[a-z])=(?<v>[0-9])") do ngx.say(m.k, m.v, m[1], m[2]) end"#,
            "a1a1\nb2b2\n",
        ),
        (r#"for m in ngx.re.gmatch("aAa", "a", "i") do ngx.print(m[0]) end ngx.say()"#, "aAa\n"),
        (
            r#"local it, err = ngx.re.gmatch("hello", "(") ngx.say(it, " ", err)"#,
            "nil pcre2_compile() failed: missing closing parenthesis in \"(\"\n",
        ),
        // The subject is read once: changing the variable does not change the iteration.
        (r#"local s = "a b" local it = ngx.re.gmatch(s, "[a-z]") s = "x" ngx.say(it()[0], it()[0])"#, "ab\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn sub_with_templates() {
    let cases = [
        (r#"ngx.say(ngx.re.sub("hello, world", "[a-z]+", "howdy"))"#, "howdy, world1\n"),
        (r#"ngx.say(ngx.re.sub("hello, world", "[A-Z]+", "howdy"))"#, "hello, world0\n"),
        (r#"ngx.say(ngx.re.sub("a b c d", "(b) (c)", "[$0] [$1] [$2] [$3] [$134]"))"#, "a [b c] [b] [c] [] [] d1\n"),
        (r#"ngx.say(ngx.re.sub("a b c d", "(b) (c)", "[${0}] [${1}x] [$$] [$$1]"))"#, "a [b c] [bx] [$] [$1] d1\n"),
        (r#"ngx.say(ngx.re.sub("hello, 1234", "([0-9])[0-9]", "[$0][$1]"))"#, "hello, [12][1]341\n"),
        (r#"ngx.say(ngx.re.sub("hello, 1234", "[0-9]", "${0}00"))"#, "hello, 1002341\n"),
        (r#"ngx.say(ngx.re.sub("hello, 1234", "[0-9]", "$${0}"))"#, "hello, ${0}2341\n"),
        (r#"ngx.say(ngx.re.sub("abc", "b", 5))"#, "a5c1\n"),
        (r#"ngx.say(ngx.re.sub("abc", "", "-"))"#, "-abc1\n"),
        (r#"ngx.say(ngx.re.sub("a", "x*", "-"))"#, "-a1\n"),
        (r#"ngx.say(ngx.re.sub("hello", "l+", ""))"#, "heo1\n"),
        // Named groups in templates (lua-nginx-module refuses them).
        (r#"ngx.say(ngx.re.sub("a=1", "(?<k>[a-z])=(?<v>[0-9])", "${v}=$k"))"#, "1=a1\n"),
    ];
    assert_bodies(&cases);
    let bad_templates =
        [r#""[$0] [$hello]""#, r#""[${hello}]""#, r#""$""#, r#""x$""#, r#""${1""#, r#""${1a}""#, r#""${}""#, r#""$-""#];
    for template in bad_templates {
        let lua =
            format!(r#"local s, n, err = ngx.re.sub("a b c d", "(b) (c)", {template}) ngx.say(s, " ", n, " ", err)"#);
        assert_eq!(content(&lua), "nil nil failed to compile the replacement template\n", "{template}");
    }
}

#[test]
fn gsub_with_templates() {
    let cases = [
        (r#"ngx.say(ngx.re.gsub("hello, world", "[a-z]+", "howdy"))"#, "howdy, howdy2\n"),
        (r#"ngx.say(ngx.re.gsub("hello, world", "([a-z])[a-z]+", "[$0,$1]"))"#, "[hello,h], [world,w]2\n"),
        (r#"ngx.say(ngx.re.gsub("hello, world", "o", "0", "jo"))"#, "hell0, w0rld2\n"),
        (r#"ngx.say(ngx.re.gsub("hello, world", "L", "_", "i"))"#, "he__o, wor_d3\n"),
        (r#"ngx.say(ngx.re.gsub("abc", "x*", "-"))"#, "-a-b-c-4\n"),
        (r#"ngx.say(ngx.re.gsub("abc", "", "-"))"#, "-a-b-c-4\n"),
        (r#"ngx.say(ngx.re.gsub("", "x*", "-"))"#, "-1\n"),
        (r#"ngx.say(ngx.re.gsub("", "x", "-"))"#, "0\n"),
        (r#"ngx.say(ngx.re.gsub("a.b.c", "\\.", "$$"))"#, "a$b$c2\n"),
        (r#"ngx.say(ngx.re.gsub("hello\nworld", "^", ">", "m"))"#, ">hello\n>world2\n"),
        (r#"ngx.say(ngx.re.gsub("aaa", "a", "b", "a"))"#, "bbb3\n"),
        (r#"ngx.say(ngx.re.gsub("xaa", "a", "b", "a"))"#, "xaa0\n"),
        (r#"local s = string.rep("ab", 1000) local r, n = ngx.re.gsub(s, "b", "") ngx.say(#r, " ", n)"#, "1000 1000\n"),
    ];
    assert_bodies(&cases);
}

#[test]
fn sub_and_gsub_with_functions() {
    let cases = [
        (
            r#"ngx.say(ngx.re.sub("hello, world", "([a-z])[a-z]+", function(m) return "[" .. m[0] .. "," .. m[1] .. "]" end))"#,
            "[hello,h], world1\n",
        ),
        (
            r#"ngx.say(ngx.re.gsub("hello, world", "([a-z])[a-z]+", function(m) return "[" .. m[0] .. "," .. m[1] .. "]" end))"#,
            "[hello,h], [world,w]2\n",
        ),
        (r#"ngx.say(ngx.re.gsub("a1b2", "[0-9]", function(m) return m[0] * 2 end))"#, "a2b42\n"),
        (r#"ngx.say(ngx.re.gsub("ab", "[a-z]", function() return nil end))"#, "nilnil2\n"),
        (r#"ngx.say(ngx.re.gsub("abc", "", function() return "-" end))"#, "-a-b-c-4\n"),
        (r#"ngx.say(ngx.re.gsub("hello", "x", function() return "-" end))"#, "hello0\n"),
        (
            r#"ngx.say(ngx.re.gsub("k=v", "(?<key>\\w)=(?<val>\\w)", function(m) return m.val .. "=" .. m.key end))"#,
            "v=k1\n",
        ),
        (
            r#"ngx.say(ngx.re.sub("x", "(", function() return "" end))"#,
            "nilnilpcre2_compile() failed: missing closing parenthesis in \"(\"\n",
        ),
        // The function may call ngx.re itself.
        (
            r#"ngx.say(ngx.re.gsub("a-b", "[a-z]", function(m) return (ngx.re.gsub(m[0], "[a-z]", "<$0>")) end))"#,
            "<a>-<b>2\n",
        ),
    ];
    assert_bodies(&cases);
    // Errors in the function reach the script as they are.
    let body = content(
        r#"local ok, err = pcall(ngx.re.gsub, "ab", "a", function() error({ code = 7 }) end) ngx.say(ok, " ", err.code)"#,
    );
    assert_eq!(body, "false 7\n");
    assert_errors(&[(r#"ngx.re.gsub("ab", "a", function() error("boom") end)"#, "boom")]);
}

#[test]
fn ngx_re_works_in_every_request_phase() {
    let engine = engine();
    run_everywhere(
        &engine,
        r#"assert(ngx.re.match("a1", "[0-9]")[0] == "1") assert(ngx.re.gsub("aa", "a", "b") == "bb")
           for m in ngx.re.gmatch("ab", ".") do assert(#m[0] == 1) end"#,
    );
}

#[test]
fn the_compiled_pattern_cache_is_shared_by_workers() {
    let engine = engine_with(luaengine::EngineConfig { workers: 4, ..Default::default() });
    let script = engine.compile("content", r#"ngx.say(ngx.re.match("id=42", [[id=(\d+)]], "jo")[1])"#).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (engine, script) = (engine.clone(), script.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut request = request(&engine, "/", &[]);
                    request.run(luaengine::Phase::Content, &script).unwrap();
                    assert_eq!(request.response().body, b"42\n");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn many_distinct_patterns_stay_correct_past_the_cache_bound() {
    let body = content(
        r#"local ok = 0
           for i = 1, 1500 do
             local m = ngx.re.match("x" .. i .. "y", "x(" .. i .. ")y")
             if m and m[1] == tostring(i) then ok = ok + 1 end
           end
           ngx.say(ok, " ", ngx.re.match("x7y", "x(7)y")[1])"#,
    );
    assert_eq!(body, "1500 7\n");
}
