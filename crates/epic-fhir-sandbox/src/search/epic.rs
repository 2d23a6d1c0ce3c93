//! Epic's search rules, kept apart from the FHIR semantics so the sandbox can also serve as
//! a plain FHIR server.
//!
//! - An Observation search needs `category` or `code` (or `_id`); otherwise Epic answers
//!   59108 "required parameter missing".
//! - A Patient search needs `_id`, `identifier`, or demographics; otherwise Epic answers
//!   59159. "Demographics" here means at least one of `family`, `given`, `name` or
//!   `birthdate`: those narrow a search to a few people, whereas `gender` or an address part
//!   alone would list a large share of the registry, which Epic does not allow.
//! - Condition, Encounter and MedicationRequest accept `patient` alone; no rule applies.
//! - `_revinclude` is only honoured for `Provenance:target`; other revincludes are dropped
//!   and reported as ignored parameters.

use super::parse::{ParsedSearch, SearchError, SearchWarning};

/// Epic's "required parameter missing" code.
pub const REQUIRED_PARAMETER_MISSING: u32 = 59108;
/// Epic's code for a Patient search without identifying parameters.
pub const PATIENT_SEARCH_NEEDS_IDENTIFIERS: u32 = 59159;

/// Patient parameters that identify, or narrow by demographics, enough for Epic.
const PATIENT_IDENTIFYING: [&str; 6] =
    ["_id", "identifier", "family", "given", "name", "birthdate"];

/// Applies Epic's rules to a parsed search: returns an error carrying Epic's code when a
/// required parameter is missing, and drops (with a warning) the revincludes Epic ignores.
///
/// # Errors
///
/// A [`SearchError`] with [`SearchError::epic_code`] set to [`REQUIRED_PARAMETER_MISSING`]
/// or [`PATIENT_SEARCH_NEEDS_IDENTIFIERS`] when the search lacks the parameters Epic requires.
pub fn apply_epic_rules(search: &mut ParsedSearch) -> Result<(), SearchError> {
    match search.resource_type() {
        "Observation"
            if !search.has_param("_id")
                && !search.has_param("category")
                && !search.has_param("code") =>
        {
            return Err(SearchError::new(
                "category",
                "required parameter missing: an Observation search needs `category` or `code`",
            )
            .with_epic_code(REQUIRED_PARAMETER_MISSING));
        }
        "Patient"
            if !PATIENT_IDENTIFYING
                .iter()
                .any(|name| search.has_param(name)) =>
        {
            return Err(SearchError::new(
                "identifier",
                "a Patient search needs `_id`, `identifier`, or a demographic parameter \
                 (`family`, `given`, `name` or `birthdate`)",
            )
            .with_epic_code(PATIENT_SEARCH_NEEDS_IDENTIFIERS));
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
        let error = check("Observation", &[("patient", "p1")]).expect_err("59108");
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
        for pairs in [
            &[][..],
            &[("gender", "female")][..],
            &[("address-city", "Madison")][..],
        ] {
            let error = check("Patient", pairs).expect_err("59159");
            assert_eq!(
                error.epic_code(),
                Some(PATIENT_SEARCH_NEEDS_IDENTIFIERS),
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
