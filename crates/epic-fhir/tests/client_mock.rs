//! Client behaviours that need a misbehaving server: scripted axum handlers on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use epic_fhir::auth::AccessToken;
use epic_fhir::model::{Observation, Patient};
use epic_fhir::{ErrorKind, FhirClient, RetryPolicy, SearchParams};
use futures_util::StreamExt;
use serde_json::json;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}/fhir")
}

fn fhir(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

fn client(base: &str) -> FhirClient {
    FhirClient::builder(base)
        .bearer_token(AccessToken::new("static-token"))
        .retry_policy(
            RetryPolicy::default()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(2))
                .with_max_backoff(Duration::from_millis(10)),
        )
        .build()
        .expect("client")
}

#[tokio::test]
async fn malformed_json_names_the_path_and_keeps_an_excerpt() {
    let app = Router::new().route(
        "/fhir/Patient/p1",
        get(|| async {
            fhir(
                StatusCode::OK,
                json!({"resourceType": "Patient", "id": "p1", "birthDate": 19870912}),
            )
        }),
    );
    let base = serve(app).await;
    let err = client(&base)
        .read::<Patient>("p1")
        .await
        .expect_err("not a date");
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert_eq!(err.json_path(), Some("birthDate"));
    assert!(
        err.body_excerpt().expect("excerpt").contains("19870912"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn non_json_error_bodies_keep_an_excerpt() {
    let app = Router::new().route(
        "/fhir/Patient/p1",
        get(|| async {
            (StatusCode::BAD_GATEWAY, "<html><h1>Proxy error</h1></html>").into_response()
        }),
    );
    let base = serve(app).await;
    let err = client(&base).read::<Patient>("p1").await.expect_err("502");
    assert_eq!(err.status(), Some(502));
    assert!(err.body_excerpt().expect("excerpt").contains("Proxy error"));
    assert!(err.operation_outcome().is_none());
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused() {
    let app = Router::new().route(
        "/fhir/Observation",
        get(|| async {
            fhir(
                StatusCode::OK,
                json!({"resourceType": "Bundle", "type": "searchset",
                    "link": [{"relation": "next", "url": "https://evil.example/fhir/Observation?page=2"}],
                    "entry": []}),
            )
        }),
    );
    let base = serve(app).await;
    let mut pages =
        std::pin::pin!(client(&base).pages::<Observation>(&SearchParams::new().raw("code", "x")));
    let first = pages.next().await.expect("a first item");
    assert!(first.is_ok(), "the page already received is delivered");
    let err = pages
        .next()
        .await
        .expect("a second item")
        .expect_err("the next link is refused, nothing sent");
    assert_eq!(err.kind(), ErrorKind::InsecureUrl);
    assert!(err.to_string().contains("evil.example"), "{err}");
}

#[derive(Default)]
struct Counter {
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[tokio::test]
async fn transient_outcomes_and_http_date_retry_after_are_retried() {
    let counter = Arc::new(Counter::default());
    let app = Router::new()
        .route(
            "/fhir/Patient/p1",
            get(|State(c): State<Arc<Counter>>| async move {
                match c.hits.fetch_add(1, Ordering::SeqCst) {
                    // A 400 whose OperationOutcome says the problem is transient.
                    0 => fhir(
                        StatusCode::BAD_REQUEST,
                        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient", "diagnostics": "busy"}]}),
                    ),
                    // A 503 with Retry-After as an HTTP date two seconds ahead.
                    1 => {
                        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
                        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, later)], "").into_response()
                    }
                    _ => fhir(StatusCode::OK, json!({"resourceType": "Patient", "id": "p1"})),
                }
            }),
        )
        .with_state(Arc::clone(&counter));
    let base = serve(app).await;
    let started = Instant::now();
    let patient = client(&base)
        .read::<Patient>("p1")
        .await
        .expect("third attempt succeeds");
    assert_eq!(patient.id.as_deref(), Some("p1"));
    assert_eq!(counter.hits.load(Ordering::SeqCst), 3);
    // An HTTP date has whole-second resolution: at least one second was waited.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retries_are_bounded() {
    let counter = Arc::new(Counter::default());
    let app = Router::new()
        .route(
            "/fhir/Patient/p1",
            get(|State(c): State<Arc<Counter>>| async move {
                c.hits.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }),
        )
        .with_state(Arc::clone(&counter));
    let base = serve(app).await;
    let err = client(&base)
        .read::<Patient>("p1")
        .await
        .expect_err("gives up");
    assert_eq!(err.status(), Some(503));
    assert!(err.is_retryable());
    assert_eq!(counter.hits.load(Ordering::SeqCst), 4, "max_attempts");
}

#[tokio::test]
async fn the_concurrency_cap_holds() {
    let counter = Arc::new(Counter::default());
    let app = Router::new()
        .route(
            "/fhir/Patient/p1",
            get(|State(c): State<Arc<Counter>>| async move {
                let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                c.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                c.in_flight.fetch_sub(1, Ordering::SeqCst);
                fhir(
                    StatusCode::OK,
                    json!({"resourceType": "Patient", "id": "p1"}),
                )
            }),
        )
        .with_state(Arc::clone(&counter));
    let base = serve(app).await;
    let client = FhirClient::builder(&base)
        .max_concurrent_requests(3)
        .build()
        .expect("client");
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.read::<Patient>("p1").await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("read");
    }
    assert_eq!(counter.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn headers_sent_with_every_request() {
    let seen = Arc::new(std::sync::Mutex::new(None::<HeaderMap>));
    let app = Router::new()
        .route(
            "/fhir/Patient/p1",
            get(
                |State(seen): State<Arc<std::sync::Mutex<Option<HeaderMap>>>>,
                 headers: HeaderMap| async move {
                    *seen.lock().expect("lock") = Some(headers);
                    fhir(
                        StatusCode::OK,
                        json!({"resourceType": "Patient", "id": "p1"}),
                    )
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let base = serve(app).await;
    let client = FhirClient::builder(&base)
        .bearer_token(AccessToken::new("static-token"))
        .epic_client_id("my-client")
        .user_agent("portal/2.1")
        .header("X-Request-Source", "tests")
        .build()
        .expect("client");
    client.read::<Patient>("p1").await.expect("read");
    let headers = seen.lock().expect("lock").clone().expect("request seen");
    assert_eq!(headers["accept"], "application/fhir+json");
    assert_eq!(headers["authorization"], "Bearer static-token");
    assert_eq!(headers["epic-client-id"], "my-client");
    assert_eq!(headers["user-agent"], "portal/2.1");
    assert_eq!(headers["x-request-source"], "tests");
    assert!(
        headers["accept-encoding"]
            .to_str()
            .expect("ascii")
            .contains("gzip")
    );
}

#[tokio::test]
async fn redirects_to_another_origin_are_not_followed() {
    let other = serve(Router::new().route(
        "/fhir/Patient/p1",
        get(|headers: HeaderMap| async move {
            assert!(
                headers.get("authorization").is_none(),
                "the token must not follow a cross-origin redirect"
            );
            fhir(
                StatusCode::OK,
                json!({"resourceType": "Patient", "id": "p1"}),
            )
        }),
    ))
    .await;
    let target = format!("{other}/Patient/p1");
    let app = Router::new().route(
        "/fhir/Patient/p1",
        get(move || {
            let target = target.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, target)]).into_response() }
        }),
    );
    let base = serve(app).await;
    let err = client(&base)
        .read::<Patient>("p1")
        .await
        .expect_err("the redirect is not followed");
    assert_eq!(err.status(), Some(302));
}
