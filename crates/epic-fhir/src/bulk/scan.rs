//! A fast check that one NDJSON line is a JSON object, finding its top-level `resourceType`.
//!
//! Checking every line of a bulk file with `serde_json` costs more than downloading it (about
//! 300 MB/s on one core). This scanner validates the JSON grammar (RFC 8259) and the UTF-8 of
//! strings without building anything or recursing, skipping the bodies of strings eight bytes
//! at a time, and reports where the top-level `resourceType` string is. [`scan_record`] does it
//! in the same pass that finds the line's end, so a line is read once. It is a fast path only:
//! the caller gives any line it rejects, and any line whose `resourceType` key or value holds
//! an escape, to `serde_json`, whose verdict and message are final.

use std::ops::Range;

mod blocks;

pub(crate) use blocks::{Block, scan_record as scan_block};

/// What the scanner found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A valid JSON object; the byte range of its top-level `resourceType` string's content,
    /// when it has one.
    Object(Option<Range<usize>>),
    /// Not a valid JSON object, or something the fast path leaves to `serde_json` (an escaped
    /// key or value where `resourceType` could be, a repeated `resourceType`, deep nesting).
    Undecided,
}

/// Nesting deeper than this is left to `serde_json` (whose own limit is 128); it is also the
/// number of bits of the container stack.
const MAX_DEPTH: usize = 128;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of every zero byte of `word`. The lowest set bit is exact; bits above it may
/// be spurious (a borrow), which is harmless when only the first match matters.
#[inline]
fn zero_lanes(word: u64) -> u64 {
    word.wrapping_sub(LO) & !word & HI
}

/// The high bit of every byte of `word` that is `"`, `\` or a control character (below
/// 0x20), with the same exactness as [`zero_lanes`].
#[inline]
fn string_special_mask(word: u64) -> u64 {
    let quote = zero_lanes(word ^ (LO * u64::from(b'"')));
    let backslash = zero_lanes(word ^ (LO * u64::from(b'\\')));
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit only for them (bytes at
    // or above 0x80 are excluded by `!word`).
    let control = word.wrapping_sub(LO * 0x20) & !word & HI;
    quote | backslash | control
}

/// Eight bytes at `at`, if there are eight.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..at.checked_add(8)?)?;
    <[u8; 8]>::try_from(chunk).ok().map(u64::from_le_bytes)
}

/// The index of the first `\n` in `bytes`.
pub(crate) fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// Why the fast path gave up (the reason itself is not needed: `serde_json` explains).
struct GiveUp;

type Step<T = ()> = Result<T, GiveUp>;

/// Where the scanner is in the grammar.
#[derive(Clone, Copy)]
enum State {
    /// Just after `{`.
    ObjectStart,
    /// Just after `[`.
    ArrayStart,
    /// A member's key is next.
    Key,
    /// A value is next.
    Value,
    /// A value has ended: `,`, a closing bracket, or the end of the line is next.
    AfterValue,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Whether `bytes` runs on past the line: a `\n` then ends the line and is never
    /// whitespace inside it.
    stream: bool,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.pos += 1,
                Some(b'\n') if !self.stream => self.pos += 1,
                _ => return,
            }
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Step {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Scans a string starting at its opening quote; returns its content's range and whether
    /// it held an escape. Bytes of 0x80 and above are only allowed here, so checking the UTF-8
    /// of the strings that hold any checks the whole line.
    fn string(&mut self) -> Step<(Range<usize>, bool)> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        // The OR of every byte looked at: its high bit says whether one was not ASCII.
        let mut seen = 0u64;
        loop {
            while let Some(word) = word_at(self.bytes, self.pos) {
                seen |= word;
                let mask = string_special_mask(word);
                if mask != 0 {
                    self.pos += (mask.trailing_zeros() / 8) as usize;
                    break;
                }
                self.pos += 8;
            }
            match self.peek() {
                None => return Err(GiveUp),
                Some(b'"') => {
                    let range = start..self.pos;
                    self.pos += 1;
                    if seen & HI != 0 && std::str::from_utf8(&self.bytes[range.clone()]).is_err() {
                        return Err(GiveUp);
                    }
                    return Ok((range, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    self.escape()?;
                }
                Some(byte) if byte < 0x20 => return Err(GiveUp),
                Some(byte) => {
                    seen |= u64::from(byte) << 56;
                    self.pos += 1;
                }
            }
        }
    }

    /// The rest of an escape sequence, after its backslash.
    fn escape(&mut self) -> Step {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                let digits = self.bytes.get(self.pos + 1..self.pos + 5).ok_or(GiveUp)?;
                let mut unit = 0u32;
                for &digit in digits {
                    unit = unit * 16 + hex(digit).ok_or(GiveUp)?;
                }
                // Surrogates (paired or lone) are left to serde_json, which checks pairing.
                if (0xD800..=0xDFFF).contains(&unit) {
                    return Err(GiveUp);
                }
                self.pos += 5;
                Ok(())
            }
            _ => Err(GiveUp),
        }
    }

    #[inline]
    fn digits(&mut self) -> Step {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        if self.pos == start {
            Err(GiveUp)
        } else {
            Ok(())
        }
    }

    fn number(&mut self) -> Step {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(GiveUp),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Scans the line: one object, then only whitespace. Containers are tracked in a bit
    /// stack (1 for an object), so nothing is allocated and nothing recurses.
    fn line(&mut self) -> Step<Option<Range<usize>>> {
        self.skip_ws();
        self.expect(b'{')?;
        let mut objects: u128 = 1;
        let mut depth: usize = 1;
        let mut resource_type = None;
        let mut state = State::ObjectStart;
        loop {
            state = match state {
                State::ObjectStart => {
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        depth -= 1;
                        State::AfterValue
                    } else {
                        State::Key
                    }
                }
                State::ArrayStart => {
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        depth -= 1;
                        State::AfterValue
                    } else {
                        State::Value
                    }
                }
                State::Key => {
                    self.skip_ws();
                    let (key, escaped) = self.string()?;
                    self.skip_ws();
                    self.expect(b':')?;
                    if depth > 1 {
                        State::Value
                    } else if escaped {
                        // An escaped top-level key could spell resourceType.
                        return Err(GiveUp);
                    } else if &self.bytes[key] == b"resourceType" {
                        self.skip_ws();
                        if resource_type.is_some() || self.peek() != Some(b'"') {
                            return Err(GiveUp);
                        }
                        let (value, escaped) = self.string()?;
                        if escaped {
                            return Err(GiveUp);
                        }
                        resource_type = Some(value);
                        State::AfterValue
                    } else {
                        State::Value
                    }
                }
                State::Value => {
                    self.skip_ws();
                    match self.peek() {
                        Some(b'{') => {
                            self.pos += 1;
                            if depth >= MAX_DEPTH {
                                return Err(GiveUp);
                            }
                            objects |= 1 << depth;
                            depth += 1;
                            State::ObjectStart
                        }
                        Some(b'[') => {
                            self.pos += 1;
                            if depth >= MAX_DEPTH {
                                return Err(GiveUp);
                            }
                            objects &= !(1 << depth);
                            depth += 1;
                            State::ArrayStart
                        }
                        Some(b'"') => {
                            self.string()?;
                            State::AfterValue
                        }
                        Some(b'-' | b'0'..=b'9') => {
                            self.number()?;
                            State::AfterValue
                        }
                        Some(b't') => {
                            self.literal(b"true")?;
                            State::AfterValue
                        }
                        Some(b'f') => {
                            self.literal(b"false")?;
                            State::AfterValue
                        }
                        Some(b'n') => {
                            self.literal(b"null")?;
                            State::AfterValue
                        }
                        _ => return Err(GiveUp),
                    }
                }
                State::AfterValue => {
                    self.skip_ws();
                    if depth == 0 {
                        let end = if self.stream {
                            self.peek() == Some(b'\n')
                        } else {
                            self.pos == self.bytes.len()
                        };
                        return if end { Ok(resource_type) } else { Err(GiveUp) };
                    }
                    let in_object = objects >> (depth - 1) & 1 == 1;
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            if in_object { State::Key } else { State::Value }
                        }
                        Some(b'}') if in_object => {
                            self.pos += 1;
                            depth -= 1;
                            State::AfterValue
                        }
                        Some(b']') if !in_object => {
                            self.pos += 1;
                            depth -= 1;
                            State::AfterValue
                        }
                        _ => return Err(GiveUp),
                    }
                }
            };
        }
    }
}

/// The value of a hexadecimal digit.
fn hex(digit: u8) -> Option<u32> {
    char::from(digit).to_digit(16)
}

/// Scans one line (without its `\n`).
pub(crate) fn scan_line(line: &[u8]) -> Scan {
    let mut scanner = Scanner {
        bytes: line,
        pos: 0,
        stream: false,
    };
    match scanner.line() {
        Ok(resource_type) => Scan::Object(resource_type),
        Err(GiveUp) => Scan::Undecided,
    }
}

/// The line check's fast path for the line at the start of `bytes` (which run on past it):
/// compact lines 64 bytes at a time ([`blocks`]), the rest one byte at a time
/// ([`scan_record_bytes`]), with the same answers.
pub(crate) fn scan_record(bytes: &[u8]) -> Option<(usize, Option<Range<usize>>)> {
    match scan_block(bytes) {
        Block::Record(end, resource_type) => Some((end, resource_type)),
        Block::Incomplete => None,
        Block::Undecided => scan_record_bytes(bytes),
    }
}

/// Scans, one byte at a time, the line at the start of `bytes`, which run on past it: when it
/// is a valid JSON object ended by a `\n` within `bytes`, the index of that `\n` and the range of the
/// top-level `resourceType` string's content, if any. `None` when the fast path cannot say:
/// the line is not a valid object (or is one the fast path leaves to `serde_json`), or its end
/// is not in `bytes`.
pub(crate) fn scan_record_bytes(bytes: &[u8]) -> Option<(usize, Option<Range<usize>>)> {
    let mut scanner = Scanner {
        bytes,
        pos: 0,
        stream: true,
    };
    let resource_type = scanner.line().ok()?;
    Some((scanner.pos, resource_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Deserialize)]
    struct Reference {
        #[serde(rename = "resourceType")]
        resource_type: Option<Box<serde_json::value::RawValue>>,
    }

    /// serde_json's verdict on a line as a top-level object, and its `resourceType` if a
    /// string. Members are skipped the way serde_json skips what it ignores: by grammar, so
    /// a number too large for an `f64` (valid JSON, RFC 8259 section 6) is accepted.
    fn reference(line: &[u8]) -> Option<Option<String>> {
        if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        let head: Reference = serde_json::from_slice(line).ok()?;
        Some(
            head.resource_type
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok()),
        )
    }

    /// The scanner never accepts what serde_json refuses (invalid UTF-8 included), and when
    /// it accepts, it finds the same `resourceType`; as a record followed by more lines, it
    /// gives the same verdict and finds the line's end.
    fn agrees(line: &[u8]) {
        let whole = scan_line(line);
        let mut stream = line.to_vec();
        stream.extend_from_slice(b"\n{\"resourceType\":\"Next\"}\n");
        match (&whole, scan_record(&stream)) {
            (Scan::Object(range), Some((end, record_range))) => {
                assert_eq!(&record_range, range, "{:?}", String::from_utf8_lossy(line));
                assert_eq!(end, line.len(), "{:?}", String::from_utf8_lossy(line));
            }
            // A line holding a `\n` (whitespace inside JSON) is two lines in NDJSON.
            (Scan::Object(_), None) => assert!(line.contains(&b'\n')),
            (Scan::Undecided, None) => {}
            (Scan::Undecided, Some(_)) => {
                panic!(
                    "a record accepted a line refused whole: {:?}",
                    String::from_utf8_lossy(line)
                )
            }
        }
        // The block scanner accepts only what the byte scanner accepts, with the same end
        // and type; on a prefix without the newline it never accepts.
        let scalar = scan_record_bytes(&stream);
        match scan_block(&stream) {
            Block::Record(end, range) => assert_eq!(
                Some((end, range)),
                scalar,
                "{:?}",
                String::from_utf8_lossy(line)
            ),
            Block::Incomplete => panic!("a newline follows: {:?}", String::from_utf8_lossy(line)),
            Block::Undecided => {}
        }
        for cut in [0, line.len() / 2, line.len()] {
            assert!(
                !matches!(scan_block(&line[..cut]), Block::Record(..)),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        match whole {
            Scan::Object(range) => {
                let expected = reference(line);
                assert!(
                    expected.is_some(),
                    "accepted what serde_json refuses: {:?}",
                    String::from_utf8_lossy(line)
                );
                let found = range.map(|r| String::from_utf8_lossy(&line[r]).into_owned());
                // A non-string resourceType makes the fast path give up, so a found value is
                // always serde_json's string.
                assert_eq!(Some(found), expected, "{:?}", String::from_utf8_lossy(line));
            }
            Scan::Undecided => {}
        }
    }

    #[test]
    fn valid_lines_are_accepted() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"resourceType":"Patient","id":"a"}"#, Some("Patient")),
            (
                r#" { "id" : "a" , "resourceType" : "Observation" } "#,
                Some("Observation"),
            ),
            (r#"{}"#, None),
            (r#"{"id":"x"}"#, None),
            (
                r#"{"a":[1,-2.5e+3,0,0.1,1E9,true,false,null,{},[],[[{"b":"c\"\\\/\b\f\n\r\t\u00e9"}]]],"resourceType":"Bundle"}"#,
                Some("Bundle"),
            ),
            (
                "{\"text\":\"caf\u{e9} \u{1F600} long text long text\",\"resourceType\":\"Patient\"}",
                Some("Patient"),
            ),
            (
                r#"{"nested":{"resourceType":"Inner"},"resourceType":"Outer"}"#,
                Some("Outer"),
            ),
            (r#"{"nested":{"resourceType":"Inner"}}"#, None),
        ];
        for (line, expected) in cases {
            match scan_line(line.as_bytes()) {
                Scan::Object(range) => {
                    let found = range.map(|r| &line[r]);
                    assert_eq!(found, *expected, "{line}");
                }
                Scan::Undecided => panic!("refused a valid line: {line}"),
            }
            agrees(line.as_bytes());
        }
    }

    #[test]
    fn invalid_or_unusual_lines_are_left_to_serde_json() {
        for line in [
            "",
            "[]",
            r#""resourceType""#,
            r#"{"resourceType":"Patient"} x"#,
            r#"{"resourceType":"Patient",}"#,
            r#"{"resourceType" "Patient"}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":"unterminated}"#,
            r#"{"a":{"b":1}"#,
            r#"{"a":[}"#,
            r#"{"resource\u0054ype":"Patient"}"#,
            r#"{"resourceType":"Pat\u0069ent"}"#,
            r#"{"resourceType":"Patient","resourceType":"Patient"}"#,
            r#"{"resourceType":7}"#,
            r#"{1:2}"#,
        ] {
            assert_eq!(scan_line(line.as_bytes()), Scan::Undecided, "{line}");
            agrees(line.as_bytes());
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(scan_line(deep.as_bytes()), Scan::Undecided);
    }

    #[test]
    fn utf8_is_checked_in_strings_and_refused_elsewhere() {
        let valid = "{\"resourceType\":\"Patient\",\"name\":\"Zo\u{eb} \u{1F600} M\u{fc}ller long enough\"}";
        assert!(matches!(scan_line(valid.as_bytes()), Scan::Object(Some(_))));
        for bad in [
            // A lone continuation byte, in a short string and in an eight-byte word.
            &b"{\"resourceType\":\"Patient\",\"a\":\"\x80\"}"[..],
            b"{\"resourceType\":\"Patient\",\"a\":\"abcdefgh\x80ijklmnop\"}",
            // A truncated two-byte sequence before the closing quote.
            b"{\"resourceType\":\"Patient\",\"a\":\"abc\xc3\"}",
            // An overlong encoding of '/' and a surrogate encoded in UTF-8.
            b"{\"resourceType\":\"Patient\",\"a\":\"\xc0\xaf\"}",
            b"{\"resourceType\":\"Patient\",\"a\":\"\xed\xa0\x80\"}",
            // Not ASCII outside a string.
            b"{\"resourceType\":\"Patient\",\"a\":\xc3\xa9}",
            b"{\"resourceType\":\"Pat\xffient\"}",
        ] {
            assert_eq!(
                scan_line(bad),
                Scan::Undecided,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            agrees(bad);
        }
    }

    #[test]
    fn records_end_at_their_newline() {
        let stream =
            b"{\"resourceType\":\"Patient\"} \r\n{\"resourceType\":\"Observation\"}\n{\"x\":";
        let (end, range) = scan_record(stream).expect("a complete first line");
        assert_eq!(&stream[range.expect("a type")], b"Patient");
        assert_eq!(end, 28);
        let rest = &stream[end + 1..];
        let (end, range) = scan_record(rest).expect("a complete second line");
        assert_eq!(&rest[range.expect("a type")], b"Observation");
        // The third line has no end here.
        assert_eq!(scan_record(&rest[end + 1..]), None);
        // Without its newline, even a complete object is not a record yet.
        assert_eq!(scan_record(b"{\"resourceType\":\"Patient\"}"), None);
        // A newline inside the object ends the line: it is not whitespace in NDJSON.
        assert_eq!(scan_record(b"{\"resourceType\":\n\"Patient\"}\n"), None);
    }

    #[test]
    fn newlines_are_found_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![b'x'; len];
                if at < len {
                    bytes[at] = b'\n';
                }
                let expected = bytes.iter().position(|&b| b == b'\n');
                assert_eq!(find_newline(&bytes), expected, "len {len} at {at}");
            }
        }
        assert_eq!(find_newline("é\n".as_bytes()), Some(2));
    }

    #[test]
    fn string_special_bytes_are_found_in_every_lane() {
        for special in [b'"', b'\\', 0x00, 0x1f] {
            for lane in 0..8 {
                let mut bytes = [b'a'; 8];
                bytes[lane] = special;
                // A second special byte after the first must not move the first.
                if lane < 7 {
                    bytes[7] = b'"';
                }
                let mask = string_special_mask(u64::from_le_bytes(bytes));
                assert_eq!(mask.trailing_zeros() / 8, lane as u32, "{special} {lane}");
            }
        }
        for plain in [b' ', b'a', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
            assert_eq!(
                string_special_mask(u64::from_le_bytes([plain; 8])),
                0,
                "{plain}"
            );
        }
    }

    /// JSON-like text from a small alphabet, to reach the grammar's corners.
    fn jsonish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("{"),
                Just("}"),
                Just("["),
                Just("]"),
                Just(","),
                Just(":"),
                Just("\""),
                Just("\\"),
                Just("u"),
                Just("0"),
                Just("1"),
                Just("-"),
                Just("."),
                Just("e"),
                Just("+"),
                Just("true"),
                Just("null"),
                Just(" "),
                Just("a"),
                Just("é"),
                Just("\"resourceType\""),
                Just("\"Patient\""),
                Just("\t"),
                Just("\u{1}"),
                Just("\\u00"),
                Just("ff"),
                Just("d8"),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Valid JSON objects from serde_json values, printed compactly.
    fn objects() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
            ]
        });
        (
            proptest::collection::btree_map(".*", value, 0..6),
            proptest::option::of("[A-Za-z]{1,12}"),
        )
            .prop_map(|(members, resource_type)| {
                let mut object: serde_json::Map<String, serde_json::Value> =
                    members.into_iter().collect();
                if let Some(resource_type) = resource_type {
                    object.insert("resourceType".to_owned(), resource_type.into());
                }
                serde_json::Value::Object(object).to_string()
            })
    }

    /// Every line of the Synthea sample (compact, as bulk servers write) is accepted by the
    /// block scanner with the type the byte scanner finds.
    #[test]
    fn the_block_scanner_accepts_compact_lines() {
        use std::io::Read as _;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4");
        let mut files = 0;
        let mut lines = 0;
        for entry in std::fs::read_dir(&dir).expect("data/synthea-r4 is in the repository") {
            let path = entry.expect("entry").path();
            if !path.to_string_lossy().ends_with(".ndjson.gz") {
                continue;
            }
            files += 1;
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("file"))
                .read_to_end(&mut text)
                .expect("gzip");
            let mut rest = &text[..];
            while !rest.is_empty() {
                let Block::Record(end, range) = scan_block(rest) else {
                    panic!("{}: line {} refused", path.display(), lines + 1);
                };
                assert_eq!(scan_record_bytes(rest), Some((end, range.clone())));
                assert!(range.is_some());
                rest = &rest[end + 1..];
                lines += 1;
            }
        }
        assert!(
            files >= 16 && lines > 50_000,
            "{files} files, {lines} lines"
        );
    }

    #[test]
    fn the_block_scanner_leaves_whitespace_and_crlf_to_the_byte_scanner() {
        for line in [
            &b"{ \"resourceType\":\"Patient\"}\n"[..],
            b"{\"resourceType\": \"Patient\"}\n",
            b"{\"resourceType\":\"Patient\"}\r\n",
            b"{\"resourceType\":\"Patient\",\"a\":[1, 2]}\n",
        ] {
            assert_eq!(
                scan_block(line),
                Block::Undecided,
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert!(scan_record_bytes(line).is_some());
        }
        // A line split anywhere: no newline yet.
        let line = b"{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"Ana\"]}]}";
        for cut in 1..line.len() {
            assert_eq!(scan_block(&line[..cut]), Block::Incomplete, "{cut}");
        }
        let mut whole = line.to_vec();
        whole.push(b'\n');
        assert!(matches!(scan_block(&whole), Block::Record(end, Some(_)) if end == line.len()));
    }

    /// Long compact lines cross many blocks: strings, escapes and numbers at every offset.
    #[test]
    fn the_block_scanner_agrees_at_every_block_offset() {
        for pad in 0..70 {
            let filler = "x".repeat(pad);
            for body in [
                format!(
                    r#"{{"id":"{filler}","resourceType":"Patient","a":[1,-2.5e+3,true,null,{{"b":"c\"\\\/\n\u00e9"}}],"z":"{filler}"}}"#
                ),
                format!(
                    r#"{{"{filler}":{{"{filler}":[[[],{{}}],"\\"]}},"resourceType":"Observation"}}"#
                ),
                format!(r#"{{"resourceType":"Observation","v":"{filler}\\\"","w":0}}"#),
            ] {
                let mut stream = body.clone().into_bytes();
                stream.extend_from_slice(b"\n{}\n");
                let Block::Record(end, range) = scan_block(&stream) else {
                    panic!("refused: {body}");
                };
                assert_eq!(end, body.len(), "{body}");
                assert_eq!(scan_record_bytes(&stream), Some((end, range)), "{body}");
                agrees(body.as_bytes());
            }
        }
    }

    proptest! {
        #[test]
        fn never_accepts_what_serde_json_refuses(text in jsonish()) {
            agrees(text.as_bytes());
        }

        #[test]
        fn accepts_every_object_serde_json_writes(text in objects()) {
            let scanned = scan_line(text.as_bytes());
            prop_assert!(matches!(scanned, Scan::Object(_)) || text.contains('\\'), "{text}");
            let mut stream = text.clone().into_bytes();
            stream.push(b'\n');
            prop_assert!(matches!(scan_block(&stream), Block::Record(..)) || text.contains('\\'), "{text}");
            agrees(text.as_bytes());
        }

        #[test]
        fn truncations_and_edits_of_objects_are_never_wrongly_accepted(
            text in objects(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let bytes = text.as_bytes();
            let at = cut.index(bytes.len().max(1));
            agrees(&bytes[..at.min(bytes.len())]);
            let mut edited = bytes.to_vec();
            if !edited.is_empty() {
                let last = edited.len() - 1;
                edited[at.min(last)] = byte;
            }
            agrees(&edited);
        }
    }
}
