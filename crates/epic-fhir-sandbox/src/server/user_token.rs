//! The token endpoint's SMART App Launch grants: `authorization_code` and `refresh_token`,
//! for public apps, apps with a client secret (HTTP Basic) and apps with keys
//! (`private_key_jwt`, checked by the Backend Services assertion verifier).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::AppState;
use super::token::{JWT_BEARER, no_store, oauth_error};
use crate::auth::assertion::{self, CheckContext};
use crate::auth::smart::{App, Refresh, RuntimeAuth, Session};

/// The shortest and longest PKCE `code_verifier` (RFC 7636 §4.1).
const VERIFIER_CHARS: std::ops::RangeInclusive<usize> = 43..=128;

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `client_id` and secret of an `Authorization: Basic` header (each form-urlencoded, RFC 6749
/// §2.3.1), `None` without one, an error description when it is malformed.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err("the Authorization header has no scheme".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!(
            "Authorization scheme {scheme} is not supported at the token endpoint: use Basic"
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "the Basic credentials are not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "the Basic credentials are not UTF-8")?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or("the Basic credentials are not client_id:secret")?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// Authenticates the app making a token request, by the method it registered.
async fn authenticate_app(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Arc<App>, Response> {
    let invalid_client = |description: &str| {
        let status =
            StatusCode::from_u16(state.invalid_client_status).unwrap_or(StatusCode::BAD_REQUEST);
        oauth_error(status, "invalid_client", description)
    };
    let named = form.get("client_id").filter(|c| !c.is_empty());
    let app = if let Some(basic) = basic_credentials(headers).map_err(|e| invalid_client(&e))? {
        let (id, secret) = basic;
        // RFC 6749 §5.2: a failed Basic authentication is a 401 with a challenge.
        let refused = |description: &str| {
            let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"epic-fhir-sandbox\""),
            );
            response
        };
        let app = state
            .smart
            .app(&id)
            .ok_or_else(|| refused(&format!("client_id {id} is not a registered app")))?;
        match &app.auth {
            RuntimeAuth::Secret(expected) => {
                if aws_lc_rs::constant_time::verify_slices_are_equal(
                    expected.as_bytes(),
                    secret.as_bytes(),
                )
                .is_err()
                {
                    return Err(refused(&format!("the client secret of app {id} is wrong")));
                }
            }
            _ => {
                return Err(refused(&format!(
                    "app {id} has no client secret: it authenticates as a {} app",
                    app.kind()
                )));
            }
        }
        app
    } else if let Some(client_assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(invalid_client(&format!(
                "client_assertion_type must be {JWT_BEARER}"
            )));
        }
        let ctx = CheckContext {
            token_url: &state.token_url,
            now: unix_now(),
            skew: state.clock_skew.as_secs() as i64,
            jwks_refetch_interval: state.jwks_refetch_interval,
        };
        let client = assertion::verify_with(
            client_assertion,
            |id| state.smart.app_client(id),
            &state.replay,
            &state.http,
            ctx,
        )
        .await
        .map_err(|e| invalid_client(&e))?;
        state
            .smart
            .app(&client.id)
            .ok_or_else(|| invalid_client("the app is no longer registered"))?
    } else {
        let Some(id) = named else {
            return Err(invalid_request(
                "client_id is missing (public apps send it in the form; confidential apps authenticate with HTTP Basic or a client assertion)",
            ));
        };
        let app = state
            .smart
            .app(id)
            .ok_or_else(|| invalid_client(&format!("client_id {id} is not a registered app")))?;
        if !app.is_public() {
            let how = match app.auth {
                RuntimeAuth::Secret(_) if form.contains_key("client_secret") => {
                    "send the client secret with HTTP Basic (client_secret_basic); client_secret_post is not supported"
                }
                RuntimeAuth::Secret(_) => "authenticate with HTTP Basic",
                _ => "authenticate with a client assertion (private_key_jwt)",
            };
            return Err(invalid_client(&format!("app {id} is confidential: {how}")));
        }
        app
    };
    if let Some(named) = named {
        if *named != app.id {
            return Err(invalid_request(&format!(
                "client_id {named} is not the authenticated app {}",
                app.id
            )));
        }
    }
    Ok(app)
}

/// The PKCE S256 transform: base64url(SHA-256(verifier)).
fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Revokes everything issued in `family`: its access tokens and refresh tokens.
fn revoke_family(state: &AppState, family: u64) {
    let family = state.smart.take_family(family);
    for token in &family.access_tokens {
        state.tokens.revoke(token);
    }
    for token in &family.refresh_tokens {
        state.smart.refresh.remove(token);
    }
}

enum Redeem<T> {
    Ready(T),
    Replayed(u64),
    OtherClient,
}

/// `grant_type=authorization_code` or `refresh_token`.
pub(crate) async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    grant_type: &str,
    form: &HashMap<String, String>,
) -> Response {
    let app = match authenticate_app(state, headers, form).await {
        Ok(app) => app,
        Err(response) => return response,
    };
    match grant_type {
        "authorization_code" => authorization_code(state, &app, form),
        _ => refresh_token(state, &app, form),
    }
}

fn authorization_code(state: &AppState, app: &App, form: &HashMap<String, String>) -> Response {
    let Some(code) = form.get("code").filter(|c| !c.is_empty()) else {
        return invalid_request("code is missing");
    };
    let family = state.smart.new_family();
    let redeemed = state.smart.codes.update(code, |record| {
        if record.client_id != app.id {
            return Redeem::OtherClient;
        }
        if let Some(family) = record.redeemed {
            return Redeem::Replayed(family);
        }
        // The code is spent by this presentation, whatever the checks below find.
        record.redeemed = Some(family);
        Redeem::Ready(record.clone())
    });
    let record = match redeemed {
        None | Some(Redeem::OtherClient) => {
            return invalid_grant("code is unknown, or was issued to another app");
        }
        Some(Redeem::Replayed(family)) => {
            revoke_family(state, family);
            tracing::warn!(target: "epic_fhir_sandbox::auth", client = %app.id, "authorization code replayed: its tokens are revoked");
            return invalid_grant(
                "code was already used: a code is exchanged once, and the tokens issued for it are now revoked",
            );
        }
        Some(Redeem::Ready(record)) => record,
    };
    if record.expires <= Instant::now() {
        return invalid_grant(&format!(
            "code has expired: codes must be exchanged within {} s",
            state.smart.lifetimes().code.as_secs()
        ));
    }
    match form.get("redirect_uri") {
        None => {
            return invalid_request(
                "redirect_uri is missing: send the one of the authorization request",
            );
        }
        Some(uri) if *uri != record.redirect_uri => {
            return invalid_grant(&format!(
                "redirect_uri {uri} is not the one the code was issued for"
            ));
        }
        Some(_) => {}
    }
    let verifier = form.get("code_verifier").filter(|v| !v.is_empty());
    match (&record.code_challenge, verifier) {
        (Some(_), None) => {
            return invalid_grant(
                "code_verifier is missing: the authorization request sent a code_challenge",
            );
        }
        (Some(challenge), Some(verifier)) => {
            let well_formed = VERIFIER_CHARS.contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !well_formed {
                return invalid_grant(
                    "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)",
                );
            }
            if s256(verifier) != *challenge {
                return invalid_grant("code_verifier does not match the code_challenge (S256)");
            }
        }
        (None, Some(_)) => {
            return invalid_grant(
                "a code_verifier was sent but the authorization request had no code_challenge",
            );
        }
        (None, None) => {}
    }
    let session = Session {
        client_id: record.client_id,
        granted: record.granted,
        user: record.user,
        patient: record.patient,
        encounter: record.encounter,
    };
    issue(state, &session, family, record.nonce.as_deref())
}

fn refresh_token(state: &AppState, app: &App, form: &HashMap<String, String>) -> Response {
    let Some(token) = form.get("refresh_token").filter(|t| !t.is_empty()) else {
        return invalid_request("refresh_token is missing");
    };
    let redeemed = state.smart.refresh.update(token, |record| {
        if record.session.client_id != app.id {
            return Redeem::OtherClient;
        }
        if record.used {
            return Redeem::Replayed(record.family);
        }
        record.used = true;
        Redeem::Ready(record.clone())
    });
    let record: Refresh = match redeemed {
        None | Some(Redeem::OtherClient) => {
            return invalid_grant(
                "refresh_token is unknown, revoked or issued to another app: log in again",
            );
        }
        Some(Redeem::Replayed(family)) => {
            revoke_family(state, family);
            tracing::warn!(target: "epic_fhir_sandbox::auth", client = %app.id, "rotated refresh token replayed: the session is revoked");
            return invalid_grant(
                "refresh_token was already used (each refresh replaces it): the session is revoked; log in again",
            );
        }
        Some(Redeem::Ready(record)) => record,
    };
    if record.expires <= Instant::now() {
        return invalid_grant("refresh_token has expired: log in again");
    }
    let mut session = record.session;
    if let Some(scope) = form.get("scope").filter(|s| !s.trim().is_empty()) {
        match session.granted.subset(scope) {
            Ok(narrower) => session.granted = narrower,
            Err(denied) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!(
                        "a refresh can only narrow the original grant; not granted before: {}",
                        denied.join(" ")
                    ),
                );
            }
        }
    }
    issue(state, &session, record.family, None)
}

/// Issues an access token (and a refresh token, an id_token) for `session`.
fn issue(state: &AppState, session: &Session, family: u64, nonce: Option<&str>) -> Response {
    let lifetime = state.token_lifetime();
    let granted = &session.granted;
    let scope_text = granted.text();
    let access_token = match state.tokens.issue_for_user(
        &session.client_id,
        granted.resource_scopes(),
        lifetime,
        Some(session.user_context()),
    ) {
        Ok(token) => token,
        Err(problem) => {
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &problem);
        }
    };
    let lifetimes = state.smart.lifetimes();
    let refresh_lifetime = if granted.has("offline_access") {
        Some(lifetimes.offline)
    } else if granted.has("online_access") {
        Some(lifetimes.online)
    } else {
        None
    };
    let now = Instant::now();
    let refresh = match refresh_lifetime {
        None => None,
        Some(refresh_lifetime) => match state.smart.refresh.insert(Refresh {
            session: session.clone(),
            family,
            expires: now + refresh_lifetime,
            used: false,
        }) {
            Ok(token) => Some((token, refresh_lifetime)),
            Err(problem) => {
                state.tokens.revoke(&access_token);
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    &problem,
                );
            }
        },
    };
    let longest = refresh
        .as_ref()
        .map_or(lifetime, |(_, l)| (*l).max(lifetime));
    state.smart.record_issued(
        family,
        &access_token,
        refresh.as_ref().map(|(t, _)| t.as_str()),
        now + longest,
    );
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "scope": scope_text,
    });
    if let Some(patient) = &session.patient {
        body["patient"] = json!(patient);
        body["need_patient_banner"] = json!(session.user.user_patient.is_none());
    }
    if let Some(encounter) = &session.encounter {
        body["encounter"] = json!(encounter);
    }
    if let Some((token, _)) = &refresh {
        body["refresh_token"] = json!(token);
    }
    if granted.has("openid") {
        let issued_at = unix_now();
        let mut claims = json!({
            "iss": state.base_url,
            "sub": session.user.subject,
            "aud": session.client_id,
            "iat": issued_at,
            "exp": issued_at + lifetime.as_secs() as i64,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if granted.has("fhirUser") {
            if let Some(user) = &session.user.fhir_user {
                claims["fhirUser"] = json!(format!("{}/{user}", state.base_url));
            }
        }
        if session.user.user_patient.is_some() {
            claims["preferred_username"] = json!(session.user.subject);
        }
        match state.smart.signer.get().and_then(|s| s.sign(&claims)) {
            Ok(id_token) => body["id_token"] = json!(id_token),
            Err(problem) => {
                return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &problem);
            }
        }
    }
    tracing::debug!(target: "epic_fhir_sandbox::auth", client = %session.client_id, scope = %scope_text, patient = ?session.patient, "user access token issued");
    no_store(axum::Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let mut headers = HeaderMap::new();
        assert_eq!(basic_credentials(&headers), Ok(None));
        let value = base64::engine::general_purpose::STANDARD.encode("my%20app:p%3Ass");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {value}")).expect("header"),
        );
        assert_eq!(
            basic_credentials(&headers),
            Ok(Some(("my app".to_owned(), "p:ss".to_owned())))
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(basic_credentials(&headers).is_err());
    }
}
