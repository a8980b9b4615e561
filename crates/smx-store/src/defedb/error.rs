//! Errors of DEFEDB, and the damage a query can meet and skip.

use std::io;
use std::path::PathBuf;

use crate::envelope::CodecError;
use crate::id::{RecipientId, TransactionId};

pub use crate::ErrorClass;

/// Why an entry of the `recipients` table could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The value is empty.
    #[error("empty value")]
    Empty,
    /// The value starts with a format version this code does not know.
    #[error("unknown entry format version {0}")]
    UnknownVersion(u8),
    /// The value's CRC32C does not match its contents (bit rot, or bytes
    /// written by something else).
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// The checksum at the end of the value.
        stored: u32,
        /// The checksum of the value's contents.
        computed: u32,
    },
    /// The recipient id inside the value differs from its key.
    #[error("value holds recipient id {stored}, not its key's")]
    IdMismatch {
        /// The id found in the value.
        stored: RecipientId,
    },
    /// A field does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An index names this recipient but the `recipients` table has no
    /// entry for it.
    #[error("index {index} names a recipient that has no entry")]
    Missing {
        /// The index table.
        index: &'static str,
    },
}

/// Something a query met, could not use, skipped and reports. Queries never
/// drop damage silently and never fail because of it; the caller logs it and
/// repairs it as each variant says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The entry of `id` does not decode, or an index names `id` but there
    /// is no entry. Repair: [`Defedb::set_aside_corrupt`](super::Defedb::set_aside_corrupt).
    Corrupt {
        /// The recipient.
        id: RecipientId,
        /// What is wrong.
        error: DecodeError,
    },
    /// An index key names an entry whose fields do not give that key (the
    /// index is out of step with the entry). Repair:
    /// [`Defedb::rebuild_indexes`](super::Defedb::rebuild_indexes).
    StaleIndexKey {
        /// The index table.
        index: &'static str,
        /// The recipient the key names.
        id: RecipientId,
    },
    /// A key that does not have the documented layout. Repair:
    /// [`Defedb::rebuild_indexes`](super::Defedb::rebuild_indexes), which
    /// sets aside bad keys of `recipients` and drops bad index keys.
    BadKey {
        /// The table.
        table: &'static str,
        /// The key as found.
        key: Vec<u8>,
    },
}

/// Errors of [`Defedb`](super::Defedb).
#[derive(Debug, thiserror::Error)]
pub enum DefedbError {
    /// The file is not a DEFEDB: not a redb database, an empty file, a
    /// damaged database redb could not repair, or a redb database with
    /// other tables. Permanent: an operator must look at the file.
    #[error("{path} is not a DEFEDB: {detail}")]
    NotADefedb {
        /// The database file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The file is a DEFEDB of a format version this code does not know
    /// (written by a newer smx). Permanent.
    #[error("DEFEDB {path} has unsupported format version {version}")]
    UnsupportedVersion {
        /// The database file.
        path: PathBuf,
        /// The version found.
        version: u8,
    },
    /// Another process (or another handle in this one) has the database
    /// open. Temporary: it may exit; starting two queue managers on one
    /// queue is a supervision error.
    #[error("DEFEDB {path} is open in another process or handle")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// Creating the database file or syncing its directory failed.
    /// Temporary.
    #[error("DEFEDB {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The database engine failed during `op`. Its class follows the
    /// engine's error: I/O failures are temporary, a damaged database is
    /// permanent. A failed write left the database unchanged or fully
    /// changed, never half (redb commits atomically); after an I/O error
    /// redb refuses writes until the database is opened again.
    #[error("DEFEDB {path}: {op}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The engine's error.
        source: Box<redb::Error>,
    },
    /// The database engine panicked during `op` (redb can, on a damaged
    /// file). Permanent: the handle refuses every later call; the file
    /// needs repair (`rebuild_indexes` cannot help while the engine
    /// panics) or restoring.
    #[error(
        "DEFEDB {path}: the database engine panicked during {op} ({detail}); the file is probably damaged"
    )]
    EnginePanic {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The panic message.
        detail: String,
    },
    /// An entry given to [`put`](super::Defedb::put) has a field over its
    /// limit. Permanent; nothing of the batch was written.
    #[error("recipient {id}: cannot store entry: {source}")]
    Invalid {
        /// The recipient.
        id: RecipientId,
        /// The field and limit.
        source: CodecError,
    },
    /// An entry given to [`put`](super::Defedb::put) has a transaction id
    /// that is not its recipient's. Permanent (a caller bug); nothing of
    /// the batch was written.
    #[error("recipient {id}: transaction id {transaction} does not match")]
    TransactionMismatch {
        /// The recipient.
        id: RecipientId,
        /// The transaction id of the entry.
        transaction: TransactionId,
    },
    /// The stored entry of `id` does not decode. Permanent for this entry;
    /// set it aside with [`set_aside_corrupt`](super::Defedb::set_aside_corrupt).
    #[error("DEFEDB entry {id} is corrupt: {error}")]
    Corrupt {
        /// The recipient.
        id: RecipientId,
        /// What is wrong.
        error: DecodeError,
    },
}

impl DefedbError {
    /// Whether retrying may help. No DEFEDB error is a reason to bounce
    /// mail: a temporary error means "try the operation again later", a
    /// permanent one means "an operator must look".
    pub fn class(&self) -> ErrorClass {
        match self {
            DefedbError::Locked { .. } | DefedbError::Io { .. } => ErrorClass::Temporary,
            DefedbError::Database { source, .. } => redb_class(source),
            DefedbError::NotADefedb { .. }
            | DefedbError::UnsupportedVersion { .. }
            | DefedbError::Invalid { .. }
            | DefedbError::TransactionMismatch { .. }
            | DefedbError::Corrupt { .. }
            | DefedbError::EnginePanic { .. } => ErrorClass::Permanent,
        }
    }
}

/// The class of an engine error. Anything not known to be permanent is
/// temporary: retrying a write later never loses mail.
fn redb_class(e: &redb::Error) -> ErrorClass {
    match e {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::ValueTooLarge(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableDoesNotExist(_) => ErrorClass::Permanent,
        _ => ErrorClass::Temporary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let p = PathBuf::from("x");
        let db = |e: redb::Error| DefedbError::Database {
            path: p.clone(),
            op: "t",
            source: Box::new(e),
        };
        // (error, want)
        let cases = [
            (
                DefedbError::Locked { path: p.clone() },
                ErrorClass::Temporary,
            ),
            (
                DefedbError::Io {
                    path: p.clone(),
                    source: io::Error::other("x"),
                },
                ErrorClass::Temporary,
            ),
            (
                db(redb::Error::Io(io::Error::other("x"))),
                ErrorClass::Temporary,
            ),
            (db(redb::Error::PreviousIo), ErrorClass::Temporary),
            (
                db(redb::Error::Corrupted("x".into())),
                ErrorClass::Permanent,
            ),
            (
                DefedbError::NotADefedb {
                    path: p.clone(),
                    detail: "x".into(),
                },
                ErrorClass::Permanent,
            ),
            (
                DefedbError::UnsupportedVersion {
                    path: p.clone(),
                    version: 9,
                },
                ErrorClass::Permanent,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.class(), want, "{e}");
        }
    }
}
