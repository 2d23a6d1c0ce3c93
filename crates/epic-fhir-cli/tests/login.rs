//! `epic-fhir login`, `read --session` and `logout` against an in-process sandbox; the
//! browser's part (login and consent forms) is played over HTTP.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use epic_fhir_sandbox::auth::AppConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_epic-fhir"));
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
    command
}

fn field(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).expect("field") + marker.len();
    html[start..].split('"').next().expect("value").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_stores_a_private_session_that_read_uses_and_logout_deletes() {
    let mut config = SandboxConfig::default();
    config.patients = 7;
    config.smart.default_password = Some("cli-test".to_owned());
    // A loopback redirect URI without a port matches the port login listens on (RFC 8252).
    config.smart.apps = vec![AppConfig::public(
        "cli",
        vec!["http://127.0.0.1/callback".to_owned()],
    )];
    let sandbox = Sandbox::start(config).await.expect("sandbox");
    let dir = std::env::temp_dir().join(format!("epic-fhir-login-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let session = dir.join("nested").join("session.json");

    let mut child = bin()
        .args(["login", "--no-browser", "--client-id", "cli", "--base-url"])
        .arg(sandbox.base_url().as_str())
        .arg("--session")
        .arg(&session)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut url = String::new();
    let read = tokio::task::spawn_blocking(move || {
        stdout.read_line(&mut url).expect("a line");
        (url, stdout)
    });
    let (url, mut stdout) = read.await.expect("joined");
    let url = url.trim().to_owned();
    assert!(
        url.starts_with(sandbox.authorize_url().as_str()),
        "the URL alone: {url}"
    );

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = browser
        .get(&url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let consent = browser
        .post(format!("{}/login", sandbox.authorize_url()))
        .form(&[
            ("request", field(&page, "request").as_str()),
            ("username", "fhircamila"),
            ("password", "cli-test"),
        ])
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("html");
    let mut form = vec![("request".to_owned(), field(&consent, "request"))];
    for scope in consent.split(r#"name="scope" value=""#).skip(1) {
        form.push((
            "scope".to_owned(),
            scope.split('"').next().expect("v").to_owned(),
        ));
    }
    let redirect = browser
        .post(format!("{}/consent", sandbox.authorize_url()))
        .form(&form)
        .send()
        .await
        .expect("consent");
    let callback = redirect.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let done = browser
        .get(&callback)
        .send()
        .await
        .expect("the CLI answers");
    assert_eq!(done.status().as_u16(), 200);

    let output = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).expect("rest");
        let status = child.wait().expect("exits");
        (status, rest)
    })
    .await
    .expect("joined");
    assert!(output.0.success(), "{}", output.1);
    let context: Value = serde_json::from_str(&output.1).expect("context JSON");
    assert_eq!(context["patient"], CAMILA);
    assert_eq!(context["refresh_token"], true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&session)
            .expect("saved")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner can read it");
    }

    let read = tokio::task::spawn_blocking({
        let session = session.clone();
        move || {
            bin()
                .args(["read", &format!("Patient/{CAMILA}"), "--session"])
                .arg(&session)
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joined");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let patient: Value = serde_json::from_slice(&read.stdout).expect("json");
    assert_eq!(patient["id"], CAMILA);
    let other = tokio::task::spawn_blocking({
        let session = session.clone();
        move || {
            bin()
                .args(["read", "Patient/eD.LxhDyX35TntF77l7etUA3", "--session"])
                .arg(&session)
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joined");
    assert_eq!(
        other.status.code(),
        Some(1),
        "another patient's record is refused"
    );

    let logout = bin()
        .args(["logout", "--session"])
        .arg(&session)
        .output()
        .expect("runs");
    assert!(logout.status.success());
    assert!(!session.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
