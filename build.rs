//! Gives the shared library a SONAME whose major number is the C ABI version, so hosts linked
//! against one ABI never load an incompatible library.

fn main() {
    println!("cargo:rerun-if-changed=src/ffi/mod.rs");
    let ffi = std::fs::read_to_string("src/ffi/mod.rs").expect("src/ffi/mod.rs");
    let abi: u32 = ffi
        .split("pub const LE_ABI_VERSION: u32 = ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|number| number.trim().parse().ok())
        .expect("LE_ABI_VERSION in src/ffi/mod.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libluaengine.so.{abi}");
    }
}
