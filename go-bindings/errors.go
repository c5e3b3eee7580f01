package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// Code says what kind of failure an [Error] is; the values are the C ABI's le_result codes.
type Code int

const (
	CodeInvalidArgument Code = C.LE_ERR_INVALID_ARGUMENT // a bad handle, value or phase
	CodeInvalidState    Code = C.LE_ERR_INVALID_STATE    // the object cannot do that now
	CodeSyntax          Code = C.LE_ERR_SYNTAX           // Lua source failed to compile
	CodeRuntime         Code = C.LE_ERR_RUNTIME          // a script raised an error
	CodeBudget          Code = C.LE_ERR_BUDGET           // a phase used up its instruction budget
	CodeMemory          Code = C.LE_ERR_MEMORY           // a worker hit its Lua memory cap
	CodeIO              Code = C.LE_ERR_IO               // a script file could not be read
	CodeAborted         Code = C.LE_ERR_ABORTED          // a script called ngx.exit(ngx.ERROR)
	CodeInternal        Code = C.LE_ERR_INTERNAL         // a bug in the library; the engine stays usable
)

// String returns the C name of the code, such as "LE_ERR_SYNTAX".
func (c Code) String() string {
	return C.GoString(C.le_result_name(C.uint32_t(c)))
}

// Error is a failure reported by the engine. For Lua errors Chunk and Line say where it was
// raised and Traceback holds Lua's stack traceback.
type Error struct {
	Code      Code
	Message   string // e.g. "content:3: boom"; already carries chunk:line when Lua knows it
	Chunk     string // the chunk name ("content", a file path), or ""
	Line      int    // the line in Chunk, or 0
	Traceback string // "stack traceback:\n...", or ""
	Phase     Phase  // the phase that failed, or NoPhase when the failure is not a phase's
	cause     error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns what caused the failure on the Go side, if anything: the context's error for
// a request cancelled while it waited, the read error (an *http.MaxBytesError, say) when a
// script's ngx.req.read_body() failed.
func (e *Error) Unwrap() error { return e.cause }

// ErrClosed is returned for work asked of a closed Engine, Script or Pipeline.
var ErrClosed = errors.New("luaengine: closed")

// takeError turns an le_error into an *Error and frees it. A NULL error still gives an *Error,
// with the fallback code.
func takeError(e *C.le_error, fallback Code) *Error {
	if e == nil {
		return &Error{Code: fallback, Message: "luaengine: " + fallback.String(), Phase: NoPhase}
	}
	var fields C.lego_error_fields
	C.lego_error_read(e, &fields)
	err := &Error{
		Code:      Code(fields.code),
		Message:   goString(fields.message),
		Chunk:     goString(fields.chunk),
		Line:      int(fields.line),
		Traceback: goString(fields.traceback),
		Phase:     NoPhase,
	}
	C.le_error_free(e)
	return err
}

// goString copies an le_str into Go memory.
func goString(s C.le_str) string {
	if s.len == 0 {
		return ""
	}
	return string(cBytes(s))
}

// cBytes views an le_str without copying; valid as long as the C memory is.
func cBytes(s C.le_str) []byte {
	if s.len == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), int(s.len))
}
