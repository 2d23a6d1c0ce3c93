//! SMART App Launch in the browser: the authorization endpoint (GET and POST), the login and
//! consent pages of MyChart-style users, the EHR launcher, and the id_token JWK Set.
//!
//! The pages are plain HTML forms (no JavaScript): labelled inputs, a consent form whose
//! first (default) button allows. A request whose `client_id` or `redirect_uri` cannot be
//! trusted is answered with an error page and never redirected; every later error goes back
//! to the app's redirect URI as `error`, `error_description` and `state`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use url::Url;

use super::AppState;
use crate::auth::smart::{App, Code, Granted, Identity, Launch, Pending};
use crate::config::{AUTHORIZE_PATH, LAUNCH_PATH};

/// The length of a PKCE S256 `code_challenge`: a base64url SHA-256 digest without padding.
const S256_CHALLENGE_CHARS: usize = 43;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole HTML page; `body` is already escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} - Epic FHIR sandbox</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 34rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; line-height: 1.5; }}
header {{ border-bottom: 3px solid #b3261e; margin-bottom: 1.5rem; }}
label {{ display: block; margin-top: 1rem; font-weight: 600; }}
input[type=text], input[type=password], select {{ width: 100%; padding: .5rem; font-size: 1rem; box-sizing: border-box; }}
fieldset {{ margin-top: 1rem; }}
fieldset label {{ display: inline; font-weight: normal; margin: 0; }}
.scope {{ margin: .4rem 0; }}
code {{ font-size: .9em; }}
button {{ margin-top: 1.5rem; margin-right: .5rem; padding: .5rem 1.5rem; font-size: 1rem; }}
.error {{ color: #b3261e; font-weight: 600; }}
.note {{ color: #555; font-size: .9em; }}
</style>
</head>
<body>
<header><p>Epic FHIR sandbox &middot; synthetic data only</p></header>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The pages must not be framed by another site (clickjacking of the consent button).
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("content-security-policy", csp(None));
    response
}

/// The pages' Content Security Policy. Browsers apply `form-action` to the redirects that
/// follow a form's submission too, so a form whose answer sends the browser back to the app
/// (the consent form) names the origin of the app's redirect URI as well.
fn csp(redirect_uri: Option<&str>) -> HeaderValue {
    const BASE: &str =
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'";
    let target = redirect_uri
        .and_then(|uri| Url::parse(uri).ok())
        .map(|url| match url.origin() {
            origin @ url::Origin::Tuple(..) => origin.ascii_serialization(),
            // A private-use scheme (a native app's `com.example.app:/callback`).
            url::Origin::Opaque(_) => format!("{}:", url.scheme()),
        });
    match target {
        Some(target) => HeaderValue::from_str(&format!("{BASE} {target}"))
            .unwrap_or(HeaderValue::from_static(BASE)),
        None => HeaderValue::from_static(BASE),
    }
}

/// An error page: the request is not redirected anywhere.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(r#"<p class="error" role="alert">{}</p>"#, escape(message)),
    )
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Sends the browser back to the app with `params` added to its redirect URI's query.
fn back_to_app(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in params {
                    query.append_pair(name, value);
                }
            }
            redirect(url.as_str())
        }
        // Registered URIs were checked to be URLs; an exact match of one is too.
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "Authorization error",
            "the redirect URI is not a URL",
        ),
    }
}

/// An OAuth error sent back to the app, with the request's `state` when it had one.
fn redirect_error(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    tracing::debug!(target: "epic_fhir_sandbox::auth", error, description, "authorization request refused");
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    back_to_app(redirect_uri, &params)
}

/// The parameters of a form or query: values by name, and the names given more than once.
fn collect(
    pairs: impl Iterator<Item = (String, String)>,
) -> (HashMap<String, String>, Vec<String>) {
    let mut map = HashMap::new();
    let mut repeated = Vec::new();
    for (name, value) in pairs {
        match map.entry(name) {
            std::collections::hash_map::Entry::Occupied(entry) => {
                if !repeated.contains(entry.key()) {
                    repeated.push(entry.key().clone());
                }
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(value);
            }
        }
    }
    (map, repeated)
}

fn form_pairs(body: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// `GET /oauth2/authorize?...`.
pub(crate) async fn authorize_get(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let query = uri.query().unwrap_or("").as_bytes().to_vec();
    authorize(&state, form_pairs(&query))
}

/// `POST /oauth2/authorize` with a form body (SMART's `authorize-post`).
pub(crate) async fn authorize_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_form(&headers) {
        return error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Authorization error",
            "POST to the authorization endpoint takes an application/x-www-form-urlencoded body",
        );
    }
    authorize(&state, form_pairs(&body))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Whether `challenge` looks like an S256 challenge: 43 base64url characters.
fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == S256_CHALLENGE_CHARS
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn authorize(state: &AppState, pairs: impl Iterator<Item = (String, String)>) -> Response {
    let (params, repeated) = collect(pairs);
    let refuse =
        |message: String| error_page(StatusCode::BAD_REQUEST, "Authorization error", &message);
    for trusted in ["client_id", "redirect_uri"] {
        if repeated.iter().any(|r| r == trusted) {
            return refuse(format!(
                "{trusted} is given more than once: the request cannot be trusted, so it is not sent back to the app"
            ));
        }
    }
    let Some(client_id) = params.get("client_id").filter(|c| !c.is_empty()) else {
        return refuse("client_id is missing".to_owned());
    };
    let Some(app) = state.smart.app(client_id) else {
        return refuse(format!(
            "client_id `{client_id}` is not a registered app of this server"
        ));
    };
    let Some(redirect_uri) = params.get("redirect_uri").filter(|r| !r.is_empty()) else {
        return refuse(format!(
            "redirect_uri is missing: app `{client_id}` must name one of its registered redirect URIs"
        ));
    };
    if !app.redirect_allowed(redirect_uri) {
        return refuse(format!(
            "redirect_uri `{redirect_uri}` is not registered for app `{client_id}`: it must match a registered redirect URI exactly, so this request is not sent back to it"
        ));
    }
    // From here on the redirect URI is known to be the app's: errors go back to it.
    let state_param = params
        .get("state")
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let fail = |error: &str, description: &str| {
        redirect_error(redirect_uri, state_param, error, description)
    };
    if let Some(name) = repeated.first() {
        return fail("invalid_request", &format!("parameter {name} is repeated"));
    }
    match params.get("response_type").map(String::as_str) {
        None | Some("") => return fail("invalid_request", "response_type is missing: use code"),
        Some("code") => {}
        Some(other) => {
            return fail(
                "unsupported_response_type",
                &format!("response_type {other} is not supported: use code"),
            );
        }
    }
    if state_param.is_none() {
        return fail(
            "invalid_request",
            "state is missing: SMART requires an unguessable state value, sent back with the code",
        );
    }
    match params.get("aud").map(String::as_str) {
        None | Some("") => {
            return fail(
                "invalid_request",
                &format!(
                    "aud is missing: it must be this server's FHIR base URL {}",
                    state.base_url
                ),
            );
        }
        Some(aud) if aud.trim_end_matches('/') == state.base_url => {}
        Some(aud) => {
            return fail(
                "invalid_request",
                &format!(
                    "aud {aud} is not this server's FHIR base URL {}: a token for it would be sent elsewhere",
                    state.base_url
                ),
            );
        }
    }
    let Some(scope) = params.get("scope").filter(|s| !s.trim().is_empty()) else {
        return fail("invalid_scope", "scope is missing");
    };
    let challenge = params.get("code_challenge").filter(|c| !c.is_empty());
    let method = params
        .get("code_challenge_method")
        .filter(|m| !m.is_empty());
    match (challenge, method.map(String::as_str)) {
        (Some(_), None) => {
            return fail(
                "invalid_request",
                "code_challenge_method is missing (it would mean plain): use S256",
            );
        }
        (Some(_), Some("plain")) => {
            return fail(
                "invalid_request",
                "code_challenge_method plain is refused: use S256",
            );
        }
        (Some(_), Some(other)) if other != "S256" => {
            return fail(
                "invalid_request",
                &format!("code_challenge_method {other} is not supported: use S256"),
            );
        }
        (Some(challenge), Some(_)) if !valid_challenge(challenge) => {
            return fail(
                "invalid_request",
                "code_challenge is not an S256 challenge (43 base64url characters)",
            );
        }
        (None, Some(_)) => {
            return fail(
                "invalid_request",
                "code_challenge_method is given without a code_challenge",
            );
        }
        (None, None) if app.is_public() => {
            return fail(
                "invalid_request",
                "code_challenge is missing: public apps must use PKCE (S256)",
            );
        }
        _ => {}
    }
    let asks_launch = scope.split_whitespace().any(|s| s == "launch");
    let launch = match params.get("launch").filter(|l| !l.is_empty()) {
        Some(launch_id) => {
            if !asks_launch {
                return fail(
                    "invalid_scope",
                    "a launch parameter needs the launch scope (EHR launch)",
                );
            }
            // Single use: the record is removed whatever happens next.
            match state.smart.launches.take(launch_id) {
                Some(launch) if launch.expires > Instant::now() && launch.client_id == app.id => {
                    Some(launch)
                }
                Some(launch) if launch.client_id != app.id => {
                    return fail("invalid_request", "launch was issued for another app");
                }
                _ => {
                    return fail(
                        "invalid_request",
                        "launch is unknown, expired or already used: launch the app again from the EHR",
                    );
                }
            }
        }
        None if asks_launch => {
            return fail(
                "invalid_request",
                "the launch scope needs a launch parameter (EHR launch); a standalone launch asks launch/patient",
            );
        }
        None => None,
    };
    let granted = Granted::narrow(scope, &app);
    if granted.items.is_empty() {
        return fail(
            "invalid_scope",
            &format!(
                "none of the requested scopes ({scope}) can be granted to app {}: it may be granted read and search of {}, and openid, fhirUser, launch, launch/patient, offline_access, online_access",
                app.id, app.scopes
            ),
        );
    }
    let nonce = params.get("nonce").filter(|n| !n.is_empty()).cloned();
    let state_value = state_param.unwrap_or_default().to_owned();
    if let Some(launch) = launch {
        // The EHR's user is already signed in and chose to launch the app: the code is issued
        // without a login page.
        let code = Code {
            client_id: app.id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge.cloned(),
            nonce,
            granted,
            user: launch.user,
            patient: Some(launch.patient),
            encounter: launch.encounter,
            expires: Instant::now() + state.smart.lifetimes().code,
            redeemed: None,
        };
        return issue_code(state, code, &state_value);
    }
    let pending = Pending {
        client_id: app.id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state_value,
        granted,
        code_challenge: challenge.cloned(),
        nonce,
        user: None,
        expires: Instant::now() + state.smart.lifetimes().login,
    };
    match state.smart.pending.insert(pending) {
        Ok(request) => login_page(StatusCode::OK, &app, &request, None),
        Err(problem) => fail("temporarily_unavailable", &problem),
    }
}

fn issue_code(state: &AppState, code: Code, state_value: &str) -> Response {
    let redirect_uri = code.redirect_uri.clone();
    match state.smart.codes.insert(code) {
        Ok(code) => back_to_app(&redirect_uri, &[("code", &code), ("state", state_value)]),
        Err(problem) => redirect_error(
            &redirect_uri,
            Some(state_value),
            "temporarily_unavailable",
            &problem,
        ),
    }
}

fn login_page(status: StatusCode, app: &App, request: &str, error: Option<&str>) -> Response {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p>Log in to MyChart to connect <strong>{app}</strong> to your health record.</p>"#,
        app = escape(&app.id)
    );
    if let Some(error) = error {
        let _ = write!(
            body,
            r#"<p class="error" role="alert">{}</p>"#,
            escape(error)
        );
    }
    let _ = write!(
        body,
        r#"<form method="post" action="{AUTHORIZE_PATH}/login">
<input type="hidden" name="request" value="{request}">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p class="note">Test users are printed when the sandbox starts (for example <code>fhircamila</code>).</p>"#,
        request = escape(request),
    );
    page(status, "MyChart login", &body)
}

/// What a scope lets the app do, in words.
fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (OpenID Connect)".to_owned(),
        "fhirUser" => "Know which record is yours".to_owned(),
        "launch" | "launch/patient" => "Open your record when it starts".to_owned(),
        "launch/encounter" => "Know the visit it was opened from".to_owned(),
        "offline_access" => {
            "Keep access until you revoke it, even when you are not using it".to_owned()
        }
        "online_access" => "Keep access while you are using it".to_owned(),
        other => {
            let (context, rest) = other.split_once('/').unwrap_or(("", other));
            let (resource, _) = rest.split_once('.').unwrap_or((rest, ""));
            let whose = if context == "patient" {
                "your"
            } else {
                "your (as a user)"
            };
            let what = if resource == "*" {
                "health record".to_owned()
            } else {
                format!("{resource} records")
            };
            format!("Read {whose} {what}")
        }
    }
}

fn consent_page(app: &App, request: &str, pending: &Pending, patient_name: &str) -> Response {
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p>Signed in as <strong>{patient}</strong>.</p>
<form method="post" action="{AUTHORIZE_PATH}/consent">
<input type="hidden" name="request" value="{request}">
<fieldset>
<legend><strong>{app}</strong> asks to:</legend>
"#,
        patient = escape(patient_name),
        app = escape(&app.id),
        request = escape(request),
    );
    for (index, item) in pending.granted.items.iter().enumerate() {
        let text = item.text();
        let _ = writeln!(
            body,
            r#"<div class="scope"><input type="checkbox" id="scope{index}" name="scope" value="{value}" checked> <label for="scope{index}">{words} <code>{value}</code></label></div>"#,
            value = escape(text),
            words = escape(&describe_scope(text)),
        );
    }
    body.push_str(
        r#"</fieldset>
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
<p class="note">Untick what the app should not get; Deny sends you back without connecting.</p>"#,
    );
    let mut response = page(StatusCode::OK, "Allow access?", &body);
    response
        .headers_mut()
        .insert("content-security-policy", csp(Some(&pending.redirect_uri)));
    response
}

/// The display name of a stored Patient (its first name), or its id.
fn patient_name(state: &AppState, patient_id: &str) -> Option<String> {
    let patient = state.store.read("Patient", patient_id)?;
    let json: Value = serde_json::from_slice(patient.json()).ok()?;
    let name = json.get("name")?.as_array()?.first()?;
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    let given: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let family = name.get("family").and_then(Value::as_str).unwrap_or("");
    Some(format!("{} {family}", given.join(" ")).trim().to_owned())
}

fn expired_page() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "this sign-in is unknown or has expired: start again from the app",
    )
}

/// `POST /oauth2/authorize/login`.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_form(&headers) {
        return error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Login error",
            "the login form is posted as application/x-www-form-urlencoded",
        );
    }
    let (form, _) = collect(form_pairs(&body));
    let request = form.get("request").cloned().unwrap_or_default();
    let Some(pending) = state
        .smart
        .pending
        .get(&request)
        .filter(|p| p.expires > Instant::now())
    else {
        return expired_page();
    };
    let Some(app) = state.smart.app(&pending.client_id) else {
        return expired_page();
    };
    let username = form.get("username").map(|u| u.trim()).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    let Some(user) = state.smart.login(username, password) else {
        tracing::debug!(target: "epic_fhir_sandbox::auth", username, "login refused");
        return login_page(
            StatusCode::UNAUTHORIZED,
            &app,
            &request,
            Some("The username or password is not right."),
        );
    };
    let Some(name) = patient_name(&state, &user.patient_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Login error",
            &format!(
                "user {} is patient {}, whom this sandbox does not hold",
                user.username, user.patient_id
            ),
        );
    };
    let identity = Identity {
        subject: user.username.clone(),
        fhir_user: Some(format!("Patient/{}", user.patient_id)),
        user_patient: Some(user.patient_id.clone()),
    };
    let updated = state.smart.pending.update(&request, |p| {
        p.user = Some((identity, user.patient_id.clone()));
        p.clone()
    });
    match updated {
        Some(pending) => consent_page(&app, &request, &pending, &name),
        None => expired_page(),
    }
}

/// `POST /oauth2/authorize/consent`.
pub(crate) async fn consent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_form(&headers) {
        return error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Consent error",
            "the consent form is posted as application/x-www-form-urlencoded",
        );
    }
    let mut request = String::new();
    let mut decision = None;
    let mut scopes: Vec<String> = Vec::new();
    for (name, value) in form_pairs(&body) {
        match name.as_str() {
            "request" => request = value,
            "decision" => decision = Some(value),
            "scope" => scopes.push(value),
            _ => {}
        }
    }
    let Some(pending) = state
        .smart
        .pending
        .get(&request)
        .filter(|p| p.expires > Instant::now())
    else {
        return expired_page();
    };
    let Some((identity, patient)) = pending.user.clone() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Consent error",
            "log in before answering the consent form",
        );
    };
    // Single use: a second answer to the same form finds nothing.
    state.smart.pending.remove(&request);
    if decision.as_deref() == Some("deny") {
        return redirect_error(
            &pending.redirect_uri,
            Some(&pending.state),
            "access_denied",
            "the user denied the app access",
        );
    }
    let code = Code {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        nonce: pending.nonce.clone(),
        granted: pending.granted.keep(&scopes),
        user: identity,
        patient: Some(patient),
        encounter: None,
        expires: Instant::now() + state.smart.lifetimes().code,
        redeemed: None,
    };
    issue_code(&state, code, &pending.state)
}

/// The EHR user of a launch from the sandbox's launcher: the patient's general practitioner
/// when the record names one.
fn clinician(state: &AppState, patient_id: &str) -> Identity {
    let practitioner = state
        .store
        .read("Patient", patient_id)
        .and_then(|p| serde_json::from_slice::<Value>(p.json()).ok())
        .and_then(|p| {
            p.get("generalPractitioner")?
                .as_array()?
                .iter()
                .filter_map(|r| r.get("reference")?.as_str())
                .find(|r| r.starts_with("Practitioner/"))
                .map(str::to_owned)
        });
    Identity {
        subject: practitioner
            .as_deref()
            .and_then(|p| p.strip_prefix("Practitioner/"))
            .unwrap_or("ehr-clinician")
            .to_owned(),
        fhir_user: practitioner,
        user_patient: None,
    }
}

fn launcher_form(state: &AppState) -> Response {
    let apps: Vec<Arc<App>> = state
        .smart
        .apps()
        .into_iter()
        .filter(|a| a.launch_url.is_some())
        .collect();
    if apps.is_empty() {
        return error_page(
            StatusCode::OK,
            "EHR launcher",
            "no app has a launch URL: register one with --app ID=REDIRECT_URI and --app-launch ID=URL",
        );
    }
    let mut body = format!(
        r#"<form method="get" action="{LAUNCH_PATH}"><label for="app">App</label><select id="app" name="app">"#
    );
    for app in &apps {
        let _ = write!(
            body,
            r#"<option value="{id}">{id}</option>"#,
            id = escape(&app.id)
        );
    }
    body.push_str(
        r#"</select><label for="patient">Patient</label><select id="patient" name="patient">"#,
    );
    for user in state.smart.users() {
        let name = patient_name(state, &user.patient_id).unwrap_or_else(|| user.patient_id.clone());
        let _ = write!(
            body,
            r#"<option value="{id}">{name}</option>"#,
            id = escape(&user.patient_id),
            name = escape(&name)
        );
    }
    body.push_str(
        r#"</select><label for="encounter">Encounter id (optional)</label><input type="text" id="encounter" name="encounter"><button type="submit">Launch</button></form>"#,
    );
    page(StatusCode::OK, "EHR launcher", &body)
}

/// `GET /launch?app=ID&patient=ID[&encounter=ID]`: the EHR launcher.
pub(crate) async fn launcher(State(state): State<Arc<AppState>>, uri: Uri) -> Response {
    let query = uri.query().unwrap_or("").as_bytes().to_vec();
    let (params, _) = collect(form_pairs(&query));
    let app_id = params.get("app").filter(|a| !a.is_empty());
    let patient = params.get("patient").filter(|p| !p.is_empty());
    let (app_id, patient) = match (app_id, patient) {
        (None, None) => return launcher_form(&state),
        (Some(app), Some(patient)) => (app, patient),
        (None, Some(_)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Launch error",
                "app is missing: name the app to launch",
            );
        }
        (Some(_), None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Launch error",
                "patient is missing: name the patient the app opens",
            );
        }
    };
    let Some(app) = state.smart.app(app_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Launch error",
            &format!("app `{app_id}` is not registered"),
        );
    };
    let Some(launch_url) = app.launch_url.clone() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Launch error",
            &format!("app `{app_id}` has no launch URL (register one with --app-launch)"),
        );
    };
    if state.store.read("Patient", patient).is_none() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Launch error",
            &format!("patient `{patient}` is not in this sandbox"),
        );
    }
    let encounter = params.get("encounter").filter(|e| !e.is_empty()).cloned();
    if let Some(encounter) = &encounter {
        let belongs = state
            .store
            .read("Encounter", encounter)
            .is_some_and(|e| state.store.refers_to_patient(&e, patient));
        if !belongs {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Launch error",
                &format!("encounter `{encounter}` is not an encounter of patient `{patient}`"),
            );
        }
    }
    let launch = Launch {
        client_id: app.id.clone(),
        patient: patient.clone(),
        encounter,
        user: clinician(&state, patient),
        expires: Instant::now() + state.smart.lifetimes().launch,
    };
    let launch_id = match state.smart.launches.insert(launch) {
        Ok(id) => id,
        Err(problem) => {
            return error_page(StatusCode::SERVICE_UNAVAILABLE, "Launch error", &problem);
        }
    };
    let mut url = launch_url;
    url.query_pairs_mut()
        .append_pair("iss", &state.base_url)
        .append_pair("launch", &launch_id);
    redirect(url.as_str())
}

/// `GET /oauth2/jwks`: the public key of id_tokens.
pub(crate) async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    match state.smart.signer.get() {
        Ok(signer) => {
            let mut response = axum::Json(signer.jwks()).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            );
            response
        }
        Err(problem) => {
            crate::outcome::FhirError::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", problem)
                .into_response()
        }
    }
}

/// Any other method on a page path.
pub(crate) async fn page_wrong_method() -> Response {
    error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "this page takes GET (and the authorization endpoint also a form POST)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn the_consent_form_may_send_the_browser_back_to_the_app() {
        let base = csp(None);
        assert!(base.to_str().unwrap_or("").ends_with("form-action 'self'"));
        let web = csp(Some("http://127.0.0.1:4321/callback?x=1"));
        assert!(
            web.to_str()
                .unwrap_or("")
                .ends_with("form-action 'self' http://127.0.0.1:4321"),
            "{web:?}"
        );
        let native = csp(Some("com.example.app:/callback"));
        assert!(
            native
                .to_str()
                .unwrap_or("")
                .ends_with("form-action 'self' com.example.app:"),
            "{native:?}"
        );
    }

    #[test]
    fn challenges_are_checked_for_shape() {
        assert!(valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"
        ));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
    }
}
