package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"net/http"
	"runtime"
	"strings"
)

// Request is one HTTP request as the scripts see it: created from a snapshot in one call, then
// run through phases one at a time. Use a Request from one goroutine at a time, and Close it.
// For serving HTTP, [Pipeline] and [Middleware] run all phases with fewer calls into C.
type Request struct {
	f       *frame
	cleanup runtime.Cleanup
}

// NewRequest creates a request from plain fields, copying them.
func (e *Engine) NewRequest(init RequestInit) (*Request, error) {
	if err := e.life.acquire(); err != nil {
		return nil, err
	}
	f := getFrame(init.size())
	init.write(f)
	return e.newRequest(f)
}

// NewHTTPRequest creates a request from r: method, path, query, protocol, scheme, client
// address and headers (Host included). The engine never reads r.Body: pass the body already
// read as body, or nil for none (ngx.req.get_body_data() then returns nil).
func (e *Engine) NewHTTPRequest(r *http.Request, body []byte) (*Request, error) {
	if err := e.life.acquire(); err != nil {
		return nil, err
	}
	return e.newRequest(writeHTTP(r, body))
}

// newRequest creates the C request from the snapshot in f; the caller holds an engine
// reference, which the Request keeps.
func (e *Engine) newRequest(f *frame) (*Request, error) {
	f.plan()
	if _, err := f.start(e); err != nil {
		f.recycle()
		e.life.release()
		return nil, err
	}
	r := &Request{f: f}
	// A Request nobody closed is freed when the GC finds it, engine reference included.
	r.cleanup = runtime.AddCleanup(r, func(f *frame) {
		f.finish()
		f.engine.life.release()
		f.destroy()
	}, f)
	return r, nil
}

// start creates the C request from the snapshot and runs the planned batch, holding the
// caller's engine reference in f.engine. It returns the batch's status and failure; when the
// request could not be created, f.c.request is nil.
func (f *frame) start(e *Engine) (Status, error) {
	f.engine = e
	f.c.engine = e.state.ptr
	status := Status(C.lego_start(f.ref(), C.LE_WORKER_ANY))
	if f.c.request == nil {
		return StatusError, f.takeError(CodeInvalidArgument)
	}
	return status, f.outcome(status)
}

// run runs the planned batch on the request.
func (f *frame) run() (Status, error) {
	status := Status(C.lego_run(f.ref()))
	return status, f.outcome(status)
}

// outcome is the error of a batch that stopped early: a step failed, or a step waits. Waiting
// needs the wake-ups the C ABI does not have yet; with them, this is where the goroutine will
// park until the wake callback fires, then resume the request and the rest of the batch.
func (f *frame) outcome(status Status) error {
	switch status {
	case StatusError:
		return f.takeError(CodeRuntime)
	case StatusYield:
		phase := Phase(f.c.phases[f.c.next_step-1])
		return &Error{
			Code:    CodeInvalidState,
			Message: "luaengine: the " + phase.String() + " phase waits; the Go bindings cannot resume requests yet",
			Phase:   phase,
		}
	}
	return nil
}

// finish runs what is left of the batch (the log phase) and frees the C request; it returns
// the log phase's failure.
func (f *frame) finish() error {
	if f.c.request == nil {
		return nil
	}
	if Status(C.lego_finish(f.ref())) == StatusError {
		return f.takeError(CodeRuntime)
	}
	return nil
}

// ID returns the request's engine-wide id, as in log records.
func (r *Request) ID() uint64 { return uint64(r.f.c.id) }

// Run runs one phase's script. It returns StatusOK (go on), StatusDone (the request is
// answered: send the response), or StatusError with an *Error carrying the Lua message,
// chunk, line and traceback. (StatusYield, with an error, means the script waits, which needs
// the async C ABI: not resumable yet.)
func (r *Request) Run(phase Phase, script *Script) (Status, error) {
	if r.f == nil {
		return StatusError, ErrClosed
	}
	if err := script.acquire(); err != nil {
		return StatusError, err
	}
	defer script.life.release()
	f := r.f
	f.plan().add(phase, script, false)
	f.c.answered = false
	return f.run()
}

// Response is what the scripts produced so far.
type Response struct {
	// Status is the status scripts set (ngx.status, ngx.exit, ngx.redirect, or 200 once output
	// started); 0 if none did.
	Status int
	// HeadersSent says whether scripts produced output (nginx would have sent the headers).
	HeadersSent bool
	// Exited says whether a script called ngx.exit or ngx.redirect, with ExitCode its argument.
	Exited   bool
	ExitCode int64
	// Headers are the headers scripts set, in order (a redirect's Location among them).
	Headers []Header
	// Body is what ngx.say and ngx.print wrote.
	Body []byte
}

// Header returns the first value of the named header (case-insensitive), or "".
func (resp *Response) Header(name string) string {
	for _, h := range resp.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Response copies out what the scripts produced, as read after the last Run (no call into C).
func (r *Request) Response() Response {
	if r.f == nil {
		return Response{}
	}
	f := r.f
	view := &f.c.view
	resp := Response{
		Status:      f.status(),
		HeadersSent: bool(view.headers_sent),
		Exited:      bool(view.exited),
		ExitCode:    int64(view.exit_code),
		Body:        append([]byte(nil), f.body()...),
	}
	for _, h := range f.headers() {
		resp.Headers = append(resp.Headers, Header{Name: goString(h.name), Value: goString(h.value)})
	}
	return resp
}

// Close frees the request. It is idempotent; the Request must not be in use by another
// goroutine.
func (r *Request) Close() error {
	if r.f == nil {
		return nil
	}
	r.cleanup.Stop()
	f := r.f
	r.f = nil
	f.plan()
	f.finish()
	e := f.engine
	f.recycle()
	e.life.release()
	return nil
}
