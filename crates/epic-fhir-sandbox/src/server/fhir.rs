//! The FHIR REST handlers: read, vread, search (with sessions), create and update.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::bundle::{Page, render};
use super::errors::Wanted;
use super::session::SessionProblem;
use super::{AppState, fhir_json};
use crate::auth::tokens::Grant;
use crate::auth::{Permission, ScopeContext};
use crate::outcome::{
    EPIC_NO_RESULTS, EPIC_PARAMETER_IGNORED, EPIC_SESSION_EXPIRED, FhirError, Issue,
};
use crate::search::{self, ParsedSearch, SearchError};
use crate::store::{StoreError, StoredResource, is_valid_type_name};

type Result<T, E = FhirError> = std::result::Result<T, E>;

/// The header Epic reads to identify the calling application.
pub(crate) const EPIC_CLIENT_ID: &str = "epic-client-id";

/// The grant of the request's bearer token: 401 `invalid_token` when it is missing, unknown or
/// expired. Scopes are checked by the caller.
///
/// An `Epic-Client-ID` header (which Epic-aware clients send with every request) is logged,
/// and when it names another client than the one the token was issued to, the request is
/// refused with 403 and Epic's 4118 "User not authorized for request.": the header and the
/// token must agree on who is calling.
pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Arc<Grant>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let grant = state
        .tokens
        .check(bearer)
        .map_err(|problem| FhirError::invalid_token(problem.description()))?;
    if let Some(value) = headers.get(EPIC_CLIENT_ID) {
        let claimed = value.to_str().unwrap_or_default().trim();
        tracing::debug!(target: "epic_fhir_sandbox::fhir", epic_client_id = claimed, token_client = %grant.client_id, "Epic-Client-ID");
        if claimed != grant.client_id {
            return Err(FhirError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the Epic-Client-ID header names client `{claimed}`, but the access token was issued to client `{}`: send the client id the token belongs to",
                    grant.client_id
                ),
            )
            .with_epic_code(crate::outcome::EPIC_NOT_AUTHORIZED, "User not authorized for request.")
            .with_expression("Epic-Client-ID"));
        }
        state
            .stats
            .epic_client_id_requests
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(grant)
}

/// Checks the bearer token and that its scopes allow `permission` on `resource_type`.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    resource_type: &str,
    permission: Permission,
) -> Result<Arc<Grant>> {
    let grant = authenticate(state, headers)?;
    if !grant.scopes.allows(resource_type, permission) {
        let letter = match permission {
            Permission::Create => "c",
            Permission::Read => "r",
            Permission::Update => "u",
            Permission::Delete => "d",
            Permission::Search => "s",
        };
        let context = if grant.user.is_some() {
            "patient"
        } else {
            "system"
        };
        let needed = format!("{context}/{resource_type}.{letter}");
        return Err(FhirError::insufficient_scope(
            format!(
                "the access token's scopes ({}) do not allow this request: it needs {needed}",
                grant.scopes
            ),
            &needed,
        ));
    }
    Ok(grant)
}

/// Types that belong to no patient and that patient-context tokens may read and search
/// whole: the directory (who and where) and medication definitions.
const SHARED_TYPES: [&str; 8] = [
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "HealthcareService",
    "Endpoint",
    "Substance",
];

/// Which resources of a type a token reaches with a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every resource (system scopes; a clinician's user scopes; shared types).
    All,
    /// Only the compartment of this patient (patient scopes; a patient user's user scopes).
    Patient(String),
    /// None: the scopes do not cover the type, or it is in no patient's compartment.
    Nothing,
}

/// What `grant` reaches of `resource_type` with `permission`: the widest of its scopes.
pub(crate) fn reach(grant: &Grant, resource_type: &str, permission: Permission) -> Reach {
    let mut reach = Reach::Nothing;
    for context in grant.scopes.contexts_allowing(resource_type, permission) {
        let user = grant.user.as_deref();
        let this = match context {
            ScopeContext::System => Reach::All,
            ScopeContext::User => match user.and_then(|u| u.user_patient.clone()) {
                Some(patient) => Reach::Patient(patient),
                None => Reach::All,
            },
            ScopeContext::Patient => match user.and_then(|u| u.patient.clone()) {
                Some(patient) => Reach::Patient(patient),
                None => continue,
            },
        };
        if this == Reach::All {
            return Reach::All;
        }
        reach = this;
    }
    match reach {
        Reach::Patient(_) if SHARED_TYPES.contains(&resource_type) => Reach::All,
        Reach::Patient(_)
            if resource_type != "Patient"
                && crate::search::registry::schema(resource_type)
                    .patient_slot
                    .is_none() =>
        {
            Reach::Nothing
        }
        other => other,
    }
}

/// Whether `grant` may read `resource`: patient-context tokens see one compartment.
pub(crate) fn can_see(state: &AppState, grant: &Grant, resource: &StoredResource) -> bool {
    match reach(grant, resource.resource_type(), Permission::Read) {
        Reach::All => true,
        Reach::Patient(patient) => state.store.refers_to_patient(resource, &patient),
        Reach::Nothing => false,
    }
}

fn outside_compartment(reference: &str, grant: &Grant) -> FhirError {
    let patient = grant
        .user
        .as_deref()
        .and_then(|u| u.patient.as_deref().or(u.user_patient.as_deref()))
        .unwrap_or("");
    FhirError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "{reference} is outside the record of patient {patient}, the only one this access token reaches"
        ),
    )
    .with_epic_code(crate::outcome::EPIC_NOT_AUTHORIZED, "User not authorized for request.")
}

/// The `_format` values that ask for JSON (compared without regard to case).
pub(crate) const JSON_FORMATS: [&str; 4] = [
    "json",
    "application/json",
    "application/fhir+json",
    "application/json+fhir",
];
/// The `Accept` media ranges that allow a JSON answer (compared without regard to case).
pub(crate) const JSON_MEDIA_RANGES: [&str; 6] = [
    "*/*",
    "application/*",
    "application/json",
    "application/fhir+json",
    "application/json+fhir",
    "application/fhir+ndjson",
];

/// Resources are JSON only: an `Accept` (or `_format`) that allows no JSON media type is
/// answered 406, and so, with Epic's rules, is a request without `Accept` or with only `*/*`,
/// which Epic answers in XML (the sandbox writes XML only for its CapabilityStatement and
/// OperationOutcomes; this refusal is one of those, and is written in XML).
pub(crate) fn check_accept(
    headers: &HeaderMap,
    format: Option<&str>,
    epic_rules: bool,
) -> Result<()> {
    match super::errors::wanted(headers, format) {
        Wanted::Json => Ok(()),
        Wanted::DefaultXml if !epic_rules => Ok(()),
        Wanted::DefaultXml => Err(not_acceptable(
            "the request has no Accept header (or only */*), which Epic answers in XML; this sandbox writes resources as JSON only: send Accept: application/fhir+json (or _format=json)",
        )),
        Wanted::ExplicitXml => Err(not_acceptable(
            "XML is written only for the CapabilityStatement and OperationOutcomes; resources are served as JSON: send Accept: application/fhir+json",
        )),
        Wanted::Other => Err(not_acceptable(&match format {
            Some(format) => {
                format!("_format {format} is not supported: this server answers JSON only")
            }
            None => format!(
                "Accept `{}` allows no JSON media type: this server answers application/fhir+json only",
                headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
            ),
        })),
    }
}

fn not_acceptable(message: &str) -> FhirError {
    FhirError::new(StatusCode::NOT_ACCEPTABLE, "not-supported", message)
}

fn check_type(resource_type: &str) -> Result<()> {
    if is_valid_type_name(resource_type) {
        Ok(())
    } else {
        Err(FhirError::not_found(format!(
            "`{resource_type}` is not a resource type"
        )))
    }
}

/// Checks that the server knows `resource_type`: it can search it (the registry describes it)
/// or holds resources of it. These are exactly the types the CapabilityStatement lists, so a
/// read or search of any other type is a 404 rather than an empty result. Create and update
/// only check the name, so a client can store a type the server has not held before.
fn check_known_type(state: &AppState, resource_type: &str) -> Result<()> {
    check_type(resource_type)?;
    let known = search::described_types().any(|t| t == resource_type)
        || state.store.count(resource_type) > 0;
    if known {
        Ok(())
    } else {
        Err(FhirError::not_found(format!(
            "`{resource_type}` is not a resource type this server supports (see its metadata)"
        )))
    }
}

fn resource_response(
    status: StatusCode,
    resource: &StoredResource,
    location: Option<String>,
) -> Response {
    let mut response = fhir_json(status, resource.json().clone());
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", resource.version())) {
        headers.insert(header::ETAG, etag);
    }
    let last_modified =
        httpdate::fmt_http_date(std::time::SystemTime::from(resource.last_updated()));
    if let Ok(value) = HeaderValue::from_str(&last_modified) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// Decoded query (or form) pairs, borrowing from the request wherever nothing needed decoding.
type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

fn query_pairs(uri: &Uri) -> Pairs<'_> {
    uri.query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).collect())
        .unwrap_or_default()
}

/// The `_format` parameter of the query string, found without decoding the other parameters.
pub(crate) fn format_param(uri: &Uri) -> Option<Cow<'_, str>> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v)
}

/// The checks every interaction on `resource_type` makes first, in this order: the type
/// (one the server knows, for reads and searches; only a well-formed name, for writes), the
/// bearer token and its scopes, then the requested format (`_format`, else `Accept`).
fn admit(
    state: &AppState,
    headers: &HeaderMap,
    resource_type: &str,
    permission: Permission,
    format: Option<&str>,
) -> Result<Arc<Grant>> {
    state.stats.fhir_requests.fetch_add(1, Ordering::Relaxed);
    match permission {
        Permission::Read | Permission::Search => check_known_type(state, resource_type)?,
        Permission::Create | Permission::Update | Permission::Delete => check_type(resource_type)?,
    }
    let grant = authorize(state, headers, resource_type, permission)?;
    check_accept(headers, format, state.epic_rules)?;
    Ok(grant)
}

/// `GET [base]/[type]/[id]`.
pub(crate) async fn read(
    State(state): State<Arc<AppState>>,
    Path((resource_type, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let grant = admit(
        &state,
        &headers,
        &resource_type,
        Permission::Read,
        format_param(&uri).as_deref(),
    )?;
    let resource = state.store.read(&resource_type, &id).ok_or_else(|| {
        FhirError::not_found(format!("{resource_type}/{id} is not known")).with_expression("id")
    })?;
    if !can_see(&state, &grant, &resource) {
        return Err(outside_compartment(&resource.reference(), &grant));
    }
    Ok(resource_response(StatusCode::OK, &resource, None))
}

/// `GET [base]/[type]/[id]/_history/[vid]`.
pub(crate) async fn vread(
    State(state): State<Arc<AppState>>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    let grant = admit(
        &state,
        &headers,
        &resource_type,
        Permission::Read,
        format_param(&uri).as_deref(),
    )?;
    let version: u64 = version
        .parse()
        .map_err(|_| FhirError::bad_request(format!("version `{version}` is not a number")))?;
    let resource = state
        .store
        .vread(&resource_type, &id, version)
        .ok_or_else(|| {
            FhirError::not_found(format!(
                "{resource_type}/{id}/_history/{version} is not known"
            ))
        })?;
    if !can_see(&state, &grant, &resource) {
        return Err(outside_compartment(&resource.reference(), &grant));
    }
    Ok(resource_response(StatusCode::OK, &resource, None))
}

fn search_error(error: &SearchError) -> FhirError {
    let mut fhir = FhirError::bad_request(error.message().to_owned())
        .with_expression(error.param().to_owned());
    if let Some(code) = error.epic_code() {
        // Epic answers a missing required parameter with a fatal issue of code `required`.
        let display = match code {
            search::REQUIRED_PARAMETER_MISSING => "Required search parameter missing from request.",
            search::NO_SEARCH_PARAMETERS => "No parameters are provided in the search request.",
            _ => "Invalid search.",
        };
        fhir = fhir.with_epic_code(code, display);
        fhir.issue.code = "required";
        fhir = fhir.with_severity("fatal");
    }
    fhir
}

/// `GET [base]/[type]?...`: a new search, or the next page of one (`sessionID`).
///
/// The self link is the base URL, the type and the query as received: inside the router nested
/// under the FHIR base, `uri` has lost the base path.
pub(crate) async fn search_get(
    State(state): State<Arc<AppState>>,
    Path(resource_type): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    off_runtime(move || {
        let pairs = query_pairs(&uri);
        let self_link = match uri.query() {
            Some(query) => format!("{}/{resource_type}?{query}", state.base_url),
            None => format!("{}/{resource_type}", state.base_url),
        };
        run_search(&state, &resource_type, &headers, pairs, self_link)
    })
    .await
}

/// `POST [base]/[type]/_search` with a form body.
pub(crate) async fn search_post(
    State(state): State<Arc<AppState>>,
    Path(resource_type): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "POST _search takes an application/x-www-form-urlencoded body",
        ));
    }
    off_runtime(move || {
        let mut pairs = query_pairs(&uri);
        pairs.extend(url::form_urlencoded::parse(&body));
        let self_link = format!(
            "{}{}/{}?{}",
            state.origin,
            crate::config::FHIR_BASE_PATH,
            resource_type,
            encode_pairs(&pairs)
        );
        run_search(&state, &resource_type, &headers, pairs, self_link)
    })
    .await
}

/// Runs a search on tokio's blocking pool: evaluating a search over a large store, sorting its
/// matches and writing a page of a thousand entries takes CPU time that must not hold one of
/// the runtime's few worker threads (the other requests would wait behind it).
async fn off_runtime(work: impl FnOnce() -> Result<Response> + Send + 'static) -> Result<Response> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| {
            Err(FhirError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                format!("the search failed: {error}"),
            ))
        })
}

fn encode_pairs(pairs: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn run_search(
    state: &AppState,
    resource_type: &str,
    headers: &HeaderMap,
    mut pairs: Pairs<'_>,
    self_link: String,
) -> Result<Response> {
    let format = pairs
        .iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.as_ref());
    let grant = admit(state, headers, resource_type, Permission::Search, format)?;
    if pairs.len() > state.max_search_params {
        return Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "too-costly",
            format!(
                "the search carries {} parameters: this server accepts at most {} per request",
                pairs.len(),
                state.max_search_params
            ),
        ));
    }
    if let Some((_, session_id)) = pairs.iter().find(|(k, _)| k == "sessionID") {
        return next_page(state, resource_type, &grant, session_id, &self_link);
    }
    // A patient-context token searches one compartment: the search is ANDed with the
    // patient (whatever else it names, a match must be in the compartment).
    match reach(&grant, resource_type, Permission::Search) {
        Reach::All => {}
        Reach::Patient(patient) => {
            let name = if resource_type == "Patient" {
                "_id"
            } else {
                "patient"
            };
            pairs.push((Cow::Borrowed(name), Cow::Owned(patient)));
        }
        Reach::Nothing => {
            return Err(FhirError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{resource_type} is in no patient's compartment: a patient-context access token cannot search it"
                ),
            )
            .with_epic_code(crate::outcome::EPIC_NOT_AUTHORIZED, "User not authorized for request."));
        }
    }
    let mut query = search::parse(resource_type, &pairs).map_err(|e| search_error(&e))?;
    if state.epic_rules {
        search::apply_epic_rules(&mut query).map_err(|e| search_error(&e))?;
    }
    let matches = state.store.search(&query);
    let page_size = query
        .count()
        .unwrap_or(state.default_page_size)
        .clamp(1, crate::config::MAX_PAGE_SIZE);
    let warnings = query.warnings();
    let listed = warnings.len().min(state.max_outcome_warnings);
    let mut outcomes: Vec<Issue> = warnings[..listed]
        .iter()
        .map(|w| {
            Issue::epic_warning(
                EPIC_PARAMETER_IGNORED,
                "Parameter ignored.",
                w.message().to_owned(),
                Some(w.param().to_owned()),
            )
        })
        .collect();
    if warnings.len() > listed {
        outcomes.push(Issue::epic_warning(
            EPIC_PARAMETER_IGNORED,
            "Parameter ignored.",
            format!(
                "{} more parameters were ignored and are not listed (at most {} warnings per response)",
                warnings.len() - listed,
                state.max_outcome_warnings
            ),
            None,
        ));
    }
    if matches.is_empty() {
        outcomes.push(Issue::epic_warning(
            EPIC_NO_RESULTS,
            "Resource request returns no results.",
            "Resource request returns no results.".to_owned(),
            None,
        ));
    }
    let total = matches.len();
    if total <= page_size {
        let included = included(state, &query, &matches, &grant);
        let body = render(&Page {
            base_url: &state.base_url,
            query: &query,
            total,
            matches: &matches,
            included: &included,
            outcomes: &outcomes,
            self_link: &self_link,
            next_link: None,
        });
        return Ok(fhir_json(StatusCode::OK, body.into()));
    }
    let (session_id, session) = state
        .sessions
        .create(&grant.owner(), query, matches, page_size);
    let page = session.page(0);
    let included = included(state, &session.query, page, &grant);
    let next = next_link(state, resource_type, &session_id, 1);
    let body = render(&Page {
        base_url: &state.base_url,
        query: &session.query,
        total,
        matches: page,
        included: &included,
        outcomes: &outcomes,
        self_link: &self_link,
        next_link: Some(&next),
    });
    Ok(fhir_json(StatusCode::OK, body.into()))
}

fn next_link(state: &AppState, resource_type: &str, session_id: &str, page: usize) -> String {
    format!(
        "{}/{resource_type}?sessionID={session_id}-{page}",
        state.base_url
    )
}

/// Included resources of a page, limited to what the token may read (for a patient-context
/// token: the patient's compartment and shared types, so an include cannot leak another
/// patient's data).
fn included(
    state: &AppState,
    query: &ParsedSearch,
    page: &[Arc<StoredResource>],
    grant: &Grant,
) -> Vec<Arc<StoredResource>> {
    if query.includes().is_empty() && query.revincludes().is_empty() {
        return Vec::new();
    }
    state
        .store
        .includes(query, page)
        .into_iter()
        .filter(|r| can_see(state, grant, r))
        .collect()
}

fn next_page(
    state: &AppState,
    resource_type: &str,
    grant: &Grant,
    session_value: &str,
    self_link: &str,
) -> Result<Response> {
    let (session, page_index) = state
        .sessions
        .resolve(session_value, &grant.owner())
        .map_err(|problem| match problem {
            SessionProblem::Malformed => FhirError::bad_request(format!(
                "sessionID `{session_value}` is not one this server issued"
            ))
            .with_expression("sessionID"),
            SessionProblem::NoSuchPage => {
                FhirError::bad_request(format!("sessionID `{session_value}` is past the last page"))
                    .with_expression("sessionID")
            }
            SessionProblem::Expired => FhirError::new(
                StatusCode::BAD_REQUEST,
                "expired",
                "the search session has expired: run the search again",
            )
            .with_epic_code(EPIC_SESSION_EXPIRED, "The search session has expired.")
            .with_expression("sessionID"),
        })?;
    if session.query.resource_type() != resource_type {
        return Err(FhirError::bad_request(format!(
            "sessionID `{session_value}` belongs to a {} search",
            session.query.resource_type()
        )));
    }
    let page = session.page(page_index);
    let included = included(state, &session.query, page, grant);
    let next = (page_index + 1 < session.pages()).then(|| {
        next_link(
            state,
            resource_type,
            session_value.rsplit_once('-').map_or("", |(id, _)| id),
            page_index + 1,
        )
    });
    let body = render(&Page {
        base_url: &state.base_url,
        query: &session.query,
        total: session.matches.len(),
        matches: page,
        included: &included,
        outcomes: &[],
        self_link,
        next_link: next.as_deref(),
    });
    Ok(fhir_json(StatusCode::OK, body.into()))
}

fn parse_body(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| {
        FhirError::bad_request(format!("the body is not valid JSON: {e}")).with_expression("body")
    })
}

fn store_error(error: StoreError) -> FhirError {
    match error {
        StoreError::VersionConflict { .. } => FhirError::new(
            StatusCode::PRECONDITION_FAILED,
            "conflict",
            error.to_string(),
        ),
        other => FhirError::bad_request(other.to_string()),
    }
}

/// `POST [base]/[type]`: create with a server-assigned id.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    Path(resource_type): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    admit(
        &state,
        &headers,
        &resource_type,
        Permission::Create,
        format_param(&uri).as_deref(),
    )?;
    let resource = parse_body(&body)?;
    let outcome = state
        .store
        .create(&resource_type, resource)
        .map_err(store_error)?;
    Ok(written_response(
        &state,
        StatusCode::CREATED,
        &outcome.resource,
    ))
}

/// The response to a create or update: the stored version, with its `Location`.
fn written_response(state: &AppState, status: StatusCode, stored: &StoredResource) -> Response {
    let location = format!(
        "{}/{}/{}/_history/{}",
        state.base_url,
        stored.resource_type(),
        stored.id(),
        stored.version()
    );
    resource_response(status, stored, Some(location))
}

/// `PUT [base]/[type]/[id]`: update (or create with a client-chosen id), honouring `If-Match`.
pub(crate) async fn update(
    State(state): State<Arc<AppState>>,
    Path((resource_type, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    admit(
        &state,
        &headers,
        &resource_type,
        Permission::Update,
        format_param(&uri).as_deref(),
    )?;
    let if_match = match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(value) => {
            let version = value.trim().trim_start_matches("W/").trim_matches('"');
            Some(version.parse::<u64>().map_err(|_| {
                FhirError::bad_request(format!(
                    "If-Match `{value}` is not a version ETag such as W/\"3\""
                ))
                .with_expression("If-Match")
            })?)
        }
    };
    let resource = parse_body(&body)?;
    let outcome = state
        .store
        .update(&resource_type, &id, resource, if_match)
        .map_err(store_error)?;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written_response(&state, status, &outcome.resource))
}

/// Anything else under the FHIR base.
pub(crate) async fn unknown_route(uri: Uri) -> Response {
    FhirError::not_found(format!("{} is not an endpoint of this server", uri.path()))
        .into_response()
}
