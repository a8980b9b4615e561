//! Byte layouts of DEFEDB keys and values. The layouts are documented in the
//! parent module ([`super`]); this file is the only code that builds or
//! parses them.
//!
//! Nothing here touches the database: encoding checks the field limits,
//! decoding checks every length before it allocates and reports a
//! [`DecodeError`] for anything it does not understand.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{DecodeError, DeferredRecipient};
use crate::envelope::{
    CodecError, Decoder, Encoder, MAX_ADDRESS, MAX_HOST, MAX_PARAMS, MAX_REPLY, Recipient,
    Transaction,
};
use crate::id::RecipientId;

/// Version byte at the start of every `recipients` value.
pub(super) const ENTRY_VERSION: u8 = 1;
/// Version byte at the start of every `corrupt` value.
pub(super) const SET_ASIDE_VERSION: u8 = 1;
/// Length of a recipient id key (its printed form).
pub(super) const ID_LEN: usize = RecipientId::LEN;
/// Length of a time-ordered index key: `u64` and id.
const TIME_KEY_LEN: usize = 8 + ID_LEN;

/// The key of `id` in the `recipients` table: its 26 ASCII characters.
/// Upper-case fixed-width hex sorts like the numbers, so the table is in
/// recipient id order.
pub(super) fn id_key(id: RecipientId) -> Vec<u8> {
    id.to_string().into_bytes()
}

/// Parses a `recipients` key (or the id suffix of an index key).
pub(super) fn parse_id(bytes: &[u8]) -> Option<RecipientId> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The id at the end of an index key, whatever its prefix.
fn id_suffix(key: &[u8]) -> Option<RecipientId> {
    let start = key.len().checked_sub(ID_LEN)?;
    parse_id(&key[start..])
}

/// `time` (big-endian) followed by the id: keys of `due` and `by_arrival`.
pub(super) fn time_key(time: u64, id: RecipientId) -> Vec<u8> {
    let mut k = Vec::with_capacity(TIME_KEY_LEN);
    k.extend_from_slice(&time.to_be_bytes());
    k.extend_from_slice(&id_key(id));
    k
}

/// The smallest key of a time index at `time` (before every id).
pub(super) fn time_lower(time: u64) -> Vec<u8> {
    time.to_be_bytes().to_vec()
}

/// Splits a time index key; `None` if it is malformed.
pub(super) fn parse_time_key(key: &[u8]) -> Option<(u64, RecipientId)> {
    if key.len() != TIME_KEY_LEN {
        return None;
    }
    let (t, id) = key.split_at(8);
    let mut a = [0u8; 8];
    a.copy_from_slice(t);
    Some((u64::from_be_bytes(a), parse_id(id)?))
}

/// `u16` length (big-endian) and the text: the prefix shared by all keys
/// of one domain or sender. `None` if the text cannot be a key (longer than
/// any stored address).
pub(super) fn text_prefix(text: &str) -> Option<Vec<u8>> {
    if text.len() > MAX_ADDRESS {
        return None;
    }
    let len = u16::try_from(text.len()).ok()?;
    let mut k = Vec::with_capacity(2 + text.len() + ID_LEN);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(text.as_bytes());
    Some(k)
}

/// A key of `by_domain` or `by_sender`: the text's `u16` length, the
/// text and the id. Total: [`encode`] and [`decode`] bound every address
/// to [`MAX_ADDRESS`], far below `u16::MAX`; a longer text (which no stored
/// entry has) would get a saturated length, which [`parse_text_key`]
/// rejects, so it could never be mistaken for another key.
pub(super) fn text_key(text: &str, id: RecipientId) -> Vec<u8> {
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + text.len() + ID_LEN);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(text.as_bytes());
    k.extend_from_slice(&id_key(id));
    k
}

/// The id of a `by_domain` or `by_sender` key, checking that the length
/// field matches the key's size.
pub(super) fn parse_text_key(key: &[u8]) -> Option<RecipientId> {
    let len_field = key.get(..2)?;
    let len = usize::from(u16::from_be_bytes([len_field[0], len_field[1]]));
    if key.len() != 2 + len + ID_LEN {
        return None;
    }
    id_suffix(key)
}

/// The domain of an address for the `by_domain` index: the text after the
/// last `@`, ASCII lower-cased; empty when there is no `@` (e.g.
/// `postmaster`). ASCII only on purpose: Unicode case mapping changes
/// between Unicode versions, and a key must be computed the same way by
/// every future reader.
pub fn domain_of(address: &str) -> String {
    match address.rfind('@') {
        Some(at) => address[at + 1..].to_ascii_lowercase(),
        None => String::new(),
    }
}

/// The sender as a `by_sender` key: the local part as stored (it is case
/// sensitive, RFC 5321 2.4), the domain ASCII lower-cased. The null sender
/// `<>` is the empty string.
pub fn sender_key(sender: &str) -> String {
    match sender.rfind('@') {
        Some(at) => {
            let mut s = String::with_capacity(sender.len());
            s.push_str(&sender[..at + 1]);
            s.push_str(&sender[at + 1..].to_ascii_lowercase());
            s
        }
        None => sender.to_owned(),
    }
}

/// Encodes an entry as a `recipients` value (format version
/// [`ENTRY_VERSION`]).
pub(super) fn encode(e: &DeferredRecipient) -> Result<Vec<u8>, CodecError> {
    let mut w = Encoder::new();
    w.u8(ENTRY_VERSION);
    w.rcpt_id(e.recipient.id);
    w.str("address", &e.recipient.address, MAX_ADDRESS)?;
    w.str("rcpt_params", &e.recipient.params, MAX_PARAMS)?;
    w.str("sender", &e.transaction.sender, MAX_ADDRESS)?;
    w.str("mail_params", &e.transaction.params, MAX_PARAMS)?;
    w.u64(e.transaction.size);
    w.u64(e.transaction.arrival_us);
    w.u32(e.transaction.nrcpts);
    w.u32(e.tries);
    w.u64(e.next_try);
    w.u64(e.first_try);
    w.u64(e.last_try);
    w.u32(e.dsn_flags);
    w.str("last_host", &e.last_host, MAX_HOST)?;
    w.str("last_reply", &e.last_reply, MAX_REPLY)?;
    let crc = crc32c::crc32c(&w.buf);
    w.u32(crc);
    Ok(w.buf)
}

/// Decodes a `recipients` value stored under `key_id`.
pub(super) fn decode(bytes: &[u8], key_id: RecipientId) -> Result<DeferredRecipient, DecodeError> {
    let Some(&version) = bytes.first() else {
        return Err(DecodeError::Empty);
    };
    if version != ENTRY_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    // The checksum first: redb verifies page checksums only in its
    // integrity check, not on reads, so bit rot inside a value reaches us.
    let Some(body_len) = bytes.len().checked_sub(4).filter(|&n| n > 0) else {
        return Err(CodecError::Truncated { field: "checksum" }.into());
    };
    let (body, stored) = bytes.split_at(body_len);
    let stored = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let mut d = Decoder::new(&body[1..]);
    let id = d.rcpt_id("recipient id")?;
    if id != key_id {
        return Err(DecodeError::IdMismatch { stored: id });
    }
    let address = d.str("address", MAX_ADDRESS)?;
    let rcpt_params = d.str("rcpt_params", MAX_PARAMS)?;
    let sender = d.str("sender", MAX_ADDRESS)?;
    let mail_params = d.str("mail_params", MAX_PARAMS)?;
    let size = d.u64("size")?;
    let arrival_us = d.u64("arrival_us")?;
    let nrcpts = d.u32("nrcpts")?;
    let tries = d.u32("tries")?;
    let next_try = d.u64("next_try")?;
    let first_try = d.u64("first_try")?;
    let last_try = d.u64("last_try")?;
    let dsn_flags = d.u32("dsn_flags")?;
    let last_host = d.str("last_host", MAX_HOST)?;
    let last_reply = d.str("last_reply", MAX_REPLY)?;
    d.finish()?;
    Ok(DeferredRecipient {
        recipient: Recipient {
            id,
            address,
            params: rcpt_params,
        },
        transaction: Transaction {
            id: id.transaction(),
            sender,
            params: mail_params,
            size,
            arrival_us,
            nrcpts,
        },
        tries,
        next_try,
        first_try,
        last_try,
        dsn_flags,
        last_host,
        last_reply,
    })
}

/// A record of the `corrupt` table as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAsideRecord {
    /// Sequence number (the record's key), in the order records were made.
    pub seq: u64,
    /// When the record was set aside, Unix seconds.
    pub at_secs: u64,
    /// The table the bytes came from (`recipients`).
    pub table: String,
    /// The key the bytes were stored under.
    pub key: Vec<u8>,
    /// The raw value, exactly as it was found.
    pub value: Vec<u8>,
}

/// Encodes a `corrupt` value.
pub(super) fn encode_set_aside(table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Table names are short constants; keys are ids or index keys, far
    // below u32::MAX. Saturating keeps the encoder total; a saturated
    // length would show as undecodable, never as wrong data.
    let table = &table.as_bytes()[..table.len().min(usize::from(u8::MAX))];
    let mut v = Vec::with_capacity(1 + 8 + 1 + table.len() + 4 + key.len() + value.len());
    v.push(SET_ASIDE_VERSION);
    v.extend_from_slice(&at.to_be_bytes());
    v.push(u8::try_from(table.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(table);
    v.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

/// Decodes a `corrupt` value; `None` if it is not a version 1 record.
pub(super) fn decode_set_aside(seq: u64, bytes: &[u8]) -> Option<SetAsideRecord> {
    let (&version, rest) = bytes.split_first()?;
    if version != SET_ASIDE_VERSION {
        return None;
    }
    let (at, rest) = split(rest, 8)?;
    let (&tlen, rest) = rest.split_first()?;
    let (table, rest) = split(rest, usize::from(tlen))?;
    let (klen, rest) = split(rest, 4)?;
    let klen = u32::from_be_bytes([klen[0], klen[1], klen[2], klen[3]]);
    let (key, value) = split(rest, usize::try_from(klen).ok()?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(at);
    Some(SetAsideRecord {
        seq,
        at_secs: u64::from_be_bytes(a),
        table: String::from_utf8_lossy(table).into_owned(),
        key: key.to_vec(),
        value: value.to_vec(),
    })
}

fn split(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TransactionId;

    fn entry() -> DeferredRecipient {
        let ta = TransactionId::new(0x407C_E492, 3);
        DeferredRecipient {
            recipient: Recipient {
                id: RecipientId::new(ta, 7).unwrap(),
                address: "User@Example.ORG".into(),
                params: "NOTIFY=DELAY,FAILURE".into(),
            },
            transaction: Transaction {
                id: ta,
                sender: "Bob@Sender.Example".into(),
                params: "SIZE=123 BODY=8BITMIME".into(),
                size: 123,
                arrival_us: 1_700_000_000_000_000,
                nrcpts: 9,
            },
            tries: 2,
            next_try: 1_700_000_900,
            first_try: 1_700_000_001,
            last_try: 1_700_000_300,
            dsn_flags: super::super::dsn::DELAY_SENT,
            last_host: "mx.example.org [192.0.2.1]".into(),
            last_reply: "451-4.7.1 try\r\n451 4.7.1 later".into(),
        }
    }

    #[test]
    fn entry_round_trips() {
        let e = entry();
        let b = encode(&e).unwrap();
        assert_eq!(b[0], ENTRY_VERSION);
        assert_eq!(decode(&b, e.id()).unwrap(), e);
    }

    #[test]
    fn decode_rejects_bad_values() {
        let e = entry();
        let good = encode(&e).unwrap();
        // (name, bytes, expected error)
        let other = RecipientId::new(e.id().transaction(), 8).unwrap();
        // A value with a valid checksum over `body` (to reach the field
        // checks behind it).
        let sealed = |body: &[u8]| {
            let mut v = body.to_vec();
            v.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
            v
        };
        let body = &good[..good.len() - 4];
        let mut flipped = good.clone();
        flipped[40] ^= 1;
        let crc = |b: &[u8]| crc32c::crc32c(b);
        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            ("empty", vec![], DecodeError::Empty),
            (
                "version 0",
                [&[0u8][..], &good[1..]].concat(),
                DecodeError::UnknownVersion(0),
            ),
            (
                "version 2",
                [&[2u8][..], &good[1..]].concat(),
                DecodeError::UnknownVersion(2),
            ),
            (
                "version only",
                vec![1],
                DecodeError::Codec(CodecError::Truncated { field: "checksum" }),
            ),
            (
                "bit flip",
                flipped.clone(),
                DecodeError::Checksum {
                    stored: crc(body),
                    computed: crc(&flipped[..flipped.len() - 4]),
                },
            ),
            (
                "trailing",
                sealed(&[body, &[0u8][..]].concat()),
                DecodeError::Codec(CodecError::Trailing(1)),
            ),
            (
                "truncated",
                sealed(&body[..body.len() - 1]),
                DecodeError::Codec(CodecError::Truncated {
                    field: "last_reply",
                }),
            ),
            (
                "bad id",
                sealed(&[&[1u8][..], b"X", &body[2..]].concat()),
                DecodeError::Codec(CodecError::BadId {
                    field: "recipient id",
                }),
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode(&bytes, e.id()), Err(want), "{name}");
        }
        assert_eq!(
            decode(&good, other),
            Err(DecodeError::IdMismatch { stored: e.id() })
        );
        // Every prefix fails cleanly, without panicking.
        for n in 0..good.len() {
            assert!(decode(&good[..n], e.id()).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn encode_refuses_oversized_fields() {
        let mut e = entry();
        e.last_reply = "x".repeat(MAX_REPLY + 1);
        assert!(matches!(
            encode(&e),
            Err(CodecError::TooLong {
                field: "last_reply",
                ..
            })
        ));
        let mut e = entry();
        e.last_host = "h".repeat(MAX_HOST + 1);
        assert!(encode(&e).is_err());
    }

    #[test]
    fn keys_round_trip_and_sort() {
        let e = entry();
        let id = e.id();
        assert_eq!(parse_id(&id_key(id)), Some(id));
        let k = time_key(42, id);
        assert_eq!(parse_time_key(&k), Some((42, id)));
        assert!(time_lower(42) < k && k < time_lower(43));
        assert_eq!(parse_time_key(&k[1..]), None);
        let k = text_key("example.org", id);
        assert!(k.starts_with(&text_prefix("example.org").unwrap()));
        assert_eq!(parse_text_key(&k), Some(id));
        assert_eq!(parse_text_key(&k[..k.len() - 1]), None);
        assert_eq!(parse_text_key(&[0]), None);
        // The empty text (null sender, domain-less address) is a key too.
        let k = text_key("", id);
        assert_eq!(parse_text_key(&k), Some(id));
        assert!(text_prefix(&"a".repeat(MAX_ADDRESS + 1)).is_none());
        // Later time, later key; same time, id order.
        let id2 = RecipientId::new(id.transaction(), 8).unwrap();
        assert!(time_key(1, id2) < time_key(2, id));
        assert!(time_key(2, id) < time_key(2, id2));
    }

    #[test]
    fn domain_and_sender_normalisation() {
        // (input, domain_of, sender_key)
        let cases = [
            ("User@Example.ORG", "example.org", "User@example.org"),
            ("postmaster", "", "postmaster"),
            ("", "", ""),
            (
                "@a.example,@B.example:u@C.Example",
                "c.example",
                "@a.example,@B.example:u@c.example",
            ),
            ("u@[192.0.2.1]", "[192.0.2.1]", "u@[192.0.2.1]"),
            ("Ü@Bücher.DE", "bücher.de", "Ü@bücher.de"),
        ];
        for (input, domain, sender) in cases {
            assert_eq!(domain_of(input), domain, "{input}");
            assert_eq!(sender_key(input), sender, "{input}");
        }
    }

    #[test]
    fn set_aside_round_trips() {
        let v = encode_set_aside("recipients", b"key", b"\xffgarbage");
        let r = decode_set_aside(5, &v).unwrap();
        assert_eq!(r.seq, 5);
        assert_eq!(r.table, "recipients");
        assert_eq!(r.key, b"key");
        assert_eq!(r.value, b"\xffgarbage");
        assert!(r.at_secs > 0);
        for n in 0..(1 + 8 + 1 + 10 + 4 + 3) {
            assert!(decode_set_aside(5, &v[..n]).is_none(), "prefix {n}");
        }
        assert!(decode_set_aside(5, &[2]).is_none());
    }
}
