//! The workload shared by the store crash test and its child process: what
//! a transaction's content and recipients are, derived from its id alone, so
//! that the checker can verify any recovered transaction without having
//! seen it acknowledged.

use smx_store::envelope::{Recipient, Transaction};
use smx_store::id::{RecipientId, TransactionId};

/// A 64-bit mix of the transaction counter (splitmix64 finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The message content of `ta`: 1 byte to 24 KiB of mail-like lines.
pub fn content(ta: TransactionId) -> Vec<u8> {
    let h = mix(ta.counter());
    let len = 1 + (h % (24 * 1024)) as usize;
    let mut out = Vec::with_capacity(len + 80);
    let mut line = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("Line {line} of {ta} {:016x}\r\n", mix(h ^ line)).as_bytes());
        line += 1;
    }
    out.truncate(len);
    out
}

/// How many recipients `ta` has: 1 to 5.
pub fn nrcpts(ta: TransactionId) -> u32 {
    1 + (mix(ta.counter() ^ 0xABCD) % 5) as u32
}

/// The envelope records of `ta` (transaction first, then recipients).
pub fn envelope(ta: TransactionId, size: u64) -> (Transaction, Vec<Recipient>) {
    let n = nrcpts(ta);
    let t = Transaction {
        id: ta,
        sender: format!("sender-{}@example.org", ta.counter()),
        params: "BODY=8BITMIME".into(),
        size,
        arrival_us: 0,
        nrcpts: n,
    };
    let rcpts = (0..n)
        .filter_map(|i| RecipientId::new(ta, i).ok())
        .map(|id| Recipient {
            id,
            address: format!("rcpt{}-{}@example.net", id.index(), ta.counter()),
            params: String::new(),
        })
        .collect();
    (t, rcpts)
}
