//! The IBDB byte format: file header, frames and records (layout in the
//! [parent module](super)'s documentation). Pure functions over byte
//! slices, no I/O, so that the writer, recovery and any inspection tool
//! share one definition and the decoders can be fuzzed.
//!
//! Decoders never panic and never allocate more than the bytes they are
//! given: a length field is checked against its limit and against the data
//! at hand before anything is copied.

use crate::envelope::{
    CodecError, Decoder, Encoder, MAX_ADDRESS, MAX_PARAMS, Recipient, Transaction,
};
use crate::id::{RecipientId, TransactionId};

/// First eight bytes of every IBDB file.
pub const FILE_MAGIC: [u8; 8] = *b"SMXIBDB\0";
/// The format version written by this code, in the file header and in
/// every frame. Readers refuse any other.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the file header.
pub const HEADER_LEN: usize = 44;
/// First two bytes of every frame. Never zero, so that the zero bytes
/// after the last frame of a preallocated file are told apart from a frame.
pub const FRAME_MAGIC: [u8; 2] = [0xB1, 0xDB];
/// Bytes before a frame's payload: magic, length, version, type.
pub const FRAME_HEADER_LEN: usize = 8;
/// Bytes after a frame's payload: the CRC32C.
pub const FRAME_TRAILER_LEN: usize = 4;
/// Frame overhead in bytes.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + FRAME_TRAILER_LEN;
/// Frame type of a batch: the records of one group commit.
pub const FRAME_BATCH: u8 = 1;
/// Largest frame payload. A larger length field is damage, never an
/// allocation; a single commit larger than this is refused.
pub const MAX_FRAME_PAYLOAD: usize = 16 << 20;
/// Bytes before a record's body: type and length.
pub const RECORD_HEADER_LEN: usize = 5;
/// Largest record body. The envelope limits keep real records far below
/// (about 12.4 KiB at most); a larger length field is damage.
pub const MAX_RECORD_BODY: usize = 64 << 10;

/// Record type: a new transaction.
pub const REC_TRANSACTION: u8 = 1;
/// Record type: a recipient of a transaction.
pub const REC_RECIPIENT: u8 = 2;
/// Record type: the outcome of a recipient.
pub const REC_OUTCOME: u8 = 3;
/// Record type: a transaction is closed.
pub const REC_CLOSED: u8 = 4;

/// What happened to a recipient. Any outcome ends the recipient's life in
/// IBDB: recovery no longer returns it as open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Delivered (the final server accepted it).
    Delivered,
    /// Failed permanently; a DSN has been (or will be) generated from
    /// DEFEDB or the bounce path, not from IBDB.
    Bounced,
    /// Moved to DEFEDB for a later attempt (written only after the DEFEDB
    /// entry is durable).
    Deferred,
}

impl Outcome {
    /// The byte stored on disk.
    pub const fn code(self) -> u8 {
        match self {
            Outcome::Delivered => 1,
            Outcome::Bounced => 2,
            Outcome::Deferred => 3,
        }
    }

    /// The outcome stored as `code`, if any.
    pub const fn from_code(code: u8) -> Option<Outcome> {
        match code {
            1 => Some(Outcome::Delivered),
            2 => Some(Outcome::Bounced),
            3 => Some(Outcome::Deferred),
            _ => None,
        }
    }
}

/// One entry of the envelope log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A transaction was accepted; its recipients follow in the same commit.
    Transaction(Transaction),
    /// A recipient of a transaction.
    Recipient(Recipient),
    /// A recipient is done with (as far as IBDB is concerned).
    Outcome {
        /// The recipient.
        rcpt: RecipientId,
        /// What happened.
        outcome: Outcome,
    },
    /// The transaction is finished: nothing in IBDB refers to it any more.
    Closed(TransactionId),
}

impl Record {
    /// The transaction this record belongs to.
    pub fn transaction_id(&self) -> TransactionId {
        match self {
            Record::Transaction(t) => t.id,
            Record::Recipient(r) => r.id.transaction(),
            Record::Outcome { rcpt, .. } => rcpt.transaction(),
            Record::Closed(id) => *id,
        }
    }

    /// The record's type byte.
    pub fn type_code(&self) -> u8 {
        match self {
            Record::Transaction(_) => REC_TRANSACTION,
            Record::Recipient(_) => REC_RECIPIENT,
            Record::Outcome { .. } => REC_OUTCOME,
            Record::Closed(_) => REC_CLOSED,
        }
    }

    /// Appends the record (type, length, body) to `out`. On error `out` is
    /// left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        let mut e = Encoder {
            buf: std::mem::take(out),
        };
        e.u8(self.type_code());
        e.u32(0); // length, patched below
        let body_start = e.buf.len();
        let r = self.encode_body(&mut e);
        *out = e.buf;
        if let Err(err) = r {
            out.truncate(start);
            return Err(err);
        }
        let body_len = out.len() - body_start;
        // The body limits of MAX_ADDRESS and MAX_PARAMS keep every body
        // below MAX_RECORD_BODY; checked anyway so that the writer can never
        // produce a record its own reader refuses.
        let Some(len) = u32::try_from(body_len)
            .ok()
            .filter(|_| body_len <= MAX_RECORD_BODY)
        else {
            out.truncate(start);
            return Err(CodecError::TooLong {
                field: "record",
                len: body_len,
                max: MAX_RECORD_BODY,
            });
        };
        out[start + 1..start + RECORD_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn encode_body(&self, e: &mut Encoder) -> Result<(), CodecError> {
        match self {
            Record::Transaction(t) => {
                e.ta_id(t.id);
                e.str("sender", &t.sender, MAX_ADDRESS)?;
                e.str("mail parameters", &t.params, MAX_PARAMS)?;
                e.u64(t.size);
                e.u64(t.arrival_us);
                e.u32(t.nrcpts);
            }
            Record::Recipient(r) => {
                e.rcpt_id(r.id);
                e.str("recipient address", &r.address, MAX_ADDRESS)?;
                e.str("rcpt parameters", &r.params, MAX_PARAMS)?;
            }
            Record::Outcome { rcpt, outcome } => {
                e.rcpt_id(*rcpt);
                e.u8(outcome.code());
            }
            Record::Closed(id) => e.ta_id(*id),
        }
        Ok(())
    }

    /// Decodes one record body of type `code`.
    pub fn decode_body(code: u8, body: &[u8]) -> Result<Record, RecordError> {
        let mut d = Decoder::new(body);
        let rec = match code {
            REC_TRANSACTION => Record::Transaction(Transaction {
                id: d.ta_id("transaction id")?,
                sender: d.str("sender", MAX_ADDRESS)?,
                params: d.str("mail parameters", MAX_PARAMS)?,
                size: d.u64("size")?,
                arrival_us: d.u64("arrival time")?,
                nrcpts: d.u32("number of recipients")?,
            }),
            REC_RECIPIENT => Record::Recipient(Recipient {
                id: d.rcpt_id("recipient id")?,
                address: d.str("recipient address", MAX_ADDRESS)?,
                params: d.str("rcpt parameters", MAX_PARAMS)?,
            }),
            REC_OUTCOME => {
                let rcpt = d.rcpt_id("recipient id")?;
                let code = d.u8("outcome")?;
                let outcome = Outcome::from_code(code).ok_or(CodecError::BadValue {
                    field: "outcome",
                    value: u64::from(code),
                })?;
                Record::Outcome { rcpt, outcome }
            }
            REC_CLOSED => Record::Closed(d.ta_id("transaction id")?),
            other => return Err(RecordError::UnknownType(other)),
        };
        d.finish()?;
        Ok(rec)
    }
}

/// Why the records of a frame do not decode. A frame whose checksum is
/// right but whose records do not decode was written wrongly (or by a
/// different program): it is damage, never skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The payload ends inside a record header or body.
    #[error("payload ends inside a record")]
    Truncated,
    /// A record's length field exceeds [`MAX_RECORD_BODY`].
    #[error("record length {0} exceeds the limit of {MAX_RECORD_BODY}")]
    TooLong(u32),
    /// A record type this version does not define.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// A field of the body does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Iterates over the records of a frame payload; see [`records`].
#[derive(Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    offset: usize,
}

/// The records of a frame payload, in order. Each item is the record's
/// offset within the payload and the record, or the first error (after
/// which the iterator ends).
pub fn records(payload: &[u8]) -> Records<'_> {
    Records {
        rest: payload,
        offset: 0,
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(usize, Record), (usize, RecordError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let at = self.offset;
        let fail = |this: &mut Self, e| {
            this.rest = &[];
            Some(Err((at, e)))
        };
        let Some((head, body)) = self.rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            return fail(self, RecordError::Truncated);
        };
        let code = head[0];
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len as usize > MAX_RECORD_BODY {
            return fail(self, RecordError::TooLong(len));
        }
        let len = len as usize;
        if body.len() < len {
            return fail(self, RecordError::Truncated);
        }
        let (body, rest) = body.split_at(len);
        match Record::decode_body(code, body) {
            Ok(rec) => {
                self.rest = rest;
                self.offset += RECORD_HEADER_LEN + len;
                Some(Ok((at, rec)))
            }
            Err(e) => fail(self, e),
        }
    }
}

/// The header at the start of every IBDB file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The file's sequence number (also its name); never 0.
    pub seq: u64,
    /// Sequence number of the file written before this one, 0 if none.
    pub prev_seq: u64,
    /// Where the valid frames of file `prev_seq` end: every frame the
    /// writer acknowledged ends at or before this offset, and anything
    /// after it belongs to a batch that failed or was torn.
    pub prev_len: u64,
}

/// Why a file header does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file is shorter than a header.
    #[error("file is shorter than its {HEADER_LEN}-byte header")]
    Short,
    /// The magic is not [`FILE_MAGIC`].
    #[error("not an IBDB file (bad magic)")]
    Magic,
    /// The format version is not [`FORMAT_VERSION`].
    #[error("unsupported format version {0}")]
    Version(u8),
    /// The checksum does not match.
    #[error("header checksum mismatch")]
    Checksum,
    /// The sequence number is 0.
    #[error("header has sequence number 0")]
    ZeroSeq,
}

impl FileHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&FILE_MAGIC);
        b[8] = FORMAT_VERSION;
        b[16..24].copy_from_slice(&self.seq.to_be_bytes());
        b[24..32].copy_from_slice(&self.prev_seq.to_be_bytes());
        b[32..40].copy_from_slice(&self.prev_len.to_be_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes the header at the start of `data`. The version is checked
    /// before the checksum, so that a file of a newer format (whose header
    /// may be laid out differently) is reported as such.
    pub fn decode(data: &[u8]) -> Result<FileHeader, HeaderError> {
        let Some(b) = data.first_chunk::<HEADER_LEN>() else {
            return Err(HeaderError::Short);
        };
        if b[0..8] != FILE_MAGIC {
            return Err(HeaderError::Magic);
        }
        if b[8] != FORMAT_VERSION {
            // A version-1 header whose version byte alone was damaged is
            // damage, not a newer format: with the byte put back its
            // checksum matches.
            let mut v1 = [0u8; 40];
            v1.copy_from_slice(&b[0..40]);
            v1[8] = FORMAT_VERSION;
            if crc32c::crc32c(&v1) == be32(&b[40..44]) {
                return Err(HeaderError::Checksum);
            }
            return Err(HeaderError::Version(b[8]));
        }
        if crc32c::crc32c(&b[0..40]) != be32(&b[40..44]) {
            return Err(HeaderError::Checksum);
        }
        let h = FileHeader {
            seq: be64(&b[16..24]),
            prev_seq: be64(&b[24..32]),
            prev_len: be64(&b[32..40]),
        };
        if h.seq == 0 {
            return Err(HeaderError::ZeroSeq);
        }
        Ok(h)
    }
}

/// The fixed part at the start of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Payload length.
    pub len: u32,
    /// Format version byte.
    pub version: u8,
    /// Frame type byte.
    pub kind: u8,
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a frame header.
    #[error("data ends inside a frame header")]
    ShortHeader,
    /// The magic is not [`FRAME_MAGIC`].
    #[error("no frame magic")]
    Magic,
    /// The length exceeds [`MAX_FRAME_PAYLOAD`].
    #[error("frame length {0} exceeds the limit of {MAX_FRAME_PAYLOAD}")]
    TooLong(u32),
    /// The data ends before the frame does.
    #[error("frame of {len} bytes extends beyond the end of the data")]
    Truncated {
        /// The payload length the header declares.
        len: u32,
    },
    /// The checksum does not match.
    #[error("frame checksum mismatch")]
    Checksum,
}

impl FrameHead {
    /// Parses the frame header at the start of `data` (magic and length
    /// limit only; see [`check_frame`]).
    pub fn parse(data: &[u8]) -> Result<FrameHead, FrameError> {
        let Some(b) = data.first_chunk::<FRAME_HEADER_LEN>() else {
            return Err(FrameError::ShortHeader);
        };
        if b[0..2] != FRAME_MAGIC {
            return Err(FrameError::Magic);
        }
        let len = be32(&b[2..6]);
        if len as usize > MAX_FRAME_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        Ok(FrameHead {
            len,
            version: b[6],
            kind: b[7],
        })
    }

    /// Length of the whole frame (header, payload, checksum).
    pub fn frame_len(&self) -> usize {
        FRAME_OVERHEAD + self.len as usize
    }
}

/// The checksum of the frame that starts at `offset` of file `seq`:
/// CRC32C over the file sequence number and the offset (both `u64`
/// big-endian; not stored, so that a frame only validates where it was
/// written) followed by the frame from its length field to the end of the
/// payload. `covered` is that part of the frame (bytes 2 to 8 + length).
pub fn frame_crc(seq: u64, offset: u64, covered: &[u8]) -> u32 {
    let mut pos = [0u8; 16];
    pos[..8].copy_from_slice(&seq.to_be_bytes());
    pos[8..].copy_from_slice(&offset.to_be_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&pos), covered)
}

/// Checks the frame at the start of `data`, written at `offset` of file
/// `seq`. Returns its header and payload. The version and type are
/// returned, not judged: a frame with a valid checksum and another version
/// was written by other code, which the caller reports as such.
pub fn check_frame(seq: u64, offset: u64, data: &[u8]) -> Result<(FrameHead, &[u8]), FrameError> {
    let head = FrameHead::parse(data)?;
    let total = head.frame_len();
    let Some(frame) = data.get(..total) else {
        return Err(FrameError::Truncated { len: head.len });
    };
    let (covered, crc) = frame.split_at(total - FRAME_TRAILER_LEN);
    if frame_crc(seq, offset, &covered[2..]) != be32(crc) {
        return Err(FrameError::Checksum);
    }
    Ok((head, &covered[FRAME_HEADER_LEN..]))
}

/// Builds a batch frame in a reusable buffer: [`begin`](Self::begin),
/// append encoded records to [`buf`](Self::buf), then
/// [`finish`](Self::finish).
#[derive(Debug, Default)]
pub struct FrameBuilder {
    /// The frame under construction.
    pub buf: Vec<u8>,
}

impl FrameBuilder {
    /// Starts a new frame, discarding any previous content.
    pub fn begin(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&FRAME_MAGIC);
        self.buf
            .extend_from_slice(&[0, 0, 0, 0, FORMAT_VERSION, FRAME_BATCH]);
    }

    /// Size of the payload appended so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len().saturating_sub(FRAME_HEADER_LEN)
    }

    /// Completes the frame for writing at `offset` of file `seq` and
    /// returns its bytes. Fails if the payload exceeds
    /// [`MAX_FRAME_PAYLOAD`] (the caller bounds batches so it never does).
    pub fn finish(&mut self, seq: u64, offset: u64) -> Result<&[u8], CodecError> {
        let plen = self.payload_len();
        let len = u32::try_from(plen)
            .ok()
            .filter(|_| plen <= MAX_FRAME_PAYLOAD)
            .ok_or(CodecError::TooLong {
                field: "frame",
                len: plen,
                max: MAX_FRAME_PAYLOAD,
            })?;
        self.buf[2..6].copy_from_slice(&len.to_be_bytes());
        let crc = frame_crc(seq, offset, &self.buf[2..]);
        self.buf.extend_from_slice(&crc.to_be_bytes());
        Ok(&self.buf)
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ta(counter: u64) -> TransactionId {
        TransactionId::new(counter, 0x12)
    }

    fn sample_records() -> Vec<Record> {
        let t = ta(0x407C_E492);
        vec![
            Record::Transaction(Transaction {
                id: t,
                sender: "alice@example.org".into(),
                params: "SIZE=123 BODY=8BITMIME".into(),
                size: 123,
                arrival_us: 1_700_000_000_000_000,
                nrcpts: 2,
            }),
            Record::Recipient(Recipient {
                id: RecipientId::new(t, 0).unwrap(),
                address: "bob@example.net".into(),
                params: String::new(),
            }),
            Record::Recipient(Recipient {
                id: RecipientId::new(t, 1).unwrap(),
                address: "ça@exemple.fr".into(),
                params: "NOTIFY=NEVER".into(),
            }),
            Record::Outcome {
                rcpt: RecipientId::new(t, 0).unwrap(),
                outcome: Outcome::Delivered,
            },
            Record::Outcome {
                rcpt: RecipientId::new(t, 1).unwrap(),
                outcome: Outcome::Bounced,
            },
            Record::Outcome {
                rcpt: RecipientId::new(t, 1).unwrap(),
                outcome: Outcome::Deferred,
            },
            Record::Closed(t),
        ]
    }

    fn decode_all(payload: &[u8]) -> Result<Vec<Record>, (usize, RecordError)> {
        records(payload).map(|r| r.map(|(_, rec)| rec)).collect()
    }

    #[test]
    fn every_record_type_round_trips() {
        for rec in sample_records() {
            let mut buf = vec![0xEE]; // encode appends
            rec.encode(&mut buf).unwrap();
            assert_eq!(buf[1], rec.type_code());
            assert_eq!(decode_all(&buf[1..]), Ok(vec![rec.clone()]), "{rec:?}");
        }
        let mut buf = Vec::new();
        for rec in sample_records() {
            rec.encode(&mut buf).unwrap();
        }
        assert_eq!(decode_all(&buf), Ok(sample_records()));
    }

    #[test]
    fn record_table() {
        let t = ta(1);
        // (record bytes, expected result) — got/want.
        let closed = {
            let mut b = Vec::new();
            Record::Closed(t).encode(&mut b).unwrap();
            b
        };
        let mut unknown = closed.clone();
        unknown[0] = 9;
        let mut long = closed.clone();
        long[1..5].copy_from_slice(&(MAX_RECORD_BODY as u32 + 1).to_be_bytes());
        let mut trailing = closed.clone();
        trailing[4] += 1;
        trailing.push(0);
        let mut bad_outcome = Vec::new();
        Record::Outcome {
            rcpt: RecipientId::new(t, 3).unwrap(),
            outcome: Outcome::Deferred,
        }
        .encode(&mut bad_outcome)
        .unwrap();
        *bad_outcome.last_mut().unwrap() = 0;
        type Want = Result<Vec<Record>, (usize, RecordError)>;
        let cases: Vec<(&str, Vec<u8>, Want)> = vec![
            ("closed", closed.clone(), Ok(vec![Record::Closed(t)])),
            ("empty payload", vec![], Ok(vec![])),
            (
                "short header",
                closed[..3].to_vec(),
                Err((0, RecordError::Truncated)),
            ),
            (
                "short body",
                closed[..10].to_vec(),
                Err((0, RecordError::Truncated)),
            ),
            (
                "unknown type",
                unknown,
                Err((0, RecordError::UnknownType(9))),
            ),
            (
                "too long",
                long,
                Err((0, RecordError::TooLong(MAX_RECORD_BODY as u32 + 1))),
            ),
            (
                "trailing byte",
                trailing,
                Err((0, RecordError::Codec(CodecError::Trailing(1)))),
            ),
            (
                "bad outcome",
                bad_outcome,
                Err((
                    0,
                    RecordError::Codec(CodecError::BadValue {
                        field: "outcome",
                        value: 0,
                    }),
                )),
            ),
            (
                "second record bad",
                [closed.clone(), vec![7, 0, 0, 0, 0]].concat(),
                Err((closed.len(), RecordError::UnknownType(7))),
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode_all(&bytes), want, "{name}");
        }
    }

    #[test]
    fn encode_refuses_over_limit_and_leaves_buffer() {
        let rec = Record::Recipient(Recipient {
            id: RecipientId::new(ta(1), 0).unwrap(),
            address: "a".repeat(MAX_ADDRESS + 1),
            params: String::new(),
        });
        let mut buf = vec![1, 2, 3];
        assert!(matches!(
            rec.encode(&mut buf),
            Err(CodecError::TooLong {
                field: "recipient address",
                ..
            })
        ));
        assert_eq!(buf, vec![1, 2, 3]);
    }

    #[test]
    fn header_round_trip_and_errors() {
        let h = FileHeader {
            seq: 7,
            prev_seq: 6,
            prev_len: 12345,
        };
        let b = h.encode();
        assert_eq!(FileHeader::decode(&b), Ok(h));
        assert_eq!(FileHeader::decode(&b[..43]), Err(HeaderError::Short));
        let mut m = b;
        m[0] = b'X';
        assert_eq!(FileHeader::decode(&m), Err(HeaderError::Magic));
        // A flipped version byte in a version-1 header is damage...
        let mut v = b;
        v[8] = 2;
        assert_eq!(FileHeader::decode(&v), Err(HeaderError::Checksum));
        // ...while a consistent header of another version is a newer format.
        let crc = crc32c::crc32c(&v[0..40]).to_be_bytes();
        v[40..44].copy_from_slice(&crc);
        assert_eq!(FileHeader::decode(&v), Err(HeaderError::Version(2)));
        for i in 9..44 {
            let mut c = b;
            c[i] ^= 0x40;
            assert_eq!(
                FileHeader::decode(&c),
                Err(HeaderError::Checksum),
                "byte {i}"
            );
        }
        let z = FileHeader { seq: 0, ..h }.encode();
        assert_eq!(FileHeader::decode(&z), Err(HeaderError::ZeroSeq));
    }

    #[test]
    fn frame_round_trip_and_position_binding() {
        let mut fb = FrameBuilder::default();
        fb.begin();
        for rec in sample_records() {
            rec.encode(&mut fb.buf).unwrap();
        }
        let frame = fb.finish(3, 44).unwrap().to_vec();
        let (head, payload) = check_frame(3, 44, &frame).unwrap();
        assert_eq!(head.version, FORMAT_VERSION);
        assert_eq!(head.kind, FRAME_BATCH);
        assert_eq!(head.frame_len(), frame.len());
        assert_eq!(decode_all(payload), Ok(sample_records()));
        // The same bytes elsewhere, or in another file, do not validate.
        assert_eq!(check_frame(3, 45, &frame), Err(FrameError::Checksum));
        assert_eq!(check_frame(4, 44, &frame), Err(FrameError::Checksum));
        // Every single-byte change is detected.
        for i in 0..frame.len() {
            let mut f = frame.clone();
            f[i] ^= 0x01;
            assert!(check_frame(3, 44, &f).is_err(), "byte {i}");
        }
        // Every truncation is detected.
        for n in 0..frame.len() {
            assert!(check_frame(3, 44, &frame[..n]).is_err(), "len {n}");
        }
        let mut long = frame.clone();
        long[2..6].copy_from_slice(&(MAX_FRAME_PAYLOAD as u32 + 1).to_be_bytes());
        assert_eq!(
            check_frame(3, 44, &long),
            Err(FrameError::TooLong(MAX_FRAME_PAYLOAD as u32 + 1))
        );
        assert_eq!(check_frame(3, 44, &[0; 100]), Err(FrameError::Magic));
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        // Arbitrary Unicode, then cut to the byte limit on a char boundary.
        any::<String>().prop_map(move |s| {
            let mut end = s.len().min(max);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        })
    }

    fn long_text(max: usize) -> impl Strategy<Value = String> {
        prop_oneof![text(max), (0..=max).prop_map(|n| "x".repeat(n))]
    }

    fn arb_ta() -> impl Strategy<Value = TransactionId> {
        (any::<u64>(), any::<u8>()).prop_map(|(c, p)| TransactionId::new(c, p))
    }

    fn arb_rcpt() -> impl Strategy<Value = RecipientId> {
        (arb_ta(), 0..=crate::id::MAX_RECIPIENT_INDEX)
            .prop_map(|(t, i)| RecipientId::new(t, i).expect("index in range"))
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (
                arb_ta(),
                long_text(MAX_ADDRESS),
                long_text(MAX_PARAMS),
                any::<u64>(),
                any::<u64>(),
                any::<u32>()
            )
                .prop_map(|(id, sender, params, size, arrival_us, nrcpts)| {
                    Record::Transaction(Transaction {
                        id,
                        sender,
                        params,
                        size,
                        arrival_us,
                        nrcpts,
                    })
                }),
            (arb_rcpt(), long_text(MAX_ADDRESS), long_text(MAX_PARAMS)).prop_map(
                |(id, address, params)| Record::Recipient(Recipient {
                    id,
                    address,
                    params
                })
            ),
            (
                arb_rcpt(),
                prop_oneof![
                    Just(Outcome::Delivered),
                    Just(Outcome::Bounced),
                    Just(Outcome::Deferred)
                ]
            )
                .prop_map(|(rcpt, outcome)| Record::Outcome { rcpt, outcome }),
            arb_ta().prop_map(Record::Closed),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec(arb_record(), 0..8),
                              seq in 1u64.., offset in any::<u64>()) {
            let mut fb = FrameBuilder::default();
            fb.begin();
            for r in &recs {
                r.encode(&mut fb.buf).unwrap();
            }
            let frame = fb.finish(seq, offset).unwrap().to_vec();
            let (_, payload) = check_frame(seq, offset, &frame).unwrap();
            prop_assert_eq!(decode_all(payload), Ok(recs));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512),
                                                 code in any::<u8>(),
                                                 seq in any::<u64>(), offset in any::<u64>()) {
            let _ = decode_all(&data);
            let _ = Record::decode_body(code, &data);
            let _ = FileHeader::decode(&data);
            let _ = FrameHead::parse(&data);
            let _ = check_frame(seq, offset, &data);
        }

        #[test]
        fn decoding_mutated_frames_never_panics(recs in proptest::collection::vec(arb_record(), 1..4),
                                                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                                                cut in any::<usize>()) {
            let mut fb = FrameBuilder::default();
            fb.begin();
            for r in &recs {
                r.encode(&mut fb.buf).unwrap();
            }
            let mut frame = fb.finish(1, 44).unwrap().to_vec();
            for (i, x) in flips {
                let n = frame.len();
                frame[i % n] ^= x;
            }
            frame.truncate(cut % (frame.len() + 1));
            if let Ok((_, payload)) = check_frame(1, 44, &frame) {
                let _ = decode_all(payload);
            }
            // Records decoded without the checksum (as a fuzzer would).
            let _ = decode_all(frame.get(FRAME_HEADER_LEN..).unwrap_or(&[]));
        }
    }
}
