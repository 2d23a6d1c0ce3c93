//! Authorization: Backend Services (registered clients, client assertion verification, the
//! `jti` replay cache), SMART App Launch (apps, users, launch records, id_tokens), access
//! tokens and SMART scopes.

pub(crate) mod assertion;
mod clients;
pub(crate) mod id_token;
mod keys;
mod scopes;
pub(crate) mod smart;
pub(crate) mod tokens;

pub(crate) use clients::ClientRegistry;
pub use clients::{ClientConfig, ClientKeys, DEFAULT_JWKS_CACHE, MAX_JWKS_CACHE, load_key_file};
pub use keys::{ACCEPTED_ALGORITHMS, KeyKind, VerifyKey, parse_jwks, parse_pem_public};
pub use scopes::{Permission, Scope, ScopeContext, ScopeSet};
pub use smart::{AppAuth, AppConfig, SmartConfig, UserConfig};
