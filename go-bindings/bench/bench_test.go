package bench

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	luaengine "github.com/libluaengine/luaengine/go-bindings"
)

// The three cases of the issue, as (access, content) sources; access may be empty.
const (
	hello       = `ngx.say("hello")`
	authAccess  = `local h = ngx.req.get_headers() if h["x-token"] ~= "secret" then return ngx.exit(403) end ngx.ctx.user = "u1"`
	authContent = `ngx.say("hello ", ngx.ctx.user, " ", ngx.var.uri)`
)

// fib defines fib inside the phase script, so every request makes a new fib closure. LuaJIT
// specializes its traces to the closure it recorded, so such a script runs at interpreter speed
// from the second request on; lua-nginx-module behaves the same.
func fib(n int) string {
	return fmt.Sprintf(`local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end ngx.say(fib(%d))`, n)
}

// fibModule calls testdata/lua/fib.lua's fib, made once per Lua state, as OpenResty users
// write hot code.
func fibModule(n int) string {
	return fmt.Sprintf(`ngx.say(require("fib")(%d))`, n)
}

// packagePath is where every implementation's require finds testdata/lua/fib.lua.
var packagePath = func() string {
	dir, err := filepath.Abs(filepath.Join("testdata", "lua"))
	if err != nil {
		panic(err)
	}
	return filepath.Join(dir, "?.lua")
}()

type benchCase struct {
	name            string
	access, content string
	body            string // what a request with the right token gets
}

var cases = []benchCase{
	{"hello", "", hello, "hello\n"},
	{"auth", authAccess, authContent, "hello u1 /t\n"},
	{"fib27", "", fibModule(27), "196418\n"},
	{"fib27-inline", "", fib(27), "196418\n"},
}

// implementation builds a handler answering the case's scripts.
type implementation struct {
	name  string
	build func(tb testing.TB, access, content string) http.Handler
}

var implementations = []implementation{
	{"luaengine", buildLuaengine},
	{"gopher-lua pooled", buildGopher(func(s ...string) (http.Handler, error) { return NewPooled(packagePath, s...) })},
	{"gopher-lua rebuilt", buildGopher(func(s ...string) (http.Handler, error) { return NewRebuilt(packagePath, s...) })},
}

func buildLuaengine(tb testing.TB, access, content string) http.Handler {
	e, err := luaengine.New(luaengine.Config{PackagePath: []string{packagePath}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	var phases luaengine.Phases
	if access != "" {
		if phases.Access, err = e.Compile("access", access); err != nil {
			tb.Fatal(err)
		}
	}
	if phases.Content, err = e.Compile("content", content); err != nil {
		tb.Fatal(err)
	}
	m, err := luaengine.NewMiddleware(e, luaengine.MiddlewareConfig{Phases: phases})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m.Wrap(nil)
}

func buildGopher(build func(sources ...string) (http.Handler, error)) func(testing.TB, string, string) http.Handler {
	return func(tb testing.TB, access, content string) http.Handler {
		sources := []string{content}
		if access != "" {
			sources = []string{access, content}
		}
		h, err := build(sources...)
		if err != nil {
			tb.Fatal(err)
		}
		return h
	}
}

// benchRequest is the request every implementation serves: GET /t?a=1 with 8 headers.
func benchRequest(token string) *http.Request {
	r := httptest.NewRequest("GET", "http://example.com/t?a=1", nil)
	for _, h := range [][2]string{
		{"User-Agent", "bench/1.0"}, {"Accept", "*/*"}, {"Accept-Encoding", "gzip, deflate"},
		{"Connection", "keep-alive"}, {"X-Token", token}, {"X-Request-Id", "0123456789abcdef"},
		{"Cookie", "sid=abc; theme=dark"},
	} {
		r.Header.Set(h[0], h[1])
	}
	return r
}

// discard is a ResponseWriter that keeps only what the tests check, allocating nothing.
type discard struct {
	header http.Header
	status int
	body   []byte
}

func (w *discard) Header() http.Header         { return w.header }
func (w *discard) WriteHeader(status int)      { w.status = status }
func (w *discard) Write(p []byte) (int, error) { w.body = append(w.body, p...); return len(p), nil }

func (w *discard) reset() {
	clear(w.header)
	w.status, w.body = 0, w.body[:0]
}

func serve(h http.Handler, r *http.Request) (int, string) {
	w := &discard{header: http.Header{}}
	h.ServeHTTP(w, r)
	return w.status, string(w.body)
}

// Every implementation answers the same way: the comparison measures equal work.
func TestSameAnswers(t *testing.T) {
	checks := []struct {
		access, content, token string
		status                 int
		body                   string
	}{
		{"", hello, "secret", 200, "hello\n"},
		{authAccess, authContent, "secret", 200, "hello u1 /t\n"},
		{authAccess, authContent, "wrong", 403, "403 Forbidden\n"},
		{"", fib(20), "secret", 200, "6765\n"},
		{"", fibModule(20), "secret", 200, "6765\n"},
	}
	for _, impl := range implementations {
		for _, c := range checks {
			h := impl.build(t, c.access, c.content)
			if status, body := serve(h, benchRequest(c.token)); status != c.status || body != c.body {
				t.Errorf("%s, %q token %s: %d %q, want %d %q", impl.name, c.content, c.token, status, body, c.status, c.body)
			}
		}
	}
}

func BenchmarkRequest(b *testing.B) {
	for _, c := range cases {
		for _, impl := range implementations {
			b.Run(c.name+"/"+strings.ReplaceAll(impl.name, " ", "_"), func(b *testing.B) {
				run(b, impl.build(b, c.access, c.content), c.body)
			})
		}
	}
}

func run(b *testing.B, h http.Handler, want string) {
	r := benchRequest("secret")
	w := &discard{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, r)
	}
	if string(w.body) != want {
		b.Fatalf("body %q, want %q", w.body, want)
	}
}

var (
	compare = flag.Bool("compare", false, "run TestCompare: every case through every implementation, with ratios")
	rounds  = flag.Int("rounds", 3, "TestCompare: rounds per measurement; the cheapest counts")
)

// TestCompare prints the cost per request of every case through every implementation, and
// the ratios to luaengine, measured in one run: go test -run TestCompare -compare -v
//
// Ratios use CPU time per request (the process's user+system time, GC included), which other
// programs on a busy machine do not inflate the way they inflate wall time; wall time is
// printed too. The implementations take turns round after round and each keeps its cheapest
// round.
func TestCompare(t *testing.T) {
	if !*compare {
		t.Skip("pass -compare to run the comparison")
	}
	t.Logf("backend %s, library %s, GOMAXPROCS %d, best of %d rounds", luaengine.Backend(), luaengine.Version(),
		runtime.GOMAXPROCS(0), *rounds)
	t.Logf("%-12s %-20s %12s %12s %10s %8s", "case", "implementation", "cpu ns/op", "wall ns/op", "allocs/op", "ratio")
	for _, c := range cases {
		handlers := make([]http.Handler, len(implementations))
		for i, impl := range implementations {
			handlers[i] = impl.build(t, c.access, c.content)
		}
		best := make([]cost, len(implementations))
		for range *rounds {
			for i, h := range handlers {
				if m := measure(t, h, c.body); best[i].cpu == 0 || m.cpu < best[i].cpu {
					best[i] = m
				}
			}
		}
		for i, impl := range implementations {
			t.Logf("%-12s %-20s %12.0f %12.0f %10.0f %7.1fx", c.name, impl.name, best[i].cpu, best[i].wall,
				best[i].allocs, best[i].cpu/best[0].cpu)
		}
	}
}

// cost is what one request costs on average.
type cost struct {
	cpu, wall, allocs float64
}

// measure serves the benchmark request about half a second's worth of times.
func measure(t *testing.T, h http.Handler, want string) cost {
	r := benchRequest("secret")
	w := &discard{header: http.Header{}}
	loop := func(n int) time.Duration {
		start := time.Now()
		for range n {
			w.reset()
			h.ServeHTTP(w, r)
		}
		return time.Since(start)
	}
	n := 1
	for elapsed := loop(n); elapsed < 50*time.Millisecond; elapsed = loop(n) {
		n *= 2
	}
	n *= 10
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := cpuTime(t)
	wall := loop(n)
	cpu = cpuTime(t) - cpu
	runtime.ReadMemStats(&after)
	if string(w.body) != want {
		t.Fatalf("body %q, want %q", w.body, want)
	}
	return cost{
		cpu:    float64(cpu.Nanoseconds()) / float64(n),
		wall:   float64(wall.Nanoseconds()) / float64(n),
		allocs: float64(after.Mallocs-before.Mallocs) / float64(n),
	}
}

// cpuTime is the user and system time the process has used.
func cpuTime(t *testing.T) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		t.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
