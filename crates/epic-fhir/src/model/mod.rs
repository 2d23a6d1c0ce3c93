//! Typed FHIR R4 resources.
