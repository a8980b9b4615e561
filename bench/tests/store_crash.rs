//! Crash test of the durable queue under process death: a child process
//! commits transactions (content in CDB, then the envelope in IBDB) from
//! several threads and is killed with SIGKILL at random moments, at least
//! 200 times. After every
//! kill, recovery must return every transaction whose commit was
//! acknowledged, with all its recipients and intact content; a transaction
//! acknowledged as closed must not come back (one whose close was under way
//! may come back open, complete, or not at all); and nothing recovered (even
//! if its acknowledgement was lost in the kill) may have damaged content.
//!
//! Set SMX_CRASH_SEED to replay a run; SMX_CRASH_KILLS to change the count.

use smx_bench::crashload;
use smx_store::cdb::{Cdb, CdbOptions};
use smx_store::ibdb::{self, Ibdb};
use smx_store::id::TransactionId;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn acknowledged_transactions_survive_sigkill() {
    let kills = env_u64("SMX_CRASH_KILLS").unwrap_or(200);
    let seed = env_u64("SMX_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    eprintln!("store crash test: {kills} kills, SMX_CRASH_SEED={seed}");
    // A real disk (not tmpfs), so that the file system paths are the real
    // ones. SIGKILL keeps the page cache, so this tests recovery and the
    // acknowledgement logic under process death; it cannot prove that an
    // fsync is there (power loss is not simulated).
    let dir = tempfile::Builder::new()
        .prefix("store-crash-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    if std::env::var_os("SMX_CRASH_KEEP").is_some() {
        eprintln!("store crash test: keeping {}", dir.path().display());
        let _kept = dir.path().to_owned();
        std::mem::forget(dir);
        return acknowledged_in(&_kept, kills, seed);
    }
    acknowledged_in(dir.path(), kills, seed);
}

fn acknowledged_in(dir: &std::path::Path, kills: u64, seed: u64) {
    let mut rng = Rng(seed);
    let child_bin = env!("CARGO_BIN_EXE_store_crash_child");

    let mut acked: BTreeSet<TransactionId> = BTreeSet::new();
    let mut closing: BTreeSet<TransactionId> = BTreeSet::new();
    let mut closed: BTreeSet<TransactionId> = BTreeSet::new();
    let mut recovered_unacked: BTreeSet<TransactionId> = BTreeSet::new();
    // Content is verified the first time a transaction is recovered and
    // then in a random sample each round (reading everything every round
    // would make the test quadratic).
    let mut verified: BTreeSet<TransactionId> = BTreeSet::new();
    let mut kills_with_acks = 0u64;
    let started = Instant::now();

    for round in 0..kills {
        let threads = rng.range(1, 9);
        let mut child = Command::new(child_bin)
            .arg(dir)
            .arg(threads.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start child");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let mut lines = Vec::new();
        if rng.range(0, 10) == 0 {
            // Sometimes while the child is still starting or recovering.
            std::thread::sleep(Duration::from_millis(rng.range(0, 30)));
        } else {
            // Usually in the middle of the load: after the first commit.
            if let Ok(l) = rx.recv_timeout(Duration::from_secs(10)) {
                lines.push(l);
            }
            std::thread::sleep(Duration::from_millis(rng.range(0, 60)));
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("wait for child");
        reader.join().expect("reader thread");
        lines.extend(rx.try_iter());
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        assert!(
            status.code().is_none(),
            "round {round}: the child exited by itself ({status}) instead of being killed: {err}"
        );
        let mut round_acks = 0;
        for l in &lines {
            let (kind, id) = l.split_once(' ').unwrap_or((l.as_str(), ""));
            let Ok(ta) = id.parse::<TransactionId>() else {
                // A line cut by the kill can only be the last one.
                continue;
            };
            match kind {
                "ACK" => {
                    acked.insert(ta);
                    round_acks += 1;
                }
                "CLOSING" => {
                    closing.insert(ta);
                }
                "CLOSED" => {
                    closed.insert(ta);
                }
                other => panic!("round {round}: unexpected child output {other:?}"),
            }
        }
        if round_acks > 0 {
            kills_with_acks += 1;
        }

        // Recover, as qmgr does at start.
        let mut opts = ibdb::Options::new(dir.join("ibdb"));
        opts.size = 256 * 1024;
        let (ibdb, recovery) = match Ibdb::open(opts) {
            Ok(x) => x,
            Err(e) => panic!("round {round}: recovery failed: {e} (seed {seed})"),
        };
        let cdb = Cdb::open(dir.join("cdb"), CdbOptions::default()).expect("open CDB");
        let open: HashMap<TransactionId, &ibdb::OpenTransaction> = recovery
            .open
            .iter()
            .map(|o| (o.transaction.id, o))
            .collect();
        for ta in &acked {
            if closed.contains(ta) {
                assert!(
                    !open.contains_key(ta),
                    "round {round}: {ta} was acknowledged closed but recovered open (seed {seed})"
                );
                continue;
            }
            if closing.contains(ta) && !open.contains_key(ta) {
                // The close commit was under way when the child died and
                // became durable; either state is correct.
                continue;
            }
            let Some(o) = open.get(ta) else {
                panic!("round {round}: acknowledged {ta} was not recovered (seed {seed})");
            };
            assert_eq!(
                o.open.len() as u32,
                crashload::nrcpts(*ta),
                "round {round}: {ta} recovered without all its recipients (seed {seed})"
            );
        }
        // Everything recovered has intact content, acknowledged or not.
        for (ta, o) in &open {
            if verified.contains(ta) && rng.range(0, 20) != 0 {
                continue;
            }
            verified.insert(*ta);
            let mut content = Vec::new();
            match cdb.open_reader(*ta) {
                Ok(mut r) => {
                    if let Err(e) = r.read_to_end(&mut content) {
                        panic!("round {round}: reading {ta}: {e} (seed {seed})");
                    }
                }
                Err(e) => panic!("round {round}: recovered {ta} has no content: {e} (seed {seed})"),
            }
            assert!(
                content == crashload::content(*ta),
                "round {round}: recovered {ta} has damaged content (seed {seed})"
            );
            let (want, rcpts) = crashload::envelope(*ta, content.len() as u64);
            assert_eq!(o.transaction, want, "round {round}: {ta} envelope differs");
            assert_eq!(o.open, rcpts, "round {round}: {ta} recipients differ");
            if !acked.contains(ta) {
                recovered_unacked.insert(*ta);
            }
        }
        // Deliver most of what is open, as qmgr would, so that the log and
        // the content directories stay small and cleanup runs between kills.
        let finish: Vec<&ibdb::OpenTransaction> = recovery
            .open
            .iter()
            .filter(|_| rng.range(0, 4) != 0)
            .collect();
        let mut records = Vec::new();
        for o in &finish {
            for r in &o.open {
                records.push(ibdb::Record::Outcome {
                    rcpt: r.id,
                    outcome: ibdb::Outcome::Delivered,
                });
            }
            records.push(ibdb::Record::Closed(o.transaction.id));
        }
        if let Err(e) = ibdb.commit(&records).wait() {
            panic!("round {round}: closing recovered transactions: {e}");
        }
        for o in &finish {
            let ta = o.transaction.id;
            closed.insert(ta);
            let _gone = cdb.remove(ta).expect("remove delivered content");
        }
        ibdb.close().expect("close IBDB");
    }
    let open_acked = acked.difference(&closed).count();
    eprintln!(
        "store crash test: {kills} kills ({kills_with_acks} during commits) in {:.1}s; \
         {} transactions acknowledged by the child, {} closed (by the child or after recovery), \
         {open_acked} acknowledged and open, all recovered; \
         {} commits recovered whose acknowledgement the kill cut off",
        started.elapsed().as_secs_f64(),
        acked.len(),
        closed.len(),
        recovered_unacked.len(),
    );
    assert!(
        kills_with_acks >= kills * 3 / 4,
        "only {kills_with_acks} of {kills} kills came after a commit: the test did not exercise recovery"
    );
    assert!(
        acked.len() > 1000,
        "only {} commits were acknowledged",
        acked.len()
    );
}
