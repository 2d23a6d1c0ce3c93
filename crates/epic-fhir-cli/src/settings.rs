//! Connection settings: flags, then `EPIC_*` environment variables, then a `--config` TOML file.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;
use epic_fhir::auth::{BackendServicesAuth, SigningKey};
use serde::Deserialize;

use crate::Failure;

/// How to reach and authenticate with a FHIR server.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectionArgs {
    /// FHIR R4 base URL, e.g. https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4
    #[arg(long, env = "EPIC_FHIR_BASE_URL")]
    pub(crate) base_url: Option<String>,
    /// The app's client id.
    #[arg(long, env = "EPIC_CLIENT_ID")]
    pub(crate) client_id: Option<String>,
    /// Path to the PEM private key that signs client assertions.
    #[arg(long, env = "EPIC_PRIVATE_KEY")]
    pub(crate) private_key: Option<PathBuf>,
    /// The key's `kid` as registered (default: the key's RFC 7638 thumbprint).
    #[arg(long, env = "EPIC_KEY_ID")]
    pub(crate) key_id: Option<String>,
    /// Token endpoint URL (default: discovered from the base URL).
    #[arg(long, env = "EPIC_TOKEN_URL")]
    pub(crate) token_url: Option<String>,
    /// Scopes to request, space-separated, e.g. "system/Patient.read system/Observation.read".
    #[arg(long, env = "EPIC_SCOPE")]
    pub(crate) scope: Option<String>,
    /// A TOML file with any of: base_url, client_id, private_key, key_id, token_url, scope.
    #[arg(long, env = "EPIC_FHIR_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// A user session from `epic-fhir login` (default when no private key is configured:
    /// $EPIC_FHIR_SESSION, else ~/.config/epic-fhir/session.json, if it exists).
    #[arg(long, env = "EPIC_FHIR_SESSION")]
    pub(crate) session: Option<PathBuf>,
}

/// Settings after merging flags, environment and the config file; also the shape of the
/// config file itself, whose keys are these field names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    pub(crate) base_url: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) private_key: Option<PathBuf>,
    pub(crate) key_id: Option<String>,
    pub(crate) token_url: Option<String>,
    pub(crate) scope: Option<String>,
}

impl ConnectionArgs {
    /// Merges the sources: a flag or variable wins over the config file.
    pub(crate) fn resolve(&self) -> Result<Settings, Failure> {
        let file = match &self.config {
            Some(path) => read_config(path).map_err(Failure::usage)?,
            None => Settings::default(),
        };
        let config_dir = self
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        // A key path in the config file is relative to the file, not to the working directory.
        let file_key = file.private_key.map(|p| match &config_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        });
        Ok(Settings {
            base_url: self.base_url.clone().or(file.base_url),
            client_id: self.client_id.clone().or(file.client_id),
            private_key: self.private_key.clone().or(file_key),
            key_id: self.key_id.clone().or(file.key_id),
            token_url: self.token_url.clone().or(file.token_url),
            scope: self.scope.clone().or(file.scope),
        })
    }
}

fn read_config(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
}

impl Settings {
    /// Builds Backend Services authentication from the settings, discovering the token URL
    /// from the base URL when none is given.
    pub(crate) async fn auth(&self) -> Result<BackendServicesAuth, Failure> {
        let client_id = self.client_id.clone().ok_or_else(|| {
            Failure::usage(anyhow!(
                "no client id: pass --client-id or set EPIC_CLIENT_ID"
            ))
        })?;
        let key_path = self.private_key.as_ref().ok_or_else(|| {
            Failure::usage(anyhow!(
                "no private key: pass --private-key PATH or set EPIC_PRIVATE_KEY (make one with `epic-fhir keygen`)"
            ))
        })?;
        let mut key = SigningKey::from_pem_file(key_path)
            .with_context(|| format!("cannot use private key {}", key_path.display()))
            .map_err(Failure::usage)?;
        if let Some(kid) = &self.key_id {
            key = key.with_kid(kid.clone());
        }
        let mut builder = BackendServicesAuth::builder(client_id, key);
        if let Some(scope) = &self.scope {
            builder = builder.scope(scope.clone());
        }
        builder = match (&self.token_url, &self.base_url) {
            (Some(token_url), _) => builder.token_url(token_url),
            (None, Some(base)) => builder.discover(base).await?,
            (None, None) => {
                return Err(Failure::usage(anyhow!(
                    "no token URL: pass --token-url, or --base-url to discover it (or set EPIC_TOKEN_URL / EPIC_FHIR_BASE_URL)"
                )));
            }
        };
        Ok(builder.build()?)
    }
}
