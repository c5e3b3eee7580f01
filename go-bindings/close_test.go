package luaengine

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Requests in flight when the engine, its scripts and the middleware are closed finish
// normally; later requests get 503; the engine's memory goes with the last request.
func TestCloseWithRequestsInFlight(t *testing.T) {
	const inFlight = 8
	entered := make(chan struct{}, inFlight)
	release := make(chan struct{})
	e, err := New(Config{Workers: inFlight, Functions: map[string]HostFunc{
		"wait": func(*Call) ([]any, error) {
			entered <- struct{}{}
			<-release
			return []any{"done"}, nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	access, err := e.Compile("access", `ngx.ctx.v = require("host").wait()`)
	if err != nil {
		t.Fatal(err)
	}
	content, err := e.Compile("content", `ngx.say(ngx.ctx.v, " ", ngx.var.uri)`)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMiddleware(e, MiddlewareConfig{
		Phases:   Phases{Access: access, Content: content},
		ErrorLog: func(*http.Request, error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Wrap(nil)
	serve := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}

	var wg sync.WaitGroup
	results := make([]*httptest.ResponseRecorder, inFlight)
	for i := range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = serve(fmt.Sprintf("/r%d", i))
		}()
	}
	for range inFlight {
		<-entered
	}
	// Everything is closed while every request waits inside its access phase.
	m.Close()
	access.Close()
	content.Close()
	e.Close()
	if w := serve("/late"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("a request after Close got %d", w.Code)
	}
	if e.state.freed.Load() {
		t.Fatal("engine freed while requests are in flight")
	}
	close(release)
	wg.Wait()
	for i, w := range results {
		if want := fmt.Sprintf("done /r%d\n", i); w.Code != 200 || w.Body.String() != want {
			t.Errorf("request %d: %d %q", i, w.Code, w.Body.String())
		}
	}
	if !e.state.freed.Load() {
		t.Fatal("engine not freed after the last request")
	}
}

// Many goroutines through one middleware, with host functions and the log sink: run under
// -race, this checks the bindings share nothing unsynchronized.
func TestConcurrentRequests(t *testing.T) {
	var mu sync.Mutex
	counted := 0
	e := newEngine(t, Config{
		Functions: map[string]HostFunc{
			"count": func(c *Call) ([]any, error) {
				mu.Lock()
				defer mu.Unlock()
				counted++
				return []any{c.Args[0]}, nil
			},
		},
		Log: func(LogRecord) {},
	})
	m, err := NewMiddleware(e, MiddlewareConfig{Phases: Phases{
		Access:  compile(t, e, "access", `ngx.ctx.n = require("host").count(ngx.var.arg_n)`),
		Content: compile(t, e, "content", `ngx.say(ngx.ctx.n)`),
		Log:     compile(t, e, "log", `ngx.log(ngx.INFO, "done ", ngx.ctx.n)`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := m.Wrap(nil)
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := fmt.Sprint(g*each + i)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", "/?n="+n, nil))
				if body, _ := io.ReadAll(w.Body); string(body) != n+"\n" {
					t.Errorf("got %q for %s", body, n)
					return
				}
			}
		}()
	}
	wg.Wait()
	if counted != goroutines*each {
		t.Fatalf("host function called %d times", counted)
	}
}
