//! Opening files that are not a DEFEDB of this version: each gives a clear
//! error, none panics.

// Helpers outside `#[test]` functions unwrap too: in a test crate a failed
// unwrap is a failed test, which is what clippy.toml allows in tests.
#![allow(clippy::unwrap_used)]

mod defedb_support;

use std::path::{Path, PathBuf};

use defedb_support::{entry, rid};
use redb::TableDefinition;
use smx_store::defedb::{Defedb, DefedbError, ErrorClass, FILE_NAME, FORMAT_VERSION};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("smx_defedb_meta");

fn not_a_defedb(path: &Path) -> String {
    match Defedb::open(path) {
        Err(e @ DefedbError::NotADefedb { .. }) => {
            assert_eq!(e.class(), ErrorClass::Permanent);
            let text = e.to_string();
            eprintln!("{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            text
        }
        Err(other) => panic!("{}: want NotADefedb, got {other:?}", path.display()),
        Ok(_) => panic!("{}: opened", path.display()),
    }
}

/// xorshift, so the bytes differ per seed without a dependency.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn random_bytes_empty_and_text_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // (name, contents)
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        (
            "text".into(),
            b"This is not a database.\nJust some text.\n".to_vec(),
        ),
        ("one byte".into(), vec![0]),
        ("zeros".into(), vec![0; 8192]),
    ];
    for (seed, len) in [(1u64, 7usize), (2, 9), (3, 512), (4, 4096), (5, 100_000)] {
        cases.push((format!("random {len}"), pseudo_random(seed, len)));
    }
    for (name, contents) in cases {
        let path = dir.path().join(name.replace(' ', "_"));
        std::fs::write(&path, &contents).unwrap();
        let text = not_a_defedb(&path);
        // The file is left as it was: never initialised over.
        assert_eq!(std::fs::read(&path).unwrap(), contents, "{name}: {text}");
    }
}

/// Makes a redb database at `path` with `f` run in one write transaction.
fn redb_with(path: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

#[test]
fn redb_databases_of_another_shape_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> PathBuf { dir.path().join(n) };

    redb_with(&p("other_tables"), |txn| {
        let mut t = txn
            .open_table(TableDefinition::<u64, u64>::new("greylist"))
            .unwrap();
        t.insert(1, 2).unwrap();
    });
    let text = not_a_defedb(&p("other_tables"));
    assert!(text.contains("greylist"), "{text}");

    // Our table names but no meta table.
    redb_with(&p("no_meta"), |txn| {
        txn.open_table(TableDefinition::<&[u8], &[u8]>::new("recipients"))
            .unwrap();
    });
    not_a_defedb(&p("no_meta"));

    // A meta table of other types.
    redb_with(&p("meta_types"), |txn| {
        let mut t = txn
            .open_table(TableDefinition::<&str, u64>::new("smx_defedb_meta"))
            .unwrap();
        t.insert("version", 1).unwrap();
    });
    not_a_defedb(&p("meta_types"));

    // A meta table that does not say DEFEDB.
    redb_with(&p("meta_magic"), |txn| {
        let mut t = txn.open_table(META).unwrap();
        t.insert("format", b"something else".as_slice()).unwrap();
        t.insert("version", [FORMAT_VERSION].as_slice()).unwrap();
    });
    not_a_defedb(&p("meta_magic"));

    // A meta table without a usable version.
    for (name, version) in [("no_version", None), ("long_version", Some(vec![1u8, 0]))] {
        redb_with(&p(name), |txn| {
            let mut t = txn.open_table(META).unwrap();
            t.insert("format", b"smx DEFEDB".as_slice()).unwrap();
            if let Some(v) = &version {
                t.insert("version", v.as_slice()).unwrap();
            }
        });
        not_a_defedb(&p(name));
    }

    // A right meta table, but a table of version 1 missing or of other types.
    redb_with(&p("missing_tables"), |txn| {
        let mut t = txn.open_table(META).unwrap();
        t.insert("format", b"smx DEFEDB".as_slice()).unwrap();
        t.insert("version", [FORMAT_VERSION].as_slice()).unwrap();
    });
    let text = not_a_defedb(&p("missing_tables"));
    assert!(text.contains("recipients"), "{text}");
    {
        let path = p("wrong_table_type");
        drop(Defedb::open(&path).unwrap());
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(TableDefinition::<&[u8], ()>::new("due"))
            .unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("due"))
            .unwrap();
        txn.commit().unwrap();
    }
    not_a_defedb(&p("wrong_table_type"));
}

#[test]
fn future_version_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let db = Defedb::open(&path).unwrap();
        db.put(&[entry(rid(1, 0), 10, "a@b", "", 1)]).unwrap();
    }
    for version in [FORMAT_VERSION + 1, 0, 255] {
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("version", [version].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        match Defedb::open(&path) {
            Err(e @ DefedbError::UnsupportedVersion { .. }) => {
                assert_eq!(e.class(), ErrorClass::Permanent);
                assert!(e.to_string().contains(&format!("version {version}")), "{e}");
            }
            other => panic!("version {version}: {other:?}"),
        }
    }
}

#[test]
fn an_empty_redb_database_is_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    drop(redb::Database::create(&path).unwrap());
    let db = Defedb::open(&path).unwrap();
    db.put(&[entry(rid(1, 0), 10, "a@b", "", 1)]).unwrap();
    drop(db);
    assert_eq!(Defedb::open(&path).unwrap().len().unwrap(), 1);
}

#[test]
fn io_problems_are_temporary_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be.
    let e = Defedb::open(dir.path()).unwrap_err();
    assert!(matches!(e, DefedbError::Io { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Temporary);
    // A missing parent directory: nothing is created.
    let e = Defedb::open(dir.path().join("missing").join(FILE_NAME)).unwrap_err();
    assert!(matches!(e, DefedbError::Io { .. }), "{e:?}");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn damaged_redb_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    {
        let db = Defedb::open(&good).unwrap();
        let batch: Vec<_> = (0..200)
            .map(|i| entry(rid(1, i), u64::from(i), "a@b.example", "s@c", 1))
            .collect();
        db.put(&batch).unwrap();
    }
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad");
    // Overwrite a stretch of the file at many offsets; opening (and, when
    // it opens, reading everything) must return, never panic.
    let (mut opened, mut refused, mut query_errors, mut damaged) = (0, 0, 0, 0);
    // Densely over the first 256 KiB, where redb keeps the header and this
    // little data; sparsely over the rest.
    let dense = (0..bytes.len().min(256 * 1024)).step_by(1021);
    let sparse = (0..bytes.len()).step_by(bytes.len() / 31 + 1);
    for (n, offset) in dense.chain(sparse).enumerate() {
        let mut b = bytes.clone();
        let end = (offset + 64).min(b.len());
        b[offset..end].copy_from_slice(&pseudo_random(n as u64 + 1, end - offset));
        std::fs::write(&bad, &b).unwrap();
        match Defedb::open(&bad) {
            Ok(db) => {
                opened += 1;
                let due = db.due(u64::MAX, usize::MAX);
                let all = db.for_each(|_| std::ops::ControlFlow::Continue(()));
                damaged += all.as_ref().map_or(0, |s| s.damaged.len());
                let put = db.put(&[entry(rid(2, 0), 5, "n@b.example", "s@c", 2)]);
                let removed = db.remove(&[rid(1, 3)]);
                query_errors +=
                    usize::from(due.is_err() || all.is_err() || put.is_err() || removed.is_err());
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!(
        "damaged copies of a {} byte file: {opened} opened ({query_errors} with errors, {damaged} damaged entries reported), {refused} refused",
        bytes.len()
    );
    assert!(opened + refused > 250);
}
