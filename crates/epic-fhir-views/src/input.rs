//! Inputs: NDJSON files (gzip detected by its magic bytes), folders of them, a bulk export's
//! output folder as `epic-fhir export` leaves it (its state file names each file's type), or
//! standard input.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};

/// The state file `epic-fhir export` keeps in its output folder.
pub const EXPORT_STATE_FILE: &str = ".epic-fhir-export.json";

/// Where resources come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An NDJSON file, plain or gzipped.
    File(PathBuf),
    /// Standard input, plain or gzipped.
    Stdin,
}

/// One input to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub source: Source,
    /// The resource type of every line, when known (a bulk export's manifest says it); files
    /// of types no view reads are then skipped unread.
    pub resource_type: Option<String>,
}

impl InputFile {
    /// A file whose resource types are not known in advance.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        InputFile {
            source: Source::File(path.into()),
            resource_type: None,
        }
    }

    /// A file of one resource type (from a bulk export manifest).
    pub fn typed(path: impl Into<PathBuf>, resource_type: impl Into<String>) -> Self {
        InputFile {
            source: Source::File(path.into()),
            resource_type: Some(resource_type.into()),
        }
    }

    /// A name for messages.
    pub fn name(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "stdin".to_owned(),
        }
    }

    /// Opens the input for reading, decompressing gzip. `counter` receives the bytes read
    /// from the file itself (compressed), for progress.
    pub(crate) fn open(
        &self,
        counter: impl Fn(u64) + Send + 'static,
    ) -> Result<Box<dyn Read + Send>> {
        let raw: Box<dyn Read + Send> = match &self.source {
            Source::File(path) => Box::new(File::open(path).map_err(|e| {
                Error::new(ErrorKind::Input, format!("cannot open {}", path.display()))
                    .with_source(e)
            })?),
            Source::Stdin => Box::new(std::io::stdin()),
        };
        // A small buffer: it serves the gzip check and the decoder's reads, while the run's
        // reads of whole blocks from a plain file are larger and bypass it (no extra copy).
        let mut reader = BufReader::with_capacity(
            64 << 10,
            Counting {
                inner: raw,
                counter,
            },
        );
        let magic = {
            use std::io::BufRead;
            reader
                .fill_buf()
                .map_err(|e| {
                    Error::new(ErrorKind::Input, format!("cannot read {}", self.name()))
                        .with_source(e)
                })?
                .starts_with(&[0x1f, 0x8b])
        };
        Ok(if magic {
            Box::new(MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        })
    }
}

struct Counting<R, F> {
    inner: R,
    counter: F,
}

impl<R: Read, F: Fn(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.counter)(n as u64);
        Ok(n)
    }
}

fn is_ndjson_name(name: &str) -> bool {
    [".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Expands command-line inputs: `-` is stdin; a folder holding an export's state file gives
/// that export's finished output files with their types; another folder gives its
/// `*.ndjson`, `*.ndjson.gz`, `*.jsonl` and `*.jsonl.gz` files in name order; a file is
/// itself.
///
/// # Errors
/// [`ErrorKind::Input`] for a path that does not exist, a folder without NDJSON files, or a
/// damaged export state.
pub fn expand(args: &[String]) -> Result<Vec<InputFile>> {
    let mut inputs = Vec::new();
    for arg in args {
        if arg == "-" {
            inputs.push(InputFile {
                source: Source::Stdin,
                resource_type: None,
            });
            continue;
        }
        let path = Path::new(arg);
        let metadata = std::fs::metadata(path).map_err(|e| {
            Error::new(ErrorKind::Input, format!("cannot read {arg}")).with_source(e)
        })?;
        if !metadata.is_dir() {
            inputs.push(InputFile::path(path));
            continue;
        }
        let state = path.join(EXPORT_STATE_FILE);
        if state.exists() {
            inputs.extend(export_folder(path, &state)?);
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::new(ErrorKind::Input, format!("cannot list {arg}")).with_source(e))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                !name.starts_with('.') && is_ndjson_name(&name) && entry.path().is_file()
            })
            .map(|entry| entry.path())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::new(
                ErrorKind::Input,
                format!("{arg} holds no *.ndjson, *.ndjson.gz, *.jsonl or *.jsonl.gz files"),
            ));
        }
        inputs.extend(files.into_iter().map(InputFile::path));
    }
    Ok(inputs)
}

/// The finished output files of an export folder, from its state file.
fn export_folder(dir: &Path, state: &Path) -> Result<Vec<InputFile>> {
    let text = std::fs::read(state).map_err(|e| {
        Error::new(ErrorKind::Input, format!("cannot read {}", state.display())).with_source(e)
    })?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| {
        Error::new(
            ErrorKind::Input,
            format!("{} is not an export state", state.display()),
        )
        .with_source(e)
    })?;
    let files = value
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Input,
                format!(
                    "{} lists no files (has the export finished its manifest?)",
                    state.display()
                ),
            )
        })?;
    let mut inputs = Vec::new();
    let mut unfinished = 0;
    for file in files {
        let kind = file.get("kind").and_then(Value::as_str);
        let name = file.get("name").and_then(Value::as_str);
        let resource_type = file.get("type").and_then(Value::as_str);
        let (Some("output"), Some(name), Some(resource_type)) = (kind, name, resource_type) else {
            continue;
        };
        if file.get("done").is_none_or(Value::is_null) {
            unfinished += 1;
            continue;
        }
        inputs.push(InputFile::typed(dir.join(name), resource_type));
    }
    if unfinished > 0 {
        tracing::warn!(
            folder = %dir.display(),
            unfinished,
            "the export is not finished: its unfinished files are left out (run `epic-fhir export --resume` first)"
        );
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_export_states() {
        let dir = std::env::temp_dir().join(format!("views-input-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("export")).unwrap();
        std::fs::write(dir.join("b.ndjson"), "").unwrap();
        std::fs::write(dir.join("a.ndjson.gz"), "").unwrap();
        std::fs::write(dir.join("notes.txt"), "").unwrap();
        let export = dir.join("export");
        std::fs::write(export.join("Patient-0001.ndjson"), "").unwrap();
        std::fs::write(
            export.join(EXPORT_STATE_FILE),
            r#"{"files":[
                {"kind":"output","type":"Patient","name":"Patient-0001.ndjson","done":{"bytes":0,"resources":0}},
                {"kind":"output","type":"Observation","name":"Observation-0001.ndjson"},
                {"kind":"error","type":"OperationOutcome","name":"error-OperationOutcome-0001.ndjson","done":{"bytes":0,"resources":0}}]}"#,
        )
        .unwrap();
        let args = [
            dir.display().to_string(),
            export.display().to_string(),
            "-".to_owned(),
        ];
        let inputs = expand(&args).unwrap();
        assert_eq!(
            inputs,
            vec![
                InputFile::path(dir.join("a.ndjson.gz")),
                InputFile::path(dir.join("b.ndjson")),
                InputFile::typed(export.join("Patient-0001.ndjson"), "Patient"),
                InputFile {
                    source: Source::Stdin,
                    resource_type: None
                },
            ]
        );
        let error = expand(&[dir.join("missing").display().to_string()]).unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
