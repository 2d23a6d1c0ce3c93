//! What an answer means: the typed decision the engine acts on.
//!
//! The engine hands every answer it was not told to accept, and every failed attempt, to a
//! classifier, which turns it into a [`Decision`]: retry (with a [`RetryReason`]), refresh the
//! token, or fail. The engine alone then decides whether a retry happens and when (see
//! [`super::Retries`]), so the rules of delay, `Retry-After` and idempotency hold for every
//! caller alike.

use std::fmt;
use std::time::SystemTime;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};

use super::engine::Request;
use crate::error::{Error, ErrorKind, RequestInfo};
use crate::model::{IssueType, OperationOutcome};
use crate::retry::parse_retry_after;

/// What to do after an attempt that did not end with an accepted answer.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Send the request again, after the retry policy's delay, if the policy and the request's
    /// idempotency allow.
    Retry {
        /// Why the attempt failed.
        reason: RetryReason,
        /// The error returned if no retry happens.
        error: Error,
    },
    /// The server refused the bearer token (401): forget it and send the request again at once
    /// with a fresh one, once per request.
    RefreshToken {
        /// The error returned if no refresh happens.
        error: Error,
        /// The refused token.
        token: crate::auth::AccessToken,
    },
    /// Final: the error is returned.
    Fail(Error),
}

/// Why an attempt may be worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryReason {
    /// The connection was never established: the request cannot have reached the server.
    Connect,
    /// No token could be had: the request was not sent.
    Token,
    /// The connection failed after the request may have been sent.
    Transport,
    /// No answer (or no more of the body) within a timeout.
    Timeout,
    /// The answer's body was cut off.
    CutOff,
    /// A status that means "try again later": 408, 429, 500, 502, 503 or 504.
    Status(u16),
    /// An OperationOutcome whose issue code is `transient` or `throttled`.
    TransientOutcome,
    /// A token endpoint's transient failure: `temporarily_unavailable`, `server_error`, or a
    /// bare 400 without an OAuth error (Epic sends those now and then).
    TokenEndpoint,
    /// A download answer that did not continue where asked: the file starts over.
    BadRange,
    /// A downloaded file's content is wrong: it is downloaded again, a limited number of times.
    BadContent,
}

impl RetryReason {
    /// Whether the failed attempt may have reached the server.
    pub(crate) fn may_have_reached_server(self) -> bool {
        !matches!(self, RetryReason::Connect | RetryReason::Token)
    }

    /// Whether the server answered with an error (a status, an outcome), rather than the
    /// answer being lost.
    pub(crate) fn is_error_answer(self) -> bool {
        matches!(
            self,
            RetryReason::Status(_) | RetryReason::TransientOutcome | RetryReason::TokenEndpoint
        )
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryReason::Connect => f.write_str("connection failed"),
            RetryReason::Token => f.write_str("no token"),
            RetryReason::Transport => f.write_str("transport error"),
            RetryReason::Timeout => f.write_str("timeout"),
            RetryReason::CutOff => f.write_str("body cut off"),
            RetryReason::Status(status) => write!(f, "HTTP {status}"),
            RetryReason::TransientOutcome => f.write_str("transient OperationOutcome"),
            RetryReason::TokenEndpoint => f.write_str("transient token endpoint error"),
            RetryReason::BadRange => f.write_str("range not honoured"),
            RetryReason::BadContent => f.write_str("bad content"),
        }
    }
}

/// An answer with a status the request does not accept, its body read under the error limit.
pub(crate) struct Refused<'a> {
    pub(crate) request: &'a Request,
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

/// Turns a refused answer into a decision. One implementation per kind of endpoint: FHIR and
/// Bulk Data endpoints here, the token endpoint and discovery in `auth`.
pub(crate) trait Classify: Sync {
    /// The decision for `refused`. A 401 to a request that carried a token is turned into
    /// [`Decision::RefreshToken`] by the engine, with the error this returns.
    fn classify(&self, refused: &Refused<'_>) -> Decision;
}

/// Statuses that mean "try again later".
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The server's `Retry-After`, as a delay from now.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// Whether an OperationOutcome says the problem will pass.
fn is_transient(outcome: &OperationOutcome) -> bool {
    outcome.issue.iter().any(|issue| {
        matches!(
            issue.code,
            Some(IssueType::Transient | IssueType::Throttled)
        )
    })
}

/// FHIR endpoints, the Bulk Data endpoints included.
///
/// Retry: 408, 429, 500, 502, 503, 504, and any status whose OperationOutcome says
/// `transient` or `throttled`. Everything else fails with the server's OperationOutcome.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FhirStatus {
    /// A 500 that explains itself with an OperationOutcome that is not transient is final:
    /// the Bulk Data IG answers a failed export job this way.
    pub(crate) explained_500_is_final: bool,
    /// A 429 is final, for a caller that waits as told by itself (export status polling).
    pub(crate) throttle_is_final: bool,
}

impl Classify for FhirStatus {
    fn classify(&self, refused: &Refused<'_>) -> Decision {
        let (error, outcome_transient) = status_error(refused);
        let status = refused.status;
        let has_outcome = error.operation_outcome().is_some();
        if self.throttle_is_final && status == StatusCode::TOO_MANY_REQUESTS {
            return Decision::Fail(error);
        }
        if self.explained_500_is_final
            && status == StatusCode::INTERNAL_SERVER_ERROR
            && has_outcome
            && !outcome_transient
        {
            return Decision::Fail(error);
        }
        if retryable_status(status) {
            Decision::Retry {
                reason: RetryReason::Status(status.as_u16()),
                error: error.retryable(true),
            }
        } else if outcome_transient {
            Decision::Retry {
                reason: RetryReason::TransientOutcome,
                error: error.retryable(true),
            }
        } else {
            Decision::Fail(error)
        }
    }
}

/// The error for a FHIR status answer, with the server's OperationOutcome when the body is
/// one (or an excerpt of the body when it is not), and whether that outcome is transient.
pub(crate) fn status_error(refused: &Refused<'_>) -> (Error, bool) {
    let Refused {
        request,
        status,
        headers,
        body,
    } = refused;
    let outcome: Option<OperationOutcome> = crate::model::from_slice(body).ok();
    let transient = outcome.as_ref().is_some_and(is_transient);
    let mut message = format!("HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        message.push(' ');
        message.push_str(reason);
    }
    if let Some(outcome) = &outcome {
        message.push_str(": ");
        message.push_str(&outcome.summary());
    } else if let Some(challenge) = headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()) {
        message.push_str(": ");
        message.push_str(challenge);
    }
    let mut error = Error::new(ErrorKind::Status, message)
        .with_request(RequestInfo::new(request.method.as_str(), &request.url))
        .with_status(status.as_u16())
        .with_retry_after(retry_after(headers))
        .retryable(false);
    match outcome {
        Some(outcome) => error = error.with_outcome(outcome),
        None if !body.is_empty() => error = error.with_body_excerpt(body),
        None => {}
    }
    (error, transient)
}
