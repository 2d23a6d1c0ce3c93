//! The HTTP server: [`Sandbox::start`] loads the data, binds a loopback port and serves Epic's
//! paths until [`Sandbox::shutdown`].

pub(crate) mod authorize;
mod bundle;
mod capability;
mod errors;
mod fhir;
mod session;
mod token;
mod user_token;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use url::Url;

use crate::auth::assertion::ReplayCache;
use crate::auth::smart::{SmartState, default_username, random_password};
use crate::auth::tokens::TokenStore;
use crate::auth::{AppConfig, ClientConfig, ClientRegistry, UserConfig};
use crate::bulk::BulkState;
use crate::config::{
    AUTHORIZE_PATH, FHIR_BASE_PATH, Faults, JWKS_PATH, LAUNCH_PATH, SandboxConfig, ScopeGrant,
    TOKEN_PATH,
};
use crate::faults::FaultInjector;
use crate::generate::{GenerateConfig, GenerateSummary, GroupSummary, generate};
use crate::outcome::FHIR_JSON;
use crate::store::Store;
use session::Sessions;

pub(crate) use fhir::authenticate;

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// The synthetic data could not be generated.
    #[error("cannot generate synthetic data: {0}")]
    Generate(String),
    /// A data directory could not be loaded.
    #[error("cannot load data: {0}")]
    Load(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Request counters, for tests and the load benchmark.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) token_requests: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) fhir_requests: AtomicU64,
    pub(crate) epic_client_id_requests: AtomicU64,
}

/// A snapshot of what the sandbox has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxStats {
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// FHIR API requests that reached a handler (injected faults excluded).
    pub fhir_requests: u64,
    /// Authenticated requests that carried an `Epic-Client-ID` header naming their client
    /// (what Epic-aware clients send once they recognise Epic).
    pub epic_client_id_requests: u64,
    /// Injected 503s.
    pub injected_errors: u64,
    /// Injected 429s.
    pub injected_throttles: u64,
    /// Injected dropped connections.
    pub injected_drops: u64,
    /// Live search sessions.
    pub live_sessions: usize,
    /// The estimated memory the live search sessions hold, in bytes.
    pub session_bytes: usize,
}

/// A registered SMART app, as [`Sandbox::apps`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppSummary {
    /// The client id.
    pub id: String,
    /// How it authenticates: public, client secret or private_key_jwt.
    pub kind: &'static str,
    /// Its redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The URL the EHR launcher opens, if any.
    pub launch_url: Option<String>,
}

/// What was loaded at start.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DataSummary {
    /// Resources per type.
    pub counts: BTreeMap<String, usize>,
    /// All resources.
    pub total: usize,
    /// Estimated memory held by the store, in bytes.
    pub memory_bytes: usize,
    /// The generator's summary (named patients, groups), when data was generated.
    pub generated: Option<GenerateSummary>,
    /// Files loaded from data directories, with the resources each gave.
    pub loaded_files: Vec<(String, usize)>,
    /// Time spent generating and loading.
    pub load_time: Duration,
}

impl DataSummary {
    /// Average memory per stored resource, in bytes.
    pub fn bytes_per_resource(&self) -> usize {
        self.memory_bytes.checked_div(self.total).unwrap_or(0)
    }
}

/// Shared state of all handlers.
pub(crate) struct AppState {
    pub(crate) store: Arc<Store>,
    pub(crate) clients: ClientRegistry,
    pub(crate) tokens: TokenStore,
    pub(crate) replay: ReplayCache,
    pub(crate) http: reqwest::Client,
    pub(crate) origin: String,
    pub(crate) base_url: String,
    pub(crate) token_url: String,
    pub(crate) authorize_url: String,
    pub(crate) jwks_url: String,
    pub(crate) smart: SmartState,
    token_lifetime: RwLock<Duration>,
    pub(crate) clock_skew: Duration,
    pub(crate) invalid_client_status: u16,
    pub(crate) epic_rules: bool,
    pub(crate) scope_grant: ScopeGrant,
    pub(crate) max_search_params: usize,
    pub(crate) max_outcome_warnings: usize,
    pub(crate) jwks_refetch_interval: Duration,
    pub(crate) default_page_size: usize,
    pub(crate) sessions: Sessions,
    pub(crate) faults: FaultInjector,
    pub(crate) stats: Counters,
    pub(crate) bulk: BulkState,
}

impl AppState {
    pub(crate) fn token_lifetime(&self) -> Duration {
        *self
            .token_lifetime
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A JSON response with the FHIR media type.
pub(crate) fn fhir_json(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body).into_response()
}

async fn metadata(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let format = fhir::format_param(&uri);
    let wanted = errors::wanted(&headers, format.as_deref());
    // An answer in XML is written by the `errors::negotiate` layer from this JSON.
    if !errors::xml_answer(wanted, state.epic_rules) {
        if let Err(error) = fhir::check_accept(&headers, format.as_deref(), false) {
            return error.into_response();
        }
    }
    if let Some(client_id) = headers
        .get(fhir::EPIC_CLIENT_ID)
        .and_then(|v| v.to_str().ok())
    {
        tracing::debug!(target: "epic_fhir_sandbox::fhir", client_id, "metadata requested with Epic-Client-ID");
    }
    let body = capability::capability_statement(&state).to_string();
    fhir_json(StatusCode::OK, body.into())
}

async fn smart_configuration(State(state): State<Arc<AppState>>) -> Response {
    // Always JSON, whatever Accept says, as Epic does.
    axum::Json(capability::smart_configuration(&state)).into_response()
}

/// The axum application over `state`, without binding a socket (tests drive it with `oneshot`).
/// Request bodies are limited to `max_body_bytes`.
pub(crate) fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let fhir_api = Router::new()
        .route("/metadata", get(metadata))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route("/{type}", get(fhir::search_get).post(fhir::create))
        .route("/{type}/_search", post(fhir::search_post))
        .route("/{type}/{id}", get(fhir::read).put(fhir::update))
        .route("/{type}/{id}/_history/{version}", get(fhir::vread))
        .merge(crate::bulk::routes())
        .fallback(fhir::unknown_route);
    Router::new()
        .route(TOKEN_PATH, post(token::token).fallback(token::wrong_method))
        .route(
            AUTHORIZE_PATH,
            get(authorize::authorize_get)
                .post(authorize::authorize_post)
                .fallback(authorize::page_wrong_method),
        )
        .route(
            &format!("{AUTHORIZE_PATH}/login"),
            post(authorize::login).fallback(authorize::page_wrong_method),
        )
        .route(
            &format!("{AUTHORIZE_PATH}/consent"),
            post(authorize::consent).fallback(authorize::page_wrong_method),
        )
        .route(
            LAUNCH_PATH,
            get(authorize::launcher).fallback(authorize::page_wrong_method),
        )
        .route(JWKS_PATH, get(authorize::jwks))
        .nest(FHIR_BASE_PATH, fhir_api)
        .fallback(fhir::unknown_route)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::faults::inject,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            errors::negotiate,
        ))
        .with_state(state)
}

/// A running sandbox server on loopback.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use epic_fhir_sandbox::{Sandbox, SandboxConfig};
///
/// let sandbox = Sandbox::start(SandboxConfig::default()).await?;
/// println!("FHIR base: {}", sandbox.base_url());
/// println!("token URL: {}", sandbox.token_url());
/// sandbox.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Sandbox {
    addr: SocketAddr,
    base_url: Url,
    token_url: Url,
    authorize_url: Url,
    state: Arc<AppState>,
    data: DataSummary,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("base_url", &self.base_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("resources", &self.data.total)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Generates and loads the data, registers the clients, binds `config.addr` and serves.
    ///
    /// # Errors
    /// [`StartError`] when the configuration is invalid, data cannot be generated or loaded, or
    /// the address cannot be bound.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, StartError> {
        config.faults.validate().map_err(StartError::Config)?;
        config.bulk.validate().map_err(StartError::Config)?;
        if !config.addr.ip().is_loopback() {
            tracing::warn!(addr = %config.addr, "the sandbox is listening beyond loopback: it holds synthetic data only, but anyone who can reach it can read it");
        }
        let started = Instant::now();
        let store = Arc::new(Store::new());
        let generated = if config.patients > 0 {
            let generate_config = GenerateConfig {
                seed: config.seed,
                patients: config.patients,
                ..GenerateConfig::default()
            };
            let mut failure: Option<String> = None;
            let summary = generate(&generate_config, &mut |resource| {
                if failure.is_none() {
                    if let Err(e) = store.upsert(resource) {
                        failure = Some(e.to_string());
                    }
                }
            })
            .map_err(|e| StartError::Generate(e.to_string()))?;
            if let Some(failure) = failure {
                return Err(StartError::Generate(failure));
            }
            Some(summary)
        } else {
            None
        };
        let mut loaded_files = Vec::new();
        for dir in &config.data_dirs {
            let report = crate::store::load::load_dir(dir, &mut |resource| {
                store
                    .upsert(resource)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| StartError::Load(e.to_string()))?;
            loaded_files.extend(
                report
                    .files
                    .iter()
                    .map(|f| (f.path.display().to_string(), f.resources)),
            );
        }
        let data = DataSummary {
            counts: store
                .types()
                .into_iter()
                .map(|t| {
                    let n = store.count(&t);
                    (t, n)
                })
                .collect(),
            total: store.total(),
            memory_bytes: store.memory_bytes(),
            generated,
            loaded_files,
            load_time: started.elapsed(),
        };

        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        let origin = format!("http://{addr}");
        let base_url = format!("{origin}{FHIR_BASE_PATH}");
        let token_url = format!("{origin}{TOKEN_PATH}");
        let authorize_url = format!("{origin}{AUTHORIZE_PATH}");
        let jwks_url = format!("{origin}{JWKS_PATH}");
        let smart = SmartState::new(&config.smart);
        if config.smart.default_users {
            let password = config
                .smart
                .default_password
                .clone()
                .unwrap_or_else(random_password);
            for named in data.generated.iter().flat_map(|g| &g.named_patients) {
                smart.add_user(UserConfig::new(
                    default_username(&named.name),
                    &named.id,
                    password.clone(),
                ));
            }
        }
        for user in &config.smart.users {
            smart.add_user(user.clone());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Config(format!("cannot build the JWK Set client: {e}")))?;
        let scope_grant = config.effective_scope_grant();
        let max_body_bytes = config.max_body_bytes;
        let clients = ClientRegistry::default();
        for client in config.clients {
            clients.register(client);
        }
        let state = Arc::new(AppState {
            store,
            clients,
            tokens: TokenStore::default(),
            replay: ReplayCache::default(),
            http,
            origin,
            base_url: base_url.clone(),
            token_url: token_url.clone(),
            authorize_url: authorize_url.clone(),
            jwks_url,
            smart,
            token_lifetime: RwLock::new(config.token_lifetime),
            clock_skew: config.clock_skew,
            invalid_client_status: config.invalid_client_status,
            epic_rules: config.epic_rules,
            scope_grant,
            max_search_params: config.max_search_params.max(1),
            max_outcome_warnings: config.max_outcome_warnings,
            jwks_refetch_interval: config.jwks_refetch_interval,
            default_page_size: config
                .default_page_size
                .clamp(1, crate::config::MAX_PAGE_SIZE),
            sessions: Sessions::new(config.session_idle_timeout, config.session_memory_budget),
            faults: FaultInjector::new(config.faults),
            stats: Counters::default(),
            bulk: BulkState::new(config.bulk),
        });
        let app = router(Arc::clone(&state), max_body_bytes);
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = shutdown_rx.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "sandbox server stopped with an error");
            }
        });
        tracing::info!(%base_url, resources = data.total, "sandbox listening");
        Ok(Sandbox {
            addr,
            base_url: Url::parse(&base_url).map_err(|e| StartError::Config(e.to_string()))?,
            token_url: Url::parse(&token_url).map_err(|e| StartError::Config(e.to_string()))?,
            authorize_url: Url::parse(&authorize_url)
                .map_err(|e| StartError::Config(e.to_string()))?,
            state,
            data,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The FHIR R4 base URL, `http://127.0.0.1:PORT/interconnect-fhir-oauth/api/FHIR/R4`.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The token endpoint, `http://127.0.0.1:PORT/interconnect-fhir-oauth/oauth2/token`.
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The authorization endpoint (SMART App Launch),
    /// `http://127.0.0.1:PORT/interconnect-fhir-oauth/oauth2/authorize`.
    pub fn authorize_url(&self) -> &Url {
        &self.authorize_url
    }

    /// The EHR launcher, `http://127.0.0.1:PORT/interconnect-fhir-oauth/launch`: with
    /// `?app=ID&patient=ID[&encounter=ID]` it sends the browser to the app's launch URL.
    pub fn launcher_url(&self) -> Url {
        let mut url = self.base_url.clone();
        url.set_path(LAUNCH_PATH);
        url
    }

    /// The JWK Set of the id_token signing key.
    pub fn jwks_url(&self) -> &str {
        &self.state.jwks_url
    }

    /// Registers (or replaces) a SMART app while running.
    pub fn register_app(&self, app: AppConfig) {
        self.state.smart.register_app(app);
    }

    /// The registered SMART apps.
    pub fn apps(&self) -> Vec<AppSummary> {
        self.state
            .smart
            .apps()
            .iter()
            .map(|app| AppSummary {
                id: app.id.clone(),
                kind: app.kind(),
                redirect_uris: app.redirect_uris.clone(),
                launch_url: app.launch_url.as_ref().map(Url::to_string),
            })
            .collect()
    }

    /// Adds (or replaces) a MyChart-style user while running.
    pub fn add_user(&self, user: UserConfig) {
        self.state.smart.add_user(user);
    }

    /// The users who can log in on the authorization pages, with their passwords.
    pub fn users(&self) -> Vec<UserConfig> {
        self.state.smart.users()
    }

    /// Changes how long authorization codes can be exchanged, for codes issued from now on.
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        self.state
            .smart
            .lifetimes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .code = lifetime;
    }

    /// What was generated and loaded at start.
    pub fn data(&self) -> &DataSummary {
        &self.data
    }

    /// The resource store, for tests that inspect or change data directly.
    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    /// Registers (or replaces) a client while running.
    pub fn register_client(&self, client: ClientConfig) {
        self.state.clients.register(client);
    }

    /// The ids of registered clients with a description of their keys and scopes.
    pub fn clients(&self) -> Vec<(String, String)> {
        self.state.clients.describe()
    }

    /// Every Group the sandbox holds (generated or loaded), in the order they were stored:
    /// the populations `Group/{id}/$export` can export.
    pub fn groups(&self) -> Vec<GroupSummary> {
        self.state
            .store
            .resources("Group")
            .iter()
            .map(|group| crate::bulk::group_summary(group))
            .collect()
    }

    /// Changes the injected faults while running.
    ///
    /// # Errors
    /// When a rate is not a probability or the rates sum to more than 1.
    pub fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        self.state.faults.set(faults);
        Ok(())
    }

    /// The injected faults now in force.
    pub fn faults(&self) -> Faults {
        self.state.faults.current()
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self
            .state
            .token_lifetime
            .write()
            .unwrap_or_else(PoisonError::into_inner) = lifetime;
    }

    /// Revokes every access token issued so far, as if the server had restarted: the next
    /// request with any of them is answered 401 `invalid_token`.
    pub fn revoke_all_tokens(&self) {
        self.state.tokens.revoke_all();
    }

    /// Counters of what the server has done so far.
    pub fn stats(&self) -> SandboxStats {
        let s = &self.state.stats;
        let f = &self.state.faults.counters;
        SandboxStats {
            token_requests: s.token_requests.load(Ordering::Relaxed),
            tokens_issued: s.tokens_issued.load(Ordering::Relaxed),
            fhir_requests: s.fhir_requests.load(Ordering::Relaxed),
            epic_client_id_requests: s.epic_client_id_requests.load(Ordering::Relaxed),
            injected_errors: f.errors.load(Ordering::Relaxed),
            injected_throttles: f.throttles.load(Ordering::Relaxed),
            injected_drops: f.drops.load(Ordering::Relaxed),
            live_sessions: self.state.sessions.len(),
            session_bytes: self.state.sessions.memory(),
        }
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for the server.
    pub async fn shutdown(mut self) {
        self.state.bulk.cancel_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.state.bulk.cancel_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
