//! Command line framing: finds one command line in the bytes received.
//!
//! [`frame_line`] looks at the start of the caller's buffer and answers
//! [`Frame::Incomplete`] (no line end yet: read more), [`Frame::Line`] (a
//! line without its terminator, and how many bytes to remove from the
//! buffer) or a [`LineError`], which always says how many bytes to discard
//! so the next command can be read.
//!
//! A line ends at the first LF. In strict syntax (the default, seed 6.3.1)
//! the LF must follow a CR: a bare LF is [`LineError::BareLf`]. Sloppy
//! syntax (ZMailer `-s sloppy`) takes a bare LF as a line end. In both, a CR
//! anywhere else in the line is [`LineError::BareCr`] (a CR is never a line
//! end, and never part of a command).
//!
//! The line, terminator included, may be at most [`Syntax::line_limit`]
//! octets (default 4096, at least RFC 5321 4.5.3.1.4's 512). A longer line
//! is [`LineError::TooLong`] as soon as the limit is passed, so the caller's
//! buffer never needs to hold more than the limit; if its end has not been
//! seen yet (`terminated == false`), the caller drops the buffer and feeds
//! later input to [`skip_line`] until it finds the end, then replies.
//!
//! Replies ([`LineError::reply`]): too long is 500 5.5.2 "Line too long"
//! (RFC 5321 4.5.3.1.10); a bare CR or LF is 500 5.5.2. The seed treats a
//! bare line end as a read error; whether to close the connection after the
//! reply is the server's choice.
//!
//! [`Syntax::line_limit`]: crate::Syntax::line_limit

use crate::Syntax;
use crate::reply::{EnhancedCode, Reply};

/// A command line found by [`frame_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// No line end yet and the limit is not reached: read more.
    Incomplete,
    /// A complete line.
    Line {
        /// The line without CRLF (or LF).
        line: &'a [u8],
        /// Bytes to remove from the buffer, terminator included.
        len: usize,
    },
}

/// A command line that cannot be used. Each variant says how many bytes of
/// the buffer to discard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is longer than the limit. Discard `discard` bytes; if not
    /// `terminated`, keep discarding (with [`skip_line`]) until the line
    /// end, then reply.
    #[error("line too long")]
    TooLong {
        /// Bytes of the buffer to discard.
        discard: usize,
        /// Whether the line end is among them.
        terminated: bool,
    },
    /// Strict syntax: the line ends in LF without CR.
    #[error("line must end in CRLF (bare LF)")]
    BareLf {
        /// Bytes to discard (the line and its LF).
        discard: usize,
    },
    /// A CR that is not followed by LF.
    #[error("bare CR in command line")]
    BareCr {
        /// Bytes to discard (the line and its LF).
        discard: usize,
    },
}

impl LineError {
    /// Bytes of the buffer to discard.
    pub fn discard(&self) -> usize {
        match self {
            LineError::TooLong { discard, .. }
            | LineError::BareLf { discard }
            | LineError::BareCr { discard } => *discard,
        }
    }

    /// The reply the server sends (once the line end has been seen).
    pub fn reply(&self) -> Reply {
        let text = match self {
            LineError::TooLong { .. } => "Line too long",
            LineError::BareLf { .. } => "Line must end in CRLF, bare LF not allowed",
            LineError::BareCr { .. } => "Bare CR not allowed in command",
        };
        Reply::new(500, Some(EnhancedCode::new(5, 5, 2)), text)
    }
}

/// Finds the command line at the start of `buf`; see the module doc.
pub fn frame_line<'a>(buf: &'a [u8], syntax: &Syntax) -> Result<Frame<'a>, LineError> {
    let limit = syntax.line_limit();
    let window = &buf[..buf.len().min(limit)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() < limit {
            return Ok(Frame::Incomplete);
        }
        // `limit` bytes without LF: the line is longer than allowed.
        return Err(match skip_line(&buf[limit..]) {
            Some(n) => LineError::TooLong {
                discard: limit + n,
                terminated: true,
            },
            None => LineError::TooLong {
                discard: buf.len(),
                terminated: false,
            },
        });
    };
    let len = lf + 1;
    let (line, crlf) = match buf[..lf].strip_suffix(b"\r") {
        Some(l) => (l, true),
        None => (&buf[..lf], false),
    };
    if line.contains(&b'\r') {
        return Err(LineError::BareCr { discard: len });
    }
    if !crlf && syntax.strict {
        return Err(LineError::BareLf { discard: len });
    }
    Ok(Frame::Line { line, len })
}

/// While skipping an overlong line: the number of bytes up to and
/// including the first LF in `buf`, or `None` if there is none (discard
/// all of `buf` and keep skipping).
pub fn skip_line(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|p| p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'a>(buf: &'a [u8], syntax: &Syntax) -> Result<Frame<'a>, LineError> {
        frame_line(buf, syntax)
    }

    #[test]
    fn frames_crlf_lines() {
        let s = Syntax::STRICT;
        assert_eq!(frame(b"", &s), Ok(Frame::Incomplete));
        assert_eq!(frame(b"NOOP", &s), Ok(Frame::Incomplete));
        assert_eq!(frame(b"NOOP\r", &s), Ok(Frame::Incomplete));
        assert_eq!(
            frame(b"NOOP\r\nQUIT\r\n", &s),
            Ok(Frame::Line {
                line: b"NOOP",
                len: 6
            })
        );
        assert_eq!(frame(b"\r\n", &s), Ok(Frame::Line { line: b"", len: 2 }));
    }

    #[test]
    fn bare_lf_strict_vs_sloppy() {
        assert_eq!(
            frame(b"NOOP\nQUIT\r\n", &Syntax::STRICT),
            Err(LineError::BareLf { discard: 5 })
        );
        assert_eq!(
            frame(b"NOOP\nQUIT\r\n", &Syntax::SLOPPY),
            Ok(Frame::Line {
                line: b"NOOP",
                len: 5
            })
        );
    }

    #[test]
    fn bare_cr_is_always_an_error() {
        for s in [Syntax::STRICT, Syntax::SLOPPY] {
            assert_eq!(
                frame(b"NO\rOP\r\n", &s),
                Err(LineError::BareCr { discard: 7 })
            );
            assert_eq!(
                frame(b"NOOP\r\r\n", &s),
                Err(LineError::BareCr { discard: 7 })
            );
            assert_eq!(frame(b"NOOP\rQUIT", &s), Ok(Frame::Incomplete));
        }
    }

    #[test]
    fn length_limit_boundary() {
        let s = Syntax {
            max_line: 600,
            ..Syntax::STRICT
        };
        let mut ok = vec![b'x'; 598];
        ok.extend_from_slice(b"\r\n");
        assert_eq!(
            frame(&ok, &s),
            Ok(Frame::Line {
                line: &ok[..598],
                len: 600
            })
        );
        let mut long = vec![b'x'; 599];
        long.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(
            frame(&long, &s),
            Err(LineError::TooLong {
                discard: 601,
                terminated: true
            })
        );
        // Not yet terminated: discard everything, then skip.
        let partial = vec![b'x'; 700];
        assert_eq!(
            frame(&partial, &s),
            Err(LineError::TooLong {
                discard: 700,
                terminated: false
            })
        );
        assert_eq!(frame(&partial[..599], &s), Ok(Frame::Incomplete));
        assert_eq!(skip_line(b"xxxx"), None);
        assert_eq!(skip_line(b"xx\r\nNOOP"), Some(4));
        assert_eq!(
            LineError::TooLong {
                discard: 1,
                terminated: true
            }
            .reply()
            .to_bytes(),
            b"500 5.5.2 Line too long\r\n"
        );
    }

    #[test]
    fn limit_is_at_least_512() {
        let s = Syntax {
            max_line: 10,
            ..Syntax::STRICT
        };
        let mut line = vec![b'x'; 510];
        line.extend_from_slice(b"\r\n");
        assert!(matches!(frame(&line, &s), Ok(Frame::Line { len: 512, .. })));
        line.insert(0, b'x');
        assert!(matches!(frame(&line, &s), Err(LineError::TooLong { .. })));
    }
}
