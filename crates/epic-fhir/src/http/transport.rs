//! What every HTTP request of the crate shares below the engine: the `User-Agent`, the plain
//! HTTP clients built when the caller gives none, and how a `reqwest` error becomes an [`Error`].

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The `User-Agent` this crate sends unless told otherwise.
pub(crate) const USER_AGENT: &str = concat!("epic-fhir-rs/", env!("CARGO_PKG_VERSION"));

/// Connect timeout of the default token and discovery client.
const AUTH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Request timeout (body included) of the default token and discovery client.
const AUTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client used for token requests and discovery when none is given: rustls, a 10 s
/// connect timeout, a 30 s request timeout, and no redirects (an assertion must never be sent
/// to another URL than its `aud`).
pub(crate) fn default_auth_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(AUTH_CONNECT_TIMEOUT)
        .timeout(AUTH_REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::config("cannot build the HTTP client").with_source(e))
}

/// Maps a reqwest error to [`ErrorKind::Timeout`] or [`ErrorKind::Transport`], both retryable
/// unless the caller says otherwise.
pub(crate) fn transport_error(error: reqwest::Error, message: &str) -> Error {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transport
    };
    // reqwest's message can contain the URL, and with it a query holding patient data: drop it.
    Error::new(kind, message).with_source(error.without_url())
}
