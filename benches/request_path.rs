//! ns per request through the C ABI, as a C host drives it: create a request with 8 headers,
//! run its phases, read the response, free it. Two cases from the core issue:
//!   hello: content `ngx.say("hello")`
//!   auth:  access (get_headers + ngx.exit on a bad token + ngx.ctx) and content (ngx.say with
//!          ngx.ctx and ngx.var.uri)
//! Run: `cargo bench --bench request_path` (add `--no-default-features --features lua54` for
//! Lua 5.4). Prints the median of several timed rounds, and the Rust-API path as an anchor.
//! `LE_BENCH_COUNT` (see `count`) serves one case only, for counting instructions.

mod common;

use std::ptr;

use common::median_ns;
use luaengine::ffi::*;
use luaengine::{Engine, EngineConfig, Phase, RequestInit};

const HELLO: &str = r#"ngx.say("hello")"#;
const AUTH_ACCESS: &str = r#"local h = ngx.req.get_headers(); if h["x-token"] ~= "secret" then return ngx.exit(403) end; ngx.ctx.user = "u1""#;
const AUTH_CONTENT: &str = r#"ngx.say("hello ", ngx.ctx.user, " ", ngx.var.uri)"#;
const DICT: &str = r#"local d = ngx.shared.cache; ngx.say(d:incr("hits", 1, 0))"#;

const HEADERS: [(&str, &str); 8] = [
    ("Host", "example.com"),
    ("User-Agent", "bench/1.0"),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("X-Token", "secret"),
    ("X-Request-Id", "0123456789abcdef"),
    ("Cookie", "sid=abc; theme=dark"),
];

fn s(text: &str) -> le_str {
    le_str { ptr: text.as_ptr(), len: text.len() }
}

struct CEngine {
    engine: *mut le_engine,
}

impl CEngine {
    fn new() -> CEngine {
        let dicts = [le_dict_config { name: s("cache"), capacity: 1 << 20 }];
        let config =
            le_config { workers: 1, shared_dicts: dicts.as_ptr(), n_shared_dicts: dicts.len(), ..Default::default() };
        let mut engine = ptr::null_mut();
        assert_eq!(le_engine_new(&config, &mut engine, ptr::null_mut()), le_result::LE_OK);
        CEngine { engine }
    }

    fn compile(&self, name: &str, source: &str) -> *mut le_script {
        let mut script = ptr::null_mut();
        assert_eq!(le_script_compile(self.engine, s(name), s(source), &mut script, ptr::null_mut()), le_result::LE_OK);
        script
    }

    /// One request: new → run each phase → response → free. Returns the body length.
    fn request(&self, wire: &Wire, phases: &[(le_phase, *mut le_script)]) -> usize {
        let init = wire.init();
        let mut request = ptr::null_mut();
        assert_eq!(le_request_new(self.engine, &init, LE_WORKER_ANY, &mut request, ptr::null_mut()), le_result::LE_OK);
        for &(phase, script) in phases {
            if le_request_run(request, phase, script, ptr::null_mut()) != le_status::LE_STATUS_OK {
                break;
            }
        }
        // SAFETY: all-zero bytes are a valid view (NULL pointers, zero lengths).
        let mut view: le_response_view = unsafe { std::mem::zeroed() };
        view.size = std::mem::size_of::<le_response_view>();
        assert_eq!(le_request_response(request, &mut view), le_result::LE_OK);
        let body_len = view.body.len;
        le_request_free(request);
        body_len
    }
}

/// The request as an HTTP server holds it after parsing: every string in its read buffer, which
/// the snapshot then copies in one piece.
struct Wire {
    buffer: Vec<u8>,
    fields: [le_str; 6],
    headers: Vec<le_header>,
}

impl Wire {
    fn new() -> Wire {
        let fields = ["GET", "/t", "a=1", "HTTP/1.1", "http", "127.0.0.1"];
        let strings = fields.iter().copied().chain(HEADERS.iter().flat_map(|(n, v)| [*n, *v]));
        let buffer: Vec<u8> = strings.clone().flat_map(str::bytes).collect();
        let mut offset = 0;
        let mut slices = strings.map(|text| {
            offset += text.len();
            le_str { ptr: buffer[offset - text.len()..].as_ptr(), len: text.len() }
        });
        let fields = std::array::from_fn(|_| slices.next().unwrap());
        let headers = std::iter::from_fn(|| Some(le_header { name: slices.next()?, value: slices.next()? })).collect();
        Wire { buffer, fields, headers }
    }

    fn init(&self) -> le_request_init {
        let [method, path, query, http_version, scheme, remote_addr] = self.fields;
        le_request_init {
            size: std::mem::size_of::<le_request_init>(),
            method,
            path,
            query,
            http_version,
            scheme,
            remote_addr,
            body: le_str { ptr: ptr::null(), len: 0 },
            headers: self.headers.as_ptr(),
            n_headers: self.headers.len(),
            has_body: false,
            buffer: le_str { ptr: self.buffer.as_ptr(), len: self.buffer.len() },
        }
    }
}

impl Drop for CEngine {
    fn drop(&mut self) {
        le_engine_free(self.engine);
    }
}

/// Median ns per iteration over `rounds` rounds of `per_round` iterations, after a warm-up.
fn measure(rounds: usize, per_round: usize, mut once: impl FnMut()) -> f64 {
    median_ns(rounds, per_round, || (0..per_round).for_each(|_| once()))
}

/// `LE_BENCH_COUNT=CASE:N` serves N requests of one case (none: no phase; empty: an empty
/// content script; hello; auth; dict: `ngx.shared.cache:incr`) and nothing else, for counting
/// instructions: the difference of two callgrind runs with different N, divided by the
/// difference of N, is the case's cost per request, e.g.
/// `LE_BENCH_COUNT=hello:100 valgrind --tool=callgrind target/release/deps/request_path-*`.
fn count(engine: &CEngine, wire: &Wire, spec: &str) {
    let (case, n) = spec.split_once(':').expect("LE_BENCH_COUNT=CASE:N");
    let n: usize = n.parse().expect("a request count");
    let script = |name, source| (LE_PHASE_CONTENT, engine.compile(name, source));
    let phases = match case {
        "none" => vec![],
        "empty" => vec![script("content", "")],
        "hello" => vec![script("content", HELLO)],
        "auth" => vec![(LE_PHASE_ACCESS, engine.compile("access", AUTH_ACCESS)), script("content", AUTH_CONTENT)],
        "dict" => vec![script("content", DICT)],
        other => panic!("unknown case {other} (none, empty, hello, auth, dict)"),
    };
    for _ in 0..n {
        engine.request(wire, &phases);
    }
}

fn main() {
    let engine = CEngine::new();
    let wire = Wire::new();
    if let Ok(spec) = std::env::var("LE_BENCH_COUNT") {
        return count(&engine, &wire, &spec);
    }
    // LE_BENCH_QUICK=1 runs a few iterations only, for callgrind (`valgrind --tool=callgrind`).
    let quick = std::env::var_os("LE_BENCH_QUICK").is_some();
    let (rounds, per_round) = if quick { (1, 2_000) } else { (15, 20_000) };
    let hello = engine.compile("content", HELLO);
    let access = engine.compile("access", AUTH_ACCESS);
    let content = engine.compile("content", AUTH_CONTENT);

    assert_eq!(engine.request(&wire, &[(LE_PHASE_CONTENT, hello)]), "hello\n".len());
    assert_eq!(engine.request(&wire, &[(LE_PHASE_ACCESS, access), (LE_PHASE_CONTENT, content)]), "hello u1 /t\n".len());

    let hello_ns = measure(rounds, per_round, || {
        engine.request(&wire, &[(LE_PHASE_CONTENT, hello)]);
    });
    let auth_ns = measure(rounds, per_round, || {
        engine.request(&wire, &[(LE_PHASE_ACCESS, access), (LE_PHASE_CONTENT, content)]);
    });

    // Anchor measured in the same run: the same hello request through the safe Rust API.
    let rust_engine = Engine::new(EngineConfig { workers: 1, ..Default::default() }).unwrap();
    let rust_hello = rust_engine.compile("content", HELLO).unwrap();
    let init =
        RequestInit { method: b"GET", path: b"/t", query: b"a=1", remote_addr: b"127.0.0.1", ..Default::default() };
    let anchor_ns = measure(rounds, per_round, || {
        let mut request =
            rust_engine.new_request(&init, HEADERS.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), None);
        request.run(Phase::Content, &rust_hello).unwrap();
        std::hint::black_box(request.response().body.len());
    });

    println!("backend: {}", luaengine::BACKEND);
    println!(
        "C ABI request path (new with 8 headers -> phases -> response -> free), median of {rounds} x {per_round}:"
    );
    println!("  (a) hello  content ngx.say            {hello_ns:>8.0} ns/request   target < 1500");
    println!("  (b) auth   access + content           {auth_ns:>8.0} ns/request   target < 4000");
    println!(
        "  anchor: hello through the Rust API    {anchor_ns:>8.0} ns/request   (C ABI / Rust = {:.2})",
        hello_ns / anchor_ns
    );
    for script in [hello, access, content] {
        le_script_free(script);
    }
}
