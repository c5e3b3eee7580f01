package luaengine

import "sync/atomic"

// lifetime counts the users of a C handle: one reference for the owner until Close, plus one
// per user that must keep the handle alive (a request run, a pipeline). The handle is released
// when the count drops to zero, so Close never frees memory another goroutine is using.
type lifetime struct {
	refs   atomic.Int64
	closed atomic.Bool
}

func (l *lifetime) init() { l.refs.Store(1) }

// acquire takes a reference unless Close was called.
func (l *lifetime) acquire() bool {
	for {
		n := l.refs.Load()
		if n == 0 || l.closed.Load() {
			return false
		}
		if l.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference and reports whether it was the last one.
func (l *lifetime) release() bool { return l.refs.Add(-1) == 0 }

// close drops the owner's reference (once) and reports whether it was the last one.
func (l *lifetime) close() bool { return l.closed.CompareAndSwap(false, true) && l.release() }
