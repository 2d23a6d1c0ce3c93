//! FHIR XML for the two resources the sandbox writes itself: the CapabilityStatement and
//! OperationOutcomes.
//!
//! Epic answers XML when a request has no `Accept` header or only `*/*`. FHIR XML is not a
//! mechanical image of the JSON: the elements of each type must appear in the order its
//! definition gives, `id` of an element and `url` of an extension are attributes, and nested
//! resources are wrapped in an element named after their type. That order is known here for
//! every element the sandbox puts into these two resources (the tables below); stored
//! resources, which may hold any element of any of FHIR's types, are served as JSON only (see
//! ARCHITECTURE.md: the sandbox carries no StructureDefinitions to order them by).

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The FHIR namespace of every resource element.
const FHIR_NS: &str = "http://hl7.org/fhir";

/// The members every resource starts with, in order.
const RESOURCE_HEAD: &[&str] = &[
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
];
/// The members every element of a datatype or backbone element starts with (`id` is an
/// attribute in XML).
const ELEMENT_HEAD: &[&str] = &["extension", "modifierExtension"];

/// The order of the members of the element at `path` (member names joined by `.` from the
/// resource type), after [`RESOURCE_HEAD`] or [`ELEMENT_HEAD`]. `None` when the path is not
/// one the sandbox writes: such a document is not converted.
fn order(path: &str) -> Option<&'static [&'static str]> {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    // Datatypes, recognised by the member that holds them.
    match leaf {
        "coding" => return Some(&["system", "version", "code", "display", "userSelected"]),
        "details" | "service" => return Some(&["coding", "text"]),
        "telecom" => return Some(&["system", "value", "use", "rank", "period"]),
        "contact" => return Some(&["name", "telecom"]),
        _ => {}
    }
    Some(match path {
        "CapabilityStatement" => &[
            "url",
            "version",
            "name",
            "title",
            "status",
            "experimental",
            "date",
            "publisher",
            "contact",
            "description",
            "useContext",
            "jurisdiction",
            "purpose",
            "copyright",
            "kind",
            "instantiates",
            "imports",
            "software",
            "implementation",
            "fhirVersion",
            "format",
            "patchFormat",
            "implementationGuide",
            "rest",
            "messaging",
            "document",
        ],
        "CapabilityStatement.software" => &["name", "version", "releaseDate"],
        "CapabilityStatement.implementation" => &["description", "url", "custodian"],
        "CapabilityStatement.rest" => &[
            "mode",
            "documentation",
            "security",
            "resource",
            "interaction",
            "searchParam",
            "operation",
            "compartment",
        ],
        "CapabilityStatement.rest.security" => &["cors", "service", "description"],
        "CapabilityStatement.rest.resource" => &[
            "type",
            "profile",
            "supportedProfile",
            "documentation",
            "interaction",
            "versioning",
            "readHistory",
            "updateCreate",
            "conditionalCreate",
            "conditionalRead",
            "conditionalUpdate",
            "conditionalDelete",
            "referencePolicy",
            "searchInclude",
            "searchRevInclude",
            "searchParam",
            "operation",
        ],
        "CapabilityStatement.rest.interaction"
        | "CapabilityStatement.rest.resource.interaction" => &["code", "documentation"],
        "CapabilityStatement.rest.searchParam"
        | "CapabilityStatement.rest.resource.searchParam" => {
            &["name", "definition", "type", "documentation"]
        }
        "CapabilityStatement.rest.operation" | "CapabilityStatement.rest.resource.operation" => {
            &["name", "definition", "documentation"]
        }
        "OperationOutcome" => &["issue"],
        "OperationOutcome.issue" => &[
            "severity",
            "code",
            "details",
            "diagnostics",
            "location",
            "expression",
        ],
        _ => return None,
    })
}

/// The FHIR XML of `resource` (with an XML declaration), or `None` when it is not a
/// CapabilityStatement or OperationOutcome made of the elements this module knows.
pub(crate) fn to_xml(resource: &Value) -> Option<String> {
    let object = resource.as_object()?;
    let resource_type = object.get("resourceType")?.as_str()?;
    if !matches!(resource_type, "CapabilityStatement" | "OperationOutcome") {
        return None;
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write!(out, "<{resource_type} xmlns=\"{FHIR_NS}\">").ok()?;
    members(&mut out, resource_type, object, RESOURCE_HEAD)?;
    write!(out, "</{resource_type}>").ok()?;
    Some(out)
}

/// Writes the members of `object` (not `resourceType`) in FHIR order: `head`, then the
/// path's table. A member named nowhere makes the whole conversion fail, rather than be
/// written in a place a strict reader would reject.
fn members(out: &mut String, path: &str, object: &Map<String, Value>, head: &[&str]) -> Option<()> {
    let table = order(path)?;
    for name in object.keys() {
        let known = name == "resourceType"
            || head.contains(&name.as_str())
            || table.contains(&name.as_str())
            || (name == "id" && head == ELEMENT_HEAD)
            || (name == "url" && path.ends_with("extension"));
        if !known {
            return None;
        }
    }
    for name in head.iter().chain(table) {
        if let Some(value) = object.get(*name) {
            let child = format!("{path}.{name}");
            for item in value
                .as_array()
                .map_or(std::slice::from_ref(value), Vec::as_slice)
            {
                element(out, &child, name, item)?;
            }
        }
    }
    Some(())
}

/// Writes one element: a primitive as `<name value="..."/>`, a complex value with its
/// members, an extension with its `url` attribute.
fn element(out: &mut String, path: &str, name: &str, value: &Value) -> Option<()> {
    match value {
        Value::Object(object) if name == "extension" || name == "modifierExtension" => {
            let url = object.get("url")?.as_str()?;
            write!(out, "<{name} url=\"{}\">", escape(url)).ok()?;
            for (key, item) in object {
                match key.as_str() {
                    "url" => {}
                    "extension" => {
                        for nested in item.as_array()? {
                            element(out, &format!("{path}.extension"), "extension", nested)?;
                        }
                    }
                    value_name if value_name.starts_with("value") => {
                        primitive(out, value_name, item)?;
                    }
                    _ => return None,
                }
            }
            write!(out, "</{name}>").ok()?;
        }
        Value::Object(object) => {
            match object.get("id").and_then(Value::as_str) {
                Some(id) => write!(out, "<{name} id=\"{}\">", escape(id)).ok()?,
                None => write!(out, "<{name}>").ok()?,
            }
            members(out, path, object, ELEMENT_HEAD)?;
            write!(out, "</{name}>").ok()?;
        }
        other => primitive(out, name, other)?,
    }
    Some(())
}

fn primitive(out: &mut String, name: &str, value: &Value) -> Option<()> {
    let text = match value {
        Value::String(text) => escape(text),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    write!(out, "<{name} value=\"{text}\"/>").ok()
}

/// Escapes text for an attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operation_outcome_in_fhir_order_with_escapes() {
        let outcome = json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "fatal",
                "expression": ["category"],
                "diagnostics": "needs `category` & <code>",
                "details": {"text": "Required", "coding": [{"code": "4111", "system": "urn:oid:1.2"}]},
                "code": "required"
            }]
        });
        let xml = to_xml(&outcome).expect("xml");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<OperationOutcome xmlns=\"http://hl7.org/fhir\"><issue><severity value=\"fatal\"/><code value=\"required\"/><details><coding><system value=\"urn:oid:1.2\"/><code value=\"4111\"/></coding><text value=\"Required\"/></details><diagnostics value=\"needs `category` &amp; &lt;code&gt;\"/><expression value=\"category\"/></issue></OperationOutcome>"
        );
    }

    #[test]
    fn capability_statement_extensions_are_attributes_and_booleans_plain() {
        let statement = json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "software": {"version": "1", "name": "Epic"},
            "rest": [{
                "mode": "server",
                "security": {"extension": [{"url": "http://x", "extension": [{"url": "token", "valueUri": "http://t"}]}]},
                "resource": [{"type": "Patient", "conditionalCreate": false}]
            }]
        });
        let xml = to_xml(&statement).expect("xml");
        assert!(xml.contains("<status value=\"active\"/><kind value=\"instance\"/><software><name value=\"Epic\"/><version value=\"1\"/></software>"), "{xml}");
        assert!(xml.contains("<security><extension url=\"http://x\"><extension url=\"token\"><valueUri value=\"http://t\"/></extension></extension></security>"), "{xml}");
        assert!(
            xml.contains(
                "<resource><type value=\"Patient\"/><conditionalCreate value=\"false\"/></resource>"
            ),
            "{xml}"
        );
    }

    #[test]
    fn other_resources_and_unknown_members_are_not_converted() {
        assert!(to_xml(&json!({"resourceType": "Patient", "id": "p"})).is_none());
        assert!(
            to_xml(&json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "colour": "red"}]}))
                .is_none()
        );
    }
}
