//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`, off by default and
//! not part of the API): the bulk client's NDJSON line checks, which are otherwise reachable
//! only through a whole export.

use std::ops::Range;

use crate::bulk::ndjson::LineValidator;
use crate::bulk::scan::{
    Block, Scan, scan_block as block, scan_line as scan, scan_record_bytes as record,
};

/// What the fast scanner decides about one line: `None` when it leaves the line to
/// `serde_json`; `Some(range)` when the line is a JSON object, with the byte range of its
/// top-level `resourceType` string's content if it has one.
pub fn scan_line(line: &[u8]) -> Option<Option<Range<usize>>> {
    match scan(line) {
        Scan::Object(range) => Some(range),
        Scan::Undecided => None,
    }
}

/// What the byte-at-a-time scanner decides about the line at the start of `bytes`, which run
/// on past it: `Some((newline, range))` when it is a JSON object ended by the `\n` at `newline`.
pub fn scan_record(bytes: &[u8]) -> Option<(usize, Option<Range<usize>>)> {
    record(bytes)
}

/// What the 64-byte block scanner decides about the line at the start of `bytes`:
/// `Some(Some((newline, range)))` for a JSON object ended by the `\n` at `newline`,
/// `Some(None)` when `bytes` hold no `\n` (the line is incomplete), `None` when it leaves the
/// line to the byte-at-a-time scanner.
pub fn scan_block(bytes: &[u8]) -> Option<Option<(usize, Option<Range<usize>>)>> {
    match block(bytes) {
        Block::Record(end, range) => Some(Some((end, range))),
        Block::Incomplete => Some(None),
        Block::Undecided => None,
    }
}

/// Checks NDJSON of `expected_type` fed in `chunks`, as a download does: the number of
/// resources, or the problem (`line N: ...`). `count` is the manifest's count, if any.
pub fn check_ndjson(
    expected_type: &str,
    chunks: &[&[u8]],
    count: Option<u64>,
    max_line_bytes: usize,
) -> Result<u64, String> {
    let mut validator = LineValidator::new(expected_type, max_line_bytes).with_max_lines(count);
    for chunk in chunks {
        validator.feed(chunk).map_err(|e| e.to_string())?;
    }
    validator.finish().map_err(|e| e.to_string())
}
