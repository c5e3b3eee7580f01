package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/cgo"
	"sync/atomic"
	"time"
	"unsafe"
)

// NoLimit turns off a limit that is on by default (Config.TimeBudget, Config.MemoryLimit).
const NoLimit = -1

// Config says how to build an [Engine]. The zero value is a sandboxed engine with one worker per
// CPU that logs to stderr, with the engine's default limits (a 5s time budget per phase run, a
// 512 MiB Lua memory cap per worker).
type Config struct {
	// Workers is the number of Lua states; 0 means one per CPU.
	Workers int
	// Trusted gives scripts the full standard library (io, os, debug, ffi, C modules).
	Trusted bool
	// PackagePath lists require() search templates such as "/srv/lua/?.lua".
	PackagePath []string
	// Log receives the engine's log records (ngx.log, print, errors); nil writes them to stderr.
	// It is called from the goroutine running the script, concurrently for different requests,
	// and must not call back into the engine for the same request.
	Log func(LogRecord)
	// LogLevel drops records less severe than it; 0 keeps the default, LogDebug (everything).
	LogLevel LogLevel
	// InstructionBudget is how many VM instructions one phase may execute before it fails with
	// CodeBudget; 0 means no limit. A phase that waits keeps what it has left.
	InstructionBudget uint64
	// TimeBudget is the wall time one phase run may take (time spent waiting does not count)
	// before it fails with CodeBudget, in whole milliseconds. 0 keeps the engine's default (5s):
	// a runaway script must not pin a worker; NoLimit turns it off. It costs scripts nothing
	// (a watchdog checks it); an InstructionBudget makes LuaJIT run interpreted.
	TimeBudget time.Duration
	// MemoryLimit caps each worker's Lua memory in bytes. 0 keeps the engine's default
	// (512 MiB): an allocation bomb fails its script instead of growing the process; NoLimit
	// turns it off.
	MemoryLimit int64
	// CoroutinePool is how many idle coroutines each worker keeps; 0 keeps the default (1024).
	CoroutinePool int
	// FileCheckInterval is how often file scripts check their file; 0 keeps the default (1s).
	FileCheckInterval time.Duration
	// Functions are Go functions scripts call as require("host").<name>(...).
	Functions map[string]HostFunc
	// AsyncFunctions are Go functions scripts call the same way, for work that takes time: the
	// calling script waits (its phase yields and the worker serves other requests) while the
	// function runs in a goroutine, then goes on with its results. Timer callbacks may call them
	// too. A name may not be in both maps.
	AsyncFunctions map[string]HostFunc
	// SharedDicts declares ngx.shared.<name> dicts: name → capacity in bytes (at least 32 KiB).
	SharedDicts map[string]int
	// DefaultType is nginx's default_type: the Content-Type the engine gives a response whose
	// scripts send output without setting one. "" keeps "text/plain"; NoDefaultType adds none.
	DefaultType   string
	NoDefaultType bool
	// Init is init_by_lua: Lua source run in every worker's Lua state when the engine is built,
	// before anything else (chunk name "init"). Its globals and the modules it requires are seen
	// by every request. InitFile is the same from a file (set one of them at most).
	Init, InitFile string
	// InitWorker is init_worker_by_lua: Lua source run once in each worker after Init (chunk
	// name "init_worker"), typically to start timers (ngx.timer.at, ngx.timer.every).
	// InitWorkerFile is the same from a file. A failing init or init_worker fails New.
	InitWorker, InitWorkerFile string
	// MaxPendingTimers and MaxRunningTimers are lua_max_pending_timers and
	// lua_max_running_timers, per worker; 0 keeps the defaults (1024 and 256).
	MaxPendingTimers, MaxRunningTimers int
}

// LogLevel is a log level with nginx's numbers: lower is more severe.
type LogLevel int

const (
	LogStderr LogLevel = C.LE_LOG_STDERR
	LogEmerg  LogLevel = C.LE_LOG_EMERG
	LogAlert  LogLevel = C.LE_LOG_ALERT
	LogCrit   LogLevel = C.LE_LOG_CRIT
	LogErr    LogLevel = C.LE_LOG_ERR
	LogWarn   LogLevel = C.LE_LOG_WARN
	LogNotice LogLevel = C.LE_LOG_NOTICE
	LogInfo   LogLevel = C.LE_LOG_INFO
	LogDebug  LogLevel = C.LE_LOG_DEBUG
)

// LogRecord is one log line.
type LogRecord struct {
	Level     LogLevel
	Phase     Phase  // the phase that logged, or NoPhase
	Location  string // "chunk:line" of the Lua code that logged, or ""
	Message   string
	RequestID uint64 // the request that logged ([Request.ID]), or 0
}

// Engine is a set of Lua workers with a code cache. It is safe for concurrent use: share one
// engine between all goroutines.
type Engine struct {
	life    lifetime
	state   *engineState
	cleanup runtime.Cleanup
}

// engineState is what Close (or the safety-net cleanup, for an engine never closed) releases:
// kept apart from Engine so the cleanup does not keep the Engine reachable.
type engineState struct {
	ptr     *C.le_engine
	handles []cgo.Handle
	freed   atomic.Bool
	async   map[string]*hostEntry // Config.AsyncFunctions
	stop    context.CancelFunc    // ends the context of the timers' async calls
}

func (s *engineState) free() {
	if s.freed.CompareAndSwap(false, true) {
		s.stop()
		C.le_engine_free(s.ptr)
		for _, h := range s.handles {
			h.Delete()
		}
	}
}

// New creates an engine. Close it when done; requests and pipelines still running keep it
// alive until they finish.
func New(config Config) (*Engine, error) {
	var mem cMemory
	defer mem.free()
	c := C.le_config_default()
	if config.Workers < 0 || config.MaxPendingTimers < 0 || config.MaxRunningTimers < 0 ||
		(config.TimeBudget < 0 && config.TimeBudget != NoLimit) || (config.MemoryLimit < 0 && config.MemoryLimit != NoLimit) {
		return nil, fmt.Errorf("luaengine: negative Workers, MaxPendingTimers, MaxRunningTimers, TimeBudget or MemoryLimit (NoLimit turns a limit off)")
	}
	ctx, stop := context.WithCancel(context.Background())
	state := &engineState{stop: stop}
	c.workers = C.uint32_t(config.Workers)
	c.trusted = C.bool(config.Trusted)
	if n := len(config.PackagePath); n > 0 {
		paths := unsafe.Slice((*C.le_str)(mem.alloc(n*C.sizeof_le_str)), n)
		for i, p := range config.PackagePath {
			paths[i] = mem.str(p)
		}
		c.package_path, c.n_package_path = &paths[0], C.size_t(n)
	}
	if config.Log != nil {
		h := cgo.NewHandle(config.Log)
		state.handles = append(state.handles, h)
		C.lego_set_log(&c, C.uintptr_t(h))
	}
	if config.LogLevel != 0 {
		c.log_level = C.le_log_level(config.LogLevel)
	}
	c.instruction_budget = C.uint64_t(config.InstructionBudget)
	switch {
	case config.TimeBudget == NoLimit:
		c.time_budget_ms = 0
	case config.TimeBudget > 0 && config.TimeBudget < time.Millisecond:
		c.time_budget_ms = 1
	case config.TimeBudget > 0:
		c.time_budget_ms = C.uint32_t(min(config.TimeBudget.Milliseconds(), math.MaxUint32))
	}
	switch {
	case config.MemoryLimit == NoLimit:
		c.memory_limit = 0
	case config.MemoryLimit > 0:
		c.memory_limit = C.size_t(config.MemoryLimit)
	}
	if config.CoroutinePool > 0 {
		c.coroutine_pool = C.uint32_t(config.CoroutinePool)
	}
	if config.FileCheckInterval > 0 {
		c.file_check_interval_ms = C.uint32_t(config.FileCheckInterval.Milliseconds())
	}
	if n := len(config.Functions); n > 0 {
		functions := unsafe.Slice((*C.le_function)(mem.alloc(n*C.sizeof_le_function)), n)
		i := 0
		for name, fn := range config.Functions {
			if fn == nil || config.AsyncFunctions[name] != nil {
				stop()
				state.deleteHandles()
				return nil, fmt.Errorf("luaengine: host function %q is nil or also async", name)
			}
			h := cgo.NewHandle(&hostEntry{name: name, fn: fn})
			state.handles = append(state.handles, h)
			C.lego_set_function(&functions[i], mem.str(name), C.uintptr_t(h))
			i++
		}
		c.functions, c.n_functions = &functions[0], C.size_t(n)
	}
	if n := len(config.AsyncFunctions); n > 0 {
		names := unsafe.Slice((*C.le_str)(mem.alloc(n*C.sizeof_le_str)), n)
		state.async = make(map[string]*hostEntry, n)
		i := 0
		for name, fn := range config.AsyncFunctions {
			if fn == nil {
				stop()
				state.deleteHandles()
				return nil, fmt.Errorf("luaengine: async host function %q is nil", name)
			}
			state.async[name] = &hostEntry{name: name, fn: fn}
			names[i] = mem.str(name)
			i++
		}
		c.async_functions, c.n_async_functions = &names[0], C.size_t(n)
		h := cgo.NewHandle(&asyncFuncs{entries: state.async, ctx: ctx})
		state.handles = append(state.handles, h)
		C.lego_set_timer_op(&c, C.uintptr_t(h))
	}
	if n := len(config.SharedDicts); n > 0 {
		dicts := unsafe.Slice((*C.le_dict_config)(mem.alloc(n*C.sizeof_le_dict_config)), n)
		i := 0
		for name, capacity := range config.SharedDicts {
			dicts[i] = C.le_dict_config{name: mem.str(name), capacity: C.size_t(capacity)}
			i++
		}
		c.shared_dicts, c.n_shared_dicts = &dicts[0], C.size_t(n)
	}
	switch {
	case config.NoDefaultType:
		c.default_type = C.le_str{}
	case config.DefaultType != "":
		c.default_type = mem.str(config.DefaultType)
	}
	c.init, c.init_file = mem.str(config.Init), mem.str(config.InitFile)
	c.init_worker, c.init_worker_file = mem.str(config.InitWorker), mem.str(config.InitWorkerFile)
	if config.MaxPendingTimers > 0 {
		c.max_pending_timers = C.uint32_t(min(config.MaxPendingTimers, math.MaxUint32))
	}
	if config.MaxRunningTimers > 0 {
		c.max_running_timers = C.uint32_t(min(config.MaxRunningTimers, math.MaxUint32))
	}
	var cerr *C.le_error
	if C.le_engine_new(&c, &state.ptr, &cerr) != C.LE_OK {
		stop()
		state.deleteHandles()
		return nil, takeError(cerr, CodeInvalidArgument)
	}
	e := &Engine{state: state}
	e.cleanup = runtime.AddCleanup(e, (*engineState).free, state)
	e.life.init(func() {
		e.cleanup.Stop()
		state.free()
	})
	return e, nil
}

func (s *engineState) deleteHandles() {
	for _, h := range s.handles {
		h.Delete()
	}
	s.handles = nil
}

// Close stops the engine from taking new work: NewRequest, Compile and pipelines' Begin fail
// with ErrClosed from now on. Requests and pipelines already running finish normally; the
// engine's memory is released when the last of them is closed. Close is idempotent.
func (e *Engine) Close() error {
	e.life.close()
	return nil
}

// Workers returns the number of workers (Lua states); 0 once the engine is closed.
func (e *Engine) Workers() int {
	if e.life.acquire() != nil {
		return 0
	}
	defer e.life.release()
	return int(C.le_engine_worker_count(e.state.ptr))
}

// Stats are an engine's counters.
type Stats struct {
	ScriptsCompiled uint64 // sources parsed and compiled
	CacheHits       uint64 // compiles answered from the code cache
	CacheMisses     uint64 // compiles that had to parse
	PhasesRun       uint64 // phase runs and resumes
	Errors          uint64 // phase runs and resumes that failed
	Workers         int
}

// Stats reads the engine's counters.
func (e *Engine) Stats() (Stats, error) {
	if err := e.life.acquire(); err != nil {
		return Stats{}, err
	}
	defer e.life.release()
	s := C.le_stats{size: C.sizeof_le_stats}
	if r := C.le_engine_stats(e.state.ptr, &s); r != C.LE_OK {
		return Stats{}, &Error{Code: Code(r), Message: "luaengine: reading stats failed"}
	}
	return Stats{
		ScriptsCompiled: uint64(s.scripts_compiled),
		CacheHits:       uint64(s.cache_hits),
		CacheMisses:     uint64(s.cache_misses),
		PhasesRun:       uint64(s.phases_run),
		Errors:          uint64(s.errors),
		Workers:         int(s.workers),
	}, nil
}

// WorkerStats are one worker's counters.
type WorkerStats struct {
	PooledCoroutines int    // idle coroutines kept for reuse
	LuaMemory        int    // bytes of Lua memory after the worker's last phase run
	FunctionsLoaded  uint64 // script versions this worker loaded into functions
	PendingTimers    int    // timers waiting to expire
	RunningTimers    int    // timer callbacks running now (those waiting included)
	Rebuilds         uint64 // fresh Lua states built after three runs in a row failed for memory
}

// WorkerStats reads the counters of worker i (0 ≤ i < Workers()).
func (e *Engine) WorkerStats(i int) (WorkerStats, error) {
	if err := e.life.acquire(); err != nil {
		return WorkerStats{}, err
	}
	defer e.life.release()
	if i < 0 {
		return WorkerStats{}, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("luaengine: worker %d", i)}
	}
	s := C.le_worker_stats{size: C.sizeof_le_worker_stats}
	if r := C.le_engine_worker_stats(e.state.ptr, C.uint32_t(i), &s); r != C.LE_OK {
		return WorkerStats{}, &Error{Code: Code(r), Message: fmt.Sprintf("luaengine: no worker %d", i)}
	}
	return WorkerStats{
		PooledCoroutines: int(s.pooled_coroutines),
		LuaMemory:        int(s.lua_memory),
		FunctionsLoaded:  uint64(s.functions_loaded),
		PendingTimers:    int(s.pending_timers),
		RunningTimers:    int(s.running_timers),
		Rebuilds:         uint64(s.rebuilds),
	}, nil
}

// Shutdown stops every script running now, a runaway loop included, and makes every phase run
// that starts later fail at once with CodeBudget: for a server that is stopping and must not
// wait for scripts. It cannot be undone; Close the engine afterwards as usual.
func (e *Engine) Shutdown() {
	if err := e.life.acquire(); err != nil {
		return
	}
	defer e.life.release()
	C.le_engine_shutdown(e.state.ptr)
}

// Reload checks every file script now and recompiles those whose file changed; it returns how
// many did. Phases already running finish on the version they started with.
func (e *Engine) Reload() (int, error) {
	if err := e.life.acquire(); err != nil {
		return 0, err
	}
	defer e.life.release()
	var n C.size_t
	var cerr *C.le_error
	if C.le_engine_reload(e.state.ptr, &n, &cerr) != C.LE_OK {
		return int(n), takeError(cerr, CodeIO)
	}
	return int(n), nil
}

// Version returns the library version, such as "0.1.0".
func Version() string { return C.GoString(C.le_version()) }

// Backend returns the Lua backend the library was built with: "LuaJIT" or "Lua 5.4".
func Backend() string { return C.GoString(C.le_backend()) }

// ABIVersion returns the C ABI version of the linked library; it must equal the header's
// LE_ABI_VERSION, which this package was compiled against.
func ABIVersion() int { return int(C.le_abi_version()) }

// HeaderABIVersion is the C ABI version this package was compiled against.
const HeaderABIVersion = C.LE_ABI_VERSION

//export legoLog
func legoLog(handle C.uintptr_t, record *C.le_log_record) {
	log := cgo.Handle(handle).Value().(func(LogRecord))
	// A panic must not unwind into C: report it instead of the record.
	defer func() {
		if p := recover(); p != nil {
			println("luaengine: the Log callback panicked:", fmt.Sprint(p))
		}
	}()
	log(LogRecord{
		Level:     LogLevel(record.level),
		Phase:     Phase(record.phase),
		Location:  goString(record.location),
		Message:   goString(record.message),
		RequestID: uint64(record.request_id),
	})
}

// cMemory is C memory for one call's arguments, freed together.
type cMemory []unsafe.Pointer

func (m *cMemory) alloc(n int) unsafe.Pointer {
	p := C.calloc(1, C.size_t(n))
	if p == nil {
		panic("luaengine: out of C memory")
	}
	*m = append(*m, p)
	return p
}

// str copies s into C memory.
func (m *cMemory) str(s string) C.le_str {
	if s == "" {
		return C.le_str{}
	}
	p := m.alloc(len(s))
	copy(unsafe.Slice((*byte)(p), len(s)), s)
	return C.le_str{ptr: (*C.uint8_t)(p), len: C.size_t(len(s))}
}

func (m *cMemory) free() {
	for _, p := range *m {
		C.free(p)
	}
	*m = nil
}
