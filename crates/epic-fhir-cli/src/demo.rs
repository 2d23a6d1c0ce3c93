//! `epic-fhir demo`: the whole flow against an embedded sandbox, offline.

use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use epic_fhir::auth::{Algorithm, BackendServicesAuth, SigningKey};
use epic_fhir::model::{HumanName, MedicationRequest, Observation, Patient, Resource};
use epic_fhir::search::SearchParams;
use epic_fhir::{FhirClient, Page};
use epic_fhir_sandbox::auth::ClientConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{Failure, keygen};

const CLIENT_ID: &str = "epic-fhir-demo";
const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";
const DERRICK: &str = "eq081-VQEgP8drUUqCWzHfw3";
const JASON: &str = "eD.LxhDyX35TntF77l7etUA3";

/// Flags of `epic-fhir demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Print the raw results as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    /// Synthetic patients in the embedded sandbox.
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// Sign with an EC P-384 key (ES384) instead of RSA (RS384).
    #[arg(long)]
    es384: bool,
}

/// Prints a line of the human-readable summary (suppressed with `--json`).
struct Narrator {
    quiet: bool,
}

impl Narrator {
    fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }
}

fn observation_line(observation: &Observation) -> String {
    let what = observation.code_display().unwrap_or("(no code)");
    // A blood-pressure panel has no value of its own: its components carry the readings.
    let value = observation.value_display().unwrap_or_else(|| {
        observation
            .component
            .iter()
            .filter_map(|c| c.value_display())
            .collect::<Vec<_>>()
            .join(" / ")
    });
    let when = observation.effective_display().unwrap_or("");
    format!("{when:<27} {what:<45} {value}")
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let n = Narrator { quiet: args.json };
    let mut raw = serde_json::Map::new();

    // 1. The embedded sandbox on a free loopback port.
    let mut config = SandboxConfig::default();
    config.patients = args.patients;
    let sandbox = Sandbox::start(config).await.map_err(Failure::remote)?;
    n.say(format!(
        "Sandbox: {} resources on {} (loaded in {:.2} s)",
        sandbox.data().total,
        sandbox.base_url(),
        sandbox.data().load_time.as_secs_f64()
    ));

    // 2. A key made with `epic-fhir keygen`'s code, registered as the app's JWK Set.
    // Removed when the demo ends, also when it fails half-way.
    let dir = keygen::TempKeyDir::create("epic-fhir-demo").map_err(Failure::remote)?;
    let alg = if args.es384 {
        Algorithm::ES384
    } else {
        Algorithm::RS384
    };
    let generated = keygen::generate(alg, None, None).map_err(Failure::remote)?;
    let files = keygen::write_files(dir.path(), &generated, false).map_err(Failure::remote)?;
    let client = ClientConfig::parse_spec(&format!("{CLIENT_ID}={}", files.jwks_json.display()))
        .map_err(|e| Failure::remote(anyhow!(e)))?;
    sandbox.register_client(client);
    let key = SigningKey::from_pem_file(&files.private_pem).map_err(Failure::remote)?;
    n.say(format!(
        "Key: {} {} written to {}",
        key.algorithm(),
        key.kid(),
        dir.path().display()
    ));

    // 3. Discovery and authentication.
    let auth = BackendServicesAuth::builder(CLIENT_ID, key)
        .discover(sandbox.base_url().as_str())
        .await?
        .build()?;
    let token = auth.issued_token().await?;
    n.say(format!(
        "Token: {} from {}, scope \"{}\", expires in {} s",
        token.token_type,
        auth.token_url(),
        token.scope.as_deref().unwrap_or(""),
        token.expires_in.map_or(0, |d| d.as_secs())
    ));
    raw.insert("token".into(), json!({"token_type": token.token_type, "scope": token.scope, "expires_in": token.expires_in.map(|d| d.as_secs())}));
    let fhir = FhirClient::builder(sandbox.base_url().as_str())
        .backend_services(auth.clone())
        .epic_client_id(CLIENT_ID)
        .build()?;

    // 4. Read Camila Lopez.
    let camila: Patient = fhir.read(CAMILA).await?;
    n.say(format!(
        "\nPatient/{CAMILA}: {} (born {}, MRN {})",
        camila.display_name().unwrap_or_default(),
        camila
            .birth_date
            .as_ref()
            .map(|d| d.as_str())
            .unwrap_or("?"),
        camila.mrn().unwrap_or("?")
    ));
    raw.insert(
        "patient".into(),
        serde_json::to_value(&camila).map_err(Failure::remote)?,
    );

    // 5. Her latest vital signs, newest first.
    let latest = SearchParams::new()
        .reference("patient", CAMILA)
        .token("category", None, "vital-signs")
        .sort_desc("date")
        .count(8);
    let page: Page<Observation> = fhir.search(&latest).await?;
    n.say(format!(
        "\nLatest vital signs ({} in all):",
        page.total().unwrap_or(0)
    ));
    for observation in page.matches() {
        n.say(format!("  {}", observation_line(observation)));
    }
    raw.insert(
        "latest_vitals".into(),
        serde_json::to_value(page.matches()).map_err(Failure::remote)?,
    );

    // 6. Every observation of a patient with thousands, across pages.
    let all = SearchParams::new()
        .reference("patient", DERRICK)
        .raw("category", "vital-signs,laboratory,social-history");
    let paging_started = Instant::now();
    let mut pages = std::pin::pin!(fhir.pages::<Observation>(&all));
    let (mut page_count, mut observations) = (0usize, 0usize);
    while let Some(page) = pages.next().await {
        let page = page?;
        page_count += 1;
        observations += page.len();
    }
    n.say(format!(
        "\nPaged through {observations} observations of Derrick Lin in {page_count} pages ({:.2} s)",
        paging_started.elapsed().as_secs_f64()
    ));
    raw.insert(
        "paging".into(),
        json!({"patient": DERRICK, "observations": observations, "pages": page_count}),
    );

    // 7. An _include: Jason Argonaut's prescriptions with their prescribers in the same response.
    let with_prescribers = SearchParams::new()
        .reference("patient", JASON)
        .include("MedicationRequest:requester");
    let page: Page<MedicationRequest> = fhir.search(&with_prescribers).await?;
    n.say(format!(
        "\nJason Argonaut's {} medication requests, with {} prescribers included:",
        page.len(),
        page.included().len()
    ));
    for request in page.matches() {
        let medication = request.medication_display().unwrap_or("(unnamed)");
        let prescriber = request
            .requester
            .as_ref()
            .and_then(|r| page.resolve(r))
            .map(|r| match r {
                Resource::Practitioner(practitioner) => practitioner
                    .name
                    .iter()
                    .find_map(HumanName::display)
                    .unwrap_or_else(|| "?".to_owned()),
                other => other.resource_type().to_owned(),
            })
            .unwrap_or_else(|| "(not included)".to_owned());
        n.say(format!(
            "  {:<10} {medication:<50} by {prescriber}",
            request.status.as_ref().map_or("?", |status| status.code())
        ));
    }
    raw.insert(
        "medication_requests".into(),
        serde_json::to_value(page.matches()).map_err(Failure::remote)?,
    );
    raw.insert(
        "included".into(),
        serde_json::to_value(page.included()).map_err(Failure::remote)?,
    );

    let stats = sandbox.stats();
    n.say(format!(
        "\nDone in {:.2} s: {} FHIR requests, {} token request(s).",
        started.elapsed().as_secs_f64(),
        fhir.requests_sent(),
        stats.token_requests
    ));
    raw.insert(
        "requests".into(),
        json!({"fhir": fhir.requests_sent(), "token": stats.token_requests}),
    );
    if args.json {
        let text = serde_json::to_string_pretty(&Value::Object(raw)).map_err(Failure::remote)?;
        println!("{text}");
    }
    sandbox.shutdown().await;
    Ok(())
}
