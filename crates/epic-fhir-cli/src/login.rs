//! `epic-fhir login` / `logout`: a SMART standalone launch from the terminal. The browser logs
//! the user in; the callback comes back to a listener on a loopback port; the session is kept
//! in a file only its owner can read, for `read`, `search` and `export` to use.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;
use epic_fhir::auth::{SmartApp, UserSession, UserSessionAuth};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::Failure;
use crate::settings::ConnectionArgs;

/// The scopes `login` asks for unless `--scope` says otherwise.
const DEFAULT_SCOPE: &str = "openid fhirUser launch/patient patient/*.rs offline_access";
/// The redirect URI's path on the loopback listener.
const CALLBACK_PATH: &str = "/callback";

/// Flags of `epic-fhir login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Do not open a browser: only print the authorization URL.
    #[arg(long)]
    no_browser: bool,
    /// The loopback port of the redirect URI http://127.0.0.1:PORT/callback (default: any free
    /// port; register http://127.0.0.1/callback, which matches any port under RFC 8252).
    #[arg(long, default_value_t = 0)]
    redirect_port: u16,
    /// How long to wait for the browser to come back, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Flags of `epic-fhir logout`.
#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// The session file (default: $EPIC_FHIR_SESSION, else ~/.config/epic-fhir/session.json).
    #[arg(long, env = "EPIC_FHIR_SESSION")]
    session: Option<PathBuf>,
}

/// The session file: the flag, else `$XDG_CONFIG_HOME/epic-fhir/session.json`, else
/// `~/.config/epic-fhir/session.json`.
pub(crate) fn session_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(path.to_path_buf());
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("epic-fhir").join("session.json"))
}

/// Writes the session so that only its owner can read it: a temporary file created with mode
/// 0600 in the same directory, then renamed over the old one.
pub(crate) fn save_session(path: &Path, session: &UserSession) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_vec_pretty(session)?;
    let temporary = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(&text)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads a session file.
pub(crate) fn load_session(path: &Path) -> anyhow::Result<UserSession> {
    let text = std::fs::read(path).with_context(|| {
        format!(
            "cannot read session {} (log in with `epic-fhir login`)",
            path.display()
        )
    })?;
    serde_json::from_slice(&text)
        .with_context(|| format!("session file {} is not a session", path.display()))
}

/// The token provider of a stored session; a refresh rewrites the file (the old refresh token
/// is dead once rotated).
pub(crate) fn session_auth(path: &Path) -> Result<(UserSessionAuth, UserSession), Failure> {
    let session = load_session(path).map_err(Failure::usage)?;
    // The redirect URI plays no part in a refresh; this is the one `login` registers.
    let app = SmartApp::builder(session.client_id.clone(), "http://127.0.0.1/callback").build()?;
    let auth = UserSessionAuth::new(&app, session.clone());
    let file = path.to_path_buf();
    auth.on_refresh(move |next| {
        if let Err(error) = save_session(&file, next) {
            tracing::warn!(%error, "the refreshed session could not be saved");
        }
    });
    Ok((auth, session))
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => eprintln!("A browser window opens; log in there."),
        Err(_) => eprintln!("Open the URL above in a browser and log in."),
    }
}

/// Waits for `GET /callback?...` on `listener`, answers the browser, returns the query.
async fn wait_for_callback(listener: tokio::net::TcpListener) -> anyhow::Result<String> {
    loop {
        let (stream, _) = listener.accept().await?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        // The request line is enough; a request line longer than 16 KiB is not a callback.
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut limited = (&mut reader).take(16 << 10);
            limited.read_line(&mut line).await
        })
        .await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            continue;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let mut stream = reader.into_inner();
        if path != CALLBACK_PATH {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let body = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>epic-fhir login</title></head><body><main><h1>Done</h1><p>You can close this window and go back to the terminal.</p></main></body></html>";
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        return Ok(query.to_owned());
    }
}

use tokio::io::AsyncReadExt as _;

pub(crate) async fn login(args: LoginArgs) -> Result<(), Failure> {
    let settings = args.connection.resolve()?;
    let base = settings.base_url.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "no FHIR base URL: pass --base-url or set EPIC_FHIR_BASE_URL"
        ))
    })?;
    let client_id = settings.client_id.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "no client id: pass --client-id or set EPIC_CLIENT_ID"
        ))
    })?;
    let path = session_path(args.connection.session.as_deref()).ok_or_else(|| {
        Failure::usage(anyhow!(
            "no session path: pass --session PATH (HOME is not set)"
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.redirect_port))
        .await
        .map_err(|e| {
            Failure::usage(anyhow!(
                "cannot listen on 127.0.0.1:{}: {e}",
                args.redirect_port
            ))
        })?;
    let port = listener.local_addr().map_err(Failure::remote)?.port();
    let redirect = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
    let app = SmartApp::builder(client_id, &redirect)
        .scope(settings.scope.as_deref().unwrap_or(DEFAULT_SCOPE))
        .build()?;
    let request = app.standalone(&base).await?;
    println!("{}", request.url);
    let _ = std::io::stdout().flush();
    if !args.no_browser {
        open_browser(request.url.as_str());
    }
    let query = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        wait_for_callback(listener),
    )
    .await
    .map_err(|_| {
        Failure::remote(anyhow!(
            "no callback within {} s: log in again",
            args.timeout
        ))
    })?
    .map_err(Failure::remote)?;
    let session = app.callback(&request.pending, &query).await?;
    save_session(&path, &session).map_err(Failure::remote)?;
    let context = json!({
        "patient": session.patient,
        "encounter": session.encounter,
        "fhir_user": session.fhir_user,
        "scope": session.scope,
        "refresh_token": session.has_refresh_token(),
        "expires_at": session.expires_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "session": path,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&context).map_err(Failure::remote)?
    );
    Ok(())
}

pub(crate) fn logout(args: LogoutArgs) -> Result<(), Failure> {
    let path = session_path(args.session.as_deref()).ok_or_else(|| {
        Failure::usage(anyhow!(
            "no session path: pass --session PATH (HOME is not set)"
        ))
    })?;
    match std::fs::remove_file(&path) {
        Ok(()) => {
            println!("{}", json!({"logged_out": true, "session": path}));
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            println!("{}", json!({"logged_out": false, "session": path}));
            Ok(())
        }
        Err(error) => Err(Failure::remote(anyhow!(
            "cannot delete {}: {error}",
            path.display()
        ))),
    }
}
