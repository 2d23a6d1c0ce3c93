//! Parsing a 1,000-entry searchset Bundle of Synthea Observations into the typed `Bundle`
//! model and into `serde_json::Value`, and writing both back.
//!
//! `model::from_slice` tracks the JSON path only on a second pass after a failure, so on valid
//! input it should match plain `serde_json::from_slice`. A second group measures the slower
//! path taken when `resourceType` is not the first member of each resource.
//!
//! The Observations are the first 1,000 lines of `Observation.ndjson.gz` from the Synthea
//! data set (`EPIC_FHIR_SYNTHEA_DIR`, by default `data/synthea-r4` in the
//! repository): vital signs, laboratory results, blood pressures with components and surveys.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use epic_fhir::model::{self, Bundle};
use flate2::read::GzDecoder;
use serde_json::{Value, json};

/// Entries in the benchmark bundle: Epic's maximum page size.
const ENTRIES: usize = 1_000;

fn synthea_observations() -> Vec<Value> {
    let dir = match std::env::var_os("EPIC_FHIR_SYNTHEA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4"),
    };
    let path = dir.join("Observation.ndjson.gz");
    let file = File::open(&path).unwrap_or_else(|error| {
        panic!(
            "cannot open {} ({error}); set EPIC_FHIR_SYNTHEA_DIR",
            path.display()
        )
    });
    BufReader::new(GzDecoder::new(file))
        .lines()
        .take(ENTRIES)
        .map(|line| serde_json::from_str(&line.expect("gzip line")).expect("JSON line"))
        .collect()
}

/// A searchset page as Epic returns it: links, total, and entries with fullUrl and search mode.
/// Returns the page as a server writes it (`resourceType` first in every resource) and the same
/// page with sorted keys, where `resourceType` comes after `id` and `meta`.
fn searchset_bytes() -> (Vec<u8>, Vec<u8>) {
    let base = "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4";
    let entries: Vec<Value> = synthea_observations()
        .into_iter()
        .map(|resource| {
            let id = resource["id"].as_str().unwrap_or_default().to_owned();
            json!({"fullUrl": format!("{base}/Observation/{id}"), "resource": resource, "search": {"mode": "match"}})
        })
        .collect();
    assert_eq!(
        entries.len(),
        ENTRIES,
        "the Synthea file has fewer Observations than expected"
    );
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
    // `json!` sorts keys; writing through the typed model puts `resourceType` first in every
    // resource, as servers do.
    let sorted = serde_json::to_vec(&bundle).expect("bundle text");
    let bundle: Bundle = model::from_slice(&sorted).expect("benchmark bundle parses");
    (serde_json::to_vec(&bundle).expect("bundle bytes"), sorted)
}

fn parse(c: &mut Criterion) {
    let (bytes, sorted) = searchset_bytes();
    let mut group = c.benchmark_group("parse_searchset_1000_observations");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&bytes)).expect("value"));
    });
    group.bench_function(
        "typed Bundle (serde_json::from_slice, no path on error)",
        |b| {
            b.iter(|| serde_json::from_slice::<Bundle>(black_box(&bytes)).expect("bundle"));
        },
    );
    group.bench_function("typed Bundle (model::from_slice)", |b| {
        b.iter(|| model::from_slice::<Bundle>(black_box(&bytes)).expect("bundle"));
    });
    group.finish();

    // The slower path: each resource is read into JSON before its `resourceType` is known.
    let mut group = c.benchmark_group("parse_searchset_1000_observations_resource_type_late");
    group.throughput(Throughput::Bytes(sorted.len() as u64));
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&sorted)).expect("value"));
    });
    group.bench_function("typed Bundle (model::from_slice)", |b| {
        b.iter(|| model::from_slice::<Bundle>(black_box(&sorted)).expect("bundle"));
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
        b.iter(|| serde_json::to_vec(black_box(&bundle)).expect("bundle bytes"));
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
