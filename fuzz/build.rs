//! Builds the examples' C site config parser (c-examples/siteconf/siteconf.c) for the
//! `siteconf` target; it links jansson (libjansson-dev) from the system.
//!
//! gcc has no libFuzzer edge coverage, but its comparison tracing feeds libFuzzer's value
//! profile (`-use_value_profile=1`): with clang as CC the code gets the full coverage instead.

fn main() {
    let siteconf = "../c-examples/siteconf";
    println!("cargo:rerun-if-changed={siteconf}/siteconf.c");
    println!("cargo:rerun-if-changed={siteconf}/siteconf.h");
    println!("cargo:rerun-if-changed=../include/luaengine.h");
    let mut build = cc::Build::new();
    build.file(format!("{siteconf}/siteconf.c")).include(siteconf).include("../include").std("c11");
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let clang = build.get_compiler().is_like_clang();
        build.flag(if clang { "-fsanitize=fuzzer-no-link" } else { "-fsanitize-coverage=trace-cmp" });
        if !clang {
            println!("cargo:rerun-if-changed=gcc_trace_cmp.c");
            cc::Build::new().file("gcc_trace_cmp.c").compile("gcc_trace_cmp");
        }
    }
    build.compile("siteconf");
    println!("cargo:rustc-link-lib=jansson");
}
