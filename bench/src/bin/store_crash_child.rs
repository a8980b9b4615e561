//! The child of the store crash test (bench/tests/store_crash.rs): commits
//! transactions — content in CDB, envelope in IBDB — from several threads
//! until it is killed, and prints `ACK <ta>` after each commit was
//! acknowledged durable, `CLOSING <ta>` before it commits a transaction's
//! outcome and closing records, and `CLOSED <ta>` after that commit was
//! acknowledged.
//!
//! Usage: store_crash_child DIR THREADS

use anyhow::Context;
use smx_bench::crashload;
use smx_store::cdb::{Cdb, CdbOptions};
use smx_store::ibdb::{self, Ibdb, Outcome, Record};
use smx_store::id::IdSource;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: store_crash_child DIR THREADS")?,
    );
    let threads: usize = args.next().context("THREADS")?.parse()?;
    let ids = Arc::new(IdSource::open(dir.join("ids"))?);
    let cdb = Cdb::open(dir.join("cdb"), CdbOptions::default())?;
    let mut opts = ibdb::Options::new(dir.join("ibdb"));
    // Small files so that rotation and cleanup happen under the kills.
    opts.size = 256 * 1024;
    opts.max_commit_delay = std::time::Duration::from_millis(1);
    opts.content_fs = cdb.content_dirs();
    let (ibdb, _recovery) = Ibdb::open(opts)?;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut handles = Vec::new();
    for t in 0..threads {
        let (ids, cdb, ibdb, out) = (ids.clone(), cdb.clone(), ibdb.clone(), out.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let mut n = 0u64;
            loop {
                let ta = ids.next_transaction(0)?;
                let content = crashload::content(ta);
                let mut w = cdb.create(ta)?;
                // Arrives in uneven chunks, as SMTP data does.
                for chunk in content.chunks(1000 + 97 * t) {
                    w.write(chunk)?;
                }
                // Odd threads as smtps does (content synced by the
                // envelope's group commit), even ones with a per-file
                // fsync (as qmgr writes DSNs).
                let group = t % 2 == 1;
                let size = if group { w.finish()? } else { w.commit()? };
                let (tx, rcpts) = crashload::envelope(ta, size);
                let mut records = vec![Record::Transaction(tx)];
                records.extend(rcpts.iter().cloned().map(Record::Recipient));
                if group {
                    ibdb.commit_after_content(&records).wait()?;
                } else {
                    ibdb.commit(&records).wait()?;
                }
                say(&out, &format!("ACK {ta}"))?;
                n += 1;
                // Every third transaction is delivered and closed, so that
                // IBDB cleanup and CDB removal run under the kills too.
                if n.is_multiple_of(3) {
                    // Announced before the commit: if the kill comes before
                    // CLOSED, the transaction may be open or closed.
                    say(&out, &format!("CLOSING {ta}"))?;
                    let mut done: Vec<Record> = rcpts
                        .iter()
                        .map(|r| Record::Outcome {
                            rcpt: r.id,
                            outcome: Outcome::Delivered,
                        })
                        .collect();
                    done.push(Record::Closed(ta));
                    ibdb.commit(&done).wait()?;
                    say(&out, &format!("CLOSED {ta}"))?;
                    let _gone = cdb.remove(ta)?;
                }
            }
        }));
    }
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("a writer thread panicked"),
        }
    }
    Ok(())
}

fn say(out: &Mutex<std::io::Stdout>, line: &str) -> std::io::Result<()> {
    let out = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = out.lock();
    writeln!(out, "{line}")?;
    out.flush()
}
