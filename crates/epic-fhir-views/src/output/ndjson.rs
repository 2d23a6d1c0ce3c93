//! NDJSON rows: one JSON object per row, keys in column order, values as their JSON types.

use serde_json::{Map, Value};

use crate::view::{Cell, ViewDefinition};

/// A cell as a JSON value: numbers stay numbers (with their written precision when it can be
/// kept), objects stay objects.
pub(crate) fn json_cell(cell: &Cell<'_>) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Bool(b) => Value::Bool(*b),
        Cell::Int(n) => Value::from(*n),
        Cell::Dec(d) => serde_json::from_str(&d.to_string()).unwrap_or(Value::Null),
        Cell::Number(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        Cell::Str(s) => Value::String(s.to_string()),
        Cell::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        Cell::List(items) => Value::Array(items.iter().map(json_cell).collect()),
    }
}

/// A row as a JSON object keyed by column name.
pub(crate) fn json_row(view: &ViewDefinition, row: &[Cell<'_>]) -> Value {
    let mut object = Map::with_capacity(row.len());
    for (column, cell) in view.columns().iter().zip(row) {
        object.insert(column.name.clone(), json_cell(cell));
    }
    Value::Object(object)
}

/// Writes a cell as JSON text: numbers and objects as written in the resource.
pub(crate) fn write_cell(out: &mut Vec<u8>, cell: &Cell<'_>) {
    use std::io::Write as _;
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Cell::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Cell::Dec(d) => {
            let _ = write!(out, "{d}");
        }
        Cell::Number(text) | Cell::Json(text) => out.extend_from_slice(text.as_bytes()),
        Cell::Str(s) => {
            // Writing a &str to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s.as_ref());
        }
        Cell::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_cell(out, item);
            }
            out.push(b']');
        }
    }
}
