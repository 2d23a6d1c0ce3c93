//! One token request to the token endpoint, and how its response is classified.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;

use super::secret::AccessToken;
use crate::error::{Error, ErrorKind, OAuthError, RequestInfo, Result};
use crate::http::{Classify, Decision, Refused, RetryReason, retry_after, retryable_status};

/// The `client_assertion_type` for a JWT bearer client assertion (RFC 7523).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest token lifetime this client believes. A larger `expires_in` (servers have sent
/// 10^12 and more) is clamped to it, so the token is refreshed at least daily and no expiry
/// overflows the clock; a 401 refreshes a token the server stopped accepting earlier anyway.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An access token as issued by the token endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The token.
    pub access_token: AccessToken,
    /// The token type as the server spelled it (`bearer`, `Bearer`).
    pub token_type: String,
    /// The granted scopes, when the server said.
    pub scope: Option<String>,
    /// The lifetime the server gave in `expires_in`, if any, clamped to
    /// [`MAX_TOKEN_LIFETIME`].
    pub expires_in: Option<Duration>,
    /// When the token stops being valid: the time the request was sent plus `expires_in` (or the
    /// configured default lifetime when the server gave none). Counting from the request, not
    /// the response, errs on the safe side.
    pub expires_at: SystemTime,
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<ExpiresIn>,
    scope: Option<String>,
}

/// `expires_in` is a number per RFC 6749, but some servers send it as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(f64),
    Text(String),
}

impl ExpiresIn {
    /// The lifetime in seconds, when it is a finite, non-negative number.
    fn seconds(&self) -> Option<f64> {
        let seconds = match self {
            ExpiresIn::Number(n) => *n,
            ExpiresIn::Text(text) => text.trim().parse::<f64>().ok()?,
        };
        (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
    }
}

#[derive(Deserialize)]
struct RawOAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_uri: Option<String>,
}

/// OAuth error codes that describe a passing server condition rather than a client mistake.
fn is_transient_oauth_code(code: &str) -> bool {
    matches!(code, "temporarily_unavailable" | "server_error")
}

/// The token endpoint's classifier: what a non-2xx answer means.
///
/// An OAuth error body becomes [`ErrorKind::Auth`] with the code and description; anything
/// else keeps a short excerpt. Retry: 5xx, 429, 408, `temporarily_unavailable`/`server_error`,
/// and a bare 400 without an OAuth error body (Epic sends those now and then and they succeed
/// on retry). Never: `invalid_client` and the other OAuth codes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenEndpoint;

impl Classify for TokenEndpoint {
    fn classify(&self, refused: &Refused<'_>) -> Decision {
        let error = refusal(
            &refused.request.url,
            refused.status.as_u16(),
            retry_after(refused.headers),
            refused.body,
        );
        if !error.is_retryable() {
            return Decision::Fail(error);
        }
        let reason = if retryable_status(refused.status) {
            RetryReason::Status(refused.status.as_u16())
        } else {
            RetryReason::TokenEndpoint
        };
        Decision::Retry { reason, error }
    }
}

/// The error for a token endpoint's non-2xx answer, retryable when it is transient.
fn refusal(url: &Url, status: u16, retry_after: Option<Duration>, body: &[u8]) -> Error {
    let request = RequestInfo::new("POST", url);
    if let Ok(oauth) = serde_json::from_slice::<RawOAuthError>(body) {
        let retryable = status >= 500 || is_transient_oauth_code(&oauth.error);
        let oauth = OAuthError {
            description: oauth.error_description.filter(|d| !d.is_empty()),
            error: oauth.error,
            uri: oauth.error_uri,
            status,
        };
        return Error::new(ErrorKind::Auth, format!("token request refused: {oauth}"))
            .with_request(request)
            .with_oauth(oauth)
            .with_retry_after(retry_after)
            .retryable(retryable);
    }
    let retryable = status == 400 || status == 408 || status == 429 || status >= 500;
    Error::new(
        ErrorKind::Auth,
        format!("token request failed with HTTP {status} and no OAuth error body"),
    )
    .with_request(request)
    .with_status(status)
    .with_body_excerpt(body)
    .with_retry_after(retry_after)
    .retryable(retryable)
}

/// Reads a token endpoint's 2xx answer.
///
/// Success needs a JSON body with a non-empty `access_token` and a `token_type` of `bearer`
/// in any case. `expires_in` must be a non-negative number (or a string holding one); a
/// lifetime beyond [`MAX_TOKEN_LIFETIME`] is clamped to it.
pub(crate) fn parse_issued(
    url: &Url,
    status: u16,
    body: &[u8],
    sent_at: SystemTime,
    default_lifetime: Duration,
) -> Result<IssuedToken> {
    let request = RequestInfo::new("POST", url);
    let decode_error = |message: &str| {
        Error::new(ErrorKind::Decode, message.to_owned())
            .with_request(request.clone())
            .with_status(status)
    };
    let raw: RawTokenResponse = {
        let mut de = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let mut error =
                decode_error("token response is not valid JSON").with_source(e.into_inner());
            if path != "." {
                error = error.with_json_path(path);
            } else if !body.windows(12).any(|w| w == b"access_token") {
                // A broken body that may hold a token is never quoted.
                error = error.with_body_excerpt(body);
            }
            error
        })?
    };
    let access_token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| decode_error("token response has no access_token"))?;
    let token_type = raw
        .token_type
        .ok_or_else(|| decode_error("token response has no token_type"))?;
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(decode_error(&format!(
            "token response has token_type `{token_type}`: only bearer tokens are supported"
        )));
    }
    let expires_in = match raw.expires_in {
        None => None,
        Some(given) => match given.seconds() {
            Some(seconds) => Some(Duration::from_secs_f64(
                seconds.min(MAX_TOKEN_LIFETIME.as_secs_f64()),
            )),
            None => {
                return Err(decode_error(
                    "token response has an expires_in that is not a non-negative number",
                )
                .with_json_path("expires_in"));
            }
        },
    };
    let lifetime = expires_in
        .unwrap_or(default_lifetime)
        .min(MAX_TOKEN_LIFETIME);
    let expires_at = sent_at.checked_add(lifetime).ok_or_else(|| {
        decode_error("the token's expiry is beyond what the system clock can represent")
    })?;
    Ok(IssuedToken {
        access_token: AccessToken::new(access_token),
        token_type,
        scope: raw.scope,
        expires_at,
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:9/oauth2/token").expect("url")
    }

    fn classify(status: u16, body: &str) -> Result<IssuedToken> {
        if (200..300).contains(&status) {
            parse_issued(
                &url(),
                status,
                body.as_bytes(),
                SystemTime::UNIX_EPOCH,
                Duration::from_secs(300),
            )
        } else {
            Err(refusal(&url(), status, None, body.as_bytes()))
        }
    }

    #[test]
    fn success_with_case_insensitive_type_and_string_expiry() {
        let token = classify(
            200,
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":"3600","scope":"system/Patient.read"}"#,
        )
        .expect("token");
        assert_eq!(token.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(
            token.expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(3600)
        );
        assert_eq!(token.scope.as_deref(), Some("system/Patient.read"));
        let token =
            classify(200, r#"{"access_token":"abc","token_type":"bearer"}"#).expect("token");
        assert_eq!(token.expires_in, None);
        assert_eq!(
            token.expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(300)
        );
    }

    #[test]
    fn invalid_client_with_null_description_is_typed_and_final() {
        let err = classify(
            400,
            r#"{"error":"invalid_client","error_description":null}"#,
        )
        .expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Auth);
        let oauth = err.oauth().expect("oauth error");
        assert_eq!(oauth.error, "invalid_client");
        assert_eq!(oauth.description, None);
        assert_eq!(oauth.status, 400);
        assert!(!err.is_retryable());
        assert!(err.is_auth());
        assert_eq!(
            err.to_string(),
            "POST /oauth2/token: token request refused: invalid_client (HTTP 400)"
        );
    }

    #[test]
    fn transient_failures_are_retryable() {
        assert!(classify(400, "").expect_err("bare 400").is_retryable());
        assert!(
            classify(503, "<html>down</html>")
                .expect_err("503")
                .is_retryable()
        );
        assert!(classify(429, "").expect_err("429").is_retryable());
        assert!(
            classify(400, r#"{"error":"temporarily_unavailable"}"#)
                .expect_err("busy")
                .is_retryable()
        );
        assert!(!classify(403, "forbidden").expect_err("403").is_retryable());
        assert!(
            !classify(400, r#"{"error":"invalid_scope","error_description":"no"}"#)
                .expect_err("scope")
                .is_retryable()
        );
    }

    #[test]
    fn non_json_bodies_keep_an_excerpt() {
        let err = classify(502, "<html><body>Bad gateway</body></html>").expect_err("502");
        assert_eq!(err.status(), Some(502));
        assert!(err.body_excerpt().expect("excerpt").contains("Bad gateway"));
        let err = classify(200, "<html>login page</html>").expect_err("html");
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(err.body_excerpt().expect("excerpt").contains("login page"));
    }

    #[test]
    fn malformed_success_bodies_name_the_problem() {
        let err = classify(200, r#"{"token_type":"bearer"}"#).expect_err("no token");
        assert!(err.to_string().contains("no access_token"), "{err}");
        let err = classify(200, r#"{"access_token":"a","token_type":"mac"}"#).expect_err("mac");
        assert!(err.to_string().contains("`mac`"), "{err}");
        let err = classify(
            200,
            r#"{"access_token":"a","token_type":"bearer","expires_in":-1}"#,
        )
        .expect_err("neg");
        assert_eq!(err.json_path(), Some("expires_in"));
        let err = classify(200, r#"{"access_token":7,"token_type":"bearer"}"#).expect_err("type");
        assert_eq!(err.json_path(), Some("access_token"));
        // The token never shows in an error.
        let err =
            classify(200, r#"{"access_token":"sekrit","token_type":"mac"}"#).expect_err("mac");
        assert!(!format!("{err} {err:?}").contains("sekrit"));
    }
}
