//! smx-smar: the address resolver (seed 3.9, 3.12, 4.3–4.5, 6.3.1).
//!
//! smar answers two peers over smx-ipc links on one Unix socket:
//!
//! * smtps ([`smx_ipc::smtps_smar`]): the access-map checks at connect,
//!   MAIL and RCPT ([`checks`], on top of [`access`]);
//! * qmgr ([`smx_ipc::qmgr_smar`]): routing a recipient — alias expansion
//!   ([`aliases`]), the mailertable ([`mailertable`]) and MX/A resolution
//!   ([`dns`]).
//!
//! | module | what |
//! | --- | --- |
//! | [`access`] | access map entries (tags, right-hand sides) and lookups |
//! | [`checks`] | the connect, MAIL and RCPT check sequences, pure |
//! | [`mailertable`] | mailertable entries and lookups |
//! | [`aliases`] | alias expansion, owner- and verp- lists, valid local users |
//! | [`dns`] | the [`dns::Dns`] trait, hickory-resolver, MX/A routing, client names |
//! | [`service`] | the socket service: [`serve`] |
//!
//! The decision logic takes the maps through [`smx_maps::Map`] and DNS
//! through [`dns::Dns`], so it is tested with in-memory maps and without a
//! DNS server; the service wires in the configured maps and hickory.
//!
//! # Errors
//!
//! [`SmarError`] with [`SmarError::class`]. Nothing that arrives from a
//! peer, a map or DNS makes smar panic; a lookup that cannot be completed
//! becomes a temporary failure in the reply (4xx to smtps, `TempFail` to
//! qmgr), never a decision as if nothing had been found.
#![forbid(unsafe_code)]

pub mod access;
pub mod aliases;
pub mod checks;
pub mod dns;
pub mod mailertable;
pub mod service;

mod error;

pub use error::SmarError;
pub use service::{Smar, serve};
