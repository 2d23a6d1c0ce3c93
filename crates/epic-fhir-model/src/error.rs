//! The error for JSON that does not fit the models, and the entry points that produce it.

use std::fmt;

use crate::json::{FromJson, ParseError, Parser, ToJson, Writer};

/// How many characters of input to show on each side of the failure point.
const EXCERPT_RADIUS: usize = 32;

/// JSON that could not be read into a model.
///
/// It names the JSON path of the member that failed (such as `entry[3].resource.birthDate`),
/// what is wrong, and for input read from text the line, column and a short excerpt around the
/// failure.
///
/// The excerpt is a few dozen characters of the input, so it may contain patient data: log it
/// only where such data may go.
#[derive(Debug, Clone)]
pub struct ModelError {
    path: String,
    message: String,
    line: usize,
    column: usize,
    excerpt: Option<String>,
}

impl fmt::Display for ModelError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "invalid FHIR JSON at `{}`: {}",
            self.path, self.message
        )?;
        if self.line > 0 {
            write!(formatter, " (line {}, column {})", self.line, self.column)?;
        }
        if let Some(excerpt) = &self.excerpt {
            write!(formatter, " near `{excerpt}`")?;
        }
        Ok(())
    }
}

impl std::error::Error for ModelError {}

impl ModelError {
    /// The JSON path of the member that failed, such as `entry[3].resource.birthDate`, or
    /// `.` for the document itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, such as `missing required member \`code\``.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based line of the failure in the input text, when the input was text.
    pub fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }

    /// The 1-based column (in bytes) of the failure in the input text, when the input was text.
    pub fn column(&self) -> Option<usize> {
        (self.line > 0).then_some(self.column)
    }

    /// A short piece of the input around the failure, when the input was text.
    pub fn excerpt(&self) -> Option<&str> {
        self.excerpt.as_deref()
    }

    /// Explains a parse failure against the input it happened in.
    pub fn from_parse(error: &ParseError, input: &[u8]) -> Self {
        let offset = error.offset().min(input.len());
        let before = &input[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        ModelError {
            path: error.path(),
            message: error.message().to_owned(),
            line,
            column: offset - line_start + 1,
            excerpt: Some(excerpt(input, offset)),
        }
    }

    /// An error about the member at `path` of an already parsed value.
    pub fn at_path(path: &str, message: impl fmt::Display) -> Self {
        ModelError {
            path: path.to_owned(),
            message: message.to_string(),
            line: 0,
            column: 0,
            excerpt: None,
        }
    }

    /// The same error, as found inside member or path `prefix` of an enclosing document
    /// (`entry[2].resource` + `birthDate` = `entry[2].resource.birthDate`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = if self.path == "." {
            prefix.to_owned()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

/// Cuts the input around `offset`, staying on character boundaries and showing control
/// characters as spaces so that the excerpt stays on one line.
fn excerpt(input: &[u8], offset: usize) -> String {
    let text = String::from_utf8_lossy(input);
    // Byte offsets in the lossy text differ from the input only after invalid UTF-8, where an
    // approximate excerpt is good enough; clamp to a character boundary in either case.
    let mut position = offset.min(text.len());
    while !text.is_char_boundary(position) {
        position -= 1;
    }
    let before: Vec<char> = text[..position]
        .chars()
        .rev()
        .take(EXCERPT_RADIUS)
        .collect();
    let after = text[position..].chars().take(EXCERPT_RADIUS);
    before
        .into_iter()
        .rev()
        .chain(after)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Parses JSON bytes into a model, reporting the JSON path, line, column and an excerpt on
/// failure. Trailing text after the document is an error.
///
/// ```
/// use epic_fhir_model::{self as model, Patient};
///
/// let error = model::from_slice::<Patient>(br#"{"resourceType":"Patient","birthDate":"1987-13-01"}"#)
///     .unwrap_err();
/// assert_eq!(error.path(), "birthDate");
/// assert!(error.message().contains("month must be 01 to 12"));
/// ```
pub fn from_slice<T: FromJson>(bytes: &[u8]) -> Result<T, ModelError> {
    read_document(Parser::new(bytes), bytes)
}

fn read_document<T: FromJson>(mut p: Parser<'_>, bytes: &[u8]) -> Result<T, ModelError> {
    T::from_json(&mut p)
        .and_then(|value| p.end().map(|()| value))
        .map_err(|error| ModelError::from_parse(&error, bytes))
}

/// Parses a JSON string into a model; see [`from_slice`].
pub fn from_str<T: FromJson>(text: &str) -> Result<T, ModelError> {
    read_document(Parser::from_text(text), text.as_bytes())
}

/// Converts a `serde_json::Value` into a model (through its JSON text; decimals read from a
/// `Value` have already lost their trailing zeros).
pub fn from_value<T: FromJson>(value: &serde_json::Value) -> Result<T, ModelError> {
    let text = value.to_string();
    from_slice(text.as_bytes()).map_err(|mut error| {
        // Positions in text the caller never saw would only confuse.
        error.line = 0;
        error.column = 0;
        error.excerpt = None;
        error
    })
}

/// Writes a model as compact FHIR JSON.
pub fn to_vec<T: ToJson + ?Sized>(value: &T) -> Vec<u8> {
    let mut w = Writer::with_capacity(512);
    value.write_json(&mut w);
    w.into_inner()
}

/// Writes a model as a compact FHIR JSON string.
pub fn to_string<T: ToJson + ?Sized>(value: &T) -> String {
    // The writer writes only UTF-8: strings come from `str`s and raw JSON from checked text.
    String::from_utf8(to_vec(value)).unwrap_or_default()
}

/// Writes a model as a `serde_json::Value` (decimals become `f64`s there).
pub fn to_value<T: ToJson + ?Sized>(value: &T) -> serde_json::Value {
    serde_json::from_slice(&to_vec(value)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_cut_around_the_failure_on_one_line() {
        let input = b"{\n  \"a\": 1,\n  \"b\": tru\n}";
        let text = excerpt(input, 20);
        assert!(text.contains("\"b\": tru"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn excerpt_handles_multibyte_text_and_out_of_range_positions() {
        let input = "é".repeat(100);
        let text = excerpt(input.as_bytes(), 51);
        assert!(text.chars().all(|c| c == 'é'));
        assert!(!excerpt(input.as_bytes(), 10_000).is_empty());
    }
}
