//! The mailertable (seed 3.9.3): where mail for a domain or address goes.
//!
//! # Keys
//!
//! `LHS = [local "@"] ["."] hostname | "."`. A recipient `local@domain` is
//! looked up with the mailertable flags of the configuration (default
//! `domain`, `dotsubdomain`, `dot`; seed 3.9.2 item 9c) in the order of
//! seed 3.12.1, except that domain keys carry no `@`: `local@host.dom`
//! (with `full_address`), `host.dom`, `.dom`, then `.` (the default
//! entry). Keys are lower-cased.
//!
//! # Right-hand sides
//!
//! The mailertable syntax:
//!
//! ```text
//! RHS   = [port ":"] ["esmtp:"] hosts | "lmtp:" | port ":" "lmtp:" hosts
//! hosts = hostname | "[" IPv4 "]" { " " "[" IPv4 "]" }
//! ```
//!
//! or the configuration syntax in braces:
//!
//! ```text
//! { protocol = esmtp|lmtp; port = N; host = NAME; }
//! { protocol = esmtp; ipv4 = { 10.1.2.3, 10.1.2.4 }; }
//! ```
//!
//! * `lmtp:` alone (or `{ protocol = lmtp; }`) is LMTP over smtpc's
//!   `LMTP_socket`; LMTP over TCP needs both a port and a host (seed).
//! * A host name is subject to MX lookups; an IP list is used as given.
//! * Our extensions: IPv6 addresses in brackets (`[2001:db8::1]`) and in
//!   `ipv6 = { ... }`; a bracketed host name (`[relay.example]`) is looked
//!   up for A/AAAA only, without MX, as in sendmail.
//! * The port is 1–65535; without one, ESMTP uses 25.
//!
//! An entry that cannot be parsed is an operator error: lookups that hit it
//! fail temporarily (mail waits until the entry is fixed).

use std::net::IpAddr;

use smx_conf::model::qmgr::LookupFlags;
use smx_ipc::qmgr_smar::Protocol;
use smx_maps::{Map, keys};

use crate::access::split_address;
use crate::error::SmarError;

/// Most addresses in one `[ip]` list or `ipv4 = { }` list.
pub const MAX_ADDRS: usize = 32;

/// The default SMTP port.
pub const SMTP_PORT: u16 = 25;

/// Where a mailertable entry sends mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// LMTP over the configured Unix socket.
    LmtpSocket,
    /// A host name: MX lookup (`mx: true`) or A/AAAA only.
    Host {
        /// The host name, lower-cased, without a trailing dot.
        name: String,
        /// Whether MX records are looked up.
        mx: bool,
    },
    /// These addresses, as given.
    Addrs(Vec<IpAddr>),
}

/// A parsed mailertable entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// ESMTP or LMTP.
    pub protocol: Protocol,
    /// The port, if given.
    pub port: Option<u16>,
    /// Where to.
    pub target: Target,
}

impl Entry {
    /// Whether the entry makes its domain local: `lmtp:` alone, delivery
    /// over the local LMTP socket (seed 4.3.1). LMTP over TCP to another
    /// host is treated like any remote route (relaying must be allowed,
    /// and the local user maps are not consulted).
    pub fn is_local(&self) -> bool {
        self.target == Target::LmtpSocket
    }

    /// The port to connect to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(SMTP_PORT)
    }
}

/// Why an entry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// Nothing after the protocol.
    #[error("no host")]
    NoHost,
    /// A port that is not 1-65535.
    #[error("bad port")]
    BadPort,
    /// Not a host name or bracketed address.
    #[error("bad host '{0}'")]
    BadHost(String),
    /// LMTP over TCP without port or host.
    #[error("lmtp over TCP needs a port and a host")]
    LmtpNeedsPortAndHost,
    /// Something else in the configuration syntax.
    #[error("bad syntax: {0}")]
    Syntax(&'static str),
    /// Unknown protocol.
    #[error("unknown protocol")]
    Protocol,
    /// Too many addresses.
    #[error("more than {MAX_ADDRS} addresses")]
    TooMany,
}

/// Parses a right-hand side.
pub fn parse_entry(rhs: &str) -> Result<Entry, EntryProblem> {
    let rhs = rhs.trim();
    if let Some(inner) = rhs.strip_prefix('{') {
        return parse_braced(inner);
    }
    let mut rest = rhs;
    let mut port = None;
    if let Some(i) = rest.find(':') {
        let head = &rest[..i];
        if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) {
            port = Some(parse_port(head)?);
            rest = rest[i + 1..].trim_start();
        }
    }
    let mut protocol = Protocol::Esmtp;
    if let Some(r) = strip_ci(rest, "esmtp:") {
        rest = r.trim_start();
    } else if let Some(r) = strip_ci(rest, "lmtp:") {
        protocol = Protocol::Lmtp;
        rest = r.trim_start();
        if rest.is_empty() {
            if port.is_some() {
                return Err(EntryProblem::LmtpNeedsPortAndHost);
            }
            return Ok(Entry {
                protocol,
                port: None,
                target: Target::LmtpSocket,
            });
        }
        if port.is_none() {
            return Err(EntryProblem::LmtpNeedsPortAndHost);
        }
    }
    let target = parse_hosts(rest)?;
    Ok(Entry {
        protocol,
        port,
        target,
    })
}

/// The mailertable with its lookup flags.
#[derive(Debug, Clone, Copy)]
pub struct Mailertable<'a> {
    /// The map.
    pub map: &'a dyn Map,
    /// Lookup flags.
    pub flags: &'a LookupFlags,
    /// `address_delimiter`.
    pub delimiters: &'a str,
}

impl Mailertable<'_> {
    /// The entry for an address (`local@domain`) or a bare domain.
    pub fn lookup(&self, addr: &str) -> Result<Option<(String, Entry)>, SmarError> {
        let (local, domain) = if addr.contains('@') {
            split_address(addr)
        } else {
            ("", addr)
        };
        let keys = lookup_keys(local, domain, self.delimiters, self.flags);
        match smx_maps::lookup_first(self.map, &keys)? {
            None => Ok(None),
            Some(hit) => match parse_entry(&hit.value) {
                Ok(e) => Ok(Some((hit.key, e))),
                Err(p) => {
                    tracing::warn!(key = %hit.key, value = %hit.value, problem = %p, "invalid mailertable entry");
                    Err(SmarError::BadEntry {
                        key: hit.key,
                        problem: p.to_string(),
                    })
                }
            },
        }
    }

    /// Whether mail to `domain` is delivered here (an LMTP entry).
    pub fn is_local_domain(&self, domain: &str) -> Result<bool, SmarError> {
        Ok(self.lookup(domain)?.is_some_and(|(_, e)| e.is_local()))
    }
}

/// The keys for `local@domain` (`local` may be empty for a bare domain).
pub fn lookup_keys(
    local: &str,
    domain: &str,
    delimiters: &str,
    flags: &LookupFlags,
) -> Vec<String> {
    let mut f = *flags;
    if local.is_empty() {
        f.full_address = false;
        f.detail_plus = false;
        f.detail_star = false;
        f.star = false;
    }
    let mut out = Vec::new();
    if domain.is_empty() {
        if f.dot {
            out.push(".".to_owned());
        }
        return out;
    }
    for k in keys::address_keys(
        if local.is_empty() { "x" } else { local },
        domain,
        delimiters,
        &f,
        false,
    ) {
        let k = match k.strip_prefix('@') {
            Some(d) => d.to_owned(),
            None if local.is_empty() => continue,
            None => k,
        };
        out.push(k);
    }
    out
}

// ---- helpers -------------------------------------------------------------

fn strip_ci<'s>(s: &'s str, p: &str) -> Option<&'s str> {
    if s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p) {
        Some(&s[p.len()..])
    } else {
        None
    }
}

fn parse_port(s: &str) -> Result<u16, EntryProblem> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(EntryProblem::BadPort),
    }
}

fn parse_hosts(s: &str) -> Result<Target, EntryProblem> {
    let s = s.trim();
    if s.is_empty() {
        return Err(EntryProblem::NoHost);
    }
    if s.starts_with('[') {
        let mut addrs = Vec::new();
        let mut name = None;
        for tok in s.split_whitespace() {
            let inner = tok
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .ok_or_else(|| EntryProblem::BadHost(tok.into()))?;
            let inner = inner.strip_prefix("IPv6:").unwrap_or(inner);
            match inner.parse::<IpAddr>() {
                Ok(a) => addrs.push(a),
                Err(_) if valid_host(inner) && name.is_none() && addrs.is_empty() => {
                    name = Some(inner.trim_end_matches('.').to_ascii_lowercase());
                }
                Err(_) => return Err(EntryProblem::BadHost(tok.into())),
            }
            if addrs.len() > MAX_ADDRS {
                return Err(EntryProblem::TooMany);
            }
        }
        return match name {
            Some(name) if addrs.is_empty() => Ok(Target::Host { name, mx: false }),
            Some(_) => Err(EntryProblem::BadHost(s.into())),
            None => Ok(Target::Addrs(addrs)),
        };
    }
    if s.contains(char::is_whitespace) || !valid_host(s) {
        return Err(EntryProblem::BadHost(s.into()));
    }
    Ok(Target::Host {
        name: s.trim_end_matches('.').to_ascii_lowercase(),
        mx: true,
    })
}

/// Letters, digits, `-`, `_` and dots; labels 1–63, total at most 253.
pub(crate) fn valid_host(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `{ name = value; ... }`, `inner` after the opening brace.
fn parse_braced(inner: &str) -> Result<Entry, EntryProblem> {
    let body = inner
        .trim_end()
        .strip_suffix('}')
        .ok_or(EntryProblem::Syntax("missing closing brace"))?;
    let mut protocol = Protocol::Esmtp;
    let mut port = None;
    let mut host = None;
    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or(EntryProblem::Syntax("expected name = value"))?;
        let name = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(list) = rest.strip_prefix('{') {
            let close = list
                .find('}')
                .ok_or(EntryProblem::Syntax("unclosed list"))?;
            value = &list[..close];
            rest = list[close + 1..].trim_start();
        } else {
            let end = rest.find([';', '}']).unwrap_or(rest.len());
            value = rest[..end].trim();
            rest = &rest[end..];
        }
        rest = rest.strip_prefix(';').unwrap_or(rest).trim_start();
        match name.as_str() {
            "protocol" => {
                protocol = match value.trim().to_ascii_lowercase().as_str() {
                    "esmtp" | "smtp" => Protocol::Esmtp,
                    "lmtp" => Protocol::Lmtp,
                    _ => return Err(EntryProblem::Protocol),
                }
            }
            "port" => port = Some(parse_port(value)?),
            "host" => {
                let v = value.trim().trim_matches('"');
                if !valid_host(v) {
                    return Err(EntryProblem::BadHost(v.into()));
                }
                host = Some(v.trim_end_matches('.').to_ascii_lowercase());
            }
            "ipv4" | "ipv6" => {
                for tok in value.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
                    let tok = tok.trim().trim_matches('"');
                    if tok.is_empty() {
                        continue;
                    }
                    let a: IpAddr = tok.parse().map_err(|_| EntryProblem::BadHost(tok.into()))?;
                    if (name == "ipv4") != a.is_ipv4() {
                        return Err(EntryProblem::BadHost(tok.into()));
                    }
                    addrs.push(a);
                    if addrs.len() > MAX_ADDRS {
                        return Err(EntryProblem::TooMany);
                    }
                }
            }
            _ => return Err(EntryProblem::Syntax("unknown name")),
        }
    }
    let target = match (host, addrs.is_empty()) {
        (Some(_), false) => return Err(EntryProblem::Syntax("both host and addresses")),
        (Some(name), true) => Some(Target::Host { name, mx: true }),
        (None, false) => Some(Target::Addrs(addrs)),
        (None, true) => None,
    };
    match (protocol, target) {
        (Protocol::Lmtp, None) if port.is_none() => Ok(Entry {
            protocol,
            port: None,
            target: Target::LmtpSocket,
        }),
        (Protocol::Lmtp, None) => Err(EntryProblem::LmtpNeedsPortAndHost),
        (Protocol::Lmtp, Some(_)) if port.is_none() => Err(EntryProblem::LmtpNeedsPortAndHost),
        (_, None) => Err(EntryProblem::NoHost),
        (_, Some(target)) => Ok(Entry {
            protocol,
            port,
            target,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smx_maps::TextMap;

    fn host(n: &str) -> Target {
        Target::Host {
            name: n.into(),
            mx: true,
        }
    }

    fn ips(a: &[&str]) -> Target {
        Target::Addrs(
            a.iter()
                .map(|s| s.parse().unwrap_or_else(|_| panic!("{s}")))
                .collect(),
        )
    }

    /// Every example of seed 3.9.3 and 4.3.1, plus the grammar's other forms.
    #[test]
    fn entries_parse() {
        use Protocol::*;
        let cases: Vec<(&str, Protocol, Option<u16>, Target)> = vec![
            ("lmtp:", Lmtp, None, Target::LmtpSocket),
            ("{ protocol=lmtp; }", Lmtp, None, Target::LmtpSocket),
            (
                "{ port=2525; protocol=esmtp; ipv4={127.0.0.1} }",
                Esmtp,
                Some(2525),
                ips(&["127.0.0.1"]),
            ),
            (
                "{ protocol=lmtp; port = 525; ipv4= { 10.11.12.13 } }",
                Lmtp,
                Some(525),
                ips(&["10.11.12.13"]),
            ),
            ("esmtp: [10.1.2.3]", Esmtp, None, ips(&["10.1.2.3"])),
            ("esmtp:MTA.SERVER", Esmtp, None, host("mta.server")),
            ("{ host = GATE.WAY }", Esmtp, None, host("gate.way")),
            ("esmtp:SMART.HOST", Esmtp, None, host("smart.host")),
            ("smart.host", Esmtp, None, host("smart.host")),
            (
                "2525:esmtp:relay.example",
                Esmtp,
                Some(2525),
                host("relay.example"),
            ),
            (
                "2525:relay.example",
                Esmtp,
                Some(2525),
                host("relay.example"),
            ),
            ("24:lmtp:lda.example", Lmtp, Some(24), host("lda.example")),
            (
                "[10.1.2.3] [10.1.2.4]",
                Esmtp,
                None,
                ips(&["10.1.2.3", "10.1.2.4"]),
            ),
            ("esmtp:[2001:db8::1]", Esmtp, None, ips(&["2001:db8::1"])),
            (
                "esmtp:[relay.example]",
                Esmtp,
                None,
                Target::Host {
                    name: "relay.example".into(),
                    mx: false,
                },
            ),
            (
                "{ protocol=esmtp; ipv4={10.0.0.1, 10.0.0.2}; }",
                Esmtp,
                None,
                ips(&["10.0.0.1", "10.0.0.2"]),
            ),
        ];
        for (rhs, protocol, port, target) in cases {
            let got = parse_entry(rhs).unwrap_or_else(|e| panic!("{rhs}: {e}"));
            assert_eq!(
                got,
                Entry {
                    protocol,
                    port,
                    target
                },
                "{rhs}"
            );
        }
    }

    #[test]
    fn bad_entries() {
        for rhs in [
            "",
            "esmtp:",
            "0:host",
            "99999:host",
            "lmtp:host",
            "25:lmtp:",
            "{ protocol=lmtp; host=x; }",
            "{ protocol=lmtp; port=24; }",
            "{ protocol=fax; host=x }",
            "{ host=a; ipv4={1.2.3.4} }",
            "{ host=a",
            "{ ipv4={1.2.3.999} }",
            "{ ipv4={2001:db8::1} }",
            "esmtp:[1.2.3.4",
            "two hosts",
            "bad/host",
            "{ colour = blue; }",
            "{ }",
        ] {
            assert!(parse_entry(rhs).is_err(), "{rhs:?} should fail");
        }
        let many = (0..40)
            .map(|i| format!("[10.0.0.{i}]"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(parse_entry(&many), Err(EntryProblem::TooMany));
    }

    #[test]
    fn lookup_order_and_default_entry() {
        let map = TextMap::from_entries(&[
            "localhost lmtp:".into(),
            "MY.DOMAIN esmtp: [10.1.2.3]".into(),
            "ANOTHER.DOMAIN esmtp:MTA.SERVER".into(),
            ".TLD { host = GATE.WAY }".into(),
            ". esmtp:SMART.HOST".into(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let flags = smx_conf::model::smar::MailertableConfig::default().flags;
        let mt = Mailertable {
            map: &map,
            flags: &flags,
            delimiters: "+",
        };
        let cases = [
            ("user@localhost", "localhost", Target::LmtpSocket),
            ("user@my.domain", "my.domain", ips(&["10.1.2.3"])),
            ("user@sub.my.domain", ".", host("smart.host")),
            ("user@another.domain", "another.domain", host("mta.server")),
            ("user@x.y.tld", ".tld", host("gate.way")),
            ("user@tld", ".", host("smart.host")),
            ("user@elsewhere.example", ".", host("smart.host")),
            ("my.domain", "my.domain", ips(&["10.1.2.3"])),
        ];
        for (addr, key, target) in cases {
            let (k, e) = mt
                .lookup(addr)
                .unwrap_or_else(|e| panic!("{addr}: {e}"))
                .unwrap_or_else(|| panic!("{addr}: no entry"));
            assert_eq!((k.as_str(), e.target), (key, target), "{addr}");
        }
        assert!(mt.is_local_domain("LOCALHOST").unwrap_or(false));
        assert!(!mt.is_local_domain("my.domain").unwrap_or(true));
    }

    #[test]
    fn keys_with_full_address() {
        let mut f = LookupFlags::default();
        f.detail_plus = false;
        f.detail_star = false;
        f.star = false;
        assert_eq!(
            lookup_keys("u", "a.b", "+", &f),
            ["u@a.b", "a.b", "u@.b", ".b", "u@.", "."]
        );
        assert_eq!(lookup_keys("", "a.b", "+", &f), ["a.b", ".b", "."]);
    }

    proptest::proptest! {
        #[test]
        fn parse_entry_never_panics(s in "\\PC{0,60}") {
            let _ = parse_entry(&s);
        }
    }
}
