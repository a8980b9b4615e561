//! Random sequences of put, remove and reschedule against an in-memory
//! model: after every step, `due`, `next_due`, `len` and the three mailq
//! walks agree with the model, and no query reports damage.

// Helpers outside `#[test]` functions unwrap too: in a test crate a failed
// unwrap is a failed test, which is what clippy.toml allows in tests.
#![allow(clippy::unwrap_used)]

mod defedb_support;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use defedb_support::{entry, ids, rid};
use proptest::prelude::*;
use smx_store::defedb::{Defedb, DeferredRecipient, FILE_NAME, Scan, domain_of, sender_key};
use smx_store::id::RecipientId;

const DOMAINS: [&str; 3] = ["example.org", "Example.ORG.", "other.example"];
const SENDERS: [&str; 4] = [
    "",
    "bob@sender.example",
    "Bob@SENDER.example",
    "alice@x.example",
];

#[derive(Debug, Clone)]
struct Spec {
    ta: u64,
    index: u32,
    next_try: u64,
    domain: usize,
    sender: usize,
    arrival: u64,
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<Spec>),
    Remove(Vec<(u64, u32)>),
    Reschedule {
        ta: u64,
        index: u32,
        next_try: u64,
    },
    Check {
        now: u64,
        limit: usize,
        from: u64,
        to: u64,
    },
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u64..4,
        0u32..3,
        0u64..20,
        0..DOMAINS.len(),
        0..SENDERS.len(),
        0u64..8,
    )
        .prop_map(|(ta, index, next_try, domain, sender, arrival)| Spec {
            ta,
            index,
            next_try,
            domain,
            sender,
            arrival,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(spec(), 1..5).prop_map(Op::Put),
        1 => prop::collection::vec((0u64..4, 0u32..3), 1..4).prop_map(Op::Remove),
        2 => (0u64..4, 0u32..3, 0u64..25)
            .prop_map(|(ta, index, next_try)| Op::Reschedule { ta, index, next_try }),
        1 => (0u64..25, 0usize..6, 0u64..9, 0u64..9)
            .prop_map(|(now, limit, from, to)| Op::Check { now, limit, from, to }),
    ]
}

fn make(s: &Spec) -> DeferredRecipient {
    let address = format!("u{}@{}", s.index, DOMAINS[s.domain]);
    entry(
        rid(s.ta, s.index),
        s.next_try,
        &address,
        SENDERS[s.sender],
        s.arrival,
    )
}

fn clean(scan: Scan) -> Scan {
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    scan
}

fn walk(
    run: impl FnOnce(&mut dyn FnMut(&DeferredRecipient) -> ControlFlow<()>) -> Scan,
) -> Vec<RecipientId> {
    let mut out = Vec::new();
    clean(run(&mut |e| {
        out.push(e.id());
        ControlFlow::Continue(())
    }));
    out
}

fn check(
    db: &Defedb,
    model: &BTreeMap<RecipientId, DeferredRecipient>,
    now: u64,
    limit: usize,
    from: u64,
    to: u64,
) {
    let mut by_time: Vec<&DeferredRecipient> = model.values().collect();
    by_time.sort_by_key(|e| (e.next_try, e.id()));
    let due = db.due(u64::MAX, usize::MAX).unwrap();
    assert!(due.damaged.is_empty());
    assert_eq!(
        due.entries,
        by_time.iter().map(|e| (*e).clone()).collect::<Vec<_>>()
    );
    let want: Vec<_> = by_time
        .iter()
        .filter(|e| e.next_try <= now)
        .take(limit)
        .map(|e| e.id())
        .collect();
    assert_eq!(
        ids(&db.due(now, limit).unwrap().entries),
        want,
        "due({now}, {limit})"
    );
    assert_eq!(db.next_due().unwrap(), by_time.first().map(|e| e.next_try));
    assert_eq!(db.len().unwrap(), model.len() as u64);

    // Domains as the index sees them (the trailing-dot variant is its own
    // domain), queried in another case.
    for d in DOMAINS {
        let want: Vec<_> = model
            .values()
            .filter(|e| domain_of(&e.recipient.address) == d.to_ascii_lowercase())
            .map(|e| e.id())
            .collect();
        assert_eq!(
            walk(|f| db.for_each_by_domain(&d.to_ascii_uppercase(), f).unwrap()),
            want,
            "domain {d}"
        );
    }
    for s in SENDERS {
        let want: Vec<_> = model
            .values()
            .filter(|e| sender_key(&e.transaction.sender) == sender_key(s))
            .map(|e| e.id())
            .collect();
        assert_eq!(
            walk(|f| db.for_each_by_sender(s, f).unwrap()),
            want,
            "sender {s}"
        );
    }
    let mut by_age: Vec<&DeferredRecipient> = model.values().collect();
    by_age.sort_by_key(|e| (e.transaction.arrival_us, e.id()));
    let want: Vec<_> = by_age.iter().map(|e| e.id()).collect();
    assert_eq!(walk(|f| db.for_each_by_age(.., f).unwrap()), want);
    let want: Vec<_> = by_age
        .iter()
        .filter(|e| (from..to).contains(&e.transaction.arrival_us))
        .map(|e| e.id())
        .collect();
    assert_eq!(
        walk(|f| db.for_each_by_age(from..to, f).unwrap()),
        want,
        "age {from}..{to}"
    );
    let want: Vec<_> = model.keys().copied().collect();
    assert_eq!(walk(|f| db.for_each(f).unwrap()), want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn defedb_agrees_with_a_model(ops in prop::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut db = Defedb::open(&path).unwrap();
        let mut model: BTreeMap<RecipientId, DeferredRecipient> = BTreeMap::new();
        for (step, op) in ops.iter().enumerate() {
            let (mut now, mut limit, mut from, mut to) = (10, 3, 2, 6);
            match op {
                Op::Put(specs) => {
                    let batch: Vec<_> = specs.iter().map(make).collect();
                    db.put(&batch).unwrap();
                    for e in batch {
                        model.insert(e.id(), e);
                    }
                }
                Op::Remove(which) => {
                    let which: Vec<_> = which.iter().map(|&(t, i)| rid(t, i)).collect();
                    let mut unique = which.clone();
                    unique.sort();
                    unique.dedup();
                    let want = unique.iter().filter(|id| model.remove(id).is_some()).count();
                    prop_assert_eq!(db.remove(&which).unwrap(), want);
                }
                Op::Reschedule { ta, index, next_try } => {
                    let id = rid(*ta, *index);
                    let got = db.get(id).unwrap();
                    prop_assert_eq!(got.as_ref(), model.get(&id));
                    if let Some(mut e) = got {
                        e.next_try = *next_try;
                        e.tries += 1;
                        e.last_try = *next_try;
                        db.put(std::slice::from_ref(&e)).unwrap();
                        model.insert(id, e);
                    }
                }
                Op::Check { now: n, limit: l, from: a, to: b } => {
                    (now, limit, from, to) = (*n, *l, *a, *b);
                }
            }
            check(&db, &model, now, limit, from, to);
            // Now and then, close and reopen.
            if step % 7 == 6 {
                drop(db);
                db = Defedb::open(&path).unwrap();
                check(&db, &model, now, limit, from, to);
            }
        }
    }
}
