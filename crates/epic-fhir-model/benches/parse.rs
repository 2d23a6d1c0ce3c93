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

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use epic_fhir_model::{self as model, Bundle, Resource};
use serde_json::Value;

#[path = "support/inputs.rs"]
mod inputs;

fn parse(c: &mut Criterion) {
    let (bytes, sorted) = inputs::searchset_pages().unwrap_or_else(|e| panic!("{e}"));
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

    let lines = inputs::synthea_lines().unwrap_or_else(|e| panic!("{e}"));
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
