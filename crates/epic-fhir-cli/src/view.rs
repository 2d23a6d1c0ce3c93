//! `epic-fhir view run` (SQL on FHIR views over NDJSON into Parquet, CSV or NDJSON tables)
//! and `epic-fhir view test` (the conformance suite, with the official report).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use epic_fhir_views::{
    Compression, Destination, ErrorKind, Format, InputFile, Progress, RunOptions, RunSummary,
    ViewDefinition,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Failure;

/// How often the progress line is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// `epic-fhir view ...`
#[derive(Debug, Args)]
pub(crate) struct ViewArgs {
    #[command(subcommand)]
    command: ViewCommand,
}

#[derive(Debug, Subcommand)]
enum ViewCommand {
    /// Run ViewDefinitions over NDJSON files, folders or an export folder, into tables
    /// `<out>/<view name>/part-00000.<ext>` on disk or in s3://, gs://, az://.
    Run(RunArgs),
    /// Run the SQL on FHIR conformance suite in DIR and write the official test report.
    Test(TestArgs),
}

/// Table format and layout flags shared with `export --view`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TableArgs {
    /// Table format.
    #[arg(long, default_value = "parquet", value_parser = parse_format)]
    pub(crate) format: Format,
    /// Parquet compression: zstd, snappy or none.
    #[arg(long, default_value = "zstd", value_parser = parse_compression)]
    pub(crate) compression: Compression,
    /// A Hive-style partition inside each table, e.g. source=org_a: several runs (one per
    /// Epic organisation) then write one shared table.
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) partition: Option<String>,
    /// Start a new part file when one reaches this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    pub(crate) part_size: u64,
    /// Threads that parse and evaluate (default: all cores).
    #[arg(long)]
    pub(crate) workers: Option<usize>,
}

impl TableArgs {
    pub(crate) fn options(&self) -> Result<RunOptions, Failure> {
        if self.part_size == 0 {
            return Err(Failure::usage(anyhow!(
                "--part-size must be at least 1 (MiB)"
            )));
        }
        let mut options = RunOptions {
            format: self.format,
            compression: self.compression,
            part_bytes: self.part_size << 20,
            partition: self.partition.clone(),
            ..RunOptions::default()
        };
        if let Some(workers) = self.workers {
            if workers == 0 {
                return Err(Failure::usage(anyhow!("--workers must be at least 1")));
            }
            options.workers = workers;
        }
        Ok(options)
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// ViewDefinition files (JSON), or folders of them.
    #[arg(required = true, value_name = "VIEW.json")]
    views: Vec<PathBuf>,
    /// NDJSON files (gzip too), folders of them, an `epic-fhir export` folder, or - for stdin.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    input: Vec<String>,
    /// A folder, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, or - (one
    /// view's rows on stdout, as CSV or NDJSON).
    #[arg(long, value_name = "DIR_OR_URL")]
    out: String,
    #[command(flatten)]
    table: TableArgs,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// The folder of test files (e.g. data/sql-on-fhir-v2/tests).
    dir: PathBuf,
    /// Where to write test_report.json (default: stdout).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

fn parse_format(text: &str) -> Result<Format, String> {
    text.parse()
}

fn parse_compression(text: &str) -> Result<Compression, String> {
    text.parse()
}

/// Views' errors: problems in the user's views, files or flags exit 2; the object store's
/// exit 1.
pub(crate) fn failure(error: epic_fhir_views::Error) -> Failure {
    match error.kind() {
        ErrorKind::Storage => Failure::remote(error),
        _ => Failure::usage(error),
    }
}

/// Reads the ViewDefinitions named on the command line (folders give their `*.json`). A view
/// without a name takes its file's name.
pub(crate) fn load_views(paths: &[PathBuf]) -> Result<Vec<ViewDefinition>, Failure> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))
                .map_err(Failure::usage)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Failure::usage(anyhow!(
                    "{} holds no *.json views",
                    path.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut views = Vec::new();
    for file in files {
        views.push(load_view(&file)?);
    }
    Ok(views)
}

fn load_view(path: &Path) -> Result<ViewDefinition, Failure> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the view {}", path.display()))
        .map_err(Failure::usage)?;
    let view = ViewDefinition::from_slice(&bytes)
        .with_context(|| format!("the view {} is not valid", path.display()))
        .map_err(Failure::usage)?;
    if view.name().is_some() {
        return Ok(view);
    }
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".json").trim_end_matches(".view"))
        .unwrap_or_default()
        .replace('-', "_");
    view.with_name(&stem)
        .with_context(|| {
            format!(
                "the view {} has no name, and its file name cannot name a table",
                path.display()
            )
        })
        .map_err(Failure::usage)
}

pub(crate) async fn run(args: ViewArgs) -> Result<(), Failure> {
    match args.command {
        ViewCommand::Run(args) => run_views(args).await,
        ViewCommand::Test(args) => test(args),
    }
}

async fn run_views(args: RunArgs) -> Result<(), Failure> {
    let views = load_views(&args.views)?;
    let destination = Destination::parse(&args.out).map_err(failure)?;
    let options = args.table.options()?;
    let inputs = epic_fhir_views::expand_inputs(&args.input).map_err(failure)?;
    let to_stdout = destination == Destination::Stdout;
    let inputs = inputs.into_iter().map(Ok);
    match run_blocking(views, inputs, destination, options, !to_stdout).await {
        Ok(summary) => print_summary(&summary, to_stdout),
        // The reader of our stdout went away (`| head`): not an error.
        Err(Failure::Usage(error)) if to_stdout && broken_pipe(error.as_ref()) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Whether an error was caused by a closed pipe.
fn broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// Runs views on a blocking thread with a progress line on stderr.
pub(crate) async fn run_blocking(
    views: Vec<ViewDefinition>,
    inputs: impl IntoIterator<Item = epic_fhir_views::Result<InputFile>> + Send + 'static,
    destination: Destination,
    options: RunOptions,
    show_progress: bool,
) -> Result<RunSummary, Failure> {
    let progress = Arc::new(Progress::default());
    let bar = if show_progress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(TICK);
        Some(bar)
    } else {
        None
    };
    let handle = tokio::runtime::Handle::current();
    let task = {
        let progress = Arc::clone(&progress);
        tokio::task::spawn_blocking(move || {
            epic_fhir_views::run(
                &views,
                inputs,
                &destination,
                &options,
                &progress,
                Some(handle),
            )
        })
    };
    tokio::pin!(task);
    let result = loop {
        tokio::select! {
            result = &mut task => break result,
            () = tokio::time::sleep(TICK) => {
                if let Some(bar) = &bar {
                    bar.set_message(format!(
                        "{} files, {:.1} MiB read, {} resources, {} rows",
                        progress.files(),
                        progress.bytes() as f64 / (1024.0 * 1024.0),
                        progress.resources(),
                        progress.rows()
                    ));
                }
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(error)) => Err(failure(error)),
        Err(error) => Err(Failure::remote(anyhow!("the view run stopped: {error}"))),
    }
}

pub(crate) fn print_summary(summary: &RunSummary, to_stderr: bool) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(summary).map_err(Failure::remote)?;
    if to_stderr {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}

fn test(args: TestArgs) -> Result<(), Failure> {
    let report = epic_fhir_views::conformance::run_dir(&args.dir).map_err(failure)?;
    let (mut passed, mut failed) = (0, 0);
    for (file, tests) in &report {
        for test in &tests.tests {
            if test.result.passed {
                passed += 1;
            } else {
                failed += 1;
                eprintln!(
                    "FAILED {file} / {}: {}",
                    test.name,
                    test.result.reason.as_deref().unwrap_or("")
                );
            }
        }
    }
    let json = serde_json::to_string_pretty(&report).map_err(Failure::remote)?;
    match &args.report {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Failure::usage)?,
        None => println!("{json}"),
    }
    eprintln!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(Failure::remote(anyhow!(
            "{failed} conformance tests failed"
        )));
    }
    Ok(())
}
