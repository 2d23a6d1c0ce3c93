//! Checking NDJSON as it streams past: every line one JSON object of the expected type.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use super::scan::{Scan, find_newline, scan_line, scan_record};

/// Why a file's content was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    /// 1-based line number.
    pub(crate) line: u64,
    pub(crate) problem: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// The one member of a resource the check needs. Every other member is still parsed (as
/// `IgnoredAny`), so a line that is not valid JSON is caught, without building any value.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<Cow<'a, str>>,
}

/// Checks NDJSON fed in arbitrary chunks. Only an incomplete last line is kept between
/// chunks, so memory is bounded by the longest line, not the file.
#[derive(Debug)]
pub(crate) struct LineValidator {
    expected_type: String,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// Complete lines checked.
    lines: u64,
    /// Bytes fed so far.
    consumed: u64,
    max_line_bytes: usize,
    /// The most lines the file may hold (the manifest's `count`): one more is refused at once,
    /// not at the end of a body that may never end.
    max_lines: Option<u64>,
}

impl LineValidator {
    pub(crate) fn new(expected_type: &str, max_line_bytes: usize) -> Self {
        LineValidator {
            expected_type: expected_type.to_owned(),
            partial: Vec::new(),
            lines: 0,
            consumed: 0,
            max_line_bytes,
            max_lines: None,
        }
    }

    /// Refuses a line beyond `count` as soon as it is complete.
    pub(crate) fn with_max_lines(mut self, count: Option<u64>) -> Self {
        self.max_lines = count;
        self
    }

    /// Forgets everything, for a download that starts over.
    pub(crate) fn reset(&mut self) {
        self.partial.clear();
        self.lines = 0;
        self.consumed = 0;
    }

    /// Complete lines checked so far.
    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    /// Bytes fed so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Checks the complete lines in `chunk` and keeps its incomplete end.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), LineError> {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            // The end of the line begun in an earlier chunk.
            let Some(newline) = find_newline(rest) else {
                self.grow(rest)?;
                self.consumed += chunk.len() as u64;
                return Ok(());
            };
            self.grow(&rest[..newline])?;
            let mut whole = std::mem::take(&mut self.partial);
            let checked = self.check_assembled(&mut whole);
            // Keep the allocation for the next long line.
            self.partial = whole;
            self.partial.clear();
            checked?;
            rest = &rest[newline + 1..];
        }
        while !rest.is_empty() {
            // The fast path reads each line once: grammar, UTF-8, type and end together.
            if let Some((newline, resource_type)) = scan_record(rest) {
                self.accept(resource_type.map(|range| &rest[range]))?;
                rest = &rest[newline + 1..];
                continue;
            }
            match find_newline(rest) {
                Some(newline) => {
                    self.check(&rest[..newline])?;
                    rest = &rest[newline + 1..];
                }
                None => {
                    self.grow(rest)?;
                    break;
                }
            }
        }
        self.consumed += chunk.len() as u64;
        Ok(())
    }

    /// Checks the last line when the file does not end with a newline, and returns the number
    /// of resources.
    pub(crate) fn finish(&mut self) -> Result<u64, LineError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.check(&last)?;
        }
        Ok(self.lines)
    }

    fn grow(&mut self, bytes: &[u8]) -> Result<(), LineError> {
        if self.partial.len() + bytes.len() > self.max_line_bytes {
            return Err(LineError {
                line: self.lines + 1,
                problem: format!(
                    "is longer than {} bytes, the most this client holds for one resource",
                    self.max_line_bytes
                ),
            });
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    /// Checks a line assembled from several chunks (`line` without its `\n`) through the
    /// same fast path as lines within one chunk.
    fn check_assembled(&mut self, line: &mut Vec<u8>) -> Result<(), LineError> {
        line.push(b'\n');
        let fast = scan_record(line).filter(|&(end, _)| end + 1 == line.len());
        line.pop();
        match fast {
            Some((_, resource_type)) => self.accept(resource_type.map(|range| &line[range])),
            None => self.check(line),
        }
    }

    fn check(&mut self, line: &[u8]) -> Result<(), LineError> {
        let number = self.lines + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(LineError {
                line: number,
                problem: "is empty: NDJSON holds one resource on every line".to_owned(),
            });
        }
        // A derived struct would also accept a JSON array (`["Patient"]`): only objects are
        // resources.
        if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(LineError {
                line: number,
                problem: "is not a JSON object".to_owned(),
            });
        }
        let found = match scan_line(line) {
            Scan::Object(range) => range.map(|range| &line[range]),
            // The fast path gave up: serde_json decides, and explains a refusal.
            Scan::Undecided => {
                if let Err(error) = std::str::from_utf8(line) {
                    return Err(LineError {
                        line: number,
                        problem: format!("is not valid UTF-8 (byte {})", error.valid_up_to() + 1),
                    });
                }
                let head: Head<'_> = serde_json::from_slice(line).map_err(|e| LineError {
                    line: number,
                    problem: format!("is not a JSON object ({e})"),
                })?;
                match head.resource_type {
                    Some(Cow::Borrowed(found)) => Some(found.as_bytes()),
                    Some(Cow::Owned(found)) => return self.accept(Some(found.as_bytes())),
                    None => None,
                }
            }
        };
        self.accept(found)
    }

    /// Counts the next line, whose top-level `resourceType` is `found`, if it has one.
    fn accept(&mut self, found: Option<&[u8]>) -> Result<(), LineError> {
        let number = self.lines + 1;
        match found {
            Some(found) => self.compare(number, found),
            None => Err(no_resource_type(number)),
        }
    }

    /// Checks a line's `resourceType` and counts the line.
    fn compare(&mut self, number: u64, found: &[u8]) -> Result<(), LineError> {
        if let Some(count) = self.max_lines {
            if number > count {
                return Err(LineError {
                    line: number,
                    problem: format!("is one more than the manifest's count of {count} resources"),
                });
            }
        }
        if found != self.expected_type.as_bytes() {
            return Err(LineError {
                line: number,
                problem: format!(
                    "has resourceType `{}`, but the manifest lists the file as `{}`",
                    String::from_utf8_lossy(found),
                    self.expected_type
                ),
            });
        }
        self.lines = number;
        Ok(())
    }
}

/// The problem of a line without `resourceType`.
fn no_resource_type(line: u64) -> LineError {
    LineError {
        line,
        problem: "has no resourceType".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn feed_in_pieces(text: &str, piece: usize) -> Result<u64, LineError> {
        let mut validator = LineValidator::new("Patient", MAX);
        for chunk in text.as_bytes().chunks(piece) {
            validator.feed(chunk)?;
        }
        validator.finish()
    }

    #[test]
    fn any_chunking_gives_the_same_count() {
        let text = "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"id\":\"b\",\"name\":[{\"text\":\"x\\ny\"}],\"resourceType\":\"Patient\"}\r\n{\"resourceType\":\"Patient\"}";
        for piece in [1, 2, 3, 7, 16, 1000] {
            assert_eq!(feed_in_pieces(text, piece), Ok(3), "piece {piece}");
        }
        assert_eq!(feed_in_pieces(&format!("{text}\n"), 5), Ok(3));
        assert_eq!(feed_in_pieces("", 5), Ok(0));
    }

    #[test]
    fn problems_name_the_line() {
        let cases = [
            (
                "{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Observation\"}\n",
                2,
                "`Observation`",
            ),
            (
                "{\"resourceType\":\"Patient\"}\n\n{\"resourceType\":\"Patient\"}\n",
                2,
                "empty",
            ),
            (
                "{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\"\n",
                2,
                "not a JSON object",
            ),
            (
                "{\"resourceType\":\"Patient\"} {}\n",
                1,
                "not a JSON object",
            ),
            ("[1,2]\n", 1, "not a JSON object"),
            ("[\"Patient\"]\n", 1, "not a JSON object"),
            ("{\"id\":\"x\"}\n", 1, "no resourceType"),
            (
                "{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Pat",
                2,
                "not a JSON object",
            ),
        ];
        for (text, line, problem) in cases {
            for piece in [1, 4, 100] {
                let err = feed_in_pieces(text, piece).expect_err(text);
                assert_eq!(err.line, line, "{text:?}");
                assert!(err.problem.contains(problem), "{err} / {problem}");
            }
        }
    }

    /// The verdict of checking every line on its own, the way the slow path does: the
    /// reference for the streaming check, which reads most lines in one pass instead.
    fn line_by_line(text: &[u8]) -> Result<u64, LineError> {
        let mut validator = LineValidator::new("Patient", MAX);
        let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for line in lines {
            validator.check(line)?;
        }
        Ok(validator.lines)
    }

    proptest::proptest! {
        #[test]
        fn streaming_agrees_with_line_by_line(
            picks in proptest::collection::vec(0usize..12, 0..12),
            piece in 1usize..64,
            final_newline: bool,
        ) {
            let pool: [&[u8]; 12] = [
                b"{\"resourceType\":\"Patient\",\"id\":\"a\"}",
                b" {\"id\":\"b\", \"resourceType\" : \"Patient\"} \r",
                b"{\"name\":[{\"text\":\"caf\xc3\xa9 \\u00e9\\n\"}],\"resourceType\":\"Patient\"}",
                b"{\"resourceType\":\"Pat\\u0069ent\"}",
                b"{\"resourceType\":\"Observation\"}",
                b"{\"id\":\"x\"}",
                b"",
                b"[1]",
                b"{\"resourceType\":\"Patient\"",
                b"{\"resourceType\":\"Patient\",\"a\":\"\xc3\"}",
                b"{\"resourceType\":\"Patient\"} {}",
                b"{\"resourceType\":\"Patient\",\"deep\":[[[[{\"a\":1e5}]]]]}",
            ];
            let mut text = picks.iter().map(|&i| pool[i]).collect::<Vec<_>>().join(&b'\n');
            if final_newline && !text.is_empty() {
                text.push(b'\n');
            }
            let mut validator = LineValidator::new("Patient", MAX);
            let streamed = text
                .chunks(piece)
                .try_for_each(|chunk| validator.feed(chunk))
                .and_then(|()| validator.finish());
            proptest::prop_assert_eq!(streamed, line_by_line(&text));
        }
    }

    #[test]
    fn long_lines_are_bounded() {
        let mut validator = LineValidator::new("Patient", 16);
        let err = validator
            .feed(b"{\"resourceType\":\"Patient\",\"x\":1}")
            .expect_err("too long");
        assert!(err.problem.contains("longer than 16"), "{err}");
    }

    #[test]
    fn counters_and_reset() {
        let mut validator = LineValidator::new("Patient", MAX);
        validator
            .feed(b"{\"resourceType\":\"Patient\"}\n{\"resourceType\":")
            .expect("feed");
        assert_eq!(validator.lines(), 1);
        assert_eq!(validator.consumed(), 43);
        validator.reset();
        assert_eq!((validator.lines(), validator.consumed()), (0, 0));
        validator
            .feed(b"{\"resourceType\":\"Patient\"}")
            .expect("feed");
        assert_eq!(validator.finish(), Ok(1));
    }
}
