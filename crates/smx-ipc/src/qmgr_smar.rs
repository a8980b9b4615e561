//! The qmgr → smar link ([`QmgrSmar`], service [`ServiceName::QmgrSmar`]):
//! routing and alias expansion of recipients.
//!
//! qmgr asks smar where a recipient goes before it schedules a delivery.
//! smar expands aliases (seed 3.9.3, 3.14), looks the domain up in the
//! mailertable (seed 3.9.3) and, for a host name, resolves MX and A/AAAA
//! records. The reply lists the final recipients, each with its route:
//!
//! | request | reply |
//! | --- | --- |
//! | [`RouteRequest::Route`] | [`RouteReply::Routed`]: one or more [`RoutedRcpt`] (several when the address is an alias), the owner-list envelope sender and the VERP flag of a list |
//! | | [`RouteReply::TempFail`]: try again later (DNS timeout or SERVFAIL, a map that cannot answer, smar overloaded) |
//! | | [`RouteReply::PermFail`]: bounce with this reply (no such domain, null MX, unknown local user, alias loop) |
//! | [`RouteRequest::RcptConf`] | [`RouteReply::RcptConf`]: the `smtpc_rcpt_conf:` access map entry for the recipient (seed 3.11.1), or `None` |
//! | | [`RouteReply::TempFail`]: the access map cannot answer now |
//! | [`RouteRequest::Batch`]: up to [`MAX_BATCH`] `Route`/`RcptConf` requests | [`RouteReply::Batch`]: one reply per request, in the same order |
//! | | [`RouteReply::PermFail`]: the batch itself is malformed (too long, or nested) |
//!
//! A batch saves a round trip per recipient when qmgr routes the
//! recipients of a transaction: smar answers its requests concurrently and
//! replies once. Each request of a batch is answered exactly as if it had
//! been sent alone.
//!
//! A [`Route`] is either a Unix socket (LMTP to the configured
//! `LMTP_socket`, mailertable `lmtp:`) or an ordered list of [`Hop`]s, each
//! a host with its MX preference and the addresses to try, all on one TCP
//! port. Hops are in the order smtpc should try them (lowest preference
//! first; equal preferences in the order DNS gave them). An address
//! literal or a mailertable `[ip]` list gives hops without a name.
//!
//! A recipient that smar could not resolve completely is never partially
//! answered: one member of an alias list that fails *temporarily* makes
//! the whole reply `TempFail`, so that qmgr retries the original
//! recipient. Members that fail *permanently* are listed in
//! `Routed { failed }` with their reply, for qmgr to bounce (to the list
//! owner when there is one) while the others are delivered; when no member
//! is left the reply is `PermFail`.
//!
//! Postcard encodes these types by variant and field order; see the crate
//! doc for the compatibility rule.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::hello::ServiceName;
use crate::link::Link;
use crate::smtps_smar::NoNotice;
use crate::types::SmtpReply;

/// The qmgr → smar link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QmgrSmar;

impl Link for QmgrSmar {
    const SERVICE: ServiceName = ServiceName::QmgrSmar;
    type Request = RouteRequest;
    type Reply = RouteReply;
    type Notice = NoNotice;
}

/// What qmgr asks smar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteRequest {
    /// Expand aliases and route this recipient.
    Route {
        /// The recipient address without angle brackets (`local@domain`).
        rcpt: String,
        /// The envelope sender of its transaction (empty for `<>`); used
        /// for macros and logging only.
        sender: String,
    },
    /// The SMTP client options for this recipient: the right-hand side of
    /// its `smtpc_rcpt_conf:` access map entry (qmgr flag
    /// `lookup_rcpt_conf`).
    RcptConf {
        /// The recipient address without angle brackets.
        rcpt: String,
    },
    /// Several requests answered together (at most [`MAX_BATCH`]; a batch
    /// inside a batch is refused).
    Batch(Vec<RouteRequest>),
}

/// The most requests in one [`RouteRequest::Batch`].
pub const MAX_BATCH: usize = 100;

/// smar's answer to [`RouteRequest::Route`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteReply {
    /// The recipient resolved; deliver to each of these.
    Routed {
        /// The final recipients (the request's recipient itself unless it
        /// was an alias). Never empty.
        rcpts: Vec<RoutedRcpt>,
        /// For a mailing list `L` with an `owner-L` alias: the envelope
        /// sender to use for the expanded recipients (`owner-L@domain`).
        owner: Option<String>,
        /// The list asks for VERP (a `verp-L` alias exists).
        verp: bool,
        /// Members of the expansion that cannot be delivered, with the
        /// reply to bounce them with.
        failed: Vec<FailedRcpt>,
    },
    /// Cannot resolve now; retry later. The text is for logs and DSNs.
    TempFail(SmtpReply),
    /// Cannot ever be delivered; bounce with this reply.
    PermFail(SmtpReply),
    /// The answer to [`RouteRequest::RcptConf`]: the entry's text (a
    /// configuration fragment for smtpc, e.g. `tls_requirements { ... }`),
    /// or `None` when there is no entry.
    RcptConf(Option<String>),
    /// The answer to [`RouteRequest::Batch`]: one reply per request, in
    /// order.
    Batch(Vec<RouteReply>),
}

/// One final recipient and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedRcpt {
    /// The address to use in `RCPT TO` (without angle brackets).
    pub address: String,
    /// The route.
    pub route: Route,
}

/// A recipient of an expansion that failed permanently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRcpt {
    /// The address.
    pub address: String,
    /// Why (5xx).
    pub reply: SmtpReply,
}

/// The protocol spoken to the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// ESMTP (RFC 5321).
    Esmtp,
    /// LMTP (RFC 2033).
    Lmtp,
}

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// LMTP over the configured Unix socket (smtpc's `LMTP_socket`).
    LmtpSocket,
    /// Over TCP to one of these hosts, in order.
    Hosts {
        /// ESMTP or LMTP.
        protocol: Protocol,
        /// The TCP port (25 unless the mailertable says otherwise).
        port: u16,
        /// The hosts, in the order to try them. Never empty.
        hops: Vec<Hop>,
    },
}

/// One host to try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The host name (MX target or mailertable host); `None` for an IP
    /// literal.
    pub name: Option<String>,
    /// The MX preference (0 for a host that is not an MX).
    pub preference: u16,
    /// Its addresses, in the order to try them. Never empty.
    pub addrs: Vec<IpAddr>,
}
