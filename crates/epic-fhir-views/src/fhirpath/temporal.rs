//! FHIR dates, date-times and times with their precision, compared as FHIRPath says:
//! component by component, and "unknown" (empty) when equal so far but of different precision.

use std::cmp::Ordering;

/// Which kind of temporal value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemporalKind {
    Date,
    DateTime,
    Time,
}

/// A partial date, date-time or time. Components past `precision` are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Temporal {
    pub(crate) kind: TemporalKind,
    /// year, month, day, hour, minute, second, millisecond
    parts: [i32; 7],
    /// How many of `parts` are given (1 = year only ... 7 = milliseconds); for times the
    /// first three parts are unused and precision counts from the hour (4 = hour).
    precision: u8,
    /// Offset from UTC in minutes, when given.
    offset: Option<i32>,
}

const YEAR: u8 = 1;
const MONTH: u8 = 2;
const DAY: u8 = 3;
const HOUR: u8 = 4;
const MINUTE: u8 = 5;
const SECOND: u8 = 6;
const MILLI: u8 = 7;

fn digits(text: &str, at: usize, count: usize) -> Option<i32> {
    let part = text.get(at..at + count)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: i32, day: i32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Temporal {
    /// Parses a FHIR `date`, `dateTime` or `instant` (`kind` `DateTime` accepts all three
    /// shapes; `Date` only dates).
    pub(crate) fn parse_date_time(text: &str, kind: TemporalKind) -> Option<Temporal> {
        let mut parts = [0, 1, 1, 0, 0, 0, 0];
        parts[0] = digits(text, 0, 4)?;
        let mut precision = YEAR;
        let mut pos = 4;
        if text.as_bytes().get(pos) == Some(&b'-') {
            parts[1] = digits(text, pos + 1, 2)?;
            precision = MONTH;
            pos += 3;
            if text.as_bytes().get(pos) == Some(&b'-') {
                parts[2] = digits(text, pos + 1, 2)?;
                precision = DAY;
                pos += 3;
            }
        }
        if !(1..=12).contains(&parts[1])
            || !(1..=days_in_month(parts[0], parts[1])).contains(&parts[2])
        {
            return None;
        }
        let mut offset = None;
        if pos < text.len() {
            if kind == TemporalKind::Date || precision != DAY || text.as_bytes()[pos] != b'T' {
                return None;
            }
            let (time_precision, end) = parse_clock(text, pos + 1, &mut parts)?;
            precision = time_precision;
            pos = end;
            let rest = &text[pos..];
            offset = match rest {
                "" => None,
                "Z" => Some(0),
                _ => Some(parse_offset(rest)?),
            };
        }
        let kind = if kind == TemporalKind::Date {
            TemporalKind::Date
        } else {
            TemporalKind::DateTime
        };
        Some(Temporal {
            kind,
            parts,
            precision,
            offset,
        })
    }

    /// Parses a FHIR `time` (`12:34`, `12:34:56.789`).
    pub(crate) fn parse_time(text: &str) -> Option<Temporal> {
        let mut parts = [0, 1, 1, 0, 0, 0, 0];
        let (precision, end) = parse_clock(text, 0, &mut parts)?;
        (end == text.len()).then_some(Temporal {
            kind: TemporalKind::Time,
            parts,
            precision,
            offset: None,
        })
    }

    /// Compares two values of the same kind; `None` when the answer is unknown (different
    /// precisions that agree as far as both go) or the kinds differ.
    pub(crate) fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let date_like = |k| k != TemporalKind::Time;
        if date_like(self.kind) != date_like(other.kind) {
            return None;
        }
        let (a, b) = match (self.offset, other.offset) {
            (Some(x), Some(y)) if self.precision >= HOUR && other.precision >= HOUR && x != y => {
                (self.shifted_to_utc(), other.shifted_to_utc())
            }
            _ => (*self, *other),
        };
        let first = if self.kind == TemporalKind::Time {
            3
        } else {
            0
        };
        let common = a.precision.min(b.precision) as usize;
        for i in first..common {
            match a.parts[i].cmp(&b.parts[i]) {
                Ordering::Equal => {}
                unequal => return Some(unequal),
            }
        }
        // Seconds and milliseconds are one precision in FHIRPath.
        let same = a.precision == b.precision
            || (a.precision.max(b.precision) == MILLI && a.precision.min(b.precision) == SECOND);
        if same {
            if a.precision.max(b.precision) == MILLI {
                return Some(a.parts[6].cmp(&b.parts[6]));
            }
            Some(Ordering::Equal)
        } else {
            None
        }
    }

    fn shifted_to_utc(&self) -> Temporal {
        let offset = self.offset.unwrap_or(0);
        let [y, mo, d, h, mi, s, ms] = self.parts;
        let minutes = days_from_civil(y, mo, d) * 1440 + (h * 60 + mi) as i64 - offset as i64;
        let days = minutes.div_euclid(1440);
        let in_day = minutes.rem_euclid(1440) as i32;
        let (year, month, day) = civil_from_days(days);
        Temporal {
            kind: self.kind,
            parts: [year, month, day, in_day / 60, in_day % 60, s, ms],
            precision: self.precision,
            offset: Some(0),
        }
    }

    /// FHIRPath `lowBoundary()` / `highBoundary()` with the greatest precision: a date to the
    /// day, a date-time to the millisecond (with +14:00 / -12:00 when no offset is given), a
    /// time to the millisecond.
    pub(crate) fn boundary(&self, high: bool) -> String {
        let mut parts = self.parts;
        let [year, month, ..] = parts;
        let start = if self.kind == TemporalKind::Time {
            HOUR
        } else {
            self.precision + 1
        };
        for level in start.max(self.precision + 1)..=MILLI {
            let i = (level - 1) as usize;
            parts[i] = match (level, high) {
                (MONTH, false) | (DAY, false) => 1,
                (MONTH, true) => 12,
                (DAY, true) => {
                    days_in_month(year, if self.precision >= MONTH { month } else { 12 })
                }
                (HOUR, true) => 23,
                (MINUTE | SECOND, true) => 59,
                (MILLI, true) => 999,
                _ => 0,
            };
        }
        let [y, mo, d, h, mi, s, ms] = parts;
        match self.kind {
            TemporalKind::Date => format!("{y:04}-{mo:02}-{d:02}"),
            TemporalKind::Time => format!("{h:02}:{mi:02}:{s:02}.{ms:03}"),
            TemporalKind::DateTime => {
                let offset = self.offset.unwrap_or(if high { -12 * 60 } else { 14 * 60 });
                let sign = if offset < 0 { '-' } else { '+' };
                let abs = offset.abs();
                format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}{sign}{:02}:{:02}",
                    abs / 60,
                    abs % 60
                )
            }
        }
    }

    /// The value written as FHIR writes it, at its own precision.
    pub(crate) fn to_fhir_string(self) -> String {
        let [y, mo, d, h, mi, s, ms] = self.parts;
        let mut out = String::new();
        if self.kind != TemporalKind::Time {
            out.push_str(&format!("{y:04}"));
            if self.precision >= MONTH {
                out.push_str(&format!("-{mo:02}"));
            }
            if self.precision >= DAY {
                out.push_str(&format!("-{d:02}"));
            }
            if self.precision >= HOUR {
                out.push('T');
            }
        }
        if self.precision >= HOUR {
            out.push_str(&format!("{h:02}"));
        }
        if self.precision >= MINUTE {
            out.push_str(&format!(":{mi:02}"));
        }
        if self.precision >= SECOND {
            out.push_str(&format!(":{s:02}"));
        }
        if self.precision >= MILLI {
            out.push_str(&format!(".{ms:03}"));
        }
        if let Some(offset) = self.offset {
            if offset == 0 {
                out.push('Z');
            } else {
                let sign = if offset < 0 { '-' } else { '+' };
                out.push_str(&format!(
                    "{sign}{:02}:{:02}",
                    offset.abs() / 60,
                    offset.abs() % 60
                ));
            }
        }
        out
    }

    /// Microseconds since the Unix epoch, for a value precise to the second with an offset
    /// (an `instant`); `None` otherwise.
    pub(crate) fn epoch_micros(&self) -> Option<i64> {
        if self.kind != TemporalKind::DateTime || self.precision < SECOND {
            return None;
        }
        let offset = self.offset?;
        let [y, mo, d, h, mi, s, ms] = self.parts;
        let seconds = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + s) as i64
            - offset as i64 * 60;
        Some(seconds * 1_000_000 + ms as i64 * 1000)
    }

    /// Days since the Unix epoch of a full date (or the date part of a date-time).
    pub(crate) fn epoch_days(&self) -> Option<i32> {
        if self.kind == TemporalKind::Time || self.precision < DAY {
            return None;
        }
        let [y, mo, d, ..] = self.parts;
        i32::try_from(days_from_civil(y, mo, d)).ok()
    }
}

fn civil_from_days(days: i64) -> (i32, i32, i32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as i32, d as i32)
}

/// Reads `hh[:mm[:ss[.fff]]]` at `pos`; returns the precision and the end position.
fn parse_clock(text: &str, pos: usize, parts: &mut [i32; 7]) -> Option<(u8, usize)> {
    parts[3] = digits(text, pos, 2)?;
    let mut precision = HOUR;
    let mut pos = pos + 2;
    if text.as_bytes().get(pos) == Some(&b':') {
        parts[4] = digits(text, pos + 1, 2)?;
        precision = MINUTE;
        pos += 3;
        if text.as_bytes().get(pos) == Some(&b':') {
            parts[5] = digits(text, pos + 1, 2)?;
            precision = SECOND;
            pos += 3;
            if text.as_bytes().get(pos) == Some(&b'.') {
                let start = pos + 1;
                let mut end = start;
                while text.as_bytes().get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                if end == start {
                    return None;
                }
                let fraction = &text[start..end.min(start + 3)];
                parts[6] = format!("{fraction:0<3}").parse().ok()?;
                precision = MILLI;
                pos = end;
            }
        }
    }
    if parts[3] > 23 || parts[4] > 59 || parts[5] > 60 {
        return None;
    }
    Some((precision, pos))
}

/// Reads `+hh:mm` / `-hh:mm` into minutes.
fn parse_offset(text: &str) -> Option<i32> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if text.len() != 6 || text.as_bytes()[3] != b':' {
        return None;
    }
    let hours = digits(text, 1, 2)?;
    let minutes = digits(text, 4, 2)?;
    Some(sign * (hours * 60 + minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(text: &str) -> Temporal {
        Temporal::parse_date_time(text, TemporalKind::DateTime).unwrap()
    }

    #[test]
    fn compares_with_precision() {
        assert_eq!(
            dt("2016-11-12").compare(&dt("2016-11-12")),
            Some(Ordering::Equal)
        );
        assert_eq!(
            dt("2016-11-12").compare(&dt("2023-02-08")),
            Some(Ordering::Less)
        );
        assert_eq!(dt("2016-11").compare(&dt("2016-11-12")), None);
        assert_eq!(
            dt("2015-11").compare(&dt("2016-11-12")),
            Some(Ordering::Less)
        );
        assert_eq!(
            dt("2015-02-07T13:28:17.239+02:00").compare(&dt("2015-02-07T11:28:17.239Z")),
            Some(Ordering::Equal)
        );
        assert_eq!(
            dt("2015-02-07T13:28:17+02:00").compare(&dt("2015-02-07T13:28:17.000+02:00")),
            Some(Ordering::Equal)
        );
        let t = |s| Temporal::parse_time(s).unwrap();
        assert_eq!(t("18:12:00").compare(&t("18:32:00")), Some(Ordering::Less));
        assert!(Temporal::parse_date_time("2016-13-01", TemporalKind::Date).is_none());
        assert!(Temporal::parse_date_time("2016-02-30", TemporalKind::Date).is_none());
        assert!(Temporal::parse_date_time("2016-02-03T10:00", TemporalKind::Date).is_none());
    }

    #[test]
    fn boundaries() {
        let date = Temporal::parse_date_time("1970-06", TemporalKind::Date).unwrap();
        assert_eq!(date.boundary(false), "1970-06-01");
        assert_eq!(date.boundary(true), "1970-06-30");
        let year = Temporal::parse_date_time("2024", TemporalKind::Date).unwrap();
        assert_eq!(year.boundary(true), "2024-12-31");
        assert_eq!(
            dt("2010-10-10").boundary(false),
            "2010-10-10T00:00:00.000+14:00"
        );
        assert_eq!(
            dt("2010-10-10").boundary(true),
            "2010-10-10T23:59:59.999-12:00"
        );
        assert_eq!(
            dt("2010-10-10T10:30Z").boundary(true),
            "2010-10-10T10:30:59.999+00:00"
        );
        let time = Temporal::parse_time("12:34:00").unwrap();
        assert_eq!(time.boundary(false), "12:34:00.000");
        assert_eq!(time.boundary(true), "12:34:00.999");
    }

    #[test]
    fn epoch_values() {
        assert_eq!(dt("1970-01-01T00:00:01Z").epoch_micros(), Some(1_000_000));
        assert_eq!(
            dt("1970-01-02T01:00:00.5+01:00").epoch_micros(),
            Some(86_400_500_000)
        );
        assert_eq!(dt("1970-01-01").epoch_micros(), None);
        assert_eq!(dt("2000-03-01").epoch_days(), Some(11_017));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
    }
}
