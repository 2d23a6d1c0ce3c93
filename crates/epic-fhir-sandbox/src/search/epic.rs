//! Epic's search rules, kept apart from the FHIR semantics so the sandbox can also serve as
//! a plain FHIR server. Each rule names the public source it rests on (ARCHITECTURE.md lists
//! them too).
//!
//! - An Observation search needs `category` or `code` (or `_id`): Epic's Observation search
//!   documentation ("Both patient and code or category are required"); the refusal is HTTP 400
//!   with a `fatal` issue of code `required` (seen live against Epic and reported in a public
//!   issue tracker) carrying Epic's 4111 "Required search parameter missing from request."
//!   (Epic's published error-code table). The code 59108 once used here has no public source.
//! - A Patient search needs `_id`, `identifier`, or demographics. Without any parameter at all
//!   it is 4110 "No parameters are provided in the search request."; with parameters that do
//!   not identify anyone (`gender` or an address part alone) it is 4111. "Demographics" means
//!   at least one of `family`, `given`, `name` or `birthdate`.
//! - An EpisodeOfCare search needs both `patient` and `type` (4111), and a Specimen search
//!   can only be made by `_id` (4111): the behaviour an Epic-aware bulk tool (SMART Fetch)
//!   documents in its crawler, which skips both types on Epic for this reason.
//! - `_lastUpdated` is not searchable on Epic (Epic-aware tools fall back to creation dates
//!   there): its clauses and sort keys are dropped and reported as ignored (4122), as Epic
//!   does with any parameter it does not support.
//! - Condition, Encounter and MedicationRequest accept `patient` alone; no rule applies.
//! - `_revinclude` is only honoured for `Provenance:target`; other revincludes are dropped
//!   and reported as ignored parameters.

use super::parse::{ParsedSearch, SearchError, SearchWarning};

/// Epic's "Required search parameter missing from request." code.
pub const REQUIRED_PARAMETER_MISSING: u32 = 4111;
/// Epic's "No parameters are provided in the search request." code.
pub const NO_SEARCH_PARAMETERS: u32 = 4110;

/// Patient parameters that identify, or narrow by demographics, enough for Epic.
const PATIENT_IDENTIFYING: [&str; 6] =
    ["_id", "identifier", "family", "given", "name", "birthdate"];

fn missing(param: &str, message: String) -> SearchError {
    SearchError::new(param, message).with_epic_code(REQUIRED_PARAMETER_MISSING)
}

/// Applies Epic's rules to a parsed search: returns an error carrying Epic's code when a
/// required parameter is missing, and drops (with a warning) what Epic ignores: revincludes
/// other than `Provenance:target`, and `_lastUpdated`.
///
/// # Errors
///
/// A [`SearchError`] with [`SearchError::epic_code`] set to [`REQUIRED_PARAMETER_MISSING`]
/// or [`NO_SEARCH_PARAMETERS`] when the search lacks the parameters Epic requires.
pub fn apply_epic_rules(search: &mut ParsedSearch) -> Result<(), SearchError> {
    if search.remove_param("_lastUpdated") > 0 {
        search.warnings.push(SearchWarning::new(
            "_lastUpdated",
            "`_lastUpdated` is not a search parameter on this server (as on Epic); it was ignored",
        ));
    }
    match search.resource_type() {
        "Observation"
            if !search.has_param("_id")
                && !search.has_param("category")
                && !search.has_param("code") =>
        {
            return Err(missing(
                "category",
                "required parameter missing: an Observation search needs `category` or `code`"
                    .to_owned(),
            ));
        }
        "Patient" if search.has_no_criteria() => {
            return Err(SearchError::new(
                "identifier",
                "no search parameters: a Patient search needs `_id`, `identifier`, or a \
                 demographic parameter (`family`, `given`, `name` or `birthdate`)",
            )
            .with_epic_code(NO_SEARCH_PARAMETERS));
        }
        "Patient"
            if !PATIENT_IDENTIFYING
                .iter()
                .any(|name| search.has_param(name)) =>
        {
            return Err(missing(
                "identifier",
                "required parameter missing: a Patient search needs `_id`, `identifier`, or a \
                 demographic parameter (`family`, `given`, `name` or `birthdate`)"
                    .to_owned(),
            ));
        }
        "EpisodeOfCare" if !search.has_param("_id") => {
            for required in ["patient", "type"] {
                if !search.has_param(required) {
                    return Err(missing(
                        required,
                        format!(
                            "required parameter missing: an EpisodeOfCare search needs both `patient` and `type` (`{required}` is missing)"
                        ),
                    ));
                }
            }
        }
        "Specimen" if !search.has_param("_id") => {
            return Err(missing(
                "_id",
                "required parameter missing: Specimen can only be searched by `_id`".to_owned(),
            ));
        }
        _ => {}
    }
    let dropped = search.retain_revincludes(|include| {
        include.source_type() == "Provenance" && include.param() == "target"
    });
    for include in dropped {
        let key = if include.iterate() {
            "_revinclude:iterate"
        } else {
            "_revinclude"
        };
        search.warnings.push(SearchWarning::new(
            key,
            format!(
                "`{}:{}` is not supported (only Provenance:target); it was ignored",
                include.source_type(),
                include.param()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::parse;

    fn check(resource_type: &str, pairs: &[(&str, &str)]) -> Result<ParsedSearch, SearchError> {
        let mut search = parse(resource_type, pairs).expect("valid FHIR search");
        apply_epic_rules(&mut search).map(|()| search)
    }

    #[test]
    fn observation_needs_category_or_code() {
        let error = check("Observation", &[("patient", "p1")]).expect_err("4111");
        assert_eq!(error.epic_code(), Some(REQUIRED_PARAMETER_MISSING));
        assert_eq!(error.param(), "category");
        assert!(error.message().contains("required parameter missing"));
        for pairs in [
            &[("patient", "p1"), ("category", "vital-signs")][..],
            &[("patient", "p1"), ("code", "http://loinc.org|8302-2")][..],
            &[("_id", "o1")][..],
        ] {
            assert!(check("Observation", pairs).is_ok(), "{pairs:?}");
        }
    }

    #[test]
    fn patient_needs_identifying_parameters() {
        let error = check("Patient", &[]).expect_err("4110");
        assert_eq!(error.epic_code(), Some(NO_SEARCH_PARAMETERS));
        for pairs in [
            &[("gender", "female")][..],
            &[("address-city", "Madison")][..],
        ] {
            let error = check("Patient", pairs).expect_err("4111");
            assert_eq!(
                error.epic_code(),
                Some(REQUIRED_PARAMETER_MISSING),
                "{pairs:?}"
            );
        }
        for pairs in [
            &[("_id", "eq081-VQEgP8drUUqCWzHfw3")][..],
            &[(
                "identifier",
                "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0|E4005",
            )][..],
            &[("family", "Lin"), ("gender", "male")][..],
            &[("given", "Derrick")][..],
            &[("name", "Lin")][..],
            &[("birthdate", "1973-06-03")][..],
        ] {
            assert!(check("Patient", pairs).is_ok(), "{pairs:?}");
        }
    }

    #[test]
    fn episode_of_care_needs_patient_and_type_and_specimen_needs_id() {
        let error = check("EpisodeOfCare", &[("patient", "p1")]).expect_err("type");
        assert_eq!(error.param(), "type");
        assert_eq!(error.epic_code(), Some(REQUIRED_PARAMETER_MISSING));
        let error = check("EpisodeOfCare", &[("type", "x|y")]).expect_err("patient");
        assert_eq!(error.param(), "patient");
        assert!(check("EpisodeOfCare", &[("patient", "p1"), ("type", "x|y")]).is_ok());
        let error = check("Specimen", &[("patient", "p1")]).expect_err("_id");
        assert_eq!(error.param(), "_id");
        assert!(check("Specimen", &[("_id", "s1")]).is_ok());
    }

    #[test]
    fn last_updated_is_ignored_with_a_warning() {
        let search = check(
            "Condition",
            &[
                ("patient", "p1"),
                ("_lastUpdated", "ge2024-01-01"),
                ("_sort", "_lastUpdated"),
            ],
        )
        .expect("allowed");
        assert!(!search.has_param("_lastUpdated"));
        assert!(search.sort().is_empty());
        assert_eq!(search.warnings().len(), 1);
        assert_eq!(search.warnings()[0].param(), "_lastUpdated");
    }

    #[test]
    fn other_types_accept_patient_alone() {
        for resource_type in ["Condition", "Encounter", "MedicationRequest"] {
            assert!(
                check(resource_type, &[("patient", "p1")]).is_ok(),
                "{resource_type}"
            );
        }
    }

    #[test]
    fn only_provenance_target_revincludes_survive() {
        let search = check(
            "Patient",
            &[
                ("_id", "p1"),
                ("_revinclude", "Provenance:target"),
                ("_revinclude", "Observation:patient"),
            ],
        )
        .expect("allowed");
        assert_eq!(search.revincludes().len(), 1);
        assert_eq!(search.revincludes()[0].source_type(), "Provenance");
        assert_eq!(search.warnings().len(), 1);
        assert_eq!(search.warnings()[0].param(), "_revinclude");
        assert!(
            search.warnings()[0]
                .message()
                .contains("Observation:patient")
        );
    }
}
