package fasthttpadapter

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	luaengine "github.com/libluaengine/luaengine/go-bindings"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type site struct {
	t       *testing.T
	m       *Middleware
	handler fasthttp.RequestHandler
	mu      sync.Mutex
	events  []string
	errs    []error
}

func (s *site) event(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

// newSite wraps next (or a handler writing "from next") with the phase scripts, given as
// phase name → Lua source.
func newSite(t *testing.T, sources map[luaengine.Phase]string, next fasthttp.RequestHandler) *site {
	s := &site{t: t}
	e, err := luaengine.New(luaengine.Config{Workers: 2, Log: func(r luaengine.LogRecord) {
		if r.Level == luaengine.LogInfo {
			s.event(r.Phase.String() + ":" + r.Message)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	scripts := map[luaengine.Phase]*luaengine.Script{}
	for phase, source := range sources {
		script, err := e.Compile(phase.String(), source)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { script.Close() })
		scripts[phase] = script
	}
	m, err := New(e, Config{
		Phases: luaengine.Phases{
			Rewrite: scripts[luaengine.PhaseRewrite], Access: scripts[luaengine.PhaseAccess],
			Content: scripts[luaengine.PhaseContent], HeaderFilter: scripts[luaengine.PhaseHeaderFilter],
			BodyFilter: scripts[luaengine.PhaseBodyFilter], Log: scripts[luaengine.PhaseLog],
		},
		ErrorLog: func(_ *fasthttp.RequestCtx, err error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.errs = append(s.errs, err)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if next == nil {
		next = func(ctx *fasthttp.RequestCtx) {
			s.event("next")
			ctx.SetBodyString("from next\n")
		}
	}
	if m.Name() != "luaengine" {
		t.Fatalf("name %q", m.Name())
	}
	s.m = m
	s.handler = m.Process(next)
	return s
}

// do serves one request from 192.0.2.7:1234 and returns the response.
func (s *site) do(method, uri, body string, headers ...string) *fasthttp.Response {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost("example.com")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	if body != "" {
		req.SetBodyString(body)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 1234}, nil)
	s.handler(&ctx)
	resp := &fasthttp.Response{}
	ctx.Response.CopyTo(resp)
	return resp
}

func (s *site) expect(resp *fasthttp.Response, status int, body string) {
	s.t.Helper()
	if resp.StatusCode() != status || string(resp.Body()) != body {
		s.t.Fatalf("got %d %q, want %d %q", resp.StatusCode(), resp.Body(), status, body)
	}
}

func (s *site) expectEvents(want ...string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.Join(s.events, "|") != strings.Join(want, "|") {
		s.t.Fatalf("events:\n got %q\nwant %q", s.events, want)
	}
	s.events = nil
}

func TestContent(t *testing.T) {
	s := newSite(t, map[luaengine.Phase]string{
		luaengine.PhaseRewrite: `ngx.ctx.trace = "rewrite"`,
		luaengine.PhaseAccess:  `ngx.ctx.trace = ngx.ctx.trace .. ",access"`,
		luaengine.PhaseContent: `ngx.say(ngx.ctx.trace, " ", ngx.var.uri, " ", ngx.var.arg_a, " ", ngx.var.host, " ",
			ngx.var.remote_addr, " ", ngx.req.get_headers()["x-token"], " ", ngx.req.get_body_data())`,
		luaengine.PhaseHeaderFilter: `ngx.log(ngx.INFO, "header_filter")`,
		luaengine.PhaseBodyFilter:   `ngx.log(ngx.INFO, "body_filter")`,
		luaengine.PhaseLog:          `ngx.log(ngx.INFO, "log ", ngx.status)`,
	}, nil)
	resp := s.do("POST", "/t?a=1", "payload", "X-Token", "secret")
	s.expect(resp, 200, "rewrite,access /t 1 example.com 192.0.2.7 secret payload\n")
	if string(resp.Header.ContentType()) != "text/plain" {
		t.Fatalf("content type %q", resp.Header.ContentType())
	}
	s.expectEvents("header_filter:header_filter", "body_filter:body_filter", "log:log 200")
}

func TestWrappedHandler(t *testing.T) {
	s := newSite(t, map[luaengine.Phase]string{
		luaengine.PhaseAccess:       `if ngx.req.get_headers()["x-token"] ~= "secret" then return ngx.exit(403) end`,
		luaengine.PhaseHeaderFilter: `ngx.log(ngx.INFO, "header_filter") ngx.status = 202`,
		luaengine.PhaseBodyFilter:   `ngx.log(ngx.INFO, "body_filter")`,
		luaengine.PhaseLog:          `ngx.log(ngx.INFO, "log")`,
	}, nil)
	s.expect(s.do("GET", "/", "", "X-Token", "secret"), 202, "from next\n")
	s.expectEvents("next", "header_filter:header_filter", "body_filter:body_filter", "log:log")
	s.expect(s.do("GET", "/", "", "X-Token", "wrong"), 202, "403 Forbidden\n")
	s.expectEvents("header_filter:header_filter", "body_filter:body_filter", "log:log")
}

// ngx.exit(status ≥ 400) without output answers with the error page, which goes through the
// filters like any response.
func TestErrorPageFiltered(t *testing.T) {
	for _, c := range []struct {
		name    string
		sources map[luaengine.Phase]string
		status  int
		body    string
		header  string // X-Status the header_filter set, if it ran
	}{
		{"upper-cased", map[luaengine.Phase]string{
			luaengine.PhaseAccess:     `ngx.exit(403)`,
			luaengine.PhaseBodyFilter: `ngx.arg[1] = string.upper(ngx.arg[1])`,
		}, 403, "403 FORBIDDEN\n", ""},
		{"replaced", map[luaengine.Phase]string{
			luaengine.PhaseAccess:     `ngx.exit(403)`,
			luaengine.PhaseBodyFilter: `ngx.arg[1] = "denied " .. ngx.status .. "\n"`,
		}, 403, "denied 403\n", ""},
		{"header_filter", map[luaengine.Phase]string{
			luaengine.PhaseAccess:       `ngx.exit(403)`,
			luaengine.PhaseHeaderFilter: `ngx.header["X-Status"] = ngx.status`,
			luaengine.PhaseBodyFilter:   `ngx.arg[1] = string.upper(ngx.arg[1])`,
		}, 403, "403 FORBIDDEN\n", "403"},
		// A Lua answer with output is filtered as it was written.
		{"output", map[luaengine.Phase]string{
			luaengine.PhaseContent:    `ngx.status = 403 ngx.say("custom")`,
			luaengine.PhaseBodyFilter: `ngx.arg[1] = string.upper(ngx.arg[1])`,
		}, 403, "CUSTOM\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, c.sources, nil)
			resp := s.do("GET", "/", "")
			s.expect(resp, c.status, c.body)
			if got := string(resp.Header.Peek("X-Status")); got != c.header {
				t.Fatalf("X-Status %q", got)
			}
			s.expectEvents() // the wrapped handler never ran
		})
	}
}

func TestFailClosed(t *testing.T) {
	for _, phase := range []luaengine.Phase{luaengine.PhaseRewrite, luaengine.PhaseAccess, luaengine.PhaseHeaderFilter, luaengine.PhaseBodyFilter} {
		t.Run(phase.String(), func(t *testing.T) {
			s := newSite(t, map[luaengine.Phase]string{phase: `error("broken")`}, nil)
			resp := s.do("GET", "/", "")
			s.expect(resp, 500, "500 Internal Server Error\n")
			var le *luaengine.Error
			if len(s.errs) != 1 || !errors.As(s.errs[0], &le) || le.Phase != phase {
				t.Fatalf("errors %v", s.errs)
			}
			if phase == luaengine.PhaseRewrite || phase == luaengine.PhaseAccess {
				s.expectEvents() // the wrapped handler never ran
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s := newSite(t, map[luaengine.Phase]string{luaengine.PhaseContent: `ngx.say("x")`}, nil)
	s.expect(s.do("GET", "/", ""), 200, "x\n")
	s.m.Close()
	s.expect(s.do("GET", "/", ""), 503, "503 Service Unavailable\n")
}

// The wrapped handler sees the request as rewrite and access left it.
func TestRequestChanges(t *testing.T) {
	var seen string
	s := newSite(t, map[luaengine.Phase]string{
		luaengine.PhaseRewrite: `ngx.req.set_uri("/new") ngx.req.set_uri_args("b=2") ngx.req.set_method(ngx.HTTP_PUT)`,
		luaengine.PhaseAccess:  `ngx.req.set_header("X-Added", "1") ngx.req.clear_header("X-Drop") ngx.req.set_header("Host", "other.example")`,
	}, func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		seen = string(ctx.Method()) + " " + string(ctx.Path()) + "?" + string(ctx.QueryArgs().QueryString()) + " " +
			string(h.Host()) + " added=" + string(h.Peek("X-Added")) + " drop=" + string(h.Peek("X-Drop")) +
			" keep=" + string(h.Peek("X-Keep"))
	})
	s.do("GET", "/old?a=1", "", "X-Drop", "d", "X-Keep", "k")
	if want := "PUT /new?b=2 other.example added=1 drop= keep=k"; seen != want {
		t.Fatalf("the wrapped handler saw %q, want %q", seen, want)
	}
}

// A body scripts replaced is the wrapped handler's, with its Content-Length; otherwise the
// client's stays.
func TestBodyChanges(t *testing.T) {
	for _, c := range []struct{ name, access, want string }{
		{"set_body_data", `ngx.req.read_body() ngx.req.set_body_data("changed")`, "changed 7"},
		{"init_body", `ngx.req.read_body() ngx.req.init_body() ngx.req.append_body("new body!")
			ngx.req.finish_body()`, "new body! 9"},
		{"emptied", `ngx.req.read_body() ngx.req.set_body_data("")`, " 0"},
		{"read only", `ngx.req.read_body() assert(ngx.req.get_body_data() == "original")`, "original 8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t, map[luaengine.Phase]string{luaengine.PhaseAccess: c.access}, func(ctx *fasthttp.RequestCtx) {
				fmt.Fprintf(ctx, "%s %d", ctx.PostBody(), ctx.Request.Header.ContentLength())
			})
			s.expect(s.do("POST", "/", "original", "Content-Length", "8"), 200, c.want)
		})
	}
}

// The filters work on the wrapped handler's response through ngx.status, ngx.header, ngx.arg.
func TestFiltersOnHandlerResponse(t *testing.T) {
	s := newSite(t, map[luaengine.Phase]string{
		luaengine.PhaseHeaderFilter: `ngx.log(ngx.INFO, "status ", ngx.status, " ", ngx.header["X-Upstream"])
			ngx.header["X-Secret"] = nil ngx.header["X-Filtered"] = "yes" ngx.status = 299`,
		luaengine.PhaseBodyFilter: `ngx.arg[1] = string.upper(ngx.arg[1])`,
		luaengine.PhaseLog:        `ngx.log(ngx.INFO, "log ", ngx.status)`,
	}, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(201)
		ctx.Response.Header.Set("X-Upstream", "u")
		ctx.Response.Header.Set("X-Secret", "s")
		ctx.SetBodyString("from next\n")
	})
	resp := s.do("GET", "/", "")
	s.expect(resp, 299, "FROM NEXT\n")
	if string(resp.Header.Peek("X-Secret")) != "" || string(resp.Header.Peek("X-Filtered")) != "yes" ||
		string(resp.Header.Peek("X-Upstream")) != "u" {
		t.Fatalf("headers %s", resp.Header.String())
	}
	s.expectEvents("header_filter:status 201 u", "log:log 299")
}

// Scripts that wait park their goroutine: many at once take about one sleep.
func TestSleep(t *testing.T) {
	s := newSite(t, map[luaengine.Phase]string{
		luaengine.PhaseAccess:  `ngx.sleep(0.2)`,
		luaengine.PhaseContent: `ngx.sleep(0.1) ngx.say("slept ", ngx.var.arg_i)`,
	}, nil)
	started := time.Now()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := s.do("GET", fmt.Sprintf("/?i=%d", i), "")
			if want := fmt.Sprintf("slept %d\n", i); resp.StatusCode() != 200 || string(resp.Body()) != want {
				t.Errorf("got %d %q", resp.StatusCode(), resp.Body())
			}
		}()
	}
	wg.Wait()
	if elapsed := time.Since(started); elapsed > 3*time.Second {
		t.Fatalf("200 requests sleeping 300 ms took %v", elapsed)
	}
}
