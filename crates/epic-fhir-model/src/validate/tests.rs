//! The validator against instances built from the definitions themselves: for every resource
//! type a minimal valid instance validates clean, and breaking it in each way the validator
//! knows is reported at the right path.

use serde_json::{Map, Value, json};

use super::tables::{ElementDef, ElementType, Prim, TypeKind, TypeRole};
use super::*;

const SAMPLE_REFERENCE_TYPE: &str = "Patient";

/// A valid value of a primitive (`code` values come from the binding when there is one).
fn primitive_sample(prim: Prim, element: &ElementDef) -> Value {
    match prim {
        Prim::Boolean => json!(true),
        Prim::Integer | Prim::PositiveInt => json!(1),
        Prim::UnsignedInt => json!(0),
        Prim::Decimal => json!(1.5),
        Prim::Date => json!("2024-01-02"),
        Prim::DateTime | Prim::Instant => json!("2024-01-02T03:04:05Z"),
        Prim::Time => json!("10:00:00"),
        Prim::Id => json!("a1"),
        Prim::Code => match element.binding {
            Some(binding) => json!(VALUE_SETS[binding].codes[0].0),
            None => json!("x"),
        },
        Prim::Uri | Prim::Url | Prim::Canonical => json!("http://example.org/x"),
        Prim::Oid => json!("urn:oid:1.2.3"),
        Prim::Uuid => json!("urn:uuid:1c0ae5d4-8e0c-4f49-9d75-59ab2bcb8a88"),
        Prim::Base64Binary => json!("SGVsbG8="),
        Prim::String | Prim::Markdown => json!("text"),
        Prim::Xhtml => json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"),
    }
}

/// An invalid value of a primitive, with words the error must contain.
fn primitive_breakage(prim: Prim) -> (Value, &'static str) {
    match prim {
        Prim::Boolean => (json!("true"), "expected a boolean"),
        Prim::Integer => (json!(1.5), "not an integer"),
        Prim::PositiveInt => (json!(0), "out of range"),
        Prim::UnsignedInt => (json!(-1), "out of range"),
        Prim::Decimal => (json!("1.5"), "expected a number"),
        Prim::Date => (json!("2024-13-01"), "not a valid date"),
        Prim::DateTime => (json!("2024-01-02T03:04"), "not a valid dateTime"),
        Prim::Instant => (json!("2024-01-02"), "not a valid instant"),
        Prim::Time => (json!("25:00:00"), "not a valid time"),
        Prim::Id => (json!("not an id"), "not a valid id"),
        Prim::Code => (json!(" padded"), "not a valid code"),
        Prim::Uri | Prim::Url | Prim::Canonical => (json!("has space"), "whitespace"),
        Prim::Oid => (json!("1.2.3"), "not a valid oid"),
        Prim::Uuid => (json!("urn:uuid:nope"), "not a valid uuid"),
        Prim::Base64Binary => (json!("abc"), "not a valid base64Binary"),
        Prim::String | Prim::Markdown => (json!(""), "empty strings"),
        Prim::Xhtml => (json!("text"), "not a valid xhtml"),
    }
}

/// The JSON member name of `ty` for `element`.
fn member(element: &ElementDef, ty: &ElementType) -> String {
    format!("{}{}", element.name, ty.suffix)
}

/// A valid value of one type of an element.
fn sample(element: &ElementDef, ty: &ElementType, depth: u32) -> Value {
    match ty.kind {
        TypeKind::Prim(prim) => primitive_sample(prim, element),
        TypeKind::Attribute => {
            if element.name == "url" {
                json!("http://example.org/extension")
            } else {
                json!("a1")
            }
        }
        TypeKind::Resource => json!({"resourceType": "Basic", "code": {"text": "x"}}),
        TypeKind::Complex(index) => {
            let name = TYPES[index].name;
            if name == "Reference" {
                let target = ty.targets.first().copied().unwrap_or(SAMPLE_REFERENCE_TYPE);
                return json!({"reference": format!("{target}/x")});
            }
            if let (Some(binding), "Coding") = (element.binding, name) {
                let (code, system) = VALUE_SETS[binding].codes[0];
                return json!({"system": system, "code": code});
            }
            Value::Object(minimal(index, depth + 1))
        }
    }
}

/// The smallest valid object of `TYPES[index]`: its required elements, and for a type with
/// none, one element so that the object is not empty.
fn minimal(index: usize, depth: u32) -> Map<String, Value> {
    assert!(
        depth < 12,
        "required elements nest too deep at {}",
        TYPES[index].name
    );
    let definition = &TYPES[index];
    let mut object = Map::new();
    if definition.role == TypeRole::Resource {
        object.insert("resourceType".into(), json!(definition.name));
    }
    for element in definition.elements.iter().filter(|e| e.min > 0) {
        let ty = &element.types[0];
        let value = sample(element, ty, depth);
        let value = if element.max > 1 {
            json!([value])
        } else {
            value
        };
        object.insert(member(element, ty), value);
    }
    let has_content = object.keys().any(|k| k != "resourceType");
    if !has_content {
        // One optional primitive (other than the ids), else one optional complex element.
        let pick = definition
            .elements
            .iter()
            .find(|e| !e.choice && e.name != "id" && matches!(e.types[0].kind, TypeKind::Prim(_)))
            .or_else(|| {
                definition
                    .elements
                    .iter()
                    .find(|e| e.name != "id" && e.name != "extension")
            })
            .expect("a type with elements");
        let ty = &pick.types[0];
        let value = sample(pick, ty, depth);
        let value = if pick.max > 1 { json!([value]) } else { value };
        object.insert(member(pick, ty), value);
    }
    object
}

fn resources() -> impl Iterator<Item = usize> {
    (0..TYPES.len()).filter(|&i| TYPES[i].role == TypeRole::Resource)
}

fn check(value: &Value) -> Vec<Issue> {
    validate_value(value)
}

/// Asserts that breaking `original` into `broken` gives an error at `path` whose message
/// contains `words`.
fn assert_reported(broken: &Value, path: &str, words: &str) {
    let issues = check(broken);
    assert!(
        issues
            .iter()
            .any(|i| i.severity == Severity::Error && i.path == path && i.message.contains(words)),
        "expected an error at {path} containing {words:?}; got {issues:#?}\nfor {broken}"
    );
}

#[test]
fn every_resource_type_has_a_minimal_instance_that_validates_clean() {
    let mut count = 0;
    for index in resources() {
        let value = Value::Object(minimal(index, 0));
        let issues = check(&value);
        assert!(
            issues.is_empty(),
            "{}: {issues:#?}\n{value}",
            TYPES[index].name
        );
        // The typed model reads it and writes it back unchanged.
        let resource: crate::Resource = crate::from_value(&value)
            .unwrap_or_else(|error| panic!("{}: {error}\n{value}", TYPES[index].name));
        assert_eq!(crate::to_value(&resource), value, "{}", TYPES[index].name);
        count += 1;
    }
    assert_eq!(count, 146);
}

#[test]
fn missing_required_elements_are_reported_on_their_object() {
    for index in resources() {
        let name = TYPES[index].name;
        let base = minimal(index, 0);
        for element in TYPES[index].elements.iter().filter(|e| e.min > 0) {
            let mut broken = base.clone();
            broken.remove(&member(element, &element.types[0]));
            let shown = if element.choice {
                format!("`{}[x]`", element.name)
            } else {
                format!("`{}`", element.name)
            };
            assert_reported(
                &Value::Object(broken),
                name,
                &format!("missing required element {shown}"),
            );
        }
    }
}

#[test]
fn unknown_elements_nulls_and_empty_arrays_are_reported_at_their_path() {
    for index in resources() {
        let name = TYPES[index].name;
        let base = minimal(index, 0);
        let mut broken = base.clone();
        broken.insert("bogusElement".into(), json!(1));
        assert_reported(
            &Value::Object(broken),
            &format!("{name}.bogusElement"),
            "unknown element",
        );
        let mut broken = base.clone();
        broken.insert("language".into(), Value::Null);
        assert_reported(
            &Value::Object(broken),
            &format!("{name}.language"),
            "null is not allowed",
        );
        if TYPES[index].elements.iter().any(|e| e.name == "extension") {
            let mut broken = base.clone();
            broken.insert("extension".into(), json!([]));
            assert_reported(
                &Value::Object(broken),
                &format!("{name}.extension"),
                "empty array",
            );
            let mut broken = base.clone();
            broken.insert(
                "extension".into(),
                json!({"url": "http://x", "valueString": "y"}),
            );
            assert_reported(
                &Value::Object(broken),
                &format!("{name}.extension"),
                "must be an array",
            );
        }
        let mut broken = base.clone();
        broken.insert("id".into(), json!(["a1"]));
        assert_reported(
            &Value::Object(broken),
            &format!("{name}.id"),
            "must not be an array",
        );
    }
}

#[test]
fn bad_primitive_values_are_reported_for_every_primitive_element() {
    let mut checked = 0;
    for index in resources() {
        let name = TYPES[index].name;
        let base = minimal(index, 0);
        for element in TYPES[index].elements {
            for ty in element.types {
                let TypeKind::Prim(prim) = ty.kind else {
                    continue;
                };
                let (bad, words) = primitive_breakage(prim);
                let key = member(element, ty);
                let mut broken = base.clone();
                // Another member of the same choice would be a different error.
                if element.choice {
                    broken.retain(|k, _| !(k.starts_with(element.name) && *k != key));
                }
                let (value, path) = if element.max > 1 {
                    (json!([bad]), format!("{name}.{key}[0]"))
                } else {
                    (bad, format!("{name}.{key}"))
                };
                broken.insert(key, value);
                assert_reported(&Value::Object(broken), &path, words);
                checked += 1;
            }
        }
    }
    assert!(checked > 1_000, "only {checked} primitive elements checked");
}

#[test]
fn codes_outside_a_required_binding_are_reported() {
    let mut checked = 0;
    for index in resources() {
        let name = TYPES[index].name;
        let base = minimal(index, 0);
        for element in TYPES[index].elements {
            let (Some(_), Some(ty)) = (element.binding, element.types.first()) else {
                continue;
            };
            if ty.kind != TypeKind::Prim(Prim::Code) {
                continue;
            }
            let mut broken = base.clone();
            let (value, path) = if element.max > 1 {
                (
                    json!(["not-a-real-code"]),
                    format!("{name}.{}[0]", element.name),
                )
            } else {
                (json!("not-a-real-code"), format!("{name}.{}", element.name))
            };
            broken.insert(element.name.into(), value);
            assert_reported(&Value::Object(broken), &path, "required binding");
            checked += 1;
        }
    }
    assert!(checked >= 150, "only {checked} bound codes checked");
}

#[test]
fn two_members_of_one_choice_are_reported() {
    let mut checked = 0;
    for index in resources() {
        let name = TYPES[index].name;
        let base = minimal(index, 0);
        for element in TYPES[index]
            .elements
            .iter()
            .filter(|e| e.choice && e.types.len() > 1)
        {
            let mut broken = base.clone();
            broken.retain(|k, _| !k.starts_with(element.name) || k == element.name);
            let (first, second) = (&element.types[0], &element.types[1]);
            broken.insert(member(element, first), sample(element, first, 0));
            broken.insert(member(element, second), sample(element, second, 0));
            // serde_json's map keeps keys sorted: the error is at whichever comes second.
            let later = std::cmp::max(member(element, first), member(element, second));
            assert_reported(
                &Value::Object(broken),
                &format!("{name}.{later}"),
                "allows only one",
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} choices checked");
}

#[test]
fn contained_and_reference_rules() {
    for index in resources() {
        let definition = &TYPES[index];
        if !definition.elements.iter().any(|e| e.name == "contained") {
            continue;
        }
        let name = definition.name;
        let base = minimal(index, 0);
        // A contained resource needs an id, and must be referenced.
        let mut broken = base.clone();
        broken.insert(
            "contained".into(),
            json!([{"resourceType": "Basic", "code": {"text": "x"}}]),
        );
        assert_reported(
            &Value::Object(broken),
            &format!("{name}.contained[0]"),
            "must have an id",
        );
        let mut broken = base.clone();
        broken.insert(
            "contained".into(),
            json!([{"resourceType": "Basic", "id": "b", "code": {"text": "x"}}]),
        );
        assert_reported(
            &Value::Object(broken),
            &format!("{name}.contained[0]"),
            "not referenced",
        );
        // A local reference must resolve.
        let mut broken = base.clone();
        broken.insert(
            "extension".into(),
            json!([{"url": "http://example.org/e", "valueReference": {"reference": "#missing"}}]),
        );
        assert_reported(
            &Value::Object(broken),
            &format!("{name}.extension[0].valueReference.reference"),
            "does not resolve",
        );
        // Referenced, it is fine.
        let mut fine = base.clone();
        fine.insert(
            "contained".into(),
            json!([{"resourceType": "Basic", "id": "b", "code": {"text": "x"}}]),
        );
        fine.insert(
            "extension".into(),
            json!([{"url": "http://example.org/e", "valueReference": {"reference": "#b"}}]),
        );
        let issues = check(&Value::Object(fine));
        assert!(issues.is_empty(), "{name}: {issues:#?}");
    }
}

/// The (path, message) pairs of the issues found in `json`, in the order found.
fn found(json: &str) -> Vec<(String, String)> {
    validate_json(json.as_bytes())
        .into_iter()
        .map(|i| (i.path, i.message))
        .collect()
}

#[test]
fn references_are_checked_for_form_and_target() {
    let issues = found(
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},
        "subject":{"reference":"Practitioner/abc"},
        "performer":[{"reference":"Nonsense/1"},{"reference":"Patient/bad id"},{"reference":"https://x.example/fhir/Patient/1"},{"reference":"urn:uuid:1c0ae5d4-8e0c-4f49-9d75-59ab2bcb8a88"}]}"#,
    );
    assert_eq!(issues.len(), 3, "{issues:#?}");
    assert!(
        issues[0].0 == "Observation.subject.reference" && issues[0].1.contains("not allowed here"),
        "{issues:#?}"
    );
    assert!(
        issues[1].0 == "Observation.performer[0].reference"
            && issues[1].1.contains("not a resource type"),
        "{issues:#?}"
    );
    assert!(
        issues[2].0 == "Observation.performer[1].reference" && issues[2].1.contains("invalid id"),
        "{issues:#?}"
    );
}

#[test]
fn primitive_extensions_and_every_problem_in_one_call() {
    let issues = found(
        r#"{"resourceType":"Patient","gender":"M",
        "_gender":{"extension":[{"url":"http://example.org/x","valueString":"y"}]},
        "birthDate":"1987-13-01",
        "name":[{"given":["A",null,null],"_given":[null,{"id":"g"},null]},{"given":["B"],"_given":[null,null]}],
        "_name":{"id":"n"},
        "managingOrganization":{},
        "nickname":"x"}"#,
    );
    let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Patient.gender",
            "Patient.birthDate",
            "Patient.name[0].given[2]",
            "Patient.name[0]._given[2]",
            "Patient.name[1]._given",
            "Patient.name[1]._given",
            "Patient._name",
            "Patient.managingOrganization",
            "Patient.nickname"
        ],
        "{issues:#?}"
    );
}

#[test]
fn bundles_validate_their_entries_with_their_own_contained_rules() {
    let issues = check(&json!({
        "resourceType": "Bundle", "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Patient", "birthDate": "1987-02-30"}},
            {"resource": {"resourceType": "NotAType"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "contained": [{"resourceType": "Patient", "id": "p"}], "subject": {"reference": "#p"}}}
        ]
    }));
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Bundle.entry[0].resource.birthDate",
            "Bundle.entry[1].resource"
        ],
        "{issues:#?}"
    );
}

#[test]
fn text_that_is_not_json_is_one_error() {
    let issues = validate_json(br#"{"resourceType":"Patient","id":"a",}"#);
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0].message.starts_with("not valid JSON"),
        "{issues:?}"
    );
}
