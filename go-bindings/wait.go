package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Waiting scripts. A phase that waits (ngx.sleep, an async host function, ngx.req.read_body)
// returns YIELD from C; the goroutine that ran it then parks on a channel — no OS thread is
// held — until the wait is over, and resumes the request and the rest of its batch:
//
//   - engine-driven waits (ngx.sleep) end on the engine's clock thread, whose wake callback
//     (legoWake) signals the frame's wake channel;
//   - async host functions run in goroutines of their own, which hand their results to the
//     waiting goroutine (waiter) to complete the operation with;
//   - ngx.req.read_body reads the body right there, on the waiting goroutine.
//
// Cancelling the request's context ends the waiting phase where it waits (le_request_cancel),
// as nginx ends a handler whose client went away; the request stays for its log phase.

//export legoWake
func legoWake(handle C.uintptr_t) {
	wake := cgo.Handle(handle).Value().(chan struct{})
	select {
	case wake <- struct{}{}:
	default: // already signalled: one resume takes every completed wait
	}
}

// settle finishes what a batch call returned: it waits out yields until the batch ends, and
// turns a failure into an *Error naming the phase.
func (f *frame) settle(status Status) (Status, error) {
	for status == StatusYield {
		var err error
		if status, err = f.await(); err != nil {
			return StatusError, err
		}
	}
	if f.ops != nil {
		// The phase is over: calls still running (a light thread's, abandoned) are not wanted.
		f.ops.close()
		f.ops = nil
	}
	if status == StatusError {
		return status, f.takeError(CodeRuntime)
	}
	return status, nil
}

// await starts what the request waits for, parks until something it waits for is done (or the
// request's context is), then resumes it.
func (f *frame) await() (Status, error) {
	if f.startPending() {
		return Status(C.lego_resume(f.ref())), nil
	}
	var cancelled <-chan struct{}
	if f.ctx != nil {
		cancelled = f.ctx.Done()
	}
	var opsDone <-chan struct{}
	if f.ops != nil {
		opsDone = f.ops.notify
	}
	select {
	case <-f.wake:
	case <-opsDone:
		f.completeOps()
	case <-cancelled:
		return StatusError, f.cancel()
	}
	return Status(C.lego_resume(f.ref())), nil
}

// pendingOp is a pending operation copied out of C.
type pendingOp struct {
	id   uint64
	name string
	args []any
}

// readBodyOp is the name of the operation ngx.req.read_body() waits on.
const readBodyOp = "ngx.req.read_body"

// startPending starts the pending operations not started yet: async host calls in goroutines,
// body reads right here. It reports whether it completed any (then resume at once).
func (f *frame) startPending() (completed bool) {
	if f.c.n_pending == 0 {
		return false
	}
	// Copied first: completing an operation ends the C view.
	var ops []pendingOp
	for _, op := range unsafe.Slice(f.c.pending, int(f.c.n_pending)) {
		id := uint64(op.id)
		if f.ops != nil && f.ops.started[id] {
			continue
		}
		name := goString(op.name)
		var opArgs []any
		if name != readBodyOp {
			opArgs = args(unsafe.Slice(op.args, int(op.n_args)))
		}
		ops = append(ops, pendingOp{id: id, name: name, args: opArgs})
	}
	for _, op := range ops {
		if op.name == readBodyOp {
			body, err := f.readBody()
			f.complete(op.id, []any{body}, err)
			completed = true
			continue
		}
		f.startAsync(op)
	}
	return completed
}

// startAsync runs an async host function in a goroutine.
func (f *frame) startAsync(op pendingOp) {
	w := f.ops
	if w == nil {
		w = newWaiter(f.ctx)
		f.ops = w
	}
	w.started[op.id] = true
	c := &Call{Name: op.name, RequestID: uint64(f.c.id), Args: op.args, ctx: w.ctx}
	entry := f.engine.state.async[op.name]
	go func() {
		results, err := runAsync(entry, c)
		w.done(opResult{id: op.id, results: results, err: err})
	}()
}

// completeOps completes the operations whose functions returned.
func (f *frame) completeOps() {
	for _, r := range f.ops.take() {
		delete(f.ops.started, r.id)
		f.complete(r.id, r.results, r.err)
	}
}

// complete hands an operation's results (or error) to the waiting script.
func (f *frame) complete(id uint64, results []any, err error) {
	answer(results, err, func(values *C.le_value, n C.size_t, fail bool, message C.le_str) C.le_result {
		// An operation the engine no longer waits for (its phase ended) is simply dropped.
		return C.lego_complete(f.ref(), C.uint64_t(id), values, n, C.bool(fail), message)
	})
	if f.c.err != nil {
		C.le_error_free(f.c.err)
		f.c.err = nil
	}
}

// readBody reads the request body for ngx.req.read_body(): the HTTP request's (which is put
// back for the handler that reads it next), or the snapshot's BodyReader; none gives an empty
// body.
func (f *frame) readBody() ([]byte, error) {
	var body []byte
	var err error
	switch r := f.httpReq; {
	case r != nil && r.Body != nil && r.Body != http.NoBody:
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
	case f.bodyReader != nil:
		body, err = io.ReadAll(f.bodyReader)
	}
	if err != nil {
		f.bodyErr = err
		return nil, fmt.Errorf("failed to read the request body: %w", err)
	}
	if body == nil {
		body = []byte{}
	}
	return body, nil
}

// cancel ends the waiting phase after the request's context was cancelled: the rest of the
// batch does not run, and calls still running are not wanted.
func (f *frame) cancel() error {
	phase := f.stepPhase()
	if f.ops != nil {
		f.ops.close()
		f.ops = nil
	}
	f.plan()
	C.lego_cancel(f.ref())
	cause := f.ctx.Err()
	return &Error{
		Code:    CodeAborted,
		Message: fmt.Sprintf("luaengine: the %s phase was cancelled while it waited: %v", phase, cause),
		Phase:   phase,
		cause:   cause,
	}
}

// errCancelled is what a request freed by its context's cancellation (when the engine could not
// cancel its phase) returns when used again.
var errCancelled = &Error{Code: CodeInvalidState, Message: "luaengine: the request was cancelled", Phase: NoPhase}

// waiter collects the results of a request's async host calls, which finish on goroutines of
// their own.
type waiter struct {
	ctx     context.Context // the calls' context: cancelled when the request ends
	stop    context.CancelFunc
	notify  chan struct{}   // signalled when results arrive
	started map[uint64]bool // operations started and not completed (the request's goroutine's)
	mu      sync.Mutex      // guards results and closed
	results []opResult
	closed  bool
}

type opResult struct {
	id      uint64
	results []any
	err     error
}

func newWaiter(parent context.Context) *waiter {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := context.WithCancel(parent)
	return &waiter{ctx: ctx, stop: stop, notify: make(chan struct{}, 1), started: map[uint64]bool{}}
}

// done hands over one call's results; those of a request that ended are dropped.
func (w *waiter) done(r opResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.results = append(w.results, r)
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *waiter) take() []opResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	results := w.results
	w.results = nil
	return results
}

// close ends the calls' context: the request is gone.
func (w *waiter) close() {
	w.mu.Lock()
	w.closed = true
	w.results = nil
	w.mu.Unlock()
	w.stop()
}
