package luaengine

/*
#include "glue.h"
*/
import "C"

import (
	"errors"
	"math"
	"reflect"
	"runtime"
	"runtime/cgo"
	"time"
	"unsafe"
)

// Dict is the host's handle on a shared dict: the store scripts reach as ngx.shared.<name>,
// with lua-nginx-module's methods. It is safe for concurrent use, while scripts use the dict
// too, and independent of its engine's lifetime: Close it when done.
type Dict struct {
	life    lifetime
	ptr     *C.le_dict
	name    string
	cleanup runtime.Cleanup
}

// Failures of dict operations, as lua-nginx-module names them; the *Error a Dict method
// returns wraps them (errors.Is(err, ErrNotFound)).
var (
	ErrExists   = errors.New("exists")
	ErrNotFound = errors.New("not found")
	ErrNoMemory = errors.New("no memory")
	// ErrNotAList: a list operation on a key that holds a scalar.
	ErrNotAList = errors.New("value not a list")
)

// Dict opens the engine's shared dict name, as declared in Config.SharedDicts.
func (e *Engine) Dict(name string) (*Dict, error) {
	if err := e.life.acquire(); err != nil {
		return nil, err
	}
	defer e.life.release()
	var ptr *C.le_dict
	var cerr *C.le_error
	r := C.le_engine_dict(e.state.ptr, goStr(name), &ptr, &cerr)
	runtime.KeepAlive(name)
	if r != C.LE_OK {
		return nil, takeError(cerr, CodeInvalidArgument)
	}
	d := &Dict{ptr: ptr, name: name}
	d.cleanup = runtime.AddCleanup(d, func(ptr *C.le_dict) { C.le_dict_free(ptr) }, ptr)
	d.life.init(func() {
		d.cleanup.Stop()
		C.le_dict_free(ptr)
	})
	return d, nil
}

// Name returns the dict's name.
func (d *Dict) Name() string { return d.name }

// Close releases the handle; operations running on it finish first, later ones fail with
// ErrClosed. The dict lives on with its engine. Close is idempotent.
func (d *Dict) Close() error {
	d.life.close()
	return nil
}

// use runs op with the handle, turning a failure into an *Error that wraps the dict error it
// names. (R is le_result, which cgo types differently for enum and typedef returns.)
func use[R ~uint32](d *Dict, op func(err **C.le_error) R) error {
	if err := d.life.acquire(); err != nil {
		return err
	}
	defer d.life.release()
	var cerr *C.le_error
	if op(&cerr) == C.LE_OK {
		return nil
	}
	err := takeError(cerr, CodeInvalidArgument)
	for _, known := range []error{ErrExists, ErrNotFound, ErrNoMemory, ErrNotAList} {
		if err.Message == known.Error() {
			err.cause = known
		}
	}
	return err
}

// Get returns the value of a live key — nil when absent or expired, else a bool, float64 (the
// dict stores numbers as doubles) or string — and its user flags.
func (d *Dict) Get(key string) (value any, flags uint32, err error) {
	var f C.uint32_t
	value, err = d.take(key, func(k C.le_str, v *C.le_value, cerr **C.le_error) C.enum_le_result {
		return C.le_dict_get(d.ptr, k, v, &f, cerr)
	})
	return value, uint32(f), err
}

// GetStale is Get that still returns an expired entry until its memory is reclaimed (by a
// store that needs the room, FlushExpired or a new value under the key), with stale true:
// serve the stale value while a fresh one is fetched (dict:get_stale).
func (d *Dict) GetStale(key string) (value any, flags uint32, stale bool, err error) {
	var f C.uint32_t
	var s C.bool
	value, err = d.take(key, func(k C.le_str, v *C.le_value, cerr **C.le_error) C.enum_le_result {
		return C.le_dict_get_stale(d.ptr, k, v, &f, &s, cerr)
	})
	return value, uint32(f), bool(s), err
}

// take runs read, a dict function writing a value for the caller, and converts and frees it.
func (d *Dict) take(key string, read func(key C.le_str, v *C.le_value, cerr **C.le_error) C.enum_le_result) (any, error) {
	var value any
	err := use(d, func(cerr **C.le_error) C.enum_le_result {
		var v C.le_value
		r := read(goStr(key), &v, cerr)
		value = fromValue(&v)
		C.le_dict_value_free(&v)
		return r
	})
	runtime.KeepAlive(key)
	return value, err
}

// Set stores value under key (dict:set), evicting the least recently used entries when the
// dict is full; forcible reports whether live entries were evicted. value may be nil (deletes
// the key), a bool, any integer or float type (stored as a double), a string or a []byte.
// exptime > 0 makes the entry expire after it (millisecond precision).
func (d *Dict) Set(key string, value any, exptime time.Duration, flags uint32) (forcible bool, err error) {
	return d.store(C.LE_DICT_SET, key, value, exptime, flags)
}

// SafeSet is Set without evicting live entries: it fails with ErrNoMemory instead.
func (d *Dict) SafeSet(key string, value any, exptime time.Duration, flags uint32) error {
	_, err := d.store(C.LE_DICT_SAFE_SET, key, value, exptime, flags)
	return err
}

// Add is Set for a key that is absent (or expired); it fails with ErrExists otherwise.
func (d *Dict) Add(key string, value any, exptime time.Duration, flags uint32) (forcible bool, err error) {
	return d.store(C.LE_DICT_ADD, key, value, exptime, flags)
}

// SafeAdd is Add without evicting live entries.
func (d *Dict) SafeAdd(key string, value any, exptime time.Duration, flags uint32) error {
	_, err := d.store(C.LE_DICT_SAFE_ADD, key, value, exptime, flags)
	return err
}

// Replace is Set for a key that is present; it fails with ErrNotFound otherwise.
func (d *Dict) Replace(key string, value any, exptime time.Duration, flags uint32) (forcible bool, err error) {
	return d.store(C.LE_DICT_REPLACE, key, value, exptime, flags)
}

func (d *Dict) store(mode C.le_dict_mode, key string, value any, exptime time.Duration, flags uint32) (bool, error) {
	var mem cMemory
	defer mem.free()
	v, err := dictValue(&mem, value)
	if err != nil {
		return false, err
	}
	var forcible C.bool
	err = use(d, func(cerr **C.le_error) C.enum_le_result {
		return C.le_dict_set(d.ptr, mode, goStr(key), v, seconds(exptime), C.uint32_t(flags), &forcible, cerr)
	})
	runtime.KeepAlive(key)
	return bool(forcible), err
}

// dictValue is value as the le_value the dict functions take: nil, a bool, any integer or float
// type (as a double), a string or a []byte; other types fail with "bad value type". It goes in
// mem: C may not be handed a Go pointer to a struct holding one.
func dictValue(mem *cMemory, value any) (*C.le_value, error) {
	v := (*C.le_value)(mem.alloc(C.sizeof_le_value))
	switch x := value.(type) {
	case nil:
		v.type_ = C.LE_VALUE_NIL
	case bool:
		v.type_, v.boolean = C.LE_VALUE_BOOLEAN, C.bool(x)
	case string:
		v.type_, v.string = C.LE_VALUE_STRING, mem.str(x)
	case []byte:
		v.type_, v.string = C.LE_VALUE_STRING, mem.str(unsafe.String(unsafe.SliceData(x), len(x)))
	default:
		rv := reflect.ValueOf(value)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			v.number = C.double(rv.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			v.number = C.double(rv.Uint())
		case reflect.Float32, reflect.Float64:
			v.number = C.double(rv.Float())
		default:
			return nil, &Error{Code: CodeInvalidArgument, Message: "bad value type", Phase: NoPhase}
		}
		v.type_ = C.LE_VALUE_NUMBER
	}
	return v, nil
}

// seconds is a duration as the dict's seconds; 0 or less means never.
func seconds(d time.Duration) C.double {
	if d <= 0 {
		return 0
	}
	return C.double(d.Seconds())
}

// Delete removes key; an absent key is not an error.
func (d *Dict) Delete(key string) error {
	err := use(d, func(cerr **C.le_error) C.enum_le_result { return C.le_dict_delete(d.ptr, goStr(key), cerr) })
	runtime.KeepAlive(key)
	return err
}

// Incr adds by to the number under key and returns the new value; it fails with ErrNotFound
// when the key is absent.
func (d *Dict) Incr(key string, by float64) (float64, error) {
	return d.incr(key, by, nil, 0)
}

// IncrInit is Incr that stores init + by when the key is absent, expiring after initTTL (0:
// never).
func (d *Dict) IncrInit(key string, by, init float64, initTTL time.Duration) (float64, error) {
	return d.incr(key, by, &init, initTTL)
}

func (d *Dict) incr(key string, by float64, init *float64, initTTL time.Duration) (float64, error) {
	var out, initValue C.double
	var cinit *C.double
	if init != nil {
		initValue = C.double(*init)
		cinit = &initValue
	}
	err := use(d, func(cerr **C.le_error) C.enum_le_result {
		return C.le_dict_incr(d.ptr, goStr(key), C.double(by), cinit, seconds(initTTL), &out, cerr)
	})
	runtime.KeepAlive(key)
	return float64(out), err
}

// LPush inserts value at the head of the list under key (dict:lpush), creating the list when
// the key is absent or expired, and returns the list's new length. value is a string, a []byte
// or any integer or float type (stored as a double); other types fail with "bad value type".
// Lists never expire on their own. It fails with ErrNotAList when the key holds a scalar, and
// with ErrNoMemory when the element does not fit even after evicting least recently used
// entries.
func (d *Dict) LPush(key string, value any) (int, error) {
	return d.push(true, key, value)
}

// RPush is LPush at the tail of the list (dict:rpush): pushed with RPush and popped with LPop,
// the list is a FIFO queue, which scripts share through ngx.shared.<name>:rpush/lpop.
func (d *Dict) RPush(key string, value any) (int, error) {
	return d.push(false, key, value)
}

func (d *Dict) push(head bool, key string, value any) (int, error) {
	var mem cMemory
	defer mem.free()
	v, err := dictValue(&mem, value)
	if err != nil {
		return 0, err
	}
	var n C.size_t
	err = use(d, func(cerr **C.le_error) C.enum_le_result {
		if head {
			return C.le_dict_lpush(d.ptr, goStr(key), v, &n, cerr)
		}
		return C.le_dict_rpush(d.ptr, goStr(key), v, &n, cerr)
	})
	runtime.KeepAlive(key)
	return int(n), err
}

// LPop removes and returns the head of the list under key (dict:lpop): a string or a float64,
// or nil when the key is absent or expired or the list empty (as Get returns nil for an absent
// key: a list never holds nil). Taking the last element removes the key. It fails with
// ErrNotAList when the key holds a scalar.
func (d *Dict) LPop(key string) (any, error) {
	return d.take(key, func(k C.le_str, v *C.le_value, cerr **C.le_error) C.enum_le_result {
		return C.le_dict_lpop(d.ptr, k, v, cerr)
	})
}

// RPop is LPop at the tail of the list (dict:rpop).
func (d *Dict) RPop(key string) (any, error) {
	return d.take(key, func(k C.le_str, v *C.le_value, cerr **C.le_error) C.enum_le_result {
		return C.le_dict_rpop(d.ptr, k, v, cerr)
	})
}

// LLen returns the number of elements in the list under key (dict:llen), 0 when the key is
// absent or expired; ErrNotAList when it holds a scalar.
func (d *Dict) LLen(key string) (int, error) {
	var n C.size_t
	err := use(d, func(cerr **C.le_error) C.enum_le_result { return C.le_dict_llen(d.ptr, goStr(key), &n, cerr) })
	runtime.KeepAlive(key)
	return int(n), err
}

// TTL returns how long a live key has before it expires, 0 when it never does; ErrNotFound
// when it is absent.
func (d *Dict) TTL(key string) (time.Duration, error) {
	var out C.double
	err := use(d, func(cerr **C.le_error) C.enum_le_result { return C.le_dict_ttl(d.ptr, goStr(key), &out, cerr) })
	runtime.KeepAlive(key)
	return time.Duration(float64(out) * float64(time.Second)), err
}

// Expire makes a live key expire after exptime (0: never); ErrNotFound when it is absent.
func (d *Dict) Expire(key string, exptime time.Duration) error {
	err := use(d, func(cerr **C.le_error) C.enum_le_result {
		return C.le_dict_expire(d.ptr, goStr(key), seconds(exptime), cerr)
	})
	runtime.KeepAlive(key)
	return err
}

// Keys returns up to max live keys (0: all), most recently used first.
func (d *Dict) Keys(max int) ([]string, error) {
	var keys []string
	h := cgo.NewHandle(&keys)
	defer h.Delete()
	err := use(d, func(cerr **C.le_error) C.enum_le_result {
		return C.enum_le_result(C.lego_dict_keys(d.ptr, C.size_t(max), C.uintptr_t(h), cerr))
	})
	return keys, err
}

//export legoDictKey
func legoDictKey(key C.le_str, handle C.uintptr_t) {
	keys := cgo.Handle(handle).Value().(*[]string)
	*keys = append(*keys, goString(key))
}

// FlushAll makes every entry expire now.
func (d *Dict) FlushAll() error {
	return use(d, func(cerr **C.le_error) C.enum_le_result { return C.le_dict_flush_all(d.ptr, cerr) })
}

// FlushExpired removes up to max expired entries (0: all) and returns how many it removed.
func (d *Dict) FlushExpired(max int) (int, error) {
	var n C.size_t
	err := use(d, func(cerr **C.le_error) C.enum_le_result {
		return C.le_dict_flush_expired(d.ptr, C.size_t(max), &n, cerr)
	})
	return int(n), err
}

// Capacity returns the dict's size in bytes as configured; 0 once closed.
func (d *Dict) Capacity() int {
	if d.life.acquire() != nil {
		return 0
	}
	defer d.life.release()
	return int(min(uint64(C.le_dict_capacity(d.ptr)), math.MaxInt))
}

// FreeSpace returns the bytes not used by entries (expired ones count as used until removed);
// 0 once closed.
func (d *Dict) FreeSpace() int {
	if d.life.acquire() != nil {
		return 0
	}
	defer d.life.release()
	return int(min(uint64(C.le_dict_free_space(d.ptr)), math.MaxInt))
}
