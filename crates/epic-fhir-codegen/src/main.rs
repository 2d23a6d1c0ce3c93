//! Generates the `epic-fhir-model` crate's Rust source from HL7's FHIR R4 definitions.
//!
//! ```text
//! cargo run -p epic-fhir-codegen            # rewrite crates/epic-fhir-model/src/generated
//! cargo run -p epic-fhir-codegen -- --check # exit 1 if the checked-in files differ
//! ```
//!
//! The definitions are the gzipped Bundles vendored in `data/fhir-r4` (StructureDefinitions of
//! every datatype and resource, ValueSets and CodeSystems for required bindings). The output is
//! deterministic, and a test checks that the checked-in files are exactly what it writes.

mod emit;
mod ir;
mod load;
mod phash;
mod tables;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The repository root (this crate lives in `crates/epic-fhir-codegen`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the generated files go.
fn out_dir() -> PathBuf {
    root().join("crates/epic-fhir-model/src/generated")
}

/// Generates every file: (path relative to the output folder, contents).
fn generate() -> Result<Vec<(String, String)>, String> {
    let defs = load::load(&root().join("data/fhir-r4"))?;
    let model = ir::build(&defs);
    Ok(emit::files(&model, &defs.value_sets))
}

/// The files under `dir`, relative to it.
fn existing_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let Ok(relative) = path.strip_prefix(base) {
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The differences between the generated files and those on disk, one line each.
fn differences(files: &[(String, String)], dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, text) in files {
        match std::fs::read_to_string(dir.join(path)) {
            Ok(on_disk) if on_disk == *text => {}
            Ok(_) => problems.push(format!("{path} differs from what the generator writes")),
            Err(_) => problems.push(format!("{path} is missing")),
        }
    }
    for path in existing_files(dir) {
        if !files.iter().any(|(p, _)| *p == path) {
            problems.push(format!("{path} is not written by the generator"));
        }
    }
    problems
}

fn write(files: &[(String, String)], dir: &Path) -> Result<(), String> {
    for path in existing_files(dir) {
        if !files.iter().any(|(p, _)| *p == path) {
            std::fs::remove_file(dir.join(&path))
                .map_err(|e| format!("cannot remove {path}: {e}"))?;
        }
    }
    for (path, text) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        if std::fs::read_to_string(&target).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&target, text).map_err(|e| format!("cannot write {path}: {e}"))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let files = match generate() {
        Ok(files) => files,
        Err(message) => {
            eprintln!("epic-fhir-codegen: {message}");
            return ExitCode::FAILURE;
        }
    };
    let dir = out_dir();
    if check {
        let problems = differences(&files, &dir);
        if problems.is_empty() {
            eprintln!("{} generated files are up to date", files.len());
            return ExitCode::SUCCESS;
        }
        for problem in problems {
            eprintln!("{problem}");
        }
        eprintln!("run `cargo run -p epic-fhir-codegen` to regenerate");
        return ExitCode::FAILURE;
    }
    match write(&files, &dir) {
        Ok(()) => {
            let lines: usize = files.iter().map(|(_, t)| t.lines().count()).sum();
            eprintln!(
                "wrote {} files ({lines} lines) to {}",
                files.len(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("epic-fhir-codegen: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_models_are_what_the_generator_writes() {
        let files = generate().expect("the definitions load");
        let problems = differences(&files, &out_dir());
        assert!(
            problems.is_empty(),
            "run `cargo run -p epic-fhir-codegen`:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate().unwrap(), generate().unwrap());
    }
}
