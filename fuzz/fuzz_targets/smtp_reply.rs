//! Fuzzes the reply parser. The first byte chooses the limits and a split
//! point; the rest is what a server sent. Every complete reply renders to
//! bytes that parse back to an equal reply, using all of them; feeding the
//! input in two pieces gives the same replies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smx_proto::{Reply, ReplyLimits, ReplyParser, ReplyProgress};

/// All replies in `pieces`, and whether parsing stopped at an error.
fn parse_all(pieces: &[&[u8]], limits: ReplyLimits) -> (Vec<Reply>, bool) {
    let mut p = ReplyParser::new(limits);
    let mut replies = Vec::new();
    for piece in pieces {
        let mut buf = *piece;
        loop {
            match p.parse(buf) {
                Ok(ReplyProgress::Complete { reply, consumed }) => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    replies.push(reply);
                    buf = &buf[consumed..];
                    if buf.is_empty() {
                        break;
                    }
                }
                Ok(ReplyProgress::Incomplete) => break,
                Err(_) => return (replies, true),
            }
        }
    }
    (replies, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let limits = ReplyLimits {
        max_line: 8 + usize::from(flags & 0x3f) * 8,
        max_lines: 1 + usize::from(flags >> 6) * 4,
    };
    let (replies, _) = parse_all(&[input], limits);
    for reply in &replies {
        let wire = reply.to_bytes();
        let mut p = ReplyParser::new(limits);
        match p.parse(&wire) {
            Ok(ReplyProgress::Complete {
                reply: again,
                consumed,
            }) => {
                assert_eq!(consumed, wire.len());
                assert_eq!(
                    *reply,
                    again,
                    "rendered as {:?}",
                    String::from_utf8_lossy(&wire)
                );
            }
            other => panic!(
                "rendered reply {:?} does not parse: {other:?}",
                String::from_utf8_lossy(&wire)
            ),
        }
    }
    // The split does not matter (up to the first error).
    let cut = usize::from(flags) % (input.len() + 1);
    let (split, _) = parse_all(&[&input[..cut], &input[cut..]], limits);
    let n = split.len().min(replies.len());
    assert_eq!(split[..n], replies[..n]);
});
