//! Encoding of field values for the log line format (seed 10.3).
//!
//! Log lines are `name=value` fields separated by `, `, so a value must not
//! contain a comma; and since values are often untrusted text from peers
//! (SMTP replies, HELO names, addresses), they must not contain control
//! characters that could forge a line or confuse a terminal. Every byte that
//! is not printable ASCII (below 0x20, 0x7F, and each byte of a non-ASCII
//! UTF-8 sequence), every `,` and every `%` is written as `%XX` with two
//! upper-case hex digits. The result is always printable ASCII, and the
//! original bytes can be recovered exactly.
//!
//! Encoding cannot fail.

use std::borrow::Cow;

/// Encodes `value` for use as a field value; borrows when nothing needs
/// escaping.
///
/// ```
/// assert_eq!(
///     smx_log::encode_value("550 5.7.1 no, not now, 99% usage"),
///     "550 5.7.1 no%2C not now%2C 99%25 usage"
/// );
/// ```
pub fn encode_value(value: &str) -> Cow<'_, str> {
    if !value.bytes().any(needs_escape) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for b in value.bytes() {
        if needs_escape(b) {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xF));
        } else {
            out.push(char::from(b));
        }
    }
    Cow::Owned(out)
}

fn needs_escape(b: u8) -> bool {
    !(0x20..0x7F).contains(&b) || b == b',' || b == b'%'
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0xF)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Inverse of `encode_value`, as a log analyser would write it.
    fn decode(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    #[test]
    fn table() {
        let cases = [
            ("", ""),
            ("plain text", "plain text"),
            (
                "550 5.7.1 no, not now, 99% usage",
                "550 5.7.1 no%2C not now%2C 99%25 usage",
            ),
            ("a\r\nb", "a%0D%0Ab"),
            ("tab\there", "tab%09here"),
            ("del\u{7f}", "del%7F"),
            ("caf\u{e9}", "caf%C3%A9"),
            ("<user@example.org>", "<user@example.org>"),
            ("%2C", "%252C"),
            ("a=b; c", "a=b; c"),
        ];
        for (input, want) in cases {
            assert_eq!(encode_value(input), want, "input {input:?}");
        }
    }

    #[test]
    fn borrows_when_clean() {
        assert!(matches!(encode_value("clean"), Cow::Borrowed(_)));
        assert!(matches!(encode_value("dirty,"), Cow::Owned(_)));
    }

    proptest! {
        #[test]
        fn output_is_safe_and_reversible(s in any::<String>()) {
            let enc = encode_value(&s);
            prop_assert!(enc.bytes().all(|b| (0x20..0x7F).contains(&b) && b != b','));
            prop_assert_eq!(decode(&enc), Some(s.clone()));
        }

        #[test]
        fn percent_only_starts_escapes(s in "[ -~\\t\\n\u{80}-\u{10ffff}]{0,40}") {
            let enc = encode_value(&s);
            let b = enc.as_bytes();
            for (i, _) in b.iter().enumerate().filter(|&(_, &c)| c == b'%') {
                prop_assert!(i + 2 < b.len());
                prop_assert!(b[i + 1].is_ascii_hexdigit() && !b[i + 1].is_ascii_lowercase());
                prop_assert!(b[i + 2].is_ascii_hexdigit() && !b[i + 2].is_ascii_lowercase());
            }
        }
    }
}
