//! A pull parser over JSON bytes, made for the generated models.
//!
//! serde's visitor path makes every model pay for generic dispatch and for copying member
//! names it then compares; this reader hands the generated code borrowed keys to `match` on,
//! copies a string only when it becomes a field, keeps numbers as their text (so a decimal is
//! written back exactly as read) and compiles once, in this crate, instead of once per
//! deserializer in every crate that parses resources.
//!
//! It accepts exactly RFC 8259 JSON: no comments, no trailing commas, no control characters in
//! strings, no lone surrogates, no leading zeros. Nesting is limited to [`MAX_DEPTH`].

use std::borrow::Cow;

use super::error::ParseError;

/// How deep objects and arrays may nest before the input is refused (as serde_json does).
pub const MAX_DEPTH: u32 = 128;

/// The result of a parsing step; the error is boxed so that `Ok` paths stay small.
pub type PResult<T> = Result<T, Box<ParseError>>;

/// Bytes that end the fast scan of a string: the quote, the backslash and control characters.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A cursor over one JSON document.
#[derive(Debug)]
pub struct Parser<'a> {
    input: &'a [u8],
    /// The longest valid UTF-8 prefix of `input` (all of it, for valid input), checked once
    /// up front: strings inside it are sliced from it without checking them again.
    text: &'a str,
    pos: usize,
    depth: u32,
}

/// Eight copies of `byte` in a word.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The offset of the first byte of `chunk` that may end a string's fast scan (a quote, a
/// backslash or a control character), if any. Bytes after a true match may be flagged too
/// (borrows of the subtraction), the first flagged one is always a true match.
#[inline]
fn string_stop_in(chunk: [u8; 8]) -> Option<usize> {
    const LOW: u64 = splat(0x01);
    const HIGH: u64 = splat(0x80);
    let word = u64::from_le_bytes(chunk);
    let zero_in = |v: u64| v.wrapping_sub(LOW) & !v & HIGH;
    let quote = zero_in(word ^ splat(b'"'));
    let backslash = zero_in(word ^ splat(b'\\'));
    let control = word.wrapping_sub(splat(0x20)) & !word & HIGH;
    let found = quote | backslash | control;
    (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
}

/// The offset of the first quote, backslash or control character among 16 bytes, if any:
/// three SSE2 compares and one mask, so that a string's bytes cost well under one instruction
/// each (member names and most values end in the first 16).
#[cfg(target_arch = "x86_64")]
#[inline]
fn string_stop_in_16(chunk: &[u8; 16]) -> Option<usize> {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let bytes = load_unaligned_m128i(chunk);
    let quote = cmp_eq_mask_i8_m128i(bytes, set_splat_i8_m128i(b'"' as i8));
    let backslash = cmp_eq_mask_i8_m128i(bytes, set_splat_i8_m128i(b'\\' as i8));
    // Below 0x20 unsigned: the byte equals its minimum with 0x1f.
    let control = cmp_eq_mask_i8_m128i(min_u8_m128i(bytes, set_splat_i8_m128i(0x1f)), bytes);
    let found = move_mask_i8_m128i(bitor_m128i(bitor_m128i(quote, backslash), control));
    (found != 0).then(|| found.trailing_zeros() as usize)
}

/// The same without SIMD: two words.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn string_stop_in_16(chunk: &[u8; 16]) -> Option<usize> {
    let (low, high) = chunk.split_at(8);
    let word = |half: &[u8]| half.try_into().unwrap_or([b'"'; 8]);
    string_stop_in(word(low)).or_else(|| string_stop_in(word(high)).map(|offset| offset + 8))
}

impl<'a> Parser<'a> {
    /// A parser at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        let text = match std::str::from_utf8(input) {
            Ok(text) => text,
            // The prefix up to the first invalid byte is valid by definition.
            Err(e) => std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or_default(),
        };
        Parser {
            input,
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// A parser at the start of `text`, which is known to be UTF-8 (no second check).
    pub fn from_text(text: &'a str) -> Self {
        Parser {
            input: text.as_bytes(),
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// The byte offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Moves back to an earlier position (one returned by [`Parser::position`] at the same
    /// nesting depth).
    pub(crate) fn rewind(&mut self, pos: usize, depth: u32) {
        self.pos = pos;
        self.depth = depth;
    }

    /// The current nesting depth.
    pub(crate) fn depth(&self) -> u32 {
        self.depth
    }

    /// An error at the current position.
    pub fn error(&self, message: impl Into<Cow<'static, str>>) -> Box<ParseError> {
        ParseError::new(self.pos, message.into())
    }

    pub(crate) fn error_at(
        &self,
        pos: usize,
        message: impl Into<Cow<'static, str>>,
    ) -> Box<ParseError> {
        ParseError::new(pos, message.into())
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(&byte) = self.input.get(self.pos) {
            if matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next byte after whitespace, without consuming it.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.input.get(self.pos).copied()
    }

    fn unexpected(&self, expected: &'static str) -> Box<ParseError> {
        match self.input.get(self.pos) {
            None => self.error(format!("unexpected end of input, expected {expected}")),
            Some(&byte) => self.error(format!(
                "expected {expected}, found {}",
                describe_value_start(byte)
            )),
        }
    }

    #[inline(always)]
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(())
    }

    #[cold]
    fn too_deep(&self) -> Box<ParseError> {
        self.error(format!("nesting deeper than {MAX_DEPTH} levels"))
    }

    /// Consumes `{`, or fails naming what was found instead.
    #[inline(always)]
    pub fn begin_object(&mut self) -> PResult<()> {
        if self.input.get(self.pos) == Some(&b'{') {
            self.pos += 1;
            return self.enter();
        }
        self.any_begin_object()
    }

    /// [`Parser::begin_object`] after whitespace, and its error.
    #[inline(never)]
    fn any_begin_object(&mut self) -> PResult<()> {
        if self.peek() != Some(b'{') {
            return Err(self.unexpected("an object"));
        }
        self.pos += 1;
        self.enter()
    }

    /// Reads the next member name and its `:`, or consumes the closing `}` and returns `None`.
    /// `first` is true before the first member and is cleared here.
    #[inline(always)]
    pub fn next_key(&mut self, first: &mut bool) -> PResult<Option<Cow<'a, str>>> {
        // Compact JSON, inline: `"name":` right after `{` or `,`, or the closing `}`.
        let input = self.input;
        let at = self.pos;
        let key_at = match input.get(at) {
            Some(b'}') => {
                self.pos = at + 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !*first => at + 1,
            Some(b'"') if *first => at,
            _ => return self.any_key(first),
        };
        self.pos = key_at;
        if let Some(key) = self.plain_str() {
            if input.get(self.pos) == Some(&b':') {
                self.pos += 1;
                *first = false;
                return Ok(Some(Cow::Borrowed(key)));
            }
        }
        self.pos = at;
        self.any_key(first)
    }

    /// [`Parser::next_key`] for any JSON, whitespace and escapes included, and its errors.
    #[inline(never)]
    fn any_key(&mut self, first: &mut bool) -> PResult<Option<Cow<'a, str>>> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.skip_whitespace();
            }
            Some(b'"') if *first => {}
            _ => {
                return Err(self.unexpected(if *first {
                    "a member name or `}`"
                } else {
                    "`,` or `}`"
                }));
            }
        }
        *first = false;
        if self.input.get(self.pos) != Some(&b'"') {
            return Err(self.unexpected("a member name"));
        }
        let key = self.str()?;
        if self.peek() != Some(b':') {
            return Err(self.unexpected("`:` after the member name"));
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// Consumes `[`, or fails naming what was found instead.
    #[inline]
    pub fn begin_array(&mut self) -> PResult<()> {
        if self.peek() != Some(b'[') {
            return Err(self.unexpected("an array"));
        }
        self.pos += 1;
        self.enter()
    }

    /// Whether another element follows (consuming its `,`), or consumes the closing `]`.
    #[inline]
    pub fn next_element(&mut self, first: &mut bool) -> PResult<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            _ => Err(self.unexpected(if *first {
                "a value or `]`"
            } else {
                "`,` or `]`"
            })),
        }
    }

    /// Whether a value other than `null` starts right here (no whitespace first): the fast
    /// path of a member's value, which needs no `null` or whitespace handling.
    #[inline(always)]
    pub(crate) fn plain_value_next(&self) -> bool {
        self.input
            .get(self.pos)
            .is_some_and(|&byte| byte > b' ' && byte != b'n')
    }

    /// Whether `[` is the next byte (no whitespace first).
    #[inline(always)]
    pub(crate) fn plain_array_next(&self) -> bool {
        self.input.get(self.pos) == Some(&b'[')
    }

    /// Consumes `null` if it comes next.
    #[inline]
    pub fn take_null(&mut self) -> PResult<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &'static [u8]) -> PResult<()> {
        if self.input.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal (expected `true`, `false` or `null`)"))
        }
    }

    /// Reads a boolean.
    #[inline]
    pub fn boolean(&mut self) -> PResult<bool> {
        match self.peek() {
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| false),
            _ => Err(self.unexpected("a boolean")),
        }
    }

    /// Reads a string into an owned `String`.
    #[inline]
    pub fn string(&mut self) -> PResult<String> {
        self.str().map(Cow::into_owned)
    }

    /// Reads a string, borrowing it from the input unless it has escapes.
    #[inline]
    pub fn str(&mut self) -> PResult<Cow<'a, str>> {
        match self.plain_str() {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => self.any_str(),
        }
    }

    /// The fast path of [`Parser::str`], small enough to inline: a string that starts right
    /// here, has no escapes and ends at least 16 bytes before the end of the input. Anything
    /// else (whitespace first, escapes, errors, the last bytes) returns `None` without moving,
    /// for [`Parser::any_str`] to read or report.
    #[inline(always)]
    fn plain_str(&mut self) -> Option<&'a str> {
        let input = self.input;
        if input.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        let mut end = start;
        loop {
            let chunk: &[u8; 16] = input.get(end..end + 16)?.try_into().ok()?;
            if let Some(offset) = string_stop_in_16(chunk) {
                end += offset;
                break;
            }
            end += 16;
        }
        if input.get(end) != Some(&b'"') {
            return None;
        }
        let text = self.text.get(start..end)?;
        self.pos = end + 1;
        Some(text)
    }

    /// Reads any string, or reports why there is none here.
    #[inline(never)]
    fn any_str(&mut self) -> PResult<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string"));
        }
        let start = self.pos + 1;
        let mut end = start;
        let input = self.input;
        // The general path (the fast one is `plain_str`): eight bytes at a time to the first
        // byte that may stop the scan, then byte by byte.
        while let Some(chunk) = input.get(end..end + 8) {
            let chunk: [u8; 8] = chunk.try_into().unwrap_or([b'"'; 8]);
            if let Some(offset) = string_stop_in(chunk) {
                end += offset;
                break;
            }
            end += 8;
        }
        while let Some(&byte) = input.get(end) {
            if STRING_STOP[byte as usize] {
                break;
            }
            end += 1;
        }
        match input.get(end) {
            Some(b'"') => {
                let text = match self.text.get(start..end) {
                    Some(text) => text,
                    // Past the valid prefix: find and name the invalid byte.
                    None => std::str::from_utf8(&input[start..end]).map_err(|e| {
                        self.error_at(start + e.valid_up_to(), "invalid UTF-8 in a string")
                    })?,
                };
                self.pos = end + 1;
                Ok(Cow::Borrowed(text))
            }
            Some(b'\\') => self.escaped_string(start, end).map(Cow::Owned),
            Some(_) => {
                Err(self.error_at(end, "control character in a string (it must be escaped)"))
            }
            None => Err(self.error_at(start - 1, "unterminated string")),
        }
    }

    /// Reads a string with escapes, from `start` (after the quote); `end` is the first backslash.
    #[cold]
    fn escaped_string(&mut self, start: usize, mut end: usize) -> PResult<String> {
        let input = self.input;
        let mut bytes: Vec<u8> = input[start..end].to_vec();
        loop {
            match input.get(end) {
                None => return Err(self.error_at(start - 1, "unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    let escape = input.get(end + 1).copied();
                    end += 2;
                    let byte = match escape {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            let c = self.unicode_escape(&mut end)?;
                            let mut buffer = [0; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                            continue;
                        }
                        _ => return Err(self.error_at(end - 1, "invalid escape in a string")),
                    };
                    bytes.push(byte);
                }
                Some(&byte) if byte < 0x20 => {
                    return Err(
                        self.error_at(end, "control character in a string (it must be escaped)")
                    );
                }
                Some(&byte) => {
                    bytes.push(byte);
                    end += 1;
                }
            }
        }
        self.pos = end + 1;
        String::from_utf8(bytes).map_err(|_| self.error_at(start, "invalid UTF-8 in a string"))
    }

    /// Reads the four hex digits after `\u` at `*end` (and a low surrogate if needed).
    fn unicode_escape(&self, end: &mut usize) -> PResult<char> {
        let first = self.hex4(*end)?;
        *end += 4;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.input.get(*end..*end + 2) != Some(b"\\u") {
                return Err(self.error_at(*end, "a high surrogate without its low surrogate"));
            }
            let second = self.hex4(*end + 2)?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error_at(*end, "a high surrogate without its low surrogate"));
            }
            *end += 6;
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error_at(*end - 4, "a lone low surrogate"))
    }

    fn hex4(&self, at: usize) -> PResult<u32> {
        let digits = self
            .input
            .get(at..at + 4)
            .ok_or_else(|| self.error_at(at, "unterminated \\u escape"))?;
        let mut value = 0;
        for &digit in digits {
            let nibble = (digit as char)
                .to_digit(16)
                .ok_or_else(|| self.error_at(at, "invalid \\u escape"))?;
            value = value * 16 + nibble;
        }
        Ok(value)
    }

    /// Reads a number and returns its text, checked against the JSON grammar.
    #[inline]
    pub fn number(&mut self) -> PResult<&'a str> {
        self.skip_whitespace();
        let start = self.pos;
        let input = self.input;
        let mut at = start;
        if input.get(at) == Some(&b'-') {
            at += 1;
        }
        match input.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                while input.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
            }
            _ => return Err(self.unexpected("a number")),
        }
        if input.get(at) == Some(&b'.') {
            at += 1;
            if !input.get(at).is_some_and(u8::is_ascii_digit) {
                return Err(self.error_at(at, "a digit must follow the decimal point"));
            }
            while input.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
        }
        if matches!(input.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(input.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if !input.get(at).is_some_and(u8::is_ascii_digit) {
                return Err(self.error_at(at, "a digit must follow the exponent"));
            }
            while input.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
        }
        if input.get(at).is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.error_at(at, "a number with a leading zero"));
        }
        self.pos = at;
        // The grammar above admits only ASCII.
        Ok(self
            .text
            .get(start..at)
            .or_else(|| std::str::from_utf8(&input[start..at]).ok())
            .unwrap_or_default())
    }

    /// Skips one value of any kind and returns its text.
    pub fn raw_value(&mut self) -> PResult<&'a str> {
        self.skip_whitespace();
        let start = self.pos;
        self.skip_value()?;
        // Every value the parser accepts is valid UTF-8 (strings are checked as they are read).
        match self.text.get(start..self.pos) {
            Some(text) => Ok(text),
            None => std::str::from_utf8(&self.input[start..self.pos])
                .map_err(|e| self.error_at(start + e.valid_up_to(), "invalid UTF-8")),
        }
    }

    /// Skips one value of any kind.
    pub fn skip_value(&mut self) -> PResult<()> {
        match self.peek() {
            Some(b'{') => {
                self.begin_object()?;
                let mut first = true;
                while self.next_key(&mut first)?.is_some() {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'[') => {
                self.begin_array()?;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'"') => self.str().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// Checks that only whitespace is left.
    pub fn end(&mut self) -> PResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters after the JSON document")),
        }
    }
}

/// Names the kind of value that starts with `byte`, for messages.
pub(crate) fn describe_value_start(byte: u8) -> &'static str {
    match byte {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'-' | b'0'..=b'9' => "a number",
        b'}' => "`}`",
        b']' => "`]`",
        b',' => "`,`",
        b':' => "`:`",
        _ => "an invalid character",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(input: &str) -> PResult<String> {
        let mut p = Parser::new(input.as_bytes());
        let s = p.string()?;
        p.end()?;
        Ok(s)
    }

    #[test]
    fn strings_with_and_without_escapes() {
        assert_eq!(strings(r#""plain""#).unwrap(), "plain");
        assert_eq!(strings(r#""a\"b\\c\/d\n""#).unwrap(), "a\"b\\c/d\n");
        assert_eq!(strings(r#""\u00e9\ud83d\ude00""#).unwrap(), "é😀");
        assert_eq!(strings("\"caf\u{e9}\"").unwrap(), "café");
        for bad in [
            "\"a\u{1}b\"",
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\x""#,
            r#""abc"#,
            r#""\u12""#,
        ] {
            assert!(strings(bad).is_err(), "{bad:?} was accepted");
        }
        let invalid = [b'"', 0xff, b'"'];
        assert!(Parser::new(&invalid).string().is_err());
    }

    #[test]
    fn the_sixteen_byte_scan_finds_the_first_stop_byte_of_every_value() {
        // Every byte value at every position, among plain bytes and bytes above 0x7f (which
        // a signed compare would take for control characters).
        for filler in [b'a', 0x80, 0xff, 0x20] {
            for at in 0..16 {
                for byte in 0..=255u8 {
                    let mut chunk = [filler; 16];
                    chunk[at] = byte;
                    let expected = chunk.iter().position(|&b| STRING_STOP[b as usize]);
                    assert_eq!(string_stop_in_16(&chunk), expected, "{byte:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn the_word_at_a_time_scan_stops_at_every_position() {
        for len in 0..40 {
            let body = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"[..len].to_owned();
            // A plain string of every length, with multi-byte text too.
            assert_eq!(strings(&format!("\"{body}\"")).unwrap(), body);
            let accented = format!("{body}\u{e9}\u{1F600}{body}");
            assert_eq!(strings(&format!("\"{accented}\"")).unwrap(), accented);
            // An escape, a control character, and invalid UTF-8 at every offset.
            assert_eq!(
                strings(&format!("\"{body}\\n{body}\"")).unwrap(),
                format!("{body}\n{body}")
            );
            let control = Parser::new(format!("\"{body}\u{1}x\"").as_bytes())
                .string()
                .unwrap_err();
            assert_eq!(control.offset(), len + 1, "{control}");
            let mut invalid = format!("[\"ok\", \"{body}").into_bytes();
            invalid.extend_from_slice(&[0xC3, b'x', b'"', b']']);
            let mut p = Parser::new(&invalid);
            p.begin_array().unwrap();
            let mut first = true;
            assert!(p.next_element(&mut first).unwrap());
            assert_eq!(p.string().unwrap(), "ok");
            assert!(p.next_element(&mut first).unwrap());
            let error = p.string().unwrap_err();
            assert_eq!(error.offset(), 8 + len, "{error}");
        }
    }

    #[test]
    fn numbers_keep_their_text() {
        for good in ["0", "-0", "1.50", "1e10", "-2.5E-3", "120"] {
            let mut p = Parser::new(good.as_bytes());
            assert_eq!(p.number().unwrap(), good);
        }
        for bad in ["01", "1.", ".5", "-", "1e", "+1"] {
            let mut p = Parser::new(bad.as_bytes());
            let result = p.number().and_then(|_| p.end());
            assert!(result.is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn objects_arrays_and_raw_values() {
        let input = br#" { "a" : [1, {"b": null}, "x"], "c": true } "#;
        let mut p = Parser::new(input);
        p.begin_object().unwrap();
        let mut first = true;
        assert_eq!(p.next_key(&mut first).unwrap().as_deref(), Some("a"));
        assert_eq!(p.raw_value().unwrap(), r#"[1, {"b": null}, "x"]"#);
        assert_eq!(p.next_key(&mut first).unwrap().as_deref(), Some("c"));
        assert!(p.boolean().unwrap());
        assert_eq!(p.next_key(&mut first).unwrap(), None);
        p.end().unwrap();
    }

    #[test]
    fn structural_errors_say_what_was_expected() {
        for (input, expected) in [
            (r#"{"a":1,}"#, "expected a member name"),
            (r#"{"a" 1}"#, "`:`"),
            (r#"[1 2]"#, "`,` or `]`"),
            (r#"{"a":1"#, "unexpected end of input"),
            (r#"nul"#, "invalid literal"),
        ] {
            let mut p = Parser::new(input.as_bytes());
            let error = p.skip_value().and_then(|()| p.end()).unwrap_err();
            assert!(
                error.message().contains(expected),
                "{input}: {}",
                error.message()
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let error = Parser::new(deep.as_bytes()).skip_value().unwrap_err();
        assert!(error.message().contains("nesting"), "{}", error.message());
        let fine = "[".repeat(100) + &"]".repeat(100);
        Parser::new(fine.as_bytes()).skip_value().unwrap();
    }
}
