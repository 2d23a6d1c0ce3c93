//! The bulk client's per-line check of a downloaded NDJSON file (every line one JSON object
//! whose `resourceType` is the manifest's type, lines counted), fed in the chunk sizes a
//! download delivers, against the floors it is measured by: finding the newlines only, UTF-8
//! validation, and `serde_json` reading each line's `resourceType` (the check's slow path).
//!
//! The files are Synthea's `Observation` and `ExplanationOfBenefit` (`EPIC_FHIR_SYNTHEA_DIR`,
//! by default `data/synthea-r4`): short lines (about 1 KB) and long ones (about 10 KB).
//! Needs the crate's `fuzzing` feature, which exposes the check:
//! `cargo bench -p epic-fhir --features fuzzing --bench ndjson`.

use std::hint::black_box;
use std::io::Read as _;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use epic_fhir::fuzzing::check_ndjson;
use flate2::read::GzDecoder;

/// The chunk sizes a download sees: hyper's reads of a fast loopback body, and gzip's output.
const CHUNKS: [usize; 2] = [64 * 1024, 8 * 1024];

fn synthea(resource_type: &str) -> Vec<u8> {
    let dir = match std::env::var_os("EPIC_FHIR_SYNTHEA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4"),
    };
    let path = dir.join(format!("{resource_type}.ndjson.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|error| {
        panic!(
            "cannot open {} ({error}); set EPIC_FHIR_SYNTHEA_DIR",
            path.display()
        )
    });
    let mut bytes = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .expect("a gzip file");
    bytes
}

#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<std::borrow::Cow<'a, str>>,
}

fn check(c: &mut Criterion) {
    for resource_type in ["Observation", "ExplanationOfBenefit"] {
        let file = synthea(resource_type);
        let lines = file
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        let mut group = c.benchmark_group(format!("ndjson/{resource_type}"));
        group.throughput(Throughput::Bytes(file.len() as u64));
        group.sample_size(20);
        for chunk in CHUNKS {
            let chunks: Vec<&[u8]> = file.chunks(chunk).collect();
            group.bench_function(format!("check, {} KiB chunks", chunk / 1024), |b| {
                b.iter(|| {
                    let counted = check_ndjson(resource_type, black_box(&chunks), None, 1 << 26);
                    assert_eq!(counted, Ok(lines));
                })
            });
        }
        group.bench_function("floor: newlines only (memchr)", |b| {
            b.iter(|| black_box(file.iter().filter(|&&b| b == b'\n').count()))
        });
        group.bench_function("floor: UTF-8 only", |b| {
            b.iter(|| black_box(std::str::from_utf8(black_box(&file)).is_ok()))
        });
        group.bench_function("serde_json per line", |b| {
            b.iter(|| {
                for line in file.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let head: Head<'_> = serde_json::from_slice(line).expect("JSON");
                    black_box(head.resource_type);
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, check);
criterion_main!(benches);
