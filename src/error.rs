//! Errors of the engine: a code callers can branch on, a message people can read, and for Lua
//! errors the chunk, line and traceback that locate them.

use std::fmt;

/// What went wrong, as a stable number (the C ABI exposes the same values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// A caller passed something unusable: a NULL handle, bad UTF-8, an out-of-range value.
    InvalidArgument = 1,
    /// The call does not fit the object's state (e.g. running a phase while one is suspended).
    InvalidState = 2,
    /// Lua source failed to compile.
    Syntax = 3,
    /// A Lua script raised an error while it ran.
    Runtime = 4,
    /// A phase used up its instruction budget or its time budget.
    Budget = 5,
    /// A worker's Lua state hit its memory cap.
    Memory = 6,
    /// A script file could not be read.
    Io = 7,
    /// A script ended the request with `ngx.exit(ngx.ERROR)`.
    Aborted = 8,
    /// A bug: a panic or an engine invariant broke. The engine stays usable.
    Internal = 9,
}

impl ErrorCode {
    /// A short lowercase name, as used in messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid argument",
            ErrorCode::InvalidState => "invalid state",
            ErrorCode::Syntax => "syntax error",
            ErrorCode::Runtime => "runtime error",
            ErrorCode::Budget => "budget exceeded",
            ErrorCode::Memory => "memory limit exceeded",
            ErrorCode::Io => "i/o error",
            ErrorCode::Aborted => "aborted",
            ErrorCode::Internal => "internal error",
        }
    }
}

/// An engine error. For Lua errors `chunk` and `line` say where the error was raised and
/// `traceback` holds Lua's stack traceback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub chunk: Option<String>,
    pub line: Option<u32>,
    pub traceback: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error { code, message: message.into(), chunk: None, line: None, traceback: None }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidArgument, message)
    }

    pub fn invalid_state(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidState, message)
    }

    /// Builds an error from a Lua message such as `content:3: boom`, taking the chunk and line
    /// from Lua's own `chunk:line:` prefix and splitting off an appended traceback.
    pub fn from_lua_message(code: ErrorCode, text: &str) -> Error {
        let (message, traceback) = match text.find("\nstack traceback:") {
            Some(at) => (&text[..at], Some(text[at + 1..].to_string())),
            None => (text, None),
        };
        let mut error = Error::new(code, message);
        error.traceback = traceback;
        if let Some((chunk, line)) = split_location(message) {
            error.chunk = Some(chunk.to_string());
            error.line = Some(line);
        }
        error
    }

    /// Converts an mlua error raised while compiling or running Lua.
    pub(crate) fn from_lua(err: &mlua::Error) -> Error {
        match err {
            mlua::Error::SyntaxError { message, .. } => Error::from_lua_message(ErrorCode::Syntax, message),
            mlua::Error::MemoryError(message) => Error::new(ErrorCode::Memory, message.clone()),
            mlua::Error::CallbackError { traceback, cause } => {
                let mut error = Error::from_lua(cause);
                if error.traceback.is_none() {
                    error.traceback = Some(traceback.clone());
                }
                error
            }
            mlua::Error::WithContext { cause, .. } => Error::from_lua(cause),
            mlua::Error::ExternalError(external) => match external.downcast_ref::<Error>() {
                Some(engine_error) => engine_error.clone(),
                None => Error::from_lua_message(ErrorCode::Runtime, &external.to_string()),
            },
            mlua::Error::RuntimeError(message) => Error::from_lua_message(ErrorCode::Runtime, message),
            other => Error::from_lua_message(ErrorCode::Runtime, &other.to_string()),
        }
    }

    /// A one-line description: `runtime error: content:3: boom`.
    pub fn summary(&self) -> String {
        format!("{}: {}", self.code.name(), self.message)
    }
}

/// Finds Lua's `chunk:line:` position prefix. Chunk names may themselves hold colons
/// (`content_by_lua(nginx.conf:12)`), so the first `:<digits>:` wins.
fn split_location(message: &str) -> Option<(&str, u32)> {
    let bytes = message.as_bytes();
    let mut from = 0;
    while let Some(offset) = message[from..].find(':') {
        let colon = from + offset;
        let digits = bytes[colon + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let end = colon + 1 + digits;
        if colon > 0 && digits > 0 && bytes.get(end) == Some(&b':') {
            let line = message[colon + 1..end].parse().ok()?;
            return Some((&message[..colon], line));
        }
        from = colon + 1;
    }
    None
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl std::error::Error for Error {}

impl From<Error> for mlua::Error {
    fn from(err: Error) -> mlua::Error {
        mlua::Error::external(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_location_is_split_from_the_message() {
        let e = Error::from_lua_message(ErrorCode::Runtime, "content:3: boom\nstack traceback:\n\t[C]: in ?");
        assert_eq!(e.chunk.as_deref(), Some("content"));
        assert_eq!(e.line, Some(3));
        assert_eq!(e.message, "content:3: boom");
        assert_eq!(e.traceback.as_deref(), Some("stack traceback:\n\t[C]: in ?"));
    }

    #[test]
    fn chunk_names_may_contain_colons() {
        let e = Error::from_lua_message(ErrorCode::Runtime, "content_by_lua(nginx.conf:12):7: x");
        assert_eq!(e.chunk.as_deref(), Some("content_by_lua(nginx.conf:12)"));
        assert_eq!(e.line, Some(7));
    }

    #[test]
    fn messages_without_position_have_none() {
        let e = Error::from_lua_message(ErrorCode::Runtime, "plain failure");
        assert_eq!((e.chunk, e.line), (None, None));
    }
}
