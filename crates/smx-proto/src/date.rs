//! The date-time of message header fields (RFC 5322 3.3), as written in
//! `Received:`, `Date:` and DSN fields: `Sat, 21 Nov 2026 09:45:00 +0000`,
//! always UTC, the day of the month with two digits.

/// Formats `secs` (seconds since the Unix epoch) as an RFC 5322 date-time
/// in UTC.
pub fn rfc5322(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        // 1970-01-01 was a Thursday.
        DAYS[(days % 7) as usize],
        d,
        MONTHS[((m + 11) % 12) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian calendar (the era-based conversion of 400-year cycles).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322(1_795_254_300), "Sat, 21 Nov 2026 09:45:00 +0000");
        assert_eq!(rfc5322(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 +0000");
    }

    proptest! {
        /// Any time up to the year 9999 formats without a panic, with a
        /// fixed shape.
        #[test]
        fn never_panics(secs in 0u64..253_402_300_800) {
            let s = rfc5322(secs);
            prop_assert_eq!(s.len(), 31);
            prop_assert!(s.ends_with(" +0000"));
        }
    }
}
