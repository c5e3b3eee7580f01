package luaengine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/textproto"
)

// MiddlewareConfig configures a net/http [Middleware].
type MiddlewareConfig struct {
	// Phases are the scripts to run. With a Content script Lua answers every request that
	// rewrite and access let through; without one the wrapped handler does.
	Phases Phases
	// DefaultType is the Content-Type of Lua answers that set none, like nginx's default_type;
	// "" means "text/plain".
	DefaultType string
	// MaxBodySize > 0 reads the request body (up to that many bytes, else 413) before rewrite,
	// so ngx.req.get_body_data() sees it; the wrapped handler still reads it from r.Body. With 0
	// the body is left to the wrapped handler and scripts see none.
	MaxBodySize int64
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
// memory cap) the client gets 500 and the wrapped handler never runs. A Middleware is safe for
// concurrent use.
type Middleware struct {
	p           *Pipeline
	defaultType []string
	maxBody     int64
	errorLog    func(*http.Request, error)
}

// NewMiddleware makes a middleware running config.Phases on e.
func NewMiddleware(e *Engine, config MiddlewareConfig) (*Middleware, error) {
	p, err := e.NewPipeline(config.Phases)
	if err != nil {
		return nil, err
	}
	m := &Middleware{p: p, maxBody: config.MaxBodySize, errorLog: config.ErrorLog}
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
	if m.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		var err error
		if body, err = readBody(r, m.maxBody); err != nil {
			m.fail(w, r, http.StatusRequestEntityTooLarge, err)
			return
		}
	}
	x, err := m.p.BeginHTTP(r, body)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrClosed) {
			status = http.StatusServiceUnavailable
		}
		m.fail(w, r, status, err)
		return
	}
	defer m.finish(x, r)
	switch {
	case x.Err() != nil:
		m.fail(w, r, http.StatusInternalServerError, x.Err())
	case x.Answered():
		m.writeAnswer(w, x)
	default:
		applyHeaders(w.Header(), x)
		r = requestSeenByNext(x, r)
		if m.p.phases.HeaderFilter == nil && m.p.phases.BodyFilter == nil {
			next.ServeHTTP(w, r)
			return
		}
		fw := &filterWriter{w: w, x: x, m: m, r: r}
		next.ServeHTTP(fw, r)
		fw.end()
	}
}

// requestSeenByNext returns the request the wrapped handler sees. In nginx, rewrite and access
// may change it through ngx.req (set_uri, set_uri_args, set_header, clear_header); the C ABI
// cannot read those changes back yet, so r goes through unchanged. This is the one place to
// apply them once it can.
func requestSeenByNext(_ *Exchange, r *http.Request) *http.Request { return r }

func (m *Middleware) finish(x *Exchange, r *http.Request) {
	if err := x.Finish(); err != nil {
		m.errorLog(r, err)
	}
}

// writeAnswer sends Lua's response.
func (m *Middleware) writeAnswer(w http.ResponseWriter, x *Exchange) {
	h := w.Header()
	if !applyHeaders(h, x) {
		h["Content-Type"] = m.defaultType
	}
	w.WriteHeader(x.AnswerStatus())
	if body := x.AnswerBody(); len(body) > 0 {
		w.Write(body) //nolint:errcheck // the client went away; log still runs
	}
}

// applyHeaders sets the response headers scripts set (replacing the handler's of the same name;
// repeated names add values) and reports whether Content-Type was among them.
func applyHeaders(h http.Header, x *Exchange) (hasType bool) {
	n := x.NumHeaders()
	for i := 0; i < n; i++ {
		name, value := x.Header(i)
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		if key == "Content-Type" {
			hasType = true
		}
		if x.HeaderRepeated(i) {
			h[key] = append(h[key], string(value))
		} else {
			h[key] = []string{string(value)}
		}
	}
	return hasType
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

// readBody reads the whole body, refusing more than limit bytes, and puts it back for the
// wrapped handler.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("luaengine: reading the request body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("luaengine: request body larger than %d bytes", limit)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// errFiltered is what the wrapped handler's writes return once a filter failed.
var errFiltered = errors.New("luaengine: the response was stopped by a filter phase failure")

// filterWriter runs header_filter when the wrapped handler's headers go out and body_filter on
// each chunk it writes (and once more at the end), as nginx's filters see an upstream response.
type filterWriter struct {
	w           http.ResponseWriter
	x           *Exchange
	m           *Middleware
	r           *http.Request
	wroteHeader bool
	failed      bool
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
	before := fw.x.Status()
	if err := fw.x.HeaderFilter(); err != nil {
		// Fail closed: the handler's response does not go out.
		fw.failed = true
		fw.m.fail(fw.w, fw.r, http.StatusInternalServerError, err)
		return
	}
	applyHeaders(fw.w.Header(), fw.x)
	if status := fw.x.Status(); status != 0 && status != before {
		code = validStatus(status) // header_filter set ngx.status
	}
	fw.w.WriteHeader(code)
}

func (fw *filterWriter) Write(p []byte) (int, error) {
	if !fw.wroteHeader {
		fw.WriteHeader(http.StatusOK)
	}
	if fw.failed {
		return 0, errFiltered
	}
	out, err := fw.x.BodyFilter(p, false)
	if err != nil {
		fw.stop(err)
		return 0, errFiltered
	}
	if _, err := fw.w.Write(out); err != nil {
		return 0, err
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
	if fw.failed {
		return
	}
	out, err := fw.x.BodyFilter(nil, true)
	if err != nil {
		fw.stop(err)
		return
	}
	if len(out) > 0 {
		fw.w.Write(out) //nolint:errcheck
	}
}
