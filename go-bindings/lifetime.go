package luaengine

import "sync/atomic"

// lifetime counts the users of a C handle: one reference for the owner until Close, plus one
// per user that must keep the handle alive (a request, a pipeline, a phase run). free runs when
// the count drops to zero, so Close never frees memory another goroutine is using.
type lifetime struct {
	refs   atomic.Int64
	closed atomic.Bool
	free   func()
}

func (l *lifetime) init(free func()) {
	l.free = free
	l.refs.Store(1)
}

// acquire takes a reference, or fails with ErrClosed once Close was called.
func (l *lifetime) acquire() error {
	for {
		n := l.refs.Load()
		if n == 0 || l.closed.Load() {
			return ErrClosed
		}
		if l.refs.CompareAndSwap(n, n+1) {
			return nil
		}
	}
}

// release drops a reference.
func (l *lifetime) release() {
	if l.refs.Add(-1) == 0 {
		l.free()
	}
}

// close drops the owner's reference, once.
func (l *lifetime) close() {
	if l.closed.CompareAndSwap(false, true) {
		l.release()
	}
}
