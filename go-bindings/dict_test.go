package luaengine

import (
	"errors"
	"slices"
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
