//! Durable-queue benchmark. Prints, in one run on the same disk:
//!
//! * the raw rate of one fsync per file (create, write 4 KiB, fdatasync,
//!   close; one at a time): what a naive queue would do per message;
//! * IBDB commits/s (a transaction and one recipient record, durable) with
//!   1, 10 and 100 concurrent writers;
//! * full message commits/s (4 KiB content written to CDB, then the
//!   envelope committed to IBDB, whose batch first syncs the content's file
//!   system: both durable, as smtps and qmgr do it) with 1, 10 and 100
//!   concurrent writers;
//!
//! and each rate as a multiple of the raw rate measured just before it (the
//! speed of a shared disk drifts), then the headline case five more times
//! with its median ratio.
//!
//! Usage: `cargo run --release -p smx-bench --bin store_bench [DIR] [SECONDS]`
//! (DIR defaults to ./bench-store-tmp, which is removed afterwards; it must
//! not be on tmpfs).

use anyhow::{Context, bail};
use smx_bench::{on_memory_fs, one_fsync_per_file_rate};
use smx_store::cdb::{Cdb, CdbOptions};
use smx_store::envelope::{Recipient, Transaction};
use smx_store::ibdb::{self, Ibdb, Record};
use smx_store::id::{IdSource, RecipientId, TransactionId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WRITERS: [usize; 3] = [1, 10, 100];
const CONTENT: usize = 4096;

fn envelope(ta: TransactionId) -> anyhow::Result<Vec<Record>> {
    Ok(vec![
        Record::Transaction(Transaction {
            id: ta,
            sender: "sender@example.org".into(),
            params: "BODY=8BITMIME SIZE=4096".into(),
            size: CONTENT as u64,
            arrival_us: 0,
            nrcpts: 1,
        }),
        Record::Recipient(Recipient {
            id: RecipientId::new(ta, 0)?,
            address: "recipient@example.net".into(),
            params: "NOTIFY=FAILURE".into(),
        }),
    ])
}

/// Runs `writers` threads calling `op` until `secs` have passed; returns
/// operations per second.
fn run<F>(writers: usize, secs: f64, op: F) -> anyhow::Result<f64>
where
    F: Fn() -> anyhow::Result<()> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|_| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    op()?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("a writer thread panicked"),
        }
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn ibdb_rate(dir: &Path, writers: usize, secs: f64) -> anyhow::Result<f64> {
    let ids = Arc::new(IdSource::open(dir.join(format!("ids-ibdb-{writers}")))?);
    let (ibdb, _) = Ibdb::open(ibdb::Options::new(dir.join(format!("ibdb-{writers}"))))?;
    let rate = {
        let ibdb = ibdb.clone();
        run(writers, secs, move || {
            let ta = ids.next_transaction(0)?;
            ibdb.commit(&envelope(ta)?).wait()?;
            Ok(())
        })?
    };
    let stats = ibdb.stats();
    ibdb.close()?;
    eprintln!(
        "  ibdb, {writers} writers: {} commits in {} syncs (largest batch {})",
        stats.commits, stats.syncs, stats.max_batch
    );
    Ok(rate)
}

fn full_rate(dir: &Path, writers: usize, secs: f64) -> anyhow::Result<f64> {
    let ids = Arc::new(IdSource::open(dir.join(format!("ids-full-{writers}")))?);
    let cdb = Cdb::open(dir.join(format!("cdb-{writers}")), CdbOptions::default())?;
    let mut opts = ibdb::Options::new(dir.join(format!("ibdb-full-{writers}")));
    opts.content_fs = cdb.content_dirs();
    let (ibdb, _) = Ibdb::open(opts)?;
    let content = Arc::new(vec![b'm'; CONTENT]);
    let rate = {
        let ibdb = ibdb.clone();
        run(writers, secs, move || {
            // As smtps and qmgr do it: the content is written and closed,
            // and the envelope's group commit syncs it first.
            let ta = ids.next_transaction(0)?;
            let mut w = cdb.create(ta)?;
            w.write(&content)?;
            w.finish()?;
            ibdb.commit_after_content(&envelope(ta)?).wait()?;
            Ok(())
        })?
    };
    ibdb.close()?;
    Ok(rate)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "bench-store-tmp".into()));
    let secs: f64 = match args.next() {
        Some(s) => s.parse().context("SECONDS")?,
        None => 3.0,
    };
    if dir.exists() {
        bail!("{} exists; give a new directory", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    if on_memory_fs(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        bail!(
            "{} is on tmpfs: fsync costs nothing there; use a real disk",
            dir.display()
        );
    }
    let result = bench(&dir, secs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(dir: &Path, secs: f64) -> anyhow::Result<()> {
    println!("store benchmark in {} ({secs} s per case)", dir.display());
    // The disk's speed drifts (shared hosts): every case is measured right
    // after its own raw reference, and the ratio is taken pairwise.
    let raw_time = Duration::from_secs_f64(secs.min(2.0));
    let raw = |tag: &str| {
        one_fsync_per_file_rate(&dir.join(format!("raw-{tag}")), CONTENT, 100, raw_time)
    };
    println!(
        "{:<46} {:>10} {:>12} {:>7}",
        "case", "per second", "raw before", "x raw"
    );
    let line = |name: String, rate: f64, reference: f64| {
        println!(
            "{:<46} {:>10.0} {:>12.0} {:>6.1}x",
            name,
            rate,
            reference,
            rate / reference
        );
        rate / reference
    };
    for w in WRITERS {
        let reference = raw(&format!("ibdb-{w}"))?;
        let r = ibdb_rate(dir, w, secs)?;
        line(format!("IBDB commits, {w} writers"), r, reference);
    }
    for w in WRITERS {
        let reference = raw(&format!("full-{w}"))?;
        let r = full_rate(dir, w, secs)?;
        line(
            format!("full message commits (CDB+IBDB), {w} writers"),
            r,
            reference,
        );
    }
    // The headline ratio, repeated to see through the drift.
    let mut ratios = Vec::new();
    for i in 0..5 {
        let reference = raw(&format!("repeat-{i}"))?;
        let sub = dir.join(format!("repeat-{i}"));
        std::fs::create_dir_all(&sub)?;
        let r = full_rate(&sub, 100, secs)?;
        ratios.push(line(
            format!("full message commits, 100 writers, run {}", i + 1),
            r,
            reference,
        ));
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "full message commits at 100 writers: median {:.1}x raw (runs {:.1}x .. {:.1}x)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    println!(
        "targets: IBDB >= 50000 commits/s at 100 writers; full message commits >= 5x raw at 100 writers"
    );
    Ok(())
}
