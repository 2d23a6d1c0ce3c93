//! The sandbox's search parameter parser on any query string, for a resource type picked by
//! the first byte, then the search evaluated on a small store: parsing either refuses with an
//! error naming a parameter or gives a search, which never panics, returns only resources of
//! the searched type, and finds through its indexes exactly what a full scan finds.
#![no_main]

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use epic_fhir_sandbox::search;
use epic_fhir_sandbox::store::Store;
use libfuzzer_sys::fuzz_target;

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(common::small_store)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    let resource_type = common::TYPES[usize::from(selector) % common::TYPES.len()];
    // As the server reads a query: form-decoded pairs.
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query).into_owned().collect();
    let mut parsed = match search::parse(resource_type, &pairs) {
        Ok(parsed) => parsed,
        Err(error) => {
            assert!(!error.message().is_empty());
            return;
        }
    };
    if search::apply_epic_rules(&mut parsed).is_err() {
        return;
    }
    let store = store();
    let found = store.search(&parsed);
    assert!(found.iter().all(|r| r.resource_type() == resource_type));
    let by_index: BTreeSet<String> = found.iter().map(|r| r.id().to_owned()).collect();
    assert_eq!(by_index.len(), found.len(), "a resource found twice");
    let everything = store.resources(resource_type);
    let by_scan: BTreeSet<String> = store
        .matching(&parsed, &everything)
        .iter()
        .map(|r| r.id().to_owned())
        .collect();
    assert_eq!(
        by_index,
        by_scan,
        "index and scan disagree on {query:?}",
        query = String::from_utf8_lossy(query)
    );
});
