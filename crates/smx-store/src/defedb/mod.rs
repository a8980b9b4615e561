//! DEFEDB, the deferred envelope database (seed 7.1, 3.8 item 4, 8.3 item
//! 3): recipients that could not be delivered at the first attempt wait here
//! for their next try. Only qmgr opens it (read and write); `mailq` and
//! `smx ctl` ask qmgr over the control socket, because the database is held
//! exclusively by one process.
//!
//! The database is one [redb] file (an embedded, ACID, copy-on-write
//! B-tree store), conventionally [`FILE_NAME`] inside the configured
//! `DEFEDB.base_directory`. Every method runs in one redb transaction and
//! blocks (a write waits for `fsync`): async callers use
//! `tokio::task::spawn_blocking`. [`Defedb`] is `Send + Sync`; writes from
//! several threads are serialised by redb, reads run in parallel with them
//! on a snapshot.
//!
//! # Durability and the IBDB contract
//!
//! [`Defedb::put`] returns only after its write transaction is committed
//! with [`redb::Durability::Immediate`], which redb documents as
//! "guaranteed to be persistent as soon as `commit` returns" (the data and
//! the commit slot are written with checksums and `fsync`ed). Moving a
//! recipient from IBDB to DEFEDB therefore goes: `put` (durable) first, then
//! the IBDB "moved to DEFEDB" record. A crash between the two leaves the
//! recipient in both; IBDB replay finds it in DEFEDB and must not deliver it
//! twice from both places (replay treats an IBDB recipient present in
//! DEFEDB as moved). The opposite order could lose the recipient.
//!
//! # Stored format, database format version 1
//!
//! All keys and values are redb `&[u8]` byte strings with the layouts
//! below (integers big-endian, so byte order is numeric order), except the
//! `corrupt` table whose key is redb's `u64`. A *recipient id* is the 26
//! ASCII characters of [`RecipientId`]'s printed form (`S…-xxxxxx`,
//! upper-case hex, so byte order is id order). A *text* is a `u16` byte
//! length followed by UTF-8 bytes.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `smx_defedb_meta` (`&str` → `&[u8]`) | `"format"` / `"version"` | `b"smx DEFEDB"` / one byte, [`FORMAT_VERSION`] |
//! | `recipients` | recipient id | entry, see below |
//! | `due` | `next_try: u64`, recipient id | `()` |
//! | `by_domain` | text: recipient's domain ([`domain_of`]), recipient id | `()` |
//! | `by_sender` | text: the sender ([`sender_key`]), recipient id | `()` |
//! | `by_arrival` | `arrival_us: u64`, recipient id | `()` |
//! | `corrupt` (`u64` → `&[u8]`) | sequence number, from 0 | set-aside record, see below |
//!
//! The four index tables hold exactly one key per entry of `recipients`;
//! every write updates the entry and its index keys in the same
//! transaction. Since every index key ends with the recipient id, keys of
//! one time, domain or sender are in recipient id order.
//!
//! An entry (a `recipients` value) is, in this order, using the
//! [`envelope`](crate::envelope) encoding (strings are a `u32` length and
//! UTF-8, limited as noted):
//!
//! ```text
//! u8   entry format version, 1 (ENTRY_VERSION)
//! 26   recipient id (must equal the key; the transaction id is its prefix)
//! str  recipient address            ≤ MAX_ADDRESS
//! str  RCPT parameters              ≤ MAX_PARAMS
//! str  sender (reverse path, "" for <>)  ≤ MAX_ADDRESS
//! str  MAIL parameters              ≤ MAX_PARAMS
//! u64  message size in bytes
//! u64  arrival time, Unix microseconds
//! u32  number of recipients of the transaction
//! u32  delivery attempts so far
//! u64  next time to try, Unix seconds
//! u64  first attempt, Unix seconds
//! u64  last attempt, Unix seconds
//! u32  DSN flags (see [`dsn`])
//! str  host that gave the last reply  ≤ MAX_HOST
//! str  last reply text (lines joined by CRLF)  ≤ MAX_REPLY
//! u32  CRC32C (Castagnoli) of every byte before it, version byte included
//! ```
//!
//! The checksum is checked right after the version byte: redb 4.4
//! checksums its pages but verifies them only in its integrity check, not
//! on reads (upstream issue #1334), so damage inside a value would
//! otherwise decode as wrong data.
//!
//! A set-aside record (a `corrupt` value) keeps bytes that could not be
//! decoded, exactly as found: `u8` version 1, `u64` Unix seconds when set
//! aside, `u8` length and the source table's name, `u32` length and the
//! original key, then the original value up to the end.
//!
//! # Opening and versions
//!
//! [`Defedb::open`] creates a missing file (under a temporary name, renamed
//! into place once initialised, so a crash never leaves a half-made
//! database). It refuses, with [`DefedbError::NotADefedb`], an existing
//! file that is empty, not a redb database, damaged beyond redb's own
//! repair, or a redb database without our meta table or with tables of
//! other types; and, with [`DefedbError::UnsupportedVersion`], a
//! DEFEDB whose format version is not [`FORMAT_VERSION`]. An entry whose
//! version byte is not [`ENTRY_VERSION`] decodes as
//! [`DecodeError::UnknownVersion`]. A file held by another handle is
//! [`DefedbError::Locked`] (redb locks it exclusively).
//!
//! # Errors and damage
//!
//! Failures are [`DefedbError`]s with a [`class`](DefedbError::class).
//! Damage found by a query does not fail it: an entry that does not decode
//! is skipped and reported as [`Damage::Corrupt`] (`get` returns it as
//! [`DefedbError::Corrupt`]), never dropped; [`Defedb::set_aside_corrupt`]
//! moves its bytes to the `corrupt` table, and
//! [`Defedb::rebuild_indexes`] rebuilds every index from `recipients`
//! (seed 4.10.2: the repair tool in place of Berkeley DB's `db_recover`).
//!
//! redb 4.4 can panic, instead of returning an error, on some damaged
//! files (upstream issues #1333, #1334). Such a panic never escapes this
//! module: during `open` it becomes [`DefedbError::NotADefedb`], later
//! [`DefedbError::EnginePanic`], after which the handle refuses all calls.
//! Panics of the caller's own callbacks pass through unchanged.

mod error;
mod format;

use std::any::Any;
use std::fs::{self, File};
use std::io;
use std::ops::{Bound, ControlFlow, RangeBounds};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

pub use error::{Damage, DecodeError, DefedbError, ErrorClass};
pub use format::{SetAsideRecord, domain_of, sender_key};

use crate::envelope::{Recipient, Transaction};
use crate::id::RecipientId;

/// Conventional file name of the database inside `DEFEDB.base_directory`.
pub const FILE_NAME: &str = "defedb.redb";
/// The database format version this code reads and writes (tables and key
/// layouts); stored in the meta table.
pub const FORMAT_VERSION: u8 = 1;
/// The version byte that starts every entry this code writes.
pub const ENTRY_VERSION: u8 = format::ENTRY_VERSION;
/// Default redb cache size (`DEFEDB.cache_size`, 64 MB).
pub const DEFAULT_CACHE_SIZE: usize = 64 * 1024 * 1024;

/// Bits of [`DeferredRecipient::dsn_flags`]. Bits not named here are
/// reserved: they are stored and read back unchanged.
pub mod dsn {
    /// A delay DSN ("still trying") has been sent for this recipient; do
    /// not send another.
    pub const DELAY_SENT: u32 = 1 << 0;
    /// The recipient failed permanently (or timed out); a failure DSN is
    /// due and not yet generated. The entry stays until the bounce is
    /// queued.
    pub const FAILURE_PENDING: u32 = 1 << 1;
    /// The failure DSN has been generated (queued as a new message).
    pub const FAILURE_SENT: u32 = 1 << 2;
    /// The message is itself a DSN (null sender): a failure must go to the
    /// double bounce address, not to the sender.
    pub const IS_BOUNCE: u32 = 1 << 3;
}

/// A deferred recipient: the recipient, the envelope data of its
/// transaction needed to deliver it and to write DSNs, and its delivery
/// state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredRecipient {
    /// The recipient; its id is the key.
    pub recipient: Recipient,
    /// The transaction; `transaction.id` must be `recipient.id.transaction()`.
    pub transaction: Transaction,
    /// Delivery attempts so far.
    pub tries: u32,
    /// When to try next, Unix seconds.
    pub next_try: u64,
    /// First delivery attempt, Unix seconds.
    pub first_try: u64,
    /// Last delivery attempt, Unix seconds.
    pub last_try: u64,
    /// DSN state, bits of [`dsn`].
    pub dsn_flags: u32,
    /// The host that gave the last reply (name and address text).
    pub last_host: String,
    /// The last SMTP reply, lines joined by CRLF.
    pub last_reply: String,
}

impl DeferredRecipient {
    /// The recipient id.
    pub fn id(&self) -> RecipientId {
        self.recipient.id
    }
}

/// Options of [`Defedb::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DefedbOptions {
    /// redb cache size in bytes (`DEFEDB.cache_size`): an upper bound on
    /// memory for cached pages, not allocated up front.
    pub cache_size: usize,
}

impl Default for DefedbOptions {
    fn default() -> Self {
        DefedbOptions {
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

/// Result of [`Defedb::due`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// Due entries in (next try, recipient id) order.
    pub entries: Vec<DeferredRecipient>,
    /// What was skipped; log and repair it.
    pub damaged: Vec<Damage>,
}

/// Result of a walk (`for_each*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Entries passed to the callback.
    pub visited: u64,
    /// Whether the callback stopped the walk with `Break`.
    pub stopped: bool,
    /// What was skipped; log and repair it.
    pub damaged: Vec<Damage>,
}

/// Result of [`Defedb::set_aside_corrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAside {
    /// The undecodable value was moved to the `corrupt` table, and
    /// `index_keys` index keys naming the id were removed.
    Moved {
        /// Index keys removed.
        index_keys: u64,
    },
    /// There was no entry; `index_keys` dangling index keys were removed
    /// (0: nothing was there at all).
    NoEntry {
        /// Index keys removed.
        index_keys: u64,
    },
    /// The entry decodes; nothing changed (it may have been replaced since
    /// the damage was reported). Stale index keys are repaired by
    /// [`Defedb::rebuild_indexes`].
    NotCorrupt,
}

/// Result of [`Defedb::rebuild_indexes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Entries indexed.
    pub entries: u64,
    /// Entries (or keys) that did not decode and were set aside.
    pub set_aside: u64,
}

/// The deferred envelope database. See the module documentation.
#[derive(Debug)]
pub struct Defedb {
    db: redb::Database,
    path: PathBuf,
    /// Set once the engine panicked; see [`Defedb::guard`].
    poisoned: AtomicBool,
}

type Bytes = &'static [u8];

const META_NAME: &str = "smx_defedb_meta";
const META: TableDefinition<&str, Bytes> = TableDefinition::new(META_NAME);
const RECIPIENTS: TableDefinition<Bytes, Bytes> = TableDefinition::new("recipients");
const CORRUPT: TableDefinition<u64, Bytes> = TableDefinition::new("corrupt");
const META_FORMAT: &str = "format";
const META_VERSION: &str = "version";
const FORMAT_MAGIC: &[u8] = b"smx DEFEDB";

impl Defedb {
    /// Opens the database at `path` with default options, creating it if
    /// the file does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Defedb, DefedbError> {
        Defedb::open_with(path, &DefedbOptions::default())
    }

    /// Opens the database at `path`, creating it if the file does not
    /// exist. See the module documentation for what is refused.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: &DefedbOptions,
    ) -> Result<Defedb, DefedbError> {
        let path = path.as_ref();
        let mut builder = redb::Builder::new();
        builder.set_cache_size(options.cache_size);
        // See `guard` on engine panics. Nothing of a failed open is kept.
        panic::catch_unwind(AssertUnwindSafe(|| Defedb::open_inner(path, &builder))).unwrap_or_else(
            |payload| {
                Err(DefedbError::NotADefedb {
                    path: path.to_path_buf(),
                    detail: format!(
                        "damaged redb database (the engine panicked: {})",
                        panic_text(payload.as_ref())
                    ),
                })
            },
        )
    }

    fn open_inner(path: &Path, builder: &redb::Builder) -> Result<Defedb, DefedbError> {
        let exists = path.try_exists().map_err(|source| DefedbError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !exists {
            create(path, builder)?;
        }
        let db = builder.open(path).map_err(|e| open_error(path, e))?;
        let defedb = Defedb {
            db,
            path: path.to_path_buf(),
            poisoned: AtomicBool::new(false),
        };
        defedb.check_shape()?;
        Ok(defedb)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or replaces `entries` in one durable write transaction:
    /// when this returns `Ok`, all of them are on disk (see the module
    /// documentation on durability; commit DEFEDB before writing the IBDB
    /// record that says the recipients moved here). Replacing an entry
    /// moves its index keys. Entries are validated before anything is
    /// written: one bad entry fails the whole batch with nothing written.
    /// A later entry of the batch with the same id replaces an earlier one.
    ///
    /// A replaced value that does not decode is set aside in `corrupt`
    /// rather than overwritten.
    pub fn put(&self, entries: &[DeferredRecipient]) -> Result<(), DefedbError> {
        let mut encoded = Vec::with_capacity(entries.len());
        for e in entries {
            let id = e.id();
            if e.transaction.id != id.transaction() {
                return Err(DefedbError::TransactionMismatch {
                    id,
                    transaction: e.transaction.id,
                });
            }
            let value = format::encode(e).map_err(|source| DefedbError::Invalid { id, source })?;
            encoded.push(value);
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.write("put", |t| {
            for (e, value) in entries.iter().zip(&encoded) {
                let key = format::id_key(e.id());
                let old = t
                    .recipients
                    .insert(key.as_slice(), value.as_slice())?
                    .map(|g| g.value().to_vec());
                let Some(raw) = old else {
                    t.add_keys(e)?;
                    continue;
                };
                match format::decode(&raw, e.id()) {
                    Ok(old) => t.move_keys(&old, e)?,
                    // Its index keys are unknown: purge by id.
                    Err(_) => {
                        t.set_aside(&key, &raw)?;
                        t.purge(&key)?;
                        t.add_keys(e)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The entry of `id`, if any; [`DefedbError::Corrupt`] if it does not
    /// decode.
    pub fn get(&self, id: RecipientId) -> Result<Option<DeferredRecipient>, DefedbError> {
        let value = self.read("get", |rtx| {
            let t = rtx.open_table(RECIPIENTS)?;
            let v = t.get(format::id_key(id).as_slice())?;
            Ok(v.map(|g| g.value().to_vec()))
        })?;
        match value {
            None => Ok(None),
            Some(v) => format::decode(&v, id)
                .map(Some)
                .map_err(|error| DefedbError::Corrupt { id, error }),
        }
    }

    /// Removes the entries of `ids` in one durable write transaction;
    /// returns how many existed. Missing ids are not an error. A removed
    /// value that does not decode is set aside in `corrupt`, not dropped.
    pub fn remove(&self, ids: &[RecipientId]) -> Result<usize, DefedbError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.write("remove", |t| {
            let mut removed = 0;
            for &id in ids {
                let key = format::id_key(id);
                let old = t.recipients.remove(key.as_slice())?;
                let Some(raw) = old.map(|g| g.value().to_vec()) else {
                    continue;
                };
                removed += 1;
                match format::decode(&raw, id) {
                    Ok(old) => t.remove_keys(&old)?,
                    Err(_) => {
                        t.set_aside(&key, &raw)?;
                        t.purge(&key)?;
                    }
                }
            }
            Ok(removed)
        })
    }

    /// Up to `limit` entries whose next try is at or before `now_secs`, in
    /// (next try, recipient id) order, read in one snapshot. Damaged
    /// entries are skipped, reported, and do not count toward `limit`.
    pub fn due(&self, now_secs: u64, limit: usize) -> Result<Due, DefedbError> {
        let mut due = Due::default();
        if limit == 0 {
            return Ok(due);
        }
        let upper = now_secs.checked_add(1).map(format::time_lower);
        let scan = self.walk(Index::Due, Vec::new(), upper, None, &mut |e| {
            due.entries.push(e.clone());
            if due.entries.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        due.damaged = scan.damaged;
        Ok(due)
    }

    /// The earliest next try of any entry (Unix seconds), or `None` when
    /// the database is empty. Malformed index keys are passed over here
    /// and reported by [`due`](Self::due).
    pub fn next_due(&self) -> Result<Option<u64>, DefedbError> {
        self.read("next_due", |rtx| {
            let t = rtx.open_table(Index::Due.def())?;
            for item in t.iter()? {
                let (k, _) = item?;
                if let Some((time, _)) = format::parse_time_key(k.value()) {
                    return Ok(Some(time));
                }
            }
            Ok(None)
        })
    }

    /// Number of entries.
    pub fn len(&self) -> Result<u64, DefedbError> {
        self.read("len", |rtx| Ok(rtx.open_table(RECIPIENTS)?.len()?))
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> Result<bool, DefedbError> {
        Ok(self.len()? == 0)
    }

    /// Calls `f` for every entry in recipient id order, within one read
    /// transaction, decoding one entry at a time; `f` returns
    /// `ControlFlow::Break(())` to stop.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&DeferredRecipient) -> ControlFlow<()>,
    ) -> Result<Scan, DefedbError> {
        let mut f = Callback::new(&mut f);
        let scan = self.read("for_each", |rtx| {
            let t = rtx.open_table(RECIPIENTS)?;
            let mut scan = Scan::default();
            for item in t.iter()? {
                let (k, v) = item?;
                let Some(id) = format::parse_id(k.value()) else {
                    scan.damaged.push(Damage::BadKey {
                        table: "recipients",
                        key: k.value().to_vec(),
                    });
                    continue;
                };
                match format::decode(v.value(), id) {
                    Err(error) => scan.damaged.push(Damage::Corrupt { id, error }),
                    Ok(e) => {
                        scan.visited += 1;
                        if f.call(&e).is_break() {
                            scan.stopped = true;
                            break;
                        }
                    }
                }
            }
            Ok(scan)
        });
        f.finish();
        scan
    }

    /// Calls `f` for every entry whose recipient domain is `domain`
    /// (compared as [`domain_of`] computes it: ASCII case-insensitive; ""
    /// for addresses without a domain), in recipient id order.
    pub fn for_each_by_domain(
        &self,
        domain: &str,
        mut f: impl FnMut(&DeferredRecipient) -> ControlFlow<()>,
    ) -> Result<Scan, DefedbError> {
        let Some(prefix) = format::text_prefix(&domain.to_ascii_lowercase()) else {
            return Ok(Scan::default());
        };
        self.walk(Index::Domain, prefix.clone(), None, Some(&prefix), &mut f)
    }

    /// Calls `f` for every entry whose sender is `sender` (compared as
    /// [`sender_key`] computes it: the domain ASCII case-insensitive, the
    /// local part exact; "" is the null sender), in recipient id order.
    pub fn for_each_by_sender(
        &self,
        sender: &str,
        mut f: impl FnMut(&DeferredRecipient) -> ControlFlow<()>,
    ) -> Result<Scan, DefedbError> {
        let Some(prefix) = format::text_prefix(&sender_key(sender)) else {
            return Ok(Scan::default());
        };
        self.walk(Index::Sender, prefix.clone(), None, Some(&prefix), &mut f)
    }

    /// Calls `f` for every entry whose transaction arrived (Unix
    /// microseconds) within `arrival_us`, oldest first (ties in recipient
    /// id order). `..` walks everything.
    pub fn for_each_by_age(
        &self,
        arrival_us: impl RangeBounds<u64>,
        mut f: impl FnMut(&DeferredRecipient) -> ControlFlow<()>,
    ) -> Result<Scan, DefedbError> {
        let lower = match arrival_us.start_bound() {
            Bound::Unbounded => Vec::new(),
            Bound::Included(&a) => format::time_lower(a),
            Bound::Excluded(&a) => match a.checked_add(1) {
                Some(a) => format::time_lower(a),
                None => return Ok(Scan::default()),
            },
        };
        let upper = match arrival_us.end_bound() {
            Bound::Unbounded => None,
            Bound::Included(&b) => b.checked_add(1).map(format::time_lower),
            Bound::Excluded(&b) => Some(format::time_lower(b)),
        };
        if upper.as_ref().is_some_and(|u| *u <= lower) {
            return Ok(Scan::default());
        }
        self.walk(Index::Arrival, lower, upper, None, &mut f)
    }

    /// Moves the entry of `id` to the `corrupt` table if it does not decode,
    /// and removes every index key that names `id` (this scans the four
    /// indexes: it is a repair operation, not for the fast path). Does
    /// nothing to an entry that decodes.
    pub fn set_aside_corrupt(&self, id: RecipientId) -> Result<SetAside, DefedbError> {
        self.write("set_aside_corrupt", |t| {
            let key = format::id_key(id);
            let raw = t
                .recipients
                .get(key.as_slice())?
                .map(|g| g.value().to_vec());
            match raw {
                Some(raw) if format::decode(&raw, id).is_ok() => Ok(SetAside::NotCorrupt),
                Some(raw) => {
                    t.recipients.remove(key.as_slice())?;
                    t.set_aside(&key, &raw)?;
                    Ok(SetAside::Moved {
                        index_keys: t.purge(&key)?,
                    })
                }
                None => Ok(SetAside::NoEntry {
                    index_keys: t.purge(&key)?,
                }),
            }
        })
    }

    /// Rebuilds the four indexes from `recipients` in one write transaction:
    /// drops every index key, then indexes every entry that decodes; entries
    /// (and keys) that do not decode are moved to `corrupt`. Repairs every
    /// [`Damage`]. Time grows with the number of entries, memory with the
    /// number of damaged ones.
    pub fn rebuild_indexes(&self) -> Result<Rebuilt, DefedbError> {
        self.write("rebuild_indexes", |t| {
            for idx in &mut t.indexes {
                idx.retain(|_, ()| false)?;
            }
            let mut rebuilt = Rebuilt::default();
            let mut bad = Vec::new();
            for item in t.recipients.iter()? {
                let (k, v) = item?;
                let decoded =
                    format::parse_id(k.value()).and_then(|id| format::decode(v.value(), id).ok());
                match decoded {
                    Some(e) => {
                        for (idx, table) in Index::ALL.iter().zip(&mut t.indexes) {
                            table.insert(idx.key(&e).as_slice(), ())?;
                        }
                        rebuilt.entries += 1;
                    }
                    None => bad.push((k.value().to_vec(), v.value().to_vec())),
                }
            }
            for (key, value) in bad {
                t.recipients.remove(key.as_slice())?;
                t.set_aside(&key, &value)?;
                rebuilt.set_aside += 1;
            }
            Ok(rebuilt)
        })
    }

    /// Calls `f` for every set-aside record, oldest first. A record that
    /// does not parse is passed with an empty `table` and its raw bytes in
    /// `value`.
    pub fn for_each_set_aside(
        &self,
        mut f: impl FnMut(&SetAsideRecord) -> ControlFlow<()>,
    ) -> Result<(), DefedbError> {
        let mut f = Callback::new(&mut f);
        let done = self.read("for_each_set_aside", |rtx| {
            let t = rtx.open_table(CORRUPT)?;
            for item in t.iter()? {
                let (k, v) = item?;
                let seq = k.value();
                let record =
                    format::decode_set_aside(seq, v.value()).unwrap_or_else(|| SetAsideRecord {
                        seq,
                        at_secs: 0,
                        table: String::new(),
                        key: Vec::new(),
                        value: v.value().to_vec(),
                    });
                if f.call(&record).is_break() {
                    break;
                }
            }
            Ok(())
        });
        f.finish();
        done
    }

    /// Number of set-aside records.
    pub fn set_aside_len(&self) -> Result<u64, DefedbError> {
        self.read("set_aside_len", |rtx| Ok(rtx.open_table(CORRUPT)?.len()?))
    }

    // ---- helpers ----

    fn db_error(&self, op: &'static str, source: redb::Error) -> DefedbError {
        DefedbError::Database {
            path: self.path.clone(),
            op,
            source: Box::new(source),
        }
    }

    /// Runs `f` on the engine, containing a panic of the engine: redb 4.4
    /// can panic on a damaged file instead of returning `Corrupted`
    /// (upstream issues #1333, #1334). After such a panic the handle's
    /// in-memory state cannot be trusted, so every later call fails with
    /// [`DefedbError::EnginePanic`] too; the operator repairs or replaces
    /// the file. Callers' callbacks run under [`Callback`], so their own
    /// panics are not mistaken for the engine's.
    fn guard<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, redb::Error>,
    ) -> Result<T, DefedbError> {
        let panicked = |detail: String| DefedbError::EnginePanic {
            path: self.path.clone(),
            op,
            detail,
        };
        if self.poisoned.load(Ordering::Acquire) {
            return Err(panicked(
                "an earlier operation panicked in the engine".into(),
            ));
        }
        match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r.map_err(|e| self.db_error(op, e)),
            Err(payload) => {
                self.poisoned.store(true, Ordering::Release);
                Err(panicked(panic_text(payload.as_ref())))
            }
        }
    }

    /// Runs `f` in a read transaction (a snapshot).
    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, DefedbError> {
        self.guard(op, || {
            let rtx = self.db.begin_read()?;
            f(&rtx)
        })
    }

    /// Runs `f` in a write transaction and commits it durably; on error
    /// the transaction is dropped, which aborts it.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<T, redb::Error>,
    ) -> Result<T, DefedbError> {
        self.guard(op, || {
            let mut txn = self.db.begin_write()?;
            // The default, made explicit: the durability contract of `put`
            // rests on it.
            txn.set_durability(redb::Durability::Immediate)?;
            let out = {
                let mut tables = WriteTables::open(&txn)?;
                f(&mut tables)?
            };
            txn.commit()?;
            Ok(out)
        })
    }

    /// Walks `index` from `lower` (inclusive) to `upper` (exclusive, or the
    /// end), stopping at the first key without `prefix`; resolves each key
    /// to its entry and calls `f`.
    fn walk(
        &self,
        index: Index,
        lower: Vec<u8>,
        upper: Option<Vec<u8>>,
        prefix: Option<&[u8]>,
        f: &mut dyn FnMut(&DeferredRecipient) -> ControlFlow<()>,
    ) -> Result<Scan, DefedbError> {
        let mut f = Callback::new(f);
        let scan = self.read(index.name(), |rtx| {
            let idx = rtx.open_table(index.def())?;
            let main = rtx.open_table(RECIPIENTS)?;
            let mut scan = Scan::default();
            let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (
                Bound::Included(lower.as_slice()),
                upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            );
            for item in idx.range::<&[u8]>(bounds)? {
                let (k, _) = item?;
                let key = k.value();
                if prefix.is_some_and(|p| !key.starts_with(p)) {
                    break;
                }
                let Some(id) = index.parse(key) else {
                    scan.damaged.push(Damage::BadKey {
                        table: index.name(),
                        key: key.to_vec(),
                    });
                    continue;
                };
                let Some(v) = main.get(format::id_key(id).as_slice())? else {
                    scan.damaged.push(Damage::Corrupt {
                        id,
                        error: DecodeError::Missing {
                            index: index.name(),
                        },
                    });
                    continue;
                };
                let e = match format::decode(v.value(), id) {
                    Ok(e) => e,
                    Err(error) => {
                        scan.damaged.push(Damage::Corrupt { id, error });
                        continue;
                    }
                };
                if index.key(&e) != key {
                    scan.damaged.push(Damage::StaleIndexKey {
                        index: index.name(),
                        id,
                    });
                    continue;
                }
                scan.visited += 1;
                if f.call(&e).is_break() {
                    scan.stopped = true;
                    break;
                }
            }
            Ok(scan)
        });
        f.finish();
        scan
    }

    /// Checks that the file holds a DEFEDB of our version, initialising a
    /// redb database that has no tables at all.
    fn check_shape(&self) -> Result<(), DefedbError> {
        let not = |detail: String| DefedbError::NotADefedb {
            path: self.path.clone(),
            detail,
        };
        let rtx = self
            .db
            .begin_read()
            .map_err(|e| self.db_error("open", e.into()))?;
        let meta = match rtx.open_table(META) {
            Ok(meta) => meta,
            Err(TableError::TableDoesNotExist(_)) => {
                let mut names: Vec<String> = rtx
                    .list_tables()
                    .map_err(|e| self.db_error("open", e.into()))?
                    .map(|h| redb::TableHandle::name(&h).to_owned())
                    .collect();
                names.extend(
                    rtx.list_multimap_tables()
                        .map_err(|e| self.db_error("open", e.into()))?
                        .map(|h| redb::MultimapTableHandle::name(&h).to_owned()),
                );
                if !names.is_empty() {
                    names.sort();
                    return Err(not(format!(
                        "a redb database without the table {} (it has: {})",
                        META_NAME,
                        names.join(", ")
                    )));
                }
                drop(rtx);
                return self.initialise();
            }
            Err(TableError::Storage(e)) => return Err(self.db_error("open", e.into())),
            Err(e) => return Err(not(e.to_string())),
        };
        let read = |key: &str| -> Result<Option<Vec<u8>>, DefedbError> {
            meta.get(key)
                .map(|v| v.map(|g| g.value().to_vec()))
                .map_err(|e| self.db_error("open", e.into()))
        };
        if read(META_FORMAT)?.as_deref() != Some(FORMAT_MAGIC) {
            return Err(not(format!(
                "the table {} does not name an smx DEFEDB",
                META_NAME
            )));
        }
        match read(META_VERSION)?.as_deref() {
            Some([v]) if *v == FORMAT_VERSION => {}
            Some([v]) => {
                return Err(DefedbError::UnsupportedVersion {
                    path: self.path.clone(),
                    version: *v,
                });
            }
            _ => return Err(not("no valid format version in the meta table".into())),
        }
        // Version 1 creates every table with the meta table; one missing or
        // of another type means the file is not what its meta table says.
        let check = |r: Result<(), TableError>| match r {
            Ok(()) => Ok(()),
            Err(TableError::Storage(e)) => Err(self.db_error("open", e.into())),
            Err(e) => Err(not(e.to_string())),
        };
        check(rtx.open_table(RECIPIENTS).map(drop))?;
        check(rtx.open_table(CORRUPT).map(drop))?;
        for idx in Index::ALL {
            check(rtx.open_table(idx.def()).map(drop))?;
        }
        Ok(())
    }

    /// Creates the tables and writes the meta table (used on a file redb
    /// has just created).
    fn initialise(&self) -> Result<(), DefedbError> {
        initialise_meta(&self.db).map_err(|e| self.db_error("initialise", e))
    }
}

/// Creates a new database at `path`: initialised under a temporary name,
/// then renamed into place and the directory synced, so `path` is either
/// missing or a complete DEFEDB.
fn create(path: &Path, builder: &redb::Builder) -> Result<(), DefedbError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source: io::Error| DefedbError::Io { path: p, source }
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    // A leftover from a crash during an earlier creation holds nothing.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    {
        let db = builder.create(&tmp).map_err(|e| open_error(&tmp, e))?;
        initialise_meta(&db).map_err(|source| DefedbError::Database {
            path: tmp.clone(),
            op: "create",
            source: Box::new(source),
        })?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes the meta table and creates every table, durably.
fn initialise_meta(db: &redb::Database) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(META_FORMAT, FORMAT_MAGIC)?;
        meta.insert(META_VERSION, [FORMAT_VERSION].as_slice())?;
        drop(WriteTables::open(&txn)?);
    }
    txn.commit()?;
    Ok(())
}

/// The message of a panic payload.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_owned()
    }
}

/// A caller's callback, run so that its panic is told apart from the
/// engine's: the panic is caught, the walk stops, and [`Callback::finish`]
/// resumes it once the transaction is closed. The caller sees its own
/// panic, exactly as if no walk were in between.
struct Callback<'f, A: ?Sized> {
    f: &'f mut dyn FnMut(&A) -> ControlFlow<()>,
    panic: Option<Box<dyn Any + Send>>,
}

impl<'f, A: ?Sized> Callback<'f, A> {
    fn new(f: &'f mut dyn FnMut(&A) -> ControlFlow<()>) -> Self {
        Callback { f, panic: None }
    }

    fn call(&mut self, a: &A) -> ControlFlow<()> {
        match panic::catch_unwind(AssertUnwindSafe(|| (self.f)(a))) {
            Ok(flow) => flow,
            Err(payload) => {
                self.panic = Some(payload);
                ControlFlow::Break(())
            }
        }
    }

    fn finish(self) {
        if let Some(payload) = self.panic {
            panic::resume_unwind(payload);
        }
    }
}

/// Maps an error of redb's open or create.
fn open_error(path: &Path, e: redb::DatabaseError) -> DefedbError {
    let path = path.to_path_buf();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => DefedbError::Locked { path },
        redb::DatabaseError::UpgradeRequired(v) => DefedbError::NotADefedb {
            path,
            detail: format!("a redb database of file format {v}, which needs an upgrade"),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == io::ErrorKind::InvalidData =>
        {
            DefedbError::NotADefedb {
                path,
                detail: e.to_string(),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(source)) => {
            DefedbError::Io { path, source }
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
            DefedbError::NotADefedb {
                path,
                detail: format!("damaged redb database: {detail}"),
            }
        }
        e => DefedbError::Database {
            path,
            op: "open",
            source: Box::new(e.into()),
        },
    }
}

/// The four index tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    Due,
    Domain,
    Sender,
    Arrival,
}

impl Index {
    const ALL: [Index; 4] = [Index::Due, Index::Domain, Index::Sender, Index::Arrival];

    fn name(self) -> &'static str {
        match self {
            Index::Due => "due",
            Index::Domain => "by_domain",
            Index::Sender => "by_sender",
            Index::Arrival => "by_arrival",
        }
    }

    fn def(self) -> TableDefinition<'static, Bytes, ()> {
        TableDefinition::new(self.name())
    }

    /// The key of `e` in this index.
    fn key(self, e: &DeferredRecipient) -> Vec<u8> {
        let id = e.id();
        match self {
            Index::Due => format::time_key(e.next_try, id),
            Index::Domain => format::text_key(&domain_of(&e.recipient.address), id),
            Index::Sender => format::text_key(&sender_key(&e.transaction.sender), id),
            Index::Arrival => format::time_key(e.transaction.arrival_us, id),
        }
    }

    /// The id of a key of this index, `None` if the key is malformed.
    fn parse(self, key: &[u8]) -> Option<RecipientId> {
        match self {
            Index::Due | Index::Arrival => format::parse_time_key(key).map(|(_, id)| id),
            Index::Domain | Index::Sender => format::parse_text_key(key),
        }
    }
}

/// The tables of a write transaction.
struct WriteTables<'t> {
    recipients: redb::Table<'t, Bytes, Bytes>,
    /// In [`Index::ALL`] order.
    indexes: [redb::Table<'t, Bytes, ()>; 4],
    corrupt: redb::Table<'t, u64, Bytes>,
}

impl<'t> WriteTables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, redb::Error> {
        Ok(WriteTables {
            recipients: txn.open_table(RECIPIENTS)?,
            indexes: [
                txn.open_table(Index::Due.def())?,
                txn.open_table(Index::Domain.def())?,
                txn.open_table(Index::Sender.def())?,
                txn.open_table(Index::Arrival.def())?,
            ],
            corrupt: txn.open_table(CORRUPT)?,
        })
    }

    fn add_keys(&mut self, e: &DeferredRecipient) -> Result<(), redb::Error> {
        for (idx, table) in Index::ALL.iter().zip(&mut self.indexes) {
            table.insert(idx.key(e).as_slice(), ())?;
        }
        Ok(())
    }

    fn remove_keys(&mut self, e: &DeferredRecipient) -> Result<(), redb::Error> {
        for (idx, table) in Index::ALL.iter().zip(&mut self.indexes) {
            table.remove(idx.key(e).as_slice())?;
        }
        Ok(())
    }

    /// Replaces the index keys of `old` by those of `new`, touching only
    /// the indexes whose key changes.
    fn move_keys(
        &mut self,
        old: &DeferredRecipient,
        new: &DeferredRecipient,
    ) -> Result<(), redb::Error> {
        for (idx, table) in Index::ALL.iter().zip(&mut self.indexes) {
            let (o, n) = (idx.key(old), idx.key(new));
            if o != n {
                table.remove(o.as_slice())?;
                table.insert(n.as_slice(), ())?;
            }
        }
        Ok(())
    }

    /// Removes every index key that ends with the recipient id `id_key`;
    /// returns how many.
    fn purge(&mut self, id_key: &[u8]) -> Result<u64, redb::Error> {
        let mut n = 0;
        for table in &mut self.indexes {
            table.retain(|k, ()| {
                let hit = k.ends_with(id_key);
                n += u64::from(hit);
                !hit
            })?;
        }
        Ok(n)
    }

    /// Appends a set-aside record for a `recipients` key and value.
    fn set_aside(&mut self, key: &[u8], value: &[u8]) -> Result<(), redb::Error> {
        let seq = match self.corrupt.last()? {
            Some((k, _)) => k.value().saturating_add(1),
            None => 0,
        };
        let record = format::encode_set_aside("recipients", key, value);
        self.corrupt.insert(seq, record.as_slice())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TransactionId;

    fn entry(ta: u64, index: u32, next_try: u64) -> DeferredRecipient {
        let ta = TransactionId::new(ta, 0);
        DeferredRecipient {
            recipient: Recipient {
                id: RecipientId::new(ta, index).unwrap(),
                address: format!("u{index}@Example.org"),
                params: String::new(),
            },
            transaction: Transaction {
                id: ta,
                sender: "s@example.net".into(),
                params: String::new(),
                size: 10,
                arrival_us: 5,
                nrcpts: 1,
            },
            tries: 1,
            next_try,
            first_try: 1,
            last_try: 1,
            dsn_flags: 0,
            last_host: String::new(),
            last_reply: String::new(),
        }
    }

    #[test]
    fn put_validates_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
        let good = entry(1, 0, 10);
        let mut long = entry(1, 1, 10);
        long.recipient.address = "x".repeat(crate::envelope::MAX_ADDRESS + 1);
        assert!(matches!(
            db.put(&[good.clone(), long]),
            Err(DefedbError::Invalid { .. })
        ));
        let mut mismatch = entry(1, 2, 10);
        mismatch.transaction.id = TransactionId::new(2, 0);
        let e = db.put(&[good.clone(), mismatch]).unwrap_err();
        assert!(matches!(e, DefedbError::TransactionMismatch { .. }));
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(db.len().unwrap(), 0);
        db.put(&[]).unwrap();
        assert_eq!(db.remove(&[]).unwrap(), 0);
        assert_eq!(db.due(u64::MAX, 0).unwrap(), Due::default());
    }

    #[test]
    fn same_id_twice_in_a_batch_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
        db.put(&[entry(1, 0, 10), entry(1, 0, 20)]).unwrap();
        let due = db.due(u64::MAX, 10).unwrap();
        assert_eq!(due.entries, vec![entry(1, 0, 20)]);
        assert!(due.damaged.is_empty());
        assert_eq!(db.next_due().unwrap(), Some(20));
    }

    #[test]
    fn an_engine_panic_poisons_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
        db.put(&[entry(1, 0, 10)]).unwrap();
        // Stands in for redb panicking on a damaged page.
        let e = db
            .guard("test", || -> Result<(), redb::Error> { panic!("boom") })
            .unwrap_err();
        assert!(
            matches!(&e, DefedbError::EnginePanic { op: "test", detail, .. } if detail == "boom"),
            "{e:?}"
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        // Every later call refuses, reads and writes alike.
        assert!(matches!(
            db.len(),
            Err(DefedbError::EnginePanic { op: "len", .. })
        ));
        assert!(matches!(
            db.put(&[entry(1, 1, 10)]),
            Err(DefedbError::EnginePanic { op: "put", .. })
        ));
    }

    #[test]
    fn a_callback_panic_is_the_callers_and_leaves_the_handle_usable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
        db.put(&[entry(1, 0, 10), entry(1, 1, 20)]).unwrap();
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = db.for_each_by_domain("example.org", |_| panic!("caller bug"));
        }))
        .unwrap_err();
        assert_eq!(panic_text(caught.as_ref()), "caller bug");
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = db.for_each(|_| panic!("again"));
        }));
        assert!(caught.is_err());
        assert_eq!(db.due(u64::MAX, 10).unwrap().entries.len(), 2);
    }

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Defedb>();
        check::<DefedbError>();
    }
}
