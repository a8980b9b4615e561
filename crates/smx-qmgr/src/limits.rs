//! The per-IP/net limit table of the `qmgr_conf` map (seed 3.8.1).
//!
//! Entries have the key `kind:net` and a decimal value. `kind` is one of
//!
//! | kind | meaning | used by |
//! | --- | --- | --- |
//! | `oci` | initial concurrent outgoing connections to an IP address (slow start window) | [`crate::scheduler`] |
//! | `ocm` | maximum concurrent outgoing connections to an IP address | [`crate::scheduler`] |
//! | `octo` | seconds an entry of the outgoing connection cache stays valid | [`crate::scheduler`] |
//! | `icr` | incoming connections per 60 s from one client IP | [`crate::connctl`] |
//! | `icm` | concurrently open incoming sessions from one client IP | [`crate::connctl`] |
//!
//! `net` is a full IPv4 or IPv6 address (`127.0.0.1`, `2001:db8::1`), a
//! leading part of a dotted IPv4 address (`10`, `10.1`, `10.1.2`: every
//! address below it), a leading part of an IPv6 address in whole 16-bit
//! groups (`2001:db8`), or empty (`oci:`): the default for every address.
//! Keys are case-insensitive; blanks after the colon are ignored.
//!
//! A lookup for an address tries the full address, then ever shorter
//! leading parts (IPv4: three, two, one octets; IPv6: seven to one
//! groups), then the default; the first entry found wins. An IPv4-mapped
//! IPv6 address is looked up as IPv4. As the seed says, limits apply to
//! each single address; they are not added up over a net. A lookup without
//! an address (a destination given by name) sees only the default.
//!
//! # Text form
//!
//! [`LimitTable::parse`] reads the map's source text: one entry per line,
//! key and value separated by blanks, `#` starts a comment line, empty
//! lines are skipped. A map backend hands key/value pairs to
//! [`LimitTable::insert`] instead. Errors carry the line number (0 for
//! `insert`). The table holds at most [`MAX_ENTRIES`] entries and values up
//! to [`MAX_VALUE`], so a damaged map cannot exhaust memory.

use std::collections::HashMap;
use std::net::IpAddr;

use smx_conf::SessionConf;

/// Most entries in one table.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Largest value accepted (connections, seconds).
pub const MAX_VALUE: u32 = 100_000_000;

/// The kind of limit an entry sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `oci`: initial concurrent outgoing connections.
    Oci,
    /// `ocm`: maximum concurrent outgoing connections.
    Ocm,
    /// `octo`: outgoing connection cache entry timeout, seconds.
    Octo,
    /// `icr`: incoming connection rate per 60 s.
    Icr,
    /// `icm`: open incoming sessions.
    Icm,
}

impl LimitKind {
    /// The key prefix (without the colon).
    pub const fn name(self) -> &'static str {
        match self {
            LimitKind::Oci => "oci",
            LimitKind::Ocm => "ocm",
            LimitKind::Octo => "octo",
            LimitKind::Icr => "icr",
            LimitKind::Icm => "icm",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "oci" => Some(LimitKind::Oci),
            "ocm" => Some(LimitKind::Ocm),
            "octo" => Some(LimitKind::Octo),
            "icr" => Some(LimitKind::Icr),
            "icm" => Some(LimitKind::Icm),
            _ => None,
        }
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The key has no `kind:` prefix this table knows. Keys of other
    /// consumers of the map (`smtpc_session_conf:`) are skipped by
    /// [`LimitTable::parse`], not reported.
    #[error("line {line}: unknown key {key:?}")]
    UnknownKind {
        /// Line number (1-based; 0 for a single insert).
        line: usize,
        /// The key.
        key: String,
    },
    /// The part after the colon is not an address or net.
    #[error("line {line}: {net:?} is not an IP address or net")]
    BadNet {
        /// Line number.
        line: usize,
        /// The net text.
        net: String,
    },
    /// The value is not a number up to [`MAX_VALUE`].
    #[error("line {line}: value {value:?} is not a number from 0 to {MAX_VALUE}")]
    BadValue {
        /// Line number.
        line: usize,
        /// The value text.
        value: String,
    },
    /// The line has no value.
    #[error("line {line}: no value")]
    MissingValue {
        /// Line number.
        line: usize,
    },
    /// More than [`MAX_ENTRIES`] entries.
    #[error("more than {MAX_ENTRIES} entries")]
    TooMany,
}

/// Per-IP/net limits; see the module documentation for lookup rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitTable {
    entries: HashMap<(LimitKind, NetKey), u32>,
}

/// A normalised net: address family and the leading parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NetKey {
    Default,
    V4(Vec<u8>),
    V6(Vec<u16>),
}

impl LimitTable {
    /// An empty table (every lookup falls back to the caller's default).
    pub fn new() -> Self {
        LimitTable::default()
    }

    /// Parses the text form (see the module documentation). Keys of other
    /// kinds (`smtpc_session_conf:...`) are skipped.
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let mut t = LimitTable::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            // The key may contain blanks after the colon ("ocm: 10 50").
            let Some(colon) = l.find(':') else {
                return Err(LimitError::UnknownKind {
                    line,
                    key: l.to_string(),
                });
            };
            let kind_text = &l[..colon];
            let rest = l[colon + 1..].trim_start();
            let Some(kind) = LimitKind::from_name(kind_text) else {
                if kind_text.contains(char::is_whitespace) || kind_text.is_empty() {
                    return Err(LimitError::UnknownKind {
                        line,
                        key: kind_text.to_string(),
                    });
                }
                continue;
            };
            let mut words = rest.split_whitespace();
            let (net, value) = match (words.next(), words.next()) {
                (Some(v), None) => ("", v),
                (Some(n), Some(v)) => (n, v),
                (None, _) => return Err(LimitError::MissingValue { line }),
            };
            if words.next().is_some() {
                return Err(LimitError::BadValue {
                    line,
                    value: rest.to_string(),
                });
            }
            t.insert_kind(kind, net, value, line)?;
        }
        Ok(t)
    }

    /// Adds one map entry: `key` is `kind:net`, `value` a decimal number.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), LimitError> {
        let Some((kind_text, net)) = key.split_once(':') else {
            return Err(LimitError::UnknownKind {
                line: 0,
                key: key.to_string(),
            });
        };
        let kind = LimitKind::from_name(kind_text).ok_or_else(|| LimitError::UnknownKind {
            line: 0,
            key: key.to_string(),
        })?;
        self.insert_kind(kind, net.trim(), value.trim(), 0)
    }

    /// Sets one limit directly (`net` as in the key: empty for the default).
    pub fn set(&mut self, kind: LimitKind, net: &str, value: u32) -> Result<(), LimitError> {
        self.insert_kind(kind, net, &value.to_string(), 0)
    }

    fn insert_kind(
        &mut self,
        kind: LimitKind,
        net: &str,
        value: &str,
        line: usize,
    ) -> Result<(), LimitError> {
        let key = parse_net(net).ok_or_else(|| LimitError::BadNet {
            line,
            net: net.to_string(),
        })?;
        let v: u32 = value
            .parse()
            .ok()
            .filter(|v| *v <= MAX_VALUE)
            .ok_or_else(|| LimitError::BadValue {
                line,
                value: value.to_string(),
            })?;
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&(kind, key.clone())) {
            return Err(LimitError::TooMany);
        }
        self.entries.insert((kind, key), v);
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The limit of `kind` for `ip` (most specific entry first, then the
    /// default entry), or `None` when the table has neither.
    pub fn lookup(&self, kind: LimitKind, ip: Option<IpAddr>) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        net_keys(ip).find_map(|k| self.entries.get(&(kind, k)).copied())
    }
}

/// The `smtpc_session_conf:` entries of the `qmgr_conf` map (seed 3.8.1
/// item 6, 3.11.1): SMTP client options for sessions to an IP address or
/// net, looked up like the limits above.
///
/// Text form: `smtpc_session_conf:NET VALUE`, where `NET` is written as for
/// the limits and `VALUE`, the rest of the line, is a session
/// configuration (`tls_requirements { ... }`, see
/// [`smx_conf::SessionConf`]). Without a net (`smtpc_session_conf: VALUE`)
/// the entry is the default. A value that does not parse is an error with
/// its line number, like a bad limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionConfTable {
    entries: HashMap<NetKey, SessionConf>,
}

/// The key prefix of [`SessionConfTable`] entries.
const SESSION_CONF: &str = "smtpc_session_conf:";

impl SessionConfTable {
    /// Reads the `smtpc_session_conf:` lines of the map's source text;
    /// other lines are left to [`LimitTable::parse`].
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let mut t = SessionConfTable::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            let Some(rest) = l
                .get(..SESSION_CONF.len())
                .filter(|k| k.eq_ignore_ascii_case(SESSION_CONF))
                .map(|_| l[SESSION_CONF.len()..].trim_start())
            else {
                continue;
            };
            let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let (net, value) = match parse_net(first) {
                Some(net) if !first.is_empty() => (net, after.trim()),
                _ => (NetKey::Default, rest),
            };
            if value.is_empty() {
                return Err(LimitError::MissingValue { line });
            }
            let conf = SessionConf::parse(value).map_err(|_| LimitError::BadValue {
                line,
                value: value.chars().take(200).collect(),
            })?;
            if t.entries.len() >= MAX_ENTRIES && !t.entries.contains_key(&net) {
                return Err(LimitError::TooMany);
            }
            t.entries.insert(net, conf);
        }
        Ok(t)
    }

    /// The entry for `ip`: the most specific one, then the default.
    pub fn lookup(&self, ip: IpAddr) -> Option<&SessionConf> {
        if self.entries.is_empty() {
            return None;
        }
        net_keys(Some(ip)).find_map(|k| self.entries.get(&k))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The keys to try for `ip`, most specific first, ending with the
/// default: the whole address, then ever shorter leading parts.
fn net_keys(ip: Option<IpAddr>) -> impl Iterator<Item = NetKey> {
    let specific: Vec<NetKey> = match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(a)) => {
            let o = a.octets();
            (1..=4).rev().map(|n| NetKey::V4(o[..n].to_vec())).collect()
        }
        Some(IpAddr::V6(a)) => {
            let s = a.segments();
            (1..=8).rev().map(|n| NetKey::V6(s[..n].to_vec())).collect()
        }
        None => Vec::new(),
    };
    specific.into_iter().chain(std::iter::once(NetKey::Default))
}

/// Parses the net part of a key.
fn parse_net(net: &str) -> Option<NetKey> {
    let net = net.trim();
    if net.is_empty() {
        return Some(NetKey::Default);
    }
    let net = net
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(net);
    if let Ok(ip) = net.parse::<IpAddr>() {
        return Some(match ip.to_canonical() {
            IpAddr::V4(a) => NetKey::V4(a.octets().to_vec()),
            IpAddr::V6(a) => NetKey::V6(a.segments().to_vec()),
        });
    }
    if net.contains(':') {
        let groups: Option<Vec<u16>> = net
            .split(':')
            .map(|g| {
                if g.is_empty() || g.len() > 4 {
                    None
                } else {
                    u16::from_str_radix(g, 16).ok()
                }
            })
            .collect();
        let groups = groups?;
        (groups.len() < 8).then_some(NetKey::V6(groups))
    } else {
        let octets: Option<Vec<u8>> = net
            .split('.')
            .map(|o| {
                if o.is_empty() || o.len() > 3 || !o.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    o.parse().ok()
                }
            })
            .collect();
        let octets = octets?;
        (octets.len() < 4).then_some(NetKey::V4(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn seed_example_lookups() {
        let t = LimitTable::parse(
            "# seed 3.8.1\n\
             oci:127.0.0.1 5\n\
             ocm:127.0.0.1 10\n\
             oci:10 10\n\
             ocm: 10 50\n\
             oci: 1\n\
             ocm: 4\n\
             icr:10 5\n\
             icr:127.0.0.1 100\n\
             icm:127.0.0.1 120\n\
             smtpc_session_conf:10.1.1.1 something\n\
             \n",
        )
        .unwrap();
        let cases = [
            (LimitKind::Oci, "127.0.0.1", Some(5)),
            (LimitKind::Ocm, "127.0.0.1", Some(10)),
            (LimitKind::Oci, "10.9.8.7", Some(10)),
            (LimitKind::Ocm, "10.9.8.7", Some(50)),
            (LimitKind::Oci, "192.0.2.1", Some(1)),
            (LimitKind::Ocm, "192.0.2.1", Some(4)),
            (LimitKind::Icr, "10.0.0.1", Some(5)),
            (LimitKind::Icr, "192.0.2.1", None),
            (LimitKind::Icm, "127.0.0.1", Some(120)),
            (LimitKind::Icm, "::ffff:127.0.0.1", Some(120)),
            (LimitKind::Octo, "127.0.0.1", None),
        ];
        for (kind, addr, want) in cases {
            assert_eq!(t.lookup(kind, ip(addr)), want, "{kind:?} {addr}");
        }
        assert_eq!(t.lookup(LimitKind::Oci, None), Some(1));
        assert_eq!(t.len(), 9);
    }

    #[test]
    fn more_specific_wins_and_ipv6_prefixes() {
        let mut t = LimitTable::new();
        t.insert("icm:10", "1").unwrap();
        t.insert("icm:10.1", "2").unwrap();
        t.insert("icm:10.1.2", "3").unwrap();
        t.insert("icm:10.1.2.3", "4").unwrap();
        t.insert("ICM:2001:db8", "6").unwrap();
        t.insert("icm:2001:db8::1", "7").unwrap();
        t.insert("icm:[192.0.2.9]", "8").unwrap();
        assert_eq!(t.lookup(LimitKind::Icm, ip("10.1.2.3")), Some(4));
        assert_eq!(t.lookup(LimitKind::Icm, ip("10.1.2.4")), Some(3));
        assert_eq!(t.lookup(LimitKind::Icm, ip("10.1.3.4")), Some(2));
        assert_eq!(t.lookup(LimitKind::Icm, ip("10.2.3.4")), Some(1));
        assert_eq!(t.lookup(LimitKind::Icm, ip("11.2.3.4")), None);
        assert_eq!(t.lookup(LimitKind::Icm, ip("2001:db8::1")), Some(7));
        assert_eq!(t.lookup(LimitKind::Icm, ip("2001:db8::2")), Some(6));
        assert_eq!(t.lookup(LimitKind::Icm, ip("2001:db9::2")), None);
        assert_eq!(t.lookup(LimitKind::Icm, ip("192.0.2.9")), Some(8));
    }

    #[test]
    fn bad_entries_are_refused_with_line_numbers() {
        let bad = [
            (
                "oci:10.x 5",
                LimitError::BadNet {
                    line: 1,
                    net: "10.x".into(),
                },
            ),
            (
                "oci:1.2.3.4.5 5",
                LimitError::BadNet {
                    line: 1,
                    net: "1.2.3.4.5".into(),
                },
            ),
            (
                "oci:256 5",
                LimitError::BadNet {
                    line: 1,
                    net: "256".into(),
                },
            ),
            (
                "oci:10 -1",
                LimitError::BadValue {
                    line: 1,
                    value: "-1".into(),
                },
            ),
            (
                "oci:10 999999999999",
                LimitError::BadValue {
                    line: 1,
                    value: "999999999999".into(),
                },
            ),
            (
                "oci:10 5 6",
                LimitError::BadValue {
                    line: 1,
                    value: "10 5 6".into(),
                },
            ),
            ("oci:", LimitError::MissingValue { line: 1 }),
            (
                "\nnocolon 5",
                LimitError::UnknownKind {
                    line: 2,
                    key: "nocolon 5".into(),
                },
            ),
        ];
        for (text, want) in bad {
            assert_eq!(LimitTable::parse(text), Err(want), "{text}");
        }
        let mut t = LimitTable::new();
        assert!(matches!(
            t.insert("xyz:1", "1"),
            Err(LimitError::UnknownKind { .. })
        ));
        assert!(matches!(
            t.insert("noprefix", "1"),
            Err(LimitError::UnknownKind { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = LimitTable::parse(&s);
        }

        #[test]
        fn exact_entry_found(a in any::<u32>(), v in 0u32..1000) {
            let addr = std::net::Ipv4Addr::from(a);
            let mut t = LimitTable::new();
            t.set(LimitKind::Ocm, &addr.to_string(), v).unwrap();
            prop_assert_eq!(t.lookup(LimitKind::Ocm, Some(IpAddr::V4(addr))), Some(v));
            prop_assert_eq!(t.lookup(LimitKind::Oci, Some(IpAddr::V4(addr))), None);
        }
    }

    #[test]
    fn session_conf_entries() {
        let text = "oci:127.0.0.1 5\n\
             smtpc_session_conf:10.1 tls_requirements { flags = { verified }; }\n\
             SMTPC_SESSION_CONF:10.1.2.3 tls_requirements { common_name = \"mx.example\"; }\n\
             smtpc_session_conf: tls_requirements { min_cipher_bits = 128; }\n\
             smtpc_session_conf:2001:db8 tls_requirements { flags = { encrypted }; }\n";
        let t = SessionConfTable::parse(text).unwrap();
        assert_eq!(t.len(), 4);
        let tls = |a: &str| {
            t.lookup(a.parse().unwrap())
                .and_then(|c| c.tls.clone())
                .unwrap()
        };
        assert!(tls("10.1.9.9").flags.verified);
        assert_eq!(tls("10.1.2.3").common_name.as_deref(), Some("mx.example"));
        assert!(
            !tls("10.1.2.3").flags.verified,
            "the most specific entry wins alone"
        );
        assert_eq!(tls("192.0.2.1").min_cipher_bits, 128);
        assert!(tls("2001:db8::25").flags.encrypted);
        assert!(tls("::ffff:10.1.0.1").flags.verified, "mapped IPv4 as IPv4");
        // The limit lines are still the limit table's.
        assert_eq!(LimitTable::parse(text).unwrap().len(), 1);
        assert!(
            SessionConfTable::parse("")
                .unwrap()
                .lookup(ip("10.0.0.1").unwrap())
                .is_none()
        );
    }

    #[test]
    fn bad_session_conf_entries_are_errors() {
        for (text, want) in [
            (
                "smtpc_session_conf:10.1\n",
                LimitError::MissingValue { line: 1 },
            ),
            (
                "\nsmtpc_session_conf:10.1 tls_requirements { bogus = 1; }\n",
                LimitError::BadValue {
                    line: 2,
                    value: "tls_requirements { bogus = 1; }".into(),
                },
            ),
        ] {
            assert_eq!(SessionConfTable::parse(text), Err(want), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn session_conf_parse_never_panics(text in "(smtpc_session_conf:[ -~]{0,60}\n){0,4}") {
            let _ = SessionConfTable::parse(&text);
        }
    }
}
