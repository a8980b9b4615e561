//! smx-smtps: the SMTP server (seed 3.10, 6.3; ZMailer smtpserver).
//!
//! | module | what |
//! | --- | --- |
//! | [`server`] | listening sockets, admission, session tasks, shutdown |
//! | [`session`](mod@session) | one SMTP session: commands, limits, transactions, content into CDB, commit through qmgr |
//! | [`settings`] | the configuration as the session uses it; greeting metatags; client patterns |
//! | [`conn`] | open-connection limits per client address and in all |
//! | [`peer`] | reconnecting links to qmgr and smar |
//! | [`header`] | the streaming header scanner (hop count, Message-ID) |
//! | [`received`] | the Received: header field |
//! | [`tls`] | STARTTLS and implicit TLS: certificates, client certificate checks |
//! | [`stream`] | the session's stream, clear or TLS |
//! | [`auth`] | SMTP AUTH: password file, SASL mechanisms, failure rate |
//! | [`dovecot`] | SMTP AUTH through Dovecot's auth socket |
//!
//! The protocol itself (parsing, replies, DATA and BDAT decoding) is
//! smx-proto's; this crate is the state and the I/O around it. Policy
//! decisions are smar's (over the smtps_smar link), durability is CDB's
//! and qmgr's: a client gets 250 at the end of data only after qmgr
//! answered that the envelope is committed, which it does after its group
//! commit made the content file durable and then the envelope.

pub mod auth;
pub mod conn;
pub mod crypt;
pub mod dovecot;
pub mod header;
pub mod peer;
pub mod received;
pub mod server;
pub mod session;
pub mod settings;
pub mod stream;
pub mod tls;

pub use server::{Server, ServerParts, Shared};
pub use settings::Settings;
