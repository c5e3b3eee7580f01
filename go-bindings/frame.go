package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"
)

// frame is one request's C-side state (see glue.h): Go writes the snapshot and the planned
// phase runs straight into it, so a cgo call only ever passes the frame's address and no Go
// pointer reaches C. Frames are pooled; a pooled frame the GC drops frees its C memory.
type frame struct {
	c       *C.lego_frame
	engine  *Engine // whose reference the request holds, while it lives
	cleanup runtime.Cleanup
	// wake is signalled by the request's wake callback, through the cgo.Handle in c.wake; it
	// lives as long as the frame, so a request that waits allocates nothing for it.
	wake chan struct{}

	// Per request (see wait.go).
	ctx        context.Context // cancelling it cancels a waiting phase
	httpReq    *http.Request   // ngx.req.read_body reads its Body, or else bodyReader
	bodyReader io.Reader
	bodyErr    error   // why reading the body failed
	ops        *waiter // the async host calls started, once there are any
}

// frameData is the initial room for a snapshot: a request with a few dozen headers fits.
const frameData = 4096

var framePool sync.Pool

// getFrame returns a reset frame with at least need bytes of data.
func getFrame(need int) *frame {
	if f, ok := framePool.Get().(*frame); ok {
		if int(f.c.data_cap) >= need {
			f.reset()
			return f
		}
		f.destroy()
	}
	size := max(need, frameData)
	c := C.lego_frame_new(C.size_t(size))
	if c == nil {
		panic("luaengine: out of C memory")
	}
	f := &frame{c: c, wake: make(chan struct{}, 1)}
	c.wake = C.uintptr_t(cgo.NewHandle(f.wake))
	f.cleanup = runtime.AddCleanup(f, freeFrame, c)
	return f
}

// freeFrame releases a frame's C memory and its wake channel's handle.
func freeFrame(c *C.lego_frame) {
	cgo.Handle(c.wake).Delete()
	C.free(unsafe.Pointer(c))
}

// ref is the frame's address for the glue functions (see lego_frame_ref in glue.h).
func (f *frame) ref() C.lego_frame_ref { return C.lego_frame_ref(uintptr(unsafe.Pointer(f.c))) }

func (f *frame) destroy() {
	f.cleanup.Stop()
	freeFrame(f.c)
}

// recycle returns a frame whose request is freed to the pool.
func (f *frame) recycle() {
	f.engine = nil
	f.ctx, f.httpReq, f.bodyReader, f.bodyErr, f.ops = nil, nil, nil, nil, nil
	framePool.Put(f)
}

// reset readies a frame for a new request.
func (f *frame) reset() {
	c := f.c
	c.engine, c.request, c.err, c.id = nil, nil, nil, 0
	c.view = C.le_response_view{}
	c.n_steps, c.next_step, c.answered, c.error_page = 0, 0, false, false
	c.inspect, c.jumped, c.inspected, c.waker_set = false, false, false, false
	c.pending, c.n_pending = nil, 0
	c.chunk = C.le_body_chunk{}
	select {
	case <-f.wake: // a wake the last request did not need
	default:
	}
}

// data is the frame's data area (the snapshot, then scratch room once the request exists).
func (f *frame) data() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(f.c.data)), int(f.c.data_cap))
}

// plan sets the batch of steps the next lego_run/lego_finish executes.
func (f *frame) plan() *planner {
	f.c.n_steps, f.c.next_step = 0, 0
	return (*planner)(f.c)
}

type planner C.lego_frame

// add appends a step; answerOnly steps (filters) run only once the request is answered,
// the others only until then.
func (p *planner) add(phase Phase, s *Script, answerOnly bool) {
	if s == nil {
		return
	}
	i := p.n_steps
	p.phases[i] = C.le_phase(phase)
	p.scripts[i] = s.ptr
	p.answer_only[i] = C.bool(answerOnly)
	p.n_steps++
}

// takeError returns the failure of the last failed step as an *Error with the phase named.
func (f *frame) takeError(fallback Code) *Error {
	return f.phaseError(f.stepPhase(), fallback)
}

// phaseError returns the failure in f.c.err as an *Error of phase; when reading the request
// body failed, that is its cause.
func (f *frame) phaseError(phase Phase, fallback Code) *Error {
	err := takeError(f.c.err, fallback)
	f.c.err = nil
	err.Phase = phase
	err.cause = f.bodyErr
	return err
}

// stepPhase is the phase of the last step run, or NoPhase.
func (f *frame) stepPhase() Phase {
	if f.c.next_step == 0 {
		return NoPhase
	}
	return Phase(f.c.phases[f.c.next_step-1])
}

// Response views -------------------------------------------------------------------------

func (f *frame) status() int { return int(f.c.view.status) }

func (f *frame) headers() []C.le_header {
	return unsafe.Slice(f.c.view.headers, int(f.c.view.n_headers))
}

func (f *frame) body() []byte { return cBytes(f.c.view.body) }

// Request views ----------------------------------------------------------------------------

// headerList is a C array of headers.
type headerList []C.le_header

func (l headerList) len() int { return len(l) }

func (l headerList) at(i int) (name, value []byte) { return cBytes(l[i].name), cBytes(l[i].value) }

func (f *frame) requestHeaders() headerList {
	if !f.c.inspected {
		return nil
	}
	return unsafe.Slice(f.c.req_view.headers, int(f.c.req_view.n_headers))
}

func (f *frame) variables() headerList {
	if !f.c.inspected {
		return nil
	}
	return unsafe.Slice(f.c.req_view.variables, int(f.c.req_view.n_variables))
}

// changes compares the request as the last batch left it with the snapshot it started from.
func (f *frame) changes() Change {
	if !f.c.inspected {
		return 0
	}
	v, in := &f.c.req_view, &f.c.init
	var c Change
	if !bytes.Equal(cBytes(v.method), cBytes(in.method)) {
		c |= ChangedMethod
	}
	if !bytes.Equal(cBytes(v.path), cBytes(in.path)) {
		c |= ChangedPath
	}
	if !bytes.Equal(cBytes(v.query), cBytes(in.query)) {
		c |= ChangedQuery
	}
	// The engine says whether a script replaced the body: the body itself is never compared.
	if v.body_changed {
		c |= ChangedBody
	}
	now := f.requestHeaders()
	before := headerList(unsafe.Slice(in.headers, int(in.n_headers)))
	if len(now) != len(before) {
		return c | ChangedHeaders
	}
	for i := range now {
		if !bytes.Equal(cBytes(now[i].name), cBytes(before[i].name)) ||
			!bytes.Equal(cBytes(now[i].value), cBytes(before[i].value)) {
			return c | ChangedHeaders
		}
	}
	return c
}

// scratch lays out headers in C memory for one call: in the frame's data, which the snapshot no
// longer needs once the request exists, or in C memory of its own when they do not fit.
type scratch struct {
	list headerList
	data []byte
	own  unsafe.Pointer
}

// newScratch makes room for n headers whose names and values add up to size bytes.
func newScratch(f *frame, n, size int) scratch {
	need := headerBytes(n) + size
	base := unsafe.Pointer(f.c.data)
	var w scratch
	if need > int(f.c.data_cap) {
		w.own = C.malloc(C.size_t(need))
		if w.own == nil {
			panic("luaengine: out of C memory")
		}
		base = w.own
	}
	w.list = unsafe.Slice((*C.le_header)(base), n)[:0]
	w.data = unsafe.Slice((*byte)(unsafe.Add(base, headerBytes(n))), size)
	return w
}

func (w *scratch) str(s string) C.le_str {
	if s == "" {
		return C.le_str{}
	}
	n := copy(w.data, s)
	out := C.le_str{ptr: (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(w.data))), len: C.size_t(n)}
	w.data = w.data[n:]
	return out
}

// header adds one; headers beyond the room made (the caller's count changed) are dropped.
func (w *scratch) header(name, value string) {
	if len(w.list) == cap(w.list) || len(name)+len(value) > len(w.data) {
		return
	}
	w.list = append(w.list, C.le_header{name: w.str(name), value: w.str(value)})
}

func (w *scratch) first() *C.le_header {
	if len(w.list) == 0 {
		return nil
	}
	return &w.list[0]
}

func (w *scratch) free() {
	if w.own != nil {
		C.free(w.own)
	}
}

// Snapshots ----------------------------------------------------------------------------------

// snapshotWriter copies a request snapshot into a frame's data: the header array first, then
// the strings. A snapshot that does not fit sets overflow instead of writing.
type snapshotWriter struct {
	init     *C.le_request_init
	headers  []C.le_header
	data     []byte
	pos      int
	overflow bool
}

func headerBytes(n int) int { return n * C.sizeof_le_header }

// newSnapshotWriter starts a snapshot with room for up to nHeaders headers.
func newSnapshotWriter(f *frame, nHeaders int) snapshotWriter {
	c := f.c
	c.init = C.le_request_init{}
	w := snapshotWriter{
		init: &c.init,
		data: f.data(),
		pos:  headerBytes(nHeaders),
	}
	if w.pos > len(w.data) {
		w.overflow = true
	} else if nHeaders > 0 {
		w.headers = unsafe.Slice((*C.le_header)(unsafe.Pointer(c.data)), nHeaders)[:0]
		c.init.headers = &w.headers[:1][0]
	}
	return w
}

func (w *snapshotWriter) str(s string) C.le_str {
	if s == "" || w.overflow {
		return C.le_str{}
	}
	if len(s) > len(w.data)-w.pos {
		w.overflow = true
		return C.le_str{}
	}
	p := &w.data[w.pos]
	w.pos += copy(w.data[w.pos:], s)
	return C.le_str{ptr: (*C.uint8_t)(unsafe.Pointer(p)), len: C.size_t(len(s))}
}

func (w *snapshotWriter) header(name, value string) {
	if len(w.headers) == cap(w.headers) {
		w.overflow = true
		return
	}
	w.headers = append(w.headers, C.le_header{name: w.str(name), value: w.str(value)})
	w.init.n_headers = C.size_t(len(w.headers))
}

// finish writes the body, the last string, and hands the engine the strings' area as the
// request's buffer, which it copies in one piece.
func (w *snapshotWriter) finish(body []byte) {
	if body != nil {
		w.init.has_body = true
		w.init.body = w.str(unsafe.String(unsafe.SliceData(body), len(body)))
	}
	if start := headerBytes(cap(w.headers)); !w.overflow && w.pos > start {
		w.init.buffer = C.le_str{ptr: (*C.uint8_t)(unsafe.Pointer(&w.data[start])), len: C.size_t(w.pos - start)}
	}
}

// RequestInit is a request snapshot from plain fields.
type RequestInit struct {
	Method      string
	Path        string // the URI path without the query string
	Query       string // the query string without '?'
	HTTPVersion string // "HTTP/1.1" when empty
	Scheme      string // "http" when empty
	RemoteAddr  string // the client's address (ngx.var.remote_addr)
	Headers     []Header
	Body        []byte // the request body; nil means none was read
	// BodyReader is read to its end when a script calls ngx.req.read_body() and Body is nil;
	// with neither, the body is empty.
	BodyReader io.Reader
}

// Header is one request or response header. A name may repeat.
type Header struct {
	Name, Value string
}

func (init *RequestInit) size() int {
	n := len(init.Method) + len(init.Path) + len(init.Query) + len(init.HTTPVersion) +
		len(init.Scheme) + len(init.RemoteAddr) + len(init.Body)
	for _, h := range init.Headers {
		n += len(h.Name) + len(h.Value)
	}
	return n + headerBytes(len(init.Headers))
}

func (init *RequestInit) write(f *frame) {
	w := newSnapshotWriter(f, len(init.Headers))
	w.init.method = w.str(init.Method)
	w.init.path = w.str(init.Path)
	w.init.query = w.str(init.Query)
	w.init.http_version = w.str(init.HTTPVersion)
	w.init.scheme = w.str(init.Scheme)
	w.init.remote_addr = w.str(init.RemoteAddr)
	for _, h := range init.Headers {
		w.header(h.Name, h.Value)
	}
	w.finish(init.Body)
}

// writeHTTP writes the snapshot of r into a frame in one pass over its headers when they fit
// the usual room, else into a frame sized for them. Go keeps Host out of r.Header; the snapshot
// has it as a header, as nginx sees it.
func writeHTTP(r *http.Request, body []byte) *frame {
	// Room for every header name with one value, and a few repeated ones.
	f := getFrame(0)
	if tryWriteHTTP(f, r, body, len(r.Header)+8) {
		return f
	}
	framePool.Put(f)
	nHeaders, size := 1, len(r.Host)+len("Host")
	for name, values := range r.Header {
		for _, v := range values {
			size += len(name) + len(v)
			nHeaders++
		}
	}
	size += len(r.Method) + len(r.URL.Path) + len(r.URL.RawQuery) + len(r.Proto) + len("https") +
		len(r.RemoteAddr) + len(body) + headerBytes(nHeaders)
	f = getFrame(size)
	tryWriteHTTP(f, r, body, nHeaders)
	return f
}

func tryWriteHTTP(f *frame, r *http.Request, body []byte, nHeaders int) bool {
	w := newSnapshotWriter(f, nHeaders)
	w.init.method = w.str(r.Method)
	w.init.path = w.str(r.URL.Path)
	w.init.query = w.str(r.URL.RawQuery)
	w.init.http_version = w.str(r.Proto)
	if r.TLS != nil {
		w.init.scheme = w.str("https")
	}
	w.init.remote_addr = w.str(remoteIP(r.RemoteAddr))
	w.header("Host", r.Host)
	for name, values := range r.Header {
		for _, v := range values {
			w.header(name, v)
		}
	}
	w.finish(body)
	return !w.overflow
}

// remoteIP strips the port from "ip:port" or "[ip6]:port", as nginx's $remote_addr has none.
func remoteIP(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 || strings.IndexByte(addr[i:], ']') >= 0 {
		return addr
	}
	host := addr[:i]
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	if strings.IndexByte(host, ':') >= 0 {
		return addr // a bare IPv6 address without a port
	}
	return host
}
