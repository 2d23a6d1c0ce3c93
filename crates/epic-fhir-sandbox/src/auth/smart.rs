//! SMART App Launch: registered apps (public, secret, or keys), MyChart-style users, the
//! scopes an app asks for and what is granted, and the short-lived records between the
//! steps of a launch (authorization requests, EHR launches, codes, refresh tokens).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use url::Url;

use super::clients::{Client, ClientConfig, ClientKeys};
use super::scopes::{Scope, ScopeContext, ScopeSet};
use super::tokens::{UserContext, random_token};

/// How an app authenticates at the token endpoint.
#[derive(Clone)]
pub enum AppAuth {
    /// A public client (a browser or mobile app): no secret, PKCE required.
    Public,
    /// A confidential client with a shared secret, sent with HTTP Basic.
    Secret(String),
    /// A confidential client with keys (`private_key_jwt`, the Backend Services assertion).
    Keys(ClientKeys),
}

impl fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppAuth::Public => f.write_str("Public"),
            AppAuth::Secret(_) => f.write_str("Secret([redacted])"),
            AppAuth::Keys(keys) => f.debug_tuple("Keys").field(keys).finish(),
        }
    }
}

/// A SMART app registered with the sandbox's authorization server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppConfig {
    /// The client id.
    pub id: String,
    /// The registered redirect URIs, matched exactly (RFC 8252 §7.3: a registered loopback
    /// IP literal without a port matches any port).
    pub redirect_uris: Vec<String>,
    /// How the app authenticates. Default: public.
    pub auth: AppAuth,
    /// Where the EHR launcher sends the browser (`?iss=...&launch=...`). Default: none (no
    /// EHR launch).
    pub launch_url: Option<Url>,
    /// The resource scopes the app may be granted (only read and search of them). Default
    /// `patient/*.rs user/*.rs`.
    pub scopes: ScopeSet,
}

impl AppConfig {
    /// A public app with these redirect URIs.
    pub fn public(id: impl Into<String>, redirect_uris: Vec<String>) -> Self {
        AppConfig {
            id: id.into(),
            redirect_uris,
            auth: AppAuth::Public,
            launch_url: None,
            scopes: default_app_scopes(),
        }
    }

    /// Makes the app confidential with a client secret (HTTP Basic at the token endpoint).
    #[must_use]
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        self.auth = AppAuth::Secret(secret.into());
        self
    }

    /// Makes the app confidential with keys (`private_key_jwt`).
    #[must_use]
    pub fn with_keys(mut self, keys: ClientKeys) -> Self {
        self.auth = AppAuth::Keys(keys);
        self
    }

    /// Sets the URL the EHR launcher opens.
    #[must_use]
    pub fn with_launch_url(mut self, url: Url) -> Self {
        self.launch_url = Some(url);
        self
    }

    /// Sets the resource scopes the app may be granted.
    #[must_use]
    pub fn with_scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = scopes;
        self
    }

    /// Builds the apps of the command-line flags: `--app ID=URI[,URI...]` registers a public
    /// app; `--app-secret ID=SECRET`, `--app-jwks ID=PATH_OR_URL` and `--app-launch ID=URL`
    /// change an app named by an `--app`.
    pub fn from_flags(
        apps: &[String],
        secrets: &[String],
        jwks: &[String],
        launches: &[String],
    ) -> Result<Vec<AppConfig>, String> {
        let mut out: Vec<AppConfig> = Vec::new();
        for spec in apps {
            let (id, uris) = split_spec(spec, "--app", "ID=REDIRECT_URI[,REDIRECT_URI...]")?;
            let uris: Vec<String> = uris
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            for uri in &uris {
                check_redirect_uri(uri).map_err(|e| format!("--app {id}: {e}"))?;
            }
            if out.iter().any(|a| a.id == id) {
                return Err(format!("--app {id} is given twice"));
            }
            out.push(AppConfig::public(id, uris));
        }
        fn find<'a>(
            apps: &'a mut [AppConfig],
            id: &str,
            flag: &str,
        ) -> Result<&'a mut AppConfig, String> {
            apps.iter_mut()
                .find(|a| a.id == id)
                .ok_or_else(|| format!("{flag} names app `{id}`, which no --app registers"))
        }
        for spec in secrets {
            let (id, secret) = split_spec(spec, "--app-secret", "ID=SECRET")?;
            let app = find(&mut out, id, "--app-secret")?;
            app.auth = AppAuth::Secret(secret.to_owned());
        }
        for spec in jwks {
            let (id, source) = split_spec(spec, "--app-jwks", "ID=PATH_OR_URL")?;
            // The same sources as Backend Services clients: a JWK Set file, a PEM public key
            // or certificate, or a loopback JWK Set URL.
            let keys = ClientConfig::parse_spec(spec)
                .map_err(|e| format!("--app-jwks {e}"))?
                .keys;
            let _ = source;
            let app = find(&mut out, id, "--app-jwks")?;
            app.auth = AppAuth::Keys(keys);
        }
        for spec in launches {
            let (id, url) = split_spec(spec, "--app-launch", "ID=LAUNCH_URL")?;
            let url = Url::parse(url).map_err(|e| format!("--app-launch {id}: {e}"))?;
            let app = find(&mut out, id, "--app-launch")?;
            app.launch_url = Some(url);
        }
        Ok(out)
    }
}

fn split_spec<'a>(spec: &'a str, flag: &str, shape: &str) -> Result<(&'a str, &'a str), String> {
    match spec.split_once('=') {
        Some((id, rest)) if !id.is_empty() && !rest.is_empty() => Ok((id, rest)),
        _ => Err(format!("{flag} `{spec}` must be {shape}")),
    }
}

/// A redirect URI must be absolute and carry no fragment (RFC 6749 §3.1.2).
fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("redirect URI `{uri}` is not a URL: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI `{uri}` must not have a fragment"));
    }
    Ok(())
}

/// `patient/*.rs user/*.rs`: what an app may be granted unless registered otherwise.
pub(crate) fn default_app_scopes() -> ScopeSet {
    ScopeSet::from_scopes(
        ["patient/*.rs", "user/*.rs"]
            .iter()
            .filter_map(|s| Scope::parse_any(s).ok())
            .collect(),
    )
}

/// A MyChart-style user: a patient who logs in to the authorization server.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserConfig {
    /// The login name, e.g. `fhircamila`.
    pub username: String,
    /// The patient the user is.
    pub patient_id: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("patient_id", &self.patient_id)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl UserConfig {
    /// A user.
    pub fn new(
        username: impl Into<String>,
        patient_id: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        UserConfig {
            username: username.into(),
            patient_id: patient_id.into(),
            password: password.into(),
        }
    }

    /// Parses `NAME=PATIENT_ID:PASSWORD` (the `--user` flag).
    pub fn parse_spec(spec: &str) -> Result<Self, String> {
        let shape = || format!("--user `{spec}` must be NAME=PATIENT_ID:PASSWORD");
        let (name, rest) = spec.split_once('=').ok_or_else(shape)?;
        let (patient, password) = rest.split_once(':').ok_or_else(shape)?;
        if name.is_empty() || patient.is_empty() || password.is_empty() {
            return Err(shape());
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            return Err(format!(
                "--user name `{name}` may hold only letters, digits and . _ - @"
            ));
        }
        Ok(UserConfig::new(name, patient, password))
    }
}

/// SMART App Launch settings of the sandbox. Every field states its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SmartConfig {
    /// Apps registered at start. Default none.
    pub apps: Vec<AppConfig>,
    /// Users besides the default ones (a user named like a default one replaces it).
    /// Default none.
    pub users: Vec<UserConfig>,
    /// One user per Epic named patient (`fhircamila`, `fhirderrick`...), when they were
    /// generated. Default true.
    pub default_users: bool,
    /// The password of the default users. Default `None`: a random one per start, printed by
    /// `epic-fhir sandbox` and returned by [`crate::Sandbox::users`].
    pub default_password: Option<String>,
    /// How long an authorization code can be exchanged. Default 60 s.
    pub code_lifetime: Duration,
    /// How long an EHR `launch` value can be used. Default 300 s.
    pub launch_lifetime: Duration,
    /// How long a user has to log in and consent. Default 600 s.
    pub login_lifetime: Duration,
    /// Lifetime of refresh tokens granted with `offline_access`. Default 90 days.
    pub offline_lifetime: Duration,
    /// Lifetime of refresh tokens granted with `online_access`. Default 12 hours.
    pub online_lifetime: Duration,
}

impl Default for SmartConfig {
    fn default() -> Self {
        SmartConfig {
            apps: Vec::new(),
            users: Vec::new(),
            default_users: true,
            default_password: None,
            code_lifetime: Duration::from_secs(60),
            launch_lifetime: Duration::from_secs(300),
            login_lifetime: Duration::from_secs(600),
            offline_lifetime: Duration::from_secs(90 * 24 * 3600),
            online_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// The login name of the default user of a named patient: `fhir` and the first given name.
pub(crate) fn default_username(full_name: &str) -> String {
    let first = full_name.split_whitespace().next().unwrap_or(full_name);
    format!("fhir{}", first.to_ascii_lowercase())
}

/// A random password of 12 letters and digits.
pub(crate) fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 12];
    // Only a failing system RNG leaves zeros; the password is then weak but still works.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// A registered app at run time.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) id: String,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) auth: RuntimeAuth,
    pub(crate) launch_url: Option<Url>,
    pub(crate) scopes: ScopeSet,
}

#[derive(Debug)]
pub(crate) enum RuntimeAuth {
    Public,
    Secret(String),
    Keys(Arc<Client>),
}

impl App {
    fn new(config: AppConfig) -> Self {
        let auth = match config.auth {
            AppAuth::Public => RuntimeAuth::Public,
            AppAuth::Secret(secret) => RuntimeAuth::Secret(secret),
            AppAuth::Keys(keys) => {
                RuntimeAuth::Keys(Arc::new(Client::new(ClientConfig::new(&config.id, keys))))
            }
        };
        App {
            id: config.id,
            redirect_uris: config.redirect_uris,
            auth,
            launch_url: config.launch_url,
            scopes: config.scopes,
        }
    }

    pub(crate) fn is_public(&self) -> bool {
        matches!(self.auth, RuntimeAuth::Public)
    }

    /// Whether `uri` is one of the registered redirect URIs: exactly, or a registered
    /// loopback IP literal without a port with any port (RFC 8252 §7.3, for native apps that
    /// listen on an ephemeral port).
    pub(crate) fn redirect_allowed(&self, uri: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| registered == uri || loopback_any_port(registered, uri))
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self.auth {
            RuntimeAuth::Public => "public",
            RuntimeAuth::Secret(_) => "confidential, client secret (HTTP Basic)",
            RuntimeAuth::Keys(_) => "confidential, private_key_jwt",
        }
    }
}

fn loopback_any_port(registered: &str, requested: &str) -> bool {
    let (Ok(registered), Ok(mut requested)) = (Url::parse(registered), Url::parse(requested))
    else {
        return false;
    };
    let loopback_ip = match registered.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    if !loopback_ip || registered.scheme() != "http" || registered.port().is_some() {
        return false;
    }
    if requested.set_port(None).is_err() {
        return false;
    }
    requested == registered
}

/// The scopes of an authorization request, sorted into what the server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScopeItem {
    Resource(Scope),
    /// `openid`, `fhirUser`, `launch`, `launch/patient`, `launch/encounter`,
    /// `offline_access`, `online_access`.
    Special(&'static str),
}

impl ScopeItem {
    pub(crate) fn text(&self) -> &str {
        match self {
            ScopeItem::Resource(scope) => &scope.text,
            ScopeItem::Special(name) => name,
        }
    }
}

const SPECIAL_SCOPES: [&str; 7] = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

/// Granted scopes: resource scopes (read and search only) and the special ones, in the
/// order they were asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) items: Vec<ScopeItem>,
}

impl Granted {
    /// What `app` may be granted of `requested`: each resource scope the app's registration
    /// covers, limited to read and search; the special scopes SMART defines. Anything else
    /// (unknown scopes, writes) is left out: SMART lets a server grant less than asked.
    pub(crate) fn narrow(requested: &str, app: &App) -> Granted {
        let mut items: Vec<ScopeItem> = Vec::new();
        for text in requested.split_whitespace() {
            let item = if let Some(name) = SPECIAL_SCOPES.iter().find(|s| **s == text) {
                Some(ScopeItem::Special(name))
            } else {
                Scope::parse_any(text)
                    .ok()
                    .filter(|s| s.context != ScopeContext::System)
                    .and_then(|s| s.restricted(Scope::read_search_mask()))
                    .filter(|s| covered(s, &app.scopes))
                    .map(ScopeItem::Resource)
            };
            if let Some(item) = item {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        Granted { items }
    }

    /// Those of `self` named in `kept` (a consent form's checked boxes).
    pub(crate) fn keep(&self, kept: &[String]) -> Granted {
        Granted {
            items: self
                .items
                .iter()
                .filter(|item| kept.iter().any(|k| k == item.text()))
                .cloned()
                .collect(),
        }
    }

    /// A narrower grant for a refresh: every scope of `requested` must be one of these.
    pub(crate) fn subset(&self, requested: &str) -> Result<Granted, Vec<String>> {
        let mut items = Vec::new();
        let mut denied = Vec::new();
        for text in requested.split_whitespace() {
            match self.items.iter().find(|item| item.text() == text) {
                Some(item) => items.push(item.clone()),
                None => denied.push(text.to_owned()),
            }
        }
        if denied.is_empty() {
            Ok(Granted { items })
        } else {
            Err(denied)
        }
    }

    pub(crate) fn has(&self, special: &str) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, ScopeItem::Special(name) if *name == special))
    }

    pub(crate) fn resource_scopes(&self) -> ScopeSet {
        ScopeSet::from_scopes(
            self.items
                .iter()
                .filter_map(|item| match item {
                    ScopeItem::Resource(scope) => Some(scope.clone()),
                    ScopeItem::Special(_) => None,
                })
                .collect(),
        )
    }

    pub(crate) fn text(&self) -> String {
        self.items
            .iter()
            .map(ScopeItem::text)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Whether the registration `allowed` covers `scope` (same context, same or wider type,
/// every permission).
fn covered(scope: &Scope, allowed: &ScopeSet) -> bool {
    allowed.scopes().iter().any(|a| {
        a.context == scope.context
            && (a.resource_type.is_none() || a.resource_type == scope.resource_type)
            && ScopeSet::from_scopes(vec![a.clone()])
                .grant(&ScopeSet::from_scopes(vec![scope.clone()]))
                .is_ok()
    })
}

/// The signed-in user of a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The `sub` of the id_token: the login name, or `ehr-clinician`.
    pub(crate) subject: String,
    /// The user's FHIR resource, `Patient/x` or `Practitioner/y`.
    pub(crate) fhir_user: Option<String>,
    /// The patient a patient user is (their `user/` scopes reach only this record).
    pub(crate) user_patient: Option<String>,
}

/// A validated authorization request waiting for the user to log in and consent.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: String,
    pub(crate) granted: Granted,
    pub(crate) code_challenge: Option<String>,
    pub(crate) nonce: Option<String>,
    /// Set once the user has logged in.
    pub(crate) user: Option<(Identity, String)>,
    pub(crate) expires: Instant,
}

/// An EHR launch: the context the launcher chose, waiting for the app's authorization
/// request.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) client_id: String,
    pub(crate) patient: String,
    pub(crate) encounter: Option<String>,
    pub(crate) user: Identity,
    pub(crate) expires: Instant,
}

/// An authorization code, single use.
#[derive(Debug, Clone)]
pub(crate) struct Code {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) granted: Granted,
    pub(crate) user: Identity,
    pub(crate) patient: Option<String>,
    pub(crate) encounter: Option<String>,
    pub(crate) expires: Instant,
    /// Set when exchanged: the family of what was issued, revoked if the code comes back.
    pub(crate) redeemed: Option<u64>,
}

/// What a refresh token carries over to the tokens it is exchanged for.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) client_id: String,
    pub(crate) granted: Granted,
    pub(crate) user: Identity,
    pub(crate) patient: Option<String>,
    pub(crate) encounter: Option<String>,
}

impl Session {
    pub(crate) fn user_context(&self) -> Arc<UserContext> {
        Arc::new(UserContext {
            patient: self.patient.clone(),
            encounter: self.encounter.clone(),
            user_patient: self.user.user_patient.clone(),
        })
    }
}

/// A refresh token: used once, then replaced (rotation).
#[derive(Debug, Clone)]
pub(crate) struct Refresh {
    pub(crate) session: Session,
    pub(crate) family: u64,
    pub(crate) expires: Instant,
    pub(crate) used: bool,
}

/// Everything issued from one authorization code (and its refreshes), revoked together when
/// a code or a rotated refresh token is replayed.
#[derive(Debug, Default)]
pub(crate) struct Family {
    pub(crate) access_tokens: Vec<String>,
    pub(crate) refresh_tokens: Vec<String>,
    pub(crate) expires: Option<Instant>,
}

/// The most records of each kind (pending requests, launches, codes, refresh tokens) held at
/// once; beyond it, new ones are refused until the expired ones are dropped.
pub(crate) const MAX_RECORDS: usize = 100_000;

/// A map of short-lived records that drops expired ones as it grows and refuses to grow past
/// [`MAX_RECORDS`].
#[derive(Debug)]
pub(crate) struct Records<T> {
    map: Mutex<HashMap<String, T>>,
    expires: fn(&T) -> Instant,
}

impl<T: Clone> Records<T> {
    fn new(expires: fn(&T) -> Instant) -> Self {
        Records {
            map: Mutex::new(HashMap::new()),
            expires,
        }
    }

    /// Stores `value` under a new random key and returns the key.
    pub(crate) fn insert(&self, value: T) -> Result<String, String> {
        let key = random_token()?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= 1024 && map.len().is_power_of_two() || map.len() >= MAX_RECORDS {
            let now = Instant::now();
            let expires = self.expires;
            map.retain(|_, v| expires(v) > now);
        }
        if map.len() >= MAX_RECORDS {
            return Err(format!(
                "the server holds {MAX_RECORDS} unexpired records of this kind: try again later"
            ));
        }
        map.insert(key.clone(), value);
        Ok(key)
    }

    /// A copy of the record under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<T> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Runs `change` on the record under `key`, under the lock.
    pub(crate) fn update<R>(&self, key: &str, change: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(key)
            .map(change)
    }

    /// Removes and returns the record under `key`.
    pub(crate) fn take(&self, key: &str) -> Option<T> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }

    pub(crate) fn remove(&self, key: &str) {
        self.take(key);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The lifetimes of the SMART records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub(crate) code: Duration,
    pub(crate) launch: Duration,
    pub(crate) login: Duration,
    pub(crate) offline: Duration,
    pub(crate) online: Duration,
}

/// The SMART App Launch state of a running sandbox.
#[derive(Debug)]
pub(crate) struct SmartState {
    apps: RwLock<HashMap<String, Arc<App>>>,
    users: RwLock<HashMap<String, UserConfig>>,
    pub(crate) pending: Records<Pending>,
    pub(crate) launches: Records<Launch>,
    pub(crate) codes: Records<Code>,
    pub(crate) refresh: Records<Refresh>,
    families: Mutex<HashMap<u64, Family>>,
    next_family: std::sync::atomic::AtomicU64,
    pub(crate) lifetimes: RwLock<Lifetimes>,
    pub(crate) signer: super::id_token::LazySigner,
}

impl SmartState {
    pub(crate) fn new(config: &SmartConfig) -> Self {
        let state = SmartState {
            apps: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            pending: Records::new(|p: &Pending| p.expires),
            launches: Records::new(|l: &Launch| l.expires),
            codes: Records::new(|c: &Code| c.expires),
            refresh: Records::new(|r: &Refresh| r.expires),
            families: Mutex::new(HashMap::new()),
            next_family: std::sync::atomic::AtomicU64::new(1),
            lifetimes: RwLock::new(Lifetimes {
                code: config.code_lifetime,
                launch: config.launch_lifetime,
                login: config.login_lifetime,
                offline: config.offline_lifetime,
                online: config.online_lifetime,
            }),
            signer: super::id_token::LazySigner::default(),
        };
        for app in &config.apps {
            state.register_app(app.clone());
        }
        state
    }

    pub(crate) fn lifetimes(&self) -> Lifetimes {
        *self
            .lifetimes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register_app(&self, config: AppConfig) {
        let app = Arc::new(App::new(config));
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(app.id.clone(), app);
    }

    pub(crate) fn app(&self, id: &str) -> Option<Arc<App>> {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The apps, sorted by id.
    pub(crate) fn apps(&self) -> Vec<Arc<App>> {
        let mut apps: Vec<Arc<App>> = self
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        apps
    }

    /// The key verifying `private_key_jwt` assertions of app `id`, if it has keys.
    pub(crate) fn app_client(&self, id: &str) -> Option<Arc<Client>> {
        match &self.app(id)?.auth {
            RuntimeAuth::Keys(client) => Some(Arc::clone(client)),
            _ => None,
        }
    }

    pub(crate) fn add_user(&self, user: UserConfig) {
        self.users
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user.username.clone(), user);
    }

    /// The users, sorted by name.
    pub(crate) fn users(&self) -> Vec<UserConfig> {
        let mut users: Vec<UserConfig> = self
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users
    }

    /// The user with these credentials (the password compared in constant time).
    pub(crate) fn login(&self, username: &str, password: &str) -> Option<UserConfig> {
        let users = self.users.read().unwrap_or_else(PoisonError::into_inner);
        let user = users.get(username)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(
            user.password.as_bytes(),
            password.as_bytes(),
        )
        .ok()?;
        Some(user.clone())
    }

    /// Starts a family of tokens (one authorization code's descendants).
    pub(crate) fn new_family(&self) -> u64 {
        self.next_family
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Records tokens issued in `family`; `expires` is when the longest-lived of them dies.
    pub(crate) fn record_issued(
        &self,
        family: u64,
        access_token: &str,
        refresh_token: Option<&str>,
        expires: Instant,
    ) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        if families.len() >= 1024 && families.len().is_power_of_two() {
            let now = Instant::now();
            families.retain(|_, f| f.expires.is_none_or(|e| e > now));
        }
        let entry = families.entry(family).or_default();
        entry.access_tokens.push(access_token.to_owned());
        entry
            .refresh_tokens
            .extend(refresh_token.map(str::to_owned));
        entry.expires = Some(entry.expires.map_or(expires, |e| e.max(expires)));
    }

    /// Removes a family and returns what it issued, for revocation.
    pub(crate) fn take_family(&self, family: u64) -> Family {
        self.families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&family)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(scopes: &str) -> App {
        App::new(
            AppConfig::public("a", vec!["http://127.0.0.1/cb".into()]).with_scopes(
                ScopeSet::from_scopes(
                    scopes
                        .split_whitespace()
                        .map(|s| Scope::parse_any(s).expect("scope"))
                        .collect(),
                ),
            ),
        )
    }

    #[test]
    fn narrowing_keeps_read_and_search_of_registered_scopes() {
        let app = app("patient/*.rs user/Patient.read");
        let granted = Granted::narrow(
            "openid fhirUser launch/patient patient/Observation.read patient/Condition.cruds patient/MedicationRequest.write user/Patient.rs user/Observation.rs system/*.read made-up offline_access openid",
            &app,
        );
        assert_eq!(
            granted.text(),
            "openid fhirUser launch/patient patient/Observation.read patient/Condition.rs user/Patient.rs offline_access"
        );
        assert!(granted.has("offline_access"));
        assert!(!granted.has("online_access"));
        let kept = granted.keep(&["openid".into(), "patient/Observation.read".into()]);
        assert_eq!(kept.text(), "openid patient/Observation.read");
        assert_eq!(
            granted
                .subset("patient/Condition.rs openid")
                .expect("subset")
                .text(),
            "patient/Condition.rs openid"
        );
        assert_eq!(
            granted.subset("patient/Condition.rs patient/Encounter.rs"),
            Err(vec!["patient/Encounter.rs".to_owned()])
        );
    }

    #[test]
    fn redirect_uris_match_exactly_except_loopback_ports() {
        let app = App::new(AppConfig::public(
            "a",
            vec![
                "http://127.0.0.1/callback".into(),
                "https://app.example/cb".into(),
            ],
        ));
        assert!(app.redirect_allowed("https://app.example/cb"));
        assert!(!app.redirect_allowed("https://app.example/cb/"));
        assert!(!app.redirect_allowed("https://app.example/cb?x=1"));
        assert!(!app.redirect_allowed("https://app.example:8443/cb"));
        assert!(app.redirect_allowed("http://127.0.0.1:53123/callback"));
        assert!(app.redirect_allowed("http://127.0.0.1/callback"));
        assert!(!app.redirect_allowed("http://127.0.0.1:53123/other"));
        assert!(!app.redirect_allowed("http://localhost:53123/callback"));
    }

    #[test]
    fn flags_build_apps_and_users() {
        let apps = AppConfig::from_flags(
            &[
                "portal=http://127.0.0.1:8000/cb,http://127.0.0.1:8000/cb2".into(),
                "cli=http://127.0.0.1/callback".into(),
            ],
            &["portal=s3cret".into()],
            &[],
            &["portal=http://127.0.0.1:8000/launch".into()],
        )
        .expect("apps");
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].redirect_uris.len(), 2);
        assert!(matches!(apps[0].auth, AppAuth::Secret(_)));
        assert!(!format!("{:?}", apps[0]).contains("s3cret"));
        assert!(apps[0].launch_url.is_some());
        let err = AppConfig::from_flags(&[], &["x=y".into()], &[], &[]).expect_err("unknown");
        assert!(err.contains("no --app"), "{err}");
        let err = AppConfig::from_flags(&["a=nope".into()], &[], &[], &[]).expect_err("uri");
        assert!(err.contains("not a URL"), "{err}");
        let user = UserConfig::parse_spec("pat=eq081-VQEgP8drUUqCWzHfw3:pa:ss").expect("user");
        assert_eq!(user.patient_id, "eq081-VQEgP8drUUqCWzHfw3");
        assert_eq!(user.password, "pa:ss");
        assert!(!format!("{user:?}").contains("pa:ss"));
        assert!(UserConfig::parse_spec("pat=id").is_err());
        assert!(UserConfig::parse_spec("p t=id:pw").is_err());
        assert_eq!(default_username("Camila Maria Lopez"), "fhircamila");
        assert_eq!(random_password().len(), 12);
    }

    #[test]
    fn records_expire_and_are_bounded() {
        let records: Records<Instant> = Records::new(|i| *i);
        let key = records
            .insert(Instant::now() + Duration::from_secs(60))
            .expect("insert");
        assert!(records.get(&key).is_some());
        assert!(records.take(&key).is_some());
        assert!(records.get(&key).is_none());
        for _ in 0..2048 {
            records.insert(Instant::now()).expect("insert");
        }
        assert!(
            records.len() < 2048,
            "expired records are dropped as the map grows"
        );
    }
}
