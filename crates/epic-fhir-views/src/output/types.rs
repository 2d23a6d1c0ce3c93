//! From a column's FHIR type (and its `ansi/type` tag) to the physical type of its values,
//! and each cell converted to it.

use std::borrow::Cow;

use base64::Engine as _;

use crate::fhirpath::{Decimal, Temporal, TemporalKind};
use crate::view::{Cell, Column};

/// The physical type of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Physical {
    Bool,
    Int32,
    Int64,
    Float64,
    /// DECIMAL(precision, scale), exact.
    Decimal(u8, i8),
    Utf8,
    Binary,
    /// Days since 1970-01-01.
    Date,
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp,
}

/// The physical type of a column: its `ansi/type` tag if any, else from its FHIR type, per
/// the specification's default mapping, except that `decimal` is DOUBLE (not text) so
/// numbers can be summed without a cast; tag a column `DECIMAL(p,s)` or `VARCHAR` for the
/// exact value.
pub(crate) fn physical(column: &Column) -> Result<Physical, String> {
    if let Some(ansi) = &column.ansi_type {
        return ansi_type(ansi).ok_or_else(|| {
            format!(
                "{}: the ansi/type `{ansi}` is not one this writer knows (BOOLEAN, INTEGER, BIGINT, DOUBLE, DECIMAL(p,s), VARCHAR, DATE, TIMESTAMP, BINARY)",
                column.element
            )
        });
    }
    Ok(match column.fhir_type.as_deref() {
        Some("boolean") => Physical::Bool,
        Some("integer" | "positiveInt" | "unsignedInt") => Physical::Int32,
        Some("integer64") => Physical::Int64,
        Some("decimal") => Physical::Float64,
        Some("instant") => Physical::Timestamp,
        Some("base64Binary") => Physical::Binary,
        _ => Physical::Utf8,
    })
}

fn ansi_type(text: &str) -> Option<Physical> {
    let upper = text.trim().to_ascii_uppercase();
    let (base, args) = match upper.split_once('(') {
        Some((base, rest)) => (base.trim(), Some(rest.trim_end_matches(')'))),
        None => (upper.as_str(), None),
    };
    Some(match base {
        "BOOLEAN" | "BOOL" => Physical::Bool,
        "INT" | "INTEGER" | "SMALLINT" | "INT4" => Physical::Int32,
        "BIGINT" | "INT8" => Physical::Int64,
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" | "FLOAT8" | "REAL" => Physical::Float64,
        "DECIMAL" | "NUMERIC" => {
            let (precision, scale) = match args {
                Some(args) => {
                    let mut parts = args.split(',').map(|p| p.trim().parse::<u8>());
                    let precision = parts.next()?.ok()?;
                    let scale = match parts.next() {
                        Some(s) => s.ok()?,
                        None => 0,
                    };
                    (precision, scale)
                }
                None => (38, 9),
            };
            if precision == 0 || precision > 38 || scale > precision {
                return None;
            }
            Physical::Decimal(precision, scale as i8)
        }
        "VARCHAR" | "CHARACTER VARYING" | "TEXT" | "CHAR" | "CHARACTER" | "STRING" => {
            Physical::Utf8
        }
        "DATE" => Physical::Date,
        "TIMESTAMP" | "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => Physical::Timestamp,
        "BINARY" | "VARBINARY" | "BLOB" | "BYTEA" => Physical::Binary,
        _ => return None,
    })
}

/// A cell converted to a column's physical type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typed<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(i128),
    Text(Cow<'a, str>),
    Bytes(Vec<u8>),
}

fn kind(cell: &Cell<'_>) -> &'static str {
    match cell {
        Cell::Null => "null",
        Cell::Bool(_) => "a boolean",
        Cell::Int(_) | Cell::Dec(_) | Cell::Number(_) => "a number",
        Cell::Str(_) => "a string",
        Cell::Json(_) => "an object",
        Cell::List(_) => "a list",
    }
}

/// A cell's text as CSV and string columns write it.
pub(crate) fn text<'a>(cell: &'a Cell<'a>) -> Cow<'a, str> {
    match cell {
        Cell::Null => Cow::Borrowed(""),
        Cell::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Cell::Int(n) => Cow::Owned(n.to_string()),
        Cell::Dec(d) => Cow::Owned(d.to_string()),
        Cell::Number(n) => Cow::Borrowed(n),
        Cell::Str(s) => Cow::Borrowed(s),
        Cell::Json(j) => Cow::Borrowed(j),
        Cell::List(items) => Cow::Owned(
            serde_json::Value::Array(items.iter().map(super::ndjson::json_cell).collect())
                .to_string(),
        ),
    }
}

fn decimal_of(cell: &Cell<'_>) -> Option<Decimal> {
    match cell {
        Cell::Int(n) => Some(Decimal::from_int(*n)),
        Cell::Dec(d) => Some(*d),
        Cell::Number(n) => Decimal::parse(n),
        Cell::Str(s) => Decimal::parse(s),
        _ => None,
    }
}

/// Converts `cell` for a column of type `physical`, or says why it does not fit.
pub(crate) fn convert<'a>(cell: &'a Cell<'a>, physical: Physical) -> Result<Typed<'a>, String> {
    if matches!(cell, Cell::Null) {
        return Ok(Typed::Null);
    }
    let mismatch = |what: &str| Err(format!("{} does not fit a {what} column", kind(cell)));
    match physical {
        Physical::Utf8 => Ok(Typed::Text(text(cell))),
        Physical::Bool => match cell {
            Cell::Bool(b) => Ok(Typed::Bool(*b)),
            Cell::Str(s) if s == "true" || s == "false" => Ok(Typed::Bool(s == "true")),
            _ => mismatch("boolean"),
        },
        Physical::Int32 | Physical::Int64 => match decimal_of(cell).and_then(Decimal::to_i64) {
            Some(n) if physical == Physical::Int64 || i32::try_from(n).is_ok() => Ok(Typed::Int(n)),
            Some(_) => Err("a number too large for an INTEGER column (tag it BIGINT)".to_owned()),
            None => mismatch("whole-number"),
        },
        Physical::Float64 => match decimal_of(cell) {
            Some(d) => Ok(Typed::Float(d.to_f64())),
            None => mismatch("number"),
        },
        Physical::Decimal(_, scale) => match decimal_of(cell) {
            Some(d) if d.scale() as i64 <= scale as i64 => {
                let text = d.to_string();
                let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
                let padded = format!("{whole}{fraction:0<width$}", width = scale as usize);
                padded
                    .parse::<i128>()
                    .map(Typed::Decimal)
                    .map_err(|_| "a number too large for its DECIMAL column".to_owned())
            }
            Some(_) => Err(format!("a number with more than {scale} decimal places")),
            None => mismatch("number"),
        },
        Physical::Date => match cell {
            Cell::Str(s) => Temporal::parse_date_time(s, TemporalKind::Date)
                .and_then(|t| t.epoch_days())
                .map(|days| Typed::Int(days as i64))
                .ok_or_else(|| "a value that is not a full date (YYYY-MM-DD)".to_owned()),
            _ => mismatch("DATE"),
        },
        Physical::Timestamp => match cell {
            Cell::Str(s) => Temporal::parse_date_time(s, TemporalKind::DateTime)
                .and_then(|t| t.epoch_micros())
                .map(Typed::Int)
                .ok_or_else(|| {
                    "a value that is not an instant (a date-time to the second with a time zone)"
                        .to_owned()
                }),
            _ => mismatch("TIMESTAMP"),
        },
        Physical::Binary => match cell {
            Cell::Str(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Typed::Bytes)
                .map_err(|_| "a value that is not base64".to_owned()),
            _ => mismatch("binary"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(
            convert(&Cell::Number("120"), Physical::Int32),
            Ok(Typed::Int(120))
        );
        assert_eq!(
            convert(&Cell::Number("1.5"), Physical::Float64),
            Ok(Typed::Float(1.5))
        );
        assert_eq!(
            convert(&Cell::Number("1.5"), Physical::Decimal(10, 2)),
            Ok(Typed::Decimal(150))
        );
        assert!(convert(&Cell::Number("1.555"), Physical::Decimal(10, 2)).is_err());
        assert!(convert(&Cell::Number("1.5"), Physical::Int32).is_err());
        assert_eq!(
            convert(&Cell::Str("1970-01-02".into()), Physical::Date),
            Ok(Typed::Int(1))
        );
        assert!(convert(&Cell::Str("1970-01".into()), Physical::Date).is_err());
        assert_eq!(
            convert(
                &Cell::Str("1970-01-01T00:00:01Z".into()),
                Physical::Timestamp
            ),
            Ok(Typed::Int(1_000_000))
        );
        assert_eq!(
            convert(&Cell::Str("aGk=".into()), Physical::Binary),
            Ok(Typed::Bytes(b"hi".to_vec()))
        );
        assert_eq!(
            convert(&Cell::Bool(true), Physical::Utf8),
            Ok(Typed::Text("true".into()))
        );
        assert!(convert(&Cell::Str("x".into()), Physical::Bool).is_err());
        assert_eq!(ansi_type("decimal(10, 2)"), Some(Physical::Decimal(10, 2)));
        assert_eq!(
            ansi_type("TIMESTAMP WITH TIME ZONE"),
            Some(Physical::Timestamp)
        );
        assert_eq!(ansi_type("GEOMETRY"), None);
    }
}
