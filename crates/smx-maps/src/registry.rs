//! The declared maps of smar (seed 3.9.1), opened together and reloaded
//! together.
//!
//! [`MapSet::open`] opens every `map NAME { ... }` declaration, sequence
//! maps after the maps they name (whatever the order in the file), and
//! fails on the first map that cannot be opened. [`MapSet::reload_all`]
//! reloads every map and reports the ones that failed; those keep their old
//! contents, the others switch to the new ones (on SIGUSR1 or a control
//! request, driven by smar).

use crate::error::MapError;
use crate::{Map, open_declared};
use smx_conf::model::smar::{MapDecl, MapType};
use smx_conf::schema::Repeated;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The declared maps, by lower-cased name.
#[derive(Debug, Default)]
pub struct MapSet {
    maps: HashMap<String, Arc<dyn Map>>,
    /// Names in the order they were opened (members before sequences).
    order: Vec<String>,
}

impl MapSet {
    /// Opens all declared maps; relative files are relative to `base_dir`.
    pub fn open(decls: &Repeated<MapDecl>, base_dir: &Path) -> Result<Self, MapError> {
        let mut set = MapSet::default();
        let mut pending: Vec<(String, &MapDecl)> = decls
            .iter()
            .filter_map(|n| Some((n.name.as_deref()?.to_ascii_lowercase(), &n.body)))
            .collect();
        while !pending.is_empty() {
            let ready = pending.iter().position(|(_, d)| {
                d.kind != MapType::Sequence
                    || d.maps
                        .iter()
                        .all(|m| set.maps.contains_key(&m.to_ascii_lowercase()))
            });
            // No declaration is ready: a sequence names a map that is not
            // declared or the sequences form a cycle. open_declared reports
            // the missing member.
            let (name, decl) = pending.remove(ready.unwrap_or(0));
            let map = open_declared(&name, decl, base_dir, &set.maps)?;
            set.maps.insert(name.clone(), map);
            set.order.push(name);
        }
        Ok(set)
    }

    /// The map declared as `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Map>> {
        self.maps.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Names of the declared maps, members before the sequences using them.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// Reloads every map; returns the maps that failed (they keep their
    /// old contents).
    pub fn reload_all(&self) -> Vec<(String, MapError)> {
        let mut failed = Vec::new();
        for name in &self.order {
            if let Some(m) = self.maps.get(name)
                && let Err(e) = m.reload()
            {
                tracing::warn!(map = %name, error = %e, "map reload failed; keeping the old contents");
                failed.push((name.clone(), e));
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smx_conf::schema::{Named, Naming};

    fn decl(kind: MapType, file: Option<&str>, maps: &[&str]) -> MapDecl {
        MapDecl {
            kind,
            file: file.map(Into::into),
            maps: maps.iter().map(|s| s.to_string()).collect(),
            ..MapDecl::default()
        }
    }

    fn repeated(items: Vec<(&str, MapDecl)>) -> Repeated<MapDecl> {
        Repeated::with(
            Naming::Required,
            16,
            items
                .into_iter()
                .map(|(n, body)| Named {
                    name: Some(n.to_string()),
                    body,
                })
                .collect(),
        )
    }

    #[test]
    fn sequences_open_after_their_members_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.txt"), "k from-a\n").expect("write");
        std::fs::write(dir.path().join("b.txt"), "k from-b\nonly-b yes\n").expect("write");
        let decls = repeated(vec![
            ("Seq", decl(MapType::Sequence, None, &["A", "b"])),
            ("a", decl(MapType::Text, Some("a.txt"), &[])),
            ("B", decl(MapType::Text, Some("b.txt"), &[])),
        ]);
        let set = MapSet::open(&decls, dir.path()).expect("opens");
        assert_eq!(set.names(), ["a", "b", "seq"]);
        let seq = set.get("SEQ").expect("declared");
        assert_eq!(seq.lookup("k").expect("ok").as_deref(), Some("from-a"));
        assert_eq!(seq.lookup("only-b").expect("ok").as_deref(), Some("yes"));

        std::fs::write(dir.path().join("a.txt"), "other x\n").expect("write");
        std::fs::write(dir.path().join("b.txt"), "broken\n").expect("write");
        let failed = set.reload_all();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "b");
        // a was reloaded, b kept its old contents.
        assert_eq!(seq.lookup("k").expect("ok").as_deref(), Some("from-b"));
    }

    #[test]
    fn undeclared_member_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let decls = repeated(vec![("s", decl(MapType::Sequence, None, &["nope"]))]);
        let err = MapSet::open(&decls, dir.path()).expect_err("undeclared");
        assert!(matches!(err, MapError::UnknownMap { .. }), "{err}");
    }
}
