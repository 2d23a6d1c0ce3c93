//! What to export: the level (Group, Patient, system) and the kick-off parameters.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use url::Url;

use super::job::ExportJob;
use crate::FhirClient;
use crate::error::{Error, Result};

/// The NDJSON media type asked for with `_outputFormat` (STU2 requires servers to accept it).
pub(crate) const NDJSON: &str = "application/fhir+ndjson";

/// Which population an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "id")]
#[non_exhaustive]
pub enum ExportLevel {
    /// `[base]/Group/[id]/$export`: the compartments of the Group's members. The only level
    /// Epic serves.
    Group(String),
    /// `[base]/Patient/$export`: every patient's compartment.
    Patient,
    /// `[base]/$export`: every resource the client may read.
    System,
}

/// The kick-off request of an export: level, `_type`, `_since` and `_typeFilter`.
///
/// `_outputFormat=application/fhir+ndjson` is always sent; the request carries
/// `Accept: application/fhir+json` and `Prefer: respond-async`.
///
/// ```
/// use epic_fhir::bulk::ExportRequest;
///
/// let request = ExportRequest::group("e3iabhmS8rsueyz7vaimuiaSmfGvi.QwjVXJANlPOgR83")
///     .types(["Patient", "Observation"])
///     .type_filter("Observation?category=laboratory");
/// assert_eq!(request.resource_types(), ["Patient", "Observation"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    level: ExportLevel,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    since: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    type_filters: Vec<String>,
}

impl ExportRequest {
    /// Exports the members of Group `id` (`Group/[id]/$export`).
    pub fn group(id: impl Into<String>) -> Self {
        Self::at(ExportLevel::Group(id.into()))
    }

    /// Exports every patient (`Patient/$export`).
    pub fn patients() -> Self {
        Self::at(ExportLevel::Patient)
    }

    /// Exports everything (`$export`).
    pub fn system() -> Self {
        Self::at(ExportLevel::System)
    }

    /// An export at `level` with no other parameters.
    pub fn at(level: ExportLevel) -> Self {
        ExportRequest {
            level,
            types: Vec::new(),
            since: None,
            type_filters: Vec::new(),
        }
    }

    /// Adds resource types to `_type` (sent comma-joined, in order, without repeats). Default:
    /// none, meaning every type the server exports at this level.
    #[must_use]
    pub fn types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for resource_type in types {
            let resource_type = resource_type.into();
            if !self.types.contains(&resource_type) {
                self.types.push(resource_type);
            }
        }
        self
    }

    /// Exports only resources changed at or after `since` (`_since`, sent as a UTC instant).
    /// Default: none. Epic does not support `_since`.
    #[must_use]
    pub fn since(mut self, since: OffsetDateTime) -> Self {
        self.since = Some(since);
        self
    }

    /// Adds a `_typeFilter` query such as `Observation?category=laboratory` (sent as one
    /// parameter each; a resource of that type is exported when it matches any of them).
    /// Default: none.
    #[must_use]
    pub fn type_filter(mut self, query: impl Into<String>) -> Self {
        self.type_filters.push(query.into());
        self
    }

    /// The export's level.
    pub fn level(&self) -> &ExportLevel {
        &self.level
    }

    /// The `_type` list.
    pub fn resource_types(&self) -> &[String] {
        &self.types
    }

    /// The `_since` instant.
    pub fn since_instant(&self) -> Option<OffsetDateTime> {
        self.since
    }

    /// The `_typeFilter` queries.
    pub fn type_filters(&self) -> &[String] {
        &self.type_filters
    }

    /// Sends the kick-off request and returns the running job.
    ///
    /// Connection failures before the request was sent, 429 and 5xx answers are retried with
    /// the client's retry policy (a 429 asking for a longer wait than the policy's
    /// `max_retry_after`, like Epic's one export per Group per day, fails at once). A request
    /// that may have reached the server without an answer is not repeated, since that could
    /// start a second job.
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for an invalid id, type, `_typeFilter`
    /// or instant (naming it); [`ErrorKind::Status`](crate::ErrorKind::Status) with the
    /// server's OperationOutcome when the kick-off is refused;
    /// [`ErrorKind::InsecureUrl`](crate::ErrorKind::InsecureUrl) when the status URL is not on
    /// the FHIR server's origin; [`ErrorKind::Decode`](crate::ErrorKind::Decode) when the
    /// answer is not `202 Accepted` with a `Content-Location`.
    pub async fn kick_off(&self, client: &FhirClient) -> Result<ExportJob> {
        let url = self.kick_off_url(client.base_url())?;
        ExportJob::kick_off(client, url).await
    }

    /// The kick-off URL under `base`, after checking every parameter.
    pub(crate) fn kick_off_url(&self, base: &Url) -> Result<Url> {
        let path = match &self.level {
            ExportLevel::Group(id) => {
                check_id(id)?;
                format!("Group/{id}/$export")
            }
            ExportLevel::Patient => "Patient/$export".to_owned(),
            ExportLevel::System => "$export".to_owned(),
        };
        let text = format!("{}/{path}", base.as_str().trim_end_matches('/'));
        let mut url = Url::parse(&text).map_err(|e| {
            Error::config(format!("cannot build kick-off URL `{text}`")).with_source(e)
        })?;
        for resource_type in &self.types {
            if !is_resource_type(resource_type) {
                return Err(Error::config(format!(
                    "_type `{resource_type}` is not a FHIR resource type name (a letter A-Z then letters, e.g. Observation)"
                )));
            }
        }
        for filter in &self.type_filters {
            check_type_filter(filter)?;
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("_outputFormat", NDJSON);
            if !self.types.is_empty() {
                query.append_pair("_type", &self.types.join(","));
            }
            if let Some(since) = self.since {
                let text = since
                    .to_offset(UtcOffset::UTC)
                    .format(&Rfc3339)
                    .map_err(|e| {
                        Error::config(format!("_since {since} cannot be written as an instant"))
                            .with_source(e)
                    })?;
                query.append_pair("_since", &text);
            }
            for filter in &self.type_filters {
                query.append_pair("_typeFilter", filter);
            }
        }
        Ok(url)
    }
}

/// `_since` in saved requests, as an RFC 3339 instant.
mod instant {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(at) => {
                let text = at.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
                serializer.serialize_some(&text)
            }
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|t| {
            OffsetDateTime::parse(&t, &Rfc3339)
                .map_err(|e| D::Error::custom(format!("`{t}` is not an RFC 3339 instant: {e}")))
        })
        .transpose()
    }
}

/// Whether `name` looks like a FHIR resource type: an upper-case ASCII letter, then letters.
pub(crate) fn is_resource_type(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && name.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Checks a Group id before it goes into the URL path, so `../` or `?` cannot change the
/// endpoint called.
fn check_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && id != "."
        && id != "..";
    if valid {
        Ok(())
    } else {
        Err(Error::config(format!(
            "Group id `{id}` is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"
        )))
    }
}

/// Checks that a `_typeFilter` is `Type?query`.
fn check_type_filter(filter: &str) -> Result<()> {
    let Some((resource_type, query)) = filter.split_once('?') else {
        return Err(Error::config(format!(
            "_typeFilter `{filter}` has no `?`: write it as Type?search, e.g. Observation?category=laboratory"
        )));
    };
    if !is_resource_type(resource_type) {
        return Err(Error::config(format!(
            "_typeFilter `{filter}` starts with `{resource_type}`, which is not a FHIR resource type name"
        )));
    }
    if query.is_empty() {
        return Err(Error::config(format!(
            "_typeFilter `{filter}` has an empty search after `?`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn base() -> Url {
        Url::parse("https://fhir.example.org/api/FHIR/R4").expect("url")
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn levels_have_their_paths() {
        let group = ExportRequest::group("abc.1")
            .kick_off_url(&base())
            .expect("url");
        assert_eq!(group.path(), "/api/FHIR/R4/Group/abc.1/$export");
        let patients = ExportRequest::patients()
            .kick_off_url(&base())
            .expect("url");
        assert_eq!(patients.path(), "/api/FHIR/R4/Patient/$export");
        let system = ExportRequest::system().kick_off_url(&base()).expect("url");
        assert_eq!(system.path(), "/api/FHIR/R4/$export");
        assert_eq!(
            query(&system),
            [("_outputFormat".to_owned(), NDJSON.to_owned())]
        );
    }

    #[test]
    fn parameters_are_encoded() {
        let since = OffsetDateTime::from_unix_timestamp(1_700_000_000)
            .expect("instant")
            .to_offset(UtcOffset::from_hms(2, 0, 0).expect("offset"));
        let url = ExportRequest::group("g")
            .types(["Patient", "Observation", "Patient"])
            .since(since)
            .type_filter("Observation?category=laboratory&date=ge2020")
            .type_filter("Patient?active=true")
            .kick_off_url(&base())
            .expect("url");
        assert_eq!(
            query(&url),
            [
                ("_outputFormat", NDJSON),
                ("_type", "Patient,Observation"),
                ("_since", "2023-11-14T22:13:20Z"),
                ("_typeFilter", "Observation?category=laboratory&date=ge2020"),
                ("_typeFilter", "Patient?active=true"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // The filter's own `&` and `=` must not split it into separate parameters.
        assert!(
            url.as_str()
                .contains("_typeFilter=Observation%3Fcategory%3Dlaboratory%26date%3Dge2020")
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases = [
            (ExportRequest::group("../Patient"), "Group id"),
            (ExportRequest::group(""), "Group id"),
            (
                ExportRequest::system().types(["observation"]),
                "_type `observation`",
            ),
            (ExportRequest::system().types(["Obs,Patient"]), "_type"),
            (
                ExportRequest::system().type_filter("category=laboratory"),
                "has no `?`",
            ),
            (ExportRequest::system().type_filter("lab?x=1"), "`lab`"),
            (
                ExportRequest::system().type_filter("Observation?"),
                "empty search",
            ),
        ];
        for (request, expected) in cases {
            let err = request.kick_off_url(&base()).expect_err(expected);
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.to_string().contains(expected), "{err} / {expected}");
        }
    }

    #[test]
    fn requests_round_trip_through_json() {
        let request = ExportRequest::group("g1")
            .types(["Patient"])
            .since(OffsetDateTime::from_unix_timestamp(1_600_000_000).expect("instant"))
            .type_filter("Patient?active=true");
        let json = serde_json::to_string(&request).expect("serialize");
        let back: ExportRequest = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, request);
        let system: ExportRequest =
            serde_json::from_str(&serde_json::to_string(&ExportRequest::system()).expect("json"))
                .expect("system");
        assert_eq!(system, ExportRequest::system());
    }
}
