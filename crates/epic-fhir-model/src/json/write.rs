//! A compact JSON writer for the generated models.

/// Whether a byte must be escaped inside a JSON string.
static NEEDS_ESCAPE: [bool; 256] = {
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

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes compact JSON into a byte buffer.
///
/// Members and elements are separated by one flag: after any value, the next member or element
/// needs a comma; after an opening bracket it does not.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    comma: bool,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            out: Vec::with_capacity(capacity),
            comma: false,
        }
    }

    /// A writer that appends to `out`.
    pub fn from_vec(out: Vec<u8>) -> Self {
        Writer { out, comma: false }
    }

    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.out
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }

    /// Opens an object.
    #[inline]
    pub fn begin_object(&mut self) {
        self.out.push(b'{');
        self.comma = false;
    }

    /// Closes an object.
    #[inline]
    pub fn end_object(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }

    /// Opens an array.
    #[inline]
    pub fn begin_array(&mut self) {
        self.out.push(b'[');
        self.comma = false;
    }

    /// Closes an array.
    #[inline]
    pub fn end_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }

    /// Starts the next array element.
    #[inline]
    pub fn element(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }

    /// Writes a member name given as its quoted text with the colon, such as `b"\"id\":"`.
    #[inline]
    pub fn key_literal(&mut self, quoted: &[u8]) {
        if self.comma {
            self.out.push(b',');
        }
        self.out.extend_from_slice(quoted);
        self.comma = false;
    }

    /// Writes a member name that may need escaping.
    pub fn key(&mut self, name: &str) {
        if self.comma {
            self.out.push(b',');
        }
        self.escaped(name);
        self.out.push(b':');
        self.comma = false;
    }

    /// Writes a string value.
    #[inline]
    pub fn string(&mut self, value: &str) {
        self.escaped(value);
        self.comma = true;
    }

    /// Writes text that is already JSON (a number, or a raw value).
    #[inline]
    pub fn raw(&mut self, json: &str) {
        self.out.extend_from_slice(json.as_bytes());
        self.comma = true;
    }

    /// Writes a boolean.
    #[inline]
    pub fn boolean(&mut self, value: bool) {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self.comma = true;
    }

    /// Writes `null`.
    #[inline]
    pub fn null(&mut self) {
        self.out.extend_from_slice(b"null");
        self.comma = true;
    }

    /// Writes an integer.
    #[inline]
    pub fn integer(&mut self, value: i64) {
        let mut buffer = itoa_buffer();
        self.out
            .extend_from_slice(format_integer(value, &mut buffer));
        self.comma = true;
    }

    fn escaped(&mut self, text: &str) {
        let bytes = text.as_bytes();
        self.out.reserve(bytes.len() + 2);
        self.out.push(b'"');
        let mut start = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            if !NEEDS_ESCAPE[byte as usize] {
                continue;
            }
            self.out.extend_from_slice(&bytes[start..i]);
            match byte {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                b'\n' => self.out.extend_from_slice(b"\\n"),
                b'\r' => self.out.extend_from_slice(b"\\r"),
                b'\t' => self.out.extend_from_slice(b"\\t"),
                0x08 => self.out.extend_from_slice(b"\\b"),
                0x0c => self.out.extend_from_slice(b"\\f"),
                _ => self.out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(byte >> 4) as usize],
                    HEX[(byte & 0xf) as usize],
                ]),
            }
            start = i + 1;
        }
        self.out.extend_from_slice(&bytes[start..]);
        self.out.push(b'"');
    }
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// Formats `value` in decimal into the end of `buffer`.
fn format_integer(value: i64, buffer: &mut [u8; 20]) -> &[u8] {
    let negative = value < 0;
    let mut magnitude = value.unsigned_abs();
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut w = Writer::new();
        w.string("a\"b\\c\n\u{1}é");
        let text = String::from_utf8(w.into_inner()).unwrap();
        assert_eq!(text, r#""a\"b\\c\n\u0001é""#);
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn integers_at_the_limits() {
        for value in [0, 7, -7, i64::MAX, i64::MIN, 1_000_000] {
            let mut w = Writer::new();
            w.integer(value);
            assert_eq!(
                String::from_utf8(w.into_inner()).unwrap(),
                value.to_string()
            );
        }
    }

    #[test]
    fn commas_between_members_and_elements() {
        let mut w = Writer::new();
        w.begin_object();
        w.key_literal(b"\"a\":");
        w.begin_array();
        w.element();
        w.integer(1);
        w.element();
        w.begin_object();
        w.end_object();
        w.end_array();
        w.key("b c");
        w.null();
        w.end_object();
        assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            r#"{"a":[1,{}],"b c":null}"#
        );
    }
}
