//! The access map (seed 3.9.3): entry format and the lookups per tag.
//!
//! # Entry format
//!
//! An entry is `TAG:KEY RHS`. The key is looked up in the orders of seed
//! 3.12.1 ([`smx_maps::keys`]), each key prefixed with the tag:
//!
//! | tag | key | lookup order |
//! | --- | --- | --- |
//! | `cltaddr:` | client IP address | `A.B.C.D`, `A.B.C`, `A.B`, `A` (IPv6: 8 groups down to 1) |
//! | `mxbadip:` | an address of the sender's MX/A records | as `cltaddr:` |
//! | `cltname:` | client host name (verified PTR) | `host.dom.`, `host.dom`, `.dom.`, `.dom` |
//! | `cltresolve:` | `ok`, `no`, `tempptr`, `tempa` | exact |
//! | `from:`, `to:`, `smtps_rcpt_conf:`, `smtpc_rcpt_conf:`, `protectedrcpt:` (generic) | an address | full address, `user++`, `user+*`, `user*`, `user`, `@domain`, per subdomain `@.dom`, then the local part alone |
//! | `smtps_session_conf:` | client IP address, then client host name | as `cltaddr:`, then `cltname:` |
//! | `certissuer:`, `certsubject:` | a certificate DN | exact, see [`dn_key`] |
//! | `ehlo:` | the EHLO/HELO argument | as a domain name (`host.dom`, `.dom`) |
//!
//! The seed says a host name from DNS has a trailing dot "that must be
//! included in the entry"; operators often forget it, so `cltname:` tries
//! each key with the dot first and then without it.
//!
//! # Right-hand sides
//!
//! `[quick:](relay | ok | reject | discard | cont | error:CODE [X.Y.Z] TEXT)`,
//! keywords case-insensitive:
//!
//! * `relay`: allow relaying (honoured for `to:`, `cltaddr:`, `cltname:`,
//!   `certissuer:` and `certsubject:`; elsewhere it means `ok`);
//! * `ok`: accept this command;
//! * `reject`: `550 5.7.0 Rejected.`;
//! * `error:CODE X.Y.Z TEXT`: this reply; CODE is a 4xx or 5xx code, the
//!   enhanced code is optional and its class must match CODE's first
//!   digit;
//! * `discard`: accept and throw away (session, transaction or recipient,
//!   depending on the stage);
//! * `cont`: this lookup decides nothing, the next check runs;
//! * `quick:` marks the verdict as final for the session (see
//!   [`crate::checks`]).
//!
//! An entry whose RHS cannot be parsed is an operator error. It is logged
//! and answered with a temporary failure (`451 4.3.0`), like a map that
//! cannot be read: a broken entry must delay mail, not let it through or
//! bounce it. The reply text is limited to [`MAX_TEXT`] bytes and control
//! characters are replaced by spaces, so a map entry can never inject an
//! SMTP line.

use std::net::IpAddr;

use smx_conf::model::qmgr::LookupFlags;
use smx_ipc::types::{EnhancedCode, SmtpReply};
use smx_maps::{Map, keys};

use crate::error::SmarError;

/// Longest reply text taken from an `error:` entry, in bytes.
pub const MAX_TEXT: usize = 400;

/// What an access map entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `ok`.
    Ok,
    /// `relay`.
    Relay,
    /// `reject` or `error:` with this reply (4xx or 5xx).
    Error(SmtpReply),
    /// `discard`.
    Discard,
    /// `cont`.
    Cont,
}

/// A parsed right-hand side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rhs {
    /// The `quick:` modifier.
    pub quick: bool,
    /// The action.
    pub action: Action,
}

/// Why a right-hand side could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RhsProblem {
    /// Not one of the known keywords.
    #[error("unknown right-hand side")]
    Unknown,
    /// `error:` without a 4xx or 5xx code.
    #[error("error: needs a 4xx or 5xx reply code")]
    BadCode,
    /// The enhanced status code is malformed or its class differs from
    /// the reply code's.
    #[error("bad enhanced status code")]
    BadEnhanced,
}

/// The reply for `reject` (seed 3.9.3).
pub fn reject_reply() -> SmtpReply {
    SmtpReply {
        code: 550,
        enhanced: Some(EnhancedCode {
            class: 5,
            subject: 7,
            detail: 0,
        }),
        text: "Rejected.".into(),
    }
}

/// Parses an access map right-hand side.
pub fn parse_rhs(value: &str) -> Result<Rhs, RhsProblem> {
    let v = value.trim();
    let (quick, rest) = match strip_prefix_ci(v, "quick:") {
        Some(r) => (true, r.trim_start()),
        None => (false, v),
    };
    let action = if let Some(e) = strip_prefix_ci(rest, "error:") {
        Action::Error(parse_error_reply(e)?)
    } else {
        match rest.to_ascii_lowercase().as_str() {
            "ok" => Action::Ok,
            "relay" => Action::Relay,
            "reject" => Action::Error(reject_reply()),
            "discard" => Action::Discard,
            "cont" => Action::Cont,
            _ => return Err(RhsProblem::Unknown),
        }
    };
    Ok(Rhs { quick, action })
}

/// Parses `CODE [X.Y.Z] TEXT` (the part after `error:`).
pub fn parse_error_reply(s: &str) -> Result<SmtpReply, RhsProblem> {
    let s = s.trim();
    let (code_s, rest) = split_word(s);
    let code: u16 = match code_s.as_bytes() {
        [a @ (b'4' | b'5'), b, c] if b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(RhsProblem::BadCode),
    };
    let (maybe_enh, after) = split_word(rest);
    let (enhanced, text) =
        if maybe_enh.starts_with(|c: char| c.is_ascii_digit()) && maybe_enh.contains('.') {
            let e = parse_enhanced(maybe_enh).ok_or(RhsProblem::BadEnhanced)?;
            if u16::from(e.class) != code / 100 {
                return Err(RhsProblem::BadEnhanced);
            }
            (Some(e), after)
        } else {
            (None, rest)
        };
    Ok(SmtpReply {
        code,
        enhanced,
        text: clean_text(text),
    })
}

/// A reply that smar makes itself.
pub fn reply(code: u16, enh: (u8, u16, u16), text: &str) -> SmtpReply {
    SmtpReply {
        code,
        enhanced: Some(EnhancedCode {
            class: enh.0,
            subject: enh.1,
            detail: enh.2,
        }),
        text: text.into(),
    }
}

/// The temporary failure for a lookup that could not be completed.
pub fn temp_reply() -> SmtpReply {
    reply(451, (4, 3, 0), "Temporary lookup failure, try again later")
}

/// The access map and the settings its lookups need.
#[derive(Debug, Clone, Copy)]
pub struct AccessMap<'a> {
    /// The map.
    pub map: &'a dyn Map,
    /// `address_delimiter`.
    pub delimiters: &'a str,
}

/// A hit: the key that matched and its parsed RHS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessHit {
    /// The key that matched (with its tag).
    pub key: String,
    /// Its right-hand side.
    pub rhs: Rhs,
}

/// The lookup flags for addresses in the access map: every step of seed
/// 3.12.1 except the `.` default.
pub fn address_flags() -> LookupFlags {
    let mut f = LookupFlags::default();
    f.dot = false;
    f
}

/// Splits an address into local part and domain at the last `@`; the
/// domain is empty when there is none.
pub fn split_address(addr: &str) -> (&str, &str) {
    match addr.rfind('@') {
        Some(i) => (&addr[..i], &addr[i + 1..]),
        None => (addr, ""),
    }
}

impl<'a> AccessMap<'a> {
    /// The raw value of the first key found.
    pub fn raw(&self, tag: &str, keys: &[String]) -> Result<Option<smx_maps::Hit>, SmarError> {
        let tagged = keys::with_tag(tag, keys);
        Ok(smx_maps::lookup_first(self.map, &tagged)?)
    }

    /// Looks `keys` up under `tag` and parses the RHS of the first hit.
    pub fn lookup(&self, tag: &str, keys: &[String]) -> Result<Option<AccessHit>, SmarError> {
        match self.raw(tag, keys)? {
            None => Ok(None),
            Some(hit) => match parse_rhs(&hit.value) {
                Ok(rhs) => Ok(Some(AccessHit { key: hit.key, rhs })),
                Err(problem) => {
                    tracing::warn!(key = %hit.key, value = %hit.value, %problem, "invalid access map entry");
                    Err(SmarError::BadEntry {
                        key: hit.key,
                        problem: problem.to_string(),
                    })
                }
            },
        }
    }

    /// `cltaddr:` (or `mxbadip:` with that tag) for an IP address.
    pub fn ip(&self, tag: &str, ip: IpAddr) -> Result<Option<AccessHit>, SmarError> {
        self.lookup(tag, &keys::ip_keys(ip))
    }

    /// `cltname:` for a host name.
    pub fn host(&self, tag: &str, name: &str) -> Result<Option<AccessHit>, SmarError> {
        self.lookup(tag, &host_keys(name))
    }

    /// An address tag (`from:`, `to:`, ...), with the localpart-only step.
    pub fn address(&self, tag: &str, addr: &str) -> Result<Option<AccessHit>, SmarError> {
        self.lookup(tag, &self.address_keys(addr))
    }

    /// The keys of an address, in the order of seed 3.12.1.
    pub fn address_keys(&self, addr: &str) -> Vec<String> {
        let (local, domain) = split_address(addr);
        keys::address_keys(local, domain, self.delimiters, &address_flags(), true)
    }

    /// `smtps_session_conf:` for a client: the raw value (a configuration
    /// section name or text for smtps).
    pub fn session_conf(
        &self,
        client_ip: IpAddr,
        client_name: Option<&str>,
    ) -> Result<Option<String>, SmarError> {
        if let Some(h) = self.raw("smtps_session_conf", &keys::ip_keys(client_ip))? {
            return Ok(Some(h.value));
        }
        match client_name {
            Some(n) => Ok(self
                .raw("smtps_session_conf", &host_keys(n))?
                .map(|h| h.value)),
            None => Ok(None),
        }
    }

    /// `smtps_rcpt_conf:` or `smtpc_rcpt_conf:` for a recipient: the raw
    /// value.
    pub fn rcpt_conf(&self, tag: &str, rcpt: &str) -> Result<Option<String>, SmarError> {
        Ok(self.raw(tag, &self.address_keys(rcpt))?.map(|h| h.value))
    }
}

/// Keys for a host name: each domain key (with subdomains) with the
/// trailing dot, then without.
pub fn host_keys(name: &str) -> Vec<String> {
    let mut f = LookupFlags::default();
    f.dot = false;
    let mut out = Vec::new();
    for k in keys::domain_keys(name, &f) {
        out.push(format!("{k}."));
        out.push(k);
    }
    out
}

/// The key for a certificate DN (`certissuer:`, `certsubject:`): lower-cased,
/// with white space, `+` and bytes outside `!`..`~` written as `+XX` (hex,
/// as sendmail's xtext-encoded DNs), so that a DN with spaces can be a map
/// key: `/C=US/O=Trusted CA` → `/c=us/o=trusted+20ca`.
pub fn dn_key(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for b in dn.trim().bytes() {
        if b == b'+' || !(0x21..=0x7e).contains(&b) {
            out.push_str(&format!("+{b:02X}"));
        } else {
            out.push(char::from(b.to_ascii_lowercase()));
        }
    }
    out
}

// ---- helpers -------------------------------------------------------------

fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn parse_enhanced(s: &str) -> Option<EnhancedCode> {
    let mut it = s.split('.');
    let class: u8 = it.next()?.parse().ok()?;
    let subject: u16 = it.next()?.parse().ok()?;
    let detail: u16 = it.next()?.parse().ok()?;
    if it.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
        return None;
    }
    Some(EnhancedCode {
        class,
        subject,
        detail,
    })
}

/// Trims, replaces control characters by spaces and limits the length
/// (at a character boundary).
pub(crate) fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT));
    for c in s.trim().chars() {
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhs_forms() {
        let cases: &[(&str, bool, Action)] = &[
            ("ok", false, Action::Ok),
            ("OK", false, Action::Ok),
            ("relay", false, Action::Relay),
            ("quick:relay", true, Action::Relay),
            ("quick:ok", true, Action::Ok),
            ("discard", false, Action::Discard),
            ("cont", false, Action::Cont),
            ("reject", false, Action::Error(reject_reply())),
            (
                "error:551 5.7.1 No spammers",
                false,
                Action::Error(reply(551, (5, 7, 1), "No spammers")),
            ),
            (
                "quick:error:551 5.7.1 No mail from spammers",
                true,
                Action::Error(reply(551, (5, 7, 1), "No mail from spammers")),
            ),
            (
                "error:451 4.7.1 reverse lookup failed",
                false,
                Action::Error(reply(451, (4, 7, 1), "reverse lookup failed")),
            ),
            (
                "error: 450 no enhanced code",
                false,
                Action::Error(SmtpReply {
                    code: 450,
                    enhanced: None,
                    text: "no enhanced code".into(),
                }),
            ),
        ];
        for (rhs, quick, action) in cases {
            let got = parse_rhs(rhs).unwrap_or_else(|e| panic!("{rhs}: {e}"));
            assert_eq!(got.quick, *quick, "{rhs}");
            assert_eq!(&got.action, action, "{rhs}");
        }
    }

    #[test]
    fn bad_rhs() {
        for (rhs, want) in [
            ("okay", RhsProblem::Unknown),
            ("", RhsProblem::Unknown),
            ("quick:", RhsProblem::Unknown),
            ("error:250 fine", RhsProblem::BadCode),
            ("error:55 x", RhsProblem::BadCode),
            ("error:", RhsProblem::BadCode),
            ("error:550 4.7.1 mismatch", RhsProblem::BadEnhanced),
            ("error:550 5.x.1 bad", RhsProblem::BadEnhanced),
        ] {
            assert_eq!(parse_rhs(rhs), Err(want), "{rhs}");
        }
    }

    #[test]
    fn text_is_cleaned_and_bounded() {
        let long = format!("error:550 5.7.1 a\r\nb{}", "x".repeat(1000));
        let Ok(Rhs {
            action: Action::Error(r),
            ..
        }) = parse_rhs(&long)
        else {
            panic!("parses");
        };
        assert!(r.text.len() <= MAX_TEXT);
        assert!(!r.text.contains(['\r', '\n']));
    }

    #[test]
    fn conf_lookups() {
        let m = smx_maps::TextMap::from_entries(&[
            "smtps_session_conf:192.0.2 { tls_requirements { flags = { verified }; } }".into(),
            "smtps_session_conf:.trusted.example. relaxed".into(),
            "smtps_rcpt_conf:@my.dom strict".into(),
            "smtpc_rcpt_conf:postmaster plain".into(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let am = AccessMap {
            map: &m,
            delimiters: "+",
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| panic!("{s}"));
        assert_eq!(
            am.session_conf(ip("192.0.2.7"), None)
                .ok()
                .flatten()
                .as_deref(),
            Some("{ tls_requirements { flags = { verified }; } }")
        );
        assert_eq!(
            am.session_conf(ip("198.51.100.1"), Some("mx.trusted.example."))
                .ok()
                .flatten()
                .as_deref(),
            Some("relaxed")
        );
        assert_eq!(
            am.session_conf(ip("198.51.100.1"), None).ok().flatten(),
            None
        );
        assert_eq!(
            am.rcpt_conf("smtps_rcpt_conf", "user+x@my.dom")
                .ok()
                .flatten()
                .as_deref(),
            Some("strict")
        );
        assert_eq!(
            am.rcpt_conf("smtpc_rcpt_conf", "postmaster@any.where")
                .ok()
                .flatten()
                .as_deref(),
            Some("plain")
        );
        assert_eq!(
            am.rcpt_conf("smtpc_rcpt_conf", "x@any.where")
                .ok()
                .flatten(),
            None
        );
    }

    #[test]
    fn dn_keys() {
        assert_eq!(dn_key(" /C=US/O=Trusted CA+X "), "/c=us/o=trusted+20ca+2Bx");
    }

    #[test]
    fn host_keys_with_and_without_dot() {
        assert_eq!(
            host_keys("Mail.Spammer.Domain."),
            [
                "mail.spammer.domain.",
                "mail.spammer.domain",
                ".spammer.domain.",
                ".spammer.domain",
                ".domain.",
                ".domain"
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_rhs_never_panics(s in "\\PC{0,60}") {
            let _ = parse_rhs(&s);
        }
    }
}
