//! The benchmark report: machine facts, the sandbox's startup and memory, one entry per run,
//! the SDK/floor ratios; rendered as JSON, as a plain table and as Markdown.

use std::fmt::Write as _;

use serde::Serialize;

use super::child::ProcessMemory;
use super::run::{ClientKind, Measurement, Workload};

/// Facts about the machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// CPUs this process may run on (`nproc`).
    pub(crate) logical_cpus: Option<usize>,
    /// `model name` from `/proc/cpuinfo`.
    pub(crate) cpu_model: Option<String>,
    /// `MemTotal` from `/proc/meminfo`.
    pub(crate) memory_total_bytes: Option<u64>,
    /// The kernel release.
    pub(crate) kernel: Option<String>,
    /// The operating system family.
    pub(crate) os: &'static str,
    /// The CPU architecture.
    pub(crate) arch: &'static str,
}

impl Machine {
    /// Reads what the platform tells (the `/proc` files on Linux; `None` elsewhere).
    pub(crate) fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Machine {
            logical_cpus: std::thread::available_parallelism()
                .ok()
                .map(std::num::NonZeroUsize::get),
            cpu_model: read("/proc/cpuinfo").and_then(|text| cpu_model(&text)),
            memory_total_bytes: read("/proc/meminfo").and_then(|text| memory_total(&text)),
            kernel: read("/proc/sys/kernel/osrelease").map(|text| text.trim().to_owned()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

/// The 1, 5 and 15-minute load averages (`/proc/loadavg`): on a shared machine they say how
/// much else was running while the numbers were taken.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    parse_load_average(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_load_average(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next()?.ok();
    Some([next()?, next()?, next()?])
}

/// The first `model name` of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn memory_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The sandbox process: what it loaded, how long it took and how much memory it holds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SandboxReport {
    /// The command line it was started with (the key path included, which is not secret: it
    /// is the public JWK Set).
    pub(crate) command: Vec<String>,
    /// From spawning the process to reading its ready message.
    pub(crate) startup_seconds: f64,
    /// Generating and loading the data, as the sandbox measured it.
    pub(crate) load_seconds: Option<f64>,
    /// Resources in the store.
    pub(crate) resources: Option<u64>,
    /// Resources per type.
    pub(crate) counts: serde_json::Value,
    /// The store's own estimate of the memory it holds.
    pub(crate) store_bytes: Option<u64>,
    /// `store_bytes` divided by `resources`.
    pub(crate) store_bytes_per_resource: Option<u64>,
    /// The resident size the sandbox reported for itself right after loading.
    pub(crate) reported_rss_bytes: Option<u64>,
    /// Its memory measured from outside once it was ready.
    pub(crate) memory_after_load: Option<ProcessMemory>,
    /// Its memory after every run.
    pub(crate) memory_after_runs: Option<ProcessMemory>,
}

/// One run: one workload through one client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunReport {
    /// The workload.
    pub(crate) workload: Workload,
    /// The client.
    pub(crate) client: ClientKind,
    /// Concurrent workers.
    pub(crate) concurrency: usize,
    /// The measurement.
    #[serde(flatten)]
    pub(crate) measurement: Measurement,
    /// Token requests the SDK made during the run (warm-up included); absent for the floors,
    /// which reuse one token fetched beforehand.
    pub(crate) token_requests: Option<u64>,
    /// HTTP requests the SDK sent during the run, warm-up and retries included.
    pub(crate) http_requests_sent: Option<u64>,
    /// Retries the SDK made during the run.
    pub(crate) retries: Option<u64>,
}

/// How the SDK compares with a floor on one workload.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratio {
    /// The workload.
    pub(crate) workload: Workload,
    /// The floor compared with.
    pub(crate) floor: ClientKind,
    /// SDK requests/s divided by the floor's: below 1 means the SDK is slower.
    pub(crate) throughput: Option<f64>,
    /// SDK median latency divided by the floor's: above 1 means the SDK is slower.
    pub(crate) p50: Option<f64>,
    /// SDK 99th-percentile latency divided by the floor's.
    pub(crate) p99: Option<f64>,
}

/// Pairs each SDK run with the floor runs of the same workload.
pub(crate) fn ratios(runs: &[RunReport]) -> Vec<Ratio> {
    let divide = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let mut ratios = Vec::new();
    for sdk in runs.iter().filter(|r| r.client == ClientKind::Sdk) {
        for floor in runs
            .iter()
            .filter(|r| r.client.is_floor() && r.workload == sdk.workload)
        {
            let latency = |pick: fn(&super::stats::LatencySummary) -> u32| {
                let (a, b) = (
                    sdk.measurement.latency_us.as_ref()?,
                    floor.measurement.latency_us.as_ref()?,
                );
                divide(f64::from(pick(a)), f64::from(pick(b)))
            };
            ratios.push(Ratio {
                workload: sdk.workload,
                floor: floor.client,
                throughput: divide(
                    sdk.measurement.requests_per_second,
                    floor.measurement.requests_per_second,
                ),
                p50: latency(|l| l.p50),
                p99: latency(|l| l.p99),
            });
        }
    }
    ratios
}

/// What was asked for.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// Concurrent workers per run.
    pub(crate) concurrency: usize,
    /// Unmeasured warm-up per run.
    pub(crate) warmup_seconds: f64,
    /// Measured time per run, when runs are timed.
    pub(crate) duration_seconds: Option<f64>,
    /// Measured requests per run, when runs are counted.
    pub(crate) requests: Option<u64>,
    /// The workloads, in order.
    pub(crate) workloads: Vec<Workload>,
    /// The clients, in order.
    pub(crate) clients: Vec<ClientKind>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Always `epic-fhir bench`.
    pub(crate) tool: &'static str,
    /// The tool's version.
    pub(crate) version: &'static str,
    /// `release` or `debug`: numbers from a debug build mean little.
    pub(crate) build: &'static str,
    /// When the benchmark started (RFC 3339, UTC).
    pub(crate) started_at: String,
    /// The machine.
    pub(crate) machine: Machine,
    /// Load averages (1, 5, 15 minutes) when the benchmark started.
    pub(crate) load_average_before: Option<[f64; 3]>,
    /// Load averages when it ended.
    pub(crate) load_average_after: Option<[f64; 3]>,
    /// `sandbox` (started by the benchmark) or `external`.
    pub(crate) target: &'static str,
    /// The FHIR base URL.
    pub(crate) base_url: String,
    /// The sandbox process, when the benchmark started one.
    pub(crate) sandbox: Option<SandboxReport>,
    /// The settings.
    pub(crate) settings: Settings,
    /// Patients the requests cycle through.
    pub(crate) patients: usize,
    /// The search of the first patient, relative to the base URL.
    pub(crate) example_search: Option<String>,
    /// The runs, in the order they ran.
    pub(crate) runs: Vec<RunReport>,
    /// SDK versus floor.
    pub(crate) ratios: Vec<Ratio>,
}

fn load_text(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "n/a".to_owned(),
        |[one, five, fifteen]| format!("{one:.2}/{five:.2}/{fifteen:.2}"),
    )
}

fn ms(micros: u32) -> String {
    format!("{:.3}", f64::from(micros) / 1000.0)
}

fn mib(bytes: u64) -> String {
    // Memory sizes stay far below 2^53 bytes.
    #[allow(clippy::cast_precision_loss)]
    let mib = bytes as f64 / (1024.0 * 1024.0);
    format!("{mib:.1} MiB")
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

fn cpu(micros_per_request: Option<f64>) -> String {
    micros_per_request.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"))
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// Latency columns of a run: p50, p90, p99, max in milliseconds.
fn latency_columns(run: &RunReport) -> [String; 4] {
    match &run.measurement.latency_us {
        Some(l) => [ms(l.p50), ms(l.p90), ms(l.p99), ms(l.max)],
        None => std::array::from_fn(|_| "n/a".to_owned()),
    }
}

/// A plain-text table for a terminal.
pub(crate) fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "epic-fhir bench {} ({} build) against {} at {}",
        report.version, report.build, report.target, report.base_url
    );
    let _ = writeln!(
        out,
        "machine: {} CPUs, {}; load average {} before, {} after; {} patients; K={}",
        optional(report.machine.logical_cpus),
        report.machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        load_text(report.load_average_before),
        load_text(report.load_average_after),
        report.patients,
        report.settings.concurrency
    );
    if let Some(sandbox) = &report.sandbox {
        let _ = writeln!(
            out,
            "sandbox: {} resources, ready in {:.2} s (load {}), store {} ({} B/resource), RSS after load {}, after runs {}",
            optional(sandbox.resources),
            sandbox.startup_seconds,
            sandbox
                .load_seconds
                .map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2} s")),
            sandbox.store_bytes.map_or_else(|| "n/a".to_owned(), mib),
            optional(sandbox.store_bytes_per_resource),
            sandbox
                .memory_after_load
                .map_or_else(|| "n/a".to_owned(), |m| mib(m.rss_bytes)),
            sandbox.memory_after_runs.map_or_else(
                || "n/a".to_owned(),
                |m| format!("{} (peak {})", mib(m.rss_bytes), mib(m.peak_rss_bytes))
            ),
        );
    }
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:>4} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>11} {:>11}",
        "workload",
        "client",
        "K",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "tokens",
        "client µs/r",
        "server µs/r"
    );
    for run in &report.runs {
        let [p50, p90, p99, max] = latency_columns(run);
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:>4} {:>9} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>6} {:>11} {:>11}",
            run.workload.as_str(),
            run.client.as_str(),
            run.concurrency,
            run.measurement.requests,
            run.measurement.errors,
            run.measurement.requests_per_second,
            p50,
            p90,
            p99,
            max,
            optional(run.token_requests).replace("n/a", "-"),
            cpu(run.measurement.client_cpu_us_per_request),
            cpu(run.measurement.server_cpu_us_per_request),
        );
        if let Some(error) = &run.measurement.first_error {
            let _ = writeln!(out, "    first error: {error}");
        }
    }
    for r in &report.ratios {
        let _ = writeln!(
            out,
            "{} sdk/{}: throughput x{}, p50 x{}, p99 x{}",
            r.workload.as_str(),
            r.floor.as_str(),
            ratio(r.throughput),
            ratio(r.p50),
            ratio(r.p99)
        );
    }
    out
}

/// Markdown tables fit for PERFORMANCE.md.
pub(crate) fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "Measured {} with `epic-fhir` {} ({} build) on {} logical CPUs ({}), {} RAM, {} {} {}.",
        report.started_at,
        report.version,
        report.build,
        optional(m.logical_cpus),
        m.cpu_model.as_deref().unwrap_or("unknown CPU"),
        m.memory_total_bytes.map_or_else(|| "n/a".to_owned(), mib),
        m.os,
        m.kernel.as_deref().unwrap_or(""),
        m.arch
    );
    let _ = writeln!(
        out,
        "Load average (1/5/15 min) {} before, {} after.",
        load_text(report.load_average_before),
        load_text(report.load_average_after)
    );
    let _ = writeln!(
        out,
        "Target: {} ({}); {} patients; warm-up {} s per run, then {}.",
        report.target,
        report.base_url,
        report.patients,
        report.settings.warmup_seconds,
        match (report.settings.duration_seconds, report.settings.requests) {
            (_, Some(n)) => format!("{n} requests"),
            (Some(d), None) => format!("{d} s measured"),
            (None, None) => "n/a".to_owned(),
        }
    );
    if let Some(s) = &report.sandbox {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| Resources | Startup (spawn to ready) | Load | RSS after load | RSS after runs (peak) | Store estimate | Store bytes/resource |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {:.2} s | {} | {} | {} | {} | {} |",
            optional(s.resources),
            s.startup_seconds,
            s.load_seconds
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} s")),
            s.memory_after_load
                .map_or_else(|| "n/a".to_owned(), |m| mib(m.rss_bytes)),
            s.memory_after_runs.map_or_else(
                || "n/a".to_owned(),
                |m| format!("{} ({})", mib(m.rss_bytes), mib(m.peak_rss_bytes))
            ),
            s.store_bytes.map_or_else(|| "n/a".to_owned(), mib),
            optional(s.store_bytes_per_resource),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| Workload | Client | K | Requests | Errors | Requests/s | p50 ms | p90 ms | p99 ms | max ms | Token requests | Client CPU µs/req | Server CPU µs/req |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for run in &report.runs {
        let [p50, p90, p99, max] = latency_columns(run);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {p50} | {p90} | {p99} | {max} | {} | {} | {} |",
            run.workload.as_str(),
            run.client.as_str(),
            run.concurrency,
            run.measurement.requests,
            run.measurement.errors,
            run.measurement.requests_per_second,
            optional(run.token_requests).replace("n/a", "–"),
            cpu(run.measurement.client_cpu_us_per_request),
            cpu(run.measurement.server_cpu_us_per_request),
        );
    }
    if !report.ratios.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| Workload | SDK vs | Throughput (SDK ÷ floor) | p50 (SDK ÷ floor) | p99 (SDK ÷ floor) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|");
        for r in &report.ratios {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.workload.as_str(),
                r.floor.as_str(),
                ratio(r.throughput),
                ratio(r.p50),
                ratio(r.p99)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::stats::LatencySummary;
    use super::*;

    #[test]
    fn reads_cpu_and_memory_facts() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        assert_eq!(
            memory_total("MemTotal:       24578040 kB\nMemFree: 1 kB\n"),
            Some(24_578_040 * 1024)
        );
        assert_eq!(memory_total("MemFree: 1 kB\n"), None);
        assert_eq!(
            parse_load_average("3.90 3.26 2.51 5/612 40123\n"),
            Some([3.90, 3.26, 2.51])
        );
        assert_eq!(parse_load_average("3.90 x"), None);
    }

    fn run(workload: Workload, client: ClientKind, rps: f64, p50: u32, p99: u32) -> RunReport {
        let mut samples = vec![p50; 98];
        samples.extend([p99, p99]);
        RunReport {
            workload,
            client,
            concurrency: 32,
            measurement: Measurement {
                requests: 100,
                errors: 0,
                first_error: None,
                elapsed_seconds: 1.0,
                requests_per_second: rps,
                latency_us: LatencySummary::from_samples(&mut samples),
                warmup_requests: 10,
                warmup_errors: 0,
                connections: client.is_floor().then_some(32),
                client_cpu_seconds: Some(0.0042),
                server_cpu_seconds: None,
                client_cpu_us_per_request: Some(42.0),
                server_cpu_us_per_request: None,
            },
            token_requests: (client == ClientKind::Sdk).then_some(1),
            http_requests_sent: None,
            retries: None,
        }
    }

    #[test]
    fn ratios_pair_the_sdk_with_each_floor_of_the_same_workload() {
        let runs = [
            run(Workload::Read, ClientKind::Sdk, 800.0, 1200, 5000),
            run(Workload::Read, ClientKind::FloorBytes, 1000.0, 1000, 4000),
            run(Workload::Read, ClientKind::FloorJson, 900.0, 1100, 4000),
            run(Workload::Search, ClientKind::FloorBytes, 500.0, 2000, 8000),
        ];
        let ratios = ratios(&runs);
        assert_eq!(ratios.len(), 2, "no SDK run for search: no ratio");
        assert_eq!(ratios[0].floor, ClientKind::FloorBytes);
        assert!((ratios[0].throughput.expect("ratio") - 0.8).abs() < 1e-9);
        assert!((ratios[0].p50.expect("ratio") - 1.2).abs() < 1e-9);
        assert!((ratios[0].p99.expect("ratio") - 1.25).abs() < 1e-9);
        assert_eq!(ratios[1].floor, ClientKind::FloorJson);
    }

    #[test]
    fn renders_tables() {
        let runs = vec![
            run(Workload::Read, ClientKind::Sdk, 800.0, 1200, 5000),
            run(Workload::Read, ClientKind::FloorBytes, 1000.0, 1000, 4000),
        ];
        let report = Report {
            tool: "epic-fhir bench",
            version: "0.1.0",
            build: "release",
            started_at: "2025-01-01T00:00:00Z".to_owned(),
            machine: Machine {
                logical_cpus: Some(2),
                cpu_model: Some("Test CPU".to_owned()),
                memory_total_bytes: Some(1 << 30),
                kernel: Some("6.1".to_owned()),
                os: "linux",
                arch: "x86_64",
            },
            load_average_before: Some([1.5, 1.0, 0.5]),
            load_average_after: None,
            target: "sandbox",
            base_url: "http://127.0.0.1:1/api/FHIR/R4".to_owned(),
            sandbox: None,
            settings: Settings {
                concurrency: 32,
                warmup_seconds: 1.0,
                duration_seconds: Some(10.0),
                requests: None,
                workloads: vec![Workload::Read],
                clients: vec![ClientKind::Sdk, ClientKind::FloorBytes],
            },
            patients: 7,
            example_search: None,
            ratios: ratios(&runs),
            runs,
        };
        let markdown = markdown(&report);
        assert!(
            markdown.contains(
                "| read | sdk | 32 | 100 | 0 | 800 | 1.200 | 1.200 | 5.000 | 5.000 | 1 | 42 | n/a |"
            ),
            "{markdown}"
        );
        assert!(
            markdown.contains("| read | floor-bytes | 0.80 | 1.20 | 1.25 |"),
            "{markdown}"
        );
        assert!(markdown.contains("2 logical CPUs (Test CPU), 1024.0 MiB RAM"));
        let table = table(&report);
        assert!(table.contains("read sdk/floor-bytes: throughput x0.80, p50 x1.20, p99 x1.25"));
        assert!(table.contains("load average 1.50/1.00/0.50 before, n/a after"));
        let json = serde_json::to_value(&report).expect("serialises");
        assert_eq!(json["runs"][0]["client"], "sdk");
        assert_eq!(
            json["runs"][0]["requests"], 100,
            "the measurement is flattened"
        );
        assert_eq!(json["runs"][0]["latency_us"]["p99"], 5000);
        assert_eq!(json["ratios"][0]["floor"], "floor-bytes");
    }
}
