//! Which mailbox a recipient address names.
//!
//! The local part (the domain has been routed here by smar and is not
//! looked at) is lower-cased and split at the first `+`: `user+detail`.
//! `user` must be a safe file name: 1 to 64 characters of `a-z`, `0-9`,
//! `.`, `_` and `-`, not starting with `.` or `-`, so no address can name
//! a path outside the mail directory. With a local-user map the user must
//! be a key of it (unknown users are refused at RCPT); without one, every
//! valid name is a mailbox, created on first delivery.
//!
//! A `detail` that is a valid name as well selects the Maildir++ folder
//! `.detail` if the user has created it; otherwise the message goes to the
//! inbox. Folders are never created from an address: a sender could
//! otherwise make any number of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smx_maps::Map;

/// Where a recipient's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The user (lower-cased local part before `+`).
    pub user: String,
    /// The detail after `+`, if valid.
    pub detail: Option<String>,
    /// The user's Maildir.
    pub maildir: PathBuf,
}

/// Why a recipient has no mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The local part is not a valid user name.
    #[error("invalid user name")]
    Invalid,
    /// The user is not in the local-user map.
    #[error("no such user")]
    Unknown,
    /// The local-user map could not be read.
    #[error("user lookup failed: {0}")]
    Lookup(String),
}

/// Whether `s` is a safe user or folder name (see the module doc).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Resolves recipient addresses to mailboxes.
#[derive(Debug, Clone)]
pub struct Users {
    mail_dir: PathBuf,
    map: Option<Arc<dyn Map>>,
}

impl Users {
    /// Mailboxes under `mail_dir`, users checked against `map` if given.
    pub fn new(mail_dir: impl Into<PathBuf>, map: Option<Arc<dyn Map>>) -> Self {
        Users {
            mail_dir: mail_dir.into(),
            map,
        }
    }

    /// The mail directory.
    pub fn mail_dir(&self) -> &Path {
        &self.mail_dir
    }

    /// The mailbox of `address` (a mailbox `local@domain` or a bare local
    /// part such as `postmaster`).
    pub fn resolve(&self, address: &str) -> Result<Mailbox, UserError> {
        let local = match address.rsplit_once('@') {
            Some((l, _)) => l,
            None => address,
        };
        let local = local.to_lowercase();
        let (user, detail) = match local.split_once('+') {
            Some((u, d)) => (u.to_string(), Some(d.to_string())),
            None => (local, None),
        };
        if !valid_name(&user) {
            return Err(UserError::Invalid);
        }
        if let Some(map) = &self.map {
            match map.lookup(&user) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(UserError::Unknown),
                Err(e) => return Err(UserError::Lookup(e.to_string())),
            }
        }
        let detail = detail.filter(|d| valid_name(d));
        let maildir = self.mail_dir.join(&user).join("Maildir");
        Ok(Mailbox {
            user,
            detail,
            maildir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;
    impl Map for Fixed {
        fn lookup(&self, key: &str) -> Result<Option<String>, smx_maps::MapError> {
            Ok((key == "alice").then(|| "alice".to_string()))
        }
    }

    #[test]
    fn names() {
        for ok in ["alice", "a.b", "x_y-z", "0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "Ä",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn resolve_detail_and_case() {
        let u = Users::new("/m", None);
        let m = u.resolve("Bob+Lists@localhost").unwrap();
        assert_eq!(m.user, "bob");
        assert_eq!(m.detail.as_deref(), Some("lists"));
        assert_eq!(m.maildir, PathBuf::from("/m/bob/Maildir"));
        assert_eq!(u.resolve("postmaster").unwrap().user, "postmaster");
        assert_eq!(u.resolve("bob+../x@h").unwrap().detail, None);
        assert_eq!(u.resolve("../etc@h"), Err(UserError::Invalid));
        assert_eq!(u.resolve("\"a b\"@h"), Err(UserError::Invalid));
    }

    #[test]
    fn map_decides() {
        let u = Users::new("/m", Some(Arc::new(Fixed)));
        assert!(u.resolve("alice@h").is_ok());
        assert_eq!(u.resolve("mallory@h"), Err(UserError::Unknown));
    }
}
