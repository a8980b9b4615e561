//! Fuzzes command framing and parsing. The first byte chooses the syntax
//! options, the rest is the receive buffer. Framing never panics and never
//! asks to discard more than the buffer; a command that parses renders to
//! one line (no CR or LF) that parses back to an equal command under the
//! same options; every error has a 5xx reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smx_proto::{Command, Frame, Syntax, frame_line};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let syntax = Syntax {
        strict: flags & 1 == 0,
        allow_source_route: flags & 2 != 0,
        require_domain: flags & 4 == 0,
        max_line: 256 + usize::from(flags >> 3) * 32,
    };
    let limit = syntax.line_limit();
    match frame_line(buf, &syntax) {
        Ok(Frame::Incomplete) => assert!(buf.len() < limit),
        Ok(Frame::Line { line, len }) => {
            assert!(len <= buf.len() && len <= limit && line.len() < len);
            assert!(!line.contains(&b'\r') && !line.contains(&b'\n'));
            check(line, &syntax);
        }
        Err(e) => {
            assert!(e.discard() > 0 && e.discard() <= buf.len());
            assert_eq!(e.reply().code, 500);
        }
    }
    // The whole buffer as one line, whatever it holds.
    check(buf, &syntax);
});

fn check(line: &[u8], syntax: &Syntax) {
    match Command::parse(line, syntax) {
        Ok(cmd) => {
            let rendered = cmd.to_string();
            assert!(
                !rendered.contains(['\r', '\n']),
                "rendered command has a line end: {rendered:?}"
            );
            match Command::parse(rendered.as_bytes(), syntax) {
                Ok(again) => assert_eq!(cmd, again, "rendered as {rendered:?}"),
                Err(e) => panic!("rendered {rendered:?} does not parse: {e:?} (from {cmd:?})"),
            }
            let _ = cmd.needs_smtputf8();
        }
        Err(e) => {
            let reply = e.reply();
            assert!((500..=555).contains(&reply.code), "{reply:?}");
            let wire = reply.to_bytes();
            assert_eq!(wire.iter().filter(|b| **b == b'\n').count(), 1);
        }
    }
}
