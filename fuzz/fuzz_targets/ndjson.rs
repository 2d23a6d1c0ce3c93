//! The bulk client's NDJSON checks. The first byte picks the chunk size; the rest is a file.
//!
//! - The fast scanner never accepts a line `serde_json` refuses (invalid UTF-8 included), and
//!   when it accepts one it finds the same top-level `resourceType` (it may leave any line to
//!   `serde_json`); scanning the line as a record followed by more gives the same verdict and
//!   ends at the line's newline.
//! - The 64-byte block scanner accepts a line only when the byte scanner does, with the same
//!   end and type, and calls a line incomplete only when no newline follows.
//! - The whole check (scanner, `serde_json` fallback, UTF-8, line splitting) gives the same
//!   verdict however the file is cut into chunks.
#![no_main]

use epic_fhir::fuzzing::{check_ndjson, scan_block, scan_line, scan_record};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// What the bulk client's slow path reads: every member parsed, only `resourceType` kept.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<Box<serde_json::value::RawValue>>,
}

/// serde_json's verdict on a line as an object, and its `resourceType` when it is a string.
fn reference(line: &[u8]) -> Option<Option<String>> {
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let head: Head = serde_json::from_slice(line).ok()?;
    Some(
        head.resource_type
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok()),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    for line in file.split(|&b| b == b'\n') {
        let whole = scan_line(line);
        let mut stream = line.to_vec();
        stream.extend_from_slice(b"\n{\"resourceType\":\"Next\"}\n");
        match (&whole, scan_record(&stream)) {
            (Some(range), Some((end, record_range))) => {
                assert_eq!(&record_range, range, "{:?}", String::from_utf8_lossy(line));
                assert_eq!(end, line.len(), "{:?}", String::from_utf8_lossy(line));
            }
            (None, None) => {}
            (whole, record) => panic!(
                "line and record disagree ({whole:?}, {record:?}): {:?}",
                String::from_utf8_lossy(line)
            ),
        }
        let record = scan_record(&stream);
        match scan_block(&stream) {
            Some(Some(found)) => assert_eq!(
                Some(found),
                record,
                "{:?}",
                String::from_utf8_lossy(line)
            ),
            Some(None) => panic!("incomplete before a newline: {:?}", String::from_utf8_lossy(line)),
            None => {}
        }
        assert!(
            !matches!(scan_block(line), Some(Some(_))),
            "accepted without a newline: {:?}",
            String::from_utf8_lossy(line)
        );
        if let Some(range) = whole {
            let expected = reference(line);
            assert!(
                expected.is_some(),
                "the scanner accepted what serde_json refuses: {:?}",
                String::from_utf8_lossy(line)
            );
            let found = range.map(|r| String::from_utf8_lossy(&line[r]).into_owned());
            assert_eq!(Some(found), expected, "{:?}", String::from_utf8_lossy(line));
        }
    }
    let whole = check_ndjson("Patient", &[file], None, 1 << 20);
    let size = usize::from(selector % 17) + 1;
    let chunks: Vec<&[u8]> = file.chunks(size).collect();
    let chunked = check_ndjson("Patient", &chunks, None, 1 << 20);
    assert_eq!(whole, chunked, "chunks of {size} bytes");
    // A count is a bound the check enforces line by line, with the same verdict.
    if let Ok(lines) = whole {
        assert_eq!(
            check_ndjson("Patient", &chunks, Some(lines), 1 << 20),
            Ok(lines)
        );
        if lines > 0 {
            let fewer = check_ndjson("Patient", &chunks, Some(lines - 1), 1 << 20);
            let problem = fewer.expect_err("one line too many");
            assert!(problem.starts_with(&format!("line {lines}:")), "{problem}");
        }
    }
});
