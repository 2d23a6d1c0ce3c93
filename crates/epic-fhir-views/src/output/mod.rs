//! Table encoders: rows to Parquet (typed Arrow columns), CSV and NDJSON.
//!
//! Encoding is split in two. Workers turn the rows of a block of input into a [`Batch`] (an
//! Arrow `RecordBatch`, or CSV/NDJSON text), in parallel; one writer per view then appends
//! batches in input order to the current part file (`table.rs`), compressing Parquet row
//! groups as they fill and starting a new part when one grows past its size limit.

mod ndjson;
mod table;
mod types;

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub(crate) use ndjson::json_row;
pub(crate) use table::{TableSummary, TableWriter};
use types::{Physical, Typed, convert, physical};

use crate::error::{Error, ErrorKind, Result};
use crate::view::{Cell, ViewDefinition};

/// The format of the tables written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// Apache Parquet: typed columns, compressed row groups.
    #[default]
    Parquet,
    /// CSV with a header row (RFC 4180 quoting; empty for null).
    Csv,
    /// One JSON object per row.
    Ndjson,
}

impl Format {
    /// The file extension of a part.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Format::Parquet),
            "csv" => Ok(Format::Csv),
            "ndjson" | "jsonl" | "json" => Ok(Format::Ndjson),
            _ => Err(format!("`{text}` is not a format: parquet, csv or ndjson")),
        }
    }
}

/// Parquet compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Zstandard level 1: small files, fast (the default).
    #[default]
    Zstd,
    /// Snappy: what older readers expect.
    Snappy,
    /// No compression.
    None,
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "zstd" => Ok(Compression::Zstd),
            "snappy" => Ok(Compression::Snappy),
            "none" | "uncompressed" => Ok(Compression::None),
            _ => Err(format!(
                "`{text}` is not a compression: zstd, snappy or none"
            )),
        }
    }
}

/// A view's table layout: its columns' physical types and the Arrow schema.
#[derive(Debug, Clone)]
pub(crate) struct TableSchema {
    physical: Vec<(Physical, bool)>,
    names: Vec<String>,
    arrow: SchemaRef,
}

impl TableSchema {
    pub(crate) fn new(view: &ViewDefinition) -> Result<Self> {
        let mut physical_types = Vec::new();
        let mut fields = Vec::new();
        for column in view.columns() {
            let kind = physical(column).map_err(Error::definition)?;
            let item = data_type(kind);
            let data_type = if column.collection {
                DataType::List(Arc::new(Field::new_list_field(item, true)))
            } else {
                item
            };
            fields.push(Field::new(column.name.clone(), data_type, true));
            physical_types.push((kind, column.collection));
        }
        Ok(TableSchema {
            physical: physical_types,
            names: view.columns().iter().map(|c| c.name.clone()).collect(),
            arrow: Arc::new(Schema::new(fields)),
        })
    }

    pub(crate) fn arrow(&self) -> &SchemaRef {
        &self.arrow
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }
}

fn data_type(kind: Physical) -> DataType {
    match kind {
        Physical::Bool => DataType::Boolean,
        Physical::Int32 => DataType::Int32,
        Physical::Int64 => DataType::Int64,
        Physical::Float64 => DataType::Float64,
        Physical::Decimal(p, s) => DataType::Decimal128(p, s),
        Physical::Utf8 => DataType::Utf8,
        Physical::Binary => DataType::Binary,
        Physical::Date => DataType::Date32,
        Physical::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// Encoded rows of one block of input for one view.
pub(crate) enum Batch {
    Arrow(RecordBatch),
    Text { bytes: Vec<u8>, rows: usize },
}

impl Batch {
    pub(crate) fn rows(&self) -> usize {
        match self {
            Batch::Arrow(batch) => batch.num_rows(),
            Batch::Text { rows, .. } => *rows,
        }
    }
}

/// Turns rows into a [`Batch`].
pub(crate) enum Encoder {
    Arrow(Vec<ColumnBuilder>, SchemaRef),
    Csv(Vec<u8>, usize, Vec<Physical>),
    Ndjson(Vec<u8>, usize, Vec<String>),
}

impl Encoder {
    pub(crate) fn new(format: Format, schema: &TableSchema) -> Self {
        match format {
            Format::Parquet => Encoder::Arrow(
                schema
                    .physical
                    .iter()
                    .map(|&(kind, list)| ColumnBuilder::new(kind, list))
                    .collect(),
                Arc::clone(&schema.arrow),
            ),
            Format::Csv => Encoder::Csv(
                Vec::new(),
                0,
                schema.physical.iter().map(|(kind, _)| *kind).collect(),
            ),
            Format::Ndjson => Encoder::Ndjson(
                Vec::new(),
                0,
                schema
                    .names
                    .iter()
                    .map(|name| serde_json::Value::from(name.as_str()).to_string())
                    .collect(),
            ),
        }
    }

    /// Appends one row; a value that does not fit its column is an error naming the column.
    pub(crate) fn push(
        &mut self,
        row: &[Cell<'_>],
        names: &[String],
    ) -> std::result::Result<(), String> {
        match self {
            Encoder::Arrow(builders, _) => {
                for (i, (builder, cell)) in builders.iter_mut().zip(row).enumerate() {
                    builder
                        .push(cell)
                        .map_err(|e| format!("column `{}`: {e}", names[i]))?;
                }
            }
            Encoder::Csv(out, rows, kinds) => {
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    // The value must fit its column as in Parquet; CSV then keeps the text as
                    // written (numbers with their precision, instants with their offset).
                    let typed = convert(cell, kinds[i])
                        .map_err(|e| format!("column `{}`: {e}", names[i]))?;
                    if typed != Typed::Null {
                        csv_field(out, &types::text(cell));
                    }
                }
                out.extend_from_slice(b"\r\n");
                *rows += 1;
            }
            Encoder::Ndjson(out, rows, keys) => {
                out.push(b'{');
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(keys[i].as_bytes());
                    out.push(b':');
                    ndjson::write_cell(out, cell);
                }
                out.extend_from_slice(b"}\n");
                *rows += 1;
            }
        }
        Ok(())
    }

    /// The rows pushed so far, as a batch; the encoder starts empty again.
    pub(crate) fn take(&mut self) -> Result<Batch> {
        match self {
            Encoder::Arrow(builders, schema) => {
                let columns: Vec<ArrayRef> =
                    builders.iter_mut().map(ColumnBuilder::finish).collect();
                RecordBatch::try_new(Arc::clone(schema), columns)
                    .map(Batch::Arrow)
                    .map_err(|e| {
                        Error::new(ErrorKind::Output, "cannot assemble a batch of rows")
                            .with_source(e)
                    })
            }
            Encoder::Csv(out, rows, _) | Encoder::Ndjson(out, rows, _) => {
                let batch = Batch::Text {
                    bytes: std::mem::take(out),
                    rows: *rows,
                };
                *rows = 0;
                Ok(batch)
            }
        }
    }
}

/// The header line of a CSV part.
pub(crate) fn csv_header(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(&mut out, name);
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn csv_field(out: &mut Vec<u8>, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        for &b in text.as_bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// An Arrow column under construction.
pub(crate) enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    List(ListBuilder<Box<dyn ArrayBuilder>>, Physical),
}

fn boxed(kind: Physical) -> Box<dyn ArrayBuilder> {
    match ColumnBuilder::new(kind, false) {
        ColumnBuilder::Bool(b) => Box::new(b),
        ColumnBuilder::Int32(b) => Box::new(b),
        ColumnBuilder::Int64(b) => Box::new(b),
        ColumnBuilder::Float64(b) => Box::new(b),
        ColumnBuilder::Decimal(b, ..) => Box::new(b),
        ColumnBuilder::Utf8(b) => Box::new(b),
        ColumnBuilder::Binary(b) => Box::new(b),
        ColumnBuilder::Date(b) => Box::new(b),
        ColumnBuilder::Timestamp(b) => Box::new(b),
        ColumnBuilder::List(b, _) => Box::new(b),
    }
}

impl ColumnBuilder {
    fn new(kind: Physical, list: bool) -> Self {
        if list {
            let item = data_type(kind);
            return ColumnBuilder::List(
                ListBuilder::new(boxed(kind))
                    .with_field(Arc::new(Field::new_list_field(item, true))),
                kind,
            );
        }
        match kind {
            Physical::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            Physical::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            Physical::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            Physical::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            Physical::Decimal(p, s) => ColumnBuilder::Decimal(
                Decimal128Builder::new().with_data_type(DataType::Decimal128(p, s)),
                p,
                s,
            ),
            Physical::Utf8 => ColumnBuilder::Utf8(StringBuilder::new()),
            Physical::Binary => ColumnBuilder::Binary(BinaryBuilder::new()),
            Physical::Date => ColumnBuilder::Date(Date32Builder::new()),
            Physical::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn kind(&self) -> Physical {
        match self {
            ColumnBuilder::Bool(_) => Physical::Bool,
            ColumnBuilder::Int32(_) => Physical::Int32,
            ColumnBuilder::Int64(_) => Physical::Int64,
            ColumnBuilder::Float64(_) => Physical::Float64,
            ColumnBuilder::Decimal(_, p, s) => Physical::Decimal(*p, *s),
            ColumnBuilder::Utf8(_) => Physical::Utf8,
            ColumnBuilder::Binary(_) => Physical::Binary,
            ColumnBuilder::Date(_) => Physical::Date,
            ColumnBuilder::Timestamp(_) => Physical::Timestamp,
            ColumnBuilder::List(_, kind) => *kind,
        }
    }

    fn push(&mut self, cell: &Cell<'_>) -> std::result::Result<(), String> {
        if let ColumnBuilder::List(list, kind) = self {
            match cell {
                Cell::List(items) => {
                    for item in items {
                        let typed = convert(item, *kind)?;
                        push_boxed(list.values().as_mut(), *kind, &typed)?;
                    }
                    list.append(true);
                }
                Cell::Null => list.append(false),
                _ => return Err("a single value in a collection column".to_owned()),
            }
            return Ok(());
        }
        if let Cell::List(_) = cell {
            return Err("a list in a column that is not a collection".to_owned());
        }
        let typed = convert(cell, self.kind())?;
        match (self, typed) {
            (ColumnBuilder::Bool(b), Typed::Bool(v)) => b.append_value(v),
            (ColumnBuilder::Int32(b), Typed::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::Int64(b), Typed::Int(v)) => b.append_value(v),
            (ColumnBuilder::Float64(b), Typed::Float(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b, ..), Typed::Decimal(v)) => b.append_value(v),
            (ColumnBuilder::Utf8(b), Typed::Text(v)) => b.append_value(v),
            (ColumnBuilder::Binary(b), Typed::Bytes(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Typed::Int(v)) => b.append_value(v as i32),
            (ColumnBuilder::Timestamp(b), Typed::Int(v)) => b.append_value(v),
            (builder, Typed::Null) => builder.push_null(),
            _ => return Err("a value of the wrong type".to_owned()),
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Decimal(b, ..) => b.append_null(),
            ColumnBuilder::Utf8(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::List(b, _) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, ..) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::List(b, _) => Arc::new(b.finish()),
        }
    }
}

/// Appends a converted item to a list's boxed value builder.
fn push_boxed(
    builder: &mut dyn ArrayBuilder,
    kind: Physical,
    typed: &Typed<'_>,
) -> std::result::Result<(), String> {
    let any = builder.as_any_mut();
    macro_rules! append {
        ($builder:ty, $value:expr) => {{
            let b = any
                .downcast_mut::<$builder>()
                .ok_or_else(|| "an internal list builder mismatch".to_owned())?;
            match typed {
                Typed::Null => b.append_null(),
                _ => b.append_value($value),
            }
        }};
    }
    let int = || match typed {
        Typed::Int(v) => *v,
        _ => 0,
    };
    match kind {
        Physical::Bool => append!(BooleanBuilder, matches!(typed, Typed::Bool(true))),
        Physical::Int32 => append!(Int32Builder, int() as i32),
        Physical::Int64 => append!(Int64Builder, int()),
        Physical::Float64 => append!(
            Float64Builder,
            match typed {
                Typed::Float(f) => *f,
                _ => 0.0,
            }
        ),
        Physical::Decimal(..) => append!(
            Decimal128Builder,
            match typed {
                Typed::Decimal(d) => *d,
                _ => 0,
            }
        ),
        Physical::Utf8 => append!(
            StringBuilder,
            match typed {
                Typed::Text(t) => t.as_ref(),
                _ => "",
            }
        ),
        Physical::Binary => append!(
            BinaryBuilder,
            match typed {
                Typed::Bytes(b) => b.as_slice(),
                _ => &[][..],
            }
        ),
        Physical::Date => append!(Date32Builder, int() as i32),
        Physical::Timestamp => append!(TimestampMicrosecondBuilder, int()),
    }
    Ok(())
}
