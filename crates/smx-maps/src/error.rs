//! The one error type of smx-maps.
//!
//! A map lookup has three outcomes: a value, "not found" (`Ok(None)`, never
//! an error), or a [`MapError`]. Every error answers [`MapError::class`]:
//! `Temporary` means "the map could not answer now; the caller must not
//! treat the key as absent and should defer (4xx / retry)"; `Permanent`
//! means the map itself says the lookup can never succeed (a socket map's
//! `PERM`, a declaration that cannot work). A broken or unreadable
//! map file is *temporary*: an operator mistake must delay mail, not bounce
//! it.

use std::path::PathBuf;

/// Whether the caller should retry (seed: a failing map gives a temporary
/// error, never a decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later; do not treat the key as absent.
    Temporary,
    /// Retrying will not help.
    Permanent,
}

/// One bad line of a text map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number (entry number for inline entries).
    pub line: usize,
    /// What is wrong with it.
    pub reason: LineProblem,
}

/// What is wrong with a line of a text map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    /// A key without a value.
    #[error("a key needs a value separated by white space")]
    MissingValue,
    /// The line is not valid UTF-8.
    #[error("the line is not valid UTF-8")]
    NotUtf8,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Errors of map loading, lookup and building.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// A map file could not be opened or read.
    #[error("cannot read map {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A cdb file is not a well-formed cdb file (truncated, garbage,
    /// pointers outside the file).
    #[error("map {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A text map has bad lines; every bad line is listed.
    #[error("map {}: {}", source_name(.path), join_lines(.errors))]
    Syntax {
        /// The file, or `None` for inline entries.
        path: Option<PathBuf>,
        /// The bad lines, in order.
        errors: Vec<LineError>,
    },
    /// Writing a cdb file failed (makemap).
    #[error("cannot write map {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A sequence map names a map that is not declared.
    #[error("sequence map refers to unknown map '{name}'")]
    UnknownMap {
        /// The missing name.
        name: String,
    },
    /// A map declaration lacks something its type needs.
    #[error("map '{name}': {what}")]
    BadDeclaration {
        /// The map.
        name: String,
        /// What is missing.
        what: &'static str,
    },
    /// A socket map could not answer (connection, timeout, malformed or
    /// oversized reply, or the server's TEMP/TIMEOUT).
    #[error("socket map {mapname}: {problem}")]
    Socket {
        /// The map name sent to the server.
        mapname: String,
        /// What went wrong.
        problem: crate::socket::SocketProblem,
    },
    /// A socket map server answered PERM.
    #[error("socket map {mapname}: permanent failure: {message}")]
    Refused {
        /// The map name sent to the server.
        mapname: String,
        /// The server's text.
        message: String,
    },
}

impl MapError {
    /// Whether the caller should retry; see the module documentation.
    pub fn class(&self) -> ErrorClass {
        match self {
            MapError::Read { .. }
            | MapError::Corrupt { .. }
            | MapError::Syntax { .. }
            | MapError::Write { .. }
            | MapError::Socket { .. } => ErrorClass::Temporary,
            MapError::UnknownMap { .. }
            | MapError::BadDeclaration { .. }
            | MapError::Refused { .. } => ErrorClass::Permanent,
        }
    }
}

fn source_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(inline entries)".into(),
    }
}

fn join_lines(errors: &[LineError]) -> String {
    errors
        .iter()
        .map(LineError::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
