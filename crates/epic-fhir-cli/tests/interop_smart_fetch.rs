//! Interoperability: a real Epic-aware client from PyPI, unchanged, against the sandbox.
//!
//! SMART Fetch (the SMART on FHIR community's bulk-export and crawl tool) signs in with its own
//! Backend Services code, recognises Epic by the CapabilityStatement, runs a Group bulk export
//! and a per-patient crawl. Its records are compared, record for record, with what
//! `epic-fhir export` downloads of the same Group.
//!
//! `.ci/install-interop.sh` installs the tool (`.ci/run` calls it). Without it this test fails
//! and says how to install it: it never passes without having run the tool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use epic_fhir::auth::SigningKey;
use epic_fhir_sandbox::auth::ClientConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const CLIENT_ID: &str = "smart-fetch-interop";
const GROUP: &str = "eAllSandboxPatients.Group3";
/// The types SMART Fetch exports and crawls (its patient types), in its order.
const TYPES: &str = "Patient,Encounter,AllergyIntolerance,Condition,Device,DiagnosticReport,DocumentReference,EpisodeOfCare,Immunization,MedicationDispense,MedicationRequest,Observation,Procedure,ServiceRequest,Specimen";
/// The Observation categories SMART Fetch limits itself to on Epic (its default filter).
const OBSERVATION_CATEGORIES: [&str; 6] = [
    "social-history",
    "vital-signs",
    "imaging",
    "laboratory",
    "survey",
    "exam",
];
/// Types SMART Fetch does not crawl on Epic, whose searches need more than a patient.
const NOT_CRAWLED_ON_EPIC: [&str; 2] = ["EpisodeOfCare", "Specimen"];

/// The `smart-fetch` executable: `EPIC_FHIR_SMART_FETCH`, else the one the install script puts
/// under the workspace's `target/interop/venv`.
fn smart_fetch() -> PathBuf {
    if let Some(path) = std::env::var_os("EPIC_FHIR_SMART_FETCH") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/interop/venv/bin/smart-fetch")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("epic-fhir-interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every resource of the NDJSON files directly in `dir` (subfolders such as `error/` and
/// files of other content, like SMART Fetch's `log.ndjson`, aside), by type and id.
fn resources_in(dir: &Path) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !path.is_file()
            || !name.ends_with(".ndjson")
            || name == "log.ndjson"
            || name.starts_with("error-")
            || name.starts_with("deleted-")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let resource: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name} line {}: {e}", number + 1));
            let resource_type = resource["resourceType"]
                .as_str()
                .expect("resourceType")
                .to_owned();
            let id = resource["id"].as_str().expect("id").to_owned();
            let previous = out
                .entry(resource_type.clone())
                .or_default()
                .insert(id.clone(), resource);
            assert!(
                previous.is_none(),
                "{resource_type}/{id} appears twice in {}",
                dir.display()
            );
        }
    }
    out
}

fn ids(records: &BTreeMap<String, Value>) -> BTreeSet<&str> {
    records.keys().map(String::as_str).collect()
}

/// Asserts that `actual` holds exactly the records of `expected`, byte-for-byte as JSON values.
fn assert_same_records(
    what: &str,
    resource_type: &str,
    expected: &BTreeMap<String, Value>,
    actual: Option<&BTreeMap<String, Value>>,
) {
    let empty = BTreeMap::new();
    let actual = actual.unwrap_or(&empty);
    let (expected_ids, actual_ids) = (ids(expected), ids(actual));
    let missing: Vec<&str> = expected_ids
        .difference(&actual_ids)
        .take(5)
        .copied()
        .collect();
    let extra: Vec<&str> = actual_ids
        .difference(&expected_ids)
        .take(5)
        .copied()
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} {resource_type}: {} records, epic-fhir export {}; missing e.g. {missing:?}, extra e.g. {extra:?}",
        actual.len(),
        expected.len()
    );
    for (id, resource) in expected {
        assert_eq!(
            &actual[id], resource,
            "{what}: {resource_type}/{id} differs"
        );
    }
}

#[test]
fn smart_fetch_bulk_export_and_crawl_match_epic_fhir_export() {
    let tool = smart_fetch();
    let version = Command::new(&tool).arg("--version").output();
    let installed = version.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "the interop client is not installed at {} ({}): run `bash .ci/install-interop.sh` \
         (CI's .ci/run does), or set EPIC_FHIR_SMART_FETCH to a smart-fetch executable",
        tool.display(),
        match &version {
            Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            Err(error) => error.to_string(),
        }
    );

    let dir = temp_dir("smart-fetch");
    // The key SMART Fetch signs its assertions with: a PEM it reads itself (ES384 from P-384).
    let key = SigningKey::generate_ec_p384().expect("key");
    let key_path = dir.join("private.pem");
    std::fs::write(&key_path, key.to_pkcs8_pem().expect("pem").expose_secret()).expect("key");
    let jwks = serde_json::to_value(key.jwk_set()).expect("jwks");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = SandboxConfig::default();
    config.patients = 12;
    // Epic's one export per Group per client a day: SMART Fetch and `epic-fhir export --cleanup`
    // delete their exports, which frees the Group for the next one, as on Epic.
    config.bulk.group_export_window = Some(Duration::from_secs(24 * 3600));
    config
        .clients
        .push(ClientConfig::with_jwks(CLIENT_ID, &jwks).expect("client"));
    let sandbox: Sandbox = runtime.block_on(Sandbox::start(config)).expect("sandbox");
    let base = sandbox.base_url().as_str().trim_end_matches('/').to_owned();

    // The reference: the same Group through this project's CLI.
    let reference_dir = dir.join("epic-fhir-export");
    let output = Command::new(env!("CARGO_BIN_EXE_epic-fhir"))
        .env_remove("EPIC_FHIR_CONFIG")
        .args([
            "export",
            "--group",
            GROUP,
            "--type",
            TYPES,
            "--cleanup",
            "--out",
        ])
        .arg(&reference_dir)
        .args([
            "--base-url",
            &base,
            "--client-id",
            CLIENT_ID,
            "--private-key",
        ])
        .arg(&key_path)
        .output()
        .expect("epic-fhir runs");
    check(&output, "epic-fhir export");
    let reference = resources_in(&reference_dir);
    for resource_type in TYPES.split(',') {
        assert!(
            reference.get(resource_type).is_some_and(|r| !r.is_empty()),
            "the Group holds {resource_type}s to compare"
        );
    }
    // SMART Fetch asks Epic for Observations of six categories only; every generated
    // Observation has one of them, so the whole set is comparable.
    for (id, observation) in &reference["Observation"] {
        let categories: Vec<&str> = observation["category"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["coding"].as_array().into_iter().flatten())
            .filter_map(|c| c["code"].as_str())
            .collect();
        assert!(
            categories
                .iter()
                .any(|c| OBSERVATION_CATEGORIES.contains(c)),
            "Observation/{id} has categories {categories:?}"
        );
    }

    let smart_fetch = |subcommand: &str, out: &Path| -> Output {
        Command::new(&tool)
            .arg(subcommand)
            .args(["--group", GROUP, "--fhir-url", &base])
            .args(["--smart-client-id", CLIENT_ID, "--smart-key"])
            .arg(&key_path)
            .args(["--no-compression", "--verbose"])
            .arg(out)
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200")
            .output()
            .expect("smart-fetch runs")
    };

    // A Group bulk export, as SMART Fetch does it on Epic: every record the same.
    let bulk_dir = dir.join("smart-fetch-bulk");
    check(&smart_fetch("bulk", &bulk_dir), "smart-fetch bulk");
    let bulk = resources_in(&bulk_dir);
    for (resource_type, expected) in &reference {
        assert_same_records(
            "smart-fetch bulk",
            resource_type,
            expected,
            bulk.get(resource_type),
        );
    }
    assert_eq!(
        bulk.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>()
    );

    // A per-patient crawl (SMART Fetch exports the Group's Patients, then searches each
    // patient's records type by type, following next links): the same records, except the two
    // types it knows Epic cannot search by patient, which it skips once it has recognised Epic.
    let crawl_dir = dir.join("smart-fetch-crawl");
    check(&smart_fetch("crawl", &crawl_dir), "smart-fetch crawl");
    let crawl = resources_in(&crawl_dir);
    for (resource_type, expected) in &reference {
        if NOT_CRAWLED_ON_EPIC.contains(&resource_type.as_str()) {
            assert!(
                crawl.get(resource_type).is_none_or(BTreeMap::is_empty),
                "{resource_type} was crawled, so SMART Fetch did not recognise Epic"
            );
        } else {
            assert_same_records(
                "smart-fetch crawl",
                resource_type,
                expected,
                crawl.get(resource_type),
            );
        }
    }

    // SMART Fetch recognised Epic by the CapabilityStatement and sent Epic-Client-ID.
    let stats = sandbox.stats();
    assert!(
        stats.epic_client_id_requests > 50,
        "{} requests carried Epic-Client-ID",
        stats.epic_client_id_requests
    );
    // Each Epic-aware sign-in asked for scopes the registration does not name (no Group scope,
    // types beyond it); each got the registration and a token.
    assert!(stats.tokens_issued >= 3, "{stats:?}");

    drop(sandbox);
    drop(runtime);
    std::fs::remove_dir_all(&dir).ok();
}
