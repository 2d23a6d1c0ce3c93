//! The inputs of the parse benchmarks, shared by `benches/parse.rs` and
//! `examples/parse_passes.rs` (each includes this file by path).
//!
//! Data: `data/synthea-r4` in the repository, or `EPIC_FHIR_SYNTHEA_DIR`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use epic_fhir_model::{self as model, Bundle};
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

/// The non-empty lines of one gzipped NDJSON file.
fn lines_of(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let file = File::open(path).map_err(|e| {
        format!(
            "cannot open {} ({e}); set EPIC_FHIR_SYNTHEA_DIR",
            path.display()
        )
    })?;
    let mut lines = Vec::new();
    for line in BufReader::new(GzDecoder::new(file)).split(b'\n') {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if !line.is_empty() {
            lines.push(line);
        }
    }
    Ok(lines)
}

/// Every NDJSON line of the Synthea set, in file-name order.
pub(crate) fn synthea_lines() -> Result<Vec<Vec<u8>>, String> {
    let dir = synthea_dir();
    let entries = fs::read_dir(&dir).map_err(|e| {
        format!(
            "cannot read {} ({e}); set EPIC_FHIR_SYNTHEA_DIR",
            dir.display()
        )
    })?;
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

/// A 1,000-entry searchset page of Synthea Observations as a server writes it (written by the
/// typed writer: `resourceType` first), and the same page with sorted keys (`resourceType`
/// after `id` and `meta`, the reader's slower path).
pub(crate) fn searchset_pages() -> Result<(Vec<u8>, Vec<u8>), String> {
    let base = "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4";
    let mut entries = Vec::new();
    for line in lines_of(&synthea_dir().join("Observation.ndjson.gz"))?
        .iter()
        .take(ENTRIES)
    {
        let resource: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let id = resource["id"].as_str().unwrap_or_default().to_owned();
        entries.push(json!({"fullUrl": format!("{base}/Observation/{id}"), "resource": resource, "search": {"mode": "match"}}));
    }
    if entries.len() != ENTRIES {
        return Err(format!(
            "fewer Observations than expected: {}",
            entries.len()
        ));
    }
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
    let sorted = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
    let typed: Bundle = model::from_slice(&sorted).map_err(|e| e.to_string())?;
    Ok((model::to_vec(&typed), sorted))
}
