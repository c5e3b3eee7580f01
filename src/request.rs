//! A request: the snapshot the host made it from, the response scripts build, and the Lua
//! state that lives across its phases (`ngx.ctx`, its globals, a suspended coroutine).

use std::mem;
use std::ops::Range;
use std::sync::{Arc, Weak};
use std::time::Instant;

use mlua::{Table, Thread};

use crate::cache::Script;
use crate::engine::Hold;
use crate::error::{Error, Result};
use crate::host::HostValue;
use crate::phase::{Phase, Status};
use crate::scheduler::Scheduler;
use crate::spare;
use crate::wait::{Event, LazyWakeSlot, PendingOp, Waits, WakeSlot, Waker, READ_BODY};
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
    /// Optional: a buffer of the host's that holds the strings above and the headers' (an HTTP
    /// parser's read buffer, say). When it is not much larger than they are, it is copied in one
    /// piece rather than string by string; strings outside it are copied one by one.
    pub buffer: Option<&'a [u8]>,
}

/// The host's request, copied into one buffer: one allocation for all the strings. Scripts may
/// change it (`ngx.req.set_uri`, `set_header`, `ngx.var.*` writes...): new strings are appended
/// to the buffer and the ranges moved to them, so a request nothing edits costs nothing more,
/// and what the host sent stays readable (`$request_uri`, `ngx.req.raw_header`).
pub(crate) struct Snapshot {
    buf: Vec<u8>,
    method: Range<usize>,
    path: Range<usize>,
    query: Range<usize>,
    /// The request line as received.
    received_method: Range<usize>,
    received_path: Range<usize>,
    received_query: Range<usize>,
    http_version: Range<usize>,
    scheme: Range<usize>,
    remote_addr: Range<usize>,
    body: Option<Range<usize>>,
    /// A script replaced the body (`set_body_data`, `init_body`): the host's is not wanted.
    body_changed: bool,
    /// The headers as received.
    headers: Vec<(Range<usize>, Range<usize>)>,
    /// The current headers, made from `headers` on the first edit.
    edited_headers: Option<Vec<(Range<usize>, Range<usize>)>>,
    /// Variables scripts set (names lowercased); `None` is a variable set to nil.
    variables: Vec<(Range<usize>, Option<Range<usize>>)>,
}

impl Snapshot {
    /// A snapshot of nothing, for a request whose state was lost.
    const EMPTY: Snapshot = Snapshot {
        buf: Vec::new(),
        method: 0..0,
        path: 0..0,
        query: 0..0,
        received_method: 0..0,
        received_path: 0..0,
        received_query: 0..0,
        http_version: 0..0,
        scheme: 0..0,
        remote_addr: 0..0,
        body: None,
        body_changed: false,
        headers: Vec::new(),
        edited_headers: None,
        variables: Vec::new(),
    };

    /// The snapshot of `init` and `headers`, in `buf` and `ranges` (empty vectors, perhaps with
    /// room already).
    fn new<'h, I>(
        init: &RequestInit<'_>,
        headers: I,
        mut buf: Vec<u8>,
        mut ranges: Vec<(Range<usize>, Range<usize>)>,
    ) -> Snapshot
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
        I::IntoIter: Clone,
    {
        let headers = headers.into_iter();
        let scalars = [init.method, init.path, init.query, init.http_version, init.scheme, init.remote_addr];
        let size = scalars.iter().map(|s| s.len().max(8)).sum::<usize>()
            + init.body.map_or(0, <[u8]>::len)
            + headers.clone().map(|(name, value)| name.len() + value.len()).sum::<usize>();
        // A buffer much larger than the strings (a body the host did not pass, say) would cost
        // more to copy than the strings one by one.
        let buffer = init.buffer.filter(|buffer| buffer.len() <= 2 * size);
        buf.reserve(size + buffer.map_or(0, <[u8]>::len));
        buf.extend_from_slice(buffer.unwrap_or_default());
        ranges.reserve(headers.size_hint().0);
        let mut snapshot = Snapshot { buf, ..Snapshot::EMPTY };
        let place = |snapshot: &mut Snapshot, bytes: &[u8]| match buffer.and_then(|buffer| within(buffer, bytes)) {
            Some(range) => range,
            None => snapshot.push(bytes),
        };
        snapshot.method = place(&mut snapshot, or_default(init.method, b"GET"));
        snapshot.path = place(&mut snapshot, or_default(init.path, b"/"));
        snapshot.query = place(&mut snapshot, init.query);
        snapshot.received_method = snapshot.method.clone();
        snapshot.received_path = snapshot.path.clone();
        snapshot.received_query = snapshot.query.clone();
        snapshot.http_version = place(&mut snapshot, or_default(init.http_version, b"HTTP/1.1"));
        snapshot.scheme = place(&mut snapshot, or_default(init.scheme, b"http"));
        snapshot.remote_addr = place(&mut snapshot, init.remote_addr);
        snapshot.body = init.body.map(|body| place(&mut snapshot, body));
        for (name, value) in headers {
            let name = place(&mut snapshot, name);
            ranges.push((name, place(&mut snapshot, value)));
        }
        snapshot.headers = ranges;
        snapshot
    }

    fn push(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        start..self.buf.len()
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
    /// Appends the request line as the host received it, whatever scripts changed since
    /// (`GET /t?a=1 HTTP/1.1`, `$request`), or with `uri_only` its URI (`$request_uri`).
    pub fn append_request_line(&self, out: &mut Vec<u8>, uri_only: bool) {
        if !uri_only {
            out.extend_from_slice(self.at(&self.received_method));
            out.push(b' ');
        }
        out.extend_from_slice(self.at(&self.received_path));
        let query = self.at(&self.received_query);
        if !query.is_empty() {
            out.push(b'?');
            out.extend_from_slice(query);
        }
        if !uri_only {
            out.push(b' ');
            out.extend_from_slice(self.http_version());
        }
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
    /// The current headers, in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.edited_headers
            .as_ref()
            .unwrap_or(&self.headers)
            .iter()
            .map(|(name, value)| (self.at(name), self.at(value)))
    }
    /// The headers as the host sent them.
    pub fn received_headers(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.headers.iter().map(|(name, value)| (self.at(name), self.at(value)))
    }
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    }

    pub fn set_method(&mut self, method: &[u8]) {
        self.method = self.push(method);
    }
    pub fn set_path(&mut self, path: &[u8]) {
        self.path = self.push(path);
    }
    pub fn set_query(&mut self, query: &[u8]) {
        self.query = self.push(query);
    }
    /// The host's body (completing `ngx.req.read_body`).
    pub fn set_body(&mut self, body: &[u8]) {
        self.body = Some(self.push(body));
    }
    /// A body a script wrote, in place of the host's.
    pub fn replace_body(&mut self, body: &[u8]) {
        self.set_body(body);
        self.body_changed = true;
    }
    pub fn body_changed(&self) -> bool {
        self.body_changed
    }
    /// Extends the body (`ngx.req.append_body`): in place while it is the last string in the
    /// buffer, as it is between `init_body` and `finish_body` unless something else was set.
    pub fn append_body(&mut self, data: &[u8]) {
        let start = match self.body.clone() {
            Some(body) if body.end == self.buf.len() => body.start,
            body => {
                let start = self.buf.len();
                if let Some(body) = body {
                    self.buf.extend_from_within(body);
                }
                start
            }
        };
        self.buf.extend_from_slice(data);
        self.body = Some(start..self.buf.len());
    }
    pub fn clear_body(&mut self) {
        self.body = None;
    }

    /// `ngx.req.set_header` as nginx does it: the first header of that name (compared
    /// case-insensitively) takes the first value in place and keeps its spelling, the other
    /// headers of that name go, further values are appended; no values removes the header.
    pub fn set_header(&mut self, name: &[u8], values: &[&[u8]]) {
        let (first, rest) = match values.split_first() {
            Some((first, rest)) => (Some(self.push(first)), rest),
            None => (None, values),
        };
        let mut headers = self.edited_headers.take().unwrap_or_else(|| self.headers.clone());
        let mut first = first;
        headers.retain_mut(|(n, value)| {
            if !self.buf[n.clone()].eq_ignore_ascii_case(name) {
                return true;
            }
            match first.take() {
                Some(range) => {
                    *value = range;
                    true
                }
                None => false,
            }
        });
        let appended = first.into_iter().chain(rest.iter().map(|value| self.push(value))).collect::<Vec<_>>();
        if !appended.is_empty() {
            let name = self.push(name);
            headers.extend(appended.into_iter().map(|value| (name.clone(), value)));
        }
        self.edited_headers = Some(headers);
    }

    /// A variable a script set, by name (case-insensitive): `Some(None)` when it was set to nil.
    pub fn variable(&self, name: &[u8]) -> Option<Option<&[u8]>> {
        self.variables
            .iter()
            .find(|(n, _)| self.at(n).eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref().map(|v| self.at(v)))
    }
    /// The variables scripts set and did not clear, in the order they were first set.
    pub fn variables(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.variables.iter().filter_map(|(name, value)| Some((self.at(name), self.at(value.as_ref()?))))
    }
    /// Sets (or with `None` clears) a variable; `name` is lowercased already.
    pub fn set_variable(&mut self, name: &[u8], value: Option<&[u8]>) {
        let value = value.map(|value| self.push(value));
        match self.variables.iter().position(|(n, _)| self.buf[n.clone()] == *name) {
            Some(index) => self.variables[index].1 = value,
            None => {
                let name = self.push(name);
                self.variables.push((name, value));
            }
        }
    }
}

/// Now in Unix seconds, truncated to milliseconds like nginx's cached time.
pub(crate) fn unix_millis_now() -> f64 {
    crate::api::time::unix_millis() as f64 / 1000.0
}

/// Where `part` lies in `buffer`, if it does (by address: the host's strings point into it).
fn within(buffer: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(buffer.as_ptr() as usize)?;
    (start <= buffer.len() && part.len() <= buffer.len() - start).then(|| start..start + part.len())
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
    /// The status a script set (`ngx.status`, `ngx.exit`, `ngx.redirect`), or 200 once the
    /// engine sent the headers without one; 0 otherwise.
    pub status: u16,
    /// Response headers set by scripts (`ngx.header`, `ngx.redirect`), in order; a name may
    /// repeat. `Content-Type: <EngineConfig::default_type>` is added when the headers are sent
    /// and no script set or cleared Content-Type.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// What `ngx.say`/`ngx.print` wrote.
    pub body: Vec<u8>,
    /// Whether the engine sent the headers, as nginx would have: on the first output
    /// (`ngx.say`, `ngx.print`, `ngx.flush`), when a content phase finishes or exits with
    /// `ngx.OK`, and on `ngx.exit` with a 2xx status other than 204. An `ngx.exit` of 204 or
    /// ≥ 300 (and `ngx.redirect`) leaves it false: the host sends that special response.
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
    /// Whether it waits for an event (ngx.sleep, an async call) rather than a plain
    /// `coroutine.yield()`, which any resume continues.
    pub waiting: bool,
}

/// A request's state. It travels into the worker's Lua state (as `CurrentRequest`) while a
/// phase runs, so the `ngx.*` functions can reach it, and back out when the phase returns.
pub(crate) struct RequestState {
    pub id: u64,
    pub input: Snapshot,
    pub response: Response,
    /// The phase running now (only set while inside the worker).
    pub phase: Option<Phase>,
    /// When the request was created: Unix seconds, milliseconds in the fraction (as nginx).
    pub start_time: f64,
    /// Set by `ngx.req.set_uri(uri, true)` in rewrite; cleared when the next phase starts.
    pub location_jump: bool,
    /// `ngx.req.discard_body` ran: the client's body is not wanted.
    pub body_discarded: bool,
    /// Between `ngx.req.init_body` and `ngx.req.finish_body`.
    pub body_building: bool,
    /// `ngx.ctx`, created on first use.
    pub ctx: Option<Table>,
    /// A script set or cleared Content-Type: the default type is not added (nginx's mime_set).
    pub content_type_set: bool,
    /// The request's globals, created on the first phase run.
    pub env: Option<Table>,
    /// The worker state `env`, `ctx`, `threads` and `suspended` belong to
    /// (`WorkerLua::generation`).
    pub generation: u64,
    /// The light threads (`ngx.thread`) of the running phase, created on the first spawn and
    /// dropped when the next phase starts. Held here, not in a Lua table keyed by `env`: its
    /// threads reference `env`, and LuaJIT's weak keys (no ephemerons) would then never let
    /// the request's globals go.
    pub threads: Option<Table>,
    pub suspended: Option<Suspended>,
    /// Waits started by the running phase and not completed yet.
    pub waits: Waits,
    /// The chunk body_filter works on (`ngx.arg[1]`, `ngx.arg[2]`).
    pub chunk: BodyChunk,
    /// Body bytes that left body_filter, once one ran (`$body_bytes_sent`).
    pub filtered_bytes: Option<u64>,
}

/// A piece of the response body passing through body_filter, and whether it is the last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyChunk {
    pub data: Vec<u8>,
    pub eof: bool,
}

impl RequestState {
    fn new(id: u64, input: Snapshot, start_time: f64) -> RequestState {
        RequestState {
            id,
            input,
            response: Response::default(),
            phase: None,
            start_time,
            location_jump: false,
            body_discarded: false,
            body_building: false,
            ctx: None,
            content_type_set: false,
            env: None,
            generation: 0,
            threads: None,
            suspended: None,
            waits: Waits::default(),
            chunk: BodyChunk::default(),
            filtered_bytes: None,
        }
    }

    /// The state of code that runs without a request (init, init_worker, timer callbacks): an
    /// empty request with id 0, which the request APIs refuse by phase anyway.
    pub(crate) fn detached() -> Box<RequestState> {
        Box::new(RequestState::new(0, Snapshot::EMPTY, 0.0))
    }

    /// The state of a new request: one this thread kept (see `spare`) filled in place, so that
    /// its vectors serve again, else a new one.
    fn boxed<'h, I>(id: u64, init: &RequestInit<'_>, headers: I) -> Box<RequestState>
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
        I::IntoIter: Clone,
    {
        let start_time = unix_millis_now();
        let mut state = spare::take().unwrap_or_else(RequestState::detached);
        state.reset(id, start_time, |buf, ranges| Snapshot::new(init, headers, buf, ranges));
        state
    }

    /// The heap bytes of the vectors a kept state would hold on to.
    pub(crate) fn vector_bytes(&self) -> [usize; 4] {
        [
            spare::heap_bytes(&self.input.buf),
            spare::heap_bytes(&self.input.headers),
            spare::heap_bytes(&self.response.body),
            spare::heap_bytes(&self.response.headers),
        ]
    }

    /// Forgets the request, keeping only the vectors' capacity: its Lua values (globals, ctx,
    /// coroutine) are released, its bytes cleared.
    pub(crate) fn empty(&mut self) {
        self.reset(0, 0.0, |buf, headers| Snapshot { buf, headers, ..Snapshot::EMPTY });
    }

    /// Makes this the fresh state of request `id`, whose snapshot `input` builds in this
    /// state's vectors (emptied); the response's vectors are emptied and kept too.
    fn reset(
        &mut self,
        id: u64,
        start_time: f64,
        input: impl FnOnce(Vec<u8>, Vec<(Range<usize>, Range<usize>)>) -> Snapshot,
    ) {
        fn emptied<T>(vector: &mut Vec<T>) -> Vec<T> {
            let mut vector = mem::take(vector);
            vector.clear();
            vector
        }
        let snapshot = input(emptied(&mut self.input.buf), emptied(&mut self.input.headers));
        let (body, headers) = (emptied(&mut self.response.body), emptied(&mut self.response.headers));
        *self = RequestState::new(id, snapshot, start_time);
        self.response.body = body;
        self.response.headers = headers;
    }

    /// Whether the response headers are out, for scripts that would change them: header_filter
    /// runs while they are being sent (changes still count), body_filter and log after.
    pub(crate) fn headers_out(&self) -> bool {
        match self.phase {
            Some(Phase::HeaderFilter) => false,
            Some(Phase::BodyFilter | Phase::Log) => true,
            _ => self.response.headers_sent,
        }
    }

    /// What to resume a suspended phase with: the next completed wait it waits for, or nothing
    /// after a plain `coroutine.yield()` (whose wake is then not needed); `None` while its wait
    /// has not completed.
    pub(crate) fn resume_event(&mut self, wake: &WakeSlot) -> Option<Option<Event>> {
        match &self.suspended {
            Some(suspended) if suspended.waiting => wake.next_for(&mut self.waits).map(Some),
            Some(_) => {
                wake.drop_yield_wake();
                Some(None)
            }
            None => Some(None),
        }
    }

    /// The running phase ended (or was cancelled): its waits no longer matter, nor wake anyone.
    fn forget_waits(&mut self, wake: &LazyWakeSlot) {
        // Without a slot, nothing could deliver their completions.
        if let (Some(last), Some(slot)) = (self.waits.forget(), wake.made()) {
            slot.forget_through(last);
        }
    }

    /// Sends the response headers if they were not sent, as nginx does on the first output: the
    /// status becomes 200 if no script set one, and `Content-Type: default_type` is added unless
    /// a script set or cleared it (or the status has no body: 204, 304).
    pub(crate) fn send_headers(&mut self, default_type: &str) {
        let response = &mut self.response;
        if response.headers_sent {
            return;
        }
        response.headers_sent = true;
        if response.status == 0 {
            response.status = 200;
        }
        if !self.content_type_set && !default_type.is_empty() && !matches!(response.status, 204 | 304) {
            response.headers.push((b"Content-Type".to_vec(), default_type.as_bytes().to_vec()));
        }
    }
}

/// One HTTP request, bound to one worker for its whole life. Not `Sync`: drive it from one
/// thread at a time (any thread: it is `Send`).
pub struct Request {
    id: u64,
    state: Option<Box<RequestState>>,
    worker: Arc<Worker>,
    /// Keeps the engine running while the request lives.
    shared: Arc<Hold>,
    /// Completed waits, reached by the clock thread and the host.
    wake: LazyWakeSlot,
}

impl Request {
    pub(crate) fn new<'h, I>(
        shared: Arc<Hold>,
        worker: Arc<Worker>,
        id: u64,
        init: &RequestInit<'_>,
        headers: I,
    ) -> Request
    where
        I: IntoIterator<Item = (&'h [u8], &'h [u8])>,
        I::IntoIter: Clone,
    {
        Request {
            id,
            state: Some(RequestState::boxed(id, init, headers)),
            worker,
            shared,
            wake: LazyWakeSlot::default(),
        }
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
    ///
    /// `Phase::BodyFilter` here filters the body scripts produced (`ngx.say`...) as one last
    /// chunk; a host filtering its own body chunk by chunk uses `filter_body`.
    pub fn run(&mut self, phase: Phase, script: &Script) -> Result<Status> {
        if phase == Phase::BodyFilter {
            let body = std::mem::take(&mut self.state_mut()?.response.body);
            let status = self.filter_body(script, &body, true);
            let state = self.state_mut()?;
            state.response.body = std::mem::take(&mut state.chunk.data);
            return status;
        }
        self.run_phase(phase, script)
    }

    /// Runs body_filter on one chunk of the response body (`ngx.arg[1]`), `eof` telling
    /// whether it is the last (`ngx.arg[2]`). What the filter made of them is in
    /// `filtered_chunk`; when it sets eof early, send nothing after that chunk.
    pub fn filter_body(&mut self, script: &Script, chunk: &[u8], eof: bool) -> Result<Status> {
        let state = self.state_mut()?;
        state.chunk.data.clear();
        state.chunk.data.extend_from_slice(chunk);
        state.chunk.eof = eof;
        let status = self.run_phase(Phase::BodyFilter, script)?;
        let state = self.state_mut()?;
        *state.filtered_bytes.get_or_insert(0) += state.chunk.data.len() as u64;
        Ok(status)
    }

    /// The chunk the last body_filter run produced, and whether it ends the body.
    pub fn filtered_chunk(&self) -> &BodyChunk {
        static EMPTY: BodyChunk = BodyChunk { data: Vec::new(), eof: false };
        self.state.as_ref().map_or(&EMPTY, |state| &state.chunk)
    }

    /// Hands the host's own response (from its handler or an upstream) to the filters: its
    /// status and headers replace what scripts set, for header_filter to see and change.
    pub fn set_response<'h>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Result<()> {
        let response = &mut self.state_mut()?.response;
        response.status = status;
        response.headers = headers.into_iter().map(|(name, value)| (name.to_vec(), value.to_vec())).collect();
        Ok(())
    }

    fn run_phase(&mut self, phase: Phase, script: &Script) -> Result<Status> {
        if !phase.is_request_phase() {
            return Err(Error::invalid_argument(format!("{} is not a request phase", phase.name())));
        }
        let mut state = self.take_state()?;
        if let Some(suspended) = &state.suspended {
            let message = format!("the request is suspended in {}; resume or free it first", suspended.phase.name());
            self.state = Some(state);
            return Err(Error::invalid_state(message));
        }
        state.location_jump = false;
        state.threads = None;
        let (state, result) = self.worker.run(&self.shared, state, phase, script.current());
        self.state = Some(state);
        self.settle(result)
    }

    /// Continues the suspended phase with the next completed wait, or after a plain
    /// `coroutine.yield()` (which any resume continues, and the engine wakes soon by itself, as
    /// lua-nginx-module resumes it from its event loop). When nothing it waits for has completed
    /// yet, it returns `Ok(Status::Yield)` at once without running anything (a spurious resume
    /// is harmless).
    pub fn resume(&mut self) -> Result<Status> {
        let mut state = self.take_state()?;
        if state.suspended.is_none() {
            self.state = Some(state);
            return Err(Error::invalid_state("the request is not suspended"));
        }
        let Some(mut event) = state.resume_event(self.wake.slot()) else {
            self.state = Some(state);
            return Ok(Status::Yield);
        };
        // Several waits may have completed (light threads): hand them all over before returning.
        loop {
            let (returned, result) = self.worker.resume(&self.shared, state, event);
            self.state = Some(returned);
            let status = self.settle(result)?;
            if status != Status::Yield {
                return Ok(status);
            }
            state = self.state.take().expect("just put back");
            // Not a plain yield: that goes back to the host, to be woken.
            let waiting = state.suspended.as_ref().is_some_and(|s| s.waiting);
            match waiting.then(|| self.wake.slot().next_for(&mut state.waits)).flatten() {
                Some(next) => event = Some(next),
                None => {
                    self.state = Some(state);
                    return Ok(status);
                }
            }
        }
    }

    /// Sets the function called (from the engine's clock thread) when an engine-driven wait of
    /// this request completes, or soon after a plain `coroutine.yield()`; it should make the
    /// host resume the request. Replaces the previous one; `None` removes it (the host then
    /// polls `resume`).
    pub fn set_waker(&self, waker: Option<Waker>) {
        self.wake.slot().set_waker(waker);
    }

    /// A wake to send again later: for a host layer that received a wake while it could not
    /// act on it, and can only send it once it has let go of the request.
    pub(crate) fn wake_later(&self) -> LaterWake {
        LaterWake { scheduler: self.shared.scheduler.clone(), slot: Arc::downgrade(self.wake.slot()) }
    }

    /// Runs `wake` on the clock thread, soon, unless the request is freed by then.
    fn soon(&self, wake: fn(&WakeSlot)) {
        schedule_wake(&self.shared.scheduler, Arc::downgrade(self.wake.slot()), wake);
    }

    /// Ends the suspended phase without resuming it, as nginx ends a handler whose client went
    /// away (`lua_check_client_abort`): its coroutine, light threads included, is dropped where
    /// it waits; its waits are forgotten (`pending` lists none, completing one fails, and no
    /// completion or sleep wakes the request any more). The response stays as the phase left
    /// it. The request is then not suspended: further phases run as usual (log, typically).
    /// Does nothing when no phase waits.
    pub fn cancel(&mut self) -> Result<()> {
        let state = self.state.as_deref_mut().ok_or_else(lost)?;
        if state.suspended.take().is_some() {
            state.forget_waits(&self.wake);
            if let Some(slot) = self.wake.made() {
                slot.drop_yield_wake();
            }
        }
        Ok(())
    }

    /// The host-driven waits of the suspended phase (async host functions, body reads): perform
    /// each and `complete` it, then `resume`.
    pub fn pending(&self) -> &[PendingOp] {
        self.state.as_ref().map_or(&[], |state| &state.waits.pending)
    }

    /// Completes the pending operation `id` with its results, or with an error the waiting
    /// script raises. For `ngx.req.read_body` the result is the body: one string, or nothing.
    pub fn complete(&mut self, id: u64, result: std::result::Result<Vec<HostValue>, String>) -> Result<()> {
        let state = self.state.as_mut().ok_or_else(lost)?;
        let op = state
            .waits
            .take_pending(id)
            .ok_or_else(|| Error::invalid_argument(format!("no pending operation {id}")))?;
        if let (READ_BODY, Ok(values)) = (op.name.as_str(), &result) {
            let body: &[u8] = match values.as_slice() {
                [] | [HostValue::Nil] => b"",
                [HostValue::String(body)] => body,
                _ => {
                    state.waits.pending.push(op);
                    return Err(Error::invalid_argument("a body read completes with one string"));
                }
            };
            state.input.set_body(body);
            self.wake.slot().push(Event { id, result: Ok(Vec::new()) });
            return Ok(());
        }
        self.wake.slot().push(Event { id, result });
        Ok(())
    }

    /// After a run or resume: a waiting phase hands its sleeps to the clock, and a plain yield
    /// has the clock wake it (as `ngx.sleep(0)` would); a finished phase forgets its waits
    /// (their late completions are dropped).
    fn settle(&mut self, result: Result<Status>) -> Result<Status> {
        let state = self.state.as_mut().expect("the state came back");
        if result != Ok(Status::Yield) {
            state.forget_waits(&self.wake);
            return result;
        }
        state.waits.start_sleeps(&self.shared.scheduler, self.wake.slot());
        if state.suspended.as_ref().is_some_and(|suspended| !suspended.waiting) {
            self.wake.slot().expect_yield_wake();
            self.soon(WakeSlot::wake_yield);
        }
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

    /// The request method now: the host's, or what `ngx.req.set_method` made it.
    pub fn method(&self) -> &[u8] {
        self.input().method()
    }

    /// The URI path now (`$uri`): the host's, or what `ngx.req.set_uri` made it.
    pub fn path(&self) -> &[u8] {
        self.input().path()
    }

    /// The query string now, without `?` (`$args`): the host's, or what
    /// `ngx.req.set_uri_args` or `ngx.var.args = ...` made it. Empty when there is none.
    pub fn query(&self) -> &[u8] {
        self.input().query()
    }

    /// The request headers now, in order, as `ngx.req.set_header`/`clear_header` left them (a
    /// header a script replaced keeps its place; added headers come last).
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.input().headers()
    }

    /// The first request header of that name now, compared case-insensitively.
    pub fn header(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.input().header(name.as_ref())
    }

    /// The request body now: the host's (given up front or completing `ngx.req.read_body`), or
    /// the one scripts wrote with `ngx.req.set_body_data` or `init_body`/`append_body`/
    /// `finish_body` (which also set the Content-Length header). `None` when the host gave none
    /// yet or a script discarded it.
    pub fn body(&self) -> Option<&[u8]> {
        self.input().body()
    }

    /// Whether a script replaced the request body (`ngx.req.set_body_data`, `init_body`): hand
    /// `body()` (`None` is empty) to whatever reads the request next, instead of the client's.
    /// False means the host's body, read or not, is still the one: a host that streams it has
    /// nothing to copy.
    pub fn body_changed(&self) -> bool {
        self.input().body_changed()
    }

    /// Whether a script called `ngx.req.discard_body`: the host should read and drop the client's
    /// body (if it has not yet) rather than hand it over, as nginx does.
    pub fn body_discarded(&self) -> bool {
        self.state.as_ref().is_some_and(|state| state.body_discarded)
    }

    /// A variable a script set with `ngx.var.NAME = value` (names are case-insensitive, as in
    /// nginx); `None` if no script set it or one set it to nil.
    pub fn variable(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.input().variable(name.as_ref()).flatten()
    }

    /// The variables scripts set, as (lowercased name, value), in the order they were first set;
    /// variables set to nil are left out.
    pub fn variables(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.input().variables()
    }

    /// Whether the last phase run ended with `ngx.req.set_uri(uri, true)` (allowed in rewrite
    /// only). nginx would match its locations again against the new `path()` and run the
    /// rewrite phase of the one found: the host routes the request again the same way.
    pub fn location_jump(&self) -> bool {
        self.state.as_ref().is_some_and(|state| state.location_jump)
    }

    fn input(&self) -> &Snapshot {
        static EMPTY: Snapshot = Snapshot::EMPTY;
        self.state.as_ref().map_or(&EMPTY, |state| &state.input)
    }

    fn state_mut(&mut self) -> Result<&mut RequestState> {
        self.state.as_deref_mut().ok_or_else(lost)
    }

    fn take_state(&mut self) -> Result<Box<RequestState>> {
        self.state.take().ok_or_else(lost)
    }
}

impl Drop for Request {
    /// Cancels the request's waits: no waker call starts after this, and one in flight ends first.
    fn drop(&mut self) {
        if let Some(wake) = self.wake.made() {
            wake.cancel();
        }
        if let Some(state) = self.state.take() {
            spare::keep(state);
        }
    }
}

/// A wake taken from a request (`Request::wake_later`) that holds nothing the request owns, so
/// it can be sent after the request may have been freed (it then wakes no one).
pub(crate) struct LaterWake {
    scheduler: Arc<Scheduler>,
    slot: Weak<WakeSlot>,
}

impl LaterWake {
    /// Has the clock thread call the waker again, soon.
    pub(crate) fn send(self) {
        schedule_wake(&self.scheduler, self.slot, WakeSlot::wake_again);
    }
}

/// Runs `wake` on the clock thread, soon, unless the request is freed by then.
fn schedule_wake(scheduler: &Scheduler, slot: Weak<WakeSlot>, wake: fn(&WakeSlot)) {
    scheduler.at(
        Instant::now(),
        Box::new(move |_| {
            if let Some(slot) = slot.upgrade() {
                wake(&slot);
            }
        }),
    );
}

fn lost() -> Error {
    Error::invalid_state("the request was lost by an earlier failure; free it")
}
