//! Round trips through the FHIR models: every resource read into a model and written back must
//! be the same JSON value as the input.
//!
//! The Synthea data set is read from `EPIC_FHIR_SYNTHEA_DIR`, by default the copy in the
//! repository (`data/synthea-r4`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use epic_fhir::model::{
    self, AnnotationAuthor, Bundle, ConditionAbatement, ConditionOnset, DosageAsNeeded, DoseAmount,
    DoseRate, MedicationRequestMedication, MedicationRequestReported, ObservationEffective,
    ObservationValue, PatientDeceased, PatientMultipleBirth, Resource, SubstitutionAllowed,
};
use flate2::read::GzDecoder;
use serde_json::{Value, json};

/// The resource types that must come out of parsing as typed models, not raw JSON.
const TYPED: &[&str] = &[
    "Appointment",
    "Bundle",
    "CapabilityStatement",
    "Condition",
    "Encounter",
    "MedicationRequest",
    "Observation",
    "OperationOutcome",
    "Patient",
];

fn synthea_dir() -> PathBuf {
    match std::env::var_os("EPIC_FHIR_SYNTHEA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4"),
    }
}

/// Every `*.ndjson.gz` file of the Synthea set with the resource type it holds, by name.
fn synthea_files() -> Vec<(String, PathBuf)> {
    let dir = synthea_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|error| {
        panic!(
            "cannot read the Synthea data in {} ({error}); set EPIC_FHIR_SYNTHEA_DIR",
            dir.display()
        )
    });
    let mut files: Vec<(String, PathBuf)> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let resource_type = name.strip_suffix(".ndjson.gz")?.to_owned();
            Some((resource_type, path))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.ndjson.gz files in {}",
        dir.display()
    );
    files
}

fn read_lines(path: &PathBuf) -> impl Iterator<Item = String> {
    let file = File::open(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    BufReader::new(GzDecoder::new(file))
        .lines()
        .map(|line| line.expect("gzip NDJSON line"))
        .filter(|line| !line.trim().is_empty())
}

/// The first JSON path where two values differ, for readable failures.
fn first_difference(path: &str, left: &Value, right: &Value) -> Option<String> {
    match (left, right) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                let child = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(found) = first_difference(&child, x, y) {
                            return Some(found);
                        }
                    }
                    (x, y) => return Some(format!("{child}: {x:?} vs {y:?}")),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(index, (x, y))| first_difference(&format!("{path}[{index}]"), x, y)),
        _ if left == right => None,
        _ => Some(format!("{path}: {left} vs {right}")),
    }
}

/// Parses `text` as a `Resource`, writes it back and checks the JSON is unchanged.
fn round_trip(text: &str) -> Resource {
    let original: Value = serde_json::from_str(text).expect("input is JSON");
    let resource: Resource = model::from_str(text).unwrap_or_else(|error| {
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        panic!("{error}: {cause:?}\n{text}")
    });
    let written = serde_json::to_value(&resource).expect("models serialize");
    if let Some(difference) = first_difference("", &original, &written) {
        panic!("round trip changed {difference}\n{text}");
    }
    resource
}

fn assert_typed(resource: &Resource) {
    if TYPED.contains(&resource.resource_type()) {
        assert!(
            resource.as_raw().is_none(),
            "{} was not parsed into its model",
            resource.resource_type()
        );
    } else {
        assert!(resource.as_raw().is_some());
    }
}

#[test]
fn every_synthea_resource_round_trips() {
    let mut total = 0;
    for (resource_type, path) in synthea_files() {
        let mut count = 0;
        for line in read_lines(&path) {
            let resource = round_trip(&line);
            assert_eq!(resource.resource_type(), resource_type);
            assert_typed(&resource);
            count += 1;
        }
        assert!(count > 0, "{} is empty", path.display());
        total += count;
    }
    // The data set's README gives 59,484 resources; this guards against reading a truncated copy.
    assert!(total >= 59_484, "read only {total} resources");
}

#[test]
fn synthea_observations_round_trip_inside_a_searchset_bundle() {
    let path = synthea_dir().join("Observation.ndjson.gz");
    let entries: Vec<Value> = read_lines(&path)
        .take(2_000)
        .map(|line| {
            let resource: Value = serde_json::from_str(&line).expect("JSON line");
            let url = format!(
                "https://fhir.example/R4/Observation/{}",
                resource["id"].as_str().unwrap_or("")
            );
            json!({"fullUrl": url, "resource": resource, "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": "https://fhir.example/R4/Observation?category=laboratory"}],
        "entry": entries,
    });
    let text = serde_json::to_string(&bundle).expect("bundle text");
    let parsed: Bundle = model::from_str(&text).expect("bundle parses");
    assert_eq!(parsed.entry.len(), 2_000);
    assert_eq!(parsed.matches().count(), 2_000);
    assert!(
        parsed
            .resources()
            .all(|resource| resource.as_observation().is_some())
    );
    assert_eq!(
        serde_json::to_value(&parsed).expect("bundle writes"),
        bundle
    );
}

#[test]
fn primitive_extensions_and_null_array_entries_are_kept() {
    let text = r#"{
        "resourceType": "Patient",
        "id": "p1",
        "birthDate": "1973-06-03",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1973-06-03T08:30:00-05:00"}]},
        "_gender": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "asked-declined"}]},
        "name": [{
            "family": "Lin",
            "given": ["Derrick", null],
            "_given": [null, {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]}],
            "_family": {"id": "f1"}
        }],
        "address": [{"line": [null, "Apt 4"], "_line": [{"extension": [{"url": "http://example.org/masked", "valueBoolean": true}]}, null]}]
    }"#;
    let resource = round_trip(text);
    let patient = resource.as_patient().expect("typed patient");
    assert_eq!(
        patient.name[0].given,
        vec![Some("Derrick".to_owned()), None]
    );
    assert!(patient.extra.contains_key("_birthDate"));
    assert!(patient.extra.contains_key("_gender"));
    assert!(patient.name[0].extra.contains_key("_given"));
    assert_eq!(patient.display_name().as_deref(), Some("Derrick Lin"));

    let observation = r#"{
        "resourceType": "Observation",
        "status": "final",
        "_status": {"extension": [{"url": "http://example.org/status-source", "valueString": "device"}]},
        "code": {"text": "Heart rate", "_text": {"extension": [{"url": "http://example.org/t", "valueCode": "x"}]}},
        "valueQuantity": {"value": 72, "unit": "/min", "_value": {"extension": [{"url": "http://example.org/q", "valueDecimal": 1.5}]}}
    }"#;
    let resource = round_trip(observation);
    assert!(
        resource
            .as_observation()
            .expect("typed")
            .extra
            .contains_key("_status")
    );
}

#[test]
fn contained_resources_and_modifier_extensions_are_kept() {
    let text = r##"{
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "contained": [
            {"resourceType": "Medication", "id": "med1", "code": {"text": "Amoxicillin 250 MG"}},
            {"resourceType": "Patient", "id": "pt", "name": [{"family": "Contained"}], "futureElement": [1, 2]}
        ],
        "modifierExtension": [{"url": "http://example.org/not-given", "valueBoolean": true}],
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "#med1"},
        "subject": {"reference": "#pt"},
        "dosageInstruction": [{
            "modifierExtension": [{"url": "http://example.org/dose-mod", "valueCode": "x"}],
            "text": "1 tablet twice a day",
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}, "modifierExtension": [{"url": "http://example.org/t", "valueBoolean": false}]}
        }]
    }"##;
    let resource = round_trip(text);
    let request = resource.as_medication_request().expect("typed");
    assert_eq!(request.modifier_extension.len(), 1);
    assert_eq!(request.dosage_instruction[0].modifier_extension.len(), 1);
    let medication = request
        .contained_resource("#med1")
        .expect("contained medication");
    assert_eq!(medication.resource_type(), "Medication");
    let patient = request
        .contained_resource("pt")
        .expect("contained patient")
        .clone();
    let patient = patient.into_resource().expect("typed contained patient");
    assert_eq!(
        patient.as_patient().expect("patient").extra["futureElement"],
        json!([1, 2])
    );
}

#[test]
fn unknown_elements_are_kept_at_every_level() {
    let text = r#"{
        "resourceType": "Bundle",
        "type": "searchset",
        "bundleNew": 1,
        "link": [{"relation": "self", "url": "https://x/Patient", "linkNew": true}],
        "entry": [{
            "entryNew": "a",
            "search": {"mode": "match", "searchNew": {"deep": [1]}},
            "resource": {
                "resourceType": "Patient",
                "resourceNew": {"x": null},
                "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "metaNew": 2},
                "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>", "narrativeNew": 3},
                "extension": [{"url": "http://example.org/e", "extensionNew": 4, "valueString": "v"}],
                "identifier": [{
                    "system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0", "value": "E4005",
                    "type": {"coding": [{"code": "MR", "codingNew": 5}], "conceptNew": 6},
                    "period": {"start": "2020", "periodNew": 7},
                    "assigner": {"display": "Epic", "referenceNew": 8, "identifier": {"value": "x", "identifierNew": 9}},
                    "identifierNew": 10
                }],
                "name": [{"family": "Lin", "period": {"end": "2030-01-01", "periodNew": 11}, "nameNew": 12}],
                "telecom": [{"system": "phone", "value": "555", "contactNew": 13}],
                "contact": [{"name": {"text": "Mom", "nameNew": 14}, "contactNew": 15}],
                "communication": [{"language": {"text": "English", "languageNew": 16}, "commNew": 17}],
                "link": [{"other": {"reference": "Patient/2"}, "type": "seealso", "linkNew": 18}]
            }
        }]
    }"#;
    let resource = round_trip(text);
    let bundle = resource.as_bundle().expect("typed bundle");
    assert!(bundle.extra.contains_key("bundleNew"));
    assert!(bundle.entry[0].extra.contains_key("entryNew"));
    let patient = bundle.entry[0]
        .resource
        .as_ref()
        .and_then(Resource::as_patient)
        .expect("typed patient");
    assert_eq!(patient.mrn(), Some("E4005"));
    assert!(
        patient.identifier[0]
            .assigner
            .as_ref()
            .expect("assigner")
            .extra
            .contains_key("referenceNew")
    );
}

/// One resource per choice variant of the typed models, with the member it must use.
fn choice_cases() -> Vec<(&'static str, Value)> {
    let observation = |member: &'static str, value: Value| {
        let mut resource =
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        resource[member] = value;
        (member, resource)
    };
    let condition = |member: &'static str, value: Value| {
        let mut resource =
            json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"}});
        resource[member] = value;
        (member, resource)
    };
    let request = |member: &'static str, value: Value| {
        let mut resource = json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p"}
        });
        resource[member] = value;
        (member, resource)
    };
    let patient = |member: &'static str, value: Value| {
        let mut resource = json!({"resourceType": "Patient"});
        resource[member] = value;
        (member, resource)
    };
    let quantity =
        json!({"value": 1.5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"});
    let range = json!({"low": {"value": 1}, "high": {"value": 2}});
    let period = json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-02"});
    vec![
        observation("valueQuantity", quantity.clone()),
        observation(
            "valueCodeableConcept",
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}),
        ),
        observation("valueString", json!("text")),
        observation("valueBoolean", json!(true)),
        observation("valueInteger", json!(-4)),
        observation("valueRange", range.clone()),
        observation(
            "valueRatio",
            json!({"numerator": {"value": 1}, "denominator": {"value": 8}}),
        ),
        observation(
            "valueSampledData",
            json!({"origin": {"value": 0}, "period": 0.5, "dimensions": 1, "data": "1 E 3"}),
        ),
        observation("valueTime", json!("12:30:00")),
        observation("valueDateTime", json!("2024-03-01T10:00:00+01:00")),
        observation("valuePeriod", period.clone()),
        observation("effectiveDateTime", json!("2024")),
        observation("effectivePeriod", period.clone()),
        observation(
            "effectiveTiming",
            json!({"event": ["2024-01-01T00:00:00Z"], "code": {"text": "QD"}}),
        ),
        observation("effectiveInstant", json!("2024-01-01T00:00:00.000Z")),
        condition("onsetDateTime", json!("2001-02")),
        condition(
            "onsetAge",
            json!({"value": 40, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}),
        ),
        condition("onsetPeriod", period.clone()),
        condition("onsetRange", range.clone()),
        condition("onsetString", json!("in childhood")),
        condition("abatementDateTime", json!("2002-03-04")),
        condition("abatementAge", json!({"value": 41})),
        condition("abatementPeriod", period.clone()),
        condition("abatementRange", range.clone()),
        condition("abatementString", json!("resolved")),
        request(
            "medicationCodeableConcept",
            json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "310965"}]}),
        ),
        request("medicationReference", json!({"reference": "Medication/m"})),
        request("reportedBoolean", json!(false)),
        request("reportedReference", json!({"reference": "Practitioner/pr"})),
        patient("deceasedBoolean", json!(false)),
        patient("deceasedDateTime", json!("2020-01-01T00:00:00Z")),
        patient("multipleBirthBoolean", json!(true)),
        patient("multipleBirthInteger", json!(2)),
    ]
}

#[test]
fn every_choice_variant_of_the_typed_models_round_trips() {
    for (member, resource) in choice_cases() {
        let text = serde_json::to_string(&resource).expect("case text");
        let parsed = round_trip(&text);
        assert_typed(&parsed);
        let found = match &parsed {
            Resource::Observation(observation) => observation
                .value
                .as_ref()
                .map(ObservationValue::member_name)
                .or(observation
                    .effective
                    .as_ref()
                    .map(ObservationEffective::member_name)),
            Resource::Condition(condition) => condition
                .onset
                .as_ref()
                .map(ConditionOnset::member_name)
                .or(condition
                    .abatement
                    .as_ref()
                    .map(ConditionAbatement::member_name)),
            Resource::MedicationRequest(request) => request
                .medication
                .as_ref()
                .map(MedicationRequestMedication::member_name)
                .or(request
                    .reported
                    .as_ref()
                    .map(MedicationRequestReported::member_name)),
            Resource::Patient(patient) => patient
                .deceased
                .as_ref()
                .map(PatientDeceased::member_name)
                .or(patient
                    .multiple_birth
                    .as_ref()
                    .map(PatientMultipleBirth::member_name)),
            other => panic!("unexpected {}", other.resource_type()),
        };
        assert_eq!(found, Some(member), "{text}");
    }
}

#[test]
fn every_choice_variant_inside_datatypes_round_trips() {
    let text = r#"{
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        "note": [
            {"authorReference": {"reference": "Practitioner/1"}, "text": "a"},
            {"authorString": "Dr. B", "time": "2024-01-01", "text": "b"}
        ],
        "dosageInstruction": [
            {"asNeededBoolean": true, "doseAndRate": [{"doseQuantity": {"value": 1}, "rateRatio": {"numerator": {"value": 1}, "denominator": {"value": 2}}}]},
            {"asNeededCodeableConcept": {"text": "pain"}, "doseAndRate": [{"doseRange": {"low": {"value": 1}}, "rateRange": {"high": {"value": 3}}}, {"rateQuantity": {"value": 5, "unit": "mL/h"}}]}
        ],
        "substitution": {"allowedBoolean": false}
    }"#;
    let resource = round_trip(text);
    let request = resource.as_medication_request().expect("typed");
    assert!(matches!(
        request.note[0].author,
        Some(AnnotationAuthor::Reference(_))
    ));
    assert!(matches!(
        request.note[1].author,
        Some(AnnotationAuthor::String(_))
    ));
    let [first, second] = &request.dosage_instruction[..] else {
        panic!("two dosages expected");
    };
    assert!(matches!(
        first.as_needed,
        Some(DosageAsNeeded::Boolean(true))
    ));
    assert!(matches!(
        second.as_needed,
        Some(DosageAsNeeded::CodeableConcept(_))
    ));
    assert!(matches!(
        first.dose_and_rate[0].dose,
        Some(DoseAmount::Quantity(_))
    ));
    assert!(matches!(
        first.dose_and_rate[0].rate,
        Some(DoseRate::Ratio(_))
    ));
    assert!(matches!(
        second.dose_and_rate[0].dose,
        Some(DoseAmount::Range(_))
    ));
    assert!(matches!(
        second.dose_and_rate[0].rate,
        Some(DoseRate::Range(_))
    ));
    assert!(matches!(
        second.dose_and_rate[1].rate,
        Some(DoseRate::Quantity(_))
    ));
    let substitution = request.substitution.as_ref().expect("substitution");
    assert_eq!(
        substitution.allowed,
        Some(SubstitutionAllowed::Boolean(false))
    );
    let concept = round_trip(
        r#"{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{},"substitution":{"allowedCodeableConcept":{"text":"generic"}}}"#,
    );
    let allowed = &concept
        .as_medication_request()
        .expect("typed")
        .substitution
        .as_ref()
        .expect("substitution")
        .allowed;
    assert!(matches!(
        allowed,
        Some(SubstitutionAllowed::CodeableConcept(_))
    ));
}

#[test]
fn two_members_of_one_choice_are_rejected_with_their_path() {
    let text = r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Condition","subject":{},"onsetDateTime":"2020","onsetString":"x"}}]}"#;
    let error = model::from_str::<Bundle>(text).expect_err("duplicate choice");
    assert_eq!(error.path(), "entry[0].resource.onsetString");
    let cause = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        cause.contains("`onsetDateTime` and `onsetString` are both present"),
        "{cause}"
    );
}

#[test]
fn resources_without_resource_type_are_rejected_naming_the_entry() {
    let text = r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient"}},{"fullUrl":"x","resource":{"id":"nope","name":[]}}]}"#;
    let error = model::from_str::<Bundle>(text).expect_err("missing resourceType");
    assert_eq!(error.path(), "entry[1].resource");
    let cause = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(cause.contains("missing member `resourceType`"), "{cause}");
}

#[test]
fn operation_outcome_and_capability_statement_round_trip() {
    let outcome = round_trip(
        r#"{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing","details":{"coding":[{"system":"urn:oid:1.2.840.114350.1.13.0.1.7.2.657369","code":"4101","display":"Resource request returns no results."}],"text":"Resource request returns no results."},"location":["/f:patient"],"expression":["patient"]}]}"#,
    );
    let outcome = outcome.as_operation_outcome().expect("typed");
    assert!(outcome.has_epic_code("4101"));
    assert!(!outcome.is_error());
    let statement = round_trip(
        r#"{"resourceType":"CapabilityStatement","status":"active","date":"2024-01-01","kind":"instance","fhirVersion":"4.0.1","format":["json","xml"],"rest":[{"mode":"server","security":{"extension":[{"url":"http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris","extension":[{"url":"token","valueUri":"https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token"}]}]},"resource":[{"type":"Patient","interaction":[{"code":"read"}],"searchParam":[{"name":"_id","type":"token"}]}]}],"messaging":[{"documentation":"kept"}]}"#,
    );
    let statement = statement.as_capability_statement().expect("typed");
    assert_eq!(
        statement.oauth_uris().and_then(|uris| uris.token),
        Some("https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token")
    );
    assert!(statement.extra.contains_key("messaging"));
}

#[test]
fn every_sandbox_generated_resource_round_trips() {
    use epic_fhir_sandbox::generate::{GenerateConfig, generate};

    let mut resources = Vec::new();
    let summary = generate(&GenerateConfig::default(), &mut |resource| {
        resources.push(resource)
    })
    .expect("default configuration generates");
    assert_eq!(summary.total, resources.len());
    let mut typed = 0;
    for value in resources {
        // The generator's JSON has sorted keys, so this exercises the path where
        // `resourceType` is not the first member; writing the model back puts it first, and
        // parsing that text takes the one-pass path.
        let sorted = serde_json::to_string(&value).expect("generated JSON");
        let resource = round_trip(&sorted);
        assert_typed(&resource);
        let server_order = serde_json::to_string(&resource).expect("model writes");
        assert_eq!(round_trip(&server_order), resource);
        if resource.as_raw().is_none() {
            typed += 1;
        }
    }
    assert!(typed > 0, "no generated resource has a typed model");
}
