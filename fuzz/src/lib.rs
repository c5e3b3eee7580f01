//! What the fuzz targets share: one sandboxed engine per process, with the limits a host
//! serving untrusted scripts would set, and a way to run a content phase to its end.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use luaengine::{Engine, EngineConfig, LogRecord, Phase, RequestInit, Response, Script};

/// Instructions one phase may run: a runaway loop ends in a budget error, not a hang.
pub const INSTRUCTION_BUDGET: u64 = 5_000_000;
/// Lua heap of the worker: a memory bomb ends in a memory error, not in libFuzzer's RSS limit.
pub const MEMORY_LIMIT: usize = 128 << 20;
/// Wall time one phase may take. The instruction budget alone does not bound it: each
/// instruction may be a C call that takes long (5M `string.rep` calls making 440 KB each took
/// minutes), so without this such inputs would read as hangs (libFuzzer's `-timeout`).
pub const TIME_BUDGET: Duration = Duration::from_secs(2);

/// The process's engine: one worker, sandboxed, with the limits above. Log records are
/// dropped (scripts that fail log each failure). Timers a script starts run on the engine's own
/// threads; few may be pending, so `ngx.timer.every` cannot fill the worker with callbacks.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(EngineConfig {
            workers: 1,
            instruction_budget: INSTRUCTION_BUDGET,
            memory_limit: MEMORY_LIMIT,
            time_budget: TIME_BUDGET,
            max_pending_timers: 4,
            max_running_timers: 4,
            log: Some(Arc::new(|_: &LogRecord<'_>| {})),
            ..Default::default()
        })
        .expect("the fuzz engine builds")
    })
}

/// A target's own content script, compiled on first use; the fuzz input reaches it as the
/// request body, so one compiled script serves every run.
pub struct FixedScript {
    source: &'static str,
    script: OnceLock<Script>,
}

impl FixedScript {
    pub const fn new(source: &'static str) -> FixedScript {
        FixedScript { source, script: OnceLock::new() }
    }

    /// Runs the script on a request whose body is `body` (see `run_content`).
    pub fn run(&self, body: &[u8]) -> Result<Response, String> {
        let script = self
            .script
            .get_or_init(|| engine().compile("content", self.source).expect("the target's own script compiles"));
        run_content(script, body)
    }
}

/// Runs `script` as the content phase of a POST request carrying `body`; a phase left waiting
/// (`ngx.sleep`, a plain yield) is cancelled. Returns the response, or the script's error message.
pub fn run_content(script: &Script, body: &[u8]) -> Result<Response, String> {
    let init = RequestInit { method: b"POST", path: b"/fuzz", body: Some(body), ..Default::default() };
    let mut request = engine().new_request(&init, std::iter::empty::<(&[u8], &[u8])>(), None);
    let result = request.run(Phase::Content, script);
    if request.is_suspended() {
        let _ = request.cancel();
    }
    result.map(|_| request.response().clone()).map_err(|error| error.message)
}

/// The C site config parser of the example servers (built by build.rs), as siteconf.h declares
/// it; the config itself stays opaque.
pub mod siteconf {
    use std::ffi::{c_char, c_int, c_void};

    use luaengine::ffi::le_config;

    extern "C" {
        pub fn site_config_load(path: *const c_char, out: *mut *mut c_void, error: *mut c_char, size: usize) -> c_int;
        pub fn site_config_free(config: *mut c_void);
        pub fn site_engine_config(config: *const c_void, engine_config: *mut le_config);
        pub fn site_match(config: *const c_void, path: *const c_char, len: usize) -> *const c_void;
    }
}
