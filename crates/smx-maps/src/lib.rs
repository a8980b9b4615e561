//! smx-maps: the maps of the address resolver (smar).
//!
//! A map answers "what is the value for this key?" for the access map,
//! aliases, the mailertable and the local user map (seed 3.9). This crate
//! has the map types, the order in which keys are tried (seed 3.12.1) and
//! the builder behind `smx makemap`. smar (and `smx makemap`) call it
//! directly; the only peers it talks to are socket map servers.
//!
//! * [`Map`] is the lookup of one exact, already lower-cased key; the map
//!   types are [`CdbMap`] (config `cdb`, and `hash`, which smx reads as cdb
//!   because there is no Berkeley DB), [`TextMap`] (`text`, also inline
//!   `entries`), [`SequenceMap`] (`sequence`), [`PasswdMap`] (`passwd`)
//!   and [`SocketMap`] (`socket`, seed 10.1, netstrings in [`netstring`]).
//!   [`open_declared`] opens a map from its smx-conf declaration,
//!   [`MapSet`] all of smar's declared maps.
//! * [`keys`] turns a domain, an IP address or an address into the ordered
//!   list of keys to try; it is pure. [`lookup_first`] tries them in order.
//! * [`makemap`] builds a cdb file from a text map, atomically.
//!
//! # Errors
//!
//! Not found is `Ok(None)`. Every [`MapError`] has a [`MapError::class`];
//! a map that cannot answer (unreadable or corrupt file) is `Temporary`, so
//! the caller defers instead of deciding as if the key were absent.
//!
//! # Reload
//!
//! [`Map::reload`] builds the new contents first and swaps them in under a
//! short lock; lookups in flight keep the old contents (an `Arc`), and a
//! failed reload leaves the old contents in use.
#![forbid(unsafe_code)]

pub mod cdb;
pub mod error;
pub mod keys;
pub mod makemap;
pub mod netstring;
pub mod passwd;
pub mod registry;
pub mod sequence;
pub mod socket;
pub mod text;

pub use cdb::CdbMap;
pub use error::{ErrorClass, LineError, LineProblem, MapError};
pub use passwd::PasswdMap;
pub use registry::MapSet;
pub use sequence::SequenceMap;
pub use socket::{Endpoint, SocketMap};
pub use text::TextMap;

use smx_conf::model::smar::{MapDecl, MapType};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

/// A map: the lookup of one exact key.
///
/// Keys are compared byte for byte; callers pass keys that are already
/// lower-cased (the functions in [`keys`] do so; seed 6.5). Maps are shared
/// between lookups in flight, hence `Send + Sync`.
pub trait Map: Send + Sync + std::fmt::Debug {
    /// The value for `key`, `Ok(None)` if there is none.
    fn lookup(&self, key: &str) -> Result<Option<String>, MapError>;

    /// Re-reads the map's source. On error the old contents stay in use.
    /// Maps without a source of their own do nothing.
    fn reload(&self) -> Result<(), MapError> {
        Ok(())
    }
}

/// A successful lookup of a key list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The key that matched.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// Tries `keys` in order and returns the first hit. An error stops the
/// search: a key that could not be looked up is not treated as absent,
/// since a later, less specific key might give a different decision.
pub fn lookup_first<S: AsRef<str>>(map: &dyn Map, keys: &[S]) -> Result<Option<Hit>, MapError> {
    for key in keys {
        let key = key.as_ref();
        if let Some(value) = map.lookup(key)? {
            return Ok(Some(Hit {
                key: key.to_owned(),
                value,
            }));
        }
    }
    Ok(None)
}

/// Opens the map declared as `map NAME { ... }` (seed 3.9.1). Relative
/// files are taken relative to `base_dir` (the configuration directory).
/// `declared` holds the maps opened so far, by lower-cased name; members
/// of a sequence must already be in it (open in dependency order).
pub fn open_declared(
    name: &str,
    decl: &MapDecl,
    base_dir: &Path,
    declared: &HashMap<String, Arc<dyn Map>>,
) -> Result<Arc<dyn Map>, MapError> {
    let file = || {
        decl.file
            .as_ref()
            .map(|f| base_dir.join(f))
            .ok_or_else(|| MapError::BadDeclaration {
                name: name.to_owned(),
                what: "this map type needs file",
            })
    };
    Ok(match decl.kind {
        // There is no Berkeley DB: `hash` files are cdb files.
        MapType::Hash | MapType::Cdb => Arc::new(CdbMap::open(file()?)?),
        MapType::Text => Arc::new(TextMap::open(file()?)?),
        MapType::Passwd => Arc::new(PasswdMap::open(
            decl.file
                .as_ref()
                .map(|f| base_dir.join(f))
                .unwrap_or_else(|| passwd::DEFAULT_PATH.into()),
        )?),
        MapType::Sequence => {
            let mut members = Vec::with_capacity(decl.maps.len());
            for m in &decl.maps {
                let map = declared
                    .get(&m.to_ascii_lowercase())
                    .ok_or_else(|| MapError::UnknownMap { name: m.clone() })?;
                members.push(Arc::clone(map));
            }
            Arc::new(SequenceMap::new(members))
        }
        MapType::Socket => {
            let bad = |what| MapError::BadDeclaration {
                name: name.to_owned(),
                what,
            };
            let mapname = decl
                .mapname
                .clone()
                .ok_or_else(|| bad("socket map needs mapname"))?;
            let endpoint = match (&decl.path, decl.address, decl.port) {
                (Some(p), None, None) => Endpoint::Unix(base_dir.join(p)),
                (None, Some(a), Some(port)) => Endpoint::Inet(std::net::SocketAddr::new(a, port)),
                _ => return Err(bad("socket map needs either path or address and port")),
            };
            Arc::new(SocketMap::new(endpoint, mapname, decl.timeout.0))
        }
    })
}

/// Contents that can be replaced while readers hold the old version.
#[derive(Debug)]
pub(crate) struct Swap<T> {
    inner: RwLock<Arc<T>>,
}

impl<T> Swap<T> {
    pub(crate) fn new(value: T) -> Self {
        Swap {
            inner: RwLock::new(Arc::new(value)),
        }
    }

    /// The current contents. The lock is held only to clone the `Arc`;
    /// a poisoned lock still holds a complete `Arc` (the writer only
    /// assigns), so it is used as is.
    pub(crate) fn get(&self) -> Arc<T> {
        Arc::clone(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn set(&self, value: T) {
        let value = Arc::new(value);
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_first_returns_the_first_matching_key() {
        let m = TextMap::from_entries(&[".example.org b".into(), "example.org a".into()])
            .expect("valid");
        let keys = keys::domain_keys(
            "Sub.Example.org",
            &smx_conf::model::qmgr::LookupFlags::default(),
        );
        let hit = lookup_first(&m, &keys).expect("no error");
        assert_eq!(
            hit,
            Some(Hit {
                key: ".example.org".into(),
                value: "b".into()
            })
        );
        assert_eq!(lookup_first(&m, &["nope", "."]).expect("no error"), None);
    }

    #[test]
    fn open_declared_builds_each_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t.txt"), "k text\n").expect("write");
        makemap::build_from_text(&dir.path().join("t.txt"), &dir.path().join("t.cdb"))
            .expect("build");
        std::fs::write(
            dir.path().join("passwd"),
            "alice:x:1:1::/home/alice:/bin/sh\n",
        )
        .expect("write");
        let mut declared: HashMap<String, Arc<dyn Map>> = HashMap::new();
        let decl = |kind, file: Option<&str>, maps: &[&str]| MapDecl {
            kind,
            file: file.map(Into::into),
            maps: maps.iter().map(|s| s.to_string()).collect(),
            ..MapDecl::default()
        };
        for (name, d) in [
            ("h", decl(MapType::Hash, Some("t.cdb"), &[])),
            ("t", decl(MapType::Text, Some("t.txt"), &[])),
            ("p", decl(MapType::Passwd, Some("passwd"), &[])),
            ("s", decl(MapType::Sequence, None, &["P", "h"])),
        ] {
            let m = open_declared(name, &d, dir.path(), &declared).expect("opens");
            declared.insert(name.into(), m);
        }
        assert_eq!(declared["h"].lookup("k").expect("ok"), Some("text".into()));
        assert_eq!(declared["t"].lookup("k").expect("ok"), Some("text".into()));
        assert_eq!(
            declared["s"].lookup("alice").expect("ok"),
            Some("alice".into())
        );
        assert_eq!(declared["s"].lookup("k").expect("ok"), Some("text".into()));

        let bad = open_declared(
            "x",
            &decl(MapType::Sequence, None, &["zz"]),
            dir.path(),
            &declared,
        )
        .expect_err("unknown member");
        assert!(matches!(bad, MapError::UnknownMap { .. }));
        let sock = open_declared(
            "x",
            &decl(MapType::Socket, None, &[]),
            dir.path(),
            &declared,
        )
        .expect_err("unsupported");
        assert_eq!(sock.class(), ErrorClass::Permanent);
        let nofile = open_declared("x", &decl(MapType::Cdb, None, &[]), dir.path(), &declared)
            .expect_err("no file");
        assert!(matches!(nofile, MapError::BadDeclaration { .. }));
    }
}
