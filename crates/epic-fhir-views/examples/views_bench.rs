//! Throughput and memory of a view run: the bundled vital-signs view over an NDJSON file of
//! Observations, into Parquet, as `epic-fhir view run` does it.
//!
//! ```sh
//! cargo run --release -p epic-fhir-views --example views_bench -- \
//!     --make 1000000 /tmp/views-bench/Observation.ndjson      # once: 1M Observations
//! cargo run --release -p epic-fhir-views --example views_bench -- \
//!     /tmp/views-bench/Observation.ndjson --workers 1          # the figures, as JSON
//! ```
//!
//! `--make N FILE` writes N Observations cycled from the Synthea sample (`data/synthea-r4`),
//! each with a fresh id, so the file has the sample's mix of vital signs (with blood pressure
//! components), laboratory results and surveys. CPU time comes from `/proc/self/stat`, peak
//! memory from `VmHWM` in `/proc/self/status`.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use epic_fhir_views::{Destination, Format, InputFile, Progress, RunOptions, ViewDefinition, run};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn make(count: usize, path: &Path) -> std::io::Result<()> {
    let sample = root().join("data/synthea-r4/Observation.ndjson.gz");
    let reader =
        std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(sample)?));
    let lines: Vec<String> = reader.lines().collect::<Result<_, _>>()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for i in 0..count {
        let line = &lines[i % lines.len()];
        // Ids are 36-character UUIDs in the sample: replace with a unique one of the same size.
        let start = line.find("\"id\":\"").map(|p| p + 6).unwrap_or(0);
        let end = start + line[start..].find('"').unwrap_or(0);
        out.write_all(&line.as_bytes()[..start])?;
        write!(out, "{i:036}")?;
        out.write_all(&line.as_bytes()[end..])?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--make") {
        let count: usize = args.get(1).ok_or("--make N FILE")?.parse()?;
        let path = PathBuf::from(args.get(2).ok_or("--make N FILE")?);
        make(count, &path)?;
        eprintln!("wrote {count} Observations to {}", path.display());
        return Ok(());
    }
    let input = PathBuf::from(
        args.first()
            .ok_or("usage: views_bench FILE [--workers N] [--out DIR] [--format F]")?,
    );
    let mut options = RunOptions::default();
    let mut out = std::env::temp_dir().join("views-bench-out");
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or("a flag needs a value")?;
        match flag.as_str() {
            "--workers" => options.workers = value.parse()?,
            "--out" => out = PathBuf::from(value),
            "--format" => options.format = value.parse::<Format>()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let view = ViewDefinition::from_slice(&std::fs::read(root().join("views/vital_signs.json"))?)?;
    let bytes = std::fs::metadata(&input)?.len();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let summary = run(
        &[view],
        [Ok(InputFile::path(&input))],
        &Destination::Local(out.clone()),
        &options,
        &Progress::default(),
        None,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let mb = bytes as f64 / 1e6;
    let report = serde_json::json!({
        "input_bytes": bytes,
        "resources": summary.resources,
        "rows": summary.views[0].rows,
        "output_bytes": summary.views[0].bytes,
        "workers": options.workers,
        "format": options.format.extension(),
        "wall_seconds": seconds,
        "cpu_seconds": cpu,
        "mb_per_second_wall": mb / seconds,
        "mb_per_cpu_second": mb / cpu,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}
