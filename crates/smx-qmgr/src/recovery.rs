//! The recovery planner: what qmgr must schedule and write after a
//! restart, from the IBDB replay (`smx_store::ibdb::Recovery`) and the
//! DEFEDB contents. It decides; the process carries out the plan (routes
//! and schedules recipients, writes IBDB records).
//!
//! # Rules
//!
//! 1. A recipient that IBDB lists as open and that is **also in DEFEDB**
//!    counts as moved to DEFEDB: the crash came between the durable DEFEDB
//!    `put` and the IBDB outcome record. It is not scheduled from IBDB (it
//!    will be tried from DEFEDB); the plan lists it in
//!    [`RecoveryPlan::moved`] so qmgr logs the missing `Deferred` outcome.
//! 2. Every other open IBDB recipient was accepted and never finished: it
//!    is scheduled again ([`RecoveryPlan::schedule`], grouped by
//!    transaction in log order). A delivery that was in flight when qmgr,
//!    smtpc or smar stopped is thereby retried, never lost (it may be
//!    delivered twice, the usual at-least-once guarantee of SMTP).
//! 3. An open IBDB transaction left with no recipient to schedule (all
//!    have outcomes or were moved) is listed in [`RecoveryPlan::close`],
//!    so qmgr logs its `Closed` record and IBDB cleanup can drop the file.
//! 4. DEFEDB entries stay where they are; the plan counts them, counts
//!    those due at `now`, notes the earliest `next_try`, and lists entries
//!    whose failure DSN is pending (flag `FAILURE_PENDING` without
//!    `FAILURE_SENT`) so the bounce is generated before anything else.
//! 5. [`RecoveryPlan::content_in_use`] names every transaction whose
//!    content (CDB file) is still needed: those with a recipient to
//!    schedule or in DEFEDB. A CDB file of any other transaction is
//!    orphaned.
//!
//! DEFEDB entries are fed one at a time ([`Planner::add_deferred`], e.g.
//! from `Defedb::for_each`), so the planner holds only ids, not the
//! database.

use crate::time::Timestamp;
use smx_store::defedb::{DeferredRecipient, dsn};
use smx_store::envelope::{Recipient, Transaction};
use smx_store::ibdb::Recovery;
use smx_store::id::{RecipientId, TransactionId};
use std::collections::{BTreeSet, HashSet};

/// An IBDB transaction with recipients to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToSchedule {
    /// The transaction.
    pub transaction: Transaction,
    /// Its recipients to route and schedule, by index.
    pub recipients: Vec<Recipient>,
}

/// What to do after a restart; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryPlan {
    /// Rule 2: schedule these now.
    pub schedule: Vec<ToSchedule>,
    /// Rule 1: open in IBDB but already in DEFEDB; log `Deferred`.
    pub moved: Vec<RecipientId>,
    /// Rule 3: open IBDB transactions to close.
    pub close: Vec<TransactionId>,
    /// Rule 4: DEFEDB entries seen.
    pub deferred: u64,
    /// Rule 4: DEFEDB entries due at `now`.
    pub deferred_due: u64,
    /// Rule 4: the earliest `next_try` in DEFEDB.
    pub next_deferred: Option<Timestamp>,
    /// Rule 4: DEFEDB entries whose failure DSN is still to be generated.
    pub pending_bounces: Vec<RecipientId>,
    /// Rule 5: transactions whose content is still needed.
    pub content_in_use: BTreeSet<TransactionId>,
}

impl RecoveryPlan {
    /// Recipients to schedule, over all transactions.
    pub fn recipients_to_schedule(&self) -> usize {
        self.schedule.iter().map(|t| t.recipients.len()).sum()
    }
}

/// Builds a [`RecoveryPlan`].
#[derive(Debug)]
pub struct Planner {
    now: Timestamp,
    recovery: Recovery,
    open: HashSet<RecipientId>,
    in_defedb: HashSet<RecipientId>,
    plan: RecoveryPlan,
}

impl Planner {
    /// Starts from the IBDB replay.
    pub fn new(recovery: Recovery, now: Timestamp) -> Self {
        let open = recovery
            .open
            .iter()
            .flat_map(|t| t.open.iter().map(|r| r.id))
            .collect();
        Planner {
            now,
            recovery,
            open,
            in_defedb: HashSet::new(),
            plan: RecoveryPlan::default(),
        }
    }

    /// Takes one DEFEDB entry.
    pub fn add_deferred(&mut self, e: &DeferredRecipient) {
        let id = e.id();
        let p = &mut self.plan;
        p.deferred += 1;
        let next = Timestamp::from_secs(e.next_try);
        if next <= self.now {
            p.deferred_due += 1;
        }
        p.next_deferred = Some(p.next_deferred.map_or(next, |n| n.min(next)));
        if e.dsn_flags & dsn::FAILURE_PENDING != 0 && e.dsn_flags & dsn::FAILURE_SENT == 0 {
            p.pending_bounces.push(id);
        }
        p.content_in_use.insert(id.transaction());
        if self.open.contains(&id) {
            self.in_defedb.insert(id);
        }
    }

    /// The plan.
    pub fn finish(self) -> RecoveryPlan {
        let Planner {
            recovery,
            in_defedb,
            mut plan,
            ..
        } = self;
        let mut seen: HashSet<TransactionId> = HashSet::new();
        for t in recovery.open {
            let id = t.transaction.id;
            if !seen.insert(id) {
                continue;
            }
            let mut recipients = Vec::new();
            for r in t.open {
                if in_defedb.contains(&r.id) {
                    plan.moved.push(r.id);
                } else {
                    recipients.push(r);
                }
            }
            if recipients.is_empty() {
                plan.close.push(id);
            } else {
                plan.content_in_use.insert(id);
                plan.schedule.push(ToSchedule {
                    transaction: t.transaction,
                    recipients,
                });
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use smx_store::ibdb::{OpenTransaction, Outcome};

    fn ta(n: u64, nrcpts: u32) -> Transaction {
        Transaction {
            id: TransactionId::new(n, 0),
            sender: "s@a.test".into(),
            params: String::new(),
            size: 10,
            arrival_us: 1_700_000_000_000_000,
            nrcpts,
        }
    }

    fn rcpt(n: u64, i: u32) -> Recipient {
        Recipient {
            id: RecipientId::new(TransactionId::new(n, 0), i).unwrap(),
            address: format!("r{i}@b.test"),
            params: String::new(),
        }
    }

    fn deferred(n: u64, i: u32, next_try: u64, flags: u32) -> DeferredRecipient {
        DeferredRecipient {
            recipient: rcpt(n, i),
            transaction: ta(n, 3),
            tries: 1,
            next_try,
            first_try: 1_700_000_000,
            last_try: 1_700_000_000,
            dsn_flags: flags,
            last_host: String::new(),
            last_reply: String::new(),
        }
    }

    #[test]
    fn plan_from_ibdb_and_defedb() {
        let recovery = Recovery {
            open: vec![
                // Transaction 1: r0 open, r1 open but also in DEFEDB, r2 delivered.
                OpenTransaction {
                    transaction: ta(1, 3),
                    open: vec![rcpt(1, 0), rcpt(1, 1)],
                    done: vec![(rcpt(1, 2).id, Outcome::Delivered)],
                },
                // Transaction 2: its only open recipient is in DEFEDB.
                OpenTransaction {
                    transaction: ta(2, 2),
                    open: vec![rcpt(2, 0)],
                    done: vec![(rcpt(2, 1).id, Outcome::Bounced)],
                },
            ],
            ..Recovery::default()
        };
        let now = Timestamp::from_secs(1_700_001_000);
        let mut p = Planner::new(recovery, now);
        p.add_deferred(&deferred(1, 1, 1_700_000_500, 0));
        p.add_deferred(&deferred(2, 0, 1_700_009_000, 0));
        p.add_deferred(&deferred(7, 0, 1_700_000_900, dsn::FAILURE_PENDING));
        p.add_deferred(&deferred(
            8,
            0,
            1_700_000_900,
            dsn::FAILURE_PENDING | dsn::FAILURE_SENT,
        ));
        let plan = p.finish();
        assert_eq!(plan.schedule.len(), 1);
        assert_eq!(plan.schedule[0].transaction.id, TransactionId::new(1, 0));
        assert_eq!(plan.schedule[0].recipients, vec![rcpt(1, 0)]);
        assert_eq!(plan.recipients_to_schedule(), 1);
        assert_eq!(plan.moved, vec![rcpt(1, 1).id, rcpt(2, 0).id]);
        assert_eq!(plan.close, vec![TransactionId::new(2, 0)]);
        assert_eq!(plan.deferred, 4);
        assert_eq!(plan.deferred_due, 3);
        assert_eq!(
            plan.next_deferred,
            Some(Timestamp::from_secs(1_700_000_500))
        );
        assert_eq!(plan.pending_bounces, vec![rcpt(7, 0).id]);
        let used: Vec<u64> = plan.content_in_use.iter().map(|t| t.counter()).collect();
        assert_eq!(used, vec![1, 2, 7, 8]);
    }

    proptest! {
        /// Every open IBDB recipient is either scheduled or moved, never
        /// both, never lost.
        #[test]
        fn open_recipients_partitioned(
            tas in proptest::collection::vec(1u32..6, 1..10),
            in_defedb in proptest::collection::vec(any::<bool>(), 60),
        ) {
            let mut recovery = Recovery::default();
            let mut all = Vec::new();
            for (n, k) in tas.iter().enumerate() {
                let rs: Vec<_> = (0..*k).map(|i| rcpt(n as u64 + 1, i)).collect();
                all.extend(rs.iter().map(|r| r.id));
                recovery.open.push(OpenTransaction { transaction: ta(n as u64 + 1, *k), open: rs, done: vec![] });
            }
            let mut p = Planner::new(recovery, Timestamp::from_secs(1));
            let mut moved_want = HashSet::new();
            for (i, id) in all.iter().enumerate() {
                if in_defedb[i % in_defedb.len()] {
                    p.add_deferred(&deferred(id.transaction().counter(), id.index(), 5, 0));
                    moved_want.insert(*id);
                }
            }
            let plan = p.finish();
            let scheduled: HashSet<_> = plan.schedule.iter().flat_map(|t| t.recipients.iter().map(|r| r.id)).collect();
            let moved: HashSet<_> = plan.moved.iter().copied().collect();
            prop_assert_eq!(&moved, &moved_want);
            prop_assert!(scheduled.is_disjoint(&moved));
            prop_assert_eq!(scheduled.len() + moved.len(), all.len());
            for t in &plan.close {
                prop_assert!(!plan.schedule.iter().any(|s| s.transaction.id == *t));
            }
        }
    }
}
