//! Where tables go: a local folder, an object store (`s3://`, `gs://`, `az://`), or stdout.
//!
//! Parts are written under a temporary location first (a hidden folder, or a `_temporary/`
//! prefix that Spark, Hive and DuckDB globs skip) and published, each table's old parts
//! replaced, only when every view of the run has finished. A run that fails removes what it
//! wrote and publishes nothing.

mod local;
#[cfg(feature = "object-store")]
mod object;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use local::LocalStorage;
#[cfg(feature = "object-store")]
pub(crate) use object::ObjectStorage;

use crate::error::{Error, ErrorKind, Result};

/// A part file being written.
pub(crate) trait PartWriter: Write + Send {
    /// Completes the part (flushes, syncs, or completes the upload).
    fn finish(self: Box<Self>) -> Result<()>;
}

/// One finished part, to be published.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The table's folder relative to the destination (`patient` or `patient/source=a`).
    pub(crate) table: String,
    /// The file name (`part-00000.parquet`).
    pub(crate) file: String,
}

/// Somewhere parts can be written and then published.
pub(crate) trait Storage: Send + Sync {
    /// Starts writing a part at its temporary location.
    fn create(&self, part: &Part) -> Result<Box<dyn PartWriter>>;
    /// Moves every part to its final place, removing older `part-*` files of the same tables
    /// with the same extension.
    fn publish(&self, parts: &[Part], extension: &str) -> Result<()>;
    /// Removes everything written at the temporary location.
    fn abort(&self);
    /// Where a part ends up, for summaries.
    fn location(&self, part: &Part) -> String;
}

/// A destination for tables: a local folder, an object store URL, or stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local folder (created if missing).
    Local(std::path::PathBuf),
    /// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix` (also
    /// `abfs://`, `azure://`), with credentials from the environment as `object_store`
    /// reads them (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then `options` (object_store
    /// configuration keys such as `aws_endpoint`, `aws_allow_http`) over them.
    ObjectStore {
        /// The bucket or container and the prefix.
        url: url::Url,
        /// Configuration set in code, over the environment's.
        options: Vec<(String, String)>,
    },
    /// Rows written to standard output, for one view in CSV or NDJSON.
    Stdout,
}

impl Destination {
    /// Reads `-`, a URL with a scheme, or a local path.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`] for a URL whose scheme is not an object store.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "-" {
            return Ok(Destination::Stdout);
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let url = url::Url::parse(text).map_err(|e| {
                Error::new(ErrorKind::Storage, format!("`{text}` is not a valid URL"))
                    .with_source(e)
            })?;
            return match scheme {
                "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "azure" => {
                    Ok(Destination::ObjectStore {
                        url,
                        options: Vec::new(),
                    })
                }
                "file" => Ok(Destination::Local(url.to_file_path().map_err(|()| {
                    Error::new(ErrorKind::Storage, format!("`{text}` is not a local path"))
                })?)),
                _ => Err(Error::new(
                    ErrorKind::Storage,
                    format!(
                        "`{scheme}://` is not a destination: use a folder, s3://, gs:// or az://"
                    ),
                )),
            };
        }
        Ok(Destination::Local(text.into()))
    }

    /// Sets an object store configuration key (e.g. `aws_endpoint`); ignored for other
    /// destinations.
    #[must_use]
    pub fn with_option(mut self, key: &str, value: &str) -> Self {
        if let Destination::ObjectStore { options, .. } = &mut self {
            options.push((key.to_owned(), value.to_owned()));
        }
        self
    }
}

/// A name for this run's temporary location: unique per process and run.
pub(crate) fn run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a file name is a part of a table in `extension`.
pub(crate) fn is_part(name: &str, extension: &str) -> bool {
    name.starts_with("part-") && name.ends_with(&format!(".{extension}"))
}

/// Rows to standard output: no temporary location, nothing to publish.
pub(crate) struct StdoutStorage;

struct StdoutPart(std::io::BufWriter<std::io::Stdout>);

impl Write for StdoutPart {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl PartWriter for StdoutPart {
    fn finish(mut self: Box<Self>) -> Result<()> {
        self.0
            .flush()
            .map_err(|e| Error::new(ErrorKind::Output, "cannot write to stdout").with_source(e))
    }
}

impl Storage for StdoutStorage {
    fn create(&self, _part: &Part) -> Result<Box<dyn PartWriter>> {
        Ok(Box::new(StdoutPart(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout(),
        ))))
    }

    fn publish(&self, _parts: &[Part], _extension: &str) -> Result<()> {
        Ok(())
    }

    fn abort(&self) {}

    fn location(&self, _part: &Part) -> String {
        "-".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(Destination::parse("-").unwrap(), Destination::Stdout);
        assert_eq!(
            Destination::parse("out/tables").unwrap(),
            Destination::Local("out/tables".into())
        );
        assert!(matches!(
            Destination::parse("s3://bucket/prefix").unwrap(),
            Destination::ObjectStore { .. }
        ));
        assert!(matches!(
            Destination::parse("gs://bucket").unwrap(),
            Destination::ObjectStore { .. }
        ));
        assert!(matches!(
            Destination::parse("az://container/x").unwrap(),
            Destination::ObjectStore { .. }
        ));
        let error = Destination::parse("ftp://host/x").unwrap_err();
        assert!(
            error.to_string().contains("`ftp://` is not a destination"),
            "{error}"
        );
        assert!(is_part("part-00001.parquet", "parquet"));
        assert!(!is_part("part-00001.csv", "parquet"));
        assert!(!is_part("other.parquet", "parquet"));
    }
}
