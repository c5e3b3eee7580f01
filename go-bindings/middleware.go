package luaengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"unsafe"
)

// MiddlewareConfig configures a net/http [Middleware].
type MiddlewareConfig struct {
	// Phases are the scripts to run. With a Content script Lua answers every request that
	// rewrite and access let through; without one the wrapped handler does.
	Phases Phases
	// DefaultType is the Content-Type of Lua answers that set none and have no output (an
	// ngx.exit error page; output gets the engine's Config.DefaultType); "" means "text/plain".
	DefaultType string
	// MaxBodySize > 0 bounds the request body, like nginx's client_max_body_size: a larger
	// Content-Length is answered 413 before any phase, and reading more than that — by a
	// script's ngx.req.read_body() (which then fails its phase with 413) or by the wrapped
	// handler — fails. 0 means no limit.
	MaxBodySize int64
	// NeedRequestBody reads the body before rewrite, like lua_need_request_body on, so
	// ngx.req.get_body_data() sees it without ngx.req.read_body(). Otherwise the body is read
	// when a script calls ngx.req.read_body(), as nginx does; either way the wrapped handler
	// still reads it from r.Body.
	NeedRequestBody bool
	// LocationJump receives the request when rewrite ends with ngx.req.set_uri(uri, true), with
	// the changes rewrite made (typically the router, which matches the new URI again); this
	// middleware's access, content and log phases do not run then. nil goes on here, as if
	// the URI had been changed without the jump. More than 10 jumps answer 500.
	LocationJump http.Handler
	// ErrorLog receives phase failures and errors the middleware cannot answer with; nil logs
	// them with the standard log package.
	ErrorLog func(r *http.Request, err error)
}

// Middleware runs nginx-style Lua phases around a net/http handler:
//
//	rewrite → access → content (Lua answers) or the wrapped handler
//	       → header_filter and body_filter on the response → log once it is sent
//
// It fails closed: when rewrite or access fails (a Lua error, the instruction budget, the
// memory cap) the client gets 500 and the wrapped handler never runs. The wrapped handler sees
// the request as rewrite and access left it (method, URI, query, headers, the body read or
// replaced). A
// script that waits parks the request's goroutine, not an OS thread; when the request's
// context ends meanwhile the waiting phase is cancelled (503) and the log phase still runs, as
// nginx's lua_check_client_abort does. A Middleware is safe for concurrent use.
type Middleware struct {
	p           *Pipeline
	defaultType []string
	maxBody     int64
	needBody    bool
	jump        http.Handler
	errorLog    func(*http.Request, error)
}

// NewMiddleware makes a middleware running config.Phases on e.
func NewMiddleware(e *Engine, config MiddlewareConfig) (*Middleware, error) {
	p, err := e.NewPipeline(config.Phases)
	if err != nil {
		return nil, err
	}
	m := &Middleware{
		p: p, maxBody: config.MaxBodySize, needBody: config.NeedRequestBody, jump: config.LocationJump,
		errorLog: config.ErrorLog,
	}
	defaultType := config.DefaultType
	if defaultType == "" {
		defaultType = "text/plain"
	}
	// Shared by every answer; the capacity keeps an Add by another layer from writing into it.
	m.defaultType = []string{defaultType}[:1:1]
	if m.errorLog == nil {
		m.errorLog = logError
	}
	return m, nil
}

// Close stops the middleware: requests already inside finish normally, later ones get 503.
func (m *Middleware) Close() error { return m.p.Close() }

// Wrap returns next with the phases around it; its signature is the usual
// func(http.Handler) http.Handler.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		if m.maxBody > 0 {
			if r.ContentLength > m.maxBody {
				m.fail(w, r, http.StatusRequestEntityTooLarge, &http.MaxBytesError{Limit: m.maxBody})
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, m.maxBody)
		}
		if m.needBody {
			var err error
			if body, err = readBody(r); err != nil {
				m.fail(w, r, failureStatus(err), err)
				return
			}
		}
	}
	x, err := m.p.BeginHTTP(r, body)
	if err != nil {
		m.fail(w, r, failureStatus(err), err)
		return
	}
	defer m.finish(x, r)
	if x.LocationJump() {
		if m.jump != nil {
			m.locationJump(w, requestSeenByNext(x, r))
			return
		}
		x.Continue() //nolint:errcheck // in x.Err()
	}
	switch {
	case x.Err() != nil:
		m.fail(w, r, failureStatus(x.Err()), x.Err())
	case x.Answered():
		m.writeAnswer(w, x)
	default:
		m.applyHeaders(w.Header(), x)
		r = requestSeenByNext(x, r)
		if !m.p.HasFilters() && !m.p.HasLog() {
			next.ServeHTTP(w, r)
			return
		}
		fw := &filterWriter{w: w, x: x, m: m, r: r}
		next.ServeHTTP(fw, r)
		fw.end()
	}
}

// failureStatus is the status to answer a failure with: 413 for a body over MaxBodySize, 503
// for a closed middleware or a request whose context ended while a script waited, else 500.
func failureStatus(err error) int {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// jumpsKey is the context key of how many location jumps a request made.
type jumpsKey struct{}

// maxJumps is nginx's limit on rewrite cycles.
const maxJumps = 10

func (m *Middleware) locationJump(w http.ResponseWriter, r *http.Request) {
	jumps, _ := r.Context().Value(jumpsKey{}).(int)
	if jumps >= maxJumps {
		m.fail(w, r, http.StatusInternalServerError,
			fmt.Errorf("luaengine: rewrite or internal redirection cycle while processing %q", r.URL.Path))
		return
	}
	m.jump.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), jumpsKey{}, jumps+1)))
}

// requestSeenByNext returns the request as rewrite and access left it: r itself when they
// changed nothing (the common case, which costs a comparison), else a shallow copy with the
// new method, URL and headers (Host from the Host header), and the scripts' body when they
// replaced it. A body a script only read is already back in r.Body.
func requestSeenByNext(x *Exchange, r *http.Request) *http.Request {
	changes := x.Changes()
	if changes == 0 {
		return r
	}
	r = r.WithContext(r.Context())
	if changes&ChangedMethod != 0 {
		r.Method = string(x.Method())
	}
	if changes&(ChangedPath|ChangedQuery) != 0 {
		u := *r.URL
		u.Path, u.RawPath, u.RawQuery = string(x.Path()), "", string(x.Query())
		r.URL = &u
	}
	if changes&ChangedHeaders != 0 {
		n := x.NumRequestHeaders()
		h := make(http.Header, n)
		r.Host = ""
		for i := range n {
			name, value := x.RequestHeader(i)
			key := headerKey(name)
			if key == "Host" {
				r.Host = string(value)
				continue
			}
			h[key] = append(h[key], string(value))
		}
		r.Header = h
	}
	if changes&ChangedBody != 0 {
		setBody(r, x.RequestBody(), changes&ChangedHeaders != 0)
	}
	return r
}

// setBody gives r (a copy of the caller's request) the body scripts wrote, copied out of engine
// memory, which the filters reuse while the handler runs. Content-Length follows it, as the
// scripts set it; the header map is copied first unless it is r's own already.
func setBody(r *http.Request, body []byte, ownHeader bool) {
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(bytes.Clone(body)))
	}
	if !ownHeader {
		r.Header = r.Header.Clone()
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

func (m *Middleware) finish(x *Exchange, r *http.Request) {
	if err := x.Finish(); err != nil {
		m.errorLog(r, err)
	}
}

// writeAnswer sends Lua's response.
func (m *Middleware) writeAnswer(w http.ResponseWriter, x *Exchange) {
	h := w.Header()
	if !m.applyHeaders(h, x) {
		h["Content-Type"] = m.defaultType
	}
	w.WriteHeader(x.AnswerStatus())
	if body := x.AnswerBody(); len(body) > 0 {
		w.Write(body) //nolint:errcheck // the client went away; log still runs
	}
}

// applyHeaders sets the response headers scripts set (replacing the handler's of the same name;
// repeated names add values) and reports whether Content-Type was among them.
func (m *Middleware) applyHeaders(h http.Header, x *Exchange) (hasType bool) {
	n := x.NumHeaders()
	for i := 0; i < n; i++ {
		name, value := x.Header(i)
		key := headerKey(name)
		switch {
		case x.HeaderRepeated(i):
			h[key] = append(h[key], string(value))
		case key == "Content-Type" && string(value) == m.defaultType[0]:
			// The engine's default_type, usually: the shared slice spares two allocations.
			h[key] = m.defaultType
		default:
			h[key] = []string{string(value)}
		}
		hasType = hasType || key == "Content-Type"
	}
	return hasType
}

// commonHeaders are response header names, canonical, that scripts often set: headerKey finds
// them without allocating.
var commonHeaders = [...]string{
	"Content-Type", "Content-Length", "Location", "Cache-Control", "Set-Cookie", "Content-Encoding",
	"Content-Disposition", "Last-Modified", "Etag", "Expires", "Vary", "X-Frame-Options",
	"X-Content-Type-Options",
}

// headerKey is the canonical form of a header name, as http.Header keys it.
func headerKey(name []byte) string {
	for _, key := range commonHeaders {
		if len(key) == len(name) && strings.EqualFold(key, unsafe.String(unsafe.SliceData(name), len(name))) {
			return key
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// fail answers with an error status and reports err.
func (m *Middleware) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	m.errorLog(r, err)
	h := w.Header()
	for key := range h {
		delete(h, key)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(ErrorPage(status)) //nolint:errcheck
}

func logError(r *http.Request, err error) {
	var e *Error
	if errors.As(err, &e) && e.Phase != NoPhase {
		log.Printf("luaengine: %s %s: %s phase: %v", r.Method, r.URL.Path, e.Phase, err)
		return
	}
	log.Printf("luaengine: %s %s: %v", r.Method, r.URL.Path, err)
}

// readBody reads the whole body up front and puts it back for the wrapped handler.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("luaengine: reading the request body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// errFiltered is what the wrapped handler's writes return once a filter failed.
var errFiltered = errors.New("luaengine: the response was stopped by a filter phase failure")

// filterWriter hands the wrapped handler's response to the engine when its headers go out —
// for header_filter to change, and for ngx.status in log — and runs body_filter on each chunk it
// writes (and once more at the end), as nginx's filters see an upstream response.
type filterWriter struct {
	w           http.ResponseWriter
	x           *Exchange
	m           *Middleware
	r           *http.Request
	wroteHeader bool
	failed      bool // a filter failed: nothing more goes out
	ended       bool // body_filter ended the body (ngx.arg[2] = true)
}

func (fw *filterWriter) Header() http.Header { return fw.w.Header() }

func (fw *filterWriter) WriteHeader(code int) {
	if fw.wroteHeader {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		fw.w.WriteHeader(code) // informational: the real headers come later
		return
	}
	fw.wroteHeader = true
	h := fw.w.Header()
	if fw.x.p.phases.BodyFilter != nil {
		// The filter may change the body's length: net/http frames it instead.
		h.Del("Content-Length")
	}
	if err := fw.x.HeaderFilter(code, headerPairs(h)); err != nil {
		// Fail closed: the handler's response does not go out.
		fw.failed = true
		fw.m.fail(fw.w, fw.r, http.StatusInternalServerError, err)
		return
	}
	if fw.x.p.phases.HeaderFilter != nil {
		replaceHeaders(h, fw.x)
		code = validStatus(fw.x.Status())
	}
	fw.w.WriteHeader(code)
}

// headerPairs lists h's headers, one pair per value.
func headerPairs(h http.Header) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for name, values := range h {
			for _, v := range values {
				if !yield(name, v) {
					return
				}
			}
		}
	}
}

// replaceHeaders makes h the response headers as header_filter left them.
func replaceHeaders(h http.Header, x *Exchange) {
	clear(h)
	for i, n := 0, x.NumHeaders(); i < n; i++ {
		name, value := x.Header(i)
		key := headerKey(name)
		h[key] = append(h[key], string(value))
	}
}

func (fw *filterWriter) Write(p []byte) (int, error) {
	if !fw.wroteHeader {
		fw.WriteHeader(http.StatusOK)
	}
	if fw.failed {
		return 0, errFiltered
	}
	if fw.ended {
		return len(p), nil // nginx drops what comes after the filter's last chunk
	}
	out, last, err := fw.x.BodyFilter(p, false)
	if err != nil {
		fw.stop(err)
		return 0, errFiltered
	}
	fw.ended = last
	if len(out) > 0 {
		if _, err := fw.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// stop ends the response after a body_filter failure: the headers are gone, so the body is cut.
func (fw *filterWriter) stop(err error) {
	fw.failed = true
	fw.m.errorLog(fw.r, err)
}

// Flush sends what was written so far.
func (fw *filterWriter) Flush() {
	if !fw.wroteHeader {
		fw.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(fw.w).Flush() //nolint:errcheck // not every writer flushes
}

// Unwrap gives http.ResponseController the underlying writer.
func (fw *filterWriter) Unwrap() http.ResponseWriter { return fw.w }

// end runs after the wrapped handler returns: headers it never wrote go out now, and
// body_filter sees the end of the body.
func (fw *filterWriter) end() {
	if !fw.wroteHeader {
		fw.WriteHeader(http.StatusOK)
	}
	if fw.failed || fw.ended {
		return
	}
	out, _, err := fw.x.BodyFilter(nil, true)
	if err != nil {
		fw.stop(err)
		return
	}
	if len(out) > 0 {
		fw.w.Write(out) //nolint:errcheck
	}
}
