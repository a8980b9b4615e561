//! IBDB, the incoming backup database (seed 7.1, 3.8 item 7): an
//! append-only log of envelope records, written only by qmgr. A transaction
//! is accepted (smtps answers 250 to the final dot) only after its envelope
//! is committed here; qmgr then logs what happened to each recipient
//! (delivered, bounced, moved to DEFEDB) and finally that the transaction
//! is closed. At start, [`Ibdb::open`] replays the log and returns the
//! transactions that are still open, from which qmgr rebuilds its incoming
//! and active queues.
//!
//! The module talks to no process; qmgr calls it from its threads or async
//! tasks. Errors are [`IbdbError`]s with a [`class`](IbdbError::class);
//! nothing read from disk can make it panic or allocate more than the file
//! holds.
//!
//! # Writing: group commit
//!
//! [`Ibdb::commit`] encodes the records on the caller's thread and queues
//! them for the committer thread, which owns the current file. The
//! committer writes a *batch* of queued commits as one frame with one
//! `pwrite`, then one `fdatasync`, and only then completes every commit of
//! the batch. A commit's [`Completion`] can be waited for from a thread
//! ([`Completion::wait`]) or awaited from async code (it is a `Future`).
//! The records of one commit are contiguous in one frame, so a transaction
//! committed together with its recipients is durable entirely or not at
//! all.
//!
//! A batch closes as soon as one of these holds:
//!
//! 1. `max_open_TAs` commits ([`Options::max_open_tas`]) are waiting, or a
//!    megabyte of records;
//! 2. the oldest waiting commit has waited `max_commit_delay`
//!    ([`Options::max_commit_delay`]), counted from its arrival, so a
//!    commit that arrived during the previous `fdatasync` may be written at
//!    once;
//! 3. half as many commits are waiting as the previous batch held (at
//!    least one). The first batch after open has only rules 1 and 2.
//!
//! Rule 3 is what makes group commit fast. When a batch of N commits
//! completes, the committer wakes the N writers one by one and they come
//! back one by one. Waiting for all N would put those wake-ups and the
//! next `fdatasync` one after the other; taking the first half lets one
//! half be synced while the other half is being woken, so processor and
//! disk work overlap. A single writer is never delayed, and when the load
//! drops, one batch waits for the delay and the target follows the new
//! batch size. (Measured with 100 writer threads on a loaded two-core
//! ext4 machine (`bench/src/bin/store_bench.rs` measures it): waiting for all N gave
//! 45–85k commits/s, half 90–100k, and writing whatever is waiting at
//! once about the same as half but with more syncs.)
//!
//! Only one batch is in flight at a time; a batch is written after the
//! previous one is durable. That is what lets recovery tell a torn write
//! (only the last frame of the newest file can be one) from damage.
//!
//! Files are preallocated: a new file gets its header and
//! [`Options::prealloc_chunk`] bytes of zeros, written and synced, and when
//! a frame passes the zeros another chunk is written after it, synced with
//! the frame. Frames then overwrite allocated blocks, so most `fdatasync`s
//! write data without an inode update in the journal. Measured on ext4
//! here: a 200-byte overwrite plus `fdatasync` took 190–340 µs against
//! 265–700 µs for an append; in the throughput test one writer committed
//! 3.1–5.0k/s with preallocation against 1.2–2.7k/s without, ten 17–37k/s
//! against 13–30k/s, a hundred 55–88k/s against 48–86k/s (a shared
//! machine: the figures vary with its load). A reader takes a zero frame
//! header as the end of the log (a frame's magic is never zero).
//!
//! # Rotation and cleanup
//!
//! After a batch leaves the current file at or beyond [`Options::size`]
//! bytes, the committer starts the next file (header synced, directory
//! synced) and runs the cleanup, which removes every file that
//!
//! - is not the current file,
//! - holds no record of a transaction that is still open (a transaction
//!   is open until its closed record is durable),
//! - outlives no other file: a file holding the closed record of a
//!   transaction stays while the file with that transaction's transaction
//!   record exists (that one may be kept by another open transaction, and
//!   without the closed record recovery would bring the transaction back),
//!   and a file whose header explains another file's tail (see Recovery)
//!   stays while that file exists.
//!
//! The committer tracks this in memory: for each open transaction the
//! files it has records in, for each file the number of open transactions
//! and the files it must outlive; recovery rebuilds it. Files are removed
//! in sequence order and the directory is synced after each removal, so a
//! crash cannot undo the removal of a file and keep that of a later one.
//! [`Ibdb::cleanup`] runs the same step on demand. If starting a new file
//! fails, the committer keeps writing the current one and tries again
//! after the next batch.
//!
//! # Failures
//!
//! When writing or syncing a batch fails, every commit of the batch gets
//! the error ([`IbdbError::Io`]). After a failed `fdatasync` the state of
//! the file's pages is unknown (Linux may have dropped the dirty pages and
//! cleared the error; a retry could report success for data that is not on
//! disk), so the file is never written again: the committer truncates it
//! to its last acknowledged frame (best effort) and the next batch starts a
//! new file, whose header records where the failed file's acknowledged
//! frames end. If the new file cannot be created either, that batch fails
//! too, and the next one tries again. A commit that reported an error may
//! still be found by recovery (for example when the data reached the disk
//! but the sync reported an error and no new file recorded the end);
//! a commit that reported success is always found.
//!
//! # Recovery
//!
//! [`Ibdb::open`] takes an exclusive lock on `lock` in the directory, reads
//! every file in sequence order, and applies the records: a transaction
//! record opens a transaction, recipient and outcome records attach to an
//! open transaction, a closed record ends it. Records for a transaction
//! that is not open (its file was cleaned up, or it was closed) are
//! ignored. A transaction with fewer recipient records than its `nrcpts`
//! is dropped with a warning (possible only when a caller commits a
//! transaction and its recipients in separate commits and the second never
//! completed). The open transactions are returned in [`Recovery`], in log
//! order, each with its recipients that have no outcome yet.
//!
//! Every read ends at a frame that does not check (or a zero frame header,
//! or the end of the file). What happens then:
//!
//! | where | what follows | result |
//! | --- | --- | --- |
//! | newest file | zeros or nothing | the end of the log |
//! | newest file | garbage in which no valid frame starts | torn tail: ignored, [`RecoveryWarning::TornTail`] |
//! | any file | a valid frame, anywhere later in the file | [`IbdbError::Corrupt`], [`Damage::DamagedFrame`] |
//! | older file, its successor's header records its end | exactly that end | bytes after it (a failed or torn batch) are ignored, [`RecoveryWarning::DiscardedTail`] |
//! | older file, its successor's header records its end | an earlier end, or a frame crossing it | [`IbdbError::Corrupt`] |
//! | older file, successor does not record its end | garbage | [`IbdbError::Corrupt`], [`Damage::TornTailNotNewest`] |
//! | any file | bad header, wrong sequence number | [`IbdbError::Corrupt`] |
//! | any file | unknown version in header or frame | [`IbdbError::UnsupportedVersion`], nothing moved |
//!
//! A newest file that is empty or all zeros (a crash while it was being
//! created, before anything was written to it) is removed with
//! [`RecoveryWarning::EmptyFileRemoved`].
//!
//! A corrupt file is moved into the `corrupt/` subdirectory (never
//! skipped silently, never deleted) and `open` fails with
//! [`IbdbError::Corrupt`], so the operator sees it. The next `open`
//! proceeds without that file: its envelopes are not recovered (the seed's
//! answer is to rebuild them from CDB and the logs, 4.10.2), and any
//! transaction whose closed record was in it comes back as open, so its
//! recipients may be delivered twice. The frame checksum includes the
//! frame's file and offset, so that bytes inside a torn batch that happen
//! to look like a frame (an address can carry arbitrary text) are not
//! taken for one.
//!
//! After recovery new writes always go to a new file; a file with a torn
//! tail is never appended to. Its bytes stay in place until cleanup
//! removes the file; the new file's header records where its valid frames
//! end, and that file is kept as long as the torn one exists.
//!
//! # Files, format version 1
//!
//! The directory holds `lock`, `corrupt/`, and the log files, named by
//! their sequence number as 16 upper-case hex digits and `.ibdb`
//! (`0000000000000001.ibdb`); other names are reported as
//! [`RecoveryWarning::IgnoredFile`]. Sequence numbers start at 1; a new
//! file's number is one above every number in the directory and in
//! `corrupt/`.
//! All integers are big-endian; CRC32C is the Castagnoli CRC.
//!
//! File header, 44 bytes:
//!
//! ```text
//! offset size field
//!      0    8 magic "SMXIBDB\0"
//!      8    1 format version, 1
//!      9    7 reserved, zero
//!     16    8 sequence number of this file (as in its name)
//!     24    8 sequence number of the previous file, 0 if none
//!     32    8 where the previous file's acknowledged frames end
//!     40    4 CRC32C of bytes 0..40
//! ```
//!
//! Then frames, back to back, then (in a preallocated file) zeros:
//!
//! ```text
//! offset size field
//!      0    2 magic B1 DB
//!      2    4 payload length n, at most 16 MiB (MAX_FRAME_PAYLOAD)
//!      6    1 format version, 1
//!      7    1 frame type, 1 = batch
//!      8    n payload: records of one or more commits
//!  8 + n    4 CRC32C of (file sequence number: u64, frame offset: u64,
//!             bytes 2 .. 8 + n)
//! ```
//!
//! A record in a payload is a type byte, a `u32` body length (at most
//! 64 KiB, MAX_RECORD_BODY) and the body, in the
//! [`envelope`](crate::envelope) encoding (a *str* is a `u32` length and
//! UTF-8; ids are their printed ASCII forms):
//!
//! | type | record | body |
//! | --- | --- | --- |
//! | 1 | transaction | transaction id (19), sender str ≤ MAX_ADDRESS, MAIL params str ≤ MAX_PARAMS, size u64, arrival_us u64, nrcpts u32 |
//! | 2 | recipient | recipient id (26), address str ≤ MAX_ADDRESS, RCPT params str ≤ MAX_PARAMS |
//! | 3 | outcome | recipient id (26), outcome u8: 1 delivered, 2 bounced, 3 moved to DEFEDB |
//! | 4 | closed | transaction id (19) |
//!
//! The format version of the header and of each frame is checked against
//! [`format::FORMAT_VERSION`]; the frame's version covers its records.
//!
//! # What the caller must do
//!
//! - Commit a transaction record together with all its recipient records
//!   in one [`Ibdb::commit`], and answer 250 only after its completion
//!   reports `Ok`.
//! - Write [`Outcome::Deferred`] only after the recipient's DEFEDB entry is
//!   durable; after a crash between the two, recovery returns the
//!   recipient as open although it is in DEFEDB, so replay must check
//!   DEFEDB first.
//! - Close a transaction once every recipient has an outcome; an open
//!   transaction keeps every file it has records in. A recovered
//!   transaction whose recipients all have outcomes is returned too (with
//!   no open recipients) and should be closed.
//! - Never call [`Completion::wait`] inside an async runtime; await it.

mod error;
pub mod format;
mod recover;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use error::{Damage, IbdbError};
pub use format::{Outcome, Record};

use crate::envelope::{Recipient, Transaction};
use crate::id::{RecipientId, TransactionId};

/// Default of [`Options::size`]: 64 MiB, as in the configuration.
pub const DEFAULT_SIZE: u64 = 64 << 20;
/// Default of [`Options::max_commit_delay`]: 2 ms.
pub const DEFAULT_MAX_COMMIT_DELAY: Duration = Duration::from_millis(2);
/// Default of [`Options::max_open_tas`].
pub const DEFAULT_MAX_OPEN_TAS: usize = 1024;
/// Largest [`Options::max_commit_delay`] accepted (the configuration
/// allows 1 s).
pub const MAX_COMMIT_DELAY_LIMIT: Duration = Duration::from_secs(3600);
/// Largest [`Options::prealloc_chunk`] accepted: 1 GiB.
pub const MAX_PREALLOC_CHUNK: u64 = 1 << 30;
/// Default of [`Options::prealloc_chunk`]: 1 MiB.
pub const DEFAULT_PREALLOC_CHUNK: u64 = 1 << 20;

/// How to open an IBDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The directory of the log files (created with mode 0700 if missing).
    pub dir: PathBuf,
    /// `IBDB.size`: a file is rotated once it reaches this many bytes (a
    /// file may exceed it by one frame). The configuration requires at
    /// least 64 KB; smaller sizes are accepted here for tests.
    pub size: u64,
    /// `IBDB.max_commit_delay`: the longest a commit waits for its batch to
    /// close (not counting the previous batch's sync); 0 closes a batch as
    /// soon as the committer is free. At most [`MAX_COMMIT_DELAY_LIMIT`].
    pub max_commit_delay: Duration,
    /// `IBDB.max_open_TAs`: the most commits in one batch; a batch closes
    /// as soon as this many are waiting. At least 1.
    pub max_open_tas: usize,
    /// Bytes of zeros written ahead of the data; 0 disables preallocation.
    pub prealloc_chunk: u64,
    /// Directories on whose file systems content is written without its
    /// own sync (the CDB base and its subdirectories, see
    /// [`crate::cdb::CdbWriter::finish`]): a batch holding a commit made
    /// with [`Ibdb::commit_after_content`] first `syncfs`es each of these
    /// file systems once, then writes and syncs its frame.
    pub content_fs: Vec<PathBuf>,
}

impl Options {
    /// Options with the defaults for the log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Options {
            dir: dir.into(),
            size: DEFAULT_SIZE,
            max_commit_delay: DEFAULT_MAX_COMMIT_DELAY,
            max_open_tas: DEFAULT_MAX_OPEN_TAS,
            prealloc_chunk: DEFAULT_PREALLOC_CHUNK,
            content_fs: Vec::new(),
        }
    }
}

/// A transaction that recovery found open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    /// The transaction record.
    pub transaction: Transaction,
    /// Recipients without an outcome, by index.
    pub open: Vec<Recipient>,
    /// Recipients with an outcome (the last one logged), by index.
    pub done: Vec<(RecipientId, Outcome)>,
}

/// Something recovery noticed and worked around; qmgr should log each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryWarning {
    /// The newest file ended in a torn write (a batch that was never
    /// acknowledged): `len` bytes from `offset` were ignored. They stay in
    /// the file until cleanup removes it.
    TornTail {
        /// The file.
        path: PathBuf,
        /// Where the ignored bytes start.
        offset: u64,
        /// How many non-zero bytes (up to the last one) were ignored.
        len: u64,
    },
    /// An older file holds `len` bytes after the end of its acknowledged
    /// frames, as recorded by the next file: a batch that failed or was
    /// torn. Ignored.
    DiscardedTail {
        /// The file.
        path: PathBuf,
        /// Where the ignored bytes start.
        offset: u64,
        /// How many non-zero bytes were ignored.
        len: u64,
    },
    /// The newest file was empty or all zeros (a crash during its creation)
    /// and was removed.
    EmptyFileRemoved {
        /// The file.
        path: PathBuf,
    },
    /// A transaction had fewer recipient records than it announced and was
    /// dropped.
    IncompleteTransaction {
        /// The transaction.
        id: TransactionId,
        /// Recipients announced.
        nrcpts: u32,
        /// Recipient records found.
        found: usize,
    },
    /// A second transaction record for an open transaction; the first was
    /// kept.
    DuplicateTransaction {
        /// The transaction.
        id: TransactionId,
        /// The file of the duplicate.
        path: PathBuf,
    },
    /// A directory entry that is not an IBDB file was left alone.
    IgnoredFile {
        /// The entry.
        path: PathBuf,
    },
}

impl std::fmt::Display for RecoveryWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryWarning::TornTail { path, offset, len } => write!(
                f,
                "{}: torn tail of {len} bytes at offset {offset} ignored (unacknowledged batch)",
                path.display()
            ),
            RecoveryWarning::DiscardedTail { path, offset, len } => write!(
                f,
                "{}: {len} bytes after the recorded end at offset {offset} ignored (failed or torn batch)",
                path.display()
            ),
            RecoveryWarning::EmptyFileRemoved { path } => {
                write!(f, "{}: empty file removed", path.display())
            }
            RecoveryWarning::IncompleteTransaction { id, nrcpts, found } => write!(
                f,
                "transaction {id}: {found} of {nrcpts} recipient records found; dropped"
            ),
            RecoveryWarning::DuplicateTransaction { id, path } => write!(
                f,
                "transaction {id}: second transaction record in {} ignored",
                path.display()
            ),
            RecoveryWarning::IgnoredFile { path } => {
                write!(f, "{}: not an IBDB file; ignored", path.display())
            }
        }
    }
}

/// What [`Ibdb::open`] recovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Open transactions, in log order.
    pub open: Vec<OpenTransaction>,
    /// What was worked around.
    pub warnings: Vec<RecoveryWarning>,
    /// Log files read.
    pub files_read: usize,
    /// Records read from valid frames.
    pub records: u64,
    /// Records about transactions that were not open (normal after
    /// cleanup).
    pub ignored_records: u64,
}

/// What a cleanup removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// The removed files, in sequence order.
    pub removed: Vec<PathBuf>,
    /// Log files left (including the current one).
    pub remaining: usize,
}

/// Counters since open, for statistics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Commits acknowledged.
    pub commits: u64,
    /// Records in acknowledged commits.
    pub records: u64,
    /// Batches written and synced (one `fdatasync` each).
    pub syncs: u64,
    /// `syncfs` calls made for content before a batch.
    pub content_syncs: u64,
    /// Bytes of acknowledged frames.
    pub bytes: u64,
    /// The largest batch, in commits.
    pub max_batch: u64,
    /// Batches that failed.
    pub failed_batches: u64,
    /// Commits that failed with their batch.
    pub failed_commits: u64,
    /// Files started since open (the one started by open included).
    pub files_created: u64,
    /// Failed attempts to start a file.
    pub create_failures: u64,
    /// Files removed by cleanup.
    pub files_removed: u64,
    /// Cleanups (automatic, after rotation) that failed.
    pub cleanup_failures: u64,
    /// Sequence number of the current file (0 if none).
    pub current_file: u64,
    /// Transactions open in memory.
    pub open_transactions: u64,
}

/// The outcome of a queued operation: wait for it with
/// [`wait`](Self::wait) on a thread, or `.await` it. Dropping it does not
/// cancel the operation.
#[derive(Debug)]
#[must_use = "a commit is durable only when its completion reports Ok"]
pub struct Completion<T> {
    rx: oneshot::Receiver<Result<T, IbdbError>>,
}

impl<T> Completion<T> {
    fn ready(result: Result<T, IbdbError>) -> Self {
        let (tx, rx) = oneshot::channel();
        // Cannot fail: the receiver is alive, in `rx`.
        let _ = tx.send(result);
        Completion { rx }
    }

    /// Blocks the thread until the operation completes. Must not be called
    /// from async code (tokio panics if a runtime is entered on this
    /// thread); await the completion there.
    pub fn wait(self) -> Result<T, IbdbError> {
        self.rx.blocking_recv().unwrap_or(Err(IbdbError::Stopped))
    }

    /// The underlying channel, for `select!` and the like. It reports a
    /// receive error only if the committer thread died.
    pub fn into_receiver(self) -> oneshot::Receiver<Result<T, IbdbError>> {
        self.rx
    }
}

impl<T> Future for Completion<T> {
    type Output = Result<T, IbdbError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(IbdbError::Stopped)))
    }
}

/// A handle to an open IBDB. Cheap to clone; all clones share one
/// committer thread, which stops (after writing every queued commit) when
/// [`close`](Self::close) is called or the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Ibdb {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: Arc<writer::Queue>,
    counters: Arc<writer::Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

impl Ibdb {
    /// Opens (creating if needed) the IBDB in `opts.dir`, recovers it (see
    /// "Recovery" in the module documentation), starts a new file and the
    /// committer thread. Fails with [`IbdbError::Corrupt`] after moving a
    /// damaged file aside, [`IbdbError::UnsupportedVersion`],
    /// [`IbdbError::Locked`] or [`IbdbError::Io`].
    pub fn open(opts: Options) -> Result<(Ibdb, Recovery), IbdbError> {
        if opts.max_open_tas == 0 {
            return Err(IbdbError::Options("max_open_TAs must be at least 1"));
        }
        if opts.size == 0 {
            return Err(IbdbError::Options("size must be at least 1 byte"));
        }
        if opts.prealloc_chunk > MAX_PREALLOC_CHUNK {
            return Err(IbdbError::Options("prealloc_chunk must be at most 1 GiB"));
        }
        if opts.max_commit_delay > MAX_COMMIT_DELAY_LIMIT {
            return Err(IbdbError::Options(
                "max_commit_delay must be at most 1 hour",
            ));
        }
        let dir = opts.dir.clone();
        let (writer, recovery) = writer::Writer::open(opts)?;
        let queue = Arc::new(writer::Queue::default());
        let counters = writer.counters();
        let q = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("ibdb-commit".into())
            .spawn(move || writer.run(&q))
            .map_err(|e| IbdbError::io(&dir, "start committer thread", e))?;
        let ibdb = Ibdb {
            inner: Arc::new(Inner {
                queue,
                counters,
                thread: Mutex::new(Some(thread)),
                dir,
            }),
        };
        Ok((ibdb, recovery))
    }

    /// Queues `records` as one commit: they are written contiguously in
    /// one batch and become durable together. An empty commit completes at
    /// once. A record over its field limits, or a commit larger than
    /// [`format::MAX_FRAME_PAYLOAD`], fails at once and writes nothing.
    pub fn commit(&self, records: &[Record]) -> Completion<()> {
        self.queue_commit(records, false)
    }

    /// Like [`commit`](Self::commit), for an envelope whose content was
    /// written without a sync ([`crate::cdb::CdbWriter::finish`]): its
    /// batch first makes the [`Options::content_fs`] file systems durable
    /// with `syncfs`, so that content is on disk before the envelope that
    /// names it, and both are when the commit completes. One `syncfs`
    /// serves every such commit of the batch. Without `content_fs` it is a
    /// plain commit.
    pub fn commit_after_content(&self, records: &[Record]) -> Completion<()> {
        self.queue_commit(records, true)
    }

    fn queue_commit(&self, records: &[Record], content: bool) -> Completion<()> {
        if records.is_empty() {
            return Completion::ready(Ok(()));
        }
        let mut bytes = Vec::with_capacity(records.len() * 160);
        let mut touches = Vec::with_capacity(1);
        for (index, r) in records.iter().enumerate() {
            if let Err(source) = r.encode(&mut bytes) {
                return Completion::ready(Err(IbdbError::Invalid { index, source }));
            }
            writer::Touch::push(&mut touches, r);
        }
        if bytes.len() > format::MAX_FRAME_PAYLOAD {
            return Completion::ready(Err(IbdbError::TooLarge {
                len: bytes.len(),
                max: format::MAX_FRAME_PAYLOAD,
            }));
        }
        let (tx, rx) = oneshot::channel();
        let queued = writer::Queued::new(bytes, touches, records.len(), content, tx);
        match self.inner.queue.push(queued) {
            Ok(()) => Completion { rx },
            Err(e) => Completion::ready(Err(e)),
        }
    }

    /// Removes the files in which no transaction is open (see "Rotation
    /// and cleanup"). Runs on the committer thread, between batches.
    pub fn cleanup(&self) -> Completion<CleanupReport> {
        let (tx, rx) = oneshot::channel();
        match self.inner.queue.request_cleanup(tx) {
            Ok(()) => Completion { rx },
            Err(e) => Completion::ready(Err(e)),
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The IBDB directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes every queued commit, stops the committer thread and waits for
    /// it. Later commits (from any clone) fail with [`IbdbError::Closed`].
    /// Blocks; from async code call it via `spawn_blocking`. Reports
    /// [`IbdbError::Stopped`] if the committer thread had died.
    pub fn close(&self) -> Result<(), IbdbError> {
        self.inner.shutdown()
    }
}

impl Inner {
    fn shutdown(&self) -> Result<(), IbdbError> {
        self.queue.shutdown();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match handle {
            Some(h) => h.join().map_err(|_| IbdbError::Stopped),
            None => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Errors were reported to the commits; nobody is left to tell.
        let _ = self.shutdown();
    }
}
