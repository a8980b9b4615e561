//! Throughput of the operations qmgr runs most, printed, not asserted.
//! Ignored by default (they take a while and measure the disk):
//!
//! ```text
//! cargo test --release -p smx-store --test defedb_rates -- --ignored --nocapture
//! ```
//!
//! `SMX_BENCH_DIR` chooses the directory (default: the system temp dir).

// Helpers outside `#[test]` functions unwrap too: in a test crate a failed
// unwrap is a failed test, which is what clippy.toml allows in tests.
#![allow(clippy::unwrap_used)]

mod defedb_support;

use std::ops::ControlFlow;
use std::time::Instant;

use defedb_support::{entry, rid};
use smx_store::defedb::{Defedb, DeferredRecipient, FILE_NAME};

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("SMX_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Entry `n`: 10 recipients per transaction, 100 domains, 1,000 senders,
/// next tries spread over a day.
fn nth(n: u64) -> DeferredRecipient {
    let id = rid(0x4000_0000 + n / 10, (n % 10) as u32);
    let address = format!("user{n}@domain{}.example", n % 100);
    let sender = format!("sender{}@origin.example", n % 1000);
    entry(
        id,
        1_700_000_000 + (n * 7919) % 86_400,
        &address,
        &sender,
        1_700_000_000_000_000 + n * 1000,
    )
}

fn rate(what: &str, n: u64, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("{what}: {n} in {:.3} s = {:.0}/s", s, n as f64 / s);
}

#[test]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
fn put_and_due_rates() {
    let dir = tempdir();
    let path = dir.path().join(FILE_NAME);
    let db = Defedb::open(&path).unwrap();

    // Single-entry commits: the latency of one durable put.
    let t = Instant::now();
    for n in 0..200 {
        db.put(&[nth(n)]).unwrap();
    }
    rate("put, batches of 1 (commits)", 200, t);

    // 10,000 recipients in batches of 100.
    let t = Instant::now();
    for b in 0..100u64 {
        let batch: Vec<_> = (b * 100..(b + 1) * 100).map(|n| nth(1_000 + n)).collect();
        db.put(&batch).unwrap();
    }
    rate("put, batches of 100 (recipients)", 10_000, t);

    // Replace (reschedule) 10,000 in batches of 100: moves the due key.
    let t = Instant::now();
    for b in 0..100u64 {
        let batch: Vec<_> = (b * 100..(b + 1) * 100)
            .map(|n| {
                let mut e = nth(1_000 + n);
                e.next_try += 3600;
                e.tries += 1;
                e
            })
            .collect();
        db.put(&batch).unwrap();
    }
    rate("reschedule, batches of 100 (recipients)", 10_000, t);

    // Fill to 100,000 in batches of 1,000.
    let t = Instant::now();
    let have = db.len().unwrap();
    let mut n = 20_000u64;
    let mut len = have;
    while len < 100_000 {
        let k = (100_000 - len).min(1_000);
        let batch: Vec<_> = (n..n + k).map(nth).collect();
        db.put(&batch).unwrap();
        n += k;
        len += k;
    }
    assert_eq!(db.len().unwrap(), 100_000);
    rate(
        "put, batches of 1,000 (recipients)",
        db.len().unwrap() - have,
        t,
    );
    let size = std::fs::metadata(&path).unwrap().len();
    println!("file size at 100,000 entries: {:.1} MB", size as f64 / 1e6);

    let t = Instant::now();
    let due = db.due(u64::MAX, usize::MAX).unwrap();
    assert_eq!(due.entries.len(), 100_000);
    rate("due() over all 100,000 (entries decoded)", 100_000, t);

    let t = Instant::now();
    let mut rounds = 0;
    while t.elapsed().as_secs_f64() < 1.0 {
        assert_eq!(db.due(u64::MAX, 1_000).unwrap().entries.len(), 1_000);
        rounds += 1;
    }
    rate("due(limit 1,000) calls", rounds, t);

    let t = Instant::now();
    let mut k = 0;
    db.for_each_by_domain("domain7.example", |_| {
        k += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(k, 1_000);
    rate("for_each_by_domain (1% of entries)", k, t);

    let t = Instant::now();
    let mut k = 0;
    db.for_each_by_age(.., |_| {
        k += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    rate("for_each_by_age over all", k, t);

    let t = Instant::now();
    let first = db.next_due().unwrap();
    assert!(first.is_some());
    println!("next_due: {:?}", t.elapsed());

    // Remove 10,000 in batches of 100 (delivered after a retry).
    let t = Instant::now();
    for b in 0..100u64 {
        let ids: Vec<_> = (b * 100..(b + 1) * 100)
            .map(|n| nth(20_000 + n).id())
            .collect();
        assert_eq!(db.remove(&ids).unwrap(), 100);
    }
    rate("remove, batches of 100 (recipients)", 10_000, t);
}
