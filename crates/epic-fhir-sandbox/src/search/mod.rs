//! Search parameter parsing and evaluation, following FHIR R4's search page and the Epic
//! behaviour described in the project's EPIC.md.
//!
//! A search goes through three steps:
//!
//! 1. [`parse()`] turns the (already percent-decoded) query pairs into a [`ParsedSearch`],
//!    checking every parameter against the [`registry`] of the resource type. Malformed
//!    values, unknown modifiers and bad control parameters are a [`SearchError`] naming the
//!    parameter and the value; unknown parameters are ignored and listed in
//!    [`ParsedSearch::warnings`] (the server reports each as Epic's 4122 warning).
//! 2. Optionally, [`apply_epic_rules`] enforces Epic's required parameters (4111, 4110)
//!    and drops the revincludes Epic does not support.
//! 3. [`Store::search`](crate::store::Store::search) returns every match as a snapshot
//!    `Vec<Arc<StoredResource>>`, and
//!    [`Store::includes`](crate::store::Store::includes) computes the `_include` and
//!    `_revinclude` resources of one page.
//!
//! ```
//! use epic_fhir_sandbox::search::{self, apply_epic_rules};
//! use epic_fhir_sandbox::store::Store;
//! use serde_json::json;
//!
//! let store = Store::new();
//! store.upsert(json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Lin"}]}))?;
//! store.upsert(json!({
//!     "resourceType": "Observation", "id": "o1", "status": "final",
//!     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
//!     "subject": {"reference": "Patient/p1"},
//!     "effectiveDateTime": "2024-01-14T10:00:00Z"
//! }))?;
//!
//! let pairs = [
//!     ("patient", "p1"),
//!     ("category", "vital-signs"),
//!     ("date", "ge2024-01"),
//!     ("_sort", "-date"),
//!     ("_include", "Observation:patient"),
//!     ("colour", "blue"),
//! ];
//! let mut query = search::parse("Observation", &pairs)?;
//! apply_epic_rules(&mut query)?;
//! assert_eq!(query.warnings()[0].param(), "colour");
//!
//! let matches = store.search(&query);
//! assert_eq!(matches.len(), 1);
//! let page = &matches[..query.count().unwrap_or(matches.len()).min(matches.len())];
//! let included = store.includes(&query, page);
//! assert_eq!(included[0].reference(), "Patient/p1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics and choices
//!
//! - **Composition**: a comma inside a value is OR, a repeated parameter is AND; `\,`, `\|`,
//!   `\$` and `\\` escape the separators (a backslash before anything else stays literal).
//! - **Dates** are ranges at their precision (`2024-01` is [2024-01-01, 2024-02-01));
//!   values without a zone are UTC, and a space may stand for the `+` of a zone (an
//!   unencoded `+` decodes to a space). Resource values are dates, dateTimes, instants and
//!   Periods (an open end extends to infinity). The nine prefixes follow FHIR R4's table:
//!   `eq` the search range contains the value, `ne` it does not, `gt`/`lt` the value extends
//!   above/below the search range, `ge`/`le` are `gt`/`lt` or `eq`, `sa`/`eb` the value
//!   starts after/ends before without overlap. `ap` widens the search range on both sides by
//!   10% of its distance from now, at least one day, and matches any overlap.
//! - **Tokens** match codes and systems exactly and case-sensitively (FHIR's default; Epic's
//!   codes are lowercase): `code` any system, `system|code`, `|code` no system, `system|`
//!   any code of the system, on code/boolean/string primitives, Coding, every coding of a
//!   CodeableConcept, and Identifier (system and value). `:not` matches resources with no
//!   value matching any of the listed codes (including resources without the element);
//!   `:text` matches display and text case- and accent-insensitively at the start of any
//!   word (`code:text=pressure` finds "Systolic blood pressure").
//! - **References**: `123`, `Patient/123`, `subject:Patient=123` and any absolute URL
//!   ending in `Patient/123` (whatever the host) all match stored `Patient/123` references,
//!   relative or absolute. `patient` implies type Patient even where the element may point
//!   at other types.
//! - **Strings** are case- and accent-insensitive "starts with" by default, `:contains`
//!   anywhere, `:exact` exact including case and accents. `name` covers family, given,
//!   prefix, suffix and text; `address` every part of an Address.
//! - **Quantities** (`value-quantity`): `eq`/`ne` use the search value's precision (`5.4`
//!   is [5.35, 5.45)), the ordering prefixes compare exactly (`sa`/`eb` like `gt`/`lt`),
//!   `ap` accepts 10%; units as `number|system|code` or `number||code` (code or unit text).
//! - **`:missing=true|false`** works on every parameter.
//! - **Order**: with `_sort`, by each key (dates by lower bound ascending, upper bound
//!   descending; missing values last either way), then by id ascending, so the order is
//!   total and paging is stable. Without `_sort`, creation order: the order in which
//!   resources were first stored, which updates do not change.
//! - **Control parameters** `_count`, `_sort`, `_include[:iterate]`, `_revinclude[:iterate]`,
//!   `_elements`, `_summary`, `_total`, `_format`, `_pretty` and `sessionID` are parsed and
//!   exposed on [`ParsedSearch`]; other `_` parameters (`_has`, `_tag`, ...) and chained
//!   parameters are ignored with a warning.

pub(crate) mod date;
mod epic;
mod escape;
mod eval;
mod include;
mod parse;
pub(crate) mod reference;
pub mod registry;
pub(crate) mod text;

#[cfg(test)]
mod tests;

pub use epic::{NO_SEARCH_PARAMETERS, REQUIRED_PARAMETER_MISSING, apply_epic_rules};
pub use parse::{
    Include, ParsedSearch, SearchError, SearchWarning, SortKey, Summary, TotalMode, parse,
};
pub use registry::{ParamDef, ParamKind, described_types, find_param, supported_params};
