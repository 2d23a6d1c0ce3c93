//! Times the typed parse over and over and prints the fastest pass and the median, for A/B
//! comparisons on a shared, noisy machine (the fastest of many passes moves far less between
//! runs than a mean does) and for `perf record`.
//!
//! Inputs are the two of the criterion benchmark (`benches/parse.rs`): every line of the
//! Synthea set parsed into `Resource` one at a time, and a 1,000-Observation searchset Bundle
//! as a server writes it (the inputs come from `benches/support/inputs.rs`). Each parsed value is dropped inside the timed pass, as in use.
//!
//! Run: `cargo run --release -p epic-fhir-model --example parse_passes -- [PASSES] [mix|searchset]`
//! (default 15 passes of both). Data: `data/synthea-r4`, or `EPIC_FHIR_SYNTHEA_DIR`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use epic_fhir_model::{self as model, Bundle, Resource};

#[path = "../benches/support/inputs.rs"]
mod inputs;

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
    if only.as_deref() != Some("searchset") {
        let lines = inputs::synthea_lines()?;
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
        let (page, _sorted) = inputs::searchset_pages()?;
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
