//! The qmgr → smtpc link ([`QmgrSmtpc`], service
//! [`ServiceName::QmgrSmtpc`]): qmgr hands delivery transactions to the
//! delivery agent, which answers with one result per recipient.
//!
//! | request | when | replies |
//! | --- | --- | --- |
//! | [`SmtpcRequest::Deliver`] | qmgr scheduled a delivery transaction (`da_ta`) of recipients of one message to one destination | [`SmtpcReply::Delivered`]: one [`RecipientResult`] per recipient of the request, in request order |
//!
//! No notices: smtpc never speaks unasked ([`SmtpcNotice`] has no values).
//!
//! A delivery request names the content by its CDB id (the smtps
//! transaction id, `ss_ta`); smtpc streams it from CDB. The sender, the
//! recipients and their ESMTP parameters are opaque text as stored in the
//! queue (smtps parsed them with smx-proto); smtpc parses them again and
//! sends on only what the peer supports. A recipient is identified by the
//! content id plus its index (`smx_store::id::RecipientId`).
//!
//! The destination is either a list of TCP targets in preference order (MX
//! preference, then the addresses of each host, IPv6 and IPv4 as qmgr/smar
//! ordered them), spoken to with ESMTP or LMTP, or an LMTP Unix socket.
//! smtpc tries the targets in the given order until one takes the
//! transaction.
//!
//! A delivery may carry [`TlsRequirements`] (seed 3.13; from qmgr's
//! `smtpc_session_conf:` and smar's `smtpc_rcpt_conf:` entries): smtpc
//! applies them, merged with its own, to every TCP session of that
//! delivery, and fails the recipients as [`RequirementsViolation`] says
//! when a session does not meet them.
//!
//! # Messages (postcard, fields in this order)
//!
//! | message | fields |
//! | --- | --- |
//! | [`Delivery`] | `da_ta`, `content`, `size`, `sender`, `params`, `recipients`, `destination`, `tls_requirements` (`Option`) |
//! | [`TlsRequirements`] | `verified`, `encrypted`, `common_name`, `cert_subject`, `cert_issuer` (`Option<String>` each), `min_cipher_bits` (`u32`), `violation` (`Option`) |
//! | [`RequirementsViolation`] | variants `PermFail`, `TempFail`, `Abort` |
//! | [`DeliveryResult`] | `da_ta`, `recipients` |
//! | [`RecipientResult`] | `index`, `status`, `reply`, `host`, `relayed` |
//!
//! Every recipient of a request gets exactly one result: delivered,
//! temporary failure or permanent failure, with the whole (possibly
//! multi-line) reply that decided it and the target that gave it. When
//! smtpc decided itself (no target reachable, a local error, a message the
//! peer cannot take), the reply is one smtpc made up and `host` is `None`.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::hello::ServiceName;
use crate::link::Link;
use crate::types::{EnhancedCode, TransactionId};

/// The qmgr → smtpc link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QmgrSmtpc;

impl Link for QmgrSmtpc {
    const SERVICE: ServiceName = ServiceName::QmgrSmtpc;
    type Request = SmtpcRequest;
    type Reply = SmtpcReply;
    type Notice = SmtpcNotice;
}

/// A delivery agent transaction id (`da_ta`), as in
/// `smx_store::id::DaTransactionId`: printed `C` + process (2 hex digits) +
/// counter (8) + index (8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DaTransactionId {
    /// The 8-bit id of the qmgr process that made it.
    pub process: u8,
    /// The 32-bit counter.
    pub counter: u32,
    /// The 32-bit index.
    pub index: u32,
}

impl fmt::Display for DaTransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "C{:02X}{:08X}{:08X}",
            self.process, self.counter, self.index
        )
    }
}

/// What qmgr asks smtpc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpcRequest {
    /// Deliver these recipients of one message to one destination.
    Deliver(Delivery),
}

/// One delivery transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The delivery transaction id (`da_ta`).
    pub da_ta: DaTransactionId,
    /// The content: the smtps transaction id, also the CDB file name.
    pub content: TransactionId,
    /// The content size in bytes (for SIZE=).
    pub size: u64,
    /// The reverse path without angle brackets; empty for `<>`.
    pub sender: String,
    /// The ESMTP parameters of MAIL FROM as stored (space separated).
    pub params: String,
    /// The recipients, in the order they are to be sent.
    pub recipients: Vec<DeliveryRecipient>,
    /// Where to deliver.
    pub destination: Destination,
    /// What the TLS sessions of this delivery must meet (seed 3.13);
    /// `None`: only smtpc's own requirements.
    pub tls_requirements: Option<TlsRequirements>,
}

/// TLS requirements for the sessions of one delivery (seed 3.13), as
/// plain data: the typed form of a `tls_requirements { ... }` map value.
/// Any requirement makes TLS mandatory for the delivery (no fallback to
/// clear text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlsRequirements {
    /// The server certificate must verify (chain to smtpc's CAs, and the
    /// host name).
    pub verified: bool,
    /// The session must be encrypted (symmetric key bits above 0).
    pub encrypted: bool,
    /// The certificate's subject CN must be this (ASCII case-insensitive).
    pub common_name: Option<String>,
    /// The certificate's subject DN (`/C=US/O=Example/CN=name`, decoded)
    /// must be this, ASCII case-insensitive.
    pub cert_subject: Option<String>,
    /// The certificate's issuer DN (decoded) must be this.
    pub cert_issuer: Option<String>,
    /// Least symmetric key bits (0: no minimum).
    pub min_cipher_bits: u32,
    /// What a violation does; `None`: smtpc's default (temporary failure).
    pub violation: Option<RequirementsViolation>,
}

impl TlsRequirements {
    /// Whether anything is required.
    pub fn any(&self) -> bool {
        self.verified
            || self.encrypted
            || self.common_name.is_some()
            || self.cert_subject.is_some()
            || self.cert_issuer.is_some()
            || self.min_cipher_bits > 0
    }
}

/// What smtpc does when a session does not meet the requirements (seed
/// 3.10 item 21h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequirementsViolation {
    /// The recipients fail permanently (5.7.x).
    PermFail,
    /// The recipients fail temporarily (4.7.5); the next target is tried.
    TempFail,
    /// The recipients fail temporarily and the session is closed at once
    /// (no other target of the delivery is tried).
    Abort,
}

/// One recipient of a [`Delivery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecipient {
    /// The recipient's index in the content's transaction (24 bits used).
    pub index: u32,
    /// The forward path without angle brackets.
    pub address: String,
    /// The ESMTP parameters of RCPT TO as stored (space separated).
    pub params: String,
}

/// The protocol spoken to TCP targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// SMTP with the ESMTP extensions the peer offers (RFC 5321).
    Esmtp,
    /// LMTP (RFC 2033).
    Lmtp,
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// TCP targets in preference order.
    Hosts {
        /// ESMTP or LMTP.
        protocol: Protocol,
        /// The targets, most preferred first.
        targets: Vec<Target>,
    },
    /// LMTP over a Unix socket; `None`: smtpc's configured `LMTP_socket`.
    LmtpSocket {
        /// The socket path.
        path: Option<String>,
    },
}

/// One TCP target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The host name the address belongs to (for logs and results); may be
    /// empty.
    pub name: String,
    /// The address to connect to.
    pub addr: IpAddr,
    /// The port (mailertable); `None`: smtpc's `remote_port`.
    pub port: Option<u16>,
    /// TLS requirements for sessions with this address (qmgr's
    /// `smtpc_session_conf:` entry), applied with the delivery's own.
    pub tls_requirements: Option<TlsRequirements>,
}

/// What smtpc answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpcReply {
    /// The outcome of a [`SmtpcRequest::Deliver`].
    Delivered(DeliveryResult),
}

/// The outcome of one delivery transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryResult {
    /// The delivery transaction.
    pub da_ta: DaTransactionId,
    /// One result per recipient of the request, in request order.
    pub recipients: Vec<RecipientResult>,
}

/// The outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientResult {
    /// The recipient's index (as in [`DeliveryRecipient::index`]).
    pub index: u32,
    /// Delivered, or how it failed.
    pub status: RecipientStatus,
    /// The reply that decided it, whole.
    pub reply: FullReply,
    /// The target that gave the reply (`name[addr]:port` or the socket
    /// path); `None` when smtpc decided itself.
    pub host: Option<String>,
    /// Delivered to a peer that does not support DSN (RFC 3461 4.1): qmgr
    /// sends a "relayed" DSN if the recipient asked for NOTIFY=SUCCESS.
    pub relayed: bool,
}

/// Delivered, or how it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecipientStatus {
    /// The peer took responsibility for the message.
    Delivered,
    /// Try again later.
    TempFail,
    /// Do not try again: bounce.
    PermFail,
}

/// A complete SMTP reply: code, enhanced status code (if every line had the
/// same one) and the text of every line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FullReply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code (RFC 3463), taken off the lines.
    pub enhanced: Option<EnhancedCode>,
    /// The lines' texts, without codes, in order.
    pub lines: Vec<String>,
}

impl fmt::Display for FullReply {
    /// The lines as `code[-| ][enhanced ]text`, joined by `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lines.len().max(1);
        for i in 0..n {
            if i > 0 {
                f.write_str("\n")?;
            }
            let sep = if i + 1 == n { ' ' } else { '-' };
            write!(f, "{}{sep}", self.code)?;
            if let Some(e) = &self.enhanced {
                write!(f, "{e} ")?;
            }
            if let Some(t) = self.lines.get(i) {
                f.write_str(t)?;
            }
        }
        Ok(())
    }
}

/// smtpc sends no notices: this type has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpcNotice {}
