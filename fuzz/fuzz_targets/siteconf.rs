//! The examples' JSON site config parser (c-examples/siteconf, C on jansson): arbitrary bytes
//! as the config file. Loading must give a config or an error message, never a crash; a loaded
//! config is turned into the engine's `le_config` and matched against a few paths, then freed.
#![no_main]

use std::ffi::c_char;

use libfuzzer_sys::fuzz_target;
use luaengine_fuzz::siteconf::{site_config_free, site_config_load, site_engine_config, site_match};

fuzz_target!(|data: &[u8]| {
    // The parser reads a file: one per process, rewritten for each input.
    static PATH: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    let path = PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("luaengine-fuzz-siteconf-{}.json", std::process::id()));
        std::ffi::CString::new(path.into_os_string().into_encoded_bytes()).expect("a temp path has no NUL")
    });
    std::fs::write(path.to_str().expect("the temp path is UTF-8"), data).expect("the temp file is writable");
    let mut config = std::ptr::null_mut();
    let mut error = [0 as c_char; 512];
    // SAFETY: the path is NUL-terminated, `error` holds `error.len()` bytes, and a loaded config
    // is used only until it is freed, once.
    unsafe {
        if site_config_load(path.as_ptr(), &mut config, error.as_mut_ptr(), error.len()) != 0 {
            assert!(error[0] != 0, "a refused config comes with a message");
            return;
        }
        let mut engine_config = luaengine::ffi::le_config::default();
        site_engine_config(config, &mut engine_config);
        for uri in ["/", "/hello", "/api/x", "", "/\u{e9}"] {
            std::hint::black_box(site_match(config, uri.as_ptr().cast(), uri.len()));
        }
        site_config_free(config);
    }
});
