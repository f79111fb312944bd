//! A line's `timestamp`: UTC, RFC 3339 with microseconds (`2026-11-27T23:40:01.512345Z`),
//! the text `tracing-subscriber`'s clock wrote, built from digits rather than through
//! `core::fmt` (which cost more than the rest of a line).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Writes the time now.
pub(super) fn write_now(out: &mut Vec<u8>) {
    write(out, SystemTime::now());
}

/// Writes `time`; a clock before 1970 (broken) is written as 1970's first instant.
fn write(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_date(seconds / DAY);
    let of_day = seconds % DAY;
    if year > 9999 {
        out.push(b'+');
        digits(out, year, decimal_width(year));
    } else {
        digits(out, year, 4);
    }
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, of_day / 3600, 2);
    out.push(b':');
    digits(out, of_day / 60 % 60, 2);
    out.push(b':');
    digits(out, of_day % 60, 2);
    out.push(b'.');
    digits(out, u64::from(since.subsec_micros()), 6);
    out.push(b'Z');
}

/// The (year, month, day) of the proleptic Gregorian calendar `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`, in eras of 400 years from 0000-03-01).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468;
    let era = days / 146_097;
    let of_era = days % 146_097;
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_based = (5 * of_year + 2) / 153;
    let day = of_year - (153 * march_based + 2) / 5 + 1;
    let month = if march_based < 10 {
        march_based + 3
    } else {
        march_based - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// How many decimal digits `value` has.
fn decimal_width(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Writes the last `width` decimal digits of `value`, zero-padded.
fn digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn written(time: SystemTime) -> String {
        let mut out = Vec::new();
        write(&mut out, time);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn times_are_written_as_rfc_3339_utc_with_microseconds() {
        let at = |seconds: u64, nanos: u32| UNIX_EPOCH + Duration::new(seconds, nanos);
        assert_eq!(written(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(written(at(951_782_400, 999)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            written(at(1_795_822_801, 512_345_678)),
            "2026-11-27T23:40:01.512345Z"
        );
        assert_eq!(
            written(at(253_402_300_799, 999_999_999)),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            written(at(253_402_300_800, 0)),
            "+10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            written(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn every_day_of_four_centuries_agrees_with_jiff() {
        // Every day from 1970 to 2370 (leap years, century rules), at a time of day that
        // moves, checked against an independent calendar.
        for day in 0..146_097u64 {
            let seconds = day * DAY + (day * 7919) % DAY;
            let micros = (day * 104_729) % 1_000_000;
            let time = UNIX_EPOCH + Duration::from_micros(seconds * 1_000_000 + micros);
            let expected = jiff::Timestamp::try_from(time)
                .unwrap()
                .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
                .to_string();
            assert_eq!(written(time), expected);
        }
    }
}
