//! The `cdb` map type (config `cdb`, and `hash`: smx has no Berkeley DB and
//! reads `hash` maps as cdb files).
//!
//! # Format
//!
//! D. J. Bernstein's constant database, as written by djb's `cdbmake`,
//! tinycdb's `cdb -c` and [`crate::makemap`]: a 2048-byte header of 256
//! `(table position, slot count)` pairs, the records `(key length, value
//! length, key, value)`, then 256 hash tables of `(hash, record position)`
//! slots; all numbers little-endian 32 bits. The format has no version
//! field: it has been fixed since 1996. Values are UTF-8 text; a value that
//! is not is reported as corrupt.
//!
//! # Opening and reading
//!
//! Lookups use the `cdb2` crate, which memory-maps the file. `cdb2` trusts
//! the pointers in the file, so [`CdbMap::open`] first reads the file once
//! and checks that every table and every record it points to lies inside
//! the file; only then is the same file (same device and inode) handed to
//! `cdb2`. A truncated or garbage file is thus a [`MapError::Corrupt`] at
//! open or reload time, never a panic in a lookup.
//!
//! Files must be *replaced* (write a new file, rename it over the old one,
//! as `smx makemap` does), never rewritten in place: a mapping of a file
//! that shrinks under it would fault. [`Map::reload`] opens the file anew
//! and swaps it in; lookups in flight finish on the old mapping.

use crate::error::MapError;
use crate::{Map, Swap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Header size of a cdb file.
const HEADER: usize = 2048;
/// Attempts to open a file that is being replaced while we open it.
const OPEN_ATTEMPTS: usize = 3;

/// A cdb file opened for lookups.
pub struct CdbMap {
    path: PathBuf,
    db: Swap<cdb2::CDB>,
}

impl std::fmt::Debug for CdbMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdbMap").field("path", &self.path).finish()
    }
}

impl CdbMap {
    /// Opens and checks a cdb file (read-only).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, MapError> {
        let path = path.into();
        let db = Swap::new(open_checked(&path)?);
        Ok(CdbMap { path, db })
    }

    /// The file this map reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Map for CdbMap {
    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let db = self.db.get();
        match db.get(key.as_bytes()) {
            None => Ok(None),
            Some(Err(_)) => Err(self.corrupt("a record lies outside the file")),
            Some(Ok(v)) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| self.corrupt("a value is not UTF-8")),
        }
    }

    /// Opens the file again (it has normally been replaced by rename).
    fn reload(&self) -> Result<(), MapError> {
        self.db.set(open_checked(&self.path)?);
        Ok(())
    }
}

impl CdbMap {
    fn corrupt(&self, reason: &'static str) -> MapError {
        MapError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Checks that `data` is a well-formed cdb file: every hash table and
/// every record a slot points to lies inside it. This is what makes the
/// pointer arithmetic in `cdb2` safe.
pub fn check(data: &[u8]) -> Result<(), &'static str> {
    let size = data.len() as u64;
    if data.len() < HEADER {
        return Err("shorter than the 2048-byte header");
    }
    if size > u64::from(u32::MAX) {
        return Err("larger than 4 GiB");
    }
    for i in 0..256 {
        let (hpos, hslots) = pair(data, i * 8).ok_or("header cut short")?;
        if hslots == 0 {
            continue;
        }
        let (hpos, hslots) = (u64::from(hpos), u64::from(hslots));
        if hpos < HEADER as u64 || hpos + hslots * 8 > size {
            return Err("a hash table lies outside the file");
        }
        for s in 0..hslots {
            let at = usize::try_from(hpos + s * 8).map_err(|_| "position overflow")?;
            let (_hash, pos) = pair(data, at).ok_or("a hash table lies outside the file")?;
            if pos == 0 {
                continue;
            }
            let pos = usize::try_from(pos).map_err(|_| "position overflow")?;
            let (klen, dlen) = pair(data, pos).ok_or("a record lies outside the file")?;
            if pos as u64 + 8 + u64::from(klen) + u64::from(dlen) > size {
                return Err("a record lies outside the file");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------

fn pair(data: &[u8], at: usize) -> Option<(u32, u32)> {
    let b = data.get(at..at.checked_add(8)?)?;
    let a = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let c = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    Some((a, c))
}

fn open_checked(path: &Path) -> Result<cdb2::CDB, MapError> {
    let read_err = |e| MapError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let corrupt = |reason| MapError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    for _ in 0..OPEN_ATTEMPTS {
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(read_err)?;
        check(&data).map_err(corrupt)?;
        drop(data);
        // cdb2 opens by name: make sure it mapped the file just checked.
        let db = cdb2::CDB::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::Other {
                corrupt("not a cdb file")
            } else {
                read_err(e)
            }
        })?;
        let now = std::fs::metadata(path).map_err(read_err)?;
        if now.dev() == meta.dev() && now.ino() == meta.ino() && now.len() == meta.len() {
            return Ok(db);
        }
    }
    Err(corrupt("the file kept changing while being opened"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    fn write_with_cdb2(path: &Path, entries: &[(&str, &str)]) {
        let mut w = cdb2::CDBWriter::create(path).expect("create");
        for (k, v) in entries {
            w.add(k.as_bytes(), v.as_bytes()).expect("add");
        }
        w.finish().expect("finish");
    }

    #[test]
    fn reads_a_file_written_by_cdb2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.cdb");
        let entries: Vec<(String, String)> = (0..500)
            .map(|i| (format!("key{i}.example"), format!("value {i}")))
            .collect();
        let refs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        write_with_cdb2(&path, &refs);
        let m = CdbMap::open(&path).expect("opens");
        for (k, v) in &entries {
            assert_eq!(m.lookup(k).expect("ok").as_ref(), Some(v));
        }
        assert_eq!(m.lookup("missing").expect("ok"), None);
        assert_eq!(m.path(), path);
    }

    #[test]
    fn empty_cdb_has_no_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("e.cdb");
        write_with_cdb2(&path, &[]);
        let m = CdbMap::open(&path).expect("opens");
        assert_eq!(m.lookup("").expect("ok"), None);
    }

    #[test]
    fn truncated_and_garbage_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("g.cdb");
        write_with_cdb2(&good, &[("alpha", "1"), ("beta", "2"), ("gamma", "3")]);
        let bytes = std::fs::read(&good).expect("read");
        let bad = dir.path().join("b.cdb");
        // Every truncation point of a small file.
        for len in 0..bytes.len() {
            std::fs::write(&bad, &bytes[..len]).expect("write");
            let err = CdbMap::open(&bad).expect_err("truncated");
            assert_eq!(err.class(), ErrorClass::Temporary, "len {len}: {err}");
        }
        // Garbage: 4 KiB of 0xff points everywhere outside the file.
        std::fs::write(&bad, vec![0xffu8; 4096]).expect("write");
        assert!(matches!(CdbMap::open(&bad), Err(MapError::Corrupt { .. })));
        // Text is not a cdb file either.
        std::fs::write(&bad, "alpha 1\n").expect("write");
        assert!(matches!(CdbMap::open(&bad), Err(MapError::Corrupt { .. })));
        // Missing file.
        assert!(matches!(
            CdbMap::open(dir.path().join("none.cdb")),
            Err(MapError::Read { .. })
        ));
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        // Flip each byte of a valid file in turn; open may fail, and if it
        // succeeds every lookup answers without panicking.
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("g.cdb");
        write_with_cdb2(&good, &[("alpha", "1"), ("beta", "2")]);
        let bytes = std::fs::read(&good).expect("read");
        let bad = dir.path().join("b.cdb");
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0xa5;
            std::fs::write(&bad, &b).expect("write");
            if let Ok(m) = CdbMap::open(&bad) {
                for k in ["alpha", "beta", "x"] {
                    let _ = m.lookup(k);
                }
            }
        }
    }

    #[test]
    fn reload_sees_a_replaced_file_and_keeps_old_on_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.cdb");
        write_with_cdb2(&path, &[("a", "1")]);
        let m = CdbMap::open(&path).expect("opens");
        let tmp = dir.path().join("new.cdb");
        write_with_cdb2(&tmp, &[("a", "2")]);
        std::fs::rename(&tmp, &path).expect("rename");
        assert_eq!(m.lookup("a").expect("ok"), Some("1".into()));
        m.reload().expect("reload");
        assert_eq!(m.lookup("a").expect("ok"), Some("2".into()));
        std::fs::write(&tmp, b"garbage").expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
        assert!(m.reload().is_err());
        assert_eq!(m.lookup("a").expect("ok"), Some("2".into()));
    }

    #[test]
    fn lookups_in_flight_survive_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.cdb");
        write_with_cdb2(&path, &[("k", "0")]);
        let m = std::sync::Arc::new(CdbMap::open(&path).expect("opens"));
        let reader = {
            let m = std::sync::Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..5000 {
                    let v = m.lookup("k").expect("never fails").expect("always present");
                    assert!(v.parse::<u32>().is_ok(), "{v}");
                }
            })
        };
        for i in 1..50 {
            let tmp = dir.path().join("tmp.cdb");
            write_with_cdb2(&tmp, &[("k", &i.to_string())]);
            std::fs::rename(&tmp, &path).expect("rename");
            m.reload().expect("reload");
        }
        reader.join().expect("reader did not panic");
    }

    #[test]
    fn tinycdb_tool_file_reads_correctly() {
        // Debian's tinycdb `cdb` tool is a test peer: .ci/run installs it.
        let found = std::process::Command::new("cdb").arg("-h").output();
        assert!(
            found.is_ok(),
            "the tinycdb `cdb` tool is needed for this test (apt-get install tinycdb)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.cdb");
        // cdbmake input format: +klen,dlen:key->data
        let input = "+5,1:alpha->1\n+4,5:beta->hello\n\n";
        let mut child = std::process::Command::new("cdb")
            .arg("-c")
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn cdb");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin.write_all(input.as_bytes()).expect("write");
        }
        assert!(child.wait().expect("wait").success());
        let m = CdbMap::open(&path).expect("opens");
        assert_eq!(m.lookup("alpha").expect("ok"), Some("1".into()));
        assert_eq!(m.lookup("beta").expect("ok"), Some("hello".into()));
    }
}
