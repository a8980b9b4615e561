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
//! | `reject` | [`SmarReply::Reject`] with smar's default text (550 5.7.0) |
//! | `error:` code text | [`SmarReply::Reject`] (5xx) or [`SmarReply::TempFail`] (4xx) with that reply |
//! | `discard` | [`SmarReply::Discard`]: accept, then throw the message away |
//! | `cont` | never sent: smar goes on with the next lookup; when none decides, [`SmarReply::Accept`] |
//! | `quick:` prefix | the `quick` flag: the verdict holds for the later checks of the session too, smtps does not ask again |
//!
//! A lookup that smar cannot complete (a map temporarily unavailable, DNS
//! timeout) is [`SmarReply::TempFail`].
//!
//! [`SmarRequest::SessionConf`] is not a check: smar answers
//! [`SmarReply::SessionConf`] with the raw right-hand side of the client's
//! `smtps_session_conf:` entry (seed 3.10.1), which smtps parses itself
//! (`smx_conf::session_conf`), or `None` when there is no entry.
//!
//! Postcard encodes an enum variant by its index: variants are only ever
//! appended to [`SmarRequest`] and [`SmarReply`] (`SessionConf` is the last
//! of each), never inserted or reordered.

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
    /// RCPT check with what smtps knows about the session (seed 3.12.2):
    /// the connect verdict (`quick:ok`, `relay`, ...) and whether relaying
    /// is allowed by other means (AUTH, STARTTLS). smar answers as for
    /// [`SmarRequest::RcptCheck`] (for which it recomputes the connect
    /// verdict itself from `client_ip`). With `delay_checks` smar does not
    /// reject at connect or MAIL unless the entry says `quick:`; it re-runs
    /// those checks here, and a `quick:ok` or `quick:relay` `to:` entry
    /// overrides their rejection.
    RcptCheckInSession {
        /// The forward path without angle brackets.
        rcpt: String,
        /// The reverse path of the transaction.
        sender: String,
        /// The client's address.
        client_ip: IpAddr,
        /// smar's answer to the session's `ConnectCheck`, if one was made.
        session: Option<SmarReply>,
        /// Relaying is allowed by AUTH or a STARTTLS certificate.
        relay_allowed: bool,
    },
    /// May a client with this TLS certificate relay (tags `certissuer:`,
    /// `certsubject:`)? `Relay` allows relaying for the session.
    CertCheck {
        /// The DN of the issuer of the presented certificate.
        issuer: String,
        /// The DN of the presented certificate.
        subject: String,
    },
    /// Is this EHLO/HELO argument acceptable (tag `ehlo:`)?
    EhloCheck {
        /// The EHLO/HELO argument.
        helo: String,
        /// The client's address.
        client_ip: IpAddr,
    },
    /// The session configuration for this client (tag
    /// `smtps_session_conf:`, looked up by address, then by host name);
    /// answered with [`SmarReply::SessionConf`], or `TempFail` when the map
    /// cannot be read.
    SessionConf {
        /// The client's address.
        client_ip: IpAddr,
        /// The client's host name from reverse DNS, if it resolved.
        client_name: Option<String>,
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
    /// The answer to [`SmarRequest::SessionConf`]: the entry's right-hand
    /// side as written, `None` without an entry.
    SessionConf(Option<String>),
}

/// smar sends no notices to smtps: this type has no values, so a
/// `ServerFrame::Notice` on this link cannot be built, and one received is
/// a bad frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoNotice {}
