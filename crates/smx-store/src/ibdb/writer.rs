//! The committer: the queue between callers and the committer thread, and
//! the thread's state (current file, preallocation, rotation, the per-file
//! count of open transactions, cleanup). The batching rules and failure
//! handling are described in the [parent module](super).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::format::{FileHeader, FrameBuilder, HEADER_LEN, MAX_FRAME_PAYLOAD, Record};
use super::{CleanupReport, IbdbError, Options, Recovery, Stats, recover};
use crate::id::TransactionId;

/// Name of the lock file in the IBDB directory.
pub(super) const LOCK_NAME: &str = "lock";
/// Name of the subdirectory for damaged files.
pub(super) const CORRUPT_DIR: &str = "corrupt";
/// Waiting records that close a batch regardless of count and time.
const BATCH_BYTES: usize = 1 << 20;
/// Size of the zero buffer used for preallocation.
const ZERO_BUF: usize = 64 << 10;

/// The file name of sequence number `seq`.
pub(super) fn file_name(seq: u64) -> String {
    format!("{seq:016X}.ibdb")
}

/// What a commit does to the open-transaction bookkeeping, computed on the
/// caller's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Touch {
    /// A transaction record: the transaction is open in this file.
    Open(TransactionId),
    /// A record of a transaction: the file holds a record of it.
    Ref(TransactionId),
    /// A closed record: the transaction no longer holds any file.
    Close(TransactionId),
}

impl Touch {
    /// Appends the touch of `r`, skipping a reference right after one to
    /// the same transaction (a transaction and its recipients are one).
    pub(super) fn push(v: &mut Vec<Touch>, r: &Record) {
        let id = r.transaction_id();
        let t = match r {
            Record::Transaction(_) => Touch::Open(id),
            Record::Closed(_) => Touch::Close(id),
            Record::Recipient(_) | Record::Outcome { .. } => Touch::Ref(id),
        };
        if t == Touch::Ref(id)
            && matches!(v.last(), Some(Touch::Open(x) | Touch::Ref(x)) if *x == id)
        {
            return;
        }
        v.push(t);
    }
}

/// One commit waiting for its batch.
#[derive(Debug)]
pub(super) struct Queued {
    bytes: Vec<u8>,
    touches: Vec<Touch>,
    records: usize,
    /// Content must be synced before this commit's frame.
    content: bool,
    arrived: Instant,
    tx: oneshot::Sender<Result<(), IbdbError>>,
}

impl Queued {
    pub(super) fn new(
        bytes: Vec<u8>,
        touches: Vec<Touch>,
        records: usize,
        content: bool,
        tx: oneshot::Sender<Result<(), IbdbError>>,
    ) -> Self {
        Queued {
            bytes,
            touches,
            records,
            content,
            arrived: Instant::now(),
            tx,
        }
    }
}

type CleanupTx = oneshot::Sender<Result<CleanupReport, IbdbError>>;

/// The queue between callers and the committer thread.
#[derive(Debug, Default)]
pub(super) struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    pending: VecDeque<Queued>,
    bytes: usize,
    /// The committer sleeps on the condition variable (a notification
    /// costs a system call, so callers only send one when it does).
    sleeping: bool,
    /// While sleeping, wake the committer when this many commits are
    /// waiting (it sleeps towards a deadline otherwise).
    wake_at: usize,
    cleanups: Vec<CleanupTx>,
    /// No more commits are accepted; the committer drains and stops.
    shutdown: bool,
    /// The committer thread is gone.
    stopped: bool,
}

/// What the committer should do after [`Queue::next`].
struct Next {
    cleanups: Vec<CleanupTx>,
    done: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent across a panic of a holder: every
        // mutation is a single push or pop.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn push(&self, q: Queued) -> Result<(), IbdbError> {
        let mut st = self.lock();
        if st.shutdown {
            return Err(IbdbError::Closed);
        }
        if st.stopped {
            return Err(IbdbError::Stopped);
        }
        st.bytes += q.bytes.len();
        st.pending.push_back(q);
        let n = st.pending.len();
        let wake = st.sleeping && (n >= st.wake_at || st.bytes >= BATCH_BYTES);
        drop(st);
        if wake {
            self.cv.notify_one();
        }
        Ok(())
    }

    pub(super) fn request_cleanup(&self, tx: CleanupTx) -> Result<(), IbdbError> {
        let mut st = self.lock();
        if st.shutdown {
            return Err(IbdbError::Closed);
        }
        if st.stopped {
            return Err(IbdbError::Stopped);
        }
        st.cleanups.push(tx);
        drop(st);
        self.cv.notify_one();
        Ok(())
    }

    pub(super) fn shutdown(&self) {
        self.lock().shutdown = true;
        self.cv.notify_one();
    }

    /// Waits until a batch closes (see the module documentation) and moves
    /// it into `out`; or until cleanups are requested; or until shut down
    /// with nothing left.
    fn next(&self, out: &mut Vec<Queued>, target: usize, delay: Duration, max: usize) -> Next {
        let target = target.clamp(1, max);
        let mut st = self.lock();
        loop {
            if st.pending.is_empty() {
                if st.shutdown || !st.cleanups.is_empty() {
                    break;
                }
                st.wake_at = 1;
                st.sleeping = true;
                st = self.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
                st.sleeping = false;
                continue;
            }
            let now = Instant::now();
            let deadline = st.pending.front().map_or(now, |q| q.arrived + delay);
            if st.pending.len() >= target
                || st.bytes >= BATCH_BYTES
                || st.shutdown
                || now >= deadline
            {
                break;
            }
            st.wake_at = target;
            st.sleeping = true;
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.sleeping = false;
        }
        let mut bytes = 0;
        while let Some(q) = st.pending.front() {
            if out.len() >= max || (!out.is_empty() && bytes + q.bytes.len() > MAX_FRAME_PAYLOAD) {
                break;
            }
            bytes += q.bytes.len();
            if let Some(q) = st.pending.pop_front() {
                out.push(q);
            }
        }
        st.bytes = st.bytes.saturating_sub(bytes);
        Next {
            cleanups: std::mem::take(&mut st.cleanups),
            done: st.shutdown && st.pending.is_empty(),
        }
    }

    /// Marks the committer gone and fails whatever is still queued.
    fn stop(&self) {
        let mut st = self.lock();
        st.stopped = true;
        let pending = std::mem::take(&mut st.pending);
        let cleanups = std::mem::take(&mut st.cleanups);
        st.bytes = 0;
        drop(st);
        for q in pending {
            let _ = q.tx.send(Err(IbdbError::Stopped));
        }
        for c in cleanups {
            let _ = c.send(Err(IbdbError::Stopped));
        }
    }
}

/// Stops the queue when the committer thread ends, also by a panic, so
/// that no caller waits forever.
struct StopGuard<'a>(&'a Queue);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The counters behind [`Stats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    commits: AtomicU64,
    records: AtomicU64,
    syncs: AtomicU64,
    content_syncs: AtomicU64,
    bytes: AtomicU64,
    max_batch: AtomicU64,
    failed_batches: AtomicU64,
    failed_commits: AtomicU64,
    files_created: AtomicU64,
    create_failures: AtomicU64,
    files_removed: AtomicU64,
    cleanup_failures: AtomicU64,
    current_file: AtomicU64,
    open_transactions: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            commits: g(&self.commits),
            records: g(&self.records),
            syncs: g(&self.syncs),
            content_syncs: g(&self.content_syncs),
            bytes: g(&self.bytes),
            max_batch: g(&self.max_batch),
            failed_batches: g(&self.failed_batches),
            failed_commits: g(&self.failed_commits),
            files_created: g(&self.files_created),
            create_failures: g(&self.create_failures),
            files_removed: g(&self.files_removed),
            cleanup_failures: g(&self.cleanup_failures),
            current_file: g(&self.current_file),
            open_transactions: g(&self.open_transactions),
        }
    }
}

fn add(a: &AtomicU64, n: usize) {
    a.fetch_add(n as u64, Ordering::Relaxed);
}

/// What the committer knows about a log file.
#[derive(Debug)]
pub(super) struct FileTrack {
    pub(super) path: PathBuf,
    /// Open transactions with a record in the file.
    pub(super) open: usize,
    /// Earlier files that must be gone before this one may go: files with
    /// the transaction record of a transaction closed in this one (else
    /// recovery would find the transaction without its close and bring it
    /// back), and the file whose tail this file's header explains.
    pub(super) outlive: BTreeSet<u64>,
}

/// The file before the next one to be created, for the new header.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Prev {
    /// Its sequence number; 0 if none.
    pub(super) seq: u64,
    /// Where its acknowledged frames end.
    pub(super) valid_end: u64,
    /// Whether bytes may follow that end (a failed or torn batch).
    pub(super) tail: bool,
}

#[derive(Debug)]
struct Current {
    seq: u64,
    path: PathBuf,
    file: File,
    /// End of the last acknowledged frame.
    pos: u64,
    /// End of the preallocated zeros (or of the file).
    alloc_end: u64,
}

/// The committer thread's state.
#[derive(Debug)]
pub(super) struct Writer {
    dir: PathBuf,
    dir_file: File,
    _lock: File,
    size: u64,
    delay: Duration,
    max_open_tas: usize,
    chunk: u64,
    current: Option<Current>,
    /// The previous file, while there is no current one.
    prev: Prev,
    rotate_due: bool,
    next_seq: u64,
    files: BTreeMap<u64, FileTrack>,
    open_tas: HashMap<TransactionId, Vec<u64>>,
    frame: FrameBuilder,
    zeros: Vec<u8>,
    counters: Arc<Counters>,
    /// One open directory per file system of `Options::content_fs`.
    content_fs: Vec<(PathBuf, File)>,
}

impl Writer {
    /// Locks and recovers the directory, starts a new file and removes the
    /// files nothing is open in.
    pub(super) fn open(opts: Options) -> Result<(Writer, Recovery), IbdbError> {
        let dir = opts.dir;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| IbdbError::io(&dir, "create directory", e))?;
        // The directory's own entry must be durable before anything in it
        // is acknowledged; synced at every open (a crash right after an
        // earlier mkdir would otherwise leave it undurable).
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)
                .and_then(|p| p.sync_all())
                .map_err(|e| IbdbError::io(parent, "fsync parent directory", e))?;
        }
        let dir_file = File::open(&dir).map_err(|e| IbdbError::io(&dir, "open directory", e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| IbdbError::io(&lock_path, "open lock file", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(IbdbError::Locked { path: lock_path }),
            Err(TryLockError::Error(e)) => return Err(IbdbError::io(&lock_path, "lock", e)),
        }
        let mut content_fs: Vec<(PathBuf, File)> = Vec::new();
        for path in &opts.content_fs {
            let f =
                File::open(path).map_err(|e| IbdbError::io(path, "open content directory", e))?;
            let dev = f
                .metadata()
                .map_err(|e| IbdbError::io(path, "stat content directory", e))?
                .dev();
            let mut seen = false;
            for (_, g) in &content_fs {
                if g.metadata().is_ok_and(|m| m.dev() == dev) {
                    seen = true;
                }
            }
            if !seen {
                content_fs.push((path.clone(), f));
            }
        }
        let scanned = recover::recover(&dir, &dir_file)?;
        let mut w = Writer {
            dir,
            dir_file,
            _lock: lock,
            size: opts.size,
            delay: opts.max_commit_delay,
            max_open_tas: opts.max_open_tas,
            chunk: opts.prealloc_chunk,
            current: None,
            prev: scanned.prev,
            rotate_due: false,
            next_seq: scanned.max_seq + 1,
            files: scanned.files,
            open_tas: scanned.open_tas,
            frame: FrameBuilder::default(),
            zeros: Vec::new(),
            counters: Arc::new(Counters::default()),
            content_fs,
        };
        w.counters
            .open_transactions
            .store(w.open_tas.len() as u64, Ordering::Relaxed);
        w.rotate()?;
        if w.cleanup().is_err() {
            // Not fatal: the files stay and the next cleanup tries again.
            add(&w.counters.cleanup_failures, 1);
        }
        Ok((w, scanned.recovery))
    }

    pub(super) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// The committer thread's loop.
    pub(super) fn run(mut self, queue: &Queue) {
        let _stop = StopGuard(queue);
        // The first batch waits for max_open_TAs or the delay; later ones
        // for half as many commits as the previous batch held (see the
        // module documentation).
        let mut target = self.max_open_tas;
        let mut batch = Vec::new();
        loop {
            let next = queue.next(&mut batch, target, self.delay, self.max_open_tas);
            if !batch.is_empty() {
                target = batch.len().div_ceil(2);
                self.commit_batch(&mut batch);
            }
            for tx in next.cleanups {
                let _ = tx.send(self.cleanup());
            }
            if next.done {
                break;
            }
        }
        if let Some(cur) = &self.current {
            // Best effort: give back the preallocated zeros.
            let _ = cur.file.set_len(cur.pos);
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<Queued>) {
        let n = batch.len();
        let c = Arc::clone(&self.counters);
        match self.write_batch(batch) {
            Ok((seq, len)) => {
                let records: usize = batch.iter().map(|q| q.records).sum();
                add(&c.commits, n);
                add(&c.records, records);
                add(&c.syncs, 1);
                add(&c.bytes, len);
                c.max_batch.fetch_max(n as u64, Ordering::Relaxed);
                for q in batch.iter() {
                    track(&mut self.open_tas, &mut self.files, seq, &q.touches);
                }
                c.open_transactions
                    .store(self.open_tas.len() as u64, Ordering::Relaxed);
                // The counters are up to date when a commit completes.
                for q in batch.drain(..) {
                    let _ = q.tx.send(Ok(()));
                }
                if self
                    .current
                    .as_ref()
                    .is_some_and(|cur| cur.pos >= self.size)
                {
                    self.rotate_due = true;
                    if self.rotate().is_ok() && self.cleanup().is_err() {
                        add(&c.cleanup_failures, 1);
                    }
                }
            }
            Err(e) => {
                add(&c.failed_batches, 1);
                add(&c.failed_commits, n);
                for q in batch.drain(..) {
                    let _ = q.tx.send(Err(e.clone()));
                }
            }
        }
    }

    /// Writes and syncs one frame holding the batch. Returns the file's
    /// sequence number and the frame length.
    fn write_batch(&mut self, batch: &[Queued]) -> Result<(u64, usize), IbdbError> {
        if batch.iter().any(|q| q.content) {
            // Content first: an envelope must never be durable without the
            // content it names. A failure fails the batch but says nothing
            // about the log file, which stays in use.
            for (path, f) in &self.content_fs {
                nix::unistd::syncfs(f)
                    .map_err(|e| IbdbError::io(path, "syncfs", io::Error::from(e)))?;
                add(&self.counters.content_syncs, 1);
            }
        }
        self.ensure_file()?;
        let Some(cur) = self.current.as_mut() else {
            // ensure_file leaves a current file or fails.
            return Err(IbdbError::Closed);
        };
        self.frame.begin();
        for q in batch {
            self.frame.buf.extend_from_slice(&q.bytes);
        }
        let frame = self
            .frame
            .finish(cur.seq, cur.pos)
            .map_err(|_| IbdbError::TooLarge {
                len: batch.iter().map(|q| q.bytes.len()).sum(),
                max: MAX_FRAME_PAYLOAD,
            })?;
        let len = frame.len();
        let end = cur.pos + len as u64;
        let result = (|| {
            cur.file
                .write_all_at(frame, cur.pos)
                .map_err(|e| ("write", e))?;
            if self.chunk > 0 && end > cur.alloc_end {
                let to = end + self.chunk;
                write_zeros(&cur.file, &mut self.zeros, end, to).map_err(|e| ("preallocate", e))?;
                cur.alloc_end = to;
            }
            cur.file.sync_data().map_err(|e| ("fdatasync", e))
        })();
        match result {
            Ok(()) => {
                cur.pos = end;
                Ok((cur.seq, len))
            }
            Err((op, e)) => {
                let err = IbdbError::io(&cur.path, op, e);
                self.retire_failed();
                Err(err)
            }
        }
    }

    /// Stops using the current file after a failed write or sync.
    fn retire_failed(&mut self) {
        if let Some(cur) = self.current.take() {
            // Best effort: drop the failed frame. The next file's header
            // records the end either way.
            let _ = cur.file.set_len(cur.pos);
            self.prev = Prev {
                seq: cur.seq,
                valid_end: cur.pos,
                tail: true,
            };
            self.counters.current_file.store(0, Ordering::Relaxed);
        }
    }

    /// Makes sure there is a file to write: starts one if there is none or
    /// rotation is due. A failed rotation with a healthy current file is
    /// not an error (it is tried again after the next batch).
    fn ensure_file(&mut self) -> Result<(), IbdbError> {
        if self.current.is_some() && !self.rotate_due {
            return Ok(());
        }
        match self.rotate() {
            Ok(()) => {
                if self.cleanup().is_err() {
                    add(&self.counters.cleanup_failures, 1);
                }
                Ok(())
            }
            Err(_) if self.current.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts the next file; the current one (if any) is then finished.
    fn rotate(&mut self) -> Result<(), IbdbError> {
        let prev = match &self.current {
            Some(c) => Prev {
                seq: c.seq,
                valid_end: c.pos,
                tail: false,
            },
            None => self.prev,
        };
        let seq = self.next_seq;
        // Recovery keeps next_seq <= u64::MAX; at the end, creating the
        // same name again fails (create_new).
        self.next_seq = self.next_seq.saturating_add(1);
        let new = match self.create_file(seq, prev) {
            Ok(f) => f,
            Err(e) => {
                add(&self.counters.create_failures, 1);
                return Err(e);
            }
        };
        add(&self.counters.files_created, 1);
        self.counters.current_file.store(seq, Ordering::Relaxed);
        self.files.insert(
            seq,
            FileTrack {
                path: new.path.clone(),
                open: 0,
                outlive: (prev.tail && prev.seq != 0)
                    .then_some(prev.seq)
                    .into_iter()
                    .collect(),
            },
        );
        if let Some(old) = self.current.replace(new) {
            // Best effort: give back the preallocated zeros; the new
            // header records the end anyway.
            let _ = old.file.set_len(old.pos);
        }
        self.rotate_due = false;
        Ok(())
    }

    /// Creates file `seq`: header and preallocated zeros, file and
    /// directory synced.
    fn create_file(&mut self, seq: u64, prev: Prev) -> Result<Current, IbdbError> {
        let path = self.dir.join(file_name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| IbdbError::io(&path, "create", e))?;
        let header = FileHeader {
            seq,
            prev_seq: prev.seq,
            prev_len: prev.valid_end,
        }
        .encode();
        let pos = HEADER_LEN as u64;
        let alloc_end = pos + self.chunk;
        let result = (|| {
            file.write_all_at(&header, 0)
                .map_err(|e| ("write header", e))?;
            write_zeros(&file, &mut self.zeros, pos, alloc_end).map_err(|e| ("preallocate", e))?;
            file.sync_all().map_err(|e| ("fsync", e))?;
            self.dir_file.sync_all().map_err(|e| ("fsync directory", e))
        })();
        match result {
            Ok(()) => Ok(Current {
                seq,
                path,
                file,
                pos,
                alloc_end,
            }),
            Err((op, e)) => {
                // Nothing was acknowledged in it; a half-made file left
                // behind would read as damage at the next start.
                let _ = fs::remove_file(&path);
                Err(IbdbError::io(&path, op, e))
            }
        }
    }

    /// Removes, in sequence order, the files no open transaction has a
    /// record in, except the current one and those explaining the tail of
    /// a file that still exists. Syncs the directory after each removal.
    fn cleanup(&mut self) -> Result<CleanupReport, IbdbError> {
        let current = self.current.as_ref().map(|c| c.seq);
        let seqs: Vec<u64> = self.files.keys().copied().collect();
        let mut removed = Vec::new();
        for seq in seqs {
            let Some(t) = self.files.get(&seq) else {
                continue;
            };
            if Some(seq) == current
                || t.open > 0
                || t.outlive.iter().any(|p| self.files.contains_key(p))
            {
                continue;
            }
            match fs::remove_file(&t.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(IbdbError::io(&t.path, "remove", e)),
            }
            self.dir_file
                .sync_all()
                .map_err(|e| IbdbError::io(&self.dir, "fsync directory", e))?;
            if let Some(t) = self.files.remove(&seq) {
                removed.push(t.path);
            }
            add(&self.counters.files_removed, 1);
        }
        Ok(CleanupReport {
            removed,
            remaining: self.files.len(),
        })
    }
}

/// Applies a durable commit's touches to the bookkeeping.
fn track(
    open_tas: &mut HashMap<TransactionId, Vec<u64>>,
    files: &mut BTreeMap<u64, FileTrack>,
    seq: u64,
    touches: &[Touch],
) {
    for t in touches {
        let holds = match *t {
            Touch::Open(id) => Some(open_tas.entry(id).or_default()),
            Touch::Ref(id) => open_tas.get_mut(&id),
            Touch::Close(id) => {
                let held = open_tas.remove(&id).unwrap_or_default();
                for s in &held {
                    if let Some(f) = files.get_mut(s) {
                        f.open = f.open.saturating_sub(1);
                    }
                }
                // The first file holds the transaction record.
                if let Some(&origin) = held.first()
                    && origin != seq
                    && let Some(f) = files.get_mut(&seq)
                {
                    f.outlive.insert(origin);
                }
                None
            }
        };
        if let Some(holds) = holds
            && holds.last() != Some(&seq)
        {
            holds.push(seq);
            if let Some(f) = files.get_mut(&seq) {
                f.open += 1;
            }
        }
    }
}

/// Writes zeros over `from..to` of `file`.
fn write_zeros(file: &File, zeros: &mut Vec<u8>, from: u64, to: u64) -> io::Result<()> {
    if zeros.len() < ZERO_BUF {
        zeros.resize(ZERO_BUF, 0);
    }
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(ZERO_BUF, |n| n.min(ZERO_BUF));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}
