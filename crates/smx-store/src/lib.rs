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

pub mod cdb;
pub mod defedb;
pub mod disk;
pub mod envelope;
pub mod ibdb;
pub mod id;
