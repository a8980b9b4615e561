//! Passing file descriptors over a Unix stream socket with `SCM_RIGHTS`:
//! mcp binds the listening sockets (it owns privileges, STYLE habit 7) and
//! passes them to smtps (ARCHITECTURE.md section 2).
//!
//! One descriptor per message; the message's data is one byte
//! ([`FD_MARKER`]) because a stream socket cannot carry control data
//! without any data. The functions work on blocking sockets
//! (`std::os::unix::net::UnixStream`); [`send_fd_async`] and
//! [`recv_fd_async`] wait for readiness on a tokio socket. Received
//! descriptors are close-on-exec. Errors are [`IpcError::Io`] (the
//! `sendmsg`/`recvmsg` errno), [`IpcError::Closed`] (end of stream) or
//! [`IpcError::NoFd`] (a message without a descriptor).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, sendmsg};
use tokio::io::Interest;

use crate::IpcError;

/// The data byte sent with each descriptor.
pub const FD_MARKER: u8 = b'F';

/// Sends `fd` over `sock` (a connected Unix stream socket).
pub fn send_fd(sock: &impl AsFd, fd: BorrowedFd<'_>) -> Result<(), IpcError> {
    Ok(send_fd_io(sock.as_fd(), fd)?)
}

/// Receives one descriptor from `sock`.
pub fn recv_fd(sock: &impl AsFd) -> Result<OwnedFd, IpcError> {
    recv_fd_io(sock.as_fd())?
}

/// [`send_fd`] on a tokio socket: waits until it is writable.
pub async fn send_fd_async(
    sock: &tokio::net::UnixStream,
    fd: BorrowedFd<'_>,
) -> Result<(), IpcError> {
    Ok(sock
        .async_io(Interest::WRITABLE, || send_fd_io(sock.as_fd(), fd))
        .await?)
}

/// [`recv_fd`] on a tokio socket: waits until it is readable.
pub async fn recv_fd_async(sock: &tokio::net::UnixStream) -> Result<OwnedFd, IpcError> {
    sock.async_io(Interest::READABLE, || recv_fd_io(sock.as_fd()))
        .await?
}

// ---- helpers -------------------------------------------------------------

fn send_fd_io(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(&[FD_MARKER])];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    if sent == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(())
}

/// The outer `io::Result` is the syscall (so that `WouldBlock` reaches
/// tokio's readiness loop); the inner result is the message's content.
fn recv_fd_io(sock: BorrowedFd<'_>) -> io::Result<Result<OwnedFd, IpcError>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    // Room for a few descriptors, so that a peer sending more than one does
    // not make us lose (leak) the extras: they are received and closed.
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let bytes = msg.bytes;
    let mut received: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed `raw` in our descriptor
                // table for this SCM_RIGHTS message; nothing else in the
                // process knows it, so taking sole ownership is sound.
                #[allow(unsafe_code)]
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                received.push(owned);
            }
        }
    }
    if bytes == 0 && received.is_empty() {
        return Ok(Err(IpcError::Closed));
    }
    if received.len() > 1 {
        tracing::warn!(
            count = received.len(),
            "received several descriptors in one message; keeping the first"
        );
    }
    // Extra descriptors are closed when `received` drops.
    Ok(received.into_iter().next().ok_or(IpcError::NoFd))
}
