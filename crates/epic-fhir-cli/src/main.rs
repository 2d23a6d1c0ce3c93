//! `epic-fhir`: the command-line tool over the `epic-fhir` SDK, the local sandbox and the
//! SQL on FHIR views.
//!
//! Output is JSON on stdout, progress and logs on stderr. Exit codes: 0 on success (also when
//! the reader of stdout goes away, as `| head` does), 1 when a server or authentication step
//! fails, 2 on bad usage (flags, settings, files).

mod bench;
mod demo;
mod export;
mod fhir;
mod keygen;
mod login;
mod output;
mod sandbox;
mod settings;
mod token;
mod validate;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Epic FHIR toolkit: Backend Services auth, FHIR R4 client, bulk export, local sandbox.
#[derive(Debug, Parser)]
#[command(name = "epic-fhir", version, about, long_about = None)]
struct Cli {
    /// Log verbosity on stderr: -v for debug, -vv for trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole flow against an embedded sandbox: key, discovery, token, read, search,
    /// paging, includes.
    Demo(demo::DemoArgs),
    /// Generate a signing key pair, certificate and JWK Set for app registration.
    Keygen(keygen::KeygenArgs),
    /// Fetch an access token and print its type, scope and expiry.
    Token(token::TokenArgs),
    /// Run the local Epic-compatible FHIR sandbox until Ctrl-C.
    Sandbox(sandbox::SandboxArgs),
    /// Load-test the sandbox (started as a child process) or a server: reads and searches
    /// through the SDK and through a bare HTTP floor; JSON report on stdout.
    Bench(bench::BenchArgs),
    /// Read one resource: TYPE/ID.
    Read(fhir::ReadArgs),
    /// Search: TYPE NAME=VALUE... [--all] [--limit N] [--ndjson].
    Search(fhir::SearchArgs),
    /// Validate FHIR R4 JSON (NDJSON, gzip, resources, Bundles, folders such as a bulk export's
    /// output) against the base specification: one JSON line per problem on stdout.
    Validate(validate::ValidateArgs),
    /// Bulk Data export into a folder: --group ID (or --patient-level / --system) --out DIR
    /// [--resume] [--cancel]; JSON summary on stdout.
    Export(export::ExportArgs),
    /// SQL on FHIR views: `view run VIEW.json... --input PATH... --out DIR_OR_URL` writes
    /// Parquet, CSV or NDJSON tables; `view test DIR --report FILE` runs the conformance suite.
    View(view::ViewArgs),
    /// Log a user in (SMART standalone launch in the browser) and keep the session for read,
    /// search and export: prints the authorization URL alone on stdout, then the patient
    /// context.
    Login(login::LoginArgs),
    /// Delete the session `login` stored.
    Logout(login::LogoutArgs),
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad flags, settings or files: exit 2.
    Usage(anyhow::Error),
    /// The server or authentication failed: exit 1.
    Remote(anyhow::Error),
    /// stdout was closed by its reader (`| head`): the reader has what it wanted, so the
    /// command stops quietly and exits 0.
    Closed,
}

impl Failure {
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure::Usage(error.into())
    }

    pub(crate) fn remote(error: impl Into<anyhow::Error>) -> Self {
        Failure::Remote(error.into())
    }
}

/// Classifies an SDK error: configuration and key problems are the user's to fix (exit 2),
/// everything else happened at or on the way to the server (exit 1).
impl From<epic_fhir::Error> for Failure {
    fn from(error: epic_fhir::Error) -> Self {
        use epic_fhir::ErrorKind;
        match error.kind() {
            ErrorKind::Config | ErrorKind::Key | ErrorKind::InsecureUrl => {
                Failure::Usage(error.into())
            }
            _ => Failure::Remote(error.into()),
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,epic_fhir=debug,epic_fhir_sandbox=debug",
        _ => "debug,epic_fhir=trace,epic_fhir_sandbox=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EPIC_FHIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Keygen(args) => keygen::run(args),
            Command::Token(args) => token::run(args).await,
            Command::Sandbox(args) => sandbox::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Read(args) => fhir::read(args).await,
            Command::Search(args) => fhir::search(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::View(args) => view::run(args).await,
            Command::Validate(args) => validate::run(args),
            Command::Login(args) => login::login(args).await,
            Command::Logout(args) => login::logout(args),
        }
    });
    match result {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(Failure::Usage(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
        Err(Failure::Remote(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
