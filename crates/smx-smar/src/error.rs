//! The one error type of smx-smar.
//!
//! Every error answers [`SmarError::class`]. A map that cannot answer, a
//! broken map entry and a DNS failure that may go away are `Temporary`:
//! smar then answers with a 4xx reply (or `TempFail` to qmgr) and never
//! decides as if the lookup had found nothing.

use smx_maps::{ErrorClass, MapError};

/// Errors of smar's lookups and of the service.
#[derive(Debug, thiserror::Error)]
pub enum SmarError {
    /// A map lookup failed.
    #[error("map lookup failed: {0}")]
    Map(#[from] MapError),
    /// A map entry has a right-hand side that cannot be parsed.
    #[error("invalid map entry {key}: {problem}")]
    BadEntry {
        /// The key that matched.
        key: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// A DNS lookup failed.
    #[error("DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
    /// A map named in the configuration cannot be opened.
    #[error("cannot open map {what}: {source}")]
    Open {
        /// Which map (access map, aliases, ...).
        what: &'static str,
        /// Why.
        source: MapError,
    },
    /// The configuration cannot be used (e.g. a map name that is not
    /// declared).
    #[error("configuration: {0}")]
    Config(String),
    /// Socket I/O of the service.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl SmarError {
    /// Whether retrying can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            SmarError::Map(e) => e.class(),
            SmarError::BadEntry { .. } | SmarError::Io(_) => ErrorClass::Temporary,
            SmarError::Dns(e) => {
                if e.is_permanent() {
                    ErrorClass::Permanent
                } else {
                    ErrorClass::Temporary
                }
            }
            SmarError::Open { .. } | SmarError::Config(_) => ErrorClass::Permanent,
        }
    }
}
