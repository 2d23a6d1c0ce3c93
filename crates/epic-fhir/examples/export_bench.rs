//! Bulk export benchmark: the SDK's `BulkExport` against a plain `reqwest` download loop.
//!
//! ```text
//! cargo run --release -p epic-fhir --example export_bench -- [--patients 3700] [--parallel 4]
//!     [--encoding identity|gzip|both] [--rounds 2] [--out DIR] [--keep] [--bare-sync]
//!     [--skip-bare]
//! ```
//!
//! The sandbox runs in a child process (this same executable with `--serve`), so the memory
//! measured is the client's alone; 3,700 generated patients make about a million resources.
//! For each encoding, the files of one export are listed from its manifest, then each round
//! runs, one after the other:
//!
//! 1. a bare loop over those files (same token, same URLs, same number of parallel
//!    downloads, chunks written to disk as they arrive through a 1 MiB buffer, no checks, no
//!    fsync; with `--bare-sync`, each file is synced to disk once written, as the SDK does);
//! 2. `BulkExport` of the same Group (kick-off, polling, parallel downloads with every line
//!    checked, fsync and atomic renames, the state file), timed from the manifest to the end
//!    so that the server's own work is not counted.
//!
//! `--skip-bare` runs only the SDK's phase (to profile it alone); no ratio is computed then.
//!
//! Each phase's folder is deleted before the next starts, so no phase pays for another's
//! pages. The peak resident memory (`VmHWM`) is reset before each phase through
//! `/proc/self/clear_refs`; CPU time comes from `/proc/self/stat`. The best round of each is
//! reported, as one JSON document on stdout and a Markdown table on stderr.

use std::error::Error;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use epic_fhir::FhirClient;
use epic_fhir::auth::{AccessToken, BackendServicesAuth, SigningKey};
use epic_fhir::bulk::{BulkExport, DownloadOptions, ExportEvent, ExportRequest, PollOptions};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

type BoxError = Box<dyn Error + Send + Sync>;
/// When the manifest arrived, and the CPU time used by then.
type Mark = (Instant, Option<f64>);

const CLIENT_ID: &str = "export-bench";
const GROUP: &str = "eAllSandboxPatients.Group3";
/// The write buffer of the bare loop, the same size as the SDK's.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    serve: bool,
    patients: usize,
    parallel: usize,
    encodings: Vec<String>,
    jwks: Option<PathBuf>,
    out: PathBuf,
    keep: bool,
    rounds: usize,
    bare_sync: bool,
    skip_bare: bool,
}

fn parse_options() -> Result<Options, BoxError> {
    let mut options = Options {
        serve: false,
        patients: 3700,
        parallel: 4,
        encodings: vec!["identity".to_owned(), "gzip".to_owned()],
        jwks: None,
        out: std::env::temp_dir().join(format!("epic-fhir-export-bench-{}", std::process::id())),
        keep: false,
        rounds: 2,
        bare_sync: false,
        skip_bare: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--serve" => options.serve = true,
            "--keep" => options.keep = true,
            "--bare-sync" => options.bare_sync = true,
            "--skip-bare" => options.skip_bare = true,
            "--patients" => options.patients = value("--patients")?.parse()?,
            "--parallel" => options.parallel = value("--parallel")?.parse()?,
            "--rounds" => options.rounds = value("--rounds")?.parse()?,
            "--jwks" => options.jwks = Some(PathBuf::from(value("--jwks")?)),
            "--out" => options.out = PathBuf::from(value("--out")?),
            "--encoding" => {
                options.encodings = match value("--encoding")?.as_str() {
                    "both" => vec!["identity".to_owned(), "gzip".to_owned()],
                    "identity" => vec!["identity".to_owned()],
                    "gzip" => vec!["gzip".to_owned()],
                    other => {
                        return Err(format!("--encoding {other}: identity, gzip or both").into());
                    }
                }
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    if options.parallel == 0 || options.rounds == 0 {
        return Err("--parallel and --rounds must be at least 1".into());
    }
    Ok(options)
}

/// A line of `/proc/self/status` in bytes (Linux), e.g. `VmHWM`.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user and system, all threads) this process has used so far, from
/// `/proc/self/stat` (Linux; clock ticks of 10 ms).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Resets the peak resident size to the current one, so the next `VmHWM` reading covers
/// only what follows. Returns whether the kernel allowed it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = if options.serve {
        runtime.block_on(serve(&options))
    } else {
        runtime.block_on(bench(&options))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// The child: a sandbox with the parent's key registered, until the parent closes stdin.
async fn serve(options: &Options) -> Result<(), BoxError> {
    let jwks_path = options.jwks.as_ref().ok_or("--serve needs --jwks")?;
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(jwks_path)?)?;
    let mut config = epic_fhir_sandbox::SandboxConfig::default();
    config.patients = options.patients;
    // The bench runs several whole-population exports one after the other; the sandbox's
    // default bounds (5 jobs per client, 512 MiB of job snapshots) are for shared use.
    config.bulk.max_jobs_per_client = 64;
    config.bulk.memory_budget = 64 << 30;
    config
        .clients
        .push(epic_fhir_sandbox::auth::ClientConfig::with_jwks(
            CLIENT_ID, &jwks,
        )?);
    let sandbox = epic_fhir_sandbox::Sandbox::start(config).await?;
    let data = sandbox.data();
    let ready = json!({
        "base_url": sandbox.base_url().as_str(),
        "resources": data.total,
        "load_seconds": data.load_time.as_secs_f64(),
        "store_bytes": data.memory_bytes,
        "rss_bytes": proc_status_bytes("VmRSS:"),
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    tokio::task::spawn_blocking(|| {
        let mut byte = [0u8; 1];
        // Returns at end of file: the parent has gone.
        while matches!(std::io::stdin().read(&mut byte), Ok(n) if n > 0) {}
    })
    .await?;
    sandbox.shutdown().await;
    Ok(())
}

/// The sandbox child process; dropping it closes its stdin, which stops it.
struct SandboxChild {
    child: Child,
    ready: Value,
}

impl SandboxChild {
    fn start(options: &Options, jwks: &Path) -> Result<SandboxChild, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--serve",
                "--patients",
                &options.patients.to_string(),
                "--jwks",
            ])
            .arg(jwks)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the sandbox")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let ready: Value = serde_json::from_str(&line)
            .map_err(|e| format!("the sandbox did not start ({e}): {line}"))?;
        Ok(SandboxChild { child, ready })
    }
}

impl Drop for SandboxChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

async fn bench(options: &Options) -> Result<(), BoxError> {
    std::fs::create_dir_all(&options.out)?;
    let key = SigningKey::generate_ec_p384()?;
    let jwks_path = options.out.join("jwks.json");
    std::fs::write(&jwks_path, serde_json::to_vec(&key.jwk_set())?)?;
    eprintln!("starting the sandbox with {} patients...", options.patients);
    let sandbox = SandboxChild::start(options, &jwks_path)?;
    let base = sandbox.ready["base_url"]
        .as_str()
        .ok_or("no base_url from the sandbox")?
        .to_owned();
    eprintln!(
        "sandbox ready: {} resources in {:.1} s",
        sandbox.ready["resources"], sandbox.ready["load_seconds"]
    );
    let auth = BackendServicesAuth::builder(CLIENT_ID, key)
        .discover(&base)
        .await?
        .build()?;

    let mut runs = Vec::new();
    for encoding in &options.encodings {
        let client = FhirClient::builder(&base)
            .backend_services(auth.clone())
            .header("Accept-Encoding", encoding)
            .build()?;
        // The files the bare loop copies: those of one export, listed by its manifest.
        let job = ExportRequest::group(GROUP).kick_off(&client).await?;
        let manifest = job.wait(&PollOptions::default(), &|_| {}).await?;
        let files: Vec<(String, String)> = manifest
            .output
            .iter()
            .chain(&manifest.error)
            .enumerate()
            .map(|(i, entry)| (entry.url.clone(), format!("{i}.ndjson")))
            .collect();
        let token = auth.access_token().await?;

        let mut sdk_samples = Vec::new();
        let mut bare_samples = Vec::new();
        for round in 1..=options.rounds {
            // Each phase starts with an empty page cache share: the previous phase's folder
            // is deleted (dropping its pages) before the next starts.
            if !options.skip_bare {
                let raw_dir = options.out.join(format!("raw-{encoding}-{round}"));
                eprintln!(
                    "[{encoding} {round}/{}] bare reqwest loop...",
                    options.rounds
                );
                reset_peak();
                let started = Instant::now();
                let cpu_start = cpu_seconds();
                let bytes = raw_download(&files, &token, &raw_dir, options, encoding).await?;
                let seconds = started.elapsed().as_secs_f64();
                bare_samples.push(json!({
                    "bytes": bytes,
                    "seconds": seconds,
                    "mib_per_second": mib(bytes) / seconds,
                    "cpu_seconds": cpu_seconds().zip(cpu_start).map(|(end, start)| end - start),
                    "peak_rss_bytes": proc_status_bytes("VmHWM:"),
                }));
                if !options.keep {
                    let _ = std::fs::remove_dir_all(&raw_dir);
                }
            }

            let sdk_dir = options.out.join(format!("sdk-{encoding}-{round}"));
            eprintln!("[{encoding} {round}/{}] SDK export...", options.rounds);
            reset_peak();
            let mark: Arc<Mutex<Option<Mark>>> = Arc::new(Mutex::new(None));
            let marker = Arc::clone(&mark);
            let started = Instant::now();
            let summary = BulkExport::new(&client, ExportRequest::group(GROUP), &sdk_dir)
                .download_options(DownloadOptions::default().with_parallel(options.parallel))
                .on_event(move |event| {
                    if matches!(event, ExportEvent::ManifestReady { .. }) {
                        if let Ok(mut at) = marker.lock() {
                            *at = Some((Instant::now(), cpu_seconds()));
                        }
                    }
                })
                .run()
                .await?;
            let finished = Instant::now();
            let cpu_end = cpu_seconds();
            let peak = proc_status_bytes("VmHWM:");
            let (manifest_at, cpu_start) = mark
                .lock()
                .map_err(|_| "poisoned")?
                .ok_or("no manifest event")?;
            let seconds = finished.duration_since(manifest_at).as_secs_f64();
            let bytes = summary.bytes + summary.errors.bytes + summary.deleted.bytes;
            if let Some(bare) = bare_samples.last().and_then(|s| s["bytes"].as_u64())
                && bytes != bare
            {
                return Err(format!(
                    "the SDK wrote {bytes} bytes, the bare loop a different amount"
                )
                .into());
            }
            sdk_samples.push(json!({
                "bytes": bytes,
                "resources": summary.resources,
                "files": summary.files + summary.errors.files,
                "seconds": seconds,
                "server_job_seconds": manifest_at.duration_since(started).as_secs_f64(),
                "mib_per_second": mib(bytes) / seconds,
                "resources_per_second": summary.resources as f64 / seconds,
                "cpu_seconds": cpu_end.zip(cpu_start).map(|(end, start)| end - start),
                "peak_rss_bytes": peak,
            }));
            if !options.keep {
                let _ = std::fs::remove_dir_all(&sdk_dir);
            }
        }
        let best = |samples: &[Value]| {
            samples
                .iter()
                .max_by(|a, b| {
                    let rate = |v: &Value| v["mib_per_second"].as_f64().unwrap_or_default();
                    rate(a).total_cmp(&rate(b))
                })
                .cloned()
                .unwrap_or(Value::Null)
        };
        let peak = |samples: &[Value]| {
            samples
                .iter()
                .filter_map(|s| s["peak_rss_bytes"].as_u64())
                .max()
        };
        let sdk = best(&sdk_samples);
        let bare = best(&bare_samples);
        let run = json!({
            "encoding": encoding,
            "parallel": options.parallel,
            "files": sdk["files"],
            "resources": sdk["resources"],
            "bytes": sdk["bytes"],
            "sdk": sdk,
            "bare_reqwest": bare,
            "sdk_to_bare_ratio": sdk["mib_per_second"].as_f64().unwrap_or_default()
                / bare["mib_per_second"].as_f64().unwrap_or(f64::NAN),
            "sdk_peak_rss_bytes": peak(&sdk_samples),
            "bare_peak_rss_bytes": peak(&bare_samples),
            "samples": {"sdk": sdk_samples, "bare_reqwest": bare_samples},
        });
        eprintln!("{:#}", run);
        runs.push(run);
    }
    let report = json!({
        "sandbox": sandbox.ready,
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "os": std::env::consts::OS,
            "out_dir": options.out,
        },
        "rounds": options.rounds,
        "bare_sync": options.bare_sync,
        "peak_reset_supported": reset_peak(),
        "runs": runs,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!();
    eprintln!(
        "| encoding | resources | MiB | SDK MiB/s | bare reqwest MiB/s | ratio | SDK CPU s | bare CPU s | SDK peak RSS MiB | bare peak RSS MiB |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|---|");
    for run in &runs {
        eprintln!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
            run["encoding"].as_str().unwrap_or_default(),
            run["resources"],
            mib(run["bytes"].as_u64().unwrap_or_default()),
            run["sdk"]["mib_per_second"].as_f64().unwrap_or_default(),
            run["bare_reqwest"]["mib_per_second"]
                .as_f64()
                .unwrap_or_default(),
            run["sdk_to_bare_ratio"].as_f64().unwrap_or_default(),
            run["sdk"]["cpu_seconds"].as_f64().unwrap_or_default(),
            run["bare_reqwest"]["cpu_seconds"]
                .as_f64()
                .unwrap_or_default(),
            mib(run["sdk_peak_rss_bytes"].as_u64().unwrap_or_default()),
            mib(run["bare_peak_rss_bytes"].as_u64().unwrap_or_default()),
        );
    }
    if !options.keep {
        let _ = std::fs::remove_dir_all(&options.out);
    }
    drop(sandbox);
    Ok(())
}

/// Downloads every `(url, name)` into `dir`, `--parallel` at a time, each chunk written as it
/// arrives (and each file synced once written, with `--bare-sync`). Returns the bytes written.
async fn raw_download(
    files: &[(String, String)],
    token: &AccessToken,
    dir: &Path,
    options: &Options,
    encoding: &str,
) -> Result<u64, BoxError> {
    tokio::fs::create_dir_all(dir).await?;
    let http = reqwest::Client::new();
    let mut running = tokio::task::JoinSet::new();
    let mut queue = files.iter().cloned();
    let mut total = 0u64;
    let sync = options.bare_sync;
    loop {
        while running.len() < options.parallel {
            let Some((url, name)) = queue.next() else {
                break;
            };
            let request = http
                .get(&url)
                .bearer_auth(token.expose_secret())
                .header(reqwest::header::ACCEPT_ENCODING, encoding.to_owned());
            let path = dir.join(name);
            running.spawn(async move {
                let response = request.send().await?.error_for_status()?;
                let mut out = tokio::io::BufWriter::with_capacity(
                    WRITE_BUFFER,
                    tokio::fs::File::create(&path).await?,
                );
                let mut stream = response.bytes_stream();
                let mut written = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    out.write_all(&chunk).await?;
                    written += chunk.len() as u64;
                }
                out.flush().await?;
                if sync {
                    out.into_inner().sync_data().await?;
                }
                Ok::<u64, BoxError>(written)
            });
        }
        match running.join_next().await {
            None => break,
            Some(done) => total += done??,
        }
    }
    Ok(total)
}
