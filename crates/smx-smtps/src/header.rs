//! A streaming scanner of the message header, run over the content while
//! it arrives (after dot removal for DATA, as is for BDAT).
//!
//! It counts `Received:` fields (the hop count of seed 3.10 item 20,
//! `max_hops`: a message that has passed through more relays than that is
//! probably looping) and keeps the first `Message-ID:` field's value for the
//! log line of the transaction (seed 10.3, `msgid=`).
//!
//! The header ends at the first empty line (RFC 5322 2.1); lines are ended
//! by LF (the CR before it, if any, is ignored, so both DATA content, which
//! always has CRLF, and BINARYMIME content work). Only the start of each line
//! is looked at: the field name is matched case-insensitively on at most
//! [`NAME_PREFIX`] octets, and the Message-ID value is kept up to
//! [`MAX_MSGID`] octets of its first line (continuation lines are not
//! joined). Memory is constant whatever the input; the scanner never
//! fails. A body that starts without an empty line (a message with no
//! header) is scanned as header until an empty line, as RFC 5322 would.

/// Octets of a line start kept to recognise a field name.
pub const NAME_PREFIX: usize = 12;
/// Longest Message-ID value kept.
pub const MAX_MSGID: usize = 256;

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct HeaderScanner {
    /// The header has ended (an empty line was seen).
    done: bool,
    /// Octets of the current line seen so far (saturating).
    line_len: usize,
    /// The first octets of the current line, lower-cased.
    prefix: Vec<u8>,
    /// The current line is a Message-ID field being captured.
    capturing: bool,
    received: u32,
    msgid: Option<Vec<u8>>,
}

impl HeaderScanner {
    /// A scanner at the start of a message.
    pub fn new() -> Self {
        HeaderScanner::default()
    }

    /// Scans the next piece of content.
    pub fn feed(&mut self, mut input: &[u8]) {
        while !self.done && !input.is_empty() {
            let (line_part, rest, ended) = match input.iter().position(|&b| b == b'\n') {
                Some(p) => (&input[..p], &input[p + 1..], true),
                None => (input, &input[input.len()..], false),
            };
            self.take(line_part);
            if ended {
                self.end_line();
            }
            input = rest;
        }
    }

    fn take(&mut self, part: &[u8]) {
        // The empty-line test ignores one CR: remember real octets only.
        let counted = part.iter().filter(|&&b| b != b'\r').count();
        self.line_len = self.line_len.saturating_add(counted);
        for &b in part {
            if self.prefix.len() < NAME_PREFIX {
                self.prefix.push(b.to_ascii_lowercase());
                if self.prefix == b"message-id:" && self.msgid.is_none() {
                    self.capturing = true;
                    self.msgid = Some(Vec::new());
                    continue;
                }
            }
            if self.capturing
                && let Some(v) = self.msgid.as_mut()
                && v.len() < MAX_MSGID
                && b != b'\r'
            {
                v.push(b);
            }
        }
    }

    fn end_line(&mut self) {
        if self.line_len == 0 {
            self.done = true;
        } else if self.prefix.starts_with(b"received:") {
            self.received = self.received.saturating_add(1);
        }
        if self.capturing {
            self.capturing = false;
            // Keep only the first Message-ID field.
            if self.msgid.as_ref().is_some_and(|v| v.is_empty()) {
                self.msgid = None;
            }
        }
        self.line_len = 0;
        self.prefix.clear();
    }

    /// `Received:` fields seen so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The first Message-ID field's value, trimmed, if there was one.
    pub fn message_id(&self) -> Option<String> {
        let v = self.msgid.as_ref()?;
        let s = String::from_utf8_lossy(v);
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    /// Whether the end of the header has been seen.
    pub fn header_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(input: &[u8]) -> HeaderScanner {
        let mut s = HeaderScanner::new();
        s.feed(input);
        s
    }

    #[test]
    fn counts_received_in_header_only() {
        let m = b"Received: from a\r\n\tby b\r\nRECEIVED: x\r\nSubject: Received: no\r\n\r\nReceived: body\r\n";
        let s = scan(m);
        assert_eq!(s.received(), 2);
        assert!(s.header_done());
    }

    #[test]
    fn message_id_first_only() {
        let s = scan(b"Message-Id: <a@b>\r\nMessage-ID: <c@d>\r\n\r\n");
        assert_eq!(s.message_id().as_deref(), Some("<a@b>"));
        let s = scan(b"Subject: x\r\n\r\nMessage-ID: <in@body>\r\n");
        assert_eq!(s.message_id(), None);
    }

    #[test]
    fn message_id_bounded() {
        let mut m = b"Message-ID: <".to_vec();
        m.extend(std::iter::repeat_n(b'x', 10_000));
        m.extend_from_slice(b">\r\n\r\n");
        let s = scan(&m);
        assert_eq!(s.message_id().map(|v| v.len()), Some(MAX_MSGID - 1));
    }

    #[test]
    fn lf_only_lines_work() {
        let s = scan(b"Received: a\nReceived: b\n\nReceived: c\n");
        assert_eq!(s.received(), 2);
    }

    proptest! {
        /// The result never depends on how the input is split.
        #[test]
        fn split_independent(body in proptest::collection::vec(
            prop_oneof![Just(b"Received: x\r\n".to_vec()), Just(b"Message-ID: <m@x>\r\n".to_vec()),
                        Just(b"\r\n".to_vec()), Just(b"a".to_vec()), Just(b"\n".to_vec()), Just(b"\r".to_vec())], 0..40),
            cut in 0usize..400) {
            let m: Vec<u8> = body.concat();
            let whole = scan(&m);
            let cut = cut.min(m.len());
            let mut s = HeaderScanner::new();
            s.feed(&m[..cut]);
            s.feed(&m[cut..]);
            prop_assert_eq!(s.received(), whole.received());
            prop_assert_eq!(s.message_id(), whole.message_id());
            prop_assert_eq!(s.header_done(), whole.header_done());
        }
    }
}
