//! # epic-fhir-sandbox
//!
//! A local, Epic-compatible FHIR R4 server for development and tests: the embedded default of
//! the `epic-fhir` toolkit. Everything the SDK does can be run and tested against it offline.
//!
//! - **Epic's paths**: `/interconnect-fhir-oauth/oauth2/token` and
//!   `/interconnect-fhir-oauth/api/FHIR/R4/...`, with `metadata` and
//!   `.well-known/smart-configuration` under the base.
//! - **Backend Services auth** ([`auth`]): registered clients (JWK Set file or URL, PEM public
//!   key or certificate), every client-assertion rule of SMART and Epic checked (the key's type
//!   decides the algorithm, `jti` replay refused...), opaque 256-bit tokens, v1 and v2 scopes.
//! - **SMART App Launch** ([`auth::SmartConfig`]): `oauth2/authorize` with login and consent
//!   pages for MyChart-style users (`fhircamila`...), an EHR launcher, the
//!   `authorization_code` and `refresh_token` grants for public, secret and `private_key_jwt`
//!   apps, PKCE S256, signed id_tokens, and patient-context tokens that see one compartment.
//! - **Search** ([`search`], [`store`]): Epic's required parameters and warning entries
//!   (4111, 4110, 4101, 4122), FHIR date/token/reference/string semantics, `_sort`,
//!   `_include`/`_revinclude`, snapshot paging through `sessionID` links of at most 1000 entries.
//! - **Data** ([`generate`], [`store::load`]): Epic's named test patients plus deterministic
//!   synthetic patients, and NDJSON/Bundle loading (Synthea included).
//! - **Bulk export** ([`BulkConfig`]): `Group/{id}/$export`, `Patient/$export` and `$export`
//!   (Bulk Data STU2) over a snapshot, with `_type`, `_since`, `_typeFilter`, scope-limited
//!   types, polling with `X-Progress`/`Retry-After`, NDJSON files with gzip and `Range`, and
//!   Epic's one-export-per-Group window.
//! - **Faults** ([`Faults`]): latency, 503, 429 with `Retry-After`, dropped connections, short
//!   token lifetimes, switchable while running.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use epic_fhir_sandbox::auth::ClientConfig;
//! use epic_fhir_sandbox::{Faults, Sandbox, SandboxConfig};
//!
//! let jwks = serde_json::from_str(&std::fs::read_to_string("keys/jwks.json")?)?;
//! let mut config = SandboxConfig::default();
//! config.clients.push(ClientConfig::with_jwks("my-app", &jwks)?);
//! let sandbox = Sandbox::start(config).await?;
//! println!("{} {}", sandbox.base_url(), sandbox.token_url());
//! sandbox.set_faults(Faults { error_rate: 0.1, ..Faults::default() })?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod auth;
mod bulk;
mod config;
mod faults;
pub mod generate;
mod outcome;
pub mod search;
mod server;
pub mod store;
mod xml;

pub use bulk::BulkConfig;
pub use config::{
    AUTHORIZE_PATH, DEFAULT_MAX_BODY_BYTES, DEFAULT_SESSION_MEMORY, FHIR_BASE_PATH, Faults,
    JWKS_PATH, LAUNCH_PATH, MAX_PAGE_SIZE, SandboxConfig, ScopeGrant, TOKEN_PATH,
};
pub use outcome::{
    EPIC_NO_RESULTS, EPIC_OUTCOME_SYSTEM, EPIC_PARAMETER_IGNORED, EPIC_SESSION_EXPIRED,
};
pub use server::{AppSummary, DataSummary, Sandbox, SandboxStats, StartError};
