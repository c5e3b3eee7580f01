package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	luaengine "github.com/libluaengine/luaengine/go-bindings"
)

// Site serves a site config: one engine, and per location a luaengine middleware around the
// location's static answer (or a 404 when it has none).
type Site struct {
	engine    *luaengine.Engine
	exact     map[string]http.Handler
	prefixes  []prefix // longest first
	closers   []func() error
	defaultTy string
}

type prefix struct {
	path    string
	handler http.Handler
}

// NewSite builds the engine and the locations of c. Log records go to log.
func NewSite(c *Config, log func(luaengine.LogRecord)) (*Site, error) {
	config := luaengine.Config{
		Workers: c.Workers, Trusted: c.Lua.Trusted, Log: log,
		DefaultType: c.DefaultType, NoDefaultType: c.DefaultType == "",
		Init: c.Init, InitWorker: c.InitWorker,
	}
	// Limits the config leaves out keep the engine's defaults; 0 turns one off.
	if c.Lua.TimeBudget != nil {
		config.TimeBudget = time.Duration(*c.Lua.TimeBudget)
		if config.TimeBudget == 0 {
			config.TimeBudget = luaengine.NoLimit
		}
	}
	if c.Lua.InstructionBudget != nil {
		config.InstructionBudget = *c.Lua.InstructionBudget
	}
	if c.Lua.MemoryLimit != nil {
		config.MemoryLimit = int64(*c.Lua.MemoryLimit)
		if config.MemoryLimit == 0 {
			config.MemoryLimit = luaengine.NoLimit
		}
	}
	if c.InitFile != "" {
		config.InitFile = c.path(c.InitFile)
	}
	if c.InitWorkerFile != "" {
		config.InitWorkerFile = c.path(c.InitWorkerFile)
	}
	for _, p := range c.Lua.PackagePath {
		config.PackagePath = append(config.PackagePath, c.path(p))
	}
	if len(c.SharedDicts) > 0 {
		config.SharedDicts = map[string]int{}
		for name, size := range c.SharedDicts {
			config.SharedDicts[name] = int(size)
		}
	}
	e, err := luaengine.New(config)
	if err != nil {
		return nil, err
	}
	s := &Site{engine: e, exact: map[string]http.Handler{}, defaultTy: c.DefaultType}
	for i := range c.Locations {
		h, err := s.location(c, &c.Locations[i])
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("locations[%d] (%s): %w", i, c.Locations[i].Path, err)
		}
		if c.Locations[i].Match == "exact" {
			s.exact[c.Locations[i].Path] = h
		} else {
			s.prefixes = append(s.prefixes, prefix{c.Locations[i].Path, h})
		}
	}
	sort.SliceStable(s.prefixes, func(i, j int) bool { return len(s.prefixes[i].path) > len(s.prefixes[j].path) })
	return s, nil
}

func (s *Site) location(c *Config, l *LocationConfig) (http.Handler, error) {
	var scripts [6]*luaengine.Script
	for i, p := range l.phases() {
		var err error
		switch {
		case p.inline != "":
			scripts[i], err = s.engine.Compile(p.key+"_by_lua("+l.Path+")", p.inline)
		case p.file != "":
			scripts[i], err = s.engine.CompileFile(c.path(p.file))
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.key, err)
		}
		// The middleware's pipeline keeps the scripts it uses alive.
		defer scripts[i].Close()
	}
	m, err := luaengine.NewMiddleware(s.engine, luaengine.MiddlewareConfig{
		Phases: luaengine.Phases{
			Rewrite: scripts[0], Access: scripts[1], Content: scripts[2],
			HeaderFilter: scripts[3], BodyFilter: scripts[4], Log: scripts[5],
		},
		DefaultType: s.defaultTy,
		MaxBodySize: int64(c.ClientMaxBodySize),
		// ngx.req.set_uri(uri, true) in rewrite: route the request again.
		LocationJump: s,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, m.Close)
	var inner http.Handler = http.HandlerFunc(notFound)
	if l.Static != nil {
		inner = static(l.Static, s.defaultTy)
	}
	return m.Wrap(inner), nil
}

// ServeHTTP routes like nginx: an exact location wins, then the longest prefix.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := s.exact[r.URL.Path]; ok {
		h.ServeHTTP(w, r)
		return
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(r.URL.Path, p.path) {
			p.handler.ServeHTTP(w, r)
			return
		}
	}
	notFound(w, r)
}

// Close releases the locations and the engine; requests in flight finish first.
func (s *Site) Close() error {
	for _, c := range s.closers {
		c()
	}
	return s.engine.Close()
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusNotFound)
	w.Write(luaengine.ErrorPage(http.StatusNotFound)) //nolint:errcheck
}

func static(st *StaticConfig, defaultType string) http.Handler {
	status := st.Status
	if status == 0 {
		status = http.StatusOK
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		for name, value := range st.Headers {
			h.Set(name, value)
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", defaultType)
		}
		w.WriteHeader(status)
		w.Write([]byte(st.Body)) //nolint:errcheck
	})
}
