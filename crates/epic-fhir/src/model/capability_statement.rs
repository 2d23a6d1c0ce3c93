//! The parts of CapabilityStatement (`GET [base]/metadata`) a client uses: versions, formats,
//! SMART OAuth endpoints and what each resource type supports.
//!
//! Servers differ widely in how complete their statements are, so every element is optional
//! here, even those FHIR requires; the rest of the statement is kept in `extra`.

use super::datatypes::non_empty;
use super::macros::fhir_struct;
use super::{CodeableConcept, DateTime, Extension};

/// The URL of the SMART extension that lists OAuth endpoints in `rest.security`.
pub const SMART_OAUTH_URIS_EXTENSION: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

fhir_struct! {
    /// CapabilityStatement.software: the server software.
    backbone struct CapabilityStatementSoftware {
        /// Name of the software.
        opt "name" name: String,
        /// Version of the software.
        opt "version" version: String,
        /// When this version was released.
        opt "releaseDate" release_date: DateTime,
    }
}

fhir_struct! {
    /// CapabilityStatement.implementation: the particular installation.
    backbone struct CapabilityStatementImplementation {
        /// Description of the installation.
        opt "description" description: String,
        /// Base URL of the installation.
        opt "url" url: String,
    }
}

fhir_struct! {
    /// CapabilityStatement.rest.security: how clients authenticate.
    backbone struct CapabilityStatementRestSecurity {
        /// Whether CORS headers are sent.
        opt "cors" cors: bool,
        /// Security services, such as `SMART-on-FHIR` or `OAuth`.
        vec "service" service: CodeableConcept,
        /// General description of the security.
        opt "description" description: String,
    }
}

/// The OAuth endpoints a server lists in the SMART `oauth-uris` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OAuthUris<'a> {
    /// The token endpoint.
    pub token: Option<&'a str>,
    /// The authorization endpoint.
    pub authorize: Option<&'a str>,
    /// The dynamic client registration endpoint.
    pub register: Option<&'a str>,
    /// The endpoint where users manage their authorizations.
    pub manage: Option<&'a str>,
    /// The token introspection endpoint.
    pub introspect: Option<&'a str>,
    /// The token revocation endpoint.
    pub revoke: Option<&'a str>,
}

impl CapabilityStatementRestSecurity {
    /// The OAuth endpoints from the SMART `oauth-uris` extension, if present.
    pub fn oauth_uris(&self) -> Option<OAuthUris<'_>> {
        let extension = Extension::find(&self.extension, SMART_OAUTH_URIS_EXTENSION)?;
        let endpoint = |name: &str| {
            extension
                .nested(name)
                .and_then(Extension::value_str)
                .and_then(|url| non_empty(Some(url)))
        };
        Some(OAuthUris {
            token: endpoint("token"),
            authorize: endpoint("authorize"),
            register: endpoint("register"),
            manage: endpoint("manage"),
            introspect: endpoint("introspect"),
            revoke: endpoint("revoke"),
        })
    }
}

fhir_struct! {
    /// An interaction (`read`, `search-type`...) the server supports.
    backbone struct CapabilityStatementInteraction {
        /// read | vread | update | patch | delete | history-instance | history-type | create |
        /// search-type (for resources); transaction | batch | search-system | history-system (for the system).
        opt "code" code: String,
        /// Notes about the interaction.
        opt "documentation" documentation: String,
    }
}

fhir_struct! {
    /// A search parameter the server supports.
    backbone struct CapabilityStatementSearchParam {
        /// The parameter name, such as `patient` or `category`.
        opt "name" name: String,
        /// The SearchParameter definition's canonical URL.
        opt "definition" definition: String,
        /// number | date | string | token | reference | composite | quantity | uri | special.
        opt "type" r#type: String,
        /// Server-specific usage notes.
        opt "documentation" documentation: String,
    }
}

fhir_struct! {
    /// An operation (`$export`, `$everything`...) the server supports.
    backbone struct CapabilityStatementOperation {
        /// The name used in URLs, without the `$`.
        opt "name" name: String,
        /// The OperationDefinition's canonical URL.
        opt "definition" definition: String,
        /// Notes about the operation.
        opt "documentation" documentation: String,
    }
}

fhir_struct! {
    /// CapabilityStatement.rest.resource: what the server supports for one resource type.
    backbone struct CapabilityStatementRestResource {
        /// The resource type, such as `Observation`.
        opt "type" r#type: String,
        /// Base profile of the resources.
        opt "profile" profile: String,
        /// Profiles the server supports; `None` for JSON `null` entries.
        vec "supportedProfile" supported_profile: Option<String>,
        /// Notes about the resource type.
        opt "documentation" documentation: String,
        /// The interactions supported.
        vec "interaction" interaction: CapabilityStatementInteraction,
        /// no-version | versioned | versioned-update.
        opt "versioning" versioning: String,
        /// Whether vRead can return past versions.
        opt "readHistory" read_history: bool,
        /// Whether update can create a resource at a client-chosen id.
        opt "updateCreate" update_create: bool,
        /// Whether conditional create is supported.
        opt "conditionalCreate" conditional_create: bool,
        /// not-supported | modified-since | not-match | full-support.
        opt "conditionalRead" conditional_read: String,
        /// Whether conditional update is supported.
        opt "conditionalUpdate" conditional_update: bool,
        /// not-supported | single | multiple.
        opt "conditionalDelete" conditional_delete: String,
        /// Kinds of references supported; `None` for JSON `null` entries.
        vec "referencePolicy" reference_policy: Option<String>,
        /// `_include` values supported; `None` for JSON `null` entries.
        vec "searchInclude" search_include: Option<String>,
        /// `_revinclude` values supported; `None` for JSON `null` entries.
        vec "searchRevInclude" search_rev_include: Option<String>,
        /// Search parameters supported.
        vec "searchParam" search_param: CapabilityStatementSearchParam,
        /// Operations supported on this type.
        vec "operation" operation: CapabilityStatementOperation,
    }
}

impl CapabilityStatementRestResource {
    /// Whether the interaction `code` (such as `read` or `search-type`) is listed.
    pub fn supports_interaction(&self, code: &str) -> bool {
        self.interaction
            .iter()
            .any(|interaction| interaction.code.as_deref() == Some(code))
    }

    /// The search parameter `name`, if listed.
    pub fn search_param(&self, name: &str) -> Option<&CapabilityStatementSearchParam> {
        self.search_param
            .iter()
            .find(|parameter| parameter.name.as_deref() == Some(name))
    }
}

fhir_struct! {
    /// CapabilityStatement.rest: the server's (or client's) RESTful capabilities.
    backbone struct CapabilityStatementRest {
        /// client | server.
        opt "mode" mode: String,
        /// General description.
        opt "documentation" documentation: String,
        /// How clients authenticate, with the SMART OAuth endpoints.
        opt "security" security: CapabilityStatementRestSecurity,
        /// Per resource type capabilities.
        vec "resource" resource: CapabilityStatementRestResource,
        /// System-level interactions, such as `transaction`.
        vec "interaction" interaction: CapabilityStatementInteraction,
        /// Search parameters for searches across all types.
        vec "searchParam" search_param: CapabilityStatementSearchParam,
        /// System-level operations.
        vec "operation" operation: CapabilityStatementOperation,
        /// Compartments supported (canonical URLs); `None` for JSON `null` entries.
        vec "compartment" compartment: Option<String>,
    }
}

impl CapabilityStatementRest {
    /// The capabilities for `resource_type`, if listed.
    pub fn resource(&self, resource_type: &str) -> Option<&CapabilityStatementRestResource> {
        self.resource
            .iter()
            .find(|resource| resource.r#type.as_deref() == Some(resource_type))
    }
}

fhir_struct! {
    /// A CapabilityStatement: what a FHIR server supports, as served at `[base]/metadata`.
    domain_resource struct CapabilityStatement("CapabilityStatement") {
        /// Canonical URL of the statement.
        opt "url" url: String,
        /// Business version of the statement.
        opt "version" version: String,
        /// Computer-friendly name.
        opt "name" name: String,
        /// Human-friendly name.
        opt "title" title: String,
        /// draft | active | retired | unknown.
        opt "status" status: String,
        /// For testing purposes only.
        opt "experimental" experimental: bool,
        /// When the statement was last changed.
        opt "date" date: DateTime,
        /// Publisher name.
        opt "publisher" publisher: String,
        /// Description.
        opt "description" description: String,
        /// instance | capability | requirements.
        opt "kind" kind: String,
        /// The server software.
        opt "software" software: CapabilityStatementSoftware,
        /// The particular installation.
        opt "implementation" implementation: CapabilityStatementImplementation,
        /// FHIR version, such as `4.0.1`.
        opt "fhirVersion" fhir_version: String,
        /// Formats supported, such as `json` or `application/fhir+json`; `None` for JSON `null` entries.
        vec "format" format: Option<String>,
        /// Patch formats supported; `None` for JSON `null` entries.
        vec "patchFormat" patch_format: Option<String>,
        /// RESTful capabilities.
        vec "rest" rest: CapabilityStatementRest,
    }
}

impl CapabilityStatement {
    /// The server-side RESTful capabilities: the `rest` entry in mode `server`, else the first.
    pub fn server_rest(&self) -> Option<&CapabilityStatementRest> {
        self.rest
            .iter()
            .find(|rest| rest.mode.as_deref() == Some("server"))
            .or_else(|| self.rest.first())
    }

    /// The OAuth endpoints the server lists (SMART `oauth-uris`), if any.
    pub fn oauth_uris(&self) -> Option<OAuthUris<'_>> {
        self.server_rest()?.security.as_ref()?.oauth_uris()
    }

    /// Whether the server lists a JSON format (`json`, `application/json` or `application/fhir+json`).
    pub fn supports_json(&self) -> bool {
        self.format.iter().flatten().any(|format| {
            matches!(
                format.as_str(),
                "json" | "application/json" | "application/fhir+json"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::from_value;

    fn epic_metadata() -> serde_json::Value {
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2024-05-01T00:00:00Z",
            "kind": "instance",
            "software": {"name": "Epic", "version": "May 2024", "releaseDate": "2024-05-01"},
            "implementation": {"description": "Epic FHIR", "url": "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4"},
            "fhirVersion": "4.0.1",
            "format": ["xml", "json"],
            "rest": [{
                "mode": "server",
                "security": {
                    "extension": [{
                        "url": SMART_OAUTH_URIS_EXTENSION,
                        "extension": [
                            {"url": "authorize", "valueUri": "https://fhir.epic.com/interconnect-fhir-oauth/oauth2/authorize"},
                            {"url": "token", "valueUri": "https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token"}
                        ]
                    }],
                    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}]
                },
                "resource": [{
                    "type": "Observation",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [{"name": "patient", "type": "reference"}, {"name": "category", "type": "token"}],
                    "searchInclude": ["Observation:patient"]
                }],
                "interaction": [{"code": "batch"}]
            }],
            "contact": [{"name": "Epic"}]
        })
    }

    #[test]
    fn smart_endpoints_and_resource_capabilities() {
        let statement: CapabilityStatement = from_value(epic_metadata()).unwrap();
        assert_eq!(statement.fhir_version.as_deref(), Some("4.0.1"));
        assert!(statement.supports_json());
        let uris = statement.oauth_uris().unwrap();
        assert_eq!(
            uris.token,
            Some("https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token")
        );
        assert_eq!(
            uris.authorize,
            Some("https://fhir.epic.com/interconnect-fhir-oauth/oauth2/authorize")
        );
        assert_eq!(uris.revoke, None);
        let rest = statement.server_rest().unwrap();
        let observation = rest.resource("Observation").unwrap();
        assert!(observation.supports_interaction("search-type"));
        assert!(!observation.supports_interaction("create"));
        assert_eq!(
            observation
                .search_param("category")
                .unwrap()
                .r#type
                .as_deref(),
            Some("token")
        );
        assert!(observation.search_param("code").is_none());
        assert!(rest.resource("Patient").is_none());
        assert!(statement.extra.contains_key("contact"));
        assert_eq!(serde_json::to_value(&statement).unwrap(), epic_metadata());
    }

    #[test]
    fn statement_without_security_has_no_oauth_uris() {
        let statement: CapabilityStatement = from_value(json!({
            "resourceType": "CapabilityStatement",
            "format": ["application/fhir+xml"],
            "rest": [{"mode": "client"}, {"mode": "server"}]
        }))
        .unwrap();
        assert_eq!(statement.oauth_uris(), None);
        assert!(!statement.supports_json());
        assert_eq!(
            statement.server_rest().unwrap().mode.as_deref(),
            Some("server")
        );
        assert_eq!(CapabilityStatement::default().server_rest(), None);
    }
}
