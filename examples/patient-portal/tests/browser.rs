//! End-to-end tests in a real headless Chromium, driven through chromedriver (WebDriver): the
//! sandbox and the portal run in-process on loopback; the browser logs in as a MyChart user
//! (standalone launch) or is sent from the sandbox's EHR launcher (EHR launch), and the
//! portal shows the patient's summary.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/install-browser.sh` installs them);
//! `CHROMIUM` and `CHROMEDRIVER` name other binaries. `PORTAL_SCREENSHOT=path.png` saves a
//! screenshot of the summary page.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use epic_fhir_sandbox::auth::AppConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use patient_portal::Portal;
use serde_json::json;
use url::Url;

const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";
const PASSWORD: &str = "portal-test";
const WAIT: Duration = Duration::from_secs(60);

/// A binary from `env`, else `default`; the test fails (never skips) when it is missing.
fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found (set {env} to another path): run .ci/install-browser.sh to install Debian's chromium and chromium-driver",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// chromedriver as a child process on loopback; shut down (with its browsers) on drop.
struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
}

impl ChromeDriver {
    fn start() -> Self {
        let path = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(&path)
            .arg(format!("--port={}", addr.port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} does not start ({e}): run .ci/install-browser.sh",
                    path.display()
                )
            });
        let driver = ChromeDriver { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(driver.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` ends chromedriver's sessions (and so their browsers) before it exits.
        if let Ok(mut stream) = TcpStream::connect(self.addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = stream.read(&mut [0_u8; 256]);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh Chromium profile directory, removed on drop.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "patient-portal-chromium-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("profile directory");
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sandbox, the portal and a browser, all on loopback. Fields drop in order: the browser
/// session, then chromedriver, then the profile.
struct Harness {
    browser: Client,
    portal: Url,
    sandbox: Sandbox,
    _driver: ChromeDriver,
    _profile: Profile,
}

async fn start() -> Harness {
    let chromium = binary("CHROMIUM", "/usr/bin/chromium");
    let driver = ChromeDriver::start();

    // The portal's listener first: its port is part of the redirect and launch URLs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let portal_url =
        Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    let mut config = SandboxConfig::default();
    config.patients = 7;
    config.smart.default_password = Some(PASSWORD.to_owned());
    let probe = Portal::new(portal_url.clone(), "portal", portal_url.clone());
    config.smart.apps = vec![
        AppConfig::public("portal", vec![probe.redirect_uri().to_string()])
            .with_launch_url(probe.launch_url()),
    ];
    let sandbox = Sandbox::start(config).await.expect("sandbox");
    let portal = Portal::new(sandbox.base_url().clone(), "portal", portal_url.clone());
    tokio::spawn(async move { patient_portal::serve(listener, portal).await });

    let profile = Profile::new();
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--window-size=1100,900".to_owned(),
        format!("--user-data-dir={}", profile.0.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("an object")
    };
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver could not start {} ({e}): run .ci/install-browser.sh",
                chromium.display()
            )
        });
    Harness {
        browser,
        portal: portal_url,
        sandbox,
        _driver: driver,
        _profile: profile,
    }
}

impl Harness {
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let url = self.browser.current_url().await.map(String::from);
                let source = self.browser.source().await.unwrap_or_default();
                panic!("no {css} on {url:?} ({e}):\n{source}");
            }
        }
    }

    /// Resizes the window so that the page's viewport is `width` x `height` (the window's
    /// size includes the browser's frame).
    async fn viewport(&self, width: u32, height: u32) {
        let inner = self
            .browser
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .expect("viewport size");
        let (w, h) = self.browser.get_window_size().await.expect("window size");
        let size = |i: usize| inner[i].as_u64().expect("a number");
        let frame = |window: u64, viewport: u64| {
            u32::try_from(window.saturating_sub(viewport)).unwrap_or(0)
        };
        self.browser
            .set_window_size(width + frame(w, size(0)), height + frame(h, size(1)))
            .await
            .expect("resize");
    }

    /// Asserts that the summary page shows Camila's record with a plotted blood pressure.
    async fn assert_camila_summary(&self) {
        let chart = self.wait_for("svg#bp-chart").await;
        let url = self.browser.current_url().await.expect("url");
        assert_eq!(
            url.as_str(),
            self.portal.join("summary").expect("url").as_str()
        );
        let heading = self.browser.find(Locator::Css("h1")).await.expect("h1");
        let name = heading.text().await.expect("text");
        assert!(name.contains("Camila"), "{name}");
        assert_eq!(
            chart.attr("role").await.expect("role").as_deref(),
            Some("img")
        );
        let label = chart
            .attr("aria-label")
            .await
            .expect("label")
            .unwrap_or_default();
        assert!(label.contains("readings"), "{label}");
        let points = chart
            .find_all(Locator::Css("circle.bp-point"))
            .await
            .expect("points");
        let lines = chart
            .find_all(Locator::Css("polyline.bp-line"))
            .await
            .expect("lines");
        assert!(!points.is_empty(), "no blood pressure plotted");
        assert_eq!(lines.len(), 2, "systolic and diastolic");
        // Two points (systolic and diastolic) per reading of the table beside the chart.
        let rows = self
            .browser
            .find_all(Locator::Css("details tbody tr"))
            .await
            .expect("rows");
        assert_eq!(points.len(), 2 * rows.len());
        let text = self
            .browser
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text");
        for section in ["Latest vital signs", "Problems", "Medications", "Allergies"] {
            assert!(text.contains(section), "{section}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_login_with_mychart_shows_the_summary_and_chart() {
    let h = start().await;
    h.browser.goto(h.portal.as_str()).await.expect("portal");
    h.wait_for("a[href='/login']")
        .await
        .click()
        .await
        .expect("log in");

    // The sandbox's MyChart login page.
    h.wait_for("input#username")
        .await
        .send_keys("fhircamila")
        .await
        .expect("type");
    h.browser
        .find(Locator::Css("input#password"))
        .await
        .expect("password field")
        .send_keys(PASSWORD)
        .await
        .expect("type");
    h.browser
        .find(Locator::Css("form button[type=submit]"))
        .await
        .expect("log in button")
        .click()
        .await
        .expect("submit");

    // The consent page: allow.
    h.wait_for("button[value=allow]")
        .await
        .click()
        .await
        .expect("allow");

    h.assert_camila_summary().await;
    h.viewport(1100, 900).await;
    let png = h.browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(path) = std::env::var_os("PORTAL_SCREENSHOT") {
        let path = Path::new(&path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, &png).expect("screenshot written");
    }

    // Logging out ends the session: the summary sends the browser back to the start.
    h.browser
        .find(Locator::Css("form[action='/logout'] button"))
        .await
        .expect("log out")
        .click()
        .await
        .expect("log out");
    h.wait_for("a[href='/login']").await;
    h.browser
        .goto(h.portal.join("summary").expect("url").as_str())
        .await
        .expect("summary");
    h.wait_for("a[href='/login']").await;
    assert_eq!(
        h.browser.current_url().await.expect("url").as_str(),
        h.portal.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehr_launch_from_the_sandbox_launcher_shows_the_summary() {
    let h = start().await;
    let mut launcher = h.sandbox.launcher_url();
    launcher
        .query_pairs_mut()
        .append_pair("app", "portal")
        .append_pair("patient", CAMILA);
    // The launcher sends the browser to the portal's /launch with iss and launch; the portal
    // goes to the sandbox's authorize endpoint, which (the EHR's user being signed in
    // already) sends it straight back to /callback with a code.
    h.browser.goto(launcher.as_str()).await.expect("launcher");
    h.assert_camila_summary().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_launches_and_missing_sessions_are_refused() {
    let h = start().await;
    // No session: the summary sends the browser to the start page.
    h.browser
        .goto(h.portal.join("summary").expect("url").as_str())
        .await
        .expect("summary");
    h.wait_for("a[href='/login']").await;
    // An EHR launch from a FHIR server the portal does not trust.
    let mut launch = h.portal.join("launch").expect("url");
    launch
        .query_pairs_mut()
        .append_pair("iss", "http://127.0.0.1:9/fhir/<script>")
        .append_pair("launch", "abc");
    h.browser.goto(launch.as_str()).await.expect("launch");
    let alert = h.wait_for("[role=alert]").await.text().await.expect("text");
    assert!(alert.contains("not one of the FHIR servers"), "{alert}");
    assert!(alert.contains("<script>"), "shown as text: {alert}");
    assert_eq!(
        h.browser.title().await.expect("title"),
        "Launch refused - Patient portal"
    );
    // A callback this browser did not start.
    h.browser
        .goto(
            h.portal
                .join("callback?code=x&state=y")
                .expect("url")
                .as_str(),
        )
        .await
        .expect("callback");
    let alert = h.wait_for("[role=alert]").await.text().await.expect("text");
    assert!(alert.contains("no login in progress"), "{alert}");
}
