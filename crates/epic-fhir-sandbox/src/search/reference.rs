//! Reading FHIR reference strings, on the resource side and in query values alike.
//!
//! `Patient/123`, `Patient/123/_history/2` and `https://any-host/any/base/Patient/123` all
//! name the resource type `Patient` and id `123`; the base URL is deliberately ignored, so a
//! query by relative reference finds absolute references and the other way round. A
//! reference without a recognisable `Type/id` tail (a bare id in a query, a `urn:uuid:`)
//! keeps its whole text as the id and has no type.

use crate::store::{is_valid_id, is_valid_type_name};

/// Splits a reference into its resource type (when present) and id. Returns `None` for
/// empty references and for local `#contained` references, which never name a stored
/// resource.
pub(crate) fn split_reference(text: &str) -> Option<(Option<&str>, &str)> {
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let without_history = text
        .find("/_history/")
        .map_or(text, |position| &text[..position]);
    let mut segments = without_history.rsplit('/');
    let id = segments.next().unwrap_or(without_history);
    match segments.next() {
        Some(resource_type) if is_valid_type_name(resource_type) && is_valid_id(id) => {
            Some((Some(resource_type), id))
        }
        _ => Some((None, text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_absolute_and_versioned_references() {
        assert_eq!(
            split_reference("Patient/123"),
            Some((Some("Patient"), "123"))
        );
        assert_eq!(
            split_reference(
                "https://fhir.example.org/api/FHIR/R4/Patient/eq081-VQEgP8drUUqCWzHfw3"
            ),
            Some((Some("Patient"), "eq081-VQEgP8drUUqCWzHfw3"))
        );
        assert_eq!(
            split_reference("Patient/123/_history/4"),
            Some((Some("Patient"), "123"))
        );
        assert_eq!(
            split_reference("http://h/Observation/a.b-c/_history/1"),
            Some((Some("Observation"), "a.b-c"))
        );
    }

    #[test]
    fn untyped_and_local_references() {
        assert_eq!(split_reference("123"), Some((None, "123")));
        assert_eq!(
            split_reference("urn:uuid:5f1c"),
            Some((None, "urn:uuid:5f1c"))
        );
        assert_eq!(split_reference("patient/123"), Some((None, "patient/123")));
        assert_eq!(split_reference("#coverage"), None);
        assert_eq!(split_reference(""), None);
    }
}
