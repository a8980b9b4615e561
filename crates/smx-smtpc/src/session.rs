//! An SMTP or LMTP session with one peer, and the transactions sent over it.
//!
//! # Opening
//!
//! [`Session::open`] connects (TCP or Unix socket), reads the greeting,
//! and says EHLO (LHLO for LMTP). An EHLO refused with 5xx is retried as
//! HELO (RFC 5321 4.1.4: a server without extensions); LMTP has no
//! fallback. A greeting or EHLO reply whose first word is our own host name
//! is a mail loop (seed 8.6 `talk_to_myself`): the session is closed and
//! the target fails with 451 4.4.6, unless `talk_to_myself` is set. LMTP
//! peers are exempt: LMTP is final delivery (our own lda greets with our
//! name), so it cannot loop back into the relay path. The
//! EHLO keywords understood are PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN,
//! CHUNKING, BINARYMIME, ENHANCEDSTATUSCODES and STARTTLS.
//!
//! # STARTTLS
//!
//! On TCP, when the peer offers STARTTLS and TLS is configured (it is by
//! default from the configuration), the session sends STARTTLS after
//! EHLO, takes the connection's boxed stream ([`Conn::take_stream`]),
//! runs the handshake within the command timeout, and says EHLO again
//! over TLS (RFC 3207 4.2: the capabilities before TLS are forgotten).
//! A failed handshake makes [`Session::open`] connect to the same host
//! again without STARTTLS, unless the TLS requirements given to it ask
//! for anything; unmet requirements fail the target as their
//! `requirements_violation` says ([`violation_failure`]). See
//! [`crate::tls`]. Log lines: `where=connection, starttls=successful`
//! with `version, cipher, bits, verified, cn`; `starttls=failed: REASON,
//! action=retry without STARTTLS`; `starttls=refused: REPLY`;
//! `tls_requirements=WHY`.
//!
//! # A transaction
//!
//! Before MAIL the message is checked against the peer
//! ([`Session::transaction`]): larger than the peer's SIZE → every
//! recipient fails with 552 5.3.4 without sending; SMTPUTF8 needed (the
//! parameter, or a non-ASCII address) but not offered → 554 5.6.7 (RFC
//! 6531 3.2); BODY=BINARYMIME without BINARYMIME and CHUNKING → 554 5.6.3.
//! BODY=8BITMIME goes to a peer without 8BITMIME without the parameter
//! (content is never converted). SIZE= carries the content size when SIZE
//! is offered. RET/ENVID and NOTIFY/ORCPT are passed on only when DSN is
//! offered; a recipient delivered to an SMTP peer without DSN is marked
//! `relayed` (RFC 3461 4.1), for qmgr's "relayed" DSN. AUTH=, BY and XVERP
//! are not passed on.
//!
//! With PIPELINING (always in LMTP) MAIL, every RCPT and DATA go out in
//! one write and the replies are read in order (RFC 2920); without it,
//! each command waits for its reply. With CHUNKING the content is sent as
//! `BDAT n` chunks after the RCPT replies, the last as `BDAT n LAST`, each
//! chunk's reply read before the next one is sent; otherwise as DATA,
//! dot-stuffed on the way out. LMTP reads one reply per accepted recipient
//! after the end of the data (RFC 2033 4.2), SMTP one for all.
//!
//! # Failures
//!
//! | what | recipients | next target |
//! | --- | --- | --- |
//! | connect, greeting, EHLO fails (timeout, 4xx/5xx, I/O, loop) | all temporary (a 5xx greeting means "try another host", RFC 5321 3.1), with the peer's reply or a made-up 451 4.4.x | yes |
//! | MAIL 4xx | all temporary | yes |
//! | MAIL 5xx | all permanent | no |
//! | RCPT 4xx/5xx | that recipient | no |
//! | DATA/BDAT refused | the accepted ones | no |
//! | connection lost or garbled reply before the end of the data | the undecided ones, 451 4.4.2 | yes |
//! | connection lost after the end of the data, before its reply | the undecided ones, 451 4.4.2 (the peer may have the message) | no |
//!
//! A garbled reply is a broken session ([`ReplyError`](smx_proto::ReplyError)
//! class: temporary).
//!
//! # Log lines (seed 10.3)
//!
//! `da_sess=…, status=connected, port=…, addr=…`; per command
//! `da_sess, da_ta, ss_ta, mail=<…>|rcpt=<…>, stat, reply`; the end of
//! data `where=final_dot, size, stat, reply`. `stat` is 0 for success and
//! the reply code otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use smx_ipc::qmgr_smtpc::{DaTransactionId, RecipientStatus, RequirementsViolation};
use smx_proto::{Body, DataEncoder, EnhancedCode, MailParams, RcptParams, Reply};
use smx_store::cdb::Cdb;
use smx_store::id::DaSessionId;
use tokio::net::{TcpStream, UnixStream};

use crate::config::ClientConfig;
use crate::conn::{Conn, ConnError};
use crate::content::Content;
use crate::tls::{TlsInfo, TlsRequirements};

/// Where a session goes; the key of the idle session cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP to this address; `lmtp` selects the protocol.
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// LMTP instead of SMTP.
        lmtp: bool,
    },
    /// LMTP over this Unix socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// Whether the protocol is LMTP.
    pub fn is_lmtp(&self) -> bool {
        match self {
            Endpoint::Tcp { lmtp, .. } => *lmtp,
            Endpoint::Unix(_) => true,
        }
    }
}

/// What the peer offered in its EHLO/LHLO reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// EHLO/LHLO succeeded (not HELO).
    pub esmtp: bool,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870): `Some(0)` without a limit.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eightbitmime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// BINARYMIME (RFC 3030).
    pub binarymime: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
}

impl Capabilities {
    /// Parses the lines of an EHLO reply (the first is the greeting).
    pub fn parse(lines: &[String]) -> Self {
        let mut c = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => {
                    c.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0));
                }
                "8BITMIME" => c.eightbitmime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "DSN" => c.dsn = true,
                "CHUNKING" => c.chunking = true,
                "BINARYMIME" => c.binarymime = true,
                "ENHANCEDSTATUSCODES" => c.enhanced = true,
                "STARTTLS" => c.starttls = true,
                _ => {}
            }
        }
        c
    }
}

/// A failure of a whole attempt at a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reply (the peer's, or made up).
    pub reply: Reply,
    /// Whether the peer gave the reply.
    pub from_peer: bool,
    /// The TLS requirements were not met, and this is what the
    /// configuration says to do about it.
    pub tls_violation: Option<RequirementsViolation>,
}

/// The outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Delivered or failed.
    pub status: RecipientStatus,
    /// The deciding reply.
    pub reply: Reply,
    /// The peer that gave it, `None` if made up without a peer.
    pub host: Option<String>,
    /// Delivered to an SMTP peer without DSN.
    pub relayed: bool,
}

/// A recipient ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRcpt {
    /// Position in the request.
    pub slot: usize,
    /// The forward path, without angle brackets.
    pub address: String,
    /// Its parameters.
    pub params: RcptParams,
}

/// A transaction ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    /// The delivery transaction.
    pub da_ta: DaTransactionId,
    /// The content id.
    pub ss_ta: smx_store::id::TransactionId,
    /// The content size.
    pub size: u64,
    /// The reverse path, without angle brackets.
    pub sender: String,
    /// MAIL parameters.
    pub mail: MailParams,
    /// The recipients.
    pub rcpts: Vec<TxRcpt>,
    /// SMTPUTF8 needed.
    pub utf8: bool,
}

/// What a transaction left behind.
#[derive(Debug)]
pub struct TxOutcome {
    /// A verdict per recipient slot sent (`TxRcpt::slot`).
    pub verdicts: Vec<(usize, Verdict)>,
    /// The session is in a clean state for another transaction.
    pub reusable: bool,
    /// Nothing was delivered and another target may do better.
    pub next_target: bool,
    /// The session (from the cache) was dead before the first reply;
    /// nothing happened, reconnect.
    pub stale: bool,
    /// QUIT was already sent.
    pub quit_sent: bool,
}

impl TxOutcome {
    /// Fails every recipient in `slots` temporarily with `reply` (a
    /// connection or content failure: nothing was decided by the peer).
    fn temp_fail_all(
        &mut self,
        slots: impl IntoIterator<Item = usize>,
        reply: &Reply,
        host: Option<String>,
    ) {
        for slot in slots {
            self.verdicts.push((
                slot,
                Verdict {
                    status: RecipientStatus::TempFail,
                    reply: reply.clone(),
                    host: host.clone(),
                    relayed: false,
                },
            ));
        }
    }
}

static SESSION_COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_session_id(process: u8) -> DaSessionId {
    if SESSION_COUNTER.load(Ordering::Relaxed) == 0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        let _ =
            SESSION_COUNTER.compare_exchange(0, now << 32, Ordering::Relaxed, Ordering::Relaxed);
    }
    DaSessionId::from_value(process, SESSION_COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A made-up reply.
pub fn local_reply(code: u16, subject: u16, detail: u16, text: impl Into<String>) -> Reply {
    let class = u8::try_from(code / 100).unwrap_or(4);
    let enhanced = EnhancedCode::checked(class, subject, detail);
    Reply::new(code, enhanced, text)
}

/// The reply on one line, for logs.
pub fn reply_line(r: &Reply) -> String {
    match r.enhanced {
        Some(e) => format!("{} {} {}", r.code, e, r.text()),
        None => format!("{} {}", r.code, r.text()),
    }
}

fn stat(r: &Reply) -> u16 {
    if r.is_positive() { 0 } else { r.code }
}

fn status_of(r: &Reply) -> RecipientStatus {
    if r.is_positive() {
        RecipientStatus::Delivered
    } else if r.code / 100 == 5 {
        RecipientStatus::PermFail
    } else {
        RecipientStatus::TempFail
    }
}

fn conn_failure(e: &ConnError, host: &str) -> Reply {
    match e {
        ConnError::Timeout(..) => local_reply(451, 4, 4, format!("{host}: {e}")),
        ConnError::Garbled(..) => local_reply(451, 4, 5, format!("{host}: {e}")),
        ConnError::Closed(_) | ConnError::Io(..) => local_reply(451, 4, 2, format!("{host}: {e}")),
    }
}

/// The failure of a session that does not meet `req` (see [`crate::tls`]):
/// `permfail` 550 5.7.5, `tempfail` 451 4.7.5, `abort` 421 4.7.5.
pub fn violation_failure(req: &TlsRequirements, why: &str) -> Failure {
    let v = req.on_violation();
    let code = match v {
        RequirementsViolation::PermFail => 550,
        RequirementsViolation::TempFail => 451,
        RequirementsViolation::Abort => 421,
    };
    Failure {
        reply: local_reply(code, 7, 5, format!("TLS requirements not met: {why}")),
        from_peer: false,
        tls_violation: Some(v),
    }
}

/// Why greeting failed.
enum GreetError {
    /// The session is over; the target failed.
    Failed(Failure),
    /// The TLS handshake failed: try the host again without STARTTLS.
    ClearRetry(String),
}

/// Why opening failed.
enum OpenError {
    Failed(Failure),
    ClearRetry,
}

/// An open session; see the module doc.
#[derive(Debug)]
pub struct Session {
    conn: Conn,
    /// Where it goes.
    pub endpoint: Endpoint,
    /// The peer as reported in results.
    pub host: String,
    /// What the peer offered.
    pub caps: Capabilities,
    /// The session id (`da_sess`).
    pub id: DaSessionId,
    /// Transactions sent so far.
    pub transactions: u32,
    /// The last transaction did not end cleanly: RSET before the next.
    pub dirty: bool,
    /// When it last went idle.
    pub idle_since: Instant,
    /// TLS facts when STARTTLS succeeded.
    pub tls: Option<TlsInfo>,
}

impl Session {
    /// Whether the peer said it is closing the session (a 421 reply): it
    /// must not be used again.
    pub fn is_closing(&self) -> bool {
        self.conn.saw_421()
    }
}

impl Session {
    /// Connects to `endpoint`, greets and starts TLS when offered; see
    /// the module doc. A failed TLS handshake is followed by a second
    /// connection without STARTTLS (unless `req` requires anything: then
    /// the failure carries its [`RequirementsViolation`]).
    pub async fn open(
        endpoint: Endpoint,
        host: String,
        cfg: &ClientConfig,
        req: &TlsRequirements,
    ) -> Result<Session, Failure> {
        match Session::open_with(endpoint.clone(), host.clone(), cfg, req, true).await {
            Ok(s) => Ok(s),
            Err(OpenError::Failed(f)) => Err(f),
            Err(OpenError::ClearRetry) => {
                match Session::open_with(endpoint, host, cfg, req, false).await {
                    Ok(s) => Ok(s),
                    Err(OpenError::Failed(f)) => Err(f),
                    Err(OpenError::ClearRetry) => Err(Failure {
                        reply: local_reply(451, 7, 5, "TLS failed"),
                        from_peer: false,
                        tls_violation: None,
                    }),
                }
            }
        }
    }

    /// Connects and greets, with STARTTLS when `try_tls`.
    async fn open_with(
        endpoint: Endpoint,
        host: String,
        cfg: &ClientConfig,
        req: &TlsRequirements,
        try_tls: bool,
    ) -> Result<Session, OpenError> {
        let t = &cfg.timeouts;
        let id = next_session_id(cfg.process);
        let conn = match &endpoint {
            Endpoint::Tcp { addr, .. } => {
                match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
                    Err(_) => Err(format!("connect to {host} timed out after {:?}", t.connect)),
                    Ok(Err(e)) => Err(format!("connect to {host}: {e}")),
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        tracing::info!(da_sess = %id, status = "connected", port = addr.port(), addr = %addr.ip());
                        Ok(Conn::new(s))
                    }
                }
            }
            Endpoint::Unix(path) => {
                match tokio::time::timeout(t.connect, UnixStream::connect(path)).await {
                    Err(_) => Err(format!("connect to {host} timed out after {:?}", t.connect)),
                    Ok(Err(e)) => Err(format!("connect to {host}: {e}")),
                    Ok(Ok(s)) => {
                        tracing::info!(da_sess = %id, status = "connected", addr = %path.display());
                        Ok(Conn::new(s))
                    }
                }
            }
        };
        let conn = match conn {
            Ok(c) => c,
            Err(text) => {
                tracing::info!(da_sess = %id, status = "connect_failed", reason = %text);
                return Err(OpenError::Failed(Failure {
                    reply: local_reply(451, 4, 4, text),
                    from_peer: false,
                    tls_violation: None,
                }));
            }
        };
        let lmtp = endpoint.is_lmtp();
        let mut s = Session {
            conn,
            endpoint,
            host,
            caps: Capabilities::default(),
            id,
            transactions: 0,
            dirty: false,
            idle_since: Instant::now(),
            tls: None,
        };
        match s.greet(cfg, req, lmtp, try_tls).await {
            Ok(()) => Ok(s),
            Err(GreetError::ClearRetry(reason)) => {
                tracing::info!(da_sess = %s.id, r#where = "connection", starttls = %format!("failed: {reason}"), action = "retry without STARTTLS");
                Err(OpenError::ClearRetry)
            }
            Err(GreetError::Failed(f)) if f.tls_violation == Some(RequirementsViolation::Abort) => {
                // abort: the session ends at once, without QUIT.
                tracing::info!(da_sess = %s.id, status = "aborted", reply = %reply_line(&f.reply));
                s.conn.shutdown(cfg.timeouts.command).await;
                Err(OpenError::Failed(f))
            }
            Err(GreetError::Failed(f)) => {
                tracing::info!(da_sess = %s.id, status = "greeting_failed", reply = %reply_line(&f.reply));
                s.quit(cfg, false).await;
                Err(OpenError::Failed(f))
            }
        }
    }

    /// STARTTLS after EHLO when offered and configured; see
    /// [`crate::tls`] for what happens when it fails.
    async fn tls(
        &mut self,
        cfg: &ClientConfig,
        req: &TlsRequirements,
        lmtp: bool,
    ) -> Result<(), GreetError> {
        let Endpoint::Tcp { addr, .. } = &self.endpoint else {
            return Ok(());
        };
        let addr = addr.ip();
        let violation = |why: String| GreetError::Failed(violation_failure(req, &why));
        let Some(tls) = cfg.tls.clone() else {
            return if req.any() {
                Err(violation("TLS is not configured".into()))
            } else {
                Ok(())
            };
        };
        let retry = |why: String| {
            if req.any() {
                violation(why)
            } else {
                GreetError::ClearRetry(why)
            }
        };
        if !self.caps.starttls {
            return if req.any() {
                tracing::info!(da_sess = %self.id, r#where = "connection", starttls = "not offered");
                Err(violation("STARTTLS not offered".into()))
            } else {
                Ok(())
            };
        }
        let t = &cfg.timeouts;
        self.conn.queue_line("STARTTLS");
        let reply = match self.send(t.command, "sending STARTTLS").await {
            Ok(()) => self.read(t.command, "reading STARTTLS reply").await,
            Err(f) => Err(f),
        };
        let reply = match reply {
            Ok(r) => r,
            Err(f) => return Err(retry(reply_line(&f.reply))),
        };
        if reply.code != 220 {
            tracing::info!(da_sess = %self.id, r#where = "connection", starttls = %format!("refused: {}", reply_line(&reply)));
            return if req.any() {
                Err(violation(format!(
                    "STARTTLS refused: {}",
                    reply_line(&reply)
                )))
            } else {
                Ok(())
            };
        }
        if self.conn.has_buffered_input() {
            return Err(retry("data sent after the 220 to STARTTLS".into()));
        }
        let stream = self.conn.take_stream();
        let name = crate::tls::server_name(&self.host, addr);
        let handshake =
            tokio::time::timeout(t.command, tls.connector().connect(name.clone(), stream)).await;
        let stream = match handshake {
            Err(_) => return Err(retry("handshake timeout".into())),
            Ok(Err(e)) => return Err(retry(format!("handshake: {e}"))),
            Ok(Ok(s)) => s,
        };
        let info = tls.info(stream.get_ref().1, &name);
        tracing::info!(
            da_sess = %self.id,
            r#where = "connection",
            starttls = "successful",
            version = %info.version,
            cipher = %info.cipher,
            bits = info.bits,
            verified = info.verified,
            cn = info.common_name.as_deref().unwrap_or(""),
        );
        self.conn = Conn::new(stream);
        self.tls = Some(info.clone());
        if let Err(why) = req.check(&info) {
            tracing::info!(da_sess = %self.id, r#where = "connection", tls_requirements = %why, "requirements_violation");
            return Err(violation(why));
        }
        // RFC 3207 4.2: what the server said before TLS no longer counts.
        self.ehlo(cfg, lmtp).await.map_err(GreetError::Failed)
    }

    async fn greet(
        &mut self,
        cfg: &ClientConfig,
        req: &TlsRequirements,
        lmtp: bool,
        try_tls: bool,
    ) -> Result<(), GreetError> {
        let t = &cfg.timeouts;
        let greeting = self
            .read(t.greeting, "reading greeting")
            .await
            .map_err(GreetError::Failed)?;
        if !greeting.is_positive() {
            return Err(GreetError::Failed(Failure {
                reply: greeting,
                from_peer: true,
                tls_violation: None,
            }));
        }
        // LMTP is final delivery (usually to our own lda, which greets
        // with our name): no relay loop is possible there.
        if !lmtp {
            self.check_loop(&greeting, cfg)
                .map_err(GreetError::Failed)?;
        }
        self.ehlo(cfg, lmtp).await.map_err(GreetError::Failed)?;
        if try_tls {
            self.tls(cfg, req, lmtp).await?;
        }
        Ok(())
    }

    /// EHLO (LHLO), falling back to HELO; sets the capabilities.
    async fn ehlo(&mut self, cfg: &ClientConfig, lmtp: bool) -> Result<(), Failure> {
        let t = &cfg.timeouts;
        let verb = if lmtp { "LHLO" } else { "EHLO" };
        self.conn.queue_line(&format!("{verb} {}", cfg.hostname));
        self.send(t.command, "sending EHLO").await?;
        let ehlo = self.read(t.command, "reading EHLO reply").await?;
        if ehlo.is_positive() {
            if !lmtp {
                self.check_loop(&ehlo, cfg)?;
            }
            self.caps = Capabilities::parse(&ehlo.lines);
            if lmtp {
                self.caps.pipelining = true;
            }
            return Ok(());
        }
        if lmtp || ehlo.code / 100 != 5 {
            return Err(Failure {
                reply: ehlo,
                from_peer: true,
                tls_violation: None,
            });
        }
        self.conn.queue_line(&format!("HELO {}", cfg.hostname));
        self.send(t.command, "sending HELO").await?;
        let helo = self.read(t.command, "reading HELO reply").await?;
        if !helo.is_positive() {
            return Err(Failure {
                reply: helo,
                from_peer: true,
                tls_violation: None,
            });
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    fn check_loop(&self, r: &Reply, cfg: &ClientConfig) -> Result<(), Failure> {
        if cfg.talk_to_myself {
            return Ok(());
        }
        let first = r
            .lines
            .first()
            .and_then(|l| l.split_ascii_whitespace().next())
            .unwrap_or("");
        if first.eq_ignore_ascii_case(&cfg.hostname) {
            return Err(Failure {
                reply: local_reply(
                    451,
                    4,
                    6,
                    format!(
                        "mail loop: {} greets with our host name {}",
                        self.host, cfg.hostname
                    ),
                ),
                from_peer: false,
                tls_violation: None,
            });
        }
        Ok(())
    }

    async fn read(
        &mut self,
        limit: std::time::Duration,
        what: &'static str,
    ) -> Result<Reply, Failure> {
        self.conn
            .read_reply(limit, what)
            .await
            .map_err(|e| Failure {
                reply: conn_failure(&e, &self.host),
                from_peer: false,
                tls_violation: None,
            })
    }

    async fn send(
        &mut self,
        limit: std::time::Duration,
        what: &'static str,
    ) -> Result<(), Failure> {
        self.conn.flush(limit, what).await.map_err(|e| Failure {
            reply: conn_failure(&e, &self.host),
            from_peer: false,
            tls_violation: None,
        })
    }

    /// Sends QUIT (unless `sent`), reads its reply if configured, closes.
    pub async fn quit(mut self, cfg: &ClientConfig, sent: bool) {
        let t = cfg.timeouts.command;
        if !sent {
            self.conn.queue_line("QUIT");
            if self.conn.flush(t, "sending QUIT").await.is_err() {
                return;
            }
        }
        if cfg.read_quit_reply {
            let _ = self.conn.read_reply(t, "reading QUIT reply").await;
        }
        self.conn.shutdown(t).await;
    }

    /// Whether a message with these properties can go to this peer;
    /// `Err` is the reply every recipient gets.
    fn check_fit(&self, tx: &Tx) -> Result<(), Reply> {
        if let Some(limit) = self.caps.size
            && limit > 0
            && tx.size > limit
        {
            return Err(local_reply(
                552,
                3,
                4,
                format!(
                    "message size {} exceeds the limit {limit} of {}",
                    tx.size, self.host
                ),
            ));
        }
        if tx.utf8 && !self.caps.smtputf8 {
            return Err(local_reply(
                554,
                6,
                7,
                format!(
                    "{} does not support SMTPUTF8, which the message needs",
                    self.host
                ),
            ));
        }
        if tx.mail.body == Some(Body::BinaryMime) && !(self.caps.binarymime && self.caps.chunking) {
            return Err(local_reply(
                554,
                6,
                3,
                format!("{} does not support BINARYMIME", self.host),
            ));
        }
        Ok(())
    }

    fn mail_line(&self, tx: &Tx) -> String {
        let mut p = MailParams::default();
        let c = &self.caps;
        if c.esmtp {
            if c.size.is_some() {
                p.size = Some(tx.size);
            }
            p.body = match tx.mail.body {
                Some(Body::EightBitMime) if c.eightbitmime => Some(Body::EightBitMime),
                Some(Body::BinaryMime) => Some(Body::BinaryMime),
                Some(Body::SevenBit) if c.eightbitmime => Some(Body::SevenBit),
                _ => None,
            };
            p.smtputf8 = tx.utf8 && c.smtputf8;
            if c.dsn {
                p.ret = tx.mail.ret;
                p.envid.clone_from(&tx.mail.envid);
            }
        }
        format!("MAIL FROM:<{}>{p}", tx.sender)
    }

    fn rcpt_line(&self, r: &TxRcpt) -> String {
        if self.caps.esmtp && self.caps.dsn {
            format!("RCPT TO:<{}>{}", r.address, r.params)
        } else {
            format!("RCPT TO:<{}>", r.address)
        }
    }

    /// Sends one transaction; see the module doc. `cached`: the session
    /// came from the idle cache (a failure before the first reply is then
    /// `stale`). `last`: no further transaction follows (QUIT may ride with
    /// the final dot).
    pub async fn transaction(
        &mut self,
        tx: &Tx,
        cdb: &Cdb,
        cfg: &ClientConfig,
        cached: bool,
        last: bool,
    ) -> TxOutcome {
        let mut out = TxOutcome {
            verdicts: Vec::new(),
            reusable: false,
            next_target: false,
            stale: false,
            quit_sent: false,
        };
        let host = Some(self.host.clone());
        if let Err(reply) = self.check_fit(tx) {
            for r in &tx.rcpts {
                out.verdicts.push((r.slot, self.verdict(&reply, false)));
            }
            out.reusable = true;
            return out;
        }
        self.transactions = self.transactions.saturating_add(1);
        let t = cfg.timeouts;
        let lmtp = self.endpoint.is_lmtp();
        let pipelining = self.caps.pipelining;
        let chunking = self.caps.chunking && self.caps.esmtp;
        let mut content = Content::open(cdb, tx.ss_ta);
        // Fail early and locally when the content cannot be read.
        if let Err(e) = content.has_more().await {
            let reply = local_reply(451, 3, 0, format!("content {}: {e}", tx.ss_ta));
            for r in &tx.rcpts {
                out.verdicts.push((
                    r.slot,
                    Verdict {
                        status: RecipientStatus::TempFail,
                        reply: reply.clone(),
                        host: None,
                        relayed: false,
                    },
                ));
            }
            out.reusable = !self.dirty;
            return out;
        }
        let ids = (self.id, tx.da_ta, tx.ss_ta);
        let mut first_reply_pending = cached;
        macro_rules! io_fail {
            ($e:expr, $undecided:expr, $next:expr) => {{
                let e = $e;
                if first_reply_pending && matches!(e, ConnError::Closed(_) | ConnError::Io(..)) {
                    out.stale = true;
                    out.verdicts.clear();
                    return out;
                }
                let reply = conn_failure(&e, &self.host);
                tracing::info!(da_sess = %ids.0, da_ta = %ids.1, ss_ta = %ids.2, stat = reply.code, reply = %reply_line(&reply));
                out.temp_fail_all($undecided, &reply, host.clone());
                out.next_target = $next;
                return out;
            }};
        }
        let all_slots: Vec<usize> = tx.rcpts.iter().map(|r| r.slot).collect();

        // ---- MAIL, RCPT (and DATA when pipelined) ----
        let need_rset = self.dirty;
        self.dirty = true;
        if need_rset {
            self.conn.queue_line("RSET");
            if !pipelining {
                if let Err(e) = self.conn.flush(t.command, "sending RSET").await {
                    io_fail!(e, all_slots.clone(), true);
                }
                match self.conn.read_reply(t.command, "reading RSET reply").await {
                    Err(e) => io_fail!(e, all_slots.clone(), true),
                    Ok(r) if r.code == 421 && first_reply_pending => {
                        io_fail!(ConnError::Closed("421 to RSET"), all_slots.clone(), true)
                    }
                    Ok(r) if !r.is_positive() => {
                        io_fail!(ConnError::Closed("RSET refused"), all_slots.clone(), true)
                    }
                    Ok(_) => first_reply_pending = false,
                }
            }
        }
        let mail_line = self.mail_line(tx);
        let rcpt_lines: Vec<String> = tx.rcpts.iter().map(|r| self.rcpt_line(r)).collect();
        let data_pipelined = pipelining && !chunking;
        let mail_reply;
        let mut rcpt_replies: Vec<Reply> = Vec::with_capacity(tx.rcpts.len());
        let mut data_reply: Option<Reply> = None;
        if pipelining {
            self.conn.queue_line(&mail_line);
            for l in &rcpt_lines {
                self.conn.queue_line(l);
            }
            if data_pipelined {
                self.conn.queue_line("DATA");
            }
            if let Err(e) = self.conn.flush(t.mail, "sending MAIL/RCPT").await {
                io_fail!(e, all_slots.clone(), true);
            }
            if need_rset {
                match self.conn.read_reply(t.command, "reading RSET reply").await {
                    Err(e) => io_fail!(e, all_slots.clone(), true),
                    Ok(r) if r.code == 421 && first_reply_pending => {
                        io_fail!(ConnError::Closed("421 to RSET"), all_slots.clone(), true)
                    }
                    Ok(r) if !r.is_positive() => {
                        io_fail!(ConnError::Closed("RSET refused"), all_slots.clone(), true)
                    }
                    Ok(_) => first_reply_pending = false,
                }
            }
            mail_reply = match self.conn.read_reply(t.mail, "reading MAIL reply").await {
                Ok(r) if r.code == 421 && first_reply_pending => {
                    // A cached session the peer gave up on while idle.
                    io_fail!(ConnError::Closed("421 to MAIL"), all_slots.clone(), true)
                }
                Ok(r) => r,
                Err(e) => io_fail!(e, all_slots.clone(), true),
            };
            first_reply_pending = false;
            for _ in &tx.rcpts {
                match self.conn.read_reply(t.rcpt, "reading RCPT reply").await {
                    Ok(r) => rcpt_replies.push(r),
                    Err(e) => io_fail!(e, all_slots.clone(), true),
                }
            }
            if data_pipelined {
                match self
                    .conn
                    .read_reply(t.data_init, "reading DATA reply")
                    .await
                {
                    Ok(r) => data_reply = Some(r),
                    Err(e) => io_fail!(e, all_slots.clone(), true),
                }
            }
        } else {
            self.conn.queue_line(&mail_line);
            if let Err(e) = self.conn.flush(t.mail, "sending MAIL").await {
                io_fail!(e, all_slots.clone(), true);
            }
            mail_reply = match self.conn.read_reply(t.mail, "reading MAIL reply").await {
                Ok(r) if r.code == 421 && first_reply_pending => {
                    // A cached session the peer gave up on while idle.
                    io_fail!(ConnError::Closed("421 to MAIL"), all_slots.clone(), true)
                }
                Ok(r) => r,
                Err(e) => io_fail!(e, all_slots.clone(), true),
            };
            first_reply_pending = false;
            if mail_reply.is_positive() {
                for l in &rcpt_lines {
                    self.conn.queue_line(l);
                    if let Err(e) = self.conn.flush(t.rcpt, "sending RCPT").await {
                        io_fail!(e, all_slots.clone(), true);
                    }
                    match self.conn.read_reply(t.rcpt, "reading RCPT reply").await {
                        Ok(r) => rcpt_replies.push(r),
                        Err(e) => io_fail!(e, all_slots.clone(), true),
                    }
                }
            }
        }
        tracing::info!(da_sess = %ids.0, da_ta = %ids.1, ss_ta = %ids.2, mail = %format!("<{}>", tx.sender), stat = stat(&mail_reply), reply = %reply_line(&mail_reply));
        if !mail_reply.is_positive() {
            for r in &tx.rcpts {
                out.verdicts
                    .push((r.slot, self.verdict(&mail_reply, false)));
            }
            // A pipelined DATA that was (wrongly) accepted needs an empty
            // message to get the session back.
            if let Some(d) = &data_reply
                && d.is_intermediate()
            {
                self.conn.queue_line(".");
                if self
                    .conn
                    .flush(t.data_block, "sending final dot")
                    .await
                    .is_err()
                    || self
                        .conn
                        .read_reply(t.data_final, "reading final dot reply")
                        .await
                        .is_err()
                {
                    return out;
                }
            }
            out.next_target = mail_reply.code / 100 == 4;
            out.reusable = true;
            return out;
        }
        let mut accepted: Vec<&TxRcpt> = Vec::new();
        for (r, reply) in tx.rcpts.iter().zip(&rcpt_replies) {
            tracing::info!(da_sess = %ids.0, da_ta = %ids.1, ss_ta = %ids.2, rcpt = %format!("<{}>", r.address), stat = stat(reply), reply = %reply_line(reply));
            if reply.is_positive() {
                accepted.push(r);
            } else {
                out.verdicts.push((r.slot, self.verdict(reply, false)));
            }
        }
        let accepted_slots: Vec<usize> = accepted.iter().map(|r| r.slot).collect();
        if accepted.is_empty() {
            if let Some(d) = &data_reply
                && d.is_intermediate()
            {
                self.conn.queue_line(".");
                if self
                    .conn
                    .flush(t.data_block, "sending final dot")
                    .await
                    .is_err()
                {
                    return out;
                }
                let n = if lmtp { 0 } else { 1 };
                for _ in 0..n {
                    if self
                        .conn
                        .read_reply(t.data_final, "reading final dot reply")
                        .await
                        .is_err()
                    {
                        return out;
                    }
                }
            }
            out.reusable = true;
            return out;
        }

        // ---- the content ----
        let quit_with_dot = last && pipelining && !cfg.separate_final_dot_and_quit;
        if chunking {
            let mut chunk_no = 0u64;
            loop {
                let piece = match content.next().await {
                    Ok(p) => p.unwrap_or_default(),
                    Err(e) => {
                        let reply = local_reply(451, 3, 0, format!("content {}: {e}", tx.ss_ta));
                        out.temp_fail_all(accepted_slots, &reply, None);
                        return out;
                    }
                };
                // A read error shows up as the next piece's error.
                let more = content.has_more().await.unwrap_or(true);
                chunk_no += 1;
                let line = if more {
                    format!("BDAT {}", piece.len())
                } else {
                    format!("BDAT {} LAST", piece.len())
                };
                self.conn.queue_line(&line);
                if let Err(e) = self
                    .conn
                    .write_now(&piece, t.data_block, "sending BDAT chunk")
                    .await
                {
                    io_fail!(e, accepted_slots.clone(), true);
                }
                if !more {
                    if quit_with_dot {
                        self.conn.queue_line("QUIT");
                        out.quit_sent = true;
                    }
                    if let Err(e) = self.conn.flush(t.data_block, "sending BDAT chunk").await {
                        io_fail!(e, accepted_slots.clone(), false);
                    }
                    break;
                }
                if let Err(e) = self.conn.flush(t.data_block, "sending BDAT chunk").await {
                    io_fail!(e, accepted_slots.clone(), true);
                }
                let r = match self
                    .conn
                    .read_reply(t.data_init, "reading BDAT reply")
                    .await
                {
                    Ok(r) => r,
                    Err(e) => io_fail!(e, accepted_slots.clone(), true),
                };
                if !r.is_positive() {
                    tracing::info!(da_sess = %ids.0, da_ta = %ids.1, ss_ta = %ids.2, r#where = "bdat", chunk = chunk_no, stat = stat(&r), reply = %reply_line(&r));
                    for slot in accepted_slots {
                        out.verdicts.push((slot, self.verdict(&r, false)));
                    }
                    out.reusable = true;
                    return out;
                }
            }
        } else {
            let d = match data_reply {
                Some(d) => d,
                None => {
                    self.conn.queue_line("DATA");
                    if let Err(e) = self.conn.flush(t.data_init, "sending DATA").await {
                        io_fail!(e, accepted_slots.clone(), true);
                    }
                    match self
                        .conn
                        .read_reply(t.data_init, "reading DATA reply")
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => io_fail!(e, accepted_slots.clone(), true),
                    }
                }
            };
            if !d.is_intermediate() {
                tracing::info!(da_sess = %ids.0, da_ta = %ids.1, ss_ta = %ids.2, r#where = "data", stat = d.code, reply = %reply_line(&d));
                if d.is_positive() {
                    // 2xx to DATA: the peer did not take any content, and
                    // the conversation is out of step.
                    let reply = local_reply(
                        451,
                        5,
                        0,
                        format!(
                            "{}: unexpected reply to DATA: {}",
                            self.host,
                            reply_line(&d)
                        ),
                    );
                    for slot in accepted_slots {
                        out.verdicts.push((slot, self.verdict(&reply, false)));
                    }
                    return out;
                }
                for slot in accepted_slots {
                    out.verdicts.push((slot, self.verdict(&d, false)));
                }
                out.reusable = true;
                return out;
            }
            let mut enc = DataEncoder::new();
            let mut buf = Vec::with_capacity(crate::content::CHUNK + crate::content::CHUNK / 8);
            loop {
                let piece = match content.next().await {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        // The peer is waiting for content; the session
                        // cannot be saved.
                        let reply = local_reply(451, 3, 0, format!("content {}: {e}", tx.ss_ta));
                        out.temp_fail_all(accepted_slots, &reply, None);
                        return out;
                    }
                };
                buf.clear();
                enc.encode(&piece, &mut buf);
                drop(piece);
                if let Err(e) = self
                    .conn
                    .write_now(&buf, t.data_block, "sending content")
                    .await
                {
                    io_fail!(e, accepted_slots.clone(), true);
                }
            }
            buf.clear();
            enc.finish(&mut buf);
            self.conn.queue_bytes(&buf);
            if quit_with_dot {
                self.conn.queue_line("QUIT");
                out.quit_sent = true;
            }
            if let Err(e) = self.conn.flush(t.data_block, "sending final dot").await {
                io_fail!(e, accepted_slots.clone(), false);
            }
        }

        // ---- the final reply (one per recipient in LMTP) ----
        if lmtp {
            for (i, r) in accepted.iter().enumerate() {
                let reply = match self
                    .conn
                    .read_reply(t.data_final, "reading final dot reply")
                    .await
                {
                    Ok(reply) => reply,
                    Err(e) => io_fail!(e, accepted_slots.iter().skip(i).copied(), false),
                };
                tracing::info!(da_sess = %ids.0, da_ta = %ids.1, ss_ta = %ids.2, r#where = "final_dot", rcpt = %format!("<{}>", r.address), size = tx.size, stat = stat(&reply), reply = %reply_line(&reply));
                out.verdicts.push((r.slot, self.verdict(&reply, false)));
            }
        } else {
            let reply = match self
                .conn
                .read_reply(t.data_final, "reading final dot reply")
                .await
            {
                Ok(reply) => reply,
                Err(e) => io_fail!(e, accepted_slots.iter().copied(), false),
            };
            tracing::info!(da_sess = %ids.0, da_ta = %ids.1, ss_ta = %ids.2, r#where = "final_dot", size = tx.size, stat = stat(&reply), reply = %reply_line(&reply));
            let relayed = !self.caps.dsn;
            for r in &accepted {
                out.verdicts.push((r.slot, self.verdict(&reply, relayed)));
            }
        }
        self.dirty = false;
        out.reusable = !out.quit_sent;
        out
    }

    fn verdict(&self, reply: &Reply, relayed: bool) -> Verdict {
        let status = status_of(reply);
        Verdict {
            status,
            reply: reply.clone(),
            host: Some(self.host.clone()),
            relayed: relayed && status == RecipientStatus::Delivered,
        }
    }
}

/// Whether `s` needs SMTPUTF8.
pub fn needs_utf8(s: &str) -> bool {
    !s.is_ascii()
}

/// Whether a path from the queue is safe to put on a command line: no
/// control characters (no line injection) and no angle brackets.
pub fn safe_path(s: &str) -> bool {
    s.len() <= 512 && !s.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capabilities_from_ehlo_lines() {
        let c = Capabilities::parse(&lines(&[
            "mx.example.org hello",
            "pipelining",
            "SIZE 10240000",
            "8BITMIME",
            "SMTPUTF8",
            "DSN",
            "CHUNKING",
            "BINARYMIME",
            "ENHANCEDSTATUSCODES",
            "AUTH PLAIN",
            "",
        ]));
        assert!(c.esmtp && c.pipelining && c.eightbitmime && c.smtputf8);
        assert!(c.dsn && c.chunking && c.binarymime && c.enhanced);
        assert_eq!(c.size, Some(10_240_000));
        // The first line is the greeting, never a keyword.
        let c = Capabilities::parse(&lines(&["PIPELINING"]));
        assert!(!c.pipelining);
        // SIZE without a (valid) number: no limit.
        let c = Capabilities::parse(&lines(&["x", "SIZE", "DSN"]));
        assert_eq!(c.size, Some(0));
        let c = Capabilities::parse(&lines(&["x", "SIZE 99999999999999999999999"]));
        assert_eq!(c.size, Some(0));
    }

    #[test]
    fn paths_that_could_inject_are_refused() {
        assert!(safe_path("user@example.org"));
        assert!(safe_path(""));
        assert!(safe_path("\"john doe\"@example.org"));
        assert!(safe_path("jörg@example.org"));
        assert!(!safe_path("a@b\r\nRSET"));
        assert!(!safe_path("a@b>"));
        assert!(!safe_path("<a@b"));
        assert!(!safe_path("a\u{0}@b"));
        assert!(!safe_path(&"a".repeat(600)));
    }

    #[test]
    fn made_up_replies_carry_matching_enhanced_codes() {
        let r = local_reply(451, 4, 6, "loop");
        assert_eq!(r.enhanced.map(|e| e.to_string()), Some("4.4.6".into()));
        assert_eq!(reply_line(&r), "451 4.4.6 loop");
        let r = local_reply(554, 6, 7, "utf8");
        assert_eq!(r.enhanced.map(|e| e.to_string()), Some("5.6.7".into()));
    }

    #[test]
    fn session_ids_are_distinct() {
        let a = next_session_id(1);
        let b = next_session_id(1);
        assert_ne!(a, b);
        assert!(a.to_string().starts_with("C01"));
    }
}
