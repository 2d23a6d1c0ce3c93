//! Epic fidelity over HTTP: what an Epic-aware client sees (issue 12) and that each quirk
//! switches off with `epic_rules = false`. Scopes, identity, required parameters and XML are
//! also covered in `fhir_api.rs`, `token_endpoint.rs` and `bulk_export.rs`; this file holds
//! the Epic-Client-ID header, the added resource types with their generated data, and
//! `_lastUpdated`.

mod support;

use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;
use support::*;

const APP: &str = "fidelity-app";
const JASON: &str = "eD.LxhDyX35TntF77l7etUA3";

async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> (Sandbox, String) {
    let key = TestKey::rsa2048("fidelity-key");
    let sandbox = sandbox_with(vec![client(APP, &[&key])], |config| {
        config.patients = 20;
        tweak(config);
    })
    .await;
    let token = token_for(&sandbox, APP, &key, None).await;
    (sandbox, token)
}

async fn get_with(
    sandbox: &Sandbox,
    token: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http()
        .get(format!("{}/{path}", sandbox.base_url()))
        .header("Accept", "application/fhir+json")
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn matches(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| &e["resource"])
        .collect()
}

fn warning_params(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "outcome")
        .flat_map(|e| {
            e["resource"]["issue"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|i| i["expression"][0].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn epic_client_id_is_accepted_when_it_names_the_token_client_and_refused_otherwise() {
    let (sandbox, token) = start(|_| {}).await;
    let path = format!("Patient/{JASON}");
    let (status, body) = get_with(&sandbox, &token, &path, &[("Epic-Client-ID", APP)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sandbox.stats().epic_client_id_requests, 1);

    let (status, body) = get_with(
        &sandbox,
        &token,
        &path,
        &[("Epic-Client-ID", "someone-else")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let issue = &body["issue"][0];
    assert_eq!(issue["code"], "forbidden");
    assert_eq!(issue["details"]["coding"][0]["code"], "4118");
    assert_eq!(issue["expression"][0], "Epic-Client-ID");
    let diagnostics = issue["diagnostics"].as_str().expect("diagnostics");
    assert!(
        diagnostics.contains("someone-else") && diagnostics.contains(APP),
        "{diagnostics}"
    );

    // The same on a search and a bulk kick-off; metadata needs no token and takes the header.
    let (status, _) = get_with(
        &sandbox,
        &token,
        &format!("Condition?patient={JASON}"),
        &[("Epic-Client-ID", "someone-else")],
    )
    .await;
    assert_eq!(status, 403);
    let response = http()
        .get(format!(
            "{}/Group/eEpicNamedPatients.Group3/$export",
            sandbox.base_url()
        ))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Epic-Client-ID", "someone-else")
        .bearer_auth(&token)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 403);
    let response = http()
        .get(format!("{}/metadata", sandbox.base_url()))
        .header("Accept", "application/fhir+json")
        .header("Epic-Client-ID", APP)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn the_added_types_hold_generated_data_linked_together() {
    let (sandbox, token) = start(|_| {}).await;
    for resource_type in [
        "EpisodeOfCare",
        "DocumentReference",
        "Binary",
        "DiagnosticReport",
        "ServiceRequest",
        "Specimen",
        "Device",
        "Location",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Medication",
        "MedicationDispense",
    ] {
        assert!(
            sandbox.store().count(resource_type) > 0,
            "no generated {resource_type}"
        );
    }

    // Jason's lab reports: each lists its Observations, is based on an order and names a
    // specimen, all readable.
    let (status, reports) = get_with(
        &sandbox,
        &token,
        &format!("DiagnosticReport?patient={JASON}&_count=5"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{reports}");
    let report = matches(&reports)[0].clone();
    for reference in [
        &report["result"][0]["reference"],
        &report["basedOn"][0]["reference"],
        &report["specimen"][0]["reference"],
    ] {
        let reference = reference.as_str().expect("reference");
        let (status, resource) = get_with(&sandbox, &token, reference, &[]).await;
        assert_eq!(status, 200, "{reference}: {resource}");
        assert_eq!(resource["subject"]["reference"], format!("Patient/{JASON}"));
    }

    // A clinical note: its attachment is a Binary holding the note text.
    let (status, notes) = get_with(
        &sandbox,
        &token,
        &format!("DocumentReference?patient={JASON}&category=clinical-note"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{notes}");
    let note = matches(&notes)[0].clone();
    let url = note["content"][0]["attachment"]["url"]
        .as_str()
        .expect("url");
    let (status, binary) = get_with(&sandbox, &token, url, &[]).await;
    assert_eq!(status, 200, "{binary}");
    assert_eq!(binary["contentType"], "text/plain");
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(binary["data"].as_str().expect("data"))
        .expect("base64");
    assert!(
        String::from_utf8(text)
            .expect("utf-8")
            .contains("synthetic")
    );

    // Dispenses refer to a shared Medication and to their prescription.
    let dispensed =
        serde_json::from_slice::<Value>(sandbox.store().resources("MedicationDispense")[0].json())
            .expect("json");
    let patient = dispensed["subject"]["reference"].as_str().expect("subject");
    let (status, dispenses) = get_with(
        &sandbox,
        &token,
        &format!("MedicationDispense?patient={patient}"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{dispenses}");
    let dispense = matches(&dispenses)[0].clone();
    for reference in [
        &dispense["medicationReference"]["reference"],
        &dispense["authorizingPrescription"][0]["reference"],
    ] {
        let reference = reference.as_str().expect("reference");
        assert_eq!(
            get_with(&sandbox, &token, reference, &[]).await.0,
            200,
            "{reference}"
        );
    }

    // An EpisodeOfCare is found by patient and type, as Epic requires both.
    let diabetic_episode = sandbox
        .store()
        .resources("EpisodeOfCare")
        .first()
        .map(|r| serde_json::from_slice::<Value>(r.json()).expect("json"))
        .expect("an episode");
    let patient = diabetic_episode["patient"]["reference"]
        .as_str()
        .expect("patient");
    let code = diabetic_episode["type"][0]["coding"][0]["code"]
        .as_str()
        .expect("code");
    let (status, episodes) = get_with(
        &sandbox,
        &token,
        &format!("EpisodeOfCare?patient={patient}&type={code}"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{episodes}");
    assert!(
        matches(&episodes)
            .iter()
            .any(|e| e["id"] == diabetic_episode["id"])
    );
    // Without Epic's rules a patient alone is enough.
    let (generic, generic_token) = start(|config| config.epic_rules = false).await;
    let (status, _) = get_with(
        &generic,
        &generic_token,
        &format!("EpisodeOfCare?patient={patient}"),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    // Each location and role points at the directory.
    let role =
        serde_json::from_slice::<Value>(sandbox.store().resources("PractitionerRole")[0].json())
            .expect("json");
    for reference in [
        &role["practitioner"]["reference"],
        &role["organization"]["reference"],
        &role["location"][0]["reference"],
    ] {
        let reference = reference.as_str().expect("reference");
        assert_eq!(
            get_with(&sandbox, &token, reference, &[]).await.0,
            200,
            "{reference}"
        );
    }
}

#[tokio::test]
async fn last_updated_is_ignored_as_on_epic_and_honoured_without_epic_rules() {
    let query = format!("Condition?patient={JASON}&_lastUpdated=gt2999-01-01");
    let (sandbox, token) = start(|_| {}).await;
    let (status, bundle) = get_with(&sandbox, &token, &query, &[]).await;
    assert_eq!(status, 200, "{bundle}");
    assert!(
        !matches(&bundle).is_empty(),
        "ignored, so every Condition matches"
    );
    assert_eq!(warning_params(&bundle), vec!["_lastUpdated"]);

    let (generic, generic_token) = start(|config| config.epic_rules = false).await;
    let (status, bundle) = get_with(&generic, &generic_token, &query, &[]).await;
    assert_eq!(status, 200, "{bundle}");
    assert!(matches(&bundle).is_empty(), "honoured: nothing after 2999");
    let (_, statement) = get_with(&generic, &generic_token, "metadata", &[]).await;
    assert_eq!(statement["software"]["name"], "epic-fhir-sandbox");
    assert!(statement.to_string().contains("\"_lastUpdated\""));
}
