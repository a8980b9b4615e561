//! The smtps → smar link ([`SmtpsSmar`], service
//! [`ServiceName::SmtpsSmar`]): policy checks at connect, MAIL and RCPT.
//!
//! smar looks the client, sender or recipient up in its access maps and
//! answers with a verdict. The right-hand sides of access map entries (seed
//! 3.9.3) map to replies as follows:
//!
//! | RHS | reply |
//! | --- | --- |
//! | `ok` | [`SmarReply::Accept`] |
//! | `relay` | [`SmarReply::Relay`] (a recipient: relaying to it is allowed) |
//! | `reject` | [`SmarReply::Reject`] with smar's default text (550 5.7.1) |
//! | `error:` code text | [`SmarReply::Reject`] (5xx) or [`SmarReply::TempFail`] (4xx) with that reply |
//! | `discard` | [`SmarReply::Discard`]: accept, then throw the message away |
//! | `cont` | never sent: smar goes on with the next lookup; when none decides, [`SmarReply::Accept`] |
//! | `quick:` prefix | the `quick` flag: the verdict holds for the later checks of the session too, smtps does not ask again |
//!
//! A lookup that smar cannot complete (a map temporarily unavailable, DNS
//! timeout) is [`SmarReply::TempFail`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::hello::ServiceName;
use crate::link::Link;
use crate::types::SmtpReply;

/// The smtps → smar link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpsSmar;

impl Link for SmtpsSmar {
    const SERVICE: ServiceName = ServiceName::SmtpsSmar;
    type Request = SmarRequest;
    type Reply = SmarReply;
    type Notice = NoNotice;
}

/// What smtps asks smar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmarRequest {
    /// May this client connect?
    ConnectCheck {
        /// The client's address.
        client_ip: IpAddr,
        /// The client's host name from reverse DNS, if it resolved.
        client_name: Option<String>,
    },
    /// May this sender send (MAIL FROM)?
    MailCheck {
        /// The reverse path without angle brackets; empty for `<>`.
        sender: String,
        /// The client's address.
        client_ip: IpAddr,
    },
    /// May this recipient receive (RCPT TO), and is it local or relayed?
    RcptCheck {
        /// The forward path without angle brackets.
        rcpt: String,
        /// The reverse path of the transaction.
        sender: String,
        /// The client's address.
        client_ip: IpAddr,
    },
}

/// smar's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmarReply {
    /// Go on (`ok`, or nothing decided).
    Accept {
        /// `quick:ok`: skip later checks in this session.
        quick: bool,
    },
    /// Accept; relaying is allowed (`relay`).
    Relay {
        /// `quick:relay`: skip later checks in this session.
        quick: bool,
    },
    /// Refuse with this 5xx reply (`reject`, `error:5xx`).
    Reject(SmtpReply),
    /// Refuse for now with this 4xx reply (`error:4xx`, lookup failure).
    TempFail(SmtpReply),
    /// Accept and silently drop (`discard`).
    Discard,
}

/// smar sends no notices to smtps: this type has no values, so a
/// `ServerFrame::Notice` on this link cannot be built, and one received is
/// a bad frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoNotice {}
