//! The scheduler: the active queue (AQ) of seed 7.1 as a pure data
//! structure. qmgr puts recipients in ([`Scheduler::enqueue`]), asks what
//! to do ([`Scheduler::poll`]) and reports what smtpc did
//! ([`Scheduler::complete`]). The scheduler does no I/O and reads no
//! clock: every call takes `now`, so tests drive it with a fake clock.
//!
//! # Rules
//!
//! **Destinations.** A recipient waits for a *destination*: a protocol
//! (SMTP or LMTP) and the host or route smar resolved it to
//! ([`DestKey`]; host names are compared without case and trailing dot).
//! A destination exists while it has recipients queued or deliveries
//! active, so there are never more destinations than AQ entries.
//!
//! **Delivery transactions.** A delivery carries recipients of one
//! destination and one original transaction (so one sender and one
//! content), at most `smtp_max_rcpts_per_transaction` for SMTP or
//! `lmtp_max_rcpts_per_transaction` for LMTP. Within a destination,
//! transactions are served in the order their first recipient was queued;
//! a transaction with more recipients than the limit is split over several
//! deliveries.
//!
//! **Fairness.** Destinations that can start a delivery form a ring. Each
//! turn of the ring starts at most one delivery per destination, then moves
//! to the next, and the ring keeps its position between polls. A
//! destination with ten thousand queued recipients therefore gets one
//! delivery per turn like a destination with one: a newly queued message
//! for another destination waits at most for the destinations ahead of it
//! in the ring, each starting one delivery, never for a whole queue. When
//! all delivery agents are busy (`max_deliveries`), the next free agent goes
//! to the next destination in the ring, so a slow destination that holds
//! many agents gives the first agent it frees to the others.
//!
//! **Slow start (seed 3.8.1).** Each destination host has a window of
//! concurrent deliveries. It starts at `oci` (`initial_connections`),
//! grows by one for each successful delivery up to `ocm`
//! (`max_connections`), and is halved (never below 1) by a host failure.
//! `oci`, `ocm` and the cache timeout `octo` come from the
//! [`LimitTable`] for the destination's IP address when the host is an
//! address literal, else from the defaults.
//!
//! **Failing hosts.** A host failure (smtpc could not connect or the
//! session failed as a whole, or a delivery timed out) marks the host down
//! for an exponential back-off (`retry_min_delay` doubled per consecutive
//! failure, at most `retry_max_delay`). The recipients still queued for it
//! leave the AQ at once as [`Action::Defer`] with the time the host may be
//! tried again, and while the host is down [`Scheduler::enqueue`] answers
//! [`Enqueued::HostDown`] instead of taking recipients. One successful
//! delivery clears the failure count.
//!
//! **Connection cache (OCC).** Per-host state (window, limits, failures,
//! down time) lives in the outgoing connection cache, at most
//! `OCC_max_entries` entries. An entry unused for `octo` (and not down) is
//! forgotten; when the cache is full the least recently used entry is
//! evicted. Losing an entry resets that host to slow start and forgets
//! that it was down (it is then tried once more before being marked down
//! again).
//!
//! **Delivery timeout.** Every started delivery must be reported within
//! `delivery_timeout`. One that is not is removed from the active set and
//! returned as [`Action::TimedOut`] (its recipients failed temporarily) and
//! counts as a host failure; a late report for it gets
//! [`SchedError::UnknownDelivery`] and must be ignored.
//!
//! **Scheduler timeout.** As a safety net (seed 8.3), recipients of a
//! transaction that have waited `scheduler_timeout` for a destination,
//! counted from the first of them queued there, leave the AQ as
//! [`Action::Expired`], to be deferred like a temporary failure.
//!
//! **AQ bound.** Queued plus active recipients never exceed
//! `AQ_max_entries`; [`Scheduler::enqueue`] refuses with
//! [`SchedError::AqFull`], all or nothing for one call.
//!
//! # Use
//!
//! The qmgr event loop drives one scheduler:
//!
//! ```text
//! on recipients routed by smar:  enqueue_many(dest, ids, now)
//!     Queued              -> nothing more
//!     HostDown { until }  -> defer them (DEFEDB next_try >= until)
//!     Err(AqFull)         -> leave them in IQDB / DEFEDB, try later
//! on a smtpc result:      complete(id, Success | HostFailure, now)
//!     -> per-recipient outcomes: IBDB, retry, dsn
//! then, and on every timer:  poll(now)
//!     Ready(actions)  -> Start: send to smtpc; TimedOut: temporary failure
//!                        of its recipients; Defer / Expired: to DEFEDB
//!     Sleep(d)        -> wait for an event or d
//!     Idle            -> wait for an event
//! ```
//!
//! The caller enqueues each recipient once; the scheduler does not keep a
//! set of all ids to detect duplicates.
//!
//! # Cost
//!
//! Enqueue and complete are O(1) hash operations plus an O(log n)
//! connection cache update; each started delivery costs O(1) amortised plus
//! the recipients it carries. See [`crate::bench`].

use crate::limits::{LimitKind, LimitTable};
use crate::retry::backoff;
use crate::time::Timestamp;
use smx_conf::model::qmgr::QmgrConfig;
use smx_store::id::{RecipientId, TransactionId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

/// The delivery protocol of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// (E)SMTP to a remote host.
    Smtp,
    /// LMTP to a local delivery agent.
    Lmtp,
}

/// Where a recipient goes: protocol and host (or route).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestKey {
    protocol: Protocol,
    host: String,
}

impl DestKey {
    /// This destination with `tag` appended to its host, so that deliveries
    /// that must not share sessions (different TLS requirements) are
    /// scheduled apart.
    pub fn tagged(&self, tag: &str) -> Self {
        DestKey {
            protocol: self.protocol,
            host: format!("{}{tag}", self.host),
        }
    }

    /// A destination; the host is lower-cased and a trailing dot removed.
    pub fn new(protocol: Protocol, host: &str) -> Self {
        let h = host.strip_suffix('.').unwrap_or(host);
        DestKey {
            protocol,
            host: h.to_ascii_lowercase(),
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The host or route, normalised.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The IP address when the host is an address (`10.1.2.3`,
    /// `[10.1.2.3]`, `[IPv6:2001:db8::1]`).
    pub fn ip(&self) -> Option<IpAddr> {
        let h = self.host.as_str();
        let h = h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h);
        let h = h.strip_prefix("ipv6:").unwrap_or(h);
        h.parse().ok()
    }
}

impl std::fmt::Display for DestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.protocol {
            Protocol::Smtp => "smtp",
            Protocol::Lmtp => "lmtp",
        };
        write!(f, "{p}:{}", self.host)
    }
}

/// Scheduler options; [`SchedulerConfig::from_conf`] takes them from the
/// `qmgr` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Recipients per SMTP delivery (`smtp_max_rcpts_per_transaction`).
    pub smtp_max_rcpts: u32,
    /// Recipients per LMTP delivery (`lmtp_max_rcpts_per_transaction`).
    pub lmtp_max_rcpts: u32,
    /// Default initial window (`initial_connections`, `oci`).
    pub initial_connections: u32,
    /// Default maximum window (`max_connections`, `ocm`).
    pub max_connections: u32,
    /// Queued plus active recipients (`AQ_max_entries`).
    pub aq_max_entries: u32,
    /// Connection cache size (`OCC_max_entries`).
    pub occ_max_entries: u32,
    /// Default connection cache entry lifetime (`octo`).
    pub occ_timeout: Duration,
    /// Longest time a delivery may stay unreported (`delivery_timeout`).
    pub delivery_timeout: Duration,
    /// Longest wait of a queued recipient in the AQ (`scheduler_timeout`).
    pub scheduler_timeout: Duration,
    /// Deliveries running at once over all destinations (delivery agent
    /// capacity).
    pub max_deliveries: u32,
    /// First back-off of a failing host (`retry_min_delay`).
    pub host_retry_min: Duration,
    /// Longest back-off of a failing host (`retry_max_delay`).
    pub host_retry_max: Duration,
}

impl SchedulerConfig {
    /// Options from the `qmgr` section. The connection cache timeout
    /// defaults to `retry_max_delay` (the seed asks the cache to cover at
    /// least the longest retry time); `max_deliveries` to 1000.
    pub fn from_conf(c: &QmgrConfig) -> Self {
        SchedulerConfig {
            smtp_max_rcpts: c.smtpc.smtp_max_rcpts_per_transaction,
            lmtp_max_rcpts: c.smtpc.lmtp_max_rcpts_per_transaction,
            initial_connections: c.smtpc.initial_connections,
            max_connections: c.smtpc.max_connections,
            aq_max_entries: c.aq_max_entries,
            occ_max_entries: c.occ_max_entries,
            occ_timeout: c.retry_max_delay.0,
            delivery_timeout: c.delivery_timeout.0,
            scheduler_timeout: c.scheduler_timeout.0,
            max_deliveries: 1000,
            host_retry_min: c.retry_min_delay.0,
            host_retry_max: c.retry_max_delay.0,
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig::from_conf(&QmgrConfig::default())
    }
}

/// Names one started delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub u64);

/// A delivery transaction for smtpc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id, for [`Scheduler::complete`].
    pub id: DeliveryId,
    /// The destination.
    pub dest: DestKey,
    /// The original transaction (sender and content).
    pub transaction: TransactionId,
    /// The recipients, in queue order; never empty.
    pub recipients: Vec<RecipientId>,
    /// When it started.
    pub started: Timestamp,
    /// When it times out.
    pub deadline: Timestamp,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand this delivery to a delivery agent.
    Start(Delivery),
    /// This delivery was not reported within `delivery_timeout`; treat its
    /// recipients as failed temporarily.
    TimedOut(Delivery),
    /// These recipients waited longer than `scheduler_timeout` in the AQ
    /// and left it; defer them (DEFEDB) as temporarily failed.
    Expired {
        /// The destination.
        dest: DestKey,
        /// The recipients.
        recipients: Vec<RecipientId>,
    },
    /// The host is down: these recipients left the AQ; defer them (DEFEDB)
    /// and try them not before `until`.
    Defer {
        /// The destination.
        dest: DestKey,
        /// The recipients.
        recipients: Vec<RecipientId>,
        /// When the host may be tried again.
        until: Timestamp,
    },
}

/// The answer of [`Scheduler::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Do these, then poll again.
    Ready(Vec<Action>),
    /// Nothing to do before this much time has passed (or an event
    /// arrives: an enqueue or a completion).
    Sleep(Duration),
    /// Nothing queued, nothing active.
    Idle,
}

/// How enqueueing went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The recipients are queued.
    Queued,
    /// The host is down until `until`; the recipients were not taken
    /// (defer them).
    HostDown {
        /// When the host may be tried again.
        until: Timestamp,
    },
}

/// What smtpc reported for a delivery, as far as the scheduler cares
/// (per-recipient results are the caller's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The host answered and the session worked (whatever each recipient
    /// got).
    Success,
    /// The host could not be reached or the session failed as a whole.
    HostFailure,
}

/// Scheduler errors; none leaves the scheduler inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The AQ has no room for all the recipients of this call; try again
    /// after deliveries complete.
    #[error("active queue full: {requested} recipients requested, {free} of {capacity} free")]
    AqFull {
        /// Recipients in the call.
        requested: usize,
        /// Free entries.
        free: usize,
        /// `AQ_max_entries`.
        capacity: usize,
    },
    /// No such active delivery (already completed or timed out): ignore
    /// the report.
    #[error("no active delivery {0:?}")]
    UnknownDelivery(DeliveryId),
}

/// Counters for the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Recipients waiting.
    pub queued: usize,
    /// Recipients in active deliveries.
    pub active_recipients: usize,
    /// Active deliveries.
    pub active_deliveries: usize,
    /// Destinations with queued or active recipients.
    pub destinations: usize,
    /// Connection cache entries.
    pub occ_entries: usize,
    /// Deliveries started since creation.
    pub started: u64,
    /// Deliveries timed out since creation.
    pub timed_out: u64,
    /// Recipients handed back as deferred since creation.
    pub deferred: u64,
    /// Recipients that reached `scheduler_timeout` since creation.
    pub expired: u64,
}

/// The state of one destination, for the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestStatus {
    /// The destination.
    pub dest: DestKey,
    /// Recipients waiting.
    pub queued: usize,
    /// Active deliveries.
    pub active: u32,
    /// The host state, if cached.
    pub host: Option<HostState>,
}

/// Connection cache state of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostState {
    /// Current concurrency window.
    pub window: u32,
    /// Initial window (`oci`).
    pub initial: u32,
    /// Maximum window (`ocm`).
    pub max: u32,
    /// Consecutive host failures.
    pub failures: u32,
    /// Down until then, if down.
    pub down_until: Option<Timestamp>,
}

/// The scheduler; see the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    limits: LimitTable,
    dests: Vec<Option<Dest>>,
    free_slots: Vec<usize>,
    index: HashMap<DestKey, usize>,
    ring: VecDeque<usize>,
    active: HashMap<DeliveryId, (usize, Delivery)>,
    deadlines: BinaryHeap<Reverse<(Timestamp, DeliveryId)>>,
    /// When waiting transaction batches reach `scheduler_timeout`: (time,
    /// destination slot, transaction). Entries of batches that left are
    /// skipped when popped and pruned when they pile up.
    waits: BinaryHeap<Reverse<(Timestamp, usize, TransactionId)>>,
    occ: Occ,
    outbox: Vec<Action>,
    aq_used: usize,
    queued: usize,
    next_id: u64,
    stats: Stats,
}

impl Scheduler {
    /// An empty scheduler. Zero limits in `cfg` are raised to 1.
    pub fn new(cfg: SchedulerConfig, limits: LimitTable) -> Self {
        let mut cfg = cfg;
        cfg.smtp_max_rcpts = cfg.smtp_max_rcpts.max(1);
        cfg.lmtp_max_rcpts = cfg.lmtp_max_rcpts.max(1);
        cfg.max_connections = cfg.max_connections.max(1);
        cfg.initial_connections = cfg.initial_connections.clamp(1, cfg.max_connections);
        cfg.aq_max_entries = cfg.aq_max_entries.max(1);
        cfg.occ_max_entries = cfg.occ_max_entries.max(1);
        cfg.max_deliveries = cfg.max_deliveries.max(1);
        let occ = Occ::new(cfg.occ_max_entries as usize);
        Scheduler {
            cfg,
            limits,
            dests: Vec::new(),
            free_slots: Vec::new(),
            index: HashMap::new(),
            ring: VecDeque::new(),
            active: HashMap::new(),
            deadlines: BinaryHeap::new(),
            waits: BinaryHeap::new(),
            occ,
            outbox: Vec::new(),
            aq_used: 0,
            queued: 0,
            next_id: 1,
            stats: Stats::default(),
        }
    }

    /// The effective options.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Replaces the per-IP limit table (a reloaded `qmgr_conf`); it applies
    /// to connection cache entries created from now on.
    pub fn set_limits(&mut self, limits: LimitTable) {
        self.limits = limits;
    }

    /// Changes the delivery agent capacity (at least 1).
    pub fn set_max_deliveries(&mut self, n: u32) {
        self.cfg.max_deliveries = n.max(1);
    }

    /// Free AQ entries.
    pub fn free_entries(&self) -> usize {
        (self.cfg.aq_max_entries as usize).saturating_sub(self.aq_used)
    }

    /// Queues one recipient for `dest`.
    pub fn enqueue(
        &mut self,
        dest: &DestKey,
        rcpt: RecipientId,
        now: Timestamp,
    ) -> Result<Enqueued, SchedError> {
        self.enqueue_many(dest, &[rcpt], now)
    }

    /// Queues recipients for `dest`, all or none. Recipients of the same
    /// transaction are grouped into deliveries together.
    pub fn enqueue_many(
        &mut self,
        dest: &DestKey,
        rcpts: &[RecipientId],
        now: Timestamp,
    ) -> Result<Enqueued, SchedError> {
        // A down host is reported first: waiting for AQ room would not help.
        if let Some(until) = self.occ.down_until(dest, now) {
            return Ok(Enqueued::HostDown { until });
        }
        let free = self.free_entries();
        if rcpts.len() > free {
            return Err(SchedError::AqFull {
                requested: rcpts.len(),
                free,
                capacity: self.cfg.aq_max_entries as usize,
            });
        }
        if rcpts.is_empty() {
            return Ok(Enqueued::Queued);
        }
        let slot = match self.index.get(dest) {
            Some(s) => *s,
            None => {
                let d = Dest::new(dest.clone());
                let s = match self.free_slots.pop() {
                    Some(s) => {
                        if let Some(e) = self.dests.get_mut(s) {
                            *e = Some(d);
                        }
                        s
                    }
                    None => {
                        self.dests.push(Some(d));
                        self.dests.len() - 1
                    }
                };
                self.index.insert(dest.clone(), s);
                s
            }
        };
        let Some(d) = self.dests.get_mut(slot).and_then(|d| d.as_mut()) else {
            return Ok(Enqueued::Queued);
        };
        let expires = now.plus(self.cfg.scheduler_timeout);
        for r in rcpts {
            if d.push(*r, now) {
                self.waits.push(Reverse((expires, slot, r.transaction())));
            }
        }
        self.aq_used += rcpts.len();
        self.queued += rcpts.len();
        self.maybe_ring(slot, now);
        Ok(Enqueued::Queued)
    }

    /// Timeouts, deferrals and deliveries to start now; see [`Poll`].
    pub fn poll(&mut self, now: Timestamp) -> Poll {
        self.expire_deliveries(now);
        self.expire_waiting(now);
        let mut actions = std::mem::take(&mut self.outbox);
        let mut in_flight = self.active.len();
        let max = self.cfg.max_deliveries as usize;
        while in_flight < max {
            let Some(slot) = self.ring.pop_front() else {
                break;
            };
            let Some(d) = self.dests.get_mut(slot).and_then(|d| d.as_mut()) else {
                continue;
            };
            d.in_ring = false;
            if !self.eligible(slot, now) {
                self.maybe_remove(slot);
                continue;
            }
            // Every turn either starts a delivery (at most `max`) or takes
            // a destination out of the ring, so the loop ends.
            if let Some(delivery) = self.start_one(slot, now) {
                actions.push(Action::Start(delivery));
                in_flight += 1;
                self.maybe_ring(slot, now);
            }
            self.maybe_remove(slot);
        }
        if !actions.is_empty() {
            return Poll::Ready(actions);
        }
        let next_deadline = self.deadlines.peek().map(|Reverse((d, _))| *d);
        let next_wait = if self.queued > 0 {
            self.waits.peek().map(|Reverse((w, _, _))| *w)
        } else {
            None
        };
        match (next_deadline, next_wait) {
            (None, None) if self.queued == 0 => Poll::Idle,
            (Some(a), Some(b)) => Poll::Sleep(a.min(b).since(now)),
            (Some(a), None) | (None, Some(a)) => Poll::Sleep(a.since(now)),
            // Recipients queued but nothing can start, nothing is active
            // and no timeout is pending: only an event can help.
            (None, None) => Poll::Sleep(self.cfg.scheduler_timeout),
        }
    }

    /// Records the result of a delivery and returns it (with its
    /// recipients, for the caller to update IBDB/DEFEDB). A host failure
    /// queues [`Action::Defer`] for the recipients still waiting for the
    /// host; the next [`Scheduler::poll`] returns it, so poll after every
    /// completion.
    pub fn complete(
        &mut self,
        id: DeliveryId,
        result: DeliveryResult,
        now: Timestamp,
    ) -> Result<Delivery, SchedError> {
        let (slot, delivery) = self
            .active
            .remove(&id)
            .ok_or(SchedError::UnknownDelivery(id))?;
        self.finish(slot, &delivery);
        match result {
            DeliveryResult::Success => {
                let e = self.occ_entry(&delivery.dest, now);
                e.window = e.window.saturating_add(1).min(e.max);
                e.failures = 0;
                e.down_until = None;
            }
            DeliveryResult::HostFailure => self.host_failed(slot, now),
        }
        self.maybe_ring(slot, now);
        self.maybe_remove(slot);
        Ok(delivery)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.queued = self.queued;
        s.active_recipients = self.aq_used - self.queued;
        s.active_deliveries = self.active.len();
        s.destinations = self.index.len();
        s.occ_entries = self.occ.map.len();
        s
    }

    /// The cached state of a host, if any.
    pub fn host_state(&self, dest: &DestKey) -> Option<HostState> {
        self.occ.map.get(dest).map(OccEntry::state)
    }

    /// The state of every destination, sorted by key.
    pub fn destinations(&self) -> Vec<DestStatus> {
        let mut v: Vec<DestStatus> = self
            .dests
            .iter()
            .flatten()
            .map(|d| DestStatus {
                dest: d.key.clone(),
                queued: d.queued,
                active: d.active,
                host: self.host_state(&d.key),
            })
            .collect();
        v.sort_by(|a, b| a.dest.cmp(&b.dest));
        v
    }

    // ---- helpers ----

    fn max_rcpts(&self, p: Protocol) -> usize {
        match p {
            Protocol::Smtp => self.cfg.smtp_max_rcpts as usize,
            Protocol::Lmtp => self.cfg.lmtp_max_rcpts as usize,
        }
    }

    fn occ_entry(&mut self, key: &DestKey, now: Timestamp) -> &mut OccEntry {
        let ip = key.ip();
        let cfg = &self.cfg;
        let limits = &self.limits;
        self.occ.entry(key, now, || {
            let max = limits
                .lookup(LimitKind::Ocm, ip)
                .unwrap_or(cfg.max_connections)
                .max(1);
            let initial = limits
                .lookup(LimitKind::Oci, ip)
                .unwrap_or(cfg.initial_connections)
                .clamp(1, max);
            let ttl = limits
                .lookup(LimitKind::Octo, ip)
                .map(|s| Duration::from_secs(u64::from(s)))
                .unwrap_or(cfg.occ_timeout);
            (initial, max, ttl)
        })
    }

    /// Whether `slot` may start a delivery now (ignoring the global
    /// delivery agent limit).
    fn eligible(&mut self, slot: usize, now: Timestamp) -> bool {
        let Some(d) = self.dests.get(slot).and_then(|d| d.as_ref()) else {
            return false;
        };
        if d.queued == 0 {
            return false;
        }
        let active = d.active;
        let key = d.key.clone();
        if self.occ.down_until(&key, now).is_some() {
            return false;
        }
        active < self.occ_entry(&key, now).window
    }

    fn maybe_ring(&mut self, slot: usize, now: Timestamp) {
        let in_ring = match self.dests.get(slot).and_then(|d| d.as_ref()) {
            Some(d) => d.in_ring,
            None => return,
        };
        if !in_ring && self.eligible(slot, now) {
            if let Some(Some(d)) = self.dests.get_mut(slot) {
                d.in_ring = true;
            }
            self.ring.push_back(slot);
        }
    }

    /// Frees a destination that has nothing queued or active and is not
    /// referenced by the ring.
    fn maybe_remove(&mut self, slot: usize) {
        let Some(entry) = self.dests.get_mut(slot) else {
            return;
        };
        if let Some(d) = entry
            .as_ref()
            .filter(|d| d.queued == 0 && d.active == 0 && !d.in_ring)
        {
            self.index.remove(&d.key);
            *entry = None;
            self.free_slots.push(slot);
        }
    }

    fn start_one(&mut self, slot: usize, now: Timestamp) -> Option<Delivery> {
        let max = {
            let d = self.dests.get(slot)?.as_ref()?;
            self.max_rcpts(d.key.protocol)
        };
        let deadline = now.plus(self.cfg.delivery_timeout);
        let id = DeliveryId(self.next_id);
        let d = self.dests.get_mut(slot)?.as_mut()?;
        let (transaction, recipients) = d.take(max)?;
        d.active += 1;
        self.next_id += 1;
        self.queued -= recipients.len();
        let key = d.key.clone();
        let delivery = Delivery {
            id,
            dest: key.clone(),
            transaction,
            recipients,
            started: now,
            deadline,
        };
        self.occ_entry(&key, now);
        self.active.insert(id, (slot, delivery.clone()));
        self.deadlines.push(Reverse((deadline, id)));
        self.stats.started += 1;
        Some(delivery)
    }

    /// Bookkeeping for a delivery that left the active set.
    fn finish(&mut self, slot: usize, delivery: &Delivery) {
        self.aq_used -= delivery.recipients.len();
        if let Some(Some(d)) = self.dests.get_mut(slot) {
            d.active = d.active.saturating_sub(1);
        }
    }

    fn host_failed(&mut self, slot: usize, now: Timestamp) {
        let Some(Some(d)) = self.dests.get_mut(slot) else {
            return;
        };
        let key = d.key.clone();
        let (min, max) = (self.cfg.host_retry_min, self.cfg.host_retry_max);
        let e = self.occ_entry(&key, now);
        e.failures = e.failures.saturating_add(1);
        e.window = (e.window / 2).max(1);
        let until = now.plus(backoff(min, max, e.failures));
        e.down_until = Some(until);
        let Some(Some(d)) = self.dests.get_mut(slot) else {
            return;
        };
        let recipients = d.drain_all();
        if !recipients.is_empty() {
            self.queued -= recipients.len();
            self.aq_used -= recipients.len();
            self.stats.deferred += recipients.len() as u64;
            self.outbox.push(Action::Defer {
                dest: key,
                recipients,
                until,
            });
        }
    }

    fn expire_waiting(&mut self, now: Timestamp) {
        let before = now.minus(self.cfg.scheduler_timeout);
        while let Some(Reverse((when, slot, ta))) = self.waits.peek().copied() {
            if when > now {
                break;
            }
            self.waits.pop();
            let Some(Some(d)) = self.dests.get_mut(slot) else {
                continue;
            };
            // A stale entry (the batch left, or the slot was reused) finds
            // nothing old enough.
            let Some(recipients) = d.expire(ta, before) else {
                continue;
            };
            let dest = d.key.clone();
            self.queued -= recipients.len();
            self.aq_used -= recipients.len();
            self.stats.expired += recipients.len() as u64;
            self.outbox.push(Action::Expired { dest, recipients });
            self.maybe_remove(slot);
        }
        // Live batches never outnumber queued recipients; prune stale
        // entries when they clearly dominate.
        if self.waits.len() > 2 * self.queued + 64 {
            let dests = &self.dests;
            self.waits.retain(|Reverse((_, slot, ta))| {
                dests
                    .get(*slot)
                    .and_then(|d| d.as_ref())
                    .is_some_and(|d| d.waiting.contains_key(ta))
            });
        }
    }

    fn expire_deliveries(&mut self, now: Timestamp) {
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            // Completed deliveries leave stale heap entries; skip them.
            let Some((slot, delivery)) = self.active.remove(&id) else {
                continue;
            };
            self.finish(slot, &delivery);
            self.stats.timed_out += 1;
            self.outbox.push(Action::TimedOut(delivery));
            self.host_failed(slot, now);
            self.maybe_ring(slot, now);
            self.maybe_remove(slot);
        }
        // Keep the heap from growing with stale entries of completed
        // deliveries.
        if self.deadlines.len() > 2 * self.active.len() + 64 {
            let active = &self.active;
            self.deadlines
                .retain(|Reverse((_, id))| active.contains_key(id));
        }
    }
}

/// One destination's queue.
#[derive(Debug)]
struct Dest {
    key: DestKey,
    /// Transactions in the order their first recipient was queued.
    order: VecDeque<TransactionId>,
    /// Waiting recipients per transaction, with the time the first of
    /// them was queued.
    waiting: HashMap<TransactionId, (Timestamp, VecDeque<RecipientId>)>,
    queued: usize,
    active: u32,
    in_ring: bool,
}

impl Dest {
    fn new(key: DestKey) -> Self {
        Dest {
            key,
            order: VecDeque::new(),
            waiting: HashMap::new(),
            queued: 0,
            active: 0,
            in_ring: false,
        }
    }

    /// Queues `r`; true if it started a new transaction batch.
    fn push(&mut self, r: RecipientId, now: Timestamp) -> bool {
        let ta = r.transaction();
        self.queued += 1;
        match self.waiting.get_mut(&ta) {
            Some((_, q)) => {
                q.push_back(r);
                false
            }
            None => {
                self.order.push_back(ta);
                self.waiting.insert(ta, (now, VecDeque::from([r])));
                true
            }
        }
    }

    /// The waiting recipients of `ta` if they have waited since `before`
    /// or earlier.
    fn expire(&mut self, ta: TransactionId, before: Timestamp) -> Option<Vec<RecipientId>> {
        let (since, _) = self.waiting.get(&ta)?;
        if *since > before {
            return None;
        }
        let (_, q) = self.waiting.remove(&ta)?;
        self.order.retain(|t| *t != ta);
        self.queued -= q.len();
        Some(q.into())
    }

    /// Up to `max` recipients of the oldest transaction.
    fn take(&mut self, max: usize) -> Option<(TransactionId, Vec<RecipientId>)> {
        let ta = *self.order.front()?;
        let (_, q) = self.waiting.get_mut(&ta)?;
        let n = q.len().min(max);
        let v: Vec<RecipientId> = q.drain(..n).collect();
        if q.is_empty() {
            self.waiting.remove(&ta);
            self.order.pop_front();
        }
        self.queued -= v.len();
        (!v.is_empty()).then_some((ta, v))
    }

    fn drain_all(&mut self) -> Vec<RecipientId> {
        let mut v = Vec::with_capacity(self.queued);
        for ta in self.order.drain(..) {
            if let Some((_, q)) = self.waiting.remove(&ta) {
                v.extend(q);
            }
        }
        self.queued = 0;
        v
    }
}

#[derive(Debug, Clone)]
struct OccEntry {
    window: u32,
    initial: u32,
    max: u32,
    ttl: Duration,
    failures: u32,
    down_until: Option<Timestamp>,
    last_used: Timestamp,
    stamp: u64,
}

impl OccEntry {
    fn state(&self) -> HostState {
        HostState {
            window: self.window,
            initial: self.initial,
            max: self.max,
            failures: self.failures,
            down_until: self.down_until,
        }
    }

    fn stale(&self, now: Timestamp) -> bool {
        let down = self.down_until.is_some_and(|u| u > now);
        !down && now.since(self.last_used) > self.ttl
    }
}

/// The outgoing connection cache: bounded, least recently used evicted.
#[derive(Debug)]
struct Occ {
    map: HashMap<DestKey, OccEntry>,
    lru: BTreeMap<u64, DestKey>,
    next_stamp: u64,
    cap: usize,
}

impl Occ {
    fn new(cap: usize) -> Self {
        Occ {
            map: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            cap,
        }
    }

    fn down_until(&self, key: &DestKey, now: Timestamp) -> Option<Timestamp> {
        self.map
            .get(key)
            .and_then(|e| e.down_until)
            .filter(|u| *u > now)
    }

    /// The entry for `key`, created from `make() = (initial, max, ttl)` if
    /// missing or stale; marks it most recently used.
    fn entry(
        &mut self,
        key: &DestKey,
        now: Timestamp,
        make: impl FnOnce() -> (u32, u32, Duration),
    ) -> &mut OccEntry {
        self.next_stamp += 1;
        let stamp = self.next_stamp;
        let fresh = |(initial, max, ttl): (u32, u32, Duration)| OccEntry {
            window: initial,
            initial,
            max,
            ttl,
            failures: 0,
            down_until: None,
            last_used: now,
            stamp,
        };
        let exists = match self.map.get(key) {
            Some(e) if e.stale(now) => {
                self.lru.remove(&e.stamp);
                self.map.remove(key);
                false
            }
            Some(_) => true,
            None => false,
        };
        if !exists {
            while self.map.len() >= self.cap {
                let Some((_, victim)) = self.lru.pop_first() else {
                    break;
                };
                self.map.remove(&victim);
            }
            self.lru.insert(stamp, key.clone());
            return self.map.entry(key.clone()).or_insert_with(|| fresh(make()));
        }
        let lru = &mut self.lru;
        let e = self.map.entry(key.clone()).or_insert_with(|| fresh(make()));
        if let Some(k) = lru.remove(&e.stamp) {
            lru.insert(stamp, k);
        }
        e.stamp = stamp;
        e.last_used = now;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn ta(n: u64) -> TransactionId {
        TransactionId::new(n, 0)
    }

    fn rc(t: u64, i: u32) -> RecipientId {
        RecipientId::new(ta(t), i).unwrap()
    }

    fn smtp(h: &str) -> DestKey {
        DestKey::new(Protocol::Smtp, h)
    }

    fn cfg() -> SchedulerConfig {
        SchedulerConfig {
            smtp_max_rcpts: 3,
            lmtp_max_rcpts: 2,
            initial_connections: 2,
            max_connections: 4,
            aq_max_entries: 100_000,
            occ_max_entries: 100,
            occ_timeout: Duration::from_secs(3600),
            delivery_timeout: Duration::from_secs(600),
            scheduler_timeout: Duration::from_secs(7200),
            max_deliveries: 100,
            host_retry_min: Duration::from_secs(60),
            host_retry_max: Duration::from_secs(3600),
        }
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(1_000_000 + s)
    }

    fn starts(p: Poll) -> Vec<Delivery> {
        match p {
            Poll::Ready(a) => a
                .into_iter()
                .filter_map(|a| match a {
                    Action::Start(d) => Some(d),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn dest_key_normalises_and_parses_ip() {
        assert_eq!(smtp("MX.Example.COM."), smtp("mx.example.com"));
        assert_eq!(smtp("mx.example.com").ip(), None);
        assert_eq!(smtp("[10.1.2.3]").ip(), "10.1.2.3".parse().ok());
        assert_eq!(smtp("[IPv6:2001:db8::1]").ip(), "2001:db8::1".parse().ok());
        assert_eq!(smtp("10.1.2.3").to_string(), "smtp:10.1.2.3");
    }

    #[test]
    fn groups_by_transaction_and_limit() {
        let mut s = Scheduler::new(cfg(), LimitTable::new());
        let d = smtp("a.example");
        // Transaction 1: 5 recipients, transaction 2: 1, interleaved.
        for i in 0..3 {
            s.enqueue(&d, rc(1, i), t(0)).unwrap();
        }
        s.enqueue(&d, rc(2, 0), t(0)).unwrap();
        for i in 3..5 {
            s.enqueue(&d, rc(1, i), t(0)).unwrap();
        }
        // Window 2: two deliveries, both of transaction 1 (3 + 2).
        let got = starts(s.poll(t(0)));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].transaction, ta(1));
        assert_eq!(got[0].recipients, vec![rc(1, 0), rc(1, 1), rc(1, 2)]);
        assert_eq!(got[1].recipients, vec![rc(1, 3), rc(1, 4)]);
        s.complete(got[0].id, DeliveryResult::Success, t(1))
            .unwrap();
        let got2 = starts(s.poll(t(1)));
        assert_eq!(got2.len(), 1);
        assert_eq!(got2[0].transaction, ta(2));
        assert_eq!(got2[0].recipients, vec![rc(2, 0)]);
        // LMTP uses its own limit.
        let l = DestKey::new(Protocol::Lmtp, "local");
        s.enqueue_many(&l, &[rc(3, 0), rc(3, 1), rc(3, 2)], t(1))
            .unwrap();
        let got3 = starts(s.poll(t(1)));
        assert_eq!(
            got3.iter().map(|d| d.recipients.len()).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }

    #[test]
    fn slow_start_grows_and_shrinks() {
        let mut s = Scheduler::new(cfg(), LimitTable::new());
        let d = smtp("b.example");
        for i in 0..30 {
            s.enqueue(&d, rc(i, 0), t(0)).unwrap();
        }
        let first = starts(s.poll(t(0)));
        assert_eq!(first.len(), 2, "initial window oci=2");
        assert_eq!(s.poll(t(0)), Poll::Sleep(Duration::from_secs(600)));
        s.complete(first[0].id, DeliveryResult::Success, t(1))
            .unwrap();
        assert_eq!(s.host_state(&d).unwrap().window, 3);
        // One active + window 3: two more start.
        let more = starts(s.poll(t(1)));
        assert_eq!(more.len(), 2);
        let mut active: Vec<_> = vec![first[1].id, more[0].id, more[1].id];
        // Successes grow the window up to ocm=4 and no further.
        for _ in 0..5 {
            let id = active.remove(0);
            s.complete(id, DeliveryResult::Success, t(2)).unwrap();
            active.extend(starts(s.poll(t(2))).iter().map(|d| d.id));
            assert!(active.len() as u32 <= s.host_state(&d).unwrap().window);
        }
        assert_eq!(s.host_state(&d).unwrap().window, 4);
        assert_eq!(active.len(), 4);
        // A host failure halves the window, marks the host down and
        // defers everything still queued.
        let queued_before = s.stats().queued;
        s.complete(active.remove(0), DeliveryResult::HostFailure, t(3))
            .unwrap();
        let st = s.host_state(&d).unwrap();
        assert_eq!(st.window, 2);
        assert_eq!(st.failures, 1);
        assert_eq!(st.down_until, Some(t(3 + 60)));
        match s.poll(t(3)) {
            Poll::Ready(a) => {
                assert_eq!(a.len(), 1);
                match &a[0] {
                    Action::Defer {
                        dest,
                        recipients,
                        until,
                    } => {
                        assert_eq!(dest, &d);
                        assert_eq!(recipients.len(), queued_before);
                        assert_eq!(*until, t(63));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.stats().queued, 0);
        // While down, new recipients are refused.
        assert_eq!(
            s.enqueue(&d, rc(99, 0), t(10)),
            Ok(Enqueued::HostDown { until: t(63) })
        );
        // A second failure doubles the back-off.
        s.complete(active.remove(0), DeliveryResult::HostFailure, t(20))
            .unwrap();
        assert_eq!(s.host_state(&d).unwrap().down_until, Some(t(20 + 120)));
        assert_eq!(s.host_state(&d).unwrap().window, 1);
        // After the back-off the host takes recipients again, window 1.
        for id in active.drain(..) {
            s.complete(id, DeliveryResult::Success, t(21)).unwrap();
        }
        // Success while down clears the failure state.
        assert_eq!(s.host_state(&d).unwrap().down_until, None);
        assert_eq!(s.enqueue(&d, rc(100, 0), t(200)), Ok(Enqueued::Queued));
    }

    #[test]
    fn per_ip_limits_from_table() {
        let limits =
            LimitTable::parse("oci:10.0.0.1 1\nocm:10.0.0.1 2\nocm:10 7\noci: 5\nocm: 6\n")
                .unwrap();
        let mut s = Scheduler::new(cfg(), limits);
        let a = smtp("[10.0.0.1]");
        let b = smtp("10.9.9.9");
        let c = smtp("mx.example");
        for i in 0..20 {
            s.enqueue(&a, rc(i, 0), t(0)).unwrap();
            s.enqueue(&b, rc(100 + i, 0), t(0)).unwrap();
            s.enqueue(&c, rc(200 + i, 0), t(0)).unwrap();
        }
        let got = starts(s.poll(t(0)));
        let count = |k: &DestKey| got.iter().filter(|d| &d.dest == k).count();
        assert_eq!(count(&a), 1);
        assert_eq!(count(&b), 5);
        assert_eq!(count(&c), 5);
        assert_eq!(s.host_state(&a).unwrap().max, 2);
        assert_eq!(s.host_state(&b).unwrap().max, 7);
        assert_eq!(s.host_state(&c).unwrap().max, 6);
    }

    #[test]
    fn delivery_timeout_fails_temporarily() {
        let mut s = Scheduler::new(cfg(), LimitTable::new());
        let d = smtp("c.example");
        s.enqueue_many(&d, &[rc(1, 0), rc(2, 0), rc(3, 0)], t(0))
            .unwrap();
        let got = starts(s.poll(t(0)));
        assert_eq!(got.len(), 2);
        // Just before the deadline nothing happens.
        assert_eq!(s.poll(t(599)), Poll::Sleep(Duration::from_secs(1)));
        let Poll::Ready(actions) = s.poll(t(600)) else {
            panic!("expected actions")
        };
        let timed_out: Vec<_> = actions
            .iter()
            .filter(|a| matches!(a, Action::TimedOut(_)))
            .collect();
        assert_eq!(timed_out.len(), 2);
        assert!(actions.iter().any(
            |a| matches!(a, Action::Defer { recipients, .. } if recipients == &vec![rc(3, 0)])
        ));
        // Late reports are refused.
        assert_eq!(
            s.complete(got[0].id, DeliveryResult::Success, t(601)),
            Err(SchedError::UnknownDelivery(got[0].id))
        );
        assert_eq!(s.stats().timed_out, 2);
        assert_eq!(s.stats().active_deliveries, 0);
        assert_eq!(s.free_entries(), 100_000);
        assert_eq!(s.poll(t(601)), Poll::Idle);
    }

    #[test]
    fn scheduler_timeout_expires_waiting_recipients() {
        let mut c = cfg();
        c.initial_connections = 1;
        c.max_connections = 1;
        c.delivery_timeout = Duration::from_secs(100_000);
        let mut s = Scheduler::new(c, LimitTable::new());
        let d = smtp("e.example");
        s.enqueue_many(&d, &[rc(1, 0), rc(2, 0)], t(0)).unwrap();
        s.enqueue(&d, rc(3, 0), t(5000)).unwrap();
        let first = starts(s.poll(t(0)));
        assert_eq!(first.len(), 1);
        assert_eq!(s.poll(t(7199)), Poll::Sleep(Duration::from_secs(1)));
        let Poll::Ready(a) = s.poll(t(7200)) else {
            panic!("expected actions")
        };
        assert_eq!(
            a,
            vec![Action::Expired {
                dest: d.clone(),
                recipients: vec![rc(2, 0)]
            }]
        );
        assert_eq!(s.stats().expired, 1);
        assert_eq!(s.stats().queued, 1);
        // The active delivery is untouched; the younger one waits on.
        s.complete(first[0].id, DeliveryResult::Success, t(7300))
            .unwrap();
        assert_eq!(starts(s.poll(t(7300)))[0].recipients, vec![rc(3, 0)]);
    }

    #[test]
    fn aq_bound_all_or_nothing() {
        let mut c = cfg();
        c.aq_max_entries = 5;
        let mut s = Scheduler::new(c, LimitTable::new());
        let d = smtp("d.example");
        s.enqueue_many(&d, &[rc(1, 0), rc(1, 1), rc(1, 2)], t(0))
            .unwrap();
        assert_eq!(
            s.enqueue_many(&d, &[rc(2, 0), rc(2, 1), rc(2, 2)], t(0)),
            Err(SchedError::AqFull {
                requested: 3,
                free: 2,
                capacity: 5
            })
        );
        assert_eq!(s.stats().queued, 3);
        // Active recipients still count until completed.
        let got = starts(s.poll(t(0)));
        assert_eq!(s.free_entries(), 2);
        s.complete(got[0].id, DeliveryResult::Success, t(1))
            .unwrap();
        assert_eq!(s.free_entries(), 5);
    }

    #[test]
    fn occ_is_bounded_lru_and_expires() {
        let mut c = cfg();
        c.occ_max_entries = 3;
        let mut s = Scheduler::new(c, LimitTable::new());
        for (i, h) in ["h1", "h2", "h3", "h4"].iter().enumerate() {
            s.enqueue(&smtp(h), rc(i as u64, 0), t(i as u64)).unwrap();
            for d in starts(s.poll(t(i as u64))) {
                s.complete(d.id, DeliveryResult::Success, t(i as u64))
                    .unwrap();
            }
        }
        assert_eq!(s.stats().occ_entries, 3);
        assert!(
            s.host_state(&smtp("h1")).is_none(),
            "least recently used evicted"
        );
        assert_eq!(s.host_state(&smtp("h4")).unwrap().window, 3);
        // A failing host is remembered past octo while down, a healthy one
        // is forgotten after octo.
        s.enqueue(&smtp("h4"), rc(10, 0), t(10)).unwrap();
        let d = starts(s.poll(t(10)));
        s.complete(d[0].id, DeliveryResult::HostFailure, t(10))
            .unwrap();
        assert_eq!(s.host_state(&smtp("h3")).unwrap().window, 3);
        s.enqueue(&smtp("h3"), rc(11, 0), t(5000)).unwrap();
        let d = starts(s.poll(t(5000)));
        assert_eq!(
            s.host_state(&smtp("h3")).unwrap().window,
            2,
            "stale entry restarted"
        );
        s.complete(d[0].id, DeliveryResult::Success, t(5000))
            .unwrap();
        assert_eq!(
            s.host_state(&smtp("h4")).unwrap().failures,
            1,
            "down host kept"
        );
    }

    /// The fairness property of the issue: a destination with 10,000
    /// queued recipients that answers slowly delays a fast destination's
    /// single message by less than one delivery round of the slow one.
    #[test]
    fn slow_huge_destination_does_not_starve_fast_one() {
        let mut c = cfg();
        c.smtp_max_rcpts = 100;
        c.initial_connections = 10;
        c.max_connections = 100;
        c.max_deliveries = 20;
        c.delivery_timeout = Duration::from_secs(3600);
        let mut s = Scheduler::new(c, LimitTable::new());
        let slow = smtp("slow.example");
        let fast = smtp("fast.example");
        let slow_round = Duration::from_secs(30);
        let fast_round = Duration::from_millis(50);
        for i in 0..10_000u32 {
            s.enqueue(&slow, rc(u64::from(i / 100), i % 100), t(0))
                .unwrap();
        }
        // Simulated delivery agents: (finish time, delivery id).
        let mut running: Vec<(Timestamp, DeliveryId, DestKey)> = Vec::new();
        let mut now = t(0);
        let fast_queued_at = t(45);
        let mut fast_enqueued = false;
        let mut fast_done: Option<Timestamp> = None;
        for _ in 0..100_000 {
            if !fast_enqueued && now >= fast_queued_at {
                s.enqueue(&fast, rc(1_000_000, 0), now).unwrap();
                fast_enqueued = true;
            }
            if let Poll::Ready(actions) = s.poll(now) {
                for a in actions {
                    if let Action::Start(d) = a {
                        let took = if d.dest == fast {
                            fast_round
                        } else {
                            slow_round
                        };
                        running.push((now.plus(took), d.id, d.dest.clone()));
                    }
                }
            }
            // Advance the clock to the next event.
            running.sort();
            let next_finish = running.first().map(|r| r.0);
            let next = match (next_finish, fast_enqueued) {
                (Some(f), false) => f.min(fast_queued_at),
                (Some(f), true) => f,
                (None, false) => fast_queued_at,
                (None, true) => break,
            };
            now = next;
            while running.first().is_some_and(|r| r.0 <= now) {
                let (_, id, dest) = running.remove(0);
                s.complete(id, DeliveryResult::Success, now).unwrap();
                if dest == fast {
                    fast_done = Some(now);
                }
            }
            if fast_done.is_some() {
                break;
            }
        }
        let done = fast_done.expect("fast message delivered");
        let delay = done.since(fast_queued_at);
        assert!(
            s.stats().queued > 5_000,
            "slow queue still large: {}",
            s.stats().queued
        );
        assert!(
            delay < slow_round,
            "fast message waited {delay:?}, a slow round is {slow_round:?}"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue { host: u8, n: u8 },
        Poll,
        Complete { pick: usize, ok: bool },
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 1u8..8).prop_map(|(host, n)| Op::Enqueue { host, n }),
            Just(Op::Poll),
            (any::<usize>(), proptest::bool::weighted(0.8))
                .prop_map(|(pick, ok)| Op::Complete { pick, ok }),
            (0u16..2000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Every recipient taken leaves exactly once (completed, timed out
        /// or deferred), limits are never exceeded.
        #[test]
        fn conservation_and_limits(ops in proptest::collection::vec(op(), 1..200)) {
            let mut c = cfg();
            c.aq_max_entries = 40;
            c.max_deliveries = 5;
            c.occ_max_entries = 4;
            let mut s = Scheduler::new(c, LimitTable::new());
            let mut now = t(0);
            let mut next_ta = 1u64;
            let mut inside: HashSet<RecipientId> = HashSet::new();
            let mut active: Vec<Delivery> = Vec::new();
            let apply = |actions: Vec<Action>, inside: &mut HashSet<RecipientId>, active: &mut Vec<Delivery>| -> Result<(), TestCaseError> {
                for a in actions {
                    match a {
                        Action::Start(d) => {
                            prop_assert!(!d.recipients.is_empty() && d.recipients.len() <= 3);
                            prop_assert!(d.recipients.iter().all(|r| r.transaction() == d.transaction));
                            active.push(d);
                        }
                        Action::TimedOut(d) => {
                            let pos = active.iter().position(|x| x.id == d.id);
                            prop_assert!(pos.is_some());
                            if let Some(p) = pos { active.remove(p); }
                            for r in d.recipients { prop_assert!(inside.remove(&r)); }
                        }
                        Action::Defer { recipients, .. } | Action::Expired { recipients, .. } => {
                            for r in recipients { prop_assert!(inside.remove(&r)); }
                        }
                    }
                }
                Ok(())
            };
            for o in ops {
                match o {
                    Op::Enqueue { host, n } => {
                        let d = smtp(&format!("h{host}"));
                        let rs: Vec<_> = (0..u32::from(n)).map(|i| rc(next_ta, i)).collect();
                        next_ta += 1;
                        match s.enqueue_many(&d, &rs, now) {
                            Ok(Enqueued::Queued) => inside.extend(rs),
                            Ok(Enqueued::HostDown { until }) => prop_assert!(until > now),
                            Err(SchedError::AqFull { .. }) => prop_assert!(inside.len() + rs.len() > 40),
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                    Op::Poll => {
                        if let Poll::Ready(a) = s.poll(now) { apply(a, &mut inside, &mut active)?; }
                    }
                    Op::Complete { pick, ok } => {
                        if !active.is_empty() {
                            let d = active.remove(pick % active.len());
                            let r = if ok { DeliveryResult::Success } else { DeliveryResult::HostFailure };
                            let back = s.complete(d.id, r, now).unwrap();
                            for r in back.recipients { prop_assert!(inside.remove(&r)); }
                            // A host failure's deferrals come with the next poll.
                            if let Poll::Ready(a) = s.poll(now) { apply(a, &mut inside, &mut active)?; }
                        }
                    }
                    Op::Advance(secs) => now = now.plus(Duration::from_secs(u64::from(secs))),
                }
                let st = s.stats();
                prop_assert_eq!(st.queued + st.active_recipients, inside.len());
                prop_assert!(inside.len() <= 40);
                prop_assert!(st.active_deliveries <= 5);
                prop_assert_eq!(st.active_deliveries, active.len());
                prop_assert!(st.occ_entries <= 4);
                for ds in s.destinations() {
                    if let Some(h) = ds.host {
                        prop_assert!(h.window >= 1 && h.window <= h.max);
                    }
                    prop_assert!(ds.active <= 4);
                }
            }
            // Drain: complete everything, everything leaves.
            for _ in 0..1000 {
                for d in std::mem::take(&mut active) {
                    let back = s.complete(d.id, DeliveryResult::Success, now).unwrap();
                    for r in back.recipients { prop_assert!(inside.remove(&r)); }
                }
                match s.poll(now) {
                    Poll::Ready(a) => apply(a, &mut inside, &mut active)?,
                    Poll::Idle => break,
                    Poll::Sleep(_) => now = now.plus(Duration::from_secs(700)),
                }
            }
            prop_assert!(inside.is_empty());
            prop_assert_eq!(s.stats().destinations, 0);
        }
    }
}
