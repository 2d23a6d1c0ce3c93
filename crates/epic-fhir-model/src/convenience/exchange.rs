//! Conveniences on the resources of the exchange itself: OperationOutcome (with Epic's codes),
//! Bundle (links and search modes) and CapabilityStatement (SMART endpoints, capabilities).

use super::datatypes::non_empty;
use crate::{
    Bundle, BundleEntry, CapabilityStatement, CapabilityStatementRest,
    CapabilityStatementRestResource, CapabilityStatementRestResourceSearchParam,
    CapabilityStatementRestSecurity, CodeableConcept, Extension, IssueSeverity, OperationOutcome,
    OperationOutcomeIssue, Resource, RestfulCapabilityMode, SearchEntryMode,
};

/// The coding system of Epic's own error and warning codes in `OperationOutcome.issue.details`
/// (4101 "Resource request returns no results.", 4122 "parameter ignored"...).
pub const EPIC_OUTCOME_CODE_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369";

/// The URL of the SMART extension that lists OAuth endpoints in `rest.security`.
pub const SMART_OAUTH_URIS_EXTENSION: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// The longest diagnostics text a summary repeats, in characters.
const SUMMARY_DIAGNOSTICS_LIMIT: usize = 200;

impl OperationOutcomeIssue {
    /// Whether the issue is `fatal` or `error`.
    pub fn is_error(&self) -> bool {
        matches!(
            self.severity,
            Some(IssueSeverity::Fatal | IssueSeverity::Error)
        )
    }

    /// Epic's code for the issue (in [`EPIC_OUTCOME_CODE_SYSTEM`]), such as `4101`.
    pub fn epic_code(&self) -> Option<&str> {
        self.details
            .as_ref()
            .and_then(|details| details.code_in(EPIC_OUTCOME_CODE_SYSTEM))
    }

    /// What went wrong, for people: the details' text or display, else the diagnostics.
    pub fn message(&self) -> Option<&str> {
        self.details
            .as_ref()
            .and_then(CodeableConcept::text_or_display)
            .or_else(|| non_empty(self.diagnostics.as_deref()))
    }

    /// The issue on one line, such as
    /// `warning (processing): Resource request returns no results. [Epic 4101]`. Long
    /// diagnostics are shortened.
    pub fn summary(&self) -> String {
        let severity = self.severity.as_ref().map_or("issue", |s| s.code());
        let mut text = match &self.code {
            Some(code) => format!("{severity} ({})", code.code()),
            None => severity.to_owned(),
        };
        let details = self
            .details
            .as_ref()
            .and_then(CodeableConcept::text_or_display);
        let diagnostics = non_empty(self.diagnostics.as_deref()).map(|diagnostics| {
            let mut shortened: String = diagnostics
                .chars()
                .take(SUMMARY_DIAGNOSTICS_LIMIT)
                .collect();
            if shortened.len() < diagnostics.len() {
                shortened.push('…');
            }
            shortened
        });
        if let Some(message) = details.or(diagnostics.as_deref()) {
            text.push_str(": ");
            text.push_str(message);
        }
        if let Some(code) = self.epic_code() {
            text.push_str(&format!(" [Epic {code}]"));
        }
        if let (Some(_), Some(diagnostics)) = (details, &diagnostics) {
            text.push_str(&format!(" ({diagnostics})"));
        }
        one_line(&text)
    }
}

/// Replaces runs of whitespace, line breaks included, by single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl OperationOutcome {
    /// Whether any issue is `fatal` or `error`.
    pub fn is_error(&self) -> bool {
        self.issue.iter().any(OperationOutcomeIssue::is_error)
    }

    /// Whether any issue carries the Epic code `code`, such as `"4101"`.
    pub fn has_epic_code(&self, code: &str) -> bool {
        self.issue
            .iter()
            .any(|issue| issue.epic_code() == Some(code))
    }

    /// The issues with their Epic codes, for those that have one.
    pub fn epic_issues(&self) -> impl Iterator<Item = (&OperationOutcomeIssue, &str)> {
        self.issue
            .iter()
            .filter_map(|issue| issue.epic_code().map(|code| (issue, code)))
    }

    /// All issues on one line, errors first, for error messages.
    pub fn summary(&self) -> String {
        if self.issue.is_empty() {
            return "OperationOutcome without issues".to_owned();
        }
        let errors = self.issue.iter().filter(|issue| issue.is_error());
        let others = self.issue.iter().filter(|issue| !issue.is_error());
        errors
            .chain(others)
            .map(OperationOutcomeIssue::summary)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl BundleEntry {
    /// The entry's search mode, when it has one.
    pub fn search_mode(&self) -> Option<&SearchEntryMode> {
        self.search.as_ref().and_then(|search| search.mode.as_ref())
    }
}

impl Bundle {
    /// The URL of the link with `relation`.
    pub fn link(&self, relation: &str) -> Option<&str> {
        self.link
            .iter()
            .find(|link| link.relation.as_deref() == Some(relation))
            .and_then(|link| link.url.as_deref())
    }

    /// The `next` page's URL, to be followed verbatim.
    pub fn next_link(&self) -> Option<&str> {
        self.link("next")
    }

    /// The URL of this page.
    pub fn self_link(&self) -> Option<&str> {
        self.link("self")
    }

    /// The entries whose search mode is `mode`.
    ///
    /// Entries without a search mode are not returned for any mode; servers that leave it out
    /// of search results mean `match`, which [`Bundle::matches`] accounts for.
    pub fn entries_by_mode(&self, mode: SearchEntryMode) -> impl Iterator<Item = &BundleEntry> {
        self.entry
            .iter()
            .filter(move |entry| entry.search_mode() == Some(&mode))
    }

    /// The resources that matched the search: entries with mode `match`, or with no mode at
    /// all (an unknown mode is not a match).
    pub fn matches(&self) -> impl Iterator<Item = &Resource> {
        self.entry
            .iter()
            .filter(|entry| matches!(entry.search_mode(), None | Some(SearchEntryMode::Match)))
            .filter_map(|entry| entry.resource.as_ref())
    }

    /// The resources of all entries, in order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.entry
            .iter()
            .filter_map(|entry| entry.resource.as_ref())
    }
}

/// The OAuth endpoints a server lists in the SMART `oauth-uris` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OAuthUris<'a> {
    /// The token endpoint.
    pub token: Option<&'a str>,
    /// The authorization endpoint.
    pub authorize: Option<&'a str>,
    /// The dynamic client registration endpoint.
    pub register: Option<&'a str>,
    /// The endpoint where users manage their authorizations.
    pub manage: Option<&'a str>,
    /// The token introspection endpoint.
    pub introspect: Option<&'a str>,
    /// The token revocation endpoint.
    pub revoke: Option<&'a str>,
}

impl CapabilityStatementRestSecurity {
    /// The OAuth endpoints of the SMART `oauth-uris` extension, when present.
    pub fn oauth_uris(&self) -> Option<OAuthUris<'_>> {
        let extension = Extension::find(&self.extension, SMART_OAUTH_URIS_EXTENSION)?;
        let endpoint = |name: &str| {
            extension
                .nested(name)
                .and_then(Extension::value_str)
                .and_then(|url| non_empty(Some(url)))
        };
        Some(OAuthUris {
            token: endpoint("token"),
            authorize: endpoint("authorize"),
            register: endpoint("register"),
            manage: endpoint("manage"),
            introspect: endpoint("introspect"),
            revoke: endpoint("revoke"),
        })
    }
}

impl CapabilityStatementRestResource {
    /// Whether the resource type supports the interaction `code`, such as `search-type`.
    pub fn supports_interaction(&self, code: &str) -> bool {
        self.interaction
            .iter()
            .any(|interaction| interaction.code.as_ref().map(|c| c.code()) == Some(code))
    }

    /// The search parameter named `name`.
    pub fn search_param(&self, name: &str) -> Option<&CapabilityStatementRestResourceSearchParam> {
        self.search_param
            .iter()
            .find(|parameter| parameter.name.as_deref() == Some(name))
    }
}

impl CapabilityStatementRest {
    /// The entry for `resource_type`.
    pub fn resource(&self, resource_type: &str) -> Option<&CapabilityStatementRestResource> {
        self.resource
            .iter()
            .find(|resource| resource.r#type.as_ref().map(|t| t.code()) == Some(resource_type))
    }
}

impl CapabilityStatement {
    /// The `rest` entry in server mode (else the first one).
    pub fn server_rest(&self) -> Option<&CapabilityStatementRest> {
        self.rest
            .iter()
            .find(|rest| rest.mode == Some(RestfulCapabilityMode::Server))
            .or_else(|| self.rest.first())
    }

    /// The SMART OAuth endpoints of the server's security section.
    pub fn oauth_uris(&self) -> Option<OAuthUris<'_>> {
        self.server_rest()?.security.as_ref()?.oauth_uris()
    }

    /// Whether the server lists a JSON format.
    pub fn supports_json(&self) -> bool {
        self.format.iter().any(|format| {
            matches!(
                format.as_str(),
                "json" | "application/json" | "application/fhir+json"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{IssueType, Observation, from_str, from_value, to_value};

    fn epic_outcome() -> OperationOutcome {
        from_value(&json!({
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "processing",
                    "details": {
                        "coding": [{"system": EPIC_OUTCOME_CODE_SYSTEM, "code": "4101", "display": "Resource request returns no results."}],
                        "text": "Resource request returns no results."
                    }
                },
                {
                    "severity": "error",
                    "code": "required",
                    "details": {"coding": [{"system": EPIC_OUTCOME_CODE_SYSTEM, "code": "4111", "display": "Required parameter missing"}]},
                    "diagnostics": "Either the category or\ncode parameter is required.",
                    "location": ["/f:category"],
                    "expression": ["category", null],
                    "_expression": [null, {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]
                }
            ]
        }))
        .unwrap()
    }

    #[test]
    fn epic_codes_and_errors() {
        let outcome = epic_outcome();
        assert!(outcome.is_error());
        assert!(outcome.has_epic_code("4101"));
        assert!(!outcome.has_epic_code("4122"));
        let codes: Vec<_> = outcome.epic_issues().map(|(_, code)| code).collect();
        assert_eq!(codes, ["4101", "4111"]);
        assert_eq!(outcome.issue[1].expression, vec!["category".to_owned()]);
        assert_eq!(
            outcome.issue[1].expression_ext.as_ref().unwrap().absent,
            vec![1]
        );
        let warning_only = OperationOutcome {
            issue: vec![outcome.issue[0].clone()],
            ..OperationOutcome::default()
        };
        assert!(!warning_only.is_error());
    }

    #[test]
    fn summary_is_one_line_with_errors_first() {
        let summary = epic_outcome().summary();
        assert_eq!(
            summary,
            "error (required): Required parameter missing [Epic 4111] (Either the category or code parameter is required.); \
             warning (processing): Resource request returns no results. [Epic 4101]"
        );
        assert_eq!(
            OperationOutcome::default().summary(),
            "OperationOutcome without issues"
        );
        let diagnostics_only = OperationOutcomeIssue {
            severity: Some(IssueSeverity::Fatal),
            code: Some(IssueType::Exception),
            diagnostics: Some("x".repeat(300)),
            ..OperationOutcomeIssue::default()
        };
        let text = diagnostics_only.summary();
        assert!(text.starts_with("fatal (exception): xxx"), "{text}");
        assert!(text.ends_with("x…"), "{text}");
        assert_eq!(
            text.chars().count(),
            "fatal (exception): ".len() + SUMMARY_DIAGNOSTICS_LIMIT + 1
        );
        let long_diagnostics = OperationOutcomeIssue {
            details: Some(CodeableConcept {
                text: Some("Bad".to_owned()),
                ..CodeableConcept::default()
            }),
            ..diagnostics_only
        };
        assert!(long_diagnostics.summary().ends_with("x…)"));
    }

    fn searchset() -> serde_json::Value {
        json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1,
            "link": [
                {"relation": "self", "url": "https://fhir.example/R4/Observation?patient=p&category=vital-signs"},
                {"relation": "next", "url": "https://fhir.example/R4/Observation?sessionID=abc"}
            ],
            "entry": [
                {
                    "fullUrl": "https://fhir.example/R4/Observation/o1",
                    "resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "Pulse"}},
                    "search": {"mode": "match", "score": 1}
                },
                {
                    "fullUrl": "https://fhir.example/R4/Patient/p",
                    "resource": {"resourceType": "Patient", "id": "p"},
                    "search": {"mode": "include"}
                },
                {
                    "resource": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "warning", "code": "processing", "details": {"text": "more data may exist"}}]
                    },
                    "search": {"mode": "outcome"}
                },
                {
                    "resource": {"resourceType": "Provenance", "id": "pr", "target": [{"reference": "Patient/p"}], "recorded": "2024-01-01T00:00:00Z", "agent": [{"who": {"reference": "Practitioner/x"}}]},
                    "search": {"mode": "later-invention"}
                }
            ]
        })
    }

    #[test]
    fn links_and_entries_by_mode() {
        let bundle: Bundle = from_value(&searchset()).unwrap();
        assert_eq!(
            bundle.next_link(),
            Some("https://fhir.example/R4/Observation?sessionID=abc")
        );
        assert_eq!(
            bundle.self_link(),
            Some("https://fhir.example/R4/Observation?patient=p&category=vital-signs")
        );
        assert_eq!(bundle.link("previous"), None);
        let ids = |mode| -> Vec<_> {
            bundle
                .entries_by_mode(mode)
                .filter_map(|entry| entry.resource.as_ref()?.id())
                .collect()
        };
        assert_eq!(ids(SearchEntryMode::Match), ["o1"]);
        assert_eq!(ids(SearchEntryMode::Include), ["p"]);
        assert_eq!(bundle.entries_by_mode(SearchEntryMode::Outcome).count(), 1);
        assert_eq!(bundle.matches().count(), 1);
        assert_eq!(bundle.resources().count(), 4);
        assert!(
            bundle.entry[0]
                .resource
                .as_ref()
                .unwrap()
                .downcast_ref::<Observation>()
                .is_some()
        );
        assert_eq!(
            bundle.entry[3].search_mode(),
            Some(&SearchEntryMode::Unrecognized("later-invention".to_owned()))
        );
        assert_eq!(to_value(&bundle), searchset());
    }

    #[test]
    fn entries_without_mode_count_as_matches() {
        let bundle: Bundle = from_str(
            r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"a"}}]}"#,
        )
        .unwrap();
        assert_eq!(bundle.matches().count(), 1);
        assert_eq!(bundle.entries_by_mode(SearchEntryMode::Match).count(), 0);
    }

    #[test]
    fn missing_resource_type_names_the_entry() {
        let text = r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient"}},{"resource":{"id":"x"}}]}"#;
        let error = from_str::<Bundle>(text).unwrap_err();
        assert_eq!(error.path(), "entry[1].resource");
        assert!(
            error.message().contains("missing member `resourceType`"),
            "{error}"
        );
    }

    #[test]
    fn errors_deep_in_an_entry_name_the_full_path() {
        let text = r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{},"valueQuantity":{"value":"high"}}}]}"#;
        let error = from_str::<Bundle>(text).unwrap_err();
        assert_eq!(error.path(), "entry[0].resource.valueQuantity.value");
        assert!(
            error.excerpt().unwrap().contains("\"value\":\"high\""),
            "{error}"
        );
    }

    #[test]
    fn response_outcome_and_request_are_typed() {
        let input = json!({
            "resourceType": "Bundle", "type": "transaction-response",
            "entry": [{
                "response": {
                    "status": "201 Created", "location": "Patient/1/_history/1", "etag": "W/\"1\"",
                    "lastModified": "2024-01-01T00:00:00Z",
                    "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}
                }
            }, {
                "request": {"method": "GET", "url": "Patient/1", "ifModifiedSince": "2024-01-01T00:00:00Z"}
            }]
        });
        let bundle: Bundle = from_value(&input).unwrap();
        let response = bundle.entry[0].response.as_ref().unwrap();
        assert!(
            response
                .outcome
                .as_ref()
                .unwrap()
                .downcast_ref::<OperationOutcome>()
                .is_some()
        );
        assert_eq!(
            bundle.entry[1].request.as_ref().unwrap().method,
            Some(crate::HTTPVerb::GET)
        );
        assert_eq!(to_value(&bundle), input);
    }

    fn epic_metadata() -> serde_json::Value {
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2024-05-01T00:00:00Z",
            "kind": "instance",
            "software": {"name": "Epic", "version": "May 2024", "releaseDate": "2024-05-01"},
            "implementation": {"description": "Epic FHIR", "url": "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4"},
            "fhirVersion": "4.0.1",
            "format": ["xml", "json"],
            "rest": [{
                "mode": "server",
                "security": {
                    "extension": [{
                        "url": SMART_OAUTH_URIS_EXTENSION,
                        "extension": [
                            {"url": "authorize", "valueUri": "https://fhir.epic.com/interconnect-fhir-oauth/oauth2/authorize"},
                            {"url": "token", "valueUri": "https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token"}
                        ]
                    }],
                    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}]
                },
                "resource": [{
                    "type": "Observation",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [{"name": "patient", "type": "reference"}, {"name": "category", "type": "token"}],
                    "searchInclude": ["Observation:patient"]
                }],
                "interaction": [{"code": "batch"}]
            }],
            "contact": [{"name": "Epic"}]
        })
    }

    #[test]
    fn smart_endpoints_and_resource_capabilities() {
        let statement: CapabilityStatement = from_value(&epic_metadata()).unwrap();
        assert!(statement.supports_json());
        let uris = statement.oauth_uris().unwrap();
        assert_eq!(
            uris.token,
            Some("https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token")
        );
        assert_eq!(
            uris.authorize,
            Some("https://fhir.epic.com/interconnect-fhir-oauth/oauth2/authorize")
        );
        assert_eq!(uris.revoke, None);
        let rest = statement.server_rest().unwrap();
        let observation = rest.resource("Observation").unwrap();
        assert!(observation.supports_interaction("search-type"));
        assert!(!observation.supports_interaction("create"));
        assert!(observation.search_param("category").is_some());
        assert!(observation.search_param("code").is_none());
        assert!(rest.resource("Patient").is_none());
        assert_eq!(statement.contact.len(), 1);
        assert_eq!(to_value(&statement), epic_metadata());
    }

    #[test]
    fn statement_without_security_has_no_oauth_uris() {
        let statement: CapabilityStatement = from_str(
            r#"{"resourceType":"CapabilityStatement","format":["application/fhir+xml"],"rest":[{"mode":"client"},{"mode":"server"}]}"#,
        )
        .unwrap();
        assert_eq!(statement.oauth_uris(), None);
        assert!(!statement.supports_json());
        assert_eq!(
            statement.server_rest().unwrap().mode,
            Some(RestfulCapabilityMode::Server)
        );
    }
}
