// Package bench compares the luaengine middleware with gopher-lua implementations of the same
// tiny ngx subset (ngx.say/print/exit, ngx.ctx, ngx.var, ngx.req.get_headers/get_method, ngx.log
// and the constants): see bench_test.go. It is a separate module so the bindings never depend on
// gopher-lua.
package bench

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// request is what the ngx functions read and write during one request.
type request struct {
	r      *http.Request
	status int
	exited bool
	body   []byte
}

func (q *request) reset(r *http.Request) { *q = request{r: r, body: q.body[:0]} }

// exitSignal is raised by ngx.exit to unwind the script; the handler recognises it.
var exitSignal = lua.LString("ngx.exit")

// compile parses and compiles the phase scripts once; states make functions from the protos.
func compile(sources []string) ([]*lua.FunctionProto, error) {
	var protos []*lua.FunctionProto
	for i, source := range sources {
		name := fmt.Sprintf("phase%d", i)
		chunk, err := parse.Parse(strings.NewReader(source), name)
		if err != nil {
			return nil, err
		}
		proto, err := lua.Compile(chunk, name)
		if err != nil {
			return nil, err
		}
		protos = append(protos, proto)
	}
	return protos, nil
}

// newState opens the libraries a sandboxed script gets, with require searching packagePath.
func newState(packagePath string) *lua.LState {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath},
		{lua.CoroutineLibName, lua.OpenCoroutine}, {lua.LoadLibName, lua.OpenPackage},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	if pkg, ok := L.GetGlobal("package").(*lua.LTable); ok {
		pkg.RawSetString("path", lua.LString(packagePath))
	}
	return L
}

// ngxAPI builds the ngx table; cur returns the request the functions act on.
func ngxAPI(L *lua.LState, cur func() *request, lower func(string) string) *lua.LTable {
	ngx := L.NewTable()
	write := func(L *lua.LState, newline bool) int {
		q := cur()
		for i := 1; i <= L.GetTop(); i++ {
			q.body = append(q.body, L.ToStringMeta(L.Get(i)).String()...)
		}
		if newline {
			q.body = append(q.body, '\n')
		}
		if q.status == 0 {
			q.status = http.StatusOK
		}
		return 0
	}
	L.SetFuncs(ngx, map[string]lua.LGFunction{
		"say":   func(L *lua.LState) int { return write(L, true) },
		"print": func(L *lua.LState) int { return write(L, false) },
		"exit": func(L *lua.LState) int {
			q := cur()
			if code := L.CheckInt(1); code >= 200 {
				q.status = code
			}
			q.exited = true
			L.Error(exitSignal, 0)
			return 0
		},
		"log": func(L *lua.LState) int { return 0 },
	})
	for name, value := range map[string]int{
		"OK": 0, "ERROR": -1, "HTTP_OK": 200, "HTTP_FORBIDDEN": 403, "HTTP_NOT_FOUND": 404,
		"HTTP_INTERNAL_SERVER_ERROR": 500, "ERR": 4, "WARN": 5, "INFO": 7, "DEBUG": 8,
	} {
		ngx.RawSetString(name, lua.LNumber(value))
	}

	vars := L.NewTable()
	varMeta := L.NewTable()
	varMeta.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		r := cur().r
		name := L.CheckString(2)
		switch {
		case name == "uri":
			L.Push(lua.LString(r.URL.Path))
		case name == "request_uri":
			L.Push(lua.LString(r.RequestURI))
		case name == "args":
			L.Push(lua.LString(r.URL.RawQuery))
		case name == "host":
			L.Push(lua.LString(r.Host))
		case name == "request_method":
			L.Push(lua.LString(r.Method))
		case name == "remote_addr":
			L.Push(lua.LString(r.RemoteAddr))
		case strings.HasPrefix(name, "arg_"):
			L.Push(lua.LString(r.URL.Query().Get(name[4:])))
		case strings.HasPrefix(name, "http_"):
			L.Push(lua.LString(r.Header.Get(strings.ReplaceAll(name[5:], "_", "-"))))
		default:
			L.Push(lua.LNil)
		}
		return 1
	}))
	L.SetMetatable(vars, varMeta)
	ngx.RawSetString("var", vars)

	req := L.NewTable()
	L.SetFuncs(req, map[string]lua.LGFunction{
		"get_headers": func(L *lua.LState) int {
			r := cur().r
			t := L.CreateTable(0, len(r.Header)+1)
			t.RawSetString("host", lua.LString(r.Host))
			for name, values := range r.Header {
				if len(values) == 1 {
					t.RawSetString(lower(name), lua.LString(values[0]))
					continue
				}
				list := L.CreateTable(len(values), 0)
				for _, v := range values {
					list.Append(lua.LString(v))
				}
				t.RawSetString(lower(name), list)
			}
			L.Push(t)
			return 1
		},
		"get_method": func(L *lua.LState) int {
			L.Push(lua.LString(cur().r.Method))
			return 1
		},
	})
	ngx.RawSetString("req", req)
	return ngx
}

// runPhases runs the scripts in order like nginx phases; an ngx.exit with a status (or in
// content) answers the request. It returns the error of a failing script.
func runPhases(L *lua.LState, q *request, fns []*lua.LFunction) error {
	for _, fn := range fns {
		err := L.CallByParam(lua.P{Fn: fn, NRet: 0, Protect: true})
		if q.exited {
			if q.status >= 200 {
				return nil
			}
			q.exited = false // ngx.exit(ngx.OK): the phase ends, the next one runs
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// answer writes the response the scripts produced, as the luaengine middleware does.
func answer(w http.ResponseWriter, q *request, err error) {
	if err != nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header()["Content-Type"] = textPlain
	status := q.status
	if status == 0 {
		status = http.StatusOK
	}
	body := q.body
	if len(body) == 0 && status >= 400 {
		body = []byte(strconv.Itoa(status) + " " + http.StatusText(status) + "\n")
	}
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck
}

var textPlain = []string{"text/plain"}[:1:1]

// Pooled is the best pooled gopher-lua handler we could write: states are pooled, scripts
// compiled once, the ngx API built once per state; per request only the request pointer and a
// fresh ngx.ctx table change.
type Pooled struct {
	protos []*lua.FunctionProto
	pool   sync.Pool
}

type pooledState struct {
	L     *lua.LState
	ngx   *lua.LTable
	cur   request
	fns   []*lua.LFunction
	lower map[string]string // lowercased header names, cached per state
}

// NewPooled compiles the phase scripts (run in order) into a handler; require searches
// packagePath (";"-separated templates such as "/srv/lua/?.lua").
func NewPooled(packagePath string, sources ...string) (*Pooled, error) {
	protos, err := compile(sources)
	if err != nil {
		return nil, err
	}
	p := &Pooled{protos: protos}
	p.pool.New = func() any {
		s := &pooledState{L: newState(packagePath), lower: map[string]string{}}
		s.ngx = ngxAPI(s.L, func() *request { return &s.cur }, s.lowerName)
		s.L.SetGlobal("ngx", s.ngx)
		for _, proto := range p.protos {
			s.fns = append(s.fns, s.L.NewFunctionFromProto(proto))
		}
		return s
	}
	return p, nil
}

func (s *pooledState) lowerName(name string) string {
	if l, ok := s.lower[name]; ok {
		return l
	}
	l := strings.ToLower(name)
	s.lower[name] = l
	return l
}

func (p *Pooled) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := p.pool.Get().(*pooledState)
	s.cur.reset(r)
	s.ngx.RawSetString("ctx", s.L.NewTable())
	err := runPhases(s.L, &s.cur, s.fns)
	answer(w, &s.cur, err)
	s.cur.r = nil
	p.pool.Put(s)
}

// Rebuilt is the same pool of states, but like lolly today it builds a sandboxed environment and
// the whole ngx API (req, resp, var, ctx, log, shared, timer, socket, location) for every
// request, and makes the script functions from their protos each time.
type Rebuilt struct {
	protos []*lua.FunctionProto
	pool   sync.Pool
}

// NewRebuilt compiles the phase scripts (run in order) into a handler; require searches
// packagePath.
func NewRebuilt(packagePath string, sources ...string) (*Rebuilt, error) {
	protos, err := compile(sources)
	if err != nil {
		return nil, err
	}
	p := &Rebuilt{protos: protos}
	p.pool.New = func() any { return newState(packagePath) }
	return p, nil
}

func (p *Rebuilt) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	L := p.pool.Get().(*lua.LState)
	q := &request{r: r}
	env := sandbox(L)
	ngx := ngxAPI(L, func() *request { return q }, strings.ToLower)
	moreAPI(L, ngx)
	ngx.RawSetString("ctx", L.NewTable())
	env.RawSetString("ngx", ngx)
	fns := make([]*lua.LFunction, len(p.protos))
	for i, proto := range p.protos {
		fns[i] = L.NewFunctionFromProto(proto)
		L.SetFEnv(fns[i], env)
	}
	err := runPhases(L, q, fns)
	answer(w, q, err)
	p.pool.Put(L)
}

// sandbox is lolly's per-request environment: reads fall through to the globals, writes fail,
// and coroutine creation is blocked.
func sandbox(L *lua.LState) *lua.LTable {
	env := L.NewTable()
	meta := L.NewTable()
	meta.RawSetString("__index", L.Get(lua.GlobalsIndex))
	meta.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("attempt to modify global table (read-only)")
		return 0
	}))
	L.SetMetatable(env, meta)
	co := L.NewTable()
	if lib, ok := L.GetGlobal("coroutine").(*lua.LTable); ok {
		co.RawSetString("yield", lib.RawGetString("yield"))
		co.RawSetString("status", lib.RawGetString("status"))
	}
	blocked := L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("coroutine creation is blocked in sandbox")
		return 0
	})
	for _, name := range []string{"create", "wrap", "resume", "running"} {
		co.RawSetString(name, blocked)
	}
	env.RawSetString("coroutine", co)
	return env
}

// moreAPI adds the rest of the API lolly registers per request; the benchmark scripts do not
// call it, but building it is the per-request cost being measured.
func moreAPI(L *lua.LState, ngx *lua.LTable) {
	nop := func(L *lua.LState) int { return 0 }
	table := func(parent *lua.LTable, name string, names ...string) *lua.LTable {
		t := L.NewTable()
		funcs := make(map[string]lua.LGFunction, len(names))
		for _, n := range names {
			funcs[n] = nop
		}
		L.SetFuncs(t, funcs)
		parent.RawSetString(name, t)
		return t
	}
	req := ngx.RawGetString("req").(*lua.LTable)
	L.SetFuncs(req, map[string]lua.LGFunction{
		"get_uri_args": nop, "get_post_args": nop, "read_body": nop, "get_body_data": nop,
		"set_header": nop, "clear_header": nop, "set_uri": nop, "set_uri_args": nop,
		"set_method": nop, "http_version": nop, "raw_header": nop, "start_time": nop,
	})
	table(ngx, "resp", "get_headers", "set_header", "add_header", "clear_header", "get_status", "set_status")
	table(ngx, "socket", "tcp", "udp", "connect")
	table(ngx, "timer", "at", "every", "running_count", "pending_count")
	table(ngx, "location", "capture", "capture_multi")
	shared := L.NewTable()
	sharedMeta := L.NewTable()
	sharedMeta.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		dict := L.NewTable()
		L.SetFuncs(dict, map[string]lua.LGFunction{"get": nop, "set": nop, "incr": nop, "delete": nop})
		L.Push(dict)
		return 1
	}))
	L.SetMetatable(shared, sharedMeta)
	ngx.RawSetString("shared", shared)
	L.SetFuncs(ngx, map[string]lua.LGFunction{
		"sleep": nop, "now": nop, "time": nop, "today": nop, "localtime": nop, "utctime": nop,
		"escape_uri": nop, "unescape_uri": nop, "encode_base64": nop, "decode_base64": nop,
		"md5": nop, "sha1_bin": nop, "quote_sql_str": nop, "get_phase": nop, "flush": nop,
		"redirect": nop, "eof": nop,
	})
}
