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

// The demo site over real HTTP on a loopback port.
func TestDemoSite(t *testing.T) {
	c, err := loadConfig("site/site.json")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logged []string
	site, err := NewSite(c, func(r luaengine.LogRecord) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, r.Message)
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(site)
	defer func() {
		srv.Close()
		site.Close()
	}()
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
		{`{"shared_dicts": {"d": "ten megs"}}`, `bad size "ten megs"`},
		{`{"init": "x = 1", "init_file": "x.lua"}`, `both init and init_file`},
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
