//! smx-proto: the SMTP wire protocol, pure.
//!
//! Everything here is a function or a state machine over bytes the caller
//! already has: no sockets, no runtime, no clocks (STYLE habit 3). The SMTP
//! server (smtps) and, later, the SMTP/LMTP client (smtpc) put these pieces
//! between their sockets and their session logic:
//!
//! * [`line`](mod@line) frames command lines (CRLF, length limit, bare CR/LF);
//! * [`command`] parses a command line into a typed [`Command`] and renders
//!   it back in canonical wire syntax, under a [`Syntax`] (strict or sloppy);
//! * [`address`] holds the RFC 5321 path grammar (local parts, domains,
//!   address literals, source routes, SMTPUTF8, length limits);
//! * [`params`] holds the ESMTP parameters of MAIL and RCPT (SIZE, BODY,
//!   SMTPUTF8, RET, ENVID, AUTH, BY, XVERP, NOTIFY, ORCPT) and [`xtext`]
//!   their encoding;
//! * [`reply`] formats replies (multi-line, enhanced status codes, no line
//!   injection) and parses them incrementally for the client side;
//! * [`data`] decodes DATA content (dot-stuffing, the CRLF.CRLF terminator,
//!   SMTP-smuggling defence) and encodes it for sending;
//! * [`bdat`] reads BDAT chunks (RFC 3030);
//! * [`date`] formats the date-time of header fields (RFC 5322).
//!
//! # Errors
//!
//! Every decoder answers "need more input" (`Incomplete`) or a typed error.
//! Errors that the server answers on the wire have a `reply()` method giving
//! the reply code and enhanced status code to send, so the session code
//! never invents codes; the mapping is listed in each module's doc. Nothing
//! here panics on any input; arbitrary bytes are fuzzed (`fuzz/`).
//!
//! One error type per decoder rather than one per crate: their failure sets
//! are disjoint (a reply parser never sees an unknown ESMTP parameter), and a
//! caller matching on [`CommandError`] should not have to handle
//! [`ReplyError`] variants that cannot occur.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod bdat;
pub mod command;
pub mod data;
pub mod date;
pub mod line;
pub mod params;
pub mod reply;
pub mod xtext;

pub use address::{AddressError, Domain, ForwardPath, Host, LocalPart, Mailbox, Path, ReversePath};
pub use bdat::{BdatChunk, BdatProgress};
pub use command::{Command, CommandError, HeloName, SyntaxProblem, Verb};
pub use data::{BareLineEnds, DataDecoder, DataEncoder, DataError, DataOptions, DataProgress};
pub use line::{Frame, LineError, frame_line, skip_line};
pub use params::{
    AuthParam, Body, ByMode, DeliverBy, MailParams, Notify, Orcpt, ParamError, RcptParams, Ret,
    Xverp,
};
pub use reply::{EnhancedCode, Reply, ReplyError, ReplyLimits, ReplyParser, ReplyProgress};

/// The smallest command line length limit, octets including CRLF (RFC 5321
/// 4.5.3.1.4). [`Syntax::max_line`] values below it are raised to it.
pub const MIN_COMMAND_LINE: usize = 512;

/// The default command line length limit, octets including CRLF: larger than
/// RFC 5321's 512 because ESMTP parameters (RFC 5321 4.5.3.1.4 allows
/// extensions to raise it) make MAIL and RCPT lines longer.
pub const DEFAULT_COMMAND_LINE: usize = 4096;

/// How strictly command syntax is checked: per listener and per client
/// pattern (ZMailer's HELO-pattern style flags).
///
/// The default is strict (seed 6.3.1): angle brackets required around paths,
/// no space after the colon of `MAIL FROM:` / `RCPT TO:`, single spaces
/// between words, lines end in CRLF. Sloppy mode (ZMailer `-s sloppy`, style
/// flag `S`) accepts missing angle brackets, white space (spaces and tabs)
/// around the colon and between words, trailing white space, and LF line
/// ends; it never accepts what RFC 5321 forbids inside an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    /// Strict RFC 5321 syntax (`true`, default) or sloppy (`false`).
    pub strict: bool,
    /// Keep source routes (`<@a,@b:user@c>`) in parsed paths instead of
    /// stripping them to `<user@c>` (ZMailer `allowsourceroute`; default
    /// off, as RFC 5321 4.1.1.3 and Appendix C recommend).
    pub allow_source_route: bool,
    /// Require a domain in MAIL and RCPT addresses (ZMailer style flag `R`,
    /// default on); `<postmaster>` in RCPT is always allowed (RFC 5321
    /// 4.1.1.3). When off, `<user>` parses as a mailbox without domain.
    pub require_domain: bool,
    /// Longest command line in octets including CRLF; at least
    /// [`MIN_COMMAND_LINE`], default [`DEFAULT_COMMAND_LINE`].
    pub max_line: usize,
}

impl Syntax {
    /// Strict syntax with the default limits.
    pub const STRICT: Syntax = Syntax {
        strict: true,
        allow_source_route: false,
        require_domain: true,
        max_line: DEFAULT_COMMAND_LINE,
    };

    /// Sloppy syntax (ZMailer `-s sloppy`) with the default limits.
    pub const SLOPPY: Syntax = Syntax {
        strict: false,
        ..Syntax::STRICT
    };

    /// The effective line limit: [`Syntax::max_line`], at least
    /// [`MIN_COMMAND_LINE`].
    pub fn line_limit(&self) -> usize {
        self.max_line.max(MIN_COMMAND_LINE)
    }
}

impl Default for Syntax {
    fn default() -> Self {
        Syntax::STRICT
    }
}

/// Whether a failure is worth retrying: the class of a 4xx reply
/// (`Temporary`) or a 5xx reply (`Permanent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Try again later (4xx).
    Temporary,
    /// Do not try again (5xx).
    Permanent,
}
