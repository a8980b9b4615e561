//! The queue manager process: the stores, the smtps server, the smar and
//! smtpc clients and the event loop that drives the pure modules of this
//! crate ([`serve`], [`Qmgr`]).
//!
//! # Start
//!
//! [`Qmgr::start`] opens CDB, IBDB (which replays its log), DEFEDB and
//! qmgr's id counter, then runs the [`recovery`](crate::recovery) planner
//! over the IBDB replay and every DEFEDB entry and carries the plan out:
//!
//! 1. recipients open in IBDB and already in DEFEDB get their missing
//!    `Deferred` outcome record; then transactions left without open
//!    recipients get their `Closed` record (in that order, each commit
//!    durable before the next);
//! 2. every other open IBDB recipient is taken into memory and routed
//!    again (a delivery that was in flight when qmgr stopped is retried);
//! 3. content references are counted (open IBDB recipients plus DEFEDB
//!    entries per transaction), and every CDB file of a transaction that
//!    neither IBDB nor DEFEDB knows is removed as an orphan. mcp restarts
//!    smtps together with qmgr, so no smtps transaction is in progress;
//! 4. DEFEDB is scanned at once for due recipients and pending bounces.
//!
//! Then it listens on `SMTPS_socket` (a stale socket file is replaced).
//!
//! # What is committed when
//!
//! - **Commit from smtps.** While the throttle stops new transactions
//!   (disk short, IQDB full) or the transaction's recipients do not fit
//!   in IQDB (`IQDB.max_cache_entries` recipients in memory), the answer
//!   is `TempFail` 452 4.3.1. Otherwise the transaction record and all its
//!   recipient records go to IBDB in one commit; `Committed` is sent only
//!   when that commit is durable. A failed commit answers `TempFail` 451
//!   4.3.0 (an envelope IBDB cannot encode: `PermFail` 552 5.3.4).
//! - **Delivered.** The IBDB `Delivered` outcome is committed (for a
//!   recipient that came from DEFEDB, its entry is removed instead); after
//!   that the content reference is released, and the CDB file removed
//!   with the last one.
//! - **Temporary failure** (smtpc 4xx, smar `TempFail`, smar or smtpc
//!   unreachable, host down, delivery or scheduler timeout). The DEFEDB
//!   entry (tries, next try from [`crate::retry`], last host and reply) is
//!   written durably first, then the IBDB `Deferred` outcome. The
//!   recipient leaves memory and comes back when DEFEDB says it is due. A
//!   delay DSN is sent once when [`crate::retry`] says so. Recipients the
//!   scheduler hands back because their host is down count as an attempt
//!   and are not tried before the host's back-off ends. A delay DSN that
//!   cannot be queued is not tried again (its flag is already durable).
//!   A DEFEDB write that fails keeps the recipient in memory; it is
//!   routed again after `retry_min_delay`.
//! - **Permanent failure or expiry.** The DEFEDB entry, flagged
//!   `FAILURE_PENDING`, is written first, then the IBDB `Bounced` outcome.
//!   The recipient waits in the [`dsn::MergeQueue`] (until
//!   `merge_delay_max`, or until no recipient of its transaction is
//!   undecided in memory); then the DSN is built by [`crate::dsn`] and
//!   *injected*: its content is written to CDB and committed, its
//!   envelope (sender `<>`, one recipient) committed to IBDB, and it is
//!   routed like any new transaction. Only then are the failed
//!   recipients' DEFEDB entries removed and their content references
//!   released. A crash in between leaves the entries flagged, and the next
//!   start sends the DSN (possibly twice, never not at all). A failure of
//!   a DSN (sender `<>`) goes to `double_bounce_address`; a failure of a
//!   double bounce is only logged ([`crate::dsn`] rule 2).
//! - **Closing.** When every IBDB recipient of a transaction has a durable
//!   outcome, its `Closed` record is committed.
//!
//! Each of these steps commits before the next begins, so a crash at any
//! point leaves every accepted recipient either open in IBDB, in DEFEDB,
//! or finished: recovery finds it. The price is that a recipient may be
//! delivered twice (a crash between smtpc's success and the outcome
//! record), the usual SMTP guarantee.
//!
//! # Routing
//!
//! Every recipient new to memory (from smtps, from recovery, from DEFEDB)
//! is routed by smar (`Route`), over one shared, reconnecting link with
//! many requests in flight ([`crate::links`]); a link that goes down is
//! reconnected and the request sent again until `SMAR_timeout`. A single
//! result keeps the recipient (with the address smar gave). An alias
//! expansion (several recipients, an owner sender, or failed members)
//! becomes a new transaction: the content is copied in CDB, the new
//! envelope (sender: the list owner, or the original sender) committed to
//! IBDB, its members scheduled with the routes smar gave and its failed
//! members bounced; then the original recipient is finished like a
//! delivered one. At most [`MAX_EXPANSION`] members are taken.
//!
//! **VERP** (seed 3.14): a transaction whose MAIL parameters carry
//! `XVERP` (from smtps, or added to an expansion transaction when smar
//! marks the list with `verp`) is delivered with one smtpc request per
//! recipient, each with the sender rewritten by [`crate::verp::rewrite`]
//! (the original sender when the rewrite is refused), and without the
//! `XVERP` parameter. The parts of one scheduler delivery share its
//! `da_ta`.
//!
//! The route's first host (or the LMTP socket) names the destination in
//! the [`Scheduler`]. The recipients of one transaction (or of one DEFEDB
//! scan) are routed concurrently and queued together once all answers are
//! in, so recipients of one transaction and one destination are grouped
//! into one delivery (up to `smtp_max_rcpts_per_transaction`). Recipients
//! that find the AQ full wait in memory (still counted in IQDB) until
//! deliveries make room.
//!
//! # Delivery
//!
//! A delivery goes to smtpc over a shared, reconnecting link. When the
//! link fails under it, it is sent again on a new link (at most
//! `delivery_resends` times within `delivery_timeout`); after that its
//! recipients fail temporarily. smtpc's per-recipient results are applied
//! as above; a delivery whose recipients all failed temporarily without a
//! host (smtpc could not reach any target) counts as a host failure for
//! the scheduler's back-off. A result that arrives after the scheduler
//! timed the delivery out is ignored (its recipients were deferred).
//!
//! # smtps requests
//!
//! Each smtps connection is answered concurrently (one task per request).
//! `NewSession` goes through [`ConnControl`]; `CloseSession` (or the link
//! closing) releases the session. `Abort` of a transaction qmgr does not
//! hold removes its CDB content if any; a transaction that was committed
//! is kept (once durable, the mail is qmgr's: a lost `Committed` reply
//! may cause a duplicate, never a loss). `Etrn` makes the DEFEDB entries
//! of the domain (`domain` or `@domain`, exact domain) due now; `#queue`
//! names are not supported (`TempFail` 459).
//!
//! # Back-pressure
//!
//! After every change of the queues and every disk measurement
//! (`disk_check_interval`; the smallest free space of the CDB, IBDB and
//! DEFEDB file systems, kept in a [`DiskGuard`] for the statistics) the
//! levels go to the [`Throttle`]; a changed decision is sent to every
//! connected smtps, and a new smtps connection gets the current one when
//! it is not normal.
//!
//! # Stop
//!
//! When the shutdown future completes, the listener is closed, every task
//! is cancelled and waited for, IBDB is closed (queued commits are
//! written) and the stores are released, so that `serve` can be started
//! again on the same directories. Work in flight is not lost: it is
//! still open in IBDB or in DEFEDB.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use smx_ipc::qmgr_smar::{self, QmgrSmar, Route, RouteReply, RouteRequest};
use smx_ipc::qmgr_smtpc::{
    self, DaTransactionId, Destination, QmgrSmtpc, RecipientResult, RecipientStatus, SmtpcReply,
    SmtpcRequest, Target, TlsRequirements,
};
use smx_ipc::smtps_qmgr::{Envelope, QmgrNotice, QmgrReply, SmtpsQmgr, SmtpsRequest};
use smx_ipc::types::{EnhancedCode, SmtpReply};
use smx_ipc::{Server, link::ServerFrameOf};
use smx_store::cdb::{Cdb, CdbError, CdbOptions, ContentRefs, Release};
use smx_store::defedb::{self, Defedb, DefedbOptions, DeferredRecipient};
use smx_store::disk::{DiskGuard, DiskState};
use smx_store::envelope::{Recipient, Transaction};
use smx_store::ibdb::{self, Ibdb, IbdbError, Outcome, Record};
use smx_store::id::{IdSource, MAX_RECIPIENT_INDEX, RecipientId, TransactionId};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::connctl::{ConnControl, ConnControlConfig};
use crate::dsn::{self, DsnConfig, DsnKind, MergeQueue, OriginalTransaction, ReportedRecipient};
use crate::links::{LinkError, Reconnecting};
use crate::recovery::Planner;
use crate::retry::{self, AttemptResult, BounceReason, RetryPolicy, Update};
use crate::scheduler::{
    Action, DeliveryResult, DestKey, DestStatus, Enqueued, Protocol, SchedError, Scheduler,
    SchedulerConfig,
};
use crate::settings::Settings;
use crate::throttle::{Levels, State as ThrottleState, Throttle, ThrottleConfig};
use crate::time::Timestamp;

/// Most members of one alias expansion taken into a new transaction.
pub const MAX_EXPANSION: usize = 65_536;
/// Most failed recipients held for merging before the oldest batch is
/// sent.
const MAX_HELD_FAILURES: usize = 100_000;
/// Longest wait for an smtps handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most DEFEDB entries taken by one ETRN.
const MAX_ETRN: usize = 10_000;
/// Shortest pause between two DEFEDB scans while entries are due but
/// being tried.
const MIN_SCAN_GAP: Duration = Duration::from_secs(1);
/// Longest wait for tasks to let go of the stores at stop.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Why qmgr could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum QmgrError {
    /// Opening CDB failed.
    #[error("CDB: {0}")]
    Cdb(#[from] CdbError),
    /// Opening or recovering IBDB failed.
    #[error("IBDB: {0}")]
    Ibdb(#[from] IbdbError),
    /// Opening or reading DEFEDB failed.
    #[error("DEFEDB: {0}")]
    Defedb(#[from] defedb::DefedbError),
    /// The id counter failed.
    #[error("id counter: {0}")]
    Ids(#[from] smx_store::id::IdError),
    /// Creating a queue directory or binding the smtps socket failed.
    #[error("{path}: {source}")]
    Io {
        /// The directory or socket.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The settings cannot be used.
    #[error("configuration: {0}")]
    Config(String),
    /// A blocking task was cancelled or panicked.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Totals since start, for the control socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Transactions committed from smtps.
    pub transactions_in: u64,
    /// Recipients committed from smtps.
    pub recipients_in: u64,
    /// Commits answered with a temporary failure.
    pub commits_refused: u64,
    /// Recipients delivered.
    pub delivered: u64,
    /// Recipients moved to DEFEDB after a temporary failure.
    pub deferred: u64,
    /// Recipients that failed permanently or expired.
    pub bounced: u64,
    /// Recipients replaced by an alias expansion.
    pub expanded: u64,
    /// DSN messages queued (failure and delay, double bounces included).
    pub dsns: u64,
    /// Deliveries handed to smtpc.
    pub deliveries: u64,
    /// Recipients recovered from IBDB at start.
    pub recovered: u64,
    /// Orphaned CDB files removed at start.
    pub orphans_removed: u64,
}

/// A snapshot of the queue for the control socket ([`StatsHandle::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Recipients in memory (IQDB): routing, queued, active or waiting for
    /// AQ room.
    pub iqdb: usize,
    /// Recipients waiting for AQ room.
    pub waiting_for_aq: usize,
    /// The scheduler's counters (AQ).
    pub aq: crate::scheduler::Stats,
    /// Transactions whose content is referenced.
    pub contents: usize,
    /// Failed recipients waiting for their DSN.
    pub bounces_pending: usize,
    /// Connected smtps processes.
    pub smtps_links: usize,
    /// The back-pressure decision.
    pub throttle: ThrottleState,
    /// The last free disk space measured (bytes).
    pub disk_free: Option<u64>,
    /// Whether the disk guard refuses mail.
    pub disk_short: bool,
    /// Totals since start.
    pub totals: Totals,
    /// Per destination state.
    pub destinations: Vec<DestStatus>,
}

/// Reads statistics of a running [`Qmgr`]; does not keep it alive.
#[derive(Debug, Clone)]
pub struct StatsHandle {
    inner: Weak<Inner>,
}

impl StatsHandle {
    /// The current snapshot; `None` once qmgr has stopped.
    pub fn snapshot(&self) -> Option<QueueStats> {
        let inner = self.inner.upgrade()?;
        let st = inner.lock();
        Some(QueueStats {
            iqdb: st.rcpts.len(),
            waiting_for_aq: st.aq_wait.len(),
            aq: st.sched.stats(),
            contents: st.refs.len(),
            bounces_pending: st.bounces.len(),
            smtps_links: st.smtps.len(),
            throttle: st.throttle.state(),
            disk_free: st.disk_free,
            disk_short: st.disk.state() == DiskState::Refuse,
            totals: st.totals,
            destinations: st.sched.destinations(),
        })
    }
}

/// Starts qmgr ([`Qmgr::start`]) and runs it until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), QmgrError> {
    Qmgr::start(settings).await?.run(shutdown).await
}

/// A started queue manager: stores open, recovered, socket bound.
#[derive(Debug)]
pub struct Qmgr {
    inner: Arc<Inner>,
    listener: UnixListener,
    to_route: Vec<Vec<RecipientId>>,
}

struct Inner {
    settings: Settings,
    cdb: Cdb,
    ibdb: Ibdb,
    defedb: Arc<Defedb>,
    ids: Arc<IdSource>,
    smar: Reconnecting<QmgrSmar>,
    smtpc: Reconnecting<QmgrSmtpc>,
    retry: RetryPolicy,
    dsn: DsnConfig,
    da_counter: u32,
    wake: Notify,
    tasks: Mutex<JoinSet<()>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct TaInfo {
    ta: Transaction,
    /// IBDB recipients without a durable outcome.
    ibdb_open: u32,
    /// Recipients of it in memory.
    live: u32,
}

#[derive(Debug)]
struct RcptInfo {
    rcpt: Recipient,
    /// The address smar resolved it to (`RCPT TO`).
    address: String,
    route: Option<(DestKey, Destination)>,
    /// Its DEFEDB entry when it came from there.
    deferred: Option<DeferredRecipient>,
    /// Whether IBDB holds it open.
    in_ibdb: bool,
    /// Its attempt's end is being applied.
    deciding: bool,
    /// TLS requirements from its `smtpc_rcpt_conf:` entry.
    tls: Option<TlsRequirements>,
}

impl RcptInfo {
    /// A recipient as IBDB holds it open, not yet routed.
    fn open(rcpt: Recipient) -> Self {
        RcptInfo {
            address: rcpt.address.clone(),
            rcpt,
            route: None,
            deferred: None,
            in_ibdb: true,
            deciding: false,
            tls: None,
        }
    }

    /// A recipient taken from its DEFEDB entry.
    fn from_defedb(e: DeferredRecipient) -> Self {
        let rcpt = e.recipient.clone();
        RcptInfo {
            in_ibdb: false,
            deferred: Some(e),
            ..RcptInfo::open(rcpt)
        }
    }
}

type Outgoing = ServerFrameOf<SmtpsQmgr>;
/// An expanded member: address, route, and the reply of a failed one.
type Member = (String, Option<(DestKey, Destination)>, Option<String>);
type BoxFut = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
/// One recipient's routing answer: its place in the batch, its id, smar's
/// answer and its TLS requirements (`smtpc_rcpt_conf`).
type Routing = (
    usize,
    RecipientId,
    Result<RouteReply, LinkError>,
    Option<TlsRequirements>,
);

struct State {
    sched: Scheduler,
    tas: HashMap<TransactionId, TaInfo>,
    rcpts: HashMap<RecipientId, RcptInfo>,
    aq_wait: VecDeque<(DestKey, RecipientId)>,
    refs: ContentRefs,
    merge: MergeQueue,
    bounces: HashMap<RecipientId, (DeferredRecipient, BounceReason)>,
    throttle: Throttle,
    disk: DiskGuard,
    disk_free: Option<u64>,
    connctl: ConnControl,
    sessions: HashMap<(u64, smx_ipc::types::SessionId), std::net::IpAddr>,
    smtps: HashMap<u64, mpsc::UnboundedSender<Outgoing>>,
    next_conn: u64,
    committing: HashSet<TransactionId>,
    next_scan: Timestamp,
    scanning: bool,
    next_disk_check: Timestamp,
    totals: Totals,
}

fn store_ta(id: smx_ipc::types::TransactionId) -> TransactionId {
    TransactionId::new(id.counter, id.process)
}

fn ipc_ta(id: TransactionId) -> smx_ipc::types::TransactionId {
    smx_ipc::types::TransactionId {
        counter: id.counter(),
        process: id.process(),
    }
}

fn reply(code: u16, class: u8, subject: u16, detail: u16, text: &str) -> SmtpReply {
    SmtpReply {
        code,
        enhanced: Some(EnhancedCode {
            class,
            subject,
            detail,
        }),
        text: text.into(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, QmgrError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QmgrError::Task(e.to_string()))
}

/// A destination for recipients with `tls` requirements: its key is
/// tagged so that they get deliveries of their own.
fn with_requirements(
    dest: (DestKey, Destination),
    tls: Option<&TlsRequirements>,
) -> (DestKey, Destination) {
    match tls {
        Some(t) => (dest.0.tagged(&crate::tlsconf::dest_tag(t)), dest.1),
        None => dest,
    }
}

/// The destination key and the smtpc destination of a route.
fn destination(route: &Route) -> Option<(DestKey, Destination)> {
    match route {
        Route::LmtpSocket => Some((
            DestKey::new(Protocol::Lmtp, "lmtp-socket"),
            Destination::LmtpSocket { path: None },
        )),
        Route::Hosts {
            protocol,
            port,
            hops,
        } => {
            let first = hops.first()?;
            let name = match &first.name {
                Some(n) => n.clone(),
                None => format!("[{}]", first.addrs.first()?),
            };
            let host = if *port == 25 {
                name
            } else {
                format!("{name}:{port}")
            };
            let (p, proto) = match protocol {
                qmgr_smar::Protocol::Esmtp => (Protocol::Smtp, qmgr_smtpc::Protocol::Esmtp),
                qmgr_smar::Protocol::Lmtp => (Protocol::Lmtp, qmgr_smtpc::Protocol::Lmtp),
            };
            let targets: Vec<Target> = hops
                .iter()
                .flat_map(|h| {
                    h.addrs.iter().map(|a| Target {
                        name: h.name.clone().unwrap_or_default(),
                        addr: *a,
                        port: Some(*port),
                        tls_requirements: None,
                    })
                })
                .collect();
            if targets.is_empty() {
                return None;
            }
            Some((
                DestKey::new(p, &host),
                Destination::Hosts {
                    protocol: proto,
                    targets,
                },
            ))
        }
    }
}

impl Qmgr {
    /// Opens the stores, recovers the queue and binds the smtps socket;
    /// see the module documentation.
    pub async fn start(settings: Settings) -> Result<Qmgr, QmgrError> {
        let s = settings.clone();
        let opened = blocking(move || open_stores(&s)).await??;
        let Opened {
            cdb,
            ibdb,
            defedb,
            ids,
            plan,
            deferred_per_ta,
            orphans_removed,
        } = opened;
        let now = Timestamp::now();
        // Rule 1 of the recovery planner, then rule 3, in this order.
        let moved: Vec<Record> = plan
            .moved
            .iter()
            .map(|r| Record::Outcome {
                rcpt: *r,
                outcome: Outcome::Deferred,
            })
            .collect();
        ibdb.commit(&moved).await?;
        let closed: Vec<Record> = plan.close.iter().map(|t| Record::Closed(*t)).collect();
        ibdb.commit(&closed).await?;

        let q = &settings.qmgr;
        let ids_for_da = Arc::clone(&ids);
        let da_counter = blocking(move || ids_for_da.next()).await?? as u32;
        let mut sched_cfg = SchedulerConfig::from_conf(q);
        sched_cfg.max_deliveries = sched_cfg.max_deliveries.max(1);
        let disk = DiskGuard::new(
            q.min_disk_space.0,
            q.ok_disk_space.0.max(q.min_disk_space.0.saturating_add(1)),
        )
        .map_err(|e| QmgrError::Config(e.to_string()))?;
        let mut st = State {
            sched: Scheduler::new(sched_cfg, settings.limits.clone()),
            tas: HashMap::new(),
            rcpts: HashMap::new(),
            aq_wait: VecDeque::new(),
            refs: ContentRefs::new(),
            merge: MergeQueue::new(
                q.dsn_handling.merge_delay_max.0,
                q.dsn_handling.max_errors_per_dsn,
                MAX_HELD_FAILURES,
            ),
            bounces: HashMap::new(),
            throttle: Throttle::new(ThrottleConfig::from_conf(q, settings.smtps_sessions)),
            disk,
            disk_free: None,
            connctl: ConnControl::new(ConnControlConfig::from_conf(q), settings.limits.clone()),
            sessions: HashMap::new(),
            smtps: HashMap::new(),
            next_conn: 1,
            committing: HashSet::new(),
            next_scan: now,
            scanning: false,
            next_disk_check: now,
            totals: Totals {
                orphans_removed,
                ..Totals::default()
            },
        };
        let mut to_route = Vec::new();
        for (ta, n) in &deferred_per_ta {
            st.refs.add(*ta, *n);
        }
        for t in plan.schedule {
            let id = t.transaction.id;
            let n = t.recipients.len() as u32;
            st.refs.add(id, u64::from(n));
            to_route.push(t.recipients.iter().map(|r| r.id).collect());
            for r in t.recipients {
                st.rcpts.insert(r.id, RcptInfo::open(r));
            }
            st.totals.recovered += u64::from(n);
            st.tas.insert(
                id,
                TaInfo {
                    ta: t.transaction,
                    ibdb_open: n,
                    live: n,
                },
            );
        }
        tracing::info!(
            recovered = st.totals.recovered,
            deferred = plan.deferred,
            closed = plan.close.len(),
            orphans_removed,
            "qmgr recovered its queue"
        );

        let listener = bind(&settings.smtps_socket)?;
        let inner = Arc::new(Inner {
            smar: Reconnecting::new(
                settings.smar_socket.clone(),
                settings.max_frame,
                settings.reconnect_delay,
            )
            .with_wait_for_server(q.wait_for_server.0),
            smtpc: Reconnecting::new(
                settings.smtpc_socket.clone(),
                settings.max_frame,
                settings.reconnect_delay,
            )
            .with_wait_for_server(q.wait_for_server.0),
            retry: RetryPolicy::from_conf(q),
            dsn: DsnConfig::from_conf(q, &settings.hostname),
            settings,
            cdb,
            ibdb,
            defedb: Arc::new(defedb),
            ids,
            da_counter,
            wake: Notify::new(),
            tasks: Mutex::new(JoinSet::new()),
            state: Mutex::new(st),
        });
        Ok(Qmgr {
            inner,
            listener,
            to_route,
        })
    }

    /// A handle for statistics.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Runs until `shutdown` completes; see "Stop" in the module
    /// documentation.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), QmgrError> {
        let Qmgr {
            inner,
            listener,
            to_route,
        } = self;
        for rids in to_route {
            let i = Arc::clone(&inner);
            inner.spawn(async move { i.route_batch(rids).await });
        }
        let acceptor = Arc::clone(&inner);
        inner.spawn(async move { acceptor.accept_loop(listener).await });
        tokio::pin!(shutdown);
        loop {
            let sleep = inner.step();
            tokio::select! {
                () = &mut shutdown => break,
                () = inner.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
        // Stop: cancel every task and wait for them.
        let mut tasks =
            std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        tasks.shutdown().await;
        {
            let mut st = inner.lock();
            st.smtps.clear();
        }
        let ibdb = inner.ibdb.clone();
        blocking(move || ibdb.close()).await??;
        // Blocking store calls that were running when their task was
        // cancelled still hold handles; wait for them, so that the DEFEDB
        // and id counter locks are free when this returns.
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        let busy = |i: &Arc<Inner>| {
            Arc::strong_count(i) > 1
                || Arc::strong_count(&i.defedb) > 1
                || Arc::strong_count(&i.ids) > 1
        };
        while busy(&inner) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if busy(&inner) {
            tracing::warn!("qmgr stopped with store handles still in use");
        }
        drop(inner);
        Ok(())
    }
}

struct Opened {
    cdb: Cdb,
    ibdb: Ibdb,
    defedb: Defedb,
    ids: Arc<IdSource>,
    plan: crate::recovery::RecoveryPlan,
    deferred_per_ta: HashMap<TransactionId, u64>,
    orphans_removed: u64,
}

fn open_stores(s: &Settings) -> Result<Opened, QmgrError> {
    let q = &s.qmgr;
    std::fs::create_dir_all(&s.queue_dir).map_err(|source| QmgrError::Io {
        path: s.queue_dir.clone(),
        source,
    })?;
    let cdb = Cdb::open(&s.cdb_base, CdbOptions { gid: s.cdb_gid })?;
    let mut opts = ibdb::Options::new(&s.ibdb_dir);
    opts.size = q.ibdb.size.0.max(1);
    opts.max_commit_delay = q.ibdb.max_commit_delay.0;
    opts.max_open_tas = (q.ibdb.max_open_tas as usize).max(1);
    opts.content_fs = cdb.content_dirs();
    let (ibdb, recovery) = Ibdb::open(opts)?;
    for w in &recovery.warnings {
        tracing::warn!(warning = %w, "IBDB recovery");
    }
    if let Some(dir) = s.defedb_path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| QmgrError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut dopts = DefedbOptions::default();
    dopts.cache_size = usize::try_from(q.defedb.cache_size.0).unwrap_or(usize::MAX);
    let defedb = Defedb::open_with(&s.defedb_path, &dopts)?;
    let ids = Arc::new(IdSource::open(&s.id_state)?);
    let mut planner = Planner::new(recovery, Timestamp::now());
    let mut per_ta: HashMap<TransactionId, u64> = HashMap::new();
    let scan = defedb.for_each(|e| {
        planner.add_deferred(e);
        *per_ta.entry(e.id().transaction()).or_insert(0) += 1;
        std::ops::ControlFlow::Continue(())
    })?;
    for d in &scan.damaged {
        tracing::warn!(damage = ?d, "DEFEDB entry damaged");
    }
    let plan = planner.finish();
    let mut orphans = 0;
    let listing = cdb.list()?;
    for id in listing.ids {
        if !plan.content_in_use.contains(&id) {
            match cdb.remove(id) {
                Ok(_) => orphans += 1,
                Err(e) => tracing::warn!(error = %e, "removing orphaned content"),
            }
        }
    }
    Ok(Opened {
        cdb,
        ibdb,
        defedb,
        ids,
        plan,
        deferred_per_ta: per_ta,
        orphans_removed: orphans,
    })
}

fn bind(path: &Path) -> Result<UnixListener, QmgrError> {
    let err = |source| QmgrError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    UnixListener::bind(path).map_err(err)
}

/// How a recipient's attempt ended, for [`Inner::attempted`].
#[derive(Debug)]
enum Attempted {
    Delivered,
    /// Replaced by the members of its alias expansion.
    Expanded,
    Temp {
        host: String,
        reply: String,
        not_before: Option<Timestamp>,
    },
    Perm {
        host: String,
        reply: String,
    },
}

impl Inner {
    fn reduced_sessions(&self) -> u32 {
        ThrottleConfig::from_conf(&self.settings.qmgr, self.settings.smtps_sessions)
            .reduced_sessions
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    fn spawn_self<F, Fut>(self: &Arc<Self>, f: F)
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fut = f(Arc::clone(self));
        self.spawn(fut);
    }

    /// One turn of the event loop: runs what is due and returns how long
    /// to sleep at most.
    fn step(self: &Arc<Self>) -> Duration {
        let now = Timestamp::now();
        let mut st = self.lock();
        // Recipients waiting for AQ room.
        while let Some((dest, rid)) = st.aq_wait.pop_front() {
            if st.sched.free_entries() == 0 {
                st.aq_wait.push_front((dest, rid));
                break;
            }
            self.enqueue_locked(&mut st, &dest, rid, now);
        }
        let mut actions = Vec::new();
        let mut sleep = Duration::from_secs(60);
        loop {
            match st.sched.poll(now) {
                crate::scheduler::Poll::Ready(a) => actions.extend(a),
                crate::scheduler::Poll::Sleep(d) => {
                    sleep = sleep.min(d);
                    break;
                }
                crate::scheduler::Poll::Idle => break,
            }
        }
        // DSN merging.
        for batch in st.merge.due(now) {
            self.spawn_self(|i| async move { i.bounce_batch(batch).await });
        }
        if let Some(d) = st.merge.next_due() {
            sleep = sleep.min(d.since(now));
        }
        // DEFEDB scan.
        if !st.scanning && st.next_scan <= now {
            st.scanning = true;
            self.spawn_self(|i| async move { i.scan_defedb().await });
        }
        if !st.scanning {
            sleep = sleep.min(st.next_scan.since(now));
        }
        // Disk space.
        if st.next_disk_check <= now {
            st.next_disk_check = now.plus(self.settings.disk_check_interval);
            self.spawn_self(|i| async move { i.check_disk().await });
        }
        sleep = sleep.min(st.next_disk_check.since(now));
        for a in actions {
            match a {
                Action::Start(d) => self.start_delivery(&mut st, d),
                Action::TimedOut(d) => {
                    self.temp_fail_many(d.recipients, "451 4.4.7 delivery timed out", None);
                }
                Action::Expired { recipients, .. } => {
                    self.temp_fail_many(recipients, "451 4.4.7 scheduler timeout", None);
                }
                Action::Defer {
                    recipients, until, ..
                } => {
                    self.temp_fail_many(recipients, "451 4.4.1 host down", Some(until));
                }
            }
        }
        self.update_throttle(&mut st);
        sleep.max(Duration::from_millis(1))
    }

    fn temp_fail(
        self: &Arc<Self>,
        rid: RecipientId,
        host: &str,
        reply: &str,
        nb: Option<Timestamp>,
    ) {
        let a = Attempted::Temp {
            host: host.into(),
            reply: reply.into(),
            not_before: nb,
        };
        self.spawn_self(|i| async move { i.attempted(rid, a).await });
    }

    fn temp_fail_many(
        self: &Arc<Self>,
        rids: Vec<RecipientId>,
        reply: &str,
        nb: Option<Timestamp>,
    ) {
        let items = rids
            .into_iter()
            .map(|rid| {
                let a = Attempted::Temp {
                    host: String::new(),
                    reply: reply.into(),
                    not_before: nb,
                };
                (rid, a)
            })
            .collect();
        self.spawn_self(|i| async move { i.attempted_many(items).await });
    }

    fn enqueue_locked(
        self: &Arc<Self>,
        st: &mut State,
        dest: &DestKey,
        rid: RecipientId,
        now: Timestamp,
    ) {
        match st.sched.enqueue(dest, rid, now) {
            Ok(Enqueued::Queued) => self.wake.notify_one(),
            Ok(Enqueued::HostDown { until }) => {
                self.temp_fail(rid, "", "451 4.4.1 host down", Some(until));
            }
            Err(SchedError::AqFull { .. }) => st.aq_wait.push_back((dest.clone(), rid)),
            Err(SchedError::UnknownDelivery(_)) => {}
        }
    }

    // ---- smtps ----------------------------------------------------------

    async fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        // wait_for_client (seed 3.8 item 19): an SMTP server should connect
        // soon after qmgr starts; say so loudly when none does (mail cannot
        // arrive), and keep waiting.
        let wait = self.settings.qmgr.wait_for_client.0;
        let first = tokio::time::timeout(wait, listener.accept()).await;
        match first {
            Ok(Ok((stream, _))) => {
                self.spawn_self(|i| async move { i.smtps_conn(stream).await });
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "accepting an smtps connection"),
            Err(_) => tracing::error!(
                wait_for_client_s = wait.as_secs(),
                "no SMTP server connected within wait_for_client; mail cannot arrive until one does"
            ),
        }
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    self.spawn_self(|i| async move { i.smtps_conn(stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an smtps connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn smtps_conn(self: Arc<Self>, stream: UnixStream) {
        let server = match tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            Server::<SmtpsQmgr>::accept(stream, self.settings.max_frame),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "smtps handshake failed");
                return;
            }
            Err(_) => {
                tracing::warn!("smtps handshake timed out");
                return;
            }
        };
        let (mut reader, mut writer) = server.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let conn = {
            let mut st = self.lock();
            let conn = st.next_conn;
            st.next_conn += 1;
            if let Some(n) = notice_of(st.throttle.state(), self.reduced_sessions()) {
                let _ = tx.send(Outgoing::Notice(n));
            }
            st.smtps.insert(conn, tx.clone());
            conn
        };
        self.spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = writer.write_batch(&frame, || rx.try_recv().ok()).await {
                    tracing::warn!(error = %e, "writing to smtps");
                    break;
                }
            }
        });
        loop {
            match reader.read().await {
                Ok(Some(req)) => {
                    let tx = tx.clone();
                    self.spawn_self(|i| async move {
                        let body = i.smtps_request(conn, req.body).await;
                        let _ = tx.send(Outgoing::Reply { id: req.id, body });
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading from smtps");
                    break;
                }
            }
        }
        let mut st = self.lock();
        st.smtps.remove(&conn);
        let gone: Vec<_> = st
            .sessions
            .keys()
            .filter(|(c, _)| *c == conn)
            .copied()
            .collect();
        for k in gone {
            if let Some(ip) = st.sessions.remove(&k) {
                st.connctl.close(ip);
            }
        }
    }

    async fn smtps_request(self: &Arc<Self>, conn: u64, req: SmtpsRequest) -> QmgrReply {
        match req {
            SmtpsRequest::NewSession(s) => {
                let mut st = self.lock();
                let adm = st.connctl.open(s.client_ip, Timestamp::now());
                match adm.refusal() {
                    None => {
                        st.sessions.insert((conn, s.session), s.client_ip);
                        QmgrReply::SessionAccepted
                    }
                    Some(r) => QmgrReply::SessionRefused(r),
                }
            }
            SmtpsRequest::CloseSession { session } => {
                let mut st = self.lock();
                if let Some(ip) = st.sessions.remove(&(conn, session)) {
                    st.connctl.close(ip);
                }
                QmgrReply::Done
            }
            SmtpsRequest::Commit(env) => self.commit(env).await,
            SmtpsRequest::Abort { transaction, .. } => {
                let ta = store_ta(transaction);
                let unknown = {
                    let st = self.lock();
                    !st.committing.contains(&ta) && st.refs.get(ta).is_none()
                };
                if unknown {
                    let cdb = self.cdb.clone();
                    if let Ok(Err(e)) = blocking(move || cdb.remove(ta)).await {
                        tracing::warn!(error = %e, %ta, "removing aborted content");
                    }
                }
                QmgrReply::Done
            }
            SmtpsRequest::Etrn { node, .. } => self.etrn(&node).await,
        }
    }

    async fn commit(self: &Arc<Self>, env: Envelope) -> QmgrReply {
        let ta = store_ta(env.id);
        let n = env.recipients.len();
        {
            let mut st = self.lock();
            let iq_max = self.settings.qmgr.iqdb.max_cache_entries as usize;
            if !st.throttle.accepts_transactions() || st.rcpts.len() + n > iq_max {
                st.totals.commits_refused += 1;
                return QmgrReply::TempFail(reply(
                    452,
                    4,
                    3,
                    1,
                    "insufficient system storage, try again later",
                ));
            }
            if st.committing.contains(&ta) || st.tas.contains_key(&ta) {
                return QmgrReply::Committed;
            }
            st.committing.insert(ta);
        }
        let result = self.commit_envelope(ta, &env).await;
        let mut st = self.lock();
        st.committing.remove(&ta);
        match result {
            Err(r) => r,
            Ok((t, rs)) => {
                st.totals.transactions_in += 1;
                st.totals.recipients_in += n as u64;
                st.refs.add(ta, n as u64);
                let ids: Vec<RecipientId> = rs.iter().map(|r| r.id).collect();
                for r in rs {
                    st.rcpts.insert(r.id, RcptInfo::open(r));
                }
                st.tas.insert(
                    ta,
                    TaInfo {
                        ta: t,
                        ibdb_open: n as u32,
                        live: n as u32,
                    },
                );
                self.update_throttle(&mut st);
                drop(st);
                self.spawn_self(|i| async move { i.route_batch(ids).await });
                QmgrReply::Committed
            }
        }
    }

    async fn commit_envelope(
        &self,
        ta: TransactionId,
        env: &Envelope,
    ) -> Result<(Transaction, Vec<Recipient>), QmgrReply> {
        let perm = |t: &str| QmgrReply::PermFail(reply(554, 5, 5, 0, t));
        if env.recipients.is_empty() {
            return Err(perm("transaction without recipients"));
        }
        let mut seen = HashSet::new();
        let mut rs = Vec::with_capacity(env.recipients.len());
        for r in &env.recipients {
            if r.index > MAX_RECIPIENT_INDEX || !seen.insert(r.index) {
                return Err(perm("bad recipient index"));
            }
            let id = RecipientId::new(ta, r.index).map_err(|_| perm("bad recipient index"))?;
            rs.push(Recipient {
                id,
                address: r.address.clone(),
                params: r.params.clone(),
            });
        }
        let t = Transaction {
            id: ta,
            sender: env.sender.clone(),
            params: env.params.clone(),
            size: env.size,
            arrival_us: env.arrival_us,
            nrcpts: rs.len() as u32,
        };
        let mut records = Vec::with_capacity(rs.len() + 1);
        records.push(Record::Transaction(t.clone()));
        records.extend(rs.iter().cloned().map(Record::Recipient));
        // smtps wrote the content without syncing it: the batch makes it
        // durable before the envelope (smx_store::cdb, "Durability through
        // the group commit").
        match self.ibdb.commit_after_content(&records).await {
            Ok(()) => Ok((t, rs)),
            Err(e @ (IbdbError::Invalid { .. } | IbdbError::TooLarge { .. })) => {
                tracing::warn!(error = %e, %ta, "envelope refused");
                Err(QmgrReply::PermFail(reply(
                    552,
                    5,
                    3,
                    4,
                    "envelope too large",
                )))
            }
            Err(e) => {
                tracing::error!(error = %e, %ta, "IBDB commit failed");
                Err(QmgrReply::TempFail(reply(
                    451,
                    4,
                    3,
                    0,
                    "queue write failed, try again later",
                )))
            }
        }
    }

    async fn etrn(self: &Arc<Self>, node: &str) -> QmgrReply {
        if node.starts_with('#') {
            return QmgrReply::TempFail(reply(459, 4, 3, 0, "named queues are not supported"));
        }
        let domain = node.trim_start_matches('@').to_string();
        let db = Arc::clone(&self.defedb);
        let found = blocking(move || {
            let mut v = Vec::new();
            let r = db.for_each_by_domain(&domain, |e| {
                v.push(e.clone());
                if v.len() >= MAX_ETRN {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            });
            r.map(|_| v)
        })
        .await;
        match found {
            Ok(Ok(entries)) => {
                self.take_deferred(entries);
                QmgrReply::Done
            }
            _ => QmgrReply::TempFail(reply(458, 4, 3, 0, "unable to queue messages now")),
        }
    }

    // ---- throttle and disk -------------------------------------------

    fn update_throttle(&self, st: &mut State) {
        let s = st.sched.stats();
        let levels = Levels {
            iqdb_used: st.rcpts.len(),
            iqdb_max: self.settings.qmgr.iqdb.max_cache_entries as usize,
            aq_used: s.queued + s.active_recipients,
            aq_max: st.sched.config().aq_max_entries as usize,
            disk_free: st.disk_free,
        };
        if let Some(n) = st.throttle.update(levels) {
            tracing::info!(notice = ?n, "throttle towards smtps changed");
            for tx in st.smtps.values() {
                let _ = tx.send(Outgoing::Notice(n.clone()));
            }
        }
    }

    async fn check_disk(self: Arc<Self>) {
        let free = match &self.settings.disk_probe {
            Some(p) => p(),
            None => {
                let paths = [
                    self.settings.cdb_base.clone(),
                    self.settings.ibdb_dir.clone(),
                    self.settings
                        .defedb_path
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| self.settings.queue_dir.clone()),
                ];
                blocking(move || {
                    paths
                        .iter()
                        .filter_map(|p| smx_store::disk::free_space(p).ok())
                        .min()
                })
                .await
                .ok()
                .flatten()
            }
        };
        let mut st = self.lock();
        if let Some(f) = free {
            st.disk_free = Some(f);
            st.disk.update(f);
        }
        self.update_throttle(&mut st);
    }

    // ---- routing -------------------------------------------------------

    fn route(self: Arc<Self>, rid: RecipientId) -> BoxFut {
        self.route_batch(vec![rid])
    }

    /// Routes recipients in batches (one smar request per
    /// [`qmgr_smar::MAX_BATCH`] recipients, answered concurrently by smar),
    /// then queues those with a single route together, so that recipients
    /// of one transaction for one destination share deliveries.
    fn route_batch(self: Arc<Self>, rids: Vec<RecipientId>) -> BoxFut {
        Box::pin(async move {
            let timeout = self.settings.qmgr.smar_timeout.0;
            // With lookup_rcpt_conf every recipient also asks for its
            // smtpc_rcpt_conf entry, in the same batch.
            let per = if self.settings.qmgr.smtpc.flags.lookup_rcpt_conf {
                2
            } else {
                1
            };
            let mut lookups = JoinSet::new();
            let mut batch: Vec<(usize, RecipientId)> = Vec::new();
            let mut reqs: Vec<RouteRequest> = Vec::new();
            for (n, rid) in rids.into_iter().enumerate() {
                {
                    let st = self.lock();
                    let (Some(r), Some(t)) = (st.rcpts.get(&rid), st.tas.get(&rid.transaction()))
                    else {
                        continue;
                    };
                    reqs.push(RouteRequest::Route {
                        rcpt: r.rcpt.address.clone(),
                        sender: t.ta.sender.clone(),
                    });
                    if per == 2 {
                        reqs.push(RouteRequest::RcptConf {
                            rcpt: r.rcpt.address.clone(),
                        });
                    }
                }
                batch.push((n, rid));
                if reqs.len() + per > qmgr_smar::MAX_BATCH {
                    self.route_lookup(
                        &mut lookups,
                        std::mem::take(&mut batch),
                        std::mem::take(&mut reqs),
                        timeout,
                    );
                }
            }
            if !batch.is_empty() {
                self.route_lookup(&mut lookups, batch, reqs, timeout);
            }
            let mut simple = Vec::new();
            while let Some(done) = lookups.join_next().await {
                let Ok(answers) = done else {
                    continue;
                };
                for (n, rid, result, tls) in answers {
                    if let Some(r) = self.lock().rcpts.get_mut(&rid) {
                        r.tls = tls;
                    }
                    if let Ok(RouteReply::Routed {
                        rcpts,
                        owner: None,
                        failed,
                        verp: false,
                    }) = &result
                        && rcpts.len() == 1
                        && failed.is_empty()
                        && let Some(dest) = rcpts.first().and_then(|r| destination(&r.route))
                    {
                        let address = rcpts.first().map(|r| r.address.clone()).unwrap_or_default();
                        simple.push((n, rid, address, dest));
                        continue;
                    }
                    self.spawn_self(|i| async move { i.apply_route(rid, result).await });
                }
            }
            simple.sort_by_key(|x| x.0);
            let now = Timestamp::now();
            let mut st = self.lock();
            let mut groups: Vec<(DestKey, Vec<RecipientId>)> = Vec::new();
            for (_, rid, address, dest) in simple {
                let Some(r) = st.rcpts.get_mut(&rid) else {
                    continue;
                };
                r.address = address;
                let dest = with_requirements(dest, r.tls.as_ref());
                let key = dest.0.clone();
                r.route = Some(dest);
                match groups.iter_mut().find(|g| g.0 == key) {
                    Some(g) => g.1.push(rid),
                    None => groups.push((key, vec![rid])),
                }
            }
            for (key, ids) in groups {
                match st.sched.enqueue_many(&key, &ids, now) {
                    Ok(Enqueued::Queued) => self.wake.notify_one(),
                    Ok(Enqueued::HostDown { until }) => {
                        self.temp_fail_many(ids, "451 4.4.1 host down", Some(until));
                    }
                    Err(_) => {
                        // No room for all of them at once: one by one.
                        for rid in ids {
                            self.enqueue_locked(&mut st, &key, rid, now);
                        }
                    }
                }
            }
        })
    }

    /// Sends one routing request for `batch` (a single `Route` for one
    /// recipient, else a `Batch` with a `Route`, and with lookup_rcpt_conf
    /// an `RcptConf`, per recipient) and yields each recipient's routing
    /// answer and TLS requirements. A recipient whose `smtpc_rcpt_conf`
    /// cannot be read now gets that temporary failure as its answer: it is
    /// not delivered without the requirements it may have.
    fn route_lookup(
        self: &Arc<Self>,
        lookups: &mut JoinSet<Vec<Routing>>,
        batch: Vec<(usize, RecipientId)>,
        mut reqs: Vec<RouteRequest>,
        timeout: Duration,
    ) {
        let i = Arc::clone(self);
        lookups.spawn(async move {
            if let ([(n, rid)], 1) = (batch.as_slice(), reqs.len())
                && let Some(req) = reqs.pop()
            {
                let result = i.smar.request(req, timeout, u32::MAX).await;
                return vec![(*n, *rid, result, None)];
            }
            let per = reqs.len() / batch.len().max(1);
            let result = i
                .smar
                .request(RouteRequest::Batch(reqs), timeout, u32::MAX)
                .await;
            let outcome = match result {
                Ok(RouteReply::Batch(answers))
                    if per >= 1 && answers.len() == batch.len() * per =>
                {
                    Ok(answers)
                }
                Ok(_) => Err(LinkError::Unexpected {
                    path: i.settings.smar_socket.display().to_string(),
                    what: "a batch answer of the wrong shape",
                }),
                Err(e) => Err(e),
            };
            let answers = match outcome {
                Ok(answers) => answers,
                Err(e) => {
                    return batch
                        .into_iter()
                        .map(|(n, rid)| (n, rid, Err(e.duplicate()), None))
                        .collect();
                }
            };
            let mut answers = answers.into_iter();
            let mut out = Vec::with_capacity(batch.len());
            for (n, rid) in batch {
                let Some(route) = answers.next() else {
                    break;
                };
                let conf = if per == 2 { answers.next() } else { None };
                let (route, tls) = match conf {
                    None | Some(RouteReply::RcptConf(None)) => (route, None),
                    Some(RouteReply::RcptConf(Some(value))) => {
                        match crate::tlsconf::from_value(&value) {
                            Ok(tls) => (route, tls),
                            Err(e) => {
                                tracing::warn!(%rid, error = %e, "smtpc_rcpt_conf entry ignored");
                                (route, None)
                            }
                        }
                    }
                    Some(RouteReply::TempFail(r) | RouteReply::PermFail(r)) => {
                        (RouteReply::TempFail(r), None)
                    }
                    Some(_) => (
                        RouteReply::TempFail(SmtpReply {
                            code: 451,
                            enhanced: Some(EnhancedCode {
                                class: 4,
                                subject: 3,
                                detail: 0,
                            }),
                            text: "unexpected answer from smar".into(),
                        }),
                        None,
                    ),
                };
                out.push((n, rid, Ok(route), tls));
            }
            out
        });
    }

    /// Applies smar's answer for a recipient that was not simply routed.
    fn apply_route(
        self: Arc<Self>,
        rid: RecipientId,
        result: Result<RouteReply, LinkError>,
    ) -> BoxFut {
        Box::pin(async move {
            match result {
                Ok(RouteReply::Routed {
                    rcpts,
                    owner,
                    verp,
                    failed,
                }) => {
                    if rcpts.len() == 1 && owner.is_none() && failed.is_empty() && !verp {
                        let Some(only) = rcpts.into_iter().next() else {
                            return;
                        };
                        match destination(&only.route) {
                            Some(dest) => self.routed(rid, only.address, dest),
                            None => {
                                self.attempted(
                                    rid,
                                    Attempted::Perm {
                                        host: "smar".into(),
                                        reply: "554 5.4.4 empty route".into(),
                                    },
                                )
                                .await
                            }
                        }
                    } else {
                        self.expand(rid, rcpts, owner, verp, failed).await;
                    }
                }
                Ok(RouteReply::TempFail(r)) => {
                    let a = Attempted::Temp {
                        host: "smar".into(),
                        reply: r.to_string(),
                        not_before: None,
                    };
                    self.attempted(rid, a).await;
                }
                Ok(RouteReply::PermFail(r)) => {
                    let a = Attempted::Perm {
                        host: "smar".into(),
                        reply: r.to_string(),
                    };
                    self.attempted(rid, a).await;
                }
                Ok(RouteReply::RcptConf(_) | RouteReply::Batch(_)) => {
                    let a = Attempted::Temp {
                        host: "smar".into(),
                        reply: "451 4.3.0 unexpected answer from smar".into(),
                        not_before: None,
                    };
                    self.attempted(rid, a).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %rid, "routing failed");
                    let a = Attempted::Temp {
                        host: String::new(),
                        reply: "451 4.4.3 address resolver unavailable".into(),
                        not_before: None,
                    };
                    self.attempted(rid, a).await;
                }
            }
        })
    }

    fn routed(self: &Arc<Self>, rid: RecipientId, address: String, dest: (DestKey, Destination)) {
        let mut st = self.lock();
        let Some(r) = st.rcpts.get_mut(&rid) else {
            return;
        };
        r.address = address;
        let dest = with_requirements(dest, r.tls.as_ref());
        let key = dest.0.clone();
        r.route = Some(dest);
        self.enqueue_locked(&mut st, &key, rid, Timestamp::now());
    }

    async fn expand(
        self: &Arc<Self>,
        rid: RecipientId,
        rcpts: Vec<qmgr_smar::RoutedRcpt>,
        owner: Option<String>,
        verp: bool,
        failed: Vec<qmgr_smar::FailedRcpt>,
    ) {
        let orig = {
            let st = self.lock();
            let (Some(r), Some(t)) = (st.rcpts.get(&rid), st.tas.get(&rid.transaction())) else {
                return;
            };
            (t.ta.clone(), r.rcpt.params.clone())
        };
        let (ota, params) = orig;
        let total = rcpts.len() + failed.len();
        if total == 0 || total > MAX_EXPANSION {
            let a = Attempted::Perm {
                host: "smar".into(),
                reply: format!("554 5.3.4 alias expansion of {total} members not accepted"),
            };
            return Arc::clone(self).attempted(rid, a).await;
        }
        let sender = owner.unwrap_or_else(|| ota.sender.clone());
        let members: Vec<Member> = rcpts
            .into_iter()
            .map(|r| {
                let d = destination(&r.route);
                (r.address, d, None)
            })
            .chain(
                failed
                    .into_iter()
                    .map(|f| (f.address, None, Some(f.reply.to_string()))),
            )
            .collect();
        let content = {
            let (cdb, ids, p, src) = (
                self.cdb.clone(),
                Arc::clone(&self.ids),
                self.settings.process_id,
                ota.id,
            );
            blocking(move || -> Result<TransactionId, String> {
                let id = ids.next_transaction(p).map_err(|e| e.to_string())?;
                copy_content(&cdb, src, id)?;
                Ok(id)
            })
            .await
        };
        let new_id = match content {
            Ok(Ok(id)) => id,
            other => {
                tracing::warn!(result = ?other.err().map(|e| e.to_string()), %rid, "alias expansion: copying content failed");
                let a = Attempted::Temp {
                    host: String::new(),
                    reply: "451 4.3.0 alias expansion failed".into(),
                    not_before: None,
                };
                return Arc::clone(self).attempted(rid, a).await;
            }
        };
        // A list marked for VERP: the new transaction asks for it itself,
        // so that it survives a restart.
        let mail_params = match crate::verp::parse_xverp(&ota.params) {
            Ok(None) if verp => format!("{} XVERP", ota.params).trim().to_string(),
            _ => ota.params.clone(),
        };
        let t = Transaction {
            id: new_id,
            sender,
            params: mail_params,
            size: ota.size,
            arrival_us: ota.arrival_us,
            nrcpts: members.len() as u32,
        };
        let mut rs = Vec::with_capacity(members.len());
        for (i, (address, _, _)) in members.iter().enumerate() {
            let Ok(id) = RecipientId::new(new_id, i as u32) else {
                break;
            };
            rs.push(Recipient {
                id,
                address: address.clone(),
                params: params.clone(),
            });
        }
        let mut records = vec![Record::Transaction(t.clone())];
        records.extend(rs.iter().cloned().map(Record::Recipient));
        if let Err(e) = self.ibdb.commit(&records).await {
            tracing::warn!(error = %e, %rid, "alias expansion: IBDB commit failed");
            let cdb = self.cdb.clone();
            let _ = blocking(move || cdb.remove(new_id)).await;
            let a = Attempted::Temp {
                host: String::new(),
                reply: "451 4.3.0 alias expansion failed".into(),
                not_before: None,
            };
            return Arc::clone(self).attempted(rid, a).await;
        }
        let n = rs.len() as u32;
        let mut perm = Vec::new();
        {
            let mut st = self.lock();
            st.refs.add(new_id, u64::from(n));
            st.tas.insert(
                new_id,
                TaInfo {
                    ta: t,
                    ibdb_open: n,
                    live: n,
                },
            );
            let now = Timestamp::now();
            for (r, (address, dest, fail)) in rs.into_iter().zip(members) {
                let id = r.id;
                st.rcpts.insert(
                    id,
                    RcptInfo {
                        address,
                        route: dest.clone(),
                        ..RcptInfo::open(r)
                    },
                );
                match (dest, fail) {
                    (_, Some(reply)) => perm.push((id, reply)),
                    (Some((key, _)), None) => self.enqueue_locked(&mut st, &key, id, now),
                    (None, None) => perm.push((id, "554 5.4.4 empty route".into())),
                }
            }
        }
        for (id, reply) in perm {
            let a = Attempted::Perm {
                host: "smar".into(),
                reply,
            };
            self.spawn_self(|i| async move { i.attempted(id, a).await });
        }
        Arc::clone(self).attempted(rid, Attempted::Expanded).await;
    }

    // ---- delivery ------------------------------------------------------

    /// Gives each target of `dest` the TLS requirements of its
    /// `smtpc_session_conf:` entry in `qmgr_conf`.
    fn session_requirements(&self, dest: &mut Destination) {
        if let Destination::Hosts { targets, .. } = dest {
            for t in targets {
                t.tls_requirements = self
                    .settings
                    .session_confs
                    .lookup(t.addr)
                    .and_then(crate::tlsconf::of_session_conf);
            }
        }
    }

    fn start_delivery(self: &Arc<Self>, st: &mut State, d: crate::scheduler::Delivery) {
        let mut recipients = Vec::with_capacity(d.recipients.len());
        let mut dest = None;
        // The recipients of a delivery share their requirements (their
        // destination key is tagged with them).
        let mut tls_requirements = None;
        for rid in &d.recipients {
            if let Some(r) = st.rcpts.get(rid) {
                if dest.is_none() {
                    dest = r.route.as_ref().map(|x| x.1.clone());
                    tls_requirements = r.tls.clone();
                }
                recipients.push(qmgr_smtpc::DeliveryRecipient {
                    index: rid.index(),
                    address: r.address.clone(),
                    params: r.rcpt.params.clone(),
                });
            }
        }
        let dest = dest.map(|mut dest| {
            if self.settings.qmgr.smtpc.flags.lookup_session_conf {
                self.session_requirements(&mut dest);
            }
            dest
        });
        let (Some(t), Some(destination)) = (st.tas.get(&d.transaction), dest) else {
            tracing::error!(ta = %d.transaction, "delivery without a transaction or a route");
            let _ = st
                .sched
                .complete(d.id, DeliveryResult::Success, Timestamp::now());
            for rid in d.recipients {
                self.temp_fail(rid, "", "451 4.3.0 internal error: no route", None);
            }
            return;
        };
        let verp = match crate::verp::parse_xverp(&t.ta.params) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, ta = %d.transaction, "XVERP ignored");
                None
            }
        };
        let base = qmgr_smtpc::Delivery {
            da_ta: DaTransactionId {
                process: self.settings.process_id,
                counter: self.da_counter,
                index: d.id.0 as u32,
            },
            content: ipc_ta(t.ta.id),
            size: t.ta.size,
            sender: t.ta.sender.clone(),
            params: t.ta.params.clone(),
            recipients: Vec::new(),
            destination,
            tls_requirements,
        };
        let parts = match verp {
            None => vec![qmgr_smtpc::Delivery { recipients, ..base }],
            // VERP: one part per recipient, each with its own sender; the
            // XVERP parameter is not passed on.
            Some(delims) => {
                let params = base
                    .params
                    .split_ascii_whitespace()
                    .filter(|p| {
                        !p.split('=')
                            .next()
                            .is_some_and(|k| k.eq_ignore_ascii_case("XVERP"))
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                recipients
                    .into_iter()
                    .map(|r| {
                        let sender = crate::verp::rewrite(&base.sender, &r.address, delims)
                            .unwrap_or_else(|_| base.sender.clone());
                        qmgr_smtpc::Delivery {
                            sender,
                            params: params.clone(),
                            recipients: vec![r],
                            ..base.clone()
                        }
                    })
                    .collect()
            }
        };
        st.totals.deliveries += 1;
        let id = d.id;
        self.spawn_self(|i| async move { i.deliver(id, parts).await });
    }

    /// Runs the parts of one delivery (one part, or one per recipient with
    /// VERP) through smtpc and applies the results.
    async fn deliver(
        self: Arc<Self>,
        id: crate::scheduler::DeliveryId,
        parts: Vec<qmgr_smtpc::Delivery>,
    ) {
        let timeout = self.settings.qmgr.delivery_timeout.0;
        let attempts = self.settings.delivery_resends.saturating_add(1);
        let mut running = JoinSet::new();
        for part in parts {
            let i = Arc::clone(&self);
            running.spawn(async move {
                i.smtpc
                    .request(SmtpcRequest::Deliver(part), timeout, attempts)
                    .await
            });
        }
        let mut replies = Vec::new();
        let mut error = None;
        while let Some(done) = running.join_next().await {
            match done {
                Ok(Ok(SmtpcReply::Delivered(r))) => replies.extend(r.recipients),
                Ok(Err(e)) => error = Some(e),
                Err(e) => {
                    error = Some(LinkError::Unavailable {
                        path: String::new(),
                        last: e.to_string(),
                    })
                }
            }
        }
        let result = match error {
            Some(e) if replies.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "part of a VERP delivery failed");
                Ok(replies)
            }
            None => Ok(replies),
        };
        let now = Timestamp::now();
        let (delivery, results) = {
            let mut st = self.lock();
            let (kind, results) = match result {
                Ok(r) => {
                    let host_failure = !r.is_empty()
                        && r.iter()
                            .all(|x| x.status == RecipientStatus::TempFail && x.host.is_none());
                    let kind = if host_failure {
                        DeliveryResult::HostFailure
                    } else {
                        DeliveryResult::Success
                    };
                    (kind, Ok(r))
                }
                Err(e @ LinkError::Timeout { .. }) => (DeliveryResult::HostFailure, Err(e)),
                Err(e) => (DeliveryResult::Success, Err(e)),
            };
            match st.sched.complete(id, kind, now) {
                Ok(d) => (d, results),
                Err(_) => return, // timed out already; its recipients were deferred
            }
        };
        self.wake.notify_one();
        let by_index: HashMap<u32, RecipientResult> = match results {
            Ok(v) => v.into_iter().map(|r| (r.index, r)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "delivery failed; recipients deferred");
                HashMap::new()
            }
        };
        let mut items = Vec::with_capacity(delivery.recipients.len());
        for rid in delivery.recipients {
            let a = match by_index.get(&rid.index()) {
                None => Attempted::Temp {
                    host: String::new(),
                    reply: "451 4.4.0 delivery agent unavailable".into(),
                    not_before: None,
                },
                Some(r) => {
                    let host = r.host.clone().unwrap_or_default();
                    let text = r.reply.to_string().replace('\n', "\r\n");
                    match r.status {
                        RecipientStatus::Delivered => Attempted::Delivered,
                        RecipientStatus::TempFail => Attempted::Temp {
                            host,
                            reply: text,
                            not_before: None,
                        },
                        RecipientStatus::PermFail => Attempted::Perm { host, reply: text },
                    }
                }
            };
            items.push((rid, a));
        }
        self.attempted_many(items).await;
    }

    /// Applies the end of an attempt for one recipient in memory; see
    /// "What is committed when".
    fn attempted(self: Arc<Self>, rid: RecipientId, a: Attempted) -> BoxFut {
        self.attempted_many(vec![(rid, a)])
    }

    /// Applies the ends of attempts for recipients in memory (see "What is
    /// committed when"), with one DEFEDB write and one IBDB commit per
    /// kind of end for all of them. A recipient already being decided, or
    /// no longer in memory, is skipped.
    fn attempted_many(self: Arc<Self>, items: Vec<(RecipientId, Attempted)>) -> BoxFut {
        Box::pin(async move {
            let now = Timestamp::now();
            // (recipient, in IBDB, from DEFEDB, expanded)
            let mut delivered = Vec::new();
            // (recipient, in IBDB, entry, delay DSN due)
            let mut defers = Vec::new();
            // (recipient, in IBDB, entry, reason)
            let mut bounces = Vec::new();
            {
                let mut guard = self.lock();
                let st = &mut *guard;
                for (rid, a) in items {
                    let (Some(r), Some(t)) =
                        (st.rcpts.get_mut(&rid), st.tas.get(&rid.transaction()))
                    else {
                        continue;
                    };
                    if r.deciding {
                        continue;
                    }
                    r.deciding = true;
                    let entry = r
                        .deferred
                        .clone()
                        .unwrap_or_else(|| retry::new_entry(&t.ta, &r.rcpt));
                    let update = match &a {
                        Attempted::Delivered | Attempted::Expanded => Update::Delivered,
                        Attempted::Temp { host, reply, .. } => self.retry.record_attempt(
                            entry,
                            AttemptResult::TempFail { host, reply },
                            now,
                        ),
                        Attempted::Perm { host, reply } => self.retry.record_attempt(
                            entry,
                            AttemptResult::PermFail { host, reply },
                            now,
                        ),
                    };
                    match update {
                        Update::Delivered => delivered.push((
                            rid,
                            r.in_ibdb,
                            r.deferred.is_some(),
                            matches!(a, Attempted::Expanded),
                        )),
                        Update::Defer {
                            mut entry,
                            delay_dsn,
                        } => {
                            if let Attempted::Temp {
                                not_before: Some(nb),
                                ..
                            } = a
                            {
                                entry.next_try =
                                    entry.next_try.max(nb.as_micros().div_ceil(1_000_000));
                            }
                            defers.push((rid, r.in_ibdb, entry, delay_dsn));
                        }
                        Update::Bounce { entry, reason } => {
                            bounces.push((rid, r.in_ibdb, entry, reason));
                        }
                    }
                }
            }
            if !delivered.is_empty() {
                self.finish_delivered(delivered).await;
            }
            if !defers.is_empty() {
                self.finish_deferred(defers).await;
            }
            if !bounces.is_empty() {
                self.finish_bounced(bounces, now).await;
            }
        })
    }

    async fn finish_delivered(self: &Arc<Self>, done: Vec<(RecipientId, bool, bool, bool)>) {
        let from_defedb: Vec<RecipientId> = done.iter().filter(|d| d.2).map(|d| d.0).collect();
        if !from_defedb.is_empty() {
            let db = Arc::clone(&self.defedb);
            if let Ok(Err(e)) | Err(e) = blocking(move || db.remove(&from_defedb))
                .await
                .map(|r| r.map_err(QmgrError::from))
            {
                tracing::error!(error = %e, "DEFEDB remove after delivery failed");
            }
        }
        let outcomes: Vec<RecipientId> = done.iter().filter(|d| d.1).map(|d| d.0).collect();
        self.ibdb_outcomes(&outcomes, Outcome::Delivered).await;
        let mut st = self.lock();
        for (rid, _, _, expanded) in done {
            forget(&mut st, rid);
            if expanded {
                st.totals.expanded += 1;
            } else {
                st.totals.delivered += 1;
            }
            self.release(&mut st, rid.transaction());
        }
        self.update_throttle(&mut st);
    }

    async fn finish_deferred(
        self: &Arc<Self>,
        defers: Vec<(RecipientId, bool, DeferredRecipient, bool)>,
    ) {
        let entries: Vec<DeferredRecipient> = defers.iter().map(|d| d.2.clone()).collect();
        let db = Arc::clone(&self.defedb);
        if let Ok(Err(e)) | Err(e) = blocking(move || db.put(&entries))
            .await
            .map(|r| r.map_err(QmgrError::from))
        {
            tracing::error!(error = %e, "DEFEDB put failed; retrying from memory");
            let rids: Vec<RecipientId> = {
                let mut st = self.lock();
                defers
                    .iter()
                    .filter_map(|d| {
                        let r = st.rcpts.get_mut(&d.0)?;
                        r.deciding = false;
                        Some(d.0)
                    })
                    .collect()
            };
            let i = Arc::clone(self);
            let delay = self.retry.min_delay;
            self.spawn(async move {
                tokio::time::sleep(delay).await;
                i.route_batch(rids).await;
            });
            return;
        }
        let outcomes: Vec<RecipientId> = defers.iter().filter(|d| d.1).map(|d| d.0).collect();
        self.ibdb_outcomes(&outcomes, Outcome::Deferred).await;
        {
            let mut st = self.lock();
            for (rid, _, entry, _) in &defers {
                forget(&mut st, *rid);
                st.totals.deferred += 1;
                let next = Timestamp::from_secs(entry.next_try);
                if next < st.next_scan {
                    st.next_scan = next;
                }
            }
            self.update_throttle(&mut st);
        }
        self.wake.notify_one();
        for (rid, _, entry, delay_dsn) in defers {
            if delay_dsn {
                let batch = dsn::Batch {
                    kind: DsnKind::Delay,
                    transaction: rid.transaction(),
                    recipients: vec![rid],
                };
                self.send_dsn(batch, vec![(entry, None)]).await;
            }
        }
    }

    async fn finish_bounced(
        self: &Arc<Self>,
        bounces: Vec<(RecipientId, bool, DeferredRecipient, BounceReason)>,
        now: Timestamp,
    ) {
        let entries: Vec<DeferredRecipient> = bounces.iter().map(|b| b.2.clone()).collect();
        let db = Arc::clone(&self.defedb);
        if let Ok(Err(e)) | Err(e) = blocking(move || db.put(&entries))
            .await
            .map(|r| r.map_err(QmgrError::from))
        {
            // The DSN is still sent from memory; only a crash before it
            // is queued would lose it.
            tracing::error!(error = %e, "DEFEDB put of bounces failed");
        }
        let outcomes: Vec<RecipientId> = bounces.iter().filter(|b| b.1).map(|b| b.0).collect();
        self.ibdb_outcomes(&outcomes, Outcome::Bounced).await;
        let batches = {
            let mut st = self.lock();
            let mut out = Vec::new();
            for (rid, _, entry, reason) in bounces {
                forget(&mut st, rid);
                st.bounces.insert(rid, (entry, reason));
                out.extend(self.hold_failure(&mut st, rid, now));
            }
            out
        };
        for b in batches {
            self.spawn_self(|i| async move { i.bounce_batch(b).await });
        }
        self.wake.notify_one();
    }

    /// Holds a failed recipient for merging; returns the batches to send.
    fn hold_failure(&self, st: &mut State, rid: RecipientId, now: Timestamp) -> Vec<dsn::Batch> {
        let ta = rid.transaction();
        let mut out = st.merge.hold(DsnKind::Failure, rid, now);
        let undecided = st.tas.get(&ta).map_or(0, |t| t.live);
        if undecided == 0 {
            out.extend(st.merge.flush(DsnKind::Failure, ta));
        }
        out
    }

    /// Commits `outcome` for `rids` in one IBDB commit, then the `Closed`
    /// records of the transactions left without open IBDB recipients.
    async fn ibdb_outcomes(&self, rids: &[RecipientId], outcome: Outcome) {
        if rids.is_empty() {
            return;
        }
        let records: Vec<Record> = rids
            .iter()
            .map(|r| Record::Outcome { rcpt: *r, outcome })
            .collect();
        if let Err(e) = self.ibdb.commit(&records).await {
            // The recipients stay open in IBDB; recovery tries them again.
            tracing::error!(error = %e, "IBDB outcome commit failed");
            return;
        }
        let closes: Vec<Record> = {
            let mut st = self.lock();
            let mut closes = Vec::new();
            for rid in rids {
                let ta = rid.transaction();
                if let Some(t) = st.tas.get_mut(&ta)
                    && t.ibdb_open > 0
                {
                    t.ibdb_open -= 1;
                    if t.ibdb_open == 0 {
                        closes.push(Record::Closed(ta));
                        if t.live == 0 {
                            st.tas.remove(&ta);
                        }
                    }
                }
            }
            closes
        };
        if let Err(e) = self.ibdb.commit(&closes).await {
            tracing::warn!(error = %e, "IBDB close commit failed");
        }
    }

    /// Releases one content reference; removes the CDB file after the last.
    fn release(&self, st: &mut State, ta: TransactionId) {
        if st.refs.release(ta) == Release::Last {
            let cdb = self.cdb.clone();
            self.spawn(async move {
                if let Ok(Err(e)) = blocking(move || cdb.remove(ta)).await {
                    tracing::warn!(error = %e, %ta, "removing content failed");
                }
            });
        }
    }

    // ---- DEFEDB --------------------------------------------------------

    async fn scan_defedb(self: Arc<Self>) {
        let now = Timestamp::now();
        let limit = {
            let st = self.lock();
            (st.rcpts.len() + st.bounces.len() + st.sched.free_entries()).clamp(1, 100_000)
        };
        let db = Arc::clone(&self.defedb);
        let result = blocking(move || {
            let due = db.due(now.as_secs(), limit)?;
            let next = db.next_due()?;
            Ok::<_, defedb::DefedbError>((due, next))
        })
        .await;
        let (entries, next) = match result {
            Ok(Ok((due, next))) => {
                for d in &due.damaged {
                    tracing::warn!(damage = ?d, "DEFEDB entry damaged");
                }
                let full = due.entries.len() >= limit;
                (due.entries, if full { Some(now.as_secs()) } else { next })
            }
            other => {
                tracing::error!(result = ?other.map(|r| r.err()), "DEFEDB scan failed");
                (Vec::new(), None)
            }
        };
        let taken = self.take_deferred(entries);
        let mut st = self.lock();
        st.scanning = false;
        let fallback = now.plus(self.settings.defedb_scan_interval);
        let mut next = next.map_or(fallback, Timestamp::from_secs).min(fallback);
        if next <= now && taken == 0 {
            next = now.plus(MIN_SCAN_GAP);
        }
        // A put during the scan may have asked for an earlier scan.
        if st.next_scan <= now || next < st.next_scan {
            st.next_scan = next;
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Takes DEFEDB entries into memory (routing them, or their pending
    /// bounce); entries already in memory are skipped. Returns how many
    /// were taken.
    fn take_deferred(self: &Arc<Self>, entries: Vec<DeferredRecipient>) -> usize {
        let now = Timestamp::now();
        let mut taken = 0;
        let mut batches = Vec::new();
        let mut route = Vec::new();
        {
            let mut st = self.lock();
            for e in entries {
                let rid = e.id();
                if st.rcpts.contains_key(&rid) || st.bounces.contains_key(&rid) {
                    continue;
                }
                taken += 1;
                let pending = e.dsn_flags & defedb::dsn::FAILURE_PENDING != 0;
                if pending {
                    let reason = if e.last_reply.starts_with('5') {
                        BounceReason::Permanent
                    } else {
                        BounceReason::Expired
                    };
                    st.bounces.insert(rid, (e, reason));
                    batches.extend(self.hold_failure(&mut st, rid, now));
                    continue;
                }
                let ta = rid.transaction();
                let t = st.tas.entry(ta).or_insert_with(|| TaInfo {
                    ta: e.transaction.clone(),
                    ibdb_open: 0,
                    live: 0,
                });
                t.live += 1;
                st.rcpts.insert(rid, RcptInfo::from_defedb(e));
                route.push(rid);
            }
        }
        for b in batches {
            self.spawn_self(|i| async move { i.bounce_batch(b).await });
        }
        if !route.is_empty() {
            self.spawn_self(|i| async move { i.route_batch(route).await });
        }
        taken
    }

    // ---- DSNs ----------------------------------------------------------

    fn bounce_batch(self: Arc<Self>, batch: dsn::Batch) -> BoxFut {
        Box::pin(async move {
            let entries: Vec<(DeferredRecipient, Option<String>)> = {
                let st = self.lock();
                batch
                    .recipients
                    .iter()
                    .filter_map(|r| st.bounces.get(r))
                    .map(|(e, reason)| {
                        let status = match reason {
                            BounceReason::Expired => Some("5.4.7".to_string()),
                            BounceReason::Permanent => None,
                        };
                        (e.clone(), status)
                    })
                    .collect()
            };
            if entries.is_empty() {
                return;
            }
            if self.send_dsn(batch.clone(), entries).await {
                let db = Arc::clone(&self.defedb);
                let ids = batch.recipients.clone();
                if let Ok(Err(e)) = blocking(move || db.remove(&ids)).await {
                    tracing::error!(error = %e, "DEFEDB remove after a bounce failed");
                }
                let mut st = self.lock();
                for rid in &batch.recipients {
                    if st.bounces.remove(rid).is_some() {
                        st.totals.bounced += 1;
                        self.release(&mut st, rid.transaction());
                    }
                }
            } else {
                // Try again later; the entries stay flagged in DEFEDB.
                let delay = self.retry.min_delay;
                let i = Arc::clone(&self);
                self.spawn(async move {
                    tokio::time::sleep(delay).await;
                    i.bounce_batch(batch).await;
                });
            }
        })
    }

    /// Builds and injects the DSNs of `batch`; true when every one is
    /// queued (or none was due).
    async fn send_dsn(
        self: &Arc<Self>,
        batch: dsn::Batch,
        entries: Vec<(DeferredRecipient, Option<String>)>,
    ) -> bool {
        let Some((first, _)) = entries.first() else {
            return true;
        };
        let ta = first.transaction.clone();
        let retry_until = (batch.kind == DsnKind::Delay)
            .then(|| self.retry.expiry(Timestamp::from_micros(ta.arrival_us)));
        let rcpts: Vec<ReportedRecipient> = entries
            .iter()
            .map(|(e, status)| ReportedRecipient::from_deferred(e, status.clone(), retry_until))
            .collect();
        let (cdb, cfg, kind) = (self.cdb.clone(), self.dsn.clone(), batch.kind);
        let built = blocking(move || {
            let orig = OriginalTransaction::from_store(&ta, false);
            let now = Timestamp::now();
            match cdb.open_reader(ta.id) {
                Ok(mut r) => dsn::build(&cfg, kind, &orig, &rcpts, &mut r, now),
                Err(_) => dsn::build(&cfg, kind, &orig, &rcpts, &mut std::io::empty(), now),
            }
        })
        .await;
        let plan = match built {
            Ok(Ok(p)) => p,
            other => {
                tracing::error!(result = ?other.map(|r| r.err().map(|e| e.to_string())), "building a DSN failed");
                return false;
            }
        };
        for (rid, why) in &plan.skipped {
            tracing::info!(%rid, reason = ?why, "no DSN for recipient");
        }
        for d in plan.dsns {
            if let Err(e) = self.inject(d).await {
                tracing::error!(error = %e, "queueing a DSN failed");
                return false;
            }
        }
        true
    }

    /// Queues a DSN message as a new transaction from `<>`.
    async fn inject(self: &Arc<Self>, d: dsn::Dsn) -> Result<(), String> {
        let (cdb, ids, p) = (
            self.cdb.clone(),
            Arc::clone(&self.ids),
            self.settings.process_id,
        );
        let message = d.message;
        let size = message.len() as u64;
        let id = blocking(move || -> Result<TransactionId, String> {
            let id = ids.next_transaction(p).map_err(|e| e.to_string())?;
            let mut w = cdb.create(id).map_err(|e| e.to_string())?;
            w.write(&message).map_err(|e| e.to_string())?;
            w.commit().map_err(|e| e.to_string())?;
            Ok(id)
        })
        .await
        .map_err(|e| e.to_string())??;
        let rid = RecipientId::new(id, 0).map_err(|e| e.to_string())?;
        let t = Transaction {
            id,
            sender: String::new(),
            params: String::new(),
            size,
            arrival_us: Timestamp::now().as_micros(),
            nrcpts: 1,
        };
        let r = Recipient {
            id: rid,
            address: d.recipient,
            params: String::new(),
        };
        let records = [Record::Transaction(t.clone()), Record::Recipient(r.clone())];
        if let Err(e) = self.ibdb.commit(&records).await {
            let cdb = self.cdb.clone();
            let _ = blocking(move || cdb.remove(id)).await;
            return Err(e.to_string());
        }
        {
            let mut st = self.lock();
            st.refs.add(id, 1);
            st.tas.insert(
                id,
                TaInfo {
                    ta: t,
                    ibdb_open: 1,
                    live: 1,
                },
            );
            st.rcpts.insert(rid, RcptInfo::open(r));
            st.totals.dsns += 1;
        }
        self.spawn_self(|i| async move { i.route(rid).await });
        Ok(())
    }
}

/// Removes a recipient from memory (it is decided or in DEFEDB).
fn forget(st: &mut State, rid: RecipientId) {
    if st.rcpts.remove(&rid).is_none() {
        return;
    }
    let ta = rid.transaction();
    if let Some(t) = st.tas.get_mut(&ta) {
        t.live = t.live.saturating_sub(1);
        if t.live == 0 && t.ibdb_open == 0 {
            st.tas.remove(&ta);
        }
    }
}

/// The notice that tells a newly connected smtps the current decision.
fn notice_of(state: ThrottleState, reduced: u32) -> Option<QmgrNotice> {
    match state {
        ThrottleState::Normal => None,
        ThrottleState::Reduced(reason) => Some(QmgrNotice::Throttle {
            max_sessions: reduced,
            reason,
        }),
        ThrottleState::Stopped(reason) => Some(QmgrNotice::Throttle {
            max_sessions: 0,
            reason,
        }),
    }
}

/// Copies the content of `src` to a new CDB file `dst` (durably).
fn copy_content(cdb: &Cdb, src: TransactionId, dst: TransactionId) -> Result<(), String> {
    let mut r = cdb.open_reader(src).map_err(|e| e.to_string())?;
    let mut w = cdb.create(dst).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n]).map_err(|e| e.to_string())?;
    }
    w.commit().map_err(|e| e.to_string())?;
    Ok(())
}
