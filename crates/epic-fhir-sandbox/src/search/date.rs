//! FHIR date, dateTime and instant values as half-open time ranges, and the nine search
//! prefixes that compare them.
//!
//! Every value stands for the whole interval its precision covers: `2024` is
//! [2024-01-01T00:00Z, 2025-01-01T00:00Z), `2024-01-14T10:00` is one minute and
//! `2024-01-14T10:00:00.25` a hundredth of a second. Times are kept as microseconds since the
//! Unix epoch (UTC) in an `i64`, which covers the years 0001..=9999 that FHIR allows with
//! room to spare; finer fractions than microseconds are truncated. A value without a zone
//! is in the server's zone, which for the sandbox is UTC. An open Period end is represented
//! by `i64::MIN` or `i64::MAX`, so comparisons extend it to infinity without special cases.

/// Microseconds in one second.
const MICROS_PER_SECOND: i64 = 1_000_000;
/// Microseconds in one minute.
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
/// Microseconds in one hour.
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
/// Microseconds in one day.
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// A half-open interval `[lo, hi)` of microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DateRange {
    /// Inclusive lower bound; `i64::MIN` when the range is open below.
    pub(crate) lo: i64,
    /// Exclusive upper bound; `i64::MAX` when the range is open above.
    pub(crate) hi: i64,
}

impl DateRange {
    /// True when the two ranges share at least one instant.
    pub(crate) fn overlaps(self, other: DateRange) -> bool {
        self.lo < other.hi && other.lo < self.hi
    }

    /// True when `self` lies entirely inside `outer`.
    fn within(self, outer: DateRange) -> bool {
        outer.lo <= self.lo && self.hi <= outer.hi
    }
}

/// A comparison prefix of a date, number or quantity search value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// Equal (the default when no prefix is written).
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater than or equal.
    Ge,
    /// Less than or equal.
    Le,
    /// Starts after.
    Sa,
    /// Ends before.
    Eb,
    /// Approximately.
    Ap,
}

/// Splits an optional two-letter prefix off a date, number or quantity search value.
///
/// A value that starts with two ASCII letters must start with one of the nine prefixes;
/// anything else is an error rather than a silent `eq`, because a mistyped prefix would
/// otherwise produce a confusing "invalid date" message or, worse, a wrong match.
pub(crate) fn split_prefix(value: &str) -> Result<(Prefix, &str), String> {
    let bytes = value.as_bytes();
    if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || !bytes[1].is_ascii_alphabetic() {
        return Ok((Prefix::Eq, value));
    }
    let prefix = match &value[..2] {
        "eq" => Prefix::Eq,
        "ne" => Prefix::Ne,
        "gt" => Prefix::Gt,
        "lt" => Prefix::Lt,
        "ge" => Prefix::Ge,
        "le" => Prefix::Le,
        "sa" => Prefix::Sa,
        "eb" => Prefix::Eb,
        "ap" => Prefix::Ap,
        other => {
            return Err(format!(
                "unknown prefix `{other}` (expected one of eq, ne, gt, lt, ge, le, sa, eb, ap)"
            ));
        }
    };
    Ok((prefix, &value[2..]))
}

/// One date search value: a prefix and the range it compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DatePredicate {
    /// The comparison.
    pub(crate) prefix: Prefix,
    /// The search value's range; for `ap` it is already widened by the approximation margin.
    pub(crate) range: DateRange,
}

impl DatePredicate {
    /// Builds a predicate. For `ap` the search range is widened on both sides by a tenth of
    /// the distance between the search value and `now`, and by at least one day, following
    /// FHIR's recommendation ("10% of the gap between now and the date") while keeping
    /// searches near today useful.
    pub(crate) fn new(prefix: Prefix, range: DateRange, now: i64) -> Self {
        let range = if prefix == Prefix::Ap {
            let gap = now.saturating_sub(range.lo).saturating_abs();
            let margin = (gap / 10).max(MICROS_PER_DAY);
            DateRange {
                lo: range.lo.saturating_sub(margin),
                hi: range.hi.saturating_add(margin),
            }
        } else {
            range
        };
        DatePredicate { prefix, range }
    }

    /// True when a resource value's range satisfies this predicate, following the table of
    /// FHIR R4's search page (section 3.1.1.4.5) with S the search range and V the value:
    ///
    /// | prefix | rule |
    /// |---|---|
    /// | `eq` | S fully contains V |
    /// | `ne` | S does not fully contain V |
    /// | `gt` | V extends above S: `V.hi > S.hi` |
    /// | `lt` | V extends below S: `V.lo < S.lo` |
    /// | `ge` | `gt` or `eq` |
    /// | `le` | `lt` or `eq` |
    /// | `sa` | V starts at or after the end of S, with no overlap |
    /// | `eb` | V ends at or before the start of S, with no overlap |
    /// | `ap` | V overlaps S widened by the approximation margin |
    pub(crate) fn matches(&self, value: DateRange) -> bool {
        let search = self.range;
        match self.prefix {
            Prefix::Eq => value.within(search),
            Prefix::Ne => !value.within(search),
            Prefix::Gt => value.hi > search.hi,
            Prefix::Lt => value.lo < search.lo,
            Prefix::Ge => value.hi > search.hi || value.within(search),
            Prefix::Le => value.lo < search.lo || value.within(search),
            Prefix::Sa => value.lo >= search.hi,
            Prefix::Eb => value.hi <= search.lo,
            Prefix::Ap => value.overlaps(search),
        }
    }
}

/// Parses a FHIR date, dateTime or instant of any precision into the range it covers.
///
/// Accepted forms: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, and `YYYY-MM-DDThh:mm`, optionally with
/// `:ss` and a fraction `.f+`, optionally followed by `Z` or `±hh:mm` (no zone means UTC).
/// When `space_means_plus` is set a space may stand in for the `+` of a zone offset, because
/// an unencoded `+` in a query string arrives as a space after form decoding.
pub(crate) fn parse_date(text: &str, space_means_plus: bool) -> Result<DateRange, String> {
    let mut cursor = Cursor {
        bytes: text.as_bytes(),
        position: 0,
    };
    let year = cursor.number(4, "year")?;
    if year == 0 {
        return Err("year 0000 is not a valid FHIR year".to_owned());
    }
    if cursor.at_end() {
        return Ok(DateRange {
            lo: days_from_civil(year, 1, 1) * MICROS_PER_DAY,
            hi: days_from_civil(year + 1, 1, 1) * MICROS_PER_DAY,
        });
    }
    cursor.expect(b'-', "`-` after the year")?;
    let month = cursor.number(2, "month")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} is out of range"));
    }
    if cursor.at_end() {
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        return Ok(DateRange {
            lo: days_from_civil(year, month, 1) * MICROS_PER_DAY,
            hi: days_from_civil(next_year, next_month, 1) * MICROS_PER_DAY,
        });
    }
    cursor.expect(b'-', "`-` after the month")?;
    let day = cursor.number(2, "day")?;
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!(
            "day {day:02} does not exist in {year:04}-{month:02}"
        ));
    }
    let day_start = days_from_civil(year, month, day) * MICROS_PER_DAY;
    if cursor.at_end() {
        return Ok(DateRange {
            lo: day_start,
            hi: day_start + MICROS_PER_DAY,
        });
    }
    cursor.expect(b'T', "`T` before the time")?;
    let hour = cursor.number(2, "hour")?;
    if hour > 23 {
        return Err(format!("hour {hour:02} is out of range"));
    }
    cursor.expect(b':', "`:` after the hour")?;
    let minute = cursor.number(2, "minute")?;
    if minute > 59 {
        return Err(format!("minute {minute:02} is out of range"));
    }
    let mut offset_in_day = hour * MICROS_PER_HOUR + minute * MICROS_PER_MINUTE;
    let mut unit = MICROS_PER_MINUTE;
    if cursor.eat(b':') {
        let second = cursor.number(2, "second")?;
        if second > 59 {
            return Err(format!("second {second:02} is out of range"));
        }
        offset_in_day += second * MICROS_PER_SECOND;
        unit = MICROS_PER_SECOND;
        if cursor.eat(b'.') {
            let (fraction, digits) = cursor.fraction()?;
            offset_in_day += fraction;
            // Precision finer than a microsecond is truncated to one microsecond.
            unit = 10_i64.pow(6 - digits.min(6));
        }
    }
    let zone_offset = cursor.zone(space_means_plus)?;
    if !cursor.at_end() {
        return Err(format!(
            "unexpected `{}` after the time",
            String::from_utf8_lossy(&cursor.bytes[cursor.position..])
        ));
    }
    let lo = day_start + offset_in_day - zone_offset;
    Ok(DateRange { lo, hi: lo + unit })
}

/// A tiny byte cursor for the fixed-width FHIR date grammar.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.position >= self.bytes.len()
    }

    fn eat(&mut self, expected: u8) -> bool {
        if self.bytes.get(self.position) == Some(&expected) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, expected: u8, what: &str) -> Result<(), String> {
        if self.eat(expected) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    /// Reads exactly `width` ASCII digits.
    fn number(&mut self, width: usize, what: &str) -> Result<i64, String> {
        let end = self.position + width;
        let digits = self
            .bytes
            .get(self.position..end)
            .filter(|digits| digits.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("expected a {width}-digit {what}"))?;
        self.position = end;
        Ok(digits
            .iter()
            .fold(0, |acc, digit| acc * 10 + i64::from(digit - b'0')))
    }

    /// Reads one or more fraction digits, returning the value in microseconds (truncated)
    /// and the number of digits written.
    fn fraction(&mut self) -> Result<(i64, u32), String> {
        let start = self.position;
        while self
            .bytes
            .get(self.position)
            .is_some_and(u8::is_ascii_digit)
        {
            self.position += 1;
        }
        let digits = &self.bytes[start..self.position];
        if digits.is_empty() {
            return Err("expected digits after the decimal point".to_owned());
        }
        let mut micros = 0;
        for index in 0..6 {
            let digit = digits.get(index).map_or(0, |digit| i64::from(digit - b'0'));
            micros = micros * 10 + digit;
        }
        let count = u32::try_from(digits.len()).unwrap_or(u32::MAX);
        Ok((micros, count))
    }

    /// Reads an optional zone designator, returning its offset from UTC in microseconds.
    fn zone(&mut self, space_means_plus: bool) -> Result<i64, String> {
        let Some(&sign) = self.bytes.get(self.position) else {
            return Ok(0);
        };
        let negative = match sign {
            b'Z' => {
                self.position += 1;
                return Ok(0);
            }
            b'+' => false,
            b' ' if space_means_plus => false,
            b'-' => true,
            _ => return Err("expected `Z` or a `+hh:mm`/`-hh:mm` zone offset".to_owned()),
        };
        self.position += 1;
        let hours = self.number(2, "zone hour")?;
        self.expect(b':', "`:` in the zone offset")?;
        let minutes = self.number(2, "zone minute")?;
        if hours > 14 || minutes > 59 {
            return Err(format!(
                "zone offset {hours:02}:{minutes:02} is out of range"
            ));
        }
        let offset = hours * MICROS_PER_HOUR + minutes * MICROS_PER_MINUTE;
        Ok(if negative { -offset } else { offset })
    }
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(text: &str) -> DateRange {
        parse_date(text, false).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    /// Microseconds since the epoch of a full UTC timestamp, computed independently with `time`.
    fn micros(text: &str) -> i64 {
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|error| panic!("{text}: {error}"));
        i64::try_from(parsed.unix_timestamp_nanos() / 1000).expect("in range")
    }

    #[test]
    fn precision_defines_the_range() {
        let cases = [
            ("2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("2024-01", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"),
            ("2024-02", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"),
            ("2024-12", "2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"),
            (
                "2024-01-14T10:00",
                "2024-01-14T10:00:00Z",
                "2024-01-14T10:01:00Z",
            ),
            (
                "2024-01-14T10:00:05",
                "2024-01-14T10:00:05Z",
                "2024-01-14T10:00:06Z",
            ),
            (
                "2024-01-14T10:00:05.25",
                "2024-01-14T10:00:05.25Z",
                "2024-01-14T10:00:05.26Z",
            ),
            (
                "2024-01-14T10:00:05.123Z",
                "2024-01-14T10:00:05.123Z",
                "2024-01-14T10:00:05.124Z",
            ),
            (
                "2024-01-14T10:00:05+02:00",
                "2024-01-14T08:00:05Z",
                "2024-01-14T08:00:06Z",
            ),
            (
                "2024-01-14T00:30:00-05:30",
                "2024-01-14T06:00:00Z",
                "2024-01-14T06:00:01Z",
            ),
        ];
        for (text, lo, hi) in cases {
            assert_eq!(
                range(text),
                DateRange {
                    lo: micros(lo),
                    hi: micros(hi)
                },
                "{text}"
            );
        }
    }

    #[test]
    fn fractions_finer_than_microseconds_are_truncated() {
        let value = range("2024-01-14T10:00:05.123456789Z");
        assert_eq!(value.lo, micros("2024-01-14T10:00:05.123456Z"));
        assert_eq!(value.hi - value.lo, 1);
    }

    #[test]
    fn space_may_stand_for_plus_in_search_values_only() {
        let lenient = parse_date("2024-01-14T10:00:00 02:00", true).expect("lenient");
        assert_eq!(lenient.lo, micros("2024-01-14T08:00:00Z"));
        assert!(parse_date("2024-01-14T10:00:00 02:00", false).is_err());
    }

    #[test]
    fn malformed_dates_are_rejected_with_a_reason() {
        let cases = [
            ("", "4-digit year"),
            ("24", "4-digit year"),
            ("0000", "year 0000"),
            ("2024-13", "month 13"),
            ("2024-00", "month 00"),
            ("2023-02-29", "day 29 does not exist"),
            ("2024-04-31", "day 31 does not exist"),
            ("2024-1-01", "2-digit month"),
            ("2024-01-01T", "2-digit hour"),
            ("2024-01-01T10", "`:` after the hour"),
            ("2024-01-01T24:00", "hour 24"),
            ("2024-01-01T10:60", "minute 60"),
            ("2024-01-01T10:00:60", "second 60"),
            ("2024-01-01T10:00:00.", "digits after the decimal point"),
            ("2024-01-01T10:00:00+1:00", "2-digit zone hour"),
            ("2024-01-01T10:00:00+15:00", "zone offset 15:00"),
            ("2024-01-01T10:00:00Zjunk", "unexpected `junk`"),
            ("2024-01-01 10:00", "`T` before the time"),
            ("2024/01/01", "`-` after the year"),
        ];
        for (text, expected) in cases {
            let error = parse_date(text, false).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn prefixes_are_split_and_validated() {
        assert_eq!(split_prefix("2024"), Ok((Prefix::Eq, "2024")));
        assert_eq!(split_prefix("ge2024"), Ok((Prefix::Ge, "2024")));
        assert_eq!(split_prefix("ap5.4"), Ok((Prefix::Ap, "5.4")));
        assert_eq!(split_prefix("-5"), Ok((Prefix::Eq, "-5")));
        assert!(
            split_prefix("xx2024")
                .expect_err("unknown")
                .contains("`xx`")
        );
    }

    /// The FHIR R4 prefix table, checked against a day-precision search value
    /// S = [2024-01-14, 2024-01-15) for value ranges placed all around it.
    #[test]
    fn prefix_table_against_a_day() {
        let search = range("2024-01-14");
        let inside = range("2024-01-14T10:00:00Z");
        let whole_day = range("2024-01-14");
        let day_before = range("2024-01-13");
        let day_after = range("2024-01-15");
        let straddles_start = DateRange {
            lo: range("2024-01-13T23:00").lo,
            hi: range("2024-01-14T01:00").hi,
        };
        let straddles_end = DateRange {
            lo: range("2024-01-14T23:00").lo,
            hi: range("2024-01-15T01:00").hi,
        };
        let covers = range("2024-01");
        let open_after = DateRange {
            lo: range("2024-01-10").lo,
            hi: i64::MAX,
        };
        let open_before = DateRange {
            lo: i64::MIN,
            hi: range("2024-01-20").hi,
        };
        let last_instant = range("2024-01-14T23:59:59.999999Z");
        let midnight_after = range("2024-01-15T00:00:00Z");

        // (value, [eq, ne, gt, lt, ge, le, sa, eb])
        let table: [(&str, DateRange, [bool; 8]); 11] = [
            (
                "inside",
                inside,
                [true, false, false, false, true, true, false, false],
            ),
            (
                "whole day",
                whole_day,
                [true, false, false, false, true, true, false, false],
            ),
            (
                "day before",
                day_before,
                [false, true, false, true, false, true, false, true],
            ),
            (
                "day after",
                day_after,
                [false, true, true, false, true, false, true, false],
            ),
            (
                "straddles start",
                straddles_start,
                [false, true, false, true, false, true, false, false],
            ),
            (
                "straddles end",
                straddles_end,
                [false, true, true, false, true, false, false, false],
            ),
            (
                "covers month",
                covers,
                [false, true, true, true, true, true, false, false],
            ),
            (
                "open after",
                open_after,
                [false, true, true, true, true, true, false, false],
            ),
            (
                "open before",
                open_before,
                [false, true, true, true, true, true, false, false],
            ),
            (
                "last instant",
                last_instant,
                [true, false, false, false, true, true, false, false],
            ),
            (
                "next midnight",
                midnight_after,
                [false, true, true, false, true, false, true, false],
            ),
        ];
        let prefixes = [
            Prefix::Eq,
            Prefix::Ne,
            Prefix::Gt,
            Prefix::Lt,
            Prefix::Ge,
            Prefix::Le,
            Prefix::Sa,
            Prefix::Eb,
        ];
        for (name, value, expected) in table {
            for (prefix, want) in prefixes.iter().zip(expected) {
                let predicate = DatePredicate::new(*prefix, search, 0);
                assert_eq!(predicate.matches(value), want, "{prefix:?} against {name}");
            }
        }
    }

    #[test]
    fn approximate_widens_by_a_tenth_of_the_gap_to_now() {
        let now = range("2024-01-01T00:00:00Z").lo;
        // Ten years before now: the margin is about one year.
        let predicate = DatePredicate::new(Prefix::Ap, range("2014-01-01"), now);
        assert!(predicate.matches(range("2013-03-01")));
        assert!(predicate.matches(range("2014-11-01")));
        assert!(!predicate.matches(range("2012-06-01")));
        assert!(!predicate.matches(range("2015-06-01")));
        // Near now the margin never drops below one day.
        let near = DatePredicate::new(Prefix::Ap, range("2024-01-01"), now);
        assert!(near.matches(range("2023-12-31T12:00:00Z")));
        assert!(near.matches(range("2024-01-02T12:00:00Z")));
        assert!(!near.matches(range("2024-01-03T12:00:00Z")));
    }

    proptest! {
        #[test]
        fn full_timestamps_match_an_independent_computation(
            year in 1_i64..=9999,
            month in 1_i64..=12,
            day in 1_i64..=28,
            hour in 0_i64..24,
            minute in 0_i64..60,
            second in 0_i64..60,
            millis in 0_i64..1000,
            offset_minutes in -14 * 60_i64..=14 * 60,
        ) {
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let zone = format!("{sign}{:02}:{:02}", offset_minutes.abs() / 60, offset_minutes.abs() % 60);
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}{zone}");
            let parsed = parse_date(&text, false).expect("valid");
            let date = time::Date::from_calendar_date(
                i32::try_from(year).expect("year"),
                time::Month::try_from(u8::try_from(month).expect("month")).expect("month"),
                u8::try_from(day).expect("day"),
            ).expect("date");
            let expected_days = i64::from(date.to_julian_day()) - 2_440_588;
            let expected = expected_days * MICROS_PER_DAY
                + hour * MICROS_PER_HOUR + minute * MICROS_PER_MINUTE + second * MICROS_PER_SECOND
                + millis * 1000 - offset_minutes * MICROS_PER_MINUTE;
            prop_assert_eq!(parsed, DateRange { lo: expected, hi: expected + 1000 });
        }

        #[test]
        fn finer_precision_nests_inside_coarser(
            year in 1_i64..=9999,
            month in 1_i64..=12,
            day in 1_i64..=28,
            hour in 0_i64..24,
            minute in 0_i64..60,
            second in 0_i64..60,
        ) {
            let texts = [
                format!("{year:04}"),
                format!("{year:04}-{month:02}"),
                format!("{year:04}-{month:02}-{day:02}"),
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}"),
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"),
            ];
            let ranges: Vec<DateRange> = texts.iter().map(|text| parse_date(text, false).expect("valid")).collect();
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].lo <= pair[1].lo && pair[1].hi <= pair[0].hi);
                prop_assert!(pair[1].lo < pair[1].hi);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_date(&text, true);
        }
    }
}
