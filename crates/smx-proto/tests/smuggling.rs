//! SMTP smuggling: fake end-of-data sequences built from bare CR or bare LF
//! never end the message, whatever the chunk boundaries; what follows them
//! is part of the (rejected) message, never a second transaction. Only the
//! real CRLF.CRLF ends it.

use smx_proto::{
    BareLineEnds, Command, DataDecoder, DataError, DataOptions, DataProgress, Frame, Syntax,
    frame_line,
};

/// The fake terminators of the smuggling papers, and where (relative to
/// the start of the sequence) the first bare CR or LF is.
const FAKES: &[(&[u8], usize, bool)] = &[
    // (sequence, offset of the bare byte, is it a CR)
    (b"\n.\n", 0, false),
    (b"\r.\r", 0, true),
    (b"\n.\r\n", 0, false),
    (b"\r\n.\n", 3, false),
    (b"\r\n.\r", 3, true),
    (b"\r\n.\r\r\n", 3, true),
    (b"\r.\r\n", 0, true),
    (b"\n.\r", 0, false),
];

const SMUGGLED: &[u8] = b"MAIL FROM:<x@y>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nFrom: ceo@example.org\r\n\r\nwire money\r\n";

struct Case {
    /// The DATA stream (after 354) including the real terminator.
    stream: Vec<u8>,
    /// Where the real message ends (after the real CRLF.CRLF).
    end: usize,
    /// Offset of the first bare CR/LF.
    bare_at: u64,
    bare_cr: bool,
}

fn case(fake: &[u8], bare_offset: usize, bare_cr: bool) -> Case {
    let mut stream = b"Subject: hello\r\n\r\nhello".to_vec();
    let bare_at = (stream.len() + bare_offset) as u64;
    stream.extend_from_slice(fake);
    stream.extend_from_slice(SMUGGLED);
    stream.extend_from_slice(b"\r\n.\r\n");
    let end = stream.len();
    stream.extend_from_slice(b"QUIT\r\n");
    Case {
        stream,
        end,
        bare_at,
        bare_cr,
    }
}

/// Feeds `pieces` in order; returns the content, the total consumed and
/// the result, and checks the decoder never finishes before `end`.
fn feed(pieces: &[&[u8]], opts: DataOptions) -> (Vec<u8>, usize, Result<u64, DataError>) {
    let mut d = DataDecoder::new(opts);
    let mut out = Vec::new();
    let mut offset = 0;
    for piece in pieces {
        match d.decode(piece, &mut out) {
            DataProgress::Incomplete => offset += piece.len(),
            DataProgress::Done { consumed, result } => return (out, offset + consumed, result),
        }
    }
    panic!("message never ended");
}

fn want_error(c: &Case) -> DataError {
    if c.bare_cr {
        DataError::BareCr { offset: c.bare_at }
    } else {
        DataError::BareLf { offset: c.bare_at }
    }
}

#[test]
fn fake_terminators_never_end_the_message() {
    for (fake, off, cr) in FAKES {
        let c = case(fake, *off, *cr);
        let (out, consumed, result) = feed(&[&c.stream], DataOptions::default());
        assert_eq!(consumed, c.end, "{fake:?}");
        assert_eq!(result, Err(want_error(&c)), "{fake:?}");
        // Content stops at the first bare line end: nothing smuggled is
        // ever handed on.
        assert!(!out.windows(4).any(|w| w == b"MAIL"), "{fake:?}");
        let e = result.unwrap_err();
        assert_eq!(e.reply().code, 554);
        assert_eq!(e.reply().enhanced.unwrap().to_string(), "5.6.0");
    }
}

#[test]
fn fake_terminators_split_at_every_position() {
    for (fake, off, cr) in FAKES {
        let c = case(fake, *off, *cr);
        let s = &c.stream;
        for i in 0..=s.len() {
            let (_, consumed, result) = feed(&[&s[..i], &s[i..]], DataOptions::default());
            assert_eq!(consumed, c.end, "{fake:?} split at {i}");
            assert_eq!(result, Err(want_error(&c)), "{fake:?} split at {i}");
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        let (_, consumed, result) = feed(&bytes, DataOptions::default());
        assert_eq!(consumed, c.end);
        assert_eq!(result, Err(want_error(&c)));
        // Three pieces around the fake sequence.
        let at = c.bare_at as usize;
        for a in at.saturating_sub(3)..at + 4 {
            for b in a..at + 6 {
                let (_, consumed, _) = feed(&[&s[..a], &s[a..b], &s[b..]], DataOptions::default());
                assert_eq!(consumed, c.end, "{fake:?} split at {a},{b}");
            }
        }
    }
}

#[test]
fn with_keep_policy_the_smuggled_text_is_content() {
    let opts = DataOptions {
        bare_line_ends: BareLineEnds::Keep,
        ..DataOptions::default()
    };
    for (fake, off, cr) in FAKES {
        let c = case(fake, *off, *cr);
        let (out, consumed, result) = feed(&[&c.stream], opts);
        assert_eq!(consumed, c.end);
        assert!(result.is_ok());
        assert!(out.windows(15).any(|w| w == b"MAIL FROM:<x@y>"), "{fake:?}");
        assert!(out.ends_with(b"wire money\r\n\r\n"));
    }
}

/// A whole pipelined session through the pure pieces, the way smtps will
/// drive them: frame and parse commands, hand DATA to the decoder, go back
/// to commands with what the decoder left. Returns the commands seen.
fn session(input: &[u8]) -> (Vec<Command>, Vec<Result<u64, DataError>>) {
    let syntax = Syntax::STRICT;
    let mut buf = input;
    let mut commands = Vec::new();
    let mut messages = Vec::new();
    while !buf.is_empty() {
        let Ok(Frame::Line { line, len }) = frame_line(buf, &syntax) else {
            panic!("bad framing at {:?}", String::from_utf8_lossy(buf));
        };
        let cmd = Command::parse(line, &syntax).expect("valid command");
        buf = &buf[len..];
        let is_data = cmd == Command::Data;
        commands.push(cmd);
        if is_data {
            let mut d = DataDecoder::new(DataOptions::default());
            let mut out = Vec::new();
            match d.decode(buf, &mut out) {
                DataProgress::Done { consumed, result } => {
                    messages.push(result);
                    buf = &buf[consumed..];
                }
                DataProgress::Incomplete => panic!("message never ended"),
            }
        }
    }
    (commands, messages)
}

#[test]
fn no_second_transaction_in_a_pipelined_session() {
    for (fake, off, cr) in FAKES {
        let c = case(fake, *off, *cr);
        let mut input =
            b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                .to_vec();
        input.extend_from_slice(&c.stream);
        let (commands, messages) = session(&input);
        let verbs: Vec<&str> = commands.iter().map(|c| c.verb().as_str()).collect();
        assert_eq!(verbs, ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"], "{fake:?}");
        assert_eq!(messages.len(), 1);
        assert!(messages[0].is_err(), "{fake:?}");
    }
}

#[test]
fn honest_message_is_accepted_in_the_same_session() {
    let input = b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n\r\n..leading dot\r\n.\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n.\r\nQUIT\r\n";
    let (commands, messages) = session(input);
    let verbs: Vec<&str> = commands.iter().map(|c| c.verb().as_str()).collect();
    assert_eq!(
        verbs,
        [
            "EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA", "QUIT"
        ]
    );
    assert_eq!(messages, [Ok(28), Ok(0)]);
}

#[test]
fn stuffed_dot_lines_do_not_end_the_message() {
    for body in [
        &b"\r\n..\r\n"[..],
        b"\r\n. \r\n",
        b"\r\n.x\r\n",
        b"\r\n...\r\n",
    ] {
        let mut s = b"a".to_vec();
        s.extend_from_slice(body);
        let before = s.len();
        s.extend_from_slice(b".\r\n");
        let (_, consumed, result) = feed(&[&s], DataOptions::default());
        assert_eq!(consumed, before + 3, "{body:?}");
        assert!(result.is_ok());
    }
}
