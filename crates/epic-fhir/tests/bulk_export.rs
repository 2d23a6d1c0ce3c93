//! The bulk export client against the local sandbox: whole exports, kick-off errors, polling,
//! cancellation, injected faults, and an export aborted part-way then resumed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use epic_fhir::bulk::{
    BulkExport, DownloadOptions, ExportEvent, ExportRequest, ExportStatus, JOURNAL_FILE,
    PollOptions, STATE_FILE,
};
use epic_fhir::{ErrorKind, FhirClient};
use epic_fhir_sandbox::Faults;
use serde_json::Value;
use support::{SandboxFixture, patient_retries, sandbox_fixture};

const ALL: &str = "eAllSandboxPatients.Group3";
const NAMED: &str = "eEpicNamedPatients.Group3";
/// Small files, so that an export has many and several download at once.
const FILE_SIZE: usize = 400;

async fn fixture(tweak: impl FnOnce(&mut epic_fhir_sandbox::SandboxConfig)) -> SandboxFixture {
    sandbox_fixture(
        |config| {
            config.patients = 12;
            config.bulk.max_resources_per_file = FILE_SIZE;
            tweak(config);
        },
        |builder| builder.retry_policy(patient_retries()),
    )
    .await
}

fn polls() -> PollOptions {
    PollOptions::default()
        .with_interval_bounds(Duration::ZERO, Duration::from_secs(2))
        .with_initial_interval(Duration::from_millis(50))
        .with_deadline(Duration::from_secs(120))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "epic-fhir-bulk-export-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The visible files of an output folder (the state and partial downloads are hidden).
fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("read file"),
            )
        })
        .collect()
}

/// Every `Type/id` of the output files, asserting that none appears twice.
fn records(files: &BTreeMap<String, Vec<u8>>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (name, bytes) in files.iter().filter(|(name, _)| !name.starts_with("error-")) {
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let value: Value = serde_json::from_slice(line).expect("a JSON line");
            let key = format!(
                "{}/{}",
                value["resourceType"].as_str().expect("type"),
                value["id"].as_str().expect("id")
            );
            assert!(name.starts_with(value["resourceType"].as_str().expect("type")));
            assert!(seen.insert(key.clone()), "{key} appears twice");
        }
    }
    seen
}

async fn export(
    client: &FhirClient,
    request: ExportRequest,
    dir: &Path,
) -> epic_fhir::bulk::ExportSummary {
    BulkExport::new(client, request, dir)
        .poll_options(polls())
        .download_options(DownloadOptions::default().with_max_attempts(12))
        .run()
        .await
        .expect("export")
}

#[tokio::test]
async fn a_group_export_is_downloaded_byte_for_byte() {
    let f = fixture(|_| {}).await;
    let dir = scratch("group");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let summary = BulkExport::new(&f.client, ExportRequest::group(ALL), &dir)
        .poll_options(polls())
        .download_options(DownloadOptions::default().with_parallel(3))
        .on_event(move |event| sink.lock().expect("lock").push(event.clone()))
        .run()
        .await
        .expect("export");
    let files = files_in(&dir);
    let records = records(&files);
    assert_eq!(records.len() as u64, summary.resources);
    assert!(summary.resources > 2000, "{summary:?}");
    assert!(
        summary.files > 5,
        "several files of {FILE_SIZE}: {summary:?}"
    );
    assert_eq!(
        summary.types.values().map(|t| t.resources).sum::<u64>(),
        summary.resources
    );
    let members = f
        .sandbox
        .groups()
        .into_iter()
        .find(|g| g.id == ALL)
        .expect("group")
        .members;
    assert_eq!(summary.types["Patient"].resources, members as u64);

    // Each file is exactly what the server serves at its URL.
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).expect("state")).expect("json");
    let token = epic_fhir::auth::TokenProvider::token(&f.auth)
        .await
        .expect("token");
    let http = reqwest::Client::new();
    for file in state["files"].as_array().expect("files") {
        let served = http
            .get(file["url"].as_str().expect("url"))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("body");
        let name = file["name"].as_str().expect("name");
        assert_eq!(files[name], served.to_vec(), "{name}");
        assert_eq!(file["done"]["bytes"].as_u64(), Some(served.len() as u64));
    }
    assert_eq!(
        files.keys().filter(|n| !n.starts_with("error-")).count(),
        summary.files
    );
    let events = events.lock().expect("lock");
    assert!(
        matches!(events[0], ExportEvent::KickedOff { .. }),
        "{:?}",
        events[0]
    );
    let done = events
        .iter()
        .filter(|e| matches!(e, ExportEvent::FileDone { .. }))
        .count();
    assert_eq!(done, state["files"].as_array().expect("files").len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn patient_and_system_levels_with_type_and_filter() {
    let f = fixture(|_| {}).await;
    let dir = scratch("patients");
    let summary = export(
        &f.client,
        ExportRequest::patients().types(["Patient", "Condition"]),
        &dir,
    )
    .await;
    assert_eq!(
        summary.types.keys().collect::<Vec<_>>(),
        ["Condition", "Patient"]
    );
    let _ = std::fs::remove_dir_all(&dir);

    let dir = scratch("system");
    let summary = export(
        &f.client,
        ExportRequest::system()
            .types(["Patient"])
            .type_filter("Patient?gender=female"),
        &dir,
    )
    .await;
    let files = files_in(&dir);
    for bytes in files.values() {
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let value: Value = serde_json::from_slice(line).expect("json");
            assert_eq!(value["gender"], "female");
        }
    }
    assert!(summary.resources > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn kick_off_errors_surface_with_the_operation_outcome() {
    let f = fixture(|_| {}).await;
    let err = ExportRequest::group("eNoSuchGroup")
        .kick_off(&f.client)
        .await
        .expect_err("unknown group");
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.status(), Some(404));
    assert!(err.operation_outcome().expect("outcome").is_error());

    let err = ExportRequest::group(NAMED)
        .types(["Patient"])
        .type_filter("Condition?clinical-status=active")
        .kick_off(&f.client)
        .await
        .expect_err("filter outside _type");
    assert_eq!(err.status(), Some(400));
    let outcome = err.operation_outcome().expect("outcome");
    assert!(
        outcome.summary().contains("_typeFilter"),
        "{}",
        outcome.summary()
    );

    let err = ExportRequest::group(NAMED)
        .types(["NotAType"])
        .kick_off(&f.client)
        .await
        .expect_err("unknown type");
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("NotAType"), "{err}");
}

#[tokio::test]
async fn polling_sees_progress_retry_after_and_429() {
    let f = fixture(|config| {
        config.bulk.pace_resources_per_second = 2000;
        config.bulk.poll_interval = Duration::from_secs(1);
    })
    .await;
    let job = ExportRequest::group(ALL)
        .kick_off(&f.client)
        .await
        .expect("kick-off");
    match job.status().await.expect("first poll") {
        ExportStatus::InProgress {
            progress,
            retry_after,
        } => {
            assert!(progress.expect("X-Progress").contains('%'));
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("a paced job is not done at once: {other:?}"),
    }
    let err = job.status().await.expect_err("too fast");
    assert_eq!(err.status(), Some(429));
    assert!(err.retry_after().is_some());

    let polled = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&polled);
    let started = Instant::now();
    let manifest = job
        .wait(&polls(), &move |event: &ExportEvent| {
            if let ExportEvent::Polled {
                progress,
                next_poll,
            } = event
            {
                sink.lock()
                    .expect("lock")
                    .push((progress.clone(), *next_poll));
            }
        })
        .await
        .expect("manifest");
    assert!(manifest.total_resources().expect("counts") > 2000);
    let polled = polled.lock().expect("lock");
    assert!(!polled.is_empty());
    // Every wait follows the server's Retry-After of 1 s, so no poll was refused with 429
    // after the first (which was this test's own doing).
    assert!(
        polled
            .iter()
            .all(|(_, wait)| *wait == Duration::from_secs(1)),
        "{polled:?}"
    );
    assert!(polled.iter().any(|(p, _)| p.is_some()), "{polled:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn cancel_deletes_the_job() {
    let f = fixture(|config| config.bulk.pace_resources_per_second = 500).await;
    let job = ExportRequest::group(ALL)
        .kick_off(&f.client)
        .await
        .expect("kick-off");
    job.cancel().await.expect("cancel");
    let err = job.status().await.expect_err("gone");
    assert_eq!(err.status(), Some(404));
    let err = job.cancel().await.expect_err("already gone");
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn faults_do_not_change_a_single_byte() {
    let f = fixture(|_| {}).await;
    let clean_dir = scratch("clean");
    export(&f.client, ExportRequest::group(ALL), &clean_dir).await;
    let clean = files_in(&clean_dir);

    f.sandbox
        .set_faults(Faults {
            error_rate: 0.2,
            drop_rate: 0.1,
            retry_after: Duration::ZERO,
            ..Faults::default()
        })
        .expect("faults");
    let faulty_dir = scratch("faulty");
    let summary = export(&f.client, ExportRequest::group(ALL), &faulty_dir).await;
    f.sandbox.set_faults(Faults::default()).expect("faults off");
    let faulty = files_in(&faulty_dir);

    assert_eq!(records(&faulty), records(&clean));
    assert_eq!(faulty, clean, "the same files, byte for byte");
    assert!(
        f.client.retries() > 0 && summary.bytes_transferred >= summary.bytes,
        "faults happened and were absorbed ({} retries)",
        f.client.retries()
    );
    let _ = std::fs::remove_dir_all(&clean_dir);
    let _ = std::fs::remove_dir_all(&faulty_dir);
}

/// Files whose names end in `.part` and hold bytes.
fn partial_files(dir: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let len = entry.metadata().ok()?.len();
                    (name.ends_with(".part") && len > 0).then_some((name, len))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The files the saved state says are done, with their sizes: the state file's, plus those the
/// journal adds (its lines that carry the state's journal id).
fn saved_done(dir: &Path) -> Vec<(String, u64)> {
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).expect("state")).expect("json");
    let mut done: BTreeMap<String, u64> = state["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| !f["done"].is_null())
        .map(|f| {
            let name = f["name"].as_str().expect("name").to_owned();
            (name, f["done"]["bytes"].as_u64().expect("bytes"))
        })
        .collect();
    let journal = std::fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap_or_default();
    for line in journal.lines() {
        let line: Value = serde_json::from_str(line).expect("journal line");
        if line["journal"] == state["journal"] && !line["done"].is_null() {
            let name = line["name"].as_str().expect("name").to_owned();
            done.insert(name, line["done"]["bytes"].as_u64().expect("bytes"));
        }
    }
    done.into_iter().collect()
}

#[tokio::test]
async fn an_aborted_export_resumes_without_loss_or_duplicates() {
    let f = fixture(|config| config.bulk.max_resources_per_file = 1000).await;
    let reference_dir = scratch("reference");
    let reference = export(&f.client, ExportRequest::group(ALL), &reference_dir).await;
    let expected = files_in(&reference_dir);

    // A slow export, aborted once a file is finished and another is part-way.
    let dir = scratch("aborted");
    let slow = BulkExport::new(&f.client, ExportRequest::group(ALL), &dir)
        .poll_options(polls())
        .download_options(
            DownloadOptions::default()
                .with_parallel(2)
                .with_max_bytes_per_second(Some(reference.bytes / 4)),
        );
    let task = tokio::spawn(slow.run());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A file counts as finished once the saved state says so (its name alone may come
        // just before its journal line).
        let finished = dir.join(STATE_FILE).exists() && !saved_done(&dir).is_empty();
        if finished && !partial_files(&dir).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no partial download appeared");
        assert!(
            !task.is_finished(),
            "the export finished before it could be aborted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    // What the abort left, once the writes and renames already handed to the blocking pool
    // have ended: finished files, partial files, and files renamed into place whose journal
    // line the abort prevented (all of them kept by the resumed run).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let done = saved_done(&dir);
    let done_before = done.len();
    let done_bytes: u64 = done.iter().map(|(_, bytes)| bytes).sum();
    let total_bytes: u64 = expected.values().map(|b| b.len() as u64).sum();
    assert!(
        done_before >= 1 && done_before < expected.len(),
        "{done_before}"
    );
    let partial = partial_files(&dir);
    let renamed: u64 = files_in(&dir)
        .iter()
        .filter(|(name, _)| !done.iter().any(|(finished, _)| finished == *name))
        .map(|(_, bytes)| bytes.len() as u64)
        .sum();

    let resumed = BulkExport::new(&f.client, ExportRequest::group(ALL), &dir)
        .resume(true)
        .poll_options(polls())
        .run()
        .await
        .expect("resume");
    let files = files_in(&dir);
    assert_eq!(records(&files), records(&expected));
    assert_eq!(files, expected, "byte-identical to an uninterrupted export");
    assert_eq!(resumed.resources, reference.resources);
    assert_eq!(resumed.files_reused, done_before);
    let partial_bytes: u64 = partial.iter().map(|(_, len)| len).sum();
    assert!(
        resumed.bytes_transferred <= total_bytes - done_bytes - partial_bytes - renamed,
        "finished files and partial bytes were not downloaded again: {} of {total_bytes} (done {done_bytes}, partial {partial:?}, renamed but not journaled {renamed})",
        resumed.bytes_transferred,
    );
    assert!(partial_files(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&reference_dir);
    let _ = std::fs::remove_dir_all(&dir);
}
