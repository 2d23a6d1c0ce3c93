//! The OAuth 2.0 token endpoint: `client_credentials` with a JWT client assertion (Backend
//! Services) here; `authorization_code` and `refresh_token` (SMART App Launch) in
//! `user_token`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::auth::ScopeSet;
use crate::auth::assertion::{self, CheckContext};
use crate::config::ScopeGrant;

/// The `client_assertion_type` of a JWT client assertion.
pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An OAuth error response; every token response carries `Cache-Control: no-store`.
pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    tracing::debug!(target: "epic_fhir_sandbox::auth", error, description, "token request refused");
    no_store(
        (
            status,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

pub(super) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    response
}

/// Any method but POST: Epic answers `invalid_request`.
pub(crate) async fn wrong_method() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "the token endpoint takes a POST with an application/x-www-form-urlencoded body",
    )
}

/// `POST /oauth2/token`.
pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    let response = exchange(&state, &uri, &headers, &body).await;
    if response.status().is_success() {
        state.stats.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn exchange(state: &AppState, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let invalid_request =
        |description: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description);
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return invalid_request(
            "parameters must be sent in the form body, not in the query string",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.split(';').next().is_some_and(|t| {
        t.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return invalid_request("Content-Type must be application/x-www-form-urlencoded");
    }
    let mut form: HashMap<String, String> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if form.insert(name.to_string(), value.into_owned()).is_some() {
            return invalid_request(&format!("parameter {name} is repeated"));
        }
    }
    let Some(grant_type) = form.get("grant_type") else {
        return invalid_request("grant_type is missing");
    };
    match grant_type.as_str() {
        "client_credentials" => {}
        "authorization_code" | "refresh_token" => {
            return super::user_token::exchange(state, headers, grant_type, &form).await;
        }
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!(
                    "grant_type {other} is not supported: use client_credentials, authorization_code or refresh_token"
                ),
            );
        }
    }
    let invalid_client = |description: &str| {
        let status =
            StatusCode::from_u16(state.invalid_client_status).unwrap_or(StatusCode::BAD_REQUEST);
        oauth_error(status, "invalid_client", description)
    };
    match form.get("client_assertion_type") {
        Some(t) if t == JWT_BEARER => {}
        Some(t) => {
            return invalid_client(&format!(
                "client_assertion_type {t} is not supported: use {JWT_BEARER}"
            ));
        }
        None => return invalid_request("client_assertion_type is missing"),
    }
    let Some(client_assertion) = form.get("client_assertion") else {
        return invalid_request("client_assertion is missing");
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ctx = CheckContext {
        token_url: &state.token_url,
        now,
        skew: state.clock_skew.as_secs() as i64,
        jwks_refetch_interval: state.jwks_refetch_interval,
    };
    let client = match assertion::verify(
        client_assertion,
        &state.clients,
        &state.replay,
        &state.http,
        ctx,
    )
    .await
    {
        Ok(client) => client,
        Err(description) => return invalid_client(&description),
    };
    // Epic ignores the requested scope and grants the registration; SMART servers grant what
    // was asked if the registration covers it. `ScopeGrant` picks one.
    let requested = form
        .get("scope")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty());
    let granted = match (state.scope_grant, requested) {
        (ScopeGrant::Registered, requested) => {
            if let Some(requested) = requested {
                tracing::debug!(target: "epic_fhir_sandbox::auth", client = %client.id, requested, "requested scope ignored: the registration is granted, as on Epic");
            }
            client.scopes.clone()
        }
        (ScopeGrant::Requested, None) => client.scopes.clone(),
        (ScopeGrant::Requested, Some(requested)) => {
            let requested = match ScopeSet::parse(requested) {
                Ok(requested) => requested,
                Err(problem) => {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &problem);
                }
            };
            match client.scopes.grant(&requested) {
                Ok(granted) => granted,
                Err(denied) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        &format!("client {} is not allowed: {}", client.id, denied.join(" ")),
                    );
                }
            }
        }
    };
    let lifetime = state.token_lifetime();
    let scope_text = granted.to_string();
    let access_token = match state.tokens.issue(&client.id, granted, lifetime) {
        Ok(token) => token,
        Err(problem) => {
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &problem);
        }
    };
    tracing::debug!(target: "epic_fhir_sandbox::auth", client = %client.id, scope = %scope_text, "access token issued");
    no_store(
        axum::Json(json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": lifetime.as_secs(),
            "scope": scope_text,
        }))
        .into_response(),
    )
}
