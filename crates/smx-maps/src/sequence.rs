//! The `sequence` map type (seed 3.9.1): several maps tried in order; the
//! first map that has the key answers.
//!
//! A temporary error in a member is an error of the sequence, not a skip:
//! the member might hold the key, and answering from a later member (or
//! "not found") could give a different decision than the configuration
//! asks for. The caller defers instead.
//!
//! The members are shared with the map registry; [`Map::reload`] on a
//! sequence does nothing, because every declared member is reloaded on its
//! own.

use crate::Map;
use crate::error::MapError;
use std::sync::Arc;

/// Several maps tried in order.
#[derive(Debug)]
pub struct SequenceMap {
    members: Vec<Arc<dyn Map>>,
}

impl SequenceMap {
    /// A sequence of `members`, tried first to last.
    pub fn new(members: Vec<Arc<dyn Map>>) -> Self {
        SequenceMap { members }
    }
}

impl Map for SequenceMap {
    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        for m in &self.members {
            if let Some(v) = m.lookup(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorClass, TextMap};
    use std::path::PathBuf;

    /// A map that always fails temporarily.
    #[derive(Debug)]
    struct Broken;
    impl Map for Broken {
        fn lookup(&self, _key: &str) -> Result<Option<String>, MapError> {
            Err(MapError::Corrupt {
                path: PathBuf::from("broken.cdb"),
                reason: "test",
            })
        }
    }

    fn text(entries: &[&str]) -> Arc<dyn Map> {
        let e: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        Arc::new(TextMap::from_entries(&e).expect("valid"))
    }

    #[test]
    fn first_hit_wins_and_misses_fall_through() {
        let s = SequenceMap::new(vec![
            text(&["a first", "b only-first"]),
            text(&["a second", "c only-second"]),
        ]);
        let cases = [
            ("a", Some("first")),
            ("b", Some("only-first")),
            ("c", Some("only-second")),
            ("d", None),
        ];
        for (key, want) in cases {
            assert_eq!(s.lookup(key).expect("ok").as_deref(), want, "key {key}");
        }
    }

    #[test]
    fn temporary_error_is_not_skipped() {
        let s = SequenceMap::new(vec![text(&["a 1"]), Arc::new(Broken), text(&["b 2"])]);
        // A hit before the broken member is still answered.
        assert_eq!(s.lookup("a").expect("ok").as_deref(), Some("1"));
        // Otherwise the broken member's error is the answer.
        let err = s.lookup("b").expect_err("broken member");
        assert_eq!(err.class(), ErrorClass::Temporary);
    }

    #[test]
    fn empty_sequence_finds_nothing() {
        assert_eq!(SequenceMap::new(Vec::new()).lookup("x").expect("ok"), None);
    }
}
