//! IBDB recovery of damaged logs: a torn tail is discarded with a warning,
//! everything else is refused loudly and the file set aside.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ibdb_support;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ibdb_support::*;
use smx_store::ibdb::format::{FrameBuilder, HEADER_LEN, frame_crc};
use smx_store::ibdb::{Damage, Ibdb, IbdbError, Options, Record, RecoveryWarning};
use smx_store::id::TransactionId;

/// A log of one file holding three frames (transactions 1, 2, 3, one
/// recipient each), written without preallocation, and the offsets where
/// the header and each frame end.
struct Template {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ends: [u64; 4],
}

fn template() -> Template {
    let tmp = tempdir();
    let mut o = opts(tmp.path());
    o.prealloc_chunk = 0;
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    let file = o.dir.join("0000000000000001.ibdb");
    let len = || std::fs::metadata(&file).unwrap().len();
    let mut ends = [len(), 0, 0, 0];
    for n in 1..=3 {
        db.commit(&accept(n, 1)).wait().unwrap();
        ends[n as usize] = len();
    }
    db.close().unwrap();
    assert_eq!(ends[0], HEADER_LEN as u64);
    Template {
        _dir: tmp,
        dir: o.dir,
        ends,
    }
}

/// A fresh copy of the template's directory, and options for it.
fn copy(t: &Template) -> (tempfile::TempDir, Options, PathBuf) {
    let tmp = tempdir();
    let o = opts(tmp.path());
    copy_dir(&t.dir, &o.dir);
    let file = o.dir.join("0000000000000001.ibdb");
    (tmp, o, file)
}

fn open_ids(o: &Options) -> Result<(Vec<TransactionId>, Vec<RecoveryWarning>), IbdbError> {
    let (db, rec) = Ibdb::open(o.clone())?;
    db.close().unwrap();
    Ok((
        rec.open.iter().map(|t| t.transaction.id).collect(),
        rec.warnings,
    ))
}

fn flip(path: &Path, at: u64, mask: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ mask], at).unwrap();
}

/// Recomputes the checksum of a frame for its place.
fn reseal(frame: &mut [u8], seq: u64, offset: u64) {
    let n = frame.len();
    let crc = frame_crc(seq, offset, &frame[2..n - 4]);
    frame[n - 4..].copy_from_slice(&crc.to_be_bytes());
}

fn frame_of(recs: &[Record], seq: u64, offset: u64) -> Vec<u8> {
    let mut fb = FrameBuilder::default();
    fb.begin();
    for r in recs {
        r.encode(&mut fb.buf).unwrap();
    }
    fb.finish(seq, offset).unwrap().to_vec()
}

fn assert_corrupt(
    r: Result<(Vec<TransactionId>, Vec<RecoveryWarning>), IbdbError>,
    file: &Path,
    want_offset: u64,
) -> Damage {
    match r {
        Err(IbdbError::Corrupt {
            path,
            offset,
            moved_to,
            detail,
        }) => {
            assert_eq!(path, file);
            assert_eq!(offset, want_offset, "{detail}");
            assert!(!file.exists(), "the file is moved away");
            assert!(moved_to.exists());
            assert_eq!(moved_to.parent().unwrap().file_name().unwrap(), "corrupt");
            detail
        }
        other => panic!("expected Corrupt at {want_offset}, got {other:?}"),
    }
}

#[test]
fn truncation_anywhere_in_the_last_frames_is_a_torn_tail() {
    let t = template();
    let [_, e1, _, e3] = t.ends;
    for cut in e1..=e3 {
        for zero_fill in [false, true] {
            let (_tmp, o, file) = copy(&t);
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            if zero_fill {
                // As in a preallocated file: the rest of the batch never
                // reached the disk.
                f.write_all_at(&vec![0u8; (e3 - cut) as usize + 4096], cut)
                    .unwrap();
            } else {
                f.set_len(cut).unwrap();
            }
            drop(f);
            let ctx = format!("cut {cut} zero_fill {zero_fill}");
            let (ids, warnings) = open_ids(&o).expect(&ctx);
            let whole: Vec<_> = (1..=3)
                .filter(|&n| t.ends[n as usize] <= cut)
                .map(ta)
                .collect();
            assert_eq!(ids, whole, "{ctx}");
            let boundary = t.ends.iter().copied().filter(|&e| e <= cut).max().unwrap();
            if boundary == cut {
                assert!(warnings.is_empty(), "{ctx}: {warnings:?}");
            } else {
                match warnings.as_slice() {
                    [RecoveryWarning::TornTail { path, offset, len }] => {
                        assert_eq!((path, *offset), (&file, boundary), "{ctx}");
                        assert!(*len > 0 && *len <= cut - boundary, "{ctx}: {len}");
                    }
                    w => panic!("{ctx}: {w:?}"),
                }
            }
            // The next start agrees: the torn file is now an older file
            // whose end the next file's header records.
            let (again, warnings) = open_ids(&o).expect(&ctx);
            assert_eq!(again, whole, "{ctx}");
            assert!(
                warnings
                    .iter()
                    .all(|w| matches!(w, RecoveryWarning::DiscardedTail { offset, .. } if *offset == boundary)),
                "{ctx}: {warnings:?}"
            );
        }
    }
}

#[test]
fn any_flipped_byte_in_a_middle_frame_is_corruption() {
    let t = template();
    let [e0, e1, e2, _] = t.ends;
    let positions = (e1..e2).chain([e0, e0 + 1, e0 + 7, e0 + 30, e1 - 1]);
    for (k, at) in positions.enumerate() {
        let (_tmp, o, file) = copy(&t);
        flip(&file, at, [0x01, 0x80, 0xFF][k % 3]);
        // The damaged frame, and the valid one after it.
        let (frame_start, next) = if at < e1 { (e0, e1) } else { (e1, e2) };
        let detail = assert_corrupt(open_ids(&o), &file, frame_start);
        assert!(
            matches!(detail, Damage::DamagedFrame { valid_frame_at, .. } if valid_frame_at == next),
            "byte {at}: {detail}"
        );
        // Nothing else is touched, and the next start goes on without the
        // file.
        let (ids, _) = open_ids(&o).unwrap();
        assert!(ids.is_empty());
        assert_eq!(std::fs::read_dir(o.dir.join("corrupt")).unwrap().count(), 1);
    }
}

#[test]
fn damage_to_the_last_frame_reads_as_a_torn_tail() {
    // Indistinguishable from a torn write: only the last frame can be one.
    let t = template();
    let [_, _, e2, e3] = t.ends;
    for at in e2..e3 {
        let (_tmp, o, file) = copy(&t);
        flip(&file, at, 0x10);
        let (ids, warnings) = open_ids(&o).unwrap();
        assert_eq!(ids, [ta(1), ta(2)], "byte {at}");
        assert!(
            matches!(warnings.as_slice(), [RecoveryWarning::TornTail { offset, .. }] if *offset == e2),
            "byte {at}: {warnings:?}"
        );
    }
}

#[test]
fn a_zeroed_middle_frame_or_a_huge_length_is_handled() {
    let t = template();
    let [_, e1, e2, _] = t.ends;
    let (_tmp, o, file) = copy(&t);
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.write_all_at(&vec![0u8; (e2 - e1) as usize], e1).unwrap();
    let detail = assert_corrupt(open_ids(&o), &file, e1);
    assert!(
        matches!(detail, Damage::DamagedFrame { valid_frame_at, .. } if valid_frame_at == e2),
        "{detail}"
    );

    // A length of 4 GiB in the last frame: refused without allocating.
    let (_tmp, o, file) = copy(&t);
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.write_all_at(&[0xFF; 4], e2 + 2).unwrap();
    let (ids, warnings) = open_ids(&o).unwrap();
    assert_eq!(ids, [ta(1), ta(2)]);
    assert_eq!(warnings.len(), 1);
}

#[test]
fn any_flipped_byte_in_the_header_is_refused() {
    let t = template();
    for at in 0..HEADER_LEN as u64 {
        let (_tmp, o, file) = copy(&t);
        flip(&file, at, 0x04);
        let r = open_ids(&o);
        // The version byte too: with it put back the checksum matches, so a
        // flip there is damage, not a newer format.
        let detail = assert_corrupt(r, &file, 0);
        assert!(matches!(detail, Damage::Header(_)), "byte {at}: {detail}");
    }
}

#[test]
fn unknown_versions_are_refused_with_a_clear_error() {
    let t = template();
    let [_, _, e2, e3] = t.ends;
    let (_tmp, o, file) = copy(&t);
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    // A consistent header of version 2: version byte and its checksum.
    let mut header = std::fs::read(&file).unwrap()[..HEADER_LEN].to_vec();
    header[8] = 2;
    let crc = crc32c::crc32c(&header[..40]).to_be_bytes();
    header[40..44].copy_from_slice(&crc);
    f.write_all_at(&header, 0).unwrap();
    let e = open_ids(&o).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("unsupported format version 2"), "{msg}");
    assert!(msg.contains("this smx reads version 1"), "{msg}");
    assert!(msg.contains("0000000000000001.ibdb"), "{msg}");
    assert_eq!(e.class(), smx_store::defedb::ErrorClass::Permanent);
    assert!(file.exists());

    // A frame of another version with a valid checksum.
    let (_tmp, o, file) = copy(&t);
    let mut frame = std::fs::read(&file).unwrap()[e2 as usize..e3 as usize].to_vec();
    frame[6] = 2;
    reseal(&mut frame, 1, e2);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .write_all_at(&frame, e2)
        .unwrap();
    match open_ids(&o) {
        Err(IbdbError::UnsupportedVersion {
            offset, version: 2, ..
        }) => assert_eq!(offset, e2),
        other => panic!("{other:?}"),
    }
    assert!(file.exists());
}

#[test]
fn valid_frames_that_do_not_decode_are_corruption() {
    let t = template();
    let [.., e3] = t.ends;
    // Unknown frame type.
    let (_tmp, o, file) = copy(&t);
    let mut frame = frame_of(&accept(9, 1), 1, e3);
    frame[7] = 7;
    reseal(&mut frame, 1, e3);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .write_all_at(&frame, e3)
        .unwrap();
    let detail = assert_corrupt(open_ids(&o), &file, e3);
    assert_eq!(detail, Damage::FrameType(7));
    // Unknown record type inside a valid frame.
    let (_tmp, o, file) = copy(&t);
    let mut fb = FrameBuilder::default();
    fb.begin();
    Record::Closed(ta(1)).encode(&mut fb.buf).unwrap();
    fb.buf.extend_from_slice(&[9, 0, 0, 0, 0]);
    let frame = fb.finish(1, e3).unwrap().to_vec();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .write_all_at(&frame, e3)
        .unwrap();
    let detail = assert_corrupt(open_ids(&o), &file, e3 + 8 + 5 + 19);
    assert!(matches!(detail, Damage::Record(_)), "{detail}");
}

/// Files 1 and 2, one transaction each, with 2's header recording 1's end.
fn two_files() -> (tempfile::TempDir, Options, PathBuf, u64) {
    let tmp = tempdir();
    let mut o = opts(tmp.path());
    o.size = 1;
    o.prealloc_chunk = 0;
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    db.commit(&accept(1, 1)).wait().unwrap();
    db.commit(&accept(2, 1)).wait().unwrap();
    db.close().unwrap();
    let files = log_files(&o.dir);
    assert_eq!(files.len(), 3);
    let first = files[0].clone();
    let end = std::fs::metadata(&first).unwrap().len();
    (tmp, o, first, end)
}

#[test]
fn a_torn_tail_in_an_older_file_is_corruption() {
    // The next file records where the older one ends.
    let (_tmp, o, first, end) = two_files();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(end - 3)
        .unwrap();
    let detail = assert_corrupt(open_ids(&o), &first, HEADER_LEN as u64);
    assert!(
        matches!(detail, Damage::BeforeRecordedEnd { recorded_end, error: Some(_) } if recorded_end == end),
        "{detail}"
    );
    let (ids, _) = open_ids(&o).unwrap();
    assert_eq!(ids, [ta(2)]);

    // The next file is gone (cleanup): the older file must end cleanly.
    let tmp = tempdir();
    let mut o = opts(tmp.path());
    o.size = 1;
    o.prealloc_chunk = 0;
    let (db, _) = Ibdb::open(o.clone()).unwrap();
    db.commit(&accept(1, 1)).wait().unwrap();
    db.commit(&accept(2, 1)).wait().unwrap();
    db.commit(&[Record::Closed(ta(2))]).wait().unwrap();
    db.cleanup().wait().unwrap();
    db.close().unwrap();
    let files = log_files(&o.dir);
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["0000000000000001.ibdb", "0000000000000004.ibdb"]);
    let len = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let detail = assert_corrupt(open_ids(&o), &files[0], HEADER_LEN as u64);
    assert!(
        matches!(detail, Damage::TornTailNotNewest { .. }),
        "{detail}"
    );
}

#[test]
fn bytes_after_the_recorded_end_are_ignored() {
    // A batch that failed (its commits got an error) may still be on disk
    // after the end recorded by the next file: it is not replayed.
    let (_tmp, o, first, end) = two_files();
    let frame = frame_of(&accept(99, 1), 1, end);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .write_all_at(&frame, end)
        .unwrap();
    for _ in 0..2 {
        let (ids, warnings) = open_ids(&o).unwrap();
        assert_eq!(ids, [ta(1), ta(2)]);
        assert_eq!(
            warnings,
            [RecoveryWarning::DiscardedTail {
                path: first.clone(),
                offset: end,
                len: frame.len() as u64
            }]
        );
    }
    // A frame crossing the recorded end is damage.
    let (_tmp, o, first, end) = two_files();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(end - 1)
        .unwrap();
    let next = o.dir.join("0000000000000002.ibdb");
    let mut header =
        smx_store::ibdb::format::FileHeader::decode(&std::fs::read(&next).unwrap()).unwrap();
    header.prev_len = end - 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&next)
        .unwrap()
        .write_all_at(&header.encode(), 0)
        .unwrap();
    let detail = assert_corrupt(open_ids(&o), &first, HEADER_LEN as u64);
    assert!(
        matches!(detail, Damage::BeforeRecordedEnd { .. }),
        "{detail}"
    );
}

#[test]
fn a_file_whose_header_names_another_sequence_number_is_corruption() {
    let t = template();
    let (_tmp, o, file) = copy(&t);
    let other = o.dir.join("0000000000000007.ibdb");
    std::fs::rename(&file, &other).unwrap();
    let detail = assert_corrupt(open_ids(&o), &other, 0);
    assert_eq!(detail, Damage::SeqMismatch { header: 1 });
    // The set-aside file's number is not reused.
    let (db, _) = Ibdb::open(o).unwrap();
    assert_eq!(db.stats().current_file, 8);
}
