//! The bulk export client against small scripted servers: the odd shapes, failures and origins
//! a real server may produce and the sandbox does not.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use epic_fhir::auth::AccessToken;
use epic_fhir::bulk::{
    BulkExport, DownloadOptions, ExportEvent, ExportRequest, ExportSummary, JOURNAL_FILE,
    PollOptions, STATE_FILE,
};
use epic_fhir::{ErrorKind, FhirClient, RetryPolicy};
use serde_json::{Value, json};

const TOKEN: &str = "secret-token";

/// One scripted answer.
#[derive(Clone, Debug)]
struct Scripted {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Scripted {
    fn new(status: u16) -> Self {
        Scripted {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn outcome(mut self, code: &str, diagnostics: &str) -> Self {
        self.body = json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
        })
        .to_string();
        self.headers
            .push(("content-type", "application/fhir+json".to_owned()));
        self
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).expect("status");
        for (name, value) in self.headers {
            response
                .headers_mut()
                .append(name, HeaderValue::from_str(&value).expect("header"));
        }
        response
    }
}

/// A file the mock serves.
#[derive(Clone, Debug, Default)]
struct MockFile {
    body: Vec<u8>,
    /// The first this-many requests are cut off after `cut_after` bytes.
    cut_requests: usize,
    cut_after: usize,
    /// Honour `Range: bytes=N-` (otherwise answer 200 with the whole file).
    ranges: bool,
    /// Answer 401 to every request.
    unauthorized: bool,
    /// Answer a range request with 206 but the whole file from byte 0 (a broken server).
    wrong_range: bool,
    /// Send the whole file gzip-compressed (`Content-Encoding: gzip`) when the request accepts
    /// gzip and asks for no range.
    gzip: bool,
    /// With `gzip`: damage the stream's CRC.
    bad_crc: bool,
    /// Send the body as is, labelled with this `Content-Encoding`.
    encoding: Option<&'static str>,
}

/// What the mock saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    range: Option<String>,
    if_range: Option<String>,
    accept: Option<String>,
    accept_encoding: Option<String>,
    prefer: Option<String>,
    query: Option<String>,
}

#[derive(Default)]
struct Script {
    base: Mutex<String>,
    kick_off: Mutex<Option<Scripted>>,
    status: Mutex<VecDeque<Scripted>>,
    /// Answers to `DELETE` on the status URL, in order; then 202.
    delete: Mutex<VecDeque<Scripted>>,
    manifest: Mutex<Value>,
    files: Mutex<HashMap<String, MockFile>>,
    redirects: Mutex<HashMap<String, String>>,
    served: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    deletes: AtomicUsize,
}

struct Mock {
    addr: SocketAddr,
    script: Arc<Script>,
}

impl Mock {
    async fn start() -> Mock {
        let script = Arc::new(Script::default());
        let app = Router::new()
            .route("/fhir/Group/{id}/$export", get(kick_off))
            .route("/fhir/status", get(status).delete(delete))
            .route("/files/{name}", get(file))
            .route("/redirect/{name}", get(redirect))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        *script.base.lock().expect("lock") = format!("http://{addr}");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Mock { addr, script }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn fhir_base(&self) -> String {
        format!("{}/fhir", self.origin())
    }

    fn client(&self) -> FhirClient {
        FhirClient::builder(self.fhir_base())
            .bearer_token(AccessToken::new(TOKEN))
            .retry_policy(
                RetryPolicy::default()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(2))
                    .with_max_backoff(Duration::from_millis(20)),
            )
            .build()
            .expect("client")
    }

    fn set_kick_off(&self, reply: Scripted) {
        *self.script.kick_off.lock().expect("lock") = Some(reply);
    }

    fn push_status(&self, reply: Scripted) {
        self.script.status.lock().expect("lock").push_back(reply);
    }

    fn push_delete(&self, reply: Scripted) {
        self.script.delete.lock().expect("lock").push_back(reply);
    }

    fn set_manifest(&self, manifest: Value) {
        *self.script.manifest.lock().expect("lock") = manifest;
    }

    fn add_file(&self, name: &str, file: MockFile) {
        self.script
            .files
            .lock()
            .expect("lock")
            .insert(name.to_owned(), file);
    }

    fn add_redirect(&self, name: &str, to: String) {
        self.script
            .redirects
            .lock()
            .expect("lock")
            .insert(name.to_owned(), to);
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().expect("lock").clone()
    }

    fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    fn deletes(&self) -> usize {
        self.script.deletes.load(Ordering::SeqCst)
    }
}

fn record(script: &Script, method: &str, path: &str, query: Option<&str>, headers: &HeaderMap) {
    let get = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    script.seen.lock().expect("lock").push(Seen {
        method: method.to_owned(),
        path: path.to_owned(),
        authorization: get(header::AUTHORIZATION),
        range: get(header::RANGE),
        if_range: get(header::IF_RANGE),
        accept: get(header::ACCEPT),
        accept_encoding: get(header::ACCEPT_ENCODING),
        prefer: headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        query: query.map(str::to_owned),
    });
}

async fn kick_off(
    State(script): State<Arc<Script>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    record(&script, "GET", uri.path(), uri.query(), &headers);
    let scripted = script.kick_off.lock().expect("lock").clone();
    match scripted {
        Some(reply) => reply.into_response(),
        None => {
            let base = script.base.lock().expect("lock").clone();
            Scripted::new(202)
                .header("content-location", format!("{base}/fhir/status"))
                .into_response()
        }
    }
}

async fn status(State(script): State<Arc<Script>>, headers: HeaderMap) -> Response {
    record(&script, "GET", "/fhir/status", None, &headers);
    let next = script.status.lock().expect("lock").pop_front();
    match next {
        Some(reply) => reply.into_response(),
        None => {
            let manifest = script.manifest.lock().expect("lock").clone();
            Scripted {
                status: 200,
                headers: vec![("content-type", "application/json".to_owned())],
                body: manifest.to_string(),
            }
            .into_response()
        }
    }
}

async fn delete(State(script): State<Arc<Script>>, headers: HeaderMap) -> Response {
    record(&script, "DELETE", "/fhir/status", None, &headers);
    script.deletes.fetch_add(1, Ordering::SeqCst);
    let next = script.delete.lock().expect("lock").pop_front();
    match next {
        Some(reply) => reply.into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

async fn redirect(
    State(script): State<Arc<Script>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    record(&script, "GET", &format!("/redirect/{name}"), None, &headers);
    let target = script.redirects.lock().expect("lock").get(&name).cloned();
    match target {
        Some(to) => Scripted::new(302).header("location", to).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn file(
    State(script): State<Arc<Script>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    record(&script, "GET", &format!("/files/{name}"), None, &headers);
    let Some(file) = script.files.lock().expect("lock").get(&name).cloned() else {
        return Scripted::new(404)
            .outcome("not-found", "no such file")
            .into_response();
    };
    if file.unauthorized {
        return Scripted::new(401)
            .header("www-authenticate", "Bearer error=\"invalid_token\"")
            .into_response();
    }
    let served = {
        let mut served = script.served.lock().expect("lock");
        let count = served.entry(name.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|_| file.ranges);
    let len = file.body.len();
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let gzipped = file.gzip && accepts_gzip && start.is_none();
    let (status, slice) = match start {
        Some(start) if start >= len => {
            return Scripted::new(416)
                .header("content-range", format!("bytes */{len}"))
                .into_response();
        }
        Some(_) if file.wrong_range => (StatusCode::PARTIAL_CONTENT, file.body.clone()),
        Some(start) => (StatusCode::PARTIAL_CONTENT, file.body[start..].to_vec()),
        None if gzipped => (StatusCode::OK, gzip(&file.body, file.bad_crc)),
        None => (StatusCode::OK, file.body.clone()),
    };
    let body = if served <= file.cut_requests && slice.len() > file.cut_after {
        let head = slice[..file.cut_after].to_vec();
        // The pause lets the server write the head before the error drops the connection.
        let cut = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<Vec<u8>, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "cut",
            ))
        });
        Body::from_stream(futures_util::StreamExt::chain(
            futures_util::stream::iter([Ok(head)]),
            cut,
        ))
    } else {
        Body::from(slice.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(slice.len()));
    headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
    if gzipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    } else if let Some(encoding) = file.encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    if let Some(start) = start.map(|start| if file.wrong_range { 0 } else { start }) {
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{len}", len - 1)).expect("range"),
        );
    }
    response
}

/// `body` gzip-compressed; with `bad_crc`, the trailer's CRC is wrong.
fn gzip(body: &[u8], bad_crc: bool) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("compress");
    let mut compressed = encoder.finish().expect("compress");
    if bad_crc {
        let at = compressed.len() - 8;
        compressed[at] ^= 0xff;
    }
    compressed
}

/// `n` Patient lines, each different, as NDJSON.
fn patients(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(
            json!({"resourceType": "Patient", "id": format!("p{i}"), "name": [{"family": format!("Family{i}"), "given": ["Ann", "Lee"]}]})
                .to_string()
                .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("epic-fhir-bulk-mock-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn fast_polls() -> PollOptions {
    PollOptions::default()
        .with_interval_bounds(Duration::ZERO, Duration::from_millis(50))
        .with_initial_interval(Duration::from_millis(5))
}

fn manifest_with(output: Value, error: Value, requires_token: bool) -> Value {
    json!({
        "transactionTime": "2024-05-01T10:00:00Z",
        "request": "http://example/fhir/Group/g/$export",
        "requiresAccessToken": requires_token,
        "output": output,
        "error": error
    })
}

/// A manifest of one Patient file, the mock's `/files/{name}`, with its `count` when given.
fn one_patient_file(mock: &Mock, name: &str, count: Option<u64>) -> Value {
    let mut entry = json!({"type": "Patient", "url": format!("{}/files/{name}", mock.origin())});
    if let Some(count) = count {
        entry["count"] = json!(count);
    }
    manifest_with(json!([entry]), json!([]), true)
}

/// Exports Group `g` into `dir`, polling fast.
async fn export_g(client: &FhirClient, dir: &Path) -> epic_fhir::Result<ExportSummary> {
    BulkExport::new(client, ExportRequest::group("g"), dir)
        .poll_options(fast_polls())
        .run()
        .await
}

/// Resumes the export of Group `g` saved in `dir`, polling fast.
async fn resume_g(client: &FhirClient, dir: &Path) -> epic_fhir::Result<ExportSummary> {
    BulkExport::new(client, ExportRequest::group("g"), dir)
        .resume(true)
        .poll_options(fast_polls())
        .run()
        .await
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[tokio::test]
async fn kick_off_sends_the_bulk_headers_and_parameters() {
    let mock = Mock::start().await;
    let job = ExportRequest::group("g1")
        .types(["Patient", "Observation"])
        .type_filter("Observation?category=laboratory")
        .kick_off(&mock.client())
        .await
        .expect("kick-off");
    assert_eq!(
        job.status_url().as_str(),
        format!("{}/status", mock.fhir_base())
    );
    let seen = mock.seen_at("/fhir/Group/g1/$export");
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.accept.as_deref(), Some("application/fhir+json"));
    assert_eq!(request.prefer.as_deref(), Some("respond-async"));
    assert_eq!(
        request.authorization.as_deref(),
        Some("Bearer secret-token")
    );
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(request.query.as_deref().expect("query").as_bytes())
            .into_owned()
            .collect();
    assert!(query.contains(&("_outputFormat".into(), "application/fhir+ndjson".into())));
    assert!(query.contains(&("_type".into(), "Patient,Observation".into())));
    assert!(query.contains(&(
        "_typeFilter".into(),
        "Observation?category=laboratory".into()
    )));
}

#[tokio::test]
async fn kick_off_errors_carry_the_operation_outcome() {
    let mock = Mock::start().await;
    mock.set_kick_off(Scripted::new(400).outcome("invalid", "_type Foo is not a resource type"));
    let err = ExportRequest::group("g")
        .kick_off(&mock.client())
        .await
        .expect_err("400");
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.status(), Some(400));
    let outcome = err.operation_outcome().expect("outcome");
    assert_eq!(
        outcome.issue[0].diagnostics.as_deref(),
        Some("_type Foo is not a resource type")
    );
    assert!(err.to_string().contains("_type Foo"), "{err}");
    assert_eq!(
        mock.seen_at("/fhir/Group/g/$export").len(),
        1,
        "a 400 is not retried"
    );

    // Epic's once-a-day Group window: a Retry-After beyond the policy fails at once.
    mock.set_kick_off(
        Scripted::new(429)
            .header("retry-after", "86400")
            .outcome("throttled", "one export per Group per day"),
    );
    let err = ExportRequest::group("g")
        .kick_off(&mock.client())
        .await
        .expect_err("429");
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(86400)));
    assert_eq!(mock.seen_at("/fhir/Group/g/$export").len(), 2);
}

#[tokio::test]
async fn a_status_url_elsewhere_or_missing_is_refused() {
    let mock = Mock::start().await;
    let elsewhere = Mock::start().await;
    mock.set_kick_off(Scripted::new(202).header(
        "content-location",
        format!("{}/fhir/status", elsewhere.origin()),
    ));
    let err = ExportRequest::group("g")
        .kick_off(&mock.client())
        .await
        .expect_err("foreign status URL");
    assert_eq!(err.kind(), ErrorKind::InsecureUrl);
    mock.set_kick_off(Scripted::new(202));
    let err = ExportRequest::group("g")
        .kick_off(&mock.client())
        .await
        .expect_err("no Content-Location");
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(err.to_string().contains("Content-Location"), "{err}");
    mock.set_kick_off(Scripted::new(200));
    let err = ExportRequest::group("g")
        .kick_off(&mock.client())
        .await
        .expect_err("synchronous answer");
    assert!(err.to_string().contains("202"), "{err}");
}

#[tokio::test]
async fn polling_honours_retry_after_429_and_transient_errors() {
    let mock = Mock::start().await;
    mock.push_status(
        Scripted::new(202)
            .header("x-progress", "10% (1/10)")
            .header("retry-after", "1"),
    );
    mock.push_status(
        Scripted::new(429)
            .header("retry-after", "1")
            .outcome("throttled", "polled too fast"),
    );
    mock.push_status(Scripted::new(503).outcome("transient", "busy"));
    mock.push_status(Scripted::new(202).header("x-progress", "90%"));
    mock.set_manifest(manifest_with(json!([]), json!([]), true));
    let client = mock.client();
    let job = ExportRequest::group("g")
        .kick_off(&client)
        .await
        .expect("kick-off");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let started = Instant::now();
    let options = PollOptions::default()
        .with_interval_bounds(Duration::ZERO, Duration::from_secs(5))
        .with_initial_interval(Duration::from_millis(30));
    let manifest = job
        .wait(&options, &move |event: &ExportEvent| {
            sink.lock().expect("lock").push(event.clone());
        })
        .await
        .expect("manifest");
    let elapsed = started.elapsed();
    assert!(manifest.output.is_empty());
    assert!(
        elapsed >= Duration::from_secs(2),
        "two waits of Retry-After 1 s: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let polled: Vec<(Option<String>, Duration)> = events
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|e| match e {
            ExportEvent::Polled {
                progress,
                next_poll,
            } => Some((progress.clone(), *next_poll)),
            _ => None,
        })
        .collect();
    assert_eq!(
        polled,
        [
            (Some("10% (1/10)".to_owned()), Duration::from_secs(1)),
            (None, Duration::from_secs(1)),
            // No Retry-After: the initial interval.
            (Some("90%".to_owned()), Duration::from_millis(30)),
        ]
    );
    // 202, 429, 503 (retried inside the poll), 202, 200.
    assert_eq!(mock.seen_at("/fhir/status").len(), 5);
    assert!(
        mock.seen_at("/fhir/status")
            .iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer secret-token"))
    );
}

#[tokio::test]
async fn retry_after_is_clamped_and_the_deadline_holds() {
    let mock = Mock::start().await;
    mock.push_status(Scripted::new(202).header("retry-after", "3600"));
    mock.set_manifest(manifest_with(json!([]), json!([]), true));
    let client = mock.client();
    let job = ExportRequest::group("g")
        .kick_off(&client)
        .await
        .expect("kick-off");
    let started = Instant::now();
    job.wait(&fast_polls(), &|_| {}).await.expect("manifest");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an hour clamped to 50 ms"
    );

    // Retry-After as an HTTP date, about two seconds ahead (whole seconds, so 1-2 s).
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    mock.push_status(Scripted::new(202).header("retry-after", later));
    let waits = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&waits);
    let options = PollOptions::default()
        .with_interval_bounds(Duration::ZERO, Duration::from_secs(10))
        .with_initial_interval(Duration::from_millis(5));
    job.wait(&options, &move |event: &ExportEvent| {
        if let ExportEvent::Polled { next_poll, .. } = event {
            sink.lock().expect("lock").push(*next_poll);
        }
    })
    .await
    .expect("manifest");
    let waits = waits.lock().expect("lock").clone();
    assert_eq!(waits.len(), 1);
    assert!(
        waits[0] > Duration::from_millis(900) && waits[0] <= Duration::from_secs(2),
        "{waits:?}"
    );

    for _ in 0..10 {
        mock.push_status(Scripted::new(202).header("retry-after", "1"));
    }
    let options = PollOptions::default()
        .with_interval_bounds(Duration::ZERO, Duration::from_secs(10))
        .with_deadline(Duration::from_millis(1500));
    let started = Instant::now();
    let err = job.wait(&options, &|_| {}).await.expect_err("deadline");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("still running"), "{err}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1500),
        "gave up before a wait that would pass the deadline: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_failed_job_is_final() {
    let mock = Mock::start().await;
    mock.push_status(Scripted::new(500).outcome("processing", "the export failed: disk full"));
    let client = mock.client();
    let job = ExportRequest::group("g")
        .kick_off(&client)
        .await
        .expect("kick-off");
    let err = job
        .wait(&fast_polls(), &|_| {})
        .await
        .expect_err("failed job");
    assert_eq!(err.status(), Some(500));
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(mock.seen_at("/fhir/status").len(), 1, "not retried");
}

#[tokio::test]
async fn odd_manifests_extensions_empty_output_and_error_files() {
    let mock = Mock::start().await;
    let outcomes = format!(
        "{}\n{}\n",
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "Condition not allowed"}]}),
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "informational"}]})
    );
    mock.add_file(
        "errors",
        MockFile {
            body: outcomes.clone().into_bytes(),
            ..MockFile::default()
        },
    );
    mock.set_manifest(json!({
        "transactionTime": "2024-05-01T10:00:00Z",
        "request": "x",
        "requiresAccessToken": true,
        "extension": {"https://example.org/ext": {"deep": [1, 2]}},
        "outputOrganizedBy": "Patient",
        "somethingNew": true,
        "output": [],
        "error": [{"type": "OperationOutcome", "url": format!("{}/files/errors", mock.origin()), "count": 2, "extension": {"x": 1}}]
    }));
    let dir = scratch("odd");
    let summary = export_g(&mock.client(), &dir).await.expect("export");
    assert_eq!(summary.files, 0);
    assert_eq!(summary.resources, 0);
    assert!(summary.types.is_empty());
    assert_eq!(summary.errors.files, 1);
    assert_eq!(summary.errors.resources, 2);
    assert_eq!(
        read(&dir.join("error-OperationOutcome-0001.ndjson")),
        outcomes.as_bytes()
    );
    // The state keeps the manifest whole, unknown members included.
    let state: Value = serde_json::from_slice(&read(&dir.join(STATE_FILE))).expect("state");
    assert_eq!(state["manifest"]["somethingNew"], true);
    assert_eq!(
        state["manifest"]["extension"]["https://example.org/ext"]["deep"][1],
        2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_token_goes_only_where_it_must() {
    let fhir = Mock::start().await;
    let bucket = Mock::start().await;
    let body = patients(20);
    for mock in [&fhir, &bucket] {
        mock.add_file(
            "p",
            MockFile {
                body: body.clone(),
                ..MockFile::default()
            },
        );
    }
    fhir.add_redirect("p", format!("{}/files/p", bucket.origin()));

    // requiresAccessToken false: no token anywhere, not even on the FHIR server's origin.
    fhir.set_manifest(manifest_with(
        json!([
            {"type": "Patient", "url": format!("{}/files/p", fhir.origin()), "count": 20},
            {"type": "Patient", "url": format!("{}/files/p", bucket.origin()), "count": 20}
        ]),
        json!([]),
        false,
    ));
    let dir = scratch("token-false");
    let summary = export_g(&fhir.client(), &dir).await.expect("export");
    assert_eq!(summary.resources, 40);
    let file_requests: Vec<Seen> = fhir
        .seen_at("/files/p")
        .into_iter()
        .chain(bucket.seen_at("/files/p"))
        .collect();
    assert_eq!(file_requests.len(), 2);
    assert!(
        file_requests.iter().all(|s| s.authorization.is_none()),
        "{file_requests:?}"
    );
    assert!(
        file_requests
            .iter()
            .all(|s| s.accept.as_deref() == Some("application/fhir+ndjson"))
    );
    let _ = std::fs::remove_dir_all(&dir);

    // requiresAccessToken true: the token goes to the FHIR server's origin only, also when
    // a file there redirects to another origin.
    fhir.set_manifest(manifest_with(
        json!([
            {"type": "Patient", "url": format!("{}/files/p", fhir.origin())},
            {"type": "Patient", "url": format!("{}/files/p", bucket.origin())},
            {"type": "Patient", "url": format!("{}/redirect/p", fhir.origin())}
        ]),
        json!([]),
        true,
    ));
    let dir = scratch("token-true");
    let summary = export_g(&fhir.client(), &dir).await.expect("export");
    assert_eq!(summary.resources, 60);
    assert_eq!(summary.files, 3);
    let home = fhir.seen_at("/files/p");
    assert_eq!(home.len(), 2, "one from false, one from true");
    assert_eq!(
        home[1].authorization.as_deref(),
        Some("Bearer secret-token")
    );
    assert_eq!(
        fhir.seen_at("/redirect/p")[0].authorization.as_deref(),
        Some("Bearer secret-token")
    );
    let away = bucket.seen_at("/files/p");
    assert_eq!(away.len(), 3, "direct, then via the redirect");
    assert!(away.iter().all(|s| s.authorization.is_none()), "{away:?}");
    for name in [
        "Patient-0001.ndjson",
        "Patient-0002.ndjson",
        "Patient-0003.ndjson",
    ] {
        assert_eq!(read(&dir.join(name)), body);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_interrupted_download_resumes_with_a_range() {
    let mock = Mock::start().await;
    let body = patients(3000);
    assert!(body.len() > 200_000);
    mock.add_file(
        "big",
        MockFile {
            body: body.clone(),
            cut_requests: 2,
            cut_after: 70_000,
            ranges: true,
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "big", Some(3000)));
    let dir = scratch("range");
    let retries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&retries);
    let summary = BulkExport::new(&mock.client(), ExportRequest::group("g"), &dir)
        .poll_options(fast_polls())
        .on_event(move |event| {
            if matches!(event, ExportEvent::FileRetrying { .. }) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .run()
        .await
        .expect("export");
    assert_eq!(
        read(&dir.join("Patient-0001.ndjson")),
        body,
        "byte-identical"
    );
    assert_eq!(summary.resources, 3000);
    assert_eq!(retries.load(Ordering::SeqCst), 2);
    let requests = mock.seen_at("/files/big");
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].range, None);
    let offsets: Vec<u64> = requests[1..]
        .iter()
        .map(|s| {
            s.range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse().ok())
                .expect("a range from the bytes already written")
        })
        .collect();
    assert!(offsets[0] > 0 && offsets[0] <= 70_000, "{offsets:?}");
    // The ETag of the first answer guards each resumed range.
    assert_eq!(requests[0].if_range, None);
    assert!(
        requests[1..]
            .iter()
            .all(|s| s.if_range.as_deref() == Some("\"v1\""))
    );
    assert!(
        offsets[1] > offsets[0] && offsets[1] <= offsets[0] + 70_000,
        "{offsets:?}"
    );
    assert!(
        summary.bytes_transferred < body.len() as u64 + 1000,
        "resumed, not restarted: {}",
        summary.bytes_transferred
    );
    assert!(!dir.join(".Patient-0001.ndjson.part").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_server_that_ignores_the_range_is_read_from_the_start() {
    let mock = Mock::start().await;
    let body = patients(2000);
    mock.add_file(
        "big",
        MockFile {
            body: body.clone(),
            cut_requests: 1,
            cut_after: 50_000,
            ranges: false,
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "big", Some(2000)));
    let dir = scratch("norange");
    let summary = export_g(&mock.client(), &dir).await.expect("export");
    assert_eq!(
        read(&dir.join("Patient-0001.ndjson")),
        body,
        "no line twice"
    );
    assert_eq!(summary.resources, 2000);
    let requests = mock.seen_at("/files/big");
    assert_eq!(requests.len(), 2);
    assert!(requests[1].range.is_some(), "it asked for the rest");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_range_answer_that_starts_elsewhere_is_not_appended() {
    let mock = Mock::start().await;
    let body = patients(2000);
    mock.add_file(
        "big",
        MockFile {
            body: body.clone(),
            cut_requests: 1,
            cut_after: 50_000,
            ranges: true,
            wrong_range: true,
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "big", Some(2000)));
    let dir = scratch("wrongrange");
    let summary = export_g(&mock.client(), &dir).await.expect("export");
    assert_eq!(read(&dir.join("Patient-0001.ndjson")), body);
    assert_eq!(summary.resources, 2000);
    let requests = mock.seen_at("/files/big");
    // Cut off; asked for the rest and got a 206 from byte 0: discarded; started over whole.
    assert_eq!(requests.len(), 3);
    assert!(requests[1].range.is_some());
    assert_eq!(requests[2].range, None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn gzip_files_are_decoded_checked_and_resumed_without_compression() {
    let mock = Mock::start().await;
    let body = patients(30_000);
    let compressed = gzip(&body, false);
    // Cut off late enough that decoded pieces were already checked and written.
    let cut_after = compressed.len() * 3 / 4;
    mock.add_file(
        "packed",
        MockFile {
            body: body.clone(),
            gzip: true,
            cut_requests: 1,
            cut_after,
            ranges: true,
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "packed", Some(30_000)));
    let dir = scratch("gzip");
    let summary = export_g(&mock.client(), &dir).await.expect("export");
    assert_eq!(
        read(&dir.join("Patient-0001.ndjson")),
        body,
        "byte-identical"
    );
    assert_eq!(summary.resources, 30_000);
    let requests = mock.seen_at("/files/packed");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[0]
            .accept_encoding
            .as_deref()
            .is_some_and(|v| v.contains("gzip")),
        "{requests:?}"
    );
    // Offsets count decoded bytes, so the rest is asked for without compression.
    let offset: usize = requests[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .expect("a range from the decoded bytes already written");
    assert!(offset > 0 && offset < body.len(), "{offset}");
    assert_eq!(requests[1].accept_encoding.as_deref(), Some("identity"));
    let _ = std::fs::remove_dir_all(&dir);

    // A client the caller built, which undoes gzip itself: the same file.
    let client = FhirClient::builder(mock.fhir_base())
        .bearer_token(AccessToken::new(TOKEN))
        .http_client(reqwest::Client::new())
        .build()
        .expect("client");
    let dir = scratch("gzip-own-client");
    let summary = export_g(&client, &dir).await.expect("export");
    assert_eq!(read(&dir.join("Patient-0001.ndjson")), body);
    assert_eq!(summary.resources, 30_000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_damaged_gzip_stream_or_an_unknown_encoding_is_refused() {
    let mock = Mock::start().await;
    mock.add_file(
        "damaged",
        MockFile {
            body: patients(500),
            gzip: true,
            bad_crc: true,
            ..MockFile::default()
        },
    );
    mock.add_file(
        "brotli",
        MockFile {
            body: patients(5),
            encoding: Some("br"),
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "damaged", None));
    let dir = scratch("badgzip");
    let err = export_g(&mock.client(), &dir)
        .await
        .expect_err("a damaged stream");
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(
        err.to_string().contains("Patient-0001.ndjson") && err.to_string().contains("gzip"),
        "{err}"
    );
    assert_eq!(
        mock.seen_at("/files/damaged").len(),
        2,
        "downloaded again once"
    );
    assert!(!dir.join("Patient-0001.ndjson").exists());
    let _ = std::fs::remove_dir_all(&dir);

    mock.set_manifest(one_patient_file(&mock, "brotli", None));
    let dir = scratch("brotli");
    let err = export_g(&mock.client(), &dir)
        .await
        .expect_err("an encoding not asked for");
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(err.to_string().contains("`br`"), "{err}");
    assert_eq!(mock.seen_at("/files/brotli").len(), 1, "not tried again");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_file_renamed_into_place_but_not_journaled_is_checked_not_downloaded_again() {
    let mock = Mock::start().await;
    let body = patients(500);
    mock.add_file(
        "done",
        MockFile {
            body: body.clone(),
            ranges: true,
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "done", Some(500)));
    let dir = scratch("renamed");
    export_g(&mock.client(), &dir).await.expect("export");
    // A kill after the rename and before the journal line: the file is in place, the saved
    // state does not know it is done (but knows its ETag).
    let state_path = dir.join(STATE_FILE);
    let mut state: Value = serde_json::from_slice(&read(&state_path)).expect("state");
    state["files"][0]["done"] = Value::Null;
    state["files"][0]["etag"] = json!("\"v1\"");
    std::fs::write(&state_path, state.to_string()).expect("write state");
    let _ = std::fs::remove_file(dir.join(JOURNAL_FILE));
    let before = mock.seen_at("/files/done").len();

    let summary = resume_g(&mock.client(), &dir).await.expect("resume");
    assert_eq!(read(&dir.join("Patient-0001.ndjson")), body);
    assert_eq!(summary.resources, 500);
    assert_eq!(summary.bytes_transferred, 0, "nothing downloaded again");
    let requests = mock.seen_at("/files/done");
    let requests = &requests[before..];
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].range.as_deref(),
        Some(format!("bytes={}-", body.len()).as_str())
    );
    assert_eq!(requests[0].if_range.as_deref(), Some("\"v1\""));
    assert!(!dir.join(".Patient-0001.ndjson.part").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn wrong_content_is_refused_naming_file_and_line() {
    let mock = Mock::start().await;
    let mut body = patients(3);
    body.extend_from_slice(b"{\"resourceType\":\"Observation\",\"id\":\"o1\"}\n");
    mock.add_file(
        "mixed",
        MockFile {
            body,
            ..MockFile::default()
        },
    );
    mock.add_file(
        "short",
        MockFile {
            body: patients(4),
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "mixed", None));
    let dir = scratch("wrong");
    let err = export_g(&mock.client(), &dir)
        .await
        .expect_err("wrong type");
    assert_eq!(err.kind(), ErrorKind::Decode);
    let text = err.to_string();
    assert!(
        text.contains("Patient-0001.ndjson") && text.contains("line 4"),
        "{text}"
    );
    assert!(text.contains("Observation"), "{text}");
    assert!(
        !dir.join("Patient-0001.ndjson").exists(),
        "never renamed into place"
    );
    assert_eq!(
        mock.seen_at("/files/mixed").len(),
        2,
        "downloaded again once"
    );
    let _ = std::fs::remove_dir_all(&dir);

    mock.set_manifest(one_patient_file(&mock, "short", Some(5)));
    let dir = scratch("count");
    let err = export_g(&mock.client(), &dir).await.expect_err("count");
    assert!(
        err.to_string().contains("holds 4 resources") && err.to_string().contains("count is 5"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_then_final() {
    let mock = Mock::start().await;
    mock.add_file(
        "locked",
        MockFile {
            unauthorized: true,
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "locked", None));
    let dir = scratch("locked");
    let err = export_g(&mock.client(), &dir).await.expect_err("401");
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(mock.seen_at("/files/locked").len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cleanup_cancel_and_the_rules_of_the_state_file() {
    let mock = Mock::start().await;
    mock.add_file(
        "p",
        MockFile {
            body: patients(10),
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "p", Some(10)));
    let client = mock.client();
    let dir = scratch("rules");
    let summary = BulkExport::new(&client, ExportRequest::group("g"), &dir)
        .poll_options(fast_polls())
        .cleanup(true)
        .run()
        .await
        .expect("export");
    assert!(summary.cleaned_up);
    assert_eq!(mock.deletes(), 1);
    let deletes: Vec<Seen> = mock
        .seen()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .collect();
    assert_eq!(deletes[0].path, "/fhir/status");
    assert_eq!(
        deletes[0].authorization.as_deref(),
        Some("Bearer secret-token")
    );
    assert_eq!(summary.files_downloaded, 1);

    // Not resuming: the folder is refused rather than overwritten.
    let err = BulkExport::new(&client, ExportRequest::group("g"), &dir)
        .run()
        .await
        .expect_err("occupied");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("already holds an export"), "{err}");
    // Resuming another request: refused.
    let err = BulkExport::new(&client, ExportRequest::group("other"), &dir)
        .resume(true)
        .run()
        .await
        .expect_err("another request");
    assert!(err.to_string().contains("another request"), "{err}");
    // Resuming the same one: nothing to do, nothing downloaded again, no second DELETE.
    let again = BulkExport::new(&client, ExportRequest::group("g"), &dir)
        .resume(true)
        .cleanup(true)
        .run()
        .await
        .expect("resume");
    assert_eq!((again.files_downloaded, again.files_reused), (0, 1));
    assert_eq!(again.resources, 10);
    assert_eq!(mock.seen_at("/files/p").len(), 1);
    assert_eq!(mock.deletes(), 1);
    // A file deleted by hand is downloaded again.
    std::fs::remove_file(dir.join("Patient-0001.ndjson")).expect("remove");
    let repaired = BulkExport::resume_saved(&client, &dir)
        .run()
        .await
        .expect("repair");
    assert_eq!(repaired.files_downloaded, 1);
    assert_eq!(read(&dir.join("Patient-0001.ndjson")), patients(10));
    let _ = std::fs::remove_dir_all(&dir);

    // Cancelling a saved export that was not cleaned up sends DELETE and removes the state.
    let dir = scratch("cancel");
    export_g(&client, &dir).await.expect("export");
    let cancelled = BulkExport::cancel_saved(&client, &dir)
        .await
        .expect("cancel");
    assert_eq!(cancelled.path(), "/fhir/status");
    assert_eq!(mock.deletes(), 2);
    assert!(!dir.join(STATE_FILE).exists());
    assert!(
        dir.join("Patient-0001.ndjson").exists(),
        "finished files stay"
    );
    let err = BulkExport::cancel_saved(&client, &dir)
        .await
        .expect_err("nothing left");
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = BulkExport::resume_saved(&client, &dir)
        .run()
        .await
        .expect_err("nothing to resume");
    assert!(err.to_string().contains("no export to resume"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_404_after_a_failed_delete_is_that_deletes_result() {
    let mock = Mock::start().await;
    let job = ExportRequest::group("g")
        .kick_off(&mock.client())
        .await
        .expect("kick-off");
    // The gateway gave up while the server deleted the job: the retry finds it gone.
    mock.push_delete(Scripted::new(504));
    mock.push_delete(Scripted::new(404).outcome("not-found", "no such job"));
    job.cancel().await.expect("deleted by the first attempt");
    assert_eq!(mock.deletes(), 2);
    // Without an earlier attempt, a 404 means the server does not know the job.
    mock.push_delete(Scripted::new(404).outcome("not-found", "no such job"));
    let err = job.cancel().await.expect_err("unknown job");
    assert_eq!(err.status(), Some(404));
    assert_eq!(mock.deletes(), 3);
}

#[tokio::test]
async fn downloads_can_be_rate_limited() {
    let mock = Mock::start().await;
    let body = patients(2000);
    let len = body.len() as u64;
    mock.add_file(
        "p",
        MockFile {
            body,
            ..MockFile::default()
        },
    );
    mock.set_manifest(one_patient_file(&mock, "p", None));
    let dir = scratch("rate");
    let started = Instant::now();
    BulkExport::new(&mock.client(), ExportRequest::group("g"), &dir)
        .poll_options(fast_polls())
        .download_options(DownloadOptions::default().with_max_bytes_per_second(Some(len)))
        .run()
        .await
        .expect("export");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "one second's worth: {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn waiting_for_the_clients_concurrency_cap_is_not_a_timeout() {
    let mock = Mock::start().await;
    let body = patients(1000);
    let len = body.len() as u64;
    for name in ["a", "b", "c"] {
        mock.add_file(
            name,
            MockFile {
                body: body.clone(),
                ..MockFile::default()
            },
        );
    }
    mock.set_manifest(manifest_with(
        json!(["a", "b", "c"]
            .iter()
            .map(|name| json!({"type": "Patient", "url": format!("{}/files/{name}", mock.origin())}))
            .collect::<Vec<_>>()),
        json!([]),
        true,
    ));
    // One request at a time on the client, three downloads wanted at once, each taking
    // longer than the idle timeout: the second and third wait for the first without timing
    // out.
    let client = FhirClient::builder(mock.fhir_base())
        .bearer_token(AccessToken::new(TOKEN))
        .max_concurrent_requests(1)
        .build()
        .expect("client");
    let retries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&retries);
    let dir = scratch("cap");
    let started = Instant::now();
    let summary = BulkExport::new(&client, ExportRequest::group("g"), &dir)
        .poll_options(fast_polls())
        .download_options(
            DownloadOptions::default()
                .with_parallel(3)
                .with_idle_timeout(Duration::from_millis(150))
                .with_max_bytes_per_second(Some(len * 3)),
        )
        .on_event(move |event| {
            if matches!(event, ExportEvent::FileRetrying { .. }) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .run()
        .await
        .expect("export");
    assert_eq!(summary.files, 3);
    assert_eq!(retries.load(Ordering::SeqCst), 0);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
