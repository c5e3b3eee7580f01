// Package fasthttpadapter runs luaengine's nginx-style Lua phases around a fasthttp handler.
// It is its own module so that net/http users of luaengine never download fasthttp.
//
// The middleware has the shape of lolly's middleware.Middleware (Name and Process), so it can
// replace a gopher-lua middleware in such a chain:
//
//	m, err := fasthttpadapter.New(engine, fasthttpadapter.Config{Phases: phases})
//	handler := m.Process(next)
package fasthttpadapter

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"log"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	luaengine "github.com/libluaengine/luaengine/go-bindings"
	"github.com/valyala/fasthttp"
)

// Config configures a Middleware.
type Config struct {
	// Phases are the scripts to run. With a Content script Lua answers every request that
	// rewrite and access let through; without one the wrapped handler does.
	Phases luaengine.Phases
	// Name is what Name returns; "" means "luaengine".
	Name string
	// DefaultType is the Content-Type of Lua answers that set none; "" means "text/plain".
	DefaultType string
	// ErrorLog receives phase failures; nil logs them with the standard log package.
	ErrorLog func(ctx *fasthttp.RequestCtx, err error)
}

// Middleware runs rewrite → access → content (Lua) or the wrapped handler → header_filter and
// body_filter on the response → log. fasthttp sends the response after the handler returns, so
// body_filter sees the whole body at once and log runs just before the response goes out.
// It fails closed: a failing rewrite, access or filter phase answers 500 and a failing rewrite
// or access never runs the wrapped handler. The wrapped handler sees the request as rewrite and
// access left it (method, URI, query, headers, a body they replaced); after
// ngx.req.set_uri(uri, true) in rewrite the request goes on here with its new URI. fasthttp has
// read the body already: scripts see it without ngx.req.read_body(). A script that waits parks
// the request's goroutine; when the server shuts down meanwhile the waiting phase is cancelled
// (503; log still runs). Safe for concurrent use.
type Middleware struct {
	p           *luaengine.Pipeline
	name        string
	defaultType []byte
	errorLog    func(*fasthttp.RequestCtx, error)
}

// New makes a middleware running config.Phases on e.
func New(e *luaengine.Engine, config Config) (*Middleware, error) {
	p, err := e.NewPipeline(config.Phases)
	if err != nil {
		return nil, err
	}
	m := &Middleware{p: p, name: config.Name, defaultType: []byte(config.DefaultType), errorLog: config.ErrorLog}
	if m.name == "" {
		m.name = "luaengine"
	}
	if len(m.defaultType) == 0 {
		m.defaultType = []byte("text/plain")
	}
	if m.errorLog == nil {
		m.errorLog = func(ctx *fasthttp.RequestCtx, err error) {
			log.Printf("luaengine: %s %s: %v", ctx.Method(), ctx.Path(), err)
		}
	}
	return m, nil
}

// Name returns the middleware's name.
func (m *Middleware) Name() string { return m.name }

// Close stops the middleware: requests already inside finish normally, later ones get 503.
func (m *Middleware) Close() error { return m.p.Close() }

// Process wraps next with the phases.
func (m *Middleware) Process(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) { m.serve(ctx, next) }
}

func (m *Middleware) serve(ctx *fasthttp.RequestCtx, next fasthttp.RequestHandler) {
	x, err := m.begin(ctx)
	if err != nil {
		status := fasthttp.StatusInternalServerError
		if errors.Is(err, luaengine.ErrClosed) {
			status = fasthttp.StatusServiceUnavailable
		}
		m.fail(ctx, status, err)
		return
	}
	if x.LocationJump() {
		x.Continue() //nolint:errcheck // in x.Err()
	}
	switch {
	case x.Err() != nil:
		status := fasthttp.StatusInternalServerError
		if errors.Is(x.Err(), context.Canceled) || errors.Is(x.Err(), context.DeadlineExceeded) {
			status = fasthttp.StatusServiceUnavailable
		}
		m.fail(ctx, status, x.Err())
	case x.Answered():
		m.writeAnswer(ctx, x)
	default:
		applyHeaders(&ctx.Response.Header, x)
		applyChanges(&ctx.Request, x)
		next(ctx)
		m.filter(ctx, x)
	}
	if err := x.Finish(); err != nil {
		m.errorLog(ctx, err)
	}
}

// snapshot is the per-request scratch for building a RequestInit without allocating.
type snapshot struct {
	headers []luaengine.Header
	addr    []byte
}

var snapshots = sync.Pool{New: func() any { return new(snapshot) }}

// begin snapshots the request: the strings point into fasthttp's buffers, which Begin copies.
func (m *Middleware) begin(ctx *fasthttp.RequestCtx) (*luaengine.Exchange, error) {
	s := snapshots.Get().(*snapshot)
	defer snapshots.Put(s)
	s.headers = s.headers[:0]
	for name, value := range ctx.Request.Header.All() {
		s.headers = append(s.headers, luaengine.Header{Name: b2s(name), Value: b2s(value)})
	}
	s.addr = appendRemoteIP(s.addr[:0], ctx.RemoteAddr())
	init := luaengine.RequestInit{
		Method:      b2s(ctx.Method()),
		Path:        b2s(ctx.Path()),
		Query:       b2s(ctx.URI().QueryString()),
		HTTPVersion: b2s(ctx.Request.Header.Protocol()),
		RemoteAddr:  b2s(s.addr),
		Headers:     s.headers,
	}
	if ctx.IsTLS() {
		init.Scheme = "https"
	}
	if body := ctx.PostBody(); len(body) > 0 {
		init.Body = body
	}
	// The RequestCtx is the request's context: done when the server shuts down.
	x, err := m.p.Begin(ctx, init)
	clear(s.headers) // drop the references into fasthttp's buffers
	return x, err
}

// applyChanges gives the wrapped handler the request as rewrite and access left it.
func applyChanges(req *fasthttp.Request, x *luaengine.Exchange) {
	changes := x.Changes()
	if changes&luaengine.ChangedMethod != 0 {
		req.Header.SetMethodBytes(x.Method())
	}
	if changes&luaengine.ChangedPath != 0 {
		req.URI().SetPathBytes(x.Path())
	}
	if changes&luaengine.ChangedQuery != 0 {
		req.URI().SetQueryStringBytes(x.Query())
	}
	if changes&luaengine.ChangedHeaders != 0 {
		h := &req.Header
		clearHeaders(h)
		for i, n := 0, x.NumRequestHeaders(); i < n; i++ {
			name, value := x.RequestHeader(i)
			if bytes.EqualFold(name, host) {
				h.SetHostBytes(value)
			} else {
				h.AddBytesKV(name, value)
			}
		}
	}
	if changes&luaengine.ChangedBody != 0 {
		body := x.RequestBody()
		req.SetBody(body) // copies it out of engine memory
		req.Header.SetContentLength(len(body))
	}
}

func (m *Middleware) writeAnswer(ctx *fasthttp.RequestCtx, x *luaengine.Exchange) {
	if !applyHeaders(&ctx.Response.Header, x) {
		ctx.Response.Header.SetContentTypeBytes(m.defaultType)
	}
	ctx.SetStatusCode(x.AnswerStatus())
	ctx.SetBody(x.AnswerBody())
}

// filter hands the wrapped handler's (buffered) response to the engine — for header_filter
// and body_filter to change, and for ngx.status in log — when there is one of them.
func (m *Middleware) filter(ctx *fasthttp.RequestCtx, x *luaengine.Exchange) {
	if !m.p.HasFilters() && !m.p.HasLog() {
		return
	}
	resp := &ctx.Response
	err := x.HeaderFilter(resp.StatusCode(), func(yield func(string, string) bool) {
		for name, value := range resp.Header.All() {
			if !yield(b2s(name), b2s(value)) {
				return
			}
		}
	})
	if err != nil {
		m.fail(ctx, fasthttp.StatusInternalServerError, err)
		return
	}
	if m.p.Phases().HeaderFilter != nil {
		replaceHeaders(&resp.Header, x)
		resp.SetStatusCode(x.Status())
	}
	if m.p.Phases().BodyFilter == nil || resp.IsBodyStream() {
		return
	}
	out, _, err := x.BodyFilter(resp.Body(), true)
	if err != nil {
		m.fail(ctx, fasthttp.StatusInternalServerError, err)
		return
	}
	resp.SetBody(out) // copies it out of engine memory
}

// replaceHeaders makes h the response headers as header_filter left them.
func replaceHeaders(h *fasthttp.ResponseHeader, x *luaengine.Exchange) {
	clearHeaders(h)
	for i, n := 0, x.NumHeaders(); i < n; i++ {
		h.AddBytesKV(x.Header(i))
	}
}

// clearHeaders deletes every header of a fasthttp request or response.
func clearHeaders(h interface {
	All() iter.Seq2[[]byte, []byte]
	Del(key string)
}) {
	var names []string
	for name := range h.All() {
		names = append(names, string(name)) // copied: Del changes the buffers All reads
	}
	for _, name := range names {
		h.Del(name)
	}
}

// applyHeaders sets the headers scripts set (the first of a name replaces, repeats add) and
// reports whether Content-Type was among them.
func applyHeaders(h *fasthttp.ResponseHeader, x *luaengine.Exchange) (hasType bool) {
	for i, n := 0, x.NumHeaders(); i < n; i++ {
		name, value := x.Header(i)
		if x.HeaderRepeated(i) {
			h.AddBytesKV(name, value)
		} else {
			h.SetBytesKV(name, value)
		}
		hasType = hasType || bytes.EqualFold(name, contentType)
	}
	return hasType
}

func (m *Middleware) fail(ctx *fasthttp.RequestCtx, status int, err error) {
	m.errorLog(ctx, err)
	ctx.Response.Reset()
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.Error(string(luaengine.ErrorPage(status)), status)
}

// appendRemoteIP appends the client's IP without its port, as nginx's $remote_addr.
func appendRemoteIP(dst []byte, addr net.Addr) []byte {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok {
			return ip.Unmap().AppendTo(dst)
		}
	}
	if addr == nil {
		return dst
	}
	return append(dst, addr.String()...)
}

var (
	contentType = []byte("Content-Type")
	host        = []byte("Host")
)

func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
