//! xtext, the encoding of ESMTP parameter values that may hold any octet
//! (RFC 3461 section 4: ENVID, ORCPT; RFC 4954 section 5: AUTH=).
//!
//! `xtext = *( xchar / hexchar )`: `xchar` is any US-ASCII character from
//! `!` to `~` except `+` and `=`; `hexchar` is `+` and two upper-case hex
//! digits naming one octet. [`decode`] accepts exactly that, plus, on
//! request, lower-case hex digits (sloppy syntax) and raw UTF-8 characters
//! (RFC 6533 `utf-8-addr-unitext`, used by `ORCPT=utf-8;`). [`encode`]
//! writes the shortest form: only `+`, `=`, space, controls and octets
//! above `~` are hex-encoded, so an encoded value is never longer than any
//! other valid encoding of the same octets.

use std::fmt::Write as _;

/// Why a value is not xtext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XtextError {
    /// A character that is neither `xchar` nor the start of `hexchar`.
    #[error("character not allowed in xtext at offset {offset}")]
    BadChar {
        /// Byte offset in the value.
        offset: usize,
    },
    /// `+` not followed by two (upper-case) hex digits.
    #[error("'+' not followed by two hex digits at offset {offset}")]
    BadHex {
        /// Byte offset of the `+`.
        offset: usize,
    },
}

/// Options of [`decode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Accept lower-case hex digits after `+` (sloppy syntax).
    pub lowercase_hex: bool,
    /// Accept raw non-ASCII UTF-8 characters (RFC 6533 unitext).
    pub utf8: bool,
}

/// Decodes strict xtext (upper-case hex, ASCII only).
pub fn decode(s: &str) -> Result<Vec<u8>, XtextError> {
    decode_with(s, DecodeOptions::default())
}

/// Decodes xtext with options.
pub fn decode_with(s: &str, opts: DecodeOptions) -> Result<Vec<u8>, XtextError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'+' => {
                let hex = |d: Option<&u8>| -> Option<u8> {
                    let d = *d?;
                    match d {
                        b'0'..=b'9' => Some(d - b'0'),
                        b'A'..=b'F' => Some(d - b'A' + 10),
                        b'a'..=b'f' if opts.lowercase_hex => Some(d - b'a' + 10),
                        _ => None,
                    }
                };
                match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(XtextError::BadHex { offset: i }),
                }
                i += 3;
            }
            b'=' => return Err(XtextError::BadChar { offset: i }),
            33..=126 => {
                out.push(c);
                i += 1;
            }
            0x80.. if opts.utf8 => {
                // `s` is a str: non-ASCII bytes come in whole characters.
                out.push(c);
                i += 1;
            }
            _ => return Err(XtextError::BadChar { offset: i }),
        }
    }
    Ok(out)
}

/// Encodes octets as xtext (ASCII only).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    encode_into(bytes, false, &mut out);
    out
}

/// Appends the xtext encoding of `bytes` to `out`; with `keep_utf8`, the
/// non-ASCII characters of a UTF-8 `bytes` are written raw (unitext).
pub fn encode_into(bytes: &[u8], keep_utf8: bool, out: &mut String) {
    if keep_utf8 {
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_ascii() {
                    encode_byte(c as u8, out);
                } else {
                    out.push(c);
                }
            }
            for &b in chunk.invalid() {
                encode_byte(b, out);
            }
        }
    } else {
        for &b in bytes {
            encode_byte(b, out);
        }
    }
}

fn encode_byte(b: u8, out: &mut String) {
    if (33..=126).contains(&b) && b != b'+' && b != b'=' {
        out.push(char::from(b));
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "+{b:02X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let cases: &[(&str, &[u8])] = &[
            ("", b""),
            ("abc", b"abc"),
            ("a+2Bb@c", b"a+b@c"),
            ("+3D+20+0D+0A", b"= \r\n"),
            ("+FF", b"\xff"),
            ("<>", b"<>"),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input).as_deref(), Ok(*want), "{input}");
        }
    }

    #[test]
    fn rejects() {
        let cases: &[(&str, XtextError)] = &[
            ("a=b", XtextError::BadChar { offset: 1 }),
            ("a b", XtextError::BadChar { offset: 1 }),
            ("+2b", XtextError::BadHex { offset: 0 }),
            ("x+2", XtextError::BadHex { offset: 1 }),
            ("+", XtextError::BadHex { offset: 0 }),
            ("+G0", XtextError::BadHex { offset: 0 }),
            ("é", XtextError::BadChar { offset: 0 }),
            ("\u{7f}", XtextError::BadChar { offset: 0 }),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input), Err(*want), "{input}");
        }
    }

    #[test]
    fn options() {
        let lax = DecodeOptions {
            lowercase_hex: true,
            utf8: true,
        };
        assert_eq!(decode_with("a+2bé", lax).unwrap(), "a+é".as_bytes());
        assert_eq!(encode(b"a+b= \xc3\xa9"), "a+2Bb+3D+20+C3+A9");
        let mut s = String::new();
        encode_into("a+é".as_bytes(), true, &mut s);
        assert_eq!(s, "a+2Bé");
    }
}
