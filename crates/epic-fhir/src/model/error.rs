//! The error for JSON that does not fit the models, and the parsing helpers that produce it.

use std::fmt;

use serde::de::DeserializeOwned;

/// How many characters of input to show on each side of the failure point.
const EXCERPT_RADIUS: usize = 32;

/// JSON that could not be read into a model (or converted between models).
///
/// It names the JSON path of the member that failed (such as `entry[3].resource.birthDate`)
/// and, for input read from text, the line, column and a short excerpt around the failure.
/// The cause, from `serde_json`, is the error's `source()`.
///
/// The excerpt is a few dozen characters of the input, so it may contain patient data: log it
/// only where such data may go.
#[derive(Debug, thiserror::Error)]
pub struct ModelError {
    path: String,
    line: usize,
    column: usize,
    excerpt: Option<String>,
    #[source]
    source: serde_json::Error,
}

impl fmt::Display for ModelError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "invalid FHIR JSON at `{}`", self.path)?;
        if self.line > 0 {
            write!(formatter, " (line {}, column {})", self.line, self.column)?;
        }
        if let Some(excerpt) = &self.excerpt {
            write!(formatter, " near `{excerpt}`")?;
        }
        Ok(())
    }
}

impl ModelError {
    /// The JSON path of the member that failed, such as `entry[3].resource.birthDate`, or
    /// `.` for the document itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The 1-based line of the failure in the input text, when the input was text.
    pub fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }

    /// The 1-based column of the failure in the input text, when the input was text.
    pub fn column(&self) -> Option<usize> {
        (self.line > 0).then_some(self.column)
    }

    /// A short piece of the input around the failure, when the input was text.
    pub fn excerpt(&self) -> Option<&str> {
        self.excerpt.as_deref()
    }

    /// Builds the error from a path-tracked `serde_json` failure, with an excerpt of `input`.
    fn from_tracked(
        error: serde_path_to_error::Error<serde_json::Error>,
        input: Option<&[u8]>,
    ) -> Self {
        let path = error.path().to_string();
        let source = error.into_inner();
        let (line, column) = (source.line(), source.column());
        let excerpt = input.and_then(|bytes| excerpt(bytes, line, column));
        Self {
            path,
            line,
            column,
            excerpt,
            source,
        }
    }

    /// An error about the member at `path` of an already parsed value.
    pub(crate) fn at_path(path: &str, message: impl fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            line: 0,
            column: 0,
            excerpt: None,
            source: <serde_json::Error as serde::de::Error>::custom(message),
        }
    }
}

/// Cuts the input around (line, column), staying on character boundaries and showing
/// control characters as spaces so that the excerpt stays on one line.
fn excerpt(input: &[u8], line: usize, column: usize) -> Option<String> {
    if line == 0 {
        return None;
    }
    let mut offset = 0;
    for _ in 1..line {
        let newline = input
            .get(offset..)?
            .iter()
            .position(|&byte| byte == b'\n')?;
        offset += newline + 1;
    }
    // serde_json reports the column of the last byte it read (0 when it failed on a newline).
    let position = (offset + column.saturating_sub(1)).min(input.len());
    let text = String::from_utf8_lossy(input);
    // Byte offsets in the lossy text differ from the input only after invalid UTF-8, where an
    // approximate excerpt is good enough; clamp to a character boundary in either case.
    let mut position = position.min(text.len());
    while !text.is_char_boundary(position) {
        position -= 1;
    }
    let before: String = text[..position]
        .chars()
        .rev()
        .take(EXCERPT_RADIUS)
        .collect();
    let before: String = before.chars().rev().collect();
    let after: String = text[position..].chars().take(EXCERPT_RADIUS).collect();
    let excerpt: String = before
        .chars()
        .chain(after.chars())
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .collect();
    Some(excerpt)
}

/// Parses JSON bytes into `T`, reporting the JSON path, line, column and an excerpt on failure.
///
/// ```
/// use epic_fhir::model::{self, Patient};
///
/// let error = model::from_slice::<Patient>(br#"{"resourceType":"Patient","birthDate":"1987-13-01"}"#)
///     .unwrap_err();
/// assert_eq!(error.path(), "birthDate");
/// ```
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ModelError> {
    // Tracking the path costs as much as the parse itself, so it is done only to explain a
    // failure: parsing is deterministic, and the second pass fails at the same place.
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => from_slice_tracked(bytes),
    }
}

/// Parses JSON bytes into `T` while tracking the JSON path, for the error.
fn from_slice_tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ModelError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| ModelError::from_tracked(error, Some(bytes)))?;
    // Trailing text after the document is an error too, reported at the document level.
    deserializer.end().map_err(|source| ModelError {
        path: ".".to_owned(),
        line: source.line(),
        column: source.column(),
        excerpt: excerpt(bytes, source.line(), source.column()),
        source,
    })?;
    Ok(value)
}

/// Parses a JSON string into `T`; see [`from_slice`].
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, ModelError> {
    from_slice(text.as_bytes())
}

/// Converts a parsed JSON value into `T`, reporting the JSON path on failure.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ModelError> {
    // As in `from_slice`, the path is tracked only on a second pass after a failure; the
    // first pass borrows the value so that it is still there for the second.
    match T::deserialize(&value) {
        Ok(typed) => Ok(typed),
        Err(_) => serde_path_to_error::deserialize(&value)
            .map_err(|error| ModelError::from_tracked(error, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_cut_around_the_failure_on_one_line() {
        let input = b"{\n  \"a\": 1,\n  \"b\": tru\n}";
        let error = serde_json::from_slice::<serde_json::Value>(input).unwrap_err();
        let text = excerpt(input, error.line(), error.column()).unwrap();
        assert!(text.contains("\"b\": tru"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn excerpt_handles_multibyte_text_and_out_of_range_positions() {
        let input = "{\"name\":\"Véliz Véliz Véliz Véliz Véliz Véliz Véliz Véliz\",}".as_bytes();
        for column in 0..input.len() + 3 {
            assert!(excerpt(input, 1, column).is_some());
        }
        assert!(excerpt(input, 5, 1).is_none());
        assert!(excerpt(input, 0, 1).is_none());
    }

    #[test]
    fn trailing_text_is_an_error() {
        let error = from_slice::<serde_json::Value>(b"{} {}").unwrap_err();
        assert_eq!(error.path(), ".");
        assert_eq!(error.line(), Some(1));
    }

    #[test]
    fn from_value_reports_the_path_without_position() {
        let value = serde_json::json!({"a": [1, "x"]});
        let error = from_value::<std::collections::BTreeMap<String, Vec<u32>>>(value).unwrap_err();
        assert_eq!(error.path(), "a[1]");
        assert_eq!(error.line(), None);
        assert_eq!(error.excerpt(), None);
        assert_eq!(error.to_string(), "invalid FHIR JSON at `a[1]`");
    }
}
