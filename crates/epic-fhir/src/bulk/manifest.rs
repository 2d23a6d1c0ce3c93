//! The completion manifest of an export.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, ErrorKind, Result};

/// The manifest a status URL returns once the export is complete (Bulk Data STU2).
///
/// Parsing is lenient where the IG leaves room and servers differ: members this type does not
/// name (`extension`, `outputOrganizedBy`, vendor additions) are kept in [`Manifest::extra`];
/// a missing `output` or `error` is an empty list; a missing `requiresAccessToken` is taken as
/// `true`, since the token is sent only to the FHIR server's origin anyway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// `transactionTime`: the server's time when the export snapshot was taken, as sent.
    /// Use it as the next export's `_since`.
    #[serde(rename = "transactionTime")]
    pub transaction_time: String,
    /// `request`: the kick-off URL as the server understood it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// `requiresAccessToken`: whether files need the bearer token.
    #[serde(rename = "requiresAccessToken", default = "default_true")]
    pub requires_access_token: bool,
    /// `output`: the NDJSON files of resources.
    #[serde(default)]
    pub output: Vec<ManifestEntry>,
    /// `error`: NDJSON files of OperationOutcomes about problems with the export.
    #[serde(default)]
    pub error: Vec<ManifestEntry>,
    /// `deleted` (STU2, with `_since`): NDJSON files of Bundles listing deleted resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<ManifestEntry>,
    /// Every other member, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_true() -> bool {
    true
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ManifestEntry {
    /// `type`: the resource type of every line.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// `url`: where to download the file.
    pub url: String,
    /// `count`: the number of resources in the file, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Every other member (`extension`...), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A few dozen characters of `body` around (line, column), for the error.
fn excerpt_at(body: &[u8], line: usize, column: usize) -> Option<String> {
    if line == 0 {
        return None;
    }
    let start_of_line: usize = body
        .split(|&b| b == b'\n')
        .take(line - 1)
        .map(|l| l.len() + 1)
        .sum();
    let at = (start_of_line + column.saturating_sub(1)).min(body.len());
    let from = at.saturating_sub(32);
    let to = (at + 32).min(body.len());
    Some(
        String::from_utf8_lossy(&body[from..to])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}

impl Manifest {
    /// Parses a manifest.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] naming the JSON path that does not fit (e.g.
    /// `output[2].url`), with an excerpt of the body.
    pub fn from_json(body: &[u8]) -> Result<Manifest> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let parsed = match serde_path_to_error::deserialize::<_, Manifest>(&mut deserializer) {
            Ok(manifest) => deserializer
                .end()
                .map(|()| manifest)
                .map_err(|e| (".".to_owned(), e)),
            Err(e) => Err((e.path().to_string(), e.into_inner())),
        };
        parsed.map_err(|(path, inner)| {
            let mut error = Error::new(
                ErrorKind::Decode,
                format!("the export manifest is not valid ({inner})"),
            )
            .with_json_path(path);
            if let Some(excerpt) = excerpt_at(body, inner.line(), inner.column()) {
                error = error.with_body_excerpt(excerpt.as_bytes());
            }
            error.with_source(inner)
        })
    }

    /// `transactionTime` as an instant, when it is a valid RFC 3339 date-time.
    pub fn transaction_instant(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.transaction_time, &Rfc3339).ok()
    }

    /// The sum of every output entry's `count`, when all of them give one.
    pub fn total_resources(&self) -> Option<u64> {
        self.output.iter().map(|entry| entry.count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_manifest() {
        let body = json!({
            "transactionTime": "2024-05-01T10:00:00.123Z",
            "request": "https://fhir.example.org/R4/Group/g/$export?_type=Patient",
            "requiresAccessToken": true,
            "output": [
                {"type": "Patient", "url": "https://fhir.example.org/files/1", "count": 2},
                {"type": "Observation", "url": "https://fhir.example.org/files/2", "count": 3000}
            ],
            "error": [
                {"type": "OperationOutcome", "url": "https://fhir.example.org/files/3"}
            ]
        });
        let manifest = Manifest::from_json(body.to_string().as_bytes()).expect("manifest");
        assert!(manifest.requires_access_token);
        assert_eq!(manifest.output.len(), 2);
        assert_eq!(manifest.output[1].count, Some(3000));
        assert_eq!(manifest.error[0].count, None);
        assert_eq!(manifest.total_resources(), Some(3002));
        assert_eq!(
            manifest
                .transaction_instant()
                .map(OffsetDateTime::unix_timestamp),
            Some(1_714_557_600)
        );
    }

    #[test]
    fn extensions_and_unknown_members_are_kept() {
        let body = json!({
            "transactionTime": "2024-05-01T10:00:00Z",
            "requiresAccessToken": false,
            "extension": {"https://example.org/ext": 1},
            "outputOrganizedBy": "Patient",
            "output": [{
                "type": "Patient",
                "url": "https://bucket.example.net/p.ndjson",
                "extension": {"https://example.org/part": 7}
            }],
            "error": []
        });
        let manifest = Manifest::from_json(body.to_string().as_bytes()).expect("manifest");
        assert!(!manifest.requires_access_token);
        assert_eq!(manifest.extra["outputOrganizedBy"], "Patient");
        assert_eq!(manifest.extra["extension"]["https://example.org/ext"], 1);
        assert_eq!(
            manifest.output[0].extra["extension"]["https://example.org/part"],
            7
        );
        assert_eq!(manifest.total_resources(), None);
        // Nothing is lost on the way back out (the state file stores the manifest).
        let again: Value = serde_json::to_value(&manifest).expect("serialize");
        assert_eq!(again, body);
    }

    #[test]
    fn minimal_and_empty_manifests() {
        let manifest =
            Manifest::from_json(br#"{"transactionTime":"2024-05-01T10:00:00Z","output":[]}"#)
                .expect("manifest");
        assert!(manifest.output.is_empty() && manifest.error.is_empty());
        assert!(manifest.requires_access_token, "absent means true");
        assert_eq!(manifest.total_resources(), Some(0));
    }

    #[test]
    fn errors_name_the_path() {
        let err = Manifest::from_json(
            br#"{"transactionTime":"t","output":[{"type":"Patient","url":"u"},{"type":"Patient","url":7}]}"#,
        )
        .expect_err("bad url");
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.json_path(), Some("output[1].url"));
        let err = Manifest::from_json(br#"{"output":[]}"#).expect_err("no transactionTime");
        assert!(err.to_string().contains("transactionTime"), "{err}");
        let err = Manifest::from_json(b"<html>").expect_err("not json");
        assert_eq!(err.kind(), ErrorKind::Decode);
    }
}
