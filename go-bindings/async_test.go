package luaengine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// osThreads is the process's OS thread count now (Linux), or -1.
func osThreads() int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return -1
}

// 1,000 requests sleep at once in content: each parks its goroutine, not an OS thread, so the
// whole run takes about one sleep, and the process gains only a handful of threads.
func TestSleepThousandRequests(t *testing.T) {
	const requests, sleep = 1000, 300 * time.Millisecond
	s := newSite(t, phaseSources{
		content: fmt.Sprintf(`ngx.sleep(%g) ngx.say("slept ", ngx.var.arg_i)`, sleep.Seconds()),
	}, MiddlewareConfig{}, nil)
	s.expect(s.get("/?i=warm"), 200, "slept warm\n") // the engine's clock thread, started once

	threadsBefore, createdBefore := osThreads(), pprof.Lookup("threadcreate").Count()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // samples the thread count while the requests sleep
		defer close(sampled)
		for {
			if n := int64(osThreads()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	started := time.Now()
	var wg sync.WaitGroup
	failures := make(chan string, requests)
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := s.get(fmt.Sprintf("/?i=%d", i))
			if want := fmt.Sprintf("slept %d\n", i); w.Code != 200 || w.Body.String() != want {
				failures <- fmt.Sprintf("%d %q", w.Code, w.Body.String())
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	close(stop)
	<-sampled
	close(failures)
	for f := range failures {
		t.Fatalf("a request got %s", f)
	}
	created := pprof.Lookup("threadcreate").Count() - createdBefore
	t.Logf("%d requests sleeping %v: %v wall time; OS threads %d before, %d at most, %d created",
		requests, sleep, elapsed.Round(time.Millisecond), threadsBefore, peak.Load(), created)
	// Serially they would take 1000 × 300 ms; even one thread per sleeping request would show.
	if elapsed > 10*sleep {
		t.Errorf("wall time %v for %d concurrent sleeps of %v", elapsed, requests, sleep)
	}
	if int(peak.Load())-threadsBefore > 64 || created > 64 {
		t.Errorf("%d requests sleeping took OS threads: %d before, %d at most, %d created",
			requests, threadsBefore, peak.Load(), created)
	}
}

func TestSleepInEveryRequestPhase(t *testing.T) {
	s := newSite(t, phaseSources{
		rewrite: `ngx.sleep(0.001) ngx.ctx.trace = "rewrite"`,
		access:  `ngx.sleep(0) ngx.ctx.trace = ngx.ctx.trace .. ",access"`,
		content: `ngx.sleep(0.002) ngx.say(ngx.ctx.trace, ",content")`,
		log:     `ngx.log(ngx.INFO, "log ", ngx.ctx.trace)`,
	}, MiddlewareConfig{}, nil)
	for range 20 {
		s.expect(s.get("/"), 200, "rewrite,access,content\n")
	}
	// A sleep before the wrapped handler runs.
	s = newSite(t, phaseSources{access: `ngx.sleep(0.001) ngx.req.set_header("X-Slept", "yes")`}, MiddlewareConfig{},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "next", r.Header.Get("X-Slept")) }))
	s.expect(s.get("/"), 200, "next yes\n")
}

// asyncEngine has async host functions: "fetch" answers after a delay, "fail" returns an
// error, "block" waits for its context to end, "panic" panics.
func asyncEngine(t *testing.T, blocked chan<- struct{}, released *atomic.Int32) *Engine {
	return newEngine(t, Config{
		Log: func(LogRecord) {},
		AsyncFunctions: map[string]HostFunc{
			"fetch": func(c *Call) ([]any, error) {
				delay, _ := c.Args[1].(int64)
				time.Sleep(time.Duration(delay) * time.Millisecond)
				return []any{map[string]any{"key": c.Args[0], "request": c.RequestID > 0}, "second"}, nil
			},
			"fail": func(c *Call) ([]any, error) {
				return nil, fmt.Errorf("no such key %v", c.Args[0])
			},
			"block": func(c *Call) ([]any, error) {
				blocked <- struct{}{}
				<-c.Context().Done()
				released.Add(1)
				return nil, c.Context().Err()
			},
			"panic": func(*Call) ([]any, error) { panic("boom") },
		},
		Functions: map[string]HostFunc{
			"sync": func(c *Call) ([]any, error) { return []any{"sync ok"}, nil },
		},
	})
}

func TestAsyncHostFunctions(t *testing.T) {
	e := asyncEngine(t, nil, nil)
	cases := []struct{ lua, want string }{
		{`local v, s = require("host").fetch("a", 5) ngx.say(v.key, " ", tostring(v.request), " ", s)`, "a true second\n"},
		{`local ok, err = pcall(require("host").fail, "k") ngx.say(ok, " ", err)`, "false no such key k\n"},
		{`local ok, err = pcall(require("host").panic) ngx.say(ok, " ", err)`,
			"false host function 'panic' panicked: boom\n"},
		// Mixed with a sync function and a sleep.
		{`local a = require("host").sync() ngx.sleep(0.001) local b = require("host").fetch("b", 1) ngx.say(a, " ", b.key)`,
			"sync ok b\n"},
		// Two light threads wait on async calls at once: about one delay, not two.
		{`local t0 = ngx.now()
		  local h = require("host")
		  local t1 = ngx.thread.spawn(function() return h.fetch("x", 100).key end)
		  local t2 = ngx.thread.spawn(function() return h.fetch("y", 100).key end)
		  local _, x = ngx.thread.wait(t1)
		  local _, y = ngx.thread.wait(t2)
		  ngx.update_time()
		  ngx.say(x, y, " ", ngx.now() - t0 < 0.19)`, "xy true\n"},
	}
	for _, c := range cases {
		if got := content(t, e, c.lua); got != c.want {
			t.Errorf("%s\n got %q\nwant %q", c.lua, got, c.want)
		}
	}
	// (The engine raises an async call's error as it is, without the caller's chunk:line.)
	// An uncaught failure fails the phase with the Lua error.
	s := compile(t, e, "content", `require("host").fail("x")`)
	r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Run(PhaseContent, s)
	var le *Error
	if !errors.As(err, &le) || le.Phase != PhaseContent || !strings.Contains(le.Message, "no such key x") {
		t.Fatalf("error %#v", err)
	}
}

func TestAsyncConfigErrors(t *testing.T) {
	fn := func(*Call) ([]any, error) { return nil, nil }
	for _, c := range []Config{
		{Functions: map[string]HostFunc{"f": fn}, AsyncFunctions: map[string]HostFunc{"f": fn}},
		{AsyncFunctions: map[string]HostFunc{"f": nil}},
	} {
		if e, err := New(c); err == nil {
			e.Close()
			t.Errorf("New(%v) succeeded", c)
		}
	}
}

// Cancelling the request's context frees a waiting request: sleeping, or waiting for an async
// call, whose context is cancelled too.
func TestCancelWaitingRequest(t *testing.T) {
	blocked := make(chan struct{}, 1)
	var released atomic.Int32
	e := asyncEngine(t, blocked, &released)
	for _, c := range []struct {
		name, lua string
		started   <-chan struct{}
	}{
		{"sleep", `ngx.sleep(30)`, nil},
		{"async", `require("host").block()`, blocked},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := e.NewPipeline(Phases{
				Access: compile(t, e, "access", c.lua),
				Log:    compile(t, e, "log", `ngx.log(ngx.ERR, "log ran")`),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				if c.started != nil {
					<-c.started
				} else {
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
			}()
			started := time.Now()
			x, err := p.Begin(ctx, RequestInit{Method: "GET", Path: "/"})
			if err != nil {
				t.Fatal(err)
			}
			var le *Error
			if !errors.Is(x.Err(), context.Canceled) || !errors.As(x.Err(), &le) || le.Phase != PhaseAccess {
				t.Fatalf("error %#v", x.Err())
			}
			if err := x.Finish(); err != nil {
				t.Fatal(err)
			}
			if time.Since(started) > 5*time.Second {
				t.Fatalf("cancelling took %v", time.Since(started))
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); released.Load() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the async call's context was not cancelled")
		}
	}

	// Through the middleware: the client goes away (503, the handler never runs).
	m, err := NewMiddleware(e, MiddlewareConfig{
		Phases:   Phases{Access: compile(t, e, "access", `ngx.sleep(30)`)},
		ErrorLog: func(*http.Request, error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	w := httptest.NewRecorder()
	m.Wrap(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
	if w.Code != 503 {
		t.Fatalf("cancelled request answered %d", w.Code)
	}
}

// A call a light thread still waits on when the phase ends (ngx.exit kills the thread) is not
// wanted any more: its context is cancelled.
func TestAbandonedAsyncCall(t *testing.T) {
	blocked := make(chan struct{}, 1)
	var released atomic.Int32
	e := asyncEngine(t, blocked, &released)
	got := content(t, e, `ngx.thread.spawn(function() require("host").block() end) ngx.sleep(0.01) ngx.say("main done") ngx.exit(ngx.OK)`)
	if got != "main done\n" {
		t.Fatalf("got %q", got)
	}
	<-blocked
	for deadline := time.Now().Add(5 * time.Second); released.Load() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned call's context was not cancelled")
		}
	}
}

// The Request API waits too, and a cancelled request refuses further runs.
func TestRequestRunContext(t *testing.T) {
	e := newEngine(t, Config{Log: func(LogRecord) {}})
	sleepy := compile(t, e, "content", `ngx.sleep(0.01) ngx.req.read_body() ngx.say("body ", ngx.req.get_body_data())`)
	r, err := e.NewRequest(RequestInit{Method: "POST", Path: "/", BodyReader: strings.NewReader("from a reader")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if status, err := r.Run(PhaseContent, sleepy); err != nil || status != StatusDone {
		t.Fatalf("Run: %v %v", status, err)
	}
	if body := string(r.Response().Body); body != "body from a reader\n" {
		t.Fatalf("body %q", body)
	}

	r2, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	long := compile(t, e, "content", `ngx.ctx.seen = "content" ngx.say("partial") ngx.sleep(30)`)
	if _, err := r2.RunContext(ctx, PhaseContent, long); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunContext: %v", err)
	}
	// The phase was cancelled, not the request: what it did stays, and log runs.
	if body := string(r2.Response().Body); body != "partial\n" {
		t.Fatalf("body after the cancel %q", body)
	}
	logged := compile(t, e, "log", `assert(ngx.ctx.seen == "content")`)
	if status, err := r2.Run(PhaseLog, logged); err != nil || status != StatusOK {
		t.Fatalf("log after the cancel: %v %v", status, err)
	}
}

// A plain coroutine.yield() in rewrite, access or content is resumed from the event loop, as
// lua-nginx-module resumes it, however many times the phase yields.
func TestPlainYields(t *testing.T) {
	s := newSite(t, phaseSources{content: `for i = 1, 3 do coroutine.yield() end ngx.say("ok")`}, MiddlewareConfig{}, nil)
	s.expect(s.get("/"), 200, "ok\n")
	s = newSite(t, phaseSources{
		rewrite: `coroutine.yield() ngx.ctx.trace = "rewrite"`,
		access:  `for _ = 1, 2 do coroutine.yield() end ngx.ctx.trace = ngx.ctx.trace .. ",access"`,
		content: `for _ = 1, 5 do coroutine.yield() ngx.sleep(0) end ngx.say(ngx.ctx.trace, ",content")`,
	}, MiddlewareConfig{}, nil)
	for range 20 {
		s.expect(s.get("/"), 200, "rewrite,access,content\n")
	}
	// The Request API too.
	e := newEngine(t, Config{})
	if got := content(t, e, `for i = 1, 3 do coroutine.yield() end ngx.say("ok")`); got != "ok\n" {
		t.Fatalf("got %q", got)
	}
}

// The client goes away while content sleeps: the middleware answers 503 as before, and the
// log phase still runs, on what content did before it waited (lua_check_client_abort).
func TestCancelledRequestRunsLog(t *testing.T) {
	s := newSite(t, phaseSources{
		content: `ngx.ctx.seen = "content" ngx.sleep(10) ngx.ctx.seen = "woke"`,
		log:     `ngx.log(ngx.INFO, "log after ", ngx.ctx.seen)`,
	}, MiddlewareConfig{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	w := httptest.NewRecorder()
	started := time.Now()
	s.handler.ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Fatalf("cancelling took %v", elapsed)
	}
	s.expect(w, 503, "503 Service Unavailable\n")
	s.expectEvents("log:log after content")
	if le := s.phaseError(); le.Phase != PhaseContent || !errors.Is(le, context.DeadlineExceeded) {
		t.Fatalf("error %#v", le)
	}
}

// Closing the engine, the scripts and the middleware while requests sleep: those finish
// normally, new ones get 503, and nothing leaks (TestMain checks goroutines).
func TestCloseWithSleepingRequests(t *testing.T) {
	const sleeping = 50
	var asleep sync.WaitGroup
	asleep.Add(sleeping)
	e, err := New(Config{Workers: 2, Log: func(r LogRecord) {
		if r.Message == "going to sleep" {
			asleep.Done()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	content, err := e.Compile("content", `ngx.log(ngx.INFO, "going to sleep") ngx.sleep(0.1) ngx.say("woke ", ngx.var.uri)`)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMiddleware(e, MiddlewareConfig{Phases: Phases{Content: content}, ErrorLog: func(*http.Request, error) {}})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Wrap(nil)
	var wg sync.WaitGroup
	results := make([]*httptest.ResponseRecorder, sleeping)
	for i := range sleeping {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = httptest.NewRecorder()
			h.ServeHTTP(results[i], httptest.NewRequest("GET", fmt.Sprintf("/r%d", i), nil))
		}()
	}
	asleep.Wait()
	m.Close()
	content.Close()
	e.Close()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/late", nil))
	if w.Code != 503 {
		t.Fatalf("a request after Close answered %d", w.Code)
	}
	wg.Wait()
	for i, w := range results {
		if want := fmt.Sprintf("woke /r%d\n", i); w.Code != 200 || w.Body.String() != want {
			t.Fatalf("request %d: %d %q", i, w.Code, w.Body.String())
		}
	}
}
