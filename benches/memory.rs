//! Memory report (issue 8): bytes a worker costs with no request running, and bytes per idle
//! coroutine kept in a worker's pool. Run: `cargo bench --bench memory` (add
//! `--no-default-features --features lua54` for Lua 5.4). A report, not a gate: it prints the
//! numbers next to the targets and always exits 0.
//!
//! Two meters:
//!   Lua heap: `WorkerStats::lua_memory`, what the Lua state's allocator holds.
//!   process heap: a counting `#[global_allocator]` (live bytes requested from `System`).
//! mlua creates every state with `lua_newstate` and its own allocator, which calls Rust's
//! `std::alloc`: on Lua 5.4 and on the vendored LuaJIT alike (OpenResty's luajit2, GC64 on x86_64
//! and arm64, so custom allocators work and mlua never falls back to LuaJIT's mmap allocator).
//! The process heap therefore includes the Lua heap, and Rust heap = process heap − Lua heap.
//! Not counted: malloc's own overhead per block, thread stacks, and LuaJIT's machine code for
//! traces (mmapped, and an idle worker has none).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use luaengine::{Engine, EngineConfig, Phase, RequestInit, Status};

/// Counts the bytes live in the process heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed straight to `System` with the caller's arguments; the counter
// is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const KIB: f64 = 1024.0;
const WORKER_TARGET: f64 = 1024.0 * KIB;
const COROUTINE_TARGET: f64 = 2.0 * KIB;
/// Idle coroutines pooled for the per-coroutine figure.
const K: usize = 1000;

/// What one engine costs: process heap bytes it added, and its workers' Lua heaps.
struct Footprint {
    heap: isize,
    lua: Vec<usize>,
}

/// Builds an engine with `workers` workers (default config otherwise: sandboxed) and measures it.
fn engine_footprint(workers: usize) -> Footprint {
    let before = live();
    let engine = Engine::new(EngineConfig { workers, ..Default::default() }).unwrap();
    let heap = live() - before;
    let lua = engine.stats().workers.iter().map(|worker| worker.lua_memory).collect();
    Footprint { heap, lua }
}

/// Worker 0's state after pooling: Lua heap, pooled coroutines, process heap the engine added.
struct Pooled {
    lua: usize,
    pooled: usize,
    heap: isize,
}

/// A trusted one-worker engine with a pool of `pool`, after `K` requests each ran `lua` in
/// content at once (so `K` distinct coroutines exist), were resumed to the end and freed, and
/// `collections` full collections. Trusted only for `collectgarbage`, which the sandbox restricts to
/// "count": a coroutine is the same object either way.
fn after_k_requests(pool: usize, lua: &str, collections: usize) -> Pooled {
    let before = live();
    let engine =
        Engine::new(EngineConfig { workers: 1, trusted: true, coroutine_pool: pool, ..Default::default() }).unwrap();
    let script = engine.compile("content", lua).unwrap();
    let init = RequestInit { method: b"GET", path: b"/t", ..Default::default() };
    let mut requests: Vec<_> = (0..K).map(|_| engine.new_request(&init, [], Some(0))).collect();
    for request in &mut requests {
        assert_eq!(request.run(Phase::Content, &script).unwrap(), Status::Yield);
    }
    for request in &mut requests {
        assert_eq!(request.resume().unwrap(), Status::Done);
    }
    drop(requests);
    let collect = engine.compile("content", format!("for _ = 1, {collections} do collectgarbage() end")).unwrap();
    assert_eq!(engine.new_request(&init, [], Some(0)).run(Phase::Content, &collect).unwrap(), Status::Done);
    let worker = engine.stats().workers[0];
    Pooled { lua: worker.lua_memory, pooled: worker.pooled_coroutines, heap: live() - before }
}

/// Bytes per idle pooled coroutine: the same steps with a pool of `K` and of 0, diffed, so the
/// requests' leftovers (mlua's reference slots, the loaded script) cancel out.
fn per_pooled_coroutine(lua: &str, collections: usize) -> (f64, f64) {
    let none = after_k_requests(0, lua, collections);
    let full = after_k_requests(K, lua, collections);
    assert_eq!((none.pooled, full.pooled), (0, K), "the coroutines are really pooled");
    ((full.lua as f64 - none.lua as f64) / K as f64, (full.heap - none.heap) as f64 / K as f64)
}

fn verdict(bytes: f64, target: f64) -> &'static str {
    if bytes <= target {
        "PASS"
    } else {
        "FAIL"
    }
}

fn main() {
    // Warm-up: one-time process allocations (thread-locals, lazy statics) must not land in the
    // first engine's figure.
    drop(engine_footprint(1));
    let one = engine_footprint(1);
    let nine = engine_footprint(9);
    let lua_worker = nine.lua.iter().sum::<usize>() as f64 / nine.lua.len() as f64;
    let total_worker = (nine.heap - one.heap) as f64 / 8.0;
    let rust_worker = total_worker - (nine.lua.iter().sum::<usize>() - one.lua[0]) as f64 / 8.0;

    let (co_lua, co_heap) = per_pooled_coroutine("coroutine.yield()", 2);
    // A coroutine that once ran deep keeps part of what it grew (LuaJIT: stack slots; Lua 5.4:
    // stack and CallInfo list) until collections shrink it, by half per cycle.
    let deep =
        "local function down(n) if n == 0 then coroutine.yield() return 0 end return 1 + down(n - 1) end down(200)";
    let deep_after = [2, 8].map(|collections| per_pooled_coroutine(deep, collections).0);

    println!("backend: {}", luaengine::BACKEND);
    println!("Lua allocations go through Rust's global allocator (mlua's lua_newstate allocator): process heap includes the Lua heap.");
    println!();
    println!("worker baseline, no request running (sandboxed default config, right after Engine::new,");
    println!("whose workers collect their setup garbage before serving):");
    println!("  Lua heap (WorkerStats::lua_memory)          {:>10.0} B  {:>7.1} KiB", lua_worker, lua_worker / KIB);
    println!("  Rust heap (process heap - Lua heap)         {:>10.0} B  {:>7.1} KiB", rust_worker, rust_worker / KIB);
    println!(
        "  total, marginal ((W=9 - W=1) / 8)           {:>10.0} B  {:>7.1} KiB   target <= 1 MiB  {}",
        total_worker,
        total_worker / KIB,
        verdict(total_worker, WORKER_TARGET)
    );
    println!("  engine with W=1 (shared parts included)     {:>10} B  {:>7.1} KiB", one.heap, one.heap as f64 / KIB);
    println!();
    println!("idle pooled coroutine ((pool {K} - pool 0) / {K}, after 2 full GCs; pooled_coroutines == {K} checked):");
    println!(
        "  Lua heap                                    {:>10.0} B             target <= 2 KiB  {}",
        co_lua,
        verdict(co_lua, COROUTINE_TARGET)
    );
    println!(
        "  process heap (Lua + Rust)                   {:>10.0} B             target <= 2 KiB  {}",
        co_heap,
        verdict(co_heap, COROUTINE_TARGET)
    );
    println!(
        "  after a 200-frame-deep request, Lua heap  {:>6.0} B after 2 full GCs, {:.0} B after 8",
        deep_after[0], deep_after[1]
    );
}
