//! The request engine: every HTTP request the crate sends goes through it, whoever sends it
//! (FHIR reads, searches and writes, token exchange, SMART discovery, and the Bulk Data
//! kick-off, status polls, cancel and file downloads).
//!
//! One attempt ([`Engine::attempt`]) is: the rate limit and a concurrency permit, the bearer
//! token (only for the FHIR server's origin), the send, and, for an answer the request does
//! not accept, a typed [`Decision`] from the endpoint's classifier ([`Classify`]): retry with a
//! [`RetryReason`], refresh the token once, or fail. [`Retries`] applies the one retry rule
//! (written there) to that decision, so delays, `Retry-After` and idempotency work the same for
//! every caller. Bodies are read under [`BodyLimits`], after decompression.
//!
//! This is a leaf below `auth`, `client` and `bulk`: it knows the [`TokenProvider`] trait and
//! nothing else of theirs.
//!
//! [`TokenProvider`]: crate::auth::TokenProvider

mod body;
mod classify;
mod engine;
mod gunzip;
mod limit;
pub(crate) mod transport;

pub(crate) use body::BodyError;
pub use body::BodyLimits;
pub(crate) use classify::{
    Classify, Decision, FhirStatus, Refused, RetryReason, retry_after, retryable_status,
};
pub(crate) use engine::{
    Accept, Answer, Body, Budget, Destination, Engine, Home, MakeClient, Repeat, Reply, Request,
};

/// The FHIR JSON media type.
pub(crate) const FHIR_JSON: &str = "application/fhir+json";
