//! smx-lda: the local delivery agent, an LMTP server (RFC 2033) that
//! delivers into Maildir.
//!
//! smtpc delivers mail for local domains over LMTP (the mailertable's
//! `lmtp:` entries, by default the `LMTP_socket`); the lda answers there.
//! For each recipient that has a mailbox ([`users`]) it writes the message
//! with `Return-Path:` and `Delivered-To:` fields in front (RFC 5321 4.4:
//! the final delivery records the envelope sender) into the user's Maildir
//! ([`maildir`]), durably, and then gives that recipient's reply: one reply
//! per accepted recipient after the data, in RCPT order, as LMTP requires.
//!
//! # Protocol
//!
//! Greeting `220 HOST LMTP`; LHLO offers PIPELINING, ENHANCEDSTATUSCODES,
//! 8BITMIME, SMTPUTF8 and SIZE; HELO and EHLO are refused (`500 5.5.1`, RFC
//! 2033 4.1). MAIL, RCPT, DATA, RSET, NOOP, VRFY (`252`) and QUIT as in SMTP.
//! RCPT of an unknown or invalid user is `550 5.1.1`; a local-user map that
//! fails is `451 4.3.0`. After the data each recipient gets `250 2.0.0`,
//! `452 4.3.1` (disk or mailbox full), `451 4.3.0` (another failure) or
//! `552 5.3.4` (message larger than `max_message_size`). Message content
//! keeps bare CR/LF bytes as they are (they were checked on the way in);
//! the line structure is still CRLF-only.
//!
//! # Limits
//!
//! Lines of 4096 octets, [`MAX_RECIPIENTS`] per transaction (`452 4.5.3`),
//! [`IO_TIMEOUT`] per read or write, the message size limit. The message is
//! held in memory while it is written to the mailboxes, so its size limit
//! bounds the memory of a session.

pub mod maildir;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smx_proto::{
    BareLineEnds, Command, DataDecoder, DataOptions, DataProgress, EnhancedCode, Frame, Reply,
    Syntax, frame_line,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{Instrument, info, warn};

pub use maildir::DeliveryError;
pub use users::{Mailbox, UserError, Users};

/// Most recipients in one transaction.
pub const MAX_RECIPIENTS: usize = 1000;
/// Timeout of each read and write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// The local delivery agent.
#[derive(Debug)]
pub struct Lda {
    /// Our host name (greeting, Maildir file names).
    pub hostname: String,
    /// Mailbox resolution.
    pub users: Users,
    /// Largest message in octets.
    pub max_message_size: u64,
}

fn r(code: u16, class: u8, subject: u16, detail: u16, text: impl Into<String>) -> Reply {
    Reply::new(code, Some(EnhancedCode::new(class, subject, detail)), text)
}

impl Lda {
    /// An lda delivering below `mail_dir`.
    pub fn new(hostname: impl Into<String>, users: Users, max_message_size: u64) -> Self {
        Lda {
            hostname: hostname.into(),
            users,
            max_message_size,
        }
    }

    /// Serves LMTP on a Unix socket until `shutdown` completes.
    pub async fn serve_unix(
        self: Arc<Self>,
        listener: tokio::net::UnixListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        self.serve(listener, shutdown).await;
    }

    /// Serves LMTP on a TCP socket until `shutdown` completes.
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        self.serve(listener, shutdown).await;
    }

    /// The accept loop: one task per connection; at shutdown the sessions
    /// are dropped (a client without a final reply tries again later).
    async fn serve<A: Acceptor>(
        self: Arc<Self>,
        listener: A,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                got = listener.accept_one() => match got {
                    Ok((stream, peer)) => {
                        let lda = Arc::clone(&self);
                        sessions.spawn(async move { lda.session(stream, peer).await });
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        sessions.abort_all();
    }

    /// Runs one LMTP session on `io`.
    pub async fn session<S: AsyncRead + AsyncWrite + Unpin + Send>(
        self: Arc<Self>,
        io: S,
        peer: String,
    ) {
        let span = tracing::info_span!("lmtp", client = %peer);
        let mut s = Session {
            lda: self,
            io,
            rbuf: Vec::new(),
            out: Vec::new(),
            lhlo: false,
            sender: None,
            rcpts: Vec::new(),
        };
        async move {
            let host = s.lda.hostname.clone();
            Reply::new(220, None, format!("{host} LMTP smx")).write_to(&mut s.out);
            if let Err(e) = s.run().await {
                info!(error = %e, "session ended");
            }
            let _ = s.flush().await;
        }
        .instrument(span)
        .await
    }
}

/// A listening socket the lda accepts LMTP connections on.
trait Acceptor {
    /// The connection type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;
    /// The next connection and a name of its peer for the log.
    fn accept_one(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, String)>> + Send;
}

impl Acceptor for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_one(&self) -> std::io::Result<(Self::Stream, String)> {
        self.accept().await.map(|(s, _)| (s, "unix".to_string()))
    }
}

impl Acceptor for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> std::io::Result<(Self::Stream, String)> {
        self.accept().await.map(|(s, peer)| (s, peer.to_string()))
    }
}

struct Session<S> {
    lda: Arc<Lda>,
    io: S,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    lhlo: bool,
    sender: Option<String>,
    rcpts: Vec<(String, Mailbox)>,
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("connection closed")]
    Eof,
    #[error("timeout")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        tokio::time::timeout(IO_TIMEOUT, self.io.write_all(&out))
            .await
            .map_err(|_| End::Timeout)??;
        Ok(())
    }

    async fn read(&mut self) -> Result<(), End> {
        self.flush().await?;
        // Straight into the buffer's spare capacity: no per-read
        // allocation or copy.
        self.rbuf.reserve(64 * 1024);
        let n = tokio::time::timeout(IO_TIMEOUT, self.io.read_buf(&mut self.rbuf))
            .await
            .map_err(|_| End::Timeout)??;
        if n == 0 {
            return Err(End::Eof);
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), End> {
        let syntax = Syntax::STRICT;
        loop {
            let framed = match frame_line(&self.rbuf, &syntax) {
                Ok(Frame::Incomplete) => None,
                Ok(Frame::Line { line, len }) => Some(Ok((line.to_vec(), len))),
                Err(e) => Some(Err(e)),
            };
            match framed {
                None => self.read().await?,
                Some(Err(e)) => {
                    let n = e.discard().min(self.rbuf.len());
                    self.rbuf.drain(..n);
                    e.reply().write_to(&mut self.out);
                    if let smx_proto::LineError::TooLong {
                        terminated: false, ..
                    } = e
                    {
                        return Err(End::Eof);
                    }
                }
                Some(Ok((line, len))) => {
                    self.rbuf.drain(..len);
                    if !self.command(line).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles one command line; `false` ends the session.
    async fn command(&mut self, mut line: Vec<u8>) -> Result<bool, End> {
        // LHLO has EHLO's syntax.
        let lhlo = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"LHLO");
        if lhlo {
            line[..4].copy_from_slice(b"EHLO");
        }
        let cmd = match Command::parse(&line, &Syntax::STRICT) {
            Ok(c) => c,
            Err(e) => {
                e.reply().write_to(&mut self.out);
                return Ok(true);
            }
        };
        let host = self.lda.hostname.clone();
        match cmd {
            Command::Ehlo(name) if lhlo => {
                self.lhlo = true;
                self.reset();
                Reply::multi(
                    250,
                    None,
                    vec![
                        format!("{host} Hello {name}"),
                        "PIPELINING".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "8BITMIME".into(),
                        "SMTPUTF8".into(),
                        format!("SIZE {}", self.lda.max_message_size),
                    ],
                )
                .write_to(&mut self.out);
            }
            Command::Ehlo(_) | Command::Helo(_) => {
                r(500, 5, 5, 1, "This is LMTP: use LHLO").write_to(&mut self.out);
            }
            Command::Mail { path, params } => {
                if !self.lhlo {
                    r(503, 5, 5, 1, "Send LHLO first").write_to(&mut self.out);
                } else if self.sender.is_some() {
                    r(503, 5, 5, 1, "Nested MAIL command").write_to(&mut self.out);
                } else if params.size.is_some_and(|s| s > self.lda.max_message_size) {
                    r(552, 5, 3, 4, "Message too big").write_to(&mut self.out);
                } else {
                    let s = path.to_string();
                    r(250, 2, 1, 0, format!("{s} Sender ok")).write_to(&mut self.out);
                    self.sender = Some(s);
                }
            }
            Command::Rcpt { path, .. } => {
                let addr = path.to_string();
                let bare = addr
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string();
                if self.sender.is_none() {
                    r(503, 5, 5, 1, "Need MAIL before RCPT").write_to(&mut self.out);
                } else if self.rcpts.len() >= MAX_RECIPIENTS {
                    r(452, 4, 5, 3, "Too many recipients").write_to(&mut self.out);
                } else {
                    match self.lda.users.resolve(&bare) {
                        Ok(m) => {
                            r(250, 2, 1, 5, format!("{addr} Recipient ok")).write_to(&mut self.out);
                            self.rcpts.push((bare, m));
                        }
                        Err(UserError::Lookup(e)) => {
                            warn!(rcpt = %addr, error = %e, "user lookup failed");
                            r(
                                451,
                                4,
                                3,
                                0,
                                format!("{addr} User lookup failed, try again later"),
                            )
                            .write_to(&mut self.out);
                        }
                        Err(e) => {
                            info!(rcpt = %addr, stat = %e, "recipient refused");
                            r(550, 5, 1, 1, format!("{addr} No such user here"))
                                .write_to(&mut self.out);
                        }
                    }
                }
            }
            Command::Data => {
                if self.sender.is_none() {
                    r(503, 5, 5, 1, "Need MAIL command").write_to(&mut self.out);
                } else if self.rcpts.is_empty() {
                    r(554, 5, 5, 1, "No valid recipients").write_to(&mut self.out);
                } else {
                    self.data().await?;
                }
            }
            Command::Rset => {
                self.reset();
                r(250, 2, 0, 0, "Reset state").write_to(&mut self.out);
            }
            Command::Noop(_) => r(250, 2, 0, 0, "OK").write_to(&mut self.out),
            Command::Vrfy(_) => {
                r(252, 2, 5, 2, "Cannot verify, but will accept").write_to(&mut self.out)
            }
            Command::Quit => {
                r(221, 2, 0, 0, format!("{host} closing connection")).write_to(&mut self.out);
                return Ok(false);
            }
            other => {
                r(502, 5, 5, 1, format!("{} not implemented", other.verb()))
                    .write_to(&mut self.out);
            }
        }
        Ok(true)
    }

    fn reset(&mut self) {
        self.sender = None;
        self.rcpts.clear();
    }

    async fn data(&mut self) -> Result<(), End> {
        Reply::new(354, None, "Enter mail, end with \".\" on a line by itself")
            .write_to(&mut self.out);
        let mut decoder = DataDecoder::new(DataOptions {
            max_size: Some(self.lda.max_message_size),
            max_line: None,
            bare_line_ends: BareLineEnds::Keep,
        });
        let mut content = Vec::new();
        let result = loop {
            if !self.rbuf.is_empty() {
                let progress = decoder.decode(&self.rbuf, &mut content);
                match progress {
                    DataProgress::Incomplete => self.rbuf.clear(),
                    DataProgress::Done { consumed, result } => {
                        self.rbuf.drain(..consumed);
                        break result;
                    }
                }
            }
            self.read().await?;
        };
        let sender = self.sender.take().unwrap_or_default();
        let rcpts = std::mem::take(&mut self.rcpts);
        if let Err(e) = result {
            info!(stat = %e, "message refused");
            let reply = e.reply();
            for _ in &rcpts {
                reply.write_to(&mut self.out);
            }
            return Ok(());
        }
        let content = Arc::new(content);
        for (addr, mbox) in rcpts {
            let reply = self
                .deliver_one(&sender, &addr, mbox, Arc::clone(&content))
                .await;
            reply.write_to(&mut self.out);
        }
        Ok(())
    }

    async fn deliver_one(
        &self,
        sender: &str,
        addr: &str,
        mbox: Mailbox,
        content: Arc<Vec<u8>>,
    ) -> Reply {
        let header = format!("Return-Path: {sender}\r\nDelivered-To: {addr}\r\n");
        let host = self.lda.hostname.clone();
        let user = mbox.user.clone();
        let res = tokio::task::spawn_blocking(move || {
            let dir = match &mbox.detail {
                Some(d) => {
                    let f = maildir::folder_dir(&mbox.maildir, Some(d));
                    if f.is_dir() { f } else { mbox.maildir.clone() }
                }
                None => mbox.maildir.clone(),
            };
            maildir::deliver(&dir, &host, &[header.as_bytes(), &content])
        })
        .await;
        match res {
            Ok(Ok(path)) => {
                info!(rcpt = %addr, user = %user, file = %path.display(), stat = 0, "delivered");
                r(250, 2, 0, 0, format!("<{addr}> Delivered"))
            }
            Ok(Err(e @ DeliveryError::Full { .. })) => {
                warn!(rcpt = %addr, error = %e, "delivery failed");
                r(452, 4, 3, 1, format!("<{addr}> Mailbox or disk full"))
            }
            Ok(Err(e)) => {
                warn!(rcpt = %addr, error = %e, "delivery failed");
                r(
                    451,
                    4,
                    3,
                    0,
                    format!("<{addr}> Local delivery failed, try again later"),
                )
            }
            Err(e) => {
                warn!(rcpt = %addr, error = %e, "delivery task failed");
                r(
                    451,
                    4,
                    3,
                    0,
                    format!("<{addr}> Local delivery failed, try again later"),
                )
            }
        }
    }
}

/// The mail directory of a configuration: `mail_directory` below the
/// queue directory unless absolute.
pub fn mail_dir(queue_directory: &std::path::Path, mail_directory: &std::path::Path) -> PathBuf {
    queue_directory.join(mail_directory)
}
