//! One connection to a peer: a byte stream, a write buffer and an
//! incremental reply reader.
//!
//! The stream is boxed ([`BoxStream`]): plain TCP and Unix sockets today; a
//! STARTTLS layer replaces the box with a wrapped stream after the
//! handshake ([`Conn::take_stream`], [`Conn::new`]) without the session
//! code knowing.
//!
//! Replies are read with smx-proto's [`ReplyParser`] (multi-line replies
//! whole, enhanced status codes recognised, line length and line count
//! bounded). Bytes after a reply stay buffered for the next one, so
//! pipelined replies may arrive in any segmentation. The read buffer holds
//! at most one read (8 KiB) plus the parser's bounded partial line.
//!
//! Every read and write has a deadline; expiry is [`ConnError::Timeout`].
//! After any [`ConnError`] the connection is unusable and is dropped.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use smx_proto::{Reply, ReplyError, ReplyParser, ReplyProgress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream to a peer.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The boxed stream of a connection.
pub type BoxStream = Pin<Box<dyn Stream>>;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8192;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer did not answer or take data in time.
    #[error("timeout after {0:?} {1}")]
    Timeout(Duration, &'static str),
    /// The peer closed the connection.
    #[error("connection closed by peer {0}")]
    Closed(&'static str),
    /// A socket error.
    #[error("I/O error {1}: {0}")]
    Io(#[source] io::Error, &'static str),
    /// The peer sent something that is not an SMTP reply.
    #[error("garbled reply {1}: {0}")]
    Garbled(#[source] ReplyError, &'static str),
}

/// A connection; see the module doc.
pub struct Conn {
    stream: BoxStream,
    rbuf: Vec<u8>,
    parser: ReplyParser,
    wbuf: Vec<u8>,
    saw_421: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("buffered_in", &self.rbuf.len())
            .field("buffered_out", &self.wbuf.len())
            .finish()
    }
}

impl Conn {
    /// A connection over `stream`.
    pub fn new(stream: impl Stream) -> Self {
        Conn::from_stream(Box::pin(stream))
    }

    /// A connection over an already boxed stream.
    pub fn from_stream(stream: BoxStream) -> Self {
        Conn {
            stream,
            rbuf: Vec::new(),
            parser: ReplyParser::default(),
            wbuf: Vec::new(),
            saw_421: false,
        }
    }

    /// The stream, for wrapping (e.g. TLS). Buffered input is dropped: only
    /// call this when no reply is pending.
    pub fn into_stream(self) -> BoxStream {
        self.stream
    }

    /// Takes the stream out for wrapping (e.g. STARTTLS), leaving a
    /// closed one behind: every later read or write of this connection
    /// fails. Buffered input and output are dropped.
    pub fn take_stream(&mut self) -> BoxStream {
        self.rbuf.clear();
        self.wbuf.clear();
        self.parser.reset();
        std::mem::replace(&mut self.stream, Box::pin(Closed))
    }

    /// Whether the peer sent bytes that no reply read has consumed yet.
    pub fn has_buffered_input(&self) -> bool {
        !self.rbuf.is_empty()
    }

    /// Appends a command line (CRLF added) to the write buffer.
    pub fn queue_line(&mut self, line: &str) {
        self.wbuf.extend_from_slice(line.as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
    }

    /// Appends raw bytes to the write buffer.
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Writes the buffer out within `limit`.
    pub async fn flush(&mut self, limit: Duration, what: &'static str) -> Result<(), ConnError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let stream = &mut self.stream;
        let buf = &self.wbuf;
        let r = tokio::time::timeout(limit, async {
            stream.write_all(buf).await?;
            stream.flush().await
        })
        .await;
        self.wbuf.clear();
        match r {
            Err(_) => Err(ConnError::Timeout(limit, what)),
            Ok(Err(e)) => Err(io_error(e, what)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Writes `bytes` directly (after anything buffered) within `limit`.
    pub async fn write_now(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        what: &'static str,
    ) -> Result<(), ConnError> {
        self.flush(limit, what).await?;
        let stream = &mut self.stream;
        let r = tokio::time::timeout(limit, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        match r {
            Err(_) => Err(ConnError::Timeout(limit, what)),
            Ok(Err(e)) => Err(io_error(e, what)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads one complete reply within `limit` (the deadline covers the
    /// whole reply, however it is segmented).
    pub async fn read_reply(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<Reply, ConnError> {
        match tokio::time::timeout(limit, self.read_reply_inner(what)).await {
            Err(_) => Err(ConnError::Timeout(limit, what)),
            Ok(r) => r,
        }
    }

    async fn read_reply_inner(&mut self, what: &'static str) -> Result<Reply, ConnError> {
        loop {
            if !self.rbuf.is_empty() {
                match self.parser.parse(&self.rbuf) {
                    Ok(ReplyProgress::Complete { reply, consumed }) => {
                        self.rbuf.drain(..consumed.min(self.rbuf.len()));
                        self.saw_421 |= reply.code == 421;
                        return Ok(reply);
                    }
                    Ok(ReplyProgress::Incomplete) => self.rbuf.clear(),
                    Err(e) => return Err(ConnError::Garbled(e, what)),
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| io_error(e, what))?;
            if n == 0 {
                return Err(ConnError::Closed(what));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether any reply so far was 421 (the peer is closing).
    pub fn saw_421(&self) -> bool {
        self.saw_421
    }

    /// Shuts the write side down (best effort, bounded by `limit`).
    pub async fn shutdown(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }
}

/// The stream left behind by [`Conn::take_stream`].
struct Closed;

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream taken for TLS")
}

impl AsyncRead for Closed {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Err(closed()))
    }
}

impl AsyncWrite for Closed {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Err(closed()))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn io_error(e: io::Error, what: &'static str) -> ConnError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => ConnError::Closed(what),
        _ => ConnError::Io(e, what),
    }
}
