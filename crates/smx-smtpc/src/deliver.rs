//! Delivering one [`Delivery`]: checking the envelope, walking the
//! destination's targets in order, and keeping idle sessions for reuse.
//!
//! # Rules
//!
//! - The sender and every recipient must be paths without control
//!   characters or angle brackets and their stored parameters must parse
//!   (smx-proto); a bad sender or MAIL parameter fails every recipient
//!   permanently (501 5.5.4 / 501 5.1.7), a bad recipient just that one
//!   (501 5.1.3). An address that is not ASCII needs SMTPUTF8.
//! - Targets are tried in the order given. `connect_only_to` replaces
//!   every target's address (the port stays); targets without a port use
//!   `remote_port`. A target is left for the next one when the session
//!   cannot be opened or the transaction failed as a whole before anything
//!   was delivered (see [`crate::session`]); the last failure is what the
//!   recipients get.
//! - With `reuse_connection` a session that ended its transaction cleanly
//!   goes to an idle cache (keyed by endpoint), at most
//!   `max_idle_sessions` sessions over all endpoints (the oldest is closed
//!   to make room), each for at most `idle_timeout` and
//!   `max_transactions_per_session` transactions. A cached session that
//!   turns out dead before its first reply is replaced by a new connection
//!   to the same target, once. Without reuse every session ends with QUIT
//!   after its transaction.
//! - The TLS requirements of a delivery are the configuration's merged
//!   with the delivery's own ([`crate::tls::TlsRequirements::merged`]).
//!   An idle session is taken from the cache only if its TLS state meets
//!   them and, when anything is required, it was opened for the same
//!   target label (the certificate was verified against that host name).
//!   A session that does not meet them fails the recipients as
//!   `requirements_violation` says: `tempfail` goes on with the next
//!   target, `permfail` and `abort` stop there.
//! - At most `max_concurrent` deliveries run at once; more wait.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use smx_ipc::qmgr_smtpc::{
    Delivery, DeliveryResult, Destination, FullReply, Protocol, RecipientResult, RecipientStatus,
    RequirementsViolation,
};
use smx_ipc::types::EnhancedCode as IpcEnhanced;
use smx_proto::{MailParams, RcptParams, Reply};
use smx_store::cdb::Cdb;
use tokio::sync::Semaphore;

use crate::config::ClientConfig;
use crate::session::{Endpoint, Session, Tx, TxRcpt, Verdict, local_reply, needs_utf8, safe_path};
use crate::tls::TlsRequirements;

/// The delivery engine: configuration, content store and idle sessions.
#[derive(Debug)]
pub struct Deliverer {
    cfg: Arc<ClientConfig>,
    cdb: Cdb,
    idle: Mutex<VecDeque<Session>>,
    limit: Semaphore,
}

impl Deliverer {
    /// An engine reading content from `cdb`.
    pub fn new(cfg: ClientConfig, cdb: Cdb) -> Self {
        let permits = cfg.max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Deliverer {
            cfg: Arc::new(cfg),
            cdb,
            idle: Mutex::new(VecDeque::new()),
            limit: Semaphore::new(permits),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// How many sessions are idle in the cache.
    pub fn idle_sessions(&self) -> usize {
        self.lock().len()
    }

    /// Closes idle sessions older than `idle_timeout`.
    pub fn tidy(&self) {
        let expired: Vec<Session> = {
            let mut idle = self.lock();
            let (keep, old): (VecDeque<Session>, VecDeque<Session>) = idle
                .drain(..)
                .partition(|s| s.idle_since.elapsed() < self.cfg.idle_timeout);
            *idle = keep;
            old.into_iter().collect()
        };
        self.close_later(expired);
    }

    /// Closes every idle session (QUIT) and waits for them.
    pub async fn close_idle(&self) {
        let all: Vec<Session> = self.lock().drain(..).collect();
        for s in all {
            s.quit(&self.cfg, false).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Session>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_later(&self, sessions: Vec<Session>) {
        for s in sessions {
            let cfg = Arc::clone(&self.cfg);
            tokio::spawn(async move { s.quit(&cfg, false).await });
        }
    }

    fn take_idle(&self, ep: &Endpoint, label: &str, req: &TlsRequirements) -> Option<Session> {
        self.tidy();
        let mut idle = self.lock();
        let pos = idle.iter().rposition(|s| {
            &s.endpoint == ep && req.met_by(s.tls.as_ref()) && (!req.any() || s.host == label)
        })?;
        idle.remove(pos)
    }

    fn put_idle(&self, mut s: Session) {
        s.idle_since = std::time::Instant::now();
        let evicted = {
            let mut idle = self.lock();
            let mut evicted = Vec::new();
            while idle.len() >= self.cfg.max_idle_sessions.max(1) {
                match idle.pop_front() {
                    Some(old) => evicted.push(old),
                    None => break,
                }
            }
            if self.cfg.max_idle_sessions > 0 {
                idle.push_back(s);
            } else {
                evicted.push(s);
            }
            evicted
        };
        self.close_later(evicted);
    }

    /// Delivers `d` and returns one result per recipient, in request order.
    pub async fn deliver(&self, d: &Delivery) -> DeliveryResult {
        let _permit = self.limit.acquire().await.ok();
        let mut verdicts: Vec<Option<Verdict>> = vec![None; d.recipients.len()];
        let tx = match self.prepare(d, &mut verdicts) {
            Ok(tx) => tx,
            Err(reply) => {
                for v in verdicts.iter_mut() {
                    *v = Some(made_up(&reply));
                }
                return finish(d, verdicts);
            }
        };
        if !tx.rcpts.is_empty() {
            let req = match &d.tls_requirements {
                Some(r) => self.cfg.tls_requirements.merged(&TlsRequirements::from(r)),
                None => self.cfg.tls_requirements.clone(),
            };
            self.run(&tx, &d.destination, &req, &mut verdicts).await;
        }
        finish(d, verdicts)
    }

    fn prepare(&self, d: &Delivery, verdicts: &mut [Option<Verdict>]) -> Result<Tx, Reply> {
        if !safe_path(&d.sender) {
            return Err(local_reply(
                501,
                1,
                7,
                "invalid sender address in the queue",
            ));
        }
        let mail = MailParams::parse(d.params.split_ascii_whitespace(), true)
            .map_err(|e| local_reply(501, 5, 4, format!("invalid stored MAIL parameters: {e}")))?;
        let mut utf8 = mail.smtputf8 || needs_utf8(&d.sender);
        let mut rcpts = Vec::with_capacity(d.recipients.len());
        for (slot, r) in d.recipients.iter().enumerate() {
            if !safe_path(&r.address) || r.address.is_empty() {
                verdicts[slot] = Some(made_up(&local_reply(
                    501,
                    1,
                    3,
                    "invalid recipient address in the queue",
                )));
                continue;
            }
            match RcptParams::parse(r.params.split_ascii_whitespace(), true) {
                Ok(params) => {
                    utf8 |= needs_utf8(&r.address);
                    rcpts.push(TxRcpt {
                        slot,
                        address: r.address.clone(),
                        params,
                    });
                }
                Err(e) => {
                    verdicts[slot] = Some(made_up(&local_reply(
                        501,
                        5,
                        4,
                        format!("invalid stored RCPT parameters: {e}"),
                    )));
                }
            }
        }
        Ok(Tx {
            da_ta: d.da_ta,
            ss_ta: smx_store::id::TransactionId::new(d.content.counter, d.content.process),
            size: d.size,
            sender: d.sender.clone(),
            mail,
            rcpts,
            utf8,
        })
    }

    /// Where to connect, in order: each endpoint with its label and the
    /// TLS requirements of sessions with it (the target's own, from qmgr's
    /// `smtpc_session_conf:`).
    fn endpoints(&self, dest: &Destination) -> Vec<(Endpoint, String, Option<TlsRequirements>)> {
        match dest {
            Destination::Hosts { protocol, targets } => targets
                .iter()
                .map(|t| {
                    let ip = self.cfg.connect_only_to.unwrap_or(t.addr);
                    let port = t.port.unwrap_or(self.cfg.remote_port);
                    let addr = SocketAddr::new(ip, port);
                    let label = if t.name.is_empty() {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{}[{ip}]:{port}", t.name)
                    };
                    (
                        Endpoint::Tcp {
                            addr,
                            lmtp: *protocol == Protocol::Lmtp,
                        },
                        label,
                        t.tls_requirements.as_ref().map(TlsRequirements::from),
                    )
                })
                .collect(),
            Destination::LmtpSocket { path } => {
                let p = match path {
                    Some(p) => PathBuf::from(p),
                    None => self.cfg.lmtp_socket.clone(),
                };
                let label = p.display().to_string();
                vec![(Endpoint::Unix(p), label, None)]
            }
        }
    }

    async fn run(
        &self,
        tx: &Tx,
        dest: &Destination,
        req: &TlsRequirements,
        verdicts: &mut [Option<Verdict>],
    ) {
        let endpoints = self.endpoints(dest);
        if endpoints.is_empty() {
            let reply = local_reply(451, 4, 3, "no target to deliver to");
            for r in &tx.rcpts {
                verdicts[r.slot] = Some(made_up(&reply));
            }
            return;
        }
        let cfg = &*self.cfg;
        for (ep, label, own) in endpoints {
            let merged;
            let req = match &own {
                Some(own) => {
                    merged = req.merged(own);
                    &merged
                }
                None => req,
            };
            let mut force_fresh = false;
            let outcome = loop {
                let (mut session, cached) = match self.cfg.reuse_connection && !force_fresh {
                    true => match self.take_idle(&ep, &label, req) {
                        Some(s) => (s, true),
                        None => match Session::open(ep.clone(), label.clone(), cfg, req).await {
                            Ok(s) => (s, false),
                            Err(f) => break Err(f),
                        },
                    },
                    false => match Session::open(ep.clone(), label.clone(), cfg, req).await {
                        Ok(s) => (s, false),
                        Err(f) => break Err(f),
                    },
                };
                let last = !cfg.reuse_connection
                    || session.transactions.saturating_add(1) >= cfg.max_transactions_per_session;
                let out = session.transaction(tx, &self.cdb, cfg, cached, last).await;
                if out.stale {
                    // Only a cached session can be stale; the next try is
                    // a new connection, which cannot be.
                    force_fresh = true;
                    continue;
                }
                if session.is_closing() {
                    drop(session);
                } else if out.reusable && !last && cfg.reuse_connection {
                    self.put_idle(session);
                } else if out.quit_sent {
                    let cfg = Arc::clone(&self.cfg);
                    tokio::spawn(async move { session.quit(&cfg, true).await });
                } else if out.reusable {
                    let cfg = Arc::clone(&self.cfg);
                    tokio::spawn(async move { session.quit(&cfg, false).await });
                }
                break Ok(out);
            };
            match outcome {
                Err(f) => {
                    let stop = matches!(
                        f.tls_violation,
                        Some(RequirementsViolation::PermFail | RequirementsViolation::Abort)
                    );
                    for r in &tx.rcpts {
                        verdicts[r.slot] = Some(if f.tls_violation.is_some() {
                            Verdict {
                                host: Some(label.clone()),
                                ..made_up(&f.reply)
                            }
                        } else if f.from_peer {
                            // A peer that will not talk (even with 5xx)
                            // is a reason to try later (RFC 5321 3.1:
                            // 554 at connect means "try another host").
                            Verdict {
                                status: RecipientStatus::TempFail,
                                reply: f.reply.clone(),
                                host: Some(label.clone()),
                                relayed: false,
                            }
                        } else {
                            made_up(&f.reply)
                        });
                    }
                    if stop {
                        return;
                    }
                }
                Ok(out) => {
                    let next = out.next_target;
                    for (slot, v) in out.verdicts {
                        if let Some(x) = verdicts.get_mut(slot) {
                            *x = Some(v);
                        }
                    }
                    if !next {
                        return;
                    }
                }
            }
        }
    }
}

fn status_of(r: &Reply) -> RecipientStatus {
    match r.code / 100 {
        2 => RecipientStatus::Delivered,
        5 => RecipientStatus::PermFail,
        _ => RecipientStatus::TempFail,
    }
}

fn made_up(reply: &Reply) -> Verdict {
    Verdict {
        status: match status_of(reply) {
            RecipientStatus::Delivered => RecipientStatus::TempFail,
            s => s,
        },
        reply: reply.clone(),
        host: None,
        relayed: false,
    }
}

/// The wire form of a reply for qmgr.
pub fn full_reply(r: &Reply) -> FullReply {
    FullReply {
        code: r.code,
        enhanced: r.enhanced.map(|e| IpcEnhanced {
            class: e.class(),
            subject: e.subject(),
            detail: e.detail(),
        }),
        lines: r.lines.clone(),
    }
}

fn finish(d: &Delivery, verdicts: Vec<Option<Verdict>>) -> DeliveryResult {
    let recipients = d
        .recipients
        .iter()
        .zip(verdicts)
        .map(|(r, v)| {
            let v = v.unwrap_or_else(|| made_up(&local_reply(451, 3, 0, "no result")));
            RecipientResult {
                index: r.index,
                status: v.status,
                reply: full_reply(&v.reply),
                host: v.host,
                relayed: v.relayed,
            }
        })
        .collect();
    DeliveryResult {
        da_ta: d.da_ta,
        recipients,
    }
}
