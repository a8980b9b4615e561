//! Maildir delivery (the format of <https://cr.yp.to/proto/maildir.html>
//! with the Maildir++ folder convention).
//!
//! A mailbox is a directory with `tmp/`, `new/` and `cur/`. A message is
//! written to `tmp/NAME`, the file is fsynced, then hard-linked as
//! `new/NAME,S=SIZE` (failing if that name exists, so nothing is ever
//! overwritten), `tmp/NAME` is unlinked, and `new/` is fsynced so the
//! directory entry is durable before the delivery is reported. Only then
//! does the LMTP client hear 250.
//!
//! NAME is `SECONDS.M<MICROSECONDS>P<PID>Q<COUNTER>.HOST`: the seconds and
//! microseconds of the delivery, the process id and a per-process counter
//! make it unique on this host; HOST is the host name with `/` and `:`
//! encoded (`\057`, `\072`) as the format asks.
//!
//! A Maildir++ folder `NAME` is the sub-directory `.NAME` of the mailbox,
//! itself a Maildir. Missing directories of the mailbox (and of a folder the
//! caller asked for) are created with mode 0700.
//!
//! Errors are [`DeliveryError`]s that say whether retrying can help: a
//! full disk or quota (`ENOSPC`, `EDQUOT`) or any other I/O failure is
//! temporary.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The file system is full or the user is over quota.
    #[error("mailbox full or disk full: {path}: {source}")]
    Full {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another I/O failure.
    #[error("cannot deliver to {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl DeliveryError {
    fn io(path: &Path, source: io::Error) -> Self {
        let full = matches!(source.raw_os_error(), Some(28) | Some(122));
        let path = path.to_path_buf();
        if full {
            DeliveryError::Full { path, source }
        } else {
            DeliveryError::Io { path, source }
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique file name for a new message (see the module doc).
pub fn unique_name(host: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let q = COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = host.replace('/', "\\057").replace(':', "\\072");
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        host
    )
}

fn ensure_maildir(dir: &Path) -> Result<(), DeliveryError> {
    let mut b = DirBuilder::new();
    b.recursive(true).mode(0o700);
    for sub in ["tmp", "new", "cur"] {
        let p = dir.join(sub);
        b.create(&p).map_err(|e| DeliveryError::io(&p, e))?;
    }
    Ok(())
}

/// The directory a message for `folder` (None: the inbox) goes to.
pub fn folder_dir(maildir: &Path, folder: Option<&str>) -> PathBuf {
    match folder {
        Some(f) => maildir.join(format!(".{f}")),
        None => maildir.to_path_buf(),
    }
}

/// Delivers `parts` (concatenated) into the Maildir `dir`, creating it if
/// needed. Returns the path of the delivered file. Blocking.
pub fn deliver(dir: &Path, host: &str, parts: &[&[u8]]) -> Result<PathBuf, DeliveryError> {
    ensure_maildir(dir)?;
    let name = unique_name(host);
    let tmp = dir.join("tmp").join(&name);
    let size: usize = parts.iter().map(|p| p.len()).sum();
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| DeliveryError::io(&tmp, e))?;
        for p in parts {
            f.write_all(p).map_err(|e| DeliveryError::io(&tmp, e))?;
        }
        f.sync_all().map_err(|e| DeliveryError::io(&tmp, e))?;
        let new_dir = dir.join("new");
        let new = new_dir.join(format!("{name},S={size}"));
        fs::hard_link(&tmp, &new).map_err(|e| DeliveryError::io(&new, e))?;
        let _ = fs::remove_file(&tmp);
        File::open(&new_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| DeliveryError::io(&new_dir, e))?;
        Ok(new)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_with_size() {
        let d = tempfile::tempdir().unwrap();
        let mbox = d.path().join("u/Maildir");
        let p = deliver(&mbox, "host", &[b"a: b\r\n", b"\r\nbody\r\n"]).unwrap();
        assert!(p.starts_with(mbox.join("new")));
        assert!(p.to_string_lossy().ends_with(",S=14"));
        assert_eq!(fs::read(&p).unwrap(), b"a: b\r\n\r\nbody\r\n");
        assert_eq!(fs::read_dir(mbox.join("tmp")).unwrap().count(), 0);
        assert!(mbox.join("cur").is_dir());
    }

    #[test]
    fn names_are_unique_and_encoded() {
        let a = unique_name("h/x:y");
        let b = unique_name("h/x:y");
        assert_ne!(a, b);
        assert!(a.ends_with(".h\\057x\\072y"), "{a}");
    }

    #[test]
    fn folders() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(folder_dir(d.path(), Some("lists")), d.path().join(".lists"));
        assert_eq!(folder_dir(d.path(), None), d.path());
    }

    #[test]
    fn unwritable_mailbox_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = deliver(&file.join("Maildir"), "h", &[b"x"]).unwrap_err();
        assert!(matches!(err, DeliveryError::Io { .. }), "{err}");
    }
}
