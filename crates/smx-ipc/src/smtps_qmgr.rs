//! The smtps → qmgr link ([`SmtpsQmgr`], service
//! [`ServiceName::SmtpsQmgr`]): smtps asks qmgr before it accepts a
//! connection and hands each received transaction over for safe keeping;
//! qmgr answers and, unasked, throttles smtps.
//!
//! | request | when | replies |
//! | --- | --- | --- |
//! | [`SmtpsRequest::NewSession`] | a client connected (connection control, seed 3.8 item 18) | [`QmgrReply::SessionAccepted`], [`QmgrReply::SessionRefused`] (smtps sends the 421 and closes) |
//! | [`SmtpsRequest::Commit`] | the end of DATA/BDAT: content is in CDB | [`QmgrReply::Committed`] (envelope durable: smtps may say 250), [`QmgrReply::TempFail`], [`QmgrReply::PermFail`] |
//! | [`SmtpsRequest::Abort`] | RSET, QUIT or a lost client after MAIL | [`QmgrReply::Done`] |
//! | [`SmtpsRequest::CloseSession`] | the session ended | [`QmgrReply::Done`] |
//! | [`SmtpsRequest::Etrn`] | ETRN (RFC 1985): run the queue for a node | [`QmgrReply::Done`] (a queue run started: 250), [`QmgrReply::TempFail`] (458/459) |
//!
//! Notices: [`QmgrNotice::Throttle`] / [`QmgrNotice::Unthrottle`] (seed 9.1:
//! qmgr slows smtps down when the queue, disk or memory runs short).
//!
//! Only committed transactions reach qmgr; MAIL and RCPT are checked with
//! smar ([`crate::smtps_smar`]) and kept in smtps until the end of data, so
//! an aborted transaction costs qmgr nothing. `Abort` tells qmgr about one
//! that it may have seen a `Commit` for whose reply was lost.
//!
//! Addresses and ESMTP parameters are opaque text here: smx-proto parsed
//! them in smtps, qmgr stores them as received (like `smx_store::envelope`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::hello::ServiceName;
use crate::link::Link;
use crate::types::{SessionId, SmtpReply, TransactionId};

/// The smtps → qmgr link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpsQmgr;

impl Link for SmtpsQmgr {
    const SERVICE: ServiceName = ServiceName::SmtpsQmgr;
    type Request = SmtpsRequest;
    type Reply = QmgrReply;
    type Notice = QmgrNotice;
}

/// What smtps asks qmgr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpsRequest {
    /// May this client connect?
    NewSession(NewSession),
    /// Take this transaction: its content is complete in CDB.
    Commit(Envelope),
    /// Forget this transaction (if qmgr knows it at all).
    Abort {
        /// The session.
        session: SessionId,
        /// The transaction.
        transaction: TransactionId,
    },
    /// The session ended.
    CloseSession {
        /// The session.
        session: SessionId,
    },
    /// ETRN: start delivery attempts for the deferred mail of a domain.
    Etrn {
        /// The session.
        session: SessionId,
        /// The ETRN argument as sent (`domain`, `@domain` for subdomains
        /// too, `#queue` for a named queue).
        node: String,
    },
}

/// A new SMTP connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    /// The session id smtps gave it.
    pub session: SessionId,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The local address the client connected to.
    pub server_ip: IpAddr,
    /// The local port (25, 587, ...).
    pub server_port: u16,
}

/// A transaction's envelope, as smtps received it (the counterpart of
/// `smx_store::envelope::{Transaction, Recipient}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The session it arrived in.
    pub session: SessionId,
    /// The transaction id; also the CDB file name.
    pub id: TransactionId,
    /// The reverse path without angle brackets; empty for `<>`.
    pub sender: String,
    /// The ESMTP parameters of MAIL FROM, as received.
    pub params: String,
    /// Size of the message as received, in bytes (the CDB file also holds
    /// the Received: field smtps put in front of it).
    pub size: u64,
    /// Arrival time, microseconds since the Unix epoch.
    pub arrival_us: u64,
    /// The accepted recipients, in RCPT order.
    pub recipients: Vec<EnvelopeRecipient>,
}

/// One accepted recipient of an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecipient {
    /// The recipient's index in its transaction (24 bits used; with the
    /// transaction id it forms `smx_store::id::RecipientId`).
    pub index: u32,
    /// The forward path without angle brackets.
    pub address: String,
    /// The ESMTP parameters of RCPT TO, as received.
    pub params: String,
}

/// What qmgr answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QmgrReply {
    /// The client may go on (answer to `NewSession`).
    SessionAccepted,
    /// Refuse the client with this reply (a 421) and close (answer to
    /// `NewSession`).
    SessionRefused(SmtpReply),
    /// The envelope is durable; smtps may answer 250 to the end of data.
    Committed,
    /// Not taken; answer the client with this 4xx reply.
    TempFail(SmtpReply),
    /// Not taken, never will be; answer the client with this 5xx reply.
    PermFail(SmtpReply),
    /// Acknowledges `Abort`, `CloseSession` and `Etrn`.
    Done,
}

/// What qmgr tells smtps unasked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QmgrNotice {
    /// Accept at most `max_sessions` concurrent sessions (0: accept none
    /// and answer new connections with 421) until [`QmgrNotice::Unthrottle`].
    Throttle {
        /// The session limit.
        max_sessions: u32,
        /// Why, for the log.
        reason: ThrottleReason,
    },
    /// Lift the throttle; back to the configured limits.
    Unthrottle,
}

/// Why qmgr throttles smtps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ThrottleReason {
    /// The queue file system is short of space.
    DiskSpace,
    /// Too many envelopes in the active queue.
    QueueFull,
    /// qmgr is short of memory or another resource.
    Resources,
}
