package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
)

// Phases holds the script of each request phase; nil phases are skipped.
type Phases struct {
	Rewrite, Access, Content, HeaderFilter, BodyFilter, Log *Script
}

// Pipeline runs requests through a fixed set of phase scripts the way nginx does, crossing into
// C as little as possible: [Pipeline.Begin] creates the request and runs rewrite, access and
// content (plus the filters when Lua answered) in one call, and [Exchange.Finish] runs log and
// frees the request in another. [Middleware] and the fasthttp adapter are built on it. A
// Pipeline is safe for concurrent use.
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
	p   *Pipeline
	f   *frame
	err error
}

var exchangePool = sync.Pool{New: func() any { return new(Exchange) }}

// Begin creates the request from init and runs rewrite, access and content; when Lua answers
// (content ran, ngx.exit, ngx.redirect) it runs header_filter and body_filter on that answer
// too, all in one call into C. Then:
//   - Err() != nil: a phase failed (fail closed: answer 500, never run the wrapped handler);
//   - Answered(): send Lua's response (Status, Header, Body);
//   - otherwise: run the wrapped handler, with HeaderFilter and BodyFilter on its response.
//
// Either way, call Finish after the response is sent.
func (p *Pipeline) Begin(init RequestInit) (*Exchange, error) {
	x, err := p.exchange()
	if err != nil {
		return nil, err
	}
	x.f = getFrame(init.size())
	init.write(x.f)
	return x.start()
}

// BeginHTTP is Begin for a net/http request (see Engine.NewHTTPRequest for what is taken from
// r and body).
func (p *Pipeline) BeginHTTP(r *http.Request, body []byte) (*Exchange, error) {
	x, err := p.exchange()
	if err != nil {
		return nil, err
	}
	x.f = writeHTTP(r, body)
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
	plan := x.f.plan()
	plan.add(PhaseRewrite, s.Rewrite, false)
	plan.add(PhaseAccess, s.Access, false)
	plan.add(PhaseContent, s.Content, false)
	plan.add(PhaseHeaderFilter, s.HeaderFilter, true)
	plan.add(PhaseBodyFilter, s.BodyFilter, true)
	_, err := x.f.start(x.p.engine)
	if x.f.c.request == nil {
		x.recycle()
		return nil, err
	}
	x.err = err
	return x, nil
}

// Err returns the failure of rewrite, access or content (an *Error naming the phase), or nil.
func (x *Exchange) Err() error { return x.err }

// Answered reports whether Lua produced the response (content ran, or a phase called ngx.exit
// with a status or ngx.redirect): send it instead of running the wrapped handler.
func (x *Exchange) Answered() bool { return x.err == nil && bool(x.f.c.answered) }

// HasContent reports whether the pipeline has a content script (then Lua answers, unless a
// phase failed).
func (p *Pipeline) HasContent() bool { return p.phases.Content != nil }

// Status returns the status scripts set, or 0.
func (x *Exchange) Status() int { return x.f.status() }

// ExitCode returns the argument of the last ngx.exit (or the status of ngx.redirect), or 0.
func (x *Exchange) ExitCode() int64 { return int64(x.f.c.view.exit_code) }

// HeadersSent reports whether scripts produced output.
func (x *Exchange) HeadersSent() bool { return bool(x.f.c.view.headers_sent) }

// NumHeaders returns how many response headers scripts set.
func (x *Exchange) NumHeaders() int { return int(x.f.c.view.n_headers) }

// Header returns the i-th response header scripts set, in order; names may repeat.
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
// short error page for ngx.exit(status ≥ 400) without output.
func (x *Exchange) AnswerBody() []byte {
	body := x.Body()
	if len(body) == 0 && !x.HeadersSent() {
		if code := x.ExitCode(); code >= 400 && code <= 999 {
			return ErrorPage(int(code))
		}
	}
	return body
}

func validStatus(status int) int {
	if status < 100 || status > 999 {
		return http.StatusInternalServerError
	}
	return status
}

// ErrorPage is the body of an error answer without one, like nginx's error pages:
// "403 Forbidden\n".
func ErrorPage(status int) []byte {
	return []byte(strconv.Itoa(status) + " " + http.StatusText(status) + "\n")
}

// HeaderFilter runs the header_filter script (if any) before the wrapped handler's response
// headers go out. Afterwards Status and Header report what the scripts set: apply them to the
// response. An error means the response must not be sent as it is (answer 500 if possible).
func (x *Exchange) HeaderFilter() error {
	return x.run(PhaseHeaderFilter, x.p.phases.HeaderFilter)
}

// BodyFilter runs the body_filter script (if any) on one chunk of the wrapped handler's body;
// eof marks the last call, made once the handler is done (chunk may then be empty). It returns
// the chunk to send. (The engine does not expose ngx.arg yet, so the chunk goes out unchanged.)
func (x *Exchange) BodyFilter(chunk []byte, eof bool) ([]byte, error) {
	return chunk, x.run(PhaseBodyFilter, x.p.phases.BodyFilter)
}

func (x *Exchange) run(phase Phase, s *Script) error {
	if s == nil {
		return nil
	}
	x.f.plan().add(phase, s, false)
	x.f.c.answered = false
	_, err := x.f.run()
	return err
}

// Finish runs the log script (if any) after the response is sent, frees the request and ends
// the exchange; x must not be used afterwards. It returns the log phase's failure.
func (x *Exchange) Finish() error {
	x.f.plan().add(PhaseLog, x.p.phases.Log, false)
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
