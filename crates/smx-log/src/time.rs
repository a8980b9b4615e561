//! Timestamp formatting for log line headers, without a date crate.
//!
//! Converts Unix seconds to the proleptic Gregorian calendar in UTC with
//! Howard Hinnant's `civil_from_days` algorithm, and prints RFC 3339
//! (`2026-11-21T07:05:00Z`, for stderr and files) or the RFC 3164 syslog
//! form (`Nov 21 07:05:00`). Syslog timestamps are in UTC too: smx has no
//! time zone database, and common syslog daemons (rsyslog's imuxsock,
//! journald) stamp local-socket messages with their own reception time
//! anyway.
//!
//! Nothing here can fail; the clock is read by the caller.

use std::time::{SystemTime, UNIX_EPOCH};

/// Current Unix time in seconds; 0 if the clock is before 1970.
pub(crate) fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    let c = Civil::from_unix(unix_secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `Mmm dd hh:mm:ss`, day padded with a space, as in RFC 3164.
pub(crate) fn rfc3164(unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = Civil::from_unix(unix_secs);
    let month = MONTHS
        .get(usize::from(c.month).wrapping_sub(1))
        .copied()
        .unwrap_or("???");
    format!(
        "{month} {:2} {:02}:{:02}:{:02}",
        c.day, c.hour, c.minute, c.second
    )
}

/// A UTC calendar date and time of day.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Civil {
    fn from_unix(secs: u64) -> Civil {
        // u64::MAX / 86400 < 2^48, so the day count fits an i64.
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: small(rem / 3600),
            minute: small(rem / 60 % 60),
            second: small(rem % 60),
        }
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31).
/// <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, small_i(month), small_i(day))
}

/// Narrows a value the algorithm keeps below 256.
fn small(v: u64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

fn small_i(v: i64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        // Expected values from `date -u -d @SECS`.
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_795_244_700, "2026-11-21T07:05:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(secs), want, "{secs}");
        }
    }

    #[test]
    fn rfc3164_table() {
        let cases = [
            (0, "Jan  1 00:00:00"),
            (951_782_400, "Feb 29 00:00:00"),
            (1_795_244_700, "Nov 21 07:05:00"),
            (4_102_444_799, "Dec 31 23:59:59"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3164(secs), want, "{secs}");
        }
    }

    #[test]
    fn days_are_contiguous() {
        // Walking day by day from 1970 to 2100 never skips or repeats a date.
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for d in 1..47_482 {
            let cur = civil_from_days(d);
            let next_in_month = (prev.0, prev.1, prev.2 + 1);
            let next_month = if prev.1 == 12 {
                (prev.0 + 1, 1, 1)
            } else {
                (prev.0, prev.1 + 1, 1)
            };
            assert!(
                cur == next_in_month || cur == next_month,
                "{prev:?} -> {cur:?}"
            );
            prev = cur;
        }
        assert_eq!(prev, (2099, 12, 31));
    }

    #[test]
    fn huge_times_do_not_panic() {
        let _ = rfc3339(u64::MAX);
        let _ = rfc3164(u64::MAX);
    }
}
