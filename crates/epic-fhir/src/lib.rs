//! # epic-fhir
//!
//! A Rust SDK for Epic's FHIR R4 API and any SMART Backend Services server.
//!
//! - [`auth`]: OAuth 2.0 Backend Services: keys, signed client assertions, a single-flight
//!   token cache with proactive refresh, SMART discovery.
//! - [`model`]: typed, lossless FHIR R4 resources.
//!
//! Everything can be exercised offline against the `epic-fhir-sandbox` crate, a local
//! Epic-compatible server.
#![warn(missing_docs)]

pub mod auth;
mod error;
pub mod model;
mod net;
mod retry;

pub use error::{Error, ErrorKind, OAuthError, RequestInfo, Result};
pub use retry::RetryPolicy;
