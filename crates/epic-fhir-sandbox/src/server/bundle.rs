//! Searchset Bundles, written straight from the stored JSON bytes.
//!
//! Stored resources are kept as compact JSON, so a page is assembled by concatenation: no
//! resource is parsed or re-serialized unless `_elements` or `_summary` asks for a subset.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::outcome::{Issue, operation_outcome};
use crate::search::{ParsedSearch, Summary};
use crate::store::StoredResource;

/// The `meta.tag` FHIR requires on resources returned with only some of their elements.
const SUBSETTED: &str = r#"{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"Resource encoded in summary mode"}"#;

/// Top-level elements kept by `_summary=true`, in addition to `resourceType`, `id` and `meta`:
/// the summary elements common to the types the sandbox serves (identifiers, status, codes,
/// subjects, key dates and names).
const SUMMARY_ELEMENTS: &[&str] = &[
    "identifier",
    "active",
    "name",
    "telecom",
    "gender",
    "birthDate",
    "deceasedBoolean",
    "deceasedDateTime",
    "address",
    "managingOrganization",
    "link",
    "status",
    "intent",
    "category",
    "code",
    "subject",
    "patient",
    "encounter",
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "issued",
    "clinicalStatus",
    "verificationStatus",
    "severity",
    "onsetDateTime",
    "onsetPeriod",
    "abatementDateTime",
    "recordedDate",
    "medicationCodeableConcept",
    "medicationReference",
    "authoredOn",
    "requester",
    "class",
    "type",
    "period",
    "serviceType",
    "start",
    "end",
    "participant",
    "actual",
    "quantity",
    "member",
];

/// What one page of a search shows.
pub(crate) struct Page<'a> {
    pub(crate) base_url: &'a str,
    pub(crate) query: &'a ParsedSearch,
    pub(crate) total: usize,
    pub(crate) matches: &'a [Arc<StoredResource>],
    pub(crate) included: &'a [Arc<StoredResource>],
    pub(crate) outcomes: &'a [Issue],
    pub(crate) self_link: &'a str,
    pub(crate) next_link: Option<&'a str>,
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a &str cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn push_entry(
    out: &mut Vec<u8>,
    first: &mut bool,
    full_url: Option<&str>,
    resource: &[u8],
    mode: &str,
) {
    // The `entry` array is opened by the first entry, so that a Bundle without entries has no
    // `entry` element at all: FHIR JSON never holds empty arrays.
    if *first {
        out.extend_from_slice(br#","entry":["#);
    } else {
        out.push(b',');
    }
    *first = false;
    out.extend_from_slice(b"{");
    if let Some(url) = full_url {
        out.extend_from_slice(b"\"fullUrl\":");
        push_json_string(out, url);
        out.push(b',');
    }
    out.extend_from_slice(b"\"resource\":");
    out.extend_from_slice(resource);
    out.extend_from_slice(b",\"search\":{\"mode\":\"");
    out.extend_from_slice(mode.as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// Applies `_elements` / `_summary` to one resource, or returns its bytes unchanged.
fn shaped(resource: &StoredResource, query: &ParsedSearch) -> Vec<u8> {
    let keep: Option<Vec<&str>> = match (query.elements(), query.summary()) {
        (Some(elements), _) => Some(elements.iter().map(String::as_str).collect()),
        (None, Some(Summary::True)) => Some(SUMMARY_ELEMENTS.to_vec()),
        (None, Some(Summary::Text)) => Some(vec!["text"]),
        (None, Some(Summary::Data)) => {
            let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(resource.json())
            else {
                return resource.json().to_vec();
            };
            map.remove("text");
            return serialize_subset(map);
        }
        _ => None,
    };
    let Some(keep) = keep else {
        return resource.json().to_vec();
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(resource.json()) else {
        return resource.json().to_vec();
    };
    let subset: Map<String, Value> = map
        .into_iter()
        .filter(|(k, _)| {
            matches!(k.as_str(), "resourceType" | "id" | "meta") || keep.contains(&k.as_str())
        })
        .collect();
    serialize_subset(subset)
}

fn serialize_subset(mut map: Map<String, Value>) -> Vec<u8> {
    let tag: Value = serde_json::from_str(SUBSETTED).unwrap_or(Value::Null);
    let meta = map
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        let tags = meta
            .entry("tag")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(tags) = tags {
            tags.push(tag);
        }
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}

/// Writes the page as a searchset Bundle.
pub(crate) fn render(page: &Page<'_>) -> Vec<u8> {
    let estimate: usize = page
        .matches
        .iter()
        .chain(page.included)
        .map(|r| r.json().len() + 160)
        .sum();
    let mut out = Vec::with_capacity(estimate + 512);
    out.extend_from_slice(br#"{"resourceType":"Bundle","type":"searchset""#);
    if !matches!(page.query.total(), Some(crate::search::TotalMode::None)) {
        out.extend_from_slice(b",\"total\":");
        out.extend_from_slice(page.total.to_string().as_bytes());
    }
    out.extend_from_slice(br#","link":[{"relation":"self","url":"#);
    push_json_string(&mut out, page.self_link);
    out.push(b'}');
    if let Some(next) = page.next_link {
        out.extend_from_slice(br#",{"relation":"next","url":"#);
        push_json_string(&mut out, next);
        out.push(b'}');
    }
    out.push(b']');
    let mut first = true;
    let count_only = matches!(page.query.summary(), Some(Summary::Count));
    if !count_only {
        let subset = page.query.elements().is_some() || page.query.summary().is_some();
        // One buffer for every entry's fullUrl, rather than an allocation per resource.
        let mut full_url = String::new();
        for (resources, mode) in [(page.matches, "match"), (page.included, "include")] {
            for resource in resources {
                full_url.clear();
                for part in [
                    page.base_url,
                    "/",
                    resource.resource_type(),
                    "/",
                    resource.id(),
                ] {
                    full_url.push_str(part);
                }
                if subset {
                    push_entry(
                        &mut out,
                        &mut first,
                        Some(&full_url),
                        &shaped(resource, page.query),
                        mode,
                    );
                } else {
                    push_entry(&mut out, &mut first, Some(&full_url), resource.json(), mode);
                }
            }
        }
    }
    if !page.outcomes.is_empty() {
        let outcome = serde_json::to_vec(&operation_outcome(page.outcomes)).unwrap_or_default();
        push_entry(&mut out, &mut first, None, &outcome, "outcome");
    }
    if !first {
        out.push(b']');
    }
    out.push(b'}');
    out
}
