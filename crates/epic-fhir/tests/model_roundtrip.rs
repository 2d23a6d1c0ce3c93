//! Round trips through the FHIR models as the SDK uses them: every resource the sandbox
//! generates, and Synthea observations inside a searchset Bundle, read into their typed models
//! and written back as the same JSON. (The models' own edge cases are tested in the
//! `epic-fhir-model` crate.)
//!
//! The Synthea data set is read from `EPIC_FHIR_SYNTHEA_DIR`, by default the copy in the
//! repository (`data/synthea-r4`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use epic_fhir::model::{self, Bundle, Observation, Resource};
use flate2::read::GzDecoder;
use serde_json::{Value, json};

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

/// Parses `text` as a `Resource`, checks it is typed, writes it back and checks the JSON is
/// unchanged.
fn round_trip(text: &str) -> Resource {
    let original: Value = serde_json::from_str(text).expect("input is JSON");
    let resource: Resource =
        model::from_str(text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    assert!(
        resource.as_unknown().is_none(),
        "{} was not parsed into its model",
        resource.resource_type()
    );
    let written = model::to_value(&resource);
    if let Some(difference) = first_difference("", &original, &written) {
        panic!("round trip changed {difference}\n{text}");
    }
    resource
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
            .all(|resource| resource.downcast_ref::<Observation>().is_some())
    );
    assert_eq!(model::to_value(&parsed), bundle);
    // Through serde_json too, as code that embeds models in its own types would.
    assert_eq!(serde_json::to_value(&parsed).expect("serde writes"), bundle);
    let via_serde: Bundle = serde_json::from_str(&text).expect("serde reads");
    assert_eq!(via_serde, parsed);
}

#[test]
fn every_synthea_file_has_its_typed_model() {
    for (resource_type, path) in synthea_files() {
        let line = read_lines(&path).next().expect("a first line");
        let resource = round_trip(&line);
        assert_eq!(resource.resource_type(), resource_type);
    }
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
    for value in resources {
        // The generator's JSON has sorted keys, so this exercises the path where
        // `resourceType` is not the first member; writing the model back puts it first, and
        // parsing that text takes the one-pass path.
        let sorted = serde_json::to_string(&value).expect("generated JSON");
        let resource = round_trip(&sorted);
        let server_order = model::to_string(&resource);
        assert!(
            server_order.starts_with(r#"{"resourceType":"#),
            "{server_order}"
        );
        assert_eq!(round_trip(&server_order), resource);
    }
}
