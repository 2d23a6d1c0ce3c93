//! # epic-fhir
//!
//! A Rust SDK for Epic's FHIR R4 API and any SMART Backend Services server.
//!
//! - [`auth`]: OAuth 2.0 Backend Services: keys, signed client assertions, a single-flight
//!   token cache with proactive refresh, SMART discovery.
//! - [`FhirClient`]: read, search, paging streams, includes, create/update, with retries
//!   honouring `Retry-After`, rate limiting and pooled connections; errors carry the server's
//!   OperationOutcome ([`Error`]).
//! - [`search`]: typed search parameters with FHIR escaping; [`paging`]: result pages.
//! - [`model`]: every FHIR R4 resource and datatype, typed and lossless, with a validator
//!   (the `epic-fhir-model` crate).
//! - [`bulk`]: Bulk Data `$export`: kick-off, polling, parallel resumable downloads of
//!   checked NDJSON files.
//!
//! Everything can be exercised offline against the `epic-fhir-sandbox` crate, a local
//! Epic-compatible server.
#![warn(missing_docs)]

pub mod auth;
pub mod bulk;
mod client;
mod error;
/// Typed, lossless FHIR R4 resources and datatypes: the `epic-fhir-model` crate.
pub use epic_fhir_model as model;
mod net;
pub mod paging;
mod retry;
pub mod search;

pub use client::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, FhirClient, FhirClientBuilder};
pub use error::{Error, ErrorKind, OAuthError, RequestInfo, Result};
pub use paging::{Page, PageItem};
pub use retry::RetryPolicy;
pub use search::SearchParams;
