//! Netstrings (seed 10.1) and the socket map request/reply format: pure,
//! no I/O.
//!
//! A netstring is `<decimal length>:<bytes>,` — `"hello there"` is
//! `11:hello there,`; there is no CRLF after it. [`decode`] returns
//! [`Decoded::Incomplete`] until a whole netstring is buffered and a
//! [`NetstringError`] for input that can never become one. The length is
//! checked against a limit *before* the payload is awaited, so a peer
//! cannot make us buffer an announced gigabyte. Leading zeros in the length
//! are accepted (some servers send them).
//!
//! A socket map request is the netstring of `mapname SP key`; a reply is
//! the netstring of `STATUS [SP text]`, STATUS one of `OK`, `NOTFOUND`,
//! `TEMP`, `TIMEOUT`, `PERM` ([`parse_reply`]).

/// Most digits accepted in a length (lengths fit in 32 bits).
const MAX_DIGITS: usize = 10;

/// The result of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// More bytes are needed.
    Incomplete,
    /// A whole netstring: its payload and the bytes it took in the input.
    Complete {
        /// The payload.
        payload: &'a [u8],
        /// Bytes of input used, including length, colon and comma.
        consumed: usize,
    },
}

/// Input that is not a netstring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetstringError {
    /// The length is not decimal digits followed by ':'.
    #[error("bad netstring length")]
    BadLength,
    /// The payload is not followed by ','.
    #[error("netstring does not end in ','")]
    MissingComma,
    /// The announced length exceeds the limit.
    #[error("netstring of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// Encodes `payload` as a netstring.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.push(b',');
    out
}

/// Decodes the netstring at the start of `buf`, whose payload may be at
/// most `max` bytes.
pub fn decode(buf: &[u8], max: usize) -> Result<Decoded<'_>, NetstringError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_DIGITS {
        return Err(NetstringError::BadLength);
    }
    if digits == buf.len() {
        return Ok(Decoded::Incomplete);
    }
    if digits == 0 || buf[digits] != b':' {
        return Err(NetstringError::BadLength);
    }
    // A length has no leading zeros ("0:," is the empty netstring, "03:" is
    // not a netstring): one payload has exactly one encoding.
    if digits > 1 && buf[0] == b'0' {
        return Err(NetstringError::BadLength);
    }
    // At most ten ASCII digits: fits in a u64.
    let len = buf[..digits]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let too_long = NetstringError::TooLong { len, max };
    let len = usize::try_from(len).map_err(|_| too_long)?;
    if len > max {
        return Err(too_long);
    }
    let start = digits + 1;
    let end = start + len;
    match buf.get(end) {
        None => Ok(Decoded::Incomplete),
        Some(b',') => Ok(Decoded::Complete {
            payload: &buf[start..end],
            consumed: end + 1,
        }),
        Some(_) => Err(NetstringError::MissingComma),
    }
}

/// The request for `key` in the server's map `mapname`, as a netstring.
pub fn encode_request(mapname: &str, key: &str) -> Vec<u8> {
    encode(format!("{mapname} {key}").as_bytes())
}

/// A socket map server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK value`.
    Found(String),
    /// `NOTFOUND`.
    NotFound,
    /// `TEMP text`: a temporary failure.
    Temp(String),
    /// `TIMEOUT text`: a timeout on the server side.
    Timeout(String),
    /// `PERM text`: a permanent failure.
    Perm(String),
}

/// A reply payload that is not a socket map reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not UTF-8.
    #[error("reply is not UTF-8")]
    NotUtf8,
    /// The status word is not one of OK, NOTFOUND, TEMP, TIMEOUT, PERM.
    #[error("unknown reply status")]
    UnknownStatus,
}

/// Parses a reply payload (`STATUS [SP text]`).
pub fn parse_reply(payload: &[u8]) -> Result<Reply, ReplyError> {
    let text = std::str::from_utf8(payload).map_err(|_| ReplyError::NotUtf8)?;
    let (status, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.to_owned();
    Ok(match status {
        "OK" => Reply::Found(rest),
        "NOTFOUND" => Reply::NotFound,
        "TEMP" => Reply::Temp(rest),
        "TIMEOUT" => Reply::Timeout(rest),
        "PERM" => Reply::Perm(rest),
        _ => return Err(ReplyError::UnknownStatus),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_examples() {
        assert_eq!(encode(b"hello there"), b"11:hello there,");
        let reply = b"31:OK resolved.address@example.com,";
        assert_eq!(
            decode(reply, 100),
            Ok(Decoded::Complete {
                payload: &reply[3..34],
                consumed: reply.len()
            })
        );
        assert_eq!(
            parse_reply(&reply[3..34]),
            Ok(Reply::Found("resolved.address@example.com".into()))
        );
        assert_eq!(parse_reply(b"NOTFOUND"), Ok(Reply::NotFound));
        assert_eq!(parse_reply(b"NOTFOUND "), Ok(Reply::NotFound));
        assert_eq!(
            parse_reply(b"TEMP this text explains that we had a temporary failure"),
            Ok(Reply::Temp(
                "this text explains that we had a temporary failure".into()
            ))
        );
        assert_eq!(parse_reply(b"TIMEOUT"), Ok(Reply::Timeout(String::new())));
        assert_eq!(parse_reply(b"PERM no"), Ok(Reply::Perm("no".into())));
        assert_eq!(parse_reply(b"ok x"), Err(ReplyError::UnknownStatus));
        assert_eq!(parse_reply(b"OK \xff"), Err(ReplyError::NotUtf8));
        assert_eq!(encode_request("aliases", "root"), b"12:aliases root,");
    }

    #[test]
    fn decode_table() {
        let cases: &[(&[u8], Result<Decoded<'_>, NetstringError>)] = &[
            (b"", Ok(Decoded::Incomplete)),
            (b"1", Ok(Decoded::Incomplete)),
            (b"12", Ok(Decoded::Incomplete)),
            (b"3:ab", Ok(Decoded::Incomplete)),
            (b"3:abc", Ok(Decoded::Incomplete)),
            (
                b"0:,",
                Ok(Decoded::Complete {
                    payload: b"",
                    consumed: 3,
                }),
            ),
            (
                b"3:abc,rest",
                Ok(Decoded::Complete {
                    payload: b"abc",
                    consumed: 6,
                }),
            ),
            // "Extra zeros at the front of [len] are prohibited" (djb's
            // netstring specification); found by fuzzing.
            (b"003:abc,rest", Err(NetstringError::BadLength)),
            (b"00:,", Err(NetstringError::BadLength)),
            (b":abc,", Err(NetstringError::BadLength)),
            (b"3abc,", Err(NetstringError::BadLength)),
            (b"-3:abc,", Err(NetstringError::BadLength)),
            (b"12345678901:", Err(NetstringError::BadLength)),
            (b"3:abcd", Err(NetstringError::MissingComma)),
            (b"101:", Err(NetstringError::TooLong { len: 101, max: 100 })),
            (
                b"9999999999:",
                Err(NetstringError::TooLong {
                    len: 9_999_999_999,
                    max: 100,
                }),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                &decode(input, 100),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let enc = encode(&payload);
            prop_assert_eq!(
                decode(&enc, payload.len()),
                Ok(Decoded::Complete { payload: &payload[..], consumed: enc.len() })
            );
            // Every proper prefix is incomplete, never an error.
            for cut in 0..enc.len() {
                prop_assert_eq!(decode(&enc[..cut], payload.len()), Ok(Decoded::Incomplete));
            }
        }

        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..1000) {
            if let Ok(Decoded::Complete { payload, consumed }) = decode(&input, max) {
                prop_assert!(payload.len() <= max);
                prop_assert!(consumed <= input.len());
                // Decode, encode, decode again gives the same payload.
                let again = encode(payload);
                prop_assert_eq!(decode(&again, max), Ok(Decoded::Complete { payload, consumed: again.len() }));
            }
            let _ = parse_reply(&input);
        }
    }
}
