//! Request phases, what a phase run returns, and what `ngx.exit` means in each phase.

/// The phases of lua-nginx-module, in the order nginx runs them for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Phase {
    Init = 0,
    InitWorker = 1,
    Rewrite = 2,
    Access = 3,
    Content = 4,
    HeaderFilter = 5,
    BodyFilter = 6,
    Log = 7,
    Timer = 8,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Init,
        Phase::InitWorker,
        Phase::Rewrite,
        Phase::Access,
        Phase::Content,
        Phase::HeaderFilter,
        Phase::BodyFilter,
        Phase::Log,
        Phase::Timer,
    ];

    /// The name `ngx.get_phase()` returns.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::InitWorker => "init_worker",
            Phase::Rewrite => "rewrite",
            Phase::Access => "access",
            Phase::Content => "content",
            Phase::HeaderFilter => "header_filter",
            Phase::BodyFilter => "body_filter",
            Phase::Log => "log",
            Phase::Timer => "timer",
        }
    }

    pub fn from_number(n: u32) -> Option<Phase> {
        Phase::ALL.get(n as usize).copied()
    }

    /// Whether a host runs this phase on a request (the others run on their own).
    pub fn is_request_phase(self) -> bool {
        Phases::REQUEST.contains(self)
    }

    pub(crate) const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A set of phases, for "this API works in these contexts" checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases(u16);

impl Phases {
    pub const fn of(phases: &[Phase]) -> Phases {
        let mut bits = 0u16;
        let mut i = 0;
        while i < phases.len() {
            bits |= phases[i].bit();
            i += 1;
        }
        Phases(bits)
    }

    /// The phases of a request, rewrite to log.
    pub const REQUEST: Phases = Phases::of(&[
        Phase::Rewrite,
        Phase::Access,
        Phase::Content,
        Phase::HeaderFilter,
        Phase::BodyFilter,
        Phase::Log,
    ]);
    /// Everywhere but init, which runs before any worker serves (ngx.ctx, ngx.timer.*).
    pub const NOT_INIT: Phases = Phases(Phases::REQUEST.0 | Phase::InitWorker.bit() | Phase::Timer.bit());

    pub fn contains(self, phase: Phase) -> bool {
        self.0 & phase.bit() != 0
    }
}

/// What a phase run returns to the host (DESIGN.md §4). Failures are `Err(Error)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    /// The phase finished; go on to the next phase.
    Ok = 0,
    /// The request is answered (`ngx.exit` with a status, a redirect, content produced): send
    /// the response.
    Done = 1,
    /// The script waits; resume the request when it is woken.
    Yield = 2,
}

/// `ngx.exit(status)` in a phase: does the request go on, is it answered, or is it aborted?
/// Follows lua-nginx-module: in rewrite and access `ngx.OK` (0) only ends the phase; any status
/// of 200 and up answers the request; `ngx.ERROR` (-1) aborts it. In content every exit
/// finishes the request.
pub(crate) fn exit_outcome(phase: Phase, code: i64) -> ExitOutcome {
    if code == crate::api::consts::NGX_ERROR {
        return ExitOutcome::Abort;
    }
    match phase {
        Phase::Rewrite | Phase::Access if code < 200 => ExitOutcome::Continue,
        Phase::Rewrite | Phase::Access | Phase::Content => ExitOutcome::Finish,
        _ => ExitOutcome::Continue,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitOutcome {
    Continue,
    Finish,
    Abort,
}
