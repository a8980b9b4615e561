//! DATA content: the decoder the server runs after `354`, and the encoder
//! the client runs before sending.
//!
//! # Decoding
//!
//! [`DataDecoder::decode`] is fed the bytes after the 354 reply in pieces
//! split anywhere and appends the message content to a caller-provided
//! `Vec`: lines ended by CRLF, kept as CRLF; a leading `.` of a line
//! removed (RFC 5321 4.5.2, transparency); the end is the line `.` alone,
//! i.e. CRLF `.` CRLF, where the first CRLF is the end of the content's last
//! line and belongs to the content. The decoder starts "at the start of a
//! line", since the DATA command line ended in CRLF, so `.` CRLF at once is
//! an empty message. When the end is seen it answers [`DataProgress::Done`]
//! with the number of bytes of that piece it used: whatever follows
//! (pipelined commands, RFC 2920) stays in the caller's buffer.
//!
//! ## Bare CR and bare LF (SMTP smuggling)
//!
//! A CR not followed by LF, and an LF not preceded by CR, are never line
//! ends (RFC 5321 2.3.8). So `\n.\n`, `\r.\r`, `\n.\r\n`, `\r\n.\n` and
//! `\r\n.\r` never end the message, and a dot after a bare line end is
//! content, not a line-start dot. By default ([`BareLineEnds::Reject`]) a
//! message that contains a bare CR or LF anywhere is **rejected**: the
//! decoder keeps reading to the real CRLF.CRLF, so the session stays in step
//! with the client, stops writing content once it has seen one, and ends
//! with [`DataError::BareCr`] or [`DataError::BareLf`], answered 554 5.6.0.
//! Whatever a smuggler put after a fake terminator (`MAIL FROM:...`) is part
//! of the rejected message, never a second transaction. Rejection rather
//! than repair was chosen because a repaired message (bare LF turned into
//! CRLF) would be relayed with different line structure than the client
//! meant, and because no correct client sends bare line ends.
//! [`BareLineEnds::Keep`] instead passes them through as ordinary content
//! bytes (still never line ends), for local delivery where that matters.
//!
//! ## Limits
//!
//! * [`DataOptions::max_size`]: the content (after dot removal, with its
//!   CRLFs) may be at most this many octets. Beyond it the decoder stops
//!   writing content but keeps counting and reading to the end, then
//!   answers [`DataError::TooBig`], 552 5.3.4 (RFC 1870; the client must
//!   not see the 552 before its dot).
//! * [`DataOptions::max_line`]: off by default; when set, a content line
//!   longer than this many octets including CRLF (RFC 5321 4.5.3.1.6 says
//!   1000) is [`DataError::LineTooLong`], 554 5.6.0.
//!
//! The first problem in the stream is the one reported (limits are
//! checked per byte, so the answer and the content written before it never
//! depend on how the input was split); [`DataDecoder::size`] is the whole
//! content's size either way (for logs).
//!
//! The common case is a long run of bytes without CR or LF: it is found
//! eight bytes at a time and copied with one `extend_from_slice`.
//!
//! # Encoding
//!
//! [`DataEncoder`] dot-stuffs content (a `.` at the start of a line, i.e.
//! after CRLF, is doubled) and [`DataEncoder::finish`] writes the
//! terminator: `.` CRLF if the content was empty or ended in CRLF, else
//! CRLF `.` CRLF (then the receiver's content has that CRLF added).

use crate::reply::{EnhancedCode, Reply};

/// What to do with a bare CR or bare LF in the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareLineEnds {
    /// Reject the message (554 5.6.0); the default.
    #[default]
    Reject,
    /// Keep the byte as content (it is still not a line end).
    Keep,
}

/// Limits and policy of a [`DataDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOptions {
    /// Largest content in octets; `None`: no limit.
    pub max_size: Option<u64>,
    /// Longest content line in octets including CRLF; `None`: no limit.
    pub max_line: Option<usize>,
    /// Bare CR / bare LF policy.
    pub bare_line_ends: BareLineEnds,
}

/// Why a message was not accepted. The decoder reads to the terminator
/// anyway; the server answers with [`DataError::reply`] after the dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// A CR not followed by LF.
    #[error("message contains a bare CR (at byte {offset} of the DATA stream)")]
    BareCr {
        /// Offset of the CR in the bytes after the 354 reply.
        offset: u64,
    },
    /// An LF not preceded by CR.
    #[error("message contains a bare LF (at byte {offset} of the DATA stream)")]
    BareLf {
        /// Offset of the LF in the bytes after the 354 reply.
        offset: u64,
    },
    /// The content is larger than [`DataOptions::max_size`].
    #[error("message size {size} exceeds fixed maximum message size {limit}")]
    TooBig {
        /// The whole content's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A line is longer than [`DataOptions::max_line`].
    #[error("message has a line longer than {limit} octets")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
}

impl DataError {
    /// The reply the server sends after the terminating dot.
    pub fn reply(&self) -> Reply {
        match self {
            DataError::BareCr { .. } | DataError::BareLf { .. } => Reply::new(
                554,
                Some(EnhancedCode::new(5, 6, 0)),
                "Message contains bare CR or LF, which RFC 5321 2.3.8 does not allow",
            ),
            DataError::TooBig { .. } => Reply::new(
                552,
                Some(EnhancedCode::new(5, 3, 4)),
                "Message size exceeds fixed maximum message size",
            ),
            DataError::LineTooLong { limit } => Reply::new(
                554,
                Some(EnhancedCode::new(5, 6, 0)),
                format!("Message has a line longer than {limit} octets"),
            ),
        }
    }
}

/// What [`DataDecoder::decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// All input was used and the end has not been seen: feed more.
    Incomplete,
    /// The end (CRLF.CRLF) was seen.
    Done {
        /// Bytes of this input that belong to the message, up to and
        /// including the final LF; the rest is the next command.
        consumed: usize,
        /// The content size, or why the message is rejected.
        result: Result<u64, DataError>,
    },
}

/// Where the decoder is in the line structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the beginning).
    LineStart,
    /// Inside a line.
    Middle,
    /// After a CR inside a line (not yet written).
    Cr,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
    /// The terminator was seen.
    Done,
}

/// The problem kinds, before the final size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    BareCr(u64),
    BareLf(u64),
    TooBig(u64),
    LineTooLong(usize),
}

/// The DATA decoder; see the module doc.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    opts: DataOptions,
    state: State,
    /// Content octets so far (also those not written after a problem).
    size: u64,
    /// Octets of the current content line, CRLF included.
    line_len: usize,
    /// Input octets used so far.
    offset: u64,
    problem: Option<Problem>,
    /// The result, once done.
    result: Option<Result<u64, DataError>>,
}

impl DataDecoder {
    /// A decoder at the start of the content.
    pub fn new(opts: DataOptions) -> Self {
        DataDecoder {
            opts,
            state: State::LineStart,
            size: 0,
            line_len: 0,
            offset: 0,
            problem: None,
            result: None,
        }
    }

    /// Starts over for a new message with the same options.
    pub fn reset(&mut self) {
        *self = DataDecoder::new(self.opts);
    }

    /// Content octets so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Input octets used so far (the DATA stream, stuffing and terminator
    /// included).
    pub fn consumed(&self) -> u64 {
        self.offset
    }

    /// Whether the message is already known to be rejected (the server may
    /// stop storing it; the decoder has stopped writing content).
    pub fn is_rejected(&self) -> bool {
        self.problem.is_some()
    }

    /// Whether the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, appending content to `out`; see the module doc.
    /// After [`DataProgress::Done`], further calls answer `Done` again with
    /// `consumed: 0`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        if let Some(result) = self.result {
            return DataProgress::Done {
                consumed: 0,
                result,
            };
        }
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Middle => {
                    let rest = &input[i..];
                    match find_cr_or_lf(rest) {
                        None => {
                            self.emit(rest, out);
                            i = input.len();
                        }
                        Some(p) => {
                            self.emit(&rest[..p], out);
                            i += p;
                            if rest[p] == b'\r' {
                                self.state = State::Cr;
                            } else {
                                // An LF inside a line: bare.
                                self.bare(Problem::BareLf(self.offset + i as u64));
                                self.emit(b"\n", out);
                            }
                            i += 1;
                        }
                    }
                }
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Middle;
                    }
                }
                State::Dot => {
                    if input[i] == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                    } else {
                        // ".x": the leading dot is removed (RFC 5321
                        // 4.5.2); x is ordinary content.
                        self.state = State::Middle;
                    }
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        i += 1;
                        return self.finish(i);
                    }
                    // "." CR x: the dot is removed, the CR is bare; x is
                    // read again inside the line.
                    self.bare(Problem::BareCr((self.offset + i as u64).saturating_sub(1)));
                    self.emit(b"\r", out);
                    self.state = State::Middle;
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        self.emit(b"\r\n", out);
                        self.end_line();
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        // The CR ended the previous input or is at i-1.
                        self.bare(Problem::BareCr((self.offset + i as u64).saturating_sub(1)));
                        self.emit(b"\r", out);
                        self.state = State::Middle;
                    }
                }
                State::Done => break,
            }
        }
        self.offset += input.len() as u64;
        DataProgress::Incomplete
    }

    fn finish(&mut self, consumed: usize) -> DataProgress {
        self.offset += consumed as u64;
        self.state = State::Done;
        let result = match self.problem {
            None => Ok(self.size),
            Some(Problem::BareCr(offset)) => Err(DataError::BareCr { offset }),
            Some(Problem::BareLf(offset)) => Err(DataError::BareLf { offset }),
            Some(Problem::TooBig(limit)) => Err(DataError::TooBig {
                size: self.size,
                limit,
            }),
            Some(Problem::LineTooLong(limit)) => Err(DataError::LineTooLong { limit }),
        };
        self.result = Some(result);
        DataProgress::Done { consumed, result }
    }

    fn bare(&mut self, p: Problem) {
        if self.opts.bare_line_ends == BareLineEnds::Reject && self.problem.is_none() {
            self.problem = Some(p);
        }
    }

    /// Counts and, unless the message is rejected, writes content. A limit
    /// is checked per byte, not per run, so the problem reported and the
    /// content written before it do not depend on how the input was split:
    /// the first byte beyond a limit is the problem's position (size before
    /// line length at the same byte), and only the bytes before it are
    /// written.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let n = bytes.len();
        if self.problem.is_none() {
            let mut first: Option<(usize, Problem)> = None;
            if let Some(limit) = self.opts.max_size {
                let room = limit.saturating_sub(self.size);
                if (n as u64) > room {
                    // room < n, so it fits in usize.
                    first = Some((room as usize, Problem::TooBig(limit)));
                }
            }
            if let Some(limit) = self.opts.max_line {
                let room = limit.saturating_sub(self.line_len);
                if n > room && first.is_none_or(|(at, _)| room < at) {
                    first = Some((room, Problem::LineTooLong(limit)));
                }
            }
            let keep = match first {
                Some((at, problem)) => {
                    self.problem = Some(problem);
                    at
                }
                None => n,
            };
            out.extend_from_slice(&bytes[..keep]);
        }
        self.size += n as u64;
        self.line_len = self.line_len.saturating_add(n);
    }

    fn end_line(&mut self) {
        self.line_len = 0;
    }
}

/// Position of the first CR or LF: eight bytes at a time (SWAR), then
/// byte by byte within the word that has one.
fn find_cr_or_lf(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const CR: u64 = LO * b'\r' as u64;
    const LF: u64 = LO * b'\n' as u64;
    let has_zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        if has_zero(w ^ CR) | has_zero(w ^ LF) != 0
            && let Some(p) = chunk.iter().position(|&b| b == b'\r' || b == b'\n')
        {
            return Some(base + p);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|p| base + p)
}

/// Dot-stuffing encoder for sending content; see the module doc.
#[derive(Debug, Clone)]
pub struct DataEncoder {
    /// At the start of a line (after CRLF, or at the beginning).
    at_line_start: bool,
    /// The last byte written was a CR.
    after_cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder::new()
    }
}

impl DataEncoder {
    /// An encoder at the start of the content.
    pub fn new() -> Self {
        DataEncoder {
            at_line_start: true,
            after_cr: false,
        }
    }

    /// Appends the stuffed form of `content` to `out`.
    pub fn encode(&mut self, content: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < content.len() {
            if self.at_line_start && content[i] == b'.' {
                out.push(b'.');
            }
            self.at_line_start = false;
            // Copy up to and including the next LF.
            let rest = &content[i..];
            match rest.iter().position(|&b| b == b'\n') {
                None => {
                    out.extend_from_slice(rest);
                    self.after_cr = rest.last() == Some(&b'\r');
                    i = content.len();
                }
                Some(p) => {
                    out.extend_from_slice(&rest[..=p]);
                    let cr_before = if p == 0 {
                        self.after_cr
                    } else {
                        rest[p - 1] == b'\r'
                    };
                    self.at_line_start = cr_before;
                    self.after_cr = false;
                    i += p + 1;
                }
            }
        }
    }

    /// Appends the terminator.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.at_line_start {
            out.extend_from_slice(b".\r\n");
        } else {
            out.extend_from_slice(b"\r\n.\r\n");
        }
    }

    /// The whole stuffed form of `content`, terminator included.
    pub fn stuff(content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(content.len() + 5);
        let mut e = DataEncoder::new();
        e.encode(content, &mut out);
        e.finish(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], opts: DataOptions) -> (Vec<u8>, DataProgress) {
        let mut d = DataDecoder::new(opts);
        let mut out = Vec::new();
        let p = d.decode(input, &mut out);
        (out, p)
    }

    #[test]
    fn simple_message_and_pipelined_rest() {
        let input = b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (out, p) = decode_all(input, DataOptions::default());
        assert_eq!(out, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(
            p,
            DataProgress::Done {
                consumed: input.len() - 6,
                result: Ok(20)
            }
        );
    }

    #[test]
    fn empty_message_and_dot_removal() {
        let (out, p) = decode_all(b".\r\n", DataOptions::default());
        assert!(out.is_empty());
        assert_eq!(
            p,
            DataProgress::Done {
                consumed: 3,
                result: Ok(0)
            }
        );
        let (out, _) = decode_all(b"..\r\n.x\r\n...\r\n.\r\n", DataOptions::default());
        assert_eq!(out, b".\r\nx\r\n..\r\n");
    }

    #[test]
    fn incomplete_then_done_again() {
        let mut d = DataDecoder::new(DataOptions::default());
        let mut out = Vec::new();
        assert_eq!(d.decode(b"a\r\n.", &mut out), DataProgress::Incomplete);
        assert_eq!(d.decode(b"\r", &mut out), DataProgress::Incomplete);
        assert_eq!(
            d.decode(b"\nX", &mut out),
            DataProgress::Done {
                consumed: 1,
                result: Ok(3)
            }
        );
        assert_eq!(d.consumed(), 6);
        assert!(d.is_done());
        assert_eq!(
            d.decode(b"more", &mut out),
            DataProgress::Done {
                consumed: 0,
                result: Ok(3)
            }
        );
        assert_eq!(out, b"a\r\n");
    }

    #[test]
    fn size_limit_boundary() {
        let opts = DataOptions {
            max_size: Some(6),
            ..DataOptions::default()
        };
        let (out, p) = decode_all(b"abcd\r\n.\r\n", opts);
        assert_eq!(out, b"abcd\r\n");
        assert!(matches!(p, DataProgress::Done { result: Ok(6), .. }));
        let (_, p) = decode_all(b"abcde\r\nmore\r\n.\r\nNOOP", opts);
        assert_eq!(
            p,
            DataProgress::Done {
                consumed: 16,
                result: Err(DataError::TooBig { size: 13, limit: 6 })
            }
        );
    }

    #[test]
    fn line_limit_boundary() {
        let opts = DataOptions {
            max_line: Some(6),
            ..DataOptions::default()
        };
        let (_, p) = decode_all(b"abcd\r\n.\r\n", opts);
        assert!(matches!(p, DataProgress::Done { result: Ok(6), .. }));
        let (_, p) = decode_all(b"ab\r\nabcde\r\n.\r\n", opts);
        assert!(matches!(
            p,
            DataProgress::Done {
                result: Err(DataError::LineTooLong { limit: 6 }),
                ..
            }
        ));
        // The stuffed dot does not count.
        let (_, p) = decode_all(b"..bcd\r\n.\r\n", opts);
        assert!(matches!(p, DataProgress::Done { result: Ok(6), .. }));
    }

    /// Regression (fuzz, smtp_data): with both limits set, the problem
    /// reported depended on whether a long run came in one piece or many.
    #[test]
    fn limits_do_not_depend_on_the_split() {
        let opts = DataOptions {
            max_size: Some(64),
            max_line: Some(24),
            ..DataOptions::default()
        };
        let mut input = vec![b'x'; 70];
        input.extend_from_slice(b"\r\n.\r\n");
        let want = DataProgress::Done {
            consumed: 75,
            result: Err(DataError::LineTooLong { limit: 24 }),
        };
        let (out, p) = decode_all(&input, opts);
        assert_eq!(p, want);
        assert_eq!(out, vec![b'x'; 24]);
        let mut d = DataDecoder::new(opts);
        let mut out = Vec::new();
        let mut last = DataProgress::Incomplete;
        for (i, b) in input.chunks(1).enumerate() {
            last = d.decode(b, &mut out);
            if i < input.len() - 1 {
                assert_eq!(last, DataProgress::Incomplete);
            }
        }
        assert_eq!(
            last,
            DataProgress::Done {
                consumed: 1,
                result: Err(DataError::LineTooLong { limit: 24 })
            }
        );
        assert_eq!(out, vec![b'x'; 24]);
        // At the same byte, size wins.
        let opts = DataOptions {
            max_size: Some(24),
            max_line: Some(24),
            ..DataOptions::default()
        };
        let (out, p) = decode_all(&input, opts);
        assert!(matches!(
            p,
            DataProgress::Done {
                result: Err(DataError::TooBig {
                    size: 72,
                    limit: 24
                }),
                ..
            }
        ));
        assert_eq!(out.len(), 24);
    }

    #[test]
    fn keep_policy_passes_bare_line_ends() {
        let opts = DataOptions {
            bare_line_ends: BareLineEnds::Keep,
            ..DataOptions::default()
        };
        let (out, p) = decode_all(b"a\nb\rc\r\n.\n.\r\n.\r\n", opts);
        assert_eq!(out, b"a\nb\rc\r\n\n.\r\n");
        assert!(matches!(p, DataProgress::Done { result: Ok(_), .. }));
    }

    #[test]
    fn swar_search_matches_naive() {
        let mut hay = vec![b'a'; 40];
        for pos in 0..40 {
            for c in [b'\r', b'\n'] {
                hay.fill(b'a');
                hay[pos] = c;
                assert_eq!(find_cr_or_lf(&hay), Some(pos));
                assert_eq!(find_cr_or_lf(&hay[..pos]), None);
            }
        }
        // Bytes near CR/LF values (0x0c, 0x0e, 0x8d) do not match.
        let near = [0x0c, 0x0e, 0x0b, 0x09, 0x8d, 0x8a, 0xff, 0x00, 0x01];
        assert_eq!(find_cr_or_lf(&near.repeat(5)), None);
    }

    #[test]
    fn encoder() {
        assert_eq!(DataEncoder::stuff(b""), b".\r\n");
        assert_eq!(DataEncoder::stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(DataEncoder::stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(DataEncoder::stuff(b".a\r\n.\r\n"), b"..a\r\n..\r\n.\r\n");
        assert_eq!(DataEncoder::stuff(b"a\n.b"), b"a\n.b\r\n.\r\n");
        // Split across calls, CR and LF in different pieces.
        let mut e = DataEncoder::new();
        let mut out = Vec::new();
        e.encode(b"a\r", &mut out);
        e.encode(b"\n", &mut out);
        e.encode(b".", &mut out);
        e.finish(&mut out);
        assert_eq!(out, b"a\r\n..\r\n.\r\n");
    }
}
