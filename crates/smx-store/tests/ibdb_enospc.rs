//! IBDB on a full disk: a small tmpfs (mounting needs root; the test is
//! skipped, with a message, where `mount` fails). Every commit of a failed
//! batch gets the error; acknowledged commits survive; once space is
//! freed the same handle works again on a new file.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ibdb_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use ibdb_support::*;
use smx_store::ibdb::{Ibdb, IbdbError};

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_enospc(e: &IbdbError) -> bool {
    e.io_error().and_then(|e| e.raw_os_error()) == Some(nix::libc::ENOSPC)
}

#[test]
fn a_full_disk_fails_every_commit_of_the_batch_and_recovers() {
    let tmp = tempdir();
    let Some(mount) = Mount::tmpfs(&tmp.path().join("mnt"), "256k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    };
    let mut o = opts(&mount.0);
    o.size = 1 << 20; // no rotation: only failures start new files
    o.prealloc_chunk = 8192;
    // Leave about 100 KiB for the log.
    let filler = mount.0.join("filler");
    std::fs::write(&filler, vec![1u8; 150 << 10]).unwrap();
    let (db, _) = Ibdb::open(o.clone()).unwrap();

    let acked = Mutex::new(HashSet::new());
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (db, acked, failed) = (db.clone(), &acked, &failed);
            s.spawn(move || {
                let mut errors = 0;
                for i in 0..100_000 {
                    let n = t << 32 | i;
                    match db.commit(&accept(n, 3)).wait() {
                        Ok(()) => {
                            acked.lock().unwrap().insert(ta(n));
                        }
                        Err(e) => {
                            failed.lock().unwrap().push((ta(n), e));
                            errors += 1;
                            if errors == 5 {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let acked = acked.into_inner().unwrap();
    let failed = failed.into_inner().unwrap();
    let st = db.stats();
    assert!(!acked.is_empty());
    assert_eq!(failed.len(), 40);
    // Every waiter of every failed batch got the error, and it is ENOSPC
    // (from the write, the preallocation, or creating the next file).
    assert_eq!(st.failed_commits, 40, "{st:?}");
    assert!(st.failed_batches >= 1 && st.failed_batches <= 40, "{st:?}");
    for (_, e) in &failed {
        assert!(is_enospc(e), "{e}");
        assert_eq!(e.class(), smx_store::defedb::ErrorClass::Temporary);
    }
    assert_eq!(st.commits as usize, acked.len());

    // Space comes back: the same handle writes again, to a new file.
    std::fs::remove_file(&filler).unwrap();
    db.commit(&accept(1 << 40, 1)).wait().unwrap();
    assert!(db.stats().files_created >= 2);
    db.close().unwrap();

    let (_, rec) = Ibdb::open(o).unwrap();
    let recovered: HashSet<_> = rec.open.iter().map(|t| t.transaction.id).collect();
    let failed_ids: HashSet<_> = failed.iter().map(|(id, _)| *id).collect();
    // Every acknowledged commit is recovered; a failed one never is here
    // (the new file recorded where the failed one's good frames end).
    for id in &acked {
        assert!(recovered.contains(id), "{id} acknowledged but lost");
    }
    assert!(recovered.contains(&ta(1 << 40)));
    assert!(
        recovered.is_disjoint(&failed_ids),
        "a failed commit was replayed"
    );
    assert_eq!(recovered.len(), acked.len() + 1);
    for t in &rec.open {
        assert_eq!(t.open.len(), 3.min(t.transaction.nrcpts as usize));
    }
}
