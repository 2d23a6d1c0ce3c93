//! The crate's one public error type.

use std::fmt;
use std::time::Duration;

use crate::auth::KeyError;
use crate::model::OperationOutcome;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is. Match on this rather than on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid (a missing setting, a bad URL, a lifetime out of range).
    Config,
    /// The signing key cannot be used; see [`Error::key_error`].
    Key,
    /// A URL was refused because it is plain `http://` to a non-loopback host, or points at
    /// another origin than the one configured.
    InsecureUrl,
    /// The token endpoint refused to issue a token; see [`Error::oauth`].
    Auth,
    /// The FHIR server answered with an error status; see [`Error::status`].
    Status,
    /// The request never got a complete response (connection refused or reset, TLS, DNS).
    Transport,
    /// A request or a token fetch took longer than its timeout.
    Timeout,
    /// A response body is not what the protocol says it must be (malformed JSON, a field of the
    /// wrong type); see [`Error::json_path`] and [`Error::body_excerpt`].
    Decode,
    /// SMART discovery failed: no usable `token_endpoint`, or the server does not support what
    /// this client needs.
    Discovery,
    /// A local file operation failed (bulk export downloads).
    Io,
    /// An answer went past a bound this client keeps so that no server can exhaust it: a body
    /// larger than its [`BodyLimits`](crate::BodyLimits), more pages than
    /// [`max_pages`](crate::FhirClientBuilder::max_pages), a bulk file larger than
    /// [`DownloadOptions::max_file_bytes`](crate::bulk::DownloadOptions::max_file_bytes).
    Limit,
    /// A SMART App Launch check failed on the client's side: the callback's `state` does not
    /// match, it carries no code, the id_token does not verify (signature, `iss`, `aud`,
    /// `exp`, `nonce`), or an EHR launch names an `iss` outside the allow-list. The message
    /// names the check.
    Launch,
    /// The user must log in again: the refresh token was refused (`invalid_grant`) or there is
    /// none and the access token has expired.
    LoginRequired,
}

/// An OAuth 2.0 error response from a token endpoint (RFC 6749 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// The `error` code, such as `invalid_client` or `invalid_scope`.
    pub error: String,
    /// The `error_description`, when the server gave one (Epic sometimes sends `null`).
    pub description: Option<String>,
    /// The `error_uri`, when given.
    pub uri: Option<String>,
    /// The HTTP status of the response.
    pub status: u16,
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.error, self.status)?;
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

/// The request an error happened in: method and path, with the query string redacted because
/// search parameters can hold patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The HTTP method.
    pub method: String,
    /// The URL's path, followed by `?[redacted]` when the URL had a query.
    pub path: String,
}

impl RequestInfo {
    /// Describes a request to `url`, redacting its query.
    pub fn new(method: &str, url: &url::Url) -> Self {
        let mut path = url.path().to_owned();
        if url.query().is_some() {
            path.push_str("?[redacted]");
        }
        RequestInfo {
            method: method.to_owned(),
            path,
        }
    }
}

impl fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error returned by every fallible operation of this crate.
///
/// `Display` is a short phrase saying what failed; the underlying cause is in
/// [`std::error::Error::source`] (print the whole chain with `{:#}` in `anyhow`, or walk it).
/// Secrets never appear in it: not the key, not the token, not the client assertion, and not a
/// request's query string.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    request: Option<RequestInfo>,
    status: Option<u16>,
    oauth: Option<OAuthError>,
    key: Option<KeyError>,
    outcome: Option<Box<OperationOutcome>>,
    body_excerpt: Option<String>,
    json_path: Option<String>,
    retry_after: Option<Duration>,
    retryable: bool,
    source: Option<BoxError>,
}

/// The longest body excerpt kept in an error, in characters.
pub(crate) const EXCERPT_CHARS: usize = 200;

/// A short, single-line excerpt of a response body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                request: None,
                status: None,
                oauth: None,
                key: None,
                outcome: None,
                body_excerpt: None,
                json_path: None,
                retry_after: None,
                retryable: matches!(kind, ErrorKind::Transport | ErrorKind::Timeout),
                source: None,
            }),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    pub(crate) fn with_request(mut self, request: RequestInfo) -> Self {
        self.inner.request = Some(request);
        self
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.inner.status = Some(status);
        self
    }

    pub(crate) fn with_oauth(mut self, oauth: OAuthError) -> Self {
        self.inner.status = Some(oauth.status);
        self.inner.oauth = Some(oauth);
        self
    }

    pub(crate) fn with_outcome(mut self, outcome: OperationOutcome) -> Self {
        self.inner.outcome = Some(Box::new(outcome));
        self
    }

    pub(crate) fn with_body_excerpt(mut self, body: &[u8]) -> Self {
        self.inner.body_excerpt = Some(excerpt(body));
        self
    }

    pub(crate) fn with_json_path(mut self, path: impl Into<String>) -> Self {
        self.inner.json_path = Some(path.into());
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.inner.retry_after = retry_after;
        self
    }

    pub(crate) fn retryable(mut self, retryable: bool) -> Self {
        self.inner.retryable = retryable;
        self
    }

    /// A copy of an error shared between several callers (all waiters of one failed token
    /// fetch get the same error). The copy's source is the original's source.
    pub(crate) fn shared(original: &std::sync::Arc<Error>) -> Error {
        let o = &original.inner;
        Error {
            inner: Box::new(Inner {
                kind: o.kind,
                message: o.message.clone(),
                request: o.request.clone(),
                status: o.status,
                oauth: o.oauth.clone(),
                key: o.key.clone(),
                outcome: o.outcome.clone(),
                body_excerpt: o.body_excerpt.clone(),
                json_path: o.json_path.clone(),
                retry_after: o.retry_after,
                retryable: o.retryable,
                source: o
                    .source
                    .is_some()
                    .then(|| Box::new(SharedCause(std::sync::Arc::clone(original))) as BoxError),
            }),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status of the response that caused the error, if there was one.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The OAuth error the token endpoint returned, for [`ErrorKind::Auth`].
    pub fn oauth(&self) -> Option<&OAuthError> {
        self.inner.oauth.as_ref()
    }

    /// The OperationOutcome the server sent with an error status, with its issues and Epic
    /// codes (see [`OperationOutcome::epic_issues`]).
    pub fn operation_outcome(&self) -> Option<&OperationOutcome> {
        self.inner.outcome.as_deref()
    }

    /// Epic's codes in the error's OperationOutcome, such as `4111`.
    pub fn epic_codes(&self) -> Vec<&str> {
        self.inner
            .outcome
            .as_deref()
            .map(|o| o.epic_issues().map(|(_, code)| code).collect())
            .unwrap_or_default()
    }

    /// Why the signing key was rejected, for [`ErrorKind::Key`].
    pub fn key_error(&self) -> Option<&KeyError> {
        self.inner.key.as_ref()
    }

    /// The request this error happened in (method and path; the query is redacted).
    pub fn request(&self) -> Option<&RequestInfo> {
        self.inner.request.as_ref()
    }

    /// A short excerpt of the response body, when it could not be understood.
    pub fn body_excerpt(&self) -> Option<&str> {
        self.inner.body_excerpt.as_deref()
    }

    /// The JSON path at which decoding a response failed, such as `entry[3].resource.status`.
    pub fn json_path(&self) -> Option<&str> {
        self.inner.json_path.as_deref()
    }

    /// The delay the server asked for with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether trying the same request again may succeed: connection failures, timeouts,
    /// 408/429/5xx statuses and transient token-endpoint failures.
    pub fn is_retryable(&self) -> bool {
        self.inner.retryable
    }

    /// Whether the user must log in again (see [`ErrorKind::LoginRequired`]).
    pub fn needs_login(&self) -> bool {
        self.inner.kind == ErrorKind::LoginRequired
    }

    /// Whether this is an authentication or authorization failure (a refused token request, or a
    /// 401/403 from the FHIR server).
    pub fn is_auth(&self) -> bool {
        self.inner.kind == ErrorKind::Auth
            || matches!(self.inner.status, Some(401 | 403)) && self.inner.kind == ErrorKind::Status
    }
}

/// The source of an error that several callers share.
struct SharedCause(std::sync::Arc<Error>);

impl fmt::Debug for SharedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.inner.source {
            Some(source) => fmt::Debug::fmt(source, f),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Display for SharedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.inner.source {
            Some(source) => fmt::Display::fmt(source, f),
            None => Ok(()),
        }
    }
}

impl std::error::Error for SharedCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.inner.source.as_ref().and_then(|s| s.source())
    }
}

impl From<KeyError> for Error {
    fn from(key: KeyError) -> Self {
        let mut error = Error::new(ErrorKind::Key, key.to_string());
        error.inner.key = Some(key);
        error
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(request) = &self.inner.request {
            write!(f, "{request}: ")?;
        }
        f.write_str(&self.inner.message)?;
        if let Some(path) = &self.inner.json_path {
            write!(f, " at `{path}`")?;
        }
        if let Some(body) = &self.inner.body_excerpt {
            write!(f, " (body: {body})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Error");
        s.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(request) = &self.inner.request {
            s.field("request", request);
        }
        if let Some(status) = &self.inner.status {
            s.field("status", status);
        }
        if let Some(oauth) = &self.inner.oauth {
            s.field("oauth", oauth);
        }
        if let Some(path) = &self.inner.json_path {
            s.field("json_path", path);
        }
        if let Some(source) = &self.inner.source {
            s.field("source", source);
        }
        s.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_info_redacts_the_query() {
        let url =
            url::Url::parse("https://fhir.example.org/R4/Patient?family=Lopez&birthdate=1987")
                .expect("valid url");
        let info = RequestInfo::new("GET", &url);
        assert_eq!(info.to_string(), "GET /R4/Patient?[redacted]");
        assert!(!info.to_string().contains("Lopez"));
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        let long = "x".repeat(1000) + "\n";
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(excerpt(b"a\nb").contains("a b"));
    }

    #[test]
    fn display_includes_context_but_not_the_source() {
        let url = url::Url::parse("http://127.0.0.1/token").expect("valid url");
        let error = Error::new(ErrorKind::Decode, "token response is not JSON")
            .with_request(RequestInfo::new("POST", &url))
            .with_body_excerpt(b"<html>oops</html>")
            .with_source(std::io::Error::other("inner cause"));
        let text = error.to_string();
        assert_eq!(
            text,
            "POST /token: token response is not JSON (body: <html>oops</html>)"
        );
        assert!(std::error::Error::source(&error).is_some());
    }
}
