package luaengine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// init runs in every worker's state, init_worker once per worker, where timers start; a timer
// callback may call async Go functions.
func TestInitPhasesAndTimers(t *testing.T) {
	dir := t.TempDir()
	initFile := filepath.Join(dir, "init.lua")
	if err := os.WriteFile(initFile, []byte(`greeting = "hi"`), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 2)
	e := newEngine(t, Config{
		Workers:     2,
		SharedDicts: map[string]int{"d": 1 << 16},
		InitFile:    initFile,
		InitWorker: `
			ngx.shared.d:incr("workers", 1, 0)
			ngx.timer.at(0, function(premature)
				if premature then return end
				local ok, v = pcall(require("host").lookup, "k")
				ngx.shared.d:set("timer", tostring(ok) .. " " .. tostring(v))
				require("host").report("reported")
			end)`,
		AsyncFunctions: map[string]HostFunc{
			"lookup": func(c *Call) ([]any, error) {
				time.Sleep(time.Millisecond)
				return []any{"value of " + c.Args[0].(string)}, nil
			},
			"report": func(c *Call) ([]any, error) {
				done <- c.Args[0].(string)
				return nil, nil
			},
		},
	})
	for range 2 {
		<-done
	}
	got := content(t, e, `ngx.say(greeting, " ", ngx.shared.d:get("workers"), " ", ngx.shared.d:get("timer"))`)
	if got != "hi 2 true value of k\n" {
		t.Fatalf("got %q", got)
	}
	content(t, e, `ngx.timer.at(3600, function() end)`)
	pending := 0
	for i := range e.Workers() {
		s, err := e.WorkerStats(i)
		if err != nil {
			t.Fatal(err)
		}
		pending += s.PendingTimers
	}
	if pending != 1 {
		t.Fatalf("%d pending timers", pending)
	}
}

func TestInitFailureFailsNew(t *testing.T) {
	for _, c := range []Config{
		{Init: `error("no init")`},
		{InitWorker: `local x = nil; x.y = 1`},
		{InitFile: filepath.Join(t.TempDir(), "missing.lua")},
	} {
		c.Log = func(LogRecord) {}
		e, err := New(c)
		if err == nil {
			e.Close()
			t.Fatalf("New(%+v) succeeded", c)
		}
		if le := (*Error)(nil); !errors.As(err, &le) {
			t.Fatalf("New(%+v): %v", c, err)
		}
	}
}

// runContent runs lua as the content phase of a GET / on an engine built from c (logging
// nowhere); it returns the response's Content-Type and the run's error.
func runContent(t *testing.T, c Config, lua string) (string, error) {
	c.Log = func(LogRecord) {}
	e := newEngine(t, c)
	s := compile(t, e, "content", lua)
	r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Run(PhaseContent, s)
	resp := r.Response()
	return resp.Header("Content-Type"), err
}

func TestDefaultTypeAndTimeBudget(t *testing.T) {
	contentType := func(c Config, lua string) (string, error) { return runContent(t, c, lua) }
	for _, c := range []struct {
		config Config
		want   string
	}{
		{Config{}, "text/plain"},
		{Config{DefaultType: "application/json"}, "application/json"},
		{Config{NoDefaultType: true}, ""},
	} {
		if got, err := contentType(c.config, `ngx.say("x")`); got != c.want || err != nil {
			t.Errorf("%+v: Content-Type %q (%v), want %q", c.config, got, err, c.want)
		}
	}
	_, err := contentType(Config{TimeBudget: 20 * time.Millisecond}, `while true do end`)
	var le *Error
	if !errors.As(err, &le) || le.Code != CodeBudget || !strings.Contains(le.Message, "budget") {
		t.Fatalf("busy loop under a time budget: %v", err)
	}
}

// Limits are on unless the host turns them off: a zero Config stops an allocation bomb at the
// engine's default cap, and NoLimit lets a long loop finish.
func TestLimitsOnByDefault(t *testing.T) {
	run := func(c Config, lua string) error {
		_, err := runContent(t, c, lua)
		return err
	}
	var le *Error
	if err := run(Config{Workers: 1}, `local s = 'x' while true do s = s .. s end`); !errors.As(err, &le) || le.Code != CodeMemory {
		t.Fatalf("bomb in a default engine: %v", err)
	}
	if err := run(Config{Workers: 1, TimeBudget: 20 * time.Millisecond}, `local x = 0 while true do x = x + 1 end`); !errors.As(err, &le) || le.Code != CodeBudget {
		t.Fatalf("runaway under a 20ms budget: %v", err)
	}
	if err := run(Config{Workers: 1, TimeBudget: NoLimit, MemoryLimit: NoLimit}, `local t = {} for i = 1, 1e6 do t[i] = i end`); err != nil {
		t.Fatalf("no limits: %v", err)
	}
	if _, err := New(Config{MemoryLimit: -2}); err == nil {
		t.Fatal("a negative MemoryLimit other than NoLimit is refused")
	}
}

// Shutdown stops a runaway script that no budget would stop, and later runs fail at once.
func TestShutdownStopsRunawayScripts(t *testing.T) {
	e := newEngine(t, Config{Workers: 1, TimeBudget: NoLimit, Log: func(LogRecord) {}})
	s := compile(t, e, "content", `local x = 0 while true do x = x + 1 end`)
	run := func() error {
		r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = r.Run(PhaseContent, s)
		return err
	}
	done := make(chan error, 1)
	go func() { done <- run() }()
	time.Sleep(100 * time.Millisecond)
	e.Shutdown()
	var le *Error
	select {
	case err := <-done:
		if !errors.As(err, &le) || le.Code != CodeBudget {
			t.Fatalf("the runaway ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the runaway still runs 5s after Shutdown")
	}
	if err := run(); !errors.As(err, &le) || le.Code != CodeBudget {
		t.Fatalf("a run after Shutdown: %v", err)
	}
}
