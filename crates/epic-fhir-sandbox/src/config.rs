//! Sandbox configuration: data, clients, token and session lifetimes, Epic behaviour and faults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{ClientConfig, SmartConfig};
use crate::bulk::BulkConfig;

/// Epic's path prefix for the FHIR R4 API.
pub const FHIR_BASE_PATH: &str = "/interconnect-fhir-oauth/api/FHIR/R4";
/// Epic's path for the OAuth 2.0 token endpoint.
pub const TOKEN_PATH: &str = "/interconnect-fhir-oauth/oauth2/token";
/// Epic's path for the OAuth 2.0 authorization endpoint (SMART App Launch).
pub const AUTHORIZE_PATH: &str = "/interconnect-fhir-oauth/oauth2/authorize";
/// The sandbox's EHR launcher: `?app=ID&patient=ID[&encounter=ID]` sends the browser to the
/// app's launch URL with `iss` and `launch`.
pub const LAUNCH_PATH: &str = "/interconnect-fhir-oauth/launch";
/// The JWK Set of the key that signs id_tokens (the discovery documents' `jwks_uri`).
pub const JWKS_PATH: &str = "/interconnect-fhir-oauth/oauth2/jwks";
/// Epic's largest searchset page.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Failures the sandbox injects into FHIR API responses, to test a client's resilience.
///
/// Rates are probabilities in `[0, 1]` applied independently to each FHIR request (metadata,
/// SMART discovery and the token endpoint are exempt, so a client can always start).
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Added to every FHIR response. Default: none.
    pub latency: Duration,
    /// Share of requests answered 503 with an OperationOutcome (issue code `transient`).
    pub error_rate: f64,
    /// Share of requests answered 429 with `Retry-After` and an OperationOutcome (`throttled`).
    pub throttle_rate: f64,
    /// The `Retry-After` of throttled responses. Default 1 s.
    pub retry_after: Duration,
    /// Share of responses whose connection is closed after part of the body was sent.
    pub drop_rate: f64,
    /// Seed of the fault dice, so a run can be repeated.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            error_rate: 0.0,
            throttle_rate: 0.0,
            retry_after: Duration::from_secs(1),
            drop_rate: 0.0,
            seed: 0x5eed,
        }
    }
}

impl Faults {
    /// Checks that every rate is a probability and that they sum to at most 1.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error rate", self.error_rate),
            ("throttle rate", self.throttle_rate),
            ("drop rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} {rate} is not between 0 and 1"));
            }
        }
        let sum = self.error_rate + self.throttle_rate + self.drop_rate;
        if sum > 1.0 {
            return Err(format!(
                "error, throttle and drop rates add up to {sum}: at most 1"
            ));
        }
        Ok(())
    }

    /// Whether any fault is configured.
    pub fn any(&self) -> bool {
        !self.latency.is_zero()
            || self.error_rate > 0.0
            || self.throttle_rate > 0.0
            || self.drop_rate > 0.0
    }
}

/// What the token endpoint grants when a client asks for scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeGrant {
    /// Epic: the requested `scope` is ignored and the token carries every scope the client was
    /// registered with (Epic's Backend Services documentation: the registration decides).
    Registered,
    /// Generic SMART: the token carries exactly the requested scopes when the registration
    /// covers them (the registration when none are requested); a request beyond the
    /// registration is refused with `invalid_scope`.
    Requested,
}

/// The default memory budget of search sessions: 256 MiB.
pub const DEFAULT_SESSION_MEMORY: usize = 256 << 20;
/// The default largest request body: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// Everything [`crate::Sandbox::start`] needs. Every field states its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// Where to listen. Default `127.0.0.1:0` (a free loopback port).
    pub addr: SocketAddr,
    /// Synthetic patients to generate (Epic's seven named patients included). Default 100;
    /// 0 generates none (use with `data_dirs`).
    pub patients: usize,
    /// Seed of the generator. Default 42.
    pub seed: u64,
    /// Directories of NDJSON files and Bundles to load. Default none.
    pub data_dirs: Vec<PathBuf>,
    /// Clients registered at start. Default none (register later with
    /// [`crate::Sandbox::register_client`]).
    pub clients: Vec<ClientConfig>,
    /// Lifetime of issued access tokens. Default 3600 s, Epic's figure.
    pub token_lifetime: Duration,
    /// Clock skew tolerated on assertion `exp`/`iat`/`nbf`. Default 30 s.
    pub clock_skew: Duration,
    /// HTTP status of `invalid_client` responses: Epic has been seen sending 400 and 401.
    /// Default 400.
    pub invalid_client_status: u16,
    /// Idle time after which a search session (its `next` links) expires. Default 10 min.
    pub session_idle_timeout: Duration,
    /// Page size when `_count` is absent. Default 1000; `_count` is capped at 1000 either way.
    pub default_page_size: usize,
    /// Behave as Epic where Epic differs from generic FHIR/SMART: required search parameters
    /// (4111/4110), no `_lastUpdated` search, no bulk `_since`, Epic's identity in
    /// `metadata`, XML for a missing or `*/*` Accept, the registration as the granted scope.
    /// Default true; false makes the sandbox a generic R4 server.
    pub epic_rules: bool,
    /// How requested scopes are granted. Default `None`: [`ScopeGrant::Registered`] with
    /// `epic_rules`, [`ScopeGrant::Requested`] without.
    pub scope_grant: Option<ScopeGrant>,
    /// The most query (or form) parameters one search may carry; more is a 400. Default 100.
    pub max_search_params: usize,
    /// The most warning entries (4122...) listed in one searchset; the rest are counted in one
    /// more warning. Default 20.
    pub max_outcome_warnings: usize,
    /// The memory search sessions (the snapshots behind `next` links) may hold, estimated from
    /// the JSON they keep alive; beyond it the oldest sessions are dropped and their links
    /// answer 4113. Default [`DEFAULT_SESSION_MEMORY`].
    pub session_memory_budget: usize,
    /// The least time between two fetches of a client's JWK Set URL caused by an assertion
    /// naming an unknown `kid` (a stale cache is always refreshed). Default 10 s.
    pub jwks_refetch_interval: Duration,
    /// The largest request body, for FHIR writes, `_search` forms and token requests; a larger
    /// one is a 413 with an OperationOutcome (an OAuth error on the token endpoint). Default
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// Injected faults. Default none.
    pub faults: Faults,
    /// SMART App Launch: apps, MyChart-style users, code and refresh token lifetimes.
    /// Default: no apps, one user per Epic named patient with a random password.
    pub smart: SmartConfig,
    /// Bulk Data `$export`: which levels are served, Epic's per-Group window, pace, polling
    /// interval and file size. Default: every level, no window, 3000 resources per file.
    pub bulk: BulkConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            patients: 100,
            seed: 42,
            data_dirs: Vec::new(),
            clients: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(30),
            invalid_client_status: 400,
            session_idle_timeout: Duration::from_secs(600),
            default_page_size: MAX_PAGE_SIZE,
            epic_rules: true,
            scope_grant: None,
            max_search_params: 100,
            max_outcome_warnings: 20,
            session_memory_budget: DEFAULT_SESSION_MEMORY,
            jwks_refetch_interval: Duration::from_secs(10),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            faults: Faults::default(),
            smart: SmartConfig::default(),
            bulk: BulkConfig::default(),
        }
    }
}

impl SandboxConfig {
    /// The scope policy in force: [`SandboxConfig::scope_grant`], else Epic's with
    /// `epic_rules` and SMART's without.
    pub fn effective_scope_grant(&self) -> ScopeGrant {
        self.scope_grant.unwrap_or(if self.epic_rules {
            ScopeGrant::Registered
        } else {
            ScopeGrant::Requested
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rates_are_validated() {
        assert!(Faults::default().validate().is_ok());
        assert!(!Faults::default().any());
        let bad = Faults {
            error_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad.validate().expect_err("rate").contains("error rate"));
        let too_much = Faults {
            error_rate: 0.6,
            drop_rate: 0.6,
            ..Faults::default()
        };
        assert!(too_much.validate().is_err());
    }
}
