package luaengine

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind (cleanups and cgo callbacks included).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newEngine(t testing.TB, config Config) *Engine {
	t.Helper()
	if config.Workers == 0 {
		config.Workers = 2
	}
	e, err := New(config)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func compile(t testing.TB, e *Engine, name, source string) *Script {
	t.Helper()
	s, err := e.Compile(name, source)
	if err != nil {
		t.Fatalf("Compile %s: %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// content runs one content script on a plain GET /t and returns its body.
func content(t testing.TB, e *Engine, source string) string {
	t.Helper()
	s := compile(t, e, "content", source)
	r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/t"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Run(PhaseContent, s); err != nil {
		t.Fatalf("content: %v", err)
	}
	return string(r.Response().Body)
}

// logs collects log records; safe for concurrent use.
type logs struct {
	mu      sync.Mutex
	records []LogRecord
}

func (l *logs) add(r LogRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
}

// messages returns "phase:message" for each record.
func (l *logs) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		out = append(out, r.Phase.String()+":"+r.Message)
	}
	return out
}

func TestVersion(t *testing.T) {
	if Version() == "" || (Backend() != "LuaJIT" && Backend() != "Lua 5.4") {
		t.Fatalf("version %q backend %q", Version(), Backend())
	}
	if ABIVersion() != HeaderABIVersion {
		t.Fatalf("library ABI %d, header ABI %d", ABIVersion(), HeaderABIVersion)
	}
}

func TestPhasesAndResponse(t *testing.T) {
	e := newEngine(t, Config{})
	access := compile(t, e, "access", `
		local h = ngx.req.get_headers()
		if h["x-token"] ~= "secret" then return ngx.exit(403) end
		ngx.ctx.user = "u1"`)
	body := compile(t, e, "content", `ngx.say("hello ", ngx.ctx.user, " ", ngx.var.uri, " ", ngx.var.arg_a)`)
	cases := []struct {
		token  string
		status Status
		want   Response
	}{
		{"secret", StatusDone, Response{Status: 200, HeadersSent: true, Body: []byte("hello u1 /t 1\n")}},
		{"wrong", StatusDone, Response{Status: 403, Exited: true, ExitCode: 403}},
	}
	for _, c := range cases {
		r, err := e.NewRequest(RequestInit{
			Method: "GET", Path: "/t", Query: "a=1",
			Headers: []Header{{"Host", "example.com"}, {"X-Token", c.token}},
		})
		if err != nil {
			t.Fatal(err)
		}
		status, err := r.Run(PhaseAccess, access)
		if err == nil && status == StatusOK {
			status, err = r.Run(PhaseContent, body)
		}
		if err != nil || status != c.status {
			t.Fatalf("token %s: status %v, err %v", c.token, status, err)
		}
		got := r.Response()
		if got.Status != c.want.Status || got.HeadersSent != c.want.HeadersSent || got.Exited != c.want.Exited ||
			got.ExitCode != c.want.ExitCode || string(got.Body) != string(c.want.Body) {
			t.Errorf("token %s: got %+v, want %+v", c.token, got, c.want)
		}
		if r.ID() == 0 {
			t.Error("request id is 0")
		}
		r.Close()
		r.Close() // idempotent
	}
}

func TestRedirectHeaders(t *testing.T) {
	e := newEngine(t, Config{})
	s := compile(t, e, "rewrite", `return ngx.redirect("/elsewhere", 301)`)
	r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/t"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if status, err := r.Run(PhaseRewrite, s); status != StatusDone || err != nil {
		t.Fatalf("status %v err %v", status, err)
	}
	resp := r.Response()
	if resp.Status != 301 || resp.Header("location") != "/elsewhere" {
		t.Fatalf("got %+v", resp)
	}
}

func TestErrors(t *testing.T) {
	e := newEngine(t, Config{InstructionBudget: 100000})
	_, err := e.Compile("broken", "local x = = 1")
	var le *Error
	if !errors.As(err, &le) || le.Code != CodeSyntax || le.Chunk != "broken" || le.Line != 1 {
		t.Fatalf("syntax error: %#v", err)
	}
	cases := []struct {
		source  string
		code    Code
		message string
	}{
		{"local a = 1\nerror('boom')", CodeRuntime, "content:2: boom"},
		{"while true do end", CodeBudget, ""},
		{"ngx.exit(ngx.ERROR)", CodeAborted, ""},
	}
	for _, c := range cases {
		s := compile(t, e, "content", c.source)
		r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/t"})
		if err != nil {
			t.Fatal(err)
		}
		status, err := r.Run(PhaseContent, s)
		r.Close()
		if status != StatusError || !errors.As(err, &le) || le.Code != c.code || le.Phase != PhaseContent {
			t.Fatalf("%q: status %v, error %#v", c.source, status, err)
		}
		if c.message != "" && (le.Message != c.message || le.Chunk != "content" || le.Line != 2 ||
			!strings.Contains(le.Traceback, "stack traceback")) {
			t.Errorf("%q: error %#v", c.source, le)
		}
	}
}

func TestLogCallback(t *testing.T) {
	var got logs
	e := newEngine(t, Config{Log: got.add, LogLevel: LogInfo})
	s := compile(t, e, "content", `ngx.log(ngx.ERR, "bad ", 42) ngx.log(ngx.DEBUG, "dropped")`)
	r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/t"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Run(PhaseContent, s); err != nil {
		t.Fatal(err)
	}
	if len(got.records) != 1 {
		t.Fatalf("records %+v", got.records)
	}
	rec := got.records[0]
	if rec.Level != LogErr || rec.Phase != PhaseContent || rec.Location != "content:1" ||
		!strings.Contains(rec.Message, "bad 42") || rec.RequestID != r.ID() {
		t.Fatalf("record %+v", rec)
	}
}

func TestStats(t *testing.T) {
	e := newEngine(t, Config{Workers: 3})
	content(t, e, `ngx.say("x")`)
	stats, err := e.Stats()
	if err != nil || stats.Workers != 3 || stats.PhasesRun != 1 || stats.ScriptsCompiled != 1 {
		t.Fatalf("stats %+v, %v", stats, err)
	}
	if e.Workers() != 3 {
		t.Fatalf("workers %d", e.Workers())
	}
	if _, err := e.WorkerStats(2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.WorkerStats(3); err == nil {
		t.Fatal("worker 3 of 3 has stats")
	}
}

func TestSharedDicts(t *testing.T) {
	e := newEngine(t, Config{SharedDicts: map[string]int{"cache": 1 << 20}})
	content(t, e, `ngx.shared.cache:set("k", "v")`)
	if got := content(t, e, `ngx.say(ngx.shared.cache:get("k"))`); got != "v\n" {
		t.Fatalf("got %q", got)
	}
}

func TestCompileFileAndReload(t *testing.T) {
	e := newEngine(t, Config{FileCheckInterval: 3600e9})
	path := filepath.Join(t.TempDir(), "content.lua")
	if err := os.WriteFile(path, []byte(`ngx.say("one")`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := e.CompileFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run := func() string {
		r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Run(PhaseContent, s); err != nil {
			t.Fatal(err)
		}
		return string(r.Response().Body)
	}
	if got := run(); got != "one\n" {
		t.Fatalf("got %q", got)
	}
	if err := os.WriteFile(path, []byte(`ngx.say("second")`), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Reload(); n != 1 || err != nil {
		t.Fatalf("reload: %d, %v", n, err)
	}
	if got := run(); got != "second\n" {
		t.Fatalf("got %q", got)
	}
	if _, err := e.CompileFile(filepath.Join(t.TempDir(), "missing.lua")); err == nil {
		t.Fatal("missing file compiled")
	}
}

func TestClosed(t *testing.T) {
	e, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Compile("content", `ngx.say("still here")`)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close()
	if _, err := e.NewRequest(RequestInit{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewRequest after Close: %v", err)
	}
	if _, err := e.Compile("x", "return"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Compile after Close: %v", err)
	}
	if _, err := e.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats after Close: %v", err)
	}
	// The request created before Close still runs; the engine goes when it is closed.
	if _, err := r.Run(PhaseContent, s); err != nil || string(r.Response().Body) != "still here\n" {
		t.Fatalf("run after engine Close: %v %q", err, r.Response().Body)
	}
	if e.state.freed.Load() {
		t.Fatal("engine freed under a live request")
	}
	r.Close()
	if !e.state.freed.Load() {
		t.Fatal("engine not freed after its last request")
	}
	s.Close()
	if _, err := r.Run(PhaseContent, s); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run on a closed request: %v", err)
	}
}

// Requests and engines nobody closed are freed by the GC (a safety net, not the API).
func TestForgottenHandlesAreFreed(t *testing.T) {
	state := func() *engineState {
		e, err := New(Config{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.Compile("forgotten", "return"); err != nil {
			t.Fatal(err)
		}
		return e.state
	}()
	for i := 0; i < 100 && !state.freed.Load(); i++ {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if !state.freed.Load() {
		t.Fatal("a forgotten engine was never freed")
	}
}
