//! The listening side: sockets, admission, session tasks, shutdown.
//!
//! A [`Server`] owns its listening sockets (bound from `daemon_address`, or
//! passed in by mcp), the content database, the id source and the links to
//! qmgr and smar. [`Server::run`] accepts connections until its shutdown
//! future completes, then stops accepting: sessions waiting for a command
//! answer `421 4.3.2` and close at once, sessions in the middle of a
//! message get [`SHUTDOWN_GRACE`] to finish before they are dropped (their
//! clients see the connection close; nothing they were told 250 for is
//! affected, and uncommitted content files are removed by their writers'
//! drop).
//!
//! Admission, in order: the open-connection limits ([`crate::conn`]:
//! 450 4.7.0 and close, silent close far beyond); qmgr's throttle (a
//! `Throttle { max_sessions }` notice: sessions beyond it get 421 4.3.2);
//! `max_threads` (the most concurrent sessions of this process: 421 4.3.2).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use smx_ipc::smtps_qmgr::SmtpsQmgr;
use smx_ipc::smtps_smar::SmtpsSmar;
use smx_proto::{EnhancedCode, Reply};
use smx_store::cdb::Cdb;
use smx_store::id::IdSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::conn::{Admission, ConnTable};
use crate::peer::{Peer, Throttle};
use crate::session::Session;
use crate::settings::Settings;

/// How long running sessions may go on after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every session of a server shares.
#[derive(Debug)]
pub struct Shared {
    /// The settings.
    pub settings: Settings,
    /// Where content goes.
    pub cdb: Arc<Cdb>,
    /// Session and transaction ids.
    pub ids: Arc<IdSource>,
    /// The queue manager.
    pub qmgr: Peer<SmtpsQmgr>,
    /// The address resolver.
    pub smar: Peer<SmtpsSmar>,
    /// Becomes true when the server shuts down: sessions waiting for a
    /// command answer 421 and close.
    pub(crate) stopping: watch::Receiver<bool>,
}

/// An SMTP server instance.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    conns: ConnTable,
    throttle: watch::Receiver<Throttle>,
    stop: watch::Sender<bool>,
}

/// Where the server's peers and storage are.
#[derive(Debug)]
pub struct ServerParts {
    /// The settings.
    pub settings: Settings,
    /// The content database.
    pub cdb: Arc<Cdb>,
    /// The id source.
    pub ids: Arc<IdSource>,
    /// qmgr's socket (SMTPS_socket).
    pub qmgr_socket: std::path::PathBuf,
    /// smar's socket (SMAR_socket).
    pub smar_socket: std::path::PathBuf,
}

impl Server {
    /// A server on already bound listening sockets (non-blocking std
    /// sockets, e.g. passed by mcp).
    pub fn new(parts: ServerParts, listeners: Vec<std::net::TcpListener>) -> std::io::Result<Self> {
        let listeners = listeners
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let (qmgr, throttle) = Peer::qmgr(parts.qmgr_socket);
        let conns = ConnTable::new(
            parts.settings.max_connections_per_ip,
            parts.settings.max_parallel_connections,
        );
        let (stop, stopping) = watch::channel(false);
        Ok(Server {
            shared: Arc::new(Shared {
                settings: parts.settings,
                cdb: parts.cdb,
                ids: parts.ids,
                qmgr,
                smar: Peer::new(parts.smar_socket),
                stopping,
            }),
            listeners,
            conns,
            throttle,
            stop,
        })
    }

    /// Binds `addrs` (`listen_queue` is the backlog) and builds the server.
    pub async fn bind(
        parts: ServerParts,
        addrs: &[SocketAddr],
        backlog: u32,
    ) -> std::io::Result<Self> {
        let mut std_listeners = Vec::new();
        for a in addrs {
            let sock = if a.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            sock.set_reuseaddr(true)?;
            sock.bind(*a)?;
            let l = sock.listen(backlog.max(1))?;
            std_listeners.push(l.into_std()?);
        }
        Server::new(parts, std_listeners)
    }

    /// The addresses the server listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes; see the module doc.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            shared,
            listeners,
            conns,
            throttle,
            stop,
        } = self;
        let active = Arc::new(AtomicU32::new(0));
        let (accepted_tx, mut accepted_rx) =
            tokio::sync::mpsc::channel::<(TcpStream, SocketAddr)>(64);
        let mut acceptors = JoinSet::new();
        for l in listeners {
            let tx = accepted_tx.clone();
            acceptors.spawn(async move {
                loop {
                    match l.accept().await {
                        Ok(pair) => {
                            if tx.send(pair).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        drop(accepted_tx);
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                got = accepted_rx.recv() => {
                    let Some((stream, peer)) = got else { break };
                    let _ = stream.set_nodelay(true);
                    let guard = match conns.admit(peer.ip()) {
                        Admission::Accept(g) => g,
                        Admission::Refuse(g, why) => {
                            info!(client_ip = %peer.ip(), limit = ?why, "connection refused: too many connections");
                            let reply = Reply::new(450, Some(EnhancedCode::new(4, 7, 0)),
                                format!("{} Too many connections, try again later", shared.settings.hostname));
                            sessions.spawn(refuse(stream, reply, g));
                            continue;
                        }
                        Admission::Drop => {
                            info!(client_ip = %peer.ip(), "connection dropped: far too many connections");
                            drop(stream);
                            continue;
                        }
                    };
                    let limit = match *throttle.borrow() {
                        Some(n) => n.min(shared.settings.max_sessions),
                        None => shared.settings.max_sessions,
                    };
                    if active.load(Ordering::Relaxed) >= limit {
                        info!(client_ip = %peer.ip(), limit, "connection refused: session limit");
                        let reply = Reply::new(421, Some(EnhancedCode::new(4, 3, 2)),
                            format!("{} Too busy, try again later", shared.settings.hostname));
                        sessions.spawn(refuse(stream, reply, guard));
                        continue;
                    }
                    let id = match shared.ids.next_session(shared.settings.id) {
                        Ok(id) => id,
                        Err(e) => {
                            warn!(error = %e, "no session id");
                            let reply = Reply::new(421, Some(EnhancedCode::new(4, 3, 0)),
                                format!("{} Local error, try again later", shared.settings.hostname));
                            sessions.spawn(refuse(stream, reply, guard));
                            continue;
                        }
                    };
                    active.fetch_add(1, Ordering::Relaxed);
                    let local = match stream.local_addr() {
                        Ok(a) => a,
                        Err(e) => {
                            info!(client_ip = %peer.ip(), error = %e, "connection gone before its session started");
                            continue;
                        }
                    };
                    let session = Session::new(stream, Arc::clone(&shared), id, peer, local);
                    let active = Arc::clone(&active);
                    sessions.spawn(async move {
                        session.run().await;
                        drop(guard);
                        active.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
        }
        acceptors.abort_all();
        info!(sessions = sessions.len(), "shutting down");
        let _ = stop.send(true);
        let drain = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            sessions.abort_all();
        }
    }
}

/// How long a refused connection is kept counted while waiting for the
/// client to close it.
pub const REFUSE_LINGER: Duration = Duration::from_secs(10);

/// Sends one reply, closes our side, and keeps the connection counted
/// until the client closes its side (at most [`REFUSE_LINGER`]): a client
/// that ignores refusals and keeps connecting reaches the silent-close
/// limit instead of costing a reply per connection.
async fn refuse<G: Send>(mut stream: TcpStream, reply: Reply, guard: G) {
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        stream.write_all(&reply.to_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 512];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
    drop(guard);
}
