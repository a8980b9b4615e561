//! Streaming a message's content from CDB.
//!
//! A blocking task (`spawn_blocking`) opens the CDB file and reads it in
//! [`CHUNK`]-byte pieces into a channel of [`QUEUE`] pieces, so at most
//! `(QUEUE + 2) * CHUNK` bytes of content are in memory per delivery
//! whatever the message size: the queue, the piece the reader is filling
//! and the piece being sent. Dropping the [`Content`] stops the reader at
//! its next piece.

use smx_store::cdb::Cdb;
use smx_store::id::TransactionId;
use std::io::Read;
use tokio::sync::mpsc;

/// Bytes per piece read from CDB (and per BDAT chunk).
pub const CHUNK: usize = 64 * 1024;

/// Pieces read ahead.
pub const QUEUE: usize = 2;

/// A content stream; see the module doc.
#[derive(Debug)]
pub struct Content {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    peeked: Option<Vec<u8>>,
    done: bool,
}

impl Content {
    /// Starts reading the content of `ta` from `cdb`.
    pub fn open(cdb: &Cdb, ta: TransactionId) -> Content {
        let (tx, rx) = mpsc::channel(QUEUE);
        let cdb = cdb.clone();
        tokio::task::spawn_blocking(move || {
            let mut reader = match cdb.open_reader(ta) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0;
                while n < CHUNK {
                    match reader.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Err(format!(
                                "reading {}: {e}",
                                reader.path().display()
                            )));
                            return;
                        }
                    }
                }
                if n == 0 {
                    return;
                }
                buf.truncate(n);
                let last = n < CHUNK;
                if tx.blocking_send(Ok(buf)).is_err() || last {
                    return;
                }
            }
        });
        Content {
            rx,
            peeked: None,
            done: false,
        }
    }

    /// The next piece; `Ok(None)` at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        if let Some(p) = self.peeked.take() {
            return Ok(Some(p));
        }
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Ok(p)) => Ok(Some(p)),
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }

    /// Whether another piece follows (reads it ahead).
    pub async fn has_more(&mut self) -> Result<bool, String> {
        if self.peeked.is_some() {
            return Ok(true);
        }
        match self.next().await? {
            Some(p) => {
                self.peeked = Some(p);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
