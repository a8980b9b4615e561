//! Retry timing for deferred recipients (seed 3.8 items 13-16, the ZMailer
//! scheduler's retry sequences of seed 003).
//!
//! After a temporary failure qmgr writes the recipient to DEFEDB with a
//! `next_try` computed here; after a permanent failure, or when the
//! recipient has been queued too long, it bounces. The rules:
//!
//! 1. A permanent failure bounces at once ([`Decision::Bounce`] with
//!    [`BounceReason::Permanent`]).
//! 2. A recipient whose transaction arrived `queue_return_timeout` or more
//!    ago bounces ([`BounceReason::Expired`]), however the attempt failed.
//! 3. Otherwise the next try is `now + delay(tries)`, where `tries` counts
//!    the attempts made so far including the one that just failed (at
//!    least 1). Without a retry sequence the delay grows exponentially:
//!    `retry_min_delay * 2^(tries-1)`. With a ZMailer-style sequence of
//!    factors (`"1 1 2 3 5 8 13 21 34"`) the delay is `retry_min_delay *
//!    factor[tries-1]`; past the end of the sequence ZMailer restarts at a
//!    random point in the middle, here (to stay deterministic and testable)
//!    the second half of the sequence is cycled. Either way the delay is
//!    clamped to `[retry_min_delay, retry_max_delay]`.
//! 4. The next try is never later than the expiry time, so a recipient gets
//!    a last attempt at `arrival + queue_return_timeout` and bounces on time
//!    if that attempt fails too.
//! 5. A delay DSN ("still trying") is due once: when the transaction
//!    arrived `queue_delay_timeout` or more ago, none has been sent for the
//!    recipient (DEFEDB flag `DELAY_SENT`), and `queue_delay_timeout` is
//!    smaller than `queue_return_timeout` (a larger value turns delay DSNs
//!    off, as the seed documents). Whether the sender asked for it (NOTIFY)
//!    is decided by [`crate::dsn`].
//!
//! [`RetryPolicy::record_attempt`] applies these rules to a DEFEDB entry
//! (`smx_store::defedb::DeferredRecipient`): it counts the attempt, keeps
//! the last host and reply (cut to the store's limits), sets the DSN flags
//! (`DELAY_SENT` when a delay DSN is due, `FAILURE_PENDING` on a bounce,
//! `IS_BOUNCE` for a null sender) and says what to write.
//!
//! Hosts that fail are backed off with the same exponential rule
//! ([`backoff`]), used by the scheduler's connection cache.
//!
//! All arithmetic saturates; no input makes these functions panic.

use crate::time::Timestamp;
use smx_conf::model::qmgr::QmgrConfig;
use smx_store::defedb::{DeferredRecipient, dsn};
use smx_store::envelope::{MAX_HOST, MAX_REPLY, Recipient, Transaction};
use std::time::Duration;

/// Longest retry sequence accepted.
pub const MAX_SEQUENCE: usize = 64;
/// Largest factor in a retry sequence.
pub const MAX_FACTOR: u32 = 100_000;

/// `min * 2^(n-1)` clamped to `[min, max]` (`n` = consecutive failures,
/// 0 counts as 1).
pub fn backoff(min: Duration, max: Duration, n: u32) -> Duration {
    // 2^31 times any non-zero minimum exceeds every sensible maximum.
    let factor = 1u32 << n.saturating_sub(1).min(31);
    min.saturating_mul(factor).clamp(min, max.max(min))
}

/// A ZMailer-style sequence of factors of `retry_min_delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySequence(Vec<u32>);

/// Why a retry sequence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The sequence has no factors.
    #[error("empty retry sequence")]
    Empty,
    /// More than [`MAX_SEQUENCE`] factors.
    #[error("retry sequence longer than {MAX_SEQUENCE} factors")]
    TooLong,
    /// A factor is not a number from 1 to [`MAX_FACTOR`].
    #[error("retry factor {0:?} is not a number from 1 to {MAX_FACTOR}")]
    BadFactor(String),
}

impl RetrySequence {
    /// Parses blank-separated factors, e.g. `"1 1 2 3 5 8 13 21 34"`.
    pub fn parse(text: &str) -> Result<Self, SequenceError> {
        let mut v = Vec::new();
        for w in text.split_whitespace() {
            if v.len() >= MAX_SEQUENCE {
                return Err(SequenceError::TooLong);
            }
            let f: u32 = w
                .parse()
                .ok()
                .filter(|f| (1..=MAX_FACTOR).contains(f))
                .ok_or_else(|| SequenceError::BadFactor(w.to_string()))?;
            v.push(f);
        }
        if v.is_empty() {
            return Err(SequenceError::Empty);
        }
        Ok(RetrySequence(v))
    }

    /// The factor for the `tries`-th failed attempt (1-based).
    pub fn factor(&self, tries: u32) -> u32 {
        let len = self.0.len();
        let i = tries.saturating_sub(1) as usize;
        let idx = if i < len {
            i
        } else {
            let mid = len / 2;
            let span = len - mid;
            mid + (i - len) % span
        };
        self.0.get(idx).copied().unwrap_or(1)
    }
}

/// The retry timing options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Shortest time between two attempts (`retry_min_delay`).
    pub min_delay: Duration,
    /// Longest time between two attempts (`retry_max_delay`).
    pub max_delay: Duration,
    /// Optional ZMailer-style sequence; `None`: exponential back-off.
    pub sequence: Option<RetrySequence>,
    /// Maximum time in the queue (`queue_return_timeout`).
    pub return_timeout: Duration,
    /// Age at which a delay DSN is sent (`queue_delay_timeout`).
    pub delay_timeout: Duration,
}

/// What happened to a delivery attempt, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// When the transaction arrived.
    pub arrival: Timestamp,
    /// Attempts made so far, including the one that just failed.
    pub tries: u32,
    /// Whether a delay DSN has been sent already.
    pub delay_dsn_sent: bool,
    /// Whether the failure was permanent (5xx).
    pub permanent: bool,
}

/// Why a recipient bounces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceReason {
    /// The failure was permanent.
    Permanent,
    /// The recipient was queued for `queue_return_timeout`.
    Expired,
}

/// What to do with a recipient after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep it in DEFEDB and try again at `next_try`.
    Retry {
        /// The next attempt.
        next_try: Timestamp,
        /// Whether a delay DSN is due now (rule 5).
        delay_dsn: bool,
    },
    /// Give up and send a failure DSN.
    Bounce {
        /// Why.
        reason: BounceReason,
    },
}

impl RetryPolicy {
    /// The policy from the `qmgr` configuration (exponential back-off; set
    /// [`RetryPolicy::sequence`] for a ZMailer sequence).
    pub fn from_conf(c: &QmgrConfig) -> Self {
        RetryPolicy {
            min_delay: c.retry_min_delay.0,
            max_delay: c.retry_max_delay.0,
            sequence: None,
            return_timeout: c.queue_return_timeout.0,
            delay_timeout: c.queue_delay_timeout.0,
        }
    }

    /// The delay after the `tries`-th failed attempt (rule 3).
    pub fn delay(&self, tries: u32) -> Duration {
        let max = self.max_delay.max(self.min_delay);
        match &self.sequence {
            None => backoff(self.min_delay, max, tries),
            Some(s) => self
                .min_delay
                .saturating_mul(s.factor(tries))
                .clamp(self.min_delay, max),
        }
    }

    /// When a transaction that arrived at `arrival` expires.
    pub fn expiry(&self, arrival: Timestamp) -> Timestamp {
        arrival.plus(self.return_timeout)
    }

    /// Whether a recipient of a transaction that arrived at `arrival` has
    /// been queued too long (rule 2).
    pub fn is_expired(&self, arrival: Timestamp, now: Timestamp) -> bool {
        now >= self.expiry(arrival)
    }

    /// Whether a delay DSN is due (rule 5).
    pub fn delay_dsn_due(&self, arrival: Timestamp, now: Timestamp, already_sent: bool) -> bool {
        !already_sent
            && self.delay_timeout < self.return_timeout
            && now >= arrival.plus(self.delay_timeout)
    }

    /// Decides what follows a failed attempt at `now` (rules 1-5).
    pub fn decide(&self, a: Attempt, now: Timestamp) -> Decision {
        if a.permanent {
            return Decision::Bounce {
                reason: BounceReason::Permanent,
            };
        }
        if self.is_expired(a.arrival, now) {
            return Decision::Bounce {
                reason: BounceReason::Expired,
            };
        }
        let next_try = now.plus(self.delay(a.tries)).min(self.expiry(a.arrival));
        Decision::Retry {
            next_try,
            delay_dsn: self.delay_dsn_due(a.arrival, now, a.delay_dsn_sent),
        }
    }
}

/// The result of one delivery attempt for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult<'a> {
    /// The final server accepted it.
    Delivered,
    /// A temporary failure (4xx, connection trouble, timeout).
    TempFail {
        /// The host that answered (name and address text).
        host: &'a str,
        /// Its reply, lines joined by CRLF (empty if none).
        reply: &'a str,
    },
    /// A permanent failure (5xx).
    PermFail {
        /// The host that answered.
        host: &'a str,
        /// Its reply.
        reply: &'a str,
    },
}

/// What to write after an attempt ([`RetryPolicy::record_attempt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Delivered: remove the DEFEDB entry (if any), log `Delivered`.
    Delivered,
    /// Put this entry into DEFEDB (then log `Deferred` in IBDB if it came
    /// from there); if `delay_dsn`, also send a delay DSN (the entry has
    /// `DELAY_SENT` set already).
    Defer {
        /// The updated entry.
        entry: DeferredRecipient,
        /// Whether a delay DSN is due.
        delay_dsn: bool,
    },
    /// Put this entry (flag `FAILURE_PENDING`) into DEFEDB, then generate
    /// the failure DSN and log `Bounced`.
    Bounce {
        /// The updated entry.
        entry: DeferredRecipient,
        /// Why.
        reason: BounceReason,
    },
}

/// A DEFEDB entry for a recipient that has not been tried yet.
pub fn new_entry(transaction: &Transaction, recipient: &Recipient) -> DeferredRecipient {
    DeferredRecipient {
        recipient: recipient.clone(),
        transaction: transaction.clone(),
        tries: 0,
        next_try: 0,
        first_try: 0,
        last_try: 0,
        dsn_flags: if transaction.sender.is_empty() {
            dsn::IS_BOUNCE
        } else {
            0
        },
        last_host: String::new(),
        last_reply: String::new(),
    }
}

impl RetryPolicy {
    /// Applies the rules to `entry` after an attempt at `now`.
    pub fn record_attempt(
        &self,
        mut entry: DeferredRecipient,
        result: AttemptResult<'_>,
        now: Timestamp,
    ) -> Update {
        let (host, reply, permanent) = match result {
            AttemptResult::Delivered => return Update::Delivered,
            AttemptResult::TempFail { host, reply } => (host, reply, false),
            AttemptResult::PermFail { host, reply } => (host, reply, true),
        };
        let now_secs = now.as_secs();
        entry.tries = entry.tries.saturating_add(1);
        if entry.first_try == 0 {
            entry.first_try = now_secs;
        }
        entry.last_try = now_secs;
        entry.last_host = cut(host, MAX_HOST);
        entry.last_reply = cut(reply, MAX_REPLY);
        if entry.transaction.sender.is_empty() {
            entry.dsn_flags |= dsn::IS_BOUNCE;
        }
        let attempt = Attempt {
            arrival: Timestamp::from_micros(entry.transaction.arrival_us),
            tries: entry.tries,
            delay_dsn_sent: entry.dsn_flags & dsn::DELAY_SENT != 0,
            permanent,
        };
        match self.decide(attempt, now) {
            Decision::Retry {
                next_try,
                delay_dsn,
            } => {
                // Round up so the stored second is never before the
                // computed time.
                entry.next_try = next_try.as_micros().div_ceil(1_000_000);
                if delay_dsn {
                    entry.dsn_flags |= dsn::DELAY_SENT;
                }
                Update::Defer { entry, delay_dsn }
            }
            Decision::Bounce { reason } => {
                entry.dsn_flags |= dsn::FAILURE_PENDING;
                entry.next_try = now_secs;
                Update::Bounce { entry, reason }
            }
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use smx_store::id::{RecipientId, TransactionId};

    const MIN: Duration = Duration::from_secs(300);
    const MAX: Duration = Duration::from_secs(4 * 3600);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            min_delay: MIN,
            max_delay: MAX,
            sequence: None,
            return_timeout: Duration::from_secs(5 * 86400),
            delay_timeout: Duration::from_secs(4 * 3600),
        }
    }

    #[test]
    fn exponential_backoff_table() {
        let p = policy();
        let cases = [
            (0, 300),
            (1, 300),
            (2, 600),
            (3, 1200),
            (4, 2400),
            (6, 9600),
            (7, 14400),
            (50, 14400),
            (u32::MAX, 14400),
        ];
        for (tries, want) in cases {
            assert_eq!(p.delay(tries), Duration::from_secs(want), "tries {tries}");
        }
    }

    #[test]
    fn zmailer_sequence_table() {
        let mut p = policy();
        p.max_delay = Duration::from_secs(100 * 300);
        p.sequence = Some(RetrySequence::parse("1 1 2 3 5 8 13 21 34").unwrap());
        let want = [1, 1, 2, 3, 5, 8, 13, 21, 34, 5, 8, 13, 21, 34, 5];
        for (i, f) in want.iter().enumerate() {
            assert_eq!(p.delay(i as u32 + 1), MIN * *f, "try {}", i + 1);
        }
        p.max_delay = Duration::from_secs(600);
        assert_eq!(p.delay(9), Duration::from_secs(600));
        assert_eq!(RetrySequence::parse(""), Err(SequenceError::Empty));
        assert_eq!(
            RetrySequence::parse("1 0"),
            Err(SequenceError::BadFactor("0".into()))
        );
        assert_eq!(
            RetrySequence::parse("1 x"),
            Err(SequenceError::BadFactor("x".into()))
        );
        assert_eq!(
            RetrySequence::parse(&"1 ".repeat(65)),
            Err(SequenceError::TooLong)
        );
        assert_eq!(RetrySequence::parse("7").unwrap().factor(100), 7);
    }

    #[test]
    fn decisions() {
        let p = policy();
        let arrival = Timestamp::from_secs(1_000_000);
        let a = Attempt {
            arrival,
            tries: 1,
            delay_dsn_sent: false,
            permanent: false,
        };
        // Early temporary failure: retry after min delay, no delay DSN.
        let now = arrival.plus(Duration::from_secs(10));
        assert_eq!(
            p.decide(a, now),
            Decision::Retry {
                next_try: now.plus(MIN),
                delay_dsn: false
            }
        );
        // Permanent failure bounces.
        assert_eq!(
            p.decide(
                Attempt {
                    permanent: true,
                    ..a
                },
                now
            ),
            Decision::Bounce {
                reason: BounceReason::Permanent
            }
        );
        // After queue_delay_timeout: delay DSN once.
        let now = arrival.plus(Duration::from_secs(5 * 3600));
        assert!(matches!(
            p.decide(Attempt { tries: 5, ..a }, now),
            Decision::Retry {
                delay_dsn: true,
                ..
            }
        ));
        assert!(matches!(
            p.decide(
                Attempt {
                    tries: 5,
                    delay_dsn_sent: true,
                    ..a
                },
                now
            ),
            Decision::Retry {
                delay_dsn: false,
                ..
            }
        ));
        // Close to expiry: the next try is clamped to the expiry time.
        let now = arrival.plus(Duration::from_secs(5 * 86400 - 60));
        assert_eq!(
            p.decide(Attempt { tries: 30, ..a }, now),
            Decision::Retry {
                next_try: p.expiry(arrival),
                delay_dsn: true
            }
        );
        // At expiry: bounce.
        assert_eq!(
            p.decide(a, p.expiry(arrival)),
            Decision::Bounce {
                reason: BounceReason::Expired
            }
        );
        // queue_delay_timeout >= queue_return_timeout turns delay DSNs off.
        let mut off = policy();
        off.delay_timeout = off.return_timeout;
        assert!(!off.delay_dsn_due(arrival, arrival.plus(Duration::from_secs(86400 * 4)), false));
    }

    #[test]
    fn from_conf_uses_options() {
        let c = QmgrConfig::default();
        let p = RetryPolicy::from_conf(&c);
        assert_eq!(p.min_delay, c.retry_min_delay.0);
        assert_eq!(p.max_delay, c.retry_max_delay.0);
        assert_eq!(p.return_timeout, c.queue_return_timeout.0);
        assert_eq!(p.delay_timeout, c.queue_delay_timeout.0);
    }

    #[test]
    fn record_attempt_updates_entry() {
        let p = policy();
        let ta = Transaction {
            id: TransactionId::new(5, 0),
            sender: "a@a.test".into(),
            params: String::new(),
            size: 1,
            arrival_us: 1_000_000_000_000,
            nrcpts: 1,
        };
        let rc = Recipient {
            id: RecipientId::new(ta.id, 0).unwrap(),
            address: "b@b.test".into(),
            params: String::new(),
        };
        let arrival = Timestamp::from_micros(ta.arrival_us);
        let e = new_entry(&ta, &rc);
        assert_eq!(e.dsn_flags, 0);
        let now = arrival.plus(Duration::from_millis(10_500));
        let long = "é".repeat(MAX_REPLY);
        let Update::Defer { entry, delay_dsn } = p.record_attempt(
            e,
            AttemptResult::TempFail {
                host: "mx.b.test [192.0.2.1]",
                reply: &long,
            },
            now,
        ) else {
            panic!("expected defer")
        };
        assert!(!delay_dsn);
        assert_eq!(entry.tries, 1);
        assert_eq!(entry.first_try, 1_000_010);
        assert_eq!(entry.last_try, 1_000_010);
        assert_eq!(entry.next_try, 1_000_000 + 11 + 300, "rounded up");
        assert!(entry.last_reply.len() <= MAX_REPLY && entry.last_reply.len() >= MAX_REPLY - 1);
        assert_eq!(entry.last_host, "mx.b.test [192.0.2.1]");
        // Five hours later: delay DSN once.
        let later = arrival.plus(Duration::from_secs(5 * 3600));
        let Update::Defer { entry, delay_dsn } = p.record_attempt(
            entry,
            AttemptResult::TempFail {
                host: "h",
                reply: "451 x",
            },
            later,
        ) else {
            panic!("expected defer")
        };
        assert!(delay_dsn);
        assert_eq!(entry.dsn_flags & dsn::DELAY_SENT, dsn::DELAY_SENT);
        assert_eq!(entry.first_try, 1_000_010);
        let Update::Defer { entry, delay_dsn } = p.record_attempt(
            entry,
            AttemptResult::TempFail {
                host: "h",
                reply: "451 x",
            },
            later,
        ) else {
            panic!("expected defer")
        };
        assert!(!delay_dsn);
        // Permanent failure: bounce pending.
        let Update::Bounce { entry, reason } = p.record_attempt(
            entry,
            AttemptResult::PermFail {
                host: "h",
                reply: "550 no",
            },
            later,
        ) else {
            panic!("expected bounce")
        };
        assert_eq!(reason, BounceReason::Permanent);
        assert_ne!(entry.dsn_flags & dsn::FAILURE_PENDING, 0);
        assert_eq!(entry.tries, 4);
        // Expired.
        let e = new_entry(
            &Transaction {
                sender: String::new(),
                ..ta.clone()
            },
            &rc,
        );
        assert_eq!(e.dsn_flags, dsn::IS_BOUNCE);
        let u = p.record_attempt(
            e.clone(),
            AttemptResult::TempFail {
                host: "",
                reply: "",
            },
            p.expiry(arrival),
        );
        assert!(matches!(
            u,
            Update::Bounce {
                reason: BounceReason::Expired,
                ..
            }
        ));
        assert_eq!(
            p.record_attempt(e, AttemptResult::Delivered, now),
            Update::Delivered
        );
    }

    proptest! {
        #[test]
        fn next_try_within_bounds(
            min in 1u64..10_000, extra in 0u64..100_000, tries in 0u32..200,
            age in 0u64..1_000_000, ret in 1u64..2_000_000, seq in proptest::option::of(proptest::collection::vec(1u32..100, 1..12)),
        ) {
            let p = RetryPolicy {
                min_delay: Duration::from_secs(min),
                max_delay: Duration::from_secs(min + extra),
                sequence: seq.map(RetrySequence),
                return_timeout: Duration::from_secs(ret),
                delay_timeout: Duration::from_secs(ret / 2),
            };
            let arrival = Timestamp::from_secs(1_700_000_000);
            let now = arrival.plus(Duration::from_secs(age));
            let d = p.delay(tries);
            prop_assert!(d >= p.min_delay && d <= p.max_delay);
            match p.decide(Attempt { arrival, tries, delay_dsn_sent: false, permanent: false }, now) {
                Decision::Retry { next_try, .. } => {
                    prop_assert!(now < p.expiry(arrival));
                    prop_assert!(next_try > now);
                    prop_assert!(next_try <= now.plus(p.max_delay));
                    prop_assert!(next_try == now.plus(d) || next_try == p.expiry(arrival));
                    prop_assert!(next_try <= p.expiry(arrival));
                }
                Decision::Bounce { reason } => {
                    prop_assert_eq!(reason, BounceReason::Expired);
                    prop_assert!(now >= p.expiry(arrival));
                }
            }
        }

        #[test]
        fn backoff_monotonic(min in 1u64..1000, max in 1u64..100_000, n in 0u32..100) {
            let (min, max) = (Duration::from_secs(min), Duration::from_secs(max));
            prop_assert!(backoff(min, max, n) <= backoff(min, max, n + 1));
        }
    }
}
