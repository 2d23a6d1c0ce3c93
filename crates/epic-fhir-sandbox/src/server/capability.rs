//! `metadata` (the CapabilityStatement) and `.well-known/smart-configuration`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::AppState;
use crate::auth::ACCEPTED_ALGORITHMS;
use crate::search::{ParamKind, described_types, supported_params};

/// The Bulk Data IG's definitions of the three export operations.
const GROUP_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export";
const PATIENT_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export";
const SYSTEM_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export";

/// The version string of Epic's identity in `metadata`: Epic names its releases by month.
const EPIC_VERSION: &str = "November 2026";

/// The SMART `capabilities` extension URL (one per capability, on `rest.security`).
const CAPABILITIES_EXTENSION: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/capabilities";

/// The SMART `oauth-uris` extension URL.
const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// The SMART capabilities the sandbox implements, and nothing else: both launches, the three
/// kinds of client, patient and encounter context, refresh tokens, patient and user scopes
/// in v1 and v2 syntax, OpenID Connect, and the POST form of the authorization endpoint.
pub(crate) const SMART_CAPABILITIES: [&str; 16] = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
];

/// The SMART configuration document.
pub(crate) fn smart_configuration(state: &AppState) -> Value {
    json!({
        "issuer": state.base_url,
        "jwks_uri": state.jwks_url,
        "authorization_endpoint": state.authorize_url,
        "token_endpoint": state.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ACCEPTED_ALGORITHMS,
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "scopes_supported": [
            "openid", "fhirUser", "launch", "launch/patient", "launch/encounter",
            "offline_access", "online_access",
            "patient/*.read", "patient/*.rs", "user/*.read", "user/*.rs",
            "system/*.read", "system/*.rs", "system/*.write", "system/*.cud"
        ],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "capabilities": SMART_CAPABILITIES,
    })
}

/// The CapabilityStatement: every type the server holds or can search, with exactly the
/// interactions and search parameters it implements.
pub(crate) fn capability_statement(state: &AppState) -> Value {
    let mut types: BTreeSet<String> = state.store.types().into_iter().collect();
    types.extend(described_types().map(str::to_owned));
    let mut common =
        vec![json!({"name": "_id", "type": "token", "documentation": "The resource id."})];
    // Epic does not search by `_lastUpdated` (Epic-aware tools read its absence here and fall
    // back to creation dates), so with Epic's rules it is neither declared nor honoured.
    if !state.epic_rules {
        common.push(json!({"name": "_lastUpdated", "type": "date", "documentation": "When the resource version was stored."}));
    }
    let resources: Vec<Value> = types
        .iter()
        .map(|resource_type| {
            let params = supported_params(resource_type);
            let mut search_params: Vec<Value> = params
                .iter()
                .filter(|p| !(state.epic_rules && p.name() == "_lastUpdated"))
                .map(|p| json!({"name": p.name(), "type": p.kind().as_str(), "documentation": p.doc()}))
                .collect();
            for param in &common {
                if !params.iter().any(|p| Some(p.name()) == param["name"].as_str()) {
                    search_params.push(param.clone());
                }
            }
            let includes: Vec<String> = params
                .iter()
                .filter(|p| p.kind() == ParamKind::Reference)
                .map(|p| format!("{resource_type}:{}", p.name()))
                .collect();
            let mut resource = json!({
                "type": resource_type,
                "interaction": [
                    {"code": "read"}, {"code": "vread"}, {"code": "search-type"},
                    {"code": "create"}, {"code": "update"}
                ],
                "versioning": "versioned-update",
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "searchInclude": includes,
                "searchParam": search_params,
            });
            // Bulk export is declared only where it is served.
            let export = match resource_type.as_str() {
                "Group" => Some(GROUP_EXPORT),
                "Patient" if !state.bulk.config().disable_patient_export => Some(PATIENT_EXPORT),
                _ => None,
            };
            if let Some(definition) = export {
                resource["operation"] = json!([{"name": "export", "definition": definition}]);
            }
            resource
        })
        .collect();
    // With Epic's rules the server introduces itself as Epic does, since Epic-aware tools
    // recognise Epic by `software.name` (and then send Epic-Client-ID, crawl per patient,
    // skip what Epic lacks). That it is a sandbox is said where no tool looks for a vendor:
    // in `implementation.description`.
    let (software, publisher, description) = if state.epic_rules {
        (
            json!({"name": "Epic", "version": EPIC_VERSION}),
            Some("Epic"),
            format!(
                "Epic-compatible local sandbox (epic-fhir-sandbox {}): synthetic data only, not an Epic system",
                env!("CARGO_PKG_VERSION")
            ),
        )
    } else {
        (
            json!({"name": "epic-fhir-sandbox", "version": env!("CARGO_PKG_VERSION")}),
            None,
            "Local Epic-compatible FHIR R4 sandbox".to_owned(),
        )
    };
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-01",
        "kind": "instance",
        "software": software,
        "implementation": {"description": description, "url": state.base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "rest": [{
            "mode": "server",
            "security": {
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"
                }]}],
                "extension": [{
                    "url": OAUTH_URIS,
                    "extension": [
                        {"url": "authorize", "valueUri": state.authorize_url},
                        {"url": "token", "valueUri": state.token_url}
                    ]
                }]
            },
            "resource": resources,
            "searchParam": [
                {"name": "_count", "type": "number", "documentation": "Page size, at most 1000."},
                {"name": "_sort", "type": "string", "documentation": "Comma-separated sort keys; '-' for descending."},
                {"name": "_elements", "type": "string", "documentation": "Top-level elements to return."},
                {"name": "_summary", "type": "token", "documentation": "true, text, data or count."},
                {"name": "_total", "type": "token", "documentation": "none, estimate or accurate."}
            ],
        }]
    });
    // SMART's CapabilityStatement form of the capabilities list: one extension each.
    if let Some(extensions) = statement
        .pointer_mut("/rest/0/security/extension")
        .and_then(Value::as_array_mut)
    {
        extensions.extend(
            SMART_CAPABILITIES
                .iter()
                .map(|code| json!({"url": CAPABILITIES_EXTENSION, "valueCode": code})),
        );
    }
    if let Some(publisher) = publisher {
        statement["publisher"] = json!(publisher);
    }
    statement["instantiates"] =
        json!(["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]);
    if !state.bulk.config().disable_system_export {
        statement["rest"][0]["operation"] =
            json!([{"name": "export", "definition": SYSTEM_EXPORT}]);
    }
    statement
}
