package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"context"
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
	f.bodyReader = init.BodyReader
	return e.newRequest(f)
}

// NewHTTPRequest creates a request from r: method, path, query, protocol, scheme, client
// address and headers (Host included). Pass the body already read as body; with nil, a
// script's ngx.req.read_body() reads r.Body (bound it with http.MaxBytesReader) and puts it
// back for whoever reads it next.
func (e *Engine) NewHTTPRequest(r *http.Request, body []byte) (*Request, error) {
	if err := e.life.acquire(); err != nil {
		return nil, err
	}
	f := writeHTTP(r, body)
	f.httpReq = r
	return e.newRequest(f)
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

// start creates the C request from the snapshot and runs the planned batch (waiting out its
// yields), holding the caller's engine reference in f.engine. It returns the batch's status and
// failure; when the request could not be created, f.c.request is nil.
func (f *frame) start(e *Engine) (Status, error) {
	f.engine = e
	f.c.engine = e.state.ptr
	status := Status(C.lego_start(f.ref(), C.LE_WORKER_ANY))
	if f.c.request == nil {
		return StatusError, f.takeError(CodeInvalidArgument)
	}
	return f.settle(status)
}

// run runs the planned batch on the request, waiting out its yields.
func (f *frame) run() (Status, error) {
	if f.c.request == nil {
		return StatusError, errCancelled
	}
	return f.settle(Status(C.lego_run(f.ref())))
}

// finish runs what is left of the batch (the log phase) and frees the C request; it returns
// the log phase's failure.
func (f *frame) finish() error {
	if f.ops != nil {
		f.ops.close()
	}
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
// chunk, line and traceback. A script that waits (ngx.sleep, an async host function,
// ngx.req.read_body) parks the calling goroutine, not an OS thread, until it goes on.
func (r *Request) Run(phase Phase, script *Script) (Status, error) {
	return r.RunContext(context.Background(), phase, script)
}

// RunContext is Run with a context: when ctx is done while the script waits, the phase is
// cancelled where it waits (as nginx ends a handler whose client went away) and RunContext
// returns an *Error wrapping ctx.Err(). Response keeps what the phase produced before; later
// phases run as usual (the log phase, typically), then Close the request.
func (r *Request) RunContext(ctx context.Context, phase Phase, script *Script) (Status, error) {
	if r.f == nil {
		return StatusError, ErrClosed
	}
	if err := script.acquire(); err != nil {
		return StatusError, err
	}
	defer script.life.release()
	f := r.f
	f.ctx = ctx
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
