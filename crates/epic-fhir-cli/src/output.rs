//! Writing results to stdout. A reader that goes away (`epic-fhir search ... | head -1`) is not
//! a failure: the command stops writing and exits 0, as ripgrep does.

use std::io::Write as _;

use serde::Serialize;

use crate::Failure;

/// The failure for an error writing to stdout: [`Failure::Closed`] when the reader is gone.
pub(crate) fn write_failure(error: std::io::Error) -> Failure {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        Failure::remote(anyhow::Error::new(error).context("cannot write to stdout"))
    }
}

/// Writes `text` to stdout, and flushes.
pub(crate) fn print_text(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(write_failure)
}

/// Writes `text` and a newline to stdout, and flushes.
pub(crate) fn print_line(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(write_failure)
}

/// Writes `value` as pretty JSON and a newline to stdout.
pub(crate) fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::remote)?;
    print_line(&text)
}
