//! The `passwd` map type (seed 3.9.1): the system's users.
//!
//! Reads a file in passwd(5) format (`/etc/passwd` unless the declaration
//! names another file) instead of calling getpwnam(3): no libc calls and no
//! unsafe code, at the price of not seeing users from NSS sources such as
//! LDAP. The key is the lower-cased login name (seed 6.5: map keys are
//! lower-cased, so a login name with capitals is still found); the value is
//! the login name as written in the file, for local delivery.
//!
//! Lines that are blank, comments, NIS compat entries (`+`/`-`) or have
//! fewer than seven fields are skipped, as getpwent(3) does; the first
//! entry for a name wins, as with getpwnam(3). The file is read at open and
//! on [`Map::reload`]; users added later are seen after a reload.

use crate::error::MapError;
use crate::{Map, Swap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file read when the declaration names none.
pub const DEFAULT_PATH: &str = "/etc/passwd";

/// System users from a passwd-format file.
#[derive(Debug)]
pub struct PasswdMap {
    path: PathBuf,
    users: Swap<HashMap<String, String>>,
}

impl PasswdMap {
    /// Reads the users of `path` (normally [`DEFAULT_PATH`]).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, MapError> {
        let path = path.into();
        let users = Swap::new(load(&path)?);
        Ok(PasswdMap { path, users })
    }
}

impl Map for PasswdMap {
    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        Ok(self.users.get().get(key).cloned())
    }

    fn reload(&self) -> Result<(), MapError> {
        self.users.set(load(&self.path)?);
        Ok(())
    }
}

/// The users of passwd-format text: lower-cased name → name as written.
pub fn parse(input: &[u8]) -> HashMap<String, String> {
    let mut users = HashMap::new();
    for line in input.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with(['#', '+', '-']) {
            continue;
        }
        if line.split(':').count() < 7 {
            continue;
        }
        let name = line.split(':').next().unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        users
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| name.to_owned());
    }
    users
}

fn load(path: &Path) -> Result<HashMap<String, String>, MapError> {
    let bytes = std::fs::read(path).map_err(|e| MapError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(parse(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "root:x:0:0:root:/root:/bin/bash\n\
# comment\n\
\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
Alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n\
alice:x:1001:1001::/home/alice2:/bin/sh\n\
short:x:5\n\
+nisuser::::::\n\
:x:9:9::/:/bin/sh\n";

    #[test]
    fn parses_users() {
        let users = parse(SAMPLE.as_bytes());
        let mut names: Vec<_> = users
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [("alice", "Alice"), ("daemon", "daemon"), ("root", "root")]
        );
    }

    #[test]
    fn map_from_a_file_given_by_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("passwd");
        std::fs::write(&path, SAMPLE).expect("write");
        let m = PasswdMap::open(&path).expect("opens");
        assert_eq!(m.lookup("alice").expect("ok").as_deref(), Some("Alice"));
        assert_eq!(m.lookup("short").expect("ok"), None);
        std::fs::write(&path, "bob:x:2:2::/:/bin/sh\n").expect("write");
        m.reload().expect("reload");
        assert_eq!(m.lookup("bob").expect("ok").as_deref(), Some("bob"));
        assert_eq!(m.lookup("alice").expect("ok"), None);
    }

    #[test]
    fn system_passwd_has_root() {
        // Every Unix system we run on has root in /etc/passwd.
        if let Ok(m) = PasswdMap::open(DEFAULT_PATH) {
            assert_eq!(m.lookup("root").expect("ok").as_deref(), Some("root"));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&input);
        }
    }
}
