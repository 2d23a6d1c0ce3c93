//! Loading resources from NDJSON files and FHIR Bundles.
//!
//! [`load_dir`] reads every `*.ndjson`, `*.ndjson.gz`, `*.json` and `*.json.gz` file of a
//! directory (not its subdirectories), in file-name order, and hands each resource to a sink,
//! typically the store's insert. [`load_file`] does the same for one file.
//!
//! - NDJSON: one resource per line, blank lines skipped, streamed line by line so a file is
//!   never held in memory whole. A line holding a Bundle is delivered as a Bundle.
//! - JSON: a single resource, or a Bundle of any type whose `entry[].resource`s are delivered.
//!   Synthea-style transaction Bundles refer to their entries by `fullUrl` (`urn:uuid:...`, or
//!   an absolute `http(s)://.../Type/id`); such references are rewritten to the relative
//!   `Type/id` the entry is stored under. References to `urn:uuid:`s that no entry declares are
//!   left alone and counted in [`LoadReport::unresolved_references`].
//! - A `.json` file whose top-level object has no `resourceType` (a manifest, a counts file) is
//!   not FHIR: it is skipped and listed in [`LoadReport::skipped`].
//! - Gzip is recognised by its magic bytes, whatever the file is called.
//!
//! The first problem stops the load with a [`LoadError`] naming the file and the line (NDJSON)
//! or the `Bundle.entry` index, and saying what went wrong, including the sink's own message
//! when it rejects a resource.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::search::reference::split_reference;

/// Read buffer size: large enough that gzip inflation and JSON parsing dominate, not syscalls.
const BUFFER_BYTES: usize = 256 * 1024;

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Where in a file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Position {
    /// The file as a whole.
    File,
    /// A 1-based line number.
    Line(u64),
    /// A 0-based index into `Bundle.entry`.
    Entry(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File => Ok(()),
            Self::Line(line) => write!(f, " line {line}"),
            Self::Entry(index) => write!(f, " Bundle.entry[{index}]"),
        }
    }
}

/// Why loading stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The directory could not be listed (missing, not a directory, no permission).
    #[error("cannot list directory {}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file could not be opened or read (including a corrupt gzip stream).
    #[error("cannot read {}{position}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Where reading failed.
        position: Position,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The content is not valid JSON or not a FHIR resource.
    #[error("{}{position}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line or entry at fault.
        position: Position,
        /// What is wrong, e.g. `expected value at column 1`.
        message: String,
    },
    /// The sink refused a resource.
    #[error("{}{position}: {resource} rejected: {message}", path.display())]
    Rejected {
        /// The file.
        path: PathBuf,
        /// The line or entry of the resource.
        position: Position,
        /// `Type/id` (or just `Type` when the resource has no id).
        resource: String,
        /// The sink's error message.
        message: String,
    },
}

impl LoadError {
    /// The file or directory the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::ReadDir { path, .. }
            | Self::Io { path, .. }
            | Self::Invalid { path, .. }
            | Self::Rejected { path, .. } => path,
        }
    }

    /// Where in the file the error is.
    #[must_use]
    pub fn position(&self) -> Position {
        match self {
            Self::ReadDir { .. } => Position::File,
            Self::Io { position, .. }
            | Self::Invalid { position, .. }
            | Self::Rejected { position, .. } => *position,
        }
    }
}

/// How a file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// Newline-delimited JSON, one resource per line.
    Ndjson,
    /// A JSON file holding one resource.
    Resource,
    /// A JSON file holding a Bundle whose entries were delivered.
    Bundle,
}

/// What one file contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// How it was read.
    pub kind: FileKind,
    /// Whether it was gzip-compressed.
    pub gzip: bool,
    /// Resources delivered from it.
    pub resources: usize,
}

/// A `.json` file that was not loaded because it is not FHIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// What a load delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Resources delivered per `resourceType`.
    pub counts: BTreeMap<String, usize>,
    /// All resources delivered.
    pub total: usize,
    /// Files read, in the order they were read.
    pub files: Vec<FileReport>,
    /// `.json` files skipped because they hold no FHIR resource.
    pub skipped: Vec<SkippedFile>,
    /// Bundle references rewritten from a `fullUrl` to `Type/id`.
    pub references_rewritten: usize,
    /// `urn:uuid:` references that matched no entry of their Bundle (left unchanged).
    pub unresolved_references: usize,
    /// Bundle entries without a `resource` (e.g. `DELETE` requests), which were ignored.
    pub entries_without_resource: usize,
}

/// The sink resources are delivered to; an `Err` stops the load.
pub type Sink<'a> = dyn FnMut(Value) -> Result<(), String> + 'a;

/// Which reader a file name calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Json,
}

/// The format a file name announces, or `None` for files the loader ignores.
fn format_of(name: &str) -> Option<Format> {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    if stem.ends_with(".ndjson") {
        Some(Format::Ndjson)
    } else if stem.ends_with(".json") {
        Some(Format::Json)
    } else {
        None
    }
}

/// Loads every NDJSON and JSON file (optionally gzipped) of a directory, in file-name order.
///
/// A path to a single file is accepted too and loaded on its own. Subdirectories, hidden files
/// and files with other extensions are ignored.
///
/// # Errors
/// The first I/O failure, malformed line or entry, or resource the sink rejects; see
/// [`LoadError`].
pub fn load_dir(dir: &Path, sink: &mut Sink<'_>) -> Result<LoadReport, LoadError> {
    let mut report = LoadReport::default();
    if dir.is_file() {
        load_into(dir, sink, &mut report)?;
        return Ok(report);
    }
    let read_dir = |source| LoadError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || format_of(&name).is_none() {
            continue;
        }
        let path = entry.path();
        // `is_file` follows symbolic links, so a link to a data file is loaded.
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    for path in &files {
        load_into(path, sink, &mut report)?;
    }
    tracing::info!(
        directory = %dir.display(),
        files = report.files.len(),
        resources = report.total,
        "loaded data directory"
    );
    Ok(report)
}

/// Loads one NDJSON or JSON file (optionally gzipped); the name's extension picks the format
/// (`.ndjson` or `.json`, optionally followed by `.gz`).
///
/// # Errors
/// As [`load_dir`]; a file name with another extension is [`LoadError::Invalid`].
pub fn load_file(path: &Path, sink: &mut Sink<'_>) -> Result<LoadReport, LoadError> {
    let mut report = LoadReport::default();
    load_into(path, sink, &mut report)?;
    Ok(report)
}

fn load_into(path: &Path, sink: &mut Sink<'_>, report: &mut LoadReport) -> Result<(), LoadError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(format) = format_of(&name) else {
        return Err(LoadError::Invalid {
            path: path.to_path_buf(),
            position: Position::File,
            message: "unsupported file type: expected .ndjson, .ndjson.gz, .json or .json.gz"
                .to_owned(),
        });
    };
    let (reader, gzip) = open(path)?;
    let before = report.total;
    let kind = match format {
        Format::Ndjson => {
            load_ndjson(path, reader, sink, report)?;
            Some(FileKind::Ndjson)
        }
        Format::Json => load_json(path, reader, sink, report)?,
    };
    if let Some(kind) = kind {
        let resources = report.total - before;
        tracing::debug!(file = %path.display(), resources, gzip, "loaded file");
        report.files.push(FileReport {
            path: path.to_path_buf(),
            kind,
            gzip,
            resources,
        });
    }
    Ok(())
}

/// Opens a file for buffered reading, inflating it when it starts with the gzip magic bytes.
fn open(path: &Path) -> Result<(Box<dyn BufRead>, bool), LoadError> {
    let io_error = |source| LoadError::Io {
        path: path.to_path_buf(),
        position: Position::File,
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, file);
    let head = reader.fill_buf().map_err(io_error)?;
    let gzip = head.starts_with(&GZIP_MAGIC);
    if gzip {
        // MultiGzDecoder also reads files made of several concatenated gzip members.
        let inflated = MultiGzDecoder::new(reader);
        Ok((
            Box::new(BufReader::with_capacity(BUFFER_BYTES, inflated)),
            true,
        ))
    } else {
        Ok((Box::new(reader), false))
    }
}

/// A serde_json error without the `at line L column C` suffix, plus the column: each NDJSON
/// line is parsed on its own, so serde's line is always 1 and only the column helps.
fn json_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match full.strip_suffix(&suffix) {
        Some(message) if error.column() > 0 => format!("{message} at column {}", error.column()),
        Some(message) => message.to_owned(),
        None => full,
    }
}

/// The `Type/id` label of a resource, for messages.
fn label(resource: &Value) -> String {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("resource");
    match resource.get("id").and_then(Value::as_str) {
        Some(id) => format!("{resource_type}/{id}"),
        None => resource_type.to_owned(),
    }
}

/// Hands one resource to the sink and counts it.
fn deliver(
    path: &Path,
    position: Position,
    resource_type: String,
    resource: Value,
    sink: &mut Sink<'_>,
    report: &mut LoadReport,
) -> Result<(), LoadError> {
    // The label is only needed on rejection, but the value moves into the sink.
    let described = label(&resource);
    sink(resource).map_err(|message| LoadError::Rejected {
        path: path.to_path_buf(),
        position,
        resource: described,
        message,
    })?;
    *report.counts.entry(resource_type).or_default() += 1;
    report.total += 1;
    Ok(())
}

/// The `resourceType` of a parsed value, or a message saying why it is not a resource.
fn resource_type_of(value: &Value) -> Result<String, String> {
    match value {
        Value::Object(map) => match map.get("resourceType") {
            Some(Value::String(t)) if !t.is_empty() => Ok(t.clone()),
            Some(_) => Err("\"resourceType\" is not a non-empty string".to_owned()),
            None => Err("not a FHIR resource: no \"resourceType\"".to_owned()),
        },
        other => Err(format!(
            "expected a FHIR resource (a JSON object), found {}",
            kind_of(other)
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn load_ndjson(
    path: &Path,
    mut reader: Box<dyn BufRead>,
    sink: &mut Sink<'_>,
    report: &mut LoadReport,
) -> Result<(), LoadError> {
    let mut line = Vec::with_capacity(64 * 1024);
    let mut number: u64 = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| LoadError::Io {
                path: path.to_path_buf(),
                position: Position::Line(number + 1),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let mut bytes = line.as_slice();
        if number == 1 {
            // Some exporters start UTF-8 files with a byte order mark.
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let position = Position::Line(number);
        let invalid = |message| LoadError::Invalid {
            path: path.to_path_buf(),
            position,
            message,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(json_message(&e)))?;
        let resource_type = resource_type_of(&value).map_err(invalid)?;
        deliver(path, position, resource_type, value, sink, report)?;
    }
}

/// Loads a `.json` file; `None` when the file is not FHIR and was skipped.
fn load_json(
    path: &Path,
    reader: Box<dyn BufRead>,
    sink: &mut Sink<'_>,
    report: &mut LoadReport,
) -> Result<Option<FileKind>, LoadError> {
    let value: Value = serde_json::from_reader(reader).map_err(|e| {
        if e.is_io() {
            LoadError::Io {
                path: path.to_path_buf(),
                position: Position::File,
                source: io::Error::from(e),
            }
        } else {
            LoadError::Invalid {
                path: path.to_path_buf(),
                position: Position::Line(e.line() as u64),
                message: json_message(&e),
            }
        }
    })?;
    let invalid = |message| LoadError::Invalid {
        path: path.to_path_buf(),
        position: Position::File,
        message,
    };
    if let Value::Object(map) = &value {
        if !map.contains_key("resourceType") {
            let reason = "not a FHIR resource: the top-level object has no \"resourceType\"";
            tracing::warn!(file = %path.display(), "{reason}; skipped");
            report.skipped.push(SkippedFile {
                path: path.to_path_buf(),
                reason: reason.to_owned(),
            });
            return Ok(None);
        }
    }
    let resource_type = resource_type_of(&value).map_err(invalid)?;
    if resource_type != "Bundle" {
        deliver(path, Position::File, resource_type, value, sink, report)?;
        return Ok(Some(FileKind::Resource));
    }
    load_bundle(path, value, sink, report)?;
    Ok(Some(FileKind::Bundle))
}

/// The id a `fullUrl` gives an entry whose resource has none: the uuid of `urn:uuid:X`, or the
/// id of an absolute `http(s)://base/Type/id[/_history/v]` when `Type` is the resource's type.
fn id_from_full_url(full_url: &str, resource_type: &str) -> Option<String> {
    if let Some(uuid) = strip_prefix_ignore_case(full_url, "urn:uuid:") {
        return (!uuid.is_empty()).then(|| uuid.to_owned());
    }
    let path = strip_prefix_ignore_case(full_url, "https://")
        .or_else(|| strip_prefix_ignore_case(full_url, "http://"))?;
    match split_reference(path.trim_end_matches('/')) {
        Some((Some(kind), id)) if kind == resource_type => Some(id.to_owned()),
        _ => None,
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The lookup key of a fullUrl or reference: UUIDs are case-insensitive, URLs are not.
fn url_key(url: &str) -> String {
    match strip_prefix_ignore_case(url, "urn:uuid:") {
        Some(uuid) => format!("urn:uuid:{}", uuid.to_ascii_lowercase()),
        None => url.to_owned(),
    }
}

/// Rewrites every `reference` that names a Bundle entry's fullUrl to that entry's `Type/id`.
fn rewrite_references(
    value: &mut Value,
    targets: &HashMap<String, String>,
    report: &mut LoadReport,
) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "reference" {
                    if let Value::String(reference) = item {
                        rewrite_one(reference, targets, report);
                        continue;
                    }
                }
                rewrite_references(item, targets, report);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, targets, report);
            }
        }
        _ => {}
    }
}

fn rewrite_one(reference: &mut String, targets: &HashMap<String, String>, report: &mut LoadReport) {
    let is_uuid = strip_prefix_ignore_case(reference, "urn:uuid:").is_some();
    // Relative references (the vast majority) cannot name a fullUrl: skip the lookup.
    if !is_uuid && !reference.contains(':') {
        return;
    }
    if let Some(target) = targets.get(&url_key(reference)) {
        reference.clone_from(target);
        report.references_rewritten += 1;
    } else if is_uuid {
        report.unresolved_references += 1;
    }
}

fn load_bundle(
    path: &Path,
    bundle: Value,
    sink: &mut Sink<'_>,
    report: &mut LoadReport,
) -> Result<(), LoadError> {
    let invalid = |position, message: String| LoadError::Invalid {
        path: path.to_path_buf(),
        position,
        message,
    };
    let Value::Object(mut bundle) = bundle else {
        return Err(invalid(
            Position::File,
            "a Bundle must be a JSON object".to_owned(),
        ));
    };
    let entries = match bundle.remove("entry") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(invalid(
                Position::File,
                format!("Bundle.entry must be an array, found {}", kind_of(&other)),
            ));
        }
    };

    // First pass: take every entry's resource, settle its id and note its fullUrl.
    let mut resources: Vec<(usize, String, Value)> = Vec::with_capacity(entries.len());
    let mut targets: HashMap<String, String> = HashMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let position = Position::Entry(index);
        let Value::Object(mut entry) = entry else {
            return Err(invalid(position, "entry is not a JSON object".to_owned()));
        };
        let full_url = match entry.get("fullUrl") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) => Some(url.clone()),
            Some(other) => {
                return Err(invalid(
                    position,
                    format!("fullUrl must be a string, found {}", kind_of(other)),
                ));
            }
        };
        let Some(resource) = entry.remove("resource") else {
            report.entries_without_resource += 1;
            continue;
        };
        let resource_type = resource_type_of(&resource).map_err(|m| invalid(position, m))?;
        let Value::Object(mut resource) = resource else {
            return Err(invalid(
                position,
                "resource is not a JSON object".to_owned(),
            ));
        };
        let id = match resource.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(other) => {
                return Err(invalid(
                    position,
                    format!("resource.id must be a string, found {}", kind_of(other)),
                ));
            }
        };
        let id = match id {
            Some(id) => Some(id),
            None => {
                let derived = full_url
                    .as_deref()
                    .and_then(|url| id_from_full_url(url, &resource_type));
                if let Some(derived) = &derived {
                    resource.insert("id".to_owned(), Value::String(derived.clone()));
                }
                derived
            }
        };
        if let (Some(url), Some(id)) = (&full_url, &id) {
            targets.insert(url_key(url), format!("{resource_type}/{id}"));
        }
        resources.push((index, resource_type, Value::Object(resource)));
    }

    // Second pass: rewrite references now that every entry's target is known, and deliver.
    let unresolved_before = report.unresolved_references;
    for (index, resource_type, mut resource) in resources {
        rewrite_references(&mut resource, &targets, report);
        deliver(
            path,
            Position::Entry(index),
            resource_type,
            resource,
            sink,
            report,
        )?;
    }
    let unresolved = report.unresolved_references - unresolved_before;
    if unresolved > 0 {
        tracing::warn!(
            file = %path.display(),
            unresolved,
            "urn:uuid references to no entry of the Bundle were left unchanged"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use serde_json::json;

    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("epic-fhir-load-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            if let Err(e) = std::fs::create_dir_all(&path) {
                panic!("cannot create {}: {e}", path.display());
            }
            Self(path)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            if let Err(e) = std::fs::write(&path, bytes) {
                panic!("cannot write {}: {e}", path.display());
            }
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let written = encoder.write_all(bytes).and_then(|()| encoder.finish());
        match written {
            Ok(out) => out,
            Err(e) => panic!("gzip failed: {e}"),
        }
    }

    /// Loads a path, collecting what the sink receives.
    fn load(path: &Path) -> (Result<LoadReport, LoadError>, Vec<Value>) {
        let mut got = Vec::new();
        let result = load_dir(path, &mut |v| {
            got.push(v);
            Ok(())
        });
        (result, got)
    }

    fn ok(result: Result<LoadReport, LoadError>) -> LoadReport {
        match result {
            Ok(report) => report,
            Err(e) => panic!("load failed: {e}"),
        }
    }

    #[test]
    fn loads_the_synthea_sample_with_exact_counts() {
        // The repository's copy, unless `EPIC_FHIR_SYNTHEA_DIR` names another.
        let dir = std::env::var_os("EPIC_FHIR_SYNTHEA_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4"),
            std::path::PathBuf::from,
        );
        let dir = dir.as_path();
        let expected: Value = match std::fs::read(dir.join("counts.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => panic!("cannot read counts.json: {e}"),
        };
        let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
        let report = ok(load_dir(dir, &mut |v| {
            let t = v["resourceType"].as_str().unwrap_or_default().to_owned();
            *per_type.entry(t).or_default() += 1;
            Ok(())
        }));
        let Some(counts) = expected["counts"].as_object() else {
            panic!("counts.json has no counts object");
        };
        let expected_counts: BTreeMap<String, usize> = counts
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0) as usize))
            .collect();
        assert_eq!(report.counts, expected_counts);
        assert_eq!(per_type, expected_counts);
        assert_eq!(report.total, 59_484);
        assert_eq!(Some(report.total as u64), expected["resources"].as_u64());
        assert_eq!(report.files.len(), 16);
        assert!(
            report
                .files
                .iter()
                .all(|f| f.gzip && f.kind == FileKind::Ndjson)
        );
        let names: Vec<String> = report
            .files
            .iter()
            .filter_map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "files are read in name order");
        // counts.json is JSON but not FHIR: skipped and reported, never delivered.
        assert_eq!(report.skipped.len(), 1);
        assert!(report.skipped[0].path.ends_with("counts.json"));
    }

    #[test]
    fn rewrites_synthea_urn_uuid_references() {
        let dir = TempDir::new("bundle");
        let patient = "3f4e5a6b-1111-4c2d-9e8f-0123456789ab";
        let encounter = "8a7b6c5d-2222-4e3f-8a9b-abcdef012345";
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": format!("urn:uuid:{patient}"),
                    "resource": { "resourceType": "Patient", "id": patient, "name": [{ "family": "Doe" }] },
                    "request": { "method": "POST", "url": "Patient" }
                },
                {
                    "fullUrl": format!("urn:uuid:{encounter}"),
                    // No id: it comes from the fullUrl's uuid.
                    "resource": {
                        "resourceType": "Encounter",
                        "subject": { "reference": format!("urn:uuid:{patient}") }
                    },
                    "request": { "method": "POST", "url": "Encounter" }
                },
                {
                    "fullUrl": "urn:uuid:c0ffee00-3333-4444-5555-666677778888",
                    "resource": {
                        "resourceType": "Observation",
                        "id": "obs-1",
                        // Upper case uuid: still the same entry.
                        "subject": { "reference": format!("urn:uuid:{}", patient.to_uppercase()) },
                        "encounter": { "reference": format!("urn:uuid:{encounter}") },
                        "hasMember": [
                            { "reference": "urn:uuid:99999999-0000-0000-0000-000000000000" },
                            { "reference": "Observation/already-relative" }
                        ],
                        "performer": [{ "reference": "https://example.org/fhir/Practitioner/pr-1" }]
                    }
                },
                {
                    "fullUrl": "https://example.org/fhir/Practitioner/pr-1",
                    "resource": { "resourceType": "Practitioner" }
                },
                { "request": { "method": "DELETE", "url": "Patient/gone" } }
            ]
        });
        dir.write("synthea.json", bundle.to_string().as_bytes());
        let (result, got) = load(&dir.0);
        let report = ok(result);
        assert_eq!(report.total, 4);
        assert_eq!(report.files.len(), 1);
        assert_eq!(report.files[0].kind, FileKind::Bundle);
        assert_eq!(report.entries_without_resource, 1);
        assert_eq!(report.references_rewritten, 4);
        assert_eq!(report.unresolved_references, 1);
        let encounter_out = &got[1];
        assert_eq!(encounter_out["id"], encounter);
        assert_eq!(
            encounter_out["subject"]["reference"],
            format!("Patient/{patient}")
        );
        let observation = &got[2];
        assert_eq!(
            observation["subject"]["reference"],
            format!("Patient/{patient}")
        );
        assert_eq!(
            observation["encounter"]["reference"],
            format!("Encounter/{encounter}")
        );
        assert_eq!(
            observation["hasMember"][0]["reference"],
            "urn:uuid:99999999-0000-0000-0000-000000000000"
        );
        assert_eq!(
            observation["hasMember"][1]["reference"],
            "Observation/already-relative"
        );
        assert_eq!(
            observation["performer"][0]["reference"],
            "Practitioner/pr-1"
        );
        assert_eq!(got[3]["id"], "pr-1");
        assert_eq!(report.counts.get("Observation"), Some(&1));
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let dir = TempDir::new("malformed");
        let mut text = String::new();
        for i in 0..16 {
            text.push_str(&format!(
                "{{\"resourceType\":\"Observation\",\"id\":\"o{i}\"}}\n"
            ));
        }
        text.push_str("}not json\n");
        text.push_str("{\"resourceType\":\"Observation\",\"id\":\"never\"}\n");
        dir.write("Observation.ndjson.gz", &gzip(text.as_bytes()));
        let (result, got) = load(&dir.0);
        let Err(err) = result else {
            panic!("a malformed line must fail the load");
        };
        assert_eq!(err.position(), Position::Line(17));
        assert!(err.path().ends_with("Observation.ndjson.gz"));
        let message = err.to_string();
        assert!(
            message.ends_with("Observation.ndjson.gz line 17: expected value at column 1"),
            "{message}"
        );
        assert_eq!(got.len(), 16, "loading stops at the first error");
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_and_blank_lines_are_skipped() {
        let dir = TempDir::new("magic");
        let text = "\n{\"resourceType\":\"Patient\",\"id\":\"p1\"}\r\n   \n\n{\"resourceType\":\"Patient\",\"id\":\"p2\"}";
        // Gzipped but named as plain NDJSON.
        dir.write("a-Patient.ndjson", &gzip(text.as_bytes()));
        // Plain text but named as gzip.
        dir.write(
            "b-Patient.ndjson.gz",
            b"\xEF\xBB\xBF{\"resourceType\":\"Patient\",\"id\":\"p3\"}\n",
        );
        dir.write("README.md", b"not data");
        dir.write(".hidden.ndjson", b"garbage");
        let (result, got) = load(&dir.0);
        let report = ok(result);
        assert_eq!(report.total, 3);
        assert_eq!(
            got.iter().map(|v| v["id"].clone()).collect::<Vec<_>>(),
            [json!("p1"), json!("p2"), json!("p3")]
        );
        assert_eq!(report.files.len(), 2);
        assert!(report.files[0].gzip);
        assert!(!report.files[1].gzip);
        assert_eq!(report.files[0].resources, 2);
    }

    #[test]
    fn single_resources_and_non_fhir_json() {
        let dir = TempDir::new("single");
        dir.write(
            "patient.json.gz",
            &gzip(br#"{"resourceType":"Patient","id":"solo"}"#),
        );
        dir.write(
            "manifest.json",
            br#"{"transactionTime":"2024-01-01T00:00:00Z","output":[]}"#,
        );
        let (result, got) = load(&dir.0);
        let report = ok(result);
        assert_eq!(report.total, 1);
        assert_eq!(got[0]["id"], "solo");
        assert_eq!(report.files[0].kind, FileKind::Resource);
        assert_eq!(report.skipped.len(), 1);

        dir.write(
            "z-broken.json",
            b"{\n  \"resourceType\": \"Patient\",\n  \"id\": \n}",
        );
        let (result, _) = load(&dir.0);
        let Err(err) = result else {
            panic!("broken JSON must fail");
        };
        assert_eq!(err.position(), Position::Line(4));
        assert!(
            err.to_string()
                .contains("z-broken.json line 4: expected value"),
            "{err}"
        );
    }

    #[test]
    fn lines_that_are_not_resources_and_bad_entries_are_errors() {
        let dir = TempDir::new("notresource");
        let path = dir.write(
            "x.ndjson",
            b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n[1,2]\n",
        );
        let err = load_file(&path, &mut |_| Ok(())).err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.ends_with(
                "x.ndjson line 2: expected a FHIR resource (a JSON object), found an array"
            ),
            "{message}"
        );

        let path = dir.write("y.ndjson", b"{\"id\":\"a\"}\n");
        let err = load_file(&path, &mut |_| Ok(())).err();
        assert!(err.is_some_and(|e| e.to_string().contains("line 1: not a FHIR resource")));

        let bundle = json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                { "resource": { "resourceType": "Patient", "id": "ok" } },
                { "resource": { "id": "typeless" } }
            ]
        });
        let path = dir.write("b.json", bundle.to_string().as_bytes());
        let mut delivered = 0;
        let err = load_file(&path, &mut |_| {
            delivered += 1;
            Ok(())
        })
        .err();
        let Some(err) = err else {
            panic!("an entry without resourceType must fail");
        };
        assert_eq!(err.position(), Position::Entry(1));
        assert!(
            err.to_string()
                .contains("b.json Bundle.entry[1]: not a FHIR resource"),
            "{err}"
        );
        assert_eq!(
            delivered, 0,
            "a Bundle is checked whole before any entry is delivered"
        );
    }

    #[test]
    fn sink_rejection_becomes_a_located_error() {
        let dir = TempDir::new("reject");
        dir.write(
            "Condition.ndjson",
            b"{\"resourceType\":\"Condition\",\"id\":\"c1\"}\n{\"resourceType\":\"Condition\",\"id\":\"c2\"}\n",
        );
        let mut seen = 0;
        let result = load_dir(&dir.0, &mut |v| {
            seen += 1;
            if v["id"] == "c2" {
                Err("duplicate id".to_owned())
            } else {
                Ok(())
            }
        });
        let Err(err) = result else {
            panic!("rejection must fail the load");
        };
        assert!(matches!(err, LoadError::Rejected { .. }));
        assert!(
            err.to_string()
                .ends_with("Condition.ndjson line 2: Condition/c2 rejected: duplicate id"),
            "{err}"
        );
        assert_eq!(seen, 2);
    }

    #[test]
    fn io_errors_name_the_path() {
        let missing = std::env::temp_dir().join("epic-fhir-load-does-not-exist-dir");
        let (result, _) = load(&missing);
        let Err(err) = result else {
            panic!("a missing directory must fail");
        };
        assert!(matches!(err, LoadError::ReadDir { .. }));
        assert!(
            err.to_string()
                .contains("epic-fhir-load-does-not-exist-dir")
        );
        assert!(std::error::Error::source(&err).is_some());

        let dir = TempDir::new("corrupt");
        let mut bytes = gzip(b"{\"resourceType\":\"Patient\",\"id\":\"p\"}\n");
        let len = bytes.len();
        bytes[len / 2] ^= 0xff;
        bytes.truncate(len - 4);
        dir.write("bad.ndjson.gz", &bytes);
        let (result, _) = load(&dir.0);
        let Err(err) = result else {
            panic!("a corrupt gzip stream must fail");
        };
        assert!(err.to_string().contains("bad.ndjson.gz"), "{err}");
    }

    #[test]
    fn full_url_parsing() {
        assert_eq!(
            id_from_full_url("urn:uuid:ABC-1", "Patient"),
            Some("ABC-1".to_owned())
        );
        assert_eq!(
            id_from_full_url("http://h/fhir/Patient/p.1/_history/2", "Patient"),
            Some("p.1".to_owned())
        );
        assert_eq!(
            id_from_full_url("http://h/fhir/Patient/p1", "Observation"),
            None
        );
        assert_eq!(
            id_from_full_url("HTTPS://h/fhir/Patient/p1/", "Patient"),
            Some("p1".to_owned())
        );
        assert_eq!(
            id_from_full_url("https://h/fhir/patient/p1", "patient"),
            None
        );
        assert_eq!(id_from_full_url("urn:oid:1.2.3", "Patient"), None);
        assert_eq!(format_of("Observation.NDJSON.GZ"), Some(Format::Ndjson));
        assert_eq!(format_of("bundle.json"), Some(Format::Json));
        assert_eq!(format_of("notes.txt"), None);
    }
}
