//! One view's table: batches appended in order to part files, a new part when one is large.

use std::io::Write;
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{Batch, Compression, Format, TableSchema, csv_header};
use crate::error::{Error, ErrorKind, Result};
use crate::sink::{Part, PartWriter, Storage};

/// Rows per Parquet row group: large enough for good compression and parallel reads, small
/// enough that the group being built stays a few tens of MB.
const ROW_GROUP_ROWS: usize = 262_144;

/// A `PartWriter` that counts what goes through it.
struct Counted {
    inner: Box<dyn PartWriter>,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Open {
    /// Boxed: the writer is large, and parts are few.
    Parquet(Box<ArrowWriter<Counted>>),
    Text(Counted),
}

/// What was written for one view.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableSummary {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) parts: Vec<Part>,
}

/// Writes one view's batches to its parts.
pub(crate) struct TableWriter {
    storage: Arc<dyn Storage>,
    format: Format,
    compression: Compression,
    schema: TableSchema,
    table: String,
    part_bytes: u64,
    open: Option<(Open, Part)>,
    summary: TableSummary,
}

fn output_error(
    action: String,
    error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::new(ErrorKind::Output, action).with_source(error)
}

impl TableWriter {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        format: Format,
        compression: Compression,
        schema: TableSchema,
        table: String,
        part_bytes: u64,
    ) -> Self {
        TableWriter {
            storage,
            format,
            compression,
            schema,
            table,
            part_bytes,
            open: None,
            summary: TableSummary::default(),
        }
    }

    fn start_part(&mut self) -> Result<()> {
        let part = Part {
            table: self.table.clone(),
            file: format!(
                "part-{:05}.{}",
                self.summary.parts.len(),
                self.format.extension()
            ),
        };
        let location = self.storage.location(&part);
        let mut sink = Counted {
            inner: self.storage.create(&part)?,
            bytes: 0,
        };
        let open = match self.format {
            Format::Parquet => {
                let compression = match self.compression {
                    Compression::Zstd => {
                        ParquetCompression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default())
                    }
                    Compression::Snappy => ParquetCompression::SNAPPY,
                    Compression::None => ParquetCompression::UNCOMPRESSED,
                };
                let properties = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_created_by(format!("epic-fhir-views {}", env!("CARGO_PKG_VERSION")))
                    .build();
                Open::Parquet(Box::new(
                    ArrowWriter::try_new(sink, Arc::clone(self.schema.arrow()), Some(properties))
                        .map_err(|e| output_error(format!("cannot start {location}"), e))?,
                ))
            }
            Format::Csv => {
                sink.write_all(&csv_header(self.schema.names()))
                    .map_err(|e| output_error(format!("cannot write {location}"), e))?;
                Open::Text(sink)
            }
            Format::Ndjson => Open::Text(sink),
        };
        self.open = Some((open, part));
        Ok(())
    }

    /// Appends a batch; starts the first part, and a new one when the current is full.
    pub(crate) fn write(&mut self, batch: Batch) -> Result<()> {
        if self.open.is_none() {
            self.start_part()?;
        }
        let rows = batch.rows() as u64;
        let Some((open, part)) = &mut self.open else {
            return Ok(());
        };
        let size = match (open, batch) {
            (Open::Parquet(writer), Batch::Arrow(batch)) => {
                writer.write(&batch).map_err(|e| {
                    output_error(format!("cannot write {}", self.storage.location(part)), e)
                })?;
                writer.bytes_written() as u64 + writer.in_progress_size() as u64
            }
            (Open::Text(sink), Batch::Text { bytes, .. }) => {
                sink.write_all(&bytes).map_err(|e| {
                    output_error(format!("cannot write {}", self.storage.location(part)), e)
                })?;
                sink.bytes
            }
            _ => return Err(Error::new(ErrorKind::Output, "a batch of the wrong format")),
        };
        self.summary.rows += rows;
        if size >= self.part_bytes {
            self.close_part()?;
        }
        Ok(())
    }

    fn close_part(&mut self) -> Result<()> {
        let Some((open, part)) = self.open.take() else {
            return Ok(());
        };
        let location = self.storage.location(&part);
        let counted = match open {
            Open::Parquet(writer) => writer
                .into_inner()
                .map_err(|e| output_error(format!("cannot finish {location}"), e))?,
            Open::Text(sink) => sink,
        };
        self.summary.bytes += counted.bytes;
        counted.inner.finish()?;
        self.summary.parts.push(part);
        Ok(())
    }

    /// Closes the last part. A table without rows still gets one part (with its header or
    /// schema), so readers see the table and its columns.
    pub(crate) fn finish(mut self) -> Result<TableSummary> {
        if self.open.is_none() && self.summary.parts.is_empty() {
            self.start_part()?;
        }
        self.close_part()?;
        Ok(self.summary)
    }
}
