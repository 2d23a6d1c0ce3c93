//! FHIR primitive types that need more than a `String`: `decimal`, `date`, `dateTime`,
//! `instant` and `time`.
//!
//! The temporal types keep the original text, so a value is written back exactly as it was
//! read (FHIR gives meaning to the precision: `2024-01` is a whole month), and they check the
//! FHIR syntax when parsed so that the accessors never fail.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::json::{FromJson, PResult, Parser, ToJson, Writer};
use time::{
    Date as CalendarDate, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time as TimeOfDay,
    UtcOffset,
};

/// Text of at most `N` bytes kept inline, longer text on the heap: dates, times and decimals
/// are short, and an allocation for each was a measurable part of the typed parse. The
/// representation depends only on the length, so equal texts are equal values.
#[derive(Clone)]
enum ShortText<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<str>),
}

impl<const N: usize> ShortText<N> {
    fn new(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= N => {
                let mut bytes = [0; N];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                ShortText::Inline { len, bytes }
            }
            _ => ShortText::Heap(text.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // The bytes were copied from a `str`, so the check cannot fail.
            ShortText::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ShortText::Heap(text) => text,
        }
    }
}

impl<const N: usize> std::ops::Deref for ShortText<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> PartialEq for ShortText<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for ShortText<N> {}

impl<const N: usize> std::hash::Hash for ShortText<N> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl<const N: usize> fmt::Debug for ShortText<N> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), formatter)
    }
}

/// A FHIR `decimal`, kept as the exact text of its JSON number.
///
/// FHIR gives meaning to a decimal's precision: `1.50` says the value is known to two places,
/// `1.5` to one. The text is kept as read and written back unchanged; [`Decimal::as_f64`]
/// gives the nearest `f64` for arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(ShortText<22>);

impl Decimal {
    /// Checks `text` against the JSON number grammar (which FHIR decimals follow) and keeps it.
    pub fn parse(text: &str) -> Result<Self, DecimalParseError> {
        let mut p = Parser::from_text(text);
        match p.number().and_then(|n| p.end().map(|()| n)) {
            Ok(number) if number.len() == text.len() => Ok(Decimal(ShortText::new(text))),
            _ => Err(DecimalParseError {
                value: text.chars().take(64).collect(),
            }),
        }
    }

    /// Makes a decimal from a finite `f64`, in its shortest exact form; `None` for NaN and
    /// infinities, which JSON cannot hold.
    pub fn from_f64(value: f64) -> Option<Self> {
        if !value.is_finite() {
            return None;
        }
        let text = if value.fract() == 0.0 && value.abs() < 1e15 {
            format!("{value:.0}")
        } else {
            format!("{value}")
        };
        Some(Decimal(ShortText::new(&text)))
    }

    /// The value as an `f64` (the nearest one, for values that an `f64` cannot hold exactly).
    pub fn as_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }

    /// The text exactly as read, such as `1.50`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How many digits follow the decimal point (0 for an integer; exponents not counted).
    pub fn scale(&self) -> usize {
        let mantissa = self.0.split(['e', 'E']).next().unwrap_or("");
        mantissa
            .split_once('.')
            .map_or(0, |(_, fraction)| fraction.len())
    }
}

/// Text that is not a JSON number, offered as a FHIR decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid FHIR decimal `{value}`: not a JSON number")]
pub struct DecimalParseError {
    value: String,
}

impl FromStr for Decimal {
    type Err = DecimalParseError;

    fn from_str(text: &str) -> Result<Self, DecimalParseError> {
        Self::parse(text)
    }
}

impl From<i64> for Decimal {
    fn from(value: i64) -> Self {
        Decimal(ShortText::new(&value.to_string()))
    }
}

impl From<u64> for Decimal {
    fn from(value: u64) -> Self {
        Decimal(ShortText::new(&value.to_string()))
    }
}

impl From<i32> for Decimal {
    fn from(value: i32) -> Self {
        Decimal(ShortText::new(&value.to_string()))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl FromJson for Decimal {
    #[inline]
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        p.number().map(|text| Decimal(ShortText::new(text)))
    }
}

impl ToJson for Decimal {
    #[inline]
    fn write_json(&self, w: &mut Writer) {
        w.raw(&self.0)
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Through serde_json's raw values the text is written exactly; other formats get the
        // nearest f64.
        match serde_json::value::RawValue::from_string(self.0.to_string()) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => serializer.serialize_f64(self.as_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Decimal::parse(raw.get().trim()).map_err(de::Error::custom)
    }
}

/// How much of a date or time a FHIR temporal value gives.
///
/// A value stands for the whole span its precision covers: `2024` is the year 2024 and
/// `2024-03-01T10:00:00Z` is one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// `YYYY`.
    Year,
    /// `YYYY-MM`.
    Month,
    /// `YYYY-MM-DD`.
    Day,
    /// Date and time to the second, `YYYY-MM-DDThh:mm:ss` with a zone.
    Second,
    /// Date and time with fractional seconds; `digits` is the number of fraction digits given.
    Fraction {
        /// How many digits follow the decimal point (saturating at 255).
        digits: u8,
    },
}

/// A date, dateTime or instant whose text is not valid FHIR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid FHIR {kind} `{value}`: {reason}")]
pub struct TemporalParseError {
    kind: &'static str,
    value: String,
    reason: &'static str,
}

impl TemporalParseError {
    /// What is wrong with the text, such as "month must be 01 to 12".
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Which FHIR type a text is parsed as; each allows a different subset of the syntax.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Date,
    DateTime,
    Instant,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Date => "date",
            Kind::DateTime => "dateTime",
            Kind::Instant => "instant",
        }
    }
}

/// What a valid temporal text means: where its span starts (in local time), its zone if it
/// has one, and its precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Parsed {
    start: PrimitiveDateTime,
    offset: Option<UtcOffset>,
    precision: Precision,
}

/// Reads `count` ASCII digits at `at` as a number.
fn digits(bytes: &[u8], at: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(at..at + count)?;
    slice.iter().try_fold(0u32, |acc, &byte| {
        byte.is_ascii_digit()
            .then(|| acc * 10 + u32::from(byte - b'0'))
    })
}

/// Requires the byte `expected` at `at`.
fn separator(
    bytes: &[u8],
    at: usize,
    expected: u8,
    reason: &'static str,
) -> Result<(), &'static str> {
    if bytes.get(at) == Some(&expected) {
        Ok(())
    } else {
        Err(reason)
    }
}

/// Narrows a component already checked to be small.
fn small(value: u32) -> u8 {
    u8::try_from(value).unwrap_or(u8::MAX)
}

/// Parses the FHIR R4 syntax shared by date, dateTime and instant:
/// `YYYY(-MM(-DD(Thh:mm:ss(.f+)?(Z|(+|-)hh:mm))?)?)?`.
fn parse(text: &str, kind: Kind) -> Result<Parsed, &'static str> {
    let bytes = text.as_bytes();
    let year = digits(bytes, 0, 4).ok_or("expected a four-digit year")?;
    if year == 0 {
        return Err("year 0000 does not exist");
    }
    let year = i32::try_from(year).map_err(|_| "year out of range")?;
    let date_only = |month: u8, day: u8, precision: Precision| -> Result<Parsed, &'static str> {
        if kind == Kind::Instant {
            return Err("an instant needs a full date, a time with seconds and a zone");
        }
        let month = Month::try_from(month).map_err(|_| "month must be 01 to 12")?;
        let date = CalendarDate::from_calendar_date(year, month, day)
            .map_err(|_| "that day does not exist in that month")?;
        Ok(Parsed {
            start: PrimitiveDateTime::new(date, TimeOfDay::MIDNIGHT),
            offset: None,
            precision,
        })
    };
    if bytes.len() == 4 {
        return date_only(1, 1, Precision::Year);
    }
    separator(bytes, 4, b'-', "expected `-` after the year")?;
    let month = digits(bytes, 5, 2).ok_or("expected a two-digit month")?;
    if !(1..=12).contains(&month) {
        return Err("month must be 01 to 12");
    }
    let month = small(month);
    if bytes.len() == 7 {
        return date_only(month, 1, Precision::Month);
    }
    separator(bytes, 7, b'-', "expected `-` after the month")?;
    let day = digits(bytes, 8, 2).ok_or("expected a two-digit day")?;
    if !(1..=31).contains(&day) {
        return Err("day must be 01 to 31");
    }
    let day = small(day);
    if bytes.len() == 10 {
        return date_only(month, day, Precision::Day);
    }
    if kind == Kind::Date {
        return Err("a date has no time part");
    }
    separator(
        bytes,
        10,
        b'T',
        "expected `T` between the date and the time",
    )?;
    let hour = digits(bytes, 11, 2).ok_or("expected a two-digit hour")?;
    separator(bytes, 13, b':', "expected `:` after the hour")?;
    let minute = digits(bytes, 14, 2).ok_or("expected two-digit minutes")?;
    separator(
        bytes,
        16,
        b':',
        "expected `:` and seconds after the minutes",
    )?;
    let second = digits(bytes, 17, 2).ok_or("expected two-digit seconds")?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time must be 00:00:00 to 23:59:60");
    }
    let mut at = 19;
    let mut nanosecond = 0u32;
    let mut precision = Precision::Second;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let fraction_start = at;
        while let Some(&digit) = bytes.get(at).filter(|byte| byte.is_ascii_digit()) {
            // Digits beyond nanoseconds cannot be represented; they still count for precision.
            if at - fraction_start < 9 {
                nanosecond = nanosecond * 10 + u32::from(digit - b'0');
            }
            at += 1;
        }
        let count = at - fraction_start;
        if count == 0 {
            return Err("expected digits after the decimal point");
        }
        for _ in count..9 {
            nanosecond *= 10;
        }
        precision = Precision::Fraction {
            digits: u8::try_from(count).unwrap_or(u8::MAX),
        };
    }
    let offset = match bytes.get(at) {
        Some(b'Z') => {
            at += 1;
            UtcOffset::UTC
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hours = digits(bytes, at + 1, 2).ok_or("expected a zone `+hh:mm`")?;
            separator(bytes, at + 3, b':', "expected a zone `+hh:mm`")?;
            let minutes = digits(bytes, at + 4, 2).ok_or("expected a zone `+hh:mm`")?;
            if minutes > 59 || hours > 14 || (hours == 14 && minutes > 0) {
                return Err("zone offset must be -14:00 to +14:00");
            }
            at += 6;
            let hours = i8::try_from(hours).map_err(|_| "zone offset out of range")?;
            let minutes = i8::try_from(minutes).map_err(|_| "zone offset out of range")?;
            let (hours, minutes) = if sign == b'-' {
                (-hours, -minutes)
            } else {
                (hours, minutes)
            };
            UtcOffset::from_hms(hours, minutes, 0).map_err(|_| "zone offset out of range")?
        }
        None => return Err("a time must have a zone (`Z` or `+hh:mm`)"),
        Some(_) => return Err("expected a fraction or a zone after the seconds"),
    };
    if at != bytes.len() {
        return Err("unexpected text after the zone");
    }
    let month = Month::try_from(month).map_err(|_| "month must be 01 to 12")?;
    let date = CalendarDate::from_calendar_date(year, month, day)
        .map_err(|_| "that day does not exist in that month")?;
    // A leap second (`:60`) is read as the first instant of the next minute, which `time`
    // can represent; FHIR allows it but no calendar arithmetic here needs it distinct.
    let time = TimeOfDay::from_hms_nano(
        small(hour),
        small(minute),
        small(second.min(59)),
        nanosecond,
    )
    .map_err(|_| "time out of range")?;
    let mut start = PrimitiveDateTime::new(date, time);
    if second == 60 {
        start = start
            .checked_add(Duration::SECOND)
            .ok_or("leap second out of range")?;
    }
    Ok(Parsed {
        start,
        offset: Some(offset),
        precision,
    })
}

impl Parsed {
    /// Where the span starts, in its own zone or in `default_offset` when it has none.
    fn start_at(&self, default_offset: UtcOffset) -> OffsetDateTime {
        self.start
            .assume_offset(self.offset.unwrap_or(default_offset))
    }

    /// The half-open span `[start, end)` this value covers. The end saturates at the last
    /// representable moment for spans that reach past the year 9999.
    fn range(&self, default_offset: UtcOffset) -> Range<OffsetDateTime> {
        let offset = self.offset.unwrap_or(default_offset);
        let date = self.start.date();
        let end = match self.precision {
            Precision::Year => CalendarDate::from_calendar_date(date.year() + 1, Month::January, 1)
                .ok()
                .map(|next| PrimitiveDateTime::new(next, TimeOfDay::MIDNIGHT)),
            Precision::Month => {
                let (year, month) = match date.month() {
                    Month::December => (date.year() + 1, Month::January),
                    month => (date.year(), month.next()),
                };
                CalendarDate::from_calendar_date(year, month, 1)
                    .ok()
                    .map(|next| PrimitiveDateTime::new(next, TimeOfDay::MIDNIGHT))
            }
            Precision::Day => date
                .next_day()
                .map(|next| PrimitiveDateTime::new(next, TimeOfDay::MIDNIGHT)),
            Precision::Second => self.start.checked_add(Duration::SECOND),
            Precision::Fraction { digits } => {
                let step = 10i64.pow(9u32.saturating_sub(u32::from(digits)));
                self.start.checked_add(Duration::nanoseconds(step))
            }
        };
        let end = end.unwrap_or(PrimitiveDateTime::MAX);
        self.start.assume_offset(offset)..end.assume_offset(offset)
    }
}

/// Refuses years that the four-digit FHIR syntax cannot write.
fn check_fhir_year(year: i32) -> Result<(), &'static str> {
    if (1..=9999).contains(&year) {
        Ok(())
    } else {
        Err("FHIR years run from 0001 to 9999")
    }
}

/// Writes `value` as FHIR instant text (`YYYY-MM-DDThh:mm:ss[.fff]Z` or with `+hh:mm`).
fn format_instant(value: OffsetDateTime, kind: Kind) -> Result<String, TemporalParseError> {
    let error = |reason| TemporalParseError {
        kind: kind.name(),
        value: value.to_string(),
        reason,
    };
    check_fhir_year(value.year()).map_err(error)?;
    let offset = value.offset();
    if offset.seconds_past_minute() != 0 {
        return Err(error("FHIR zone offsets have no seconds"));
    }
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        value.year(),
        u8::from(value.month()),
        value.day(),
        value.hour(),
        value.minute(),
        value.second()
    );
    let nanosecond = value.nanosecond();
    if nanosecond != 0 {
        let fraction = format!("{nanosecond:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    if offset.is_utc() {
        text.push('Z');
    } else {
        let sign = if offset.is_negative() { '-' } else { '+' };
        let hours = offset.whole_hours().unsigned_abs();
        let minutes = offset.minutes_past_hour().unsigned_abs();
        text.push_str(&format!("{sign}{hours:02}:{minutes:02}"));
    }
    Ok(text)
}

/// Declares a temporal newtype with its parsing, serde and formatting impls.
macro_rules! temporal_type {
    ($(#[$meta:meta])* $name:ident, $kind:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            text: ShortText<30>,
            parsed: Parsed,
        }

        impl $name {
            /// Parses and checks FHIR text, keeping it unchanged.
            pub fn parse(text: &str) -> Result<Self, TemporalParseError> {
                match parse(text, $kind) {
                    Ok(parsed) => Ok(Self { text: ShortText::new(text), parsed }),
                    Err(reason) => Err(TemporalParseError {
                        kind: $kind.name(),
                        value: text.chars().take(64).collect(),
                        reason,
                    }),
                }
            }

            /// The text exactly as read.
            pub fn as_str(&self) -> &str {
                &self.text
            }

            /// How much of the date and time the value gives.
            pub fn precision(&self) -> Precision {
                self.parsed.precision
            }
        }

        impl FromStr for $name {
            type Err = TemporalParseError;

            fn from_str(text: &str) -> Result<Self, TemporalParseError> {
                Self::parse(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.text
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.text)
            }
        }

        impl FromJson for $name {
            fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
                let start = p.position();
                let text = p.str()?;
                match parse(&text, $kind) {
                    Ok(parsed) => Ok(Self { text: ShortText::new(&text), parsed }),
                    Err(reason) => Err(p.error_at(
                        start,
                        format!("invalid FHIR {} `{}`: {reason}", $kind.name(), text.chars().take(64).collect::<String>()),
                    )),
                }
            }
        }

        impl ToJson for $name {
            fn write_json(&self, w: &mut Writer) {
                w.string(&self.text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct TextVisitor;

                impl Visitor<'_> for TextVisitor {
                    type Value = $name;

                    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(formatter, "a FHIR {} string", $kind.name())
                    }

                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        $name::parse(text).map_err(E::custom)
                    }
                }

                deserializer.deserialize_str(TextVisitor)
            }
        }
    };
}

temporal_type!(
    /// A FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, with no time and no zone.
    Date,
    Kind::Date
);

temporal_type!(
    /// A FHIR `dateTime`: a date of any precision, or a date and time to the second (or
    /// finer) with a zone, such as `2024-03-01T10:15:00-05:00`.
    DateTime,
    Kind::DateTime
);

temporal_type!(
    /// A FHIR `instant`: a date and time to the second (or finer) with a zone, such as
    /// `2024-03-01T15:15:00.123Z`.
    Instant,
    Kind::Instant
);

impl Date {
    /// The calendar date, when the value gives a full day.
    pub fn to_date(&self) -> Option<CalendarDate> {
        (self.parsed.precision == Precision::Day).then(|| self.parsed.start.date())
    }

    /// The year.
    pub fn year(&self) -> i32 {
        self.parsed.start.year()
    }

    /// The half-open span `[start, end)` of the value in the zone `offset` (a date has no
    /// zone of its own; FHIR search takes the server's). `2024-02` gives February 2024.
    pub fn range(&self, offset: UtcOffset) -> Range<OffsetDateTime> {
        self.parsed.range(offset)
    }
}

impl TryFrom<CalendarDate> for Date {
    type Error = TemporalParseError;

    /// Writes the day as `YYYY-MM-DD`; it fails for years FHIR cannot write (before 0001).
    fn try_from(date: CalendarDate) -> Result<Self, TemporalParseError> {
        check_fhir_year(date.year()).map_err(|reason| TemporalParseError {
            kind: Kind::Date.name(),
            value: date.to_string(),
            reason,
        })?;
        Ok(Self {
            text: ShortText::new(&format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            )),
            parsed: Parsed {
                start: PrimitiveDateTime::new(date, TimeOfDay::MIDNIGHT),
                offset: None,
                precision: Precision::Day,
            },
        })
    }
}

impl DateTime {
    /// The moment the value names, when it has a time (and therefore a zone).
    pub fn to_offset_date_time(&self) -> Option<OffsetDateTime> {
        self.parsed
            .offset
            .map(|offset| self.parsed.start.assume_offset(offset))
    }

    /// Where the value's span starts; a date without a time starts at midnight in `default_offset`.
    pub fn start(&self, default_offset: UtcOffset) -> OffsetDateTime {
        self.parsed.start_at(default_offset)
    }

    /// The half-open span `[start, end)` the value covers, as FHIR search compares it:
    /// `2024` is the whole year, `2024-03-01T10:00:00Z` one second. Values without a time
    /// are placed in `default_offset`.
    pub fn range(&self, default_offset: UtcOffset) -> Range<OffsetDateTime> {
        self.parsed.range(default_offset)
    }
}

impl From<Date> for DateTime {
    fn from(date: Date) -> Self {
        Self {
            text: date.text,
            parsed: date.parsed,
        }
    }
}

impl TryFrom<OffsetDateTime> for DateTime {
    type Error = TemporalParseError;

    /// Formats the moment to the second, with its fraction when it has one.
    fn try_from(value: OffsetDateTime) -> Result<Self, TemporalParseError> {
        let text = format_instant(value, Kind::DateTime)?;
        Self::parse(&text)
    }
}

impl Instant {
    /// The moment the value names.
    pub fn to_offset_date_time(&self) -> OffsetDateTime {
        self.parsed.start_at(UtcOffset::UTC)
    }

    /// The half-open span `[start, end)` the value covers given its precision: one second, or
    /// one unit of its last fraction digit.
    pub fn range(&self) -> Range<OffsetDateTime> {
        self.parsed.range(UtcOffset::UTC)
    }
}

impl TryFrom<OffsetDateTime> for Instant {
    type Error = TemporalParseError;

    /// Formats the moment to the second, with its fraction when it has one.
    fn try_from(value: OffsetDateTime) -> Result<Self, TemporalParseError> {
        let text = format_instant(value, Kind::Instant)?;
        Self::parse(&text)
    }
}

impl From<Instant> for DateTime {
    fn from(instant: Instant) -> Self {
        Self {
            text: instant.text,
            parsed: instant.parsed,
        }
    }
}

/// A FHIR `time`: a time of day, `hh:mm:ss` with optional fractional seconds, no zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Time {
    text: ShortText<30>,
}

impl Time {
    /// Parses and checks FHIR text, keeping it unchanged.
    pub fn parse(text: &str) -> Result<Self, TemporalParseError> {
        match check_time(text) {
            Ok(()) => Ok(Time {
                text: ShortText::new(text),
            }),
            Err(reason) => Err(TemporalParseError {
                kind: "time",
                value: text.chars().take(64).collect(),
                reason,
            }),
        }
    }

    /// The text exactly as read.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The time of day (a leap second `:60` is read as `:59.999999999`).
    pub fn to_time(&self) -> Option<time::Time> {
        let bytes = self.text.as_bytes();
        let hour = digits(bytes, 0, 2)?;
        let minute = digits(bytes, 3, 2)?;
        let second = digits(bytes, 6, 2)?;
        let mut nanosecond = 0u32;
        let mut count = 0;
        for &digit in bytes.iter().skip(9) {
            if count < 9 {
                nanosecond = nanosecond * 10 + u32::from(digit - b'0');
                count += 1;
            }
        }
        for _ in count..9 {
            nanosecond *= 10;
        }
        if second == 60 {
            return time::Time::from_hms_nano(small(hour), small(minute), 59, 999_999_999).ok();
        }
        time::Time::from_hms_nano(small(hour), small(minute), small(second), nanosecond).ok()
    }
}

/// Checks `hh:mm:ss(.f+)?`.
fn check_time(text: &str) -> Result<(), &'static str> {
    let bytes = text.as_bytes();
    let hour = digits(bytes, 0, 2).ok_or("expected a two-digit hour")?;
    separator(bytes, 2, b':', "expected `:` after the hour")?;
    let minute = digits(bytes, 3, 2).ok_or("expected two-digit minutes")?;
    separator(bytes, 5, b':', "expected `:` and seconds after the minutes")?;
    let second = digits(bytes, 6, 2).ok_or("expected two-digit seconds")?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time must be 00:00:00 to 23:59:60");
    }
    match bytes.get(8) {
        None => Ok(()),
        Some(b'.') => {
            let fraction = &bytes[9..];
            if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
                Err("expected digits after the decimal point")
            } else {
                Ok(())
            }
        }
        Some(_) => Err("a time has no zone and nothing after the seconds but a fraction"),
    }
}

impl FromStr for Time {
    type Err = TemporalParseError;

    fn from_str(text: &str) -> Result<Self, TemporalParseError> {
        Self::parse(text)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl AsRef<str> for Time {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromJson for Time {
    fn from_json(p: &mut Parser<'_>) -> PResult<Self> {
        let start = p.position();
        let text = p.str()?;
        match check_time(&text) {
            Ok(()) => Ok(Time {
                text: ShortText::new(&text),
            }),
            Err(reason) => Err(p.error_at(
                start,
                format!(
                    "invalid FHIR time `{}`: {reason}",
                    text.chars().take(64).collect::<String>()
                ),
            )),
        }
    }
}

impl ToJson for Time {
    fn write_json(&self, w: &mut Writer) {
        w.string(&self.text)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Time::parse(&text).map_err(de::Error::custom)
    }
}

/// Whether `text` is a valid FHIR `date`, `dateTime`, `instant` or `time` (by type code),
/// and if not, why.
pub(crate) fn check_temporal(code: &str, text: &str) -> Result<(), &'static str> {
    match code {
        "date" => parse(text, Kind::Date).map(drop),
        "dateTime" => parse(text, Kind::DateTime).map(drop),
        "instant" => parse(text, Kind::Instant).map(drop),
        "time" => check_time(text),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{datetime, offset};

    use super::*;

    #[test]
    fn short_text_keeps_every_length_inline_or_not() {
        let long = "2024-03-01T10:00:00.123456789012345+05:00é";
        for end in (0..=long.len()).filter(|&end| long.is_char_boundary(end)) {
            let text = &long[..end];
            let short = ShortText::<30>::new(text);
            assert_eq!(short.as_str(), text);
            assert_eq!(
                matches!(short, ShortText::Inline { .. }),
                end <= 30,
                "{end}"
            );
            assert_eq!(short, ShortText::<30>::new(text));
            assert_eq!(short.clone().as_str(), text);
        }
        // Values no larger than the ones they replace (`Box<str>`, `String`).
        assert_eq!(size_of::<Decimal>(), 24);
        assert_eq!(size_of::<Option<Decimal>>(), 24);
        assert!(size_of::<DateTime>() <= size_of::<String>() + 32);
    }

    #[test]
    fn date_precisions_and_ranges() {
        let year = Date::parse("2024").unwrap();
        assert_eq!(year.precision(), Precision::Year);
        assert_eq!(year.to_date(), None);
        assert_eq!(
            year.range(UtcOffset::UTC),
            datetime!(2024-01-01 0:00 UTC)..datetime!(2025-01-01 0:00 UTC)
        );
        let month = Date::parse("2024-12").unwrap();
        assert_eq!(month.precision(), Precision::Month);
        assert_eq!(
            month.range(offset!(-5)),
            datetime!(2024-12-01 0:00 -5)..datetime!(2025-01-01 0:00 -5)
        );
        let day = Date::parse("2024-02-29").unwrap();
        assert_eq!(day.precision(), Precision::Day);
        assert_eq!(day.to_date(), Some(time::macros::date!(2024 - 02 - 29)));
        assert_eq!(day.as_str(), "2024-02-29");
        assert_eq!(day.year(), 2024);
    }

    #[test]
    fn invalid_dates_are_rejected_with_a_reason() {
        for (text, reason) in [
            ("2023-02-29", "that day does not exist in that month"),
            ("2024-13", "month must be 01 to 12"),
            ("24", "expected a four-digit year"),
            ("0000", "year 0000 does not exist"),
            ("2024-01-01T10:00:00Z", "a date has no time part"),
            ("2024/01", "expected `-` after the year"),
        ] {
            let error = Date::parse(text).unwrap_err();
            assert_eq!(error.reason(), reason, "{text}");
            assert!(error.to_string().contains(text), "{error}");
        }
    }

    #[test]
    fn date_time_with_zone_converts_to_offset_date_time() {
        let value = DateTime::parse("2013-01-13T21:45:04+02:00").unwrap();
        assert_eq!(value.precision(), Precision::Second);
        assert_eq!(
            value.to_offset_date_time(),
            Some(datetime!(2013-01-13 21:45:04 +2))
        );
        assert_eq!(
            value.range(UtcOffset::UTC),
            datetime!(2013-01-13 21:45:04 +2)..datetime!(2013-01-13 21:45:05 +2)
        );
        let fraction = DateTime::parse("2013-01-13T21:45:04.261-05:30").unwrap();
        assert_eq!(fraction.precision(), Precision::Fraction { digits: 3 });
        assert_eq!(
            fraction.range(UtcOffset::UTC),
            datetime!(2013-01-13 21:45:04.261 -5:30)..datetime!(2013-01-13 21:45:04.262 -5:30)
        );
        let date_only = DateTime::parse("2013-01").unwrap();
        assert_eq!(date_only.to_offset_date_time(), None);
        assert_eq!(date_only.start(offset!(+1)), datetime!(2013-01-01 0:00 +1));
    }

    #[test]
    fn date_time_rules_follow_fhir() {
        for (text, reason) in [
            (
                "2024-01-01T10:00:00",
                "a time must have a zone (`Z` or `+hh:mm`)",
            ),
            (
                "2024-01-01T10:00Z",
                "expected `:` and seconds after the minutes",
            ),
            ("2024-01-01T24:00:00Z", "time must be 00:00:00 to 23:59:60"),
            (
                "2024-01-01T10:00:00.Z",
                "expected digits after the decimal point",
            ),
            (
                "2024-01-01T10:00:00+14:30",
                "zone offset must be -14:00 to +14:00",
            ),
            ("2024-01-01T10:00:00Zjunk", "unexpected text after the zone"),
            (
                "2024-01-01 10:00:00Z",
                "expected `T` between the date and the time",
            ),
        ] {
            assert_eq!(
                DateTime::parse(text).unwrap_err().reason(),
                reason,
                "{text}"
            );
        }
        let leap = DateTime::parse("2016-12-31T23:59:60Z").unwrap();
        assert_eq!(
            leap.to_offset_date_time(),
            Some(datetime!(2017-01-01 0:00 UTC))
        );
        assert_eq!(leap.as_str(), "2016-12-31T23:59:60Z");
    }

    #[test]
    fn instant_needs_full_precision() {
        assert_eq!(
            Instant::parse("2024-01-01").unwrap_err().reason(),
            "an instant needs a full date, a time with seconds and a zone"
        );
        let instant = Instant::parse("2024-01-01T00:00:00.123456789123Z").unwrap();
        assert_eq!(instant.precision(), Precision::Fraction { digits: 12 });
        assert_eq!(
            instant.to_offset_date_time(),
            datetime!(2024-01-01 0:00:00.123456789 UTC)
        );
        assert_eq!(instant.as_str(), "2024-01-01T00:00:00.123456789123Z");
    }

    #[test]
    fn ranges_saturate_at_the_end_of_time() {
        let last = Date::parse("9999").unwrap();
        let range = last.range(UtcOffset::UTC);
        assert_eq!(range.start, datetime!(9999-01-01 0:00 UTC));
        assert_eq!(range.end, PrimitiveDateTime::MAX.assume_utc());
    }

    #[test]
    fn formats_offset_date_times() {
        let instant = Instant::try_from(datetime!(2024-03-01 15:15:00.120 -5)).unwrap();
        assert_eq!(instant.as_str(), "2024-03-01T15:15:00.12-05:00");
        let utc = DateTime::try_from(datetime!(2024-03-01 15:15:00 UTC)).unwrap();
        assert_eq!(utc.as_str(), "2024-03-01T15:15:00Z");
        assert!(Instant::try_from(datetime!(2024-03-01 15:15:00 +1:00:30)).is_err());
        let date = Date::try_from(time::macros::date!(2024 - 03 - 01)).unwrap();
        assert_eq!(DateTime::from(date).as_str(), "2024-03-01");
        assert_eq!(
            Date::try_from(time::macros::date!(0000 - 01 - 01))
                .unwrap_err()
                .reason(),
            "FHIR years run from 0001 to 9999"
        );
        assert!(Date::try_from(time::macros::date!(-0001 - 12 - 31)).is_err());
    }

    #[test]
    fn serde_keeps_the_text() {
        let value: DateTime = serde_json::from_str("\"2024-03-01T10:15:00.500+00:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            "\"2024-03-01T10:15:00.500+00:00\""
        );
        let error = serde_json::from_str::<Date>("\"2024-3-1\"").unwrap_err();
        assert!(
            error.to_string().contains("invalid FHIR date `2024-3-1`"),
            "{error}"
        );
        let number = serde_json::from_str::<Date>("20240301").unwrap_err();
        assert!(
            number.to_string().contains("a FHIR date string"),
            "{number}"
        );
    }

    #[test]
    fn decimals_keep_their_text() {
        let mut p = Parser::new(b"1.50");
        let value = Decimal::from_json(&mut p).unwrap();
        assert_eq!(value.as_str(), "1.50");
        assert_eq!(value.scale(), 2);
        assert_eq!(value.as_f64(), 1.5);
        let mut w = Writer::new();
        value.write_json(&mut w);
        assert_eq!(w.as_bytes(), b"1.50");
        assert_eq!(serde_json::to_string(&value).unwrap(), "1.50");
        let back: Decimal = serde_json::from_str(" 166.54196928074128000 ").unwrap();
        assert_eq!(back.as_str(), "166.54196928074128000");
        assert!(Decimal::from_f64(f64::NAN).is_none());
        assert_eq!(Decimal::from_f64(2.0).unwrap().as_str(), "2");
        assert_eq!(Decimal::from_f64(0.1).unwrap().as_str(), "0.1");
        assert_eq!(Decimal::from(-3i64).to_string(), "-3");
        assert_eq!(Decimal::parse("1e-3").unwrap().scale(), 0);
        for bad in ["", "01", "1.", "abc", " 1", "NaN"] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Decimal>("\"5\"").is_err());
    }
}
