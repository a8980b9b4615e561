//! IBDB group commit: many writers, batching, completion from threads and
//! async code, shutdown.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ibdb_support;

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use ibdb_support::*;
use smx_store::envelope::MAX_ADDRESS;
use smx_store::ibdb::{Ibdb, IbdbError, Record};

/// A minimal executor: polls `f`, parking the thread between wake-ups.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn hundred_threads_commit_batched_and_all_recovered() {
    const THREADS: u64 = 100;
    const PER_THREAD: u64 = 40;
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, rec) = Ibdb::open(o.clone()).unwrap();
    assert!(rec.open.is_empty());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    db.commit(&accept(t * 1000 + i, 2)).wait().unwrap();
                }
            });
        }
    });
    let st = db.stats();
    let commits = THREADS * PER_THREAD;
    assert_eq!(st.commits, commits);
    assert_eq!(st.records, commits * 3);
    assert_eq!(st.failed_commits, 0);
    // One fdatasync covers many commits.
    assert!(
        st.syncs * 5 < st.commits,
        "{} syncs for {} commits",
        st.syncs,
        st.commits
    );
    assert!(st.max_batch > 10, "largest batch {}", st.max_batch);
    assert_eq!(st.open_transactions, commits);
    db.close().unwrap();

    let (db, rec) = Ibdb::open(o).unwrap();
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    assert_eq!(rec.open.len() as u64, commits);
    let mut seen = HashMap::new();
    for (pos, t) in rec.open.iter().enumerate() {
        let n = t.transaction.id.counter() - ta(0).counter();
        assert_eq!(t.transaction, transaction(n, 2));
        assert_eq!(t.open, vec![recipient(n, 0), recipient(n, 1)]);
        assert!(t.done.is_empty());
        seen.insert(n, pos);
    }
    // Log order keeps each writer's order.
    for t in 0..THREADS {
        for i in 1..PER_THREAD {
            assert!(seen[&(t * 1000 + i - 1)] < seen[&(t * 1000 + i)]);
        }
    }
    assert_eq!(db.stats().open_transactions, commits);
}

#[test]
fn a_batch_closes_at_max_open_tas_or_at_the_delay() {
    let dir = tempdir();
    let mut o = opts(dir.path());
    o.max_open_tas = 10;
    o.max_commit_delay = Duration::from_secs(5);
    let (db, _) = Ibdb::open(o).unwrap();
    // The first batch waits for max_open_TAs commits: all ten in one sync.
    let pending: Vec<_> = (0..10).map(|n| db.commit(&accept(n, 1))).collect();
    for p in pending {
        p.wait().unwrap();
    }
    assert_eq!((db.stats().syncs, db.stats().max_batch), (1, 10));
    db.close().unwrap();

    let dir = tempdir();
    let mut o = opts(dir.path());
    o.max_open_tas = 1000;
    o.max_commit_delay = Duration::from_millis(1000);
    let (db, _) = Ibdb::open(o).unwrap();
    let t0 = Instant::now();
    let pending: Vec<_> = (0..3).map(|n| db.commit(&accept(n, 1))).collect();
    for p in pending {
        p.wait().unwrap();
    }
    // Nothing else arrives: the batch closes when the first commit has
    // waited the delay.
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(990), "{waited:?}");
    assert_eq!((db.stats().syncs, db.stats().max_batch), (1, 3));
    // After a batch of 3 the target is 2: two waiting commits go at once.
    let t0 = Instant::now();
    let pending: Vec<_> = (3..5).map(|n| db.commit(&accept(n, 1))).collect();
    for p in pending {
        p.wait().unwrap();
    }
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(db.stats().syncs, 2);
}

#[test]
fn single_writer_is_not_delayed() {
    let dir = tempdir();
    let mut o = opts(dir.path());
    o.max_commit_delay = Duration::from_secs(1);
    let (db, _) = Ibdb::open(o).unwrap();
    // The first batch waits (for max_open_TAs or the delay); after a batch
    // of one the target is one commit.
    db.commit(&accept(0, 1)).wait().unwrap();
    let t0 = Instant::now();
    for n in 1..5 {
        db.commit(&accept(n, 1)).wait().unwrap();
    }
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(db.stats().syncs, 5);
}

#[test]
fn completion_can_be_awaited_and_received() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    block_on(async {
        db.commit(&accept(1, 1)).await.unwrap();
        let (a, b) = (db.commit(&accept(2, 1)), db.commit(&accept(3, 1)));
        a.await.unwrap();
        b.await.unwrap();
    });
    let rx = db.commit(&accept(4, 1)).into_receiver();
    rx.blocking_recv().unwrap().unwrap();
    let report = block_on(db.cleanup()).unwrap();
    assert!(report.removed.is_empty());
    drop(db);
    let (_, rec) = Ibdb::open(o).unwrap();
    assert_eq!(rec.open.len(), 4);
}

#[test]
fn dropping_the_last_handle_writes_queued_commits() {
    let dir = tempdir();
    let mut o = opts(dir.path());
    o.max_commit_delay = Duration::from_secs(10);
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    let clone = db.clone();
    // Not waited for: shutdown must still write them (without waiting for
    // the delay).
    for n in 0..50 {
        drop(clone.commit(&accept(n, 1)));
    }
    let t0 = Instant::now();
    drop(clone);
    drop(db);
    assert!(t0.elapsed() < Duration::from_secs(5));
    let (_, rec) = Ibdb::open(o).unwrap();
    assert_eq!(rec.open.len(), 50);
}

#[test]
fn close_then_commit_is_refused() {
    let dir = tempdir();
    let (db, _) = Ibdb::open(opts(dir.path())).unwrap();
    let clone = db.clone();
    let pending = db.commit(&accept(1, 1));
    db.close().unwrap();
    pending.wait().unwrap();
    assert!(matches!(
        clone.commit(&accept(2, 1)).wait(),
        Err(IbdbError::Closed)
    ));
    assert!(matches!(clone.cleanup().wait(), Err(IbdbError::Closed)));
    // Closing twice is fine.
    clone.close().unwrap();
}

#[test]
fn empty_commit_completes_at_once() {
    let dir = tempdir();
    let (db, _) = Ibdb::open(opts(dir.path())).unwrap();
    db.commit(&[]).wait().unwrap();
    assert_eq!(db.stats().syncs, 0);
}

#[test]
fn invalid_record_fails_the_whole_commit_at_once() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    let mut recs = accept(1, 3);
    if let Record::Recipient(r) = &mut recs[2] {
        r.address = "x".repeat(MAX_ADDRESS + 1);
    }
    match db.commit(&recs).wait() {
        Err(e @ IbdbError::Invalid { index: 2, .. }) => {
            assert_eq!(e.class(), smx_store::defedb::ErrorClass::Permanent);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.stats().syncs, 0);
    drop(db);
    let (_, rec) = Ibdb::open(o).unwrap();
    assert!(rec.open.is_empty());
}

#[test]
fn a_large_transaction_is_one_atomic_commit() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    db.commit(&accept(7, 5000)).wait().unwrap();
    assert_eq!(db.stats().syncs, 1);
    drop(db);
    let (_, rec) = Ibdb::open(o).unwrap();
    assert_eq!(rec.open.len(), 1);
    assert_eq!(rec.open[0].open.len(), 5000);
    assert_eq!(rec.open[0].open[4999], recipient(7, 4999));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempdir();
    let o = opts(dir.path());
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    assert!(matches!(
        Ibdb::open(o.clone()),
        Err(IbdbError::Locked { .. })
    ));
    drop(db);
    Ibdb::open(o).unwrap();
}

#[test]
fn options_are_checked() {
    let dir = tempdir();
    let mut o = opts(dir.path());
    o.max_open_tas = 0;
    assert!(matches!(Ibdb::open(o), Err(IbdbError::Options(_))));
}

#[test]
fn the_handle_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Ibdb>();
    fn check_send<T: Send>() {}
    check_send::<smx_store::ibdb::Completion<()>>();
}

/// Envelopes committed after unsynced content: each batch holding one
/// syncs the content's file system once (two directories on one file
/// system count once), plain commits never do, and without `content_fs`
/// the call is a plain commit. A content directory that cannot be opened
/// is an error at open.
#[test]
fn content_is_synced_once_per_batch() {
    let dir = tempdir();
    let content = dir.path().join("cdb");
    std::fs::create_dir_all(content.join("0")).unwrap();
    let mut o = opts(&dir.path().join("log"));
    o.content_fs = vec![content.clone(), content.join("0")];
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    db.commit(&accept(0, 1)).wait().unwrap();
    assert_eq!(db.stats().content_syncs, 0);
    db.commit_after_content(&accept(1, 1)).wait().unwrap();
    assert_eq!(db.stats().content_syncs, 1, "one file system, one syncfs");
    std::thread::scope(|s| {
        for t in 0..50u64 {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..10 {
                    let n = 100 + t * 100 + i;
                    if t % 2 == 0 {
                        db.commit_after_content(&accept(n, 1)).wait().unwrap();
                    } else {
                        db.commit(&accept(n, 1)).wait().unwrap();
                    }
                }
            });
        }
    });
    let st = db.stats();
    assert_eq!(st.commits, 502);
    assert!(st.content_syncs >= 2, "{st:?}");
    assert!(
        st.content_syncs <= st.syncs && st.content_syncs < 251,
        "at most one per batch, shared by the batch: {st:?}"
    );
    db.close().unwrap();

    let mut o2 = opts(&dir.path().join("log2"));
    o2.content_fs = Vec::new();
    let (db, _) = Ibdb::open(o2).unwrap();
    db.commit_after_content(&accept(1, 1)).wait().unwrap();
    assert_eq!(db.stats().content_syncs, 0);
    db.close().unwrap();

    o.content_fs = vec![dir.path().join("missing")];
    assert!(matches!(Ibdb::open(o), Err(IbdbError::Io { .. })));
}
