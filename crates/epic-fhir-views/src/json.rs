//! A JSON document as a flat tape of nodes over the input bytes.
//!
//! Views read a few members of each resource, so building a `serde_json::Value` tree (a map
//! and a `String` per member) would spend most of the time allocating what is never looked
//! at. The tape is one `Vec<Node>` reused from line to line: each node records its kind, the
//! byte span of its text in the line, and the index just past its subtree, so a member that
//! is not wanted is skipped in one step. Strings stay as spans and are unescaped only when a
//! value is read; numbers keep their text, so `1.0` stays `1.0` (FHIR decimals carry their
//! precision).

use std::borrow::Cow;

/// The kind of a JSON node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// One node of the tape. In an object, each member is a key node (kind `String`) followed by
/// the value's subtree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    kind: Kind,
    /// For strings: whether the text holds escapes. For booleans: the value.
    flag: bool,
    /// The span of the text: for strings the content between the quotes, for numbers the
    /// number, for containers everything from the opening to the closing bracket.
    start: u32,
    len: u32,
    /// The index of the first node after this node's subtree.
    end: u32,
}

/// The deepest nesting accepted; FHIR resources stay far below it.
const MAX_DEPTH: usize = 256;

/// Why a line is not a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) offset: usize,
    pub(crate) message: &'static str,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

/// A parsed document: the tape and the text it points into.
#[derive(Debug, Default)]
pub(crate) struct Tape {
    nodes: Vec<Node>,
    /// The parser's stack of open containers, kept to reuse its allocation.
    open: Vec<u32>,
}

/// A document ready to be read: the tape plus its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Doc<'a> {
    nodes: &'a [Node],
    text: &'a str,
}

impl Tape {
    pub(crate) fn new() -> Self {
        Tape::default()
    }

    /// Parses `text` (one JSON value, surrounding whitespace allowed) into this tape.
    pub(crate) fn parse<'a>(&'a mut self, text: &'a str) -> Result<Doc<'a>, SyntaxError> {
        self.nodes.clear();
        if text.len() > u32::MAX as usize {
            return Err(SyntaxError {
                offset: 0,
                message: "a resource larger than 4 GiB",
            });
        }
        self.open.clear();
        parse_document(text.as_bytes(), &mut self.nodes, &mut self.open)?;
        Ok(Doc {
            nodes: &self.nodes,
            text,
        })
    }
}

fn syntax<T>(offset: usize, message: &'static str) -> Result<T, SyntaxError> {
    Err(SyntaxError { offset, message })
}

/// The first position at or after `pos` that is not JSON whitespace.
#[inline(always)]
fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = bytes.get(pos) {
        // NDJSON from servers has no whitespace: one comparison settles most calls.
        if b > b' ' || !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        pos += 1;
    }
    pos
}

/// The tag in the parser's stack for an open object (the low bit; node indexes are shifted).
const OPEN_OBJECT: u32 = 1;

/// Parses one JSON document into `nodes`, iteratively: `open` is the stack of containers
/// being filled (node index shifted left, low bit set for objects). One function with the
/// position in a local keeps the hot loop in registers.
fn parse_document(
    bytes: &[u8],
    nodes: &mut Vec<Node>,
    open: &mut Vec<u32>,
) -> Result<(), SyntaxError> {
    let mut pos = skip_ws(bytes, 0);
    'value: loop {
        // A value starts at `pos`.
        match bytes.get(pos) {
            Some(&opening @ (b'{' | b'[')) => {
                let is_object = opening == b'{';
                if open.len() >= MAX_DEPTH {
                    return syntax(pos, "nesting deeper than 256 levels");
                }
                let index = nodes.len() as u32;
                nodes.push(Node {
                    kind: if is_object { Kind::Object } else { Kind::Array },
                    flag: false,
                    start: pos as u32,
                    len: 1,
                    end: index + 1,
                });
                let start = pos;
                pos = skip_ws(bytes, pos + 1);
                let closing = if is_object { b'}' } else { b']' };
                if bytes.get(pos) == Some(&closing) {
                    pos += 1;
                    nodes[index as usize].len = (pos - start) as u32;
                } else {
                    open.push(index << 1 | u32::from(is_object));
                    if is_object {
                        pos = key(bytes, pos, nodes)?;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => pos = string(bytes, pos, nodes)?,
            Some(b't') => pos = literal(bytes, pos, b"true", Kind::Bool, true, nodes)?,
            Some(b'f') => pos = literal(bytes, pos, b"false", Kind::Bool, false, nodes)?,
            Some(b'n') => pos = literal(bytes, pos, b"null", Kind::Null, false, nodes)?,
            Some(b'-' | b'0'..=b'9') => pos = number(bytes, pos, nodes)?,
            Some(_) => return syntax(pos, "expected a JSON value"),
            None => return syntax(pos, "unexpected end of the document"),
        }
        // A value ended just before `pos`: go on in the innermost open container, closing
        // those that end here.
        while let Some(&top) = open.last() {
            let is_object = top & OPEN_OBJECT != 0;
            pos = skip_ws(bytes, pos);
            match bytes.get(pos) {
                Some(b',') => {
                    pos = skip_ws(bytes, pos + 1);
                    if is_object {
                        pos = key(bytes, pos, nodes)?;
                    }
                    continue 'value;
                }
                Some(b'}') if is_object => {}
                Some(b']') if !is_object => {}
                Some(_) => {
                    return syntax(
                        pos,
                        if is_object {
                            "expected `,` or `}`"
                        } else {
                            "expected `,` or `]`"
                        },
                    );
                }
                None => return syntax(pos, "unexpected end of the document"),
            }
            pos += 1;
            open.pop();
            let end = nodes.len() as u32;
            let node = &mut nodes[(top >> 1) as usize];
            node.end = end;
            node.len = pos as u32 - node.start;
        }
        break;
    }
    pos = skip_ws(bytes, pos);
    if pos != bytes.len() {
        return syntax(pos, "text after the end of the document");
    }
    Ok(())
}

/// Reads a member name and its `:`; returns the position of the value.
#[inline(always)]
fn key(bytes: &[u8], pos: usize, nodes: &mut Vec<Node>) -> Result<usize, SyntaxError> {
    if bytes.get(pos) != Some(&b'"') {
        return syntax(pos, "expected a member name in quotes");
    }
    let pos = skip_ws(bytes, string(bytes, pos, nodes)?);
    if bytes.get(pos) != Some(&b':') {
        return syntax(pos, "expected `:` after a member name");
    }
    Ok(skip_ws(bytes, pos + 1))
}

fn literal(
    bytes: &[u8],
    pos: usize,
    word: &[u8],
    kind: Kind,
    flag: bool,
    nodes: &mut Vec<Node>,
) -> Result<usize, SyntaxError> {
    if !bytes[pos..].starts_with(word) {
        return syntax(pos, "expected a JSON value");
    }
    let index = nodes.len() as u32;
    nodes.push(Node {
        kind,
        flag,
        start: pos as u32,
        len: word.len() as u32,
        end: index + 1,
    });
    Ok(pos + word.len())
}

fn number(bytes: &[u8], start: usize, nodes: &mut Vec<Node>) -> Result<usize, SyntaxError> {
    let digits = |mut pos: usize| {
        while matches!(bytes.get(pos), Some(b'0'..=b'9')) {
            pos += 1;
        }
        pos
    };
    let mut pos = start;
    if bytes.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match bytes.get(pos) {
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => pos = digits(pos),
        _ => return syntax(pos, "a number needs digits"),
    }
    if bytes.get(pos) == Some(&b'.') {
        let after = digits(pos + 1);
        if after == pos + 1 {
            return syntax(after, "a number needs digits after `.`");
        }
        pos = after;
    }
    if matches!(bytes.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(bytes.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let after = digits(pos);
        if after == pos {
            return syntax(after, "a number needs digits in its exponent");
        }
        pos = after;
    }
    let index = nodes.len() as u32;
    nodes.push(Node {
        kind: Kind::Number,
        flag: false,
        start: start as u32,
        len: (pos - start) as u32,
        end: index + 1,
    });
    Ok(pos)
}

/// Reads a string whose opening quote is at `pos`; returns the position after its closing
/// quote.
#[inline(always)]
fn string(bytes: &[u8], pos: usize, nodes: &mut Vec<Node>) -> Result<usize, SyntaxError> {
    let start = pos + 1;
    let mut pos = start;
    let mut escaped = false;
    loop {
        // Find the next quote, backslash or control character.
        pos = special_byte(bytes, pos);
        let Some(&b) = bytes.get(pos) else {
            return syntax(bytes.len(), "a string is not closed");
        };
        if b == b'"' {
            break;
        }
        if b < 0x20 {
            return syntax(pos, "a control character in a string");
        }
        escaped = true;
        match bytes.get(pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => pos += 2,
            Some(b'u') => {
                let hex = bytes.get(pos + 2..pos + 6);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return syntax(pos, "a `\\u` escape needs four hex digits");
                }
                pos += 6;
            }
            _ => return syntax(pos, "an unknown escape in a string"),
        }
    }
    let index = nodes.len() as u32;
    nodes.push(Node {
        kind: Kind::String,
        flag: escaped,
        start: start as u32,
        len: (pos - start) as u32,
        end: index + 1,
    });
    Ok(pos + 1)
}

/// Every byte of a `u64` set to `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The position of the first `"`, `\\` or control character at or after `pos` (the length
/// of `bytes` when there is none).
///
/// FHIR strings are short (codes, URLs, ids), where a call into a vectorised search costs
/// more than it saves; this tests eight bytes at a time in a general-purpose register
/// instead. For each test the classic zero-byte trick marks matching bytes with their high
/// bit; a borrow can only mark bytes *after* a true match, so the lowest mark is exact.
#[inline]
fn special_byte(bytes: &[u8], mut pos: usize) -> usize {
    const LOW: u64 = splat(0x01);
    const HIGH: u64 = splat(0x80);
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let word = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let quote = word ^ splat(b'"');
        let backslash = word ^ splat(b'\\');
        let marks = (quote.wrapping_sub(LOW) & !quote)
            | (backslash.wrapping_sub(LOW) & !backslash)
            | (word.wrapping_sub(splat(0x20)) & !word);
        let marks = marks & HIGH;
        if marks != 0 {
            return pos + (marks.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while let Some(&b) = bytes.get(pos) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return pos;
        }
        pos += 1;
    }
    pos
}

/// A node's index in its document.
pub(crate) type NodeId = u32;

impl<'a> Doc<'a> {
    /// The root node.
    pub(crate) fn root(&self) -> NodeId {
        0
    }

    pub(crate) fn kind(&self, node: NodeId) -> Kind {
        self.nodes[node as usize].kind
    }

    /// The raw text of a scalar (a string's content without quotes, still escaped).
    pub(crate) fn raw(&self, node: NodeId) -> &'a str {
        let n = self.nodes[node as usize];
        &self.text[n.start as usize..(n.start + n.len) as usize]
    }

    /// The raw bytes of a scalar, as [`Doc::raw`] without checking character boundaries.
    #[inline]
    pub(crate) fn raw_bytes(&self, node: NodeId) -> &'a [u8] {
        let n = self.nodes[node as usize];
        &self.text.as_bytes()[n.start as usize..(n.start + n.len) as usize]
    }

    /// The whole JSON text of a node, containers included.
    pub(crate) fn json_text(&self, node: NodeId) -> &'a str {
        let n = self.nodes[node as usize];
        if n.kind == Kind::String {
            &self.text[n.start as usize - 1..(n.start + n.len) as usize + 1]
        } else {
            self.raw(node)
        }
    }

    pub(crate) fn bool_value(&self, node: NodeId) -> bool {
        self.nodes[node as usize].flag
    }

    /// A string node's value, unescaped.
    pub(crate) fn str_value(&self, node: NodeId) -> Cow<'a, str> {
        let n = self.nodes[node as usize];
        let raw = self.raw(node);
        if n.kind == Kind::String && n.flag {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// The member `name` of an object node.
    pub(crate) fn get(&self, object: NodeId, name: &str) -> Option<NodeId> {
        self.members(object)
            .find(|&(key, _)| self.key_is(key, name))
            .map(|(_, v)| v)
    }

    /// Whether a key node spells `name`.
    pub(crate) fn key_is(&self, key: NodeId, name: &str) -> bool {
        let n = self.nodes[key as usize];
        if n.flag {
            unescape(self.raw(key)) == name
        } else {
            self.raw(key) == name
        }
    }

    /// The members of an object node as (key node, value node); nothing for other kinds.
    pub(crate) fn members(&self, object: NodeId) -> Members<'_> {
        let n = self.nodes[object as usize];
        let (next, end) = if n.kind == Kind::Object {
            (object + 1, n.end)
        } else {
            (0, 0)
        };
        Members {
            nodes: self.nodes,
            next,
            end,
        }
    }

    /// The elements of an array node; nothing for other kinds.
    pub(crate) fn elements(&self, array: NodeId) -> Elements<'_> {
        let n = self.nodes[array as usize];
        let (next, end) = if n.kind == Kind::Array {
            (array + 1, n.end)
        } else {
            (0, 0)
        };
        Elements {
            nodes: self.nodes,
            next,
            end,
        }
    }

    /// Converts a node into a `serde_json::Value` (tests, NDJSON of complex columns).
    pub(crate) fn to_value(self, node: NodeId) -> serde_json::Value {
        use serde_json::Value;
        match self.kind(node) {
            Kind::Null => Value::Null,
            Kind::Bool => Value::Bool(self.bool_value(node)),
            Kind::Number => serde_json::from_str(self.raw(node)).unwrap_or(Value::Null),
            Kind::String => Value::String(self.str_value(node).into_owned()),
            Kind::Array => Value::Array(self.elements(node).map(|e| self.to_value(e)).collect()),
            Kind::Object => Value::Object(
                self.members(node)
                    .map(|(k, v)| (self.str_value(k).into_owned(), self.to_value(v)))
                    .collect(),
            ),
        }
    }
}

pub(crate) struct Members<'n> {
    nodes: &'n [Node],
    next: u32,
    end: u32,
}

impl Iterator for Members<'_> {
    type Item = (NodeId, NodeId);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let key = self.next;
        let value = key + 1;
        self.next = self.nodes[value as usize].end;
        Some((key, value))
    }
}

pub(crate) struct Elements<'n> {
    nodes: &'n [Node],
    next: u32,
    end: u32,
}

impl Iterator for Elements<'_> {
    type Item = NodeId;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let element = self.next;
        self.next = self.nodes[element as usize].end;
        Some(element)
    }
}

/// Unescapes the content of a JSON string that the parser has checked.
pub(crate) fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((_, 'r')) => out.push('\r'),
            Some((_, 'b')) => out.push('\u{8}'),
            Some((_, 'f')) => out.push('\u{c}'),
            Some((_, 'u')) => {
                let code =
                    u32::from_str_radix(raw.get(i + 2..i + 6).unwrap_or("0"), 16).unwrap_or(0);
                for _ in 0..4 {
                    chars.next();
                }
                if (0xD800..0xDC00).contains(&code) && raw.get(i + 6..i + 8) == Some("\\u") {
                    let low =
                        u32::from_str_radix(raw.get(i + 8..i + 12).unwrap_or("0"), 16).unwrap_or(0);
                    if (0xDC00..0xE000).contains(&low) {
                        for _ in 0..6 {
                            chars.next();
                        }
                        let c = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                        out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        continue;
                    }
                }
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            Some((_, other)) => out.push(other),
            None => {}
        }
    }
    out
}

/// Reads the top-level `resourceType` of a resource without parsing the rest when it comes
/// first, as servers write it; `None` when it does not come first (the caller then parses).
pub(crate) fn leading_resource_type(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest.strip_prefix("\"resourceType\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    (rest.as_bytes()[end] == b'"').then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_same(text: &str) {
        let mut tape = Tape::new();
        let doc = tape.parse(text).unwrap();
        let ours = doc.to_value(doc.root());
        let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(ours, theirs, "{text}");
    }

    #[test]
    fn parses_like_serde_json() {
        check_same(
            r#"{"resourceType":"Patient","id":"a","name":[{"given":["A","B"],"family":"C"}],"active":true,"x":null,"n":-1.5e3,"e":{},"f":[]}"#,
        );
        check_same(r#"  [1, 2.0, "a\"b\\c\u00e9\ud83d\ude00\n", [[]], {"k": {"l": [null]}}]  "#);
        check_same("0");
    }

    #[test]
    fn skips_subtrees_and_reads_members() {
        let mut tape = Tape::new();
        let doc = tape
            .parse(r#"{"a":{"b":[1,{"c":2}]},"d":"x\ty","e\u0041":3}"#)
            .unwrap();
        let a = doc.get(doc.root(), "a").unwrap();
        assert_eq!(doc.json_text(a), r#"{"b":[1,{"c":2}]}"#);
        assert_eq!(doc.str_value(doc.get(doc.root(), "d").unwrap()), "x\ty");
        assert_eq!(doc.raw(doc.get(doc.root(), "eA").unwrap()), "3");
        assert!(doc.get(doc.root(), "b").is_none());
    }

    #[test]
    fn rejects_malformed_documents_with_an_offset() {
        let mut tape = Tape::new();
        for (text, offset) in [
            ("{\"a\":}", 5),
            ("{\"a\":1", 6),
            ("[1,]", 3),
            ("{\"a\" 1}", 5),
            ("\"abc", 4),
            ("01", 1),
            ("{} x", 3),
            ("[1.]", 3),
            ("\"\\x\"", 1),
        ] {
            let error = tape.parse(text).unwrap_err();
            assert_eq!(error.offset, offset, "{text}: {error}");
        }
        let deep = "[".repeat(300) + &"]".repeat(300);
        assert!(tape.parse(&deep).is_err());
    }

    #[test]
    fn the_word_at_a_time_scan_finds_what_a_byte_loop_finds() {
        let naive = |bytes: &[u8], pos: usize| {
            bytes[pos..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .map_or(bytes.len(), |p| pos + p)
        };
        // Every placement of each special byte among ordinary, multi-byte and borderline
        // ones (0x1f/0x20, 0x21/0x22/0x23, 0x5b/0x5c/0x5d, 0x7f/0x80, 0xff), from every start.
        let fillers: [&[u8]; 4] = [
            b"abcdefghijklmnopqrst",
            "ééééééééééé".as_bytes(),
            &[
                0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f,
                0x80, 0xff, 0x21, 0x23, 0x5b, 0x5d,
            ],
            &[
                0xe2, 0x82, 0xac, 0x22, 0x5c, 0x00, 0x1f, 0x0a, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46,
                0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c,
            ],
        ];
        for filler in fillers {
            for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..=filler.len() {
                    let mut bytes = filler.to_vec();
                    bytes.insert(at, special);
                    for start in 0..bytes.len() {
                        assert_eq!(
                            special_byte(&bytes, start),
                            naive(&bytes, start),
                            "{bytes:?} from {start}"
                        );
                    }
                }
            }
            for start in 0..filler.len() {
                assert_eq!(special_byte(filler, start), naive(filler, start));
            }
        }
    }

    #[test]
    fn finds_a_leading_resource_type() {
        assert_eq!(
            leading_resource_type(r#"{"resourceType":"Observation","id":"1"}"#),
            Some("Observation")
        );
        assert_eq!(
            leading_resource_type(r#"{ "resourceType" : "Patient"}"#),
            Some("Patient")
        );
        assert_eq!(
            leading_resource_type(r#"{"id":"1","resourceType":"Patient"}"#),
            None
        );
    }
}
