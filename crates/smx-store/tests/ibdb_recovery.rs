//! IBDB recovery of a log written without damage: what is open, what is
//! done, what is ignored.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ibdb_support;

use ibdb_support::*;
use smx_store::ibdb::{Ibdb, Outcome, Record, RecoveryWarning};

#[test]
fn open_transactions_with_their_open_recipients_in_log_order() {
    let dir = tempdir();
    let mut o = opts(dir.path());
    // Every batch in its own file: records of one transaction spread over
    // several files.
    o.size = 1;
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    let c = |recs: &[Record]| db.commit(recs).wait().unwrap();
    c(&accept(5, 3));
    c(&accept(2, 2));
    c(&accept(9, 1));
    c(&accept(4, 2));
    // Outcomes in later files than their transactions.
    c(&[outcome(5, 1, Outcome::Delivered)]);
    c(&[
        outcome(5, 2, Outcome::Deferred),
        outcome(2, 0, Outcome::Bounced),
    ]);
    // Transaction 9: done and closed. Transaction 4: all recipients done,
    // not closed.
    c(&[outcome(9, 0, Outcome::Delivered), Record::Closed(ta(9))]);
    c(&[
        outcome(4, 0, Outcome::Delivered),
        outcome(4, 1, Outcome::Delivered),
    ]);
    // A later outcome for the same recipient replaces the earlier one.
    c(&[outcome(2, 0, Outcome::Deferred)]);
    db.close().unwrap();

    let (db, rec) = Ibdb::open(o.clone()).unwrap();
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    let ids: Vec<_> = rec.open.iter().map(|t| t.transaction.id).collect();
    assert_eq!(ids, [ta(5), ta(2), ta(4)]);
    let t5 = &rec.open[0];
    assert_eq!(t5.transaction, transaction(5, 3));
    assert_eq!(t5.open, [recipient(5, 0)]);
    assert_eq!(
        t5.done,
        [
            (rcpt(5, 1), Outcome::Delivered),
            (rcpt(5, 2), Outcome::Deferred)
        ]
    );
    let t2 = &rec.open[1];
    assert_eq!(t2.open, [recipient(2, 1)]);
    assert_eq!(t2.done, [(rcpt(2, 0), Outcome::Deferred)]);
    let t4 = &rec.open[2];
    assert!(t4.open.is_empty());
    assert_eq!(t4.done.len(), 2);
    assert_eq!(rec.ignored_records, 0);
    // 20 records were written; the file with transaction 9's records is
    // gone (cleanup), so fewer were read.
    assert!(rec.records < 20, "{}", rec.records);

    // Closing the rest and reopening leaves nothing open, and nothing but
    // the new file.
    let c = |recs: &[Record]| db.commit(recs).wait().unwrap();
    c(&[
        Record::Closed(ta(5)),
        Record::Closed(ta(2)),
        Record::Closed(ta(4)),
    ]);
    db.close().unwrap();
    let (db, rec) = Ibdb::open(o.clone()).unwrap();
    assert!(rec.open.is_empty());
    db.cleanup().wait().unwrap();
    assert_eq!(log_files(&o.dir).len(), 1);
}

#[test]
fn records_of_unknown_transactions_are_ignored() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    db.commit(&[
        outcome(1, 0, Outcome::Delivered),
        Record::Recipient(recipient(1, 0)),
        Record::Closed(ta(1)),
    ])
    .wait()
    .unwrap();
    db.commit(&accept(2, 1)).wait().unwrap();
    db.commit(&[Record::Closed(ta(2))]).wait().unwrap();
    // Closed twice: the second is about a transaction no longer open.
    db.commit(&[Record::Closed(ta(2)), outcome(2, 0, Outcome::Bounced)])
        .wait()
        .unwrap();
    db.close().unwrap();
    let (_, rec) = Ibdb::open(o).unwrap();
    assert!(rec.open.is_empty());
    assert_eq!(rec.ignored_records, 5);
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
}

#[test]
fn incomplete_and_duplicate_transactions_are_reported() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    // A transaction announcing three recipients, logged with two (a caller
    // that splits a transaction over commits, the second never made).
    db.commit(&accept(1, 3)[..3]).wait().unwrap();
    db.commit(&accept(2, 1)).wait().unwrap();
    let mut dup = transaction(2, 1);
    dup.sender = "other@example.org".into();
    db.commit(&[Record::Transaction(dup)]).wait().unwrap();
    db.close().unwrap();
    let (_, rec) = Ibdb::open(o).unwrap();
    assert_eq!(rec.open.len(), 1);
    assert_eq!(rec.open[0].transaction, transaction(2, 1));
    assert_eq!(rec.warnings.len(), 2, "{:?}", rec.warnings);
    assert!(matches!(
        &rec.warnings[0],
        RecoveryWarning::DuplicateTransaction { id, .. } if *id == ta(2)
    ));
    assert_eq!(
        rec.warnings[1],
        RecoveryWarning::IncompleteTransaction {
            id: ta(1),
            nrcpts: 3,
            found: 2
        }
    );
    // Every warning can be logged as one line.
    for w in &rec.warnings {
        assert!(!w.to_string().contains('\n'));
    }
}

#[test]
fn new_writes_go_to_a_new_file() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    db.commit(&accept(1, 1)).wait().unwrap();
    db.close().unwrap();
    let first = log_files(&o.dir);
    assert_eq!(first.len(), 1);
    let before = std::fs::read(&first[0]).unwrap();
    let (db, rec) = Ibdb::open(o.clone()).unwrap();
    assert_eq!(rec.open.len(), 1);
    db.commit(&accept(2, 1)).wait().unwrap();
    db.close().unwrap();
    assert_eq!(std::fs::read(&first[0]).unwrap(), before);
    assert_eq!(log_files(&o.dir).len(), 2);
    let (_, rec) = Ibdb::open(o).unwrap();
    assert_eq!(rec.open.len(), 2);
    assert_eq!(rec.files_read, 2);
}

#[test]
fn an_empty_newest_file_is_removed_and_foreign_files_are_left_alone() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    db.commit(&accept(1, 1)).wait().unwrap();
    db.close().unwrap();
    // A crash while file 2 was being created leaves it empty or zero.
    let empty = o.dir.join("0000000000000002.ibdb");
    std::fs::write(&empty, []).unwrap();
    let zero = o.dir.join("0000000000000003.ibdb");
    std::fs::write(&zero, vec![0u8; 4096]).unwrap();
    let foreign = o.dir.join("notes.txt");
    std::fs::write(&foreign, b"hello").unwrap();
    let (db, rec) = Ibdb::open(o.clone()).unwrap();
    assert_eq!(rec.open.len(), 1);
    assert!(!empty.exists() && !zero.exists());
    assert!(foreign.exists());
    let mut w = rec.warnings.clone();
    w.sort_by_key(|w| format!("{w:?}"));
    assert_eq!(
        w,
        [
            RecoveryWarning::EmptyFileRemoved { path: empty },
            RecoveryWarning::EmptyFileRemoved { path: zero },
            RecoveryWarning::IgnoredFile { path: foreign },
        ]
    );
    // Sequence numbers are not reused: the new file is 4.
    assert_eq!(db.stats().current_file, 4);
}
