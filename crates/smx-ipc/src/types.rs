//! Plain data shared by several links.
//!
//! The identifiers mirror `smx_store::id` (which this crate may not depend
//! on, see the crate doc): the same `(counter, process)` parts, the same
//! printed form, so logs on both sides of a link agree. Converting is a
//! field copy: `smx_store::id::SessionId::new(id.counter, id.process)` one
//! way, `SessionId { counter: s.counter(), process: s.process() }` the other.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! server_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name {
            /// The 64-bit counter.
            pub counter: u64,
            /// The 8-bit id of the smtps process that made it.
            pub process: u8,
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "S{:016X}{:02X}", self.counter, self.process)
            }
        }
    };
}

server_id!(
    /// An SMTP server session id (`ss_sess`), as in `smx_store::id::SessionId`.
    SessionId
);

server_id!(
    /// An SMTP server transaction id (`ss_ta`, the CDB file name), as in
    /// `smx_store::id::TransactionId`.
    TransactionId
);

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. 4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// The subject (0–999).
    pub subject: u16,
    /// The detail (0–999).
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// An SMTP reply that a peer asks smtps to send to the client. smtps checks
/// and formats it with smx-proto (no line injection); the text here is one
/// logical line without CR or LF.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SmtpReply {
    /// The three-digit reply code (e.g. 421, 550).
    pub code: u16,
    /// The enhanced status code, if any.
    pub enhanced: Option<EnhancedCode>,
    /// The human-readable text.
    pub text: String,
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}
