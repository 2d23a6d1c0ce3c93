//! The client against servers that misbehave on purpose, on 127.0.0.1: absurd token lifetimes,
//! bodies without end (plain and as gzip bombs), paging loops, bulk files longer than their
//! manifest says. Every case must end with a clear error, never a panic, a hang or unbounded
//! memory: a body without end can only end by the client's limit.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use epic_fhir::auth::{
    AccessToken, BackendServicesAuth, MAX_TOKEN_LIFETIME, SigningKey, TokenProvider,
};
use epic_fhir::bulk::{BulkExport, DownloadOptions, ExportRequest, PollOptions};
use epic_fhir::model::{Observation, Patient};
use epic_fhir::{BodyLimits, ErrorKind, FhirClient, RetryPolicy, SearchParams};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(2))
        .with_max_backoff(Duration::from_millis(10))
}

fn client(base: &str) -> epic_fhir::FhirClientBuilder {
    FhirClient::builder(format!("{base}/fhir"))
        .bearer_token(AccessToken::new("static-token"))
        .retry_policy(fast_retries())
}

/// `prefix`, then `filler` bytes forever, 64 KiB at a time.
fn endless(prefix: &'static [u8], filler: u8) -> Body {
    let chunk = Bytes::from(vec![filler; 64 * 1024]);
    let head =
        futures_util::stream::once(
            async move { Ok::<_, std::io::Error>(Bytes::from_static(prefix)) },
        );
    let tail = futures_util::stream::repeat_with(move || Ok(chunk.clone()));
    Body::from_stream(head.chain(tail))
}

/// Patient lines forever.
fn endless_lines() -> Body {
    let mut chunk = Vec::new();
    for i in 0..500 {
        chunk.extend_from_slice(
            format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i}\"}}\n").as_bytes(),
        );
    }
    let chunk = Bytes::from(chunk);
    Body::from_stream(futures_util::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

/// A gzip stream of `prefix` followed by zeros, `expanded` bytes in all, compressed as it is
/// sent (1 GiB of zeros compresses to about 1 MiB).
fn gzip_bomb(prefix: &'static [u8], expanded: u64) -> Body {
    struct Bomb {
        encoder: Option<flate2::write::GzEncoder<Vec<u8>>>,
        left: u64,
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(prefix).expect("prefix");
    let bomb = Bomb {
        encoder: Some(encoder),
        left: expanded - prefix.len() as u64,
    };
    let zeros = vec![0u8; MIB];
    Body::from_stream(futures_util::stream::unfold(bomb, move |mut bomb| {
        let zeros = zeros.clone();
        async move {
            let mut encoder = bomb.encoder.take()?;
            if bomb.left == 0 {
                let rest = encoder.finish().expect("finish");
                return Some((Ok::<_, std::io::Error>(Bytes::from(rest)), bomb));
            }
            let n = bomb.left.min(zeros.len() as u64) as usize;
            encoder.write_all(&zeros[..n]).expect("compress");
            bomb.left -= n as u64;
            let out = std::mem::take(encoder.get_mut());
            bomb.encoder = Some(encoder);
            Some((Ok(Bytes::from(out)), bomb))
        }
    }))
}

fn with_type(body: Body, content_type: &'static str, gzip: bool) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type.parse().expect("type"));
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, "gzip".parse().expect("encoding"));
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Token lifetimes

/// A token endpoint that answers with `body` (and, at `/fhir/Patient/p1`, a Patient).
async fn token_server(body: Value) -> String {
    let app = Router::new()
        .route(
            "/oauth2/token",
            post(move || {
                let body = body.clone();
                async move { axum::Json(body).into_response() }
            }),
        )
        .route(
            "/fhir/Patient/p1",
            get(|| async { axum::Json(json!({"resourceType": "Patient", "id": "p1"})) }),
        );
    serve(app).await
}

fn auth(base: &str) -> BackendServicesAuth {
    BackendServicesAuth::builder("hostile", SigningKey::generate_ec_p384().expect("key"))
        .token_url(format!("{base}/oauth2/token"))
        .retry_policy(fast_retries())
        .build()
        .expect("auth")
}

#[tokio::test]
async fn absurd_token_lifetimes_never_panic() {
    let token = |expires_in: Value| json!({"access_token": "t", "token_type": "bearer", "expires_in": expires_in});
    // Lifetimes a client can honour as given.
    for (given, expected) in [
        (json!(0), Duration::ZERO),
        (json!(0.5), Duration::from_millis(500)),
        (json!(3600), Duration::from_secs(3600)),
        (json!("3600"), Duration::from_secs(3600)),
        (json!(" 90.25 "), Duration::from_secs_f64(90.25)),
    ] {
        let base = token_server(token(given.clone())).await;
        let issued = auth(&base).issued_token().await.expect("a token");
        assert_eq!(issued.expires_in, Some(expected), "{given}");
    }
    // Lifetimes beyond any sane one are clamped (and no expiry overflows the clock).
    for given in [
        json!(1e12),
        json!(9.3e18),
        json!(1e20),
        json!(u64::MAX),
        json!("18446744073709551615"),
        json!("1e300"),
    ] {
        let base = token_server(token(given.clone())).await;
        let auth = auth(&base);
        let issued = auth.issued_token().await.expect("a clamped token");
        assert_eq!(issued.expires_in, Some(MAX_TOKEN_LIFETIME), "{given}");
        assert!(issued.expires_at > std::time::SystemTime::now());
        // The token works for requests, and the cache serves it again.
        let client = FhirClient::builder(format!("{base}/fhir"))
            .backend_services(auth.clone())
            .build()
            .expect("client");
        let patient: Patient = client.read("p1").await.expect("read");
        assert_eq!(patient.id.as_deref(), Some("p1"));
        assert_eq!(auth.token_requests(), 1, "{given}: cached");
    }
    // Lifetimes that are not lifetimes are errors that name the field.
    for given in [
        json!(-1),
        json!(-0.5),
        json!("-5"),
        json!("soon"),
        json!(true),
        json!("NaN"),
        json!("inf"),
    ] {
        let base = token_server(token(given.clone())).await;
        let err = auth(&base).issued_token().await.expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Decode, "{given}");
        assert_eq!(err.json_path(), Some("expires_in"), "{given}: {err}");
        assert!(!err.to_string().contains("\"t\""), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies without end

#[tokio::test]
async fn an_endless_resource_is_refused_at_the_limit() {
    let app = Router::new().route(
        "/fhir/Patient/p1",
        get(|| async {
            with_type(
                endless(
                    br#"{"resourceType":"Patient","id":"p1","text":{"div":""#,
                    b'a',
                ),
                "application/fhir+json",
                false,
            )
        }),
    );
    let base = serve(app).await;
    let client = client(&base)
        .body_limits(BodyLimits::default().with_fhir(2 * MIB))
        .build()
        .expect("client");
    let err = client.read::<Patient>("p1").await.expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert!(err.to_string().contains(&(2 * MIB).to_string()), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        client.requests_sent(),
        1,
        "a body too large is not asked for again"
    );
}

#[tokio::test]
async fn a_content_length_beyond_the_limit_is_refused_before_reading() {
    let app = Router::new().route(
        "/fhir/Patient/p1",
        get(|| async {
            let mut response = with_type(
                Body::from(vec![b' '; 3 * MIB]),
                "application/fhir+json",
                false,
            );
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, (3 * MIB).into());
            response
        }),
    );
    let base = serve(app).await;
    let client = client(&base)
        .body_limits(BodyLimits::default().with_fhir(MIB))
        .build()
        .expect("client");
    let err = client.read::<Patient>("p1").await.expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Limit);
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_early_with_the_default_limits() {
    let served = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/fhir/Observation",
            get(|State(served): State<Arc<AtomicUsize>>| async move {
                served.fetch_add(1, Ordering::SeqCst);
                // About 1 MiB on the wire, 1 GiB once expanded.
                with_type(
                    gzip_bomb(
                        br#"{"resourceType":"Bundle","type":"searchset","entry":["#,
                        1 << 30,
                    ),
                    "application/fhir+json",
                    true,
                )
            }),
        )
        .with_state(Arc::clone(&served));
    let base = serve(app).await;
    let client = client(&base).build().expect("client");
    let err = client
        .search::<Observation>(&SearchParams::new().raw("code", "x"))
        .await
        .expect_err("a bomb");
    assert_eq!(err.kind(), ErrorKind::Limit, "{err}");
    assert!(
        err.to_string()
            .contains(&BodyLimits::default().fhir.to_string()),
        "{err}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_endless_error_body_becomes_an_excerpt() {
    let app = Router::new().route(
        "/fhir/Patient/p1",
        get(|| async {
            let mut response = with_type(endless(b"<html>", b'x'), "text/html", false);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }),
    );
    let base = serve(app).await;
    let client = client(&base).build().expect("client");
    let err = client.read::<Patient>("p1").await.expect_err("400");
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.status(), Some(400));
    assert!(
        err.body_excerpt()
            .expect("excerpt")
            .starts_with("<html>xxx")
    );
}

#[tokio::test]
async fn endless_token_answers_are_refused() {
    let app = Router::new().route(
        "/oauth2/token",
        post(|| async {
            with_type(
                gzip_bomb(br#"{"access_token":""#, 1 << 30),
                "application/json",
                true,
            )
        }),
    );
    let base = serve(app).await;
    let auth =
        BackendServicesAuth::builder("hostile", SigningKey::generate_ec_p384().expect("key"))
            .token_url(format!("{base}/oauth2/token"))
            .body_limits(BodyLimits::default().with_token(64 * 1024))
            .build()
            .expect("auth");
    let err = auth.token().await.expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Limit, "{err}");
    assert_eq!(auth.token_requests(), 1);
}

#[tokio::test]
async fn endless_discovery_documents_are_refused() {
    let app = Router::new()
        .route(
            "/fhir/.well-known/smart-configuration",
            get(|| async { with_type(endless(b"{\"x\":\"", b'a'), "application/json", false) }),
        )
        .route(
            "/fhir/metadata",
            get(|| async {
                with_type(
                    gzip_bomb(
                        b"{\"resourceType\":\"CapabilityStatement\",\"x\":\"",
                        1 << 30,
                    ),
                    "application/fhir+json",
                    true,
                )
            }),
        );
    let base = serve(app).await;
    let err = BackendServicesAuth::builder("hostile", SigningKey::generate_ec_p384().expect("key"))
        .body_limits(BodyLimits::default().with_discovery(MIB))
        .discover(format!("{base}/fhir"))
        .await
        .expect_err("nothing usable");
    assert_eq!(err.kind(), ErrorKind::Discovery);
    let text = err.to_string();
    assert!(
        text.matches(&MIB.to_string()).count() == 2,
        "both documents too large: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Paging

#[derive(Default)]
struct Pages {
    hits: AtomicUsize,
}

/// A searchset page with one Observation and a `next` link to `next`.
fn page(id: usize, next: &str) -> Value {
    json!({
        "resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": next}],
        "entry": [{"resource": {"resourceType": "Observation", "id": format!("o{id}"), "status": "final", "code": {"text": "x"}}, "search": {"mode": "match"}}]
    })
}

#[tokio::test]
async fn a_next_link_back_to_a_fetched_page_ends_the_stream() {
    let pages = Arc::new(Pages::default());
    let app = Router::new()
        .route(
            "/fhir/Observation",
            get(
                |State(pages): State<Arc<Pages>>, headers: HeaderMap| async move {
                    let n = pages.hits.fetch_add(1, Ordering::SeqCst);
                    let host = headers["host"].to_str().expect("host").to_owned();
                    // Page 1 → 2 → 3 → back to 2.
                    let next = match n {
                        0 => "page=2".to_owned(),
                        1 => "page=3".to_owned(),
                        _ => "page=2".to_owned(),
                    };
                    axum::Json(page(n, &format!("http://{host}/fhir/Observation?{next}")))
                },
            ),
        )
        .with_state(Arc::clone(&pages));
    let base = serve(app).await;
    let client = client(&base).build().expect("client");
    let results: Vec<_> = client
        .resources::<Observation>(&SearchParams::new().raw("code", "x"))
        .collect()
        .await;
    let (ok, errors): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 3, "every page delivered");
    assert_eq!(errors.len(), 1);
    let err = errors
        .into_iter()
        .next()
        .and_then(Result::err)
        .expect("error");
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(err.to_string().contains("loop"), "{err}");
    assert_eq!(
        pages.hits.load(Ordering::SeqCst),
        3,
        "the repeated page is not fetched"
    );
}

#[tokio::test]
async fn max_pages_ends_an_endless_search() {
    let pages = Arc::new(Pages::default());
    let app = Router::new()
        .route(
            "/fhir/Observation",
            get(|State(pages): State<Arc<Pages>>| async move {
                let n = pages.hits.fetch_add(1, Ordering::SeqCst);
                // Always a new page: no loop to detect.
                axum::Json(page(n, &format!("Observation?page={}", n + 2)))
            }),
        )
        .with_state(Arc::clone(&pages));
    let base = serve(app).await;
    let client = client(&base).max_pages(5).build().expect("client");
    let mut stream =
        std::pin::pin!(client.pages::<Observation>(&SearchParams::new().raw("code", "x")));
    for _ in 0..5 {
        stream.next().await.expect("a page").expect("delivered");
    }
    let err = stream.next().await.expect("an item").expect_err("limit");
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert!(err.to_string().contains("5 pages"), "{err}");
    assert!(stream.next().await.is_none());
    assert_eq!(pages.hits.load(Ordering::SeqCst), 5);
    assert!(
        FhirClient::builder("http://127.0.0.1:1/fhir")
            .max_pages(0)
            .build()
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Bulk export

/// What the bulk mock serves at `/fhir/files/{name}`.
#[derive(Clone)]
enum File {
    Bytes(Vec<u8>),
    EndlessLines,
}

#[derive(Default)]
struct Bulk {
    manifest: Mutex<Value>,
    files: Mutex<HashMap<String, File>>,
    /// When set, the status URL answers with a body without end.
    endless_manifest: std::sync::atomic::AtomicBool,
    requests: AtomicUsize,
}

async fn bulk_server(bulk: Arc<Bulk>) -> String {
    async fn kick_off(headers: HeaderMap) -> Response {
        let host = headers["host"].to_str().expect("host").to_owned();
        (
            StatusCode::ACCEPTED,
            [(
                header::CONTENT_LOCATION,
                format!("http://{host}/fhir/status"),
            )],
        )
            .into_response()
    }
    async fn status(State(bulk): State<Arc<Bulk>>) -> Response {
        bulk.requests.fetch_add(1, Ordering::SeqCst);
        if bulk.endless_manifest.load(Ordering::SeqCst) {
            return with_type(
                endless(b"{\"transactionTime\":\"", b'9'),
                "application/json",
                false,
            );
        }
        axum::Json(bulk.manifest.lock().expect("lock").clone()).into_response()
    }
    async fn file(State(bulk): State<Arc<Bulk>>, UrlPath(name): UrlPath<String>) -> Response {
        bulk.requests.fetch_add(1, Ordering::SeqCst);
        let file = bulk.files.lock().expect("lock").get(&name).cloned();
        match file {
            Some(File::Bytes(bytes)) => {
                with_type(Body::from(bytes), "application/fhir+ndjson", false)
            }
            Some(File::EndlessLines) => {
                with_type(endless_lines(), "application/fhir+ndjson", false)
            }
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let app = Router::new()
        .route("/fhir/Group/g/$export", get(kick_off))
        .route("/fhir/status", get(status))
        .route("/fhir/files/{name}", get(file))
        .with_state(bulk);
    serve(app).await
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("epic-fhir-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn export(client: &FhirClient, dir: &PathBuf, options: DownloadOptions) -> BulkExport {
    BulkExport::new(client, ExportRequest::group("g"), dir)
        .poll_options(
            PollOptions::default()
                .with_interval_bounds(Duration::ZERO, Duration::from_millis(20))
                .with_initial_interval(Duration::from_millis(5)),
        )
        .download_options(options)
}

fn manifest(base: &str, files: &[(&str, Option<u64>)]) -> Value {
    json!({
        "transactionTime": "2024-05-01T10:00:00Z",
        "requiresAccessToken": true,
        "output": files.iter().map(|(name, count)| {
            let mut entry = json!({"type": "Patient", "url": format!("{base}/fhir/files/{name}")});
            if let Some(count) = count {
                entry["count"] = json!(count);
            }
            entry
        }).collect::<Vec<_>>(),
        "error": []
    })
}

#[tokio::test]
async fn a_file_with_more_lines_than_its_count_stops_at_once() {
    let bulk = Arc::new(Bulk::default());
    let base = bulk_server(Arc::clone(&bulk)).await;
    *bulk.manifest.lock().expect("lock") = manifest(&base, &[("endless", Some(1000))]);
    bulk.files
        .lock()
        .expect("lock")
        .insert("endless".into(), File::EndlessLines);
    let dir = scratch("count");
    let client = client(&base).build().expect("client");
    let err = export(&client, &dir, DownloadOptions::default())
        .run()
        .await
        .expect_err("more lines than count");
    assert_eq!(err.kind(), ErrorKind::Decode);
    let text = err.to_string();
    assert!(
        text.contains("line 1001") && text.contains("count of 1000"),
        "{text}"
    );
    // Two tries (a damaged transfer is told from a bad file), each stopped at line 1001.
    assert_eq!(bulk.requests.load(Ordering::SeqCst), 1 + 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_file_larger_than_the_cap_stops_and_is_removed() {
    let bulk = Arc::new(Bulk::default());
    let base = bulk_server(Arc::clone(&bulk)).await;
    *bulk.manifest.lock().expect("lock") = manifest(&base, &[("endless", None)]);
    bulk.files
        .lock()
        .expect("lock")
        .insert("endless".into(), File::EndlessLines);
    let dir = scratch("cap");
    let client = client(&base).build().expect("client");
    let err = export(
        &client,
        &dir,
        DownloadOptions::default().with_max_file_bytes(4 * MIB as u64),
    )
    .run()
    .await
    .expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert!(err.to_string().contains("Patient-0001.ndjson"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("Patient"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the refused download is removed: {leftovers:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_endless_manifest_is_refused() {
    let bulk = Arc::new(Bulk::default());
    bulk.endless_manifest.store(true, Ordering::SeqCst);
    let base = bulk_server(Arc::clone(&bulk)).await;
    let dir = scratch("manifest");
    let client = client(&base)
        .body_limits(BodyLimits::default().with_manifest(MIB))
        .build()
        .expect("client");
    let err = export(&client, &dir, DownloadOptions::default())
        .run()
        .await
        .expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert_eq!(bulk.requests.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_thousand_small_files_are_downloaded_and_recorded() {
    let bulk = Arc::new(Bulk::default());
    let base = bulk_server(Arc::clone(&bulk)).await;
    let n = 2000;
    let names: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, Option<u64>)> = names.iter().map(|n| (n.as_str(), Some(1))).collect();
    *bulk.manifest.lock().expect("lock") = manifest(&base, &entries);
    {
        let mut files = bulk.files.lock().expect("lock");
        for (i, name) in names.iter().enumerate() {
            files.insert(
                name.clone(),
                File::Bytes(
                    format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i}\"}}\n").into_bytes(),
                ),
            );
        }
    }
    let dir = scratch("many");
    let client = client(&base).build().expect("client");
    let summary = export(&client, &dir, DownloadOptions::default().with_parallel(8))
        .run()
        .await
        .expect("export");
    assert_eq!(summary.files, n);
    assert_eq!(summary.resources, n as u64);
    // The journal was folded into the state file, which lists every file as done.
    assert!(!dir.join(epic_fhir::bulk::JOURNAL_FILE).exists());
    let state: Value = serde_json::from_slice(
        &std::fs::read(dir.join(epic_fhir::bulk::STATE_FILE)).expect("state"),
    )
    .expect("json");
    let done = state["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["done"]["resources"] == 1)
        .count();
    assert_eq!(done, n);
    // A resume finds everything done and downloads nothing.
    let before = bulk.requests.load(Ordering::SeqCst);
    let again = export(&client, &dir, DownloadOptions::default())
        .resume(true)
        .run()
        .await
        .expect("resume");
    assert_eq!((again.files_reused, again.files_downloaded), (n, 0));
    assert_eq!(bulk.requests.load(Ordering::SeqCst), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn streams_of_results_can_be_cut_short() {
    // `take` on an endless search stops fetching: the stream is lazy.
    let pages = Arc::new(Pages::default());
    let app = Router::new()
        .route(
            "/fhir/Observation",
            get(|State(pages): State<Arc<Pages>>| async move {
                let n = pages.hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(page(n, &format!("Observation?page={}", n + 2)))
            }),
        )
        .with_state(Arc::clone(&pages));
    let base = serve(app).await;
    let client = client(&base).build().expect("client");
    let got: Vec<Observation> = client
        .resources::<Observation>(&SearchParams::new().raw("code", "x"))
        .take(3)
        .try_collect()
        .await
        .expect("three");
    assert_eq!(got.len(), 3);
    assert_eq!(pages.hits.load(Ordering::SeqCst), 3);
}
