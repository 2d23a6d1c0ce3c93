//! Bounds over HTTP (issue 8, "Sandbox bounds"): a client cannot exhaust the sandbox with
//! many parameters or warnings, paging sessions, export jobs or oversized bodies. (The JWK Set
//! refetch limit and the `crit` header are in `token_endpoint.rs`.)

mod support;

use std::time::Duration;

use epic_fhir_sandbox::{EPIC_SESSION_EXPIRED, Sandbox, SandboxConfig};
use serde_json::Value;
use support::*;

const APP: &str = "bounds-app";
const DERRICK: &str = "eq081-VQEgP8drUUqCWzHfw3";
const NAMED: &str = "eEpicNamedPatients.Group3";

async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> (Sandbox, TestKey, String) {
    let key = TestKey::rsa2048("bounds-key");
    let sandbox = sandbox_with(vec![client(APP, &[&key])], tweak).await;
    let token = token_for(&sandbox, APP, &key, None).await;
    (sandbox, key, token)
}

async fn get_url(token: &str, url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = http()
        .get(url)
        .header("Accept", "application/fhir+json")
        .bearer_auth(token)
        .send()
        .await
        .expect("reachable");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn kick_off(
    sandbox: &Sandbox,
    token: &str,
    group: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = http()
        .get(format!("{}/Group/{group}/$export", sandbox.base_url()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .bearer_auth(token)
        .send()
        .await
        .expect("reachable");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn outcome_issues(bundle: &Value) -> Vec<Value> {
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
        .collect()
}

#[tokio::test]
async fn parameters_per_request_are_capped_and_warnings_are_counted_beyond_a_cap() {
    let (sandbox, _, token) = start(|config| {
        config.max_search_params = 60;
        config.max_outcome_warnings = 5;
    })
    .await;
    let base = sandbox.base_url();
    // 40 unknown parameters: answered, 5 warnings listed and one counting the other 35.
    let unknown: String = (0..40).map(|i| format!("&colour{i}=blue")).collect();
    let (status, _, bundle) = get_url(
        &token,
        &format!("{base}/Condition?patient={DERRICK}{unknown}"),
    )
    .await;
    assert_eq!(status, 200, "{bundle}");
    let issues = outcome_issues(&bundle);
    assert_eq!(issues.len(), 6, "{bundle}");
    let last = issues[5]["diagnostics"].as_str().expect("diagnostics");
    assert!(last.contains("35 more"), "{last}");

    // 61 parameters: refused, naming the cap.
    let many: String = (0..60).map(|i| format!("&colour{i}=blue")).collect();
    let (status, _, body) =
        get_url(&token, &format!("{base}/Condition?patient={DERRICK}{many}")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "too-costly");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .expect("text")
            .contains("at most 60")
    );

    // The same cap on a POST _search form and on a bulk kick-off.
    let form: String = (0..61).map(|i| format!("colour{i}=blue&")).collect();
    let response = http()
        .post(format!("{base}/Condition/_search"))
        .header("Accept", "application/fhir+json")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .bearer_auth(&token)
        .body(form)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 400);
    let kick_off_params: String = (0..61).map(|i| format!("x{i}=1&")).collect();
    let response = http()
        .get(format!("{base}/Group/{NAMED}/$export?{kick_off_params}"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .bearer_auth(&token)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn paging_sessions_beyond_the_memory_budget_expire_oldest_first() {
    let (sandbox, _, token) = start(|config| config.session_memory_budget = 200_000).await;
    let base = sandbox.base_url();
    let search = format!("{base}/Observation?patient={DERRICK}&category=vital-signs&_count=100");
    let (status, _, first) = get_url(&token, &search).await;
    assert_eq!(status, 200);
    let next = |bundle: &Value| {
        bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned)
            .expect("a next link")
    };
    let first_next = next(&first);
    // Derrick's thousands of vital signs are far more than the budget: a second search evicts
    // the first session, whose link then answers 4113, as an expired one does.
    let (_, _, second) = get_url(&token, &search).await;
    let (status, _, body) = get_url(&token, &first_next).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["issue"][0]["code"], "expired");
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"],
        EPIC_SESSION_EXPIRED.to_string(),
        "{body}"
    );
    // The newest session is kept whatever its size.
    let (status, _, _) = get_url(&token, &next(&second)).await;
    assert_eq!(status, 200);
    let stats = sandbox.stats();
    assert_eq!(stats.live_sessions, 1);
    assert!(stats.session_bytes > 0);
}

#[tokio::test]
async fn export_jobs_are_limited_per_client_and_by_memory_and_expire() {
    let (sandbox, key, token) = start(|config| {
        config.patients = 12;
        config.bulk.max_jobs_per_client = 2;
        config.bulk.group_export_window = Some(Duration::from_secs(24 * 3600));
        config.bulk.retention = Duration::from_millis(300);
    })
    .await;
    let groups = [
        "eAllSandboxPatients.Group3",
        NAMED,
        "ePediatric.Cohort.Group3",
    ];
    let (status, headers, _) = kick_off(&sandbox, &token, groups[0]).await;
    assert_eq!(status, 202);
    let first_status = headers["content-location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(kick_off(&sandbox, &token, groups[1]).await.0, 202);
    // A third job: 429 with an OperationOutcome and Retry-After, in Epic's words.
    let (status, headers, body) = kick_off(&sandbox, &token, groups[2]).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(body["issue"][0]["code"], "throttled");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .expect("text")
            .starts_with("Request not allowed")
    );
    // Another client is not affected.
    sandbox.register_client(client("second-app", &[&key]));
    let other = token_for(&sandbox, "second-app", &key, None).await;
    assert_eq!(kick_off(&sandbox, &other, groups[2]).await.0, 202);

    // Epic's per-Group window: the same Group again is refused, in Epic's words...
    let (status, _, body) = kick_off(&sandbox, &other, groups[2]).await;
    assert_eq!(status, 429);
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .expect("text")
            .contains("The Client requested this Group too recently"),
        "{body}"
    );

    // ... until the job is deleted, which frees both the slot and the Group.
    let response = http()
        .delete(&first_status)
        .bearer_auth(&token)
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(kick_off(&sandbox, &token, groups[0]).await.0, 202);

    // Finished jobs expire after the retention: their status URL answers 404 and their slot
    // is free again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, _, _) = get_url(&token, &first_status).await;
    assert_eq!(status, 404);
    assert_eq!(kick_off(&sandbox, &token, groups[2]).await.0, 202);
}

#[tokio::test]
async fn export_jobs_together_stay_within_a_memory_budget() {
    let (sandbox, _, token) = start(|config| {
        config.patients = 12;
        config.bulk.memory_budget = 64 << 10;
    })
    .await;
    // The whole population holds megabytes of JSON: more than the budget.
    let (status, headers, body) = kick_off(&sandbox, &token, "eAllSandboxPatients.Group3").await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .expect("text")
            .contains("budget")
    );
    // The refusal did not claim the Group window or a slot: a smaller export still fits.
    let (status, _, body) = kick_off(&sandbox, &token, "ePediatric.Cohort.Group3").await;
    assert!(status == 202 || status == 429, "{body}");
}

#[tokio::test]
async fn oversized_bodies_are_answered_with_an_operation_outcome() {
    let (sandbox, _, token) = start(|config| config.max_body_bytes = 4096).await;
    let big = format!(
        "{{\"resourceType\":\"Patient\",\"id\":\"big\",\"text\":{{\"status\":\"generated\",\"div\":\"{}\"}}}}",
        "x".repeat(10_000)
    );
    let response = http()
        .put(format!("{}/Patient/big", sandbox.base_url()))
        .header("Accept", "application/fhir+json")
        .header("Content-Type", "application/fhir+json")
        .bearer_auth(&token)
        .body(big.clone())
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 413);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/fhir+json")
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "too-costly");
    // The token endpoint answers an OAuth error instead.
    let response = http()
        .post(sandbox.token_url().clone())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&pad={}",
            "y".repeat(10_000)
        ))
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}
