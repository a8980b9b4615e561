//! Helpers shared by the IBDB integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use smx_store::envelope::{Recipient, Transaction};
use smx_store::ibdb::{Options, Outcome, Record};
use smx_store::id::{RecipientId, TransactionId};

/// A temporary directory on the same file system as the build (not /tmp,
/// which may be tmpfs).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// Options for tests: quick batches, no large preallocation.
pub fn opts(dir: &Path) -> Options {
    let mut o = Options::new(dir.join("ibdb"));
    o.max_commit_delay = Duration::from_micros(200);
    o.prealloc_chunk = 4096;
    o
}

pub fn ta(n: u64) -> TransactionId {
    TransactionId::new(0x1000_0000 + n, 1)
}

pub fn rcpt(n: u64, i: u32) -> RecipientId {
    RecipientId::new(ta(n), i).expect("index")
}

pub fn transaction(n: u64, nrcpts: u32) -> Transaction {
    Transaction {
        id: ta(n),
        sender: format!("sender{n}@example.org"),
        params: "SIZE=1000 BODY=8BITMIME".into(),
        size: 1000 + n,
        arrival_us: 1_700_000_000_000_000 + n,
        nrcpts,
    }
}

pub fn recipient(n: u64, i: u32) -> Recipient {
    Recipient {
        id: rcpt(n, i),
        address: format!("rcpt{i}.of.{n}@example.net"),
        params: if i.is_multiple_of(2) {
            String::new()
        } else {
            "NOTIFY=FAILURE".into()
        },
    }
}

/// A transaction record and its recipient records: one commit.
pub fn accept(n: u64, nrcpts: u32) -> Vec<Record> {
    let mut v = vec![Record::Transaction(transaction(n, nrcpts))];
    v.extend((0..nrcpts).map(|i| Record::Recipient(recipient(n, i))));
    v
}

pub fn outcome(n: u64, i: u32, outcome: Outcome) -> Record {
    Record::Outcome {
        rcpt: rcpt(n, i),
        outcome,
    }
}

/// The log files in the IBDB directory, ascending.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "ibdb"))
        .collect();
    v.sort();
    v
}

/// Copies every regular file of `from` (not subdirectories) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
        }
    }
}
