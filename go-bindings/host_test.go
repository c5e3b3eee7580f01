package luaengine

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// dump is a Lua serializer with sorted keys, so tests can compare what Lua received.
const dump = `
local function dump(v)
  if type(v) ~= "table" then return type(v) .. ":" .. tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. dump(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end
`

// Named types pass by their kind.
type (
	count int
	label string
)

func TestHostFunctionValues(t *testing.T) {
	var got []any
	e := newEngine(t, Config{Functions: map[string]HostFunc{
		"take": func(c *Call) ([]any, error) {
			got = c.Args
			return nil, nil
		},
		"give": func(c *Call) ([]any, error) {
			return []any{
				nil, true, 42, int8(-8), uint64(7), 2.5, float32(0.5), "text", []byte("bytes"),
				[]any{1, "two", []any{3}},
				map[string]any{"a": 1, "nested": map[string]any{"b": false}},
				[]string{"x", "y"},
				map[string]int{"n": 5},
				map[string]any{},
				count(3), []label{"a"},
			}, nil
		},
	}})
	content(t, e, `require("host").take(nil, true, 7, 2.5, "s\0x", {1, 2, {3}}, {a = 1, b = {c = "d"}}, {})`)
	want := []any{
		nil, true, int64(7), 2.5, "s\x00x",
		[]any{int64(1), int64(2), []any{int64(3)}},
		map[string]any{"a": int64(1), "b": map[string]any{"c": "d"}},
		map[string]any{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("args:\n got %#v\nwant %#v", got, want)
	}
	body := content(t, e, dump+`
		local function each(...)
		  for i = 1, select("#", ...) do ngx.say(dump((select(i, ...)))) end
		end
		each(require("host").give())`)
	wantBody := strings.Join([]string{
		"nil:nil", "boolean:true", "number:42", "number:-8", "number:7", "number:2.5", "number:0.5",
		"string:text", "string:bytes",
		"{1=number:1,2=string:two,3={1=number:3}}",
		"{a=number:1,nested={b=boolean:false}}",
		"{1=string:x,2=string:y}",
		"{n=number:5}",
		"{}",
		"number:3", "{1=string:a}",
	}, "\n") + "\n"
	if body != wantBody {
		t.Fatalf("results:\n got %s\nwant %s", body, wantBody)
	}
}

func TestHostFunctionFailures(t *testing.T) {
	e := newEngine(t, Config{Functions: map[string]HostFunc{
		"fail":        func(*Call) ([]any, error) { return nil, errors.New("no such user") },
		"boom":        func(*Call) ([]any, error) { panic("kaboom") },
		"unencodable": func(*Call) ([]any, error) { return []any{make(chan int)}, nil },
		"cyclic": func(*Call) ([]any, error) {
			loop := []any{nil}
			loop[0] = loop
			return []any{loop}, nil
		},
		"name": func(c *Call) ([]any, error) { return []any{c.Name, c.RequestID != 0}, nil },
	}})
	cases := []struct{ lua, want string }{
		{`local ok, err = pcall(function() local v = require("host").fail() return v end) ngx.say(ok, " ", err)`,
			"false content:1: no such user\n"},
		{`local ok, err = pcall(function() local v = require("host").boom() return v end) ngx.say(ok, " ", err)`,
			"false content:1: host function 'boom' panicked: kaboom\n"},
		{`local ok, err = pcall(function() local v = require("host").unencodable() return v end) ngx.say(ok, " ", err)`,
			"false content:1: cannot pass a Go chan int to Lua\n"},
		{`local ok, err = pcall(function() local v = require("host").cyclic() return v end) ngx.say(ok, " ", err)`,
			"false content:1: results nest deeper than 100 levels\n"},
		{`ngx.say(require("host").name())`, "nametrue\n"},
	}
	for _, c := range cases {
		if got := content(t, e, c.lua); got != c.want {
			t.Errorf("%s\n got %q\nwant %q", c.lua, got, c.want)
		}
	}
	// An error nobody catches fails the phase with the host's message.
	s := compile(t, e, "access", `require("host").fail()`)
	r, err := e.NewRequest(RequestInit{Method: "GET", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Run(PhaseAccess, s)
	var le *Error
	if !errors.As(err, &le) || le.Code != CodeRuntime || le.Message != "access:1: no such user" {
		t.Fatalf("uncaught host error: %#v", err)
	}
}

func TestNilHostFunction(t *testing.T) {
	if _, err := New(Config{Functions: map[string]HostFunc{"x": nil}}); err == nil {
		t.Fatal("a nil host function was accepted")
	}
}
