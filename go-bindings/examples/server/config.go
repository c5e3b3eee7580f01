package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Config is the JSON site config shared with the C and C++ example servers (see README.md).
type Config struct {
	Listen            string           `json:"listen"`
	Workers           int              `json:"workers"`
	DefaultType       string           `json:"default_type"`
	ClientMaxBodySize Size             `json:"client_max_body_size"`
	Lua               LuaConfig        `json:"lua"`
	SharedDicts       map[string]Size  `json:"shared_dicts"`
	Init              string           `json:"init"`
	InitFile          string           `json:"init_file"`
	InitWorker        string           `json:"init_worker"`
	InitWorkerFile    string           `json:"init_worker_file"`
	Locations         []LocationConfig `json:"locations"`
	dir               string           // the config file's folder: relative paths start there
}

// LuaConfig is the "lua" object. The limits are pointers: an absent key keeps the engine's
// default, while 0 turns the limit off.
type LuaConfig struct {
	PackagePath       []string  `json:"package_path"`
	Trusted           bool      `json:"trusted"`
	TimeBudget        *Duration `json:"time_budget"`
	InstructionBudget *uint64   `json:"instruction_budget"`
	MemoryLimit       *Size     `json:"memory_limit"`
}

// LocationConfig is one entry of "locations".
type LocationConfig struct {
	Match            string        `json:"match"`
	Path             string        `json:"path"`
	Rewrite          string        `json:"rewrite"`
	RewriteFile      string        `json:"rewrite_file"`
	Access           string        `json:"access"`
	AccessFile       string        `json:"access_file"`
	Content          string        `json:"content"`
	ContentFile      string        `json:"content_file"`
	HeaderFilter     string        `json:"header_filter"`
	HeaderFilterFile string        `json:"header_filter_file"`
	BodyFilter       string        `json:"body_filter"`
	BodyFilterFile   string        `json:"body_filter_file"`
	Log              string        `json:"log"`
	LogFile          string        `json:"log_file"`
	Static           *StaticConfig `json:"static"`
}

// StaticConfig is what the server answers itself when a location has no content script.
type StaticConfig struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// Size is a byte count written as a number or a string with a k, m or g suffix ("10m").
type Size int64

func (s *Size) UnmarshalJSON(data []byte) error {
	var n int64
	if err := json.Unmarshal(data, &n); err == nil && n >= 0 {
		*s = Size(n)
		return nil
	}
	var text string
	v, ok := int64(0), json.Unmarshal(data, &text) == nil
	if ok {
		v, ok = parseSize(text)
	}
	if !ok {
		return badValue(data, *s, `a size: a byte count or a string such as "512k", "10m" or "1g"`)
	}
	*s = Size(v)
	return nil
}

// badValue is the error of an UnmarshalJSON: an *json.UnmarshalTypeError, the one error type
// encoding/json completes with the key it was reading ("LuaConfig.lua.time_budget").
func badValue(data []byte, v any, expected string) error {
	return &json.UnmarshalTypeError{Value: fmt.Sprintf("%s (expected %s)", data, expected), Type: reflect.TypeOf(v)}
}

func parseSize(text string) (int64, bool) {
	t := strings.ToLower(strings.TrimSpace(text))
	unit := int64(1)
	switch {
	case strings.HasSuffix(t, "k"):
		unit, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "m"):
		unit, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "g"):
		unit, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/unit {
		return 0, false
	}
	return n * unit, true
}

// Duration is a number of seconds (5, 0.5) or a string with an ms or s suffix ("500ms", "5s"),
// as the C and C++ servers read it.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(data []byte) error {
	var seconds float64
	err := json.Unmarshal(data, &seconds)
	if err != nil {
		var text string
		if json.Unmarshal(data, &text) == nil {
			unit := 1.0
			number, ms := strings.CutSuffix(text, "ms")
			if !ms {
				number, _ = strings.CutSuffix(text, "s")
				unit = 1000
			}
			if number != text && number != "" && number[0] >= '0' && number[0] <= '9' {
				var n float64
				if n, err = strconv.ParseFloat(number, 64); err == nil {
					seconds = n * unit / 1000
				}
			}
		}
	}
	if err != nil || seconds < 0 || seconds > float64(math.MaxUint32)/1000 {
		return badValue(data, *d, `a duration: seconds, or a string such as "500ms" or "5s"`)
	}
	*d = Duration(seconds * float64(time.Second))
	return nil
}

// loadConfig reads and checks a site config; unknown keys and wrong types are errors naming
// the key.
func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &Config{Listen: "127.0.0.1:8080", DefaultType: "text/plain", ClientMaxBodySize: 1 << 20}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) check() error {
	if c.Init != "" && c.InitFile != "" {
		return fmt.Errorf("both init and init_file are set")
	}
	if c.InitWorker != "" && c.InitWorkerFile != "" {
		return fmt.Errorf("both init_worker and init_worker_file are set")
	}
	if c.Workers < 0 {
		return fmt.Errorf("workers: %d is negative", c.Workers)
	}
	for i, l := range c.Locations {
		where := fmt.Sprintf("locations[%d]", i)
		if l.Match != "exact" && l.Match != "prefix" {
			return fmt.Errorf("%s.match: %q is neither \"exact\" nor \"prefix\"", where, l.Match)
		}
		if !strings.HasPrefix(l.Path, "/") {
			return fmt.Errorf("%s.path: %q does not start with /", where, l.Path)
		}
		for _, p := range l.phases() {
			if p.inline != "" && p.file != "" {
				return fmt.Errorf("%s: both %s and %s_file are set", where, p.key, p.key)
			}
		}
		if l.Content != "" || l.ContentFile != "" {
			if l.Static != nil {
				return fmt.Errorf("%s: both a content script and static are set", where)
			}
		}
	}
	return nil
}

// phaseSource is one Lua-bearing key of a location: inline source or a file.
type phaseSource struct {
	key          string
	inline, file string
}

func (l *LocationConfig) phases() [6]phaseSource {
	return [6]phaseSource{
		{"rewrite", l.Rewrite, l.RewriteFile},
		{"access", l.Access, l.AccessFile},
		{"content", l.Content, l.ContentFile},
		{"header_filter", l.HeaderFilter, l.HeaderFilterFile},
		{"body_filter", l.BodyFilter, l.BodyFilterFile},
		{"log", l.Log, l.LogFile},
	}
}

// path resolves a path from the config relative to its folder.
func (c *Config) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}
