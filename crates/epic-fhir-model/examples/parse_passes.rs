//! Times the typed parse over and over and prints the fastest pass and the median, for A/B
//! comparisons on a shared, noisy machine (the fastest of many passes moves far less between
//! runs than a mean does) and for `perf record`.
//!
//! Inputs are the two of the criterion benchmark (`benches/parse.rs`): every line of the
//! Synthea set parsed into `Resource` one at a time, and a 1,000-Observation searchset Bundle
//! as a server writes it. Each parsed value is dropped inside the timed pass, as in use.
//!
//! Run: `cargo run --release -p epic-fhir-model --example parse_passes -- [PASSES] [mix|searchset]`
//! (default 15 passes of both). Data: `data/synthea-r4`, or `EPIC_FHIR_SYNTHEA_DIR`.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use epic_fhir_model::{self as model, Bundle, Resource};
use flate2::read::GzDecoder;
use serde_json::{Value, json};

fn synthea_dir() -> PathBuf {
    match std::env::var_os("EPIC_FHIR_SYNTHEA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/synthea-r4"),
    }
}

fn lines_of(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut lines = Vec::new();
    for line in BufReader::new(GzDecoder::new(file)).split(b'\n') {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if !line.is_empty() {
            lines.push(line);
        }
    }
    Ok(lines)
}

fn synthea_lines() -> Result<Vec<Vec<u8>>, String> {
    let dir = synthea_dir();
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    paths.sort();
    let mut lines = Vec::new();
    for path in &paths {
        lines.extend(lines_of(path)?);
    }
    Ok(lines)
}

/// The benchmark's page: 1,000 Synthea Observations, written by the typed writer.
fn searchset(observations: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let base = "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4";
    let mut entries = Vec::new();
    for line in observations.iter().take(1_000) {
        let resource: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let id = resource["id"].as_str().unwrap_or_default().to_owned();
        entries.push(json!({"fullUrl": format!("{base}/Observation/{id}"), "resource": resource, "search": {"mode": "match"}}));
    }
    let bundle = json!({
        "resourceType": "Bundle", "type": "searchset", "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{base}/Observation?category=laboratory")}],
        "entry": entries,
    });
    let sorted = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
    let typed: Bundle = model::from_slice(&sorted).map_err(|e| e.to_string())?;
    Ok(model::to_vec(&typed))
}

fn report(name: &str, bytes: usize, mut times: Vec<Duration>) {
    times.sort();
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let best = times[0].as_secs_f64();
    let median = times[times.len() / 2].as_secs_f64();
    println!(
        "{name}: best {:.1} MiB/s ({:.2} ms), median {:.1} MiB/s, {} passes",
        mib / best,
        best * 1e3,
        mib / median,
        times.len()
    );
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let passes: usize = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|_| format!("passes: not a number: {text}"))?,
        None => 15,
    };
    let only = args.next();
    let lines = synthea_lines()?;
    if only.as_deref() != Some("searchset") {
        let total: usize = lines.iter().map(Vec::len).sum();
        let mut times = Vec::with_capacity(passes);
        for _ in 0..passes.max(1) {
            let start = Instant::now();
            for line in &lines {
                let resource: Resource =
                    model::from_slice(black_box(line)).map_err(|e| e.to_string())?;
                black_box(resource);
            }
            times.push(start.elapsed());
        }
        report("synthea_ndjson_mix", total, times);
    }
    if only.as_deref() != Some("mix") {
        let observations: Vec<Vec<u8>> = lines
            .iter()
            .filter(|line| line.starts_with(br#"{"resourceType":"Observation""#))
            .cloned()
            .collect();
        let page = searchset(&observations)?;
        let mut times = Vec::with_capacity(passes * 20);
        for _ in 0..(passes.max(1) * 20) {
            let start = Instant::now();
            let bundle: Bundle = model::from_slice(black_box(&page)).map_err(|e| e.to_string())?;
            black_box(bundle);
            times.push(start.elapsed());
        }
        report("searchset_1000_observations", page.len(), times);
    }
    Ok(())
}
