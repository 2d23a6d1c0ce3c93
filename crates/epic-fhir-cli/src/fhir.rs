//! `epic-fhir read` and `epic-fhir search`.

use std::io::Write as _;

use anyhow::anyhow;
use clap::Args;
use epic_fhir::{FhirClient, SearchParams};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::Failure;
use crate::settings::ConnectionArgs;

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

fn print_json(value: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::remote)?;
    println!("{text}");
    Ok(())
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
    print_json(&serde_json::to_value(&resource).map_err(Failure::remote)?)
}

pub(crate) async fn search(args: SearchArgs) -> Result<(), Failure> {
    let params = parse_params(&args.params)?;
    let client = client(&args.connection).await?;
    let follow = args.all || args.limit.is_some();
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut pages = std::pin::pin!(client.pages_of_type(&args.resource_type, &params));
    let mut matches: Vec<Value> = Vec::new();
    let mut included: Vec<Value> = Vec::new();
    let mut outcomes: Vec<Value> = Vec::new();
    let mut total = None;
    let mut next = None;
    let mut printed = 0usize;
    let mut page_number = 0usize;
    let stdout = std::io::stdout();
    while let Some(page) = pages.next().await {
        let page = page?;
        page_number += 1;
        total = total.or(page.total());
        next = page.next_link().map(str::to_owned);
        for outcome in page.outcomes() {
            for issue in &outcome.issue {
                eprintln!("server: {}", issue.summary());
            }
            outcomes.push(serde_json::to_value(outcome).map_err(Failure::remote)?);
        }
        included.extend(
            page.included()
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok()),
        );
        for resource in page.into_matches() {
            if printed >= limit {
                break;
            }
            printed += 1;
            let value = serde_json::to_value(&resource).map_err(Failure::remote)?;
            if args.ndjson {
                let mut out = stdout.lock();
                serde_json::to_writer(&mut out, &value).map_err(Failure::remote)?;
                writeln!(out).map_err(Failure::remote)?;
            } else {
                matches.push(value);
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
    if !args.ndjson {
        print_json(&json!({
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
