//! The `$export` kick-off: header and parameter checks, the exported population and types,
//! the snapshot, and the 202 answer with the status URL.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::job::{self, Job, Work};
use super::{BulkState, bearer_grant};
use crate::auth::Permission;
use crate::config::FHIR_BASE_PATH;
use crate::outcome::{FHIR_JSON, FhirError, Issue, operation_outcome};
use crate::search::reference::split_reference;
use crate::search::registry::schema;
use crate::search::{self, ParsedSearch, described_types};
use crate::server::AppState;
use crate::store::{ExportPopulation, Store, is_valid_type_name};

type Result<T, E = FhirError> = std::result::Result<T, E>;

/// The `_outputFormat` values STU2 requires a server to accept, all meaning NDJSON.
const OUTPUT_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];
/// Kick-off parameters defined by the Bulk Data IG (STU2 and later) that this server does not
/// implement: refused by name rather than ignored, so a client never gets a broader export
/// than it asked for.
const UNSUPPORTED_PARAMS: [&str; 7] = [
    "_elements",
    "includeAssociatedData",
    "patient",
    "_until",
    "organizeOutputBy",
    "allowPartialManifests",
    "_format",
];

/// Which population an export covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    /// `[base]/$export`: every resource.
    System,
    /// `[base]/Patient/$export`: every patient's compartment.
    Patient,
    /// `[base]/Group/{id}/$export`: the compartments of the Group's members.
    Group(String),
}

impl Level {
    fn describe(&self) -> String {
        match self {
            Level::System => "system-level export".to_owned(),
            Level::Patient => "Patient-level export".to_owned(),
            Level::Group(_) => "Group export".to_owned(),
        }
    }
}

/// The validated kick-off parameters.
#[derive(Debug, Default)]
pub(super) struct ExportParams {
    /// `_type`, in request order without repeats; `None` when absent.
    pub(super) types: Option<Vec<String>>,
    /// `_since`.
    pub(super) since: Option<OffsetDateTime>,
    /// `_typeFilter` queries, in request order.
    pub(super) filters: Vec<ParsedSearch>,
}

/// `GET [base]/$export`.
pub(super) async fn system(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    kick_off(&state, Level::System, &uri, &headers)
}

/// `GET [base]/{type}/$export`: only `Patient` has a type-level export.
pub(super) async fn patient(
    State(state): State<Arc<AppState>>,
    Path(resource_type): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    if resource_type != "Patient" {
        state.stats.fhir_requests.fetch_add(1, Ordering::Relaxed);
        return Err(FhirError::not_found(format!(
            "{resource_type}/$export is not an operation of this server: bulk export is served at Group/[id]/$export, Patient/$export and $export"
        )));
    }
    kick_off(&state, Level::Patient, &uri, &headers)
}

/// `GET [base]/{type}/{id}/$export`: only `Group` has an instance-level export.
pub(super) async fn group(
    State(state): State<Arc<AppState>>,
    Path((resource_type, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response> {
    if resource_type != "Group" {
        state.stats.fhir_requests.fetch_add(1, Ordering::Relaxed);
        return Err(FhirError::not_found(format!(
            "{resource_type}/{id}/$export is not an operation of this server: bulk export is served at Group/[id]/$export, Patient/$export and $export"
        )));
    }
    kick_off(&state, Level::Group(id), &uri, &headers)
}

fn kick_off(
    state: &Arc<AppState>,
    level: Level,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response> {
    state.stats.fhir_requests.fetch_add(1, Ordering::Relaxed);
    let bulk: &BulkState = &state.bulk;
    match level {
        Level::System if bulk.config().disable_system_export => {
            return Err(FhirError::not_found(
                "system-level $export is not supported by this server (as on Epic): export a Group with Group/[id]/$export",
            ));
        }
        Level::Patient if bulk.config().disable_patient_export => {
            return Err(FhirError::not_found(
                "Patient/$export is not supported by this server (as on Epic): export a Group with Group/[id]/$export",
            ));
        }
        _ => {}
    }
    // The Bulk Data IG asks for scopes covering the exported types and nothing about the
    // Group itself; Epic does not ask for a Group scope either. So none is required here.
    let grant = bearer_grant(state, headers)?;
    check_accept(headers)?;
    check_prefer(headers)?;

    let pairs: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if pairs.len() > state.max_search_params {
        return Err(FhirError::bad_request(format!(
            "the kick-off carries {} parameters: this server accepts at most {}",
            pairs.len(),
            state.max_search_params
        )));
    }
    if state.epic_rules
        && let Some((key, _)) = pairs.iter().find(|(k, _)| k == "_since")
    {
        return Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "`_since` is not supported by this server (as on Epic, whose bulk export has no `_since`): export everything and compare, or start the sandbox with --no-epic-rules",
        )
        .with_expression(key.clone()));
    }
    bulk.precheck(&grant.client_id)?;
    let held = state.store.types();
    let mut known: HashSet<String> = held.iter().cloned().collect();
    known.extend(described_types().map(str::to_owned));
    let params = parse_params(&pairs, &known, OffsetDateTime::now_utc())?;

    let mut notes: Vec<Issue> = Vec::new();
    let members = match &level {
        Level::Group(id) => group_patients(&state.store, id, &mut notes)?,
        Level::System | Level::Patient => Vec::new(),
    };
    let population = match &level {
        Level::System => ExportPopulation::Everything,
        Level::Patient => ExportPopulation::AllPatients,
        Level::Group(_) => ExportPopulation::Patients(&members),
    };
    let compartment_only = !matches!(population, ExportPopulation::Everything);

    // The candidate types: those requested, or every type held that the level can export.
    let explicit = params.types.is_some();
    let candidates: Vec<String> = params.types.unwrap_or_else(|| {
        held.into_iter()
            .filter(|t| !compartment_only || in_patient_compartment(t))
            .collect()
    });
    for filter in &params.filters {
        if !candidates.iter().any(|t| t == filter.resource_type()) {
            let reason = if explicit {
                "is not listed in _type".to_owned()
            } else {
                format!(
                    "is not exported by a {} (it is outside the patient compartment)",
                    level.describe()
                )
            };
            return Err(FhirError::bad_request(format!(
                "_typeFilter names {} which {reason}: a filter can only narrow a type the export includes",
                filter.resource_type()
            ))
            .with_expression("_typeFilter"));
        }
    }
    if compartment_only && explicit && !candidates.iter().any(|t| in_patient_compartment(t)) {
        return Err(FhirError::bad_request(format!(
            "_type lists only types outside the patient compartment ({}): a {} holds only Patient and resources that refer to a patient",
            candidates.join(", "),
            level.describe()
        ))
        .with_expression("_type"));
    }
    let mut exported: BTreeSet<String> = BTreeSet::new();
    let mut denied: Vec<&str> = Vec::new();
    for resource_type in &candidates {
        if compartment_only && !in_patient_compartment(resource_type) {
            notes.push(note(
                "information",
                "informational",
                format!(
                    "{resource_type} is outside the patient compartment: a {} holds none",
                    level.describe()
                ),
            ));
        } else if grant.scopes.allows(resource_type, Permission::Read) {
            exported.insert(resource_type.clone());
        } else {
            denied.push(resource_type);
        }
    }
    if exported.is_empty()
        && let Some(first) = denied.first()
    {
        return Err(FhirError::insufficient_scope(
            format!(
                "the access token's scopes ({}) allow reading none of the types to export ({}): it needs e.g. system/{first}.read",
                grant.scopes,
                denied.join(", ")
            ),
            &format!("system/{first}.read"),
        ));
    }
    for resource_type in &denied {
        notes.push(note(
            "error",
            "forbidden",
            format!(
                "the access token's scopes ({}) do not allow reading {resource_type}: it was left out of the export (it needs system/{resource_type}.read)",
                grant.scopes
            ),
        ));
    }

    if let Level::Group(id) = &level {
        bulk.claim_window(&grant.client_id, id)?;
    }

    // The snapshot: every candidate resource as of `transactionTime`, taken under one lock.
    // Stored versions never change, so holding their `Arc`s freezes the export.
    let snapshot = state
        .store
        .export_snapshot(population, exported.iter().map(String::as_str));
    let mut filters: HashMap<String, Vec<ParsedSearch>> = HashMap::new();
    for filter in params.filters {
        filters
            .entry(filter.resource_type().to_owned())
            .or_default()
            .push(filter);
    }
    let id = job::new_id().map_err(|message| {
        FhirError::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", message)
    })?;
    let request = request_url(state, uri);
    let group = match &level {
        Level::Group(id) => Some(id.clone()),
        Level::System | Level::Patient => None,
    };
    let job = Arc::new(Job::new(
        id,
        grant.client_id.clone(),
        group.clone(),
        request,
        snapshot.transaction_time,
        &snapshot.resources,
    ));
    if let Err(error) = bulk.insert(Arc::clone(&job)) {
        if let Some(group) = &group {
            bulk.release_window(&grant.client_id, group);
        }
        return Err(error);
    }
    let work = Work {
        snapshot: snapshot.resources,
        filters,
        since: params.since,
        notes,
        base_url: state.base_url.clone(),
        max_resources_per_file: bulk.config().max_resources_per_file,
        pace: bulk.config().pace_resources_per_second,
    };
    tracing::debug!(target: "epic_fhir_sandbox::bulk", job = job.id(), client = %grant.client_id, total = job.total(), "export started");
    tokio::spawn(job::run(Arc::clone(&job), Arc::clone(&state.store), work));

    let status_url = format!("{}/$export-status/{}", state.base_url, job.id());
    let body = operation_outcome(&[note(
        "information",
        "informational",
        format!("export job {} accepted: poll {status_url}", job.id()),
    )])
    .to_string();
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body,
    )
        .into_response();
    let location = HeaderValue::from_str(&status_url).map_err(|_| {
        FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the status URL is not a valid header value",
        )
    })?;
    response
        .headers_mut()
        .insert(header::CONTENT_LOCATION, location);
    Ok(response)
}

/// The kick-off URL as the client sent it, absolute, for the manifest's `request`.
fn request_url(state: &AppState, uri: &Uri) -> String {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path(), |p| p.as_str());
    // Inside the nested FHIR router the path arrives without the base path.
    if path_and_query.starts_with(FHIR_BASE_PATH) {
        format!("{}{path_and_query}", state.origin)
    } else {
        format!("{}{path_and_query}", state.base_url)
    }
}

/// An issue for the manifest's error file.
fn note(severity: &'static str, code: &'static str, diagnostics: String) -> Issue {
    Issue {
        severity,
        code,
        diagnostics,
        epic_code: None,
        expression: None,
    }
}

/// Patient and every type with a reference to a patient are in the patient compartment.
fn in_patient_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || schema(resource_type).patient_slot.is_some()
}

/// `Accept` must allow `application/fhir+json`, the only format of kick-off responses.
pub(super) fn check_accept(headers: &HeaderMap) -> Result<()> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Err(FhirError::bad_request(
            "the Accept header is missing: a $export kick-off needs Accept: application/fhir+json",
        )
        .with_expression("Accept"));
    }
    let allows = values.iter().flat_map(|v| v.split(',')).any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/fhir+json") && !refused
    });
    if allows {
        Ok(())
    } else {
        Err(FhirError::bad_request(format!(
            "Accept `{}` does not allow application/fhir+json, the only format of $export kick-off responses",
            values.join(", ")
        ))
        .with_expression("Accept"))
    }
}

/// `Prefer` must hold `respond-async`: the export is asynchronous only.
pub(super) fn check_prefer(headers: &HeaderMap) -> Result<()> {
    let values: Vec<&str> = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let asynchronous = values.iter().flat_map(|v| v.split(',')).any(|preference| {
        let name = preference
            .split([';', '='])
            .next()
            .unwrap_or_default()
            .trim();
        name.eq_ignore_ascii_case("respond-async")
    });
    if asynchronous {
        return Ok(());
    }
    let found = if values.is_empty() {
        "the Prefer header is missing".to_owned()
    } else {
        format!("Prefer is `{}`", values.join(", "))
    };
    Err(FhirError::bad_request(format!(
        "{found}: a $export kick-off needs Prefer: respond-async (this server answers bulk requests asynchronously only)"
    ))
    .with_expression("Prefer"))
}

/// Validates the kick-off parameters against the types the server knows.
pub(super) fn parse_params(
    pairs: &[(String, String)],
    known: &HashSet<String>,
    now: OffsetDateTime,
) -> Result<ExportParams> {
    let mut params = ExportParams::default();
    let mut output_format_seen = false;
    let mut since_seen = false;
    for (key, value) in pairs {
        match key.as_str() {
            "" if value.is_empty() => {}
            "_outputFormat" => {
                if std::mem::replace(&mut output_format_seen, true) {
                    return Err(
                        FhirError::bad_request("_outputFormat is given more than once")
                            .with_expression("_outputFormat"),
                    );
                }
                let format = value.trim();
                if !OUTPUT_FORMATS
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(format))
                {
                    return Err(FhirError::bad_request(format!(
                        "_outputFormat `{value}` is not supported: use application/fhir+ndjson, application/ndjson or ndjson"
                    ))
                    .with_expression("_outputFormat"));
                }
            }
            "_type" => {
                let types = params.types.get_or_insert_with(Vec::new);
                for name in value.split(',').map(str::trim) {
                    if name.is_empty() {
                        return Err(FhirError::bad_request(format!(
                            "_type `{value}` has an empty type name"
                        ))
                        .with_expression("_type"));
                    }
                    if !is_valid_type_name(name) || !known.contains(name) {
                        return Err(FhirError::bad_request(format!(
                            "_type names `{name}`, which is not a resource type this server holds or knows"
                        ))
                        .with_expression("_type"));
                    }
                    if !types.iter().any(|t| t == name) {
                        types.push(name.to_owned());
                    }
                }
            }
            "_since" => {
                if std::mem::replace(&mut since_seen, true) {
                    return Err(FhirError::bad_request("_since is given more than once")
                        .with_expression("_since"));
                }
                let since = parse_instant(value).map_err(|problem| {
                    FhirError::bad_request(format!("_since `{value}` {problem}"))
                        .with_expression("_since")
                })?;
                if since > now {
                    return Err(FhirError::bad_request(format!(
                        "_since `{value}` is in the future: it must be an instant at or before the server's current time"
                    ))
                    .with_expression("_since"));
                }
                params.since = Some(since);
            }
            "_typeFilter" => {
                for query in value.split(',') {
                    params.filters.push(parse_type_filter(query, known)?);
                }
            }
            other if UNSUPPORTED_PARAMS.contains(&other) => {
                return Err(FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!(
                        "the $export parameter `{other}` is not supported by this server: remove it"
                    ),
                )
                .with_expression(other.to_owned()));
            }
            other => {
                return Err(FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!(
                        "`{other}` is not a $export parameter this server supports (supported: _outputFormat, _type, _since, _typeFilter)"
                    ),
                )
                .with_expression(other.to_owned()));
            }
        }
    }
    Ok(params)
}

/// Parses a FHIR `instant`: a full date-time with seconds and a zone, e.g.
/// `2024-05-01T12:00:00Z` or `2024-05-01T12:00:00.5+02:00`. An unencoded `+` of the zone
/// arrives as a space after form decoding, so a space there is read as `+`.
pub(super) fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    let text = text.trim_start();
    let normalized = match text.rfind(' ') {
        Some(position) if position > 10 => {
            format!("{}+{}", &text[..position], &text[position + 1..])
        }
        _ => text.to_owned(),
    };
    let bytes = normalized.as_bytes();
    let shaped = bytes.len() >= 20
        && bytes.get(10) == Some(&b'T')
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':')
        && (bytes.ends_with(b"Z")
            || matches!(bytes.get(bytes.len().saturating_sub(6)), Some(b'+' | b'-')));
    if !shaped {
        return Err("is not a FHIR instant: give a full date-time with seconds and a zone, e.g. 2024-05-01T12:00:00Z".to_owned());
    }
    OffsetDateTime::parse(&normalized, &Rfc3339)
        .map_err(|e| format!("is not a valid FHIR instant ({e}), e.g. 2024-05-01T12:00:00Z"))
}

/// Parses one `_typeFilter` query, `Type?param=value&...`. Its parameters are search
/// parameters of the type; result controls (`_count`, `_sort`, `_include`...) mean nothing
/// in an export and unknown parameters would silently widen it, so both are refused.
pub(super) fn parse_type_filter(text: &str, known: &HashSet<String>) -> Result<ParsedSearch> {
    let error = |message: String| {
        FhirError::bad_request(format!("_typeFilter `{text}` {message}"))
            .with_expression("_typeFilter")
    };
    let Some((resource_type, query)) = text.trim().split_once('?') else {
        return Err(error(
            "is not a FHIR search query of the form Type?param=value (a comma inside a query must be encoded as %2C, since commas separate queries)".to_owned(),
        ));
    };
    if !is_valid_type_name(resource_type) || !known.contains(resource_type) {
        return Err(error(format!(
            "names `{resource_type}`, which is not a resource type this server holds or knows"
        )));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, v)| !(k.is_empty() && v.is_empty()))
        .collect();
    if pairs.is_empty() {
        return Err(error("has no search parameters".to_owned()));
    }
    let search = search::parse(resource_type, &pairs)
        .map_err(|e| error(format!("is invalid: {}", e.message())))?;
    if let Some(warning) = search.warnings().first() {
        return Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "not-supported",
            format!(
                "_typeFilter `{text}` uses `{}`, which this server cannot filter {resource_type} on: {}",
                warning.param(),
                warning.message()
            ),
        )
        .with_expression("_typeFilter"));
    }
    let controls = [
        ("_count", search.count().is_some()),
        ("_sort", !search.sort().is_empty()),
        ("_include", !search.includes().is_empty()),
        ("_revinclude", !search.revincludes().is_empty()),
        ("_elements", search.elements().is_some()),
        ("_summary", search.summary().is_some()),
        ("_total", search.total().is_some()),
        ("_format", search.format().is_some()),
        ("_pretty", search.pretty().is_some()),
        ("sessionID", search.session_id().is_some()),
    ];
    if let Some((name, _)) = controls.iter().find(|(_, present)| *present) {
        return Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "not-supported",
            format!("_typeFilter `{text}` uses `{name}`: only search parameters that select resources are allowed in a _typeFilter"),
        )
        .with_expression("_typeFilter"));
    }
    Ok(search)
}

/// The members of a Group that count: those not marked `inactive`.
pub(super) fn active_members(group: &Value) -> impl Iterator<Item = &Value> {
    group
        .get("member")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|member| member.get("inactive").and_then(Value::as_bool) != Some(true))
}

/// The ids of the patients a Group exports, in member order without repeats. Members that
/// are not patients of this server are reported in `notes`.
fn group_patients(store: &Store, id: &str, notes: &mut Vec<Issue>) -> Result<Vec<String>> {
    let group = store.read("Group", id).ok_or_else(|| {
        FhirError::not_found(format!("Group/{id} is not known")).with_expression("id")
    })?;
    let parsed: Value = serde_json::from_slice(group.json()).map_err(|e| {
        FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            format!("Group/{id} is stored as invalid JSON: {e}"),
        )
    })?;
    let mut patients: Vec<String> = Vec::new();
    let members = parsed
        .get("member")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (index, member) in members.iter().enumerate() {
        if member.get("inactive").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let reference = member.pointer("/entity/reference").and_then(Value::as_str);
        match reference.and_then(split_reference) {
            Some((Some("Patient"), patient)) => {
                if store.read("Patient", patient).is_none() {
                    notes.push(note(
                        "warning",
                        "not-found",
                        format!("Group/{id} member[{index}] refers to Patient/{patient}, which this server does not hold: it was skipped"),
                    ));
                } else if !patients.iter().any(|p| p == patient) {
                    patients.push(patient.to_owned());
                }
            }
            _ => notes.push(note(
                "warning",
                "not-supported",
                format!(
                    "Group/{id} member[{index}] ({}) is not a Patient reference: only patients' compartments are exported",
                    reference.unwrap_or("no entity reference")
                ),
            )),
        }
    }
    Ok(patients)
}
