//! `epic-fhir read` and `epic-fhir search`.

use std::collections::HashSet;
use std::io::{BufWriter, Write as _};

use anyhow::anyhow;
use clap::Args;
use epic_fhir::{FhirClient, SearchParams};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::settings::ConnectionArgs;
use crate::{Failure, output};

/// Flags of `epic-fhir read`.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// What to read: TYPE/ID, e.g. Patient/erXuFYUfucBZaryVksYEcMg3.
    reference: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Flags of `epic-fhir search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The resource type, e.g. Observation.
    resource_type: String,
    /// Search parameters as NAME=VALUE, in FHIR syntax (e.g. date=ge2024-01-01, code=http://loinc.org|8867-4).
    params: Vec<String>,
    /// Follow next links through every page.
    #[arg(long)]
    all: bool,
    /// Stop after this many matches (implies following pages as needed).
    #[arg(long)]
    limit: Option<usize>,
    /// Print one match per line (NDJSON) instead of one JSON document.
    #[arg(long)]
    ndjson: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Builds an authenticated client from the connection settings.
pub(crate) async fn client(connection: &ConnectionArgs) -> Result<FhirClient, Failure> {
    let settings = connection.resolve()?;
    // A user session (from `epic-fhir login`) when one is named, or when no key is configured
    // and the default session file exists.
    let session = match (&connection.session, &settings.private_key) {
        (Some(path), _) => Some(path.clone()),
        (None, None) => crate::login::session_path(None).filter(|p| p.exists()),
        (None, Some(_)) => None,
    };
    if let Some(path) = session {
        let (auth, session) = crate::login::session_auth(&path)?;
        let base = settings
            .base_url
            .clone()
            .unwrap_or_else(|| session.fhir_base.to_string());
        let builder = FhirClient::builder(&base)
            .token_provider(std::sync::Arc::new(auth))
            .epic_client_id(&session.client_id);
        return Ok(builder.build()?);
    }
    let base = settings.base_url.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "no FHIR base URL: pass --base-url or set EPIC_FHIR_BASE_URL"
        ))
    })?;
    let auth = settings.auth().await?;
    let mut builder = FhirClient::builder(&base).backend_services(auth);
    if let Some(client_id) = &settings.client_id {
        builder = builder.epic_client_id(client_id);
    }
    Ok(builder.build()?)
}

fn parse_params(raw: &[String]) -> Result<SearchParams, Failure> {
    raw.iter()
        .map(|pair| {
            pair.split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .ok_or_else(|| {
                    Failure::usage(anyhow!("search parameter `{pair}` must be NAME=VALUE"))
                })
        })
        .collect()
}

pub(crate) async fn read(args: ReadArgs) -> Result<(), Failure> {
    let (resource_type, id) = args.reference.split_once('/').ok_or_else(|| {
        Failure::usage(anyhow!(
            "`{}` must be TYPE/ID, e.g. Patient/123",
            args.reference
        ))
    })?;
    let client = client(&args.connection).await?;
    let resource = client.read_type(resource_type, id).await?;
    output::print_json(&resource)
}

/// Where search results go.
enum Sink {
    /// One line per resource as pages arrive (`--ndjson`): matches, then the page's included
    /// resources not printed before. Nothing is kept but the keys of those included.
    Lines {
        out: BufWriter<std::io::Stdout>,
        included: HashSet<String>,
    },
    /// One JSON document at the end.
    Document {
        matches: Vec<Value>,
        included: Vec<Value>,
        outcomes: Vec<Value>,
    },
}

impl Sink {
    fn line(
        out: &mut BufWriter<std::io::Stdout>,
        value: &impl serde::Serialize,
    ) -> Result<(), Failure> {
        serde_json::to_writer(&mut *out, value).map_err(|e| match e.io_error_kind() {
            Some(_) => output::write_failure(std::io::Error::from(e)),
            None => Failure::remote(e),
        })?;
        out.write_all(b"\n").map_err(output::write_failure)
    }
}

pub(crate) async fn search(args: SearchArgs) -> Result<(), Failure> {
    let params = parse_params(&args.params)?;
    let client = client(&args.connection).await?;
    let follow = args.all || args.limit.is_some();
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut pages = std::pin::pin!(client.pages_of_type(&args.resource_type, &params));
    let mut sink = if args.ndjson {
        Sink::Lines {
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            included: HashSet::new(),
        }
    } else {
        Sink::Document {
            matches: Vec::new(),
            included: Vec::new(),
            outcomes: Vec::new(),
        }
    };
    let mut total = None;
    let mut next = None;
    let mut printed = 0usize;
    let mut page_number = 0usize;
    while let Some(page) = pages.next().await {
        let page = page?;
        page_number += 1;
        total = total.or(page.total());
        next = page.next_link().map(str::to_owned);
        for issue in page.issues() {
            eprintln!("server: {}", issue.summary());
        }
        let room = limit - printed;
        let taken = page.len().min(room);
        printed += taken;
        match &mut sink {
            Sink::Lines { out, included } => {
                for resource in page.matches().iter().take(taken) {
                    Sink::line(out, resource)?;
                }
                for resource in page.included() {
                    let key = format!(
                        "{}/{}",
                        resource.resource_type(),
                        resource.id().unwrap_or_default()
                    );
                    if resource.id().is_none() || included.insert(key) {
                        Sink::line(out, resource)?;
                    }
                }
                // Each page reaches the reader as it arrives (and a reader that left is
                // noticed before the next page is fetched).
                out.flush().map_err(output::write_failure)?;
            }
            Sink::Document {
                matches,
                included,
                outcomes,
            } => {
                for outcome in page.outcomes() {
                    outcomes.push(serde_json::to_value(outcome).map_err(Failure::remote)?);
                }
                for resource in page.included() {
                    included.push(serde_json::to_value(resource).map_err(Failure::remote)?);
                }
                for resource in page.into_matches().into_iter().take(taken) {
                    matches.push(serde_json::to_value(&resource).map_err(Failure::remote)?);
                }
            }
        }
        if follow && page_number > 1 {
            eprint!("\rpage {page_number}: {printed} matches");
        }
        if !follow || printed >= limit {
            break;
        }
    }
    if follow && page_number > 1 {
        eprintln!();
    }
    if let Sink::Document {
        matches,
        included,
        outcomes,
    } = sink
    {
        output::print_json(&json!({
            "resourceType": args.resource_type,
            "total": total,
            "pages": page_number,
            "matches": matches,
            "included": included,
            "outcomes": outcomes,
            "next": if follow { None } else { next },
        }))?;
    }
    Ok(())
}
