//! ns per `ngx.md5` of 1 KB called from Lua, next to the same digest computed in pure Lua (a
//! compact MD5 on LuaJIT's `bit` library, or on Lua 5.4's integer operators), with the md-5
//! crate hashing the same bytes straight from Rust as the anchor measured in the same run.
//! Each sample is one content phase looping over the digest, so the request around it is
//! spread over many calls.
//! Run: `cargo bench --bench codec` (add `--no-default-features --features lua54` for Lua 5.4).
//! Prints the median of several timed rounds.

use std::time::{Duration, Instant};

use luaengine::{Engine, EngineConfig, Phase, RequestInit};
use md5::{Digest, Md5};

/// The 1 KB every case hashes, built the same way in Lua and in Rust.
const UNIT: &str = "0123456789abcdef";
const REPEAT: usize = 64;

/// MD5 (RFC 1321) on LuaJIT: 32-bit words from the `bit` library, sums brought back with tobit.
const PURE_MD5_LUAJIT: &str = r#"
local band, bor, bxor, bnot, lshift, rol, tobit, bswap, tohex =
  bit.band, bit.bor, bit.bxor, bit.bnot, bit.lshift, bit.rol, bit.tobit, bit.bswap, bit.tohex
local byte, floor = string.byte, math.floor
local K, S = {}, {}
for i = 0, 63 do
  K[i] = tobit(floor(math.abs(math.sin(i + 1)) * 2 ^ 32))
  S[i] = ({ { 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 }, { 6, 10, 15, 21 } })[floor(i / 16) + 1][i % 4 + 1]
end
local function md5(msg)
  local bits = #msg * 8
  msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64)
    .. string.char(bits % 256, floor(bits / 256) % 256, floor(bits / 65536) % 256, floor(bits / 16777216) % 256, 0, 0, 0, 0)
  local a0, b0, c0, d0 = tobit(0x67452301), tobit(0xefcdab89), tobit(0x98badcfe), tobit(0x10325476)
  local M = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local b1, b2, b3, b4 = byte(msg, chunk + i * 4, chunk + i * 4 + 3)
      M[i] = bor(b1, lshift(b2, 8), lshift(b3, 16), lshift(b4, 24))
    end
    local A, B, C, D = a0, b0, c0, d0
    for i = 0, 63 do
      local F, g
      if i < 16 then F, g = bor(band(B, C), band(bnot(B), D)), i
      elseif i < 32 then F, g = bor(band(D, B), band(bnot(D), C)), (5 * i + 1) % 16
      elseif i < 48 then F, g = bxor(B, C, D), (3 * i + 5) % 16
      else F, g = bxor(C, bor(B, bnot(D))), (7 * i) % 16 end
      F = tobit(F + A + K[i] + M[g])
      A, D, C = D, C, B
      B = tobit(B + rol(F, S[i]))
    end
    a0, b0, c0, d0 = tobit(a0 + A), tobit(b0 + B), tobit(c0 + C), tobit(d0 + D)
  end
  return tohex(bswap(a0)) .. tohex(bswap(b0)) .. tohex(bswap(c0)) .. tohex(bswap(d0))
end
"#;

/// MD5 (RFC 1321) on Lua 5.4: 64-bit integers masked to 32 bits.
const PURE_MD5_LUA54: &str = r#"
local floor, unpack, pack = math.floor, string.unpack, string.pack
local K, S = {}, {}
for i = 0, 63 do
  K[i] = floor(math.abs(math.sin(i + 1)) * 2 ^ 32)
  S[i] = ({ { 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 }, { 6, 10, 15, 21 } })[i // 16 + 1][i % 4 + 1]
end
local function md5(msg)
  local bits = #msg * 8
  msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64) .. pack("<I8", bits)
  local a0, b0, c0, d0 = 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476
  local M = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      M[i] = unpack("<I4", msg, chunk + i * 4)
    end
    local A, B, C, D = a0, b0, c0, d0
    for i = 0, 63 do
      local F, g
      if i < 16 then F, g = (B & C) | (~B & D), i
      elseif i < 32 then F, g = (D & B) | (~D & C), (5 * i + 1) % 16
      elseif i < 48 then F, g = B ~ C ~ D, (3 * i + 5) % 16
      else F, g = C ~ (B | ~D), (7 * i) % 16 end
      F = (F + A + K[i] + M[g]) & 0xffffffff
      A, D, C = D, C, B
      local s = S[i]
      B = (B + ((F << s) | (F >> (32 - s)))) & 0xffffffff
    end
    a0, b0, c0, d0 = (a0 + A) & 0xffffffff, (b0 + B) & 0xffffffff, (c0 + C) & 0xffffffff, (d0 + D) & 0xffffffff
  end
  return (pack("<I4I4I4I4", a0, b0, c0, d0):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
"#;

/// A content script hashing the 1 KB `iterations` times with `hash`, saying the last digest.
fn looping(prelude: &str, hash: &str, iterations: usize) -> String {
    format!(
        "{prelude}\nlocal s = string.rep('{UNIT}', {REPEAT}) local h\n\
         for i = 1, {iterations} do h = {hash}(s) end ngx.say(h)"
    )
}

/// Median ns per operation over `rounds` samples of `once`, which does `per_sample` operations.
fn per_op(rounds: usize, per_sample: usize, mut once: impl FnMut()) -> f64 {
    once();
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[rounds / 2].as_nanos() as f64 / per_sample as f64
}

fn main() {
    // LE_BENCH_QUICK=1 runs a few iterations only.
    let quick = std::env::var_os("LE_BENCH_QUICK").is_some();
    let rounds = if quick { 3 } else { 15 };
    let (native_n, pure_n) = if quick { (200, 5) } else { (5_000, 200) };
    let data = UNIT.repeat(REPEAT);
    let expected: String = Md5::digest(data.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();

    let engine = &Engine::new(EngineConfig { workers: 1, ..Default::default() }).unwrap();
    let pure_md5 = if cfg!(feature = "luajit") { PURE_MD5_LUAJIT } else { PURE_MD5_LUA54 };
    let run = |source: &str| {
        let script = engine.compile("content", source).unwrap();
        move || {
            let init = RequestInit { method: b"GET", path: b"/t", ..Default::default() };
            let mut request = engine.new_request(&init, [], None);
            request.run(Phase::Content, &script).unwrap();
            String::from_utf8_lossy(&request.response().body).trim_end().to_string()
        }
    };
    let ngx_md5 = run(&looping("", "ngx.md5", native_n));
    let pure = run(&looping(pure_md5, "md5", pure_n));
    assert_eq!(ngx_md5(), expected, "ngx.md5");
    assert_eq!(pure(), expected, "pure-Lua md5");

    let ngx_ns = per_op(rounds, native_n, || {
        std::hint::black_box(ngx_md5());
    });
    let pure_ns = per_op(rounds, pure_n, || {
        std::hint::black_box(pure());
    });
    // Anchor measured in the same run: the md-5 crate on the same bytes, hex like ngx.md5.
    let anchor_ns = per_op(rounds, native_n, || {
        for _ in 0..native_n {
            let digest = Md5::digest(std::hint::black_box(data.as_bytes()));
            std::hint::black_box(digest.iter().fold(0u8, |acc, b| acc ^ b));
        }
    });

    println!("backend: {}", luaengine::BACKEND);
    println!("MD5 of 1 KB, median of {rounds} rounds:");
    println!("  ngx.md5 from Lua                       {ngx_ns:>9.0} ns/op   (/ Rust = {:.2})", ngx_ns / anchor_ns);
    println!("  pure-Lua md5                           {pure_ns:>9.0} ns/op   (/ ngx.md5 = {:.1})", pure_ns / ngx_ns);
    println!("  anchor: md-5 crate from Rust           {anchor_ns:>9.0} ns/op");
}
