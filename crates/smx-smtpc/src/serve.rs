//! The delivery agent service: accepts qmgr links on a Unix socket and
//! answers their delivery requests.
//!
//! Each accepted connection runs the [`QmgrSmtpc`] handshake (bounded by
//! [`HANDSHAKE_TIMEOUT`]); then every request is delivered in its own task,
//! so many deliveries run at once (bounded by the [`Deliverer`]'s
//! `max_concurrent`), and each reply is written as soon as its delivery
//! ends, in any order (the link matches replies to requests by id). A link
//! that fails is dropped; deliveries in progress for it finish and their
//! replies are discarded (qmgr retries what it did not hear back about).
//! Idle sessions are tidied every second.

use std::sync::Arc;
use std::time::Duration;

use smx_ipc::qmgr_smtpc::{QmgrSmtpc, SmtpcReply, SmtpcRequest};
use smx_ipc::{DEFAULT_MAX_FRAME, Server};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::deliver::Deliverer;

/// Longest wait for a connecting qmgr's handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves qmgr links accepted on `listener` until the listener fails
/// persistently; normally runs for the life of the process.
pub async fn serve(listener: UnixListener, deliverer: Arc<Deliverer>) -> std::io::Result<()> {
    let tidy = {
        let d = Arc::clone(&deliverer);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                d.tidy();
            }
        })
    };
    let mut errors = 0u32;
    let result = loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                errors = 0;
                tokio::spawn(link(stream, Arc::clone(&deliverer)));
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, "accepting a qmgr link failed");
                if errors > 100 {
                    break Err(e);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tidy.abort();
    result
}

async fn link(stream: UnixStream, deliverer: Arc<Deliverer>) {
    let server = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        Server::<QmgrSmtpc>::accept(stream, DEFAULT_MAX_FRAME),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "qmgr link handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!("qmgr link handshake timed out");
            return;
        }
    };
    let (mut reader, mut writer) = server.into_split();
    let (tx, mut rx) = mpsc::channel::<(u64, SmtpcReply)>(64);
    let write_task = tokio::spawn(async move {
        while let Some((id, body)) = rx.recv().await {
            let frame = smx_ipc::link::ServerFrame::Reply { id, body };
            let more = || {
                rx.try_recv()
                    .ok()
                    .map(|(id, body)| smx_ipc::link::ServerFrame::Reply { id, body })
            };
            if let Err(e) = writer.write_batch(&frame, more).await {
                tracing::warn!(error = %e, "writing to qmgr failed");
                break;
            }
        }
    });
    loop {
        match reader.read().await {
            Ok(Some(req)) => {
                let d = Arc::clone(&deliverer);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let reply = match req.body {
                        SmtpcRequest::Deliver(delivery) => {
                            SmtpcReply::Delivered(d.deliver(&delivery).await)
                        }
                    };
                    let _ = tx.send((req.id, reply)).await;
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "qmgr link failed");
                break;
            }
        }
    }
    drop(tx);
    let _ = write_task.await;
}
