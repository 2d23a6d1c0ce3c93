//! Every FHIR R4 resource and datatype as a typed Rust model that loses nothing.
//!
//! The models are generated from HL7's definitions (`hl7.fhir.r4.core` 4.0.1, vendored in
//! `data/fhir-r4`) by `crates/epic-fhir-codegen`; the output is checked in. The SDK re-exports
//! this crate as `epic_fhir::model`.
//!
//! - Every one of the 146 resources and every complex datatype is a struct; backbone elements
//!   are structs named by their path (`Patient.contact` is [`PatientContact`]). FHIR's
//!   camelCase names become snake_case (`birthDate` is `birth_date`; `type` is `r#type`).
//! - Optional elements are `Option`s, repeating ones `Vec`s. A required complex or choice
//!   element is a plain field and a missing one is an error; primitives are `Option`s even
//!   when required, since FHIR lets a primitive carry only extensions.
//! - Choice elements (`value[x]`) are enums ([`ObservationValue`]); two members of one choice
//!   are an error. Codes bound to a required value set are enums ([`AdministrativeGender`])
//!   with an `Unrecognized` variant that keeps any other code as read.
//! - Lossless: a primitive's `_name` member is kept in the field beside it (`birth_date_ext`,
//!   or a [`ListExtensions`] for repeating primitives, `null`s included); members a model
//!   does not name are kept in its `extra` ([`Extra`]) and written back unchanged; decimals
//!   keep their exact text ([`Decimal`]: `1.50` stays `1.50`); `contained` resources are
//!   typed [`Resource`]s.
//! - [`from_slice`]/[`from_str`] read with this crate's own JSON reader (one pass, no serde
//!   visitor per model), and report failures as a [`ModelError`] naming the JSON path with an
//!   excerpt; [`to_vec`]/[`to_string`] write compact JSON. Every model also implements serde's
//!   `Serialize` and `Deserialize` (through serde_json).
//! - [`validate`] checks a resource against the base specification and returns every problem
//!   with its path.
//!
//! ```
//! use epic_fhir_model::{self as model, AdministrativeGender, Patient, Resource};
//!
//! let json = r#"{
//!     "resourceType": "Patient",
//!     "id": "eq081-VQEgP8drUUqCWzHfw3",
//!     "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0", "value": "E4005"}],
//!     "name": [{"use": "official", "family": "Lin", "given": ["Derrick"]}],
//!     "gender": "male",
//!     "birthDate": "1973-06-03",
//!     "_birthDate": {"extension": [{"url": "http://example.org/birth-time", "valueTime": "08:30:00"}]},
//!     "newerElement": {"kept": true}
//! }"#;
//! let patient: Patient = model::from_str(json)?;
//! assert_eq!(patient.gender, Some(AdministrativeGender::Male));
//! assert_eq!(patient.birth_date.as_ref().map(|d| d.as_str()), Some("1973-06-03"));
//! assert_eq!(patient.birth_date_ext.as_ref().map(|e| e.extension.len()), Some(1));
//! assert!(patient.extra.contains_key("newerElement"));
//!
//! // Written back, the resource is the same JSON, unknown members included.
//! let original: serde_json::Value = serde_json::from_str(json)?;
//! assert_eq!(model::to_value(&patient), original);
//!
//! // Any resource can be read as `Resource`.
//! let resource: Resource = model::from_str(json)?;
//! assert_eq!(resource.resource_type(), "Patient");
//! assert!(resource.downcast_ref::<Patient>().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Decimals keep their text, and validation reports every problem with its path:
//!
//! ```
//! use epic_fhir_model::{self as model, Resource, Severity};
//!
//! let text = r#"{"resourceType":"Observation","status":"final","code":{"text":"Glucose"},
//!                "valueQuantity":{"value":5.50,"unit":"mmol/L"}}"#;
//! let resource: Resource = model::from_str(text)?;
//! let Resource::Observation(observation) = &resource else { unreachable!() };
//! assert_eq!(observation.value_display().as_deref(), Some("5.50 mmol/L"));
//!
//! let issues = model::validate_json(br#"{"resourceType":"Patient","gender":"f","birthDate":"1987-13-01"}"#);
//! let found: Vec<(Severity, &str)> = issues.iter().map(|i| (i.severity, i.path.as_str())).collect();
//! assert_eq!(found, [(Severity::Error, "Patient.gender"), (Severity::Error, "Patient.birthDate")]);
//! # Ok::<(), model::ModelError>(())
//! ```

pub mod json;

mod convenience;
mod error;
// Choices keep common values such as a Quantity inline (no allocation) and box the rare large
// ones, so their variants differ in size by design.
#[rustfmt::skip]
#[allow(clippy::large_enum_variant)]
mod generated;
mod key_hash;
mod primitives;
mod resource;
mod rt;
mod serde_support;
pub mod validate;

pub(crate) use serde_support::serde_via_json;

pub use convenience::{
    EPIC_MRN_SYSTEM, EPIC_OUTCOME_CODE_SYSTEM, OAuthUris, SMART_OAUTH_URIS_EXTENSION,
};
pub use error::{ModelError, from_slice, from_str, from_value, to_string, to_value, to_vec};
pub use generated::*;
pub use json::{Extra, RawJson};
pub use primitives::{
    Date, DateTime, Decimal, DecimalParseError, Instant, Precision, TemporalParseError, Time,
};
pub use resource::{FhirResource, FromResource, RawResource};
pub use rt::ListExtensions;
pub use validate::{Issue, Severity, validate_json, validate_resource, validate_value};
