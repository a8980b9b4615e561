//! Group commit throughput with 1, 10 and 100 writer threads. Ignored by
//! default (it measures the disk); run with
//! `cargo test --release -p smx-store --test ibdb_throughput -- --ignored --nocapture`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ibdb_support;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use ibdb_support::*;
use smx_store::ibdb::Ibdb;

fn run(writers: usize, dur: Duration, prealloc: u64, delay_us: u64) {
    let dir = tempdir();
    let mut o = opts(dir.path());
    o.prealloc_chunk = prealloc;
    o.max_commit_delay = Duration::from_micros(delay_us);
    let (db, _) = Ibdb::open(o.clone()).expect("open");
    let barrier = Barrier::new(writers + 1);
    let start = std::sync::OnceLock::new();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..writers)
            .map(|w| {
                let db = db.clone();
                let barrier = &barrier;
                let start = &start;
                s.spawn(move || {
                    barrier.wait();
                    let t0: &Instant = start.get_or_init(Instant::now);
                    let mut n = 0u64;
                    while t0.elapsed() < dur {
                        let id = (w as u64) << 32 | n;
                        db.commit(&accept(id, 1)).wait().expect("commit");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        barrier.wait();
        hs.into_iter().map(|h| h.join().expect("join")).sum()
    });
    let el = start.get().expect("started").elapsed();
    let st = db.stats();
    db.close().expect("close");
    let t0 = Instant::now();
    let (_, rec) = Ibdb::open(o).expect("reopen");
    let recovery = t0.elapsed();
    assert_eq!(rec.open.len() as u64, total);
    println!(
        "  recovery of {} transactions ({} bytes) took {recovery:?}",
        rec.open.len(),
        st.bytes
    );
    println!(
        "writers={writers:3} prealloc={prealloc:8} delay={delay_us:5}us: {:8.0} commits/s, {:6.0} syncs/s, {:5.1} commits/sync, max batch {}",
        total as f64 / el.as_secs_f64(),
        st.syncs as f64 / el.as_secs_f64(),
        st.commits as f64 / st.syncs as f64,
        st.max_batch
    );
}

#[test]
#[ignore]
fn throughput() {
    let secs = std::env::var("IBDB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dur = Duration::from_secs(secs);
    for prealloc in [1 << 20, 0] {
        for writers in [1, 10, 100] {
            run(writers, dur, prealloc, 2000);
        }
    }
}
