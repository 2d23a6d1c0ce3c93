//! Test helpers: a scriptable token endpoint on 127.0.0.1 and an independent JWT verifier.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One scripted answer of the mock token endpoint.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    pub delay: Duration,
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn token(access_token: &str, expires_in: u64) -> Self {
        Reply::json(
            200,
            json!({"access_token": access_token, "token_type": "bearer", "expires_in": expires_in, "scope": "system/Patient.read"}),
        )
    }
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: body.to_string(),
            content_type: "application/json",
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
    pub fn text(status: u16, body: &str) -> Self {
        Reply {
            status,
            body: body.to_owned(),
            content_type: "text/html",
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    /// When the script runs out, tokens named `token-N` are issued with this lifetime.
    default_expires_in: u64,
    default_delay: Duration,
    requests: Mutex<Vec<Captured>>,
    issued: AtomicUsize,
    well_known: Mutex<Option<Value>>,
    metadata: Mutex<Option<Value>>,
}

/// What the mock saw of one token request.
#[derive(Clone, Debug)]
pub struct Captured {
    pub content_type: Option<String>,
    pub form: HashMap<String, String>,
}

pub struct MockTokenServer {
    pub addr: SocketAddr,
    script: Arc<Script>,
}

impl MockTokenServer {
    /// Starts a mock that answers each token request with the next scripted reply, then with
    /// fresh tokens `token-1`, `token-2`... of `expires_in` seconds after `delay`.
    pub async fn start(replies: Vec<Reply>, expires_in: u64, delay: Duration) -> Self {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.into()),
            default_expires_in: expires_in,
            default_delay: delay,
            ..Script::default()
        });
        let app = Router::new()
            .route("/oauth2/token", post(token))
            .route("/fhir/.well-known/smart-configuration", get(well_known))
            .route("/fhir/metadata", get(metadata))
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        MockTokenServer { addr, script }
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    pub fn fhir_base(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.script.requests.lock().expect("lock").clone()
    }

    pub fn request_count(&self) -> usize {
        self.script.requests.lock().expect("lock").len()
    }

    pub fn set_well_known(&self, doc: Option<Value>) {
        *self.script.well_known.lock().expect("lock") = doc;
    }

    pub fn set_metadata(&self, doc: Option<Value>) {
        *self.script.metadata.lock().expect("lock") = doc;
    }
}

async fn token(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    script.requests.lock().expect("lock").push(Captured {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        form,
    });
    let scripted = script.replies.lock().expect("lock").pop_front();
    let reply = scripted.unwrap_or_else(|| {
        let n = script.issued.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::token(&format!("token-{n}"), script.default_expires_in).delayed(script.default_delay)
    });
    tokio::time::sleep(reply.delay).await;
    let mut response = (
        StatusCode::from_u16(reply.status).expect("status"),
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response();
    if let Some(retry_after) = reply.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.parse().expect("header"));
    }
    response
}

async fn well_known(State(script): State<Arc<Script>>) -> Response {
    match script.well_known.lock().expect("lock").clone() {
        Some(doc) => axum::Json(doc).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn metadata(State(script): State<Arc<Script>>) -> Response {
    match script.metadata.lock().expect("lock").clone() {
        Some(doc) => axum::Json(doc).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The claims SMART Backend Services puts in a client assertion.
#[derive(Debug, serde::Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

/// Verifies an assertion with `jsonwebtoken` (an implementation independent of ours) against a
/// public JWK, checking the signature, `aud`, `iss`, `exp`, and the header.
pub fn verify_independently(
    assertion: &str,
    public_jwk: &Value,
    client_id: &str,
    token_url: &str,
) -> (jsonwebtoken::Header, AssertionClaims) {
    let header = jsonwebtoken::decode_header(assertion).expect("header decodes");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(public_jwk.clone()).expect("jwk");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[token_url]);
    validation.set_issuer(&[client_id]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
        .expect("assertion verifies with the public JWK");
    (header, data.claims)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs()
}

/// A sandbox with a registered client, and an authenticated FHIR client for it.
pub struct SandboxFixture {
    pub sandbox: epic_fhir_sandbox::Sandbox,
    pub auth: epic_fhir::auth::BackendServicesAuth,
    pub client: epic_fhir::FhirClient,
}

pub const SANDBOX_CLIENT_ID: &str = "sdk-tests";

/// Starts a sandbox (adjusted by `tweak`), registers a fresh ES384 key, and builds a client
/// that discovers the token endpoint. `client_tweak` adjusts the client builder.
pub async fn sandbox_fixture(
    tweak: impl FnOnce(&mut epic_fhir_sandbox::SandboxConfig),
    client_tweak: impl FnOnce(epic_fhir::FhirClientBuilder) -> epic_fhir::FhirClientBuilder,
) -> SandboxFixture {
    let key = epic_fhir::auth::SigningKey::generate_ec_p384().expect("key");
    let jwks = serde_json::to_value(key.jwk_set()).expect("jwks");
    let mut config = epic_fhir_sandbox::SandboxConfig::default();
    config.patients = 12;
    config.clients.push(
        epic_fhir_sandbox::auth::ClientConfig::with_jwks(SANDBOX_CLIENT_ID, &jwks).expect("client"),
    );
    tweak(&mut config);
    let sandbox = epic_fhir_sandbox::Sandbox::start(config)
        .await
        .expect("sandbox");
    let auth = epic_fhir::auth::BackendServicesAuth::builder(SANDBOX_CLIENT_ID, key)
        .discover(sandbox.base_url().as_str())
        .await
        .expect("discovery")
        .build()
        .expect("auth");
    let builder =
        epic_fhir::FhirClient::builder(sandbox.base_url().as_str()).backend_services(auth.clone());
    let client = client_tweak(builder).build().expect("client");
    SandboxFixture {
        sandbox,
        auth,
        client,
    }
}

/// Fast retries for tests: many attempts, short backoff.
pub fn patient_retries() -> epic_fhir::RetryPolicy {
    epic_fhir::RetryPolicy::default()
        .with_max_attempts(12)
        .with_initial_backoff(Duration::from_millis(2))
        .with_max_backoff(Duration::from_millis(20))
}

pub const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";
pub const DERRICK: &str = "eq081-VQEgP8drUUqCWzHfw3";
