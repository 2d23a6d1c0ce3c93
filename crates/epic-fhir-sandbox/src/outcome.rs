//! FHIR errors answered as OperationOutcome JSON, and Epic's warning codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The coding system of Epic's OperationOutcome codes.
pub const EPIC_OUTCOME_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369";
/// Epic: "Resource request returns no results."
pub const EPIC_NO_RESULTS: u32 = 4101;
/// Epic: the search session expired.
pub const EPIC_SESSION_EXPIRED: u32 = 4113;
/// Epic: "User not authorized for request."
pub(crate) const EPIC_NOT_AUTHORIZED: u32 = 4118;
/// Epic: a parameter was ignored.
pub const EPIC_PARAMETER_IGNORED: u32 = 4122;

/// The media type of every FHIR response.
pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// One issue of an OperationOutcome.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub(crate) severity: &'static str,
    pub(crate) code: &'static str,
    pub(crate) diagnostics: String,
    pub(crate) epic_code: Option<(u32, &'static str)>,
    pub(crate) expression: Option<String>,
}

impl Issue {
    pub(crate) fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some((code, display)) = self.epic_code {
            issue["details"] = json!({
                "coding": [{"system": EPIC_OUTCOME_SYSTEM, "code": code.to_string(), "display": display}],
                "text": display,
            });
        }
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        issue
    }

    /// A warning with an Epic code, for `search.mode = outcome` entries.
    pub(crate) fn epic_warning(
        code: u32,
        display: &'static str,
        diagnostics: String,
        expression: Option<String>,
    ) -> Self {
        Issue {
            severity: "warning",
            code: "processing",
            diagnostics,
            epic_code: Some((code, display)),
            expression,
        }
    }
}

/// An OperationOutcome resource holding `issues`.
pub(crate) fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

/// An error answered as an OperationOutcome with an HTTP status.
#[derive(Debug, Clone)]
pub(crate) struct FhirError {
    pub(crate) status: StatusCode,
    pub(crate) issue: Box<Issue>,
    pub(crate) www_authenticate: Option<String>,
    pub(crate) retry_after: Option<u64>,
}

impl FhirError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        diagnostics: impl Into<String>,
    ) -> Self {
        FhirError {
            status,
            issue: Box::new(Issue {
                severity: "error",
                code,
                diagnostics: diagnostics.into(),
                epic_code: None,
                expression: None,
            }),
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }

    pub(crate) fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", diagnostics)
    }

    pub(crate) fn with_epic_code(mut self, code: u32, display: &'static str) -> Self {
        self.issue.epic_code = Some((code, display));
        self
    }

    pub(crate) fn with_severity(mut self, severity: &'static str) -> Self {
        self.issue.severity = severity;
        self
    }

    pub(crate) fn with_expression(mut self, expression: impl Into<String>) -> Self {
        self.issue.expression = Some(expression.into());
        self
    }

    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
    pub(crate) fn invalid_token(description: &str) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "login", description);
        error.www_authenticate = Some(format!(
            "Bearer realm=\"epic-fhir-sandbox\", error=\"invalid_token\", error_description=\"{description}\""
        ));
        error
    }

    /// 403 with `WWW-Authenticate: Bearer error="insufficient_scope"`.
    pub(crate) fn insufficient_scope(description: String, needed: &str) -> Self {
        let mut error = Self::new(StatusCode::FORBIDDEN, "forbidden", description);
        error.www_authenticate = Some(format!(
            "Bearer realm=\"epic-fhir-sandbox\", error=\"insufficient_scope\", scope=\"{needed}\""
        ));
        error
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let body = operation_outcome(std::slice::from_ref(self.issue.as_ref())).to_string();
        let mut response = (self.status, [(header::CONTENT_TYPE, FHIR_JSON)], body).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
