package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Phase is a request phase, with lua-nginx-module's names.
type Phase int

const (
	PhaseRewrite      Phase = C.LE_PHASE_REWRITE
	PhaseAccess       Phase = C.LE_PHASE_ACCESS
	PhaseContent      Phase = C.LE_PHASE_CONTENT
	PhaseHeaderFilter Phase = C.LE_PHASE_HEADER_FILTER
	PhaseBodyFilter   Phase = C.LE_PHASE_BODY_FILTER
	PhaseLog          Phase = C.LE_PHASE_LOG
	// NoPhase is the Phase of a log record written while no script ran.
	NoPhase Phase = -1
)

var phaseNames = [...]string{
	C.LE_PHASE_INIT:          "init",
	C.LE_PHASE_INIT_WORKER:   "init_worker",
	C.LE_PHASE_REWRITE:       "rewrite",
	C.LE_PHASE_ACCESS:        "access",
	C.LE_PHASE_CONTENT:       "content",
	C.LE_PHASE_HEADER_FILTER: "header_filter",
	C.LE_PHASE_BODY_FILTER:   "body_filter",
	C.LE_PHASE_LOG:           "log",
	C.LE_PHASE_TIMER:         "timer",
}

// String returns the phase's name as ngx.get_phase() says it ("access", "header_filter").
func (p Phase) String() string {
	if p >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "none"
}

// Status is what running a phase returns.
type Status int

const (
	// StatusOK: the phase finished; go on to the next phase.
	StatusOK Status = C.LE_STATUS_OK
	// StatusDone: the request is answered (ngx.exit with a status, a redirect, or content):
	// send the response, skipping the remaining request phases.
	StatusDone Status = C.LE_STATUS_DONE
	// StatusYield: the script waits. Run and the middlewares park the goroutine and resume it
	// themselves, so callers of this package never receive it.
	StatusYield Status = C.LE_STATUS_YIELD
	// StatusError: the phase failed; the error says why.
	StatusError Status = C.LE_STATUS_ERROR
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusDone:
		return "DONE"
	case StatusYield:
		return "YIELD"
	default:
		return "ERROR"
	}
}

// Script is compiled Lua code, runnable in any phase on any request of the engine. It is safe
// for concurrent use and independent of its engine's lifetime.
type Script struct {
	life    lifetime
	ptr     *C.le_script
	name    string
	cleanup runtime.Cleanup
}

// Compile compiles Lua source. name names the chunk in errors and logs ("content:3: ...").
// Compiling the same name and source again reuses the cached bytecode. Syntax errors are
// *Error values with CodeSyntax, Chunk and Line.
func (e *Engine) Compile(name, source string) (*Script, error) {
	if err := e.life.acquire(); err != nil {
		return nil, err
	}
	defer e.life.release()
	var ptr *C.le_script
	var cerr *C.le_error
	r := C.le_script_compile(e.state.ptr, goStr(name), goStr(source), &ptr, &cerr)
	runtime.KeepAlive(name)
	runtime.KeepAlive(source)
	if r != C.LE_OK {
		return nil, takeError(cerr, CodeSyntax)
	}
	return newScript(ptr, name), nil
}

// CompileFile compiles a Lua file. The script follows its file: when the file changes it is
// recompiled at the next check (Config.FileCheckInterval) or Engine.Reload.
func (e *Engine) CompileFile(path string) (*Script, error) {
	if err := e.life.acquire(); err != nil {
		return nil, err
	}
	defer e.life.release()
	var ptr *C.le_script
	var cerr *C.le_error
	r := C.le_script_compile_file(e.state.ptr, goStr(path), &ptr, &cerr)
	runtime.KeepAlive(path)
	if r != C.LE_OK {
		return nil, takeError(cerr, CodeIO)
	}
	return newScript(ptr, path), nil
}

func newScript(ptr *C.le_script, name string) *Script {
	s := &Script{ptr: ptr, name: name}
	s.cleanup = runtime.AddCleanup(s, func(ptr *C.le_script) { C.le_script_free(ptr) }, ptr)
	s.life.init(func() {
		s.cleanup.Stop()
		C.le_script_free(ptr)
	})
	return s
}

// Name returns the chunk name (or file path) the script was compiled under.
func (s *Script) Name() string { return s.name }

// Close releases the script. Runs already using it (directly or through a Pipeline) finish
// first; running it afterwards fails with ErrClosed. Close is idempotent.
func (s *Script) Close() error {
	s.life.close()
	return nil
}

func (s *Script) acquire() error {
	if s == nil {
		return &Error{Code: CodeInvalidArgument, Message: "luaengine: nil script", Phase: NoPhase}
	}
	return s.life.acquire()
}

// goStr views a Go string as an le_str for the duration of one C call, which copies it; the
// caller keeps the string alive with runtime.KeepAlive. Go memory without pointers may be
// passed to C this way.
func goStr(s string) C.le_str {
	return C.le_str{ptr: (*C.uint8_t)(unsafe.Pointer(unsafe.StringData(s))), len: C.size_t(len(s))}
}
