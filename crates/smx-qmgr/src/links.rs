//! Reconnecting IPC clients for the links on which qmgr is the client
//! (qmgr → smar, qmgr → smtpc).
//!
//! # Rules
//!
//! 1. One [`Client`] per link is shared by every request, so many requests
//!    are in flight at once on one socket.
//! 2. A client whose link went down is dropped; the next request connects
//!    anew (the peer may have been restarted by mcp). Connecting and the
//!    handshake are bounded by the request's own deadline.
//! 3. [`Reconnecting::request`] retries a request that failed because the
//!    link went down (before or while it was in flight), after
//!    `reconnect_delay`, until the deadline passes. The request may thus
//!    reach the peer twice; both links are idempotent for qmgr (a route
//!    lookup has no effect, a delivery delivered twice is the usual
//!    at-least-once case). A timeout or any other error is returned at once;
//!    so is the last failure after the caller's number of attempts.
//! 4. Only one task connects at a time; the others wait for its result.
//! 5. While the peer is not available (its socket refuses connections, the
//!    link is down) a request keeps trying for `wait_for_server` (seed 3.8
//!    item 20), at least its own timeout, before it fails: a peer that mcp
//!    is still starting or restarting is waited for. Once connected, each
//!    attempt has the request's own timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smx_ipc::{Client, IpcError, Link};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A shared, reconnecting client for link `L`.
#[derive(Debug)]
pub struct Reconnecting<L: Link> {
    path: PathBuf,
    max_frame: u32,
    reconnect_delay: Duration,
    wait_for_server: Duration,
    current: Mutex<Option<Arc<Client<L>>>>,
}

/// Why a request through [`Reconnecting`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The peer could not be reached, or the link kept failing, until the
    /// deadline.
    #[error("link to {path} unavailable: {last}")]
    Unavailable {
        /// The socket.
        path: String,
        /// The last failure.
        last: String,
    },
    /// The request got no reply in time (the link stays up).
    #[error("no reply from {path} within {after:?}")]
    Timeout {
        /// The socket.
        path: String,
        /// The time waited.
        after: Duration,
    },
    /// The peer answered with a reply that does not fit the request.
    #[error("link to {path}: unexpected answer: {what}")]
    Unexpected {
        /// The socket.
        path: String,
        /// What was wrong.
        what: &'static str,
    },
    /// Another IPC failure (a request too large, a protocol mismatch).
    #[error("link to {path}: {source}")]
    Ipc {
        /// The socket.
        path: String,
        /// The failure.
        source: IpcError,
    },
}

impl LinkError {
    /// The same failure for another request that shared the round trip
    /// (an IPC error keeps its text).
    pub fn duplicate(&self) -> LinkError {
        match self {
            LinkError::Unavailable { path, last } => LinkError::Unavailable {
                path: path.clone(),
                last: last.clone(),
            },
            LinkError::Timeout { path, after } => LinkError::Timeout {
                path: path.clone(),
                after: *after,
            },
            LinkError::Unexpected { path, what } => LinkError::Unexpected {
                path: path.clone(),
                what,
            },
            LinkError::Ipc { path, source } => LinkError::Unavailable {
                path: path.clone(),
                last: source.to_string(),
            },
        }
    }
}

impl<L: Link> Reconnecting<L> {
    /// A client for the socket at `path`; nothing is connected yet.
    pub fn new(path: PathBuf, max_frame: u32, reconnect_delay: Duration) -> Self {
        Reconnecting {
            path,
            max_frame,
            reconnect_delay,
            wait_for_server: Duration::ZERO,
            current: Mutex::new(None),
        }
    }

    /// Sets how long a request waits for an unavailable peer (rule 5).
    pub fn with_wait_for_server(mut self, wait: Duration) -> Self {
        self.wait_for_server = wait;
        self
    }

    /// Whether a client is connected and its link is up.
    pub async fn is_up(&self) -> bool {
        self.current
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| c.down().is_none())
    }

    async fn client(&self, deadline: Instant) -> Result<Arc<Client<L>>, String> {
        let mut cur = self.current.lock().await;
        if let Some(c) = cur.as_ref().filter(|c| c.down().is_none()) {
            return Ok(Arc::clone(c));
        }
        *cur = None;
        let connect = async {
            let stream = UnixStream::connect(&self.path)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (client, _notices) = Client::<L>::connect(stream, self.max_frame)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            Ok::<_, String>(client)
        };
        let client = tokio::time::timeout_at(deadline, connect)
            .await
            .map_err(|_| "connect timed out".to_string())??;
        let client = Arc::new(client);
        *cur = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Sends `body` (cloned for each attempt) and returns the reply; see
    /// rule 3. At most `attempts` sends (at least one) within `timeout`.
    pub async fn request(
        &self,
        body: L::Request,
        timeout: Duration,
        attempts: u32,
    ) -> Result<L::Reply, LinkError>
    where
        L::Request: Clone,
    {
        let deadline = Instant::now() + timeout.max(self.wait_for_server);
        let path = self.path.display().to_string();
        let mut left_attempts = attempts.max(1);
        loop {
            left_attempts -= 1;
            let last = match self.client(deadline).await {
                Ok(client) => match client.request(body.clone(), timeout).await {
                    Ok(reply) => return Ok(reply),
                    Err(IpcError::LinkDown(d)) => d.to_string(),
                    Err(IpcError::Timeout { .. }) => {
                        return Err(LinkError::Timeout {
                            path,
                            after: timeout,
                        });
                    }
                    Err(source) => return Err(LinkError::Ipc { path, source }),
                },
                Err(e) => e,
            };
            tracing::debug!(path = %path, error = %last, "link down, retrying");
            let next = Instant::now() + self.reconnect_delay;
            if next >= deadline || left_attempts == 0 {
                return Err(LinkError::Unavailable { path, last });
            }
            tokio::time::sleep_until(next).await;
        }
    }
}
