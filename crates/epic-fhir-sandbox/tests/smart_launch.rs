//! SMART App Launch against the sandbox over HTTP: every authorize and token rule, the login
//! and consent pages, the EHR launcher, refresh rotation, id_tokens (verified with
//! `jsonwebtoken`, independent of the sandbox) and patient-compartment enforcement.

mod support;

use std::time::Duration;

use base64::Engine as _;
use epic_fhir_sandbox::auth::{AppConfig, ClientKeys, parse_jwks};
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use support::{TestKey, b64url, claims, sign};
use url::Url;

const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";
const JASON: &str = "eD.LxhDyX35TntF77l7etUA3";
const PASSWORD: &str = "test-password";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const LAUNCH: &str = "http://127.0.0.1:9/launch";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PORTAL_SCOPE: &str = "openid fhirUser launch/patient patient/*.read offline_access";

async fn start() -> Sandbox {
    let key = TestKey::rsa2048("app-key");
    let mut config = SandboxConfig::default();
    config.patients = 7;
    config.smart.default_password = Some(PASSWORD.to_owned());
    config.smart.apps = vec![
        AppConfig::public("portal", vec![REDIRECT.to_owned()])
            .with_launch_url(Url::parse(LAUNCH).expect("url")),
        AppConfig::public("other", vec!["http://127.0.0.1:9/other".to_owned()])
            .with_launch_url(Url::parse(LAUNCH).expect("url")),
        AppConfig::public("secret-app", vec![REDIRECT.to_owned()]).with_secret("s3cret"),
        AppConfig::public("jwt-app", vec![REDIRECT.to_owned()]).with_keys(ClientKeys::Static(
            parse_jwks(&support::jwks(&[&key])).expect("jwks"),
        )),
    ];
    Sandbox::start(config).await.expect("sandbox starts")
}

/// A client that never follows redirects: every hop is checked.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn authorize_params<'a>(
    sandbox: &'a Sandbox,
    client: &'a str,
    scope: &'a str,
) -> Vec<(&'a str, String)> {
    vec![
        ("response_type", "code".to_owned()),
        ("client_id", client.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("scope", scope.to_owned()),
        ("state", "state-123".to_owned()),
        ("aud", sandbox.base_url().to_string()),
        ("code_challenge", CHALLENGE.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
        ("nonce", "nonce-456".to_owned()),
    ]
}

fn with<K: AsRef<str>>(
    params: &[(K, String)],
    name: &str,
    value: Option<&str>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k.as_ref() != name)
        .map(|(k, v)| (k.as_ref().to_owned(), v.clone()))
        .collect();
    if let Some(value) = value {
        out.push((name.to_owned(), value.to_owned()));
    }
    out
}

async fn get_authorize(sandbox: &Sandbox, params: &[(String, String)]) -> reqwest::Response {
    let mut url = sandbox.authorize_url().clone();
    url.query_pairs_mut().extend_pairs(params);
    browser().get(url).send().await.expect("reachable")
}

/// The value of the hidden `request` input of a page.
fn hidden_request(html: &str) -> String {
    let marker = r#"name="request" value=""#;
    let start = html.find(marker).expect("a request field") + marker.len();
    html[start..].split('"').next().expect("value").to_owned()
}

fn location(response: &reqwest::Response) -> Url {
    assert_eq!(response.status().as_u16(), 302, "a redirect");
    let location = response
        .headers()
        .get("location")
        .expect("Location")
        .to_str()
        .expect("ascii");
    Url::parse(location).expect("absolute")
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn post_form(url: String, form: &[(&str, &str)]) -> reqwest::Response {
    browser()
        .post(url)
        .form(form)
        .send()
        .await
        .expect("reachable")
}

/// Logs in and returns the consent page's request id and HTML.
async fn login(
    sandbox: &Sandbox,
    params: &[(String, String)],
    user: &str,
    password: &str,
) -> (String, String, u16) {
    let page = get_authorize(sandbox, params).await;
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"name="username""#) && html.contains(r#"name="password""#));
    assert!(!html.contains("<script"), "no JavaScript");
    let request = hidden_request(&html);
    let response = post_form(
        format!("{}/login", sandbox.authorize_url()),
        &[
            ("request", &request),
            ("username", user),
            ("password", password),
        ],
    )
    .await;
    let status = response.status().as_u16();
    (request, response.text().await.expect("html"), status)
}

/// The whole standalone flow for `fhircamila`: returns the redirect back to the app.
async fn standalone(sandbox: &Sandbox, params: &[(String, String)], keep: Option<&[&str]>) -> Url {
    let (request, consent, status) = login(sandbox, params, "fhircamila", PASSWORD).await;
    assert_eq!(status, 200, "{consent}");
    assert!(
        consent.contains("Camila"),
        "the consent page names the user"
    );
    let mut form: Vec<(&str, &str)> = vec![("request", &request), ("decision", "allow")];
    let listed: Vec<String> = consent
        .split(r#"name="scope" value=""#)
        .skip(1)
        .map(|rest| rest.split('"').next().expect("value").to_owned())
        .collect();
    for scope in &listed {
        if keep.is_none_or(|keep| keep.contains(&scope.as_str())) {
            form.push(("scope", scope));
        }
    }
    let response = post_form(format!("{}/consent", sandbox.authorize_url()), &form).await;
    location(&response)
}

async fn token(sandbox: &Sandbox, form: &[(&str, &str)]) -> (u16, Value) {
    let response = browser()
        .post(sandbox.token_url().clone())
        .form(form)
        .send()
        .await
        .expect("reachable");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn exchange(sandbox: &Sandbox, code: &str, verifier: &str) -> (u16, Value) {
    token(
        sandbox,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", "portal"),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A portal session for Camila: the token response.
async fn camila_tokens(sandbox: &Sandbox, scope: &str) -> Value {
    let params = authorize_params(sandbox, "portal", scope);
    let back = standalone(sandbox, &with(&params, "x", None), None).await;
    let code = query(&back, "code").expect("code");
    let (status, body) = exchange(sandbox, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn fhir(sandbox: &Sandbox, token: &str, path: &str) -> (u16, Value) {
    let response = support::get(sandbox, Some(token), path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn assert_oauth(result: &(u16, Value), status: u16, error: &str, needle: &str) {
    let (actual, body) = result;
    assert_eq!(*actual, status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(needle),
        "{description:?} lacks {needle:?}"
    );
}

fn assert_redirect_error(url: &Url, error: &str, needle: &str, state: Option<&str>) {
    assert_eq!(&url.as_str()[..REDIRECT.len()], REDIRECT, "{url}");
    assert_eq!(query(url, "error").as_deref(), Some(error), "{url}");
    let description = query(url, "error_description").unwrap_or_default();
    assert!(
        description.contains(needle),
        "{description:?} lacks {needle:?}"
    );
    assert_eq!(query(url, "state").as_deref(), state, "{url}");
    assert!(query(url, "code").is_none());
}

#[tokio::test]
async fn standalone_launch_gives_camila_a_patient_token_refresh_token_and_id_token() {
    let sandbox = start().await;
    let params = authorize_params(&sandbox, "portal", PORTAL_SCOPE);
    let back = standalone(&sandbox, &with(&params, "x", None), None).await;
    assert_eq!(
        query(&back, "state").as_deref(),
        Some("state-123"),
        "state echoed"
    );
    let code = query(&back, "code").expect("code");
    let (status, body) = exchange(&sandbox, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["patient"], CAMILA);
    assert_eq!(body["scope"], PORTAL_SCOPE);
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 43)
    );
    let access = body["access_token"].as_str().expect("token");
    let (status, patient) = fhir(&sandbox, access, &format!("Patient/{CAMILA}")).await;
    assert_eq!(status, 200, "{patient}");

    // The id_token, checked with jsonwebtoken against the published JWK Set.
    let config: Value = browser()
        .get(format!(
            "{}/.well-known/smart-configuration",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    let jwks: jsonwebtoken::jwk::JwkSet = browser()
        .get(config["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("jwks");
    let id_token = body["id_token"].as_str().expect("id_token");
    let header = jsonwebtoken::decode_header(id_token).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("published key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["portal"]);
    validation.set_issuer(&[sandbox.base_url().as_str()]);
    let claims = jsonwebtoken::decode::<Value>(
        id_token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
        &validation,
    )
    .expect("id_token verifies")
    .claims;
    assert_eq!(claims["nonce"], "nonce-456");
    assert_eq!(claims["sub"], "fhircamila");
    assert_eq!(
        claims["fhirUser"],
        format!("{}/Patient/{CAMILA}", sandbox.base_url())
    );
    assert!(claims["exp"].as_i64().expect("exp") > support::now());
    // Tampering breaks the signature.
    let mut parts: Vec<String> = id_token.split('.').map(str::to_owned).collect();
    parts[1] = b64url(
        json!({"sub": "fhirjason", "aud": "portal"})
            .to_string()
            .as_bytes(),
    );
    assert!(
        jsonwebtoken::decode::<Value>(
            &parts.join("."),
            &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
            &validation,
        )
        .is_err()
    );
}

#[tokio::test]
async fn no_id_token_without_openid_and_no_refresh_token_without_offline_or_online_access() {
    let sandbox = start().await;
    let body = camila_tokens(&sandbox, "launch/patient patient/Observation.rs").await;
    assert!(body.get("id_token").is_none(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let body = camila_tokens(&sandbox, "openid patient/Observation.rs online_access").await;
    assert!(body["id_token"].is_string());
    assert!(body["refresh_token"].is_string());
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_checked() {
    let sandbox = start().await;
    let params = authorize_params(&sandbox, "portal", PORTAL_SCOPE);
    // A wrong verifier.
    let back = standalone(&sandbox, &with(&params, "x", None), None).await;
    let code = query(&back, "code").expect("code");
    let wrong = "x".repeat(43);
    assert_oauth(
        &exchange(&sandbox, &code, &wrong).await,
        400,
        "invalid_grant",
        "does not match",
    );
    // A missing verifier.
    let back = standalone(&sandbox, &with(&params, "x", None), None).await;
    let code = query(&back, "code").expect("code");
    let result = token(
        &sandbox,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "portal"),
        ],
    )
    .await;
    assert_oauth(&result, 400, "invalid_grant", "code_verifier is missing");
    // plain is refused, back at the app with the state.
    let plain = with(
        &with(&params, "code_challenge_method", Some("plain")),
        "code_challenge",
        Some(VERIFIER),
    );
    let response = get_authorize(&sandbox, &plain).await;
    assert_redirect_error(
        &location(&response),
        "invalid_request",
        "plain",
        Some("state-123"),
    );
    // A public app must send a challenge.
    let none = with(
        &with(&params, "code_challenge_method", None),
        "code_challenge",
        None,
    );
    let response = get_authorize(&sandbox, &none).await;
    assert_redirect_error(
        &location(&response),
        "invalid_request",
        "PKCE",
        Some("state-123"),
    );
    // A confidential app may go without, but then may not send a verifier.
    let secret = with(
        &with(
            &authorize_params(&sandbox, "secret-app", "patient/*.read"),
            "code_challenge_method",
            None,
        ),
        "code_challenge",
        None,
    );
    let back = standalone(&sandbox, &secret, None).await;
    let code = query(&back, "code").expect("code");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("secret-app:s3cret")
    );
    let response = browser()
        .post(sandbox.token_url().clone())
        .header("Authorization", &basic)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("reachable");
    let result = (
        response.status().as_u16(),
        response.json::<Value>().await.expect("json"),
    );
    assert_oauth(&result, 400, "invalid_grant", "no code_challenge");
}

#[tokio::test]
async fn a_code_is_single_use_and_its_replay_revokes_what_it_gave() {
    let sandbox = start().await;
    let params = authorize_params(&sandbox, "portal", PORTAL_SCOPE);
    let back = standalone(&sandbox, &with(&params, "x", None), None).await;
    let code = query(&back, "code").expect("code");
    let (status, body) = exchange(&sandbox, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("token").to_owned();
    let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
    assert_eq!(
        fhir(&sandbox, &access, &format!("Patient/{CAMILA}"))
            .await
            .0,
        200
    );
    assert_oauth(
        &exchange(&sandbox, &code, VERIFIER).await,
        400,
        "invalid_grant",
        "already used",
    );
    assert_eq!(
        fhir(&sandbox, &access, &format!("Patient/{CAMILA}"))
            .await
            .0,
        401,
        "revoked"
    );
    let result = token(
        &sandbox,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "portal"),
        ],
    )
    .await;
    assert_oauth(&result, 400, "invalid_grant", "log in again");
    // An unknown code.
    assert_oauth(
        &exchange(&sandbox, "made-up", VERIFIER).await,
        400,
        "invalid_grant",
        "unknown",
    );
}

#[tokio::test]
async fn an_expired_code_and_a_wrong_redirect_uri_or_client_are_refused() {
    let sandbox = start().await;
    sandbox.set_code_lifetime(Duration::ZERO);
    let params = authorize_params(&sandbox, "portal", PORTAL_SCOPE);
    let back = standalone(&sandbox, &with(&params, "x", None), None).await;
    let code = query(&back, "code").expect("code");
    assert_oauth(
        &exchange(&sandbox, &code, VERIFIER).await,
        400,
        "invalid_grant",
        "expired",
    );

    sandbox.set_code_lifetime(Duration::from_secs(60));
    let back = standalone(&sandbox, &with(&params, "x", None), None).await;
    let code = query(&back, "code").expect("code");
    let other_client = token(
        &sandbox,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_oauth(&other_client, 400, "invalid_grant", "another app");
    let wrong_redirect = token(
        &sandbox,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("client_id", "portal"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_oauth(&wrong_redirect, 400, "invalid_grant", "not the one");
}

#[tokio::test]
async fn untrusted_client_or_redirect_uri_gets_an_error_page_never_a_redirect() {
    let sandbox = start().await;
    let params = authorize_params(&sandbox, "portal", PORTAL_SCOPE);
    for (case, bad) in [
        (
            "mismatch",
            with(&params, "redirect_uri", Some("http://127.0.0.1:9/cb/evil")),
        ),
        ("missing", with(&params, "redirect_uri", None)),
        ("unknown client", with(&params, "client_id", Some("nobody"))),
        ("missing client", with(&params, "client_id", None)),
        (
            "other app's uri",
            with(&params, "redirect_uri", Some("http://127.0.0.1:9/other")),
        ),
    ] {
        let response = get_authorize(&sandbox, &bad).await;
        assert_eq!(response.status().as_u16(), 400, "{case}");
        assert!(
            response.headers().get("location").is_none(),
            "{case}: never redirected"
        );
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{case}: {content_type}"
        );
        let html = response.text().await.expect("html");
        assert!(html.contains(r#"role="alert""#), "{case}: {html}");
    }
    let mut repeated = with(&params, "x", None);
    repeated.push(("redirect_uri".into(), "http://127.0.0.1:9/evil".into()));
    assert_eq!(
        get_authorize(&sandbox, &repeated).await.status().as_u16(),
        400
    );
}

#[tokio::test]
async fn errors_after_the_redirect_uri_is_known_go_back_with_the_state() {
    let sandbox = start().await;
    let params = authorize_params(&sandbox, "portal", PORTAL_SCOPE);
    let cases = [
        (
            with(&params, "response_type", Some("token")),
            "unsupported_response_type",
            "use code",
            Some("state-123"),
        ),
        (
            with(&params, "aud", Some("http://127.0.0.1:9/fhir")),
            "invalid_request",
            "FHIR base URL",
            Some("state-123"),
        ),
        (
            with(&params, "aud", None),
            "invalid_request",
            "aud is missing",
            Some("state-123"),
        ),
        (
            with(&params, "scope", None),
            "invalid_scope",
            "scope is missing",
            Some("state-123"),
        ),
        (
            with(&params, "scope", Some("system/*.read made-up")),
            "invalid_scope",
            "none of the requested scopes",
            Some("state-123"),
        ),
        (
            with(&params, "state", None),
            "invalid_request",
            "state is missing",
            None,
        ),
        (
            with(&params, "launch", Some("made-up")),
            "invalid_scope",
            "launch scope",
            Some("state-123"),
        ),
    ];
    for (request, error, needle, state) in cases {
        let response = get_authorize(&sandbox, &request).await;
        assert_redirect_error(&location(&response), error, needle, state);
    }
    // POST works as GET does.
    let response = browser()
        .post(sandbox.authorize_url().clone())
        .form(&with(&params, "response_type", Some("token")))
        .send()
        .await
        .expect("reachable");
    assert_redirect_error(
        &location(&response),
        "unsupported_response_type",
        "use code",
        Some("state-123"),
    );
    let response = browser()
        .post(sandbox.authorize_url().clone())
        .form(&with(&params, "x", None))
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 200, "the login page");
}

#[tokio::test]
async fn login_failures_and_denied_consent() {
    let sandbox = start().await;
    let params = with(
        &authorize_params(&sandbox, "portal", PORTAL_SCOPE),
        "x",
        None,
    );
    let (_, html, status) = login(&sandbox, &params, "fhircamila", "wrong").await;
    assert_eq!(status, 401);
    assert!(html.contains("not right") && html.contains(r#"name="password""#));
    let (_, _, status) = login(&sandbox, &params, "nobody", PASSWORD).await;
    assert_eq!(status, 401);
    let (request, _, status) = login(&sandbox, &params, "fhircamila", PASSWORD).await;
    assert_eq!(status, 200);
    let response = post_form(
        format!("{}/consent", sandbox.authorize_url()),
        &[("request", &request), ("decision", "deny")],
    )
    .await;
    assert_redirect_error(
        &location(&response),
        "access_denied",
        "denied",
        Some("state-123"),
    );
    // The consent form is single use.
    let response = post_form(
        format!("{}/consent", sandbox.authorize_url()),
        &[("request", &request), ("decision", "allow")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers().get("location").is_none());
    // Consent cannot be given without logging in.
    let page = get_authorize(&sandbox, &params)
        .await
        .text()
        .await
        .expect("html");
    let request = hidden_request(&page);
    let response = post_form(
        format!("{}/consent", sandbox.authorize_url()),
        &[("request", &request)],
    )
    .await;
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.expect("html").contains("log in"));
}

#[tokio::test]
async fn scopes_are_narrowed_by_registration_consent_and_refresh() {
    let sandbox = start().await;
    let body = camila_tokens(
        &sandbox,
        "openid launch/patient patient/Observation.read patient/Condition.write patient/Patient.cruds system/*.read made-up offline_access",
    )
    .await;
    assert_eq!(
        body["scope"],
        "openid launch/patient patient/Observation.read patient/Patient.rs offline_access"
    );
    let access = body["access_token"].as_str().expect("token");
    let (status, outcome) = fhir(&sandbox, access, "Condition?patient=x").await;
    assert_eq!(status, 403, "{outcome}");

    // The user unticks Observation on the consent page.
    let params = authorize_params(
        &sandbox,
        "portal",
        "launch/patient patient/Observation.rs patient/Patient.rs offline_access",
    );
    let back = standalone(
        &sandbox,
        &with(&params, "x", None),
        Some(&["launch/patient", "patient/Patient.rs", "offline_access"]),
    )
    .await;
    let code = query(&back, "code").expect("code");
    let (status, body) = exchange(&sandbox, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scope"],
        "launch/patient patient/Patient.rs offline_access"
    );
    let access = body["access_token"].as_str().expect("token");
    assert_eq!(
        fhir(&sandbox, access, "Observation?category=vital-signs")
            .await
            .0,
        403
    );

    // A refresh may narrow, never widen.
    let refresh = body["refresh_token"].as_str().expect("refresh");
    let widened = token(
        &sandbox,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "portal"),
            ("scope", "patient/Observation.rs"),
        ],
    )
    .await;
    assert_oauth(&widened, 400, "invalid_scope", "patient/Observation.rs");
    let body = camila_tokens(
        &sandbox,
        "launch/patient patient/Observation.rs patient/Patient.rs offline_access",
    )
    .await;
    let refresh = body["refresh_token"].as_str().expect("refresh");
    let (status, narrowed) = token(
        &sandbox,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", "portal"),
            ("scope", "patient/Patient.rs"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(narrowed["scope"], "patient/Patient.rs");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replayed_one_revokes_the_session() {
    let sandbox = start().await;
    let first = camila_tokens(&sandbox, PORTAL_SCOPE).await;
    let refresh = |token: String| {
        let sandbox = &sandbox;
        async move {
            self::token(
                sandbox,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", "portal"),
                ],
            )
            .await
        }
    };
    let old = first["refresh_token"].as_str().expect("refresh").to_owned();
    let (status, second) = refresh(old.clone()).await;
    assert_eq!(status, 200, "{second}");
    let rotated = second["refresh_token"]
        .as_str()
        .expect("new refresh")
        .to_owned();
    assert_ne!(rotated, old, "rotated");
    assert_eq!(second["patient"], CAMILA);
    assert!(second["id_token"].is_string(), "openid still granted");
    let access = second["access_token"].as_str().expect("token").to_owned();
    assert_eq!(
        fhir(&sandbox, &access, &format!("Patient/{CAMILA}"))
            .await
            .0,
        200
    );
    // The old one again: refused, and the whole session with it.
    assert_oauth(&refresh(old).await, 400, "invalid_grant", "already used");
    assert_oauth(
        &refresh(rotated).await,
        400,
        "invalid_grant",
        "log in again",
    );
    assert_eq!(
        fhir(&sandbox, &access, &format!("Patient/{CAMILA}"))
            .await
            .0,
        401
    );
    // Another app cannot use Camila's portal refresh token.
    let third = camila_tokens(&sandbox, PORTAL_SCOPE).await;
    let stolen = token(
        &sandbox,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", third["refresh_token"].as_str().expect("r")),
            ("client_id", "other"),
        ],
    )
    .await;
    assert_oauth(&stolen, 400, "invalid_grant", "another app");
}

#[tokio::test]
async fn patient_tokens_see_only_their_compartment() {
    let sandbox = start().await;
    // An Observation of Camila's naming Jason as performer: an include must not leak him.
    sandbox
        .store()
        .upsert(json!({
            "resourceType": "Observation", "id": "camila-bp-by-jason", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"text": "note"},
            "subject": {"reference": format!("Patient/{CAMILA}")},
            "performer": [{"reference": format!("Patient/{JASON}")}, {"reference": format!("Patient/{CAMILA}")}]
        }))
        .expect("stored");
    let body = camila_tokens(&sandbox, "launch/patient patient/*.read").await;
    let access = body["access_token"].as_str().expect("token");
    assert_eq!(
        fhir(&sandbox, access, &format!("Patient/{CAMILA}")).await.0,
        200
    );
    let (status, outcome) = fhir(&sandbox, access, &format!("Patient/{JASON}")).await;
    assert_eq!(status, 403, "{outcome}");
    assert!(
        outcome.to_string().contains("outside the record"),
        "{outcome}"
    );
    // Jason's own data, by id, by search, and through an include.
    let jason_condition = sandbox.store().patient_resources("Condition", JASON)[0]
        .id()
        .to_owned();
    assert_eq!(
        fhir(&sandbox, access, &format!("Condition/{jason_condition}"))
            .await
            .0,
        403
    );
    let (status, bundle) = fhir(&sandbox, access, &format!("Condition?patient={JASON}")).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(
        bundle["total"], 0,
        "a search naming another patient finds nothing"
    );
    let (status, bundle) = fhir(
        &sandbox,
        access,
        "Observation?category=vital-signs&_include=Observation:performer&_count=1000",
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(entries.len() > 1);
    for entry in entries {
        let resource = &entry["resource"];
        let reference = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap_or(""),
            resource["id"].as_str().unwrap_or("")
        );
        let other_patient = resource["resourceType"] == "Patient" && resource["id"] != CAMILA;
        let others_data = resource
            .get("subject")
            .is_some_and(|s| s["reference"] != format!("Patient/{CAMILA}"));
        assert!(!other_patient && !others_data, "{reference} leaked");
    }
    assert!(
        entries
            .iter()
            .any(|e| e["search"]["mode"] == "include" && e["resource"]["id"] == CAMILA),
        "Camila herself is included"
    );
    assert!(
        entries.iter().all(|e| e["resource"]["id"] != JASON),
        "Jason, the performer, is not included"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["id"] == "camila-bp-by-jason"),
        "the observation naming him is hers"
    );
    // A search without a patient is limited to hers.
    let (status, bundle) = fhir(&sandbox, access, "Patient?family=Argonaut").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"], 0);
    // Shared directory types stay readable; types of no compartment are refused.
    let (status, _) = fhir(&sandbox, access, "Practitioner?_count=1").await;
    assert_eq!(status, 200);
    let (status, outcome) = fhir(&sandbox, access, "Group?_count=1").await;
    assert_eq!(status, 403, "{outcome}");
    // Bulk export is for Backend Services only.
    let response = browser()
        .get(format!("{}/Patient/$export", sandbox.base_url()))
        .bearer_auth(access)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 403);
}

#[tokio::test]
async fn confidential_apps_authenticate_with_basic_or_private_key_jwt() {
    let sandbox = start().await;
    let no_pkce = |client: &str| {
        with(
            &with(
                &authorize_params(&sandbox, client, "launch/patient patient/*.read"),
                "code_challenge",
                None,
            ),
            "code_challenge_method",
            None,
        )
    };
    let code_for = |client: &'static str| {
        let params = no_pkce(client);
        let sandbox = &sandbox;
        async move {
            let back = standalone(sandbox, &params, None).await;
            query(&back, "code").expect("code")
        }
    };
    let basic = |credentials: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    };
    let post = |authorization: Option<String>, form: Vec<(&'static str, String)>| {
        let sandbox = &sandbox;
        async move {
            let mut request = browser().post(sandbox.token_url().clone()).form(&form);
            if let Some(authorization) = authorization {
                request = request.header("Authorization", authorization);
            }
            let response = request.send().await.expect("reachable");
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let code = code_for("secret-app").await;
    let form = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
        ]
    };
    let mut with_id = form(&code);
    with_id.push(("client_id", "secret-app".to_owned()));
    assert_oauth(
        &post(None, with_id.clone()).await,
        400,
        "invalid_client",
        "HTTP Basic",
    );
    let mut posted_secret = with_id;
    posted_secret.push(("client_secret", "s3cret".to_owned()));
    assert_oauth(
        &post(None, posted_secret).await,
        400,
        "invalid_client",
        "client_secret_post",
    );
    assert_oauth(
        &post(Some(basic("secret-app:wrong")), form(&code)).await,
        401,
        "invalid_client",
        "wrong",
    );
    let (status, body) = post(Some(basic("secret-app:s3cret")), form(&code)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], CAMILA);

    let key = TestKey::rsa2048("app-key");
    let code = code_for("jwt-app").await;
    let mut assertion_form = form(&code);
    assertion_form.push(("client_assertion_type", support::JWT_BEARER.to_owned()));
    let forged = sign(
        &key,
        Some("app-key"),
        &claims("jwt-app", "http://127.0.0.1:9/not-the-token-url"),
    );
    let mut bad = assertion_form.clone();
    bad.push(("client_assertion", forged));
    assert_oauth(&post(None, bad).await, 400, "invalid_client", "aud");
    let code = code_for("jwt-app").await;
    let mut good = form(&code);
    good.push(("client_assertion_type", support::JWT_BEARER.to_owned()));
    good.push((
        "client_assertion",
        sign(
            &key,
            Some("app-key"),
            &claims("jwt-app", sandbox.token_url().as_str()),
        ),
    ));
    let (status, body) = post(None, good).await;
    assert_eq!(status, 200, "{body}");
    // A public app cannot use Basic, nor name itself without being registered.
    assert_oauth(
        &post(Some(basic("portal:x")), form("c")).await,
        401,
        "invalid_client",
        "public",
    );
    let mut unknown = form("c");
    unknown.push(("client_id", "nobody".to_owned()));
    assert_oauth(
        &post(None, unknown).await,
        400,
        "invalid_client",
        "not a registered app",
    );
}

#[tokio::test]
async fn ehr_launch_opens_the_app_in_the_patients_context() {
    let sandbox = start().await;
    let launcher = sandbox.launcher_url();
    let response = browser()
        .get(format!("{launcher}?app=portal&patient={CAMILA}"))
        .send()
        .await
        .expect("reachable");
    let to_app = location(&response);
    assert!(to_app.as_str().starts_with(LAUNCH), "{to_app}");
    assert_eq!(
        query(&to_app, "iss").as_deref(),
        Some(sandbox.base_url().as_str())
    );
    let launch = query(&to_app, "launch").expect("launch");
    let params = with(
        &authorize_params(&sandbox, "portal", "launch openid fhirUser patient/*.read"),
        "launch",
        Some(&launch),
    );
    // No login page: the EHR's user launched the app.
    let back = location(&get_authorize(&sandbox, &params).await);
    assert_eq!(query(&back, "state").as_deref(), Some("state-123"));
    let code = query(&back, "code").expect("code");
    let (status, body) = exchange(&sandbox, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], CAMILA);
    assert_eq!(body["need_patient_banner"], true);
    let access = body["access_token"].as_str().expect("token");
    assert_eq!(
        fhir(&sandbox, access, &format!("Patient/{CAMILA}")).await.0,
        200
    );
    assert_eq!(
        fhir(&sandbox, access, &format!("Patient/{JASON}")).await.0,
        403
    );
    // The launch is single use.
    let again = location(&get_authorize(&sandbox, &params).await);
    assert_redirect_error(&again, "invalid_request", "already used", Some("state-123"));
    // A launch for one app cannot be used by another.
    let response = browser()
        .get(format!("{launcher}?app=other&patient={CAMILA}"))
        .send()
        .await
        .expect("reachable");
    let launch = query(&location(&response), "launch").expect("launch");
    let stolen = with(&params, "launch", Some(&launch));
    assert_redirect_error(
        &location(&get_authorize(&sandbox, &stolen).await),
        "invalid_request",
        "another app",
        Some("state-123"),
    );
    // The launch scope needs a launch value.
    let missing = with(&params, "launch", None);
    assert_redirect_error(
        &location(&get_authorize(&sandbox, &missing).await),
        "invalid_request",
        "launch parameter",
        Some("state-123"),
    );
    // The launcher checks what it is given, and shows a form without parameters.
    for bad in [
        format!("{launcher}?app=nobody&patient={CAMILA}"),
        format!("{launcher}?app=secret-app&patient={CAMILA}"),
        format!("{launcher}?app=portal&patient=nobody"),
        format!("{launcher}?app=portal&patient={CAMILA}&encounter=nothing"),
    ] {
        let response = browser().get(&bad).send().await.expect("reachable");
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        assert!(response.headers().get("location").is_none());
    }
    let form = browser()
        .get(launcher.as_str())
        .send()
        .await
        .expect("reachable")
        .text()
        .await
        .expect("html");
    assert!(
        form.contains(r#"name="app""#) && form.contains(CAMILA),
        "{form}"
    );
}

#[tokio::test]
async fn an_ehr_launch_with_an_encounter_puts_it_in_context() {
    let sandbox = start().await;
    let encounter = sandbox.store().patient_resources("Encounter", CAMILA)[0]
        .id()
        .to_owned();
    let response = browser()
        .get(format!(
            "{}?app=portal&patient={CAMILA}&encounter={encounter}",
            sandbox.launcher_url()
        ))
        .send()
        .await
        .expect("reachable");
    let launch = query(&location(&response), "launch").expect("launch");
    let params = with(
        &authorize_params(&sandbox, "portal", "launch patient/*.read"),
        "launch",
        Some(&launch),
    );
    let code = query(&location(&get_authorize(&sandbox, &params).await), "code").expect("code");
    let (status, body) = exchange(&sandbox, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["encounter"], encounter);
}

#[tokio::test]
async fn discovery_advertises_exactly_what_is_supported() {
    let sandbox = start().await;
    let config: Value = browser()
        .get(format!(
            "{}/.well-known/smart-configuration",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    assert_eq!(
        config["authorization_endpoint"],
        sandbox.authorize_url().as_str()
    );
    assert_eq!(config["token_endpoint"], sandbox.token_url().as_str());
    assert_eq!(config["jwks_uri"], sandbox.jwks_url());
    assert_eq!(config["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(config["response_types_supported"], json!(["code"]));
    let capabilities: Vec<&str> = config["capabilities"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "context-ehr-patient",
        "context-standalone-patient",
        "permission-offline",
        "permission-patient",
        "permission-v1",
        "permission-v2",
        "sso-openid-connect",
    ] {
        assert!(capabilities.contains(&expected), "{expected} missing");
    }
    // What is not implemented is not claimed.
    for absent in [
        "context-banner",
        "context-style",
        "permission-v1-only",
        "context-standalone-encounter",
    ] {
        assert!(!capabilities.contains(&absent), "{absent} claimed");
    }
    let metadata: Value = browser()
        .get(format!("{}/metadata", sandbox.base_url()))
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    let security = metadata["rest"][0]["security"]["extension"].to_string();
    assert!(
        security.contains(sandbox.authorize_url().as_str()),
        "{security}"
    );
    assert!(security.contains("launch-standalone"), "{security}");
}
