//! ngx.shared.DICT: every method with lua-nginx-module's results, eviction, TTLs and lists
//! (after lua-nginx-module's t/043-shdict.t and t/145-shdict-list.t).

mod common;

use common::*;
use luaengine::{Engine, EngineConfig, Phase};

fn dict_engine(capacity: usize) -> Engine {
    engine_with(EngineConfig { workers: 2, shared_dicts: vec![("dogs".into(), capacity)], ..Default::default() })
}

fn run_on(engine: &Engine, lua: &str) -> String {
    let outcome = serve(engine, "/t", &[], &[(Phase::Content, &format!("local dogs = ngx.shared.dogs {lua}"))]);
    if let Some(error) = &outcome.error {
        panic!("content failed: {error}\n{lua}");
    }
    outcome.body()
}

fn check(cases: &[(&str, &str)]) {
    for (lua, expected) in cases {
        assert_eq!(run_on(&dict_engine(1 << 20), lua), *expected, "{lua}");
    }
}

#[test]
fn set_and_get_scalars_with_flags() {
    check(&[
        ("dogs:set('Jim', 8) ngx.say(dogs:get('Jim'))", "8\n"),
        ("dogs:set('k', 'hello') ngx.say(dogs:get('k'))", "hello\n"),
        ("dogs:set('k', 3.14) ngx.say(dogs:get('k'))", "3.14\n"),
        ("dogs:set('k', true) dogs:set('f', false) ngx.say(dogs:get('k'), ' ', dogs:get('f'))", "true false\n"),
        ("dogs:set('k', 'v', 0, 42) ngx.say(dogs:get('k'))", "v42\n"),
        ("dogs:set('k', 'v') ngx.say(select('#', dogs:get('k')))", "1\n"),
        ("ngx.say(dogs:get('nope'))", "nil\n"),
        ("dogs:set('k', 'a\\0b') ngx.say(#dogs:get('k'))", "3\n"),
        ("ngx.say(dogs:set('k', 1))", "truenilfalse\n"),
        ("dogs:set(5, 'num') ngx.say(dogs:get('5'), dogs:get(5))", "numnum\n"),
        // Other keys go through tostring, as in lua-resty-core.
        ("dogs:set(1.5, 'f') dogs:set(2.0, 'i') dogs:set(true, 't') ngx.say(dogs:get('1.5'), dogs:get(tostring(2.0)), dogs:get('true'))", "fit\n"),
        ("dogs:set('k', 1) dogs:set('k', nil) ngx.say(dogs:get('k'))", "nil\n"),
    ]);
}

// Rust hands the glue a fixed (count, a, b, c): each method still returns its own number of values.
#[test]
fn results_keep_their_count() {
    check(&[
        ("ngx.say(select('#', dogs:incr('n', 1, 0)), select('#', dogs:incr('n', 1)), select('#', dogs:incr('x', 1)))", "312\n"),
        ("dogs:set('k', 'v', 0, 7) ngx.say(select('#', dogs:get('k')), select('#', dogs:get('none')))", "21\n"),
        ("ngx.say(select('#', dogs:flush_all()), select('#', dogs:set('k', 1)), select('#', dogs:get_stale('k')))", "033\n"),
    ]);
}

#[test]
fn key_and_value_errors_are_results() {
    check(&[
        ("ngx.say(dogs:get(nil))", "nilnil key\n"),
        ("ngx.say(dogs:get(''))", "nilempty key\n"),
        ("ngx.say(dogs:set(nil, 1))", "nilnil key\n"),
        ("ngx.say(dogs:get(string.rep('k', 65536)))", "nilkey too long\n"),
        ("ngx.say(dogs:set('k', {}))", "nilbad value type\n"),
        ("ngx.say(dogs:set('k', print))", "nilbad value type\n"),
    ]);
}

#[test]
fn argument_mistakes_raise() {
    check(&[
        ("ngx.say(pcall(dogs.get, nil, 'k'))", "falsebad \"zone\" argument\n"),
        (
            "local ok, err = pcall(function() local v = dogs.get('k') end) ngx.say(err)",
            "content:1: bad \"zone\" argument\n",
        ),
        (
            "local ok, err = pcall(function() local r = dogs:set('k', 1, -1) end) ngx.say(err)",
            "content:1: bad \"exptime\" argument\n",
        ),
        (
            "local ok, err = pcall(function() local r = dogs:set('k', 1, 0, 'x') end) ngx.say(err)",
            "content:1: bad \"flags\" argument\n",
        ),
        (
            "local ok, err = pcall(function() local r = dogs:expire('k') end) ngx.say(err)",
            "content:1: bad \"exptime\" argument\n",
        ),
        (
            "local ok, err = pcall(function() local r = dogs:expire('k', nil) end) ngx.say(err)",
            "content:1: bad \"exptime\" argument\n",
        ),
        (
            "local ok, err = pcall(function() local r = dogs:incr('k', 1, nil, 10) end) ngx.say(err)",
            "content:1: must provide \"init\" when providing \"init_ttl\"\n",
        ),
        (
            "local ok, err = pcall(function() local r = dogs:incr('k', 1, {}) end) ngx.say(err)",
            "content:1: bad init arg: number expected, got table\n",
        ),
    ]);
}

#[test]
fn add_replace_and_safe_variants() {
    check(&[
        (
            "ngx.say(dogs:add('k', 1)) ngx.say(dogs:add('k', 2)) ngx.say(dogs:get('k'))",
            "truenilfalse\nfalseexistsfalse\n1\n",
        ),
        (
            "ngx.say(dogs:replace('k', 1)) dogs:set('k', 1) ngx.say(dogs:replace('k', 2), dogs:get('k'))",
            "falsenot foundfalse\ntrue2\n",
        ),
        ("ngx.say(dogs:safe_set('k', 1)) ngx.say(dogs:safe_add('k', 1))", "truenilfalse\nfalseexistsfalse\n"),
        ("dogs:set('k', 1) dogs:delete('k') ngx.say(dogs:get('k'), ' ', dogs:add('k', 2))", "nil truenilfalse\n"),
    ]);
}

#[test]
fn incr_follows_lua_resty_core() {
    check(&[
        ("dogs:set('n', 10) ngx.say(dogs:incr('n', 5)) ngx.say(dogs:get('n'))", "15\n15\n"),
        ("dogs:set('n', 1.5) ngx.say(dogs:incr('n', -0.5))", "1\n"),
        ("ngx.say(dogs:incr('n', 1))", "nilnot found\n"),
        ("ngx.say(dogs:incr('n', 1, 0))", "1nilfalse\n"),
        ("ngx.say(dogs:incr('n', 2, 10, 100)) ngx.say(dogs:ttl('n') > 99)", "12nilfalse\ntrue\n"),
        ("dogs:set('s', 'x') ngx.say(dogs:incr('s', 1))", "nilnot a number\n"),
        ("dogs:set('n', 1) ngx.say(dogs:incr('n', '2'))", "3\n"),
    ]);
}

#[test]
fn lists_push_pop_and_length() {
    check(&[
        ("ngx.say(dogs:lpush('l', 'a'), dogs:lpush('l', 'b'), dogs:rpush('l', 'c'))", "123\n"),
        (
            "dogs:rpush('l', 1) dogs:rpush('l', 'two') ngx.say(dogs:lpop('l'), dogs:lpop('l'), dogs:lpop('l'))",
            "1twonil\n",
        ),
        ("dogs:rpush('l', 1) dogs:rpush('l', 2) ngx.say(dogs:rpop('l'), dogs:llen('l'))", "21\n"),
        ("ngx.say(dogs:llen('none'), dogs:lpop('none'))", "0nil\n"),
        (
            "dogs:set('s', 1) ngx.say(dogs:lpush('s', 1)) ngx.say(dogs:llen('s')) ngx.say(dogs:rpop('s'))",
            "nilvalue not a list\nnilvalue not a list\nnilvalue not a list\n",
        ),
        ("dogs:lpush('l', 1) ngx.say(dogs:get('l'))", "nilvalue is a list\n"),
        ("ngx.say(dogs:lpush('l', true))", "nilbad value type\n"),
        ("dogs:lpush('l', 'x') dogs:lpop('l') ngx.say(dogs:llen('l'), ' ', dogs:add('l', 1))", "0 truenilfalse\n"),
        ("dogs:lpush('l', 'x') dogs:set('l', 'scalar') ngx.say(dogs:get('l'))", "scalar\n"),
    ]);
}

#[test]
fn ttl_expire_and_keys() {
    check(&[
        ("dogs:set('k', 1) ngx.say(dogs:ttl('k'))", "0\n"),
        ("dogs:set('k', 1, 10) local t = dogs:ttl('k') ngx.say(t > 9.9 and t <= 10)", "true\n"),
        ("ngx.say(dogs:ttl('none'))", "nilnot found\n"),
        ("dogs:set('k', 1) ngx.say(dogs:expire('k', 5)) ngx.say(dogs:ttl('k') > 4)", "true\ntrue\n"),
        ("dogs:set('k', 1, 5) dogs:expire('k', 0) ngx.say(dogs:ttl('k'))", "0\n"),
        ("ngx.say(dogs:expire('none', 1))", "nilnot found\n"),
        ("for _, k in ipairs({'a', 'b', 'c'}) do dogs:set(k, 1) end local keys = dogs:get_keys() table.sort(keys) ngx.say(table.concat(keys, ','))", "a,b,c\n"),
        ("for i = 1, 5 do dogs:set('k' .. i, i) end ngx.say(#dogs:get_keys(2), ' ', #dogs:get_keys(0))", "2 5\n"),
    ]);
}

#[test]
fn capacity_free_space_and_flushing() {
    check(&[
        ("ngx.say(dogs:capacity())", "1048576\n"),
        ("local before = dogs:free_space() dogs:set('k', string.rep('x', 1000)) ngx.say(before - dogs:free_space() >= 1000)", "true\n"),
        ("dogs:set('a', 1) dogs:set('b', 2) dogs:flush_all() ngx.say(dogs:get('a'), ' ', #dogs:get_keys())", "nil 0\n"),
        ("dogs:set('a', 1, 0, 7) dogs:flush_all() ngx.say(dogs:get_stale('a'))", "17true\n"),
        ("dogs:set('a', 1) dogs:set('b', 2) dogs:flush_all() ngx.say(dogs:flush_expired()) ngx.say(dogs:get_stale('a'))", "2\nnil\n"),
        ("for i = 1, 5 do dogs:set('k' .. i, i) end dogs:flush_all() ngx.say(dogs:flush_expired(3), dogs:flush_expired())", "32\n"),
        ("dogs:set('a', 'v') ngx.say(dogs:get_stale('a'))", "vnilfalse\n"),
    ]);
}

#[test]
fn expiry_with_short_ttls() {
    let engine = dict_engine(1 << 20);
    run_on(&engine, "dogs:set('short', 'v', 0.05) dogs:set('long', 'v', 10) dogs:incr('n', 1, 0, 0.05)");
    assert_eq!(run_on(&engine, "ngx.say(dogs:get('short'), dogs:get('n'))"), "v1\n");
    std::thread::sleep(std::time::Duration::from_millis(120));
    let cases = "ngx.say(dogs:get('short'), ' ', dogs:get('long'), ' ', dogs:get('n')) \
                 ngx.say(dogs:get_stale('short')) ngx.say(dogs:ttl('short')) \
                 ngx.say(dogs:add('short', 'again')) ngx.say(dogs:incr('n', 1)) ngx.say(#dogs:get_keys())";
    assert_eq!(run_on(&engine, cases), "nil v nil\nvniltrue\nnilnot found\ntruenilfalse\nnilnot found\n2\n");
}

#[test]
fn full_dicts_evict_the_least_recently_used_with_forcible() {
    let engine = dict_engine(32 * 1024);
    let body = run_on(
        &engine,
        r#"
        local value = string.rep("x", 1000)
        local forced
        for i = 1, 40 do
            local ok, err, forcible = dogs:set("key" .. i, value)
            if not ok then ngx.say("failed: ", err) end
            if forcible and not forced then forced = i end
        end
        ngx.say("first forcible at ", forced)
        ngx.say(dogs:get("key1"), " ", dogs:get("key40") ~= nil)
        ngx.say(dogs:safe_set("extra", value))
        ngx.say(dogs:set("huge", string.rep("x", 64 * 1024)))
    "#,
    );
    assert_eq!(body, "first forcible at 31\nnil true\nfalseno memoryfalse\nfalseno memoryfalse\n");
}

#[test]
fn dicts_are_shared_by_all_workers_and_the_host() {
    let engine = dict_engine(1 << 20);
    for _ in 0..4 {
        run_on(&engine, "dogs:incr('hits', 1, 0)");
    }
    assert_eq!(run_on(&engine, "ngx.say(dogs:get('hits'))"), "4\n");
    let dict = engine.shared_dict("dogs").expect("declared");
    assert_eq!(dict.get(b"hits"), Ok(Some((luaengine::shdict::DictValue::Number(4.0), 0))));
    assert!(engine.shared_dict("cats").is_none());
    assert_eq!(run_on(&engine, "ngx.say(ngx.shared.cats)"), "nil\n");
}

#[test]
fn dicts_cannot_be_tampered_with_in_the_sandbox() {
    check(&[
        (
            "local ok, err = pcall(function() dogs.get = print end) ngx.say(err)",
            "content:1: attempt to modify read-only table 'ngx.shared.dogs'\n",
        ),
        ("local ok, err = pcall(rawset, dogs, 'x', 1) ngx.say(ok)", "false\n"),
        ("ngx.say(getmetatable(dogs))", "false\n"),
    ]);
}

#[test]
fn every_dict_of_many_works_in_the_sandbox() {
    // The sandbox once proxied all but the first dict it sealed (they share a metatable), so
    // whether a given dict worked depended on table order.
    let names: Vec<String> = (0..16).map(|i| format!("d{i}")).collect();
    let engine = engine_with(EngineConfig {
        workers: 1,
        shared_dicts: names.iter().map(|name| (name.clone(), 64 * 1024)).collect(),
        ..Default::default()
    });
    let lua = "for i = 0, 15 do local d = ngx.shared['d' .. i] d:set('k', i) ngx.print(d:get('k'), ' ') end";
    let outcome = serve(&engine, "/", &[], &[(Phase::Content, lua)]);
    assert_eq!(outcome.body(), "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 ", "{:?}", outcome.error);
}

#[test]
fn dict_configs_are_checked() {
    let too_small = EngineConfig { shared_dicts: vec![("d".into(), 100)], ..Default::default() };
    assert!(Engine::new(too_small).err().unwrap().message.contains("smaller than"));
    let twice = EngineConfig { shared_dicts: vec![("d".into(), 1 << 20), ("d".into(), 1 << 20)], ..Default::default() };
    assert_eq!(Engine::new(twice).err().unwrap().message, "shared dict 'd' is registered twice");
}
