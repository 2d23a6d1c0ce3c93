//! Typed FHIR R4 resources and datatypes that lose nothing.
//!
//! Every model struct names the common elements of its FHIR type as typed fields (FHIR's
//! camelCase JSON names become snake_case; `type` and `use` are `r#type` and `r#use`), and
//! keeps every other member of the JSON object in its `extra` map: primitive extensions such
//! as `_birthDate`, elements added by newer FHIR versions, and anything a server invents.
//! Writing a model back gives the same JSON as was read, member for member (key order aside,
//! and with numbers compared as numbers: `1.50` is written `1.5`).
//!
//! - Optional elements are `Option`s and repeating ones `Vec`s, omitted when absent or empty.
//!   Elements FHIR requires (such as `Observation.status`) are plain fields, and a missing one
//!   is an error; choice elements (`value[x]`) are enums whose variants map to the JSON member
//!   names, and two members of one choice are an error.
//! - `date`, `dateTime` and `instant` are [`Date`], [`DateTime`] and [`Instant`]: the text as
//!   read, checked against the FHIR syntax, with its [`Precision`] and conversions to
//!   `time::OffsetDateTime`. Decimals are [`Decimal`]; codes, ids and URIs are `String`s.
//! - [`Resource`] holds any resource: a typed model for the types listed on it, else a
//!   [`RawResource`] (the JSON object). It dispatches on `resourceType` while parsing, in one
//!   pass when `resourceType` comes first, as servers write it.
//! - [`from_slice`], [`from_str`] and [`from_value`] report failures as a [`ModelError`]
//!   naming the JSON path (`entry[3].resource.valueQuantity.value`) with an excerpt.
//!
//! ```
//! use epic_fhir::model::{self, Patient, Resource};
//!
//! let json = r#"{
//!     "resourceType": "Patient",
//!     "id": "eq081-VQEgP8drUUqCWzHfw3",
//!     "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0", "value": "E4005"}],
//!     "name": [{"use": "official", "family": "Lin", "given": ["Derrick"]}],
//!     "birthDate": "1973-06-03",
//!     "_birthDate": {"extension": [{"url": "http://example.org/birth-time", "valueTime": "08:30:00"}]},
//!     "newerElement": {"kept": true}
//! }"#;
//! let patient: Patient = model::from_str(json)?;
//! assert_eq!(patient.display_name().as_deref(), Some("Derrick Lin"));
//! assert_eq!(patient.mrn(), Some("E4005"));
//! assert_eq!(patient.birth_date.as_ref().map(|date| date.as_str()), Some("1973-06-03"));
//! assert!(patient.extra.contains_key("_birthDate"));
//!
//! // Written back, the resource is the same JSON, unknown members included.
//! let original: serde_json::Value = serde_json::from_str(json)?;
//! assert_eq!(serde_json::to_value(&patient)?, original);
//!
//! // Any resource can be read as `Resource`, typed when a model exists.
//! let resource: Resource = model::from_str(json)?;
//! assert_eq!(resource.resource_type(), "Patient");
//! assert!(resource.as_patient().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod macros;

mod appointment;
mod bundle;
mod capability_statement;
mod condition;
mod datatypes;
mod encounter;
mod error;
mod medication_request;
mod observation;
mod operation_outcome;
mod patient;
mod primitives;
mod resource;

pub use appointment::{Appointment, AppointmentParticipant};
pub use bundle::{
    Bundle, BundleEntry, BundleEntryRequest, BundleEntryResponse, BundleEntrySearch, BundleLink,
    SearchEntryMode,
};
pub use capability_statement::{
    CapabilityStatement, CapabilityStatementImplementation, CapabilityStatementInteraction,
    CapabilityStatementOperation, CapabilityStatementRest, CapabilityStatementRestResource,
    CapabilityStatementRestSecurity, CapabilityStatementSearchParam, CapabilityStatementSoftware,
    OAuthUris, SMART_OAUTH_URIS_EXTENSION,
};
pub use condition::{
    Condition, ConditionAbatement, ConditionEvidence, ConditionOnset, ConditionStage,
};
pub use datatypes::{
    Address, Annotation, AnnotationAuthor, Attachment, CodeableConcept, Coding, ContactPoint,
    Dosage, DosageAsNeeded, DosageDoseAndRate, DoseAmount, DoseRate, Extension, ExtensionValue,
    HumanName, Identifier, Meta, Narrative, Period, Quantity, Range, Ratio, Reference, SampledData,
    Timing,
};
pub use encounter::{
    Encounter, EncounterClassHistory, EncounterDiagnosis, EncounterHospitalization,
    EncounterLocation, EncounterParticipant, EncounterStatusHistory,
};
pub use error::{ModelError, from_slice, from_str, from_value};
pub use medication_request::{
    MedicationRequest, MedicationRequestDispenseRequest, MedicationRequestInitialFill,
    MedicationRequestMedication, MedicationRequestReported, MedicationRequestSubstitution,
    SubstitutionAllowed,
};
pub use observation::{
    Observation, ObservationComponent, ObservationEffective, ObservationReferenceRange,
    ObservationValue,
};
pub use operation_outcome::{EPIC_OUTCOME_CODE_SYSTEM, OperationOutcome, OperationOutcomeIssue};
pub use patient::{
    EPIC_MRN_SYSTEM, Patient, PatientCommunication, PatientContact, PatientDeceased, PatientLink,
    PatientMultipleBirth,
};
pub use primitives::{Date, DateTime, Decimal, Instant, Precision, TemporalParseError};
pub use resource::{FhirResource, RawResource, Resource, ResourceTypeMismatch};
