//! `epic-fhir export` end to end against a sandbox in this process: a whole export, usage
//! errors, cancellation, and a process killed mid-download then resumed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use epic_fhir::auth::SigningKey;
use epic_fhir_sandbox::auth::ClientConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const CLIENT_ID: &str = "cli-export";
const GROUP: &str = "eAllSandboxPatients.Group3";

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_epic-fhir"));
    // Settings come only from the flags given here.
    for var in [
        "EPIC_FHIR_BASE_URL",
        "EPIC_CLIENT_ID",
        "EPIC_PRIVATE_KEY",
        "EPIC_KEY_ID",
        "EPIC_TOKEN_URL",
        "EPIC_SCOPE",
        "EPIC_FHIR_CONFIG",
    ] {
        command.env_remove(var);
    }
    command
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "epic-fhir-cli-export-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The visible files of an output folder.
fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("read"),
            )
        })
        .collect()
}

/// Partial downloads holding bytes.
fn partial_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    entry.file_name().to_string_lossy().ends_with(".part")
                        && entry.metadata().is_ok_and(|m| m.len() > 0)
                })
                .count()
        })
        .unwrap_or(0)
}

/// A sandbox with a registered client whose private key is in `dir/private.pem`.
struct Fixture {
    sandbox: Sandbox,
    dir: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn start(name: &str) -> Fixture {
        let dir = temp_dir(name);
        let key = SigningKey::generate_ec_p384().expect("key");
        std::fs::write(
            dir.join("private.pem"),
            key.to_pkcs8_pem().expect("pem").expose_secret(),
        )
        .expect("write key");
        let jwks = serde_json::to_value(key.jwk_set()).expect("jwks");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let mut config = SandboxConfig::default();
        config.patients = 12;
        config.bulk.max_resources_per_file = 1000;
        config
            .clients
            .push(ClientConfig::with_jwks(CLIENT_ID, &jwks).expect("client"));
        let sandbox = runtime.block_on(Sandbox::start(config)).expect("sandbox");
        Fixture {
            sandbox,
            dir,
            _runtime: runtime,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = bin();
        command
            .arg("export")
            .args(args)
            .args([
                "--base-url",
                self.sandbox.base_url().as_str(),
                "--client-id",
                CLIENT_ID,
                "--private-key",
            ])
            .arg(self.dir.join("private.pem"));
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runs")
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

#[test]
fn a_killed_export_resumes_to_the_same_files() {
    let f = Fixture::start("kill");

    // The reference: one uninterrupted export.
    let reference_dir = f.out("reference");
    let output = f.run(&["--group", GROUP, "--out", path(&reference_dir)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference = stdout_json(&output);
    let expected = files_in(&reference_dir);
    let total: u64 = expected.values().map(|b| b.len() as u64).sum();
    assert!(reference["resources"].as_u64().expect("resources") > 2000);
    assert_eq!(reference["types"]["Patient"]["files"], 1, "{reference:#}");
    assert!(expected.len() > 3);

    // The same export, slowed down and killed once a file is finished and another is
    // part-way.
    let dir = f.out("killed");
    let rate = (total / 4).max(1).to_string();
    let mut child = f
        .command(&[
            "--group",
            GROUP,
            "--out",
            path(&dir),
            "--parallel",
            "2",
            "--limit-rate",
            &rate,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if dir.exists() && !files_in(&dir).is_empty() && partial_files(&dir) > 0 {
            break;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the export ended ({status}) before it could be killed");
        }
        assert!(Instant::now() < deadline, "no partial download appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(dir.join(".epic-fhir-export.json").exists());
    let finished_before = files_in(&dir).len();
    assert!(finished_before < expected.len());

    // Resuming needs only the folder.
    let output = f.run(&["--resume", "--out", path(&dir)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout_json(&output);
    assert_eq!(
        files_in(&dir),
        expected,
        "byte-identical to the uninterrupted export"
    );
    assert_eq!(summary["resources"], reference["resources"]);
    assert_eq!(summary["types"], reference["types"]);
    assert_eq!(
        summary["files_reused"].as_u64(),
        Some(finished_before as u64)
    );
    assert!(
        summary["bytes_transferred"].as_u64().expect("bytes") < total,
        "{summary:#}"
    );
    assert_eq!(partial_files(&dir), 0);
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::start("usage");
    let out = f.out("usage");
    let cases: [(&[&str], &str); 6] = [
        (&["--out", path(&out)], "say what to export"),
        (
            &["--group", GROUP, "--system", "--out", path(&out)],
            "cannot be used with",
        ),
        (
            &[
                "--group",
                GROUP,
                "--since",
                "yesterday",
                "--out",
                path(&out),
            ],
            "--since",
        ),
        (&["--type", "Patient", "--out", path(&out)], "need a level"),
        (
            &["--group", GROUP, "--parallel", "0", "--out", path(&out)],
            "--parallel",
        ),
        (&["--resume", "--out", path(&out)], "no export to resume"),
    ];
    for (args, needle) in cases {
        let output = f.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let output = f.run(&["--group", "eNoSuchGroup", "--out", path(&out)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("404"));
}

#[test]
fn a_filtered_export_then_cancel() {
    let f = Fixture::start("cancel");
    let out = f.out("filtered");
    let output = f.run(&[
        "--group",
        GROUP,
        "--type",
        "Patient,Condition",
        "--type-filter",
        "Condition?clinical-status=active",
        "--out",
        path(&out),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout_json(&output);
    let types: Vec<&String> = summary["types"]
        .as_object()
        .expect("types")
        .keys()
        .collect();
    assert_eq!(types, ["Condition", "Patient"]);
    for line in files_in(&out)
        .iter()
        .filter(|(name, _)| name.starts_with("Condition"))
        .flat_map(|(_, bytes)| bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()))
    {
        let condition: Value = serde_json::from_slice(line).expect("json");
        assert_eq!(
            condition["clinicalStatus"]["coding"][0]["code"], "active",
            "{condition}"
        );
    }

    let output = f.run(&["--cancel", "--out", path(&out)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout_json(&output)["cancelled"], true);
    assert!(!out.join(".epic-fhir-export.json").exists());
    let output = f.run(&["--cancel", "--out", path(&out)]);
    assert_eq!(output.status.code(), Some(2), "nothing left to cancel");
}
