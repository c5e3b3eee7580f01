//! Log records and where they go: a host callback, or stderr by default.

use std::fmt;
use std::sync::Arc;

use crate::phase::Phase;

/// nginx's log levels, with nginx's numbers (`ngx.STDERR` = 0 … `ngx.DEBUG` = 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum LogLevel {
    Stderr = 0,
    Emerg = 1,
    Alert = 2,
    Crit = 3,
    Err = 4,
    Warn = 5,
    Notice = 6,
    Info = 7,
    Debug = 8,
}

impl LogLevel {
    pub const ALL: [LogLevel; 9] = [
        LogLevel::Stderr,
        LogLevel::Emerg,
        LogLevel::Alert,
        LogLevel::Crit,
        LogLevel::Err,
        LogLevel::Warn,
        LogLevel::Notice,
        LogLevel::Info,
        LogLevel::Debug,
    ];

    pub fn from_number(n: i64) -> Option<LogLevel> {
        LogLevel::ALL.iter().copied().find(|level| *level as i64 == n)
    }

    /// The name nginx prints (`[error]`), also the suffix of the `ngx.*` constant.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Stderr => "stderr",
            LogLevel::Emerg => "emerg",
            LogLevel::Alert => "alert",
            LogLevel::Crit => "crit",
            LogLevel::Err => "error",
            LogLevel::Warn => "warn",
            LogLevel::Notice => "notice",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// One log line, borrowed for the duration of the callback.
#[derive(Clone, Copy, Debug)]
pub struct LogRecord<'a> {
    pub level: LogLevel,
    /// The phase that logged, if a script was running.
    pub phase: Option<Phase>,
    /// `chunk:line` of the Lua code that logged, or empty.
    pub location: &'a str,
    pub message: &'a str,
    /// The id of the request that logged (0 when no request was running).
    pub request_id: u64,
}

impl fmt::Display for LogRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.level.name())?;
        if let Some(phase) = self.phase {
            write!(f, " {}", phase.name())?;
        }
        if self.request_id != 0 {
            write!(f, " request {}", self.request_id)?;
        }
        if !self.location.is_empty() {
            write!(f, " {}:", self.location)?;
        }
        write!(f, " {}", self.message)
    }
}

/// Receives every log record. Called from whatever thread runs the script; must not block long.
pub type LogSink = Arc<dyn Fn(&LogRecord<'_>) + Send + Sync>;

/// The default sink: one line per record on stderr.
pub fn stderr_sink() -> LogSink {
    Arc::new(|record: &LogRecord<'_>| eprintln!("luaengine {record}"))
}

/// A sink plus the level below which records are dropped.
#[derive(Clone)]
pub(crate) struct Logger {
    sink: LogSink,
    level: LogLevel,
}

impl Logger {
    pub(crate) fn new(sink: Option<LogSink>, level: LogLevel) -> Logger {
        Logger { sink: sink.unwrap_or_else(stderr_sink), level }
    }

    pub(crate) fn enabled(&self, level: LogLevel) -> bool {
        level <= self.level
    }

    pub(crate) fn log(&self, record: &LogRecord<'_>) {
        if self.enabled(record.level) {
            (self.sink)(record);
        }
    }

    /// A record from the engine itself rather than from a script.
    pub(crate) fn log_engine(&self, level: LogLevel, message: &str) {
        self.log(&LogRecord { level, phase: None, location: "", message, request_id: 0 });
    }
}
