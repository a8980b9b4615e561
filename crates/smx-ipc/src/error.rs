//! The error type of the crate: one enum for framing, handshake, request
//! and fd-passing failures. Each variant says what went wrong with enough
//! context to log it; [`IpcError::class`] says whether to retry.

use std::io;
use std::time::Duration;

use smx_proto::Class;

use crate::hello::{HelloRejection, ServiceName};

/// Why a link stopped working; carried by [`IpcError::LinkDown`] to every
/// request that was outstanding when the link failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkDown {
    /// The peer closed the connection.
    Closed,
    /// The peer sent a frame that could not be read (too large, not a
    /// message of the expected type); the link was closed.
    BadFrame,
    /// Reading or writing the socket failed with this error kind.
    Io(io::ErrorKind),
    /// The client was dropped while the request was in flight.
    Shutdown,
}

impl std::fmt::Display for LinkDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkDown::Closed => f.write_str("peer closed the link"),
            LinkDown::BadFrame => f.write_str("peer sent a bad frame"),
            LinkDown::Io(kind) => write!(f, "I/O error: {kind}"),
            LinkDown::Shutdown => f.write_str("client shut down"),
        }
    }
}

/// Everything that can go wrong on a link.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// Reading or writing the socket failed.
    #[error("IPC I/O error: {0}")]
    Io(#[from] io::Error),
    /// A frame declares (or would need) a payload larger than the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The declared or encoded payload length.
        len: u64,
        /// The configured maximum.
        max: u32,
    },
    /// A frame's payload is not a message of the expected type.
    #[error("undecodable frame of {len} bytes: {error}")]
    BadFrame {
        /// The payload length.
        len: u32,
        /// What postcard reported.
        error: postcard::Error,
    },
    /// A frame's payload decodes to a message but has bytes left over.
    #[error("frame has {extra} bytes after the message")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
    /// A message could not be encoded (a bug in a `Serialize` impl; the
    /// derived ones do not fail).
    #[error("cannot encode message: {0}")]
    Encode(postcard::Error),
    /// The peer closed the link (EOF), inside a frame or between frames
    /// where one was required (e.g. during the handshake).
    #[error("peer closed the link")]
    Closed,
    /// The peer asked for a different service than this side offers.
    #[error("peer wants service {got}, this side is {expected}")]
    WrongService {
        /// The service this side offers or expects.
        expected: ServiceName,
        /// The service the peer named.
        got: ServiceName,
    },
    /// The peer speaks a protocol version this side does not support.
    #[error("peer speaks protocol version {got}, this side supports {supported}")]
    UnsupportedVersion {
        /// The peer's version.
        got: u32,
        /// The version this side speaks.
        supported: u32,
    },
    /// The server turned the handshake down.
    #[error("handshake rejected by peer: {0}")]
    Rejected(HelloRejection),
    /// No reply arrived in time; the request id is forgotten, a late reply
    /// is dropped.
    #[error("request {id} got no reply within {after:?}")]
    Timeout {
        /// The request id.
        id: u64,
        /// The timeout that expired.
        after: Duration,
    },
    /// The link failed; the request may or may not have reached the peer.
    #[error("link down: {0}")]
    LinkDown(LinkDown),
    /// A received descriptor message carried no descriptor.
    #[error("message carried no file descriptor")]
    NoFd,
}

impl IpcError {
    /// Whether retrying (usually after reconnecting) can succeed. Every IPC
    /// failure is temporary — the peer gets restarted by mcp — except a
    /// version or service mismatch and an encoding bug, which need an
    /// operator (or a developer).
    pub fn class(&self) -> Class {
        match self {
            IpcError::WrongService { .. }
            | IpcError::UnsupportedVersion { .. }
            | IpcError::Encode(_) => Class::Permanent,
            IpcError::Rejected(r) => match r {
                HelloRejection::WrongService { .. } | HelloRejection::UnsupportedVersion { .. } => {
                    Class::Permanent
                }
            },
            _ => Class::Temporary,
        }
    }

    /// The [`LinkDown`] cause this error stands for when it ends a link.
    pub(crate) fn link_down(&self) -> LinkDown {
        match self {
            IpcError::Io(e) => LinkDown::Io(e.kind()),
            IpcError::Closed => LinkDown::Closed,
            IpcError::LinkDown(d) => *d,
            _ => LinkDown::BadFrame,
        }
    }
}
