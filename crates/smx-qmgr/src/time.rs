//! Points in time for the pure modules of this crate.
//!
//! A [`Timestamp`] is a count of microseconds since the Unix epoch, the
//! unit smtps uses for arrival times (`arrival_us`). DEFEDB keeps whole
//! seconds; [`Timestamp::from_secs`] and [`Timestamp::as_secs`] convert.
//! All arithmetic saturates: a huge configured duration yields the end of
//! time, never an overflow panic.
//!
//! Only [`Timestamp::now`] reads the system clock; the scheduler, retry,
//! connection control and throttle code never call it, the process passes
//! `now` in, and tests pass a fake clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The largest representable time ("never").
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// `us` microseconds after the epoch.
    pub const fn from_micros(us: u64) -> Self {
        Timestamp(us)
    }

    /// `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn plus(self, d: Duration) -> Self {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(us))
    }

    /// `self - d`, saturating at the epoch.
    pub fn minus(self, d: Duration) -> Self {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(us))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// The system clock (for the process; the pure modules take `now`).
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_secs(10);
        assert_eq!(t.as_micros(), 10_000_000);
        assert_eq!(t.plus(Duration::from_millis(1500)).as_micros(), 11_500_000);
        assert_eq!(t.plus(Duration::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp::MAX);
        assert_eq!(t.since(Timestamp::from_secs(4)), Duration::from_secs(6));
        assert_eq!(t.minus(Duration::from_secs(4)), Timestamp::from_secs(6));
        assert_eq!(t.minus(Duration::MAX), Timestamp::ZERO);
        assert_eq!(Timestamp::from_secs(4).since(t), Duration::ZERO);
        assert_eq!(t.plus(Duration::from_micros(999_999)).as_secs(), 10);
        assert!(Timestamp::now() > Timestamp::from_secs(1_600_000_000));
    }
}
