//! Addresses and paths: the RFC 5321 4.1.2 grammar of MAIL and RCPT
//! arguments, extended by RFC 6531 (SMTPUTF8).
//!
//! # Accepted
//!
//! * `Path = "<" [ A-d-l ":" ] Mailbox ">"`, `<>` as the null reverse path,
//!   `<Postmaster>` (any case, RCPT only, RFC 5321 4.1.1.3);
//! * local parts as `Dot-string` (atoms of `atext` joined by single dots)
//!   or `Quoted-string` (printable ASCII, `\` quoting a printable
//!   character). A [`LocalPart`] keeps the *value* and is written in
//!   canonical form: bare when the value is a valid dot-string, otherwise
//!   quoted with only `"` and `\` escaped. `"abc"` and `abc` are the same
//!   local part (RFC 5321 4.1.2 and RFC 5322 3.4.1 make the forms
//!   equivalent); case is kept (RFC 5321 2.4);
//! * domains `sub-domain *("." sub-domain)` of letters, digits and inner
//!   hyphens, no trailing dot; address literals `[1.2.3.4]` and
//!   `[IPv6:2001:db8::1]` (tag in any case), validated as IP addresses;
//! * source routes `<@a,@b:user@c>` (RFC 5321 Appendix C): parsed and
//!   checked, then stripped unless [`Syntax::allow_source_route`];
//! * SMTPUTF8 (RFC 6531): non-ASCII UTF-8 characters in atoms, quoted
//!   strings and domain labels (U-labels are not IDNA-checked here; the
//!   resolver does that). [`Mailbox::is_ascii`] and friends flag them, so
//!   the server can require the `SMTPUTF8` parameter (553 5.6.7 otherwise).
//!
//! Without [`Syntax::strict`] the angle brackets may be missing; the path
//! then ends at white space or the end of the line.
//!
//! # Rejected
//!
//! Everything else, as an [`AddressError`]: general address literals
//! (`[tag:...]` other than IPv6), empty labels, labels starting or ending
//! with `-`, control characters, and the RFC 5321 4.5.3.1 size limits:
//! local part 64 octets ([`MAX_LOCAL_PART`], as written, quotes
//! included), domain 255 ([`MAX_DOMAIN`]), each label 63 ([`MAX_LABEL`],
//! RFC 1035), path 256 ([`MAX_PATH`], the text between the angle brackets
//! plus 2 for them, also when they are missing). The server answers all of
//! them with 501 and 5.1.7 (MAIL) or 5.1.3 (RCPT); see
//! [`CommandError::reply`](crate::CommandError::reply).
//!
//! [`Syntax::allow_source_route`]: crate::Syntax::allow_source_route
//! [`Syntax::strict`]: crate::Syntax::strict

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Syntax;

/// Longest local part, octets as written (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain, octets (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest domain label, octets (RFC 1035 2.3.4).
pub const MAX_LABEL: usize = 63;
/// Longest path, octets including the angle brackets (RFC 5321 4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// Why an address or path is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No address at all.
    #[error("empty address")]
    Empty,
    /// Strict syntax: the path is not enclosed in `<` `>`.
    #[error("angle brackets required around the address")]
    MissingAngleBrackets,
    /// The line ends inside the path (no `>`, or an open quote).
    #[error("address is not terminated")]
    Unterminated,
    /// A character that cannot appear where it is.
    #[error("invalid character in address")]
    BadCharacter,
    /// The local part is not a dot-string or quoted string.
    #[error("invalid local part")]
    InvalidLocalPart,
    /// The domain is not a valid domain name.
    #[error("invalid domain")]
    InvalidDomain,
    /// An address literal that is not `[IPv4]` or `[IPv6:...]`.
    #[error("invalid address literal")]
    InvalidAddressLiteral,
    /// A malformed source route.
    #[error("invalid source route")]
    InvalidSourceRoute,
    /// No `@domain` where one is required.
    #[error("address must be fully qualified (user@domain)")]
    MissingDomain,
    /// `<>` as a forward path.
    #[error("null address not allowed here")]
    NullNotAllowed,
    /// The local part exceeds [`MAX_LOCAL_PART`].
    #[error("local part too long ({len} octets, at most {MAX_LOCAL_PART})")]
    LocalPartTooLong {
        /// Its length.
        len: usize,
    },
    /// The domain exceeds [`MAX_DOMAIN`].
    #[error("domain too long ({len} octets, at most {MAX_DOMAIN})")]
    DomainTooLong {
        /// Its length.
        len: usize,
    },
    /// A domain label exceeds [`MAX_LABEL`].
    #[error("domain label too long ({len} octets, at most {MAX_LABEL})")]
    LabelTooLong {
        /// Its length.
        len: usize,
    },
    /// The path exceeds [`MAX_PATH`].
    #[error("path too long ({len} octets, at most {MAX_PATH})")]
    PathTooLong {
        /// Its length.
        len: usize,
    },
}

/// A domain name as written (case kept), syntactically valid: ASCII LDH
/// labels or U-labels (non-ASCII UTF-8), at most [`MAX_DOMAIN`] octets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    /// Parses a whole string as a domain.
    pub fn parse(s: &str) -> Result<Domain, AddressError> {
        let (d, end) = domain_at(s, 0)?;
        if end != s.len() {
            return Err(AddressError::InvalidDomain);
        }
        Ok(d)
    }

    /// The domain as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the domain is all ASCII (no U-labels).
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The part of a mailbox before the `@`: its value (quotes and escapes
/// removed), written in canonical form by `Display`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalPart(String);

impl LocalPart {
    /// A local part with this value: printable ASCII or non-ASCII
    /// characters, at most [`MAX_LOCAL_PART`] octets in canonical form.
    pub fn new(value: &str) -> Result<LocalPart, AddressError> {
        if value.bytes().any(|b| b.is_ascii_control() || b == 0x7f) {
            return Err(AddressError::InvalidLocalPart);
        }
        let lp = LocalPart(value.to_owned());
        let len = lp.to_string().len();
        if len > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong { len });
        }
        Ok(lp)
    }

    /// Parses a whole string as a local part in wire form (dot-string or
    /// quoted string).
    pub fn parse(s: &str) -> Result<LocalPart, AddressError> {
        let (lp, end) = local_at(s, 0)?;
        if end != s.len() {
            return Err(AddressError::InvalidLocalPart);
        }
        Ok(lp)
    }

    /// The value, without quotes or escapes.
    pub fn value(&self) -> &str {
        &self.0
    }

    /// Whether the canonical form needs quotes.
    pub fn needs_quotes(&self) -> bool {
        !is_dot_string(&self.0)
    }

    /// Whether the value is all ASCII.
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }
}

impl fmt::Display for LocalPart {
    /// The canonical wire form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.needs_quotes() {
            return f.write_str(&self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// What follows the `@`: a domain or an address literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name.
    Domain(Domain),
    /// An address literal, written `[1.2.3.4]` or `[IPv6:...]`.
    Literal(IpAddr),
}

impl Host {
    /// Parses a whole string as a domain or address literal.
    pub fn parse(s: &str) -> Result<Host, AddressError> {
        let (h, end) = host_at(s, 0)?;
        if end != s.len() {
            return Err(AddressError::InvalidDomain);
        }
        Ok(h)
    }

    /// Whether the host is all ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            Host::Domain(d) => d.is_ascii(),
            Host::Literal(_) => true,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d.as_str()),
            Host::Literal(IpAddr::V4(a)) => write!(f, "[{a}]"),
            Host::Literal(IpAddr::V6(a)) => write!(f, "[IPv6:{a}]"),
        }
    }
}

/// `local@host`, or a bare local part where [`Syntax::require_domain`] is
/// off.
///
/// [`Syntax::require_domain`]: crate::Syntax::require_domain
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part.
    pub local: LocalPart,
    /// The domain or address literal.
    pub domain: Option<Host>,
}

impl Mailbox {
    /// Whether the mailbox is all ASCII; if not, the transaction needs
    /// SMTPUTF8 (RFC 6531).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_ref().is_none_or(Host::is_ascii)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.local)?;
        if let Some(d) = &self.domain {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A path: an optional source route and a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// The source route, empty unless kept by
    /// [`Syntax::allow_source_route`](crate::Syntax::allow_source_route).
    pub route: Vec<Domain>,
    /// The mailbox.
    pub mailbox: Mailbox,
}

impl Path {
    /// Whether the path is all ASCII.
    pub fn is_ascii(&self) -> bool {
        self.mailbox.is_ascii() && self.route.iter().all(Domain::is_ascii)
    }
}

impl fmt::Display for Path {
    /// `<@a,@b:local@domain>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<")?;
        for (i, d) in self.route.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "@{d}")?;
        }
        if !self.route.is_empty() {
            f.write_str(":")?;
        }
        write!(f, "{}>", self.mailbox)
    }
}

/// The argument of MAIL FROM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: no return address (bounces, RFC 5321 4.5.5).
    Null,
    /// A return address.
    Path(Path),
}

impl ReversePath {
    /// Parses a whole string as a reverse path under `syntax`.
    pub fn parse(s: &str, syntax: &Syntax) -> Result<ReversePath, AddressError> {
        let (p, end) = reverse_path_at(s, syntax)?;
        if end != s.len() {
            return Err(AddressError::BadCharacter);
        }
        Ok(p)
    }

    /// Whether the path is all ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Path(p) => p.is_ascii(),
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Path(p) => write!(f, "{p}"),
        }
    }
}

/// The argument of RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without domain (RFC 5321 4.1.1.3), any case.
    Postmaster,
    /// A recipient.
    Path(Path),
}

impl ForwardPath {
    /// Parses a whole string as a forward path under `syntax`.
    pub fn parse(s: &str, syntax: &Syntax) -> Result<ForwardPath, AddressError> {
        let (p, end) = forward_path_at(s, syntax)?;
        if end != s.len() {
            return Err(AddressError::BadCharacter);
        }
        Ok(p)
    }

    /// Whether the path is all ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            ForwardPath::Postmaster => true,
            ForwardPath::Path(p) => p.is_ascii(),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Path(p) => write!(f, "{p}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Parsers over a str at a byte offset. Offsets only ever stop before or
// after ASCII bytes, so they are char boundaries; `str::get` is used anyway
// so a slip is an error, not a panic.

/// A path as scanned, before the MAIL/RCPT rules apply.
struct Scanned {
    null: bool,
    route: Vec<Domain>,
    mailbox: Option<Mailbox>,
}

/// Reverse path starting at byte 0 of `s`; returns it and where it ends.
pub(crate) fn reverse_path_at(
    s: &str,
    syntax: &Syntax,
) -> Result<(ReversePath, usize), AddressError> {
    let (sc, end) = scan_path(s, syntax.strict)?;
    if sc.null {
        return Ok((ReversePath::Null, end));
    }
    let Some(mailbox) = sc.mailbox else {
        return Err(AddressError::Empty);
    };
    if mailbox.domain.is_none() && syntax.require_domain {
        return Err(AddressError::MissingDomain);
    }
    let route = if syntax.allow_source_route {
        sc.route
    } else {
        Vec::new()
    };
    Ok((ReversePath::Path(Path { route, mailbox }), end))
}

/// Forward path starting at byte 0 of `s`; returns it and where it ends.
pub(crate) fn forward_path_at(
    s: &str,
    syntax: &Syntax,
) -> Result<(ForwardPath, usize), AddressError> {
    let (sc, end) = scan_path(s, syntax.strict)?;
    if sc.null {
        return Err(AddressError::NullNotAllowed);
    }
    let Some(mailbox) = sc.mailbox else {
        return Err(AddressError::Empty);
    };
    let route = if syntax.allow_source_route {
        sc.route
    } else {
        Vec::new()
    };
    if route.is_empty()
        && mailbox.domain.is_none()
        && mailbox.local.value().eq_ignore_ascii_case("postmaster")
    {
        return Ok((ForwardPath::Postmaster, end));
    }
    if mailbox.domain.is_none() && syntax.require_domain {
        return Err(AddressError::MissingDomain);
    }
    Ok((ForwardPath::Path(Path { route, mailbox }), end))
}

fn scan_path(s: &str, strict: bool) -> Result<(Scanned, usize), AddressError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(AddressError::Empty);
    }
    let bracketed = b[0] == b'<';
    if !bracketed && strict {
        return Err(AddressError::MissingAngleBrackets);
    }
    let start = usize::from(bracketed);
    if bracketed && b.get(1) == Some(&b'>') {
        let sc = Scanned {
            null: true,
            route: Vec::new(),
            mailbox: None,
        };
        return Ok((sc, 2));
    }
    let mut i = start;
    let mut route = Vec::new();
    if b.get(i) == Some(&b'@') {
        loop {
            // b[i] is '@'.
            let (d, e) = domain_at(s, i + 1).map_err(route_error)?;
            route.push(d);
            i = e;
            match b.get(i) {
                Some(b',') if b.get(i + 1) == Some(&b'@') => i += 1,
                Some(b':') => {
                    i += 1;
                    break;
                }
                None => return Err(AddressError::Unterminated),
                _ => return Err(AddressError::InvalidSourceRoute),
            }
        }
    }
    if i >= b.len() {
        return Err(if route.is_empty() {
            AddressError::Empty
        } else {
            AddressError::Unterminated
        });
    }
    let (local, e) = local_at(s, i)?;
    i = e;
    let domain = if b.get(i) == Some(&b'@') {
        let (h, e) = host_at(s, i + 1)?;
        i = e;
        Some(h)
    } else {
        None
    };
    let content_end = i;
    if bracketed {
        match b.get(i) {
            Some(b'>') => i += 1,
            None => return Err(AddressError::Unterminated),
            Some(_) => return Err(AddressError::BadCharacter),
        }
    }
    let len = content_end - start + 2;
    if len > MAX_PATH {
        return Err(AddressError::PathTooLong { len });
    }
    let sc = Scanned {
        null: false,
        route,
        mailbox: Some(Mailbox { local, domain }),
    };
    Ok((sc, i))
}

/// A domain that fails in a route is a bad route, unless it is too long.
fn route_error(e: AddressError) -> AddressError {
    match e {
        AddressError::DomainTooLong { .. } | AddressError::LabelTooLong { .. } => e,
        _ => AddressError::InvalidSourceRoute,
    }
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Whether `v` can be written as an RFC 5321 Dot-string (SMTPUTF8
/// extended).
fn is_dot_string(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with('.')
        && !v.ends_with('.')
        && !v.contains("..")
        && v.bytes().all(|b| b == b'.' || is_atext(b) || b >= 0x80)
}

/// A local part (dot-string or quoted string) starting at `i`.
pub(crate) fn local_at(s: &str, i: usize) -> Result<(LocalPart, usize), AddressError> {
    let b = s.as_bytes();
    if b.get(i) == Some(&b'"') {
        let mut value = Vec::new();
        let mut j = i + 1;
        loop {
            match b.get(j) {
                None => return Err(AddressError::Unterminated),
                Some(b'"') => break,
                Some(b'\\') => match b.get(j + 1) {
                    Some(&c @ 32..=126) => {
                        value.push(c);
                        j += 2;
                    }
                    None => return Err(AddressError::Unterminated),
                    Some(_) => return Err(AddressError::InvalidLocalPart),
                },
                Some(&c @ (32..=126 | 0x80..)) => {
                    value.push(c);
                    j += 1;
                }
                Some(_) => return Err(AddressError::InvalidLocalPart),
            }
        }
        let end = j + 1;
        let len = end - i;
        if len > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong { len });
        }
        // Only ASCII bytes were dropped from a str, so this is UTF-8.
        let value = String::from_utf8(value).map_err(|_| AddressError::InvalidLocalPart)?;
        return Ok((LocalPart(value), end));
    }
    let mut j = i;
    while j < b.len() && (b[j] == b'.' || is_atext(b[j]) || b[j] >= 0x80) {
        j += 1;
    }
    let v = s.get(i..j).ok_or(AddressError::InvalidLocalPart)?;
    if !is_dot_string(v) {
        return Err(match b.get(j) {
            None if v.is_empty() => AddressError::Unterminated,
            _ if v.is_empty() => AddressError::BadCharacter,
            _ => AddressError::InvalidLocalPart,
        });
    }
    if v.len() > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong { len: v.len() });
    }
    Ok((LocalPart(v.to_owned()), j))
}

/// A domain or address literal starting at `i`.
pub(crate) fn host_at(s: &str, i: usize) -> Result<(Host, usize), AddressError> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'[') {
        let (d, e) = domain_at(s, i)?;
        return Ok((Host::Domain(d), e));
    }
    let close = b[i..]
        .iter()
        .position(|&c| c == b']')
        .ok_or(AddressError::InvalidAddressLiteral)?;
    let inner = s
        .get(i + 1..i + close)
        .ok_or(AddressError::InvalidAddressLiteral)?;
    Ok((Host::Literal(address_literal(inner)?), i + close + 1))
}

/// The inside of `[...]`.
fn address_literal(inner: &str) -> Result<IpAddr, AddressError> {
    let bad = AddressError::InvalidAddressLiteral;
    if inner.len() > 5 && inner.as_bytes()[..5].eq_ignore_ascii_case(b"IPv6:") {
        let v6 = inner.get(5..).ok_or(bad)?;
        return v6.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad);
    }
    inner.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad)
}

/// A domain starting at `i`: the longest run of label characters and dots.
pub(crate) fn domain_at(s: &str, i: usize) -> Result<(Domain, usize), AddressError> {
    let b = s.as_bytes();
    let mut j = i;
    while j < b.len()
        && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b'.' || b[j] >= 0x80)
    {
        j += 1;
    }
    let d = s.get(i..j).ok_or(AddressError::InvalidDomain)?;
    if d.is_empty() {
        return Err(AddressError::InvalidDomain);
    }
    for label in d.split('.') {
        if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::InvalidDomain);
        }
    }
    if let Some(long) = d.split('.').find(|l| l.len() > MAX_LABEL) {
        return Err(AddressError::LabelTooLong { len: long.len() });
    }
    if d.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong { len: d.len() });
    }
    Ok((Domain(d.to_owned()), j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_part_canonical_form() {
        let cases = [
            ("abc", "abc", "abc"),
            ("\"abc\"", "abc", "abc"),
            ("\"a b\"", "a b", "\"a b\""),
            ("\"a\\\"b\"", "a\"b", "\"a\\\"b\""),
            ("\"a\\\\b\"", "a\\b", "\"a\\\\b\""),
            ("\"\\a\"", "a", "a"),
            ("\"\"", "", "\"\""),
            ("\"a..b\"", "a..b", "\"a..b\""),
            ("a.b+c", "a.b+c", "a.b+c"),
            ("jörg", "jörg", "jörg"),
        ];
        for (wire, value, canon) in cases {
            let lp = LocalPart::parse(wire).unwrap();
            assert_eq!(lp.value(), value, "{wire}");
            assert_eq!(lp.to_string(), canon, "{wire}");
            assert_eq!(LocalPart::parse(canon).unwrap(), lp);
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "\"a",
            "\"a\\",
            "\"\u{1}\"",
            "a\"b\"",
        ] {
            assert!(LocalPart::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_part_new() {
        assert_eq!(LocalPart::new("a b").unwrap().to_string(), "\"a b\"");
        assert!(LocalPart::new("a\rb").is_err());
        assert!(LocalPart::new(&"x".repeat(64)).is_ok());
        assert_eq!(
            LocalPart::new(&"x".repeat(65)),
            Err(AddressError::LocalPartTooLong { len: 65 })
        );
        // 62 + two quotes = 64.
        assert!(LocalPart::new(&" ".repeat(62)).is_ok());
        assert!(LocalPart::new(&" ".repeat(63)).is_err());
    }

    #[test]
    fn domains() {
        for ok in [
            "a",
            "example.org",
            "a-b.c1",
            "1.2.3.4",
            "bücher.de",
            "xn--bcher-kva.de",
        ] {
            assert_eq!(Domain::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "-a",
            "a-",
            "a.-b",
            "a_b",
            "a b",
            "[1.2.3.4]",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!Domain::parse("bücher.de").unwrap().is_ascii());
    }

    #[test]
    fn literals() {
        let cases = [
            ("[1.2.3.4]", "[1.2.3.4]"),
            ("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
            ("[ipv6:2001:DB8:0:0:0:0:0:1]", "[IPv6:2001:db8::1]"),
            ("[IPv6:::ffff:1.2.3.4]", "[IPv6:::ffff:1.2.3.4]"),
        ];
        for (wire, canon) in cases {
            let h = Host::parse(wire).unwrap();
            assert_eq!(h.to_string(), canon);
            assert_eq!(Host::parse(canon).unwrap(), h);
        }
        for bad in [
            "[1.2.3]",
            "[1.2.3.256]",
            "[01.2.3.4]",
            "[IPv6:1.2.3.4]",
            "[IPv6:2001:db8::1%eth0]",
            "[IPv6:]",
            "[x400:foo]",
            "[2001:db8::1]",
            "[]",
            "[1.2.3.4",
        ] {
            assert_eq!(
                Host::parse(bad),
                Err(AddressError::InvalidAddressLiteral),
                "{bad}"
            );
        }
    }
}
