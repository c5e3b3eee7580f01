package luaengine

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// site is a middleware under test with what it reported.
type site struct {
	t       *testing.T
	handler http.Handler
	logs    *logs
	mu      sync.Mutex
	errs    []error
	events  []string // what the wrapped handler and the log records saw, in order
	nextRan bool
}

// phaseSources are Lua sources per phase; empty ones are not set.
type phaseSources struct {
	rewrite, access, content, headerFilter, bodyFilter, log string
}

func newSite(t *testing.T, src phaseSources, config MiddlewareConfig, next http.Handler) *site {
	return newSiteOn(t, Config{}, src, config, next)
}

// newSiteOn is newSite on an engine configured from ec.
func newSiteOn(t *testing.T, ec Config, src phaseSources, config MiddlewareConfig, next http.Handler) *site {
	s := &site{t: t, logs: &logs{}}
	ec.Log = func(r LogRecord) {
		s.logs.add(r)
		if r.Level == LogInfo { // what the scripts log; the engine reports failures as errors
			s.event(r.Phase.String() + ":" + r.Message)
		}
	}
	if ec.InstructionBudget == 0 {
		ec.InstructionBudget = 1000000
	}
	e := newEngine(t, ec)
	script := func(name, source string) *Script {
		if source == "" {
			return nil
		}
		return compile(t, e, name, source)
	}
	config.Phases = Phases{
		Rewrite:      script("rewrite", src.rewrite),
		Access:       script("access", src.access),
		Content:      script("content", src.content),
		HeaderFilter: script("header_filter", src.headerFilter),
		BodyFilter:   script("body_filter", src.bodyFilter),
		Log:          script("log", src.log),
	}
	config.ErrorLog = func(_ *http.Request, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.errs = append(s.errs, err)
	}
	m, err := NewMiddleware(e, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if next == nil {
		next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.event("next")
			io.WriteString(w, "from next\n")
		})
	}
	s.handler = m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.nextRan = true
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	}))
	return s
}

func (s *site) event(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *site) get(target string, headers ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, r)
	return w
}

func (s *site) expect(w *httptest.ResponseRecorder, status int, body string) {
	s.t.Helper()
	if w.Code != status || w.Body.String() != body {
		s.t.Fatalf("got %d %q, want %d %q", w.Code, w.Body.String(), status, body)
	}
}

func (s *site) expectEvents(want ...string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.Join(s.events, "|") != strings.Join(want, "|") {
		s.t.Fatalf("events:\n got %q\nwant %q", s.events, want)
	}
}

func (s *site) phaseError() *Error {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var le *Error
	if len(s.errs) != 1 || !errors.As(s.errs[0], &le) {
		s.t.Fatalf("errors reported: %v", s.errs)
	}
	return le
}

func TestMiddlewareContent(t *testing.T) {
	s := newSite(t, phaseSources{
		content: `ngx.say("hello ", ngx.var.uri, " ", ngx.var.arg_a, " ", ngx.var.host, " ", ngx.var.remote_addr)`,
	}, MiddlewareConfig{}, nil)
	w := s.get("/t?a=1")
	s.expect(w, 200, "hello /t 1 example.com 192.0.2.1\n")
	if w.Header().Get("Content-Type") != "text/plain" || s.nextRan {
		t.Fatalf("headers %v, next ran %v", w.Header(), s.nextRan)
	}
}

func TestMiddlewareAllPhasesAroundContent(t *testing.T) {
	s := newSiteOn(t, Config{DefaultType: "text/html"}, phaseSources{
		rewrite:      `ngx.ctx.trace = "rewrite"`,
		access:       `ngx.ctx.trace = ngx.ctx.trace .. ",access"`,
		content:      `ngx.ctx.trace = ngx.ctx.trace .. ",content" ngx.say(ngx.ctx.trace)`,
		headerFilter: `ngx.log(ngx.INFO, ngx.ctx.trace, ",header_filter")`,
		bodyFilter:   `ngx.log(ngx.INFO, "body_filter")`,
		log:          `ngx.log(ngx.INFO, "log ", ngx.status)`,
	}, MiddlewareConfig{}, nil)
	w := s.get("/")
	s.expect(w, 200, "rewrite,access,content\n")
	if w.Header().Get("Content-Type") != "text/html" {
		t.Fatalf("content type %q", w.Header().Get("Content-Type"))
	}
	s.expectEvents("header_filter:rewrite,access,content,header_filter", "body_filter:body_filter", "log:log 200")
}

func TestMiddlewareWrappedHandler(t *testing.T) {
	s := newSite(t, phaseSources{
		rewrite:      `ngx.ctx.user = ngx.req.get_headers()["x-user"]`,
		access:       `if ngx.ctx.user ~= "alice" then return ngx.exit(403) end ngx.log(ngx.INFO, "access ok")`,
		headerFilter: `ngx.log(ngx.INFO, "header_filter ", ngx.ctx.user) ngx.status = 202`,
		bodyFilter:   `ngx.log(ngx.INFO, "body_filter")`,
		log:          `ngx.log(ngx.INFO, "log")`,
	}, MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "1")
		io.WriteString(w, "chunk 1\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "chunk 2\n")
	}))
	w := s.get("/", "X-User", "alice")
	s.expect(w, 202, "chunk 1\nchunk 2\n")
	if w.Header().Get("X-Upstream") != "1" {
		t.Fatalf("headers %v", w.Header())
	}
	// nginx runs body_filter per chunk and once more at the end of the body.
	s.expectEvents("access:access ok", "header_filter:header_filter alice",
		"body_filter:body_filter", "body_filter:body_filter", "body_filter:body_filter", "log:log")

	// Denied in access: 403 from Lua, the filters run on it (header_filter changes the status,
	// the body stays nginx's page for the exit code), the wrapped handler never does.
	s.events = nil
	s.nextRan = false
	w = s.get("/", "X-User", "mallory")
	s.expect(w, 202, "403 Forbidden\n")
	if s.nextRan {
		t.Fatal("the wrapped handler ran for a denied request")
	}
	s.expectEvents("header_filter:header_filter mallory", "body_filter:body_filter", "log:log")
}

// nginx sends ngx.exit(status ≥ 400) without output as its error page, which goes through
// the filters like any response: header_filter sees the exit status, body_filter the page.
func TestMiddlewareErrorPageFiltered(t *testing.T) {
	upper := `ngx.log(ngx.INFO, "body_filter ", tostring(ngx.arg[2])) ngx.arg[1] = string.upper(ngx.arg[1])`
	for _, c := range []struct {
		name   string
		src    phaseSources
		target string
		status int
		body   string
		header string // X-Status the header_filter set, if it ran
		events []string
	}{
		{"upper-cased", phaseSources{access: `ngx.exit(403)`, bodyFilter: upper}, "/", 403, "403 FORBIDDEN\n", "",
			[]string{"body_filter:body_filter true"}},
		{"replaced", phaseSources{access: `ngx.exit(403)`, bodyFilter: `ngx.arg[1] = "denied " .. ngx.status .. "\n"`},
			"/", 403, "denied 403\n", "", nil},
		{"emptied", phaseSources{rewrite: `ngx.exit(404)`, bodyFilter: `ngx.arg[1] = ""`}, "/", 404, "", "", nil},
		{"header_filter", phaseSources{
			access:       `ngx.exit(403)`,
			headerFilter: `ngx.header["X-Status"] = ngx.status ngx.log(ngx.INFO, "header_filter ", ngx.status)`,
		}, "/", 403, "403 Forbidden\n", "403", []string{"header_filter:header_filter 403"}},
		{"both filters", phaseSources{
			content:      `ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)`,
			headerFilter: `ngx.header["X-Status"] = ngx.status`,
			bodyFilter:   upper,
		}, "/", 503, "503 SERVICE UNAVAILABLE\n", "503", []string{"body_filter:body_filter true"}},
		// After ngx.req.set_uri(uri, true) the request goes on here (Continue) and is denied.
		{"after a jump", phaseSources{
			rewrite:    `if ngx.var.uri == "/a" then ngx.req.set_uri("/b", true) end`,
			access:     `ngx.exit(403)`,
			bodyFilter: upper,
		}, "/a", 403, "403 FORBIDDEN\n", "", []string{"body_filter:body_filter true"}},
		// A Lua answer with output is filtered as it was written.
		{"output", phaseSources{content: `ngx.status = 403 ngx.say("custom")`, bodyFilter: upper}, "/", 403, "CUSTOM\n",
			"", []string{"body_filter:body_filter true"}},
		{"exit after output", phaseSources{content: `ngx.say("partial") ngx.exit(500)`, bodyFilter: upper}, "/", 200,
			"PARTIAL\n", "", []string{"body_filter:body_filter true"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, c.src, MiddlewareConfig{}, nil)
			w := s.get(c.target)
			s.expect(w, c.status, c.body)
			if got := w.Header().Get("X-Status"); got != c.header || s.nextRan {
				t.Fatalf("X-Status %q, next ran %v", got, s.nextRan)
			}
			s.expectEvents(c.events...)
		})
	}

	// body_filter fails on the page: fail closed.
	s := newSite(t, phaseSources{access: `ngx.exit(403)`, bodyFilter: `error("no page")`}, MiddlewareConfig{}, nil)
	s.expect(s.get("/"), 500, "500 Internal Server Error\n")
	if le := s.phaseError(); le.Phase != PhaseBodyFilter || le.Message != "body_filter:1: no page" {
		t.Fatalf("error %#v", le)
	}
}

func TestMiddlewareNextWithoutFilters(t *testing.T) {
	s := newSite(t, phaseSources{access: `ngx.ctx.x = 1`, log: `ngx.log(ngx.INFO, "log")`}, MiddlewareConfig{}, nil)
	s.expect(s.get("/"), 200, "from next\n")
	s.expectEvents("next", "log:log")
}

func TestMiddlewareFailClosed(t *testing.T) {
	for _, c := range []struct {
		name string
		src  phaseSources
		code Code
	}{
		{"rewrite error", phaseSources{rewrite: `error("rewrite broke")`}, CodeRuntime},
		{"access error", phaseSources{access: `local t = nil; return t.field`}, CodeRuntime},
		{"access budget", phaseSources{access: `while true do end`}, CodeBudget},
		{"access ngx.ERROR", phaseSources{access: `ngx.exit(ngx.ERROR)`}, CodeAborted},
		{"content error", phaseSources{content: `error("content broke")`}, CodeRuntime},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.src.log = `ngx.log(ngx.INFO, "log still runs")`
			s := newSite(t, c.src, MiddlewareConfig{}, nil)
			s.expect(s.get("/"), 500, "500 Internal Server Error\n")
			if s.nextRan {
				t.Fatal("the wrapped handler ran after a failure")
			}
			if le := s.phaseError(); le.Code != c.code {
				t.Fatalf("error %#v", le)
			}
			s.expectEvents("log:log still runs")
		})
	}
}

func TestMiddlewareFilterFailures(t *testing.T) {
	// header_filter fails on the wrapped handler's response: it never goes out.
	s := newSite(t, phaseSources{headerFilter: `error("no headers for you")`}, MiddlewareConfig{}, nil)
	s.expect(s.get("/"), 500, "500 Internal Server Error\n")
	if le := s.phaseError(); le.Phase != PhaseHeaderFilter || le.Message != "header_filter:1: no headers for you" {
		t.Fatalf("error %#v", le)
	}

	// body_filter fails: the headers are out, the body is cut.
	s = newSite(t, phaseSources{bodyFilter: `error("cut")`}, MiddlewareConfig{}, nil)
	s.expect(s.get("/"), 200, "")
	if le := s.phaseError(); le.Phase != PhaseBodyFilter {
		t.Fatalf("error %#v", le)
	}

	// log fails: the response is already sent; the failure is reported.
	s = newSite(t, phaseSources{content: `ngx.say("ok")`, log: `error("log broke")`}, MiddlewareConfig{}, nil)
	s.expect(s.get("/"), 200, "ok\n")
	if le := s.phaseError(); le.Phase != PhaseLog {
		t.Fatalf("error %#v", le)
	}
}

func TestMiddlewareExitAndRedirect(t *testing.T) {
	s := newSite(t, phaseSources{
		rewrite: `if ngx.var.uri == "/old" then return ngx.redirect("/new") end`,
		access:  `if ngx.var.uri == "/gone" then return ngx.exit(410) end`,
		content: `ngx.status = 404 ngx.say("custom")`,
	}, MiddlewareConfig{}, nil)
	w := s.get("/old")
	s.expect(w, 302, "")
	if w.Header().Get("Location") != "/new" {
		t.Fatalf("headers %v", w.Header())
	}
	s.expect(s.get("/gone"), 410, "410 Gone\n")
	s.expect(s.get("/x"), 404, "custom\n")
}

func TestMiddlewareBody(t *testing.T) {
	for _, c := range []struct {
		name   string
		access string
		config MiddlewareConfig
	}{
		// nginx reads the body when a script asks for it...
		{"read_body", `ngx.req.read_body() ngx.log(ngx.INFO, "body ", ngx.req.get_body_data())`, MiddlewareConfig{MaxBodySize: 16}},
		// ... or before rewrite with lua_need_request_body on.
		{"need body", `ngx.log(ngx.INFO, "body ", ngx.req.get_body_data())`, MiddlewareConfig{MaxBodySize: 16, NeedRequestBody: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var seen string
			s := newSite(t, phaseSources{access: c.access}, c.config,
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					seen = string(b)
				}))
			post := func(body io.Reader) *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				s.handler.ServeHTTP(w, httptest.NewRequest("POST", "/", body))
				return w
			}
			s.expect(post(strings.NewReader("name=alice")), 200, "")
			if seen != "name=alice" {
				t.Fatalf("the wrapped handler read %q", seen)
			}
			s.expectEvents("access:body name=alice")
			// Too large by its Content-Length, or when read (no length: a plain io.Reader).
			s.nextRan = false
			s.expect(post(strings.NewReader(strings.Repeat("x", 17))), 413, "413 Request Entity Too Large\n")
			s.expect(post(io.MultiReader(strings.NewReader(strings.Repeat("x", 17)))), 413, "413 Request Entity Too Large\n")
			if s.nextRan {
				t.Fatal("the wrapped handler ran for a body too large")
			}
		})
	}
}

func TestMiddlewareClosed(t *testing.T) {
	e := newEngine(t, Config{})
	m, err := NewMiddleware(e, MiddlewareConfig{
		Phases:   Phases{Content: compile(t, e, "content", `ngx.say("x")`)},
		ErrorLog: func(*http.Request, error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Wrap(nil)
	m.Close()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 503 {
		t.Fatalf("closed middleware answered %d", w.Code)
	}
}

// Snapshots bigger than a pooled frame (many repeated headers, long values) get a bigger one.
func TestMiddlewareLargeRequests(t *testing.T) {
	s := newSite(t, phaseSources{
		content: `local h = ngx.req.get_headers() ngx.say(#h["x-many"], " ", #h["x-big"], " ", h.host)`,
	}, MiddlewareConfig{}, nil)
	r := httptest.NewRequest("GET", "/", nil)
	for i := range 40 {
		r.Header.Add("X-Many", strings.Repeat("v", i))
	}
	r.Header.Set("X-Big", strings.Repeat("b", 10000))
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, r)
	s.expect(w, 200, "40 10000 example.com\n")
}

// What rewrite and access change in the request is what the wrapped handler sees.
func TestMiddlewareRequestChanges(t *testing.T) {
	type seen struct {
		method, path, query, host string
		header                    http.Header
		same                      bool
	}
	cases := []struct {
		name, rewrite, access string
		want                  seen
	}{
		{"nothing", `ngx.ctx.x = 1`, `ngx.var.backend = "b1"`,
			seen{"GET", "/p", "a=1", "example.com", http.Header{"X-Keep": {"k"}, "X-Drop": {"d"}}, true}},
		{"uri and args", `ngx.req.set_uri("/new path")`, `ngx.req.set_uri_args({b = "2 3"})`,
			seen{"GET", "/new path", "b=2%203", "example.com", http.Header{"X-Keep": {"k"}, "X-Drop": {"d"}}, false}},
		{"var args", ``, `ngx.var.args = "c=4"`,
			seen{"GET", "/p", "c=4", "example.com", http.Header{"X-Keep": {"k"}, "X-Drop": {"d"}}, false}},
		{"headers", `ngx.req.set_header("X-Added", {"1", "2"}) ngx.req.clear_header("X-Drop")`,
			`ngx.req.set_header("Host", "other.example")`,
			seen{"GET", "/p", "a=1", "other.example", http.Header{"X-Keep": {"k"}, "X-Added": {"1", "2"}}, false}},
		{"method", `ngx.req.set_method(ngx.HTTP_POST)`, ``,
			seen{"POST", "/p", "a=1", "example.com", http.Header{"X-Keep": {"k"}, "X-Drop": {"d"}}, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got seen
			original := httptest.NewRequest("GET", "/p?a=1", nil)
			original.Header.Set("X-Keep", "k")
			original.Header.Set("X-Drop", "d")
			s := newSite(t, phaseSources{rewrite: c.rewrite, access: c.access}, MiddlewareConfig{},
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					got = seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header, r == original}
				}))
			w := httptest.NewRecorder()
			s.handler.ServeHTTP(w, original)
			if got.method != c.want.method || got.path != c.want.path || got.query != c.want.query ||
				got.host != c.want.host || !reflect.DeepEqual(got.header, c.want.header) || got.same != c.want.same {
				t.Fatalf("the wrapped handler saw\n%+v\nwant\n%+v", got, c.want)
			}
			if original.URL.Path != "/p" || original.Header.Get("X-Drop") != "d" {
				t.Fatal("the caller's request was changed")
			}
		})
	}
}

// A body scripts replaced is the wrapped handler's, with its length; one they only read is the
// client's, in the caller's own request.
func TestMiddlewareBodyChanges(t *testing.T) {
	cases := []struct {
		name, body, access string
		config             MiddlewareConfig
		want               string
		same               bool
	}{
		{"set_body_data", "original", `ngx.req.read_body() ngx.req.set_body_data("changed")`, MiddlewareConfig{},
			"changed 7 7", false},
		{"init_body", "original", `ngx.req.read_body() ngx.req.init_body() ngx.req.append_body("new ")
			ngx.req.append_body("body") ngx.req.finish_body()`, MiddlewareConfig{}, "new body 8 8", false},
		// The same length: the Content-Length header is as it was, only the body changed.
		{"same length", "orig123", `ngx.req.set_body_data("changed")`, MiddlewareConfig{NeedRequestBody: true},
			"changed 7 7", false},
		{"emptied", "original", `ngx.req.read_body() ngx.req.set_body_data("")`, MiddlewareConfig{}, " 0 0", false},
		{"read only", "original", `ngx.req.read_body() assert(ngx.req.get_body_data() == "original")`,
			MiddlewareConfig{}, "original 8 8", true},
		{"not read", "original", `ngx.ctx.x = 1`, MiddlewareConfig{}, "original 8 8", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			original := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
			original.Header.Set("Content-Length", strconv.Itoa(len(c.body))) // as net/http's server has it
			var same bool
			s := newSite(t, phaseSources{access: c.access}, c.config,
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					same = r == original
					b, _ := io.ReadAll(r.Body)
					fmt.Fprintf(w, "%s %d %s", b, r.ContentLength, r.Header.Get("Content-Length"))
				}))
			w := httptest.NewRecorder()
			s.handler.ServeHTTP(w, original)
			s.expect(w, 200, c.want)
			if same != c.same {
				t.Fatalf("the wrapped handler got the caller's request: %v, want %v", same, c.same)
			}
			if original.ContentLength != int64(len(c.body)) || original.Header.Get("Content-Length") != strconv.Itoa(len(c.body)) {
				t.Fatal("the caller's request was changed")
			}
		})
	}
}

// header_filter and body_filter work on the wrapped handler's response: its status and
// headers through ngx.status and ngx.header, its body through ngx.arg.
func TestMiddlewareFiltersOnHandlerResponse(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "u")
		w.Header().Set("X-Secret", "s")
		w.Header().Set("Content-Length", "15")
		w.WriteHeader(201)
		io.WriteString(w, "chunk one\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "two\n")
	})
	s := newSite(t, phaseSources{
		headerFilter: `
			ngx.log(ngx.INFO, "status ", ngx.status, " upstream ", ngx.header["X-Upstream"])
			ngx.header["X-Secret"] = nil
			ngx.header["X-Filtered"] = "yes"
			if ngx.var.arg_status then ngx.status = tonumber(ngx.var.arg_status) end`,
		bodyFilter: `
			ngx.arg[1] = string.upper(ngx.arg[1])
			if ngx.arg[2] then ngx.arg[1] = ngx.arg[1] .. "-- end\n" end
			if ngx.var.arg_cut and ngx.arg[1] ~= "" then ngx.arg[2] = true end`,
		log: `ngx.log(ngx.INFO, "log ", ngx.status)`,
	}, MiddlewareConfig{}, handler)
	w := s.get("/")
	s.expect(w, 201, "CHUNK ONE\nTWO\n-- end\n")
	h := w.Header()
	if h.Get("X-Upstream") != "u" || h.Get("X-Secret") != "" || h.Get("X-Filtered") != "yes" || h.Get("Content-Length") != "" {
		t.Fatalf("headers %v", h)
	}
	s.expectEvents("header_filter:status 201 upstream u", "log:log 201")

	s.events = nil
	s.expect(s.get("/?status=299"), 299, "CHUNK ONE\nTWO\n-- end\n")
	s.expectEvents("header_filter:status 201 upstream u", "log:log 299")

	// The filter ends the body early: nothing after that chunk goes out.
	s.expect(s.get("/?cut=1"), 201, "CHUNK ONE\n")
}

// A log script alone still sees the wrapped handler's status.
func TestMiddlewareLogSeesHandlerStatus(t *testing.T) {
	s := newSite(t, phaseSources{log: `ngx.log(ngx.INFO, "log ", ngx.status)`}, MiddlewareConfig{},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	s.expect(s.get("/"), 204, "")
	s.expectEvents("log:log 204")
}

// ngx.req.set_uri(uri, true) in rewrite: the request goes to LocationJump, or on here.
func TestMiddlewareLocationJump(t *testing.T) {
	var router http.Handler
	jumped := newSite(t, phaseSources{content: `ngx.say("jumped to ", ngx.var.uri, " x=", ngx.req.get_headers()["x"])`},
		MiddlewareConfig{}, nil)
	s := newSite(t, phaseSources{
		rewrite: `ngx.req.set_header("X", "1") if ngx.var.uri ~= "/loop" then ngx.req.set_uri("/target", true) end
		          ngx.req.set_uri("/loop", true)`,
		access: `ngx.log(ngx.INFO, "access here")`,
		log:    `ngx.log(ngx.INFO, "log here")`,
	}, MiddlewareConfig{LocationJump: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		router.ServeHTTP(w, r)
	})}, nil)
	router = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/target" {
			jumped.handler.ServeHTTP(w, r)
			return
		}
		s.handler.ServeHTTP(w, r)
	})
	s.expect(s.get("/start"), 200, "jumped to /target x=1\n")
	s.expectEvents() // neither access nor log ran in the first location
	// A rewrite that jumps to itself stops after 10 jumps.
	s.expect(s.get("/loop"), 500, "500 Internal Server Error\n")

	// Without LocationJump the request goes on here with its new URI: to content, or to the
	// wrapped handler with what access changed too, and log runs.
	here := newSite(t, phaseSources{
		rewrite: `ngx.req.set_uri("/target", true)`,
		content: `ngx.say("here ", ngx.var.uri)`,
	}, MiddlewareConfig{}, nil)
	here.expect(here.get("/start"), 200, "here /target\n")
	next := newSite(t, phaseSources{
		rewrite: `ngx.req.set_uri("/target", true)`,
		access:  `ngx.req.set_header("X-Access", "1")`,
		log:     `ngx.log(ngx.INFO, "log")`,
	}, MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "next "+r.URL.Path+" "+r.Header.Get("X-Access")+"\n")
	}))
	next.expect(next.get("/start"), 200, "next /target 1\n")
	next.expectEvents("log:log")
}
