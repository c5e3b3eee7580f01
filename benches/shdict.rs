//! ns per shared-dict `incr`: from Lua (a content script doing `d:incr('n', 1, 0)` in a loop,
//! per incr) with 1 and 4 host threads, each thread driving its own requests on its own worker;
//! and the Rust API's `SharedDict::incr` as the anchor, measured in the same run. With several
//! threads ns/op is wall time over all their incrs: every thread hits the same dict and key.
//! Run: `cargo bench --bench shdict` (add `--no-default-features --features lua54` for Lua 5.4).

mod common;

use common::median_ns;
use luaengine::{Engine, EngineConfig, Phase, RequestInit, Status};

const INCRS_PER_REQUEST: usize = 1000;
const LUA: &str = "local d = ngx.shared.d for _ = 1, 1000 do d:incr('n', 1, 0) end";

/// Runs `body(thread)` on `threads` threads at once and waits for them.
fn on_threads(threads: usize, body: impl Fn(usize) + Sync) {
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let body = &body;
            scope.spawn(move || body(thread));
        }
    });
}

fn main() {
    // LE_BENCH_QUICK=1 runs a few iterations only, for callgrind (`valgrind --tool=callgrind`).
    let quick = std::env::var_os("LE_BENCH_QUICK").is_some();
    let (rounds, requests_per_thread) = if quick { (1, 5) } else { (11, 200) };
    let engine =
        Engine::new(EngineConfig { workers: 4, shared_dicts: vec![("d".into(), 1 << 20)], ..Default::default() })
            .expect("engine");
    let script = engine.compile("content", LUA).expect("compiles");
    let dict = engine.shared_dict("d").expect("declared").clone();
    let init = RequestInit { method: b"GET", path: b"/incr", ..Default::default() };

    let lua_ns = |threads: usize| {
        let ops = threads * requests_per_thread * INCRS_PER_REQUEST;
        let count = || dict.incr(b"n", 0.0, Some(0.0), 0.0).expect("a number").0;
        let before = count();
        let ns = median_ns(rounds, ops, || {
            on_threads(threads, |thread| {
                for _ in 0..requests_per_thread {
                    let mut request = engine.new_request(&init, std::iter::empty(), Some(thread));
                    assert_eq!(request.run(Phase::Content, &script).expect("runs"), Status::Done);
                }
            })
        });
        assert_eq!(count() - before, ((rounds + 1) * ops) as f64, "every incr counted");
        ns
    };
    let rust_ns = |threads: usize| {
        let ops_per_thread = requests_per_thread * INCRS_PER_REQUEST;
        median_ns(rounds, threads * ops_per_thread, || {
            on_threads(threads, |_| {
                for _ in 0..ops_per_thread {
                    std::hint::black_box(dict.incr(b"r", 1.0, Some(0.0), 0.0).expect("a number"));
                }
            })
        })
    };
    let (lua_1, lua_4) = (lua_ns(1), lua_ns(4));
    let (rust_1, rust_4) = (rust_ns(1), rust_ns(4));

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("backend: {}, {cores} cores", luaengine::BACKEND);
    println!(
        "shared-dict incr, median of {rounds} rounds of {requests_per_thread} requests x {INCRS_PER_REQUEST} incrs per thread:"
    );
    println!("  Lua  d:incr('n', 1, 0)   1 host thread     {lua_1:>7.1} ns/op");
    println!(
        "  Lua  d:incr('n', 1, 0)   4 host threads    {lua_4:>7.1} ns/op   (wall / all incrs; 4 threads / 1 = {:.2})",
        lua_4 / lua_1
    );
    println!("  anchor: SharedDict::incr 1 thread          {rust_1:>7.1} ns/op   (Lua / Rust = {:.2})", lua_1 / rust_1);
    println!("  anchor: SharedDict::incr 4 threads         {rust_4:>7.1} ns/op   (Lua / Rust = {:.2})", lua_4 / rust_4);
}
