//! Envelope data shared by IBDB (the incoming log) and DEFEDB (the deferred
//! database): what is known about a transaction and its recipients.
//!
//! The store treats addresses and ESMTP parameters as opaque text; smx-proto
//! parses them. The limits below bound what the store accepts and what a
//! reader allocates when it decodes a record from disk.
//!
//! # Binary encoding (used inside IBDB records and DEFEDB values)
//!
//! Integers are big-endian. A string is a `u32` byte length followed by
//! UTF-8 bytes; the length must not exceed the field's limit. Each record
//! type documents its field order in the module that stores it; the helpers
//! [`Encoder`] and [`Decoder`] implement these primitives once.

use crate::id::{RecipientId, TransactionId};

/// Longest address (reverse or forward path without brackets) accepted.
/// RFC 5321 allows 256 octets for a path; SMTPUTF8 and source routes can be
/// longer, so the store is generous but bounded.
pub const MAX_ADDRESS: usize = 4096;
/// Longest ESMTP parameter string of MAIL or RCPT.
pub const MAX_PARAMS: usize = 8192;
/// Longest SMTP reply text kept (multi-line replies joined by CRLF).
pub const MAX_REPLY: usize = 8192;
/// Longest host name or address text kept with a reply.
pub const MAX_HOST: usize = 1024;

/// A transaction as accepted by smtps (MAIL FROM and the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The SMTP server transaction id; also the CDB file name.
    pub id: TransactionId,
    /// The reverse path without angle brackets; empty for `<>`.
    pub sender: String,
    /// The ESMTP parameters of MAIL FROM, as received.
    pub params: String,
    /// Size of the content in CDB, in bytes.
    pub size: u64,
    /// Arrival time, microseconds since the Unix epoch.
    pub arrival_us: u64,
    /// Number of recipients (each follows as a [`Recipient`]).
    pub nrcpts: u32,
}

/// One recipient of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The recipient id: transaction id and index.
    pub id: RecipientId,
    /// The forward path without angle brackets.
    pub address: String,
    /// The ESMTP parameters of RCPT TO (NOTIFY, ORCPT), as received.
    pub params: String,
}

/// Why a field could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A string is longer than its limit.
    #[error("{field} is {len} bytes, more than the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The data ends inside a field.
    #[error("data ends inside {field}")]
    Truncated {
        /// The field.
        field: &'static str,
    },
    /// A string is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// An identifier does not parse.
    #[error("{field} is not a valid identifier")]
    BadId {
        /// The field.
        field: &'static str,
    },
    /// Bytes are left after the last field.
    #[error("{0} unexpected bytes after the last field")]
    Trailing(usize),
    /// A field has a value that is not allowed.
    #[error("{field} has the invalid value {value}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}

/// Appends fields in the binary encoding.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Encoder::default()
    }
    /// A `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// A `u32`, big-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// A `u64`, big-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// A length-prefixed string of at most `max` bytes.
    pub fn str(&mut self, field: &'static str, s: &str, max: usize) -> Result<(), CodecError> {
        if s.len() > max {
            return Err(CodecError::TooLong {
                field,
                len: s.len(),
                max,
            });
        }
        // `max` is far below u32::MAX for every field.
        self.u32(u32::try_from(s.len()).map_err(|_| CodecError::TooLong {
            field,
            len: s.len(),
            max,
        })?);
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }
    /// A transaction id as its 19 ASCII characters.
    pub fn ta_id(&mut self, id: TransactionId) {
        self.buf.extend_from_slice(id.to_string().as_bytes());
    }
    /// A recipient id as its 26 ASCII characters.
    pub fn rcpt_id(&mut self, id: RecipientId) {
        self.buf.extend_from_slice(id.to_string().as_bytes());
    }
}

/// Reads fields in the binary encoding from a byte slice, bounds-checked.
#[derive(Debug)]
pub struct Decoder<'a> {
    data: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// A decoder over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Decoder { data }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        if self.data.len() < n {
            return Err(CodecError::Truncated { field });
        }
        let (a, b) = self.data.split_at(n);
        self.data = b;
        Ok(a)
    }

    /// A `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, field)?[0])
    }
    /// A `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, CodecError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// A length-prefixed string of at most `max` bytes (checked before any
    /// allocation).
    pub fn str(&mut self, field: &'static str, max: usize) -> Result<String, CodecError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(CodecError::TooLong { field, len, max });
        }
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::NotUtf8 { field })
    }
    /// A transaction id.
    pub fn ta_id(&mut self, field: &'static str) -> Result<TransactionId, CodecError> {
        let b = self.take(TransactionId::LEN, field)?;
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(CodecError::BadId { field })
    }
    /// A recipient id.
    pub fn rcpt_id(&mut self, field: &'static str) -> Result<RecipientId, CodecError> {
        let b = self.take(RecipientId::LEN, field)?;
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(CodecError::BadId { field })
    }
    /// Checks that nothing is left.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing(self.data.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip_and_bounds() {
        let ta = TransactionId::new(0x407C_E492, 3);
        let rc = RecipientId::new(ta, 7).unwrap();
        let mut e = Encoder::new();
        e.u8(1);
        e.u32(2);
        e.u64(3);
        e.str("s", "héllo", 10).unwrap();
        e.ta_id(ta);
        e.rcpt_id(rc);
        let mut d = Decoder::new(&e.buf);
        assert_eq!(d.u8("a"), Ok(1));
        assert_eq!(d.u32("b"), Ok(2));
        assert_eq!(d.u64("c"), Ok(3));
        assert_eq!(d.str("s", 10).as_deref(), Ok("héllo"));
        assert_eq!(d.ta_id("t"), Ok(ta));
        assert_eq!(d.rcpt_id("r"), Ok(rc));
        assert_eq!(d.finish(), Ok(()));
        assert!(e.str("s", "toolong", 3).is_err());
        // A huge declared length is refused before allocating.
        let mut d = Decoder::new(&[0xFF, 0xFF, 0xFF, 0xFF, b'a']);
        assert_eq!(
            d.str("s", 100),
            Err(CodecError::TooLong {
                field: "s",
                len: 0xFFFF_FFFF,
                max: 100
            })
        );
        let mut d = Decoder::new(&[0, 0, 0, 5, b'a']);
        assert_eq!(d.str("s", 100), Err(CodecError::Truncated { field: "s" }));
    }
}
