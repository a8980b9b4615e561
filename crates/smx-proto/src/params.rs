//! ESMTP parameters of MAIL FROM and RCPT TO (RFC 5321 4.1.2
//! `Mail-parameters`, `Rcpt-parameters`).
//!
//! A parameter is `keyword[=value]`; keywords are case-insensitive; values
//! are `esmtp-value` (printable ASCII except `=`, plus UTF-8 under RFC 6531),
//! except XVERP, whose Postfix form `XVERP=+=` contains `=`.
//!
//! | keyword | command | value | RFC |
//! | --- | --- | --- | --- |
//! | `SIZE` | MAIL | 1 to 20 digits | 1870 |
//! | `BODY` | MAIL | `7BIT`, `8BITMIME`, `BINARYMIME` | 6152, 3030 |
//! | `SMTPUTF8` | MAIL | none | 6531 |
//! | `RET` | MAIL | `FULL`, `HDRS` | 3461 |
//! | `ENVID` | MAIL | xtext, at most 100 octets as written | 3461 |
//! | `AUTH` | MAIL | xtext mailbox, or `<>` | 4954 |
//! | `BY` | MAIL | `[+-]1*9DIGIT ";" (N / R) [T]` | 2852 |
//! | `XVERP` | MAIL | none, or two delimiter characters | Postfix |
//! | `PRDR` | MAIL | none | draft-hall-prdr |
//! | `NOTIFY` | RCPT | `NEVER`, or a list of `SUCCESS`, `FAILURE`, `DELAY` | 3461 |
//! | `ORCPT` | RCPT | `addr-type ";" xtext`, at most 500 octets as written | 3461, 6533 |
//!
//! Value keywords (`8BITMIME`, `HDRS`, `NEVER`, `R`...) are
//! case-insensitive and rendered in upper case. Decoded xtext (ENVID, AUTH,
//! ORCPT) must be UTF-8 without control characters: those values end up in
//! DSN headers and logs, where a decoded CR LF would inject lines. For
//! ORCPT the address type is kept as written (`rfc822`, `utf-8`, ...); for
//! `utf-8` raw UTF-8 is accepted (RFC 6533 unitext) and the `\x{HHHH}`
//! escapes of RFC 6533 are inner syntax, kept as written. BY's semantic
//! rules (RFC 2852 4: a non-positive time with `R`, the server's minimum)
//! are the server's: the parser checks syntax only.
//!
//! Errors ([`ParamError`], via [`ParamError::reply`]): an unknown keyword
//! is 555 5.5.4 (RFC 5321 4.1.1.11); a duplicate, a missing, unexpected or
//! malformed value is 501 5.5.4; a SIZE beyond 2^64-1 is 552 5.3.4 (it is
//! valid RFC 1870 syntax, and more than any server accepts). Whether a
//! parameter was advertised (e.g. BODY=8BITMIME without 8BITMIME in EHLO)
//! is for the server to check.

use std::fmt;

use crate::reply::{EnhancedCode, Reply};
use crate::xtext::{self, DecodeOptions};

/// Longest ENVID value as written (RFC 3461 4.4).
pub const MAX_ENVID: usize = 100;
/// Longest ORCPT value as written (RFC 3461 4.2).
pub const MAX_ORCPT: usize = 500;

/// Why a parameter is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A keyword this command does not know (555).
    #[error("parameter {keyword} not recognized")]
    Unknown {
        /// The keyword, upper case.
        keyword: String,
    },
    /// The parameter appears twice (501).
    #[error("duplicate parameter {keyword}")]
    Duplicate {
        /// The keyword.
        keyword: &'static str,
    },
    /// The value is missing, present where none is allowed, or malformed
    /// (501).
    #[error("invalid {keyword} parameter: {problem}")]
    Invalid {
        /// The keyword.
        keyword: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// Not `keyword[=value]` at all: bad keyword characters or an empty
    /// value (501).
    #[error("malformed parameter")]
    Malformed,
    /// SIZE larger than 2^64-1 (552).
    #[error("message size exceeds fixed maximum message size")]
    SizeOverflow,
}

impl ParamError {
    /// The reply the server sends.
    pub fn reply(&self) -> Reply {
        let (code, e) = match self {
            ParamError::Unknown { .. } => (555, EnhancedCode::new(5, 5, 4)),
            ParamError::SizeOverflow => (552, EnhancedCode::new(5, 3, 4)),
            _ => (501, EnhancedCode::new(5, 5, 4)),
        };
        Reply::new(code, Some(e), self.to_string())
    }
}

/// The content type declared by BODY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BINARYMIME` (RFC 3030; BDAT only).
    BinaryMime,
}

impl Body {
    /// The keyword.
    pub fn as_str(&self) -> &'static str {
        match self {
            Body::SevenBit => "7BIT",
            Body::EightBitMime => "8BITMIME",
            Body::BinaryMime => "BINARYMIME",
        }
    }
}

/// What a DSN returns (RFC 3461 RET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// The whole message.
    Full,
    /// Headers only.
    Hdrs,
}

/// The AUTH= parameter (RFC 4954 5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthParam {
    /// `<>`: the submitter is not known or not trusted.
    Unknown,
    /// The authenticated submitter (decoded xtext).
    Mailbox(String),
}

/// XVERP (Postfix): VERP with the server's or the given delimiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Xverp {
    /// The two delimiter characters (printable ASCII), if given.
    pub delimiters: Option<[u8; 2]>,
}

/// What happens when the BY deadline passes (RFC 2852).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByMode {
    /// `N`: send a delay DSN and keep trying.
    Notify,
    /// `R`: return the message.
    Return,
}

/// DELIVERBY (RFC 2852): `BY=time;mode[T]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliverBy {
    /// Seconds from now, -999999999..=999999999.
    pub seconds: i32,
    /// What to do when the time passes.
    pub mode: ByMode,
    /// `T`: trace delivery (report what happened in time).
    pub trace: bool,
}

/// The parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MailParams {
    /// SIZE: the declared message size in octets.
    pub size: Option<u64>,
    /// BODY.
    pub body: Option<Body>,
    /// SMTPUTF8 given.
    pub smtputf8: bool,
    /// RET.
    pub ret: Option<Ret>,
    /// ENVID, decoded.
    pub envid: Option<String>,
    /// AUTH=.
    pub auth: Option<AuthParam>,
    /// BY.
    pub by: Option<DeliverBy>,
    /// XVERP.
    pub xverp: Option<Xverp>,
    /// PRDR: the client wants per-recipient replies after the data
    /// (draft-hall-prdr).
    pub prdr: bool,
}

/// NOTIFY (RFC 3461 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notify {
    /// `NEVER`: no DSN at all.
    Never,
    /// A DSN on these events; at least one is set.
    On {
        /// `SUCCESS`.
        success: bool,
        /// `FAILURE`.
        failure: bool,
        /// `DELAY`.
        delay: bool,
    },
}

/// ORCPT (RFC 3461 4.2): the original recipient, with its address type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Orcpt {
    /// The address type as written, e.g. `rfc822` or `utf-8`.
    pub addr_type: String,
    /// The address, xtext decoded.
    pub address: String,
}

impl Orcpt {
    /// Whether the type is `utf-8` (RFC 6533), any case.
    pub fn is_utf8_type(&self) -> bool {
        self.addr_type.eq_ignore_ascii_case("utf-8")
    }
}

/// The parameters of RCPT TO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RcptParams {
    /// NOTIFY.
    pub notify: Option<Notify>,
    /// ORCPT.
    pub orcpt: Option<Orcpt>,
}

impl MailParams {
    /// Parses the parameters, given as separate `keyword[=value]` words.
    /// `lax` (sloppy syntax) accepts lower-case hex in xtext.
    pub fn parse<'a>(
        words: impl IntoIterator<Item = &'a str>,
        lax: bool,
    ) -> Result<Self, ParamError> {
        let mut p = MailParams::default();
        for word in words {
            let (key, value) = split_param(word)?;
            match key.as_str() {
                "SIZE" => {
                    dup(p.size.is_some(), "SIZE")?;
                    let v = need(value, "SIZE")?;
                    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(invalid("SIZE", "expected 1 to 20 digits"));
                    }
                    p.size = Some(v.parse().map_err(|_| ParamError::SizeOverflow)?);
                }
                "BODY" => {
                    dup(p.body.is_some(), "BODY")?;
                    let v = need(value, "BODY")?;
                    p.body = Some(match v.to_ascii_uppercase().as_str() {
                        "7BIT" => Body::SevenBit,
                        "8BITMIME" => Body::EightBitMime,
                        "BINARYMIME" => Body::BinaryMime,
                        _ => return Err(invalid("BODY", "expected 7BIT, 8BITMIME or BINARYMIME")),
                    });
                }
                "SMTPUTF8" => {
                    dup(p.smtputf8, "SMTPUTF8")?;
                    none(value, "SMTPUTF8")?;
                    p.smtputf8 = true;
                }
                "RET" => {
                    dup(p.ret.is_some(), "RET")?;
                    let v = need(value, "RET")?;
                    p.ret = Some(match v.to_ascii_uppercase().as_str() {
                        "FULL" => Ret::Full,
                        "HDRS" => Ret::Hdrs,
                        _ => return Err(invalid("RET", "expected FULL or HDRS")),
                    });
                }
                "ENVID" => {
                    dup(p.envid.is_some(), "ENVID")?;
                    let v = need(value, "ENVID")?;
                    if v.len() > MAX_ENVID {
                        return Err(invalid("ENVID", "longer than 100 characters"));
                    }
                    p.envid = Some(decode_text(v, "ENVID", lax, false)?);
                }
                "AUTH" => {
                    dup(p.auth.is_some(), "AUTH")?;
                    let v = need(value, "AUTH")?;
                    let d = decode_text(v, "AUTH", lax, false)?;
                    p.auth = Some(if d == "<>" {
                        AuthParam::Unknown
                    } else {
                        AuthParam::Mailbox(d)
                    });
                }
                "BY" => {
                    dup(p.by.is_some(), "BY")?;
                    p.by = Some(parse_by(need(value, "BY")?)?);
                }
                "XVERP" => {
                    dup(p.xverp.is_some(), "XVERP")?;
                    let delimiters = match value {
                        None => None,
                        Some(v) => match v.as_bytes() {
                            &[a @ 33..=126, b @ 33..=126] => Some([a, b]),
                            _ => return Err(invalid("XVERP", "expected two delimiter characters")),
                        },
                    };
                    p.xverp = Some(Xverp { delimiters });
                }
                "PRDR" => {
                    dup(p.prdr, "PRDR")?;
                    none(value, "PRDR")?;
                    p.prdr = true;
                }
                _ => return Err(ParamError::Unknown { keyword: key }),
            }
        }
        Ok(p)
    }

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        *self == MailParams::default()
    }
}

impl RcptParams {
    /// Parses the parameters, given as separate `keyword[=value]` words.
    /// `lax` (sloppy syntax) accepts lower-case hex in xtext.
    pub fn parse<'a>(
        words: impl IntoIterator<Item = &'a str>,
        lax: bool,
    ) -> Result<Self, ParamError> {
        let mut p = RcptParams::default();
        for word in words {
            let (key, value) = split_param(word)?;
            match key.as_str() {
                "NOTIFY" => {
                    dup(p.notify.is_some(), "NOTIFY")?;
                    p.notify = Some(parse_notify(need(value, "NOTIFY")?)?);
                }
                "ORCPT" => {
                    dup(p.orcpt.is_some(), "ORCPT")?;
                    p.orcpt = Some(parse_orcpt(need(value, "ORCPT")?, lax)?);
                }
                _ => return Err(ParamError::Unknown { keyword: key }),
            }
        }
        Ok(p)
    }

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        *self == RcptParams::default()
    }
}

impl fmt::Display for MailParams {
    /// The parameters in canonical form, each preceded by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.size {
            write!(f, " SIZE={s}")?;
        }
        if let Some(b) = self.body {
            write!(f, " BODY={}", b.as_str())?;
        }
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        if let Some(r) = self.ret {
            f.write_str(match r {
                Ret::Full => " RET=FULL",
                Ret::Hdrs => " RET=HDRS",
            })?;
        }
        if let Some(e) = &self.envid {
            write!(f, " ENVID={}", xtext::encode(e.as_bytes()))?;
        }
        match &self.auth {
            None => {}
            Some(AuthParam::Unknown) => f.write_str(" AUTH=<>")?,
            Some(AuthParam::Mailbox(m)) => write!(f, " AUTH={}", xtext::encode(m.as_bytes()))?,
        }
        if let Some(by) = self.by {
            let mode = match by.mode {
                ByMode::Notify => "N",
                ByMode::Return => "R",
            };
            let trace = if by.trace { "T" } else { "" };
            write!(f, " BY={};{mode}{trace}", by.seconds)?;
        }
        if let Some(x) = self.xverp {
            f.write_str(" XVERP")?;
            if let Some([a, b]) = x.delimiters {
                write!(f, "={}{}", char::from(a), char::from(b))?;
            }
        }
        if self.prdr {
            f.write_str(" PRDR")?;
        }
        Ok(())
    }
}

impl fmt::Display for RcptParams {
    /// The parameters in canonical form, each preceded by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.notify {
            None => {}
            Some(Notify::Never) => f.write_str(" NOTIFY=NEVER")?,
            Some(Notify::On {
                success,
                failure,
                delay,
            }) => {
                let names = [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")];
                let list: Vec<&str> = names
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, n)| *n)
                    .collect();
                write!(f, " NOTIFY={}", list.join(","))?;
            }
        }
        if let Some(o) = &self.orcpt {
            let mut v = String::new();
            xtext::encode_into(o.address.as_bytes(), o.is_utf8_type(), &mut v);
            write!(f, " ORCPT={};{v}", o.addr_type)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn invalid(keyword: &'static str, problem: &'static str) -> ParamError {
    ParamError::Invalid { keyword, problem }
}

fn dup(seen: bool, keyword: &'static str) -> Result<(), ParamError> {
    if seen {
        Err(ParamError::Duplicate { keyword })
    } else {
        Ok(())
    }
}

fn need<'a>(value: Option<&'a str>, keyword: &'static str) -> Result<&'a str, ParamError> {
    value.ok_or(invalid(keyword, "value required"))
}

fn none(value: Option<&str>, keyword: &'static str) -> Result<(), ParamError> {
    match value {
        None => Ok(()),
        Some(_) => Err(invalid(keyword, "takes no value")),
    }
}

/// Splits `keyword[=value]`, checks the keyword (`(ALPHA / DIGIT) *(ALPHA /
/// DIGIT / "-")`) and the value's characters; returns the keyword in upper
/// case.
fn split_param(word: &str) -> Result<(String, Option<&str>), ParamError> {
    let (key, value) = match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    };
    let kb = key.as_bytes();
    if kb.is_empty()
        || !kb[0].is_ascii_alphanumeric()
        || !kb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return Err(ParamError::Malformed);
    }
    let key = key.to_ascii_uppercase();
    if let Some(v) = value {
        let eq_ok = key == "XVERP";
        let ok = !v.is_empty()
            && v.bytes()
                .all(|b| matches!(b, 33..=126 | 0x80..) && (b != b'=' || eq_ok));
        if !ok {
            return Err(ParamError::Malformed);
        }
    }
    Ok((key, value))
}

/// Decodes an xtext value that must be text: UTF-8 without controls.
fn decode_text(
    v: &str,
    keyword: &'static str,
    lax: bool,
    utf8: bool,
) -> Result<String, ParamError> {
    let opts = DecodeOptions {
        lowercase_hex: lax,
        utf8,
    };
    let bytes = xtext::decode_with(v, opts).map_err(|_| invalid(keyword, "not valid xtext"))?;
    let s = String::from_utf8(bytes).map_err(|_| invalid(keyword, "decodes to invalid UTF-8"))?;
    if s.chars().any(|c| c.is_control()) {
        return Err(invalid(keyword, "decodes to control characters"));
    }
    Ok(s)
}

fn parse_by(v: &str) -> Result<DeliverBy, ParamError> {
    let bad = invalid("BY", "expected time;N or time;R, optionally followed by T");
    let (time, mode) = v.split_once(';').ok_or(bad.clone())?;
    let digits = time.strip_prefix(['+', '-']).unwrap_or(time);
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let magnitude: i32 = digits.parse().map_err(|_| bad.clone())?;
    let seconds = if time.starts_with('-') {
        -magnitude
    } else {
        magnitude
    };
    let (mode, trace) = match mode.to_ascii_uppercase().as_str() {
        "N" => (ByMode::Notify, false),
        "R" => (ByMode::Return, false),
        "NT" => (ByMode::Notify, true),
        "RT" => (ByMode::Return, true),
        _ => return Err(bad),
    };
    Ok(DeliverBy {
        seconds,
        mode,
        trace,
    })
}

fn parse_notify(v: &str) -> Result<Notify, ParamError> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Ok(Notify::Never);
    }
    let (mut success, mut failure, mut delay) = (false, false, false);
    for item in v.split(',') {
        let flag = match item.to_ascii_uppercase().as_str() {
            "SUCCESS" => &mut success,
            "FAILURE" => &mut failure,
            "DELAY" => &mut delay,
            "NEVER" => return Err(invalid("NOTIFY", "NEVER must stand alone")),
            _ => {
                return Err(invalid(
                    "NOTIFY",
                    "expected NEVER or SUCCESS, FAILURE, DELAY",
                ));
            }
        };
        if *flag {
            return Err(invalid("NOTIFY", "event listed twice"));
        }
        *flag = true;
    }
    Ok(Notify::On {
        success,
        failure,
        delay,
    })
}

fn parse_orcpt(v: &str, lax: bool) -> Result<Orcpt, ParamError> {
    if v.len() > MAX_ORCPT {
        return Err(invalid("ORCPT", "longer than 500 characters"));
    }
    let (addr_type, addr) = v
        .split_once(';')
        .ok_or(invalid("ORCPT", "expected addr-type;address"))?;
    // addr-type is an RFC 822 atom.
    let atom_ok = !addr_type.is_empty()
        && addr_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b));
    if !atom_ok {
        return Err(invalid("ORCPT", "invalid address type"));
    }
    if addr.is_empty() {
        return Err(invalid("ORCPT", "empty address"));
    }
    let utf8 = addr_type.eq_ignore_ascii_case("utf-8");
    let address = decode_text(addr, "ORCPT", lax, utf8)?;
    Ok(Orcpt {
        addr_type: addr_type.to_owned(),
        address,
    })
}
