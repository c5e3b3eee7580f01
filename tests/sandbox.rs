//! The default sandbox (DESIGN.md §7) and trusted mode. The full hostile-script suite comes with
//! the API-slice issue; these pin down the shape.

mod common;

use common::*;
use luaengine::{EngineConfig, Phase};

#[test]
fn dangerous_libraries_are_absent() {
    let body = content("ngx.say(type(io), ' ', type(os.execute), ' ', type(os.getenv), ' ', type(dofile), ' ', type(loadfile), ' ', type(debug), ' ', type(jit), ' ', type(ffi))");
    assert_eq!(body, "nil nil nil nil nil nil nil nil\n");
}

#[test]
fn safe_libraries_are_present() {
    let body = content("ngx.say(type(string.format), type(table.concat), type(math.floor), type(os.time), type(os.date), type(coroutine.wrap), type(pcall))");
    assert_eq!(body, "functionfunctionfunctionfunctionfunctionfunctionfunction\n");
}

#[test]
fn load_accepts_text_and_refuses_binary_chunks() {
    assert_eq!(content("local f = load('return 1 + 1') ngx.say(f())"), "2\n");
    let body = content("local f, err = load(string.char(27) .. 'Lua') ngx.say(tostring(f), ' ', err)");
    assert_eq!(body, "nil attempt to load a binary chunk\n");
}

#[test]
fn loaded_chunks_see_the_request_globals() {
    assert_eq!(content("answer = 42 ngx.say(load('return answer')())"), "42\n");
}

#[test]
fn trusted_mode_opens_the_standard_library() {
    let engine = engine_with(EngineConfig { workers: 1, trusted: true, ..Default::default() });
    let outcome = serve(
        &engine,
        "/",
        &[],
        &[(Phase::Content, "ngx.say(type(io.open), ' ', type(os.getenv), ' ', type(debug.getinfo))")],
    );
    assert_eq!(outcome.body(), "function function function\n");
}

#[test]
fn metatables_of_request_globals_are_protected() {
    let body = content("local ok, err = pcall(setmetatable, _G, {}) ngx.say(ok, ' ', err)");
    assert_eq!(body, "false cannot change a protected metatable\n");
}
