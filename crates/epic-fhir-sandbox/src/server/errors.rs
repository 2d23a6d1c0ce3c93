//! The outermost layer of every response: errors axum writes as plain text (a body over the
//! limit, a malformed path) become OperationOutcomes (OAuth errors on the token endpoint),
//! and a CapabilityStatement or OperationOutcome is written as FHIR XML when the request asks
//! for XML, as Epic answers a request with no `Accept` header or only `*/*`.

use std::sync::Arc;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::config::{AUTHORIZE_PATH, FHIR_BASE_PATH, JWKS_PATH, LAUNCH_PATH, TOKEN_PATH};
use crate::outcome::FhirError;

/// The FHIR XML media type.
pub(crate) const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";
/// The largest JSON body converted to XML: the sandbox's CapabilityStatement and outcomes are
/// far smaller; anything larger is left as it is rather than buffered.
const MAX_XML_SOURCE: u64 = 4 << 20;
/// The largest plain-text error body read into an OperationOutcome's diagnostics.
const MAX_PLAIN_ERROR: usize = 16 << 10;

/// `_format` values and `Accept` media ranges that ask for XML (compared without case).
const XML_FORMATS: [&str; 5] = [
    "xml",
    "text/xml",
    "application/xml",
    "application/fhir+xml",
    "application/xml+fhir",
];

/// What the request asks for, decided from `_format` (which wins) and `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// JSON, explicitly or by a range JSON satisfies.
    Json,
    /// XML, explicitly (`_format=xml`, `Accept: application/fhir+xml`...).
    ExplicitXml,
    /// No `Accept` or only `*/*`: Epic answers XML then.
    DefaultXml,
    /// `Accept` allows no JSON and no XML: a 406, decided by the handler.
    Other,
}

/// The media ranges of an `Accept` value that are not refused with `q=0`.
fn accepted_ranges(accept: &str) -> impl Iterator<Item = &str> {
    accept.split(',').filter_map(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (!refused && !media.is_empty()).then_some(media)
    })
}

/// Classifies a request's format preference.
pub(crate) fn wanted(headers: &HeaderMap, format: Option<&str>) -> Wanted {
    if let Some(format) = format.map(str::trim) {
        if XML_FORMATS.iter().any(|f| f.eq_ignore_ascii_case(format)) {
            return Wanted::ExplicitXml;
        }
        return if super::fhir::JSON_FORMATS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(format))
        {
            Wanted::Json
        } else {
            Wanted::Other
        };
    }
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if accept.trim().trim_matches(',').trim().is_empty() {
        return Wanted::DefaultXml;
    }
    let ranges: Vec<&str> = accepted_ranges(&accept).collect();
    if ranges.is_empty() {
        // Everything listed was refused with q=0.
        return Wanted::Other;
    }
    if ranges.iter().all(|r| *r == "*/*") {
        return Wanted::DefaultXml;
    }
    let json = ranges.iter().any(|range| {
        *range != "*/*"
            && super::fhir::JSON_MEDIA_RANGES
                .iter()
                .any(|m| m.eq_ignore_ascii_case(range))
    });
    if json {
        return Wanted::Json;
    }
    if ranges.iter().any(|range| {
        XML_FORMATS[1..]
            .iter()
            .any(|m| m.eq_ignore_ascii_case(range))
    }) {
        return Wanted::ExplicitXml;
    }
    if ranges
        .iter()
        .any(|r| *r == "*/*" || r.eq_ignore_ascii_case("application/*"))
    {
        Wanted::Json
    } else {
        Wanted::Other
    }
}

/// Whether a request for `wanted` gets XML (CapabilityStatement and OperationOutcomes only).
pub(crate) fn xml_answer(wanted: Wanted, epic_rules: bool) -> bool {
    match wanted {
        Wanted::ExplicitXml => true,
        Wanted::DefaultXml => epic_rules,
        Wanted::Json | Wanted::Other => false,
    }
}

/// The `_format` parameter of a query string.
fn format_of(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.into_owned())
}

/// Which part of the server a path belongs to, for the error shape and XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    /// The OAuth token endpoint: errors are OAuth JSON.
    Token,
    /// The FHIR REST API: OperationOutcomes, XML when asked.
    Rest,
    /// Bulk export status and files, SMART discovery: OperationOutcomes, always JSON.
    JsonOnly,
    /// The pages a browser shows (authorization, login, consent, the EHR launcher): their
    /// errors are HTML pages, left as they are.
    Pages,
}

fn area(path: &str) -> Area {
    if path == TOKEN_PATH {
        return Area::Token;
    }
    if path == AUTHORIZE_PATH
        || path.starts_with(&format!("{AUTHORIZE_PATH}/"))
        || path == LAUNCH_PATH
    {
        return Area::Pages;
    }
    if path == JWKS_PATH {
        return Area::JsonOnly;
    }
    match path.strip_prefix(FHIR_BASE_PATH) {
        Some(rest) if rest.contains("$export") || rest.starts_with("/.well-known") => {
            Area::JsonOnly
        }
        _ => Area::Rest,
    }
}

/// The middleware: see the module documentation.
pub(crate) async fn negotiate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let area = area(request.uri().path());
    let wanted = wanted(
        request.headers(),
        format_of(request.uri().query()).as_deref(),
    );
    let response = next.run(request).await;
    let response = if response.status().is_client_error() || response.status().is_server_error() {
        structured_error(response, area).await
    } else {
        response
    };
    if area == Area::Rest && xml_answer(wanted, state.epic_rules) {
        as_xml(response).await
    } else {
        response
    }
}

fn is_html(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// An error response that is not JSON (axum's own rejections are plain text) rewritten as an
/// OperationOutcome, or an OAuth error on the token endpoint, keeping status and text.
async fn structured_error(response: Response, area: Area) -> Response {
    if is_json(&response) || (area == Area::Pages && is_html(&response)) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_PLAIN_ERROR).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let status = parts.status;
    let text = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    let mut rebuilt = match area {
        Area::Token => (
            status,
            axum::Json(json!({"error": "invalid_request", "error_description": text})),
        )
            .into_response(),
        Area::Pages => super::authorize::error_page(status, "Request refused", &text),
        Area::Rest | Area::JsonOnly => {
            let code = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "too-costly",
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    "not-supported"
                }
                s if s.is_server_error() => "exception",
                _ => "invalid",
            };
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("{text}: the request body is larger than this server accepts")
            } else {
                text
            };
            FhirError::new(status, code, message).into_response()
        }
    };
    // Headers the original answer carried (Allow, Retry-After...) are kept.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

/// A JSON CapabilityStatement or OperationOutcome rewritten as FHIR XML; anything else is left
/// unchanged.
async fn as_xml(response: Response) -> Response {
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_XML_SOURCE);
    if !is_json(&response) || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_XML_SOURCE as usize).await else {
        return FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the response could not be read to write it as XML",
        )
        .into_response();
    };
    let xml = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|value| crate::xml::to_xml(&value));
    match xml {
        Some(xml) => {
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_XML));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(xml))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn preferences() {
        assert_eq!(wanted(&HeaderMap::new(), None), Wanted::DefaultXml);
        assert_eq!(wanted(&accept("*/*"), None), Wanted::DefaultXml);
        assert_eq!(wanted(&accept(""), None), Wanted::DefaultXml);
        assert_eq!(wanted(&accept("application/fhir+json"), None), Wanted::Json);
        assert_eq!(
            wanted(&accept("application/json, */*;q=0.1"), None),
            Wanted::Json
        );
        assert_eq!(
            wanted(&accept("application/fhir+xml"), None),
            Wanted::ExplicitXml
        );
        assert_eq!(
            wanted(&accept("text/html, application/*"), None),
            Wanted::Json
        );
        assert_eq!(wanted(&accept("text/html"), None), Wanted::Other);
        assert_eq!(
            wanted(&accept("application/fhir+json;q=0"), None),
            Wanted::Other
        );
        assert_eq!(wanted(&HeaderMap::new(), Some("json")), Wanted::Json);
        assert_eq!(wanted(&accept("*/*"), Some("xml")), Wanted::ExplicitXml);
        assert_eq!(wanted(&accept("*/*"), Some("turtle")), Wanted::Other);
        assert!(xml_answer(Wanted::DefaultXml, true));
        assert!(!xml_answer(Wanted::DefaultXml, false));
        assert!(xml_answer(Wanted::ExplicitXml, false));
    }

    #[test]
    fn areas() {
        assert_eq!(area(TOKEN_PATH), Area::Token);
        assert_eq!(area(&format!("{FHIR_BASE_PATH}/Patient/x")), Area::Rest);
        assert_eq!(area(&format!("{FHIR_BASE_PATH}/metadata")), Area::Rest);
        assert_eq!(
            area(&format!("{FHIR_BASE_PATH}/$export-status/j")),
            Area::JsonOnly
        );
        assert_eq!(area("/elsewhere"), Area::Rest);
        assert_eq!(area(AUTHORIZE_PATH), Area::Pages);
        assert_eq!(area(&format!("{AUTHORIZE_PATH}/login")), Area::Pages);
        assert_eq!(area(LAUNCH_PATH), Area::Pages);
        assert_eq!(area(JWKS_PATH), Area::JsonOnly);
    }
}
