//! Typed parsing against `serde_json::Value` on the same bytes, in one run:
//!
//! - `searchset_1000_observations`: a 1,000-entry searchset Bundle (Epic's largest page) of
//!   Synthea Observations (vital signs, laboratory results, blood pressures with components,
//!   surveys), as a server writes it (`resourceType` first), and the same page with sorted keys
//!   (`resourceType` after `id` and `meta`, the slower path);
//! - `synthea_ndjson_mix`: every line of the Synthea data set (16 resource types, 59,484
//!   resources, 82 MB) parsed one line at a time into the `Resource` enum, as a bulk export's
//!   files are read;
//!   and the same lines validated (`validate_json`: every problem of every resource);
//! - writing the typed Bundle and the `Value` back.
//!
//! Data: `data/synthea-r4` in the repository, or `EPIC_FHIR_SYNTHEA_DIR`.
//! Run: `cargo bench -p epic-fhir-model --bench parse`.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use epic_fhir_model::{self as model, Bundle, Resource};
use flate2::read::GzDecoder;
use serde_json::{Value, json};

/// Entries in the searchset page: Epic's maximum page size.
const ENTRIES: usize = 1_000;

fn synthea_dir() -> PathBuf {
    match std::env::var_os("EPIC_FHIR_SYNTHEA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4"),
    }
}

fn lines_of(path: &PathBuf) -> Vec<Vec<u8>> {
    let file = File::open(path).unwrap_or_else(|error| {
        panic!(
            "cannot open {} ({error}); set EPIC_FHIR_SYNTHEA_DIR",
            path.display()
        )
    });
    BufReader::new(GzDecoder::new(file))
        .split(b'\n')
        .map(|line| line.expect("gzip line"))
        .filter(|line| !line.is_empty())
        .collect()
}

/// Every NDJSON line of the Synthea set, in file-name order.
fn synthea_lines() -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(synthea_dir())
        .expect("Synthea directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    paths.sort();
    paths.iter().flat_map(lines_of).collect()
}

/// The page as a server writes it, and the same page with sorted keys.
fn searchset_bytes() -> (Vec<u8>, Vec<u8>) {
    let base = "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4";
    let entries: Vec<Value> = lines_of(&synthea_dir().join("Observation.ndjson.gz"))
        .into_iter()
        .take(ENTRIES)
        .map(|line| {
            let resource: Value = serde_json::from_slice(&line).expect("JSON line");
            let id = resource["id"].as_str().unwrap_or_default().to_owned();
            json!({"fullUrl": format!("{base}/Observation/{id}"), "resource": resource, "search": {"mode": "match"}})
        })
        .collect();
    assert_eq!(entries.len(), ENTRIES, "fewer Observations than expected");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": ENTRIES,
        "link": [
            {"relation": "self", "url": format!("{base}/Observation?patient=erXuFYUfucBZaryVksYEcMg3&category=laboratory")},
            {"relation": "next", "url": format!("{base}/Observation?sessionID=16-57E8A1B2C3D4E5F6")}
        ],
        "entry": entries,
    });
    // `json!` sorts keys; the typed writer puts `resourceType` first, as servers do.
    let sorted = serde_json::to_vec(&bundle).expect("bundle text");
    let typed: Bundle = model::from_slice(&sorted).expect("benchmark bundle parses");
    (model::to_vec(&typed), sorted)
}

fn parse(c: &mut Criterion) {
    let (bytes, sorted) = searchset_bytes();
    let mut group = c.benchmark_group("searchset_1000_observations");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&bytes)).expect("value"));
    });
    group.bench_function("typed Bundle", |b| {
        b.iter(|| model::from_slice::<Bundle>(black_box(&bytes)).expect("bundle"));
    });
    group.finish();

    let mut group = c.benchmark_group("searchset_1000_observations_sorted_keys");
    group.throughput(Throughput::Bytes(sorted.len() as u64));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&sorted)).expect("value"));
    });
    group.bench_function("typed Bundle", |b| {
        b.iter(|| model::from_slice::<Bundle>(black_box(&sorted)).expect("bundle"));
    });
    group.finish();

    let lines = synthea_lines();
    let total: usize = lines.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("synthea_ndjson_mix");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(serde_json::from_slice::<Value>(black_box(line)).expect("value"));
            }
        });
    });
    group.bench_function("typed Resource", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(model::from_slice::<Resource>(black_box(line)).expect("resource"));
            }
        });
    });
    group.bench_function("validate_json", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(model::validate_json(black_box(line)));
            }
        });
    });
    group.finish();

    let bundle: Bundle = model::from_slice(&bytes).expect("bundle");
    let value: Value = serde_json::from_slice(&bytes).expect("value");
    let mut group = c.benchmark_group("write_searchset_1000_observations");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::to_vec(black_box(&value)).expect("value bytes"));
    });
    group.bench_function("typed Bundle", |b| {
        b.iter(|| model::to_vec(black_box(&bundle)));
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
