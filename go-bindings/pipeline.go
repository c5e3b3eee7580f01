package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"bytes"
	"context"
	"iter"
	"net/http"
	"strconv"
	"sync"
	"unsafe"
)

// Phases holds the script of each request phase; nil phases are skipped.
type Phases struct {
	Rewrite, Access, Content, HeaderFilter, BodyFilter, Log *Script
}

// Pipeline runs requests through a fixed set of phase scripts the way nginx does, crossing into
// C as little as possible: [Pipeline.Begin] creates the request and runs rewrite, access and
// content (plus the filters when Lua answered) in one call — more only when a script waits —
// and [Exchange.Finish] runs log and frees the request in another. [Middleware] and the
// fasthttp adapter are built on it. A Pipeline is safe for concurrent use.
type Pipeline struct {
	life   lifetime
	engine *Engine
	phases Phases
}

// NewPipeline makes a pipeline of the given scripts. It keeps the engine and the scripts alive
// until it is closed, so they may be closed before it.
func (e *Engine) NewPipeline(phases Phases) (*Pipeline, error) {
	if err := e.life.acquire(); err != nil {
		return nil, err
	}
	p := &Pipeline{engine: e, phases: phases}
	scripts := p.scripts()
	for i, s := range scripts {
		if s == nil {
			continue
		}
		if err := s.acquire(); err != nil {
			for _, acquired := range scripts[:i] {
				if acquired != nil {
					acquired.life.release()
				}
			}
			e.life.release()
			return nil, err
		}
	}
	p.life.init(p.free)
	return p, nil
}

func (p *Pipeline) scripts() [6]*Script {
	s := &p.phases
	return [6]*Script{s.Rewrite, s.Access, s.Content, s.HeaderFilter, s.BodyFilter, s.Log}
}

// Phases returns the pipeline's scripts.
func (p *Pipeline) Phases() Phases { return p.phases }

// Close stops the pipeline from beginning new exchanges (Begin fails with ErrClosed); the
// exchanges in flight finish normally, and the scripts and engine are released after the last.
func (p *Pipeline) Close() error {
	p.life.close()
	return nil
}

func (p *Pipeline) free() {
	for _, s := range p.scripts() {
		if s != nil {
			s.life.release()
		}
	}
	p.engine.life.release()
}

// Exchange is one request going through a Pipeline. Use it from one goroutine, and end it with
// Finish. The byte slices it returns point into engine memory valid until the next call on it.
type Exchange struct {
	p       *Pipeline
	f       *frame
	err     error
	changes Change
}

var exchangePool = sync.Pool{New: func() any { return new(Exchange) }}

// Begin creates the request from init and runs rewrite, access and content; when Lua answers
// (content ran, ngx.exit, ngx.redirect) it runs header_filter and body_filter on that answer
// too, all in one call into C unless a script waits (ngx.sleep, an async host function,
// ngx.req.read_body) or body_filter gets an error page (see AnswerBody), which takes a second
// call. A waiting goroutine parks until it can go on, and when ctx is done first the waiting
// phase is cancelled and Err reports it (Finish still runs log, as nginx does with
// lua_check_client_abort). Then:
//   - Err() != nil: a phase failed (fail closed: answer 500, never run the wrapped handler);
//   - LocationJump(): rewrite called ngx.req.set_uri(uri, true): route the request again, or
//     Continue here;
//   - Answered(): send Lua's response (AnswerStatus, Header, AnswerBody);
//   - otherwise: run the wrapped handler on the request as scripts left it (Changes), with
//     HeaderFilter and BodyFilter on its response.
//
// Either way, call Finish after the response is sent.
func (p *Pipeline) Begin(ctx context.Context, init RequestInit) (*Exchange, error) {
	x, err := p.exchange()
	if err != nil {
		return nil, err
	}
	x.f = getFrame(init.size())
	init.write(x.f)
	x.f.ctx = ctx
	x.f.bodyReader = init.BodyReader
	return x.start()
}

// BeginHTTP is Begin for a net/http request, with r.Context() (see Engine.NewHTTPRequest for
// what is taken from r and body).
func (p *Pipeline) BeginHTTP(r *http.Request, body []byte) (*Exchange, error) {
	x, err := p.exchange()
	if err != nil {
		return nil, err
	}
	x.f = writeHTTP(r, body)
	x.f.ctx = r.Context()
	x.f.httpReq = r
	return x.start()
}

func (p *Pipeline) exchange() (*Exchange, error) {
	if err := p.life.acquire(); err != nil {
		return nil, err
	}
	// The pipeline's own engine reference keeps the engine alive; a closed engine takes no
	// new requests all the same.
	if p.engine.life.closed.Load() {
		p.life.release()
		return nil, ErrClosed
	}
	x := exchangePool.Get().(*Exchange)
	x.p = p
	return x, nil
}

func (x *Exchange) start() (*Exchange, error) {
	s := &x.p.phases
	f := x.f
	plan := f.plan()
	plan.add(PhaseRewrite, s.Rewrite, false)
	plan.add(PhaseAccess, s.Access, false)
	plan.add(PhaseContent, s.Content, false)
	plan.add(PhaseHeaderFilter, s.HeaderFilter, true)
	plan.add(PhaseBodyFilter, s.BodyFilter, true)
	// Only rewrite and access can change the request the wrapped handler sees.
	f.c.inspect = C.bool(s.Rewrite != nil || s.Access != nil)
	_, err := f.start(x.p.engine)
	if f.c.id == 0 { // the request could not be created
		x.recycle()
		return nil, err
	}
	x.settle(err)
	return x, nil
}

// settle records how a batch ended. An error page for Lua's answer goes through body_filter
// here, as nginx's special response goes through its filters (the batch skipped the step).
func (x *Exchange) settle(err error) {
	x.err = err
	x.changes = x.f.changes()
	if err == nil && x.f.c.error_page && x.p.phases.BodyFilter != nil {
		_, _, x.err = x.BodyFilter(x.errorPage(), true)
	}
}

// Err returns the failure of rewrite, access or content (an *Error naming the phase), or nil.
// A request whose context was cancelled while a script waited fails with an *Error wrapping
// the context's error; one whose ngx.req.read_body() could not read the body, with an *Error
// wrapping the read error (an *http.MaxBytesError when the body was too large).
func (x *Exchange) Err() error { return x.err }

// Answered reports whether Lua produced the response (content ran, or a phase called ngx.exit
// with a status or ngx.redirect): send it instead of running the wrapped handler.
func (x *Exchange) Answered() bool { return x.err == nil && bool(x.f.c.answered) }

// LocationJump reports whether rewrite ended with ngx.req.set_uri(uri, true): nginx would match
// its locations again against the new URI (Path) and run that location's phases. Either route
// the request again — Finish this exchange, whose log phase then does not run, and begin one
// on the new location's pipeline with the request as Changes says — or Continue here.
func (x *Exchange) LocationJump() bool { return x.err == nil && bool(x.f.c.jumped) }

// Continue goes on after a location jump in this pipeline: access, then content or the
// wrapped handler, as if the URI had been changed without a jump. Afterwards, check Err,
// Answered and Changes as after Begin.
func (x *Exchange) Continue() error {
	if !x.LocationJump() {
		return nil
	}
	x.f.c.jumped = false
	_, err := x.f.run()
	x.settle(err)
	return x.err
}

// Change says what rewrite and access changed in the request, compared with the snapshot it
// started from.
type Change uint8

const (
	ChangedMethod  Change = 1 << iota // ngx.req.set_method
	ChangedPath                       // ngx.req.set_uri
	ChangedQuery                      // ngx.req.set_uri_args, ngx.var.args
	ChangedHeaders                    // ngx.req.set_header, clear_header
	ChangedBody                       // ngx.req.set_body_data, init_body/append_body/finish_body
)

// Changes reports what rewrite and access changed in the request (0 when the pipeline has
// neither). Method, Path, Query, RequestHeader and RequestBody then give the request as they
// left it: apply it before the wrapped handler runs. They are valid until HeaderFilter,
// BodyFilter or Finish.
func (x *Exchange) Changes() Change { return x.changes }

// Method returns the request method as scripts left it.
func (x *Exchange) Method() []byte { return cBytes(x.f.c.req_view.method) }

// Path returns the URI path ($uri) as scripts left it, decoded.
func (x *Exchange) Path() []byte { return cBytes(x.f.c.req_view.path) }

// Query returns the query string ($args) as scripts left it, without '?'.
func (x *Exchange) Query() []byte { return cBytes(x.f.c.req_view.query) }

// RequestBody returns the request body as scripts left it, when Changes has ChangedBody (the
// scripts' body replaces the client's; the Content-Length header they set goes with it).
// Without ChangedBody the client's body is still the one, whether a script read it or not: it
// is not copied out, and RequestBody returns what the engine has of it, if anything.
func (x *Exchange) RequestBody() []byte {
	if !x.f.c.inspected {
		return nil
	}
	return cBytes(x.f.c.req_view.body)
}

// NumRequestHeaders returns how many request headers there are as scripts left them.
func (x *Exchange) NumRequestHeaders() int { return x.f.requestHeaders().len() }

// RequestHeader returns the i-th request header as scripts left them, in order (Host among
// them).
func (x *Exchange) RequestHeader(i int) (name, value []byte) { return x.f.requestHeaders().at(i) }

// NumVariables returns how many variables scripts set that the engine does not define
// (ngx.var.backend = "b1"), after rewrite and access.
func (x *Exchange) NumVariables() int { return x.f.variables().len() }

// Variable returns the i-th variable scripts set: its lowercased name and value.
func (x *Exchange) Variable(i int) (name, value []byte) { return x.f.variables().at(i) }

// HasContent reports whether the pipeline has a content script (then Lua answers, unless a
// phase failed).
func (p *Pipeline) HasContent() bool { return p.phases.Content != nil }

// Status returns the status scripts set, or 0.
func (x *Exchange) Status() int { return x.f.status() }

// ExitCode returns the argument of the last ngx.exit (or the status of ngx.redirect), or 0.
func (x *Exchange) ExitCode() int64 { return int64(x.f.c.view.exit_code) }

// HeadersSent reports whether scripts produced output.
func (x *Exchange) HeadersSent() bool { return bool(x.f.c.view.headers_sent) }

// NumHeaders returns how many response headers scripts set (after HeaderFilter: how many the
// response has).
func (x *Exchange) NumHeaders() int { return int(x.f.c.view.n_headers) }

// Header returns the i-th response header, in order; names may repeat.
func (x *Exchange) Header(i int) (name, value []byte) {
	h := &x.f.headers()[i]
	return cBytes(h.name), cBytes(h.value)
}

// Body returns what ngx.say and ngx.print wrote.
func (x *Exchange) Body() []byte { return x.f.body() }

// HeaderRepeated reports whether a header before the i-th has the same name (compared
// case-insensitively): the first of a name replaces the response's header, repeats add values.
func (x *Exchange) HeaderRepeated(i int) bool {
	name, _ := x.Header(i)
	for j := 0; j < i; j++ {
		if other, _ := x.Header(j); bytes.EqualFold(other, name) {
			return true
		}
	}
	return false
}

// AnswerStatus is the status to send for Lua's answer: the one scripts set, 200 if none did,
// 500 if it is not a valid HTTP status.
func (x *Exchange) AnswerStatus() int {
	status := x.Status()
	if status == 0 {
		return 200
	}
	return validStatus(status)
}

// AnswerBody is the body to send for Lua's answer: what the scripts wrote, or, like nginx, a
// short error page (ErrorPage) for ngx.exit(status ≥ 400) without output — both as body_filter
// left them.
func (x *Exchange) AnswerBody() []byte {
	switch {
	case !bool(x.f.c.error_page):
		return x.Body()
	case x.p.phases.BodyFilter != nil:
		return cBytes(x.f.c.chunk.data)
	}
	return x.errorPage()
}

// errorPage writes the error page for the exit code where the snapshot was, which the request
// has its own copy of by now: no allocation.
func (x *Exchange) errorPage() []byte { return appendErrorPage(x.f.data()[:0], int(x.ExitCode())) }

func validStatus(status int) int {
	if status < 100 || status > 999 {
		return http.StatusInternalServerError
	}
	return status
}

// ErrorPage is the body of an error answer without one, like nginx's error pages:
// "403 Forbidden\n".
func ErrorPage(status int) []byte { return appendErrorPage(nil, status) }

func appendErrorPage(dst []byte, status int) []byte {
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	return append(dst, '\n')
}

// HasFilters reports whether the pipeline has a header_filter or body_filter script.
func (p *Pipeline) HasFilters() bool {
	return p.phases.HeaderFilter != nil || p.phases.BodyFilter != nil
}

// HasLog reports whether the pipeline has a log script.
func (p *Pipeline) HasLog() bool { return p.phases.Log != nil }

// HeaderFilter hands the wrapped handler's response status and headers to the engine (what
// ngx.status and ngx.header show to header_filter, body_filter and log) and runs the
// header_filter script, if any, on them. Afterwards Status, NumHeaders and Header describe the
// response to send: every header, as the filter left them. An error means the response must
// not be sent as it is (answer 500 if possible). Call it once, before BodyFilter.
func (x *Exchange) HeaderFilter(status int, headers iter.Seq2[string, string]) error {
	if x.f.c.request == nil {
		return errCancelled
	}
	if status < 0 || status > 0xffff {
		status = http.StatusInternalServerError
	}
	f := x.f
	n, size := 0, 0
	for name, value := range headers {
		n++
		size += len(name) + len(value)
	}
	w := newScratch(f, n, size)
	defer w.free()
	for name, value := range headers {
		w.header(name, value)
	}
	var script *C.le_script
	if s := x.p.phases.HeaderFilter; s != nil {
		script = s.ptr
	}
	if Status(C.lego_header_filter(f.ref(), C.uint16_t(status), w.first(), C.size_t(len(w.list)), script)) == StatusError {
		return f.phaseError(PhaseHeaderFilter, CodeRuntime)
	}
	return nil
}

// BodyFilter runs the body_filter script on one chunk of the wrapped handler's body (ngx.arg[1])
// and returns the chunk to send, in engine memory valid until the next call on the exchange;
// eof marks the last call (ngx.arg[2]), made once the handler is done (chunk may then be
// empty). last reports that the body ends with this chunk: the filter set ngx.arg[2] (send
// nothing after it). Without a body_filter script the chunk comes back as it is.
func (x *Exchange) BodyFilter(chunk []byte, eof bool) (out []byte, last bool, err error) {
	s := x.p.phases.BodyFilter
	if s == nil {
		return chunk, eof, nil
	}
	f := x.f
	if f.c.request == nil {
		return nil, true, errCancelled
	}
	data := C.le_str{len: C.size_t(len(chunk))}
	if len(chunk) > 0 {
		data.ptr = (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(chunk)))
	}
	status := Status(C.lego_body_filter(f.ref(), s.ptr, data, C.bool(eof)))
	if status == StatusError {
		return nil, true, f.phaseError(PhaseBodyFilter, CodeRuntime)
	}
	return cBytes(f.c.chunk.data), bool(f.c.chunk.eof), nil
}

// Finish runs the log script (if any) after the response is sent, frees the request and ends
// the exchange; x must not be used afterwards. It returns the log phase's failure. After a
// location jump routed elsewhere (no Continue), log does not run here.
func (x *Exchange) Finish() error {
	plan := x.f.plan()
	if !x.LocationJump() {
		plan.add(PhaseLog, x.p.phases.Log, false)
	}
	err := x.f.finish()
	x.recycle()
	return err
}

func (x *Exchange) recycle() {
	p := x.p
	x.f.recycle()
	*x = Exchange{}
	exchangePool.Put(x)
	p.life.release()
}
