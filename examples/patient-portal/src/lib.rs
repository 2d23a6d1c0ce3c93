//! A small patient portal built on the `epic-fhir` SDK: a patient logs in with MyChart (SMART
//! App Launch, standalone) or is sent from the EHR (EHR launch), and sees a summary of their
//! record: demographics, latest vital signs, a blood pressure chart, problems, medications
//! and allergies.
//!
//! Everything secret stays on the server: the pending authorization (with its PKCE verifier)
//! and the user's session are kept in memory, keyed by random HttpOnly, SameSite=Lax cookies.
//! The pages are plain HTML with inline CSS and no JavaScript.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use epic_fhir::auth::{AuthorizationRequest, PendingAuthorization, SmartApp, UserSessionAuth};
use epic_fhir::model::{AllergyIntolerance, Condition, MedicationRequest, Observation, Patient};
use epic_fhir::{FhirClient, SearchParams};
use tokio::net::TcpListener;
use url::Url;

mod chart;
mod pages;

/// The scopes the portal asks for: who the user is, their patient, and read/search of their
/// record. An EHR launch adds `launch`.
pub const DEFAULT_SCOPE: &str = "openid fhirUser launch/patient patient/*.rs";

const LOGIN_COOKIE: &str = "portal_login";
const SESSION_COOKIE: &str = "portal_session";
/// How long a login may take, from the portal to the callback.
const LOGIN_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long a portal session lasts (the access token may end it sooner).
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// At most this many resources of each kind are shown.
const MAX_RESOURCES: usize = 500;

/// The portal's configuration.
#[derive(Clone, Debug)]
pub struct Portal {
    /// The FHIR server a standalone launch ("Log in with MyChart") goes to.
    pub fhir_base: Url,
    /// The portal's client id at the authorization server.
    pub client_id: String,
    /// Where browsers reach the portal, such as `http://127.0.0.1:8080/`; the redirect URI is
    /// its `callback`.
    pub public_url: Url,
    /// The FHIR servers (`iss`) an EHR launch may come from.
    pub allowed_issuers: Vec<String>,
    /// The scopes asked for.
    pub scope: String,
}

impl Portal {
    /// A portal for `fhir_base`, trusting EHR launches from that server only.
    pub fn new(fhir_base: Url, client_id: impl Into<String>, public_url: Url) -> Self {
        Portal {
            allowed_issuers: vec![fhir_base.to_string()],
            fhir_base,
            client_id: client_id.into(),
            public_url,
            scope: DEFAULT_SCOPE.to_owned(),
        }
    }

    /// The redirect URI to register for the portal: `public_url` + `callback`.
    pub fn redirect_uri(&self) -> Url {
        let mut url = self.public_url.clone();
        url.set_path(&format!(
            "{}/callback",
            self.public_url.path().trim_end_matches('/')
        ));
        url
    }

    /// The launch URL to register for EHR launches: `public_url` + `launch`.
    pub fn launch_url(&self) -> Url {
        let mut url = self.public_url.clone();
        url.set_path(&format!(
            "{}/launch",
            self.public_url.path().trim_end_matches('/')
        ));
        url
    }
}

/// A logged-in user: a FHIR client that authenticates with their session, and their patient.
struct Session {
    client: FhirClient,
    patient: String,
    started: Instant,
}

struct AppState {
    app: SmartApp,
    fhir_base: Url,
    logins: Mutex<HashMap<String, (Instant, PendingAuthorization)>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// The portal's routes.
///
/// # Errors
/// When the SMART app cannot be built from `config` (such as an invalid redirect URI).
pub fn router(config: Portal) -> epic_fhir::Result<Router> {
    let mut builder =
        SmartApp::builder(&config.client_id, config.redirect_uri().as_str()).scope(&config.scope);
    for issuer in &config.allowed_issuers {
        builder = builder.allowed_issuer(issuer);
    }
    let state = Arc::new(AppState {
        app: builder.build()?,
        fhir_base: config.fhir_base,
        logins: Mutex::default(),
        sessions: Mutex::default(),
    });
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/launch", get(launch))
        .route("/callback", get(callback))
        .route("/summary", get(summary))
        .route("/logout", post(logout))
        .with_state(state))
}

/// Serves the portal on `listener` until the task is dropped.
///
/// # Errors
/// When the configuration is invalid, or the listener fails.
pub async fn serve(listener: TcpListener, config: Portal) -> std::io::Result<()> {
    let router = router(config).map_err(std::io::Error::other)?;
    axum::serve(listener, router).await
}

impl AppState {
    /// Keeps the pending authorization under a new random cookie and sends the browser to
    /// the authorization server.
    fn begin(&self, request: AuthorizationRequest) -> Response {
        let key = random_id();
        let mut logins = self.logins.lock().unwrap_or_else(PoisonError::into_inner);
        logins.retain(|_, (at, _)| at.elapsed() < LOGIN_LIFETIME);
        logins.insert(key.clone(), (Instant::now(), request.pending));
        drop(logins);
        redirect(
            request.url.as_str(),
            &[set_cookie(LOGIN_COOKIE, &key, LOGIN_LIFETIME)],
        )
    }

    fn session(&self, headers: &HeaderMap) -> Option<Arc<Session>> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .get(id)
            .filter(|s| s.started.elapsed() < SESSION_LIFETIME)
            .cloned()
    }

    fn end_session(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            sessions.remove(id);
        }
    }
}

async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    pages::home(state.session(&headers).is_some())
}

/// `GET /login`: a standalone launch.
async fn login(State(state): State<Arc<AppState>>) -> Response {
    match state.app.standalone(state.fhir_base.as_str()).await {
        Ok(request) => state.begin(request),
        Err(err) => pages::error(
            StatusCode::BAD_GATEWAY,
            "MyChart is not available",
            &format!("The login could not be started: {err}"),
        ),
    }
}

/// `GET /launch?iss=...&launch=...`: an EHR launch, from an allowed issuer only.
async fn launch(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (Some(iss), Some(launch)) = (params.get("iss"), params.get("launch")) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Launch refused",
            "An EHR launch names the FHIR server (iss) and the launch.",
        );
    };
    match state.app.ehr_launch(iss, launch).await {
        Ok(request) => state.begin(request),
        Err(err) => pages::error(StatusCode::BAD_REQUEST, "Launch refused", &err.to_string()),
    }
}

/// `GET /callback`: the authorization server sends the browser back here.
async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pending = cookie(&headers, LOGIN_COOKIE).and_then(|key| {
        let mut logins = state.logins.lock().unwrap_or_else(PoisonError::into_inner);
        logins
            .remove(key)
            .filter(|(at, _)| at.elapsed() < LOGIN_LIFETIME)
    });
    let Some((_, pending)) = pending else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Login expired",
            "This browser has no login in progress (or it took too long). Please log in again.",
        );
    };
    let session = match state
        .app
        .callback(&pending, query.as_deref().unwrap_or(""))
        .await
    {
        Ok(session) => session,
        Err(err) if err.oauth().is_some_and(|o| o.error == "access_denied") => {
            return pages::error(
                StatusCode::FORBIDDEN,
                "Not connected",
                "You chose not to share your record with the portal.",
            );
        }
        Err(err) => return pages::error(StatusCode::BAD_REQUEST, "Login failed", &err.to_string()),
    };
    let Some(patient) = session.patient.clone() else {
        return pages::error(
            StatusCode::BAD_GATEWAY,
            "Login failed",
            "The server did not say which patient's record this is.",
        );
    };
    let auth = UserSessionAuth::new(&state.app, session.clone());
    let client = match FhirClient::builder(session.fhir_base.as_str())
        .token_provider(Arc::new(auth))
        .build()
    {
        Ok(client) => client,
        Err(err) => return pages::error(StatusCode::BAD_GATEWAY, "Login failed", &err.to_string()),
    };
    let id = random_id();
    {
        let mut sessions = state
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFETIME);
        sessions.insert(
            id.clone(),
            Arc::new(Session {
                client,
                patient,
                started: Instant::now(),
            }),
        );
    }
    redirect(
        "/summary",
        &[
            set_cookie(SESSION_COOKIE, &id, SESSION_LIFETIME),
            set_cookie(LOGIN_COOKIE, "", Duration::ZERO),
        ],
    )
}

/// What the summary page shows.
struct Record {
    patient: Patient,
    vitals: Vec<Observation>,
    conditions: Vec<Condition>,
    medications: Vec<MedicationRequest>,
    allergies: Vec<AllergyIntolerance>,
}

async fn fetch(session: &Session) -> epic_fhir::Result<Record> {
    let client = &session.client;
    let by_patient = SearchParams::new().reference("patient", &session.patient);
    let vitals = by_patient.clone().token("category", None, "vital-signs");
    let limit = Some(MAX_RESOURCES);
    let (patient, vitals, conditions, medications, allergies) = tokio::try_join!(
        client.read::<Patient>(&session.patient),
        client.search_all::<Observation>(&vitals, limit),
        client.search_all::<Condition>(&by_patient, limit),
        client.search_all::<MedicationRequest>(&by_patient, limit),
        client.search_all::<AllergyIntolerance>(&by_patient, limit),
    )?;
    Ok(Record {
        patient,
        vitals,
        conditions,
        medications,
        allergies,
    })
}

/// `GET /summary`: the logged-in patient's summary.
async fn summary(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(session) = state.session(&headers) else {
        return redirect("/", &[]);
    };
    match fetch(&session).await {
        Ok(record) => pages::summary(&record),
        Err(err) if err.needs_login() => {
            state.end_session(&headers);
            redirect("/", &[set_cookie(SESSION_COOKIE, "", Duration::ZERO)])
        }
        Err(err) => pages::error(
            StatusCode::BAD_GATEWAY,
            "Your record could not be loaded",
            &err.to_string(),
        ),
    }
}

/// `POST /logout`.
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    state.end_session(&headers);
    redirect("/", &[set_cookie(SESSION_COOKIE, "", Duration::ZERO)])
}

/// 256 random bits, base64url.
fn random_id() -> String {
    let mut bytes = [0_u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system CSPRNG works");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}

fn set_cookie(name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let cookie = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        max_age.as_secs()
    );
    HeaderValue::from_str(&cookie).expect("cookie names and base64url values are header-safe")
}

/// A `303 See Other` to `location`, setting `cookies`.
fn redirect(location: &str, cookies: &[HeaderValue]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie.clone());
    }
    response
}
