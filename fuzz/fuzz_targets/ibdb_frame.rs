//! Fuzzes the IBDB decoders that recovery runs on whatever is on disk: the
//! file header, frame checking, and the records of a payload. Nothing may
//! panic; every record that decodes must encode and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smx_store::ibdb::format::{FileHeader, check_frame, records};

fuzz_target!(|data: &[u8]| {
    let _ = FileHeader::decode(data);
    if data.len() >= 16 {
        let (head, rest) = data.split_at(16);
        let mut seq = [0u8; 8];
        let mut off = [0u8; 8];
        seq.copy_from_slice(&head[..8]);
        off.copy_from_slice(&head[8..]);
        let _ = check_frame(u64::from_be_bytes(seq), u64::from_be_bytes(off), rest);
    }
    for item in records(data) {
        let Ok((_, record)) = item else { break };
        let mut buf = Vec::new();
        if record.encode(&mut buf).is_ok() {
            let again: Vec<_> = records(&buf).collect();
            assert_eq!(again.len(), 1, "one record encodes to one record");
            match &again[0] {
                Ok((0, r)) => assert_eq!(r, &record),
                other => panic!("re-encoded record does not decode: {other:?}"),
            }
        }
    }
});
