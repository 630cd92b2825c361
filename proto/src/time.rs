//! Timestamps as both sides write them (the SDK's log lines, the
//! supervisor's rule status): RFC 3339 in UTC, without a date-time
//! dependency.

use std::fmt::Write as _;
use std::time::Duration;

/// How many digits of a second's fraction to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    Millis,
    Micros,
}

/// Appends `since_epoch` (time since 1970-01-01T00:00:00Z) to `out`, as
/// `2026-01-02T03:04:05.123Z` or with microseconds.
pub fn write_rfc3339(out: &mut String, since_epoch: Duration, fraction: Fraction) {
    let secs = since_epoch.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rest / 3_600, rest / 60 % 60, rest % 60);
    let _ = match fraction {
        Fraction::Millis => {
            write!(out, "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", since_epoch.subsec_millis())
        }
        Fraction::Micros => {
            write!(out, "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z", since_epoch.subsec_micros())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u64, fraction: Fraction) -> String {
        let mut s = String::new();
        write_rfc3339(&mut s, Duration::from_secs(secs) + Duration::from_micros(micros), fraction);
        s
    }

    #[test]
    fn dates_are_civil_dates_in_utc() {
        assert_eq!(at(0, 0, Fraction::Micros), "1970-01-01T00:00:00.000000Z");
        // A leap day in a century year divisible by 400.
        assert_eq!(at(951_782_400 + 3_723, 42, Fraction::Micros), "2000-02-29T01:02:03.000042Z");
        assert_eq!(at(1_767_225_599, 999_999, Fraction::Micros), "2025-12-31T23:59:59.999999Z");
        assert_eq!(at(1_767_225_599, 999_999, Fraction::Millis), "2025-12-31T23:59:59.999Z");
        // 2100 is not a leap year.
        assert_eq!(at(4_107_542_400, 0, Fraction::Millis), "2100-03-01T00:00:00.000Z");
    }
}
