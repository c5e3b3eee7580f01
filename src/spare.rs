//! The vectors of freed requests, kept by the thread that freed them for the next request it
//! makes there: that request allocates nothing for its snapshot, header ranges, body and
//! response headers. Only emptied vectors are kept; every request's state is built afresh.

use std::cell::RefCell;
use std::ops::Range;

/// Freed requests whose vectors a thread keeps; the vectors of more are freed. Small, as a
/// host may have many threads: a thread rarely has more requests alive at once.
const KEPT: usize = 8;
/// A vector grown beyond this (a large body, many headers) is freed rather than kept.
const MAX_KEPT_BYTES: usize = 4096;

#[derive(Default)]
pub(crate) struct Vectors {
    pub buf: Vec<u8>,
    pub header_ranges: Vec<(Range<usize>, Range<usize>)>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(Vec<u8>, Vec<u8>)>,
}

thread_local! {
    static KEPT_VECTORS: RefCell<Vec<Vectors>> = const { RefCell::new(Vec::new()) };
}

/// Vectors for a new request: kept ones when this thread has some, else new empty ones.
pub(crate) fn take() -> Vectors {
    KEPT_VECTORS.try_with(|kept| kept.borrow_mut().pop()).ok().flatten().unwrap_or_default()
}

/// Keeps a freed request's vectors, emptied, for the next request made on this thread.
pub(crate) fn keep(mut vectors: Vectors) {
    let sizes = [
        heap_bytes(&vectors.buf),
        heap_bytes(&vectors.header_ranges),
        heap_bytes(&vectors.body),
        heap_bytes(&vectors.response_headers),
    ];
    if sizes.into_iter().any(|size| size > MAX_KEPT_BYTES) {
        return;
    }
    vectors.buf.clear();
    vectors.header_ranges.clear();
    vectors.body.clear();
    vectors.response_headers.clear();
    // At thread exit the cache may be gone: the vectors are then simply freed.
    let _ = KEPT_VECTORS.try_with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < KEPT {
            kept.push(vectors);
        }
    });
}

fn heap_bytes<T>(vector: &Vec<T>) -> usize {
    vector.capacity() * size_of::<T>()
}
