//! The handshake that opens every link.
//!
//! ```text
//! client (connecting side)              server (accepting side)
//!   Hello { service, version }  ──────▶  checks service and version
//!                               ◀──────  HelloReply::Ack { service, version }
//!                                        or HelloReply::Reject(reason), close
//! ```
//!
//! `service` names the link (e.g. [`ServiceName::SmtpsQmgr`]: smtps talking
//! to qmgr), so a process that connects to the wrong socket is turned away
//! at once instead of misreading frames. The server accepts exactly
//! [`PROTOCOL_VERSION`]; the client checks the ack in the same way. Every
//! failure is an [`IpcError`] on the side that sees it, and both functions
//! consume the stream so that a failed link is dropped, i.e. closed.
//!
//! The encoding of [`Hello`] and [`HelloReply`] never changes between
//! protocol versions: enums here only get variants appended.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::IpcError;
use crate::frame::{FrameReader, FrameWriter};

/// The protocol version spoken by this build; bumped on any incompatible
/// change of a message type.
pub const PROTOCOL_VERSION: u32 = 2;

/// The link a client asks for in its [`Hello`]. Variants are only ever
/// appended (their index is on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceName {
    /// smtps → qmgr: sessions, transactions, throttling
    /// ([`crate::smtps_qmgr`]).
    SmtpsQmgr,
    /// smtps → smar: policy checks ([`crate::smtps_smar`]).
    SmtpsSmar,
    /// qmgr → smar: routing and alias expansion ([`crate::qmgr_smar`]).
    QmgrSmar,
    /// qmgr → smtpc: delivery transactions ([`crate::qmgr_smtpc`]).
    QmgrSmtpc,
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceName::SmtpsQmgr => "smtps-qmgr",
            ServiceName::SmtpsSmar => "smtps-smar",
            ServiceName::QmgrSmar => "qmgr-smar",
            ServiceName::QmgrSmtpc => "qmgr-smtpc",
        })
    }
}

/// The first frame from the connecting side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The link the client wants.
    pub service: ServiceName,
    /// The client's protocol version.
    pub version: u32,
}

/// Why a server turned a [`Hello`] down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloRejection {
    /// The client asked for another link than this socket serves.
    WrongService {
        /// What this socket serves.
        offered: ServiceName,
        /// What the client asked for.
        requested: ServiceName,
    },
    /// The client's protocol version is not the server's.
    UnsupportedVersion {
        /// The version the server speaks.
        supported: u32,
        /// The version the client sent.
        requested: u32,
    },
}

impl std::fmt::Display for HelloRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloRejection::WrongService { offered, requested } => {
                write!(f, "wrong service {requested}, this socket serves {offered}")
            }
            HelloRejection::UnsupportedVersion {
                supported,
                requested,
            } => write!(
                f,
                "unsupported protocol version {requested}, server speaks {supported}"
            ),
        }
    }
}

/// The first frame from the accepting side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The link is up.
    Ack {
        /// The service, as the server sees it.
        service: ServiceName,
        /// The server's protocol version.
        version: u32,
    },
    /// The link is refused; the server closes it after this frame.
    Reject(HelloRejection),
}

/// Client side: sends `Hello { service, PROTOCOL_VERSION }` and waits for
/// the ack. On success returns the reader and writer, ready for the link's
/// message types (see [`FrameReader::retype`]).
pub async fn client<R, W>(
    mut reader: FrameReader<R, HelloReply>,
    mut writer: FrameWriter<W, Hello>,
    service: ServiceName,
) -> Result<(FrameReader<R, HelloReply>, FrameWriter<W, Hello>), IpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer
        .write(&Hello {
            service,
            version: PROTOCOL_VERSION,
        })
        .await?;
    match reader.read_required().await? {
        HelloReply::Reject(why) => Err(IpcError::Rejected(why)),
        HelloReply::Ack { service: got, .. } if got != service => Err(IpcError::WrongService {
            expected: service,
            got,
        }),
        HelloReply::Ack { version, .. } if version != PROTOCOL_VERSION => {
            Err(IpcError::UnsupportedVersion {
                got: version,
                supported: PROTOCOL_VERSION,
            })
        }
        HelloReply::Ack { .. } => Ok((reader, writer)),
    }
}

/// Server side: reads the client's [`Hello`], answers it, and on a
/// mismatch returns the error after sending the rejection (the caller
/// drops the stream, which closes the link).
pub async fn server<R, W>(
    mut reader: FrameReader<R, Hello>,
    mut writer: FrameWriter<W, HelloReply>,
    service: ServiceName,
) -> Result<(FrameReader<R, Hello>, FrameWriter<W, HelloReply>), IpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = reader.read_required().await?;
    let (rejection, error) = if hello.service != service {
        (
            HelloRejection::WrongService {
                offered: service,
                requested: hello.service,
            },
            IpcError::WrongService {
                expected: service,
                got: hello.service,
            },
        )
    } else if hello.version != PROTOCOL_VERSION {
        (
            HelloRejection::UnsupportedVersion {
                supported: PROTOCOL_VERSION,
                requested: hello.version,
            },
            IpcError::UnsupportedVersion {
                got: hello.version,
                supported: PROTOCOL_VERSION,
            },
        )
    } else {
        writer
            .write(&HelloReply::Ack {
                service,
                version: PROTOCOL_VERSION,
            })
            .await?;
        return Ok((reader, writer));
    };
    // Best effort: the client may already be gone; the error that matters
    // is the mismatch.
    if let Err(e) = writer.write(&HelloReply::Reject(rejection)).await {
        tracing::debug!(error = %e, "could not send handshake rejection");
    }
    let _ = writer.shutdown().await;
    tracing::warn!(%error, "IPC handshake refused");
    Err(error)
}
