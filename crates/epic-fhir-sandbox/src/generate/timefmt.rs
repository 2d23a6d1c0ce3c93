//! Local clinic time zones and FHIR date/time formatting for the generator.
//!
//! Timestamps are written by hand rather than with `time`'s RFC 3339 formatter so that the
//! exact shape is under our control: seconds always present, no fractional part, `Z` for UTC
//! and `±hh:mm` otherwise, as Epic writes them.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

/// A United States time zone a sandbox region lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zone {
    /// US Eastern time (UTC-5, daylight UTC-4).
    Eastern,
    /// US Central time (UTC-6, daylight UTC-5).
    Central,
    /// US Mountain time (UTC-7, daylight UTC-6).
    Mountain,
    /// Arizona: Mountain standard time all year, no daylight saving.
    Arizona,
    /// US Pacific time (UTC-8, daylight UTC-7).
    Pacific,
}

impl Zone {
    fn standard_hours(self) -> i8 {
        match self {
            Self::Eastern => -5,
            Self::Central => -6,
            Self::Mountain | Self::Arizona => -7,
            Self::Pacific => -8,
        }
    }

    /// The UTC offset in force on a local calendar date.
    pub(super) fn offset_on(self, date: Date) -> UtcOffset {
        let dst = !matches!(self, Self::Arizona) && in_us_daylight_saving(date);
        let hours = self.standard_hours() + i8::from(dst);
        UtcOffset::from_hms(hours, 0, 0).unwrap_or(UtcOffset::UTC)
    }

    /// A local wall-clock time on a date, with that day's offset.
    pub(super) fn at(self, date: Date, hour: u8, minute: u8, second: u8) -> OffsetDateTime {
        let time = Time::from_hms(hour, minute, second).unwrap_or(Time::MIDNIGHT);
        PrimitiveDateTime::new(date, time).assume_offset(self.offset_on(date))
    }

    /// The same instant expressed in the offset in force at that moment.
    ///
    /// Adding a duration keeps the original offset; an inpatient stay that crosses a daylight
    /// saving change must show the new offset after it, as a real clinical system would.
    pub(super) fn localize(self, instant: OffsetDateTime) -> OffsetDateTime {
        let standard = UtcOffset::from_hms(self.standard_hours(), 0, 0).unwrap_or(UtcOffset::UTC);
        let local_date = instant.to_offset(standard).date();
        instant.to_offset(self.offset_on(local_date))
    }
}

/// Whether US daylight saving time applies on a date (the rules since 1987, whole days).
fn in_us_daylight_saving(date: Date) -> bool {
    let year = date.year();
    let (start, end) = if year >= 2007 {
        (
            nth_sunday(year, Month::March, 2),
            nth_sunday(year, Month::November, 1),
        )
    } else {
        (
            nth_sunday(year, Month::April, 1),
            last_sunday_of_october(year),
        )
    };
    match (start, end) {
        (Some(start), Some(end)) => date >= start && date < end,
        _ => false,
    }
}

fn nth_sunday(year: i32, month: Month, n: u8) -> Option<Date> {
    let first = Date::from_calendar_date(year, month, 1).ok()?;
    let to_sunday = (7 - first.weekday().number_days_from_sunday()) % 7;
    first.checked_add(Duration::days(
        i64::from(to_sunday) + 7 * (i64::from(n) - 1),
    ))
}

fn last_sunday_of_october(year: i32) -> Option<Date> {
    let last = Date::from_calendar_date(year, Month::October, 31).ok()?;
    last.checked_sub(Duration::days(i64::from(
        last.weekday().number_days_from_sunday(),
    )))
}

/// Moves a weekend date back to the Friday before, for clinic visits that happen on weekdays.
pub(super) fn weekday_on_or_before(date: Date) -> Date {
    let back = match date.weekday() {
        Weekday::Saturday => 1,
        Weekday::Sunday => 2,
        _ => 0,
    };
    date.checked_sub(Duration::days(back)).unwrap_or(date)
}

/// Adds whole days, saturating at the calendar's ends instead of overflowing.
pub(super) fn add_days(date: Date, days: i64) -> Date {
    date.checked_add(Duration::days(days))
        .unwrap_or(if days < 0 { Date::MIN } else { Date::MAX })
}

/// The date `years` calendar years before or after `date` (29 February becomes 28 February).
pub(super) fn add_years(date: Date, years: i32) -> Date {
    let year = date.year().saturating_add(years);
    Date::from_calendar_date(year, date.month(), date.day())
        .or_else(|_| Date::from_calendar_date(year, date.month(), 28))
        .unwrap_or(date)
}

/// Age in whole years on a date.
pub(super) fn age_on(birth: Date, on: Date) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month() as u8, on.day()) < (birth.month() as u8, birth.day()) {
        age -= 1;
    }
    age
}

/// Age in fractional years on a date (365.25-day years; for growth curves, not for display).
pub(super) fn age_years(birth: Date, on: Date) -> f64 {
    (on - birth).whole_days() as f64 / 365.25
}

/// `YYYY-MM-DD`.
pub(super) fn date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// `YYYY-MM`: a dateTime with month precision.
pub(super) fn year_month(d: Date) -> String {
    format!("{:04}-{:02}", d.year(), d.month() as u8)
}

/// `YYYY`: a dateTime with year precision.
pub(super) fn year(d: Date) -> String {
    format!("{:04}", d.year())
}

/// A full instant in its own offset: `2019-03-04T10:15:00-05:00` (or `...Z` at UTC).
pub(super) fn instant(dt: OffsetDateTime) -> String {
    let offset = dt.offset();
    let zone = if offset.is_utc() {
        "Z".to_owned()
    } else {
        let sign = if offset.is_negative() { '-' } else { '+' };
        format!(
            "{sign}{:02}:{:02}",
            offset.whole_hours().unsigned_abs(),
            offset.minutes_past_hour().unsigned_abs()
        )
    };
    format!(
        "{}T{:02}:{:02}:{:02}{zone}",
        date(dt.date()),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// A full instant converted to UTC: `2019-03-04T15:15:00Z`.
pub(super) fn utc(dt: OffsetDateTime) -> String {
    instant(dt.to_offset(UtcOffset::UTC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn daylight_saving_rules() {
        // 2024: 10 March to 3 November; 2006: 2 April to 29 October.
        assert!(!in_us_daylight_saving(date!(2024 - 03 - 09)));
        assert!(in_us_daylight_saving(date!(2024 - 03 - 10)));
        assert!(in_us_daylight_saving(date!(2024 - 11 - 02)));
        assert!(!in_us_daylight_saving(date!(2024 - 11 - 03)));
        assert!(!in_us_daylight_saving(date!(2006 - 04 - 01)));
        assert!(in_us_daylight_saving(date!(2006 - 04 - 02)));
        assert!(!in_us_daylight_saving(date!(2006 - 10 - 29)));
        assert_eq!(
            Zone::Arizona.offset_on(date!(2024 - 07 - 01)).whole_hours(),
            -7
        );
        assert_eq!(
            Zone::Central.offset_on(date!(2024 - 07 - 01)).whole_hours(),
            -5
        );
        assert_eq!(
            Zone::Central.offset_on(date!(2024 - 01 - 01)).whole_hours(),
            -6
        );
    }

    #[test]
    fn formats() {
        let local = Zone::Eastern.at(date!(2019 - 03 - 04), 10, 15, 0);
        assert_eq!(instant(local), "2019-03-04T10:15:00-05:00");
        assert_eq!(utc(local), "2019-03-04T15:15:00Z");
        assert_eq!(year_month(date!(2019 - 03 - 04)), "2019-03");
        assert_eq!(year(date!(2019 - 03 - 04)), "2019");
        let shifted = Zone::Central.localize(datetime!(2024-03-10 12:00 -6));
        assert_eq!(instant(shifted), "2024-03-10T13:00:00-05:00");
    }

    #[test]
    fn ages_and_weekdays() {
        assert_eq!(age_on(date!(1973 - 06 - 03), date!(2026 - 06 - 02)), 52);
        assert_eq!(age_on(date!(1973 - 06 - 03), date!(2026 - 06 - 03)), 53);
        assert_eq!(
            weekday_on_or_before(date!(2026 - 11 - 01)),
            date!(2026 - 10 - 30)
        );
        assert_eq!(add_years(date!(2024 - 02 - 29), 1), date!(2025 - 02 - 28));
    }
}
