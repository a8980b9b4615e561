//! Links: one request type, one reply type and one notice type per pair of
//! processes, bound together by the [`Link`] trait so that a [`Client`] for
//! one link cannot send another link's requests (STYLE habit 2).
//!
//! # Frames after the handshake
//!
//! - client → server: [`RequestFrame`] `{ id, body }`, `id` chosen by the
//!   client, unique among its outstanding requests on the link;
//! - server → client: [`ServerFrame::Reply`] `{ id, body }` echoing a request
//!   id (in any order), or [`ServerFrame::Notice`] — unsolicited, e.g. qmgr
//!   telling smtps to throttle.
//!
//! # Client
//!
//! [`Client`] multiplexes any number of outstanding requests over one link.
//! A reader task routes each reply by id to the waiting request; a writer
//! task owns the socket's write half so that a cancelled or timed-out
//! request never leaves half a frame behind. When the link fails (peer
//! closed, bad frame, I/O error) every outstanding and every later request
//! fails with [`IpcError::LinkDown`], the socket is closed, and the owner
//! reconnects with a new client. A reply to a request that timed out is
//! logged and dropped.
//!
//! # Server
//!
//! [`Server`] is the accepting side: it answers the handshake, then reads
//! requests and writes replies and notices. Concurrency is up to the
//! process: [`Server::into_split`] gives the read and write halves.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::bytes::{Bytes, BytesMut};
use tokio_util::codec::Encoder;

use crate::frame::{BATCH_BYTES, FrameCodec, FrameReader, FrameWriter};
use crate::hello::{self, ServiceName};
use crate::{IpcError, LinkDown};

/// A link between two processes: the service named in the handshake and the
/// message types in each direction.
pub trait Link: Send + Sync + 'static {
    /// The service the client asks for in its `Hello`.
    const SERVICE: ServiceName;
    /// What the client sends.
    type Request: Serialize + DeserializeOwned + Debug + Send + 'static;
    /// What the server answers to a request.
    type Reply: Serialize + DeserializeOwned + Debug + Send + 'static;
    /// What the server sends unasked.
    type Notice: Serialize + DeserializeOwned + Debug + Send + 'static;
}

/// A request on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame<Q> {
    /// Chosen by the client; echoed by the reply.
    pub id: u64,
    /// The request.
    pub body: Q,
}

/// A frame from server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame<P, N> {
    /// The answer to request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// The answer.
        body: P,
    },
    /// An unsolicited notice.
    Notice(N),
}

/// The request frame of link `L`.
pub type RequestOf<L> = RequestFrame<<L as Link>::Request>;
/// The server frame of link `L`.
pub type ServerFrameOf<L> = ServerFrame<<L as Link>::Reply, <L as Link>::Notice>;

/// How many notices a [`Client`] buffers for its owner before it drops new
/// ones (with a warning).
pub const NOTICE_QUEUE: usize = 64;

/// The connecting side of link `L`; see the module doc.
#[derive(Debug)]
pub struct Client<L: Link> {
    shared: Arc<Shared<L::Reply>>,
    codec: FrameCodec<(), RequestOf<L>>,
    to_writer: mpsc::UnboundedSender<WriterCmd>,
    reader: JoinHandle<()>,
}

impl<L: Link> Client<L> {
    /// Runs the handshake on `stream` and starts the reader and writer
    /// tasks (on the current tokio runtime). Returns the client and the
    /// receiver of the server's notices. `max_frame` limits frames in both
    /// directions. The handshake itself has no deadline: wrap the call in
    /// `tokio::time::timeout` when the peer may hang.
    pub async fn connect(
        stream: UnixStream,
        max_frame: u32,
    ) -> Result<(Self, mpsc::Receiver<L::Notice>), IpcError> {
        let (rd, wr) = stream.into_split();
        let (reader, writer) = hello::client(
            FrameReader::new(rd, max_frame),
            FrameWriter::new(wr, max_frame),
            L::SERVICE,
        )
        .await?;
        let reader = reader.retype::<ServerFrameOf<L>>();
        let write_half = writer.into_inner();

        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                pending: HashMap::new(),
                down: None,
            }),
        });
        let (to_writer, commands) = mpsc::unbounded_channel();
        let (notices_tx, notices) = mpsc::channel(NOTICE_QUEUE);
        tokio::spawn(write_loop(write_half, commands, Arc::clone(&shared)));
        let reader = tokio::spawn(read_loop::<L>(
            reader,
            Arc::clone(&shared),
            notices_tx,
            to_writer.clone(),
        ));
        Ok((
            Client {
                shared,
                codec: FrameCodec::with_max(max_frame),
                to_writer,
                reader,
            },
            notices,
        ))
    }

    /// Sends `body` and waits at most `timeout` for its reply.
    ///
    /// Errors: [`IpcError::Timeout`] (the link stays up),
    /// [`IpcError::LinkDown`] (the link is gone; reconnect),
    /// [`IpcError::FrameTooLarge`] (this request cannot be sent; the link
    /// stays up).
    pub async fn request(&self, body: L::Request, timeout: Duration) -> Result<L::Reply, IpcError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = BytesMut::new();
        self.codec
            .clone()
            .encode(&RequestFrame { id, body }, &mut frame)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(down) = state.down {
                return Err(IpcError::LinkDown(down));
            }
            state.pending.insert(id, tx);
        }
        // Removes the pending entry however this future ends (reply,
        // timeout, or the caller dropping it).
        let _guard = PendingGuard {
            shared: &self.shared,
            id,
        };
        if self
            .to_writer
            .send(WriterCmd::Frame(frame.freeze()))
            .is_err()
        {
            return Err(IpcError::LinkDown(self.shared.down_or(LinkDown::Shutdown)));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IpcError::LinkDown(self.shared.down_or(LinkDown::Shutdown))),
            Err(_) => Err(IpcError::Timeout { id, after: timeout }),
        }
    }

    /// Why the link is down, or `None` while it is up.
    pub fn down(&self) -> Option<LinkDown> {
        self.shared.lock().down
    }

    /// How many requests are waiting for a reply.
    pub fn outstanding(&self) -> usize {
        self.shared.lock().pending.len()
    }
}

impl<L: Link> Drop for Client<L> {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.to_writer.send(WriterCmd::Close);
    }
}

/// The accepting side of link `L`, after a successful handshake.
#[derive(Debug)]
pub struct Server<L: Link> {
    reader: FrameReader<OwnedReadHalf, RequestOf<L>>,
    writer: FrameWriter<OwnedWriteHalf, ServerFrameOf<L>>,
}

impl<L: Link> Server<L> {
    /// Answers the client's handshake on `stream`. On a mismatch the
    /// rejection is sent, the stream closed and the error returned. No
    /// deadline here either: wrap the call in `tokio::time::timeout`.
    pub async fn accept(stream: UnixStream, max_frame: u32) -> Result<Self, IpcError> {
        let (rd, wr) = stream.into_split();
        let (reader, writer) = hello::server(
            FrameReader::new(rd, max_frame),
            FrameWriter::new(wr, max_frame),
            L::SERVICE,
        )
        .await?;
        Ok(Server {
            reader: reader.retype(),
            writer: writer.retype(),
        })
    }

    /// The next request; `Ok(None)` when the client closed the link. An
    /// error means the link must be dropped.
    pub async fn recv(&mut self) -> Result<Option<RequestOf<L>>, IpcError> {
        self.reader.read().await
    }

    /// Answers request `id`.
    pub async fn reply(&mut self, id: u64, body: L::Reply) -> Result<(), IpcError> {
        self.writer.write(&ServerFrame::Reply { id, body }).await
    }

    /// Sends a notice.
    pub async fn notice(&mut self, notice: L::Notice) -> Result<(), IpcError> {
        self.writer.write(&ServerFrame::Notice(notice)).await
    }

    /// The read and write halves, for a server that answers concurrently.
    #[allow(clippy::type_complexity)]
    pub fn into_split(
        self,
    ) -> (
        FrameReader<OwnedReadHalf, RequestOf<L>>,
        FrameWriter<OwnedWriteHalf, ServerFrameOf<L>>,
    ) {
        (self.reader, self.writer)
    }
}

// ---- helpers -------------------------------------------------------------

#[derive(Debug)]
struct Shared<P> {
    next_id: AtomicU64,
    state: Mutex<State<P>>,
}

#[derive(Debug)]
struct State<P> {
    pending: HashMap<u64, oneshot::Sender<Result<P, IpcError>>>,
    down: Option<LinkDown>,
}

impl<P> Shared<P> {
    fn lock(&self) -> MutexGuard<'_, State<P>> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters (insert/remove are atomic); keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn down_or(&self, default: LinkDown) -> LinkDown {
        self.lock().down.unwrap_or(default)
    }

    /// Marks the link down (the first cause wins) and fails every
    /// outstanding request.
    fn fail(&self, cause: LinkDown) {
        let pending: Vec<_> = {
            let mut state = self.lock();
            let cause = *state.down.get_or_insert(cause);
            state.pending.drain().map(|(_, tx)| (tx, cause)).collect()
        };
        for (tx, cause) in pending {
            let _ = tx.send(Err(IpcError::LinkDown(cause)));
        }
    }
}

struct PendingGuard<'a, P> {
    shared: &'a Shared<P>,
    id: u64,
}

impl<P> Drop for PendingGuard<'_, P> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

#[derive(Debug)]
enum WriterCmd {
    Frame(Bytes),
    Close,
}

async fn write_loop<P>(
    mut io: OwnedWriteHalf,
    mut commands: mpsc::UnboundedReceiver<WriterCmd>,
    shared: Arc<Shared<P>>,
) {
    // Frames queued while a write was in progress go out together in one
    // write (up to BATCH_BYTES), so a busy link costs fewer system calls
    // and wake-ups per request.
    let mut batch = BytesMut::new();
    'link: while let Some(cmd) = commands.recv().await {
        let WriterCmd::Frame(first) = cmd else {
            break;
        };
        let mut close = false;
        let result = if first.len() >= BATCH_BYTES {
            io.write_all(&first).await
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < BATCH_BYTES {
                match commands.try_recv() {
                    Ok(WriterCmd::Frame(b)) => batch.extend_from_slice(&b),
                    Ok(WriterCmd::Close) => {
                        close = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            io.write_all(&batch).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "IPC link write failed");
            shared.fail(LinkDown::Io(e.kind()));
            break 'link;
        }
        if close {
            break;
        }
    }
    let _ = io.shutdown().await;
}

async fn read_loop<L: Link>(
    mut reader: FrameReader<OwnedReadHalf, ServerFrameOf<L>>,
    shared: Arc<Shared<L::Reply>>,
    notices: mpsc::Sender<L::Notice>,
    to_writer: mpsc::UnboundedSender<WriterCmd>,
) {
    let cause = loop {
        match reader.read().await {
            Ok(Some(ServerFrame::Reply { id, body })) => {
                let waiter = shared.lock().pending.remove(&id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(Ok(body));
                    }
                    None => {
                        tracing::debug!(id, "IPC reply for no outstanding request (timed out?)")
                    }
                }
            }
            Ok(Some(ServerFrame::Notice(n))) => match notices.try_send(n) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(n)) => {
                    tracing::warn!(notice = ?n, "IPC notice queue full, notice dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            },
            Ok(None) => break LinkDown::Closed,
            Err(e) => {
                tracing::warn!(error = %e, service = %L::SERVICE, "IPC link failed");
                break e.link_down();
            }
        }
    };
    shared.fail(cause);
    let _ = to_writer.send(WriterCmd::Close);
}
