//! `epic-fhir validate PATH...`: checks FHIR R4 JSON against the base specification.
//!
//! Reads NDJSON (gzip too, found by its magic bytes), single resources and Bundles, and
//! folders of them (a bulk export's output folder as it is: hidden files such as the export's
//! state and partial downloads are skipped). Prints one JSON line per problem on stdout and a
//! summary on stderr; exits 0 when no errors were found, 1 when any were, 2 on bad usage.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use clap::Args;
use epic_fhir::model::{Issue, Severity, validate_json};
use serde_json::json;

use crate::Failure;

/// Arguments of `epic-fhir validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// NDJSON files (optionally gzipped), JSON files holding one resource or a Bundle, or
    /// folders of them.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Counts over a run.
#[derive(Debug, Default)]
struct Totals {
    files: u64,
    resources: u64,
    bytes: u64,
    errors: u64,
    warnings: u64,
}

/// Where problems are written; a closed pipe (`| head`) ends the output quietly.
struct Output {
    out: BufWriter<std::io::StdoutLock<'static>>,
    closed: bool,
}

impl Output {
    fn issue(&mut self, file: &Path, line: u64, issue: &Issue) -> Result<(), Failure> {
        if self.closed {
            return Ok(());
        }
        let record = json!({
            "file": file.display().to_string(),
            "line": line,
            "path": issue.path,
            "severity": issue.severity.as_str(),
            "message": issue.message,
        });
        let written = serde_json::to_writer(&mut self.out, &record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        self.check(written)
    }

    fn check(&mut self, result: std::io::Result<()>) -> Result<(), Failure> {
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(error) => Err(Failure::remote(
                anyhow!(error).context("cannot write to stdout"),
            )),
        }
    }

    fn finish(&mut self) -> Result<(), Failure> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.check(flushed)
    }
}

pub(crate) fn run(args: ValidateArgs) -> Result<(), Failure> {
    let mut files = Vec::new();
    for path in &args.paths {
        collect(path, &mut files)?;
    }
    if files.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no files to validate under {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut output = Output {
        out: BufWriter::new(std::io::stdout().lock()),
        closed: false,
    };
    for file in &files {
        validate_file(file, &mut totals, &mut output)?;
        totals.files += 1;
    }
    output.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let megabytes = totals.bytes as f64 / 1e6;
    eprintln!(
        "validated {} resources in {} files ({megabytes:.1} MB in {seconds:.2} s, {:.0} MB/s): {} errors, {} warnings",
        totals.resources,
        totals.files,
        if seconds > 0.0 {
            megabytes / seconds
        } else {
            0.0
        },
        totals.errors,
        totals.warnings,
    );
    if totals.errors > 0 {
        return Err(Failure::remote(anyhow!(
            "{} errors found in {} resources",
            totals.errors,
            totals.resources
        )));
    }
    Ok(())
}

/// The file's name in lower case, without a `.gz` ending: what its content is named as.
fn plain_name(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match name.strip_suffix(".gz") {
        Some(plain) => plain.to_owned(),
        None => name,
    }
}

/// Whether a file found in a folder holds JSON by its name: `.ndjson`, `.jsonl` or `.json`,
/// gzipped or not. A file named on the command line is read whatever its name.
fn is_json_name(path: &Path) -> bool {
    let name = plain_name(path);
    [".ndjson", ".jsonl", ".json"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// Adds `path` (a file, or the visible JSON files of a folder, recursively, sorted) to
/// `files`. In folders, other files (a README, a checksum list) are not resources and are
/// passed over.
fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), Failure> {
    collect_in(path, files, true)
}

fn collect_in(path: &Path, files: &mut Vec<PathBuf>, named: bool) -> Result<(), Failure> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failure::usage)?;
    if metadata.is_file() {
        if named || is_json_name(path) {
            files.push(path.to_owned());
        }
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))
        .map_err(Failure::usage)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            // Hidden files: an export's state file and partial downloads, editors' files.
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for entry in entries {
        collect_in(&entry, files, false)?;
    }
    Ok(())
}

/// Opens a file, decompressing gzip (by its magic bytes).
fn open(path: &Path) -> Result<Box<dyn BufRead>, Failure> {
    let mut file = File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))
        .map_err(Failure::usage)?;
    let mut magic = [0u8; 2];
    let read = file
        .read(&mut magic)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failure::usage)?;
    let file = File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))
        .map_err(Failure::usage)?;
    if read == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(file),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
    }
}

/// Validates one file: as one JSON document (a resource or Bundle) when named `*.json`, as
/// NDJSON when named `*.ndjson`; otherwise as NDJSON when its first line is a whole JSON value.
fn validate_file(path: &Path, totals: &mut Totals, output: &mut Output) -> Result<(), Failure> {
    let mut reader = open(path)?;
    let read_error = |error: std::io::Error| {
        Failure::remote(anyhow!(error).context(format!("cannot read {}", path.display())))
    };
    let mut line = Vec::new();
    let mut number = 0u64;
    // The first non-blank line decides the format.
    let first = loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_error)? == 0 {
            return Ok(());
        }
        number += 1;
        if !is_blank(&line) {
            break number;
        }
    };
    if !is_ndjson(path, &line) {
        let mut document = std::mem::take(&mut line);
        reader.read_to_end(&mut document).map_err(read_error)?;
        totals.bytes += document.len() as u64;
        totals.resources += 1;
        return report(path, first, &validate_json(&document), totals, output);
    }
    loop {
        totals.bytes += line.len() as u64;
        if !is_blank(&line) {
            totals.resources += 1;
            report(path, number, &validate_json(&line), totals, output)?;
        }
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_error)? == 0 {
            return Ok(());
        }
        number += 1;
    }
}

fn report(
    path: &Path,
    line: u64,
    issues: &[Issue],
    totals: &mut Totals,
    output: &mut Output,
) -> Result<(), Failure> {
    for issue in issues {
        match issue.severity {
            Severity::Error => totals.errors += 1,
            Severity::Warning => totals.warnings += 1,
        }
        output.issue(path, line, issue)?;
    }
    Ok(())
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Whether the file is NDJSON, by its name, else by its first non-blank line.
fn is_ndjson(path: &Path, first_line: &[u8]) -> bool {
    let name = plain_name(path);
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        return true;
    }
    if name.ends_with(".json") {
        return false;
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(first_line).is_ok()
}
