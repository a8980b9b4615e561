//! `smx makemap --kind KIND`: checks every right-hand side of a text map
//! for the kind of map it will be used as, before the cdb file is built,
//! and reports each bad entry with its line number (the seed's createmap
//! checks; seed 3.9.3 for the formats).
//!
//! | kind | right-hand side |
//! | --- | --- |
//! | `access` | `ok`, `relay`, `reject`, `discard`, `cont`, `error:CODE [X.Y.Z] TEXT` with a 4xx/5xx code, each optionally `quick:` |
//! | `mailertable` | `[port:]esmtp:hosts`, `[port:]lmtp:[hosts]`, `[ip]` lists, or `{ protocol=...; port=...; host=...; }` |
//! | `aliases` | addresses (comma or space separated), `local:` |
//!
//! Maps of other kinds (`none`, the default) are not checked beyond the
//! text map syntax.

use clap::ValueEnum;

/// What a map is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MapKind {
    /// No check of values.
    None,
    /// An access map (seed 3.9.3).
    Access,
    /// A mailertable.
    Mailertable,
    /// An aliases map.
    Aliases,
}

/// The problem with a value of `kind`, if any.
pub fn check_value(kind: MapKind, value: &str) -> Option<String> {
    match kind {
        MapKind::None => None,
        MapKind::Access => smx_smar::access::parse_rhs(value)
            .err()
            .map(|e| format!("bad access map value '{}': {e}", value.escape_debug())),
        MapKind::Mailertable => smx_smar::mailertable::parse_entry(value)
            .err()
            .map(|e| format!("bad mailertable value '{}': {e}", value.escape_debug())),
        MapKind::Aliases => smx_smar::aliases::parse_value(value, "localhost")
            .is_none()
            .then(|| format!("bad alias value '{}'", value.escape_debug())),
    }
}

/// Every bad value of a parsed text map: (line, problem).
pub fn check(kind: MapKind, input: &[u8]) -> Vec<(usize, String)> {
    let Ok(parsed) = smx_maps::text::parse(input) else {
        // Syntax errors are reported by the builder.
        return Vec::new();
    };
    parsed
        .entries
        .iter()
        .filter_map(|e| check_value(kind, &e.value).map(|p| (e.line, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_per_kind() {
        assert_eq!(check_value(MapKind::Access, "quick:relay"), None);
        assert_eq!(
            check_value(MapKind::Access, "error:550 5.7.1 go away"),
            None
        );
        assert!(check_value(MapKind::Access, "relya").is_some());
        assert!(check_value(MapKind::Access, "error:250 fine").is_some());
        assert_eq!(check_value(MapKind::Mailertable, "esmtp:[10.1.2.3]"), None);
        assert_eq!(check_value(MapKind::Mailertable, "lmtp:"), None);
        assert!(check_value(MapKind::Mailertable, "esmtp:").is_some());
        assert_eq!(check_value(MapKind::Aliases, "a@b.example, c"), None);
        assert_eq!(check_value(MapKind::None, "anything"), None);
    }

    #[test]
    fn reports_lines() {
        let text = b"# access\ncltaddr:127.0.0.1 relay\nfrom:spam@x.example rejekt\n\nto:a@b ok\n";
        let bad = check(MapKind::Access, text);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 3);
    }
}
