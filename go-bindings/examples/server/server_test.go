package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	luaengine "github.com/libluaengine/luaengine/go-bindings"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serveSite serves the site config at path on a loopback port until the test ends.
func serveSite(t *testing.T, path string, log func(luaengine.LogRecord)) *httptest.Server {
	t.Helper()
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	site, err := NewSite(c, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(site)
	t.Cleanup(func() {
		srv.Close()
		site.Close()
	})
	return srv
}

// writeConfig writes a site config into the test's folder and returns its path.
func writeConfig(t *testing.T, json string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "site.json")
	if err := os.WriteFile(path, []byte(json), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The demo site over real HTTP on a loopback port.
func TestDemoSite(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	srv := serveSite(t, "site/site.json", func(r luaengine.LogRecord) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, r.Message)
	})
	cases := []struct {
		method, path, token, body string
		status                    int
		contentType, want         string
	}{
		{"GET", "/", "", "", 200, "text/plain", "luaengine demo: /hello /old /private/ /counter /api/echo /sleep /static/\n"},
		{"GET", "/hello?name=go", "", "", 200, "text/plain", "hello, go\n"},
		{"GET", "/hello/x", "", "", 404, "text/plain", "404 Not Found\n"},
		{"GET", "/old?name=jump", "", "", 200, "text/plain", "hello, jump\n"},
		{"GET", "/private/doc?user=ann", "secret", "", 200, "text/plain", "welcome ann to /private/doc\n"},
		{"GET", "/private/doc", "wrong", "", 403, "text/plain", "403 Forbidden\n"},
		{"GET", "/sleep?ms=150", "", "", 200, "text/plain", "slept 150 ms\n"},
		{"GET", "/counter", "", "", 200, "text/plain", "hits: 1, ticks > 0: true\n"},
		{"GET", "/counter", "", "", 200, "text/plain", "hits: 2, ticks > 0: true\n"},
		{"POST", "/api/echo?x=1", "", "a=b", 200, "text/plain",
			`{"args":"x=1","body":"a=b","method":"POST","uri":"/api/echo"}` + "\n"},
		{"POST", "/api/echo", "", strings.Repeat("x", 65*1024), 413, "text/plain; charset=utf-8", "413 Request Entity Too Large\n"},
		{"GET", "/static/page", "", "", 200, "text/html", "<p>static page</p>\n<!-- 200 -->\n"},
		{"GET", "/static/page?teapot=1", "", "", 418, "text/html", "<p>static page</p>\n<!-- 418 -->\n"},
		{"GET", "/nowhere", "", "", 404, "text/plain", "404 Not Found\n"},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.token != "" {
			req.Header.Set("X-Token", tc.token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || string(body) != tc.want || resp.Header.Get("Content-Type") != tc.contentType {
			t.Errorf("%s %s: %d %q %q, want %d %q %q", tc.method, tc.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), body, tc.status, tc.contentType, tc.want)
		}
		if strings.HasPrefix(tc.path, "/static/") && (resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Internal") != "") {
			t.Errorf("%s: header_filter did not run: %v", tc.path, resp.Header)
		}
	}

	// Sleeping requests hold no thread: 200 at once take about one sleep.
	started := time.Now()
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := srv.Client().Get(srv.URL + "/sleep?ms=300")
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "slept 300 ms\n" || resp.Header.Get("X-Slept-Ms") != "300" {
				t.Errorf("/sleep: %d %q", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Errorf("200 concurrent sleeps of 300 ms took %v", elapsed)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(logged, "\n"), "said hello to go with status 200") ||
		!strings.Contains(strings.Join(logged, "\n"), "body_filter on /static/page") {
		t.Errorf("log records: %q", logged)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ json, want string }{
		{`{"listen": "x", "bogus": 1}`, `unknown field "bogus"`},
		{`{"workers": "two"}`, `Config.workers`},
		{`{"locations": [{"match": "regex", "path": "/"}]}`, `locations[0].match: "regex"`},
		{`{"locations": [{"match": "exact", "path": "/", "content": "x", "content_file": "y"}]}`, `both content and content_file`},
		{`{"shared_dicts": {"d": "ten megs"}}`, `"ten megs" (expected a size: a byte count or a string such as "512k", "10m" or "1g") into Go struct field Config.shared_dicts`},
		{`{"init": "x = 1", "init_file": "x.lua"}`, `both init and init_file`},
		{`{"lua": {"time_budget": "5m"}}`, `"5m" (expected a duration: seconds, or a string such as "500ms" or "5s") into Go struct field LuaConfig.lua.time_budget`},
		{`{"lua": {"time_budget": "5"}}`, `"5" (expected a duration`},
		{`{"lua": {"time_budget": -1}}`, `-1 (expected a duration`},
		{`{"lua": {"time_budget": true}}`, `true (expected a duration`},
		{`{"lua": {"instruction_budget": -1}}`, `LuaConfig.lua.instruction_budget`},
		{`{"lua": {"instruction_budget": "1000"}}`, `LuaConfig.lua.instruction_budget`},
		{`{"lua": {"memory_limit": -1}}`, `-1 (expected a size: a byte count or a string such as "512k", "10m" or "1g") into Go struct field LuaConfig.lua.memory_limit`},
		{`{"lua": {"memory_limit": "64q"}}`, `struct field LuaConfig.lua.memory_limit`},
		{`{"lua": {"time_budgets": 1}}`, `unknown field "time_budgets"`},
	}
	dir := t.TempDir()
	for _, c := range cases {
		path := filepath.Join(dir, "site.json")
		if err := os.WriteFile(path, []byte(c.json), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.json, err, c.want)
		}
	}
	// Lua that does not compile fails at startup, naming the location and phase.
	path := filepath.Join(dir, "site.json")
	os.WriteFile(path, []byte(`{"locations": [{"match": "exact", "path": "/x", "access": "if then"}]}`), 0o644)
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSite(c, nil); err == nil || !strings.Contains(err.Error(), "locations[0] (/x): access: access_by_lua(/x):1:") {
		t.Errorf("compile error: %v", err)
	}
}

// The lua.* limits: read in their forms, absent ones left unset (the engine's defaults).
func TestLimitsConfig(t *testing.T) {
	load := func(json string) *Config {
		t.Helper()
		c, err := loadConfig(writeConfig(t, json))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		lua          string
		time         time.Duration
		instructions uint64
		memory       Size
	}{
		{`"time_budget": "5s", "instruction_budget": 1000000, "memory_limit": "64m"`, 5 * time.Second, 1000000, 64 << 20},
		{`"time_budget": "500ms", "instruction_budget": 0, "memory_limit": "1g"`, 500 * time.Millisecond, 0, 1 << 30},
		{`"time_budget": 0.25, "instruction_budget": 7, "memory_limit": 0`, 250 * time.Millisecond, 7, 0},
		{`"time_budget": 0, "instruction_budget": 1, "memory_limit": 4096`, 0, 1, 4096},
	}
	for _, c := range cases {
		got := load(`{"lua": {` + c.lua + `}}`).Lua
		if got.TimeBudget == nil || time.Duration(*got.TimeBudget) != c.time ||
			got.InstructionBudget == nil || *got.InstructionBudget != c.instructions ||
			got.MemoryLimit == nil || *got.MemoryLimit != c.memory {
			t.Errorf("%s: read as %v %v %v", c.lua, got.TimeBudget, got.InstructionBudget, got.MemoryLimit)
		}
	}
	if got := load(`{"lua": {"trusted": false}}`).Lua; got.TimeBudget != nil || got.InstructionBudget != nil || got.MemoryLimit != nil {
		t.Errorf("absent limits were set: %+v", got)
	}
}

// The limits reach the engine: a runaway script and a memory bomb answer 500 within the
// budget, and the site keeps serving.
func TestLimitsServe(t *testing.T) {
	path := writeConfig(t, `{"workers": 1, "lua": {"time_budget": "300ms", "memory_limit": "32m"}, "locations": [
		{"match": "exact", "path": "/spin", "content": "while true do end"},
		{"match": "exact", "path": "/bomb", "content": "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end"},
		{"match": "exact", "path": "/ok", "content": "ngx.say('ok')"}]}`)
	srv := serveSite(t, path, func(luaengine.LogRecord) {})
	client := &http.Client{Timeout: 10 * time.Second}
	for _, p := range []string{"/spin", "/ok", "/bomb", "/ok"} {
		started := time.Now()
		resp, err := client.Get(srv.URL + p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := 500
		if p == "/ok" {
			want = 200
		}
		if resp.StatusCode != want || (p == "/ok" && string(body) != "ok\n") {
			t.Errorf("%s: %d %q, want %d", p, resp.StatusCode, body, want)
		}
		if elapsed := time.Since(started); elapsed > 3*time.Second {
			t.Errorf("%s took %v with a 300ms time budget", p, elapsed)
		}
	}
}
