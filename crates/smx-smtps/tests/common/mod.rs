//! A test harness: an smtps server on 127.0.0.1 with scripted qmgr and
//! smar peers on Unix sockets in a temporary directory, and a raw SMTP
//! client for exact protocol checks.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod pki;

use smx_conf::model::smtps::SmtpsConfig;
use smx_ipc::DEFAULT_MAX_FRAME;
use smx_ipc::link::{Link, ServerFrame};
use smx_ipc::smtps_qmgr::{Envelope, QmgrNotice, QmgrReply, SmtpsQmgr, SmtpsRequest};
use smx_ipc::smtps_smar::{SmarReply, SmarRequest, SmtpsSmar};
use smx_ipc::types::{EnhancedCode, SmtpReply};
use smx_smtps::{Server, ServerParts, Settings};
use smx_store::cdb::{Cdb, CdbOptions};
use smx_store::id::IdSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio::sync::{mpsc, oneshot};

/// How the scripted qmgr behaves.
#[derive(Debug, Clone, Default)]
pub struct QmgrScript {
    /// Answer NewSession with a refusal.
    pub refuse_sessions: bool,
    /// Delay before answering NewSession.
    pub session_delay: Duration,
    /// Answer Commit with TempFail.
    pub tempfail_commits: bool,
    /// Do not answer Commit at all (a hung or crashed qmgr).
    pub swallow_commits: bool,
}

/// What the scripted peers saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub envelopes: Vec<Envelope>,
    pub aborts: usize,
    pub closes: usize,
    pub etrn: Vec<String>,
    pub connect_checks: usize,
    pub cert_checks: Vec<(String, String)>,
    /// `smtps_session_conf:` values the scripted smar answers, by client
    /// address (set before connecting).
    pub session_confs: Vec<(std::net::IpAddr, String)>,
    /// SessionConf requests seen.
    pub session_conf_lookups: usize,
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    pub cdb: Arc<Cdb>,
    pub notices: mpsc::UnboundedSender<QmgrNotice>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub fn config() -> SmtpsConfig {
    SmtpsConfig {
        io_timeout: smx_conf::value::Time::secs(10),
        ..SmtpsConfig::default()
    }
}

impl Harness {
    pub async fn start(cfg: SmtpsConfig, script: QmgrScript) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let cdb = Arc::new(Cdb::open(dir.path().join("cdb"), CdbOptions::default()).unwrap());
        let ids = Arc::new(IdSource::open(dir.path().join("ids")).unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let qmgr_sock = dir.path().join("qmgr.sock");
        let smar_sock = dir.path().join("smar.sock");
        let (ntx, nrx) = mpsc::unbounded_channel();
        spawn_qmgr(&qmgr_sock, script, Arc::clone(&seen), nrx);
        spawn_smar(&smar_sock, Arc::clone(&seen));
        let settings = Settings::load(&cfg, "mx.test.example").unwrap();
        let parts = ServerParts {
            settings,
            cdb: Arc::clone(&cdb),
            ids,
            qmgr_socket: qmgr_sock,
            smar_socket: smar_sock,
        };
        let server = Server::bind(parts, &["127.0.0.1:0".parse().unwrap()], 128)
            .await
            .unwrap();
        let addr = server.local_addrs()[0];
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Harness {
            dir,
            addr,
            seen,
            cdb,
            notices: ntx,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    pub fn envelopes(&self) -> Vec<Envelope> {
        self.seen.lock().unwrap().envelopes.clone()
    }

    /// The content file of a committed envelope.
    pub fn content(&self, env: &Envelope) -> Vec<u8> {
        let id = smx_store::id::TransactionId::new(env.id.counter, env.id.process);
        std::fs::read(self.cdb.path_of(id)).unwrap()
    }

    /// Number of content files in the CDB.
    pub fn cdb_files(&self) -> usize {
        count_files(&self.dir.path().join("cdb"))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

fn count_files(p: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                n += count_files(&e.path());
            } else if ft.is_file() {
                n += 1;
            }
        }
    }
    n
}

fn reply(code: u16, e: (u8, u16, u16), text: &str) -> SmtpReply {
    SmtpReply {
        code,
        enhanced: Some(EnhancedCode {
            class: e.0,
            subject: e.1,
            detail: e.2,
        }),
        text: text.into(),
    }
}

/// Serves one link kind: each request answered by `answer` on its own task.
fn serve<L, F, Fut>(path: &Path, answer: F, mut notices: Option<mpsc::UnboundedReceiver<L::Notice>>)
where
    L: Link,
    L::Reply: Sync,
    L::Notice: Sync,
    F: Fn(L::Request) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Option<L::Reply>> + Send + 'static,
{
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = smx_ipc::Server::<L>::accept(stream, DEFAULT_MAX_FRAME).await else {
                continue;
            };
            let (mut rd, mut wr) = server.into_split();
            let (tx, mut rx) = mpsc::unbounded_channel::<ServerFrame<L::Reply, L::Notice>>();
            let mut nrx = notices.take();
            tokio::spawn(async move {
                loop {
                    let frame = match nrx.as_mut() {
                        Some(n) => tokio::select! {
                            f = rx.recv() => f,
                            Some(notice) = n.recv() => Some(ServerFrame::Notice(notice)),
                        },
                        None => rx.recv().await,
                    };
                    let Some(frame) = frame else { return };
                    if wr.write(&frame).await.is_err() {
                        return;
                    }
                }
            });
            let answer = answer.clone();
            tokio::spawn(async move {
                while let Ok(Some(req)) = rd.read().await {
                    let tx = tx.clone();
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        if let Some(body) = answer(req.body).await {
                            let _ = tx.send(ServerFrame::Reply { id: req.id, body });
                        }
                    });
                }
            });
        }
    });
}

fn spawn_qmgr(
    path: &Path,
    script: QmgrScript,
    seen: Arc<Mutex<Seen>>,
    notices: mpsc::UnboundedReceiver<QmgrNotice>,
) {
    serve::<SmtpsQmgr, _, _>(
        path,
        move |req| {
            let script = script.clone();
            let seen = Arc::clone(&seen);
            async move {
                Some(match req {
                    SmtpsRequest::NewSession(_) => {
                        tokio::time::sleep(script.session_delay).await;
                        if script.refuse_sessions {
                            QmgrReply::SessionRefused(reply(
                                421,
                                (4, 7, 0),
                                "connection rate exceeded",
                            ))
                        } else {
                            QmgrReply::SessionAccepted
                        }
                    }
                    SmtpsRequest::Commit(env) => {
                        if script.swallow_commits {
                            return None;
                        }
                        if script.tempfail_commits {
                            QmgrReply::TempFail(reply(452, (4, 3, 1), "queue full"))
                        } else {
                            seen.lock().unwrap().envelopes.push(env);
                            QmgrReply::Committed
                        }
                    }
                    SmtpsRequest::Abort { .. } => {
                        seen.lock().unwrap().aborts += 1;
                        QmgrReply::Done
                    }
                    SmtpsRequest::CloseSession { .. } => {
                        seen.lock().unwrap().closes += 1;
                        QmgrReply::Done
                    }
                    SmtpsRequest::Etrn { node, .. } => {
                        seen.lock().unwrap().etrn.push(node);
                        QmgrReply::Done
                    }
                })
            }
        },
        Some(notices),
    );
}

/// The scripted smar: the local part decides.
/// RCPT: `reject*` → 550 5.7.1, `temp*` → 450 4.7.1, `discard*` → discard,
/// `relaydenied*` → 550 5.7.1 relaying denied unless the session asks
/// with `relay_allowed` (then relayed), anything else accepted.
/// MAIL: `spammer@*` → 553 5.7.1. Connect: accepted, counted.
/// Certificates: recorded; a subject with `CN=client.example` relays.
/// Session configuration: the `session_confs` entry for the client
/// address, counted.
fn spawn_smar(path: &Path, seen: Arc<Mutex<Seen>>) {
    serve::<SmtpsSmar, _, _>(
        path,
        move |req| {
            let seen = Arc::clone(&seen);
            async move {
                Some(match req {
                    SmarRequest::ConnectCheck { .. } => {
                        seen.lock().unwrap().connect_checks += 1;
                        SmarReply::Accept { quick: false }
                    }
                    SmarRequest::EhloCheck { helo, .. } => {
                        if helo.starts_with("spam") {
                            SmarReply::Reject(reply(550, (5, 7, 1), "bad EHLO"))
                        } else {
                            SmarReply::Accept { quick: false }
                        }
                    }
                    SmarRequest::CertCheck { issuer, subject } => {
                        let relay = subject.contains("CN=client.example");
                        seen.lock().unwrap().cert_checks.push((issuer, subject));
                        if relay {
                            SmarReply::Relay { quick: false }
                        } else {
                            SmarReply::Accept { quick: false }
                        }
                    }
                    SmarRequest::MailCheck { sender, .. } => {
                        if sender.starts_with("spammer@") {
                            SmarReply::Reject(reply(553, (5, 7, 1), "sender blocked"))
                        } else {
                            SmarReply::Accept { quick: false }
                        }
                    }
                    SmarRequest::RcptCheckInSession {
                        rcpt,
                        relay_allowed,
                        ..
                    } if rcpt.starts_with("relaydenied") => {
                        if relay_allowed {
                            SmarReply::Relay { quick: false }
                        } else {
                            SmarReply::Reject(reply(550, (5, 7, 1), "relaying denied"))
                        }
                    }
                    SmarRequest::SessionConf { client_ip, .. } => {
                        let mut seen = seen.lock().unwrap();
                        seen.session_conf_lookups += 1;
                        let v = seen
                            .session_confs
                            .iter()
                            .find(|(ip, _)| *ip == client_ip)
                            .map(|(_, v)| v.clone());
                        SmarReply::SessionConf(v)
                    }
                    SmarRequest::RcptCheck { rcpt, .. }
                    | SmarRequest::RcptCheckInSession { rcpt, .. } => {
                        if rcpt.starts_with("reject") {
                            SmarReply::Reject(reply(550, (5, 7, 1), &format!("<{rcpt}> rejected")))
                        } else if rcpt.starts_with("temp") {
                            SmarReply::TempFail(reply(450, (4, 7, 1), "try later"))
                        } else if rcpt.starts_with("discard") {
                            SmarReply::Discard
                        } else {
                            SmarReply::Accept { quick: false }
                        }
                    }
                })
            }
        },
        None::<mpsc::UnboundedReceiver<smx_ipc::smtps_smar::NoNotice>>,
    );
}

/// A stream the client can talk over (TCP, or TLS over TCP).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A raw SMTP client for exact protocol tests.
pub struct Client {
    pub stream: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        Client {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).await.unwrap();
    }

    /// Reads one (possibly multi-line) reply; "" at EOF.
    pub async fn reply(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // A complete reply: lines until one with a space after the code.
            let mut pos = 0;
            while let Some(nl) = self.buf[pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[pos..pos + nl + 1];
                pos += nl + 1;
                if line.len() < 4 || line[3] != b'-' {
                    let text = String::from_utf8_lossy(&self.buf[..pos]).to_string();
                    self.buf.drain(..pos);
                    return text;
                }
            }
            let mut tmp = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut tmp))
                .await
                .expect("reply within 20 s")
                .unwrap_or(0);
            if n == 0 {
                let rest = String::from_utf8_lossy(&self.buf).to_string();
                self.buf.clear();
                return rest;
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Wraps the client's stream (e.g. in TLS); anything buffered but
    /// not yet read as a reply is returned and dropped.
    pub async fn upgrade<F, Fut>(self, f: F) -> (Client, Vec<u8>)
    where
        F: FnOnce(Box<dyn Io>) -> Fut,
        Fut: std::future::Future<Output = Box<dyn Io>>,
    {
        let stream = f(self.stream).await;
        (
            Client {
                stream,
                buf: Vec::new(),
            },
            self.buf,
        )
    }

    /// A client over an already set up stream.
    pub fn over(stream: Box<dyn Io>) -> Client {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a line and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Whether the server closed the connection (reads until EOF, bounded).
    pub async fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Asserts a reply's code.
#[track_caller]
pub fn code(reply: &str, want: &str) {
    assert!(reply.starts_with(want), "expected {want}, got {reply:?}");
}

impl Client {
    /// Connects from a chosen local address (e.g. 127.0.0.2).
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(from, 0)).unwrap();
        let stream = sock.connect(addr).await.unwrap();
        Client {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }
}
