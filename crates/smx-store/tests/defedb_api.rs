//! DEFEDB through its public API: round trips, index maintenance, the
//! queries qmgr and mailq use, persistence, damage reporting and repair.

// Helpers outside `#[test]` functions unwrap too: in a test crate a failed
// unwrap is a failed test, which is what clippy.toml allows in tests.
#![allow(clippy::unwrap_used)]

mod defedb_support;

use std::ops::{Bound, ControlFlow, RangeBounds};

use defedb_support::{entry, ids, rid};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use smx_store::defedb::{
    Damage, DecodeError, Defedb, DefedbError, DefedbOptions, DeferredRecipient, ErrorClass,
    FILE_NAME, Rebuilt, SetAside, dsn,
};
use smx_store::id::RecipientId;

const RECIPIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("recipients");
const DUE: TableDefinition<&[u8], ()> = TableDefinition::new("due");
const BY_DOMAIN: TableDefinition<&[u8], ()> = TableDefinition::new("by_domain");

fn collect_domain(db: &Defedb, domain: &str) -> Vec<RecipientId> {
    let mut out = Vec::new();
    let scan = db
        .for_each_by_domain(domain, |e| {
            out.push(e.id());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    assert_eq!(scan.visited, out.len() as u64);
    out
}

fn collect_sender(db: &Defedb, sender: &str) -> Vec<RecipientId> {
    let mut out = Vec::new();
    let scan = db
        .for_each_by_sender(sender, |e| {
            out.push(e.id());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    out
}

fn collect_age(db: &Defedb, range: impl RangeBounds<u64>) -> Vec<RecipientId> {
    let mut out = Vec::new();
    let scan = db
        .for_each_by_age(range, |e| {
            out.push(e.id());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    out
}

fn collect_all(db: &Defedb) -> Vec<RecipientId> {
    let mut out = Vec::new();
    let scan = db
        .for_each(|e| {
            out.push(e.id());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    out
}

/// Five entries over two domains and two senders.
fn sample() -> Vec<DeferredRecipient> {
    vec![
        entry(rid(1, 0), 300, "a@Example.ORG", "bob@Sender.example", 1_000),
        entry(
            rid(1, 1),
            100,
            "b@other.example",
            "bob@sender.example",
            1_000,
        ),
        entry(rid(2, 0), 100, "c@example.org", "", 500),
        entry(
            rid(3, 0),
            200,
            "d@EXAMPLE.org",
            "alice@sender.example",
            2_000,
        ),
        entry(rid(3, 1), 900, "postmaster", "alice@sender.example", 2_000),
    ]
}

#[test]
fn put_get_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
    assert!(db.is_empty().unwrap());
    assert_eq!(db.next_due().unwrap(), None);
    let mut all = sample();
    all[0].dsn_flags = dsn::DELAY_SENT | dsn::IS_BOUNCE | (1 << 31);
    all[0].tries = 7;
    db.put(&all).unwrap();
    assert_eq!(db.len().unwrap(), 5);
    for e in &all {
        assert_eq!(db.get(e.id()).unwrap().as_ref(), Some(e));
    }
    assert_eq!(db.get(rid(9, 9)).unwrap(), None);
    // Missing ids are counted out, not an error.
    assert_eq!(db.remove(&[rid(1, 0), rid(9, 9), rid(2, 0)]).unwrap(), 2);
    assert_eq!(db.get(rid(1, 0)).unwrap(), None);
    assert_eq!(db.len().unwrap(), 3);
    assert_eq!(collect_domain(&db, "example.org"), vec![rid(3, 0)]);
    assert_eq!(collect_sender(&db, ""), Vec::<RecipientId>::new());
    assert_eq!(
        ids(&db.due(u64::MAX, 100).unwrap().entries),
        vec![rid(1, 1), rid(3, 0), rid(3, 1)]
    );
    assert_eq!(db.remove(&[rid(1, 1), rid(3, 0), rid(3, 1)]).unwrap(), 3);
    assert!(db.is_empty().unwrap());
    assert_eq!(db.next_due().unwrap(), None);
    assert_eq!(collect_age(&db, ..), Vec::<RecipientId>::new());
}

#[test]
fn replace_moves_every_index_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
    db.put(&sample()).unwrap();
    let mut moved = entry(
        rid(1, 0),
        50,
        "a@new.example",
        "carol@elsewhere.example",
        10,
    );
    moved.tries = 2;
    db.put(std::slice::from_ref(&moved)).unwrap();
    assert_eq!(db.len().unwrap(), 5);
    assert_eq!(db.get(rid(1, 0)).unwrap(), Some(moved));
    // Old keys are gone ...
    assert_eq!(
        collect_domain(&db, "example.org"),
        vec![rid(2, 0), rid(3, 0)]
    );
    assert_eq!(collect_sender(&db, "bob@sender.example"), vec![rid(1, 1)]);
    assert_eq!(db.due(299, 100).unwrap().entries.len(), 4);
    assert_eq!(
        ids(&db.due(300, 100).unwrap().entries),
        ids(&db.due(899, 100).unwrap().entries)
    );
    // ... and the new ones are there.
    assert_eq!(db.next_due().unwrap(), Some(50));
    assert_eq!(collect_domain(&db, "new.example"), vec![rid(1, 0)]);
    assert_eq!(
        collect_sender(&db, "carol@elsewhere.example"),
        vec![rid(1, 0)]
    );
    assert_eq!(collect_age(&db, ..=10), vec![rid(1, 0)]);
    // Rescheduling alone (the common case) touches only the due index.
    let mut later = db.get(rid(2, 0)).unwrap().unwrap();
    later.next_try = 5_000;
    later.tries += 1;
    db.put(std::slice::from_ref(&later)).unwrap();
    assert_eq!(
        ids(&db.due(u64::MAX, 100).unwrap().entries),
        vec![rid(1, 0), rid(1, 1), rid(3, 0), rid(3, 1), rid(2, 0)]
    );
    assert_eq!(
        collect_domain(&db, "example.org"),
        vec![rid(2, 0), rid(3, 0)]
    );
}

#[test]
fn due_orders_by_time_then_id_with_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
    db.put(&sample()).unwrap();
    assert_eq!(db.next_due().unwrap(), Some(100));
    // (now, limit, want)
    let cases: Vec<(u64, usize, Vec<RecipientId>)> = vec![
        (0, 10, vec![]),
        (99, 10, vec![]),
        (100, 10, vec![rid(1, 1), rid(2, 0)]),
        (100, 1, vec![rid(1, 1)]),
        (250, 10, vec![rid(1, 1), rid(2, 0), rid(3, 0)]),
        (300, 3, vec![rid(1, 1), rid(2, 0), rid(3, 0)]),
        (
            u64::MAX,
            10,
            vec![rid(1, 1), rid(2, 0), rid(3, 0), rid(1, 0), rid(3, 1)],
        ),
        (u64::MAX, 0, vec![]),
    ];
    for (now, limit, want) in cases {
        let due = db.due(now, limit).unwrap();
        assert!(due.damaged.is_empty());
        assert_eq!(ids(&due.entries), want, "now {now} limit {limit}");
    }
    // An entry at u64::MAX is due only at u64::MAX.
    db.put(&[entry(rid(7, 0), u64::MAX, "x@y", "", 0)]).unwrap();
    assert_eq!(db.due(u64::MAX - 1, 100).unwrap().entries.len(), 5);
    assert_eq!(db.due(u64::MAX, 100).unwrap().entries.len(), 6);
}

#[test]
fn mailq_walks_return_exactly_the_right_entries() {
    let dir = tempfile::tempdir().unwrap();
    let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
    db.put(&sample()).unwrap();
    // Domain: ASCII case-insensitive, in id order.
    let example = vec![rid(1, 0), rid(2, 0), rid(3, 0)];
    assert_eq!(collect_domain(&db, "example.org"), example);
    assert_eq!(collect_domain(&db, "EXAMPLE.ORG"), example);
    assert_eq!(collect_domain(&db, "other.example"), vec![rid(1, 1)]);
    assert_eq!(collect_domain(&db, ""), vec![rid(3, 1)]);
    assert_eq!(collect_domain(&db, "example.or"), Vec::<RecipientId>::new());
    assert_eq!(
        collect_domain(&db, "example.org.x"),
        Vec::<RecipientId>::new()
    );
    assert_eq!(
        collect_domain(&db, &"z".repeat(100_000)),
        Vec::<RecipientId>::new()
    );
    // Sender: domain case-insensitive, null sender is "".
    assert_eq!(
        collect_sender(&db, "bob@SENDER.example"),
        vec![rid(1, 0), rid(1, 1)]
    );
    assert_eq!(
        collect_sender(&db, "Bob@sender.example"),
        Vec::<RecipientId>::new()
    );
    assert_eq!(
        collect_sender(&db, "alice@sender.example"),
        vec![rid(3, 0), rid(3, 1)]
    );
    assert_eq!(collect_sender(&db, ""), vec![rid(2, 0)]);
    // Age: oldest first, ties by id, bounds honoured.
    let by_age = vec![rid(2, 0), rid(1, 0), rid(1, 1), rid(3, 0), rid(3, 1)];
    assert_eq!(collect_age(&db, ..), by_age);
    assert_eq!(collect_age(&db, 500..=1_000), by_age[..3].to_vec());
    assert_eq!(collect_age(&db, 501..2_000), by_age[1..3].to_vec());
    assert_eq!(collect_age(&db, 1_000..), by_age[1..].to_vec());
    assert_eq!(
        collect_age(&db, (Bound::Excluded(1_000), Bound::Unbounded)),
        by_age[3..].to_vec()
    );
    assert_eq!(collect_age(&db, 2_001..), Vec::<RecipientId>::new());
    assert_eq!(
        collect_age(&db, (Bound::Included(2_000), Bound::Excluded(1_000))),
        Vec::<RecipientId>::new()
    );
    assert_eq!(collect_age(&db, 5..5), Vec::<RecipientId>::new());
    assert_eq!(collect_age(&db, u64::MAX..), Vec::<RecipientId>::new());
    // Everything, in id order.
    assert_eq!(
        collect_all(&db),
        vec![rid(1, 0), rid(1, 1), rid(2, 0), rid(3, 0), rid(3, 1)]
    );
}

#[test]
fn walks_stop_on_break() {
    let dir = tempfile::tempdir().unwrap();
    let db = Defedb::open(dir.path().join(FILE_NAME)).unwrap();
    db.put(&sample()).unwrap();
    let mut seen = Vec::new();
    let mut take_two = |e: &DeferredRecipient| {
        seen.push(e.id());
        if seen.len() == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let scan = db.for_each_by_domain("example.org", &mut take_two).unwrap();
    assert!(scan.stopped);
    assert_eq!(scan.visited, 2);
    assert_eq!(seen, vec![rid(1, 0), rid(2, 0)]);

    let mut n = 0;
    let scan = db
        .for_each_by_sender("alice@sender.example", |_| {
            n += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert!(scan.stopped && n == 1 && scan.visited == 1);

    let mut first = None;
    let scan = db
        .for_each_by_age(.., |e| {
            first = Some(e.id());
            ControlFlow::Break(())
        })
        .unwrap();
    assert!(scan.stopped);
    assert_eq!(first, Some(rid(2, 0)));

    let scan = db.for_each(|_| ControlFlow::Break(())).unwrap();
    assert!(scan.stopped && scan.visited == 1);
    // A walk that runs to the end is not "stopped".
    let scan = db.for_each(|_| ControlFlow::Continue(())).unwrap();
    assert!(!scan.stopped && scan.visited == 5);
}

#[test]
fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let all = sample();
    {
        let db = Defedb::open(&path).unwrap();
        assert_eq!(db.path(), path);
        db.put(&all).unwrap();
        db.remove(&[rid(3, 1)]).unwrap();
    }
    let mut options = DefedbOptions::default();
    options.cache_size = 1 << 20;
    let db = Defedb::open_with(&path, &options).unwrap();
    assert_eq!(db.len().unwrap(), 4);
    for e in &all[..4] {
        assert_eq!(db.get(e.id()).unwrap().as_ref(), Some(e));
    }
    assert_eq!(db.get(rid(3, 1)).unwrap(), None);
    assert_eq!(
        ids(&db.due(u64::MAX, 10).unwrap().entries),
        vec![rid(1, 1), rid(2, 0), rid(3, 0), rid(1, 0)]
    );
    assert_eq!(
        collect_domain(&db, "example.org"),
        vec![rid(1, 0), rid(2, 0), rid(3, 0)]
    );
    // No temporary file is left behind by the creation.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
}

#[test]
fn second_handle_is_refused_as_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let _db = Defedb::open(&path).unwrap();
    let e = Defedb::open(&path).unwrap_err();
    assert!(matches!(e, DefedbError::Locked { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Temporary);
}

/// Replaces the stored value of `id` through redb, with the database closed.
fn overwrite_value(path: &std::path::Path, id: RecipientId, value: &[u8]) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(RECIPIENTS).unwrap();
        t.insert(id.to_string().as_bytes(), value).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn corrupt_entry_is_reported_skipped_and_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let db = Defedb::open(&path).unwrap();
        db.put(&sample()).unwrap();
    }
    let garbage = b"\x01this is not an entry".to_vec();
    overwrite_value(&path, rid(2, 0), &garbage);
    overwrite_value(&path, rid(3, 0), &[7, 1, 2, 3]);
    let db = Defedb::open(&path).unwrap();

    // get: a typed Corrupt error naming the id.
    let e = db.get(rid(2, 0)).unwrap_err();
    match &e {
        DefedbError::Corrupt {
            id,
            error: DecodeError::Checksum { .. },
        } => assert_eq!(*id, rid(2, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(matches!(
        db.get(rid(3, 0)),
        Err(DefedbError::Corrupt {
            error: DecodeError::UnknownVersion(7),
            ..
        })
    ));

    // Queries skip and report.
    let due = db.due(u64::MAX, 100).unwrap();
    assert_eq!(ids(&due.entries), vec![rid(1, 1), rid(1, 0), rid(3, 1)]);
    let damaged_ids: Vec<_> = due
        .damaged
        .iter()
        .map(|d| match d {
            Damage::Corrupt { id, .. } => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(damaged_ids, vec![rid(2, 0), rid(3, 0)]);
    // The limit counts good entries only.
    assert_eq!(ids(&db.due(200, 1).unwrap().entries), vec![rid(1, 1)]);
    let mut seen = Vec::new();
    let scan = db
        .for_each_by_domain("example.org", |e| {
            seen.push(e.id());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, vec![rid(1, 0)]);
    assert_eq!(scan.damaged.len(), 2);
    let scan = db.for_each(|_| ControlFlow::Continue(())).unwrap();
    assert_eq!((scan.visited, scan.damaged.len()), (3, 2));
    let scan = db
        .for_each_by_sender("", |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!((scan.visited, scan.damaged.len()), (0, 1));

    // Set aside: raw bytes kept, every index key gone.
    assert_eq!(
        db.set_aside_corrupt(rid(2, 0)).unwrap(),
        SetAside::Moved { index_keys: 4 }
    );
    assert_eq!(
        db.set_aside_corrupt(rid(2, 0)).unwrap(),
        SetAside::NoEntry { index_keys: 0 }
    );
    assert_eq!(
        db.set_aside_corrupt(rid(1, 0)).unwrap(),
        SetAside::NotCorrupt
    );
    assert_eq!(db.get(rid(2, 0)).unwrap(), None);
    assert_eq!(db.len().unwrap(), 4);
    let due = db.due(u64::MAX, 100).unwrap();
    assert_eq!(due.damaged.len(), 1);
    let mut records = Vec::new();
    db.for_each_set_aside(|r| {
        records.push(r.clone());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, 0);
    assert_eq!(records[0].table, "recipients");
    assert_eq!(records[0].key, rid(2, 0).to_string().into_bytes());
    assert_eq!(records[0].value, garbage);

    // Replacing a corrupt entry sets the old bytes aside too.
    let fresh = entry(rid(3, 0), 10, "new@fresh.example", "x@y", 1);
    db.put(std::slice::from_ref(&fresh)).unwrap();
    assert_eq!(db.get(rid(3, 0)).unwrap(), Some(fresh));
    assert_eq!(db.set_aside_len().unwrap(), 2);
    let due = db.due(u64::MAX, 100).unwrap();
    assert!(due.damaged.is_empty(), "{:?}", due.damaged);
    assert_eq!(
        ids(&due.entries),
        vec![rid(3, 0), rid(1, 1), rid(1, 0), rid(3, 1)]
    );
    assert_eq!(collect_domain(&db, "example.org"), vec![rid(1, 0)]);

    // Removing a corrupt entry sets it aside as well.
    drop(db);
    overwrite_value(&path, rid(3, 1), b"");
    let db = Defedb::open(&path).unwrap();
    assert!(matches!(
        db.get(rid(3, 1)),
        Err(DefedbError::Corrupt {
            error: DecodeError::Empty,
            ..
        })
    ));
    assert_eq!(db.remove(&[rid(3, 1)]).unwrap(), 1);
    assert_eq!(db.set_aside_len().unwrap(), 3);
    assert!(db.due(u64::MAX, 100).unwrap().damaged.is_empty());
    assert_eq!(collect_domain(&db, ""), Vec::<RecipientId>::new());
}

#[test]
fn index_damage_is_reported_and_rebuild_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let db = Defedb::open(&path).unwrap();
        db.put(&sample()).unwrap();
    }
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut due = txn.open_table(DUE).unwrap();
            // A malformed key, a key naming no entry, a stale key (wrong time).
            due.insert(b"short".as_slice(), ()).unwrap();
            let mut dangling = 150u64.to_be_bytes().to_vec();
            dangling.extend_from_slice(rid(8, 0).to_string().as_bytes());
            due.insert(dangling.as_slice(), ()).unwrap();
            let mut stale = 160u64.to_be_bytes().to_vec();
            stale.extend_from_slice(rid(1, 0).to_string().as_bytes());
            due.insert(stale.as_slice(), ()).unwrap();
            let mut dom = txn.open_table(BY_DOMAIN).unwrap();
            dom.insert([0u8, 200].as_slice(), ()).unwrap();
            // An undecodable key in the main table.
            let mut main = txn.open_table(RECIPIENTS).unwrap();
            main.insert(b"not-an-id".as_slice(), b"x".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let rtx = db.begin_read().unwrap();
        assert_eq!(
            rtx.open_table(RECIPIENTS).unwrap().iter().unwrap().count(),
            6
        );
    }
    let db = Defedb::open(&path).unwrap();
    let due = db.due(u64::MAX, 100).unwrap();
    assert_eq!(
        ids(&due.entries),
        vec![rid(1, 1), rid(2, 0), rid(3, 0), rid(1, 0), rid(3, 1)]
    );
    assert_eq!(
        due.damaged,
        vec![
            Damage::Corrupt {
                id: rid(8, 0),
                error: DecodeError::Missing { index: "due" }
            },
            Damage::StaleIndexKey {
                index: "due",
                id: rid(1, 0)
            },
            Damage::BadKey {
                table: "due",
                key: b"short".to_vec()
            },
        ]
    );
    // Malformed keys never stop next_due.
    assert_eq!(db.next_due().unwrap(), Some(100));
    let scan = db.for_each(|_| ControlFlow::Continue(())).unwrap();
    assert_eq!(
        scan.damaged,
        vec![Damage::BadKey {
            table: "recipients",
            key: b"not-an-id".to_vec()
        }]
    );
    let scan = db
        .for_each_by_domain("", |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(scan.visited, 1);

    // A dangling key alone can be purged by id.
    assert_eq!(
        db.set_aside_corrupt(rid(8, 0)).unwrap(),
        SetAside::NoEntry { index_keys: 1 }
    );

    assert_eq!(
        db.rebuild_indexes().unwrap(),
        Rebuilt {
            entries: 5,
            set_aside: 1
        }
    );
    let due = db.due(u64::MAX, 100).unwrap();
    assert!(due.damaged.is_empty(), "{:?}", due.damaged);
    assert_eq!(
        ids(&due.entries),
        vec![rid(1, 1), rid(2, 0), rid(3, 0), rid(1, 0), rid(3, 1)]
    );
    assert!(
        db.for_each(|_| ControlFlow::Continue(()))
            .unwrap()
            .damaged
            .is_empty()
    );
    assert_eq!(
        collect_domain(&db, "example.org"),
        vec![rid(1, 0), rid(2, 0), rid(3, 0)]
    );
    assert_eq!(collect_age(&db, ..).len(), 5);
    assert_eq!(
        collect_sender(&db, "alice@sender.example"),
        vec![rid(3, 0), rid(3, 1)]
    );
    let mut tables = Vec::new();
    db.for_each_set_aside(|r| {
        tables.push((r.table.clone(), r.key.clone(), r.value.clone()));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        tables,
        vec![(
            "recipients".to_owned(),
            b"not-an-id".to_vec(),
            b"x".to_vec()
        )]
    );
}
