//! `epic-fhir view` and `epic-fhir export --view` end to end: the bundled views on a sandbox
//! export, flattened as the files arrive and again from the export folder; usage errors; the
//! conformance report; rows on stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use epic_fhir::auth::SigningKey;
use epic_fhir_sandbox::auth::ClientConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const CLIENT_ID: &str = "cli-views";
const GROUP: &str = "eAllSandboxPatients.Group3";

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_epic-fhir"));
    for var in [
        "EPIC_FHIR_BASE_URL",
        "EPIC_CLIENT_ID",
        "EPIC_PRIVATE_KEY",
        "EPIC_KEY_ID",
        "EPIC_TOKEN_URL",
        "EPIC_SCOPE",
    ] {
        command.env_remove(var);
    }
    command
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("epic-fhir-cli-views-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every line of every `Type-*.ndjson` file of an export folder.
fn exported(dir: &Path, resource_type: &str) -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{resource_type}-")) && n.ends_with(".ndjson")
            })
        })
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn table(dir: &Path, view: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(view).join("part-00000.ndjson"))
        .unwrap_or_else(|e| panic!("{view}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Rows in a canonical order, to compare tables whose row order is not defined.
fn sorted(rows: Vec<Value>) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(Value::to_string).collect();
    rows.sort();
    rows
}

#[test]
fn an_export_flattened_as_it_arrives_and_again_from_its_folder() {
    let dir = temp_dir("export");
    let key = SigningKey::generate_ec_p384().unwrap();
    std::fs::write(
        dir.join("private.pem"),
        key.to_pkcs8_pem().unwrap().expose_secret(),
    )
    .unwrap();
    let jwks = serde_json::to_value(key.jwk_set()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = SandboxConfig::default();
    config.patients = 12;
    config.bulk.max_resources_per_file = 1000;
    config
        .clients
        .push(ClientConfig::with_jwks(CLIENT_ID, &jwks).unwrap());
    let sandbox = runtime.block_on(Sandbox::start(config)).unwrap();

    let export = dir.join("export");
    let tables = dir.join("tables");
    let output = bin()
        .args(["export", "--group", GROUP, "--out"])
        .arg(&export)
        .arg("--view")
        .arg(root().join("views"))
        .arg("--view-out")
        .arg(&tables)
        .args([
            "--format",
            "ndjson",
            "--base-url",
            sandbox.base_url().as_str(),
            "--client-id",
            CLIENT_ID,
            "--private-key",
        ])
        .arg(dir.join("private.pem"))
        .output()
        .unwrap();
    ok(&output);
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        summary["views"]["views"].as_array().unwrap().len(),
        9,
        "{summary}"
    );

    // Patients: one row each, with Epic's MRN.
    let patients = exported(&export, "Patient");
    let rows = table(&tables, "patient_demographics");
    assert_eq!(rows.len(), patients.len());
    assert!(rows.len() >= 12);
    for (row, patient) in rows.iter().zip(&patients) {
        assert_eq!(row["id"], patient["id"]);
        let mrn = patient["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["system"] == "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0")
            .map(|i| i["value"].clone());
        assert_eq!(Some(row["mrn"].clone()), mrn, "{row}");
    }
    let lopez = rows
        .iter()
        .find(|r| r["id"] == "erXuFYUfucBZaryVksYEcMg3")
        .expect("Camila Lopez");
    assert_eq!(lopez["mrn"], "E4007");
    assert_eq!(lopez["birth_date"], "1987-09-12");

    // Vital signs: one row per measurement, blood pressure components as rows.
    let observations = exported(&export, "Observation");
    let expected: usize = observations
        .iter()
        .filter(|o| o["category"].to_string().contains("\"vital-signs\""))
        .map(|o| o["component"].as_array().map_or(1, Vec::len))
        .sum();
    let vitals = table(&tables, "vital_signs");
    assert_eq!(vitals.len(), expected);
    assert!(
        vitals
            .iter()
            .any(|r| r["code"] == "8480-6" && r["panel_code"] == "85354-9")
    );
    assert!(vitals.iter().all(|r| r["patient_id"].is_string()));
    let labs = table(&tables, "lab_results");
    assert!(!labs.is_empty());
    for (view, resource_type) in [
        ("conditions", "Condition"),
        ("medication_requests", "MedicationRequest"),
        ("encounters", "Encounter"),
        ("allergies", "AllergyIntolerance"),
        ("immunizations", "Immunization"),
    ] {
        assert_eq!(
            table(&tables, view).len(),
            exported(&export, resource_type).len(),
            "{view}"
        );
    }
    assert!(
        table(&tables, "medication_requests")
            .iter()
            .all(|r| r["rxnorm_code"].is_string())
    );
    assert!(
        table(&tables, "conditions")
            .iter()
            .all(|r| r["snomed_code"].is_string() || r["icd10_code"].is_string())
    );

    // The export folder as input gives the same tables.
    let again = dir.join("again");
    let output = bin()
        .args(["view", "run"])
        .arg(root().join("views"))
        .arg("--input")
        .arg(&export)
        .arg("--out")
        .arg(&again)
        .args(["--format", "ndjson"])
        .output()
        .unwrap();
    ok(&output);
    for view in [
        "patient_demographics",
        "vital_signs",
        "lab_results",
        "conditions",
    ] {
        // Files are flattened in the order they finish downloading during the export and in
        // manifest order from the folder: the same rows, perhaps in another order.
        assert_eq!(
            sorted(table(&again, view)),
            sorted(table(&tables, view)),
            "{view}"
        );
    }
    drop(sandbox);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_name_the_problem_and_exit_2() {
    let dir = temp_dir("usage");
    let view = dir.join("bad.json");
    std::fs::write(&view, r#"{"resource": "Patient", "select": [{"column": [{"name": "x", "path": "name.given.frist()"}]}]}"#).unwrap();
    let input = dir.join("in.ndjson");
    std::fs::write(&input, "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n").unwrap();
    let output = bin()
        .args(["view", "run"])
        .arg(&view)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("select[0].column[0].path"), "{stderr}");
    assert!(stderr.contains("unknown function frist()"), "{stderr}");

    let good = dir.join("names.json");
    std::fs::write(
        &good,
        r#"{"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}"#,
    )
    .unwrap();
    let output = bin()
        .args(["view", "run"])
        .arg(&good)
        .arg("--input")
        .arg(&input)
        .args(["--out", "-", "--format", "parquet"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("stdout takes the rows of one view, as CSV or NDJSON")
    );

    // CSV rows on stdout; the view took its table name from its file.
    let output = bin()
        .args(["view", "run"])
        .arg(&good)
        .arg("--input")
        .arg(&input)
        .args(["--out", "-", "--format", "csv"])
        .output()
        .unwrap();
    ok(&output);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "id\r\na\r\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn view_test_writes_the_official_report() {
    let dir = temp_dir("report");
    let report = dir.join("test_report.json");
    let output = bin()
        .args(["view", "test"])
        .arg(root().join("data/sql-on-fhir-v2/tests"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    ok(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("134 passed, 0 failed"));
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report.as_object().unwrap().len(), 22);
    assert_eq!(
        report["basic.json"]["tests"][0],
        serde_json::json!({"name": "basic attribute", "result": {"passed": true}})
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gzipped_ndjson_on_stdin_gives_rows_on_stdout() {
    use std::io::Write;

    let dir = temp_dir("stdin");
    let view = dir.join("names.json");
    std::fs::write(
        &view,
        r#"{"name": "names", "resource": "Patient", "select": [
            {"column": [{"name": "id", "path": "getResourceKey()"}]},
            {"forEachOrNull": "name", "column": [{"name": "family", "path": "family"}]}]}"#,
    )
    .unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(
        b"{\"resourceType\":\"Patient\",\"id\":\"a\",\"name\":[{\"family\":\"Lin\"},{\"family\":\"Lopez\"}]}\n\
          {\"resourceType\":\"Observation\",\"id\":\"o\"}\n\
          {\"resourceType\":\"Patient\",\"id\":\"b\"}\n",
    )
    .unwrap();
    let input = gzip.finish().unwrap();
    let mut child = bin()
        .args(["view", "run"])
        .arg(&view)
        .args(["--input", "-", "--out", "-", "--format", "ndjson"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    ok(&output);
    let rows: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({"id": "a", "family": "Lin"}),
            serde_json::json!({"id": "a", "family": "Lopez"}),
            serde_json::json!({"id": "b", "family": null}),
        ]
    );
    // The summary goes to stderr, so stdout holds only rows.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"resources\": 3"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
