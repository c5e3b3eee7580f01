//! The states of freed requests, kept by the thread that freed them for the next request it
//! makes there: that request allocates nothing for its state, snapshot, header ranges, body and
//! response headers. A kept state holds no trace of its request but the capacity of its
//! vectors: every field is set afresh when it is taken.

use std::cell::RefCell;

use crate::request::RequestState;

/// Freed requests whose states a thread keeps; the states of more are freed. Small, as a host
/// may have many threads: a thread rarely has more requests alive at once.
const KEPT: usize = 8;
/// A state whose vectors grew beyond this (a large body, many headers) is freed rather than kept.
const MAX_KEPT_BYTES: usize = 4096;

thread_local! {
    // Boxed: the box is what a new request reuses (a request holds its state boxed).
    #[allow(clippy::vec_box)]
    static KEPT_STATES: RefCell<Vec<Box<RequestState>>> = const { RefCell::new(Vec::new()) };
}

/// A state for a new request to fill in: a kept one when this thread has one.
pub(crate) fn take() -> Option<Box<RequestState>> {
    KEPT_STATES.try_with(|kept| kept.borrow_mut().pop()).ok().flatten()
}

/// Keeps a freed request's state, emptied, for the next request made on this thread.
pub(crate) fn keep(mut state: Box<RequestState>) {
    if state.vector_bytes().into_iter().any(|size| size > MAX_KEPT_BYTES) {
        return;
    }
    state.empty();
    // At thread exit the cache may be gone: the state is then simply freed.
    let _ = KEPT_STATES.try_with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < KEPT {
            kept.push(state);
        }
    });
}

pub(crate) fn heap_bytes<T>(vector: &Vec<T>) -> usize {
    vector.capacity() * size_of::<T>()
}
