//! `epic-fhir bench`: a load generator for the sandbox and the SDK.
//!
//! By default it starts `epic-fhir sandbox` as a child process (same executable) with a fresh
//! key registered, measures its startup time and memory, then runs each workload with each
//! client, one after the other: the SDK's `FhirClient` (Backend Services auth, typed parsing)
//! and two floors with a fixed token, each reading bytes only or parsing into
//! `serde_json::Value`: a bare pooled `reqwest` loop and a hand-written HTTP/1.1 client. The
//! report says how fast each was and how the SDK compares with each floor. With `--base-url`
//! it loads an already running server instead.

mod child;
mod cpu;
mod http1;
mod report;
mod run;
mod stats;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;
use epic_fhir::auth::{AccessToken, Algorithm};
use epic_fhir::model::FhirResource;
use epic_fhir::model::Patient;
use epic_fhir::search::DatePrefix;
use epic_fhir::{FhirClient, SearchParams};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Failure;
use crate::keygen::{self, TempKeyDir};
use crate::sandbox::DataArgs;
use crate::settings::Settings;
use child::SandboxProcess;
use http1::{Endpoint, Floor};
use report::{Machine, Report, RunReport, SandboxReport};
use run::{ClientKind, Driver, Plan, Stop, Targets, Workload};

/// The client id the benchmark registers with the sandbox it starts.
const BENCH_CLIENT_ID: &str = "epic-fhir-bench";
/// How long one floor request may take before it counts as failed.
const FLOOR_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest number of concurrent workers accepted.
const MAX_CONCURRENCY: usize = 4096;

/// Flags of `epic-fhir bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Workloads to run, in order, comma-separated: read (GET Patient/{id}), search
    /// (GET Observation?patient={id}&category=vital-signs&_count=50), mixed (both, alternating).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "read,search")]
    workload: Vec<Workload>,
    /// Clients to run each workload with, in order, comma-separated: sdk, reqwest-bytes,
    /// reqwest-json (a bare pooled reqwest loop with a fixed token), floor-bytes, floor-json
    /// (a minimal hand-written HTTP/1.1 client).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sdk,reqwest-bytes,reqwest-json,floor-bytes,floor-json"
    )]
    clients: Vec<ClientKind>,
    /// Concurrent requests (workers), K.
    #[arg(long, short = 'k', default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds per run (after the warm-up).
    #[arg(long, value_parser = parse_seconds, default_value = "10", conflicts_with = "requests")]
    duration: Duration,
    /// Measure this many requests per run instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Unmeasured warm-up seconds at the start of each run.
    #[arg(long, value_parser = parse_seconds_or_zero, default_value = "1")]
    warmup: Duration,
    /// The data of the sandbox the benchmark starts.
    #[command(flatten)]
    sandbox_data: DataArgs,
    /// An extra flag for the sandbox process, e.g. `--sandbox-arg=--session-idle=5`;
    /// repeatable.
    #[arg(long = "sandbox-arg", value_name = "ARG", allow_hyphen_values = true)]
    sandbox_args: Vec<String>,
    /// Seconds to wait for the sandbox to load its data and listen.
    #[arg(long, value_parser = parse_seconds, default_value = "600")]
    startup_timeout: Duration,
    /// Request at most this many patients (ids found by a Patient search on birthdate).
    #[arg(long, default_value_t = 10_000)]
    max_patients: usize,
    /// Request these patient ids instead of searching for them; repeatable.
    #[arg(long = "patient", value_name = "ID")]
    patient_ids: Vec<String>,
    /// Load an already running server at this FHIR base URL instead of starting a sandbox
    /// (only a server you are allowed to load).
    #[arg(long)]
    base_url: Option<String>,
    /// The app's client id on that server.
    #[arg(long, requires = "base_url")]
    client_id: Option<String>,
    /// The PEM private key registered for that client.
    #[arg(long, requires = "base_url")]
    private_key: Option<PathBuf>,
    /// The key's `kid` as registered (default: its RFC 7638 thumbprint).
    #[arg(long, requires = "base_url")]
    key_id: Option<String>,
    /// The token endpoint (default: discovered from the base URL).
    #[arg(long, requires = "base_url")]
    token_url: Option<String>,
    /// Scopes to request.
    #[arg(long, requires = "base_url")]
    scope: Option<String>,
    /// Print Markdown tables (for PERFORMANCE.md) on stdout instead of the JSON report.
    #[arg(long)]
    markdown: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
}

fn parse_seconds_or_zero(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("`{text}` must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let duration = parse_seconds_or_zero(text)?;
    if duration.is_zero() {
        return Err(format!("`{text}` must be more than 0 seconds"));
    }
    Ok(duration)
}

/// A server to load: the sandbox process started here, or one named by flags.
struct Target {
    settings: Settings,
    base_url: String,
    sandbox: Option<(SandboxProcess, SandboxReport)>,
    _keys: Option<TempKeyDir>,
}

impl BenchArgs {
    fn validate(&self) -> Result<(), Failure> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(Failure::usage(anyhow!(
                "--concurrency must be between 1 and {MAX_CONCURRENCY}, not {}",
                self.concurrency
            )));
        }
        if self.requests == Some(0) {
            return Err(Failure::usage(anyhow!("--requests must be at least 1")));
        }
        if self.max_patients == 0 {
            return Err(Failure::usage(anyhow!("--max-patients must be at least 1")));
        }
        if self.base_url.is_some()
            && !(self.sandbox_data.data.is_empty() && self.sandbox_args.is_empty())
        {
            return Err(Failure::usage(anyhow!(
                "--data and --sandbox-arg configure the sandbox the benchmark starts; they cannot be combined with --base-url"
            )));
        }
        if let Some(base) = &self.base_url {
            let plain_http = base
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"));
            if !plain_http && self.clients.iter().any(|c| c.is_http1()) {
                return Err(Failure::usage(anyhow!(
                    "the floor clients speak plain HTTP/1.1 only and {base} is not http://: pass --clients sdk,reqwest-bytes,reqwest-json"
                )));
            }
        }
        if let Some(dir) = self.sandbox_data.data.iter().find(|dir| !dir.is_dir()) {
            return Err(Failure::usage(anyhow!(
                "--data {}: not a directory",
                dir.display()
            )));
        }
        Ok(())
    }

    fn stop(&self) -> Stop {
        match self.requests {
            Some(n) => Stop::Requests(n),
            None => Stop::After(self.duration),
        }
    }

    /// Starts the sandbox process with a fresh key registered.
    async fn start_sandbox(&self) -> Result<Target, Failure> {
        let keys = TempKeyDir::create("epic-fhir-bench").map_err(Failure::remote)?;
        let key = keygen::generate(Algorithm::RS384, None, None).map_err(Failure::remote)?;
        let files = keygen::write_files(keys.path(), &key, false).map_err(Failure::remote)?;
        let exe = std::env::current_exe()
            .context("cannot find the epic-fhir executable to start the sandbox with")
            .map_err(Failure::remote)?;
        let mut args: Vec<OsString> = vec!["sandbox".into(), "--addr".into(), "127.0.0.1:0".into()];
        args.extend(self.sandbox_data.to_args());
        args.extend(self.sandbox_args.iter().map(OsString::from));
        let mut client_spec = OsString::from(format!("{BENCH_CLIENT_ID}="));
        client_spec.push(files.jwks_json.as_os_str());
        args.push("--client".into());
        args.push(client_spec);
        let command: Vec<String> = std::iter::once(exe.display().to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        eprintln!("Starting the sandbox: {}", command.join(" "));
        let timeout = self.startup_timeout;
        let process =
            tokio::task::spawn_blocking(move || SandboxProcess::start(&exe, &args, timeout))
                .await
                .map_err(|e| Failure::remote(anyhow!("the sandbox start task failed: {e}")))?
                .map_err(Failure::remote)?;
        let description = &process.description;
        let text = |key: &str| description.get(key).and_then(|v| v.as_str());
        let number = |key: &str| description.get(key).and_then(serde_json::Value::as_u64);
        let base_url = text("base_url")
            .ok_or_else(|| Failure::remote(anyhow!("the sandbox did not say its base_url")))?
            .to_owned();
        let token_url = text("token_url")
            .ok_or_else(|| Failure::remote(anyhow!("the sandbox did not say its token_url")))?
            .to_owned();
        let report = SandboxReport {
            command,
            startup_seconds: process.startup.as_secs_f64(),
            load_seconds: description
                .get("load_seconds")
                .and_then(serde_json::Value::as_f64),
            resources: number("resources"),
            counts: description
                .get("counts")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            store_bytes: number("store_bytes"),
            store_bytes_per_resource: number("store_bytes_per_resource"),
            reported_rss_bytes: number("process_rss_bytes"),
            memory_after_load: process.memory(),
            memory_after_runs: None,
        };
        eprintln!(
            "Sandbox ready in {:.2} s with {} resources at {base_url}",
            report.startup_seconds,
            report
                .resources
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        );
        let settings = Settings {
            base_url: Some(base_url.clone()),
            client_id: Some(BENCH_CLIENT_ID.to_owned()),
            private_key: Some(files.private_pem),
            key_id: None,
            token_url: Some(token_url),
            scope: None,
        };
        Ok(Target {
            settings,
            base_url,
            sandbox: Some((process, report)),
            _keys: Some(keys),
        })
    }

    /// Names an external server, discovering its token endpoint once so that every run's
    /// fresh authentication starts from the same place.
    async fn external(&self, base_url: &str) -> Result<Target, Failure> {
        let mut settings = Settings {
            base_url: Some(base_url.to_owned()),
            client_id: self.client_id.clone(),
            private_key: self.private_key.clone(),
            key_id: self.key_id.clone(),
            token_url: self.token_url.clone(),
            scope: self.scope.clone(),
        };
        if settings.token_url.is_none() {
            let auth = settings.auth().await?;
            settings.token_url = Some(auth.token_url().to_string());
        }
        Ok(Target {
            settings,
            base_url: base_url.to_owned(),
            sandbox: None,
            _keys: None,
        })
    }
}

/// An SDK client with fresh authentication, so that its token count covers one run only.
async fn sdk_client(
    settings: &Settings,
) -> Result<(FhirClient, epic_fhir::auth::BackendServicesAuth), Failure> {
    let auth = settings.auth().await?;
    let base = settings
        .base_url
        .as_deref()
        .ok_or_else(|| Failure::usage(anyhow!("no FHIR base URL")))?;
    let client = FhirClient::builder(base)
        .backend_services(auth.clone())
        .build()?;
    Ok((client, auth))
}

/// The patients to request: the given ids, or the first `max` found by a Patient search on
/// birth date (Epic's rules want a demographic parameter; every patient has a birth date).
async fn patient_ids(
    client: &FhirClient,
    given: &[String],
    max: usize,
) -> Result<Vec<String>, Failure> {
    if !given.is_empty() {
        return Ok(given.iter().take(max).cloned().collect());
    }
    let params = SearchParams::new()
        .date("birthdate", DatePrefix::Ge, "1800")
        .count(1000);
    let patients: Vec<Patient> = client.search_all(&params, Some(max)).await?;
    let ids: Vec<String> = patients
        .iter()
        .filter_map(|p| FhirResource::id(p).map(str::to_owned))
        .collect();
    if ids.is_empty() {
        return Err(Failure::remote(anyhow!(
            "the server has no patient to request (Patient?birthdate=ge1800 found none): pass --patient ID"
        )));
    }
    Ok(ids)
}

/// What every run shares.
struct RunContext<'a> {
    args: &'a BenchArgs,
    settings: &'a Settings,
    endpoint: Option<&'a Endpoint>,
    token: &'a AccessToken,
    targets: &'a Arc<Targets>,
    server_pid: Option<u32>,
}

/// Runs one workload with one client kind and adds the client's counters.
async fn one_run(
    context: &RunContext<'_>,
    workload: Workload,
    client: ClientKind,
) -> Result<RunReport, Failure> {
    let RunContext {
        args,
        settings,
        endpoint,
        token,
        targets,
        server_pid,
    } = *context;
    let concurrency = args.concurrency;
    let plan = Plan {
        warmup: args.warmup,
        stop: args.stop(),
        server_pid,
    };
    eprintln!(
        "Running {} with {} (K={}, warm-up {:?}, {})…",
        workload.as_str(),
        client.as_str(),
        concurrency,
        plan.warmup,
        match plan.stop {
            Stop::After(d) => format!("{d:?}"),
            Stop::Requests(n) => format!("{n} requests"),
        }
    );
    let (drivers, sdk) = match client {
        ClientKind::Sdk => {
            let (fhir, auth) = sdk_client(settings).await?;
            let drivers = (0..concurrency)
                .map(|_| Driver::Sdk(fhir.clone()))
                .collect();
            (drivers, Some((fhir, auth)))
        }
        ClientKind::ReqwestBytes | ClientKind::ReqwestJson => {
            let base = settings
                .base_url
                .clone()
                .ok_or_else(|| Failure::usage(anyhow!("no base URL to load")))?;
            // Like the SDK's pool: keep-alive, no redirects, the same timeouts.
            let http = reqwest::Client::builder()
                .connect_timeout(epic_fhir::DEFAULT_CONNECT_TIMEOUT)
                .timeout(FLOOR_REQUEST_TIMEOUT)
                .tcp_nodelay(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(Failure::remote)?;
            let base: Arc<str> = Arc::from(base.trim_end_matches('/'));
            let authorization: Arc<str> = Arc::from(format!("Bearer {}", token.expose_secret()));
            let drivers = (0..concurrency)
                .map(|_| Driver::Reqwest {
                    client: http.clone(),
                    base: Arc::clone(&base),
                    authorization: Arc::clone(&authorization),
                    parse_json: client == ClientKind::ReqwestJson,
                })
                .collect();
            (drivers, None)
        }
        ClientKind::FloorBytes | ClientKind::FloorJson => {
            let endpoint = endpoint.ok_or_else(|| {
                Failure::usage(anyhow!("the floor clients need a plain http:// server"))
            })?;
            let drivers = (0..concurrency)
                .map(|_| Driver::Floor {
                    floor: Box::new(Floor::new(
                        endpoint.clone(),
                        token.expose_secret(),
                        FLOOR_REQUEST_TIMEOUT,
                    )),
                    parse_json: client == ClientKind::FloorJson,
                })
                .collect();
            (drivers, None)
        }
    };
    let measurement = run::run(plan, workload, targets, drivers)
        .await
        .map_err(Failure::remote)?;
    Ok(RunReport {
        workload,
        client,
        concurrency,
        measurement,
        token_requests: sdk.as_ref().map(|(_, auth)| auth.token_requests()),
        http_requests_sent: sdk.as_ref().map(|(fhir, _)| fhir.requests_sent()),
        retries: sdk.as_ref().map(|(fhir, _)| fhir.retries()),
    })
}

fn write_report(path: &Path, json: &str) -> Result<(), Failure> {
    std::fs::write(path, format!("{json}\n"))
        .with_context(|| format!("cannot write the report to {}", path.display()))
        .map_err(Failure::usage)
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), Failure> {
    args.validate()?;
    let load_average_before = report::load_average();
    let started_at = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let build = if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; build with --release for meaningful numbers");
        "debug"
    } else {
        "release"
    };
    let mut target = match &args.base_url {
        Some(base) => args.external(base).await?,
        None => args.start_sandbox().await?,
    };
    let base = url::Url::parse(&target.base_url)
        .with_context(|| format!("invalid base URL {}", target.base_url))
        .map_err(Failure::usage)?;
    let endpoint = if args.clients.iter().any(|c| c.is_http1()) {
        Some(Endpoint::resolve(&base).await.map_err(Failure::usage)?)
    } else {
        None
    };

    // One authentication for the set-up: it finds the patients and fetches the floor's
    // fixed token. Each SDK run then starts from its own fresh authentication.
    let (setup_client, setup_auth) = sdk_client(&target.settings).await?;
    let token = setup_auth.access_token().await?;
    let ids = patient_ids(&setup_client, &args.patient_ids, args.max_patients).await?;
    let targets = Arc::new(Targets::new(ids));
    eprintln!("Requesting {} patients", targets.len());
    drop(setup_client);

    let context = RunContext {
        args: &args,
        settings: &target.settings,
        endpoint: endpoint.as_ref(),
        token: &token,
        targets: &targets,
        server_pid: target.sandbox.as_ref().map(|(process, _)| process.pid()),
    };
    let mut runs = Vec::new();
    for &workload in &args.workload {
        for &client in &args.clients {
            let run = one_run(&context, workload, client).await?;
            if run.measurement.errors > 0 {
                eprintln!(
                    "warning: {} of {} {} requests with {} failed",
                    run.measurement.errors,
                    run.measurement.requests,
                    workload.as_str(),
                    client.as_str()
                );
            }
            runs.push(run);
        }
    }

    let sandbox = target.sandbox.take().map(|(process, mut report)| {
        report.memory_after_runs = process.memory();
        // Dropping the process kills it.
        drop(process);
        report
    });
    let report = Report {
        tool: "epic-fhir bench",
        version: env!("CARGO_PKG_VERSION"),
        build,
        started_at,
        machine: Machine::detect(),
        load_average_before,
        load_average_after: report::load_average(),
        target: if sandbox.is_some() {
            "sandbox"
        } else {
            "external"
        },
        base_url: target.base_url.clone(),
        sandbox,
        settings: report::Settings {
            concurrency: args.concurrency,
            warmup_seconds: args.warmup.as_secs_f64(),
            duration_seconds: args
                .requests
                .is_none()
                .then_some(args.duration.as_secs_f64()),
            requests: args.requests,
            workloads: args.workload.clone(),
            clients: args.clients.clone(),
        },
        patients: targets.len(),
        example_search: targets.example_search().map(str::to_owned),
        ratios: report::ratios(&runs),
        runs,
    };
    let json = serde_json::to_string_pretty(&report).map_err(Failure::remote)?;
    if let Some(path) = &args.report {
        write_report(path, &json)?;
    }
    eprint!("{}", report::table(&report));
    if args.markdown {
        crate::output::print_text(&report::markdown(&report))
    } else {
        crate::output::print_line(&json)
    }
}
