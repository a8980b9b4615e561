//! Fuzzes the DATA decoder and the BDAT chunk reader. The first byte
//! chooses the options and the piece sizes; the rest is the stream after
//! 354, fed whole and in pieces. The split never changes the outcome; the
//! decoder never uses more than it was given; accepted content, stuffed
//! again, decodes to itself; a BDAT chunk takes exactly its size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smx_proto::{
    BareLineEnds, BdatChunk, BdatProgress, DataDecoder, DataEncoder, DataError, DataOptions,
    DataProgress,
};

type Outcome = (Vec<u8>, Option<(usize, Result<u64, DataError>)>);

/// Feeds `input` in pieces whose sizes come from `sizes` (cycled).
fn decode(input: &[u8], opts: DataOptions, sizes: &[u8]) -> Outcome {
    let mut d = DataDecoder::new(opts);
    let mut out = Vec::new();
    let mut start = 0;
    let mut k = 0;
    loop {
        let step = if sizes.is_empty() {
            input.len()
        } else {
            let s = usize::from(sizes[k % sizes.len()] % 16);
            if s == 0 {
                // An empty piece changes nothing.
                assert_eq!(d.decode(&[], &mut out), DataProgress::Incomplete);
            }
            s.max(1)
        };
        k += 1;
        let end = (start + step).min(input.len());
        let piece = &input[start..end];
        match d.decode(piece, &mut out) {
            DataProgress::Incomplete => {
                assert_eq!(d.consumed(), end as u64);
            }
            DataProgress::Done { consumed, result } => {
                assert!(consumed <= piece.len());
                assert!(d.is_done());
                assert_eq!(d.consumed(), (start + consumed) as u64);
                return (out, Some((start + consumed, result)));
            }
        }
        if end == input.len() {
            return (out, None);
        }
        start = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let opts = DataOptions {
        max_size: (flags & 1 != 0).then_some(64),
        max_line: (flags & 2 != 0).then_some(24),
        bare_line_ends: if flags & 4 != 0 {
            BareLineEnds::Keep
        } else {
            BareLineEnds::Reject
        },
    };
    let whole = decode(input, opts, &[]);
    // Piece sizes taken from the input itself (0 means an empty piece).
    let sizes: Vec<u8> = input.iter().rev().take(7).copied().collect();
    let split = decode(input, opts, &sizes);
    assert_eq!(whole, split, "the split changed the outcome");

    if let (content, Some((consumed, Ok(size)))) = &whole {
        assert_eq!(*size, content.len() as u64);
        assert!(content.is_empty() || content.ends_with(b"\r\n"));
        // Re-stuff and decode again.
        let wire = DataEncoder::stuff(content);
        let again = decode(&wire, opts, &sizes);
        assert_eq!(again.0, *content, "re-stuffed content differs");
        assert_eq!(again.1, Some((wire.len(), Ok(*size))));
        assert!(*consumed <= input.len());
    }

    // BDAT: a chunk of a size taken from the flags takes exactly that.
    let size = usize::from(flags) % (input.len() + 1);
    let mut chunk = BdatChunk::new(size as u64);
    let mut got = Vec::new();
    let mut start = 0;
    let mut k = 0;
    loop {
        let step = sizes.get(k).map_or(input.len(), |s| usize::from(*s % 16));
        k += 1;
        let end = (start + step).min(input.len());
        match chunk.take(&input[start..end]) {
            BdatProgress::Incomplete(d) => {
                assert_eq!(d.len(), end - start);
                got.extend_from_slice(d);
            }
            BdatProgress::Complete(d) => {
                got.extend_from_slice(d);
                break;
            }
        }
        start = end;
    }
    assert_eq!(&got[..], &input[..size]);
    assert_eq!(chunk.remaining(), 0);
});
