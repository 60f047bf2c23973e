//! Calendar time in UTC from Unix seconds, without a date library (lock holders, report names).

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

impl UtcTime {
    /// The civil date of `secs` after 1970-01-01 00:00 UTC (Howard Hinnant's algorithm).
    pub fn from_unix(secs: i64) -> UtcTime {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime { year, month, day, hour: rem / 3600, minute: rem % 3600 / 60, second: rem % 60 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // 2026-03-04T05:06:07Z: month and day differ, so a swap shows.
        let t = UtcTime::from_unix(1_772_600_767);
        assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second), (2026, 3, 4, 5, 6, 7));
        let t = UtcTime::from_unix(951_782_400); // 2000-02-29, a leap day
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
        let t = UtcTime::from_unix(-1); // 1969-12-31T23:59:59Z
        assert_eq!((t.year, t.month, t.day, t.second), (1969, 12, 31, 59));
    }
}
