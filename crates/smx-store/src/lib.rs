//! smx-store is the persistence layer of the smx queue: the content
//! database (CDB) that holds message bodies, the incoming envelope backup
//! database (IBDB) and the deferred envelope database (DEFEDB), together with
//! the identifiers that name sessions, transactions and recipients in all of
//! them and in the logs.
//!
//! | module | what |
//! | --- | --- |
//! | [`id`] | identifiers and the persistent counter behind them |
//! | [`envelope`] | transaction and recipient data, and its binary encoding |
//! | [`cdb`] | message content, one file per transaction |
//! | [`ibdb`] | the append-only envelope log with group commit and recovery |
//! | [`defedb`] | the deferred envelope database (redb) |
//! | [`disk`] | the free disk space guard |
//!
//! Each module reports failures through its own typed error; nothing in this
//! crate panics on input read from disk or from a peer.

/// Whether retrying a failed operation can succeed (STYLE.md habit 4):
/// every error of this crate answers `class()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retry later: the condition may clear (disk full, I/O error, too many
    /// open files, a lock held by another process, something an operator
    /// can fix). SMTP 4xx.
    Temporary,
    /// Retrying the same operation fails the same way: wrong file, unknown
    /// format, damaged data, content that does not exist. SMTP 5xx, or an
    /// operator must look.
    Permanent,
}

pub mod cdb;
pub mod defedb;
pub mod disk;
pub mod envelope;
pub mod ibdb;
pub mod id;
