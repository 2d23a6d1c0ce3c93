//! `epic-fhir export`: a Bulk Data export into a folder, resumable, with a progress bar on
//! stderr and a JSON summary on stdout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use clap::{ArgGroup, Args};
use epic_fhir::ErrorKind;
use epic_fhir::bulk::{
    BulkExport, DownloadOptions, ExportEvent, ExportRequest, ExportSummary, PollOptions,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Failure;
use crate::settings::ConnectionArgs;

/// The most files downloaded at once: more only opens connections without speeding anything.
const MAX_PARALLEL: usize = 64;
/// How often the spinner turns while the server works.
const TICK: Duration = Duration::from_millis(120);

/// Flags of `epic-fhir export`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("level").args(["group", "patient_level", "system"])))]
pub(crate) struct ExportArgs {
    /// Export the members of this Group (Group/ID/$export, the only level Epic serves).
    #[arg(long, value_name = "ID")]
    group: Option<String>,
    /// Export every patient (Patient/$export).
    #[arg(long)]
    patient_level: bool,
    /// Export everything the client may read (system-level $export).
    #[arg(long)]
    system: bool,
    /// Resource types to export (_type), comma-separated, e.g. Patient,Observation.
    #[arg(long = "type", value_name = "T1,T2", value_delimiter = ',')]
    types: Vec<String>,
    /// Only resources changed since this instant (_since), e.g. 2024-01-01T00:00:00Z.
    #[arg(long, value_name = "INSTANT")]
    since: Option<String>,
    /// A _typeFilter query, e.g. "Observation?category=laboratory"; repeatable.
    #[arg(long = "type-filter", value_name = "QUERY")]
    type_filters: Vec<String>,
    /// The output folder (created if missing). It also holds the export's state, so the same
    /// folder is what --resume and --cancel work on.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Files downloaded at the same time (1-64).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Continue the export saved in --out: finished files are kept, partial ones completed.
    /// Without --group/--patient-level/--system, whatever export the folder holds.
    #[arg(long)]
    resume: bool,
    /// Cancel the export saved in --out (DELETE on its status URL) and remove its state;
    /// finished files stay.
    #[arg(long, conflicts_with_all = ["resume", "cleanup"])]
    cancel: bool,
    /// Delete the job on the server once every file is downloaded.
    #[arg(long)]
    cleanup: bool,
    /// Cap the download rate in bytes per second; K, M and G multiply by 1024 (e.g. 500K).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    limit_rate: Option<u64>,
    /// Give up waiting for the server after this many seconds (the job keeps running; resume
    /// later).
    #[arg(long, value_name = "SECONDS", default_value_t = 24 * 3600)]
    max_wait: u64,
    /// Flatten the export with these SQL on FHIR ViewDefinitions (files or folders) as its
    /// files arrive; the tables go to --view-out.
    #[arg(long = "view", value_name = "VIEW.json", requires = "view_out")]
    views: Vec<PathBuf>,
    /// Where the views' tables go: a folder, s3://, gs:// or az://.
    #[arg(long, value_name = "DIR_OR_URL", requires = "views")]
    view_out: Option<String>,
    #[command(flatten)]
    view_table: crate::view::TableArgs,
    #[command(flatten)]
    connection: ConnectionArgs,
}

impl ExportArgs {
    /// The export asked for by the flags, if any.
    fn request(&self) -> Result<Option<ExportRequest>, Failure> {
        let request = match (&self.group, self.patient_level, self.system) {
            (Some(group), _, _) => ExportRequest::group(group.clone()),
            (None, true, _) => ExportRequest::patients(),
            (None, false, true) => ExportRequest::system(),
            (None, false, false) => {
                if !self.types.is_empty() || self.since.is_some() || !self.type_filters.is_empty() {
                    return Err(Failure::usage(anyhow!(
                        "--type, --since and --type-filter need a level: --group ID, --patient-level or --system"
                    )));
                }
                return Ok(None);
            }
        };
        let mut request = request.types(
            self.types
                .iter()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty()),
        );
        if let Some(since) = &self.since {
            let instant = OffsetDateTime::parse(since, &Rfc3339).map_err(|e| {
                Failure::usage(anyhow!(
                    "--since `{since}` is not an instant ({e}): write it like 2024-01-01T00:00:00Z"
                ))
            })?;
            request = request.since(instant);
        }
        for filter in &self.type_filters {
            request = request.type_filter(filter.clone());
        }
        Ok(Some(request))
    }
}

/// Parses `123`, `500K`, `20M`, `1G` (binary multiples).
fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (digits, multiplier) = match trimmed.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some('M') => (&trimmed[..trimmed.len() - 1], 1u64 << 20),
        Some('G') => (&trimmed[..trimmed.len() - 1], 1u64 << 30),
        _ => (trimmed, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{text}` is not a rate such as 250000, 500K or 20M"))
}

/// Local file problems (an output folder that cannot be written, a damaged state) are the
/// user's to fix; everything else is classified as usual.
fn failure(error: epic_fhir::Error) -> Failure {
    if error.kind() == ErrorKind::Io {
        Failure::usage(error)
    } else {
        Failure::from(error)
    }
}

pub(crate) async fn run(args: ExportArgs) -> Result<(), Failure> {
    if !(1..=MAX_PARALLEL).contains(&args.parallel) {
        return Err(Failure::usage(anyhow!(
            "--parallel {} is out of range: 1 to {MAX_PARALLEL}",
            args.parallel
        )));
    }
    let request = args.request()?;
    if request.is_none() && !args.resume && !args.cancel {
        return Err(Failure::usage(anyhow!(
            "say what to export: --group ID, --patient-level or --system (or --resume / --cancel for the export saved in --out)"
        )));
    }
    // Views are checked before anything is asked of the server.
    let flatten = if args.views.is_empty() {
        None
    } else {
        let views = crate::view::load_views(&args.views)?;
        let destination =
            epic_fhir_views::Destination::parse(args.view_out.as_deref().unwrap_or_default())
                .map_err(crate::view::failure)?;
        if destination == epic_fhir_views::Destination::Stdout {
            return Err(Failure::usage(anyhow!(
                "--view-out needs a folder or an object store URL, not -"
            )));
        }
        Some((views, destination, args.view_table.options()?))
    };
    let client = crate::fhir::client(&args.connection).await?;

    if args.cancel {
        let status_url = BulkExport::cancel_saved(&client, &args.out)
            .await
            .map_err(failure)?;
        let out = json!({
            "cancelled": true,
            "status_url": status_url.as_str(),
            "out_dir": args.out,
        });
        return crate::output::print_json(&out);
    }

    let progress = Progress::new();
    let export = match request {
        Some(request) => BulkExport::new(&client, request, &args.out).resume(args.resume),
        None => BulkExport::resume_saved(&client, &args.out),
    };
    let export = export
        .cleanup(args.cleanup)
        .poll_options(PollOptions::default().with_deadline(Duration::from_secs(args.max_wait)))
        .download_options(
            DownloadOptions::default()
                .with_parallel(args.parallel)
                .with_max_bytes_per_second(args.limit_rate),
        );
    // With views, each finished output file is handed to the view run as it lands.
    let show = progress.handler();
    let (export, views) = match flatten {
        None => (export.on_event(show), None),
        Some((views, destination, options)) => {
            let (sender, receiver) =
                std::sync::mpsc::channel::<epic_fhir_views::Result<epic_fhir_views::InputFile>>();
            let out = args.out.clone();
            let files = sender.clone();
            let export = export.on_event(move |event| {
                show(event);
                let input = match event {
                    ExportEvent::FileDone {
                        name,
                        resource_type,
                        ..
                    } => epic_fhir_views::InputFile::typed(out.join(name), resource_type.clone()),
                    ExportEvent::FileSkipped { name, .. } => {
                        epic_fhir_views::InputFile::path(out.join(name))
                    }
                    _ => return,
                };
                if is_output_file(&input) {
                    // The view run ends only after this handler is dropped, so it is listening.
                    let _ = files.send(Ok(input));
                }
            });
            let run = tokio::spawn(crate::view::run_blocking(
                views,
                receiver,
                destination,
                options,
                false,
            ));
            (export, Some((sender, run)))
        }
    };
    let outcome = tokio::select! {
        outcome = export.run() => outcome,
        _ = tokio::signal::ctrl_c() => {
            progress.abandon();
            if let Some((sender, run)) = views {
                let _ = sender.send(Err(epic_fhir_views::Error::cancelled("the export was interrupted")));
                drop(sender);
                let _ = run.await;
            }
            return Err(Failure::remote(anyhow!(
                "interrupted: the state is saved in {}; run again with --resume to continue",
                args.out.display()
            )));
        }
    };
    match outcome {
        Ok(summary) => {
            progress.finish(&summary);
            let tables = match views {
                None => None,
                Some((sender, run)) => {
                    drop(sender);
                    let tables = run
                        .await
                        .map_err(|e| Failure::remote(anyhow!("the view run stopped: {e}")))??;
                    Some(tables)
                }
            };
            let mut out = serde_json::to_value(&summary).map_err(Failure::remote)?;
            if let (Some(tables), Some(object)) = (tables, out.as_object_mut()) {
                object.insert(
                    "views".to_owned(),
                    serde_json::to_value(&tables).map_err(Failure::remote)?,
                );
            }
            crate::output::print_json(&out)
        }
        Err(error) => {
            progress.abandon();
            if let Some((sender, run)) = views {
                let _ = sender.send(Err(epic_fhir_views::Error::cancelled(
                    "the export failed; no table was published",
                )));
                drop(sender);
                let _ = run.await;
            }
            Err(failure(error))
        }
    }
}

/// Output files only: error and deleted lists are not resources to flatten.
fn is_output_file(input: &epic_fhir_views::InputFile) -> bool {
    match &input.source {
        epic_fhir_views::Source::File(path) => path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with("error-") && !n.starts_with("deleted-")),
        epic_fhir_views::Source::Stdin => false,
    }
}

/// The progress bar: a spinner while the server works, then files and resources.
struct Progress {
    bar: ProgressBar,
    counts: Arc<Mutex<Counts>>,
}

/// Resources written per file (totals reported by the SDK, so a restarted file is not
/// counted twice).
#[derive(Default)]
struct Counts {
    per_file: HashMap<String, u64>,
    bytes: HashMap<String, u64>,
}

impl Counts {
    fn message(&self) -> String {
        let resources: u64 = self.per_file.values().sum();
        let bytes: u64 = self.bytes.values().sum();
        format!(
            "{resources} resources, {:.1} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

impl Progress {
    fn new() -> Self {
        // indicatif draws to stderr and stays silent when stderr is not a terminal.
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(TICK);
        bar.set_message("starting the export");
        Progress {
            bar,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    fn handler(&self) -> impl Fn(&ExportEvent) + Send + Sync + 'static {
        let bar = self.bar.clone();
        let counts = Arc::clone(&self.counts);
        move |event| {
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            match event {
                ExportEvent::KickedOff { .. } => {
                    bar.set_message("export accepted; the server is preparing the files");
                }
                ExportEvent::Resumed { files_complete, .. } => {
                    bar.set_message(format!(
                        "resuming the saved export ({files_complete} files already done)"
                    ));
                }
                ExportEvent::Polled {
                    progress,
                    next_poll,
                } => {
                    bar.set_message(format!(
                        "server working: {}; next check in {} s",
                        progress.as_deref().unwrap_or("in progress"),
                        next_poll.as_secs_f64().ceil()
                    ));
                }
                ExportEvent::ManifestReady { files, .. } => {
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_length(*files as u64);
                    bar.set_message(counts.message());
                }
                ExportEvent::FileSkipped {
                    name,
                    resources,
                    bytes,
                }
                | ExportEvent::FileDone {
                    name,
                    resources,
                    bytes,
                    ..
                } => {
                    counts.per_file.insert(name.clone(), *resources);
                    counts.bytes.insert(name.clone(), *bytes);
                    bar.inc(1);
                    bar.set_message(counts.message());
                }
                ExportEvent::FileProgress {
                    name,
                    bytes,
                    resources,
                } => {
                    counts.per_file.insert(name.clone(), *resources);
                    counts.bytes.insert(name.clone(), *bytes);
                    bar.set_message(counts.message());
                }
                ExportEvent::FileRetrying {
                    name,
                    attempt,
                    reason,
                    ..
                } => {
                    tracing::info!(file = %name, attempt, %reason, "retrying a download");
                }
                ExportEvent::CleanedUp => {
                    bar.set_message(format!("{}; job deleted on the server", counts.message()));
                }
                _ => {}
            }
        }
    }

    fn finish(&self, summary: &ExportSummary) {
        self.bar.finish_and_clear();
        eprintln!(
            "exported {} resources in {} files ({:.1} MiB) to {} in {:.1} s",
            summary.resources,
            summary.files,
            summary.bytes as f64 / (1024.0 * 1024.0),
            summary.out_dir.display(),
            summary.elapsed.as_secs_f64()
        );
    }

    fn abandon(&self) {
        self.bar.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("500K"), Ok(500 * 1024));
        assert_eq!(parse_rate("2m"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        for bad in ["", "K", "0", "-5", "1.5M", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
