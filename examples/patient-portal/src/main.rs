//! Runs the patient portal: `patient-portal --fhir-base URL --client-id ID`.

use std::net::SocketAddr;

use clap::Parser;
use patient_portal::{DEFAULT_SCOPE, Portal};
use url::Url;

/// A patient portal that logs in with MyChart (SMART App Launch) and shows a health summary.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The FHIR base URL that "Log in with MyChart" goes to.
    #[arg(long, env = "PORTAL_FHIR_BASE")]
    fhir_base: Url,
    /// The portal's client id, registered with the redirect URI `<public-url>/callback`.
    #[arg(long, env = "PORTAL_CLIENT_ID")]
    client_id: String,
    /// The address to listen on.
    #[arg(long, env = "PORTAL_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Where browsers reach the portal (default: `http://<listen>/`).
    #[arg(long, env = "PORTAL_PUBLIC_URL")]
    public_url: Option<Url>,
    /// A FHIR server (`iss`) EHR launches may come from; repeat for more (default: the FHIR
    /// base).
    #[arg(long, env = "PORTAL_ALLOWED_ISSUER", value_delimiter = ',')]
    allowed_issuer: Vec<String>,
    /// The scopes to ask for.
    #[arg(long, env = "PORTAL_SCOPE", default_value = DEFAULT_SCOPE)]
    scope: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let public_url = match args.public_url {
        Some(url) => url,
        None => Url::parse(&format!("http://{}/", listener.local_addr()?))
            .map_err(std::io::Error::other)?,
    };
    let mut portal = Portal::new(args.fhir_base, args.client_id, public_url);
    if !args.allowed_issuer.is_empty() {
        portal.allowed_issuers = args.allowed_issuer;
    }
    portal.scope = args.scope;
    eprintln!(
        "patient portal on {} (redirect URI {}, launch URL {})",
        portal.public_url,
        portal.redirect_uri(),
        portal.launch_url()
    );
    patient_portal::serve(listener, portal).await
}
