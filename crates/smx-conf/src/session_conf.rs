//! Session and recipient configuration from map values (seed 3.10.1,
//! 3.11.1, 3.13): the right-hand sides of the access map tags
//! `smtps_session_conf:` and `smtpc_rcpt_conf:` (and qmgr's
//! `smtpc_session_conf:`).
//!
//! A value is written in the configuration language ([`crate::syntax`]),
//! on one line, and may hold each of these items at most once:
//!
//! ```text
//! tls_requirements {
//!     common_name = "mx.example.org";
//!     cert_subject = "/C=US/O=Example/CN=mx.example.org";
//!     cert_issuer = "/C=US/O=Example+20CA";
//!     min_cipher_bits = 128;
//!     flags = { verified, encrypted };
//!     requirements_violation = permfail;
//! }
//! session_feature = notls;
//! ```
//!
//! # Rules
//!
//! * Map values are untrusted input: [`SessionConf::parse`] is a pure
//!   function that never panics, accepts at most [`MAX_VALUE_LEN`] bytes
//!   and the syntax layer's nesting limit, and reports the first problem as
//!   a typed [`SessionConfError`]. A value with any error is to be treated
//!   as no entry by its user (and logged): half of a requirement set is
//!   never applied.
//! * Names are case-insensitive. An unknown option or section, a repeated
//!   item, a named `tls_requirements` section or a list where one value is
//!   expected is an error, so a misspelt requirement is reported instead of
//!   silently doing nothing.
//! * `flags` names `verified` and `encrypted`, each optionally negated
//!   with one of the configuration language's prefixes (`no_`, `-`, ...).
//! * `requirements_violation` is `permfail`, `tempfail` or `abort`; when
//!   absent the user's own default applies (the server's
//!   `tls.requirements_violation`, `tempfail` for the client).
//! * `cert_subject` and `cert_issuer` are distinguished names as
//!   `/KEY=value/...`, most significant first, written with the seed's
//!   encoding (3.10 item 21g): a `+` followed by two hex digits stands for
//!   that byte, so `Darth+20Mail+20+28Cert+29` is `Darth Mail (Cert)`.
//!   They are stored decoded; [`dn_matches`] compares a required DN with a
//!   certificate's ASCII case-insensitively, which gives the same answer
//!   as comparing the lower-cased `+XX` forms smar uses for its
//!   `certissuer:`/`certsubject:` keys. [`encode_dn`] writes the seed's
//!   form (every byte outside `!`..`~`, and `<`, `>`, `(`, `)`, `"`, `+`,
//!   as `+XX`); [`SessionConf`]'s `Display` uses it, so printing and
//!   parsing again gives an equal value.
//! * `common_name` is compared as text, ASCII case-insensitively, without
//!   decoding.

use std::fmt;

use crate::model::smtps::RequirementsViolation;
use crate::syntax::{self, Entry, Scalar, Value};
use crate::value::{FieldValue, ScalarValue, quote};

/// Longest map value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;
/// Longest text of one item (a name or DN), in bytes, after decoding.
pub const MAX_ITEM_LEN: usize = 1024;

crate::conf_flags! {
    /// The `flags` of a `tls_requirements` section (seed 3.13 item 5).
    pub struct TlsRequirementFlags {
        /// The peer's certificate must verify against the CA certificates.
        verified: "verified" = false,
        /// The connection must be encrypted (symmetric key bits above 0).
        encrypted: "encrypted" = false,
    }
}

/// The `tls_requirements` section of a map value (seed 3.13).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsRequirementsConf {
    /// The peer certificate's subject CN must be this (ASCII
    /// case-insensitive).
    pub common_name: Option<String>,
    /// The peer certificate's subject DN must be this (decoded).
    pub cert_subject: Option<String>,
    /// The peer certificate's issuer DN must be this (decoded).
    pub cert_issuer: Option<String>,
    /// Least effective symmetric key length in bits (0: no minimum).
    pub min_cipher_bits: u32,
    /// `verified`, `encrypted`.
    pub flags: TlsRequirementFlags,
    /// What a violation does; `None`: the user's default.
    pub requirements_violation: Option<RequirementsViolation>,
}

impl TlsRequirementsConf {
    /// Whether anything is required.
    pub fn any(&self) -> bool {
        self.common_name.is_some()
            || self.cert_subject.is_some()
            || self.cert_issuer.is_some()
            || self.min_cipher_bits > 0
            || self.flags.verified
            || self.flags.encrypted
    }
}

/// A parsed `smtps_session_conf:` / `smtpc_rcpt_conf:` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionConf {
    /// `tls_requirements { ... }`.
    pub tls: Option<TlsRequirementsConf>,
    /// `session_feature = NAME;`: a `session_features` class of smtps.
    pub session_feature: Option<String>,
}

/// Why a map value is not a valid session configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionConfError {
    /// The value is longer than [`MAX_VALUE_LEN`].
    #[error("value is {len} bytes, more than {MAX_VALUE_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The text is not in the configuration language.
    #[error("syntax: {0}")]
    Syntax(String),
    /// An option or section that does not exist here.
    #[error("unknown {kind} '{name}'")]
    Unknown {
        /// `option` or `section`.
        kind: &'static str,
        /// The name as written.
        name: String,
    },
    /// An item given twice.
    #[error("'{name}' is given more than once")]
    Duplicate {
        /// The item.
        name: String,
    },
    /// `tls_requirements` written with a name.
    #[error("tls_requirements takes no name")]
    NamedSection,
    /// A section written as an option, or an option as a section.
    #[error("'{name}' must be {expected}")]
    WrongShape {
        /// The item.
        name: String,
        /// `a section` or `an option`.
        expected: &'static str,
    },
    /// An option's value is not valid.
    #[error("{name}: {reason}")]
    InvalidValue {
        /// The option.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl SessionConf {
    /// Parses a map value; see the module doc.
    pub fn parse(text: &str) -> Result<SessionConf, SessionConfError> {
        if text.len() > MAX_VALUE_LEN {
            return Err(SessionConfError::TooLong { len: text.len() });
        }
        // As the body of a section, so the last item may omit its `;`
        // as it may inside braces; the line break keeps a trailing comment
        // from hiding the closing brace.
        let body = format!("{{{text}\n}}");
        let entries = syntax::parse_braced_body("map value", &body).map_err(|errs| {
            SessionConfError::Syntax(
                errs.first()
                    .map_or_else(|| "invalid".to_string(), ToString::to_string),
            )
        })?;
        let mut out = SessionConf::default();
        for e in &entries {
            match e {
                Entry::Section(s) if s.keyword.eq_ignore_ascii_case("tls_requirements") => {
                    if out.tls.is_some() {
                        return Err(dup("tls_requirements"));
                    }
                    if s.name.is_some() {
                        return Err(SessionConfError::NamedSection);
                    }
                    out.tls = Some(parse_tls(&s.entries)?);
                }
                Entry::Option(o) if o.name.eq_ignore_ascii_case("session_feature") => {
                    if out.session_feature.is_some() {
                        return Err(dup("session_feature"));
                    }
                    let s = scalar(&o.name, &o.value)?;
                    let name = s.text.trim();
                    if name.is_empty() || !name.chars().all(is_name_char) {
                        return Err(invalid(&o.name, "expected a session_features class name"));
                    }
                    check_len(&o.name, name)?;
                    out.session_feature = Some(name.to_string());
                }
                Entry::Option(o) if o.name.eq_ignore_ascii_case("tls_requirements") => {
                    return Err(SessionConfError::WrongShape {
                        name: o.name.clone(),
                        expected: "a section",
                    });
                }
                Entry::Section(s) if s.keyword.eq_ignore_ascii_case("session_feature") => {
                    return Err(SessionConfError::WrongShape {
                        name: s.keyword.clone(),
                        expected: "an option",
                    });
                }
                Entry::Option(o) => return Err(unknown("option", &o.name)),
                Entry::Section(s) => return Err(unknown("section", &s.keyword)),
            }
        }
        Ok(out)
    }
}

impl std::str::FromStr for SessionConf {
    type Err = SessionConfError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionConf::parse(s)
    }
}

/// The value on one line, in the form [`SessionConf::parse`] reads.
impl fmt::Display for SessionConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(t) = &self.tls {
            f.write_str("tls_requirements {")?;
            if let Some(cn) = &t.common_name {
                write!(f, " common_name={};", quote(cn))?;
            }
            if let Some(s) = &t.cert_subject {
                write!(f, " cert_subject={};", quote(&encode_dn(s)))?;
            }
            if let Some(s) = &t.cert_issuer {
                write!(f, " cert_issuer={};", quote(&encode_dn(s)))?;
            }
            if t.min_cipher_bits > 0 {
                write!(f, " min_cipher_bits={};", t.min_cipher_bits)?;
            }
            if let Some(flags) = FieldValue::render(&t.flags) {
                write!(f, " flags={flags};")?;
            }
            if let Some(v) = t.requirements_violation {
                write!(f, " requirements_violation={};", v.as_str())?;
            }
            f.write_str(" }")?;
            sep = " ";
        }
        if let Some(n) = &self.session_feature {
            write!(f, "{sep}session_feature={n};")?;
        }
        Ok(())
    }
}

/// Decodes the seed's `+XX` encoding of a DN (3.10 item 21g): `+` and two
/// hex digits become that byte; any other `+` stays. `None` when the bytes
/// are not UTF-8.
pub fn decode_dn(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Encodes a DN in the seed's form (3.10 item 21g): every byte outside
/// `!`..`~` and each of `< > ( ) " +` as `+XX` (upper-case hex).
pub fn encode_dn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if !(0x21..=0x7e).contains(&b) || matches!(b, b'<' | b'>' | b'(' | b')' | b'"' | b'+') {
            out.push_str(&format!("+{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Whether a certificate's DN (`actual`, as `/KEY=value/...`) is the
/// required one (decoded, as in [`TlsRequirementsConf`]): equal after
/// trimming white space at both ends, ASCII case-insensitively.
pub fn dn_matches(required: &str, actual: &str) -> bool {
    required.trim().eq_ignore_ascii_case(actual.trim())
}

// ---- helpers -------------------------------------------------------------

fn parse_tls(entries: &[Entry]) -> Result<TlsRequirementsConf, SessionConfError> {
    let mut t = TlsRequirementsConf::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for e in entries {
        let o = match e {
            Entry::Option(o) => o,
            Entry::Section(s) => return Err(unknown("section", &s.keyword)),
        };
        let name = KNOWN
            .iter()
            .find(|k| o.name.eq_ignore_ascii_case(k))
            .copied()
            .ok_or_else(|| unknown("option", &o.name))?;
        if seen.contains(&name) {
            return Err(dup(name));
        }
        seen.push(name);
        match name {
            "common_name" => {
                let s = scalar(name, &o.value)?;
                check_len(name, &s.text)?;
                if s.text.is_empty() || s.text.chars().any(char::is_control) {
                    return Err(invalid(name, "expected a non-empty name"));
                }
                t.common_name = Some(s.text.clone());
            }
            "cert_subject" | "cert_issuer" => {
                let s = scalar(name, &o.value)?;
                let dn = decode_dn(&s.text)
                    .ok_or_else(|| invalid(name, "the decoded DN is not UTF-8"))?;
                check_len(name, &dn)?;
                if dn.trim().is_empty() {
                    return Err(invalid(name, "expected a DN such as /C=US/O=Example"));
                }
                if name == "cert_subject" {
                    t.cert_subject = Some(dn);
                } else {
                    t.cert_issuer = Some(dn);
                }
            }
            "min_cipher_bits" => {
                let s = scalar(name, &o.value)?;
                t.min_cipher_bits = u32::parse_scalar(s).map_err(|r| invalid(name, &r))?;
            }
            "flags" => t.flags.set(&o.value).map_err(|r| invalid(name, &r))?,
            _ => {
                let s = scalar(name, &o.value)?;
                t.requirements_violation =
                    Some(RequirementsViolation::parse_scalar(s).map_err(|r| invalid(name, &r))?);
            }
        }
    }
    Ok(t)
}

const KNOWN: [&str; 6] = [
    "common_name",
    "cert_subject",
    "cert_issuer",
    "min_cipher_bits",
    "flags",
    "requirements_violation",
];

fn scalar<'v>(name: &str, v: &'v Value) -> Result<&'v Scalar, SessionConfError> {
    match v {
        Value::Scalar(s) => Ok(s),
        Value::List(..) => Err(invalid(name, "expected one value, found a list")),
    }
}

fn check_len(name: &str, s: &str) -> Result<(), SessionConfError> {
    if s.len() > MAX_ITEM_LEN {
        return Err(invalid(name, &format!("longer than {MAX_ITEM_LEN} bytes")));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn dup(name: &str) -> SessionConfError {
    SessionConfError::Duplicate {
        name: name.to_string(),
    }
}

fn unknown(kind: &'static str, name: &str) -> SessionConfError {
    SessionConfError::Unknown {
        kind,
        name: name.chars().take(64).collect(),
    }
}

fn invalid(name: &str, reason: &str) -> SessionConfError {
    SessionConfError::InvalidValue {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> SessionConf {
        match SessionConf::parse(s) {
            Ok(c) => c,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn seed_examples() {
        let c = ok("session_feature=notls;");
        assert_eq!(c.session_feature.as_deref(), Some("notls"));
        assert!(c.tls.is_none());
        // The last item may omit its ';', and a comment may end the value.
        assert_eq!(ok("session_feature=notls # no TLS for them"), c);

        let c = ok(
            r#"tls_requirements { cert_issuer="/C=US/ST=Berkeley/L=Endmail+20Org/O=MTA/CN=C1+20CA"; flags={verified}; }"#,
        );
        let t = c.tls.unwrap_or_default();
        assert_eq!(
            t.cert_issuer.as_deref(),
            Some("/C=US/ST=Berkeley/L=Endmail Org/O=MTA/CN=C1 CA")
        );
        assert!(t.flags.verified && !t.flags.encrypted && t.any());
        assert_eq!(t.requirements_violation, None);
    }

    #[test]
    fn every_item() {
        let c = ok(concat!(
            "TLS_Requirements { common_name = \"mx.example.org\"; cert_subject=\"/CN=a+2Bb\";",
            " min_cipher_bits = 0x80; flags = { encrypted, -verified };",
            " requirements_violation = ABORT } session_feature = relaxed"
        ));
        let t = c.tls.clone().unwrap_or_default();
        assert_eq!(t.common_name.as_deref(), Some("mx.example.org"));
        assert_eq!(t.cert_subject.as_deref(), Some("/CN=a+b"));
        assert_eq!(t.min_cipher_bits, 128);
        assert!(t.flags.encrypted && !t.flags.verified);
        assert_eq!(t.requirements_violation, Some(RequirementsViolation::Abort));
        assert_eq!(c.session_feature.as_deref(), Some("relaxed"));
        assert_eq!(ok(&c.to_string()), c);
        assert_eq!(ok(""), SessionConf::default());
        assert!(!ok("tls_requirements { }").tls.unwrap_or_default().any());
    }

    #[test]
    fn errors_are_typed() {
        type Case = (&'static str, fn(&SessionConfError) -> bool);
        let cases: &[Case] = &[
            ("relaxed", |e| matches!(e, SessionConfError::Syntax(_))),
            ("session_feature=", |e| {
                matches!(e, SessionConfError::Syntax(_))
            }),
            ("} session_feature=x; {", |e| {
                matches!(e, SessionConfError::Syntax(_))
            }),
            ("session_feature=x; }", |e| {
                matches!(e, SessionConfError::Syntax(_))
            }),
            ("tls_requirement { }", |e| {
                matches!(
                    e,
                    SessionConfError::Unknown {
                        kind: "section",
                        ..
                    }
                )
            }),
            ("foo = 1;", |e| {
                matches!(e, SessionConfError::Unknown { kind: "option", .. })
            }),
            ("tls_requirements { commonname = x; }", |e| {
                matches!(e, SessionConfError::Unknown { kind: "option", .. })
            }),
            ("tls_requirements { inner { } }", |e| {
                matches!(
                    e,
                    SessionConfError::Unknown {
                        kind: "section",
                        ..
                    }
                )
            }),
            ("session_feature=a; session_feature=b;", |e| {
                matches!(e, SessionConfError::Duplicate { .. })
            }),
            ("tls_requirements { } tls_requirements { }", |e| {
                matches!(e, SessionConfError::Duplicate { .. })
            }),
            (
                "tls_requirements { flags={verified}; FLAGS={encrypted}; }",
                |e| matches!(e, SessionConfError::Duplicate { .. }),
            ),
            ("tls_requirements x { }", |e| {
                matches!(e, SessionConfError::NamedSection)
            }),
            ("tls_requirements = 1;", |e| {
                matches!(e, SessionConfError::WrongShape { .. })
            }),
            ("session_feature { }", |e| {
                matches!(e, SessionConfError::WrongShape { .. })
            }),
            ("session_feature = { a, b };", |e| {
                matches!(e, SessionConfError::InvalidValue { .. })
            }),
            ("session_feature = \"a b\";", |e| {
                matches!(e, SessionConfError::InvalidValue { .. })
            }),
            ("tls_requirements { min_cipher_bits = 99999999999; }", |e| {
                matches!(e, SessionConfError::InvalidValue { .. })
            }),
            ("tls_requirements { flags = { verified, bogus }; }", |e| {
                matches!(e, SessionConfError::InvalidValue { .. })
            }),
            (
                "tls_requirements { requirements_violation = bounce; }",
                |e| matches!(e, SessionConfError::InvalidValue { .. }),
            ),
            ("tls_requirements { cert_issuer = \"+FF\"; }", |e| {
                matches!(e, SessionConfError::InvalidValue { .. })
            }),
            ("tls_requirements { cert_issuer = \"  \"; }", |e| {
                matches!(e, SessionConfError::InvalidValue { .. })
            }),
            ("tls_requirements { common_name = \"a\\nb\"; }", |e| {
                matches!(e, SessionConfError::InvalidValue { .. })
            }),
        ];
        for (text, want) in cases {
            match SessionConf::parse(text) {
                Ok(c) => panic!("{text}: accepted as {c:?}"),
                Err(e) => assert!(want(&e), "{text}: {e:?}"),
            }
        }
        let long = format!("session_feature={};", "a".repeat(MAX_VALUE_LEN));
        assert_eq!(
            SessionConf::parse(&long),
            Err(SessionConfError::TooLong { len: long.len() })
        );
        let item = format!("session_feature={};", "a".repeat(MAX_ITEM_LEN + 1));
        assert!(matches!(
            SessionConf::parse(&item),
            Err(SessionConfError::InvalidValue { .. })
        ));
    }

    #[test]
    fn dn_encoding() {
        let dn = "/C=US/ST=California/O=endmail.org/OU=private/CN=Darth Mail (Cert)/emailAddress=darth+cert@endmail.org";
        let enc = encode_dn(dn);
        assert_eq!(
            enc,
            "/C=US/ST=California/O=endmail.org/OU=private/CN=Darth+20Mail+20+28Cert+29/emailAddress=darth+2Bcert@endmail.org"
        );
        assert_eq!(decode_dn(&enc).as_deref(), Some(dn));
        // A '+' without two hex digits is itself.
        assert_eq!(decode_dn("a+b+4").as_deref(), Some("a+b+4"));
        assert_eq!(decode_dn("+c3+a9").as_deref(), Some("é"));
        assert_eq!(decode_dn("+ff"), None);
        assert_eq!(encode_dn("é<>\""), "+C3+A9+3C+3E+22");
        assert!(dn_matches(" /C=us/CN=X ", "/C=US/CN=x"));
        assert!(!dn_matches("/C=US/CN=X", "/C=US/CN=Y"));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            "\\PC{1,40}"
        }

        fn conf() -> impl Strategy<Value = SessionConf> {
            let tls = (
                proptest::option::of("[ -~]{1,30}"),
                proptest::option::of(text()),
                proptest::option::of(text()),
                any::<u32>(),
                any::<(bool, bool)>(),
                proptest::option::of(prop_oneof![
                    Just(RequirementsViolation::PermFail),
                    Just(RequirementsViolation::TempFail),
                    Just(RequirementsViolation::Abort),
                ]),
            )
                .prop_map(|(cn, subject, issuer, bits, (v, e), rv)| {
                    let flags = TlsRequirementFlags {
                        verified: v,
                        encrypted: e,
                        ..TlsRequirementFlags::default()
                    };
                    TlsRequirementsConf {
                        common_name: cn,
                        cert_subject: subject.filter(|s| !s.trim().is_empty()),
                        cert_issuer: issuer.filter(|s| !s.trim().is_empty()),
                        min_cipher_bits: bits,
                        flags,
                        requirements_violation: rv,
                    }
                });
            (
                proptest::option::of(tls),
                proptest::option::of("[a-zA-Z0-9_.-]{1,20}"),
            )
                .prop_map(|(tls, session_feature)| SessionConf {
                    tls,
                    session_feature,
                })
        }

        proptest! {
            #[test]
            fn parse_never_panics(s in "\\PC{0,200}") {
                let _ = SessionConf::parse(&s);
            }

            #[test]
            fn parse_never_panics_on_near_miss(
                parts in proptest::collection::vec(prop_oneof![
                    Just("tls_requirements"), Just("{"), Just("}"), Just(";"), Just("="),
                    Just("session_feature"), Just("flags"), Just("verified"), Just(","),
                    Just("cert_issuer"), Just("\"/C=US+20x+\""), Just("min_cipher_bits"),
                    Just("requirements_violation"), Just("abort"), Just("-1"), Just("\""),
                ], 0..30)
            ) {
                let _ = SessionConf::parse(&parts.join(" "));
            }

            #[test]
            fn display_parse_round_trip(c in conf()) {
                let printed = c.to_string();
                prop_assert_eq!(SessionConf::parse(&printed), Ok(c), "{}", printed);
            }

            #[test]
            fn dn_encode_decode(s in "\\PC{0,60}") {
                let enc = encode_dn(&s);
                prop_assert!(enc.bytes().all(|b| (0x21..=0x7e).contains(&b)));
                prop_assert_eq!(decode_dn(&enc), Some(s));
            }
        }
    }
}
