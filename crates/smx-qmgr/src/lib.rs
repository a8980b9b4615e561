//! smx-qmgr, the queue manager (seed 1.1.1, 3.8, 7.1, 9.1): it takes the
//! transactions smtps has accepted, decides when and where each recipient
//! is delivered, retries temporary failures, writes delivery status
//! notifications and slows smtps down when it runs short of resources.
//!
//! The decision-making core is a set of plain data structures that do no
//! I/O and read no clock: every function that depends on time takes `now`
//! as a [`Timestamp`]. The process around them ([`process`]: the IPC loops
//! with smtps, smtpc and smar, the IBDB, DEFEDB and CDB calls) feeds them
//! events and carries out what they return; [`serve`] runs it.
//!
//! | module | what |
//! | --- | --- |
//! | [`time`] | the [`Timestamp`] every module uses |
//! | [`limits`] | the per-IP/net limit table of the `qmgr_conf` map (seed 3.8.1) |
//! | [`scheduler`] | the active queue: destinations, delivery transactions, fairness, slow start, connection cache |
//! | [`retry`] | when to try a deferred recipient next, when it expires, when a delay DSN is due; DEFEDB entry updates |
//! | [`dsn`] | RFC 3464 delivery status notifications (bounces and delay warnings), merging of failures |
//! | [`connctl`] | incoming connection control for smtps (rate and open sessions per client IP) |
//! | [`throttle`] | back-pressure decisions towards smtps (seed 9.1) |
//! | [`verp`] | VERP sender rewriting (seed 3.14) |
//! | [`recovery`] | the queue state to schedule after a restart (IBDB replay plus DEFEDB) |
//! | [`bench`](mod@bench) | a throughput harness for the scheduler |
//! | [`settings`] | the process's settings from the configuration |
//! | [`links`] | reconnecting clients for the smar and smtpc links |
//! | [`process`] | the process: stores, recovery, smtps server, routing, deliveries, DSN injection, back-pressure, statistics |
//!
//! # How the process uses them
//!
//! (The full rules, including what is committed when, are in [`process`].)
//!
//! - smtps `NewSession` → [`connctl::ConnControl::open`]; a refusal's
//!   reply is [`connctl::Admission::refusal`]; `CloseSession` →
//!   [`connctl::ConnControl::close`].
//! - smtps `Commit` → IBDB commit, then the recipients go to smar for
//!   routing and into the [`scheduler::Scheduler`] (VERP senders from
//!   [`verp::rewrite`] when `XVERP` or a `verp-` alias asks for it).
//! - [`scheduler::Scheduler::poll`] yields deliveries for smtpc and the
//!   recipients to defer; smtpc results go to
//!   [`scheduler::Scheduler::complete`] and, per recipient, to
//!   [`retry::RetryPolicy::record_attempt`], which says what to write to
//!   DEFEDB/IBDB and whether a DSN is due.
//! - Failed recipients wait in a [`dsn::MergeQueue`] (merge_delay_max);
//!   [`dsn::build`] writes the DSN messages, which are queued like mail
//!   from `<>`.
//! - Queue fill and free disk space go to [`throttle::Throttle::update`];
//!   its notices go to smtps.
//! - At start, [`recovery::Planner`] turns the IBDB replay and DEFEDB into
//!   the work to schedule and the records to write.
//!
//! The `smx-qmgr` binary (`src/bin/smx-qmgr.rs`) runs the process alone
//! from a configuration file, without mcp.
//!
//! Each module reports failures through its own typed error; nothing here
//! panics on input from peers, maps, configuration or disk.

pub mod bench;
pub mod connctl;
pub mod dsn;
pub mod limits;
pub mod links;
pub mod process;
pub mod recovery;
pub mod retry;
pub mod scheduler;
pub mod settings;
pub mod throttle;
pub mod time;
pub mod tlsconf;
pub mod verp;

pub use process::{Qmgr, QmgrError, QueueStats, StatsHandle, serve};
pub use settings::Settings;
pub use time::Timestamp;
