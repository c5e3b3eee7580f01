package luaengine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The host and scripts share a dict: what one stores the other reads.
func TestDict(t *testing.T) {
	e := newEngine(t, Config{SharedDicts: map[string]int{"d": 1 << 16}})
	d, err := e.Dict("d")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := e.Dict("missing"); err == nil {
		t.Fatal("a dict the engine has not")
	}

	if _, err := d.Set("s", "text", 0, 7); err != nil {
		t.Fatal(err)
	}
	d.Set("n", 41, 0, 0)
	d.Set("b", true, 0, 0)
	d.Set("bytes", []byte("raw"), 0, 0)
	if got := content(t, e, `local d = ngx.shared.d ngx.say(d:get("s"), " ", select(2, d:get("s")), " ", d:get("n"), " ", d:get("b"), " ", d:get("bytes"))`); got != "text 7 41 true raw\n" {
		t.Fatalf("Lua read %q", got)
	}
	content(t, e, `ngx.shared.d:set("from_lua", 2.5) ngx.shared.d:incr("n", 1)`)
	for key, want := range map[string]any{"from_lua": 2.5, "n": 42.0, "b": true, "s": "text", "absent": nil} {
		if v, _, err := d.Get(key); err != nil || v != want {
			t.Errorf("Get(%q) = %v, %v; want %v", key, v, err, want)
		}
	}

	if _, err := d.Add("s", "again", 0, 0); !errors.Is(err, ErrExists) {
		t.Errorf("Add of a present key: %v", err)
	}
	if _, err := d.Replace("absent", 1, 0, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Replace of an absent key: %v", err)
	}
	if _, err := d.Incr("absent", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Incr of an absent key: %v", err)
	}
	if v, err := d.IncrInit("counter", 2, 10, 0); err != nil || v != 12 {
		t.Errorf("IncrInit: %v %v", v, err)
	}
	if _, err := d.Incr("s", 1); err == nil {
		t.Error("Incr of a string")
	}
	if _, err := d.Set("x", struct{}{}, 0, 0); err == nil {
		t.Error("Set of a struct")
	}

	d.Set("ttl", "v", time.Hour, 0)
	if ttl, err := d.TTL("ttl"); err != nil || ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("TTL %v %v", ttl, err)
	}
	if err := d.Expire("ttl", 0); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := d.TTL("ttl"); ttl != 0 {
		t.Errorf("TTL after Expire(0) %v", ttl)
	}
	d.Set("gone", "v", time.Millisecond, 0)
	time.Sleep(5 * time.Millisecond)
	if v, _, _ := d.Get("gone"); v != nil {
		t.Errorf("an expired key reads %v", v)
	}

	keys, err := d.Keys(0)
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"b", "bytes", "counter", "from_lua", "n", "s", "ttl"}) {
		t.Errorf("Keys %v %v", keys, err)
	}
	if err := d.Delete("s"); err != nil {
		t.Fatal(err)
	}
	if d.Capacity() != 1<<16 || d.FreeSpace() >= d.Capacity() {
		t.Errorf("capacity %d, free %d", d.Capacity(), d.FreeSpace())
	}
	d.FlushAll()
	if n, err := d.FlushExpired(0); err != nil || n != 7 {
		t.Errorf("FlushExpired %d %v", n, err)
	}

	// The handle outlives the engine; closed, it refuses work.
	e.Close()
	if _, err := d.Set("after", 1, 0, 0); err != nil {
		t.Errorf("Set after the engine closed: %v", err)
	}
	d.Close()
	if _, _, err := d.Get("after"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get on a closed dict: %v", err)
	}
}

// dictEngine is an engine with one shared dict "d" of capacity bytes, and a handle on it.
func dictEngine(t *testing.T, capacity int) (*Engine, *Dict) {
	t.Helper()
	e := newEngine(t, Config{SharedDicts: map[string]int{"d": capacity}})
	d, err := e.Dict("d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return e, d
}

// The host and scripts share a queue: what one pushes the other pops, in order.
func TestDictLists(t *testing.T) {
	e, q := dictEngine(t, 1<<16)

	if n, err := q.LLen("q"); err != nil || n != 0 {
		t.Fatalf("LLen of an absent key: %d %v", n, err)
	}
	for i, v := range []any{"a\x00b", 2.5, 3, []byte("raw")} {
		if n, err := q.RPush("q", v); err != nil || n != i+1 {
			t.Fatalf("RPush(%v) = %d, %v", v, n, err)
		}
	}
	if n, err := q.LPush("q", "first"); err != nil || n != 5 {
		t.Fatalf("LPush = %d, %v", n, err)
	}
	if got := content(t, e, `local q = ngx.shared.d
		local a, b = q:lpop("q"), q:lpop("q")
		ngx.say(q:llen("q"), " ", a, " ", #b, " ", b:byte(2), " ", q:rpop("q"), " ", q:lpop("q"), " ", q:lpop("q"), " ", q:lpop("q"), " ", q:llen("q"))`); got != "3 first 3 0 raw 2.5 3 nil 0\n" {
		t.Fatalf("Lua popped %q", got)
	}

	if got := content(t, e, `local q = ngx.shared.d q:rpush("q", "x") q:rpush("q", 10) ngx.say(q:rpush("q", "z"))`); got != "3\n" {
		t.Fatalf("Lua pushed %q", got)
	}
	for _, pop := range []struct {
		fn   func(string) (any, error)
		want any
	}{{q.LPop, "x"}, {q.RPop, "z"}, {q.LPop, 10.0}, {q.LPop, nil}, {q.RPop, nil}} {
		if v, err := pop.fn("q"); err != nil || v != pop.want {
			t.Errorf("pop = %#v, %v; want %#v", v, err, pop.want)
		}
	}
	if v, _, err := q.Get("q"); v != nil || err != nil {
		t.Errorf("the emptied list's key reads %v, %v", v, err)
	}

	// A scalar is not a list; only strings and numbers go into one.
	q.Set("s", "scalar", 0, 0)
	if _, err := q.RPush("s", 1); !errors.Is(err, ErrNotAList) {
		t.Errorf("RPush onto a scalar: %v", err)
	}
	if _, err := q.LPop("s"); !errors.Is(err, ErrNotAList) {
		t.Errorf("LPop of a scalar: %v", err)
	}
	if _, err := q.LLen("s"); !errors.Is(err, ErrNotAList) {
		t.Errorf("LLen of a scalar: %v", err)
	}
	if got := content(t, e, `ngx.say(ngx.shared.d:lpop("s"))`); got != "nilvalue not a list\n" {
		t.Errorf("Lua's lpop of a scalar: %q", got)
	}
	q.RPush("l", "v")
	if _, _, err := q.Get("l"); err == nil || err.Error() != "value is a list" {
		t.Errorf("Get of a list: %v", err)
	}
	for _, bad := range []any{nil, true, struct{}{}} {
		var e *Error
		if _, err := q.LPush("l", bad); !errors.As(err, &e) || e.Code != CodeInvalidArgument || e.Message != "bad value type" {
			t.Errorf("LPush(%#v): %v", bad, err)
		}
	}
	if n, _ := q.LLen("l"); n != 1 {
		t.Errorf("failed pushes changed the list: %d", n)
	}

	q.Close()
	if _, err := q.RPush("l", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("RPush on a closed dict: %v", err)
	}
	if _, err := q.LPop("l"); !errors.Is(err, ErrClosed) {
		t.Errorf("LPop on a closed dict: %v", err)
	}
}

// Go and Lua producers and consumers on one queue at once: every element is taken exactly once,
// and each consumer sees each producer's elements in the order they were pushed.
func TestDictQueueSharedWithLua(t *testing.T) {
	e, q := dictEngine(t, 1<<20)
	const producers, perProducer, batch = 2, 100, 20
	total := 2 * producers * perProducer
	pop := compile(t, e, "pop", fmt.Sprintf(`local q, out = ngx.shared.d, {}
		for _ = 1, %d do
			local v = q:lpop("q")
			if v == nil then break end
			out[#out + 1] = v
		end
		ngx.print(table.concat(out, " "))`, batch))
	run := func(s *Script) (string, error) {
		r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/q"})
		if err != nil {
			return "", err
		}
		defer r.Close()
		if _, err := r.Run(PhaseContent, s); err != nil {
			return "", err
		}
		return string(r.Response().Body), nil
	}

	var wg sync.WaitGroup
	spawn := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	errs := make(chan error, 16)
	var failed atomic.Bool // stops the consumers when elements will not come
	fail := func(err error) {
		failed.Store(true)
		errs <- err
	}
	taken := make(chan []string, total)
	var left atomic.Int64
	left.Store(int64(total))
	for p := range producers {
		spawn(func() {
			for i := range perProducer {
				if _, err := q.RPush("q", fmt.Sprintf("go%d-%03d", p, i)); err != nil {
					fail(err)
					return
				}
			}
		})
		push := compile(t, e, fmt.Sprintf("push%d", p), fmt.Sprintf(`local q = ngx.shared.d
			local first = tonumber(ngx.var.arg_first)
			for i = first, first + %d - 1 do q:rpush("q", string.format("lua%d-%%03d", i)) end`, batch, p))
		spawn(func() {
			for first := 0; first < perProducer; first += batch {
				r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/q", Query: fmt.Sprintf("first=%d", first)})
				if err == nil {
					_, err = r.Run(PhaseContent, push)
					r.Close()
				}
				if err != nil {
					fail(err)
					return
				}
			}
		})
	}
	consume := func(next func() ([]string, error)) {
		var seen []string
		defer func() { taken <- seen }()
		for left.Load() > 0 && !failed.Load() {
			got, err := next()
			if err != nil {
				fail(err)
				return
			}
			seen = append(seen, got...)
			left.Add(-int64(len(got)))
		}
	}
	for range 2 {
		spawn(func() {
			consume(func() ([]string, error) {
				v, err := q.LPop("q")
				if s, ok := v.(string); ok {
					return []string{s}, err
				}
				return nil, err
			})
		})
		spawn(func() {
			consume(func() ([]string, error) {
				body, err := run(pop)
				return strings.Fields(body), err
			})
		})
	}
	wg.Wait()
	close(errs)
	close(taken)
	for err := range errs {
		t.Fatal(err)
	}

	count := map[string]int{}
	for seen := range taken {
		last := map[string]string{}
		for _, item := range seen {
			count[item]++
			producer, _, _ := strings.Cut(item, "-")
			if item <= last[producer] {
				t.Errorf("%s came after %s", item, last[producer])
			}
			last[producer] = item
		}
	}
	if len(count) != total {
		t.Errorf("%d distinct elements taken, want %d", len(count), total)
	}
	for item, n := range count {
		if n != 1 {
			t.Errorf("%s taken %d times", item, n)
		}
	}
	if n, err := q.LLen("q"); err != nil || n != 0 {
		t.Errorf("LLen after draining: %d %v", n, err)
	}
}

// GetStale reads what expired until its memory is reclaimed, and says it is stale.
func TestDictGetStale(t *testing.T) {
	e, d := dictEngine(t, 1<<16)
	d.Set("k", "old", 20*time.Millisecond, 5)
	if v, flags, stale, err := d.GetStale("k"); v != "old" || flags != 5 || stale || err != nil {
		t.Errorf("GetStale of a live key: %v %d %v %v", v, flags, stale, err)
	}
	content(t, e, `ngx.shared.d:set("lua", 1.5, 0.02)`)
	time.Sleep(50 * time.Millisecond)
	if v, _, err := d.Get("k"); v != nil || err != nil {
		t.Errorf("Get of an expired key: %v %v", v, err)
	}
	if v, flags, stale, err := d.GetStale("k"); v != "old" || flags != 5 || !stale || err != nil {
		t.Errorf("GetStale of an expired key: %v %d %v %v", v, flags, stale, err)
	}
	if v, flags, stale, err := d.GetStale("lua"); v != 1.5 || flags != 0 || !stale || err != nil {
		t.Errorf("GetStale of what Lua stored: %v %d %v %v", v, flags, stale, err)
	}
	if got := content(t, e, `ngx.say(ngx.shared.d:get_stale("k"))`); got != "old5true\n" {
		t.Errorf("Lua's get_stale: %q", got)
	}
	if v, flags, stale, err := d.GetStale("absent"); v != nil || flags != 0 || stale || err != nil {
		t.Errorf("GetStale of an absent key: %v %d %v %v", v, flags, stale, err)
	}
	d.RPush("l", 1)
	if _, _, _, err := d.GetStale("l"); err == nil || err.Error() != "value is a list" {
		t.Errorf("GetStale of a list: %v", err)
	}
	if n, _ := d.FlushExpired(0); n != 2 {
		t.Errorf("FlushExpired removed %d", n)
	}
	if v, _, stale, err := d.GetStale("k"); v != nil || stale || err != nil {
		t.Errorf("GetStale once reclaimed: %v %v %v", v, stale, err)
	}
}
