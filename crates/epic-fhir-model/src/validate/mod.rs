//! Validation of FHIR R4 JSON against the base specification.
//!
//! One call returns every problem found, each with its path and severity, never stopping at
//! the first. The checks, all from the core definitions (`data/fhir-r4`):
//!
//! - every member is an element of its type (FHIR forbids unknown elements), `resourceType`
//!   names an R4 resource;
//! - cardinality: required elements present, single elements not arrays, repeating elements
//!   arrays within their maximum; no `null`s, empty strings, empty arrays or empty objects;
//! - value types and primitive formats: `boolean`, `integer`/`unsignedInt`/`positiveInt` in
//!   range, `decimal`, `date`, `dateTime`, `instant`, `time`, `id`, `code`, `uri`/`url`/
//!   `canonical`, `oid`, `uuid`, `base64Binary`, `xhtml`;
//! - primitive extensions (`_name`): only for primitives, an Element object (or, for repeating
//!   primitives, an array of the same length with `null`s);
//! - choice elements: a member whose type the element allows, and at most one per choice;
//! - required bindings: codes (and codings of CodeableConcepts) from the value set, for the
//!   value sets whose codes the core package lists;
//! - references: well-formed (`Type/id` with an R4 type, `#id`, absolute URLs, `urn:uuid:`,
//!   `urn:oid:`), to a type the element allows; contained resources have an id, contain no
//!   resources, carry no `meta.versionId`/`lastUpdated`, are referenced from the resource, and
//!   every `#id` reference resolves.
//!
//! FHIRPath invariants (beyond the contained-resource rules above) and profiles are not
//! checked.
//!
//! ```
//! use epic_fhir_model::validate::{Severity, validate_json};
//!
//! let issues = validate_json(br#"{"resourceType":"Patient","gender":"M","birthDate":"1987-13-01","nickname":"x"}"#);
//! let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
//! assert_eq!(paths, ["Patient.gender", "Patient.birthDate", "Patient.nickname"]);
//! assert!(issues.iter().all(|i| i.severity == Severity::Error));
//! ```

mod dom;
mod formats;
pub(crate) mod tables;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::generated::tables::{TYPES, VALUE_SETS, type_index};
use crate::json::{Parser, ToJson};
use dom::Node;
use tables::{ElementDef, ElementType, TypeKind, TypeRole};

/// How serious a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The content breaks a rule of the specification.
    Error,
    /// The content is allowed but likely wrong.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found by the validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// How serious it is.
    pub severity: Severity,
    /// Where: the resource type and the JSON path, such as `Patient.name[0].given[1]`; for a
    /// primitive extension, the `_name` member (`Patient._birthDate.extension[0]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}: {}", self.severity, self.path, self.message)
    }
}

/// Validates one resource given as JSON text (a Bundle's entries included). Text that is not
/// JSON gives one error naming where it stops being JSON.
pub fn validate_json(json: &[u8]) -> Vec<Issue> {
    let mut p = Parser::new(json);
    let node = match Node::read(&mut p).and_then(|node| p.end().map(|()| node)) {
        Ok(node) => node,
        Err(error) => {
            let error = crate::ModelError::from_parse(&error, json);
            return vec![Issue {
                severity: Severity::Error,
                path: error.path().to_owned(),
                message: format!("not valid JSON: {error}"),
            }];
        }
    };
    let mut validator = Validator::default();
    validator.resource(&node, true);
    validator.issues
}

/// Validates a typed model (as it would be written).
pub fn validate_resource<T: ToJson + ?Sized>(resource: &T) -> Vec<Issue> {
    validate_json(&crate::to_vec(resource))
}

/// Validates a resource held as a `serde_json::Value`.
pub fn validate_value(value: &serde_json::Value) -> Vec<Issue> {
    validate_json(value.to_string().as_bytes())
}

/// One step of the path being checked.
#[derive(Clone, Copy)]
enum Step<'n> {
    Name(&'n str),
    Index(usize),
}

/// The local references and contained ids of one resource (contained resources share their
/// container's).
#[derive(Default)]
struct Frame {
    /// `#id` references found, with the path they were found at.
    local_references: Vec<(String, String)>,
    /// Whether a contained resource refers to its container with `#`.
    references_container: Vec<String>,
}

#[derive(Default)]
struct Validator<'n> {
    issues: Vec<Issue>,
    path: Vec<Step<'n>>,
    frames: Vec<Frame>,
}

impl<'n> Validator<'n> {
    fn path_text(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Name(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Index(index) => {
                    out.push('[');
                    out.push_str(&index.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    fn report(&mut self, severity: Severity, message: impl Into<String>) {
        self.issues.push(Issue {
            severity,
            path: self.path_text(),
            message: message.into(),
        });
    }

    fn error(&mut self, message: impl Into<String>) {
        self.report(Severity::Error, message);
    }

    /// Checks a resource object. `root` for a resource that is not inside another one (the
    /// document, or a Bundle entry's resource): it gets its own set of contained resources.
    fn resource(&mut self, node: &'n Node<'n>, root: bool) {
        let Node::Object(_) = node else {
            self.error(format!(
                "expected a resource (an object), found {}",
                node.kind()
            ));
            return;
        };
        let Some(resource_type) = node.get("resourceType").and_then(Node::as_str) else {
            self.error("a resource needs a string `resourceType`");
            return;
        };
        let definition = type_index(resource_type).filter(|&i| TYPES[i].role == TypeRole::Resource);
        let Some(index) = definition else {
            self.error(format!("`{resource_type}` is not a FHIR R4 resource type"));
            return;
        };
        let top = self.path.is_empty();
        if top {
            self.path.push(Step::Name(TYPES[index].name));
        }
        if root {
            self.frames.push(Frame::default());
        }
        self.object(index, node);
        self.contained_rules(node);
        if root {
            self.local_reference_rules(node);
            self.frames.pop();
        }
        if top {
            self.path.pop();
        }
    }

    /// Checks the members of an object of type `TYPES[index]`.
    fn object(&mut self, index: usize, node: &'n Node<'n>) {
        let definition = &TYPES[index];
        let Node::Object(members) = node else {
            self.error(format!(
                "expected an object ({}), found {}",
                definition.name,
                node.kind()
            ));
            return;
        };
        if members.is_empty() {
            self.error("an empty object is not allowed (leave the element out)");
            return;
        }
        let elements = definition.elements;
        let mut counts = vec![0u32; elements.len()];
        let mut extended = vec![false; elements.len()];
        let mut chosen: Vec<Option<&str>> = vec![None; elements.len()];
        for (position, (key, value)) in members.iter().enumerate() {
            let key: &'n str = key;
            self.path.push(Step::Name(key));
            if members[..position]
                .iter()
                .any(|(earlier, _)| earlier == key)
            {
                self.error(format!("duplicate member `{key}`"));
                self.path.pop();
                continue;
            }
            if key == "resourceType" {
                if definition.role != TypeRole::Resource {
                    self.error("unknown element `resourceType` (only resources have one)");
                }
                self.path.pop();
                continue;
            }
            let (name, is_extension) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key, false),
            };
            let Some((slot, element, ty)) = find_element(elements, name) else {
                self.error(format!("unknown element `{key}` in {}", definition.name));
                self.path.pop();
                continue;
            };
            if element.choice {
                if let Some(previous) = chosen[slot] {
                    if previous != name {
                        self.error(format!(
                            "`{previous}` and `{name}` are both present, but {}[x] allows only one",
                            element.name
                        ));
                        self.path.pop();
                        continue;
                    }
                }
                chosen[slot] = Some(name);
            }
            if is_extension {
                extended[slot] = true;
                self.primitive_extension(element, ty, value, members);
            } else {
                // A repeating primitive may have `null` where its `_name` array has an entry.
                let extensions = match members
                    .iter()
                    .find(|(k, _)| k.strip_prefix('_') == Some(key))
                {
                    Some((_, Node::Array(items))) => Some(items.as_slice()),
                    _ => None,
                };
                counts[slot] += self.element_value(element, ty, value, extensions);
            }
            self.path.pop();
        }
        for (slot, element) in elements.iter().enumerate() {
            let count = counts[slot];
            if count < element.min && !(extended[slot] && is_primitive(element)) {
                let name = if element.choice {
                    format!("{}[x]", element.name)
                } else {
                    element.name.to_owned()
                };
                self.error(format!(
                    "missing required element `{name}` (minimum {})",
                    element.min
                ));
            }
        }
        if definition.name == "Reference" {
            self.reference_object(node);
        }
    }

    /// Checks the value of a (non-`_`) member and returns how many values it holds.
    fn element_value(
        &mut self,
        element: &'static ElementDef,
        ty: &'static ElementType,
        value: &'n Node<'n>,
        extensions: Option<&[Node<'n>]>,
    ) -> u32 {
        let repeats = element.max > 1;
        match value {
            Node::Null => {
                self.error("null is not allowed (leave the element out)");
                0
            }
            Node::Array(items) if repeats => {
                if items.is_empty() {
                    self.error("an empty array is not allowed (leave the element out)");
                    return 0;
                }
                if items.len() as u64 > u64::from(element.max) {
                    self.error(format!(
                        "{} values, but at most {} are allowed",
                        items.len(),
                        element.max
                    ));
                }
                for (index, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(index));
                    let extended = extensions
                        .and_then(|e| e.get(index))
                        .is_some_and(|e| !matches!(e, Node::Null));
                    if matches!(item, Node::Null) {
                        if !extended {
                            self.error(
                                "null is not allowed here (only where the `_` array has extensions)",
                            );
                        }
                    } else {
                        self.typed_value(element, ty, item);
                    }
                    self.path.pop();
                }
                items.len() as u32
            }
            Node::Array(_) => {
                self.error(format!(
                    "`{}` has at most one value, so it must not be an array",
                    element.name
                ));
                1
            }
            _ if repeats => {
                self.error(format!(
                    "`{}` repeats, so its value must be an array",
                    element.name
                ));
                self.typed_value(element, ty, value);
                1
            }
            _ => {
                self.typed_value(element, ty, value);
                1
            }
        }
    }

    /// Checks one value of an element's type.
    fn typed_value(&mut self, element: &ElementDef, ty: &'static ElementType, value: &'n Node<'n>) {
        match ty.kind {
            TypeKind::Prim(prim) => {
                if let Err(message) = formats::check(prim, value) {
                    self.error(message);
                    return;
                }
                if let (Some(binding), Some(code)) = (element.binding, value.as_str()) {
                    let value_set = &VALUE_SETS[binding];
                    if !value_set.has_code(code) {
                        self.error(format!(
                            "`{code}` is not a code of {} (a required binding)",
                            value_set.url
                        ));
                    }
                }
            }
            TypeKind::Attribute => match value {
                Node::String(text) if !text.is_empty() => {
                    if element.name == "url" && text.contains(char::is_whitespace) {
                        self.error("an extension url must not contain whitespace");
                    }
                }
                Node::String(_) => self.error("empty strings are not allowed"),
                other => self.error(format!("expected a string, found {}", other.kind())),
            },
            TypeKind::Complex(index) => {
                self.object(index, value);
                if let Some(binding) = element.binding {
                    self.coded_binding(index, binding, value);
                }
                if TYPES[index].name == "Reference" && !ty.targets.is_empty() {
                    self.reference_targets(ty.targets, value);
                }
            }
            TypeKind::Resource => {
                // Contained resources belong to their container; others stand alone.
                let root = element.name != "contained";
                self.resource(value, root);
            }
        }
    }

    /// Checks a `_name` member: only primitives have one, and it holds an Element (or an array
    /// of Elements and `null`s as long as the value array).
    fn primitive_extension(
        &mut self,
        element: &ElementDef,
        ty: &ElementType,
        value: &'n Node<'n>,
        members: &'n [(std::borrow::Cow<'n, str>, Node<'n>)],
    ) {
        if !matches!(ty.kind, TypeKind::Prim(_)) {
            self.error(format!(
                "`_{}` is not allowed: only primitive elements have extensions this way",
                element.name
            ));
            return;
        }
        let element_type = type_index("Element").unwrap_or(0);
        if element.max > 1 {
            let Node::Array(items) = value else {
                self.error(format!("expected an array, found {}", value.kind()));
                return;
            };
            let own_name = self.path.last().and_then(|step| match step {
                Step::Name(name) => name.strip_prefix('_'),
                Step::Index(_) => None,
            });
            let values =
                own_name.and_then(|name| members.iter().find(|(k, _)| k == name).map(|(_, v)| v));
            if let Some(Node::Array(value_items)) = values {
                if value_items.len() != items.len() {
                    self.error(format!(
                        "{} entries, but the value array has {}: they must line up",
                        items.len(),
                        value_items.len()
                    ));
                }
                for (index, (v, e)) in value_items.iter().zip(items).enumerate() {
                    if matches!(v, Node::Null) && matches!(e, Node::Null) {
                        self.path.push(Step::Index(index));
                        self.error("both the value and its extension are null");
                        self.path.pop();
                    }
                }
            }
            if items.iter().all(|item| matches!(item, Node::Null)) {
                self.error("an array of only nulls is not allowed");
            }
            for (index, item) in items.iter().enumerate() {
                if matches!(item, Node::Null) {
                    continue;
                }
                self.path.push(Step::Index(index));
                self.object(element_type, item);
                self.path.pop();
            }
        } else {
            self.object(element_type, value);
        }
    }

    /// Checks that a coded value (Coding, CodeableConcept) of a required binding uses its codes.
    fn coded_binding(&mut self, index: usize, binding: usize, value: &Node<'_>) {
        let value_set = &VALUE_SETS[binding];
        let codings: Vec<&Node<'_>> = match TYPES[index].name {
            "Coding" => vec![value],
            "CodeableConcept" => match value.get("coding") {
                Some(Node::Array(items)) => items.iter().collect(),
                _ => Vec::new(),
            },
            _ => return,
        };
        if codings.is_empty() {
            return;
        }
        let from_value_set = codings.iter().any(|coding| {
            match (
                coding.get("system").and_then(Node::as_str),
                coding.get("code").and_then(Node::as_str),
            ) {
                (Some(system), Some(code)) => value_set.has_coding(system, code),
                _ => false,
            }
        });
        if !from_value_set {
            let bad = codings.iter().find_map(|coding| {
                let system = coding.get("system").and_then(Node::as_str)?;
                let code = coding.get("code").and_then(Node::as_str)?;
                value_set
                    .has_system(system)
                    .then(|| format!("{system}|{code}"))
            });
            let message = match bad {
                Some(coding) => format!(
                    "`{coding}` is not a code of {} (a required binding)",
                    value_set.url
                ),
                None => format!("no coding from {} (a required binding)", value_set.url),
            };
            self.error(message);
        }
    }

    /// Checks the form of a Reference's `reference` and notes local references.
    fn reference_object(&mut self, node: &Node<'_>) {
        let Some(literal) = node.get("reference").and_then(Node::as_str) else {
            return;
        };
        if let Some(local) = literal.strip_prefix('#') {
            let path = self.path_text();
            if let Some(frame) = self.frames.last_mut() {
                if local.is_empty() {
                    frame.references_container.push(path);
                } else {
                    frame.local_references.push((local.to_owned(), path));
                }
            }
            return;
        }
        if let Err(message) = check_reference(literal) {
            self.path.push(Step::Name("reference"));
            self.error(message);
            self.path.pop();
        }
    }

    /// Checks that a reference points at a type the element allows.
    fn reference_targets(&mut self, targets: &[&str], node: &Node<'_>) {
        let Some(literal) = node.get("reference").and_then(Node::as_str) else {
            return;
        };
        if let Some(target) = reference_type(literal) {
            if !targets.contains(&target) && type_index(target).is_some() {
                self.path.push(Step::Name("reference"));
                self.error(format!(
                    "a reference to {target} is not allowed here (allowed: {})",
                    targets.join(", ")
                ));
                self.path.pop();
            }
        }
    }

    /// The rules for contained resources (id, no nesting, no version metadata).
    fn contained_rules(&mut self, node: &'n Node<'n>) {
        let Some(Node::Array(contained)) = node.get("contained") else {
            return;
        };
        self.path.push(Step::Name("contained"));
        for (index, resource) in contained.iter().enumerate() {
            self.path.push(Step::Index(index));
            if resource.get("id").and_then(Node::as_str).is_none() {
                self.error("a contained resource must have an id");
            }
            if resource.get("contained").is_some() {
                self.error("a contained resource must not contain resources");
            }
            if let Some(meta) = resource.get("meta") {
                if meta.get("versionId").is_some() || meta.get("lastUpdated").is_some() {
                    self.error(
                        "a contained resource must not have meta.versionId or meta.lastUpdated",
                    );
                }
            }
            self.path.pop();
        }
        self.path.pop();
    }

    /// Checks that every `#id` resolves to a contained resource, and that every contained
    /// resource is referenced (or refers to its container).
    fn local_reference_rules(&mut self, node: &'n Node<'n>) {
        let Some(frame) = self.frames.last() else {
            return;
        };
        let ids: Vec<&str> = match node.get("contained") {
            Some(Node::Array(contained)) => contained
                .iter()
                .filter_map(|r| r.get("id").and_then(Node::as_str))
                .collect(),
            _ => Vec::new(),
        };
        let mut problems = Vec::new();
        for (local, path) in &frame.local_references {
            if !ids.contains(&local.as_str()) {
                problems.push((
                    format!("{path}.reference"),
                    format!("`#{local}` does not resolve to a contained resource"),
                ));
            }
        }
        if let Some(Node::Array(contained)) = node.get("contained") {
            for (index, resource) in contained.iter().enumerate() {
                let Some(id) = resource.get("id").and_then(Node::as_str) else {
                    continue;
                };
                let referenced = frame.local_references.iter().any(|(local, _)| local == id);
                if !referenced && frame.references_container.is_empty() {
                    let mut path = self.path_text();
                    path.push_str(&format!(".contained[{index}]"));
                    problems.push((
                        path,
                        format!("contained resource `{id}` is not referenced from the resource"),
                    ));
                }
            }
        }
        for (path, message) in problems {
            self.issues.push(Issue {
                severity: Severity::Error,
                path,
                message,
            });
        }
    }
}

/// The element a member name belongs to (its slot, definition and the matching type).
fn find_element(
    elements: &'static [ElementDef],
    name: &str,
) -> Option<(usize, &'static ElementDef, &'static ElementType)> {
    for (slot, element) in elements.iter().enumerate() {
        if element.choice {
            if let Some(suffix) = name.strip_prefix(element.name) {
                if let Some(ty) = element.types.iter().find(|t| t.suffix == suffix) {
                    return Some((slot, element, ty));
                }
            }
        } else if element.name == name {
            return element.types.first().map(|ty| (slot, element, ty));
        }
    }
    None
}

fn is_primitive(element: &ElementDef) -> bool {
    element
        .types
        .iter()
        .all(|t| matches!(t.kind, TypeKind::Prim(_)))
}

/// The resource type a literal reference names, when it names one.
fn reference_type(literal: &str) -> Option<&str> {
    if literal.starts_with('#') || literal.starts_with("urn:") || literal.contains('?') {
        return None;
    }
    let mut segments: Vec<&str> = literal.split('/').collect();
    if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
        segments.truncate(segments.len() - 2);
    }
    if segments.len() < 2 {
        return None;
    }
    Some(segments[segments.len() - 2])
}

/// Checks the form of a literal reference (not a local one).
fn check_reference(literal: &str) -> Result<(), String> {
    if literal.trim() != literal || literal.is_empty() {
        return Err(format!("`{literal}` is not a valid reference: whitespace"));
    }
    if let Some(rest) = literal.strip_prefix("urn:uuid:") {
        return formats::check(tables::Prim::Uuid, &Node::String(literal.into()))
            .map_err(|_| format!("`urn:uuid:{rest}` is not a valid uuid reference"));
    }
    if literal.starts_with("urn:oid:") {
        return formats::check(tables::Prim::Oid, &Node::String(literal.into()))
            .map_err(|_| format!("`{literal}` is not a valid oid reference"));
    }
    // A conditional reference in a transaction (`Patient?identifier=...`).
    if let Some((resource_type, _)) = literal.split_once('?') {
        if !literal.contains("://") && type_index(resource_type).is_none() {
            return Err(format!(
                "`{literal}` is not a valid reference: `{resource_type}` is not a resource type"
            ));
        }
        return Ok(());
    }
    let absolute = literal.contains("://");
    let mut segments: Vec<&str> = literal.split('/').collect();
    if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
        segments.truncate(segments.len() - 2);
    }
    if segments.len() < 2 {
        return if absolute {
            Ok(())
        } else {
            Err(format!(
                "`{literal}` is not a valid reference: expected `Type/id`"
            ))
        };
    }
    let (resource_type, id) = (segments[segments.len() - 2], segments[segments.len() - 1]);
    let known = type_index(resource_type).is_some_and(|i| TYPES[i].role == TypeRole::Resource);
    let id_ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if absolute {
        // Any absolute URL may be a reference; one that ends in Type/id must have a valid id.
        if known && !id_ok {
            return Err(format!(
                "`{literal}` is not a valid reference: invalid id `{id}`"
            ));
        }
        return Ok(());
    }
    if segments.len() != 2 {
        return Err(format!(
            "`{literal}` is not a valid reference: expected `Type/id` or an absolute URL"
        ));
    }
    if !known {
        return Err(format!(
            "`{literal}` is not a valid reference: `{resource_type}` is not a resource type"
        ));
    }
    if !id_ok {
        return Err(format!(
            "`{literal}` is not a valid reference: invalid id `{id}`"
        ));
    }
    Ok(())
}
