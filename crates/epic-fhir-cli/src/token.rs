//! `epic-fhir token`: fetch an access token and describe it.

use clap::Args;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Failure;
use crate::settings::ConnectionArgs;

/// Flags of `epic-fhir token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Also print the access token itself (it is a secret: do not paste it anywhere).
    #[arg(long)]
    show: bool,
}

pub(crate) async fn run(args: TokenArgs) -> Result<(), Failure> {
    let settings = args.connection.resolve()?;
    let auth = settings.auth().await?;
    let issued = auth.issued_token().await?;
    // Checked arithmetic: whatever the server said, no instant overflows here.
    let expires_at = issued
        .expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_secs()).ok())
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .and_then(|t| t.format(&Rfc3339).ok());
    let mut out = json!({
        "token_type": issued.token_type,
        "scope": issued.scope,
        "expires_in": issued.expires_in.map(|d| d.as_secs()),
        "expires_at": expires_at,
        "client_id": auth.client_id(),
        "token_url": auth.token_url().as_str(),
        "kid": auth.key().kid(),
    });
    if args.show {
        out["access_token"] = json!(issued.access_token.expose_secret());
    }
    crate::output::print_json(&out)
}
