//! The life of a message's content through the public CDB API, as the
//! processes use it: smtps writes and commits, qmgr counts references,
//! smtpc reads, the last release removes the file; and what recovery sees
//! after a crash left files behind.

use std::io::Read;
use std::sync::Arc;

use smx_store::cdb::{Cdb, CdbError, CdbOptions, ContentRefs, ErrorClass, Release, Removal};
use smx_store::id::TransactionId;

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn handles_can_cross_threads() {
    assert_send_sync::<Cdb>();
    assert_send::<smx_store::cdb::CdbWriter>();
    assert_send::<smx_store::cdb::CdbReader>();
    assert_send_sync::<CdbError>();
}

#[test]
fn accept_deliver_release() {
    let dir = tempfile::tempdir().unwrap();
    let cdb = Cdb::open(dir.path().join("q"), CdbOptions::default()).unwrap();
    let ta = TransactionId::new(0x0000_0000_407C_E492, 0);
    let message = b"From: a@example.org\r\nSubject: t\r\n\r\nhello\r\n".repeat(1000);

    // smtps: content arrives in network-sized pieces.
    let mut w = cdb.create(ta).unwrap();
    for piece in message.chunks(1460) {
        w.write(piece).unwrap();
    }
    assert_eq!(w.commit().unwrap(), message.len() as u64);

    // qmgr: three recipients refer to it.
    let mut refs = ContentRefs::new();
    refs.add(ta, 3);

    // smtpc: two deliveries read it concurrently.
    let cdb2 = cdb.clone();
    let msg = Arc::new(message);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cdb, msg) = (cdb2.clone(), Arc::clone(&msg));
            std::thread::spawn(move || {
                let mut r = cdb.open_reader(ta).unwrap();
                assert_eq!(r.size(), msg.len() as u64);
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                assert!(got == *msg);
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }

    // Delivered, bounced, expired: the last one removes the file.
    assert_eq!(cdb.release(&mut refs, ta).unwrap(), Release::Remaining(2));
    assert_eq!(cdb.release(&mut refs, ta).unwrap(), Release::Remaining(1));
    assert!(cdb.path_of(ta).exists());
    assert_eq!(cdb.release(&mut refs, ta).unwrap(), Release::Last);
    assert!(!cdb.path_of(ta).exists());
    let err = cdb.open_reader(ta).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[test]
fn recovery_sees_what_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("q");
    let committed = TransactionId::new(0x100, 1);
    let partial = TransactionId::new(0x101, 1);
    {
        let cdb = Cdb::open(&base, CdbOptions::default()).unwrap();
        let mut w = cdb.create(committed).unwrap();
        w.write(b"done").unwrap();
        w.commit().unwrap();
        let mut w = cdb.create(partial).unwrap();
        w.write(b"half").unwrap();
        // A crash: the writer's drop never runs.
        std::mem::forget(w);
    }
    std::fs::write(base.join("3").join("core"), b"").unwrap();

    // The next run opens the same directories and lists both files; which
    // one is an orphan is for IBDB recovery to decide.
    let cdb = Cdb::open(&base, CdbOptions::default()).unwrap();
    let listing = cdb.list().unwrap();
    assert_eq!(listing.ids, [committed, partial]);
    assert_eq!(listing.foreign, [base.join("3").join("core")]);
    assert_eq!(cdb.remove(partial).unwrap(), Removal::Removed);
    assert_eq!(cdb.remove(partial).unwrap(), Removal::Missing);
    assert_eq!(cdb.list().unwrap().ids, [committed]);
}
