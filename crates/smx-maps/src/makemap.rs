//! Building cdb files from text maps: the library side of `smx makemap`
//! (the seed's createmap).
//!
//! The input is the text map format of [`crate::text`]; keys are
//! lower-cased (seed 6.5), every bad line is reported with its number and
//! nothing is written then. Duplicate keys: the first entry wins, as in a
//! `text` map; the later ones are left out and listed in the [`Report`].
//! Checking the right-hand side for the map's kind (access, aliases,
//! mailertable) is not done here yet.
//!
//! The output replaces the old file atomically: the cdb is written to a
//! temporary file in the same directory, flushed to disk (fsync), renamed
//! over the target and the directory is synced. A reader (a running smar)
//! sees either the old or the new file, never a partial one; on any error
//! the temporary file is removed and the old file stays.

use crate::error::MapError;
use crate::text::{self, Entry};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// What a build did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Keys written.
    pub entries: usize,
    /// Line numbers of entries left out because their key came earlier.
    pub duplicates: Vec<usize>,
}

/// Builds the cdb file `output` from the text map file `input`.
pub fn build_from_text(input: &Path, output: &Path) -> Result<Report, MapError> {
    let bytes = std::fs::read(input).map_err(|e| MapError::Read {
        path: input.to_path_buf(),
        source: e,
    })?;
    build(&bytes, Some(input), output)
}

/// Builds the cdb file `output` from text map contents; `source` names the
/// input in errors.
pub fn build(input: &[u8], source: Option<&Path>, output: &Path) -> Result<Report, MapError> {
    let parsed = text::parse(input).map_err(|errors| MapError::Syntax {
        path: source.map(Path::to_path_buf),
        errors,
    })?;
    write_cdb(&parsed.entries, output)?;
    Ok(Report {
        entries: parsed.entries.len(),
        duplicates: parsed.duplicates,
    })
}

/// Writes `entries` (keys as given) to the cdb file `output`, atomically.
pub fn write_cdb(entries: &[Entry], output: &Path) -> Result<(), MapError> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tmp, file) = create_temp(&dir, output)?;
    let result = write_and_rename(entries, &tmp, file, output, &dir);
    if result.is_err() {
        // Best effort: the temporary file may already be gone.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------------------

fn write_and_rename(
    entries: &[Entry],
    tmp: &Path,
    file: File,
    output: &Path,
    dir: &Path,
) -> Result<(), MapError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |e| MapError::Write { path, source: e }
    };
    let sync = file.try_clone().map_err(werr(tmp))?;
    let mut maker = cdb2::CDBMake::new(file).map_err(werr(tmp))?;
    for e in entries {
        maker
            .add(e.key.as_bytes(), e.value.as_bytes())
            .map_err(werr(tmp))?;
    }
    maker.finish().map_err(werr(tmp))?;
    sync.sync_all().map_err(werr(tmp))?;
    drop(sync);
    std::fs::rename(tmp, output).map_err(werr(output))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(werr(dir))?;
    Ok(())
}

/// Creates a new temporary file next to `output`.
fn create_temp(dir: &Path, output: &Path) -> Result<(PathBuf, File), MapError> {
    let base = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "map".into());
    let pid = std::process::id();
    let mut last = None;
    for n in 0..100u32 {
        let tmp = dir.join(format!(".{base}.tmp.{pid}.{n}"));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(MapError::Write {
                    path: tmp,
                    source: e,
                });
            }
        }
    }
    Err(MapError::Write {
        path: output.to_path_buf(),
        source: last.unwrap_or_else(|| std::io::Error::other("no temporary file name left")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{LineError, LineProblem};
    use crate::{CdbMap, Map};
    use proptest::prelude::*;

    #[test]
    fn built_file_reads_back_every_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("access");
        let output = dir.path().join("access.cdb");
        let mut text = String::from("# access map\n");
        for i in 0..1000 {
            text.push_str(&format!("To:User{i}@Example.COM\tRELAY {i}\n"));
        }
        text.push_str("to:user0@example.com DUPLICATE\n");
        std::fs::write(&input, &text).expect("write");
        let report = build_from_text(&input, &output).expect("build");
        assert_eq!(report.entries, 1000);
        assert_eq!(report.duplicates, vec![1002]);
        let m = CdbMap::open(&output).expect("opens");
        for i in 0..1000 {
            assert_eq!(
                m.lookup(&format!("to:user{i}@example.com")).expect("ok"),
                Some(format!("RELAY {i}"))
            );
        }
        assert_eq!(m.lookup("To:User0@Example.COM").expect("ok"), None);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn bad_lines_are_reported_and_the_old_file_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = dir.path().join("m.cdb");
        build(b"a 1\n", None, &output).expect("build");
        let err = build(b"a 2\nbad\n# ok\nworse \n", None, &output).expect_err("bad lines");
        match &err {
            MapError::Syntax { errors, .. } => assert_eq!(
                errors,
                &[
                    LineError {
                        line: 2,
                        reason: LineProblem::MissingValue
                    },
                    LineError {
                        line: 4,
                        reason: LineProblem::MissingValue
                    }
                ]
            ),
            other => panic!("unexpected error {other}"),
        }
        assert!(err.to_string().contains("line 2") && err.to_string().contains("line 4"));
        let m = CdbMap::open(&output).expect("opens");
        assert_eq!(m.lookup("a").expect("ok").as_deref(), Some("1"));
    }

    #[test]
    fn open_reader_sees_old_file_until_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = dir.path().join("m.cdb");
        build(b"k old\n", None, &output).expect("build");
        let m = CdbMap::open(&output).expect("opens");
        build(b"k new\n", None, &output).expect("rebuild");
        assert_eq!(m.lookup("k").expect("ok").as_deref(), Some("old"));
        m.reload().expect("reload");
        assert_eq!(m.lookup("k").expect("ok").as_deref(), Some("new"));
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let err = build(b"a 1\n", None, Path::new("/nonexistent/dir/m.cdb")).expect_err("no dir");
        assert!(matches!(err, MapError::Write { .. }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn round_trip(entries in proptest::collection::btree_map("[a-zA-Z0-9.@+*:_-]{1,20}", "[ -~]{1,30}", 0..40)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let output = dir.path().join("p.cdb");
            let mut text = String::new();
            for (k, v) in &entries {
                text.push_str(&format!("{k} {v}\n"));
            }
            let built = build(text.as_bytes(), None, &output);
            let parsed = crate::text::parse(text.as_bytes());
            match (built, parsed) {
                (Ok(_), Ok(p)) => {
                    let m = CdbMap::open(&output).expect("opens");
                    for e in p.entries {
                        prop_assert_eq!(m.lookup(&e.key).expect("ok"), Some(e.value));
                    }
                }
                (Err(_), Err(_)) => {}
                (b, p) => prop_assert!(false, "build {:?} vs parse {:?}", b.is_ok(), p.is_ok()),
            }
        }
    }
}
