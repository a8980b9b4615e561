//! Text maps: the plain-text map format and the in-memory `text` map type.
//!
//! # Format
//!
//! One entry per line: `KEY<white space>VALUE`. The key is the first run of
//! non-white-space characters and is lower-cased (ASCII, seed 6.5); the
//! value is the rest of the line with leading and trailing white space
//! removed (white space inside the value is kept). A line whose first
//! non-white-space character is `#` is a comment; blank lines are skipped.
//! A `#` later in a line is part of the value (access map replies may
//! contain one). Lines end in LF; a CR before it is white space.
//!
//! A key without a value, or a line that is not UTF-8, is an error naming
//! the line number; the parser collects every bad line instead of stopping
//! at the first. When a key occurs more than once **the first entry wins**
//! (like `cdb_get` on a cdb file built from the same text, and like
//! getpwnam on /etc/passwd); later ones are reported as duplicates.
//!
//! The same format is used for inline configuration entries
//! (`MapRef.entries` in smx-conf), where "line" means the 1-based entry
//! number.
//!
//! Parsing is pure and never panics; [`TextMap`] holds the parsed entries
//! in a `HashMap` and re-reads its file on [`Map::reload`].

use crate::error::{LineError, LineProblem, MapError};
use crate::{Map, Swap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The lower-cased key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// The entries of a text map, in file order, first occurrence of each key
/// only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Entries in file order, without duplicates.
    pub entries: Vec<Entry>,
    /// Line numbers of later entries for a key already seen (ignored).
    pub duplicates: Vec<usize>,
}

/// Parses a text map. On any bad line, returns every bad line.
pub fn parse(input: &[u8]) -> Result<Parsed, Vec<LineError>> {
    parse_lines(input.split(|b| *b == b'\n'))
}

/// Parses inline entries (`MapRef.entries`), one entry per string.
pub fn parse_entries(entries: &[String]) -> Result<Parsed, Vec<LineError>> {
    parse_lines(entries.iter().map(|e| e.as_bytes()))
}

/// The `text` map type: a text map loaded into memory.
#[derive(Debug)]
pub struct TextMap {
    source: Source,
    data: Swap<HashMap<String, String>>,
}

#[derive(Debug)]
enum Source {
    File(PathBuf),
    Inline(Vec<String>),
}

impl TextMap {
    /// Loads a text map file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, MapError> {
        let source = Source::File(path.into());
        let data = Swap::new(load(&source)?);
        Ok(TextMap { source, data })
    }

    /// A text map from inline entries (smx-conf `MapRef.entries`).
    pub fn from_entries(entries: &[String]) -> Result<Self, MapError> {
        let source = Source::Inline(entries.to_vec());
        let data = Swap::new(load(&source)?);
        Ok(TextMap { source, data })
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.data.get().len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Map for TextMap {
    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        Ok(self.data.get().get(key).cloned())
    }

    /// Re-reads the file; on error the old contents stay in use.
    fn reload(&self) -> Result<(), MapError> {
        if let Source::File(_) = self.source {
            self.data.set(load(&self.source)?);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------

fn load(source: &Source) -> Result<HashMap<String, String>, MapError> {
    let (parsed, path) = match source {
        Source::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| MapError::Read {
                path: path.clone(),
                source: e,
            })?;
            (parse(&bytes), Some(path.as_path()))
        }
        Source::Inline(entries) => (parse_entries(entries), None),
    };
    let parsed = parsed.map_err(|errors| MapError::Syntax {
        path: path.map(Path::to_path_buf),
        errors,
    })?;
    if !parsed.duplicates.is_empty() {
        tracing::warn!(
            map = %path.map(|p| p.display().to_string()).unwrap_or_default(),
            lines = ?parsed.duplicates,
            "duplicate keys ignored (the first entry wins)"
        );
    }
    Ok(parsed
        .entries
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

fn parse_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Parsed, Vec<LineError>> {
    let mut out = Parsed::default();
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for (i, raw) in lines.enumerate() {
        let line = i + 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            errors.push(LineError {
                line,
                reason: LineProblem::NotUtf8,
            });
            continue;
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (key, value) = match text.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (text, ""),
        };
        if value.is_empty() {
            errors.push(LineError {
                line,
                reason: LineProblem::MissingValue,
            });
            continue;
        }
        let key = key.to_ascii_lowercase();
        if !seen.insert(key.clone()) {
            out.duplicates.push(line);
            continue;
        }
        out.entries.push(Entry {
            line,
            key,
            value: value.to_owned(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv(p: &Parsed) -> Vec<(usize, &str, &str)> {
        p.entries
            .iter()
            .map(|e| (e.line, e.key.as_str(), e.value.as_str()))
            .collect()
    }

    #[test]
    fn comments_blank_lines_and_white_space_runs() {
        let input = b"# a comment\n\n   \nFoo.EXAMPLE \t  bar  baz \r\n  # indented comment\nkey\tvalue # not a comment\n";
        let p = parse(input).expect("valid");
        assert_eq!(
            kv(&p),
            vec![
                (4, "foo.example", "bar  baz"),
                (6, "key", "value # not a comment"),
            ]
        );
        assert!(p.duplicates.is_empty());
    }

    #[test]
    fn first_duplicate_wins() {
        let p = parse(b"a 1\nA 2\nb 3\na 4\n").expect("valid");
        assert_eq!(kv(&p), vec![(1, "a", "1"), (3, "b", "3")]);
        assert_eq!(p.duplicates, vec![2, 4]);
    }

    #[test]
    fn lines_without_value_are_reported_with_their_numbers() {
        let got = parse(b"ok value\nlonely\n\nalso-lonely   \ngood x\n\xff\xfe v\n");
        let want = vec![
            LineError {
                line: 2,
                reason: LineProblem::MissingValue,
            },
            LineError {
                line: 4,
                reason: LineProblem::MissingValue,
            },
            LineError {
                line: 6,
                reason: LineProblem::NotUtf8,
            },
        ];
        assert_eq!(got, Err(want));
    }

    #[test]
    fn no_trailing_newline_and_empty_input() {
        assert_eq!(kv(&parse(b"a b").expect("valid")), vec![(1, "a", "b")]);
        assert_eq!(parse(b"").expect("valid"), Parsed::default());
    }

    #[test]
    fn inline_entries_use_entry_numbers() {
        let entries = vec!["Relay.Example OK".to_string(), "bad".to_string()];
        assert_eq!(
            parse_entries(&entries),
            Err(vec![LineError {
                line: 2,
                reason: LineProblem::MissingValue
            }])
        );
        let m = TextMap::from_entries(&entries[..1]).expect("valid");
        assert_eq!(
            m.lookup("relay.example").expect("no error"),
            Some("OK".to_string())
        );
        assert_eq!(m.lookup("Relay.Example").expect("no error"), None);
    }

    #[test]
    fn file_map_reloads_and_keeps_old_data_on_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.txt");
        std::fs::write(&path, "a 1\n").expect("write");
        let m = TextMap::open(&path).expect("valid");
        assert_eq!(m.lookup("a").expect("ok"), Some("1".into()));
        std::fs::write(&path, "a 2\nb 3\n").expect("write");
        m.reload().expect("reload");
        assert_eq!(m.lookup("a").expect("ok"), Some("2".into()));
        assert_eq!(m.len(), 2);
        std::fs::write(&path, "broken\n").expect("write");
        let err = m.reload().expect_err("bad line");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(m.lookup("b").expect("ok"), Some("3".into()));
    }

    #[test]
    fn missing_file_is_a_temporary_error() {
        let err = TextMap::open("/nonexistent/smx-maps/x.txt").expect_err("missing");
        assert_eq!(err.class(), crate::ErrorClass::Temporary);
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&input);
        }

        #[test]
        fn parsed_keys_are_lower_case_and_values_non_empty(input in "[ -~\t\n]{0,300}") {
            if let Ok(p) = parse(input.as_bytes()) {
                for e in p.entries {
                    prop_assert!(!e.key.is_empty());
                    prop_assert!(!e.value.is_empty());
                    prop_assert_eq!(e.key.to_ascii_lowercase(), e.key);
                }
            }
        }
    }
}
