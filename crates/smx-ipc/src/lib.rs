//! smx-ipc: the protocol spoken between the smx processes (ARCHITECTURE.md
//! section 2), and the small runtime pieces that carry it.
//!
//! | module | what |
//! | --- | --- |
//! | [`frame`] | length-prefixed postcard frames: the codec and async reader/writer |
//! | [`hello`] | the handshake every link starts with ([`Hello`], [`HelloReply`]) |
//! | [`link`] | the [`Link`] trait, request/reply envelopes, [`Client`] (multiplexing) and [`Server`] |
//! | [`types`] | plain data shared by the links: ids, SMTP replies |
//! | [`smtps_qmgr`] | the smtps → qmgr link (sessions, transactions, throttling) |
//! | [`smtps_smar`] | the smtps → smar link (policy checks) |
//! | [`qmgr_smar`] | the qmgr → smar link (routing, alias expansion) |
//! | [`qmgr_smtpc`] | the qmgr → smtpc link (delivery transactions) |
//! | [`fd`] | passing file descriptors (listening sockets) with `SCM_RIGHTS` |
//!
//! # Wire format, protocol version 1 ([`PROTOCOL_VERSION`])
//!
//! A link is a Unix stream socket. Everything on it is a *frame*:
//!
//! ```text
//! offset  size  field
//!      0     4  length N of the payload, unsigned, big-endian
//!      4     N  payload: one message encoded with postcard (serde)
//! ```
//!
//! A receiver rejects a declared length above its maximum
//! ([`DEFAULT_MAX_FRAME`], 1 MiB, unless configured otherwise) before it
//! allocates anything; a payload that does not decode to exactly one message
//! of the expected type (including trailing bytes) is an error. Either closes
//! the link: there is no resynchronisation after a bad frame.
//!
//! The first frame in each direction is the handshake ([`hello`]): the
//! connecting side sends [`Hello`] `{ service, version }`, the accepting side
//! answers [`HelloReply::Ack`] with its own service and version, or
//! [`HelloReply::Reject`] with the reason and closes. The encoding of these
//! two messages is frozen across protocol versions (new [`ServiceName`] and
//! [`HelloRejection`] variants are only ever appended), so a peer of any
//! version can always read why it was turned away.
//!
//! After the handshake the client sends [`link::RequestFrame`]s (a `u64` id
//! chosen by the client and the link's request enum) and the server sends
//! [`link::ServerFrame`]s: a reply that echoes a request id, or an unsolicited
//! notice (e.g. qmgr throttling smtps). Replies may come in any order, so one
//! link multiplexes many SMTP sessions.
//!
//! Postcard is not self-describing: the enum variant order and the field
//! order of every message type below are part of the wire format. Any change
//! other than appending a variant at the end of an enum bumps
//! [`PROTOCOL_VERSION`].
//!
//! # Layering and identifiers
//!
//! smx-ipc sits below smx-store (tests/architecture.rs in the `smx` crate),
//! so it cannot carry `smx_store::id` types. [`types`] defines
//! [`SessionId`](types::SessionId) and [`TransactionId`](types::TransactionId)
//! as the same `(counter: u64, process: u8)` pair that smx-store's ids are
//! built from (`smx_store::id::SessionId::new(counter, process)`), and they
//! print identically (`S` + 16 + 2 hex digits). A recipient travels as its
//! transaction id plus its 24-bit index. Conversions live above this crate,
//! in the process crates that use both.
//!
//! # Errors
//!
//! Everything reports [`IpcError`]; nothing here panics on bytes from a
//! peer. [`IpcError::class`] says whether retrying can help (for IPC
//! failures it nearly always can: the peer restarts under mcp).

#![warn(missing_docs)]

pub mod fd;
pub mod frame;
pub mod hello;
pub mod link;
pub mod qmgr_smar;
pub mod qmgr_smtpc;
pub mod smtps_qmgr;
pub mod smtps_smar;
pub mod types;

mod error;

pub use error::{IpcError, LinkDown};
pub use frame::{DEFAULT_MAX_FRAME, FrameCodec};
pub use hello::{Hello, HelloRejection, HelloReply, PROTOCOL_VERSION, ServiceName};
pub use link::{Client, Link, Server};
