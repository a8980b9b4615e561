//! smx-store is the persistence layer of the smx queue: the content
//! database (CDB) that holds message bodies, the incoming envelope backup
//! database (IBDB) and the deferred envelope database (DEFEDB), together with
//! the identifiers that name sessions, transactions and recipients in all of
//! them and in the logs.
//!
//! Only the identifiers exist so far ([`id`]). Each module reports failures
//! through its own typed error; nothing in this crate panics on input read
//! from disk or from a peer.

pub mod id;
