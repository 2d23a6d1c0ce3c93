//! One measured run: K workers issue requests of one workload through one kind of client,
//! first for a warm-up that is not recorded, then for a fixed time or number of requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use epic_fhir::model::{Observation, Patient};
use epic_fhir::{FhirClient, SearchParams};
use serde::Serialize;

use super::cpu::process_cpu;
use super::http1::Floor;
use super::stats::{LatencySummary, micros};

/// What the workers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// `GET Patient/{id}` over every patient.
    Read,
    /// `GET Observation?patient={id}&category=vital-signs&_count=50` over every patient.
    Search,
    /// Reads and searches alternately.
    Mixed,
}

impl Workload {
    /// The name used in reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::Search => "search",
            Workload::Mixed => "mixed",
        }
    }

    /// The operation and the patient of the `n`-th request, cycling through the patients.
    fn pick(self, n: usize, patients: usize) -> (Operation, usize) {
        match self {
            Workload::Read => (Operation::Read, n % patients),
            Workload::Search => (Operation::Search, n % patients),
            Workload::Mixed if n % 2 == 0 => (Operation::Read, (n / 2) % patients),
            Workload::Mixed => (Operation::Search, (n / 2) % patients),
        }
    }
}

/// Which client issues the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ClientKind {
    /// The SDK's `FhirClient` with Backend Services auth and typed parsing.
    Sdk,
    /// The floor: bare HTTP/1.1 with a fixed token, body bytes read and dropped.
    FloorBytes,
    /// The floor, with each body parsed into a `serde_json::Value`.
    FloorJson,
    /// A bare pooled `reqwest::Client` with a fixed token, body bytes read and dropped: the
    /// HTTP stack the SDK is built on, without the SDK.
    ReqwestBytes,
    /// The bare `reqwest` loop, with each body parsed into a `serde_json::Value`.
    ReqwestJson,
}

impl ClientKind {
    /// The name used in reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientKind::Sdk => "sdk",
            ClientKind::FloorBytes => "floor-bytes",
            ClientKind::FloorJson => "floor-json",
            ClientKind::ReqwestBytes => "reqwest-bytes",
            ClientKind::ReqwestJson => "reqwest-json",
        }
    }

    /// Whether this is one of the floors the SDK is compared with (every client but the SDK).
    pub(crate) fn is_floor(self) -> bool {
        !matches!(self, ClientKind::Sdk)
    }

    /// Whether this is the hand-written HTTP/1.1 floor, which speaks plain `http://` only
    /// (the `reqwest` floors speak `https://` as well as the SDK does).
    pub(crate) fn is_http1(self) -> bool {
        matches!(self, ClientKind::FloorBytes | ClientKind::FloorJson)
    }
}

#[derive(Debug, Clone, Copy)]
enum Operation {
    Read,
    Search,
}

/// The requests of the workloads, prepared once: the same URLs for every client.
#[derive(Debug)]
pub(crate) struct Targets {
    ids: Vec<String>,
    searches: Vec<SearchParams>,
    read_paths: Vec<String>,
    search_paths: Vec<String>,
}

impl Targets {
    /// Prepares reads and searches for each patient id.
    pub(crate) fn new(ids: Vec<String>) -> Self {
        let searches: Vec<SearchParams> = ids
            .iter()
            .map(|id| {
                SearchParams::new()
                    .reference("patient", id)
                    .token("category", None, "vital-signs")
                    .count(50)
            })
            .collect();
        let read_paths = ids.iter().map(|id| format!("Patient/{id}")).collect();
        let search_paths = searches
            .iter()
            .map(|params| format!("Observation?{}", params.to_query()))
            .collect();
        Targets {
            ids,
            searches,
            read_paths,
            search_paths,
        }
    }

    /// How many patients the requests cycle through.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The search URL (relative to the base) of the first patient, for the report.
    pub(crate) fn example_search(&self) -> Option<&str> {
        self.search_paths.first().map(String::as_str)
    }

    /// The URL (relative to the base) of `operation` for patient `index`, as the floors send it.
    fn path(&self, operation: Operation, index: usize) -> &str {
        match operation {
            Operation::Read => &self.read_paths[index],
            Operation::Search => &self.search_paths[index],
        }
    }
}

/// What a floor does with an answer: anything but 200 is a failure quoting the start of the
/// body; a 200 body is parsed into a `serde_json::Value` when `parse_json` asks for it, and kept
/// from being optimised away either way.
fn consume(path: &str, status: u16, body: &[u8], parse_json: bool) -> anyhow::Result<()> {
    if status != 200 {
        let snippet: String = String::from_utf8_lossy(body).chars().take(200).collect();
        bail!("GET {path} answered {status}: {snippet}");
    }
    if parse_json {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| anyhow!("GET {path}: the body is not JSON: {e}"))?;
        std::hint::black_box(value);
    } else {
        std::hint::black_box(body);
    }
    Ok(())
}

/// The client of one worker.
#[derive(Debug)]
pub(crate) enum Driver {
    /// The SDK; clones share one connection pool and token cache.
    Sdk(FhirClient),
    /// A bare `reqwest` client; clones share one pool.
    Reqwest {
        /// The pooled client.
        client: reqwest::Client,
        /// The FHIR base URL, without a trailing slash.
        base: Arc<str>,
        /// `Bearer <token>`.
        authorization: Arc<str>,
        /// Parse each body into a `serde_json::Value`.
        parse_json: bool,
    },
    /// A floor client with its own connection.
    Floor {
        /// The connection (boxed: it is much larger than an SDK handle).
        floor: Box<Floor>,
        /// Parse each body into a `serde_json::Value`.
        parse_json: bool,
    },
}

impl Driver {
    async fn execute(
        &mut self,
        operation: Operation,
        targets: &Targets,
        index: usize,
    ) -> anyhow::Result<()> {
        match self {
            Driver::Sdk(client) => match operation {
                Operation::Read => {
                    let patient: Patient = client.read(&targets.ids[index]).await?;
                    std::hint::black_box(patient);
                }
                Operation::Search => {
                    let page = client
                        .search::<Observation>(&targets.searches[index])
                        .await?;
                    std::hint::black_box(page);
                }
            },
            Driver::Reqwest {
                client,
                base,
                authorization,
                parse_json,
            } => {
                let path = targets.path(operation, index);
                let response = client
                    .get(format!("{base}/{path}"))
                    .header(reqwest::header::AUTHORIZATION, authorization.as_ref())
                    .header(reqwest::header::ACCEPT, "application/fhir+json")
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let body = response.bytes().await?;
                consume(path, status, &body, *parse_json)?;
            }
            Driver::Floor { floor, parse_json } => {
                let path = targets.path(operation, index);
                let response = floor.get(path).await?;
                consume(path, response.status, &response.body, *parse_json)?;
            }
        }
        Ok(())
    }

    /// Connections a hand-written floor client opened; `None` for the SDK and `reqwest`, whose
    /// pools do not say.
    fn connects(&self) -> Option<u64> {
        match self {
            Driver::Sdk(_) | Driver::Reqwest { .. } => None,
            Driver::Floor { floor, .. } => Some(floor.connects()),
        }
    }
}

/// When the measurement ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// After this long.
    After(Duration),
    /// After this many requests.
    Requests(u64),
}

/// How to run: warm-up and end (the concurrency is the number of drivers given to [`run`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Unrecorded time before the measurement.
    pub(crate) warmup: Duration,
    /// When to stop measuring.
    pub(crate) stop: Stop,
    /// The server's process, when it runs on this machine: its CPU time is measured too.
    pub(crate) server_pid: Option<u32>,
}

/// Shared switches and counters of the workers.
struct Control {
    measuring: AtomicBool,
    stop: AtomicBool,
    next: AtomicUsize,
    remaining: AtomicU64,
}

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    warmup_requests: u64,
    warmup_errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.warmup_requests += other.warmup_requests;
        self.warmup_errors += other.warmup_errors;
    }
}

/// The measured outcome of a run, before the client-specific counters are added.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measurement {
    /// Measured requests, failed ones included.
    pub(crate) requests: u64,
    /// Measured requests that failed (after the SDK's own retries, if any).
    pub(crate) errors: u64,
    /// The first failure, to say what went wrong.
    pub(crate) first_error: Option<String>,
    /// From the start of the measurement until the last measured request finished.
    pub(crate) elapsed_seconds: f64,
    /// Successful requests per second of `elapsed_seconds`.
    pub(crate) requests_per_second: f64,
    /// Latency of the successful requests, in microseconds.
    pub(crate) latency_us: Option<LatencySummary>,
    /// Requests made during the warm-up (not measured).
    pub(crate) warmup_requests: u64,
    /// Warm-up requests that failed.
    pub(crate) warmup_errors: u64,
    /// Connections the hand-written floor opened (warm-up included); absent for the pooled
    /// clients (the SDK and `reqwest`).
    pub(crate) connections: Option<u64>,
    /// CPU time the load generator used during the measurement.
    pub(crate) client_cpu_seconds: Option<f64>,
    /// CPU time the server process used during the measurement.
    pub(crate) server_cpu_seconds: Option<f64>,
    /// `client_cpu_seconds` per measured request, in microseconds.
    pub(crate) client_cpu_us_per_request: Option<f64>,
    /// `server_cpu_seconds` per measured request, in microseconds.
    pub(crate) server_cpu_us_per_request: Option<f64>,
}

/// CPU time used by the load generator and the server, at one instant.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    client: Option<Duration>,
    server: Option<Duration>,
}

impl CpuSample {
    fn take(server_pid: Option<u32>) -> Self {
        CpuSample {
            client: process_cpu(None),
            server: server_pid.and_then(|pid| process_cpu(Some(pid))),
        }
    }
}

/// Seconds between two CPU readings, when both exist.
fn cpu_seconds(before: Option<Duration>, after: Option<Duration>) -> Option<f64> {
    Some(after?.checked_sub(before?)?.as_secs_f64())
}

/// Runs `workload` with one driver per worker (`drivers.len()` is the concurrency).
///
/// # Errors
/// When there is nothing to request or a worker task panicked.
pub(crate) async fn run(
    plan: Plan,
    workload: Workload,
    targets: &Arc<Targets>,
    drivers: Vec<Driver>,
) -> anyhow::Result<Measurement> {
    if targets.len() == 0 {
        bail!("no patient to request");
    }
    if drivers.is_empty() {
        bail!("no worker to run");
    }
    let limited = matches!(plan.stop, Stop::Requests(_));
    // Without a warm-up every request is measured, from the very first one.
    let control = Arc::new(Control {
        measuring: AtomicBool::new(plan.warmup.is_zero()),
        stop: AtomicBool::new(false),
        next: AtomicUsize::new(0),
        remaining: AtomicU64::new(match plan.stop {
            Stop::Requests(n) => n,
            Stop::After(_) => 0,
        }),
    });
    let mut measuring_since = Instant::now();
    let mut cpu_before = CpuSample::take(plan.server_pid);
    let handles: Vec<_> = drivers
        .into_iter()
        .map(|driver| {
            let control = Arc::clone(&control);
            let targets = Arc::clone(targets);
            tokio::spawn(worker(driver, control, targets, workload, limited))
        })
        .collect();
    if !plan.warmup.is_zero() {
        tokio::time::sleep(plan.warmup).await;
        control.measuring.store(true, Ordering::Release);
        measuring_since = Instant::now();
        cpu_before = CpuSample::take(plan.server_pid);
    }
    if let Stop::After(duration) = plan.stop {
        tokio::time::sleep(duration).await;
        control.stop.store(true, Ordering::Release);
    }
    let mut tally = Tally::default();
    let mut connections: Option<u64> = None;
    for handle in handles {
        let (worker_tally, driver) = handle
            .await
            .map_err(|e| anyhow!("a load worker failed: {e}"))?;
        tally.merge(worker_tally);
        if let Some(connects) = driver.connects() {
            connections = Some(connections.unwrap_or(0) + connects);
        }
    }
    let elapsed = measuring_since.elapsed().as_secs_f64();
    let cpu_after = CpuSample::take(plan.server_pid);
    let requests = tally.latencies.len() as u64 + tally.errors;
    let client_cpu_seconds = cpu_seconds(cpu_before.client, cpu_after.client);
    let server_cpu_seconds = cpu_seconds(cpu_before.server, cpu_after.server);
    // Request counts stay far below 2^53, where the conversion would round.
    #[allow(clippy::cast_precision_loss)]
    let per_request = |seconds: Option<f64>| {
        seconds
            .filter(|_| requests > 0)
            .map(|s| s * 1e6 / requests as f64)
    };
    // Request counts stay far below 2^53, where the conversion would round.
    #[allow(clippy::cast_precision_loss)]
    let requests_per_second = if elapsed > 0.0 {
        tally.latencies.len() as f64 / elapsed
    } else {
        0.0
    };
    Ok(Measurement {
        requests,
        errors: tally.errors,
        first_error: tally.first_error,
        elapsed_seconds: elapsed,
        requests_per_second,
        latency_us: LatencySummary::from_samples(&mut tally.latencies),
        warmup_requests: tally.warmup_requests,
        warmup_errors: tally.warmup_errors,
        connections,
        client_cpu_seconds,
        server_cpu_seconds,
        client_cpu_us_per_request: per_request(client_cpu_seconds),
        server_cpu_us_per_request: per_request(server_cpu_seconds),
    })
}

async fn worker(
    mut driver: Driver,
    control: Arc<Control>,
    targets: Arc<Targets>,
    workload: Workload,
    limited: bool,
) -> (Tally, Driver) {
    let mut tally = Tally::default();
    loop {
        if control.stop.load(Ordering::Acquire) {
            break;
        }
        let measured = control.measuring.load(Ordering::Acquire);
        if measured
            && limited
            && control
                .remaining
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(1)
                })
                .is_err()
        {
            break;
        }
        let n = control.next.fetch_add(1, Ordering::Relaxed);
        let (operation, index) = workload.pick(n, targets.len());
        let started = Instant::now();
        let outcome = driver.execute(operation, &targets, index).await;
        let took = micros(started.elapsed());
        match (measured, outcome) {
            (true, Ok(())) => tally.latencies.push(took),
            (true, Err(error)) => {
                tally.errors += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{error:#}"));
                }
            }
            (false, outcome) => {
                tally.warmup_requests += 1;
                if let Err(error) = outcome {
                    tally.warmup_errors += 1;
                    if tally.first_error.is_none() {
                        tally.first_error = Some(format!("(warm-up) {error:#}"));
                    }
                }
            }
        }
    }
    (tally, driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_cycle_through_patients() {
        let picks: Vec<(bool, usize)> = (0..6)
            .map(|n| {
                let (op, index) = Workload::Mixed.pick(n, 2);
                (matches!(op, Operation::Read), index)
            })
            .collect();
        assert_eq!(
            picks,
            [
                (true, 0),
                (false, 0),
                (true, 1),
                (false, 1),
                (true, 0),
                (false, 0)
            ]
        );
        assert_eq!(Workload::Read.pick(7, 3).1, 1);
        assert!(matches!(Workload::Search.pick(7, 3).0, Operation::Search));
    }

    #[test]
    fn targets_use_epic_shaped_urls() {
        let targets = Targets::new(vec!["eq081-VQEgP8drUUqCWzHfw3".to_owned()]);
        assert_eq!(targets.read_paths[0], "Patient/eq081-VQEgP8drUUqCWzHfw3");
        assert_eq!(
            targets.example_search(),
            Some("Observation?patient=eq081-VQEgP8drUUqCWzHfw3&category=vital-signs&_count=50")
        );
    }

    /// A server answering every request with `status` and a small JSON body.
    async fn fixed_server(status: &'static str) -> url::Url {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    loop {
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let reply = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 11\r\n\r\n{{\"ok\":true}}"
                        );
                        if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url::Url::parse(&format!("http://{addr}/api/FHIR/R4")).expect("url")
    }

    async fn floors(url: &url::Url, workers: usize) -> Vec<Driver> {
        let endpoint = super::super::http1::Endpoint::resolve(url)
            .await
            .expect("endpoint");
        (0..workers)
            .map(|_| Driver::Floor {
                floor: Box::new(Floor::new(
                    endpoint.clone(),
                    "token",
                    Duration::from_secs(5),
                )),
                parse_json: true,
            })
            .collect()
    }

    fn three_patients() -> Arc<Targets> {
        Arc::new(Targets::new(vec!["a".into(), "b".into(), "c".into()]))
    }

    /// Runs `workload` over three patients with `workers` floor clients of the server at `url`.
    async fn measure(
        plan: Plan,
        workload: Workload,
        url: &url::Url,
        workers: usize,
    ) -> Measurement {
        run(
            plan,
            workload,
            &three_patients(),
            floors(url, workers).await,
        )
        .await
        .expect("runs")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_counted_run_measures_exactly_that_many_requests() {
        let url = fixed_server("200 OK").await;
        let plan = Plan {
            warmup: Duration::from_millis(50),
            stop: Stop::Requests(200),
            server_pid: Some(std::process::id()),
        };
        let measurement = measure(plan, Workload::Mixed, &url, 4).await;
        assert_eq!(measurement.requests, 200);
        assert_eq!(measurement.errors, 0, "{:?}", measurement.first_error);
        let latency = measurement.latency_us.expect("latencies");
        assert_eq!(latency.samples, 200);
        assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
        assert!(measurement.warmup_requests > 0, "the warm-up ran");
        assert_eq!(
            measurement.connections,
            Some(4),
            "one kept-alive connection each"
        );
        assert!(measurement.requests_per_second > 0.0);
        // The "server" is this test process here: both readings exist.
        assert!(measurement.client_cpu_seconds.is_some());
        assert!(measurement.server_cpu_us_per_request.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_run_stops_and_counts_failures() {
        let url = fixed_server("404 Not Found").await;
        let plan = Plan {
            warmup: Duration::ZERO,
            stop: Stop::After(Duration::from_millis(200)),
            server_pid: None,
        };
        let started = Instant::now();
        let measurement = measure(plan, Workload::Read, &url, 2).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(measurement.elapsed_seconds >= 0.2);
        assert!(measurement.requests > 0);
        assert_eq!(measurement.errors, measurement.requests);
        assert_eq!(measurement.latency_us, None, "failures have no latency");
        assert_eq!(
            measurement.server_cpu_seconds, None,
            "no server process named"
        );
        assert!(measurement.requests_per_second.abs() < f64::EPSILON);
        let first = measurement.first_error.expect("an error message");
        assert!(first.contains("answered 404"), "{first}");
        assert!(first.contains("GET Patient/"), "{first}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reqwest_floor_judges_answers_like_the_hand_written_one() {
        let targets = three_patients();
        let mut ok = Driver::Reqwest {
            client: reqwest::Client::new(),
            base: Arc::from(fixed_server("200 OK").await.as_str()),
            authorization: Arc::from("Bearer token"),
            parse_json: true,
        };
        ok.execute(Operation::Search, &targets, 1)
            .await
            .expect("a 200 with a JSON body");
        let mut refused = Driver::Reqwest {
            client: reqwest::Client::new(),
            base: Arc::from(fixed_server("404 Not Found").await.as_str()),
            authorization: Arc::from("Bearer token"),
            parse_json: false,
        };
        let error = refused
            .execute(Operation::Read, &targets, 2)
            .await
            .expect_err("a 404");
        assert_eq!(
            error.to_string(),
            "GET Patient/c answered 404: {\"ok\":true}"
        );
    }

    #[test]
    fn a_body_that_is_not_json_fails_only_when_parsed() {
        assert!(consume("Patient/a", 200, b"<html>", false).is_ok());
        let error = consume("Patient/a", 200, b"<html>", true).expect_err("not JSON");
        assert!(
            error
                .to_string()
                .starts_with("GET Patient/a: the body is not JSON")
        );
    }

    #[tokio::test]
    async fn refuses_to_run_without_patients() {
        let plan = Plan {
            warmup: Duration::ZERO,
            stop: Stop::Requests(1),
            server_pid: None,
        };
        let targets = Arc::new(Targets::new(Vec::new()));
        let error = run(plan, Workload::Read, &targets, Vec::new())
            .await
            .expect_err("nothing to do");
        assert!(error.to_string().contains("no patient"));
    }
}
