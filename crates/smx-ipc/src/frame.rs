//! Framing: a 4-byte big-endian payload length, then the postcard encoding
//! of one message (see the crate doc for the layout).
//!
//! [`FrameCodec`] is the pure part — a tokio-util `Decoder`/`Encoder` over a
//! byte buffer, no I/O — and [`FrameReader`]/[`FrameWriter`] drive it over
//! any async stream half. The codec checks the declared length against its
//! maximum before it reserves buffer space, so a peer cannot make us
//! allocate more than the maximum; every decoding failure is an
//! [`IpcError`], never a panic.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::IpcError;

/// Largest payload accepted by default: 1 MiB. An envelope with many
/// recipients is the largest message; 1 MiB holds thousands of them.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Encodes `E` and decodes `D` as length-prefixed postcard frames.
#[derive(Debug)]
pub struct FrameCodec<D, E> {
    max: u32,
    _types: PhantomData<fn(E) -> D>,
}

impl<D, E> Clone for FrameCodec<D, E> {
    fn clone(&self) -> Self {
        Self::with_max(self.max)
    }
}

impl<D, E> Default for FrameCodec<D, E> {
    fn default() -> Self {
        Self::with_max(DEFAULT_MAX_FRAME)
    }
}

impl<D, E> FrameCodec<D, E> {
    /// A codec with the [`DEFAULT_MAX_FRAME`] limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec that refuses payloads longer than `max` bytes.
    pub fn with_max(max: u32) -> Self {
        Self {
            max,
            _types: PhantomData,
        }
    }

    /// The payload limit.
    pub fn max(&self) -> u32 {
        self.max
    }
}

impl<D: DeserializeOwned, E> Decoder for FrameCodec<D, E> {
    type Item = D;
    type Error = IpcError;

    /// `Ok(None)` while the frame is incomplete; the length is checked as
    /// soon as its 4 bytes are there.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<D>, IpcError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; HEADER_LEN];
        len_bytes.copy_from_slice(header);
        let len = u32::from_be_bytes(len_bytes);
        if len > self.max {
            return Err(IpcError::FrameTooLarge {
                len: u64::from(len),
                max: self.max,
            });
        }
        // `len <= max <= u32::MAX` fits usize on every supported target.
        let total = HEADER_LEN + len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len as usize);
        match postcard::take_from_bytes::<D>(&payload) {
            Ok((msg, [])) => Ok(Some(msg)),
            Ok((_, rest)) => Err(IpcError::TrailingBytes { extra: rest.len() }),
            Err(error) => Err(IpcError::BadFrame { len, error }),
        }
    }
}

impl<D, E: Serialize> Encoder<&E> for FrameCodec<D, E> {
    type Error = IpcError;

    fn encode(&mut self, item: &E, dst: &mut BytesMut) -> Result<(), IpcError> {
        let payload = postcard::to_stdvec(item).map_err(IpcError::Encode)?;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= self.max)
            .ok_or(IpcError::FrameTooLarge {
                len: payload.len() as u64,
                max: self.max,
            })?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u32(len);
        dst.put_slice(&payload);
        Ok(())
    }
}

/// How many bytes [`FrameWriter::write_batch`] gathers before it writes
/// (it may exceed this by one frame).
pub const BATCH_BYTES: usize = 64 * 1024;

/// Reads frames of type `D` from an async byte stream.
#[derive(Debug)]
pub struct FrameReader<R, D> {
    io: R,
    buf: BytesMut,
    codec: FrameCodec<D, ()>,
}

impl<R: AsyncRead + Unpin, D: DeserializeOwned> FrameReader<R, D> {
    /// A reader with the given payload limit.
    pub fn new(io: R, max: u32) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            codec: FrameCodec::with_max(max),
        }
    }

    /// The next message; `Ok(None)` on a clean end of stream between
    /// frames, [`IpcError::Closed`] on an end of stream inside a frame.
    pub async fn read(&mut self) -> Result<Option<D>, IpcError> {
        loop {
            if let Some(msg) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(msg));
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(IpcError::Closed)
                };
            }
        }
    }

    /// Like [`read`](Self::read), but an end of stream is
    /// [`IpcError::Closed`] too.
    pub async fn read_required(&mut self) -> Result<D, IpcError> {
        self.read().await?.ok_or(IpcError::Closed)
    }

    /// Changes the message type, keeping buffered bytes (used after the
    /// handshake).
    pub fn retype<D2: DeserializeOwned>(self) -> FrameReader<R, D2> {
        FrameReader {
            io: self.io,
            buf: self.buf,
            codec: FrameCodec::with_max(self.codec.max),
        }
    }

    /// The underlying stream.
    pub fn into_inner(self) -> R {
        self.io
    }
}

/// Writes frames of type `E` to an async byte stream.
#[derive(Debug)]
pub struct FrameWriter<W, E> {
    io: W,
    buf: BytesMut,
    codec: FrameCodec<(), E>,
}

impl<W: AsyncWrite + Unpin, E: Serialize> FrameWriter<W, E> {
    /// A writer with the given payload limit.
    pub fn new(io: W, max: u32) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            codec: FrameCodec::with_max(max),
        }
    }

    /// Encodes and writes one message, and flushes.
    pub async fn write(&mut self, msg: &E) -> Result<(), IpcError> {
        self.write_batch(msg, || None).await
    }

    /// Encodes `first` and then whatever `more` yields, up to
    /// [`BATCH_BYTES`] bytes in all, and writes them with one system call
    /// (where the socket takes them), then flushes. A writer task that
    /// drains its queue this way sends many replies per write under load
    /// and one per write when idle, with no added delay.
    pub async fn write_batch(
        &mut self,
        first: &E,
        mut more: impl FnMut() -> Option<E>,
    ) -> Result<(), IpcError> {
        self.buf.clear();
        self.codec.encode(first, &mut self.buf)?;
        while self.buf.len() < BATCH_BYTES {
            let Some(next) = more() else {
                break;
            };
            self.codec.encode(&next, &mut self.buf)?;
        }
        self.io.write_all(&self.buf).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Changes the message type (used after the handshake).
    pub fn retype<E2: Serialize>(self) -> FrameWriter<W, E2> {
        FrameWriter {
            io: self.io,
            buf: BytesMut::new(),
            codec: FrameCodec::with_max(self.codec.max),
        }
    }

    /// Shuts the write side down (the peer reads end of stream).
    pub async fn shutdown(&mut self) -> Result<(), IpcError> {
        self.io.shutdown().await?;
        Ok(())
    }

    /// The underlying stream.
    pub fn into_inner(self) -> W {
        self.io
    }
}
