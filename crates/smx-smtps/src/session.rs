//! One SMTP session: the command loop, the transaction state, the limits,
//! and the hand-over of a received message to CDB and qmgr.
//!
//! # Order of events
//!
//! 1. The accept loop has admitted the connection ([`crate::conn`]).
//! 2. qmgr is asked whether the client may connect (connection control);
//!    smar is asked for the connect check when the `access` flag is set.
//!    A refusal is sent instead of the greeting, then the connection closes.
//! 3. Input that arrived before the greeting is illegal pipelining unless
//!    `allow_data_before_greeting`: 421 and close (seed 6.3.2).
//! 4. `220 HOSTNAME GREETING`, then commands until QUIT, EOF, a timeout
//!    (`io_timeout`: 421 4.4.2) or a limit that closes the session.
//!
//! # Pipelining (RFC 2920, seed 6.3.2)
//!
//! Replies to pipelined commands are collected and written when no more
//! input is waiting. EHLO, HELO, DATA, VRFY, EXPN, NOOP, HELP, ETRN,
//! STARTTLS, AUTH and QUIT must end a group: input found after one of them
//! is illegal pipelining, as is any input after a command when PIPELINING
//! was not negotiated (HELO, or the flag off). Illegal pipelining is
//! answered with 421 4.5.0 and the connection is closed. Input after
//! STARTTLS is the exception: it is discarded (RFC 3207 4.2), never
//! executed.
//!
//! # TLS and AUTH
//!
//! STARTTLS (offered with a `tls` section and the `starttls` flag, not
//! under TLS) answers 220, runs the handshake within `io_timeout`, and
//! starts the session over: HELO/EHLO and AUTH forgotten, buffered input
//! dropped. On an implicit-TLS listener the handshake comes before
//! everything else. A failed handshake closes the connection. See
//! [`crate::tls`] for certificates and the Received: TLS part.
//!
//! AUTH runs a SASL exchange of at most 8 challenges (`334` lines, response
//! lines of at most 12288 octets, `*` cancels); passwords are checked on
//! the blocking pool. Success makes later RCPT checks carry
//! `relay_allowed` when the mechanism is trusted, makes the Received:
//! protocol `...A`, and decides the MAIL `AUTH=` parameter (kept, or set
//! to the login name; `AUTH=<>` for clients not logged in). See
//! [`crate::auth`].
//!
//! # Session configuration (seed 3.10.1)
//!
//! With the `lookup_session_conf` flag, smar is asked for the client's
//! `smtps_session_conf:` entry right after qmgr accepted the session and
//! before the connect check. The value is parsed with
//! [`smx_conf::session_conf`]; a lookup that fails, an entry that does not
//! parse and an unknown class name are logged as warnings and the session
//! goes on with the server's settings (a broken map entry never refuses
//! mail by itself). `session_feature=NAME` applies that `session_features`
//! class to the session's flags ([`crate::settings::apply_features`]);
//! `tls_requirements { ... }` are checked at each MAIL, after the
//! HELO/EHLO sequence check ([`crate::tls::check_requirements`]). When
//! they are not met, MAIL is refused as the entry's
//! `requirements_violation` says, else as the `tls` section's (default
//! `tempfail`): `permfail` 530 5.7.0, `tempfail` 454 4.7.0, `abort` 421
//! 4.7.0 and the connection closes. The reply text says which requirement
//! failed. A client that has not started TLS can still say STARTTLS and
//! try MAIL again.
//!
//! # Transactions
//!
//! MAIL checks the sequence (HELO/EHLO first when `require_EHLO_before_MAIL`),
//! the parameters against what EHLO offered (a parameter for an extension
//! that is off is 555 5.5.4), SIZE against `max_message_size` (552 5.3.4),
//! SMTPUTF8 against the address (553 5.6.7), then asks smar (`access`
//! flag). RCPT checks the recipient limits (452 4.5.3), the null-sender
//! recipient limit `max_error_recipients` (550 5.7.1), and asks smar, whose
//! verdict decides local delivery, relaying or rejection. A `quick:`
//! verdict of the connect check holds for the whole session: MAIL and RCPT
//! are not checked again. A `discard` verdict accepts and drops the
//! message. A repeated recipient is answered 250 and kept once.
//!
//! DATA (after 354) and BDAT content is written to a new CDB file behind
//! the `Received:` field ([`crate::received`]) while it arrives; the
//! [`crate::header::HeaderScanner`] counts hops (`max_hops`: 554 5.4.6) on
//! the way. At the end the file is written and closed, then the envelope is
//! handed to qmgr, whose group commit syncs the content before it writes the
//! envelope; only its `Committed` answer gives the client 250.
//! With PRDR (when the `prdr` flag offers it and MAIL asked for it) the
//! 250 is preceded by `353` and one reply per recipient, in RCPT order.
//! A message with a bare CR or LF is refused (554 5.6.0, see smx-proto's
//! data module); BDAT content other than BODY=BINARYMIME is held to the
//! same rule, since it may be relayed with DATA later. When qmgr cannot be
//! reached the client gets 451 4.3.0 and the content file is left for
//! qmgr's recovery to decide (it may have committed the envelope before the
//! link broke: delivering twice is allowed, losing is not).
//!
//! # Limits
//!
//! | counter | limit option | reply when exceeded |
//! | --- | --- | --- |
//! | unknown or malformed commands, session / transaction | `max_bad_commands_per_session` / `_per_transaction` | 421 4.7.0, close |
//! | rejected or malformed RCPT addresses | `max_invalid_addresses_per_session` / `_per_transaction` | 421 4.7.0, close |
//! | NOOP, RSET, HELP, VRFY, EXPN, ETRN, AUTH between / in transactions | `max_nop_commands_between_transactions` / `_in_transaction` | 421 4.7.0, close |
//! | recipients per transaction / session | `max_recipients_per_transaction` / `_per_session` | 452 4.5.3 |
//! | transactions per session | `max_transactions` | 421 4.7.0, close |
//! | message size | `max_message_size` | 552 5.3.4 |
//! | Received: fields | `max_hops` | 554 5.4.6 |
//! | recipients with MAIL FROM:<> | `max_error_recipients` | 550 5.7.1 |
//! | silence | `io_timeout` | 421 4.4.2, close |
//!
//! After each 4xx or 5xx reply the tarpit (if `tarpit.initial` > 0) delays
//! the reply, growing by `exponent` up to `max`. `soft_bounce` turns every
//! 5xx reply into 4xx. `contact_pointer_message` is appended to policy
//! rejections.
//!
//! # Log lines (seed 10.3)
//!
//! Every line of a session carries `ss_sess`; transaction lines carry
//! `ss_ta`: `mail=<...>, stat=0`, `rcpt=<...>, idx=N, stat=0`, and at the end
//! `msgid=..., size=N, stat=0`; a refusal logs its reply as `stat=`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smx_conf::model::smtps::{RequirementsViolation, SmtpsFlags};
use smx_conf::session_conf::{SessionConf, TlsRequirementsConf};
use smx_ipc::smtps_qmgr::{Envelope, EnvelopeRecipient, NewSession, QmgrReply, SmtpsRequest};
use smx_ipc::smtps_smar::{SmarReply, SmarRequest};
use smx_ipc::types::{SessionId as IpcSessionId, SmtpReply, TransactionId as IpcTransactionId};
use smx_proto::{
    AuthParam, BareLineEnds, BdatChunk, BdatProgress, Body, Command, CommandError, DataDecoder,
    DataOptions, DataProgress, EnhancedCode, ForwardPath, Frame, HeloName, LineError, MailParams,
    RcptParams, Reply, ReversePath, Syntax, Verb, frame_line, skip_line,
};
use smx_store::cdb::{Cdb, CdbError, CdbWriter};
use smx_store::id::{SessionId, TransactionId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{Instrument, info, warn};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::auth::{AuthServer, Exchange, Mechanism, Step};
use crate::dovecot::{Answer, ClientInfo, DovecotAuth};
use crate::header::HeaderScanner;
use crate::received::{ReceivedInfo, received};
use crate::server::Shared;
use crate::stream::Stream;
use crate::tls::TlsInfo;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Longest SASL response line (RFC 4954 section 4).
const MAX_SASL_LINE: usize = 12288;
/// Most challenges in one AUTH exchange.
const MAX_SASL_ROUNDS: usize = 8;
/// Content buffered before it is written to the CDB file.
const WRITE_BATCH: usize = 256 * 1024;

/// How a command handler wants the session to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Why reading stopped.
#[derive(Debug)]
enum ReadEnd {
    Eof,
    Timeout,
    Error(std::io::Error),
    /// The server is shutting down (only while waiting for a command).
    Stopping,
}

/// Where a SASL exchange runs: here, or in Dovecot.
enum Sasl {
    Local(Box<Exchange>),
    Dovecot(Box<DovecotAuth>),
}

impl Sasl {
    async fn start(
        &mut self,
        mech: Mechanism,
        initial: Option<Vec<u8>>,
        info: &ClientInfo,
    ) -> Step {
        match self {
            Sasl::Local(ex) => ex.start(initial),
            Sasl::Dovecot(d) => from_dovecot(d.start(mech.name(), initial.as_deref(), info).await),
        }
    }

    async fn step(&mut self, resp: &[u8]) -> Step {
        match self {
            Sasl::Local(ex) => ex.step(resp),
            Sasl::Dovecot(d) => from_dovecot(d.step(resp).await),
        }
    }
}

/// Dovecot's answer as a SASL step.
fn from_dovecot(a: Result<Answer, crate::dovecot::DovecotError>) -> Step {
    match a {
        Ok(Answer::Challenge(c)) => Step::Challenge(c),
        Ok(Answer::Success(user)) => Step::Success(user),
        Ok(Answer::Fail { temp: true, reason }) => {
            info!(reason = %reason, "dovecot: temporary failure");
            Step::TempFail("dovecot: temporary failure")
        }
        Ok(Answer::Fail { reason, .. }) => {
            info!(reason = %reason, "dovecot: authentication failed");
            Step::Fail("dovecot: authentication failed")
        }
        Err(e) => {
            warn!(error = %e, "dovecot auth socket");
            Step::TempFail("dovecot auth socket unavailable")
        }
    }
}

/// The accepted verdict of a connect check.
#[derive(Debug, Clone, Default)]
struct ClientVerdict {
    /// `quick:` accept or relay: no more checks in this session.
    quick: bool,
    /// `discard`: every message of the session is dropped.
    discard: bool,
    /// smar's answer to the connect check, passed along with each RCPT
    /// check (with delay_checks a connect rejection is decided there).
    connect: Option<SmarReply>,
}

/// The message being received.
struct Transaction {
    id: TransactionId,
    sender: ReversePath,
    params: MailParams,
    rcpts: Vec<(ForwardPath, RcptParams)>,
    discard: bool,
    /// BDAT state once the first chunk came.
    bdat: Option<BdatState>,
}

/// Content arriving by BDAT.
struct BdatState {
    content: Option<Content>,
    /// The transaction failed earlier (size, write error): chunks are
    /// read and thrown away, and answered with this reply.
    failed: Option<Reply>,
    bare: BareCheck,
}

/// A message's content on its way into CDB.
struct Content {
    /// `None` after a failed create or write.
    writer: Option<ContentFile>,
    buf: Vec<u8>,
    scanner: HeaderScanner,
    /// Size of the message content (without our Received: field).
    size: u64,
    error: Option<String>,
}

/// The content file of a transaction. It is created by the first blocking
/// call that writes to it, so that a message smaller than [`WRITE_BATCH`]
/// costs one trip to the blocking pool (create, write, close), not two.
enum ContentFile {
    NotCreated(Arc<Cdb>, TransactionId),
    Open(CdbWriter),
}

impl ContentFile {
    /// The writer, creating the file if needed. Blocks.
    fn open(self) -> Result<CdbWriter, CdbError> {
        match self {
            ContentFile::NotCreated(cdb, id) => cdb.create(id),
            ContentFile::Open(w) => Ok(w),
        }
    }

    /// Removes the file if it was created. Blocks.
    fn abort(self) {
        if let ContentFile::Open(w) = self {
            let _ = w.abort();
        }
    }
}

/// Bare CR / bare LF detection across BDAT chunks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BareCheck {
    after_cr: bool,
    found: bool,
}

impl BareCheck {
    /// Scans a piece of content.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        for &b in data {
            match (self.after_cr, b) {
                (true, b'\n') => self.after_cr = false,
                (true, b'\r') => self.found = true,
                (true, _) => {
                    self.found = true;
                    self.after_cr = false;
                }
                (false, b'\r') => self.after_cr = true,
                (false, b'\n') => self.found = true,
                (false, _) => {}
            }
        }
    }

    /// Whether a bare CR or LF was seen (a CR at the very end counts).
    pub(crate) fn found(&self) -> bool {
        self.found || self.after_cr
    }
}

/// One session; see the module doc.
pub(crate) struct Session<S> {
    io: Stream<S>,
    /// The server's flags with the session's `session_features` applied.
    flags: SmtpsFlags,
    /// The `tls_requirements` of the client's `smtps_session_conf:` entry.
    tls_req: Option<TlsRequirementsConf>,
    /// TLS facts once a handshake succeeded.
    tls: Option<TlsInfo>,
    /// The user and mechanism of a successful AUTH.
    authed: Option<(String, Mechanism)>,
    /// A successful AUTH allows relaying.
    auth_relay: bool,
    /// The client certificate allows relaying.
    tls_relay: bool,
    shared: Arc<Shared>,
    id: SessionId,
    peer: SocketAddr,
    local: SocketAddr,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    syntax: Syntax,
    helo: Option<HeloName>,
    esmtp: bool,
    verdict: ClientVerdict,
    ta: Option<Transaction>,
    transactions: u32,
    rcpts_session: u32,
    bad_session: u32,
    bad_ta: u32,
    invalid_session: u32,
    invalid_ta: u32,
    nops_between: u32,
    nops_in_ta: u32,
    tarpit: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn r(code: u16, class: u8, subject: u16, detail: u16, text: impl Into<String>) -> Reply {
    Reply::new(code, Some(EnhancedCode::new(class, subject, detail)), text)
}

/// Why a check's answer from smar is not a verdict: the link failed, or
/// smar answered another question.
fn smar_failure(a: &Result<SmarReply, smx_ipc::IpcError>) -> String {
    match a {
        Err(e) => e.to_string(),
        Ok(r) => format!("unexpected answer {r:?}"),
    }
}

fn ipc_sess(id: SessionId) -> IpcSessionId {
    IpcSessionId {
        counter: id.counter(),
        process: id.process(),
    }
}

fn ipc_ta(id: TransactionId) -> IpcTransactionId {
    IpcTransactionId {
        counter: id.counter(),
        process: id.process(),
    }
}

/// A reply from a peer, checked: the code must fit the class it claims,
/// otherwise `fallback` is used (a peer must not make smtps say 250 to a
/// rejection).
fn from_peer(reply: &SmtpReply, class: u8, fallback: Reply) -> Reply {
    if reply.code / 100 != u16::from(class) {
        return fallback;
    }
    let enhanced = reply
        .enhanced
        .filter(|e| e.class == class)
        .and_then(|e| EnhancedCode::checked(e.class, e.subject, e.detail));
    Reply::new(reply.code, enhanced, reply.text.clone())
}

/// Whether a command must be the last of a pipelined group (RFC 2920 3.1;
/// STARTTLS and AUTH by RFC 3207 and RFC 4954).
fn ends_group(verb: Verb) -> bool {
    matches!(
        verb,
        Verb::Ehlo
            | Verb::Helo
            | Verb::Data
            | Verb::Vrfy
            | Verb::Expn
            | Verb::Noop
            | Verb::Help
            | Verb::Etrn
            | Verb::StartTls
            | Verb::Auth
            | Verb::Quit
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(crate) fn new(
        io: S,
        shared: Arc<Shared>,
        id: SessionId,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Self {
        let syntax = shared.settings.syntax;
        Session {
            io: Stream::Plain(io),
            flags: shared.settings.flags,
            tls_req: None,
            tls: None,
            authed: None,
            auth_relay: false,
            tls_relay: false,
            shared,
            id,
            peer,
            local,
            rbuf: Vec::with_capacity(4096),
            out: Vec::with_capacity(1024),
            syntax,
            helo: None,
            esmtp: false,
            verdict: ClientVerdict::default(),
            ta: None,
            transactions: 0,
            rcpts_session: 0,
            bad_session: 0,
            bad_ta: 0,
            invalid_session: 0,
            invalid_ta: 0,
            nops_between: 0,
            nops_in_ta: 0,
            tarpit: Duration::ZERO,
        }
    }

    /// Runs the session to its end.
    pub(crate) async fn run(mut self) {
        let span = tracing::info_span!("session", ss_sess = %self.id);
        async move {
            info!(client_ip = %self.peer.ip(), client_port = self.peer.port(), "connected");
            let mut flow = Flow::Continue;
            if self.shared.settings.implicit_tls {
                flow = self.handshake().await;
            }
            if flow == Flow::Continue && self.start().await == Flow::Continue {
                self.command_loop().await;
            }
            if let Some(ta) = self.ta.take() {
                self.abort_transaction(ta, "session ended").await;
            }
            let _ = self.flush().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), self.io.shutdown()).await;
            let close = SmtpsRequest::CloseSession {
                session: ipc_sess(self.id),
            };
            let timeout = self.shared.settings.module_timeout;
            if let Err(e) = self.shared.qmgr.request(close, timeout).await {
                tracing::debug!(error = %e, "qmgr not told about the session's end");
            }
            info!("disconnected");
        }
        .instrument(span)
        .await
    }

    // ---- I/O ----------------------------------------------------------

    async fn read_more(&mut self) -> Result<usize, ReadEnd> {
        self.read_input(false).await
    }

    /// Reads more input; with `interruptible`, a server shutdown ends the
    /// wait.
    async fn read_input(&mut self, interruptible: bool) -> Result<usize, ReadEnd> {
        self.flush().await.map_err(ReadEnd::Error)?;
        // Read into spare capacity (no zero-filling per read); `read_buf`
        // appends and is cancel-safe, so a shutdown loses no input.
        self.rbuf.reserve(READ_CHUNK);
        let mut stopping = self.shared.stopping.clone();
        let read = tokio::time::timeout(
            self.shared.settings.io_timeout,
            self.io.read_buf(&mut self.rbuf),
        );
        let res = if interruptible {
            tokio::select! {
                r = read => Some(r),
                _ = stopping.wait_for(|s| *s) => None,
            }
        } else {
            Some(read.await)
        };
        match res {
            None => Err(ReadEnd::Stopping),
            Some(Err(_)) => Err(ReadEnd::Timeout),
            Some(Ok(Err(e))) => Err(ReadEnd::Error(e)),
            Some(Ok(Ok(0))) => Err(ReadEnd::Eof),
            Some(Ok(Ok(n))) => Ok(n),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let res = tokio::time::timeout(self.shared.settings.io_timeout, async {
            self.io.write_all(&out).await?;
            self.io.flush().await
        })
        .await;
        self.out = out;
        self.out.clear();
        match res {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timeout",
            )),
        }
    }

    /// Queues a reply; error replies go through soft_bounce and the tarpit.
    async fn reply(&mut self, mut reply: Reply) {
        if !self.shared.settings.flags.enhancedstatuscodes {
            reply.enhanced = None;
        }
        if reply.code >= 400 {
            if reply.code >= 500 && self.shared.settings.flags.soft_bounce {
                reply = soften(&reply);
            }
            let (initial, exponent, max) = self.shared.settings.tarpit;
            if !initial.is_zero() {
                self.tarpit = if self.tarpit.is_zero() {
                    initial
                } else {
                    let grown = self.tarpit.as_secs_f64() * (1.0 + exponent);
                    Duration::try_from_secs_f64(grown).unwrap_or(max).min(max)
                };
                let _ = self.flush().await;
                tokio::time::sleep(self.tarpit).await;
            }
        }
        reply.write_to(&mut self.out);
    }

    /// A policy rejection: contact pointer appended.
    async fn reject(&mut self, reply: Reply) {
        let reply = match &self.shared.settings.contact {
            Some(c) if reply.code >= 500 => Reply::new(
                reply.code,
                reply.enhanced,
                format!("{} {}", reply.text(), c),
            ),
            _ => reply,
        };
        self.reply(reply).await;
    }

    // ---- start ----------------------------------------------------------

    async fn start(&mut self) -> Flow {
        let settings = &self.shared.settings;
        let hostname = settings.hostname.clone();
        let local = self.local;
        let req = SmtpsRequest::NewSession(NewSession {
            session: ipc_sess(self.id),
            client_ip: self.peer.ip(),
            client_port: self.peer.port(),
            server_ip: local.ip(),
            server_port: local.port(),
        });
        let refusal = match self.shared.qmgr.request(req, settings.module_timeout).await {
            Ok(QmgrReply::SessionAccepted) => None,
            Ok(QmgrReply::SessionRefused(rep)) => Some(from_peer(
                &rep,
                4,
                r(
                    421,
                    4,
                    7,
                    0,
                    format!("{hostname} Too many connections, try again later"),
                ),
            )),
            Ok(other) => {
                warn!(reply = ?other, "unexpected qmgr reply to NewSession");
                Some(r(
                    421,
                    4,
                    3,
                    0,
                    format!("{hostname} Service temporarily unavailable"),
                ))
            }
            Err(e) => {
                warn!(error = %e, "qmgr unavailable");
                Some(r(
                    421,
                    4,
                    3,
                    0,
                    format!("{hostname} Service temporarily unavailable"),
                ))
            }
        };
        if let Some(reply) = refusal {
            info!(stat = %reply.text(), "session refused by qmgr");
            reply.write_to(&mut self.out);
            return Flow::Close;
        }
        if self.flags.lookup_session_conf {
            self.session_conf().await;
        }
        if self.shared.settings.flags.access {
            let req = SmarRequest::ConnectCheck {
                client_ip: self.peer.ip(),
                client_name: None,
            };
            let wait = self.shared.settings.wait_for_smar;
            let answer = self.shared.smar.request(req, wait).await;
            if let Ok(a) = &answer {
                self.verdict.connect = Some(a.clone());
            }
            match answer {
                Ok(SmarReply::Accept { quick }) | Ok(SmarReply::Relay { quick }) => {
                    self.verdict.quick = quick;
                }
                Ok(SmarReply::Discard) => self.verdict.discard = true,
                Ok(SmarReply::Reject(rep)) => {
                    let reply = from_peer(&rep, 5, r(554, 5, 7, 1, "Access denied"));
                    if self.flags.delay_checks {
                        // Decided by smar at each RCPT (a `to:` entry may
                        // override it).
                        info!(stat = %reply.text(), "connection rejection delayed to RCPT");
                    } else {
                        info!(stat = %reply.text(), "connection rejected");
                        let reply =
                            Reply::new(554, reply.enhanced, format!("{hostname} {}", reply.text()));
                        self.reject(reply).await;
                        return Flow::Close;
                    }
                }
                Ok(SmarReply::TempFail(rep)) => {
                    let reply = from_peer(&rep, 4, r(421, 4, 3, 0, "Try again later"));
                    info!(stat = %reply.text(), "connection temporarily rejected");
                    let reply =
                        Reply::new(421, reply.enhanced, format!("{hostname} {}", reply.text()));
                    self.reply(reply).await;
                    return Flow::Close;
                }
                other @ (Err(_) | Ok(SmarReply::SessionConf(_))) => {
                    warn!(error = %smar_failure(&other), "smar unavailable for the connect check");
                    let reply = r(
                        421,
                        4,
                        3,
                        0,
                        format!("{hostname} Service temporarily unavailable"),
                    );
                    self.reply(reply).await;
                    return Flow::Close;
                }
            }
        }
        if !self.flags.allow_data_before_greeting && self.input_waiting().await {
            info!(stat = "data before greeting", "illegal pipelining");
            let reply = r(
                421,
                4,
                5,
                0,
                format!("{hostname} Data sent before greeting, closing"),
            );
            reply.write_to(&mut self.out);
            return Flow::Close;
        }
        let text = crate::settings::greeting(
            &self.shared.settings.greeting,
            &hostname,
            self.peer.ip(),
            now_secs(),
        );
        Reply::new(220, None, format!("{hostname} {text}")).write_to(&mut self.out);
        Flow::Continue
    }

    /// Asks smar for the client's `smtps_session_conf:` entry and applies
    /// it; see the module doc. Nothing here ends the session: a failed
    /// lookup or a bad entry is logged and the session goes on with the
    /// server's settings.
    async fn session_conf(&mut self) {
        let req = SmarRequest::SessionConf {
            client_ip: self.peer.ip(),
            client_name: None,
        };
        let wait = self.shared.settings.wait_for_smar;
        let value = match self.shared.smar.request(req, wait).await {
            Ok(SmarReply::SessionConf(v)) => v,
            other => {
                warn!(error = %smar_failure(&other), "smtps_session_conf lookup failed, using the defaults");
                return;
            }
        };
        let Some(value) = value else { return };
        let conf = match SessionConf::parse(&value) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, value = %value.escape_debug(), "invalid smtps_session_conf entry ignored");
                return;
            }
        };
        if let Some(name) = &conf.session_feature {
            match self.shared.settings.session_feature(name) {
                Some(class) => {
                    crate::settings::apply_features(&mut self.flags, class);
                    info!(session_feature = %name, "session features applied");
                }
                None => warn!(session_feature = %name, "unknown session_features class ignored"),
            }
        }
        self.tls_req = conf.tls.filter(TlsRequirementsConf::any);
    }

    /// MAIL refused because the session does not meet its
    /// `tls_requirements` (seed 3.10 item 21h): `permfail` 530 5.7.0,
    /// `tempfail` 454 4.7.0, `abort` 421 4.7.0 and the session closes.
    async fn tls_violation(&mut self, path: &ReversePath, why: &str) -> Flow {
        let hostname = self.shared.settings.hostname.clone();
        let violation = self
            .tls_req
            .as_ref()
            .and_then(|t| t.requirements_violation)
            .unwrap_or(self.shared.settings.requirements_violation);
        let text = format!("TLS requirements not met: {why}");
        let (reply, flow) = match violation {
            RequirementsViolation::PermFail => (r(530, 5, 7, 0, text), Flow::Continue),
            RequirementsViolation::TempFail => (r(454, 4, 7, 0, text), Flow::Continue),
            RequirementsViolation::Abort => {
                (r(421, 4, 7, 0, format!("{hostname} {text}")), Flow::Close)
            }
        };
        info!(mail = %path, stat = reply.code, tls_requirements = %why, violation = violation.as_str(), "sender refused");
        self.reply(reply).await;
        flow
    }

    /// Whether the client has sent something already (polls the socket
    /// once without waiting).
    async fn input_waiting(&mut self) -> bool {
        let start = self.rbuf.len();
        self.rbuf.resize(start + 1024, 0);
        let res = tokio::time::timeout(Duration::ZERO, self.io.read(&mut self.rbuf[start..])).await;
        let n = match res {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        self.rbuf.truncate(start + n);
        n > 0
    }

    // ---- command loop -----------------------------------------------------

    async fn command_loop(&mut self) {
        let mut skipping = false;
        loop {
            if skipping {
                match skip_line(&self.rbuf) {
                    Some(n) => {
                        self.rbuf.drain(..n);
                        skipping = false;
                        let reply = LineError::TooLong {
                            discard: n,
                            terminated: true,
                        }
                        .reply();
                        if self.bad_command(reply).await == Flow::Close {
                            return;
                        }
                        continue;
                    }
                    None => {
                        self.rbuf.clear();
                        if self.read_or_end().await == Flow::Close {
                            return;
                        }
                        continue;
                    }
                }
            }
            let framed = frame_line(&self.rbuf, &self.syntax).map(|f| match f {
                Frame::Incomplete => None,
                Frame::Line { line, len } => Some((line.to_vec(), len)),
            });
            match framed {
                Ok(None) => {
                    if self.read_or_end().await == Flow::Close {
                        return;
                    }
                }
                Ok(Some((line, len))) => {
                    self.rbuf.drain(..len);
                    if self.command(&line).await == Flow::Close {
                        return;
                    }
                }
                Err(e) => {
                    let n = e.discard().min(self.rbuf.len());
                    self.rbuf.drain(..n);
                    if let LineError::TooLong {
                        terminated: false, ..
                    } = e
                    {
                        skipping = true;
                        continue;
                    }
                    if self.bad_command(e.reply()).await == Flow::Close {
                        return;
                    }
                }
            }
        }
    }

    /// Reads more input; on EOF, timeout or error, says so and closes.
    async fn read_or_end(&mut self) -> Flow {
        match self.read_input(true).await {
            Ok(_) => Flow::Continue,
            Err(ReadEnd::Eof) => {
                info!("client closed the connection");
                Flow::Close
            }
            Err(ReadEnd::Timeout) => {
                let host = self.shared.settings.hostname.clone();
                info!(stat = "timeout", "client timed out");
                r(421, 4, 4, 2, format!("{host} Timeout, closing connection"))
                    .write_to(&mut self.out);
                Flow::Close
            }
            Err(ReadEnd::Error(e)) => {
                info!(error = %e, "read error");
                Flow::Close
            }
            Err(ReadEnd::Stopping) => {
                let host = self.shared.settings.hostname.clone();
                r(
                    421,
                    4,
                    3,
                    2,
                    format!("{host} Service shutting down, closing connection"),
                )
                .write_to(&mut self.out);
                Flow::Close
            }
        }
    }

    /// Counts a bad command, answers it, and closes past the limits.
    async fn bad_command(&mut self, reply: Reply) -> Flow {
        self.bad_session += 1;
        if self.ta.is_some() {
            self.bad_ta += 1;
        }
        let l = self.shared.settings.limits;
        if self.bad_session > l.bad_commands_per_session
            || (self.ta.is_some() && self.bad_ta > l.bad_commands_per_transaction)
        {
            return self.too_many("bad commands").await;
        }
        self.reply(reply).await;
        Flow::Continue
    }

    async fn too_many(&mut self, what: &str) -> Flow {
        let host = self.shared.settings.hostname.clone();
        info!(stat = %format!("too many {what}"), "closing session");
        self.reply(r(
            421,
            4,
            7,
            0,
            format!("{host} Too many {what}, closing connection"),
        ))
        .await;
        Flow::Close
    }

    async fn nop(&mut self) -> Flow {
        let l = self.shared.settings.limits;
        if self.ta.is_some() {
            self.nops_in_ta += 1;
            if self.nops_in_ta > l.nops_in_transaction {
                return self.too_many("NOOP-like commands").await;
            }
        } else {
            self.nops_between += 1;
            if self.nops_between > l.nops_between_transactions {
                return self.too_many("NOOP-like commands").await;
            }
        }
        Flow::Continue
    }

    async fn invalid_address(&mut self, reply: Reply) -> Flow {
        self.invalid_session += 1;
        self.invalid_ta += 1;
        let l = self.shared.settings.limits;
        if self.invalid_session > l.invalid_addresses_per_session
            || self.invalid_ta > l.invalid_addresses_per_transaction
        {
            return self.too_many("invalid addresses").await;
        }
        self.reject(reply).await;
        Flow::Continue
    }

    fn pipelining(&self) -> bool {
        self.esmtp && self.shared.settings.flags.pipelining
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let cmd = match Command::parse(line, &self.syntax) {
            Ok(c) => c,
            Err(e) => return self.command_error(e).await,
        };
        let verb = cmd.verb();
        if !self.rbuf.is_empty()
            && verb != Verb::Quit
            && verb != Verb::Bdat
            && verb != Verb::StartTls
            && (ends_group(verb) || !self.pipelining())
        {
            let host = self.shared.settings.hostname.clone();
            info!(stat = %format!("input after {verb}"), "illegal pipelining");
            r(
                421,
                4,
                5,
                0,
                format!("{host} Illegal pipelining, closing connection"),
            )
            .write_to(&mut self.out);
            return Flow::Close;
        }
        match cmd {
            Command::Helo(name) => self.helo(name, false).await,
            Command::Ehlo(name) => self.helo(name, true).await,
            Command::Mail { path, params } => self.mail(path, params).await,
            Command::Rcpt { path, params } => self.rcpt(path, params).await,
            Command::Data => self.data().await,
            Command::Bdat { size, last } => self.bdat(size, last).await,
            Command::Rset => {
                if let Some(ta) = self.ta.take() {
                    self.abort_transaction(ta, "RSET").await;
                }
                if self.nop().await == Flow::Close {
                    return Flow::Close;
                }
                self.reply(r(250, 2, 0, 0, "Reset state")).await;
                Flow::Continue
            }
            Command::Noop(_) => {
                if self.nop().await == Flow::Close {
                    return Flow::Close;
                }
                self.reply(r(250, 2, 0, 0, "OK")).await;
                Flow::Continue
            }
            Command::Quit => {
                let host = self.shared.settings.hostname.clone();
                r(221, 2, 0, 0, format!("{host} closing connection")).write_to(&mut self.out);
                Flow::Close
            }
            Command::Help(_) => {
                if self.nop().await == Flow::Close {
                    return Flow::Close;
                }
                let reply = self.help_reply();
                self.reply(reply).await;
                Flow::Continue
            }
            Command::Vrfy(_) | Command::Expn(_) => {
                if self.nop().await == Flow::Close {
                    return Flow::Close;
                }
                let on = if verb == Verb::Vrfy {
                    self.shared.settings.flags.vrfy
                } else {
                    self.shared.settings.flags.expn
                };
                let reply = if on {
                    r(
                        252,
                        2,
                        5,
                        2,
                        "Cannot verify the address, but will accept the message",
                    )
                } else {
                    r(502, 5, 5, 1, format!("{verb} command is disabled"))
                };
                self.reply(reply).await;
                Flow::Continue
            }
            Command::Etrn(node) => self.etrn(node).await,
            Command::StartTls => self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial.as_deref()).await,
        }
    }

    async fn command_error(&mut self, e: CommandError) -> Flow {
        match &e {
            CommandError::Address {
                verb: Verb::Rcpt, ..
            } => self.invalid_address(e.reply()).await,
            _ => {
                info!(stat = %e, "bad command");
                self.bad_command(e.reply()).await
            }
        }
    }

    fn help_reply(&self) -> Reply {
        let mut lines = vec![
            "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY EXPN ETRN"
                .to_string(),
            "See RFC 5321 for the protocol.".to_string(),
        ];
        lines.extend(self.shared.settings.help.iter().cloned());
        Reply::multi(214, Some(EnhancedCode::new(2, 0, 0)), lines)
    }

    // ---- STARTTLS -------------------------------------------------------------

    /// Whether EHLO offers STARTTLS: TLS configured, the `starttls` flag
    /// on, TLS not active yet.
    fn starttls_offered(&self) -> bool {
        let s = &self.shared.settings;
        s.tls.is_some() && self.flags.starttls && !self.io.is_tls()
    }

    async fn starttls(&mut self) -> Flow {
        if self.io.is_tls() {
            return self
                .bad_command(r(503, 5, 5, 1, "TLS already active"))
                .await;
        }
        if !self.starttls_offered() {
            self.reply(r(502, 5, 5, 1, "STARTTLS not available")).await;
            return Flow::Continue;
        }
        if self.ta.is_some() {
            return self
                .bad_command(r(503, 5, 5, 1, "STARTTLS not allowed in a transaction"))
                .await;
        }
        if !self.rbuf.is_empty() {
            // RFC 3207 section 4.2 and the command-injection class of bugs:
            // what came in clear after STARTTLS must not be taken as sent
            // under TLS.
            info!(
                r#where = "connection",
                discarded = self.rbuf.len(),
                "input pipelined after STARTTLS discarded"
            );
            self.rbuf.clear();
        }
        r(220, 2, 0, 0, "Ready to start TLS").write_to(&mut self.out);
        self.handshake().await
    }

    /// Whether a client certificate allows relaying; see
    /// [`crate::tls`].
    async fn cert_relay(&self, tls: &crate::tls::TlsServer, info: &TlsInfo) -> bool {
        if info.verify != crate::tls::Verify::Ok {
            return false;
        }
        if tls.allow_relaying_if_verified {
            info!(
                relay = true,
                "relaying allowed by the verified client certificate"
            );
            return true;
        }
        if !tls.check_access_map_for_relaying || !self.shared.settings.flags.access {
            return false;
        }
        let req = SmarRequest::CertCheck {
            issuer: info.issuer.clone().unwrap_or_default(),
            subject: info.subject.clone().unwrap_or_default(),
        };
        match self
            .shared
            .smar
            .request(req, self.shared.settings.wait_for_smar)
            .await
        {
            Ok(SmarReply::Relay { .. }) => {
                info!(
                    relay = true,
                    "relaying allowed by the access map for the client certificate"
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(error = %e, "smar unavailable for the certificate check");
                false
            }
        }
    }

    /// The TLS handshake (after STARTTLS or at connect on an implicit-TLS
    /// listener). On success the session starts over as RFC 3207 4.2
    /// asks: no HELO/EHLO known, nothing buffered. A failed handshake
    /// closes the connection (the stream's state is unknown).
    async fn handshake(&mut self) -> Flow {
        let Some(tls) = self.shared.settings.tls.clone() else {
            return Flow::Close;
        };
        if let Err(e) = self.flush().await {
            info!(error = %e, "write error");
            return Flow::Close;
        }
        let Some(plain) = self.io.take_plain() else {
            return Flow::Close;
        };
        let timeout = self.shared.settings.io_timeout;
        let res = tokio::time::timeout(timeout, tls.acceptor().accept(plain)).await;
        match res {
            Ok(Ok(stream)) => {
                let info = tls.info(stream.get_ref().1);
                info!(
                    r#where = "connection",
                    starttls = "successful",
                    version = %info.version,
                    cipher = %info.cipher,
                    bits = info.bits,
                    verify = %info.verify,
                    cert_subject = info.subject.as_deref().unwrap_or(""),
                    cert_issuer = info.issuer.as_deref().unwrap_or(""),
                    "TLS started"
                );
                self.io = Stream::Tls(Box::new(stream));
                self.tls_relay = self.cert_relay(&tls, &info).await;
                self.tls = Some(info);
                self.helo = None;
                self.esmtp = false;
                self.authed = None;
                self.auth_relay = false;
                self.syntax = self.shared.settings.syntax;
                self.rbuf.clear();
                Flow::Continue
            }
            Ok(Err(e)) => {
                info!(r#where = "connection", starttls = %format!("failed: {e}"), "TLS handshake failed");
                Flow::Close
            }
            Err(_) => {
                info!(
                    r#where = "connection",
                    starttls = "failed: handshake timeout",
                    "TLS handshake failed"
                );
                Flow::Close
            }
        }
    }

    // ---- AUTH -------------------------------------------------------------------

    /// The AUTH server when EHLO offers AUTH: configured, the `auth` flag
    /// on, mechanisms left, not logged in yet, and TLS active unless
    /// `allow_without_tls`.
    fn auth_offered(&self) -> Option<Arc<AuthServer>> {
        let s = &self.shared.settings;
        let a = s.auth.as_ref()?;
        (self.flags.auth
            && self.authed.is_none()
            && !a.mechanisms.is_empty()
            && (self.io.is_tls() || a.without_tls))
            .then(|| Arc::clone(a))
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Flow {
        // Counted like NOOP: a client cannot try logins without end in one
        // session, whatever the answers.
        if self.nop().await == Flow::Close {
            return Flow::Close;
        }
        if self.authed.is_some() {
            return self
                .bad_command(r(503, 5, 5, 1, "Already authenticated"))
                .await;
        }
        if self.ta.is_some() {
            return self
                .bad_command(r(503, 5, 5, 1, "AUTH not allowed in a transaction"))
                .await;
        }
        let Some(auth) = self.shared.settings.auth.clone() else {
            self.reply(r(502, 5, 5, 1, "AUTH not available")).await;
            return Flow::Continue;
        };
        if !self.esmtp {
            return self.bad_command(r(503, 5, 5, 1, "Send EHLO first")).await;
        }
        let Some(auth) = self.auth_offered() else {
            let reply = if self.flags.auth && !self.io.is_tls() && !auth.without_tls {
                r(538, 5, 7, 11, "Encryption required for authentication")
            } else {
                r(502, 5, 5, 1, "AUTH not available")
            };
            self.reply(reply).await;
            return Flow::Continue;
        };
        let Some(mech) = Mechanism::from_name(mechanism).filter(|m| auth.mechanisms.contains(m))
        else {
            self.reply(r(504, 5, 5, 4, "Unrecognized authentication type"))
                .await;
            return Flow::Continue;
        };
        let ip = self.peer.ip();
        if auth.fails.blocked(ip, std::time::Instant::now()) {
            info!(mech = %mech, stat = "fail rate", "AUTH refused: too many failures");
            self.reply(r(
                454,
                4,
                7,
                0,
                "Too many failed authentication attempts, try again later",
            ))
            .await;
            return Flow::Continue;
        }
        let initial = match initial {
            None => None,
            Some("=") => Some(Vec::new()),
            Some(b) => match B64.decode(b) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.reply(r(501, 5, 5, 2, "Invalid base64 data")).await;
                    return Flow::Continue;
                }
            },
        };
        let mut sasl = match &auth.dovecot {
            None => Sasl::Local(Box::new(Exchange::new(
                mech,
                Arc::clone(&auth),
                &self.shared.settings.hostname,
            ))),
            Some(path) => {
                match DovecotAuth::connect(path, self.shared.settings.module_timeout).await {
                    Ok(d) => Sasl::Dovecot(Box::new(d)),
                    Err(e) => {
                        warn!(error = %e, "AUTH unavailable");
                        self.reply(r(454, 4, 7, 0, "Temporary authentication failure"))
                            .await;
                        return Flow::Continue;
                    }
                }
            }
        };
        let info = ClientInfo {
            local: self.local,
            remote: self.peer,
            secured: self.io.is_tls(),
        };
        let mut step = sasl.start(mech, initial, &info).await;
        for _ in 0..MAX_SASL_ROUNDS {
            match step {
                Step::Challenge(c) => {
                    self.out.extend_from_slice(b"334 ");
                    self.out.extend_from_slice(B64.encode(c).as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                    let line = match self.sasl_line().await {
                        Ok(l) => l,
                        Err(flow) => return flow,
                    };
                    if line == b"*" {
                        info!(mech = %mech, "AUTH canceled by the client");
                        self.reply(r(501, 5, 0, 0, "Authentication canceled")).await;
                        return Flow::Continue;
                    }
                    step = match B64.decode(&line) {
                        Ok(d) => sasl.step(&d).await,
                        Err(_) => Step::Malformed("invalid base64"),
                    };
                }
                Step::Verify { user, password } => {
                    let a = Arc::clone(&auth);
                    let u = user.clone();
                    let ok =
                        tokio::task::spawn_blocking(move || a.db.verify_password(&u, &password))
                            .await
                            .unwrap_or(false);
                    step = if ok {
                        Step::Success(user)
                    } else {
                        Step::Fail("wrong password")
                    };
                }
                Step::Success(user) => {
                    self.auth_relay = auth.trusts(mech);
                    info!(auth = %user, mech = %mech, relay = self.auth_relay, "authenticated");
                    self.authed = Some((user, mech));
                    self.reply(r(235, 2, 7, 0, "Authentication successful"))
                        .await;
                    return Flow::Continue;
                }
                Step::Fail(why) => {
                    auth.fails.record(ip, std::time::Instant::now());
                    info!(mech = %mech, stat = why, "authentication failed");
                    self.reply(r(535, 5, 7, 8, "Authentication credentials invalid"))
                        .await;
                    return Flow::Continue;
                }
                Step::TempFail(why) => {
                    info!(mech = %mech, stat = why, "authentication unavailable");
                    self.reply(r(454, 4, 7, 0, "Temporary authentication failure"))
                        .await;
                    return Flow::Continue;
                }
                Step::Malformed(why) => {
                    auth.fails.record(ip, std::time::Instant::now());
                    info!(mech = %mech, stat = why, "authentication failed");
                    self.reply(r(
                        501,
                        5,
                        5,
                        2,
                        format!("Malformed authentication data: {why}"),
                    ))
                    .await;
                    return Flow::Continue;
                }
            }
        }
        self.reply(r(535, 5, 7, 8, "Authentication exchange too long"))
            .await;
        Flow::Continue
    }

    /// One response line of a SASL exchange (RFC 4954: at most 12288
    /// octets), without its line end and surrounding blanks.
    async fn sasl_line(&mut self) -> Result<Vec<u8>, Flow> {
        loop {
            let limit = self.rbuf.len().min(MAX_SASL_LINE + 2);
            if let Some(i) = self.rbuf[..limit].iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.rbuf.drain(..=i).collect();
                return Ok(line.trim_ascii().to_vec());
            }
            if self.rbuf.len() > MAX_SASL_LINE + 2 {
                let host = self.shared.settings.hostname.clone();
                info!(stat = "AUTH line too long", "closing session");
                r(
                    500,
                    5,
                    5,
                    6,
                    format!("{host} Authentication line too long, closing connection"),
                )
                .write_to(&mut self.out);
                return Err(Flow::Close);
            }
            if self.read_or_end().await == Flow::Close {
                return Err(Flow::Close);
            }
        }
    }

    // ---- HELO / EHLO --------------------------------------------------------

    async fn helo(&mut self, name: HeloName, esmtp: bool) -> Flow {
        if self.nop().await == Flow::Close {
            return Flow::Close;
        }
        let settings = Arc::clone(&self.shared);
        let settings = &settings.settings;
        if self.flags.strict_ehlo_checks {
            let ok = match &name {
                HeloName::Domain(d) => d.as_str().contains('.'),
                HeloName::Literal(ip) => *ip == self.peer.ip(),
                HeloName::Other(_) => false,
            };
            if !ok {
                info!(helo = %name, stat = "invalid EHLO argument", "EHLO refused");
                self.reply(r(501, 5, 5, 4, format!("Invalid host name {name}")))
                    .await;
                return Flow::Continue;
            }
        }
        // Seed 6.3.2: a client calling itself by our name ("identity
        // theft"), unless it is local or trusted by a quick verdict.
        let ours = match &name {
            HeloName::Domain(d) => d.as_str().eq_ignore_ascii_case(&settings.hostname),
            HeloName::Literal(ip) => *ip == self.local.ip(),
            HeloName::Other(_) => false,
        };
        let localhost = self.peer.ip() == std::net::IpAddr::from([127, 0, 0, 1])
            || self.peer.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        if ours && !localhost && !self.verdict.quick {
            info!(helo = %name, stat = "Identity Theft", "EHLO refused");
            self.reject(r(
                550,
                5,
                7,
                1,
                format!("{name} is my name; you are not me"),
            ))
            .await;
            return Flow::Continue;
        }
        if self.flags.check_ehlo && !self.verdict.quick {
            let req = SmarRequest::EhloCheck {
                helo: name.to_string(),
                client_ip: self.peer.ip(),
            };
            let refusal = match self.shared.smar.request(req, settings.wait_for_smar).await {
                Ok(SmarReply::Reject(rep)) => Some(from_peer(
                    &rep,
                    5,
                    r(550, 5, 7, 1, format!("{name} Access denied")),
                )),
                Ok(SmarReply::TempFail(rep)) => Some(from_peer(
                    &rep,
                    4,
                    r(450, 4, 7, 1, format!("{name} Try again later")),
                )),
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "smar unavailable for the EHLO check");
                    Some(r(451, 4, 3, 0, "EHLO check unavailable, try again later"))
                }
            };
            if let Some(reply) = refusal {
                info!(helo = %name, stat = %reply.text(), "EHLO refused");
                self.reject(reply).await;
                return Flow::Continue;
            }
        }
        if let Some(ta) = self.ta.take() {
            self.abort_transaction(ta, "EHLO").await;
        }
        self.syntax = settings.syntax_for(&name.to_string());
        self.esmtp = esmtp;
        let host = settings.hostname.clone();
        let reply = if esmtp {
            let mut lines = vec![format!("{host} Hello {name} [{}]", self.peer.ip())];
            lines.extend(self.ehlo_keywords());
            Reply::multi(250, None, lines)
        } else {
            Reply::new(
                250,
                None,
                format!("{host} Hello {name} [{}]", self.peer.ip()),
            )
        };
        self.helo = Some(name);
        self.reply(reply).await;
        Flow::Continue
    }

    fn ehlo_keywords(&self) -> Vec<String> {
        let s = &self.shared.settings;
        let f = &s.flags;
        let mut k = Vec::new();
        if f.pipelining {
            k.push("PIPELINING".to_string());
        }
        if self.starttls_offered() {
            k.push("STARTTLS".to_string());
        }
        if let Some(a) = self.auth_offered() {
            let names: Vec<&str> = a.mechanisms.iter().map(|m| m.name()).collect();
            k.push(format!("AUTH {}", names.join(" ")));
        }
        k.push(format!("SIZE {}", s.max_message_size));
        let flagged = [
            (f.eight_bit_mime, "8BITMIME"),
            (f.chunking, "CHUNKING"),
            (f.chunking, "BINARYMIME"),
            (f.enhancedstatuscodes, "ENHANCEDSTATUSCODES"),
            (f.smtputf8, "SMTPUTF8"),
            (f.dsn, "DSN"),
            (f.deliverby, "DELIVERBY"),
            (f.etrn, "ETRN"),
            (f.xverp, "XVERP"),
            (f.prdr, "PRDR"),
            (f.vrfy, "VRFY"),
        ];
        k.extend(
            flagged
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, kw)| kw.to_string()),
        );
        k.push("HELP".into());
        k
    }

    // ---- MAIL / RCPT --------------------------------------------------------

    /// The first parameter of MAIL that names an extension not offered.
    fn unoffered_mail_param(&self, p: &MailParams) -> Option<&'static str> {
        let f = &self.shared.settings.flags;
        let esmtp = self.esmtp;
        if p.size.is_some() && !esmtp {
            return Some("SIZE");
        }
        match p.body {
            Some(Body::EightBitMime) if !esmtp || !f.eight_bit_mime => return Some("BODY"),
            Some(Body::BinaryMime) if !esmtp || !f.chunking => return Some("BODY"),
            Some(Body::SevenBit) if !esmtp => return Some("BODY"),
            _ => {}
        }
        if p.smtputf8 && (!esmtp || !f.smtputf8) {
            return Some("SMTPUTF8");
        }
        if (p.ret.is_some() || p.envid.is_some()) && (!esmtp || !f.dsn) {
            return Some(if p.ret.is_some() { "RET" } else { "ENVID" });
        }
        if p.by.is_some() && (!esmtp || !f.deliverby) {
            return Some("BY");
        }
        if p.xverp.is_some() && (!esmtp || !f.xverp) {
            return Some("XVERP");
        }
        if p.auth.is_some() && !esmtp {
            return Some("AUTH");
        }
        if p.prdr && (!esmtp || !f.prdr) {
            return Some("PRDR");
        }
        None
    }

    async fn mail(&mut self, path: ReversePath, params: MailParams) -> Flow {
        let s = Arc::clone(&self.shared);
        let settings = &s.settings;
        if self.ta.is_some() {
            return self
                .bad_command(r(503, 5, 5, 1, "Nested MAIL command"))
                .await;
        }
        if self.helo.is_none() && self.flags.require_ehlo_before_mail {
            return self
                .bad_command(r(503, 5, 5, 1, "Send HELO or EHLO first"))
                .await;
        }
        if let Some(req) = &self.tls_req
            && let Err(why) = crate::tls::check_requirements(req, self.tls.as_ref())
        {
            return self.tls_violation(&path, &why).await;
        }
        if self.transactions >= settings.limits.transactions {
            return self.too_many("transactions").await;
        }
        if settings.auth.as_ref().is_some_and(|a| a.required) && self.authed.is_none() {
            info!(mail = %path, stat = "530", "sender refused: authentication required");
            self.reply(r(530, 5, 7, 0, "Authentication required")).await;
            return Flow::Continue;
        }
        let mut params = params;
        // RFC 4954 section 5: AUTH= is believed only from an
        // authenticated client; an authenticated client's submissions
        // carry its login name when it gave none.
        match &self.authed {
            None if params.auth.is_some() => params.auth = Some(AuthParam::Unknown),
            Some((user, _)) if params.auth.is_none() => {
                params.auth = Some(AuthParam::Mailbox(user.clone()));
            }
            _ => {}
        }
        if let Some(p) = self.unoffered_mail_param(&params) {
            return self
                .bad_command(r(555, 5, 5, 4, format!("{p} parameter not supported")))
                .await;
        }
        if let Some(size) = params.size
            && size > settings.max_message_size
        {
            info!(mail = %path, size, stat = "552", "sender refused: message too big");
            self.reply(r(
                552,
                5,
                3,
                4,
                "Message size exceeds fixed maximum message size",
            ))
            .await;
            return Flow::Continue;
        }
        if !path.is_ascii() && !params.smtputf8 {
            self.reply(r(553, 5, 6, 7, format!("{path} needs SMTPUTF8")))
                .await;
            return Flow::Continue;
        }
        let mut discard = self.verdict.discard;
        if settings.flags.access && !self.verdict.quick {
            let req = SmarRequest::MailCheck {
                sender: path_text(&path.to_string()),
                client_ip: self.peer.ip(),
            };
            match s.smar.request(req, settings.wait_for_smar).await {
                Ok(SmarReply::Accept { .. }) | Ok(SmarReply::Relay { .. }) => {}
                Ok(SmarReply::Discard) => discard = true,
                Ok(SmarReply::Reject(rep)) => {
                    let reply =
                        from_peer(&rep, 5, r(550, 5, 7, 1, format!("{path} Access denied")));
                    info!(mail = %path, stat = %reply.text(), "sender rejected");
                    self.reject(reply).await;
                    return Flow::Continue;
                }
                Ok(SmarReply::TempFail(rep)) => {
                    let reply =
                        from_peer(&rep, 4, r(451, 4, 3, 0, format!("{path} Try again later")));
                    info!(mail = %path, stat = %reply.text(), "sender deferred");
                    self.reply(reply).await;
                    return Flow::Continue;
                }
                other @ (Err(_) | Ok(SmarReply::SessionConf(_))) => {
                    warn!(error = %smar_failure(&other), "smar unavailable for the MAIL check");
                    self.reply(r(451, 4, 3, 0, "Sender check unavailable, try again later"))
                        .await;
                    return Flow::Continue;
                }
            }
        }
        let id = match s.ids.next_transaction(settings.id) {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, "no transaction id");
                self.reply(r(451, 4, 3, 0, "Local error, try again later"))
                    .await;
                return Flow::Continue;
            }
        };
        info!(ss_ta = %id, mail = %path, stat = 0, "sender accepted");
        self.reply(r(250, 2, 1, 0, format!("{path} Sender ok")))
            .await;
        self.transactions += 1;
        self.bad_ta = 0;
        self.invalid_ta = 0;
        self.nops_in_ta = 0;
        self.ta = Some(Transaction {
            id,
            sender: path,
            params,
            rcpts: Vec::new(),
            discard,
            bdat: None,
        });
        Flow::Continue
    }

    async fn rcpt(&mut self, path: ForwardPath, params: RcptParams) -> Flow {
        let s = Arc::clone(&self.shared);
        let settings = &s.settings;
        let Some(ta) = self.ta.as_ref() else {
            return self
                .bad_command(r(503, 5, 5, 1, "Need MAIL before RCPT"))
                .await;
        };
        if ta.bdat.is_some() {
            return self.bad_command(r(503, 5, 5, 1, "RCPT after BDAT")).await;
        }
        let ta_id = ta.id;
        let n = ta.rcpts.len() as u32;
        let null_sender = matches!(ta.sender, ReversePath::Null);
        let sender = path_text(&ta.sender.to_string());
        let utf8 = ta.params.smtputf8;
        if (params.notify.is_some() || params.orcpt.is_some())
            && (!self.esmtp || !settings.flags.dsn)
        {
            return self
                .bad_command(r(555, 5, 5, 4, "NOTIFY and ORCPT parameters not supported"))
                .await;
        }
        if n >= settings.limits.recipients_per_transaction {
            self.reply(r(452, 4, 5, 3, "Too many recipients")).await;
            return Flow::Continue;
        }
        if self.rcpts_session >= settings.limits.recipients_per_session {
            self.reply(r(452, 4, 5, 3, "Too many recipients in this session"))
                .await;
            return Flow::Continue;
        }
        if null_sender && n >= settings.limits.error_recipients {
            self.reject(r(
                550,
                5,
                7,
                1,
                format!("{path} Too many recipients for a message from <>"),
            ))
            .await;
            return Flow::Continue;
        }
        if !path.is_ascii() && !utf8 {
            self.reply(r(553, 5, 6, 7, format!("{path} needs SMTPUTF8 in MAIL")))
                .await;
            return Flow::Continue;
        }
        let mut discard = false;
        if !self.verdict.quick {
            let req = SmarRequest::RcptCheckInSession {
                rcpt: path_text(&path.to_string()),
                sender,
                client_ip: self.peer.ip(),
                session: self.verdict.connect.clone(),
                relay_allowed: self.auth_relay || self.tls_relay,
            };
            match s.smar.request(req, settings.wait_for_smar).await {
                Ok(SmarReply::Accept { .. }) | Ok(SmarReply::Relay { .. }) => {}
                Ok(SmarReply::Discard) => discard = true,
                Ok(SmarReply::Reject(rep)) => {
                    let reply =
                        from_peer(&rep, 5, r(550, 5, 7, 1, format!("{path} Access denied")));
                    info!(ss_ta = %ta_id, rcpt = %path, stat = %reply.text(), "recipient rejected");
                    return self.invalid_address(reply).await;
                }
                Ok(SmarReply::TempFail(rep)) => {
                    let reply =
                        from_peer(&rep, 4, r(450, 4, 3, 0, format!("{path} Try again later")));
                    info!(ss_ta = %ta_id, rcpt = %path, stat = %reply.text(), "recipient deferred");
                    self.reply(reply).await;
                    return Flow::Continue;
                }
                other @ (Err(_) | Ok(SmarReply::SessionConf(_))) => {
                    warn!(error = %smar_failure(&other), "smar unavailable for the RCPT check");
                    self.reply(r(
                        451,
                        4,
                        3,
                        0,
                        "Recipient check unavailable, try again later",
                    ))
                    .await;
                    return Flow::Continue;
                }
            }
        }
        let Some(ta) = self.ta.as_mut() else {
            return Flow::Continue;
        };
        if discard {
            ta.discard = true;
        }
        if ta.rcpts.iter().any(|(p, _)| *p == path) {
            self.reply(r(250, 2, 1, 5, format!("{path} Recipient ok (duplicate)")))
                .await;
            return Flow::Continue;
        }
        info!(ss_ta = %ta_id, rcpt = %path, idx = n, stat = 0, "recipient accepted");
        ta.rcpts.push((path.clone(), params));
        self.rcpts_session += 1;
        self.reply(r(250, 2, 1, 5, format!("{path} Recipient ok")))
            .await;
        Flow::Continue
    }

    async fn etrn(&mut self, node: String) -> Flow {
        if self.nop().await == Flow::Close {
            return Flow::Close;
        }
        if !self.shared.settings.flags.etrn || !self.esmtp {
            self.reply(r(502, 5, 5, 1, "ETRN not available")).await;
            return Flow::Continue;
        }
        if self.ta.is_some() {
            return self
                .bad_command(r(503, 5, 5, 1, "ETRN not allowed in a transaction"))
                .await;
        }
        let req = SmtpsRequest::Etrn {
            session: ipc_sess(self.id),
            node: node.clone(),
        };
        let reply = match self
            .shared
            .qmgr
            .request(req, self.shared.settings.module_timeout)
            .await
        {
            Ok(QmgrReply::Done) => r(250, 2, 0, 0, format!("Queuing for node {node} started")),
            Ok(QmgrReply::TempFail(rep)) | Ok(QmgrReply::PermFail(rep)) => from_peer(
                &rep,
                4,
                r(
                    458,
                    4,
                    0,
                    0,
                    format!("Unable to queue messages for node {node}"),
                ),
            ),
            _ => r(
                458,
                4,
                0,
                0,
                format!("Unable to queue messages for node {node}"),
            ),
        };
        info!(etrn = %node, stat = %reply.code, "ETRN");
        self.reply(reply).await;
        Flow::Continue
    }

    // ---- content --------------------------------------------------------------

    /// Starts the content with our Received: field. The CDB file itself is
    /// created when the content is first written ([`ContentFile`]).
    async fn open_content(&self, ta: &Transaction) -> Result<Content, String> {
        let writer = ContentFile::NotCreated(Arc::clone(&self.shared.cdb), ta.id);
        let helo = self.helo.as_ref().map(|h| h.to_string());
        let tls_part = self.tls.as_ref().map(TlsInfo::received_part);
        let header = received(&ReceivedInfo {
            helo: helo.as_deref(),
            client_name: None,
            client_ip: self.peer.ip(),
            hostname: &self.shared.settings.hostname,
            esmtp: self.esmtp,
            utf8: ta.params.smtputf8,
            tls: tls_part.as_deref(),
            auth: self.authed.is_some(),
            id: &ta.id.to_string(),
            time: now_secs(),
        });
        let mut buf = Vec::with_capacity(WRITE_BATCH + READ_CHUNK);
        buf.extend_from_slice(header.as_bytes());
        Ok(Content {
            writer: Some(writer),
            buf,
            scanner: HeaderScanner::new(),
            size: 0,
            error: None,
        })
    }

    async fn data(&mut self) -> Flow {
        let Some(ta) = self.ta.as_ref() else {
            return self.bad_command(r(503, 5, 5, 1, "Need MAIL command")).await;
        };
        if ta.bdat.is_some() {
            return self.bad_command(r(503, 5, 5, 1, "DATA after BDAT")).await;
        }
        if ta.rcpts.is_empty() {
            return self
                .bad_command(r(554, 5, 5, 1, "No valid recipients"))
                .await;
        }
        if ta.params.body == Some(Body::BinaryMime) {
            return self
                .bad_command(r(503, 5, 5, 1, "BODY=BINARYMIME requires BDAT, not DATA"))
                .await;
        }
        let mut content = match self.open_content(ta).await {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "cannot create the content file");
                None
            }
        };
        if content.is_none() {
            self.reply(r(
                451,
                4,
                3,
                0,
                "Local error in processing, try again later",
            ))
            .await;
            if let Some(ta) = self.ta.take() {
                self.abort_transaction(ta, "no content file").await;
            }
            return Flow::Continue;
        }
        // 354 has no enhanced code (RFC 2034 applies to 2xx/4xx/5xx).
        Reply::new(354, None, "Enter mail, end with \".\" on a line by itself")
            .write_to(&mut self.out);
        let mut decoder = DataDecoder::new(DataOptions {
            max_size: Some(self.shared.settings.max_message_size),
            max_line: None,
            bare_line_ends: BareLineEnds::Reject,
        });
        let mut piece = Vec::with_capacity(READ_CHUNK);
        let result = loop {
            if !self.rbuf.is_empty() {
                piece.clear();
                let progress = decoder.decode(&self.rbuf, &mut piece);
                let used = match progress {
                    DataProgress::Incomplete => self.rbuf.len(),
                    DataProgress::Done { consumed, .. } => consumed,
                };
                self.rbuf.drain(..used);
                if let Some(c) = content.as_mut() {
                    feed(c, &piece).await;
                }
                if let DataProgress::Done { result, .. } = progress {
                    break Some(result);
                }
            }
            match self.read_more().await {
                Ok(_) => {}
                Err(ReadEnd::Timeout) => {
                    let host = self.shared.settings.hostname.clone();
                    r(
                        421,
                        4,
                        4,
                        2,
                        format!("{host} Timeout during data transfer, closing"),
                    )
                    .write_to(&mut self.out);
                    break None;
                }
                Err(_) => break None,
            }
        };
        let Some(result) = result else {
            info!(stat = "connection lost during DATA", "message not received");
            if let Some(c) = content {
                discard_content(c).await;
            }
            return Flow::Close;
        };
        let Some(c) = content else {
            return Flow::Continue;
        };
        match result {
            Ok(_) => self.finish_message(c).await,
            Err(e) => {
                discard_content(c).await;
                info!(stat = %e, "message refused");
                if let Some(ta) = self.ta.take() {
                    self.abort_transaction(ta, "message refused").await;
                }
                self.reply(e.reply()).await;
                Flow::Continue
            }
        }
    }

    async fn bdat(&mut self, size: u64, last: bool) -> Flow {
        let max = self.shared.settings.max_message_size;
        // Where the chunk goes: a transaction's content, or nowhere (but it
        // is read all the same, to stay in step with the client).
        let mut refusal: Option<Reply> = None;
        if !self.shared.settings.flags.chunking || !self.esmtp {
            refusal = Some(r(502, 5, 5, 1, "BDAT not available"));
        }
        if refusal.is_none() {
            match self.ta.as_ref() {
                None => refusal = Some(r(503, 5, 5, 1, "Need MAIL command")),
                Some(ta) if ta.rcpts.is_empty() => {
                    refusal = Some(r(554, 5, 5, 1, "No valid recipients"))
                }
                Some(_) => {}
            }
        }
        if refusal.is_none()
            && let Some(ta) = self.ta.as_ref()
            && ta.bdat.is_none()
        {
            let state = match self.open_content(ta).await {
                Ok(c) => BdatState {
                    content: Some(c),
                    failed: None,
                    bare: BareCheck::default(),
                },
                Err(e) => {
                    warn!(error = %e, "cannot create the content file");
                    BdatState {
                        content: None,
                        failed: Some(r(
                            451,
                            4,
                            3,
                            0,
                            "Local error in processing, try again later",
                        )),
                        bare: BareCheck::default(),
                    }
                }
            };
            if let Some(ta) = self.ta.as_mut() {
                ta.bdat = Some(state);
            }
        }
        let binary = self
            .ta
            .as_ref()
            .is_some_and(|t| t.params.body == Some(Body::BinaryMime));
        let mut chunk = BdatChunk::new(size);
        loop {
            if !self.rbuf.is_empty() {
                let progress = chunk.take(&self.rbuf);
                let (data, complete) = match progress {
                    BdatProgress::Incomplete(d) => (d, false),
                    BdatProgress::Complete(d) => (d, true),
                };
                let data = data.to_vec();
                self.rbuf.drain(..data.len());
                if refusal.is_none()
                    && let Some(st) = self.ta.as_mut().and_then(|t| t.bdat.as_mut())
                    && st.failed.is_none()
                    && let Some(c) = st.content.as_mut()
                {
                    if c.size + data.len() as u64 > max {
                        st.failed = Some(r(
                            552,
                            5,
                            3,
                            4,
                            "Message size exceeds fixed maximum message size",
                        ));
                    } else {
                        if !binary {
                            st.bare.feed(&data);
                        }
                        feed(c, &data).await;
                    }
                }
                if complete {
                    break;
                }
            }
            if chunk.is_complete() {
                break;
            }
            match self.read_more().await {
                Ok(_) => {}
                Err(ReadEnd::Timeout) => {
                    let host = self.shared.settings.hostname.clone();
                    r(
                        421,
                        4,
                        4,
                        2,
                        format!("{host} Timeout during data transfer, closing"),
                    )
                    .write_to(&mut self.out);
                    return Flow::Close;
                }
                Err(_) => return Flow::Close,
            }
        }
        if let Some(reply) = refusal {
            return self.bad_command(reply).await;
        }
        let failed = self
            .ta
            .as_ref()
            .and_then(|t| t.bdat.as_ref())
            .and_then(|b| b.failed.clone());
        if let Some(reply) = failed {
            // RFC 3030 4.2: a failed chunk fails the transaction.
            if let Some(ta) = self.ta.take() {
                self.abort_transaction(ta, "BDAT failed").await;
            }
            info!(stat = %reply.text(), "message refused");
            self.reply(reply).await;
            return Flow::Continue;
        }
        if !last {
            self.reply(r(250, 2, 0, 0, format!("{size} octets received")))
                .await;
            return Flow::Continue;
        }
        let Some(mut st) = self.ta.as_mut().and_then(|t| t.bdat.take()) else {
            return Flow::Continue;
        };
        let Some(c) = st.content.take() else {
            return Flow::Continue;
        };
        if st.bare.found() {
            discard_content(c).await;
            if let Some(ta) = self.ta.take() {
                self.abort_transaction(ta, "bare line end").await;
            }
            info!(stat = "bare CR or LF", "message refused");
            self.reply(r(
                554,
                5,
                6,
                0,
                "Message contains bare CR or LF, which RFC 5321 2.3.8 does not allow",
            ))
            .await;
            return Flow::Continue;
        }
        self.finish_message(c).await
    }

    /// The end of the content: hop check, CDB commit, qmgr commit, reply.
    async fn finish_message(&mut self, mut c: Content) -> Flow {
        let Some(ta) = self.ta.take() else {
            discard_content(c).await;
            return Flow::Continue;
        };
        let limits = self.shared.settings.limits;
        let hops = c.scanner.received();
        let msgid = c.scanner.message_id().unwrap_or_default();
        let size = c.size;
        if hops > limits.hops {
            discard_content(c).await;
            info!(ss_ta = %ta.id, hops, stat = "too many hops", "message refused");
            self.reply(r(
                554,
                5,
                4,
                6,
                format!(
                    "Too many hops ({hops}, maximum {}): mail loop?",
                    limits.hops
                ),
            ))
            .await;
            self.end_transaction();
            return Flow::Continue;
        }
        if ta.discard {
            discard_content(c).await;
            info!(ss_ta = %ta.id, msgid = %msgid, size, stat = 0, "message discarded by policy");
            self.reply(r(
                250,
                2,
                0,
                0,
                format!("{} Message accepted for delivery", ta.id),
            ))
            .await;
            self.end_transaction();
            return Flow::Continue;
        }
        // Write what is buffered and close the file (made durable by qmgr).
        let committed = match c.writer.take() {
            Some(file) if c.error.is_none() => {
                let buf = std::mem::take(&mut c.buf);
                // Written, not synced: qmgr's envelope commit makes it
                // durable before it answers (smx_store::cdb, "Durability
                // through the group commit").
                tokio::task::spawn_blocking(move || {
                    let mut w = file.open()?;
                    w.write(&buf)?;
                    w.finish()
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Some(file) => {
                let _ = tokio::task::spawn_blocking(move || file.abort()).await;
                Err(c.error.clone().unwrap_or_default())
            }
            None => Err(c.error.clone().unwrap_or_else(|| "no content file".into())),
        };
        if let Err(e) = committed {
            warn!(ss_ta = %ta.id, error = %e, "content not stored");
            self.reply(r(
                451,
                4,
                3,
                0,
                "Local error in processing, try again later",
            ))
            .await;
            self.end_transaction();
            return Flow::Continue;
        }
        let envelope = Envelope {
            session: ipc_sess(self.id),
            id: ipc_ta(ta.id),
            sender: path_text(&ta.sender.to_string()),
            params: ta.params.to_string(),
            size,
            arrival_us: now_us(),
            recipients: ta
                .rcpts
                .iter()
                .enumerate()
                .map(|(i, (p, params))| EnvelopeRecipient {
                    index: i as u32,
                    address: path_text(&p.to_string()),
                    params: params.to_string(),
                })
                .collect(),
        };
        let timeout = self.shared.settings.module_timeout;
        let reply = match self
            .shared
            .qmgr
            .request(SmtpsRequest::Commit(envelope), timeout)
            .await
        {
            Ok(QmgrReply::Committed) => {
                info!(ss_ta = %ta.id, msgid = %msgid, size, stat = 0, "message accepted");
                if ta.params.prdr {
                    // PRDR: 353, one reply per recipient in RCPT order,
                    // then the reply for the message. Every recipient
                    // shares the queue's verdict.
                    Reply::new(353, None, "Content analysis has started").write_to(&mut self.out);
                    for (p, _) in &ta.rcpts {
                        r(250, 2, 1, 5, format!("{p} Message accepted for delivery"))
                            .write_to(&mut self.out);
                    }
                }
                r(
                    250,
                    2,
                    0,
                    0,
                    format!("{} Message accepted for delivery", ta.id),
                )
            }
            Ok(QmgrReply::TempFail(rep)) => {
                self.remove_content(ta.id).await;
                let reply = from_peer(&rep, 4, r(451, 4, 3, 0, "Try again later"));
                info!(ss_ta = %ta.id, stat = %reply.text(), "message deferred by qmgr");
                reply
            }
            Ok(QmgrReply::PermFail(rep)) => {
                self.remove_content(ta.id).await;
                let reply = from_peer(&rep, 5, r(554, 5, 3, 0, "Message refused"));
                info!(ss_ta = %ta.id, stat = %reply.text(), "message refused by qmgr");
                reply
            }
            other => {
                // The envelope may or may not be durable: keep the content
                // for qmgr's recovery and tell qmgr to forget it if it can.
                warn!(ss_ta = %ta.id, reply = ?other.as_ref().ok(), error = ?other.as_ref().err(), "qmgr commit failed");
                let abort = SmtpsRequest::Abort {
                    session: ipc_sess(self.id),
                    transaction: ipc_ta(ta.id),
                };
                let _ = self.shared.qmgr.request(abort, timeout).await;
                r(
                    451,
                    4,
                    3,
                    0,
                    "Queue temporarily unavailable, try again later",
                )
            }
        };
        self.reply(reply).await;
        self.end_transaction();
        Flow::Continue
    }

    fn end_transaction(&mut self) {
        self.ta = None;
        self.nops_between = 0;
    }

    async fn remove_content(&self, id: TransactionId) {
        let cdb = Arc::clone(&self.shared.cdb);
        match tokio::task::spawn_blocking(move || cdb.remove(id)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(ss_ta = %id, error = %e, "content file not removed"),
            Err(e) => warn!(ss_ta = %id, error = %e, "content file not removed"),
        }
    }

    /// Drops a transaction that did not complete.
    async fn abort_transaction(&mut self, mut ta: Transaction, why: &str) {
        if let Some(c) = ta.bdat.as_mut().and_then(|b| b.content.take()) {
            discard_content(c).await;
        }
        tracing::debug!(ss_ta = %ta.id, why, "transaction aborted");
        self.nops_between = 0;
    }
}

/// Feeds decoded content: header scan, buffer, and a write to the CDB file
/// whenever the buffer is full.
async fn feed(c: &mut Content, data: &[u8]) {
    c.scanner.feed(data);
    c.size += data.len() as u64;
    if c.error.is_some() {
        return;
    }
    c.buf.extend_from_slice(data);
    if c.buf.len() >= WRITE_BATCH
        && let Some(file) = c.writer.take()
    {
        let buf = std::mem::replace(&mut c.buf, Vec::with_capacity(WRITE_BATCH + READ_CHUNK));
        let written = tokio::task::spawn_blocking(move || match file.open() {
            Ok(mut w) => (w.write(&buf).map_err(|e| e.to_string()), Some(w)),
            Err(e) => (Err(e.to_string()), None),
        })
        .await;
        match written {
            Ok((result, w)) => {
                c.writer = w.map(ContentFile::Open);
                if let Err(e) = result {
                    c.error = Some(e);
                }
            }
            Err(e) => c.error = Some(e.to_string()),
        }
    }
}

/// Removes a content file that will not be committed.
async fn discard_content(mut c: Content) {
    match c.writer.take() {
        Some(file @ ContentFile::Open(_)) => {
            let _ = tokio::task::spawn_blocking(move || file.abort()).await;
        }
        Some(ContentFile::NotCreated(..)) | None => {}
    }
}

/// A path as the envelope stores it: without angle brackets.
fn path_text(p: &str) -> String {
    p.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(p)
        .to_string()
}

/// soft_bounce: a 5xx reply as 4xx.
fn soften(reply: &Reply) -> Reply {
    let enhanced = reply
        .enhanced
        .map(|e| EnhancedCode::new(4, e.subject(), e.detail()));
    Reply::new(reply.code - 100, enhanced, reply.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_check() {
        let check = |parts: &[&[u8]]| {
            let mut b = BareCheck::default();
            for p in parts {
                b.feed(p);
            }
            b.found()
        };
        assert!(!check(&[b"a\r\nb\r\n"]));
        assert!(!check(&[b"a\r", b"\nb"]));
        assert!(check(&[b"a\nb"]));
        assert!(check(&[b"a\rb"]));
        assert!(check(&[b"a\r", b"\r\n"]));
        assert!(check(&[b"a\r"]));
    }

    #[test]
    fn paths() {
        assert_eq!(path_text("<a@b>"), "a@b");
        assert_eq!(path_text("<>"), "");
    }

    #[test]
    fn soft() {
        let s = soften(&r(550, 5, 7, 1, "no"));
        assert_eq!(s.code, 450);
        assert_eq!(s.enhanced.map(|e| e.class()), Some(4));
    }

    #[test]
    fn peer_replies_cannot_change_class() {
        let rep = SmtpReply {
            code: 250,
            enhanced: None,
            text: "ok".into(),
        };
        assert_eq!(from_peer(&rep, 5, r(550, 5, 7, 1, "x")).code, 550);
        let rep = SmtpReply {
            code: 553,
            enhanced: Some(smx_ipc::types::EnhancedCode {
                class: 5,
                subject: 1,
                detail: 8,
            }),
            text: "bad sender".into(),
        };
        let got = from_peer(&rep, 5, r(550, 5, 7, 1, "x"));
        assert_eq!((got.code, got.text()), (553, "bad sender".to_string()));
    }
}
