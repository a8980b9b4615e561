//! Shared helpers of the DEFEDB integration tests.

#![allow(dead_code)]

use smx_store::defedb::DeferredRecipient;
use smx_store::envelope::{Recipient, Transaction};
use smx_store::id::{RecipientId, TransactionId};

/// Recipient id `index` of transaction `ta` (process 0).
pub fn rid(ta: u64, index: u32) -> RecipientId {
    RecipientId::new(TransactionId::new(ta, 0), index).expect("index in range")
}

/// A deferred recipient with the fields the indexes look at.
pub fn entry(
    id: RecipientId,
    next_try: u64,
    address: &str,
    sender: &str,
    arrival_us: u64,
) -> DeferredRecipient {
    DeferredRecipient {
        recipient: Recipient {
            id,
            address: address.to_owned(),
            params: "NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@y".to_owned(),
        },
        transaction: Transaction {
            id: id.transaction(),
            sender: sender.to_owned(),
            params: "SIZE=1000 BODY=8BITMIME".to_owned(),
            size: 1000,
            arrival_us,
            nrcpts: 3,
        },
        tries: 1,
        next_try,
        first_try: arrival_us / 1_000_000,
        last_try: arrival_us / 1_000_000,
        dsn_flags: 0,
        last_host: "mx.example.org [192.0.2.1]".to_owned(),
        last_reply: "451-4.7.1 Greylisted\r\n451 4.7.1 try again later".to_owned(),
    }
}

/// Ids in the order a walk visits them.
pub fn ids(entries: &[DeferredRecipient]) -> Vec<RecipientId> {
    entries.iter().map(DeferredRecipient::id).collect()
}
