//! The `epic-fhir` binary end to end: exit codes, output shapes, secrets kept out of output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use epic_fhir_sandbox::auth::ClientConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_epic-fhir"));
    // Settings come only from the flags given in each test.
    for var in [
        "EPIC_FHIR_BASE_URL",
        "EPIC_CLIENT_ID",
        "EPIC_PRIVATE_KEY",
        "EPIC_KEY_ID",
        "EPIC_TOKEN_URL",
        "EPIC_SCOPE",
        "EPIC_FHIR_CONFIG",
        "EPIC_FHIR_SESSION",
    ] {
        command.env_remove(var);
    }
    // No session of the developer's own is picked up by `read` and `search`.
    command.env(
        "XDG_CONFIG_HOME",
        std::env::temp_dir().join("epic-fhir-cli-no-session"),
    );
    command
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("epic-fhir-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs `command` to completion, killing it (and failing the test) after `limit`: a command
/// that should exit at once must not hang the suite if it starts serving instead.
fn output_within(mut command: Command, limit: std::time::Duration) -> Output {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} was still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn keygen(dir: &Path, extra: &[&str]) -> Output {
    bin()
        .args(["keygen", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("runs")
}

#[test]
fn keygen_writes_four_files_and_refuses_to_overwrite() {
    let dir = temp_dir("keygen");
    let output = keygen(&dir, &["--kid", "test-kid-1", "--bits", "3072"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = json(&output);
    assert_eq!(summary["alg"], "RS384");
    assert_eq!(summary["bits"], 3072);
    assert_eq!(summary["kid"], "test-kid-1");
    for file in ["private.pem", "public.pem", "cert.pem", "jwks.json"] {
        assert!(dir.join(file).exists(), "{file}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("private.pem"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "private key readable by its owner only"
        );
    }
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("jwks.json")).expect("read"))
            .expect("json");
    assert_eq!(jwks["keys"][0]["kid"], "test-kid-1");
    assert!(jwks["keys"][0].get("d").is_none(), "no private members");
    assert!(
        std::fs::read_to_string(dir.join("cert.pem"))
            .expect("read")
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    // The private key never reaches stdout.
    let private = std::fs::read_to_string(dir.join("private.pem")).expect("read");
    let body_line = private.lines().nth(1).expect("line");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(body_line));

    let again = keygen(&dir, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = keygen(&dir, &["--force", "--alg", "ES384"]);
    assert!(forced.status.success());
    assert_eq!(json(&forced)["alg"], "ES384");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_usage_exits_2() {
    let dir = temp_dir("usage");
    assert_eq!(keygen(&dir, &["--alg", "HS256"]).status.code(), Some(2));
    assert_eq!(keygen(&dir, &["--bits", "1024"]).status.code(), Some(2));
    assert_eq!(
        keygen(&dir, &["--alg", "ES384", "--bits", "2048"])
            .status
            .code(),
        Some(2)
    );
    let mut sandbox = bin();
    sandbox.args([
        "sandbox",
        "--addr",
        "127.0.0.1:0",
        "--patients",
        "0",
        "--bulk-file-size",
        "0",
    ]);
    let output = output_within(sandbox, std::time::Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_resources_per_file"));
    let mut sandbox = bin();
    sandbox.args([
        "sandbox",
        "--addr",
        "127.0.0.1:0",
        "--patients",
        "0",
        "--error-rate",
        "1.5",
    ]);
    let output = output_within(sandbox, std::time::Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("error rate"));
    let output = bin()
        .args(["token", "--client-id", "x"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("private key"));
    let output = bin()
        .args(["search", "Patient", "family"])
        .args([
            "--base-url",
            "http://127.0.0.1:9/fhir",
            "--client-id",
            "x",
            "--private-key",
            "/nonexistent.pem",
            "--token-url",
            "http://127.0.0.1:9/t",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// A sandbox in this test process with a client registered from a `keygen` directory.
struct Fixture {
    sandbox: Sandbox,
    dir: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn start(name: &str) -> Fixture {
        let dir = temp_dir(name);
        assert!(keygen(&dir, &["--alg", "ES384"]).status.success());
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let mut config = SandboxConfig::default();
        config.patients = 10;
        config.clients.push(
            ClientConfig::parse_spec(&format!("cli-app={}", dir.join("jwks.json").display()))
                .expect("client"),
        );
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
            .args(args)
            .args([
                "--base-url",
                self.sandbox.base_url().as_str(),
                "--client-id",
                "cli-app",
                "--private-key",
            ])
            .arg(self.dir.join("private.pem"));
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runs")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[test]
fn token_prints_metadata_and_the_token_only_with_show() {
    let f = Fixture::start("token");
    let output = f.run(&["token"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info = json(&output);
    assert_eq!(info["token_type"], "bearer");
    assert_eq!(info["scope"], "system/*.read");
    assert_eq!(info["expires_in"], 3600);
    assert!(
        info["expires_at"]
            .as_str()
            .expect("expires_at")
            .ends_with('Z')
    );
    assert!(
        info.get("access_token").is_none(),
        "the token is printed only with --show"
    );
    let shown = json(&f.run(&["token", "--show"]));
    assert_eq!(shown["access_token"].as_str().expect("token").len(), 43);
}

#[test]
fn token_refusal_exits_1_with_the_oauth_error() {
    let f = Fixture::start("refused");
    let output = bin()
        .args([
            "token",
            "--base-url",
            f.sandbox.base_url().as_str(),
            "--client-id",
            "someone-else",
            "--private-key",
        ])
        .arg(f.dir.join("private.pem"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert!(stderr.contains("not a registered client"), "{stderr}");
}

#[test]
fn read_and_search() {
    let f = Fixture::start("search");
    let output = f.run(&["read", "Patient/erXuFYUfucBZaryVksYEcMg3"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json(&output)["birthDate"], "1987-09-12");

    let output = f.run(&["read", "Patient/nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("404"));

    let output = f.run(&[
        "search",
        "Observation",
        "patient=eq081-VQEgP8drUUqCWzHfw3",
        "category=vital-signs",
        "_count=100",
    ]);
    let page = json(&output);
    assert_eq!(page["matches"].as_array().expect("matches").len(), 100);
    assert!(page["next"].as_str().expect("next").contains("sessionID"));

    let output = f.run(&[
        "search",
        "Observation",
        "patient=eq081-VQEgP8drUUqCWzHfw3",
        "category=vital-signs",
        "_count=500",
        "--limit",
        "1200",
        "--ndjson",
    ]);
    assert!(output.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect();
    assert_eq!(lines.len(), 1200);
    assert!(lines.iter().all(|r| r["resourceType"] == "Observation"));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("page 3"),
        "progress on stderr"
    );

    // Epic's 4111 (required parameter missing): the server's error is shown, exit code 1.
    let output = f.run(&["search", "Observation", "patient=eq081-VQEgP8drUUqCWzHfw3"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("4111"));
}

#[test]
fn config_file_supplies_settings() {
    let f = Fixture::start("config");
    let config = f.dir.join("epic.toml");
    std::fs::write(
        &config,
        format!(
            "base_url = \"{}\"\nclient_id = \"cli-app\"\nprivate_key = \"private.pem\"\n",
            f.sandbox.base_url()
        ),
    )
    .expect("write");
    let output = bin()
        .args(["token", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A flag wins over the file.
    let output = bin()
        .args(["token", "--client-id", "nobody", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    std::fs::write(&config, "colour = \"blue\"\n").expect("write");
    let output = bin()
        .args(["token", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("colour"));
}

#[test]
fn demo_runs_offline() {
    let output = bin()
        .args(["demo", "--json", "--patients", "10"])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    assert_eq!(report["patient"]["id"], "erXuFYUfucBZaryVksYEcMg3");
    assert!(report["latest_vitals"].as_array().expect("vitals").len() > 1);
    assert!(report["paging"]["pages"].as_u64().expect("pages") >= 3);
    assert!(!report["included"].as_array().expect("included").is_empty());
    assert_eq!(report["requests"]["token"], 1);
}

#[cfg(unix)]
#[test]
fn sandbox_prints_its_urls_and_stops_on_ctrl_c() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let dir = temp_dir("serve");
    assert!(keygen(&dir, &[]).status.success());
    let mut child = bin()
        .args([
            "sandbox",
            "--addr",
            "127.0.0.1:0",
            "--patients",
            "7",
            "--no-system-export",
            "--client",
        ])
        .arg(format!("served-app={}", dir.join("jwks.json").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    // The description is one pretty-printed JSON document ending with a lone `}`.
    let stdout = child.stdout.take().expect("stdout");
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line == "}";
        text.push_str(&line);
        text.push('\n');
        if done {
            break;
        }
    }
    let description: Value = serde_json::from_str(&text).expect("description JSON");
    let base = description["base_url"]
        .as_str()
        .expect("base_url")
        .to_owned();
    assert!(
        base.starts_with("http://127.0.0.1:")
            && base.ends_with("/interconnect-fhir-oauth/api/FHIR/R4"),
        "{base}"
    );
    assert!(
        description["token_url"]
            .as_str()
            .expect("token_url")
            .ends_with("/interconnect-fhir-oauth/oauth2/token")
    );
    assert_eq!(description["clients"][0]["id"], "served-app");
    let names: Vec<&str> = description["patients"]
        .as_array()
        .expect("patients")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"Camila Maria Lopez"), "{names:?}");
    assert!(!description["groups"].as_array().expect("groups").is_empty());

    // The server answers while running.
    let output = bin()
        .args([
            "read",
            "Patient/erXuFYUfucBZaryVksYEcMg3",
            "--base-url",
            &base,
            "--client-id",
            "served-app",
            "--private-key",
        ])
        .arg(dir.join("private.pem"))
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The bulk flags reach the server: with --no-system-export the CapabilityStatement offers
    // Group and Patient export but no system-level operation.
    let metadata: Value = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            // Asking for JSON: without an Accept header the sandbox answers XML, as Epic does.
            reqwest::Client::new()
                .get(format!("{base}/metadata"))
                .header("Accept", "application/fhir+json")
                .send()
                .await
                .expect("metadata")
                .json()
                .await
                .expect("json")
        });
    let rest = &metadata["rest"][0];
    assert!(
        rest.get("operation").is_none(),
        "no system-level export: {rest}"
    );
    let group = rest["resource"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["type"] == "Group")
        .expect("Group");
    assert_eq!(group["operation"][0]["name"], "export");

    // Ctrl-C (SIGINT) stops it cleanly, with exit code 0.
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox did not stop on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).ok();
}

const DERRICK_VITALS: &[&str] = &[
    "search",
    "Observation",
    "patient=eq081-VQEgP8drUUqCWzHfw3",
    "category=vital-signs",
    "_count=50",
    "--all",
    "--ndjson",
];

#[test]
fn ndjson_into_a_pipe_closed_by_its_reader_exits_0() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    let f = Fixture::start("pipe");
    // The whole output is far more than a pipe holds, so the command is still writing when
    // the reader goes away.
    let whole = f.run(DERRICK_VITALS);
    assert!(whole.status.success());
    assert!(
        whole.stdout.len() > 512 * 1024,
        "{} bytes",
        whole.stdout.len()
    );

    // `epic-fhir search ... --ndjson | head -1`
    let mut child = f
        .command(DERRICK_VITALS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("a line");
    let first: Value = serde_json::from_str(&first).expect("an NDJSON line");
    assert_eq!(first["resourceType"], "Observation");
    drop(reader);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "still running");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn ndjson_streams_included_resources_once() {
    let f = Fixture::start("include");
    let output = f.run(&[
        "search",
        "Observation",
        "patient=erXuFYUfucBZaryVksYEcMg3",
        "category=vital-signs",
        "_include=Observation:patient",
        "_count=20",
        "--all",
        "--ndjson",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect();
    let patients: Vec<&Value> = lines
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .collect();
    let observations = lines
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
        .count();
    assert!(stderr.contains("page 2"), "several pages: {stderr}");
    assert!(observations > 20, "{observations}");
    // Included on every page, printed once, after the first page's matches.
    assert_eq!(patients.len(), 1, "{patients:?}");
    assert_eq!(patients[0]["id"], "erXuFYUfucBZaryVksYEcMg3");
    assert_eq!(lines[0]["resourceType"], "Observation");
}

/// A token endpoint and FHIR server on 127.0.0.1 that answer every request from `answer`
/// (request line in, status and JSON body out), one connection per request.
fn mini_server(answer: fn(&str) -> (u16, String)) -> String {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, text) = answer(&request_line);
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    format!("http://{addr}")
}

#[test]
fn absurd_token_lifetimes_do_not_crash_token_or_read() {
    let dir = temp_dir("lifetimes");
    assert!(keygen(&dir, &["--alg", "ES384"]).status.success());
    fn answer(request_line: &str) -> (u16, String) {
        if request_line.starts_with("POST /oauth2/token") {
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":1e20}"#.to_owned(),
            )
        } else {
            (200, r#"{"resourceType":"Patient","id":"p1"}"#.to_owned())
        }
    }
    fn negative(request_line: &str) -> (u16, String) {
        if request_line.starts_with("POST /oauth2/token") {
            (
                200,
                r#"{"access_token":"t","token_type":"bearer","expires_in":-30}"#.to_owned(),
            )
        } else {
            (200, r#"{"resourceType":"Patient","id":"p1"}"#.to_owned())
        }
    }
    let huge = mini_server(answer);
    let run = |base: &str, args: &[&str]| {
        bin()
            .args(args)
            .args(["--base-url", &format!("{base}/fhir")])
            .args(["--token-url", &format!("{base}/oauth2/token")])
            .args(["--client-id", "x", "--private-key"])
            .arg(dir.join("private.pem"))
            .output()
            .expect("runs")
    };
    let output = run(&huge, &["token"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let info = json(&output);
    assert_eq!(info["expires_in"], 24 * 3600, "clamped");
    assert!(
        info["expires_at"]
            .as_str()
            .expect("expires_at")
            .ends_with('Z')
    );
    let output = run(&huge, &["read", "Patient/p1"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(json(&output)["id"], "p1");

    let bad = mini_server(negative);
    for args in [&["token"][..], &["read", "Patient/p1"][..]] {
        let output = run(&bad, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("expires_in"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
