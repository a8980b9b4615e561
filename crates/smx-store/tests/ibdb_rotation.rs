//! IBDB rotation and cleanup: a file goes when every transaction with a
//! record in it is closed, and not before.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ibdb_support;

use std::path::Path;

use ibdb_support::*;
use smx_store::ibdb::{Ibdb, Options, Outcome, Record};

/// The sequence numbers of the log files.
fn seqs(dir: &Path) -> Vec<u64> {
    log_files(dir)
        .iter()
        .map(|p| {
            let name = p.file_stem().and_then(|s| s.to_str()).unwrap();
            u64::from_str_radix(name, 16).unwrap()
        })
        .collect()
}

/// Waits until the committer has finished the rotation and cleanup that
/// follow the last batch (they run after the batch is acknowledged). A
/// cleanup request is handled after them; it finds nothing more to do.
fn settle(db: &Ibdb) {
    let report = db.cleanup().wait().unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
}

/// Options that rotate after every batch.
fn one_batch_per_file(dir: &Path) -> Options {
    let mut o = opts(dir);
    o.size = 1;
    o
}

#[test]
fn cleanup_removes_exactly_the_files_without_open_transactions() {
    let dir = tempdir();
    let o = one_batch_per_file(dir.path());
    let d = o.dir.clone();
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    assert_eq!(seqs(&d), [1]);
    let step = |db: &Ibdb, recs: &[Record], want: &[u64]| {
        db.commit(recs).wait().unwrap();
        settle(db);
        assert_eq!(seqs(&d), want, "after {recs:?}");
    };
    step(&db, &accept(1, 2), &[1, 2]);
    step(&db, &accept(2, 1), &[1, 2, 3]);
    step(&db, &accept(3, 1), &[1, 2, 3, 4]);
    // Transaction 1 now has records in files 1 and 4.
    step(&db, &[outcome(1, 0, Outcome::Delivered)], &[1, 2, 3, 4, 5]);
    // Closing 2 frees file 2 and the file holding only the close.
    step(&db, &[Record::Closed(ta(2))], &[1, 3, 4, 6]);
    assert_eq!(db.stats().open_transactions, 2);
    db.close().unwrap();

    // The bookkeeping is rebuilt by recovery.
    let (db, rec) = Ibdb::open(o).unwrap();
    settle(&db);
    assert_eq!(seqs(&d), [1, 3, 4, 7]);
    let ids: Vec<_> = rec.open.iter().map(|t| t.transaction.id).collect();
    assert_eq!(ids, [ta(1), ta(3)]);
    assert_eq!(rec.open[0].open, [recipient(1, 1)]);
    assert_eq!(rec.open[0].done, [(rcpt(1, 0), Outcome::Delivered)]);
    step(
        &db,
        &[outcome(3, 0, Outcome::Deferred), Record::Closed(ta(3))],
        &[1, 4, 8],
    );
    step(
        &db,
        &[outcome(1, 1, Outcome::Bounced), Record::Closed(ta(1))],
        &[9],
    );
    assert_eq!(db.stats().open_transactions, 0);
    let report = db.cleanup().wait().unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.remaining, 1);
    assert_eq!(db.stats().current_file, 9);
}

#[test]
fn an_open_transaction_keeps_its_file_through_many_rotations() {
    let dir = tempdir();
    let mut o = opts(dir.path());
    o.size = 4096;
    let d = o.dir.clone();
    let (db, _) = Ibdb::open(o).unwrap();
    db.commit(&accept(0, 3)).wait().unwrap();
    for n in 1..400 {
        db.commit(&accept(n, 1)).wait().unwrap();
        db.commit(&[outcome(n, 0, Outcome::Delivered), Record::Closed(ta(n))])
            .wait()
            .unwrap();
    }
    // Files whose transactions were closed after the last rotation wait
    // for the next cleanup.
    db.cleanup().wait().unwrap();
    let st = db.stats();
    assert!(st.files_created > 20, "{st:?}");
    assert!(st.files_removed + 3 >= st.files_created, "{st:?}");
    let files = seqs(&d);
    assert_eq!(files[0], 1, "the file of transaction 0 is kept");
    assert!(files.len() <= 3, "{files:?}");
    // Closing transaction 0 lets its file go at the next cleanup.
    db.commit(&[Record::Closed(ta(0))]).wait().unwrap();
    let report = db.cleanup().wait().unwrap();
    assert!(
        report
            .removed
            .iter()
            .any(|p| p.ends_with("0000000000000001.ibdb"))
    );
    assert_eq!(seqs(&d), [db.stats().current_file]);
}

#[test]
fn closing_in_the_same_commit_as_opening_holds_nothing() {
    let dir = tempdir();
    let o = one_batch_per_file(dir.path());
    let d = o.dir.clone();
    let (db, _) = Ibdb::open(o).unwrap();
    let mut recs = accept(1, 1);
    recs.push(outcome(1, 0, Outcome::Delivered));
    recs.push(Record::Closed(ta(1)));
    db.commit(&recs).wait().unwrap();
    settle(&db);
    assert_eq!(seqs(&d), [2]);
}

#[test]
fn rotation_writes_the_previous_end_and_trims_preallocation() {
    let dir = tempdir();
    let mut o = opts(dir.path());
    o.size = 1;
    o.prealloc_chunk = 1 << 16;
    let d = o.dir.clone();
    let (db, _) = Ibdb::open(o).unwrap();
    db.commit(&accept(1, 1)).wait().unwrap();
    settle(&db);
    let files = log_files(&d);
    assert_eq!(files.len(), 2);
    // The finished file is cut back to its last frame; the new one is
    // preallocated.
    let first = std::fs::read(&files[0]).unwrap();
    assert!(first.len() < 1024, "{}", first.len());
    let second = std::fs::read(&files[1]).unwrap();
    assert_eq!(second.len(), 44 + (1 << 16));
    let header = smx_store::ibdb::format::FileHeader::decode(&second).unwrap();
    assert_eq!(
        (header.seq, header.prev_seq, header.prev_len),
        (2, 1, first.len() as u64)
    );
}

#[test]
fn a_close_record_outlives_the_transaction_record() {
    // Transactions 1 and 2 share file 1; 1 is closed in file 2. File 2
    // holds no open transaction, but removing it while file 1 (kept by
    // transaction 2) exists would bring transaction 1 back at the next
    // start.
    let dir = tempdir();
    let o = one_batch_per_file(dir.path());
    let d = o.dir.clone();
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    let both: Vec<Record> = accept(1, 1).into_iter().chain(accept(2, 1)).collect();
    db.commit(&both).wait().unwrap();
    db.commit(&[outcome(1, 0, Outcome::Delivered), Record::Closed(ta(1))])
        .wait()
        .unwrap();
    settle(&db);
    assert_eq!(seqs(&d), [1, 2, 3]);
    db.close().unwrap();

    // Recovery rebuilds the same constraint.
    let (db, rec) = Ibdb::open(o.clone()).unwrap();
    settle(&db);
    let ids: Vec<_> = rec.open.iter().map(|t| t.transaction.id).collect();
    assert_eq!(ids, [ta(2)]);
    assert_eq!(seqs(&d), [1, 2, 4]);
    db.commit(&[Record::Closed(ta(2))]).wait().unwrap();
    settle(&db);
    assert_eq!(seqs(&d), [5]);
}
