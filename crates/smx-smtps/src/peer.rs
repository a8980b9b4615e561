//! Links to the other components (qmgr, smar) that reconnect on demand.
//!
//! A [`Peer`] holds at most one [`Client`] for its socket path. A request
//! on a link that is down (the peer restarted under mcp) drops it and
//! connects again, at most once per [`RECONNECT_INTERVAL`], so a missing
//! peer costs one failed `connect(2)` per interval, not one per SMTP
//! command. The handshake is bounded by the request timeout. Every failure
//! is an [`IpcError`]; the session turns it into a 4xx reply.
//!
//! Notices (qmgr's throttling) are forwarded to a `watch` channel that the
//! accept loop reads; a new link starts unthrottled.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smx_ipc::link::Link;
use smx_ipc::smtps_qmgr::{QmgrNotice, SmtpsQmgr};
use smx_ipc::{Client, DEFAULT_MAX_FRAME, IpcError, LinkDown};
use tokio::net::UnixStream;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

/// Shortest time between two connection attempts to one peer.
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// A reconnecting link of type `L`.
pub struct Peer<L: Link> {
    path: PathBuf,
    state: Mutex<PeerState<L>>,
    on_notice: Option<NoticeHandler<L>>,
}

/// What a peer does with each notice.
type NoticeHandler<L> = Arc<dyn Fn(<L as Link>::Notice) + Send + Sync>;

impl<L: Link> std::fmt::Debug for Peer<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("path", &self.path).finish()
    }
}

#[derive(Debug)]
struct PeerState<L: Link> {
    client: Option<Arc<Client<L>>>,
    last_attempt: Option<Instant>,
}

/// The session limit qmgr asked for: `None` when not throttled.
pub type Throttle = Option<u32>;

impl<L: Link> Peer<L> {
    /// A peer listening at `path`; nothing is connected yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Peer {
            path: path.into(),
            state: Mutex::new(PeerState {
                client: None,
                last_attempt: None,
            }),
            on_notice: None,
        }
    }

    /// The socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    async fn client(&self, timeout: Duration) -> Result<Arc<Client<L>>, IpcError> {
        let mut st = self.state.lock().await;
        if let Some(c) = &st.client {
            if c.down().is_none() {
                return Ok(Arc::clone(c));
            }
            st.client = None;
        }
        let now = Instant::now();
        if st
            .last_attempt
            .is_some_and(|t| now.duration_since(t) < RECONNECT_INTERVAL)
        {
            return Err(IpcError::LinkDown(LinkDown::Shutdown));
        }
        st.last_attempt = Some(now);
        let connect = async {
            let stream = UnixStream::connect(&self.path).await?;
            Client::<L>::connect(stream, DEFAULT_MAX_FRAME).await
        };
        let (client, notices) =
            tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| IpcError::Timeout {
                    id: 0,
                    after: timeout,
                })??;
        let client = Arc::new(client);
        st.client = Some(Arc::clone(&client));
        drop(st);
        self.on_connect(notices);
        Ok(client)
    }

    fn on_connect(&self, mut notices: tokio::sync::mpsc::Receiver<L::Notice>) {
        if let Some(handler) = &self.on_notice {
            let handler = Arc::clone(handler);
            tokio::spawn(async move {
                while let Some(n) = notices.recv().await {
                    handler(n);
                }
            });
        }
    }

    /// Sends `req` and waits at most `timeout` (connecting first if needed).
    pub async fn request(&self, req: L::Request, timeout: Duration) -> Result<L::Reply, IpcError> {
        let client = self.client(timeout).await?;
        client.request(req, timeout).await
    }
}

impl Peer<SmtpsQmgr> {
    /// A qmgr peer whose throttle notices go to the returned receiver.
    pub fn qmgr(path: impl Into<PathBuf>) -> (Self, watch::Receiver<Throttle>) {
        let (tx, rx) = watch::channel(None);
        let mut p = Peer::new(path);
        p.on_notice = Some(Arc::new(move |n| {
            let t = match n {
                QmgrNotice::Throttle {
                    max_sessions,
                    reason,
                } => {
                    tracing::warn!(max_sessions, reason = ?reason, "throttled by qmgr");
                    Some(max_sessions)
                }
                QmgrNotice::Unthrottle => {
                    tracing::info!("throttle lifted by qmgr");
                    None
                }
            };
            let _ = tx.send(t);
        }));
        (p, rx)
    }
}
