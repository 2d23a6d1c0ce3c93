//! `epic-fhir validate` end to end: problems as JSON lines with file, line and path; gzip,
//! Bundles, single resources and folders; a bulk export's output folder as it is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use epic_fhir::auth::SigningKey;
use epic_fhir_sandbox::auth::ClientConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_epic-fhir"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "epic-fhir-cli-validate-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn validate(paths: &[&Path]) -> Output {
    bin().arg("validate").args(paths).output().expect("runs")
}

/// The JSON lines on stdout.
fn problems(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("utf-8 stdout")
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn every_problem_is_one_json_line_naming_file_line_and_path() {
    let dir = temp_dir("problems");
    let ndjson = [
        r#"{"resourceType":"Patient","id":"ok","gender":"female","birthDate":"1987-09-12"}"#,
        r#"{"resourceType":"Patient","id":"p2","gender":"f"}"#,
        "",
        r#"{"resourceType":"Observation","id":"o1","code":{"text":"Glucose"},"valueQuantity":{"value":5.5},"valueString":"x"}"#,
        r#"{"resourceType":"Patient","id":"p3""#,
    ]
    .join("\n");
    std::fs::write(dir.join("Patient.ndjson.gz"), gzip(ndjson.as_bytes())).expect("write");
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/ok"}}},
            {"resource": {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/ok"}, "severeness": "high"}}
        ]
    });
    std::fs::write(
        dir.join("bundle.json"),
        serde_json::to_string_pretty(&bundle).expect("json"),
    )
    .expect("write");
    std::fs::write(
        dir.join("single.json"),
        r#"{"resourceType":"Practitioner","id":"dr","name":[{"family":"Who"}]}"#,
    )
    .expect("write");
    // Hidden files (an export's state, partial downloads) are not resources.
    std::fs::write(dir.join(".epic-fhir-export.json"), "{\"not\":\"fhir\"}").expect("write");
    // Nor are files without a JSON name found in a folder (a README, a checksum list).
    std::fs::write(dir.join("README.md"), "# Synthetic test data\n").expect("write");
    std::fs::write(dir.join("SHA256SUMS"), "0000  Patient.ndjson.gz\n").expect("write");

    let output = validate(&[&dir]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "errors exit 1: {stderr}");
    let problems = problems(&output);
    // A missing required element is reported on its object, naming the element.
    assert!(
        problems.iter().any(|p| p["line"] == 4
            && p["path"] == "Observation"
            && p["message"].as_str().is_some_and(|m| m.contains("status"))),
        "{problems:#?}"
    );
    let found: Vec<(String, u64, String, String)> = problems
        .iter()
        .map(|p| {
            assert!(p["message"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
            (
                Path::new(p["file"].as_str().expect("file"))
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                p["line"].as_u64().expect("line"),
                p["path"].as_str().expect("path").to_owned(),
                p["severity"].as_str().expect("severity").to_owned(),
            )
        })
        .collect();
    let expect = |file: &str, line: u64, path: &str| {
        assert!(
            found
                .iter()
                .any(|(f, l, p, s)| f == file && *l == line && p == path && s == "error"),
            "no error at {file}:{line} {path} in {found:#?}"
        );
    };
    expect("Patient.ndjson.gz", 2, "Patient.gender");
    expect("Patient.ndjson.gz", 4, "Observation.valueString");
    expect("bundle.json", 1, "Bundle.entry[1].resource.severeness");
    assert!(
        found
            .iter()
            .any(|(f, l, _, s)| f == "Patient.ndjson.gz" && *l == 5 && s == "error"),
        "the truncated line 5 is reported: {found:#?}"
    );
    assert!(
        !found
            .iter()
            .any(|(f, l, _, _)| (f == "Patient.ndjson.gz" && *l == 1) || f == "single.json"),
        "valid resources have no problems: {found:#?}"
    );
    assert!(
        !found.iter().any(|(f, ..)| f.starts_with('.')),
        "{found:#?}"
    );
    assert!(
        !found
            .iter()
            .any(|(f, ..)| f == "README.md" || f == "SHA256SUMS"),
        "{found:#?}"
    );
    assert!(
        stderr.contains("validated 6 resources in 3 files"),
        "summary: {stderr}"
    );
    // A file named on the command line is read whatever its name.
    let output = validate(&[&dir.join("README.md")]);
    assert_eq!(output.status.code(), Some(1), "a README is not FHIR JSON");

    // The valid single resource alone: exit 0, nothing on stdout.
    let output = validate(&[&dir.join("single.json")]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty());

    // A missing path is bad usage.
    let output = validate(&[&dir.join("missing.ndjson")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.ndjson"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bulk_export_folder_validates_as_it_is() {
    let dir = temp_dir("export");
    let key = SigningKey::generate_ec_p384().expect("key");
    std::fs::write(
        dir.join("private.pem"),
        key.to_pkcs8_pem().expect("pem").expose_secret(),
    )
    .expect("write key");
    let jwks = serde_json::to_value(key.jwk_set()).expect("jwks");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = SandboxConfig::default();
    config.patients = 6;
    config
        .clients
        .push(ClientConfig::with_jwks("cli-validate", &jwks).expect("client"));
    let sandbox = runtime.block_on(Sandbox::start(config)).expect("sandbox");

    let out = dir.join("out");
    let output = bin()
        .args(["export", "--group", "eAllSandboxPatients.Group3", "--out"])
        .arg(&out)
        .args(["--base-url", sandbox.base_url().as_str()])
        .args(["--client-id", "cli-validate", "--private-key"])
        .arg(dir.join("private.pem"))
        .env_remove("EPIC_FHIR_CONFIG")
        .output()
        .expect("export runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = validate(&[&out]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the sandbox's export validates clean: {stderr}\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let resources: u64 = stderr
        .split("validated ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary: {stderr}"));
    assert!(resources > 100, "the export has the group's data: {stderr}");
    drop(sandbox);
    std::fs::remove_dir_all(&dir).ok();
}
