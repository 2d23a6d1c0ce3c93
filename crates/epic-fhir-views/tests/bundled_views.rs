//! The ready views in `views/` on the Synthea sample (`data/synthea-r4`, or
//! `EPIC_FHIR_SYNTHEA_DIR`): row counts and values checked against the same facts computed
//! here directly from the JSON, without FHIRPath.

use std::io::BufRead;
use std::path::PathBuf;

use epic_fhir_views::{ViewDefinition, rows_as_json};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn synthea(resource_type: &str) -> Vec<String> {
    let dir = std::env::var("EPIC_FHIR_SYNTHEA_DIR")
        .map_or_else(|_| root().join("data/synthea-r4"), PathBuf::from);
    let file = std::fs::File::open(dir.join(format!("{resource_type}.ndjson.gz")))
        .expect("the Synthea sample is in data/synthea-r4");
    std::io::BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(Result::unwrap)
        .collect()
}

fn view(name: &str) -> ViewDefinition {
    let bytes = std::fs::read(root().join("views").join(format!("{name}.json"))).unwrap();
    let view = ViewDefinition::from_slice(&bytes).unwrap();
    assert_eq!(view.name(), Some(name));
    view
}

fn view_rows(name: &str, resource_type: &str) -> (Vec<Value>, Vec<Value>) {
    let view = view(name);
    assert_eq!(view.resource(), resource_type);
    let lines = synthea(resource_type);
    let mut rows = Vec::new();
    for line in &lines {
        rows.extend(rows_as_json(&view, line).unwrap());
    }
    let resources = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (rows, resources)
}

fn codes(concept: &Value, system: &str) -> Vec<String> {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["system"] == system)
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

fn has_category(resource: &Value, code: &str) -> bool {
    resource["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|c| c["code"] == code)
}

fn reference_id(reference: &Value) -> Value {
    reference["reference"]
        .as_str()
        .and_then(|r| r.split_once('/'))
        .map_or(Value::Null, |(_, id)| Value::from(id))
}

#[test]
fn every_bundled_view_is_valid_and_named_after_its_file() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("views"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "allergies",
            "blood_pressure",
            "conditions",
            "encounters",
            "immunizations",
            "lab_results",
            "medication_requests",
            "patient_demographics",
            "vital_signs"
        ]
    );
    for name in names {
        let view = view(&name);
        assert!(
            view.columns().iter().all(|c| c.declared),
            "{name}: every column has a type"
        );
    }
}

#[test]
fn patient_demographics() {
    let (rows, patients) = view_rows("patient_demographics", "Patient");
    assert_eq!(rows.len(), 200);
    for (row, patient) in rows.iter().zip(&patients) {
        assert_eq!(row["id"], patient["id"]);
        let mrn = patient["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                codes(&i["type"], "http://terminology.hl7.org/CodeSystem/v2-0203")
                    .contains(&"MR".to_owned())
            })
            .map(|i| i["value"].clone())
            .unwrap();
        assert_eq!(row["mrn"], mrn);
        let official = patient["name"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["use"] == "official")
            .unwrap();
        assert_eq!(row["family"], official["family"]);
        let given: Vec<&str> = official["given"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        assert_eq!(row["given"], given.join(" "));
        assert_eq!(row["gender"], patient["gender"]);
        assert_eq!(row["birth_date"], patient["birthDate"]);
        assert_eq!(row["city"], patient["address"][0]["city"]);
        assert_eq!(
            row["deceased_date_time"],
            patient
                .get("deceasedDateTime")
                .cloned()
                .unwrap_or(Value::Null)
        );
        assert!(row["race"].is_string(), "{row}");
    }
}

#[test]
fn vital_signs_with_blood_pressure_components_as_rows() {
    let (rows, observations) = view_rows("vital_signs", "Observation");
    let vitals: Vec<&Value> = observations
        .iter()
        .filter(|o| has_category(o, "vital-signs"))
        .collect();
    let expected: usize = vitals
        .iter()
        .map(|o| o["component"].as_array().map_or(1, Vec::len))
        .sum();
    assert_eq!((vitals.len(), rows.len()), (9028, expected));
    assert_eq!(expected, 10_840);
    // Rows come in resource order: walk them together.
    let mut next = rows.iter();
    for observation in vitals {
        let parts: Vec<&Value> = match observation["component"].as_array() {
            Some(components) => components.iter().collect(),
            None => vec![observation],
        };
        for part in parts {
            let row = next.next().unwrap();
            assert_eq!(row["id"], observation["id"]);
            assert_eq!(row["patient_id"], reference_id(&observation["subject"]));
            assert_eq!(row["encounter_id"], reference_id(&observation["encounter"]));
            assert_eq!(row["effective"], observation["effectiveDateTime"]);
            assert_eq!(
                row["code"],
                Value::from(codes(&part["code"], "http://loinc.org")[0].clone())
            );
            assert_eq!(row["value"], part["valueQuantity"]["value"], "{row}");
            assert_eq!(row["unit"], part["valueQuantity"]["code"]);
            assert_eq!(
                row["panel_code"],
                Value::from(codes(&observation["code"], "http://loinc.org")[0].clone())
            );
        }
    }
}

#[test]
fn blood_pressure_as_columns() {
    let (rows, observations) = view_rows("blood_pressure", "Observation");
    let panels: Vec<&Value> = observations
        .iter()
        .filter(|o| codes(&o["code"], "http://loinc.org") == ["55284-4"])
        .collect();
    assert_eq!(rows.len(), panels.len());
    assert_eq!(rows.len(), 1812);
    let mut without_unit = 0;
    for (row, panel) in rows.iter().zip(panels) {
        let component = |code: &str| {
            panel["component"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| codes(&c["code"], "http://loinc.org") == [code])
                .map(|c| c["valueQuantity"]["value"].clone())
                .unwrap()
        };
        assert_eq!(row["systolic"], component("8480-6"));
        assert_eq!(row["diastolic"], component("8462-4"));
        // The unit is the components' UCUM code, else their unit text. Synthea writes 45 of
        // its panels with a bare value and system, no code or unit: those rows have none.
        let quantity = &panel["component"][0]["valueQuantity"];
        let unit = match (&quantity["code"], &quantity["unit"]) {
            (Value::Null, Value::Null) => {
                without_unit += 1;
                Value::Null
            }
            (Value::Null, unit) => unit.clone(),
            (code, _) => code.clone(),
        };
        assert_eq!(row["unit"], unit, "{row}");
        if !unit.is_null() {
            assert_eq!(row["unit"], "mm[Hg]");
        }
    }
    assert_eq!(without_unit, 45);
}

#[test]
fn lab_results() {
    let (rows, observations) = view_rows("lab_results", "Observation");
    let labs: Vec<&Value> = observations
        .iter()
        .filter(|o| has_category(o, "laboratory"))
        .collect();
    assert_eq!(rows.len(), labs.len());
    assert_eq!(rows.len(), 16_797);
    for (row, lab) in rows.iter().zip(labs) {
        assert_eq!(
            row["code"],
            Value::from(codes(&lab["code"], "http://loinc.org")[0].clone())
        );
        assert_eq!(row["value"], lab["valueQuantity"]["value"]);
        assert_eq!(
            row["value_code"],
            lab["valueCodeableConcept"]["coding"][0]["code"]
        );
    }
}

#[test]
fn conditions_medications_encounters_allergies_immunizations() {
    let (rows, conditions) = view_rows("conditions", "Condition");
    assert_eq!(rows.len(), 1446);
    for (row, condition) in rows.iter().zip(&conditions) {
        assert_eq!(
            row["snomed_code"],
            Value::from(codes(&condition["code"], "http://snomed.info/sct")[0].clone())
        );
        assert_eq!(
            row["clinical_status"],
            condition["clinicalStatus"]["coding"][0]["code"]
        );
        assert_eq!(row["onset"], condition["onsetDateTime"]);
        assert_eq!(
            row["icd10_code"],
            Value::Null,
            "Synthea codes conditions in SNOMED CT only"
        );
    }

    let (rows, requests) = view_rows("medication_requests", "MedicationRequest");
    assert_eq!(rows.len(), 1478);
    for (row, request) in rows.iter().zip(&requests) {
        let rxnorm = codes(
            &request["medicationCodeableConcept"],
            "http://www.nlm.nih.gov/research/umls/rxnorm",
        );
        assert_eq!(row["rxnorm_code"], Value::from(rxnorm[0].clone()));
        assert_eq!(row["authored_on"], request["authoredOn"]);
        assert_eq!(row["patient_id"], reference_id(&request["subject"]));
    }

    let (rows, encounters) = view_rows("encounters", "Encounter");
    assert_eq!(rows.len(), 5680);
    for (row, encounter) in rows.iter().zip(&encounters) {
        assert_eq!(row["class"], encounter["class"]["code"]);
        assert_eq!(row["period_start"], encounter["period"]["start"]);
        assert_eq!(row["type_code"], encounter["type"][0]["coding"][0]["code"]);
    }

    let (rows, allergies) = view_rows("allergies", "AllergyIntolerance");
    assert_eq!(rows.len(), 112);
    for (row, allergy) in rows.iter().zip(&allergies) {
        assert_eq!(row["code"], allergy["code"]["coding"][0]["code"]);
        assert_eq!(row["patient_id"], reference_id(&allergy["patient"]));
        assert_eq!(
            row["criticality"],
            allergy.get("criticality").cloned().unwrap_or(Value::Null)
        );
    }

    let (rows, immunizations) = view_rows("immunizations", "Immunization");
    assert_eq!(rows.len(), 2418);
    for (row, immunization) in rows.iter().zip(&immunizations) {
        assert_eq!(
            row["cvx_code"],
            Value::from(
                codes(&immunization["vaccineCode"], "http://hl7.org/fhir/sid/cvx")[0].clone()
            )
        );
        assert_eq!(row["occurrence"], immunization["occurrenceDateTime"]);
        assert_eq!(row["primary_source"], immunization["primarySource"]);
    }
}
