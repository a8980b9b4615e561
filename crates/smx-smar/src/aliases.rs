//! Aliases (seed 3.9.2 item 3, 3.9.3, 3.12.3, 3.14) and the validity of
//! local addresses (seed 4.3.2, local_user_map).
//!
//! # Keys
//!
//! The aliases flags decide which keys are tried (lookup order of seed
//! 3.12.1 with `full_address`, `detail_plus`, `detail_star`, `star` and,
//! for full-address keys, `@domain` and `@.subdomain`; `implicitly_match_detail`
//! adds `user` for `user+detail`):
//!
//! * `localpart` (default): the local part alone, for local addresses only;
//! * `local_domains`: full addresses, for local addresses only;
//! * `all_domains`: full addresses, for every address.
//!
//! A local address is one whose domain has the mailertable entry `lmtp:`
//! ([`crate::mailertable::Entry::is_local`]). A key written with the
//! sendmail-style colon (`name:`) is found too: after the plain keys fail,
//! each key is tried again with a `:` appended.
//!
//! # Right-hand sides
//!
//! * `local:` — a valid local address, delivered as is;
//! * `<a@b> <c@d> ...` — the members (RFC 5321 paths in angle brackets,
//!   separated by white space; commas are accepted too);
//! * a single address without brackets — if it has no `@`, it is qualified
//!   with the host name (or, with `preserve_domain`, the domain of the
//!   address being expanded) (seed 3.9.3).
//!
//! With `replace_macros` the macros `${user}`, `${detail}`, `${domain}`,
//! `${delimiter}`, `${extension}` (delimiter and detail), `${subdomain}`
//! (the part of the domain before the `.dom` of a matching `@.dom` key)
//! and `${tag}` (empty) are replaced first (seed 3.12.3).
//!
//! # Expansion
//!
//! Members are expanded again, up to [`MAX_DEPTH`] levels (seed: 5). A
//! member equal to the alias being expanded is delivered as is (the usual
//! `list: list, other` idiom); any other cycle is a permanent error, as is
//! a deeper nesting. Final recipients are de-duplicated (case-insensitive)
//! and limited to [`MAX_RCPTS`], the lookups of one expansion to
//! [`MAX_LOOKUPS`]. For a list `L` (an alias with members)
//! an `owner-L` alias makes `owner-L@domain` the envelope sender of the
//! expansion (the original domain is kept), and a `verp-L` alias asks for
//! VERP (seed 3.14).
//!
//! # Valid local addresses
//!
//! A local address is valid when the aliases map has an entry for it (any
//! RHS) or the `local_user_map` has one for its local part (with that map's
//! `implicitly_match_detail`). With neither map configured every local
//! address is valid.

use smx_conf::model::qmgr::LookupFlags;
use smx_conf::model::smar::AliasFlags;
use smx_maps::{Map, keys};

use crate::access::split_address;
use crate::error::SmarError;

/// Deepest alias nesting (seed 3.9.3: 5 levels).
pub const MAX_DEPTH: usize = 5;
/// Most final recipients of one expansion.
pub const MAX_RCPTS: usize = 1000;
/// Most alias lookups of one expansion (duplicates included), so that
/// lists of lists cannot multiply into millions of lookups.
pub const MAX_LOOKUPS: usize = 4 * MAX_RCPTS;
/// Longest address produced by a macro replacement, in bytes.
pub const MAX_ADDRESS: usize = 512;

/// A parsed alias right-hand side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasValue {
    /// `local:`.
    Local,
    /// The member addresses, qualified, without angle brackets.
    Members(Vec<String>),
}

/// The aliases map and its settings.
#[derive(Debug, Clone, Copy)]
pub struct Aliases<'a> {
    /// The map.
    pub map: &'a dyn Map,
    /// The flags.
    pub flags: &'a AliasFlags,
    /// `address_delimiter`.
    pub delimiters: &'a str,
    /// The host name used to qualify bare local parts.
    pub hostname: &'a str,
}

/// The local user map and its flag.
#[derive(Debug, Clone, Copy)]
pub struct LocalUsers<'a> {
    /// The map.
    pub map: &'a dyn Map,
    /// `implicitly_match_detail`.
    pub implicitly_match_detail: bool,
    /// `address_delimiter`.
    pub delimiters: &'a str,
}

/// The result of an expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// Final recipients (the address itself if it is no alias).
    pub rcpts: Vec<String>,
    /// `owner-L@domain` for a list with an owner.
    pub owner: Option<String>,
    /// The list asks for VERP.
    pub verp: bool,
}

/// Why an expansion failed permanently (temporary failures are
/// [`SmarError`]s of the lookups).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// Aliases nested deeper than [`MAX_DEPTH`].
    #[error("aliases nested deeper than {MAX_DEPTH} levels at {0}")]
    TooDeep(String),
    /// An alias refers back to one being expanded.
    #[error("alias loop at {0}")]
    Loop(String),
    /// More than [`MAX_RCPTS`] recipients.
    #[error("more than {MAX_RCPTS} recipients")]
    TooMany,
    /// An entry whose RHS cannot be parsed.
    #[error("invalid alias entry {0}")]
    BadEntry(String),
}

/// An expansion failure: permanent or a lookup that may work later.
#[derive(Debug, thiserror::Error)]
pub enum ExpandFailure {
    /// Retrying will not help.
    #[error(transparent)]
    Permanent(#[from] ExpandError),
    /// A lookup failed; retry later.
    #[error(transparent)]
    Temporary(#[from] SmarError),
}

impl Aliases<'_> {
    /// The keys for `addr`; `is_local` says whether its domain is local.
    pub fn keys(&self, addr: &str, is_local: bool) -> Vec<String> {
        let (local, domain) = split_address(addr);
        let mut f = LookupFlags::default();
        f.dot = false;
        let opts = keys::AddressOptions {
            localpart_step: false,
            implicitly_match_detail: self.flags.implicitly_match_detail,
        };
        let mut out = Vec::new();
        if self.flags.all_domains || (self.flags.local_domains && is_local) {
            out.extend(keys::address_keys_with(
                local,
                domain,
                self.delimiters,
                &f,
                opts,
            ));
        }
        if self.flags.localpart && is_local {
            out.extend(keys::address_keys_with(
                local,
                "",
                self.delimiters,
                &f,
                keys::AddressOptions {
                    localpart_step: true,
                    ..opts
                },
            ));
        }
        out
    }

    /// The entry for `addr`, if any: the key that matched and its value
    /// (macros replaced, members qualified).
    pub fn lookup(
        &self,
        addr: &str,
        is_local: bool,
    ) -> Result<Option<(String, AliasValue)>, SmarError> {
        let keys = self.keys(addr, is_local);
        let hit = match smx_maps::lookup_first(self.map, &keys)? {
            Some(h) => Some(h),
            None => {
                let colon: Vec<String> = keys.iter().map(|k| format!("{k}:")).collect();
                smx_maps::lookup_first(self.map, &colon)?
            }
        };
        let Some(hit) = hit else {
            return Ok(None);
        };
        let key = hit.key.trim_end_matches(':').to_owned();
        let value = if self.flags.replace_macros {
            replace_macros(&hit.value, addr, &key, self.delimiters)
        } else {
            hit.value
        };
        let (_, domain) = split_address(addr);
        let qualify = if self.flags.preserve_domain && !domain.is_empty() {
            domain
        } else {
            self.hostname
        };
        match parse_value(&value, qualify) {
            Some(v) => Ok(Some((key, v))),
            None => {
                tracing::warn!(key = %key, value = %value, "invalid alias entry");
                Err(SmarError::BadEntry {
                    key,
                    problem: "not local: or a list of addresses".into(),
                })
            }
        }
    }

    /// Expands `addr` (see the module doc). `is_local` tells whether a
    /// domain is local.
    pub fn expand(
        &self,
        addr: &str,
        is_local: &dyn Fn(&str) -> Result<bool, SmarError>,
    ) -> Result<Expansion, ExpandFailure> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        let mut lookups = 0usize;
        let is_list = self.expand_rec(addr, 0, &mut path, &mut out, &mut lookups, is_local)?;
        let mut exp = Expansion {
            rcpts: out,
            owner: None,
            verp: false,
        };
        if is_list {
            let (local, domain) = split_address(addr);
            let local_dom = is_local(domain)?;
            let with = |prefix: &str| {
                if domain.is_empty() {
                    format!("{prefix}{local}")
                } else {
                    format!("{prefix}{local}@{domain}")
                }
            };
            let owner = with("owner-");
            if self.lookup(&owner, local_dom)?.is_some() {
                exp.owner = Some(owner);
            }
            exp.verp = self.lookup(&with("verp-"), local_dom)?.is_some();
        }
        Ok(exp)
    }

    /// Returns whether `addr` was an alias with members.
    fn expand_rec(
        &self,
        addr: &str,
        depth: usize,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
        lookups: &mut usize,
        is_local: &dyn Fn(&str) -> Result<bool, SmarError>,
    ) -> Result<bool, ExpandFailure> {
        *lookups += 1;
        if *lookups > MAX_LOOKUPS {
            return Err(ExpandError::TooMany.into());
        }
        let (_, domain) = split_address(addr);
        let local = is_local(domain)?;
        let members = match self.lookup(addr, local)? {
            Some((_, AliasValue::Members(m))) => m,
            Some((_, AliasValue::Local)) | None => {
                push_unique(out, addr)?;
                return Ok(false);
            }
        };
        if depth >= MAX_DEPTH {
            return Err(ExpandError::TooDeep(addr.into()).into());
        }
        path.push(addr.to_ascii_lowercase());
        for m in members {
            if m.eq_ignore_ascii_case(addr) {
                push_unique(out, &m)?;
            } else if path.contains(&m.to_ascii_lowercase()) {
                return Err(ExpandError::Loop(m).into());
            } else {
                self.expand_rec(&m, depth + 1, path, out, lookups, is_local)?;
            }
        }
        path.pop();
        Ok(true)
    }
}

impl LocalUsers<'_> {
    /// Whether the local part of `addr` is in the map.
    pub fn contains(&self, addr: &str) -> Result<bool, SmarError> {
        let (local, _) = split_address(addr);
        let mut f = LookupFlags::default();
        f.dot = false;
        let keys = keys::address_keys_with(
            local,
            "",
            self.delimiters,
            &f,
            keys::AddressOptions {
                localpart_step: true,
                implicitly_match_detail: self.implicitly_match_detail,
            },
        );
        Ok(smx_maps::lookup_first(self.map, &keys)?.is_some())
    }
}

/// Whether a local address is valid (module doc, "Valid local addresses").
pub fn local_address_exists(
    aliases: Option<&Aliases<'_>>,
    users: Option<&LocalUsers<'_>>,
    addr: &str,
) -> Result<bool, SmarError> {
    if aliases.is_none() && users.is_none() {
        return Ok(true);
    }
    if let Some(a) = aliases {
        let keys = a.keys(addr, true);
        if smx_maps::lookup_first(a.map, &keys)?.is_some() {
            return Ok(true);
        }
        let colon: Vec<String> = keys.iter().map(|k| format!("{k}:")).collect();
        if smx_maps::lookup_first(a.map, &colon)?.is_some() {
            return Ok(true);
        }
    }
    match users {
        Some(u) => u.contains(addr),
        None => Ok(false),
    }
}

/// Parses an alias RHS; `qualify` is the domain for a bare local part.
pub fn parse_value(value: &str, qualify: &str) -> Option<AliasValue> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("local:") {
        return Some(AliasValue::Local);
    }
    let mut members = Vec::new();
    let tokens: Vec<&str> = v
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        return None;
    }
    let single_bare = tokens.len() == 1 && !tokens[0].starts_with('<');
    for t in tokens {
        let a = match t.strip_prefix('<') {
            Some(r) => r.strip_suffix('>')?,
            None if t.ends_with('>') => return None,
            None => t,
        };
        if a.is_empty()
            || a.len() > MAX_ADDRESS
            || a.contains(['<', '>'])
            || a.chars().any(char::is_control)
        {
            return None;
        }
        if !a.contains('@') && (single_bare || !qualify.is_empty()) {
            members.push(format!("{a}@{qualify}"));
        } else {
            members.push(a.to_owned());
        }
        if members.len() > MAX_RCPTS {
            return None;
        }
    }
    Some(AliasValue::Members(members))
}

/// Replaces the macros of seed 3.12.3 in `value` for `addr`, which matched
/// `key`.
pub fn replace_macros(value: &str, addr: &str, key: &str, delimiters: &str) -> String {
    let (local, domain) = split_address(addr);
    let lp = keys::split_local(local, delimiters);
    let (delim, detail) = match lp.detail {
        Some((c, d)) => (c.to_string(), d),
        None => (String::new(), ""),
    };
    let extension = format!("{delim}{detail}");
    let key_dom = key.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let subdomain = match key_dom.strip_prefix('.') {
        Some(suffix) if !suffix.is_empty() => {
            let d = domain.to_ascii_lowercase();
            d.strip_suffix(suffix)
                .and_then(|s| s.strip_suffix('.'))
                .map(|s| domain[..s.len()].to_owned())
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        let rep: &str = match name {
            "user" => lp.user,
            "detail" => detail,
            "domain" => domain,
            "delimiter" => &delim,
            "extension" => &extension,
            "subdomain" => &subdomain,
            "tag" => "",
            _ => &rest[i..i + 2 + end + 1],
        };
        out.push_str(rep);
        rest = &after[end + 1..];
        if out.len() > MAX_ADDRESS * 4 {
            break;
        }
    }
    out.push_str(rest);
    out
}

fn push_unique(out: &mut Vec<String>, a: &str) -> Result<(), ExpandError> {
    if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
        if out.len() >= MAX_RCPTS {
            return Err(ExpandError::TooMany);
        }
        out.push(a.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smx_maps::TextMap;

    fn map(entries: &[&str]) -> TextMap {
        TextMap::from_entries(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn flags(names: &[&str]) -> AliasFlags {
        let mut f = AliasFlags::default();
        for (n, _) in AliasFlags::NAMES {
            f.set_flag(n, names.contains(n));
        }
        f
    }

    fn local_doms(d: &str) -> Result<bool, SmarError> {
        Ok(matches!(
            d.to_ascii_lowercase().as_str(),
            "local.host" | "my.dom" | "first.dom" | "second.dom" | "local.dom"
        ))
    }

    fn expand(a: &Aliases<'_>, addr: &str) -> Result<Expansion, ExpandFailure> {
        a.expand(addr, &local_doms)
    }

    /// Seed 3.9.3 (Aliases) and 3.14 (VERP).
    #[test]
    fn seed_examples_localpart() {
        let m = map(&[
            "myalias: localuser",
            "mylist: <user1@my.dom> <user2@my.dom> <localuser@local.host>",
            "owner-mylist: someuser",
            "otherlist: <user5@my.dom> <user6@other.dom> <user7@local.host>",
            "verp-otherlist: something",
        ]);
        let f = flags(&["localpart"]);
        let a = Aliases {
            map: &m,
            flags: &f,
            delimiters: "+",
            hostname: "local.host",
        };
        let e = expand(&a, "myalias@my.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["localuser@local.host"]);
        assert_eq!(e.owner, None);
        let e = expand(&a, "mylist@my.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            e.rcpts,
            ["user1@my.dom", "user2@my.dom", "localuser@local.host"]
        );
        assert_eq!(e.owner.as_deref(), Some("owner-mylist@my.dom"));
        assert!(!e.verp);
        let e = expand(&a, "otherlist@local.host").unwrap_or_else(|e| panic!("{e}"));
        assert!(e.verp);
        assert_eq!(e.rcpts.len(), 3);
        // Not local: aliases in localpart mode are not used.
        let e = expand(&a, "mylist@remote.example").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["mylist@remote.example"]);
    }

    /// Seed 3.9.3, flag local_domains.
    #[test]
    fn seed_example_local_domains() {
        let m = map(&["myalias@first.dom: wuser1", "another@second.dom: user2"]);
        let f = flags(&["local_domains"]);
        let a = Aliases {
            map: &m,
            flags: &f,
            delimiters: "+",
            hostname: "local.host",
        };
        let ok = |addr| local_address_exists(Some(&a), None, addr).unwrap_or(false);
        assert!(!ok("myalias@second.dom"));
        assert!(!ok("another@first.dom"));
        assert!(ok("myalias@first.dom"));
        assert!(ok("another@second.dom"));
        let e = expand(&a, "myalias@first.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["wuser1@local.host"]);
    }

    /// Seed 4.3.2: valid local addresses with local: entries.
    #[test]
    fn seed_example_local_entries() {
        let m = map(&[
            "postmaster: <user@host.domain>",
            "abuse: user+abuse",
            "user++: local:",
            "user: local:",
        ]);
        let f = flags(&["localpart"]);
        let a = Aliases {
            map: &m,
            flags: &f,
            delimiters: "+",
            hostname: "local.host",
        };
        let ok = |addr| local_address_exists(Some(&a), None, addr).unwrap_or(false);
        for (addr, want) in [
            ("postmaster@my.dom", true),
            ("abuse@my.dom", true),
            ("user@my.dom", true),
            ("user+x@my.dom", true),
            ("user+@my.dom", false),
            ("other@my.dom", false),
        ] {
            assert_eq!(ok(addr), want, "{addr}");
        }
        let e = expand(&a, "abuse@my.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["user+abuse@local.host"]);
        let e = expand(&a, "user+x@my.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["user+x@my.dom"]);
        // local_user_map alone.
        let users = map(&["alice x", "bob x"]);
        let lu = LocalUsers {
            map: &users,
            implicitly_match_detail: true,
            delimiters: "+",
        };
        assert!(local_address_exists(None, Some(&lu), "alice+box@my.dom").unwrap_or(false));
        assert!(!local_address_exists(None, Some(&lu), "carol@my.dom").unwrap_or(true));
        let strict = LocalUsers {
            implicitly_match_detail: false,
            ..lu
        };
        assert!(!local_address_exists(None, Some(&strict), "alice+box@my.dom").unwrap_or(true));
        assert!(local_address_exists(None, None, "anyone@my.dom").unwrap_or(false));
    }

    #[test]
    fn preserve_domain_and_implicit_detail() {
        let m = map(&["sales: bob"]);
        let f = flags(&["localpart", "preserve_domain", "implicitly_match_detail"]);
        let a = Aliases {
            map: &m,
            flags: &f,
            delimiters: "+",
            hostname: "local.host",
        };
        let e = expand(&a, "sales+q3@my.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["bob@my.dom"]);
    }

    /// Seed 3.12.3.
    #[test]
    fn macros() {
        let m = map(&["alias*@.domain user${extension}@${subdomain}.domain"]);
        let f = flags(&["all_domains", "replace_macros"]);
        let a = Aliases {
            map: &m,
            flags: &f,
            delimiters: "+",
            hostname: "local.host",
        };
        for (addr, want) in [
            ("alias@host.domain", "user@host.domain"),
            ("alias+detail@host2.domain", "user+detail@host2.domain"),
        ] {
            let e = expand(&a, addr).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.rcpts, [want], "{addr}");
        }
        assert_eq!(
            replace_macros(
                "${user}|${detail}|${domain}|${delimiter}|${x}|${",
                "u+d@D.x",
                "u+*@d.x",
                "+"
            ),
            "u|d|D.x|+|${x}|${"
        );
    }

    #[test]
    fn nesting_loops_and_limits() {
        let m = map(&[
            "l1: <l2@my.dom>",
            "l2: <l3@my.dom>",
            "l3: <l4@my.dom>",
            "l4: <l5@my.dom>",
            "l5: <end@my.dom>",
            "d1: <d2@my.dom>",
            "d2: <d3@my.dom>",
            "d3: <d4@my.dom>",
            "d4: <d5@my.dom>",
            "d5: <d6@my.dom>",
            "d6: <end@my.dom>",
            "a: <b@my.dom>",
            "b: <a@my.dom>",
            "self: <self@my.dom> <x@remote.example>",
            "bad: <unterminated",
        ]);
        let f = flags(&["localpart"]);
        let a = Aliases {
            map: &m,
            flags: &f,
            delimiters: "+",
            hostname: "local.host",
        };
        let e = expand(&a, "l1@my.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["end@my.dom"]);
        assert!(matches!(
            expand(&a, "d1@my.dom"),
            Err(ExpandFailure::Permanent(ExpandError::TooDeep(_)))
        ));
        assert!(matches!(
            expand(&a, "a@my.dom"),
            Err(ExpandFailure::Permanent(ExpandError::Loop(_)))
        ));
        let e = expand(&a, "self@my.dom").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.rcpts, ["self@my.dom", "x@remote.example"]);
        assert!(matches!(
            expand(&a, "bad@my.dom"),
            Err(ExpandFailure::Temporary(SmarError::BadEntry { .. }))
        ));
    }

    #[test]
    fn lists_of_lists_are_bounded() {
        let f = flags(&["localpart"]);
        let entries: Vec<String> = (0..5)
            .map(|l| {
                let members: String = (0..30).map(|_| format!("<l{}@my.dom> ", l + 1)).collect();
                format!("l{l} {members}")
            })
            .collect();
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        let m = map(&refs);
        let a = Aliases {
            map: &m,
            flags: &f,
            delimiters: "+",
            hostname: "local.host",
        };
        // 30^5 paths to one address: stopped by the lookup bound.
        assert!(matches!(
            expand(&a, "l0@my.dom"),
            Err(ExpandFailure::Permanent(ExpandError::TooMany))
        ));
    }

    #[test]
    fn values() {
        assert_eq!(parse_value("local:", "h"), Some(AliasValue::Local));
        assert_eq!(
            parse_value("<a@b>, <c@d>", "h"),
            Some(AliasValue::Members(vec!["a@b".into(), "c@d".into()]))
        );
        assert_eq!(
            parse_value("x", "h"),
            Some(AliasValue::Members(vec!["x@h".into()]))
        );
        assert_eq!(parse_value("", "h"), None);
        assert_eq!(parse_value("<a@b", "h"), None);
        assert_eq!(parse_value("<a<b>", "h"), None);
    }

    proptest::proptest! {
        #[test]
        fn macros_and_values_never_panic(v in "\\PC{0,60}", addr in "\\PC{0,30}", key in "\\PC{0,30}") {
            let r = replace_macros(&v, &addr, &key, "+-");
            proptest::prop_assert!(r.len() <= v.len() * 40 + MAX_ADDRESS * 8);
            let _ = parse_value(&r, "h");
        }
    }
}
