//! smx-smtpc: the delivery agent (seed 3.11, 6.5, 8.6; ARCHITECTURE.md).
//!
//! qmgr sends delivery transactions over the [`QmgrSmtpc`] link
//! (`smx_ipc::qmgr_smtpc`); smtpc delivers each with SMTP or LMTP and
//! answers one result per recipient: delivered, temporary or permanent
//! failure, with the peer's whole reply and the host that gave it.
//!
//! | module | what |
//! | --- | --- |
//! | [`config`] | settings from the `smtpc` section; RFC 5321 timeouts |
//! | [`conn`] | one connection: boxed stream (the STARTTLS seam), write buffer, reply reader |
//! | [`session`] | EHLO/LHLO/HELO, capabilities, one transaction (PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN, CHUNKING, LMTP) |
//! | [`tls`] | STARTTLS: opportunistic TLS, certificates, requirements |
//! | [`content`] | streaming content from CDB with bounded memory |
//! | [`deliver`] | the engine: envelope checks, target order, idle session cache |
//! | [`serve`](mod@serve) | the service: qmgr links, concurrent deliveries |
//!
//! Memory per delivery is bounded whatever the message size: content is
//! read from CDB in 64 KiB pieces with two pieces read ahead, dot-stuffed
//! piece by piece (or sent as BDAT chunks of one piece), and replies are
//! bounded by smx-proto's reply limits. Nothing here panics on what a peer
//! or qmgr sends; every wait has a deadline.
//!
//! [`QmgrSmtpc`]: smx_ipc::qmgr_smtpc::QmgrSmtpc

pub mod config;
pub mod conn;
pub mod content;
pub mod deliver;
pub mod serve;
pub mod session;
pub mod tls;

pub use config::{ClientConfig, Timeouts};
pub use deliver::Deliverer;
pub use serve::serve;
