package fasthttpadapter

import (
	"testing"

	luaengine "github.com/libluaengine/luaengine/go-bindings"
	"github.com/valyala/fasthttp"
)

// BenchmarkProcess serves lolly's recorded case — a content script doing only ngx.say("ok"),
// which its gopher-lua middleware ran in about 121 µs and 351 allocations per request — through
// Process, on a request with 8 headers: go test -run - -bench Process -benchmem
func BenchmarkProcess(b *testing.B) {
	e, err := luaengine.New(luaengine.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	script, err := e.Compile("content", `ngx.say("ok")`)
	if err != nil {
		b.Fatal(err)
	}
	defer script.Close()
	m, err := New(e, Config{Phases: luaengine.Phases{Content: script}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	handler := m.Process(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusNotFound) })

	var req fasthttp.Request
	req.SetRequestURI("http://example.com/t?a=1")
	for _, h := range [][2]string{
		{"User-Agent", "bench/1.0"}, {"Accept", "*/*"}, {"Accept-Encoding", "gzip, deflate"},
		{"Connection", "keep-alive"}, {"X-Token", "secret"}, {"X-Request-Id", "0123456789abcdef"},
		{"Cookie", "sid=abc; theme=dark"},
	} {
		req.Header.Set(h[0], h[1])
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		handler(&ctx)
	}
	if body := string(ctx.Response.Body()); body != "ok\n" || ctx.Response.StatusCode() != 200 {
		b.Fatalf("%d %q, want 200 \"ok\\n\"", ctx.Response.StatusCode(), body)
	}
}
