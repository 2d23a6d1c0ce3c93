//! The SDK's SMART App Launch against the sandbox: standalone and EHR launches, the callback's
//! checks, id_token verification, and the user-session token provider (refresh, rotation,
//! single flight, "log in again").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use epic_fhir::auth::{
    AuthorizationRequest, PendingAuthorization, SmartApp, TokenProvider, UserSession,
    UserSessionAuth,
};
use epic_fhir::model::Patient;
use epic_fhir::{ErrorKind, FhirClient};
use epic_fhir_sandbox::auth::AppConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use url::Url;

const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";
const PASSWORD: &str = "portal-test";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const LAUNCH: &str = "http://127.0.0.1:9/launch";

async fn sandbox() -> Sandbox {
    let mut config = SandboxConfig::default();
    config.patients = 7;
    config.smart.default_password = Some(PASSWORD.to_owned());
    config.smart.apps = vec![
        AppConfig::public("portal", vec![REDIRECT.to_owned()])
            .with_launch_url(Url::parse(LAUNCH).expect("url")),
    ];
    Sandbox::start(config).await.expect("sandbox")
}

fn app(sandbox: &Sandbox) -> SmartApp {
    SmartApp::builder("portal", REDIRECT)
        .scope("openid fhirUser launch/patient patient/*.rs offline_access")
        .allowed_issuer(sandbox.base_url().as_str())
        .build()
        .expect("app")
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn field(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).expect("field") + marker.len();
    html[start..].split('"').next().expect("value").to_owned()
}

fn location(response: &reqwest::Response) -> Url {
    assert_eq!(response.status().as_u16(), 302);
    Url::parse(response.headers()["location"].to_str().expect("ascii")).expect("url")
}

/// What a person does in the browser: log in as Camila and allow (or deny). Returns the
/// callback URL the browser is sent to.
async fn user_answers(sandbox: &Sandbox, request: &AuthorizationRequest, allow: bool) -> Url {
    let page = browser()
        .get(request.url.clone())
        .send()
        .await
        .expect("reachable")
        .text()
        .await
        .expect("html");
    let consent = browser()
        .post(format!("{}/login", sandbox.authorize_url()))
        .form(&[
            ("request", field(&page, "request").as_str()),
            ("username", "fhircamila"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("reachable")
        .text()
        .await
        .expect("html");
    let mut form = vec![
        ("request".to_owned(), field(&consent, "request")),
        (
            "decision".to_owned(),
            if allow { "allow" } else { "deny" }.to_owned(),
        ),
    ];
    for scope in consent.split(r#"name="scope" value=""#).skip(1) {
        form.push((
            "scope".to_owned(),
            scope.split('"').next().expect("v").to_owned(),
        ));
    }
    let response = browser()
        .post(format!("{}/consent", sandbox.authorize_url()))
        .form(&form)
        .send()
        .await
        .expect("reachable");
    location(&response)
}

async fn camila_session(sandbox: &Sandbox, app: &SmartApp) -> UserSession {
    let request = app
        .standalone(sandbox.base_url().as_str())
        .await
        .expect("request");
    let callback = user_answers(sandbox, &request, true).await;
    app.callback(&request.pending, callback.query().unwrap_or(""))
        .await
        .expect("session")
}

#[tokio::test]
async fn a_standalone_launch_gives_a_session_the_fhir_client_can_use() {
    let sandbox = sandbox().await;
    let app = app(&sandbox);
    let request = app
        .standalone(sandbox.base_url().as_str())
        .await
        .expect("request");
    let query: Vec<(String, String)> = request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(get("code_challenge").map(|c| c.len()), Some(43));
    assert_eq!(get("state").map(|s| s.len()), Some(43), "256 random bits");
    assert_eq!(get("aud").as_deref(), Some(sandbox.base_url().as_str()));
    assert!(get("nonce").is_some());
    let other = app
        .standalone(sandbox.base_url().as_str())
        .await
        .expect("request");
    assert_ne!(
        other.pending.state(),
        request.pending.state(),
        "fresh state"
    );

    let callback = user_answers(&sandbox, &request, true).await;
    let session = app
        .callback(&request.pending, callback.query().unwrap_or(""))
        .await
        .expect("session");
    assert_eq!(session.patient.as_deref(), Some(CAMILA));
    assert!(session.has_refresh_token());
    let claims = session.id_token.as_ref().expect("verified id_token");
    assert_eq!(claims.sub, "fhircamila");
    assert_eq!(
        session.fhir_user.as_deref(),
        Some(format!("{}/Patient/{CAMILA}", sandbox.base_url()).as_str())
    );
    let debug = format!("{session:?}");
    assert!(
        !debug.contains(session.access_token().expose_secret()),
        "{debug}"
    );

    let auth = UserSessionAuth::new(&app, session);
    let client = FhirClient::builder(sandbox.base_url().as_str())
        .token_provider(Arc::new(auth))
        .build()
        .expect("client");
    let patient: Patient = client.read(CAMILA).await.expect("her record");
    assert_eq!(patient.id.as_deref(), Some(CAMILA));
    let err = client
        .read::<Patient>("eD.LxhDyX35TntF77l7etUA3")
        .await
        .expect_err("another patient");
    assert_eq!(err.status(), Some(403));
}

#[tokio::test]
async fn the_callback_is_checked() {
    let sandbox = sandbox().await;
    let app = app(&sandbox);
    let request = app
        .standalone(sandbox.base_url().as_str())
        .await
        .expect("request");
    // A forged callback with another state.
    let err = app
        .callback(&request.pending, "code=x&state=forged")
        .await
        .expect_err("state");
    assert_eq!(err.kind(), ErrorKind::Launch);
    assert!(err.to_string().contains("state"), "{err}");
    // The user says no.
    let callback = user_answers(&sandbox, &request, false).await;
    let err = app
        .callback(&request.pending, callback.query().unwrap_or(""))
        .await
        .expect_err("denied");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.oauth().map(|o| o.error.as_str()), Some("access_denied"));
    // A pending request whose nonce (or issuer) differs from the id_token's.
    for (member, value) in [
        ("nonce", "\"other\""),
        ("issuer", "\"http://127.0.0.1:9/x\""),
    ] {
        let request = app
            .standalone(sandbox.base_url().as_str())
            .await
            .expect("request");
        let callback = user_answers(&sandbox, &request, true).await;
        let mut json: serde_json::Value =
            serde_json::to_value(&request.pending).expect("serialises");
        json[member] = serde_json::from_str(value).expect("json");
        let tampered: PendingAuthorization = serde_json::from_value(json).expect("back");
        let err = app
            .callback(&tampered, callback.query().unwrap_or(""))
            .await
            .expect_err("id_token check");
        assert_eq!(err.kind(), ErrorKind::Launch, "{member}: {err}");
        let expected = if member == "nonce" { "nonce" } else { "iss" };
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[tokio::test]
async fn ehr_launches_are_accepted_only_from_allowed_issuers() {
    let sandbox = sandbox().await;
    let untrusting = SmartApp::builder("portal", REDIRECT).build().expect("app");
    let err = untrusting
        .ehr_launch(sandbox.base_url().as_str(), "x")
        .await
        .expect_err("not allowed");
    assert_eq!(err.kind(), ErrorKind::Launch);
    assert!(err.to_string().contains("trusts"), "{err}");

    let app = app(&sandbox);
    let to_app = location(
        &browser()
            .get(format!(
                "{}?app=portal&patient={CAMILA}",
                sandbox.launcher_url()
            ))
            .send()
            .await
            .expect("reachable"),
    );
    let pairs: std::collections::HashMap<String, String> = to_app
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let request = app
        .ehr_launch(&pairs["iss"], &pairs["launch"])
        .await
        .expect("request");
    assert!(request.url.as_str().contains("launch="));
    // The EHR user is signed in already: straight back with a code.
    let callback = location(
        &browser()
            .get(request.url.clone())
            .send()
            .await
            .expect("reachable"),
    );
    let session = app
        .callback(&request.pending, callback.query().unwrap_or(""))
        .await
        .expect("session");
    assert_eq!(session.patient.as_deref(), Some(CAMILA));
    assert!(
        session
            .fhir_user
            .is_some_and(|u| u.contains("/Practitioner/"))
    );
}

#[tokio::test]
async fn sessions_refresh_once_for_many_callers_and_keep_the_rotated_token() {
    let sandbox = sandbox().await;
    sandbox.set_token_lifetime(Duration::from_secs(2));
    let app = app(&sandbox);
    let session = camila_session(&sandbox, &app).await;
    let first_refresh = session.refresh_token().expect("refresh").to_owned();
    let auth = UserSessionAuth::new(&app, session.clone());
    let saved = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&saved);
    auth.on_refresh(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    // With a 2 s token and a 60 s margin every call wants a refresh: many at once make one.
    sandbox.set_token_lifetime(Duration::from_secs(3600));
    let before = sandbox.stats().token_requests;
    let tokens = futures_util::future::join_all((0..16).map(|_| auth.token())).await;
    let tokens: Vec<_> = tokens.into_iter().map(|t| t.expect("token")).collect();
    assert_eq!(sandbox.stats().token_requests - before, 1, "single flight");
    assert_eq!(auth.refreshes(), 1);
    // Callers that came while the refresh ran kept the still-valid old token.
    let (old, new) = (session.access_token(), auth.session().access_token());
    assert_ne!(old, new);
    assert!(tokens.iter().all(|t| *t == old || *t == new));
    assert!(tokens.contains(&new));
    assert_eq!(
        saved.load(Ordering::SeqCst),
        1,
        "the listener saw the new session"
    );
    let rotated = auth.session();
    assert_ne!(
        rotated.refresh_token(),
        Some(first_refresh.as_str()),
        "rotated"
    );
    assert_eq!(rotated.patient.as_deref(), Some(CAMILA));
    // Fresh now: no more requests.
    auth.token().await.expect("cached");
    assert_eq!(sandbox.stats().token_requests - before, 1);

    // The old refresh token again (a stolen copy): the server revokes the session, and both
    // holders are told to log in again.
    let stale = UserSessionAuth::new(&app, session);
    let err = stale.refresh().await.expect_err("replayed");
    assert_eq!(err.kind(), ErrorKind::LoginRequired, "{err}");
    assert!(err.needs_login());
    let err = auth.refresh().await.expect_err("revoked");
    assert!(err.needs_login(), "{err}");
    assert!(
        !auth.session().has_refresh_token(),
        "the dead token is forgotten"
    );
}

#[tokio::test]
async fn a_session_without_refresh_token_asks_for_login_when_it_expires() {
    let sandbox = sandbox().await;
    sandbox.set_token_lifetime(Duration::from_secs(1));
    let app = SmartApp::builder("portal", REDIRECT)
        .scope("launch/patient patient/*.rs")
        .build()
        .expect("app");
    let session = camila_session(&sandbox, &app).await;
    assert!(!session.has_refresh_token());
    assert!(session.id_token.is_none());
    let auth = UserSessionAuth::new(&app, session).with_refresh_margin(Duration::ZERO);
    auth.token().await.expect("still valid");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = auth.token().await.expect_err("expired");
    assert_eq!(err.kind(), ErrorKind::LoginRequired);
}
