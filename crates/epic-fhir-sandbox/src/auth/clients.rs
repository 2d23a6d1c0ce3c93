//! Registered clients and where their public keys come from.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use super::keys::{VerifyKey, parse_jwks, parse_pem_public};
use super::scopes::ScopeSet;

/// The longest time a fetched JWK Set is cached, as Epic does (29 hours).
pub const MAX_JWKS_CACHE: Duration = Duration::from_secs(29 * 3600);
/// How long a fetched JWK Set is cached when the response has no `Cache-Control: max-age`.
pub const DEFAULT_JWKS_CACHE: Duration = Duration::from_secs(3600);

/// Where a client's public keys come from.
#[derive(Debug, Clone)]
pub enum ClientKeys {
    /// Keys given at registration (from a JWK Set file, a PEM public key or a certificate).
    Static(Vec<VerifyKey>),
    /// A JWK Set URL on loopback (any other is refused, never fetched), fetched on first use,
    /// cached per its `Cache-Control`, and fetched again when an assertion names an unknown
    /// `kid` (at most once per [`crate::SandboxConfig::jwks_refetch_interval`]).
    JwksUrl(Url),
}

/// A client to register with the sandbox.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client id (`iss` and `sub` of its assertions).
    pub id: String,
    /// Its public keys.
    pub keys: ClientKeys,
    /// The scopes it may be granted. Default: `system/*.read`.
    pub scopes: ScopeSet,
}

impl ClientConfig {
    /// A client with the given keys and the default scopes.
    pub fn new(id: impl Into<String>, keys: ClientKeys) -> Self {
        ClientConfig {
            id: id.into(),
            keys,
            scopes: ScopeSet::read_all(),
        }
    }

    /// A client whose keys are in a JWK Set document.
    pub fn with_jwks(id: impl Into<String>, jwks: &Value) -> Result<Self, String> {
        Ok(Self::new(id, ClientKeys::Static(parse_jwks(jwks)?)))
    }

    /// Sets the scopes the client may be granted.
    #[must_use]
    pub fn with_scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = scopes;
        self
    }

    /// Parses `ID=PATH` (a JWK Set JSON file, a PEM public key or a PEM certificate) or `ID=URL`
    /// (a JWK Set URL, which must be on loopback).
    pub fn parse_spec(spec: &str) -> Result<Self, String> {
        let (id, source) = spec
            .split_once('=')
            .ok_or_else(|| format!("client `{spec}` must be ID=PATH or ID=URL"))?;
        if id.is_empty() || source.is_empty() {
            return Err(format!("client `{spec}` must be ID=PATH or ID=URL"));
        }
        if source.starts_with("http://") || source.starts_with("https://") {
            let url =
                Url::parse(source).map_err(|e| format!("client {id}: bad JWK Set URL: {e}"))?;
            check_loopback(&url).map_err(|e| format!("client {id}: {e}"))?;
            return Ok(Self::new(id, ClientKeys::JwksUrl(url)));
        }
        let keys = load_key_file(Path::new(source)).map_err(|e| format!("client {id}: {e}"))?;
        Ok(Self::new(id, ClientKeys::Static(keys)))
    }
}

/// Only loopback JWK Set URLs: the sandbox never reaches outside the machine.
fn check_loopback(url: &Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "JWK Set URL {url} is not on loopback: the sandbox only fetches from this machine"
        ))
    }
}

/// Reads a JWK Set (JSON) or a PEM public key / certificate file.
pub fn load_key_file(path: &Path) -> Result<Vec<VerifyKey>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim_start().starts_with('{') {
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
        parse_jwks(&json).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        parse_pem_public(&text)
            .map(|key| vec![key])
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What is known about a JWK Set URL: the last set fetched, and the last failed attempt.
#[derive(Debug, Default)]
struct RemoteCache {
    fetched: Option<Fetched>,
    /// When the last fetch failed, and why: within the refetch interval the same error is
    /// answered without reaching out again.
    failed: Option<(Instant, String)>,
}

#[derive(Debug)]
struct Fetched {
    keys: Vec<VerifyKey>,
    fetched_at: Instant,
    max_age: Duration,
}

/// A registered client at run time.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) scopes: ScopeSet,
    source: KeySource,
}

#[derive(Debug)]
enum KeySource {
    Static(Vec<VerifyKey>),
    Remote {
        url: Url,
        cache: tokio::sync::Mutex<RemoteCache>,
    },
}

impl Client {
    pub(crate) fn new(config: ClientConfig) -> Self {
        let source = match config.keys {
            ClientKeys::Static(keys) => KeySource::Static(keys),
            ClientKeys::JwksUrl(url) => KeySource::Remote {
                url,
                cache: tokio::sync::Mutex::new(RemoteCache::default()),
            },
        };
        Client {
            id: config.id,
            scopes: config.scopes,
            source,
        }
    }

    /// The registered JWK Set URL, if the client has one.
    pub(crate) fn jwks_url(&self) -> Option<&Url> {
        match &self.source {
            KeySource::Static(_) => None,
            KeySource::Remote { url, .. } => Some(url),
        }
    }

    /// The client's keys. For a JWK Set URL: the cached set while fresh; fetched when stale;
    /// and fetched again when `kid` names a key the cached set lacks (key rotation), but at
    /// most once per `refetch_interval`, so that assertions naming made-up `kid`s (which
    /// anyone can send, signed or not) cannot make the sandbox fetch the URL again and again.
    pub(crate) async fn keys(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
        refetch_interval: Duration,
    ) -> Result<Vec<VerifyKey>, String> {
        let (url, cache) = match &self.source {
            KeySource::Static(keys) => return Ok(keys.clone()),
            KeySource::Remote { url, cache } => (url, cache),
        };
        let mut cache = cache.lock().await;
        if let Some(fetched) = cache.fetched.as_ref() {
            let age = fetched.fetched_at.elapsed();
            let fresh = age < fetched.max_age;
            let knows_kid = kid.is_none_or(|k| fetched.keys.iter().any(|key| key.kid == k));
            if fresh && (knows_kid || age < refetch_interval) {
                if !knows_kid {
                    tracing::debug!(target: "epic_fhir_sandbox::auth", client = %self.id, ?kid, "unknown kid: the JWK Set was fetched too recently to fetch it again");
                }
                return Ok(fetched.keys.clone());
            }
        }
        if let Some((at, error)) = &cache.failed {
            if at.elapsed() < refetch_interval {
                return Err(format!(
                    "{error} (a fetch failed {} ms ago; it is tried again at most every {} s)",
                    at.elapsed().as_millis(),
                    refetch_interval.as_secs()
                ));
            }
        }
        match fetch_jwks(http, url).await {
            Ok(fetched) => {
                let keys = fetched.keys.clone();
                cache.fetched = Some(fetched);
                cache.failed = None;
                Ok(keys)
            }
            Err(error) => {
                cache.failed = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }
}

async fn fetch_jwks(http: &reqwest::Client, url: &Url) -> Result<Fetched, String> {
    // Checked here, at the one place the sandbox reaches out, and not only when parsing a
    // client spec: a `ClientConfig` can also be built directly with any URL.
    check_loopback(url)?;
    tracing::debug!(target: "epic_fhir_sandbox::auth", %url, "fetching JWK Set");
    let response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("JWK Set URL {url} is unreachable: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!(
            "JWK Set URL {url} answered HTTP {}",
            response.status().as_u16()
        ));
    }
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map_or(DEFAULT_JWKS_CACHE, parse_max_age);
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("JWK Set URL {url}: {}", e.without_url()))?;
    let json: Value =
        serde_json::from_slice(&body).map_err(|e| format!("JWK Set at {url} is not JSON: {e}"))?;
    let keys = parse_jwks(&json).map_err(|e| format!("JWK Set at {url}: {e}"))?;
    Ok(Fetched {
        keys,
        fetched_at: Instant::now(),
        max_age,
    })
}

/// The cache lifetime a `Cache-Control` value allows: `no-store`/`no-cache` mean none,
/// `max-age=N` means N seconds (capped at 29 hours), anything else the default.
pub(crate) fn parse_max_age(value: &str) -> Duration {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            max_age = seconds
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age.unwrap_or(DEFAULT_JWKS_CACHE).min(MAX_JWKS_CACHE)
}

/// All registered clients.
#[derive(Debug, Default)]
pub(crate) struct ClientRegistry {
    clients: std::sync::RwLock<std::collections::HashMap<String, Arc<Client>>>,
}

impl ClientRegistry {
    pub(crate) fn register(&self, config: ClientConfig) {
        let client = Arc::new(Client::new(config));
        self.clients
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(client.id.clone(), client);
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.clients
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Registered client ids with where their keys come from, for the startup banner.
    pub(crate) fn describe(&self) -> Vec<(String, String)> {
        let clients = self
            .clients
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<(String, String)> = clients
            .values()
            .map(|c| {
                let source = match &c.source {
                    KeySource::Static(keys) => {
                        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
                        format!("keys {} ({})", kids.join(", "), c.scopes)
                    }
                    KeySource::Remote { url, .. } => format!("JWK Set URL {url} ({})", c.scopes),
                };
                (c.id.clone(), source)
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        assert_eq!(parse_max_age("max-age=120"), Duration::from_secs(120));
        assert_eq!(parse_max_age("public, max-age=60"), Duration::from_secs(60));
        assert_eq!(parse_max_age("no-store"), Duration::ZERO);
        assert_eq!(parse_max_age("max-age=60, no-cache"), Duration::ZERO);
        assert_eq!(parse_max_age("public"), DEFAULT_JWKS_CACHE);
        assert_eq!(parse_max_age("max-age=9999999"), MAX_JWKS_CACHE);
    }

    #[test]
    fn client_specs() {
        assert!(ClientConfig::parse_spec("nope").is_err());
        assert!(ClientConfig::parse_spec("=x").is_err());
        let err = ClientConfig::parse_spec("c=https://example.org/jwks.json").expect_err("remote");
        assert!(err.contains("loopback"), "{err}");
        let ok = ClientConfig::parse_spec("c=http://127.0.0.1:9/jwks.json").expect("loopback");
        assert!(matches!(ok.keys, ClientKeys::JwksUrl(_)));
        let err = ClientConfig::parse_spec("c=/nonexistent/jwks.json").expect_err("missing");
        assert!(err.contains("/nonexistent/jwks.json"), "{err}");
    }
}
