//! A request: the snapshot the host made it from, the response scripts build, and the Lua
//! state that lives across its phases (`ngx.ctx`, its globals, a suspended coroutine).

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use mlua::{Table, Thread};

use crate::cache::Script;
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::phase::{Phase, Status};
use crate::worker::Worker;

/// Everything a request starts from, borrowed from the host for the duration of
/// `Engine::new_request` (which copies it). Strings are bytes: HTTP allows non-UTF-8 octets.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestInit<'a> {
    pub method: &'a [u8],
    /// The URI path, without the query string (`/t/a`).
    pub path: &'a [u8],
    /// The query string without `?` (`a=1&b=2`), empty when there is none.
    pub query: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2.0`…; empty means `HTTP/1.1`.
    pub http_version: &'a [u8],
    /// `http` or `https`; empty means `http`.
    pub scheme: &'a [u8],
    pub remote_addr: &'a [u8],
    /// The request body, when the host has it up front.
    pub body: Option<&'a [u8]>,
}

/// The host's request, copied into one buffer: one allocation for all the strings.
pub(crate) struct Snapshot {
    buf: Vec<u8>,
    method: Range<usize>,
    path: Range<usize>,
    query: Range<usize>,
    http_version: Range<usize>,
    scheme: Range<usize>,
    remote_addr: Range<usize>,
    body: Option<Range<usize>>,
    headers: Vec<(Range<usize>, Range<usize>)>,
}

impl Snapshot {
    fn new<'h, I>(init: &RequestInit<'_>, headers: I) -> Snapshot
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
        I::IntoIter: Clone,
    {
        let headers = headers.into_iter();
        let scalars = [init.method, init.path, init.query, init.http_version, init.scheme, init.remote_addr];
        let size = scalars.iter().map(|s| s.len().max(8)).sum::<usize>()
            + init.body.map_or(0, <[u8]>::len)
            + headers.clone().map(|(name, value)| name.len() + value.len()).sum::<usize>();
        let mut buf = Vec::with_capacity(size);
        let mut push = |bytes: &[u8]| {
            let start = buf.len();
            buf.extend_from_slice(bytes);
            start..buf.len()
        };
        let method = push(or_default(init.method, b"GET"));
        let path = push(or_default(init.path, b"/"));
        let query = push(init.query);
        let http_version = push(or_default(init.http_version, b"HTTP/1.1"));
        let scheme = push(or_default(init.scheme, b"http"));
        let remote_addr = push(init.remote_addr);
        let body = init.body.map(&mut push);
        let mut ranges = Vec::with_capacity(headers.size_hint().0);
        for (name, value) in headers {
            let name = push(name);
            ranges.push((name, push(value)));
        }
        Snapshot { buf, method, path, query, http_version, scheme, remote_addr, body, headers: ranges }
    }

    fn at(&self, range: &Range<usize>) -> &[u8] {
        &self.buf[range.clone()]
    }

    pub fn method(&self) -> &[u8] {
        self.at(&self.method)
    }
    pub fn path(&self) -> &[u8] {
        self.at(&self.path)
    }
    pub fn query(&self) -> &[u8] {
        self.at(&self.query)
    }
    pub fn http_version(&self) -> &[u8] {
        self.at(&self.http_version)
    }
    pub fn scheme(&self) -> &[u8] {
        self.at(&self.scheme)
    }
    pub fn remote_addr(&self) -> &[u8] {
        self.at(&self.remote_addr)
    }
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_ref().map(|range| self.at(range))
    }
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.headers.iter().map(|(name, value)| (self.at(name), self.at(value)))
    }
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    }
}

fn or_default<'a>(given: &'a [u8], default: &'a [u8]) -> &'a [u8] {
    if given.is_empty() {
        default
    } else {
        given
    }
}

/// What the scripts produced, read back by the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The status a script set (`ngx.status`, `ngx.exit`, `ngx.redirect`); 0 if none did.
    pub status: u16,
    /// Response headers set by scripts, in order; a name may repeat.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// What `ngx.say`/`ngx.print` wrote.
    pub body: Vec<u8>,
    /// Whether output was produced (nginx would have sent the headers).
    pub headers_sent: bool,
    /// The argument of the last `ngx.exit` (or the status of `ngx.redirect`), if any.
    pub exit_code: Option<i64>,
}

impl Response {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.as_slice())
    }
}

/// A phase that waits: the coroutine to resume and the budget it has left.
pub(crate) struct Suspended {
    pub phase: Phase,
    pub thread: Thread,
    pub budget_left: crate::limits::Left,
}

/// A request's state. It travels into the worker's Lua state (as `CurrentRequest`) while a
/// phase runs, so the `ngx.*` functions can reach it, and back out when the phase returns.
pub(crate) struct RequestState {
    pub id: u64,
    pub input: Snapshot,
    pub response: Response,
    /// The phase running now (only set while inside the worker).
    pub phase: Option<Phase>,
    pub started_at: Instant,
    /// `ngx.ctx`, created on first use.
    pub ctx: Option<Table>,
    /// The request's globals, created on the first phase run.
    pub env: Option<Table>,
    pub suspended: Option<Suspended>,
}

/// One HTTP request, bound to one worker for its whole life. Not `Sync`: drive it from one
/// thread at a time (any thread: it is `Send`).
pub struct Request {
    id: u64,
    state: Option<Box<RequestState>>,
    worker: Arc<Worker>,
    shared: Arc<Shared>,
}

impl Request {
    pub(crate) fn new<'h, I>(
        shared: Arc<Shared>,
        worker: Arc<Worker>,
        id: u64,
        init: &RequestInit<'_>,
        headers: I,
    ) -> Request
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
        I::IntoIter: Clone,
    {
        let state = RequestState {
            id,
            input: Snapshot::new(init, headers),
            response: Response::default(),
            phase: None,
            started_at: Instant::now(),
            ctx: None,
            env: None,
            suspended: None,
        };
        Request { id, state: Some(Box::new(state)), worker, shared }
    }

    /// The engine-wide id of this request (in logs as `request_id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The worker this request runs on.
    pub fn worker(&self) -> usize {
        self.worker.index
    }

    /// Runs one phase's script on this request. `Ok(Status::Yield)` means the script waits:
    /// call `resume` later. Errors carry the Lua message, chunk, line and traceback.
    pub fn run(&mut self, phase: Phase, script: &Script) -> Result<Status> {
        if !phase.is_request_phase() {
            return Err(Error::invalid_argument(format!("{} is not a request phase", phase.name())));
        }
        let state = self.take_state()?;
        if let Some(suspended) = &state.suspended {
            let message = format!("the request is suspended in {}; resume or free it first", suspended.phase.name());
            self.state = Some(state);
            return Err(Error::invalid_state(message));
        }
        let (state, result) = self.worker.run(&self.shared, state, phase, script.current());
        self.state = Some(state);
        result
    }

    /// Continues the suspended phase.
    pub fn resume(&mut self) -> Result<Status> {
        let state = self.take_state()?;
        if state.suspended.is_none() {
            self.state = Some(state);
            return Err(Error::invalid_state("the request is not suspended"));
        }
        let (state, result) = self.worker.resume(&self.shared, state);
        self.state = Some(state);
        result
    }

    /// Whether a phase waits for `resume`.
    pub fn is_suspended(&self) -> bool {
        self.state.as_ref().is_some_and(|state| state.suspended.is_some())
    }

    /// What the scripts produced so far.
    pub fn response(&self) -> &Response {
        static EMPTY: Response =
            Response { status: 0, headers: Vec::new(), body: Vec::new(), headers_sent: false, exit_code: None };
        self.state.as_ref().map_or(&EMPTY, |state| &state.response)
    }

    fn take_state(&mut self) -> Result<Box<RequestState>> {
        self.state.take().ok_or_else(|| Error::invalid_state("the request was lost by an earlier failure; free it"))
    }
}
