//! Session, transaction and recipient identifiers, and the persistent
//! counter ([`IdSource`]) that keeps them unique across restarts.
//!
//! The identifiers name SMTP sessions and transactions in the logs (seed
//! 10.3: `ss_sess`, `ss_ta`, `rcpt_id`, `da_sess`, `da_ta`) and, for
//! transaction ids, the message files in CDB. Every process that creates
//! identifiers (smtps for `S` ids, qmgr for `C` ids) opens its own
//! [`IdSource`] on a state file in the queue directory.
//!
//! # Formats (seed 10.2)
//!
//! All numbers are printed as fixed-width upper-case hexadecimal.
//!
//! | type                                 | layout                                         | example                      |
//! |--------------------------------------|------------------------------------------------|------------------------------|
//! | [`SessionId`], [`TransactionId`]     | `S` counter:64 (16 digits) process:8 (2)       | `S00000000407CE49200`        |
//! | [`RecipientId`]                      | transaction id, `-`, index:24 (6 digits)       | `S00000000407EAE4E00-000000` |
//! | [`DaSessionId`], [`DaTransactionId`] | `C` process:8 (2) counter:32 (8) index:32 (8)   | `C010000137D00000000`        |
//!
//! Parsing is strict: the exact length, the prefix letter and upper-case hex
//! digits only. Lower-case hex is rejected, so that each identifier has
//! exactly one spelling; otherwise `ls`/`grep` over CDB file names and logs
//! could miss a message whose id was typed in another case. Session and
//! transaction ids share one format, so a transaction id string parses as a
//! [`SessionId`] too; the field name in the log says which one it is.
//!
//! A recipient index has 24 bits (at most [`MAX_RECIPIENT_INDEX`], i.e.
//! 16,777,215 recipients per transaction); [`RecipientId::new`] rejects
//! larger indices.
//!
//! # Uniqueness
//!
//! [`IdSource`] hands out a 64-bit counter that never repeats for a given
//! state file, even across crashes and a clock that steps backwards:
//!
//! - On open it starts at `max(high_water, now_unix_seconds << 24)`, where
//!   `high_water` is read from the state file. The clock term only matters on
//!   a fresh queue (or after the state file was deleted on purpose); it
//!   leaves room for 2^24 identifiers per second of wall-clock time before
//!   the counter runs ahead of the clock, which is harmless.
//! - Values are reserved in blocks. Before any value of a new block is handed
//!   out, the end of the block is written to the state file atomically (write
//!   a temporary file, fsync, rename over the state file, fsync the
//!   directory). A crash therefore loses at most the unused rest of a block,
//!   never reuses a value.
//! - While open, the source holds an exclusive lock (`flock`) on a sidecar
//!   file `<state file>.lock`, so two processes (or two sources in one
//!   process) cannot hand out the same values from one state file.
//!
//! Session and transaction ids ([`IdSource::next_session`],
//! [`IdSource::next_transaction`]) draw from the same counter, so a session
//! id never equals a transaction id. Delivery agent ids map the 64-bit value
//! `v` to counter `v >> 32` and index `v & 0xFFFF_FFFF`, so they too are
//! unique across restarts (stronger than the seed, which promises uniqueness
//! only within one qmgr run). The value `u64::MAX` is never handed out;
//! reaching it is [`IdError::Exhausted`].
//!
//! # State file format, version 1
//!
//! 17 bytes, all integers big-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  magic "SMXI"
//!      4     1  version, 1
//!      5     8  high-water mark: every value handed out so far is below it
//!     13     4  CRC32C (Castagnoli) of bytes 0..13
//! ```
//!
//! A missing state file means a fresh queue and starts from the clock. A file
//! that exists but has the wrong size, magic or checksum is
//! [`IdError::Corrupt`]; an unknown version is [`IdError::UnsupportedVersion`].
//! Neither is ever reset silently: the operator must look (restoring the file
//! from a backup, or deleting it so the clock term takes over).
//!
//! # Errors
//!
//! Everything here reports [`IdError`]. Parse errors say which kind of id
//! was being parsed and what was wrong; state file errors carry the path.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest recipient index a [`RecipientId`] can carry (6 hex digits).
pub const MAX_RECIPIENT_INDEX: u32 = 0xFF_FFFF;

/// Number of counter values [`IdSource::open`] reserves per state file write.
pub const DEFAULT_BLOCK: u64 = 1 << 16;

/// Size of a version 1 state file.
pub const STATE_LEN: usize = 17;

/// Which kind of identifier an [`IdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// SMTP server session (`ss_sess`).
    Session,
    /// SMTP server transaction (`ss_ta`).
    Transaction,
    /// Recipient of a server transaction (`rcpt_id`).
    Recipient,
    /// Delivery agent (SMTP client) session (`da_sess`).
    DaSession,
    /// Delivery agent (SMTP client) transaction (`da_ta`).
    DaTransaction,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Session => "session",
            IdKind::Transaction => "transaction",
            IdKind::Recipient => "recipient",
            IdKind::DaSession => "delivery agent session",
            IdKind::DaTransaction => "delivery agent transaction",
        })
    }
}

/// What is wrong with a state file whose version could not be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDefect {
    /// The file is not [`STATE_LEN`] bytes long.
    Length {
        /// Actual size in bytes.
        found: usize,
    },
    /// The file does not start with the magic `SMXI`.
    Magic,
    /// The stored CRC32C does not match the contents.
    Checksum {
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum computed over the file.
        computed: u32,
    },
}

impl fmt::Display for StateDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDefect::Length { found } => {
                write!(f, "size is {found} bytes, expected {STATE_LEN}")
            }
            StateDefect::Magic => f.write_str("bad magic, not an smx id state file"),
            StateDefect::Checksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
                )
            }
        }
    }
}

/// Errors from parsing identifiers and from [`IdSource`].
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// The text has the wrong length (in bytes) for this kind of id.
    #[error("{kind} id must be {expected} characters long, got {found}")]
    Length {
        /// Kind being parsed.
        kind: IdKind,
        /// Required length.
        expected: usize,
        /// Length of the input in bytes.
        found: usize,
    },
    /// The text does not start with the prefix letter of this kind of id.
    #[error("{kind} id must start with '{expected}'")]
    Prefix {
        /// Kind being parsed.
        kind: IdKind,
        /// Required first character.
        expected: char,
    },
    /// A byte that should be an upper-case hex digit is something else.
    #[error("{kind} id has a character other than 0-9 or A-F at byte {position}")]
    NotHex {
        /// Kind being parsed.
        kind: IdKind,
        /// Byte offset of the offending character.
        position: usize,
    },
    /// A recipient id lacks the `-` between transaction id and index.
    #[error("recipient id must have '-' at byte {position}")]
    Separator {
        /// Byte offset where `-` was expected.
        position: usize,
    },
    /// A recipient index above [`MAX_RECIPIENT_INDEX`]; the transaction has
    /// too many recipients and must be refused (permanently for this
    /// recipient).
    #[error("recipient index {index} exceeds the limit {MAX_RECIPIENT_INDEX}")]
    RecipientIndex {
        /// The rejected index.
        index: u32,
    },
    /// Reading, writing or locking the state file failed. Temporary: the
    /// caller should refuse new work (e.g. SMTP 451) and retry later.
    #[error("id state file {path}: {source}")]
    Io {
        /// File the operation was on (state, temporary, lock file or directory).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another [`IdSource`] (in this or another process) holds the state
    /// file. Starting a second instance of the process is a configuration or
    /// supervision error.
    #[error("id state file {path} is in use by another process (lock held on {lock})")]
    Locked {
        /// State file.
        path: PathBuf,
        /// Lock file that could not be locked.
        lock: PathBuf,
    },
    /// The state file exists but cannot be trusted. Needs an operator; it is
    /// never reset automatically.
    #[error("id state file {path} is corrupt: {defect}")]
    Corrupt {
        /// State file.
        path: PathBuf,
        /// What is wrong with it.
        defect: StateDefect,
    },
    /// The state file was written by a newer (or unknown) format version.
    #[error("id state file {path} has unsupported version {version}")]
    UnsupportedVersion {
        /// State file.
        path: PathBuf,
        /// Version byte found.
        version: u8,
    },
    /// The 64-bit counter reached its end; no further ids can be made from
    /// this state file.
    #[error("id counter exhausted")]
    Exhausted,
}

macro_rules! server_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            counter: u64,
            process: u8,
        }

        impl $name {
            /// Length of the printed form.
            pub const LEN: usize = SERVER_ID_LEN;

            /// Builds an id from its parts.
            pub const fn new(counter: u64, process: u8) -> Self {
                Self { counter, process }
            }

            /// The 64-bit counter.
            pub const fn counter(&self) -> u64 {
                self.counter
            }

            /// The 8-bit process id.
            pub const fn process(&self) -> u8 {
                self.process
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "S{:016X}{:02X}", self.counter, self.process)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                let (counter, process) = parse_server(s.as_bytes(), $kind)?;
                Ok(Self { counter, process })
            }
        }
    };
}

server_id!(
    /// SMTP server session id, e.g. `S00000000407EAE3800` (`ss_sess`).
    SessionId,
    IdKind::Session
);

server_id!(
    /// SMTP server transaction id, e.g. `S00000000407EAE4E00` (`ss_ta`); also
    /// the name of the message file in CDB.
    TransactionId,
    IdKind::Transaction
);

/// Recipient id: a transaction id plus the recipient's 24-bit index, e.g.
/// `S00000000407EAE4E00-000000` (`rcpt_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecipientId {
    ta: TransactionId,
    index: u32,
}

impl RecipientId {
    /// Length of the printed form.
    pub const LEN: usize = SERVER_ID_LEN + 1 + 6;

    /// Builds a recipient id; `index` must not exceed [`MAX_RECIPIENT_INDEX`].
    pub fn new(ta: TransactionId, index: u32) -> Result<Self, IdError> {
        if index > MAX_RECIPIENT_INDEX {
            return Err(IdError::RecipientIndex { index });
        }
        Ok(Self { ta, index })
    }

    /// The transaction the recipient belongs to.
    pub const fn transaction(&self) -> TransactionId {
        self.ta
    }

    /// The recipient's index within the transaction.
    pub const fn index(&self) -> u32 {
        self.index
    }
}

impl fmt::Display for RecipientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:06X}", self.ta, self.index)
    }
}

impl FromStr for RecipientId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        let kind = IdKind::Recipient;
        check_len(b, Self::LEN, kind)?;
        let (counter, process) = parse_server(&b[..SERVER_ID_LEN], kind)?;
        if b[SERVER_ID_LEN] != b'-' {
            return Err(IdError::Separator {
                position: SERVER_ID_LEN,
            });
        }
        let index = low_u32(parse_hex(b, SERVER_ID_LEN + 1, 6, kind)?);
        Self::new(TransactionId::new(counter, process), index)
    }
}

macro_rules! da_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            process: u8,
            counter: u32,
            index: u32,
        }

        impl $name {
            /// Length of the printed form.
            pub const LEN: usize = DA_ID_LEN;

            /// Builds an id from its parts.
            pub const fn new(process: u8, counter: u32, index: u32) -> Self {
                Self { process, counter, index }
            }

            /// Builds an id from a 64-bit [`IdSource`] value: the counter is
            /// the high 32 bits, the index the low 32 bits.
            pub const fn from_value(process: u8, value: u64) -> Self {
                // Truncation is the point: the two halves of the value.
                Self { process, counter: (value >> 32) as u32, index: value as u32 }
            }

            /// The 8-bit process id.
            pub const fn process(&self) -> u8 {
                self.process
            }

            /// The 32-bit counter.
            pub const fn counter(&self) -> u32 {
                self.counter
            }

            /// The 32-bit index.
            pub const fn index(&self) -> u32 {
                self.index
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "C{:02X}{:08X}{:08X}", self.process, self.counter, self.index)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                let (process, counter, index) = parse_da(s.as_bytes(), $kind)?;
                Ok(Self { process, counter, index })
            }
        }
    };
}

da_id!(
    /// Delivery agent (SMTP client) session id, e.g. `C01000006C800000002`
    /// (`da_sess`).
    DaSessionId,
    IdKind::DaSession
);

da_id!(
    /// Delivery agent (SMTP client) transaction id, e.g.
    /// `C01000006C900000002` (`da_ta`).
    DaTransactionId,
    IdKind::DaTransaction
);

/// A persistent, thread-safe, never-repeating 64-bit counter; see the
/// module documentation for how it survives crashes and clock steps.
///
/// `next*` take `&self` and may be called from many threads: the common
/// case is one atomic compare-and-swap, a mutex is taken only to reserve
/// the next block on disk.
#[derive(Debug)]
pub struct IdSource {
    /// Next value to hand out. Invariant: `next <= limit`.
    next: AtomicU64,
    /// End (exclusive) of the block recorded in the state file; only grows,
    /// and only after the state file says so.
    limit: AtomicU64,
    reserver: Mutex<Reserver>,
}

impl IdSource {
    /// Opens the counter stored at `path` using the system clock and
    /// [`DEFAULT_BLOCK`]. Reserves the first block before returning, so an
    /// unwritable queue directory is reported here rather than at the
    /// first id.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, IdError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::open_with_clock(path, DEFAULT_BLOCK, now)
    }

    /// Like [`IdSource::open`], with the block size and the current time
    /// (Unix seconds) given by the caller. A `block` of 0 is treated as 1.
    pub fn open_with_clock(
        path: impl Into<PathBuf>,
        block: u64,
        now_secs: u64,
    ) -> Result<Self, IdError> {
        let path = path.into();
        let lock = lock_state(&path)?;
        let high_water = match fs::read(&path) {
            Ok(bytes) => decode_state(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(source) => return Err(IdError::Io { path, source }),
        };
        let start = high_water.max(now_secs.saturating_mul(1 << 24));
        let source = IdSource {
            next: AtomicU64::new(start),
            limit: AtomicU64::new(start),
            reserver: Mutex::new(Reserver {
                path,
                block: block.max(1),
                _lock: lock,
            }),
        };
        source.reserve_block()?;
        Ok(source)
    }

    /// The next counter value.
    pub fn next(&self) -> Result<u64, IdError> {
        match self.try_take() {
            Some(v) => Ok(v),
            None => self.next_slow(),
        }
    }

    /// A new SMTP server session id for `process`.
    pub fn next_session(&self, process: u8) -> Result<SessionId, IdError> {
        Ok(SessionId::new(self.next()?, process))
    }

    /// A new SMTP server transaction id for `process`.
    pub fn next_transaction(&self, process: u8) -> Result<TransactionId, IdError> {
        Ok(TransactionId::new(self.next()?, process))
    }

    /// A new delivery agent session id for `process`.
    pub fn next_da_session(&self, process: u8) -> Result<DaSessionId, IdError> {
        Ok(DaSessionId::from_value(process, self.next()?))
    }

    /// A new delivery agent transaction id for `process`.
    pub fn next_da_transaction(&self, process: u8) -> Result<DaTransactionId, IdError> {
        Ok(DaTransactionId::from_value(process, self.next()?))
    }

    /// Takes a value from the reserved block, if any is left.
    fn try_take(&self) -> Option<u64> {
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let limit = self.limit.load(Ordering::Acquire);
            if cur >= limit {
                return None;
            }
            // cur < limit <= u64::MAX, so cur + 1 does not overflow.
            match self.next.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(cur),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Reserves blocks until a value can be taken. Other threads may use up
    /// a fresh block before this one gets a value, hence the loop.
    fn next_slow(&self) -> Result<u64, IdError> {
        loop {
            if let Some(v) = self.try_take() {
                return Ok(v);
            }
            self.reserve_block()?;
        }
    }

    /// Records a new block in the state file, then publishes it. Does nothing
    /// if another thread reserved one while this one waited for the lock.
    fn reserve_block(&self) -> Result<(), IdError> {
        // A panic while holding the lock cannot leave `Reserver` inconsistent
        // (it is only read), so a poisoned lock is still usable.
        let reserver = self.reserver.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self.limit.load(Ordering::Acquire);
        if self.next.load(Ordering::Relaxed) < limit {
            return Ok(());
        }
        if limit == u64::MAX {
            return Err(IdError::Exhausted);
        }
        let new_limit = limit.saturating_add(reserver.block);
        reserver.persist(new_limit)?;
        self.limit.store(new_limit, Ordering::Release);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Helpers.

const SERVER_ID_LEN: usize = 19;
const DA_ID_LEN: usize = 19;

const STATE_MAGIC: &[u8; 4] = b"SMXI";
const STATE_VERSION: u8 = 1;

fn check_len(b: &[u8], expected: usize, kind: IdKind) -> Result<(), IdError> {
    if b.len() == expected {
        Ok(())
    } else {
        Err(IdError::Length {
            kind,
            expected,
            found: b.len(),
        })
    }
}

fn check_prefix(b: &[u8], expected: char, kind: IdKind) -> Result<(), IdError> {
    if b.first() == Some(&(expected as u8)) {
        Ok(())
    } else {
        Err(IdError::Prefix { kind, expected })
    }
}

/// Parses `len` upper-case hex digits at `b[start..]`. `len` is at most 16
/// and the caller has checked that `b` is long enough.
fn parse_hex(b: &[u8], start: usize, len: usize, kind: IdKind) -> Result<u64, IdError> {
    let mut v: u64 = 0;
    for (i, &c) in b[start..start + len].iter().enumerate() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => {
                return Err(IdError::NotHex {
                    kind,
                    position: start + i,
                });
            }
        };
        v = (v << 4) | u64::from(digit);
    }
    Ok(v)
}

fn parse_server(b: &[u8], kind: IdKind) -> Result<(u64, u8), IdError> {
    check_len(b, SERVER_ID_LEN, kind)?;
    check_prefix(b, 'S', kind)?;
    let counter = parse_hex(b, 1, 16, kind)?;
    let process = parse_hex(b, 17, 2, kind)?;
    Ok((counter, low_u8(process)))
}

fn parse_da(b: &[u8], kind: IdKind) -> Result<(u8, u32, u32), IdError> {
    check_len(b, DA_ID_LEN, kind)?;
    check_prefix(b, 'C', kind)?;
    let process = parse_hex(b, 1, 2, kind)?;
    let counter = parse_hex(b, 3, 8, kind)?;
    let index = parse_hex(b, 11, 8, kind)?;
    Ok((low_u8(process), low_u32(counter), low_u32(index)))
}

/// Narrows a value parsed from 2 hex digits.
fn low_u8(v: u64) -> u8 {
    u8::try_from(v & 0xFF).unwrap_or(u8::MAX)
}

/// Narrows a value parsed from at most 8 hex digits.
fn low_u32(v: u64) -> u32 {
    u32::try_from(v & 0xFFFF_FFFF).unwrap_or(u32::MAX)
}

/// The part of [`IdSource`] used only under its mutex.
#[derive(Debug)]
struct Reserver {
    path: PathBuf,
    block: u64,
    /// Open file holding the exclusive lock; released when dropped.
    _lock: File,
}

impl Reserver {
    /// Atomically replaces the state file with one holding `high_water`.
    fn persist(&self, high_water: u64) -> Result<(), IdError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdError::Io { path, source }
        };
        let tmp = with_suffix(&self.path, ".tmp");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&encode_state(high_water))
            .map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        let dir = parent_dir(&self.path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(())
    }
}

/// Opens `<path>.lock` and takes an exclusive lock on it.
fn lock_state(path: &Path) -> Result<File, IdError> {
    let lock = with_suffix(path, ".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| IdError::Io {
            path: lock.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(IdError::Locked {
            path: path.to_path_buf(),
            lock,
        }),
        Err(TryLockError::Error(source)) => Err(IdError::Io { path: lock, source }),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn encode_state(high_water: u64) -> [u8; STATE_LEN] {
    let mut b = [0u8; STATE_LEN];
    b[..4].copy_from_slice(STATE_MAGIC);
    b[4] = STATE_VERSION;
    b[5..13].copy_from_slice(&high_water.to_be_bytes());
    let crc = crc32c(&b[..13]);
    b[13..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Decodes a state file. The version is checked before the length, so a
/// future format of another size is reported as a version problem.
fn decode_state(path: &Path, b: &[u8]) -> Result<u64, IdError> {
    let corrupt = |defect| IdError::Corrupt {
        path: path.to_path_buf(),
        defect,
    };
    if b.len() < 5 {
        return Err(corrupt(StateDefect::Length { found: b.len() }));
    }
    if &b[..4] != STATE_MAGIC {
        return Err(corrupt(StateDefect::Magic));
    }
    if b[4] != STATE_VERSION {
        return Err(IdError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: b[4],
        });
    }
    let Ok(b) = <&[u8; STATE_LEN]>::try_from(b) else {
        return Err(corrupt(StateDefect::Length { found: b.len() }));
    };
    let computed = crc32c(&b[..13]);
    let stored = u32::from_be_bytes([b[13], b[14], b[15], b[16]]);
    if stored != computed {
        return Err(corrupt(StateDefect::Checksum { stored, computed }));
    }
    let mut hw = [0u8; 8];
    hw.copy_from_slice(&b[5..13]);
    Ok(u64::from_be_bytes(hw))
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: the state
/// file is 13 bytes, a table would be wasted.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn seed_examples_round_trip() {
        let cases = [
            "S00000000407CE49200",
            "S00000000407EAE3800",
            "S00000000407EAE4E00",
        ];
        for s in cases {
            let sess: SessionId = s.parse().unwrap();
            assert_eq!(sess.to_string(), s);
            let ta: TransactionId = s.parse().unwrap();
            assert_eq!(ta.to_string(), s);
        }
        let ta: TransactionId = "S00000000407CE49200".parse().unwrap();
        assert_eq!(ta.counter(), 0x407C_E492);
        assert_eq!(ta.process(), 0);

        let r: RecipientId = "S00000000407EAE4E00-000000".parse().unwrap();
        assert_eq!(r.to_string(), "S00000000407EAE4E00-000000");
        assert_eq!(r.index(), 0);
        assert_eq!(r.transaction().counter(), 0x407E_AE4E);

        for s in ["C010000137D00000000", "C01000006C800000002"] {
            let d: DaSessionId = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            let t: DaTransactionId = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        let d: DaSessionId = "C010000137D00000000".parse().unwrap();
        assert_eq!((d.process(), d.counter(), d.index()), (1, 0x137D, 0));
        let d: DaTransactionId = "C01000006C900000002".parse().unwrap();
        assert_eq!((d.process(), d.counter(), d.index()), (1, 0x6C9, 2));
    }

    #[test]
    fn display_formats() {
        let cases: [(String, &str); 5] = [
            (
                SessionId::new(u64::MAX, 0xAB).to_string(),
                "SFFFFFFFFFFFFFFFFAB",
            ),
            (TransactionId::new(1, 2).to_string(), "S000000000000000102"),
            (
                RecipientId::new(TransactionId::new(1, 2), 0xABCDEF)
                    .unwrap()
                    .to_string(),
                "S000000000000000102-ABCDEF",
            ),
            (
                DaSessionId::new(0xFE, 0x1234, 0xDEAD_BEEF).to_string(),
                "CFE00001234DEADBEEF",
            ),
            (
                DaTransactionId::from_value(1, 0x0000_137D_0000_0005).to_string(),
                "C010000137D00000005",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn server_id_rejects_bad_input() {
        use IdKind::Session as K;
        let cases: [(&str, &str); 9] = [
            ("", "Length"),
            ("S00000000407CE492", "Length"),
            ("S00000000407CE4920000", "Length"),
            ("C00000000407CE49200", "Prefix"),
            ("s00000000407CE49200", "Prefix"),
            ("S00000000407ce49200", "NotHex"),
            ("S00000000407CE4920G", "NotHex"),
            ("S+0000000407CE49200", "NotHex"),
            ("S00000000407CE492\u{e9}", "NotHex"),
        ];
        for (input, want) in cases {
            let err = input.parse::<SessionId>().unwrap_err();
            let got = match err {
                IdError::Length { kind: K, .. } => "Length",
                IdError::Prefix { kind: K, .. } => "Prefix",
                IdError::NotHex { kind: K, .. } => "NotHex",
                other => panic!("{input}: unexpected {other:?}"),
            };
            assert_eq!(got, want, "{input}");
        }
        let err = "S00000000407CE4920G".parse::<TransactionId>().unwrap_err();
        assert!(
            matches!(
                err,
                IdError::NotHex {
                    kind: IdKind::Transaction,
                    position: 18
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn recipient_id_rejects_bad_input() {
        let cases = [
            "S00000000407EAE4E00-00000",
            "S00000000407EAE4E00-0000000",
            "S00000000407EAE4E00_000000",
            "S00000000407EAE4E00-00000g",
            "C00000000407EAE4E00-000000",
            "S00000000407EAE4E00000000-",
        ];
        for input in cases {
            assert!(input.parse::<RecipientId>().is_err(), "{input}");
        }
        assert!(matches!(
            "S00000000407EAE4E00_000000".parse::<RecipientId>(),
            Err(IdError::Separator { position: 19 })
        ));
    }

    #[test]
    fn recipient_index_limit() {
        let ta = TransactionId::new(7, 1);
        assert!(RecipientId::new(ta, MAX_RECIPIENT_INDEX).is_ok());
        assert!(matches!(
            RecipientId::new(ta, MAX_RECIPIENT_INDEX + 1),
            Err(IdError::RecipientIndex { index: 0x100_0000 })
        ));
        assert!(RecipientId::new(ta, u32::MAX).is_err());
    }

    #[test]
    fn da_id_rejects_bad_input() {
        let cases = [
            "C010000137D0000000",
            "C010000137D000000000",
            "S010000137D00000000",
            "C010000137d00000000",
            "C01 000137D00000000",
        ];
        for input in cases {
            assert!(input.parse::<DaSessionId>().is_err(), "{input}");
            assert!(input.parse::<DaTransactionId>().is_err(), "{input}");
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let err = "S1".parse::<SessionId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "session id must be 19 characters long, got 2"
        );
        let err = "x".repeat(19).parse::<DaTransactionId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "delivery agent transaction id must start with 'C'"
        );
    }

    proptest! {
        #[test]
        fn server_ids_round_trip(counter: u64, process: u8) {
            let s = SessionId::new(counter, process);
            let text = s.to_string();
            prop_assert_eq!(text.len(), SessionId::LEN);
            prop_assert_eq!(text.parse::<SessionId>().unwrap(), s);
            let t = TransactionId::new(counter, process);
            prop_assert_eq!(t.to_string().parse::<TransactionId>().unwrap(), t);
        }

        #[test]
        fn recipient_ids_round_trip(counter: u64, process: u8, index in 0..=MAX_RECIPIENT_INDEX) {
            let r = RecipientId::new(TransactionId::new(counter, process), index).unwrap();
            let text = r.to_string();
            prop_assert_eq!(text.len(), RecipientId::LEN);
            prop_assert_eq!(text.parse::<RecipientId>().unwrap(), r);
        }

        #[test]
        fn da_ids_round_trip(process: u8, counter: u32, index: u32) {
            let s = DaSessionId::new(process, counter, index);
            let text = s.to_string();
            prop_assert_eq!(text.len(), DaSessionId::LEN);
            prop_assert_eq!(text.parse::<DaSessionId>().unwrap(), s);
            let t = DaTransactionId::new(process, counter, index);
            prop_assert_eq!(t.to_string().parse::<DaTransactionId>().unwrap(), t);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,30}") {
            let _ = s.parse::<SessionId>();
            let _ = s.parse::<RecipientId>();
            let _ = s.parse::<DaSessionId>();
        }

        #[test]
        fn lower_case_hex_is_rejected(counter: u64, process: u8) {
            let text = SessionId::new(counter, process).to_string();
            prop_assume!(text.bytes().any(|b| b.is_ascii_uppercase() && b != b'S'));
            let lower = format!("S{}", text[1..].to_ascii_lowercase());
            prop_assert!(
                matches!(lower.parse::<SessionId>(), Err(IdError::NotHex { .. })),
                "{} was accepted", lower
            );
        }
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn state_round_trip() {
        let p = Path::new("state");
        for v in [0, 1, 0x0123_4567_89AB_CDEF, u64::MAX] {
            assert_eq!(decode_state(p, &encode_state(v)).unwrap(), v);
        }
    }

    #[test]
    fn first_ids_follow_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let src = IdSource::open_with_clock(dir.path().join("ids"), 16, 1000).unwrap();
        assert_eq!(src.next().unwrap(), 1000 << 24);
        assert_eq!(
            src.next_session(3).unwrap(),
            SessionId::new((1000 << 24) + 1, 3)
        );
        assert_eq!(
            src.next_transaction(3).unwrap(),
            TransactionId::new((1000 << 24) + 2, 3)
        );
        let hw = decode_state(Path::new("x"), &fs::read(dir.path().join("ids")).unwrap());
        assert_eq!(hw.unwrap(), (1000 << 24) + 16);
    }

    #[test]
    fn da_ids_split_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let src = IdSource::open_with_clock(dir.path().join("ids"), 16, 0x1234).unwrap();
        let v = 0x1234_u64 << 24;
        let d = src.next_da_session(1).unwrap();
        assert_eq!(d, DaSessionId::from_value(1, v));
        assert_eq!((d.counter(), d.index()), ((v >> 32) as u32, v as u32));
        let t = src.next_da_transaction(1).unwrap();
        assert_eq!(t, DaTransactionId::from_value(1, v + 1));
    }

    #[test]
    fn reopen_never_repeats_even_when_clock_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let mut seen = HashSet::new();
        let mut max_seen: Option<u64> = None;
        // Clock readings per run: forwards, backwards to zero, forwards but
        // still behind the counter, and a big jump ahead.
        for (run, now) in [5000_u64, 0, 5001, 1_000_000].into_iter().enumerate() {
            // Simulated crash: the source is dropped mid-block, with no
            // shutdown step of any kind.
            let src = IdSource::open_with_clock(&path, 8, now).unwrap();
            for _ in 0..(5 + run * 7) {
                let v = src.next().unwrap();
                assert!(seen.insert(v), "value {v} handed out twice");
                if let Some(m) = max_seen {
                    assert!(v > m, "value {v} not above earlier {m}");
                }
                max_seen = Some(v);
            }
            drop(src);
        }
        assert_eq!(seen.len(), 5 + 12 + 19 + 26);
    }

    #[test]
    fn corrupt_state_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let good = encode_state(42);

        let mut bad_crc = good;
        bad_crc[8] ^= 1;
        let mut bad_magic = good;
        bad_magic[0] = b'X';
        let mut new_version = good;
        new_version[4] = 2;
        let cases: [(&[u8], &str); 6] = [
            (b"", "Length"),
            (b"garbage", "Magic"),
            (&good[..16], "Length"),
            (&bad_crc, "Checksum"),
            (&bad_magic, "Magic"),
            (&new_version, "Version"),
        ];
        for (contents, want) in cases {
            fs::write(&path, contents).unwrap();
            let err = IdSource::open_with_clock(&path, 4, 0).unwrap_err();
            let got = match &err {
                IdError::Corrupt {
                    defect: StateDefect::Length { .. },
                    ..
                } => "Length",
                IdError::Corrupt {
                    defect: StateDefect::Magic,
                    ..
                } => "Magic",
                IdError::Corrupt {
                    defect: StateDefect::Checksum { .. },
                    ..
                } => "Checksum",
                IdError::UnsupportedVersion { version: 2, .. } => "Version",
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(got, want);
            assert!(err.to_string().contains("ids"), "{err}");
            // The file is left alone for the operator.
            assert_eq!(fs::read(&path).unwrap(), contents);
        }
    }

    #[test]
    fn second_source_on_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let first = IdSource::open_with_clock(&path, 4, 0).unwrap();
        assert!(matches!(
            IdSource::open_with_clock(&path, 4, 0),
            Err(IdError::Locked { .. })
        ));
        drop(first);
        IdSource::open_with_clock(&path, 4, 0).unwrap();
    }

    #[test]
    fn unwritable_directory_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("ids");
        assert!(matches!(
            IdSource::open_with_clock(&path, 4, 0),
            Err(IdError::Io { .. })
        ));
    }

    #[test]
    fn exhaustion_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        fs::write(&path, encode_state(u64::MAX - 3)).unwrap();
        let src = IdSource::open_with_clock(&path, 2, 0).unwrap();
        assert_eq!(src.next().unwrap(), u64::MAX - 3);
        assert_eq!(src.next().unwrap(), u64::MAX - 2);
        assert_eq!(src.next().unwrap(), u64::MAX - 1);
        assert!(matches!(src.next(), Err(IdError::Exhausted)));
        assert!(matches!(src.next(), Err(IdError::Exhausted)));
        drop(src);
        assert!(matches!(
            IdSource::open_with_clock(&path, 2, 0),
            Err(IdError::Exhausted)
        ));
    }

    #[test]
    fn many_threads_get_distinct_ids() {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 10_000;
        let dir = tempfile::tempdir().unwrap();
        let src = Arc::new(IdSource::open_with_clock(dir.path().join("ids"), 1024, 1).unwrap());
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let src = Arc::clone(&src);
                std::thread::spawn(move || {
                    (0..PER_THREAD)
                        .map(|_| src.next().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for v in h.join().unwrap() {
                assert!(all.insert(v), "value {v} handed out twice");
            }
        }
        assert_eq!(all.len(), THREADS * PER_THREAD);
        // The state file covers every value handed out.
        let hw = decode_state(Path::new("x"), &fs::read(dir.path().join("ids")).unwrap()).unwrap();
        assert!(all.iter().all(|&v| v < hw));
    }
}
