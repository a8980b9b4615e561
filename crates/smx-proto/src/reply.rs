//! SMTP replies: formatting for the server, incremental parsing for the
//! client.
//!
//! # Formatting
//!
//! [`Reply::write_to`] writes RFC 5321 4.2 replies: every line but the last
//! as `code-text`, the last as `code text`, each ended by CRLF, each text
//! prefixed by the enhanced status code (RFC 2034, RFC 3463) when there is
//! one. A reply can never inject a line: control characters in the text
//! (CR, LF, NUL, ...; everything below 0x20 except HT, and DEL) are written
//! as `?`. A reply without lines is written as one line without text. A
//! code outside 200..=559 is a bug in the caller and is written as
//! `451 4.3.0` so the peer sees a temporary failure rather than garbage; an
//! enhanced code whose class differs from the reply's first digit is left
//! out (RFC 3463 requires them to agree).
//!
//! # Parsing
//!
//! [`ReplyParser`] is fed the bytes a server sends, in any pieces, and
//! answers [`ReplyProgress::Incomplete`] or a complete, possibly multi-line
//! [`Reply`] together with the number of bytes of the last piece it used
//! (pipelined replies that follow stay with the caller). It accepts lines
//! ended by CRLF or, as robust clients do, by a bare LF; a CR elsewhere and
//! other control characters in the text become `?`, invalid UTF-8 bytes
//! become `?` (one per byte, so lengths are kept). It rejects, with a
//! [`ReplyError`]:
//!
//! * a code that is not three digits `[2-5][0-5][0-9]`, or a fourth
//!   character other than space, `-` or the line end;
//! * lines of one reply with different codes;
//! * a line longer than [`ReplyLimits::max_line`] (default 2048 octets,
//!   counted with a CRLF line end even if it ended in a bare LF; RFC 5321
//!   4.5.3.1.5 says 512, real servers send longer);
//! * more than [`ReplyLimits::max_lines`] lines (default 128).
//!
//! An enhanced status code is recognised when every line of the reply
//! starts with the same code, followed by a space or the line end, whose
//! class is the reply's first digit; it is then taken off each line.
//! Otherwise the texts are kept whole and [`Reply::enhanced`] is `None`.
//! After an error the parser forgets the partial reply; the connection is
//! not usable any more (all [`ReplyError`]s are [`Class::Temporary`]).

use std::fmt;

use crate::Class;

/// An enhanced mail system status code (RFC 3463), `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    class: u8,
    subject: u16,
    detail: u16,
}

impl EnhancedCode {
    /// `class.subject.detail`; class is 2, 4 or 5, subject and detail at
    /// most 999.
    ///
    /// # Panics
    ///
    /// On a value outside those ranges: a bug in the caller (codes are
    /// constants; in a `const` this is a compile-time error).
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        assert!(
            (class == 2 || class == 4 || class == 5) && subject <= 999 && detail <= 999,
            "enhanced status code out of range"
        );
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// `class.subject.detail` if the values are in range.
    pub const fn checked(class: u8, subject: u16, detail: u16) -> Option<Self> {
        if (class == 2 || class == 4 || class == 5) && subject <= 999 && detail <= 999 {
            Some(EnhancedCode {
                class,
                subject,
                detail,
            })
        } else {
            None
        }
    }

    /// The class: 2 (success), 4 (persistent transient failure) or 5
    /// (permanent failure).
    pub fn class(&self) -> u8 {
        self.class
    }

    /// The subject (RFC 3463 section 3, e.g. 1 = addressing, 5 = protocol).
    pub fn subject(&self) -> u16 {
        self.subject
    }

    /// The detail within the subject.
    pub fn detail(&self) -> u16 {
        self.detail
    }

    /// Parses exactly `class.subject.detail` (RFC 3463: class one digit,
    /// subject and detail one to three digits each).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() || class.len() != 1 {
            return None;
        }
        let num = |p: &str| -> Option<u16> {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let class = u8::try_from(num(class)?).ok()?;
        EnhancedCode::checked(class, num(subject)?, num(detail)?)
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A reply: a code, an optional enhanced status code and one or more lines
/// of text (without the codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code, 200..=559.
    pub code: u16,
    /// The enhanced status code written before each line's text.
    pub enhanced: Option<EnhancedCode>,
    /// The lines' texts; none is written as one line without text.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// A reply of several lines.
    pub fn multi(code: u16, enhanced: Option<EnhancedCode>, lines: Vec<String>) -> Self {
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// A one-line reply with an enhanced code `class.subject.detail`; the
    /// class is the code's first digit.
    ///
    /// # Panics
    ///
    /// If `code` is not 2xx, 4xx or 5xx or subject/detail exceed 999: a bug
    /// in the caller, which passes constants.
    pub fn with_code(code: u16, subject: u16, detail: u16, text: impl Into<String>) -> Self {
        let class = u8::try_from(code / 100).unwrap_or(0);
        Reply::new(code, Some(EnhancedCode::new(class, subject, detail)), text)
    }

    /// Whether the reply reports a failure, and which kind: 4xx
    /// [`Class::Temporary`], 5xx [`Class::Permanent`], otherwise `None`.
    pub fn class(&self) -> Option<Class> {
        match self.code / 100 {
            4 => Some(Class::Temporary),
            5 => Some(Class::Permanent),
            _ => None,
        }
    }

    /// 2xx: the requested action was completed.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// 3xx: go on (e.g. 354 after DATA).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// The texts joined by a space, for logs and DSNs.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (with CRLFs) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let (code, enhanced) = if valid_code(self.code) {
            (self.code, self.enhanced)
        } else {
            (451, Some(EnhancedCode::new(4, 3, 0)))
        };
        let enhanced = enhanced.filter(|e| u16::from(e.class) == code / 100);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        let last = lines.len() - 1;
        for (i, text) in lines.iter().enumerate() {
            out.extend_from_slice(code.to_string().as_bytes());
            out.push(if i == last { b' ' } else { b'-' });
            if let Some(e) = enhanced {
                out.extend_from_slice(e.to_string().as_bytes());
                if !text.is_empty() {
                    out.push(b' ');
                }
            }
            push_sanitized(text, out);
            if enhanced.is_none() && text.is_empty() {
                // "250 " would carry an empty text; RFC 5321 4.2 writes
                // the code alone ("250" CRLF) or "250-" for continuations.
                if i == last {
                    out.pop();
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form (with CRLFs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    /// The wire form, CRLFs included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Limits of the [`ReplyParser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest line in octets, counted with a CRLF line end.
    pub max_line: usize,
    /// Most lines in one reply.
    pub max_lines: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_line: 2048,
            max_lines: 128,
        }
    }
}

/// What [`ReplyParser::parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyProgress {
    /// The reply is not complete; all input was taken in. Feed more.
    Incomplete,
    /// A complete reply; `consumed` bytes of the last input belong to it,
    /// the rest is the start of the next reply.
    Complete {
        /// The reply.
        reply: Reply,
        /// Bytes of the input given to this call that were used.
        consumed: usize,
    },
}

/// A reply the client cannot understand; the session is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The line does not start with a three-digit code 200..=559.
    #[error("reply line does not start with a valid reply code")]
    BadCode,
    /// The code is followed by something other than space, `-` or the end.
    #[error("reply code is followed by neither space nor '-'")]
    BadSeparator,
    /// A continuation line has a different code than the first line.
    #[error("multi-line reply mixes codes {first} and {found}")]
    MixedCodes {
        /// The first line's code.
        first: u16,
        /// The differing code.
        found: u16,
    },
    /// A line is longer than the limit.
    #[error("reply line longer than {limit} octets")]
    LineTooLong {
        /// [`ReplyLimits::max_line`].
        limit: usize,
    },
    /// The reply has more lines than the limit.
    #[error("reply has more than {limit} lines")]
    TooManyLines {
        /// [`ReplyLimits::max_lines`].
        limit: usize,
    },
}

impl ReplyError {
    /// A garbled reply means the conversation is broken, not the message:
    /// always [`Class::Temporary`].
    pub fn class(&self) -> Class {
        Class::Temporary
    }
}

/// Incremental reply parser for the client side; see the module doc.
#[derive(Debug, Clone)]
pub struct ReplyParser {
    limits: ReplyLimits,
    /// Bytes of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The code of the reply's first line.
    code: Option<u16>,
    /// Texts of the lines seen so far (sanitised).
    lines: Vec<String>,
}

impl Default for ReplyParser {
    fn default() -> Self {
        ReplyParser::new(ReplyLimits::default())
    }
}

impl ReplyParser {
    /// A parser with these limits.
    pub fn new(limits: ReplyLimits) -> Self {
        ReplyParser {
            limits,
            partial: Vec::new(),
            code: None,
            lines: Vec::new(),
        }
    }

    /// Feeds `input`; see [`ReplyProgress`]. After an error the partial
    /// reply is dropped.
    pub fn parse(&mut self, input: &[u8]) -> Result<ReplyProgress, ReplyError> {
        let r = self.parse_inner(input);
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// Forgets any partial reply.
    pub fn reset(&mut self) {
        self.partial.clear();
        self.code = None;
        self.lines.clear();
    }

    fn parse_inner(&mut self, input: &[u8]) -> Result<ReplyProgress, ReplyError> {
        let limit = self.limits.max_line;
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                if self.partial.len() + rest.len() > limit {
                    return Err(ReplyError::LineTooLong { limit });
                }
                self.partial.extend_from_slice(rest);
                return Ok(ReplyProgress::Incomplete);
            };
            if self.partial.len() + lf > limit {
                return Err(ReplyError::LineTooLong { limit });
            }
            self.partial.extend_from_slice(&rest[..lf]);
            pos += lf + 1;
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            // Counted as if ended by CRLF, so a line ended by a bare LF
            // is still within the limit when written back with CRLF.
            if line.len() + 2 > limit {
                return Err(ReplyError::LineTooLong { limit });
            }
            if self.line(&line)? {
                let reply = self.finish();
                return Ok(ReplyProgress::Complete {
                    reply,
                    consumed: pos,
                });
            }
        }
        Ok(ReplyProgress::Incomplete)
    }

    /// Takes one line (without its end); true if it was the last.
    fn line(&mut self, line: &[u8]) -> Result<bool, ReplyError> {
        let code = match line {
            [a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9', ..] => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(ReplyError::BadCode),
        };
        let (last, text) = match line.get(3) {
            None => (true, &line[3..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ReplyError::BadSeparator),
        };
        match self.code {
            None => self.code = Some(code),
            Some(first) if first != code => {
                return Err(ReplyError::MixedCodes { first, found: code });
            }
            Some(_) => {}
        }
        if self.lines.len() >= self.limits.max_lines {
            return Err(ReplyError::TooManyLines {
                limit: self.limits.max_lines,
            });
        }
        self.lines.push(sanitize_bytes(text));
        Ok(last)
    }

    fn finish(&mut self) -> Reply {
        let code = self.code.take().unwrap_or(0);
        let mut lines = std::mem::take(&mut self.lines);
        let enhanced = common_enhanced(code, &lines);
        if enhanced.is_some() {
            for l in &mut lines {
                *l = strip_enhanced(l);
            }
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn valid_code(code: u16) -> bool {
    (200..=559).contains(&code) && (code / 10) % 10 <= 5
}

/// Whether `b` is written as `?`: C0 controls except HT, and DEL.
fn is_unsafe(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || c == '\u{7f}'
}

fn push_sanitized(text: &str, out: &mut Vec<u8>) {
    if !text.chars().any(is_unsafe) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for c in text.chars() {
        let c = if is_unsafe(c) { '?' } else { c };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
}

/// Text of a received line: invalid UTF-8 bytes and unsafe characters
/// become `?`, one per byte, so the text is exactly what the formatter
/// writes back.
fn sanitize_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            s.push(if is_unsafe(c) { '?' } else { c });
        }
        for _ in chunk.invalid() {
            s.push('?');
        }
    }
    s
}

/// The leading enhanced code of a text, if followed by space or the end.
fn leading_enhanced(text: &str) -> Option<EnhancedCode> {
    let word = text.split(' ').next()?;
    EnhancedCode::parse(word)
}

fn common_enhanced(code: u16, lines: &[String]) -> Option<EnhancedCode> {
    let first = leading_enhanced(lines.first()?)?;
    if u16::from(first.class) != code / 100 {
        return None;
    }
    lines
        .iter()
        .all(|l| leading_enhanced(l) == Some(first))
        .then_some(first)
}

/// The text after the enhanced code word and one space. The word may be
/// written differently from the canonical form (leading zeros), so cut at
/// the first space.
fn strip_enhanced(line: &str) -> String {
    match line.split_once(' ') {
        Some((_, rest)) => rest.to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<(Reply, usize), ReplyError> {
        let mut p = ReplyParser::default();
        match p.parse(bytes)? {
            ReplyProgress::Complete { reply, consumed } => Ok((reply, consumed)),
            ReplyProgress::Incomplete => panic!("incomplete: {bytes:?}"),
        }
    }

    #[test]
    fn formats_single_and_multi_line() {
        let r = Reply::with_code(250, 0, 0, "Ok");
        assert_eq!(r.to_bytes(), b"250 2.0.0 Ok\r\n");
        let r = Reply::multi(
            250,
            None,
            vec![
                "mx.example.org".into(),
                "PIPELINING".into(),
                "SIZE 100".into(),
            ],
        );
        assert_eq!(
            r.to_bytes(),
            b"250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
        );
        let r = Reply::multi(
            550,
            Some(EnhancedCode::new(5, 1, 1)),
            vec!["a".into(), "b".into()],
        );
        assert_eq!(r.to_bytes(), b"550-5.1.1 a\r\n550 5.1.1 b\r\n");
    }

    #[test]
    fn formats_empty_texts() {
        assert_eq!(Reply::multi(250, None, vec![]).to_bytes(), b"250\r\n");
        assert_eq!(Reply::new(354, None, "").to_bytes(), b"354\r\n");
        assert_eq!(
            Reply::multi(250, None, vec![String::new(), String::new()]).to_bytes(),
            b"250-\r\n250\r\n"
        );
        assert_eq!(Reply::with_code(250, 0, 0, "").to_bytes(), b"250 2.0.0\r\n");
    }

    #[test]
    fn invalid_code_and_mismatched_enhanced_code() {
        assert_eq!(Reply::new(99, None, "x").to_bytes(), b"451 4.3.0 x\r\n");
        assert_eq!(Reply::new(600, None, "x").to_bytes(), b"451 4.3.0 x\r\n");
        assert_eq!(Reply::new(260, None, "x").to_bytes(), b"451 4.3.0 x\r\n");
        let r = Reply::new(250, Some(EnhancedCode::new(5, 0, 0)), "x");
        assert_eq!(r.to_bytes(), b"250 x\r\n");
    }

    #[test]
    fn injection_is_neutralised() {
        let r = Reply::new(550, None, "no such user\r\n250 ok");
        let wire = r.to_bytes();
        assert_eq!(wire, b"550 no such user??250 ok\r\n");
        let (back, consumed) = parse_all(&wire).unwrap();
        assert_eq!(consumed, wire.len());
        assert_eq!(back.code, 550);
        assert_eq!(back.lines, vec!["no such user??250 ok".to_owned()]);
        let r = Reply::multi(250, None, vec!["a\nb".into(), "\u{0}\u{7f}".into()]);
        assert_eq!(r.to_bytes(), b"250-a?b\r\n250 ??\r\n");
    }

    #[test]
    fn parses_multi_line_with_enhanced_codes() {
        let (r, n) = parse_all(b"250-2.1.0 first\r\n250 2.1.0 last\r\nNEXT").unwrap();
        assert_eq!(n, 33);
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced, Some(EnhancedCode::new(2, 1, 0)));
        assert_eq!(r.lines, vec!["first".to_owned(), "last".to_owned()]);
        // Different enhanced codes: kept in the texts.
        let (r, _) = parse_all(b"250-2.1.0 a\r\n250 2.1.5 b\r\n").unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.lines, vec!["2.1.0 a".to_owned(), "2.1.5 b".to_owned()]);
        // Class mismatch: not an enhanced code.
        let (r, _) = parse_all(b"250 5.1.0 a\r\n").unwrap();
        assert_eq!(r.enhanced, None);
        // Code alone, bare LF.
        let (r, _) = parse_all(b"354\n").unwrap();
        assert_eq!(r.lines, vec![String::new()]);
    }

    #[test]
    fn parses_in_pieces() {
        let wire = b"220-mx ESMTP\r\n220 ready\r\n250 ok\r\n";
        for split in 0..wire.len() {
            let mut p = ReplyParser::default();
            let (a, b) = wire.split_at(split);
            let mut got = None;
            let mut rest: &[u8] = &[];
            for part in [a, b] {
                if got.is_some() {
                    rest = part;
                    break;
                }
                if let ReplyProgress::Complete { reply, consumed } = p.parse(part).unwrap() {
                    got = Some(reply);
                    rest = &part[consumed..];
                }
            }
            let got = got.unwrap();
            assert_eq!(got.code, 220, "split {split}");
            assert_eq!(got.lines, vec!["mx ESMTP".to_owned(), "ready".to_owned()]);
            assert!(rest.ends_with(b"250 ok\r\n") || split >= 25);
        }
    }

    #[test]
    fn rejects_garbage() {
        let cases: &[(&[u8], ReplyError)] = &[
            (b"2x0 ok\r\n", ReplyError::BadCode),
            (b"ok\r\n", ReplyError::BadCode),
            (b"25\r\n", ReplyError::BadCode),
            (b"150 ok\r\n", ReplyError::BadCode),
            (b"260 ok\r\n", ReplyError::BadCode),
            (b"250x ok\r\n", ReplyError::BadSeparator),
            (
                b"250-a\r\n251 b\r\n",
                ReplyError::MixedCodes {
                    first: 250,
                    found: 251,
                },
            ),
        ];
        for (input, want) in cases {
            let mut p = ReplyParser::default();
            assert_eq!(p.parse(input).unwrap_err(), *want, "{input:?}");
        }
    }

    #[test]
    fn bounds_line_length_and_line_count() {
        let limits = ReplyLimits {
            max_line: 16,
            max_lines: 3,
        };
        let mut p = ReplyParser::new(limits);
        // 14 octets + CRLF = 16: fits.
        assert!(matches!(
            p.parse(b"250 0123456789\r\n").unwrap(),
            ReplyProgress::Complete { .. }
        ));
        let mut p = ReplyParser::new(limits);
        assert_eq!(
            p.parse(b"250 01234567890\r\n").unwrap_err(),
            ReplyError::LineTooLong { limit: 16 }
        );
        // Without a line end the limit still holds.
        let mut p = ReplyParser::new(limits);
        assert_eq!(p.parse(b"250 0123456").unwrap(), ReplyProgress::Incomplete);
        assert_eq!(
            p.parse(b"7890123").unwrap_err(),
            ReplyError::LineTooLong { limit: 16 }
        );
        // A bare LF counts as CRLF.
        let mut p = ReplyParser::new(limits);
        assert!(matches!(
            p.parse(b"250 0123456789\n").unwrap(),
            ReplyProgress::Complete { .. }
        ));
        let mut p = ReplyParser::new(limits);
        assert_eq!(
            p.parse(b"250 01234567890\n").unwrap_err(),
            ReplyError::LineTooLong { limit: 16 }
        );
        let mut p = ReplyParser::new(limits);
        assert_eq!(
            p.parse(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n")
                .unwrap_err(),
            ReplyError::TooManyLines { limit: 3 }
        );
    }

    #[test]
    fn enhanced_code_parse() {
        assert_eq!(
            EnhancedCode::parse("5.1.1"),
            Some(EnhancedCode::new(5, 1, 1))
        );
        assert_eq!(
            EnhancedCode::parse("4.123.999"),
            Some(EnhancedCode::new(4, 123, 999))
        );
        for bad in [
            "", "5", "5.1", "5.1.1.1", "3.1.1", "5.1000.1", "5..1", "a.b.c", "55.1.1", "5.1.+1",
        ] {
            assert_eq!(EnhancedCode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn invalid_utf8_keeps_length() {
        let (r, _) = parse_all(b"250 a\xffb\xc3\r\n").unwrap();
        assert_eq!(r.lines, vec!["a?b?".to_owned()]);
    }
}
