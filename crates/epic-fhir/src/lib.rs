//! Epic FHIR R4 SDK.

pub mod model;
