//! The Bundle resource: search results, transactions and their responses.

use super::macros::fhir_struct;
use super::{Decimal, Identifier, Instant, Resource};

fhir_struct! {
    /// Bundle.link: a related URL, such as the `self` and `next` pages of search results.
    backbone struct BundleLink {
        /// The relation: `self`, `next`, `previous`, `first`, `last`...
        req "relation" relation: String,
        /// The URL. A `next` link must be followed verbatim.
        req "url" url: String,
    }
}

fhir_struct! {
    /// Bundle.entry.search: why the entry is in a search result.
    backbone struct BundleEntrySearch {
        /// match | include | outcome.
        opt "mode" mode: String,
        /// Search ranking, between 0 and 1.
        opt "score" score: Decimal,
    }
}

fhir_struct! {
    /// Bundle.entry.request: the request an entry of a batch or transaction makes.
    backbone struct BundleEntryRequest {
        /// GET | HEAD | POST | PUT | DELETE | PATCH.
        req "method" method: String,
        /// URL relative to the server base, such as `Patient/123`.
        req "url" url: String,
        /// For a conditional read: the cached ETag.
        opt "ifNoneMatch" if_none_match: String,
        /// For a conditional read: the cached modification time.
        opt "ifModifiedSince" if_modified_since: Instant,
        /// For a conditional update: the expected version's ETag.
        opt "ifMatch" if_match: String,
        /// For a conditional create: the search that must find nothing.
        opt "ifNoneExist" if_none_exist: String,
    }
}

fhir_struct! {
    /// Bundle.entry.response: the result of an entry of a batch or transaction.
    backbone struct BundleEntryResponse {
        /// HTTP status code and reason, such as `201 Created`.
        req "status" status: String,
        /// Location of a created or updated resource.
        opt "location" location: String,
        /// ETag of the resulting version.
        opt "etag" etag: String,
        /// When the resource was last modified.
        opt "lastModified" last_modified: Instant,
        /// An OperationOutcome with hints and warnings, or errors in a batch.
        opt "outcome" outcome: Resource,
    }
}

fhir_struct! {
    /// Bundle.entry: one resource in the bundle, with search, request or response details.
    backbone struct BundleEntry {
        /// Links related to this entry.
        vec "link" link: BundleLink,
        /// Absolute URL of the resource, or a `urn:uuid:` in transactions.
        opt "fullUrl" full_url: String,
        /// The resource, read into its model when this crate has one.
        opt "resource" resource: Resource,
        /// Search details.
        opt "search" search: BundleEntrySearch,
        /// Request details, in batches and transactions.
        opt "request" request: BundleEntryRequest,
        /// Response details, in batch and transaction responses.
        opt "response" response: BundleEntryResponse,
    }
}

/// Why an entry is in a search result (`Bundle.entry.search.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchEntryMode {
    /// The entry matched the search: `match`.
    Match,
    /// The entry was added by `_include` or `_revinclude`: `include`.
    Include,
    /// The entry is an OperationOutcome about the search, such as a warning: `outcome`.
    Outcome,
}

impl SearchEntryMode {
    /// The FHIR code: `match`, `include` or `outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Include => "include",
            Self::Outcome => "outcome",
        }
    }

    /// Reads a FHIR code; `None` for anything else.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "match" => Some(Self::Match),
            "include" => Some(Self::Include),
            "outcome" => Some(Self::Outcome),
            _ => None,
        }
    }
}

impl BundleEntry {
    /// The entry's search mode, when it has a known one.
    pub fn search_mode(&self) -> Option<SearchEntryMode> {
        self.search
            .as_ref()
            .and_then(|search| search.mode.as_deref())
            .and_then(SearchEntryMode::from_code)
    }
}

fhir_struct! {
    /// A Bundle: a collection of resources, such as a page of search results.
    resource struct Bundle("Bundle") {
        /// Persistent identifier of the bundle.
        opt "identifier" identifier: Identifier,
        /// document | message | transaction | transaction-response | batch | batch-response | history | searchset | collection.
        req "type" r#type: String,
        /// When the bundle was assembled.
        opt "timestamp" timestamp: Instant,
        /// For a searchset, the number of matches (Epic may give the page size when `_count` is set).
        opt "total" total: u32,
        /// Links, such as `self` and `next`.
        vec "link" link: BundleLink,
        /// The entries.
        vec "entry" entry: BundleEntry,
    }
}

impl Bundle {
    /// The URL of the link with `relation`.
    pub fn link(&self, relation: &str) -> Option<&str> {
        self.link
            .iter()
            .find(|link| link.relation == relation)
            .map(|link| link.url.as_str())
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
            .filter(move |entry| entry.search_mode() == Some(mode))
    }

    /// The resources that matched the search: entries with mode `match`, or with no mode at
    /// all (an unknown mode is not a match).
    pub fn matches(&self) -> impl Iterator<Item = &Resource> {
        self.entry
            .iter()
            .filter(|entry| {
                let mode = entry
                    .search
                    .as_ref()
                    .and_then(|search| search.mode.as_deref());
                matches!(mode, None | Some("match"))
            })
            .filter_map(|entry| entry.resource.as_ref())
    }

    /// The resources of all entries, in order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.entry
            .iter()
            .filter_map(|entry| entry.resource.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Observation, from_slice, from_value};

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
                    "resource": {"resourceType": "Provenance", "id": "pr"},
                    "search": {"mode": "later-invention"}
                }
            ]
        })
    }

    #[test]
    fn links_and_entries_by_mode() {
        let bundle: Bundle = from_value(searchset()).unwrap();
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
            bundle.entry[3].resource.as_ref().unwrap().resource_type(),
            "Provenance"
        );
        assert_eq!(bundle.entry[3].search_mode(), None);
        assert_eq!(serde_json::to_value(&bundle).unwrap(), searchset());
        for mode in [
            SearchEntryMode::Match,
            SearchEntryMode::Include,
            SearchEntryMode::Outcome,
        ] {
            assert_eq!(SearchEntryMode::from_code(mode.as_str()), Some(mode));
        }
    }

    #[test]
    fn entries_without_mode_count_as_matches() {
        let bundle: Bundle = from_value(json!({
            "resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": {"resourceType": "Patient", "id": "a"}}]
        }))
        .unwrap();
        assert_eq!(bundle.matches().count(), 1);
        assert_eq!(bundle.entries_by_mode(SearchEntryMode::Match).count(), 0);
    }

    #[test]
    fn missing_resource_type_names_the_entry() {
        let text = r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient"}},{"resource":{"id":"x"}}]}"#;
        let error = from_slice::<Bundle>(text.as_bytes()).unwrap_err();
        assert_eq!(error.path(), "entry[1].resource");
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("missing member `resourceType`"), "{cause}");
    }

    #[test]
    fn errors_deep_in_an_entry_name_the_full_path() {
        let text = r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{},"valueQuantity":{"value":"high"}}}]}"#;
        let error = from_slice::<Bundle>(text.as_bytes()).unwrap_err();
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
        let bundle: Bundle = from_value(input.clone()).unwrap();
        let response = bundle.entry[0].response.as_ref().unwrap();
        assert!(
            response
                .outcome
                .as_ref()
                .unwrap()
                .as_operation_outcome()
                .is_some()
        );
        assert_eq!(bundle.entry[1].request.as_ref().unwrap().method, "GET");
        assert_eq!(serde_json::to_value(&bundle).unwrap(), input);
    }
}
