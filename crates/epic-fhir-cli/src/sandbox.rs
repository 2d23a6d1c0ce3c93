//! `epic-fhir sandbox`: run the local Epic-compatible server until Ctrl-C.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use epic_fhir_sandbox::auth::{AppConfig, ClientConfig, ScopeSet, UserConfig};
use epic_fhir_sandbox::{Faults, Sandbox, SandboxConfig, ScopeGrant};
use serde_json::json;

use crate::Failure;

/// What the sandbox serves: flags of `epic-fhir sandbox`, shared with `epic-fhir bench`, which
/// passes them on to the sandbox it starts.
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// Synthetic patients to generate (Epic's seven named patients included); 0 for none.
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A directory of NDJSON files (gzip too) or FHIR Bundles to load; repeatable.
    #[arg(long = "data", value_name = "DIR")]
    pub(crate) data: Vec<PathBuf>,
}

impl DataArgs {
    /// The same flags as arguments of `epic-fhir sandbox`.
    pub(crate) fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--patients".into(),
            self.patients.to_string().into(),
            "--seed".into(),
            self.seed.to_string().into(),
        ];
        for dir in &self.data {
            args.push("--data".into());
            args.push(dir.clone().into_os_string());
        }
        args
    }
}

/// Flags of `epic-fhir sandbox`.
#[derive(Debug, Args)]
pub(crate) struct SandboxArgs {
    /// Address to listen on (loopback unless you really mean otherwise).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    /// Register a client: ID=PATH (JWK Set JSON, PEM public key or PEM certificate) or ID=URL
    /// (a JWK Set URL on loopback); repeatable.
    #[arg(long = "client", value_name = "ID=KEYS")]
    clients: Vec<String>,
    /// Limit a client's scopes: ID=SCOPES, e.g. "my-app=system/Patient.read system/Observation.rs".
    /// Default for every client: system/*.read.
    #[arg(long = "client-scopes", value_name = "ID=SCOPES")]
    client_scopes: Vec<String>,
    /// Register a SMART app (public, PKCE): ID=REDIRECT_URI[,REDIRECT_URI...]; repeatable. A
    /// loopback redirect URI without a port (http://127.0.0.1/callback) matches any port.
    #[arg(long = "app", value_name = "ID=REDIRECT_URIS")]
    apps: Vec<String>,
    /// Make an --app confidential with a client secret (HTTP Basic): ID=SECRET.
    #[arg(long = "app-secret", value_name = "ID=SECRET")]
    app_secrets: Vec<String>,
    /// Make an --app confidential with keys (private_key_jwt): ID=PATH (JWK Set, PEM public key
    /// or certificate) or ID=URL (a JWK Set URL on loopback).
    #[arg(long = "app-jwks", value_name = "ID=PATH_OR_URL")]
    app_jwks: Vec<String>,
    /// The URL the EHR launcher opens for an --app (with ?iss=...&launch=...): ID=LAUNCH_URL.
    #[arg(long = "app-launch", value_name = "ID=LAUNCH_URL")]
    app_launches: Vec<String>,
    /// Add a MyChart-style user: NAME=PATIENT_ID:PASSWORD; repeatable. One user per Epic named
    /// patient (fhircamila, fhirderrick...) exists by default, with the password printed at
    /// startup.
    #[arg(long = "user", value_name = "NAME=PATIENT_ID:PASSWORD")]
    users: Vec<String>,
    /// The password of the default users (default: a random one, printed at startup).
    #[arg(long, value_name = "PASSWORD")]
    user_password: Option<String>,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// Idle time after which search sessions (next links) expire, in seconds.
    #[arg(long, default_value_t = 600)]
    session_idle: u64,
    /// Latency added to every FHIR response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of FHIR requests answered 503 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share of FHIR requests answered 429 with Retry-After (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Retry-After of throttled responses, in seconds.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Share of FHIR responses cut off mid-body (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Answer invalid_client with 401 instead of 400 (Epic has been seen doing both).
    #[arg(long)]
    invalid_client_401: bool,
    /// Behave as a generic FHIR R4 / SMART server instead of as Epic: no required search
    /// parameters, `_lastUpdated` and bulk `_since` honoured, JSON for a missing Accept, the
    /// server's own name in metadata, requested scopes granted (not the registration).
    #[arg(long)]
    no_epic_rules: bool,
    /// Grant the requested scopes (narrowed to the registration; SMART's behaviour) instead of
    /// the registration whatever was asked (Epic's). Implied by --no-epic-rules.
    #[arg(long)]
    smart_scopes: bool,
    /// The most parameters one search (or export kick-off) may carry.
    #[arg(long, default_value_t = 100)]
    max_search_params: usize,
    /// The most warning entries listed in one searchset (the rest are counted).
    #[arg(long, default_value_t = 20)]
    max_warnings: usize,
    /// Memory the search sessions behind next links may hold, in MiB (oldest dropped beyond).
    #[arg(long, default_value_t = 256)]
    session_memory_mib: usize,
    /// Least time between two fetches of a JWK Set URL caused by an unknown kid, in seconds.
    #[arg(long, default_value_t = 10)]
    jwks_refetch_interval: u64,
    /// Largest request body accepted, in MiB.
    #[arg(long, default_value_t = 8)]
    max_body_mib: usize,
    /// Bulk export: resources per NDJSON file (Epic: about 3,000).
    #[arg(long, default_value_t = 3000)]
    bulk_file_size: usize,
    /// Bulk export: resources the background job prepares per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    bulk_pace: u32,
    /// Bulk export: the Retry-After, in seconds, that status polls are given while a job runs.
    #[arg(long, default_value_t = 1)]
    bulk_poll_interval: u64,
    /// Bulk export: answer system-level /$export with 404, as Epic does.
    #[arg(long)]
    no_system_export: bool,
    /// Bulk export: allow one export per Group per client within this many seconds (Epic: 86400).
    #[arg(long)]
    group_export_window: Option<u64>,
    /// Bulk export: the most jobs one client may hold (running, or finished and not deleted).
    #[arg(long, default_value_t = 5)]
    bulk_jobs_per_client: usize,
    /// Bulk export: how long a finished job and its files are kept, in seconds (Epic: 14 days).
    #[arg(long, default_value_t = 14 * 24 * 3600)]
    bulk_retention: u64,
    /// Bulk export: memory all jobs together may hold, in MiB.
    #[arg(long, default_value_t = 512)]
    bulk_memory_mib: usize,
}

impl SandboxArgs {
    fn config(&self) -> Result<SandboxConfig, Failure> {
        let mut config = SandboxConfig::default();
        config.addr = self.addr;
        config.patients = self.data.patients;
        config.seed = self.data.seed;
        config.data_dirs.clone_from(&self.data.data);
        config.token_lifetime = Duration::from_secs(self.token_lifetime);
        config.session_idle_timeout = Duration::from_secs(self.session_idle);
        config.invalid_client_status = if self.invalid_client_401 { 401 } else { 400 };
        config.epic_rules = !self.no_epic_rules;
        if self.smart_scopes {
            config.scope_grant = Some(ScopeGrant::Requested);
        }
        config.max_search_params = self.max_search_params;
        config.max_outcome_warnings = self.max_warnings;
        config.session_memory_budget = self.session_memory_mib.saturating_mul(1 << 20);
        config.jwks_refetch_interval = Duration::from_secs(self.jwks_refetch_interval);
        config.max_body_bytes = self.max_body_mib.saturating_mul(1 << 20);
        config.faults = Faults {
            latency: Duration::from_millis(self.latency_ms),
            error_rate: self.error_rate,
            throttle_rate: self.throttle_rate,
            retry_after: Duration::from_secs(self.retry_after),
            drop_rate: self.drop_rate,
            ..Faults::default()
        };
        config
            .faults
            .validate()
            .map_err(|e| Failure::usage(anyhow!(e)))?;
        config.bulk.max_resources_per_file = self.bulk_file_size;
        config.bulk.pace_resources_per_second = self.bulk_pace;
        config.bulk.poll_interval = Duration::from_secs(self.bulk_poll_interval);
        config.bulk.disable_system_export = self.no_system_export;
        config.bulk.group_export_window = self.group_export_window.map(Duration::from_secs);
        config.bulk.max_jobs_per_client = self.bulk_jobs_per_client;
        config.bulk.retention = Duration::from_secs(self.bulk_retention);
        config.bulk.memory_budget = self.bulk_memory_mib.saturating_mul(1 << 20);
        config
            .bulk
            .validate()
            .map_err(|e| Failure::usage(anyhow!(e)))?;
        for spec in &self.clients {
            let client = ClientConfig::parse_spec(spec).map_err(|e| Failure::usage(anyhow!(e)))?;
            config.clients.push(client);
        }
        config.smart.apps = AppConfig::from_flags(
            &self.apps,
            &self.app_secrets,
            &self.app_jwks,
            &self.app_launches,
        )
        .map_err(|e| Failure::usage(anyhow!(e)))?;
        for spec in &self.users {
            let user = UserConfig::parse_spec(spec).map_err(|e| Failure::usage(anyhow!(e)))?;
            config.smart.users.push(user);
        }
        config
            .smart
            .default_password
            .clone_from(&self.user_password);
        for spec in &self.client_scopes {
            let (id, scopes) = spec.split_once('=').ok_or_else(|| {
                Failure::usage(anyhow!("--client-scopes `{spec}` must be ID=SCOPES"))
            })?;
            let scopes = ScopeSet::parse(scopes)
                .map_err(|e| Failure::usage(anyhow!("--client-scopes {id}: {e}")))?;
            let client = config
                .clients
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or_else(|| {
                    Failure::usage(anyhow!(
                        "--client-scopes names {id}, which no --client registers"
                    ))
                })?;
            *client = client.clone().with_scopes(scopes);
        }
        Ok(config)
    }
}

/// The resident set size of this process, from `/proc/self/status` (Linux), in bytes.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A description of a started sandbox: URLs, clients, data, a few patient ids.
pub(crate) fn describe(sandbox: &Sandbox) -> serde_json::Value {
    let data = sandbox.data();
    let patients: Vec<serde_json::Value> = data
        .generated
        .iter()
        .flat_map(|generated| &generated.named_patients)
        .map(|p| json!({"name": p.name, "id": p.id, "mrn": p.mrn}))
        .collect();
    // Every Group the store holds, loaded ones included: the ids bulk export needs.
    let groups: Vec<serde_json::Value> = sandbox
        .groups()
        .into_iter()
        .map(|g| json!({"id": g.id, "name": g.name, "members": g.members}))
        .collect();
    let apps: Vec<serde_json::Value> = sandbox
        .apps()
        .into_iter()
        .map(|a| json!({"id": a.id, "kind": a.kind, "redirect_uris": a.redirect_uris, "launch_url": a.launch_url}))
        .collect();
    // The passwords are printed on purpose: they open synthetic records on this machine only,
    // and a developer needs them to log in.
    let users: Vec<serde_json::Value> = sandbox
        .users()
        .into_iter()
        .map(|u| json!({"username": u.username, "patient": u.patient_id, "password": u.password}))
        .collect();
    json!({
        "base_url": sandbox.base_url().as_str(),
        "token_url": sandbox.token_url().as_str(),
        "authorize_url": sandbox.authorize_url().as_str(),
        "launcher_url": sandbox.launcher_url().as_str(),
        "apps": apps,
        "users": users,
        "clients": sandbox.clients().into_iter().map(|(id, keys)| json!({"id": id, "keys": keys})).collect::<Vec<_>>(),
        "resources": data.total,
        "counts": data.counts,
        "load_seconds": data.load_time.as_secs_f64(),
        "store_bytes": data.memory_bytes,
        "store_bytes_per_resource": data.bytes_per_resource(),
        "process_rss_bytes": resident_bytes(),
        "patients": patients,
        "groups": groups,
    })
}

pub(crate) async fn run(args: SandboxArgs) -> Result<(), Failure> {
    let config = args.config()?;
    let sandbox = Sandbox::start(config).await.map_err(|e| match e {
        epic_fhir_sandbox::StartError::Bind { .. } => Failure::remote(e),
        other => Failure::usage(other),
    })?;
    match crate::output::print_json(&describe(&sandbox)) {
        // Nobody reads the description: the sandbox serves all the same.
        Ok(()) | Err(Failure::Closed) => {}
        Err(error) => return Err(error),
    }
    if sandbox.clients().is_empty() {
        eprintln!(
            "No client is registered: make a key with `epic-fhir keygen --out keys` and restart with --client my-app=keys/jwks.json"
        );
    }
    eprintln!(
        "Sandbox listening on {} (Ctrl-C to stop)",
        sandbox.base_url()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Failure::remote(anyhow!("cannot wait for Ctrl-C: {e}")))?;
    eprintln!("Stopping…");
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Data {
        #[command(flatten)]
        data: DataArgs,
    }

    #[test]
    fn data_flags_pass_on_unchanged() {
        let given = Data::try_parse_from([
            "sandbox",
            "--patients",
            "5",
            "--seed",
            "7",
            "--data",
            "a",
            "--data",
            "b dir",
        ])
        .expect("parses");
        let passed_on = Data::try_parse_from(
            std::iter::once(OsString::from("sandbox")).chain(given.data.to_args()),
        )
        .expect("the passed-on flags parse");
        assert_eq!(passed_on.data.patients, 5);
        assert_eq!(passed_on.data.seed, 7);
        assert_eq!(
            passed_on.data.data,
            [PathBuf::from("a"), PathBuf::from("b dir")]
        );
    }
}
