//! Round trips through the generated models: every resource read into its typed model and
//! written back must be the same JSON, byte for byte where the input is compact, and every
//! number with its exact text.
//!
//! The Synthea data set is read from `EPIC_FHIR_SYNTHEA_DIR`, by default the copy in the
//! repository (`data/synthea-r4`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use epic_fhir_model::{self as model, FhirResource, Observation, Patient, Resource};
use flate2::read::GzDecoder;
use serde_json::Value;

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
        files.len() >= 16,
        "expected the 16 Synthea files in {}",
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

/// The number tokens of a JSON text, in order, to check that decimals keep their text.
fn number_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if b == b'\\' {
                i += 1;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            {
                i += 1;
            }
            tokens.push(text[start..i].to_owned());
            continue;
        }
        i += 1;
    }
    tokens.sort();
    tokens
}

#[test]
fn every_synthea_resource_is_typed_and_written_back_unchanged() {
    let mut total = 0;
    for (resource_type, path) in synthea_files() {
        for (index, line) in read_lines(&path).enumerate() {
            let resource: Resource = model::from_str(&line)
                .unwrap_or_else(|error| panic!("{resource_type} line {}: {error}", index + 1));
            assert_eq!(resource.resource_type(), resource_type);
            assert!(
                resource.as_unknown().is_none(),
                "{resource_type} line {} was not typed",
                index + 1
            );
            let written = model::to_string(&resource);
            let original: Value = serde_json::from_str(&line).expect("valid JSON");
            let back: Value = serde_json::from_str(&written).expect("the writer writes JSON");
            assert_eq!(back, original, "{resource_type} line {} changed", index + 1);
            assert_eq!(
                number_tokens(&written),
                number_tokens(&line),
                "{resource_type} line {}: a number changed its text",
                index + 1
            );
            total += 1;
        }
    }
    assert_eq!(total, 59_484, "the Synthea set has 59,484 resources");
}

#[test]
fn synthea_resources_read_as_their_own_type_too() {
    for (resource_type, path) in synthea_files() {
        let Some(line) = read_lines(&path).next() else {
            continue;
        };
        let resource: Resource = model::from_str(&line).unwrap();
        // Reading through the concrete type gives the same value as through `Resource`.
        match resource_type.as_str() {
            "Patient" => {
                let typed: Patient = model::from_str(&line).unwrap();
                assert_eq!(Some(&typed), resource.downcast_ref::<Patient>());
                assert_eq!(typed.id(), resource.id());
            }
            "Observation" => {
                let typed: Observation = model::from_str(&line).unwrap();
                assert_eq!(resource.clone().into_typed::<Observation>().unwrap(), typed);
            }
            _ => {}
        }
    }
}
