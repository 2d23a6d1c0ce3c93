//! SMART discovery: finding the token endpoint from a FHIR base URL.

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::key::Algorithm;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{
    BodyLimits, Classify, Decision, Engine, Refused, Request, RetryReason, retry_after,
    retryable_status,
};
use crate::net;
use crate::retry::RetryPolicy;

/// The SMART `oauth-uris` extension on a CapabilityStatement's `rest.security`.
pub const OAUTH_URIS_EXTENSION: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// Where a [`SmartConfiguration`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoverySource {
    /// `{base}/.well-known/smart-configuration`.
    WellKnown,
    /// The `oauth-uris` extension of `{base}/metadata`.
    CapabilityStatement,
}

/// What a server says about its authorization, as far as Backend Services needs it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SmartConfiguration {
    /// The token endpoint.
    pub token_endpoint: Url,
    /// The authorization endpoint (SMART App Launch), when the server has one.
    pub authorization_endpoint: Option<Url>,
    /// Where the server publishes the keys of its id_tokens, when it says.
    pub jwks_uri: Option<Url>,
    /// The `issuer` of its id_tokens, when it says.
    pub issuer: Option<String>,
    /// PKCE methods, e.g. `S256`; empty when not listed.
    pub code_challenge_methods_supported: Vec<String>,
    /// Client authentication methods, e.g. `private_key_jwt`; empty when not listed.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Assertion signing algorithms, e.g. `RS384`, `ES384`; empty when not listed.
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// Grant types, e.g. `client_credentials`; empty when not listed.
    pub grant_types_supported: Vec<String>,
    /// Scopes the server advertises; empty when not listed.
    pub scopes_supported: Vec<String>,
    /// SMART capabilities, e.g. `client-confidential-asymmetric`; empty when not listed.
    pub capabilities: Vec<String>,
    /// Where this was found.
    pub source: DiscoverySource,
}

#[derive(Deserialize)]
struct WellKnown {
    token_endpoint: Option<String>,
    authorization_endpoint: Option<String>,
    jwks_uri: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    grant_types_supported: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
}

fn join(base: &Url, path: &str) -> Result<Url> {
    let text = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    Url::parse(&text)
        .map_err(|e| Error::config(format!("cannot build URL `{text}`")).with_source(e))
}

impl SmartConfiguration {
    /// Reads `{fhir_base}/.well-known/smart-configuration`; when that is missing or has no
    /// `token_endpoint`, falls back to the `oauth-uris` extension of the CapabilityStatement at
    /// `{fhir_base}/metadata`.
    ///
    /// # Errors
    /// [`ErrorKind::Discovery`] when neither gives a token endpoint (the message says what each
    /// answered), [`ErrorKind::InsecureUrl`] when the token endpoint is plain http to a
    /// non-loopback host, transport errors when the server cannot be reached.
    ///
    /// Transient failures (connection errors, 408, 429, 5xx) are retried with the default
    /// [`RetryPolicy`]; each document is read under the default [`BodyLimits`].
    pub async fn discover(http: &reqwest::Client, fhir_base: &Url) -> Result<SmartConfiguration> {
        let engine = Engine::new(http.clone(), RetryPolicy::default(), BodyLimits::default());
        Self::discover_with(&engine, fhir_base).await
    }

    /// [`SmartConfiguration::discover`] through `engine` (its retry policy and body limits).
    pub(crate) async fn discover_with(
        engine: &Engine,
        fhir_base: &Url,
    ) -> Result<SmartConfiguration> {
        let well_known_url = join(fhir_base, ".well-known/smart-configuration")?;
        let well_known = match get_json(engine, &well_known_url, "application/json").await {
            Ok(value) => match Self::from_well_known(value, fhir_base) {
                Ok(config) => return Ok(config),
                Err(e) if e.kind() == ErrorKind::InsecureUrl => return Err(e),
                Err(e) => e.to_string(),
            },
            Err(e) if e.kind() == ErrorKind::Transport || e.kind() == ErrorKind::Timeout => {
                return Err(e);
            }
            Err(e) => e.to_string(),
        };
        let metadata_url = join(fhir_base, "metadata")?;
        let metadata = match get_json(engine, &metadata_url, "application/fhir+json").await {
            Ok(value) => match Self::from_capability_statement(&value, fhir_base) {
                Ok(config) => return Ok(config),
                Err(e) if e.kind() == ErrorKind::InsecureUrl => return Err(e),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        Err(Error::new(
            ErrorKind::Discovery,
            format!(
                "no token endpoint found for {fhir_base}: smart-configuration: {well_known}; metadata: {metadata}"
            ),
        ))
    }

    /// Parses a `.well-known/smart-configuration` document.
    ///
    /// # Errors
    /// [`ErrorKind::Discovery`] when it has no usable `token_endpoint`.
    pub fn from_well_known(document: Value, fhir_base: &Url) -> Result<SmartConfiguration> {
        let doc: WellKnown = serde_json::from_value(document).map_err(|e| {
            Error::new(
                ErrorKind::Discovery,
                "smart-configuration is not a valid SMART configuration document",
            )
            .with_source(e)
        })?;
        let token = doc.token_endpoint.ok_or_else(|| {
            Error::new(
                ErrorKind::Discovery,
                "smart-configuration has no token_endpoint",
            )
        })?;
        Ok(SmartConfiguration {
            token_endpoint: resolve_endpoint(fhir_base, &token)?,
            authorization_endpoint: doc
                .authorization_endpoint
                .map(|url| resolve_endpoint(fhir_base, &url))
                .transpose()?,
            jwks_uri: doc
                .jwks_uri
                .map(|url| resolve_endpoint(fhir_base, &url))
                .transpose()?,
            issuer: doc.issuer,
            code_challenge_methods_supported: doc.code_challenge_methods_supported,
            token_endpoint_auth_methods_supported: doc.token_endpoint_auth_methods_supported,
            token_endpoint_auth_signing_alg_values_supported: doc
                .token_endpoint_auth_signing_alg_values_supported,
            grant_types_supported: doc.grant_types_supported,
            scopes_supported: doc.scopes_supported,
            capabilities: doc.capabilities,
            source: DiscoverySource::WellKnown,
        })
    }

    /// Takes the token endpoint from a CapabilityStatement's SMART `oauth-uris` extension.
    ///
    /// # Errors
    /// [`ErrorKind::Discovery`] when the extension or its `token` URL is absent.
    pub fn from_capability_statement(
        statement: &Value,
        fhir_base: &Url,
    ) -> Result<SmartConfiguration> {
        let oauth_uri = |name: &str| {
            statement
                .get("rest")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|rest| rest.pointer("/security/extension")?.as_array())
                .flatten()
                .filter(|ext| ext.get("url").and_then(Value::as_str) == Some(OAUTH_URIS_EXTENSION))
                .filter_map(|ext| ext.get("extension")?.as_array())
                .flatten()
                .find(|inner| inner.get("url").and_then(Value::as_str) == Some(name))
                .and_then(|inner| inner.get("valueUri").and_then(Value::as_str))
        };
        let authorization_endpoint = oauth_uri("authorize")
            .map(|url| resolve_endpoint(fhir_base, url))
            .transpose()?;
        let token = oauth_uri("token").ok_or_else(|| {
            Error::new(
                ErrorKind::Discovery,
                "the CapabilityStatement has no oauth-uris extension with a token URL",
            )
        })?;
        Ok(SmartConfiguration {
            token_endpoint: resolve_endpoint(fhir_base, token)?,
            authorization_endpoint,
            jwks_uri: None,
            issuer: None,
            code_challenge_methods_supported: Vec::new(),
            token_endpoint_auth_methods_supported: Vec::new(),
            token_endpoint_auth_signing_alg_values_supported: Vec::new(),
            grant_types_supported: Vec::new(),
            scopes_supported: Vec::new(),
            capabilities: Vec::new(),
            source: DiscoverySource::CapabilityStatement,
        })
    }

    /// Checks that what the server lists (when it lists anything) allows Backend Services with a
    /// key of `algorithm`: `private_key_jwt` authentication, the `client_credentials` grant, and
    /// the signing algorithm.
    ///
    /// # Errors
    /// [`ErrorKind::Discovery`] naming the missing capability.
    pub fn check_backend_services(&self, algorithm: Algorithm) -> Result<()> {
        let lacks = |list: &[String], wanted: &str| {
            !list.is_empty() && !list.iter().any(|item| item.eq_ignore_ascii_case(wanted))
        };
        if lacks(
            &self.token_endpoint_auth_methods_supported,
            "private_key_jwt",
        ) {
            return Err(Error::new(
                ErrorKind::Discovery,
                format!(
                    "the server does not support private_key_jwt client authentication (it lists: {})",
                    self.token_endpoint_auth_methods_supported.join(", ")
                ),
            ));
        }
        if lacks(&self.grant_types_supported, "client_credentials") {
            return Err(Error::new(
                ErrorKind::Discovery,
                format!(
                    "the server does not support the client_credentials grant (it lists: {})",
                    self.grant_types_supported.join(", ")
                ),
            ));
        }
        if lacks(
            &self.token_endpoint_auth_signing_alg_values_supported,
            algorithm.as_str(),
        ) {
            return Err(Error::new(
                ErrorKind::Discovery,
                format!(
                    "the server does not accept {algorithm} assertions (it lists: {}); use a key for one of those",
                    self.token_endpoint_auth_signing_alg_values_supported
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }
}

fn resolve_endpoint(fhir_base: &Url, endpoint: &str) -> Result<Url> {
    let url = fhir_base.join(endpoint).map_err(|e| {
        Error::new(
            ErrorKind::Discovery,
            format!("token endpoint `{endpoint}` is not a valid URL"),
        )
        .with_source(e)
    })?;
    net::check_secure_url(&url, "discovered token URL")?;
    Ok(url)
}

/// Discovery's classifier: a status other than 2xx is a [`ErrorKind::Discovery`] error (so
/// that the well-known document's absence leads to the CapabilityStatement), retried when it
/// says "try again later".
struct DiscoveryStatus;

impl Classify for DiscoveryStatus {
    fn classify(&self, refused: &Refused<'_>) -> Decision {
        let status = refused.status.as_u16();
        let error = Error::new(ErrorKind::Discovery, format!("HTTP {status}"))
            .with_request(refused.request.info())
            .with_status(status)
            .with_retry_after(retry_after(refused.headers));
        if retryable_status(refused.status) {
            Decision::Retry {
                reason: RetryReason::Status(status),
                error,
            }
        } else {
            Decision::Fail(error)
        }
    }
}

async fn get_json(engine: &Engine, url: &Url, accept: &'static str) -> Result<Value> {
    let request = Request::get(url.clone(), accept);
    let reply = engine
        .fetch(&request, &DiscoveryStatus, engine.limits().discovery)
        .await?;
    serde_json::from_slice(&reply.body).map_err(|e| {
        Error::new(ErrorKind::Discovery, "the response is not JSON")
            .with_request(request.info())
            .with_body_excerpt(&reply.body)
            .with_source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Url {
        Url::parse("https://fhir.example.org/api/FHIR/R4").expect("url")
    }

    #[test]
    fn well_known_parses_and_checks_support() {
        let config = SmartConfiguration::from_well_known(
            json!({
                "token_endpoint": "https://fhir.example.org/oauth2/token",
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384"],
                "grant_types_supported": ["client_credentials"],
                "capabilities": ["client-confidential-asymmetric"]
            }),
            &base(),
        )
        .expect("config");
        assert_eq!(
            config.token_endpoint.as_str(),
            "https://fhir.example.org/oauth2/token"
        );
        assert!(config.check_backend_services(Algorithm::RS384).is_ok());
        let err = config
            .check_backend_services(Algorithm::ES384)
            .expect_err("ES384 missing");
        assert_eq!(err.kind(), ErrorKind::Discovery);
        assert!(err.to_string().contains("ES384"), "{err}");
    }

    #[test]
    fn missing_lists_mean_no_constraint() {
        let config = SmartConfiguration::from_well_known(
            json!({"token_endpoint": "https://fhir.example.org/oauth2/token"}),
            &base(),
        )
        .expect("config");
        assert!(config.check_backend_services(Algorithm::ES384).is_ok());
        let config = SmartConfiguration::from_well_known(
            json!({"token_endpoint": "https://x.example/t", "token_endpoint_auth_methods_supported": ["client_secret_basic"]}),
            &base(),
        )
        .expect("config");
        assert!(
            config
                .check_backend_services(Algorithm::RS384)
                .expect_err("no pkjwt")
                .to_string()
                .contains("private_key_jwt")
        );
    }

    #[test]
    fn insecure_or_missing_token_endpoint() {
        let err = SmartConfiguration::from_well_known(
            json!({"token_endpoint": "http://evil.example/token"}),
            &base(),
        )
        .expect_err("http");
        assert_eq!(err.kind(), ErrorKind::InsecureUrl);
        let err = SmartConfiguration::from_well_known(json!({"issuer": "x"}), &base())
            .expect_err("missing");
        assert_eq!(err.kind(), ErrorKind::Discovery);
    }

    #[test]
    fn capability_statement_fallback() {
        let statement = json!({
            "resourceType": "CapabilityStatement",
            "rest": [{"mode": "server", "security": {"extension": [{
                "url": OAUTH_URIS_EXTENSION,
                "extension": [
                    {"url": "authorize", "valueUri": "https://fhir.example.org/oauth2/authorize"},
                    {"url": "token", "valueUri": "https://fhir.example.org/oauth2/token"}
                ]
            }]}}]
        });
        let config =
            SmartConfiguration::from_capability_statement(&statement, &base()).expect("config");
        assert_eq!(
            config.token_endpoint.as_str(),
            "https://fhir.example.org/oauth2/token"
        );
        assert_eq!(config.source, DiscoverySource::CapabilityStatement);
        assert!(
            SmartConfiguration::from_capability_statement(&json!({"rest": []}), &base()).is_err()
        );
    }
}
