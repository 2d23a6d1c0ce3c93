//! `SearchParams` against the sandbox's parser, end to end: a value the SDK encodes (with
//! FHIR's escapes and the URL's) is the value the server decodes. For arbitrary strings, a
//! resource holding the value is stored, the SDK's typed helper builds the query, the query
//! goes through form encoding and decoding as on the wire, the sandbox parses it, and the
//! search must find the resource.
#![no_main]

use epic_fhir::search::SearchParams;
use epic_fhir_sandbox::search;
use epic_fhir_sandbox::store::Store;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// The ids the search on `resource_type` with `params` finds in `store`, or the parser's
/// refusal.
fn found(store: &Store, resource_type: &str, params: &SearchParams) -> Result<Vec<String>, String> {
    let query = params.to_query();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let parsed = search::parse(resource_type, &pairs)
        .map_err(|e| format!("{}: {} (query {query})", e.param(), e.message()))?;
    Ok(store
        .search(&parsed)
        .iter()
        .map(|r| r.id().to_owned())
        .collect())
}

fn must_find(store: &Store, resource_type: &str, params: &SearchParams, id: &str, what: &str) {
    match found(store, resource_type, params) {
        Ok(ids) => assert!(
            ids.iter().any(|found| found == id),
            "{what}: the search {} does not find {resource_type}/{id}",
            params.to_query()
        ),
        Err(refusal) => panic!("{what}: the server refuses what the SDK encoded: {refusal}"),
    }
}

/// A string with something in it besides whitespace (servers may refuse a blank value).
fn text(u: &mut Unstructured<'_>) -> Option<String> {
    let s: String = u.arbitrary().ok()?;
    (!s.trim().is_empty()).then_some(s)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Some(family), Some(system), Some(code), Some(other)) =
        (text(&mut u), text(&mut u), text(&mut u), text(&mut u))
    else {
        return;
    };
    let store = Store::new();
    let patient = json!({"resourceType": "Patient", "id": "rt",
        "name": [{"family": family}],
        "identifier": [{"system": system, "value": code}]});
    let observation = json!({"resourceType": "Observation", "id": "rt", "status": "final",
        "code": {"coding": [{"system": system, "code": code}]}});
    if store.upsert(patient).is_err() || store.upsert(observation).is_err() {
        return;
    }

    let exact = SearchParams::new().string_exact("family", &family);
    must_find(&store, "Patient", &exact, "rt", "family:exact");
    // The default and :contains modes compare normalised text: the value itself must match.
    let default = SearchParams::new().string("family", &family);
    if let Ok(ids) = found(&store, "Patient", &default) {
        assert!(
            ids.contains(&"rt".to_owned()),
            "family= {}",
            default.to_query()
        );
    }
    let contains = SearchParams::new().string_contains("family", &family);
    if let Ok(ids) = found(&store, "Patient", &contains) {
        assert!(
            ids.contains(&"rt".to_owned()),
            "family:contains {}",
            contains.to_query()
        );
    }

    let token = SearchParams::new().token("code", Some(&system), &code);
    must_find(&store, "Observation", &token, "rt", "code=system|code");
    let any_system = SearchParams::new().token("code", None, &code);
    must_find(&store, "Observation", &any_system, "rt", "code=code");
    let in_system = SearchParams::new().token_system("code", &system);
    must_find(&store, "Observation", &in_system, "rt", "code=system|");
    let any_of =
        SearchParams::new().token_any_of("code", &[(Some(&other), &other), (Some(&system), &code)]);
    must_find(&store, "Observation", &any_of, "rt", "code=a,b");
    let identifier = SearchParams::new().token("identifier", Some(&system), &code);
    must_find(
        &store,
        "Patient",
        &identifier,
        "rt",
        "identifier=system|value",
    );
    // And a value that differs is not found (the escapes do not make everything match).
    if other != code {
        let wrong = SearchParams::new().token("code", Some(&system), &other);
        if let Ok(ids) = found(&store, "Observation", &wrong) {
            assert!(ids.is_empty(), "code={} found {ids:?}", wrong.to_query());
        }
    }
});
