//! A local, Epic-compatible FHIR R4 server for development and tests.
//!
//! (The crate guide is written once the server module lands.)

pub mod generate;
pub mod search;
pub mod store;
