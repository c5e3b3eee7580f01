//! Arbitrary Lua source in the sandbox, with the limits of `luaengine_fuzz::engine`: it is
//! compiled, then run as a content phase. Syntax errors, runtime errors, spent budgets and
//! memory errors are all fine; a crash, a panic or a hang is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let engine = luaengine_fuzz::engine();
    if let Ok(script) = engine.compile("content", data) {
        let _ = luaengine_fuzz::run_content(&script, b"");
    }
});
