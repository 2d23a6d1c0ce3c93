//! Search result pages: matches, included resources and outcome entries kept apart.

use std::collections::HashMap;

use crate::model::{
    Bundle, BundleLink, FromResource, ModelError, OperationOutcome, OperationOutcomeIssue,
    Reference, Resource, SearchEntryMode,
};

/// What a page's matches are read into: a typed model (any [`FhirResource`](crate::model::FhirResource)) or, for searches
/// of a type named at run time, [`Resource`].
pub trait PageItem: FromResource + Send + 'static {}

impl<T: FromResource + Send + 'static> PageItem for T {}

/// One page of search results.
///
/// Entries are split by `search.mode`: **matches** (the resources searched for), **included**
/// resources (`_include`/`_revinclude`, resolvable from a [`Reference`] with
/// [`Page::resolve`]), and **outcomes**: OperationOutcomes such as Epic's 4101 "no results" or
/// 4122 "parameter ignored" warnings. An OperationOutcome is never counted as a match, whatever
/// mode the server gave it.
#[derive(Debug, Clone)]
pub struct Page<T> {
    resource_type: String,
    matches: Vec<T>,
    included: Vec<Resource>,
    outcomes: Vec<OperationOutcome>,
    total: Option<u64>,
    links: Vec<BundleLink>,
    index: HashMap<String, usize>,
}

impl<T: PageItem> Page<T> {
    /// Splits a searchset Bundle for a search of `resource_type`.
    ///
    /// # Errors
    /// When a match entry does not fit `T`; the error names the entry.
    pub(crate) fn from_bundle(bundle: Bundle, resource_type: &str) -> Result<Self, ModelError> {
        let mut matches = Vec::new();
        let mut included = Vec::new();
        let mut outcomes = Vec::new();
        for (position, entry) in bundle.entry.into_iter().enumerate() {
            // A missing mode means "match" when the type fits (some servers omit it); a mode
            // this crate does not know is, as in `Bundle::matches`, not a match.
            let is_match_mode = matches!(
                entry.search.as_ref().and_then(|s| s.mode.as_ref()),
                None | Some(SearchEntryMode::Match)
            );
            let Some(resource) = entry.resource else {
                continue;
            };
            let resource = match resource.into_typed::<OperationOutcome>() {
                Ok(outcome) => {
                    outcomes.push(outcome);
                    continue;
                }
                Err(resource) => resource,
            };
            if is_match_mode && resource.resource_type() == resource_type {
                let item = T::convert(resource)
                    .map_err(|e| e.within(&format!("entry[{position}].resource")))?;
                matches.push(item);
            } else {
                included.push(resource);
            }
        }
        let index = included
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((format!("{}/{}", r.resource_type(), r.id()?), i)))
            .collect();
        Ok(Page {
            resource_type: resource_type.to_owned(),
            matches,
            included,
            outcomes,
            total: bundle.total.map(u64::from),
            links: bundle.link,
            index,
        })
    }
}

impl<T> Page<T> {
    /// The resources searched for.
    pub fn matches(&self) -> &[T] {
        &self.matches
    }

    /// Takes the matches out of the page.
    pub fn into_matches(self) -> Vec<T> {
        self.matches
    }

    /// The number of matches on this page.
    pub fn len(&self) -> usize {
        self.matches.len()
    }

    /// Whether the page has no matches.
    pub fn is_empty(&self) -> bool {
        self.matches.is_empty()
    }

    /// Resources added by `_include` and `_revinclude`.
    pub fn included(&self) -> &[Resource] {
        &self.included
    }

    /// The included resource a reference points at, if the page holds it. Relative
    /// (`Patient/123`) and absolute (`https://host/fhir/Patient/123`) references both resolve.
    pub fn resolve(&self, reference: &Reference) -> Option<&Resource> {
        let key = format!("{}/{}", reference.resource_type()?, reference.id()?);
        self.index.get(&key).map(|&i| &self.included[i])
    }

    /// OperationOutcome entries (`search.mode = outcome`).
    pub fn outcomes(&self) -> &[OperationOutcome] {
        &self.outcomes
    }

    /// Every issue of the outcome entries.
    pub fn issues(&self) -> impl Iterator<Item = &OperationOutcomeIssue> {
        self.outcomes.iter().flat_map(|o| o.issue.iter())
    }

    /// Whether an outcome entry carries Epic's `code` (such as `"4101"`, no results).
    pub fn has_epic_code(&self, code: &str) -> bool {
        self.outcomes.iter().any(|o| o.has_epic_code(code))
    }

    /// `Bundle.total` when the server gave it. With `_count`, Epic may report the page size here.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// The page's links.
    pub fn links(&self) -> &[BundleLink] {
        &self.links
    }

    /// The `next` link, to be followed verbatim.
    pub fn next_link(&self) -> Option<&str> {
        self.link("next")
    }

    /// The `self` link.
    pub fn self_link(&self) -> Option<&str> {
        self.link("self")
    }

    fn link(&self, relation: &str) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.relation.as_deref() == Some(relation))
            .and_then(|l| l.url.as_deref())
    }

    /// The resource type searched.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{self, Observation};
    use serde_json::json;

    fn bundle(entries: serde_json::Value) -> Bundle {
        model::from_value(&json!({
            "resourceType": "Bundle", "type": "searchset", "total": 2,
            "link": [{"relation": "self", "url": "https://x/Observation?a=b"}, {"relation": "next", "url": "https://x/Observation?sessionID=s-1"}],
            "entry": entries
        }))
        .expect("bundle")
    }

    fn obs(id: &str) -> serde_json::Value {
        json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}})
    }

    #[test]
    fn entries_are_split_by_mode_and_outcomes_never_match() {
        let b = bundle(json!([
            {"resource": obs("o1"), "search": {"mode": "match"}},
            {"resource": obs("o2")},
            {"fullUrl": "https://x/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "include"}},
            {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "processing",
                "details": {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369", "code": "4122"}]}}]},
             "search": {"mode": "match"}}
        ]));
        let page: Page<Observation> = Page::from_bundle(b, "Observation").expect("page");
        assert_eq!(page.len(), 2);
        assert_eq!(page.included().len(), 1);
        assert_eq!(page.outcomes().len(), 1);
        assert!(page.has_epic_code("4122"));
        assert_eq!(page.total(), Some(2));
        assert_eq!(
            page.next_link(),
            Some("https://x/Observation?sessionID=s-1")
        );
        let subject = page.matches()[0].subject.clone().expect("subject");
        assert_eq!(page.resolve(&subject).expect("resolves").id(), Some("p1"));
        assert!(page.resolve(&Reference::to("Patient", "other")).is_none());
    }

    #[test]
    fn an_unknown_mode_is_not_a_match() {
        let b = bundle(json!([
            {"resource": obs("o1"), "search": {"mode": "match"}},
            {"resource": obs("o2"), "search": {"mode": "later-invention"}}
        ]));
        let page: Page<Observation> = Page::from_bundle(b, "Observation").expect("page");
        assert_eq!(page.len(), 1);
        assert_eq!(page.included().len(), 1);
    }

    #[test]
    fn a_typed_entry_that_does_not_parse_names_the_entry() {
        let err = model::from_value::<Bundle>(&json!({
            "resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": {"resourceType": "Observation", "id": "bad", "status": "final"}, "search": {"mode": "match"}}]
        }))
        .expect_err("Observation.code is required");
        assert_eq!(err.path(), "entry[0].resource", "{err}");
        assert!(err.message().contains("`code`"), "{err}");
    }

    #[test]
    fn a_match_of_another_type_than_the_callers_model_names_the_entry() {
        let b = bundle(json!([
            {"resource": {"resourceType": "Procedure", "id": "ok", "status": "completed", "subject": {"reference": "Patient/p"}}, "search": {"mode": "match"}}
        ]));
        let page =
            Page::<Resource>::from_bundle(b.clone(), "Procedure").expect("any resource fits");
        assert_eq!(page.len(), 1);
        let page = Page::<model::Procedure>::from_bundle(b, "Procedure").expect("fits");
        assert_eq!(page.matches()[0].id.as_deref(), Some("ok"));
        let err =
            <model::Observation as FromResource>::convert(page.into_matches().remove(0).into())
                .expect_err("a Procedure is not an Observation");
        assert!(
            err.message()
                .contains("expected resource type Observation, found Procedure"),
            "{err}"
        );
    }
}
