package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// HostFunc is a Go function scripts call as require("host").<name>(...). Its results go back
// to Lua; a non-nil error (or a panic) becomes a Lua error with the error's message, raised at
// the script's call site.
//
// Registered in Config.Functions, it runs on the goroutine that runs the script, while the
// request's worker is locked: keep it quick, and make it safe for concurrent calls (requests on
// other workers call it in parallel). Registered in Config.AsyncFunctions, it runs in a
// goroutine of its own while the calling script waits (its phase yields; the worker serves
// other requests meanwhile): it may block, and should return when [Call.Context] is done.
//
// Arguments arrive as nil, bool, int64 (integral numbers, on LuaJIT too), float64, string,
// []any (a Lua sequence) or map[string]any (a table with string keys; an empty table arrives as
// an empty map). Results may be nil, bool, any integer or float type, string, []byte, or slices
// and string-keyed maps of those, nested up to 100 levels.
type HostFunc func(call *Call) ([]any, error)

// Call is one call of a HostFunc, valid during the call.
type Call struct {
	Name      string // the name the function is registered under
	RequestID uint64 // the request whose script called, or 0
	Args      []any
	ctx       context.Context
}

// Context is done when the call's result is no longer wanted: for an async function, when the
// request is cancelled or the calling phase ends without it (a light thread left waiting), or,
// for a timer's call, when the engine is released. A sync function's context is never done.
func (c *Call) Context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

type hostEntry struct {
	name string
	fn   HostFunc
}

// args copies a call's arguments into Go.
func args(values []C.le_value) []any {
	out := make([]any, len(values))
	for i := range values {
		out[i] = fromValue(&values[i])
	}
	return out
}

//export legoHostCall
func legoHostCall(call *C.le_call, handle C.uintptr_t) {
	entry := cgo.Handle(handle).Value().(*hostEntry)
	var n C.size_t
	values := unsafe.Slice(C.le_call_args(call, &n), int(n))
	c := &Call{Name: entry.name, RequestID: uint64(C.le_call_request_id(call)), Args: args(values)}
	results, err := runHost(entry.fn, c)
	answer(results, err, func(values *C.le_value, n C.size_t, fail bool, message C.le_str) C.le_result {
		return C.lego_call_answer(call, values, n, C.bool(fail), message)
	})
}

// runHost calls fn, turning a panic into an error so it never unwinds into C.
func runHost(fn HostFunc, c *Call) (results []any, err error) {
	defer func() {
		if p := recover(); p != nil {
			results, err = nil, fmt.Errorf("host function '%s' panicked: %v", c.Name, p)
		}
	}()
	return fn(c)
}

// answerFunc hands n results, or (fail) an error message, to the engine, which copies them.
type answerFunc func(values *C.le_value, n C.size_t, fail bool, message C.le_str) C.le_result

// answer hands a host function's results, or its error, to Lua through give: one C block holds
// every le_value, key and string.
func answer(results []any, err error, give answerFunc) {
	if err == nil {
		err = giveValues(results, give)
	}
	if err != nil {
		message := err.Error()
		give(nil, 0, true, goStr(message))
		runtime.KeepAlive(message)
	}
}

func giveValues(results []any, give answerFunc) error {
	if len(results) == 0 {
		if r := give(nil, 0, false, C.le_str{}); r != C.LE_OK {
			return fmt.Errorf("results refused: %s", Code(r))
		}
		return nil
	}
	var size valueSize
	for _, v := range results {
		if err := size.add(v, 0); err != nil {
			return err
		}
	}
	mem := C.malloc(C.size_t(size.bytes()))
	if mem == nil {
		return fmt.Errorf("out of memory for %d bytes of results", size.bytes())
	}
	defer C.free(mem)
	w := valueWriter{
		values: unsafe.Slice((*C.le_value)(mem), size.values),
		keys:   unsafe.Slice((*C.le_str)(unsafe.Add(mem, size.values*C.sizeof_le_value)), size.keys),
		data:   unsafe.Slice((*byte)(unsafe.Add(mem, size.values*C.sizeof_le_value+size.keys*C.sizeof_le_str)), size.data),
	}
	top := w.takeValues(len(results))
	for i, v := range results {
		w.put(&top[i], v)
	}
	if r := give(&top[0], C.size_t(len(top)), false, C.le_str{}); r != C.LE_OK {
		return fmt.Errorf("results refused: %s", Code(r))
	}
	return nil
}

// asyncFuncs are an engine's async host functions, with the context their timer calls get.
type asyncFuncs struct {
	entries map[string]*hostEntry
	ctx     context.Context
}

//export legoTimerOp
func legoTimerOp(op *C.le_timer_op, pending *C.le_pending, handle C.uintptr_t) {
	async := cgo.Handle(handle).Value().(*asyncFuncs)
	c := &Call{
		Name: goString(pending.name),
		Args: args(unsafe.Slice(pending.args, int(pending.n_args))),
		ctx:  async.ctx,
	}
	entry := async.entries[c.Name]
	// This runs on an engine thread that must not block: the function runs in a goroutine.
	go func() {
		results, err := runAsync(entry, c)
		answer(results, err, func(values *C.le_value, n C.size_t, fail bool, message C.le_str) C.le_result {
			return C.lego_timer_op_answer(op, values, n, C.bool(fail), message)
		})
	}()
}

// runAsync runs an async host function; a name the engine has none for fails the call.
func runAsync(entry *hostEntry, c *Call) ([]any, error) {
	if entry == nil {
		return nil, fmt.Errorf("no async host function '%s'", c.Name)
	}
	return runHost(entry.fn, c)
}

// fromValue copies an le_value into Go.
func fromValue(v *C.le_value) any {
	switch v.type_ {
	case C.LE_VALUE_BOOLEAN:
		return bool(v.boolean)
	case C.LE_VALUE_INTEGER:
		return int64(v.integer)
	case C.LE_VALUE_NUMBER:
		return float64(v.number)
	case C.LE_VALUE_STRING:
		return goString(v.string)
	case C.LE_VALUE_ARRAY:
		items := unsafe.Slice(v.items, int(v.len))
		out := make([]any, len(items))
		for i := range items {
			out[i] = fromValue(&items[i])
		}
		return out
	case C.LE_VALUE_MAP:
		items := unsafe.Slice(v.items, int(v.len))
		keys := unsafe.Slice(v.keys, int(v.len))
		out := make(map[string]any, len(items))
		for i := range items {
			out[goString(keys[i])] = fromValue(&items[i])
		}
		return out
	default:
		return nil
	}
}

// valueSize measures the C memory results need, and checks their types on the way.
type valueSize struct {
	values, keys, data int
}

func (s *valueSize) bytes() int {
	return s.values*C.sizeof_le_value + s.keys*C.sizeof_le_str + s.data
}

func (s *valueSize) add(v any, depth int) error {
	if depth >= C.LE_MAX_VALUE_DEPTH {
		return fmt.Errorf("results nest deeper than %d levels", C.LE_MAX_VALUE_DEPTH)
	}
	s.values++
	switch v := v.(type) {
	case nil, bool:
		return nil
	case string:
		s.data += len(v)
		return nil
	case []byte:
		s.data += len(v)
		return nil
	case []any:
		for _, item := range v {
			if err := s.add(item, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for key, item := range v {
			s.keys++
			s.data += len(key)
			if err := s.add(item, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	rv := reflect.ValueOf(v)
	switch kindOf(rv) {
	case scalarKind:
		return nil
	case stringKind:
		s.data += rv.Len()
		return nil
	case listKind:
		for i := 0; i < rv.Len(); i++ {
			if err := s.add(rv.Index(i).Interface(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case mapKind:
		for it := rv.MapRange(); it.Next(); {
			s.keys++
			s.data += it.Key().Len()
			if err := s.add(it.Value().Interface(), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("cannot pass a Go %T to Lua", v)
}

// What a Go value of another type than the common ones becomes in Lua, by its kind (so named
// types such as `type Count int` pass too).
const (
	unsupportedKind = iota
	scalarKind      // booleans and numbers
	stringKind
	listKind // slices and arrays: a sequence
	mapKind  // maps with string keys
)

func kindOf(rv reflect.Value) int {
	switch rv.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return scalarKind
	case reflect.String:
		return stringKind
	case reflect.Slice, reflect.Array:
		return listKind
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			return mapKind
		}
	}
	return unsupportedKind
}

// valueWriter lays results out in the block valueSize measured.
type valueWriter struct {
	values []C.le_value
	keys   []C.le_str
	data   []byte
}

func (w *valueWriter) takeValues(n int) []C.le_value {
	out := w.values[:n:n]
	w.values = w.values[n:]
	return out
}

func (w *valueWriter) str(s string) C.le_str {
	if s == "" {
		return C.le_str{}
	}
	n := copy(w.data, s)
	out := C.le_str{ptr: (*C.uint8_t)(unsafe.Pointer(&w.data[0])), len: C.size_t(n)}
	w.data = w.data[n:]
	return out
}

func (w *valueWriter) array(dst *C.le_value, n int, item func(i int) any) {
	dst.type_ = C.LE_VALUE_ARRAY
	dst.len = C.size_t(n)
	if n == 0 {
		return
	}
	items := w.takeValues(n)
	dst.items = &items[0]
	for i := range items {
		w.put(&items[i], item(i))
	}
}

func (w *valueWriter) put(dst *C.le_value, v any) {
	*dst = C.le_value{}
	switch v := v.(type) {
	case nil:
		dst.type_ = C.LE_VALUE_NIL
		return
	case string:
		dst.type_, dst.string = C.LE_VALUE_STRING, w.str(v)
		return
	case []byte:
		dst.type_, dst.string = C.LE_VALUE_STRING, w.str(unsafe.String(unsafe.SliceData(v), len(v)))
		return
	case []any:
		w.array(dst, len(v), func(i int) any { return v[i] })
		return
	case map[string]any:
		w.mapValue(dst, len(v), func(yield func(string, any)) {
			for key, item := range v {
				yield(key, item)
			}
		})
		return
	}
	// The types valueSize.add let through, by kind.
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool:
		dst.type_, dst.boolean = C.LE_VALUE_BOOLEAN, C.bool(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		dst.type_, dst.integer = C.LE_VALUE_INTEGER, C.int64_t(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if u := rv.Uint(); u <= math.MaxInt64 {
			dst.type_, dst.integer = C.LE_VALUE_INTEGER, C.int64_t(u)
		} else { // beyond int64: a number, as Lua would hold it
			dst.type_, dst.number = C.LE_VALUE_NUMBER, C.double(u)
		}
	case reflect.Float32, reflect.Float64:
		dst.type_, dst.number = C.LE_VALUE_NUMBER, C.double(rv.Float())
	case reflect.String:
		dst.type_, dst.string = C.LE_VALUE_STRING, w.str(rv.String())
	case reflect.Map:
		w.mapValue(dst, rv.Len(), func(yield func(string, any)) {
			for it := rv.MapRange(); it.Next(); {
				yield(it.Key().String(), it.Value().Interface())
			}
		})
	default:
		w.array(dst, rv.Len(), func(i int) any { return rv.Index(i).Interface() })
	}
}

func (w *valueWriter) mapValue(dst *C.le_value, n int, each func(yield func(string, any))) {
	dst.type_ = C.LE_VALUE_MAP
	if n == 0 {
		return
	}
	items := w.takeValues(n)
	keys := w.keys[:n:n]
	w.keys = w.keys[n:]
	dst.items, dst.keys, dst.len = &items[0], &keys[0], C.size_t(n)
	i := 0
	each(func(key string, item any) {
		keys[i] = w.str(key)
		w.put(&items[i], item)
		i++
	})
}
