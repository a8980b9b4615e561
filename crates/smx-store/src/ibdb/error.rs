//! Errors of IBDB, and the kinds of damage recovery refuses.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::format::{FrameError, HeaderError, RecordError};
use crate::ErrorClass;
use crate::envelope::CodecError;

/// What went wrong in IBDB. Cloneable, because the error of a failed group
/// commit is delivered to every commit of the batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IbdbError {
    /// A file system operation failed (`ENOSPC`, `EIO`, permissions).
    /// Temporary. When this is the result of a commit, none of the commit's
    /// records is acknowledged; the file it was written to is not written
    /// again (see "Failures" in the [module documentation](super)).
    #[error("IBDB {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error, shared by all commits of a batch.
        source: Arc<io::Error>,
    },
    /// Another process (or another handle in this one) has the IBDB
    /// directory open. Temporary: starting two queue managers on one queue
    /// is a supervision error.
    #[error("IBDB directory {path} is in use by another process or handle")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file (or a frame in it) has a format version this code does not
    /// read: it was written by a newer smx. Permanent; nothing was moved or
    /// changed.
    #[error(
        "IBDB file {path}: unsupported format version {version} at offset {offset} \
         (this smx reads version {})",
        super::format::FORMAT_VERSION
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Offset of the header (0) or frame with the version byte.
        offset: u64,
        /// The version found.
        version: u8,
    },
    /// A file is damaged in a way a crash cannot explain. It was moved to
    /// `moved_to` (in the `corrupt/` subdirectory) and nothing else was
    /// done; the next [`open`](super::Ibdb::open) proceeds without it.
    /// Permanent: an operator must look; the envelopes in the file are not
    /// recovered (see "Recovery" in the [module documentation](super)).
    #[error("IBDB file {path} is corrupt at offset {offset}: {detail}; moved to {moved_to}")]
    Corrupt {
        /// Where the file was.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// Where the file is now.
        moved_to: PathBuf,
        /// What is wrong.
        detail: Damage,
    },
    /// As [`Corrupt`](Self::Corrupt), but moving the file aside failed too,
    /// so it is still in place and the next open meets it again.
    /// Permanent.
    #[error(
        "IBDB file {path} is corrupt at offset {offset}: {detail}; \
         moving it aside failed: {source}"
    )]
    CorruptNotMoved {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        detail: Damage,
        /// Why it could not be moved.
        source: Arc<io::Error>,
    },
    /// A record of a commit cannot be encoded (a field over its limit).
    /// Permanent; nothing of the commit was written.
    #[error("IBDB commit record {index}: {source}")]
    Invalid {
        /// Index of the record in the commit.
        index: usize,
        /// The field and limit.
        source: CodecError,
    },
    /// The records of one commit are larger than a frame may be.
    /// Permanent; nothing of the commit was written.
    #[error("IBDB commit of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Encoded size of the commit.
        len: usize,
        /// The limit ([`MAX_FRAME_PAYLOAD`](super::format::MAX_FRAME_PAYLOAD)).
        max: usize,
    },
    /// The options are unusable. Permanent.
    #[error("IBDB options: {0}")]
    Options(&'static str),
    /// The IBDB was closed; the commit was not written. Temporary (for the
    /// message: it can be accepted again after a restart).
    #[error("IBDB is closed")]
    Closed,
    /// The committer thread stopped unexpectedly (a bug); the commit's fate
    /// is unknown: it may or may not be recovered after a restart.
    /// Temporary.
    #[error("IBDB committer thread stopped")]
    Stopped,
}

impl IbdbError {
    /// Whether retrying may help. No IBDB error is a reason to bounce mail:
    /// a temporary error means "reject the transaction with 4xx, try the
    /// operation later"; a permanent one means "an operator must look".
    pub fn class(&self) -> ErrorClass {
        match self {
            IbdbError::Io { .. }
            | IbdbError::Locked { .. }
            | IbdbError::Closed
            | IbdbError::Stopped => ErrorClass::Temporary,
            IbdbError::UnsupportedVersion { .. }
            | IbdbError::Corrupt { .. }
            | IbdbError::CorruptNotMoved { .. }
            | IbdbError::Invalid { .. }
            | IbdbError::TooLarge { .. }
            | IbdbError::Options(_) => ErrorClass::Permanent,
        }
    }

    /// The operating system error behind an [`Io`](Self::Io) error, e.g. to
    /// tell a full disk (`ENOSPC`) from a failing one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            IbdbError::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(super) fn io(path: impl Into<PathBuf>, op: &'static str, e: io::Error) -> IbdbError {
        IbdbError::Io {
            path: path.into(),
            op,
            source: Arc::new(e),
        }
    }
}

/// Damage that recovery will not explain away as a torn write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// The file header does not decode.
    #[error("bad file header: {0}")]
    Header(HeaderError),
    /// The header's sequence number is not the one in the file name.
    #[error("header names sequence number {header}, the file name another")]
    SeqMismatch {
        /// The number in the header.
        header: u64,
    },
    /// A frame does not check, and a valid frame follows it: acknowledged
    /// data was damaged after it was written.
    #[error("damaged frame ({error}) followed by a valid frame at offset {valid_frame_at}")]
    DamagedFrame {
        /// Why the frame does not check.
        error: FrameError,
        /// Offset of the next valid frame found.
        valid_frame_at: u64,
    },
    /// A file that is not the newest ends in a frame that does not check.
    /// Only the newest file can end in a torn write.
    #[error("torn or damaged last frame ({error}) in a file that is not the newest")]
    TornTailNotNewest {
        /// Why the frame does not check.
        error: FrameError,
    },
    /// The next file's header records that this file's acknowledged frames
    /// end at `recorded_end`, but valid frames end earlier.
    #[error(
        "valid frames end before offset {recorded_end}, where the next file's header says \
         they end{}",
        match .error { Some(e) => format!(" ({e})"), None => String::new() }
    )]
    BeforeRecordedEnd {
        /// The end recorded in the next file's header.
        recorded_end: u64,
        /// Why the frame there does not check (none: the file ends, or is
        /// zero, there).
        error: Option<FrameError>,
    },
    /// A frame crosses the end recorded in the next file's header.
    #[error("frame crosses offset {recorded_end}, where the next file's header says frames end")]
    CrossesRecordedEnd {
        /// The end recorded in the next file's header.
        recorded_end: u64,
    },
    /// A frame with a valid checksum has a type this version does not
    /// define.
    #[error("unknown frame type {0}")]
    FrameType(u8),
    /// A record of a frame with a valid checksum does not decode.
    #[error("record does not decode: {0}")]
    Record(RecordError),
}
