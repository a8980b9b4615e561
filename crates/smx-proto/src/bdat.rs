//! BDAT chunks (RFC 3030 CHUNKING): after `BDAT n [LAST]` exactly `n`
//! octets of message follow, binary-safe: no dot-stuffing, no terminator,
//! no line-end rules (a BINARYMIME message may hold any octet).
//!
//! [`BdatChunk::take`] is fed input in pieces and hands back, without
//! copying, the part of each piece that belongs to the chunk; once the
//! announced size is reached it answers [`BdatProgress::Complete`], and the
//! rest of the piece is the next command. The message size limit across
//! chunks is the server's to check (552 5.3.4 after the LAST chunk, or
//! earlier with a 552 to the BDAT that exceeds it, RFC 3030 4.2); this
//! reader has no error of its own.

/// What [`BdatChunk::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BdatProgress<'a> {
    /// All of the input belongs to the chunk, and more is to come.
    Incomplete(&'a [u8]),
    /// The chunk ends within this input: `data` is its last part (maybe
    /// empty), and `data.len()` bytes of the input were used.
    Complete(&'a [u8]),
}

/// A chunk being read; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BdatChunk {
    remaining: u64,
}

impl BdatChunk {
    /// A chunk of `size` octets.
    pub fn new(size: u64) -> Self {
        BdatChunk { remaining: size }
    }

    /// Octets still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether the whole chunk has been read.
    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// Takes the chunk's part of `input`.
    pub fn take<'a>(&mut self, input: &'a [u8]) -> BdatProgress<'a> {
        let n = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        self.remaining -= n as u64;
        let data = &input[..n];
        if self.remaining == 0 {
            BdatProgress::Complete(data)
        } else {
            BdatProgress::Incomplete(data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_size_in_pieces() {
        let mut c = BdatChunk::new(10);
        assert_eq!(c.take(b"\r\n.\r\n"), BdatProgress::Incomplete(b"\r\n.\r\n"));
        assert_eq!(c.remaining(), 5);
        assert_eq!(c.take(b""), BdatProgress::Incomplete(b""));
        assert_eq!(
            c.take(b"\0\xffab\nBDAT 1"),
            BdatProgress::Complete(b"\0\xffab\n")
        );
        assert!(c.is_complete());
        assert_eq!(c.take(b"more"), BdatProgress::Complete(b""));
    }

    #[test]
    fn zero_size_chunk() {
        let mut c = BdatChunk::new(0);
        assert_eq!(c.take(b"QUIT\r\n"), BdatProgress::Complete(b""));
    }

    #[test]
    fn huge_size() {
        let mut c = BdatChunk::new(u64::MAX);
        assert_eq!(c.take(b"abc"), BdatProgress::Incomplete(b"abc"));
        assert_eq!(c.remaining(), u64::MAX - 3);
    }
}
