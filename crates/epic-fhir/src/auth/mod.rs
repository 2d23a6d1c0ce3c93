//! OAuth 2.0 authentication as Epic and SMART App Launch 2.x define it: Backend Services for
//! systems, and App Launch (standalone and EHR, PKCE, refresh tokens) for people.
//!
//! The pieces, from the bottom up:
//! - [`SigningKey`]: a private key loaded from PEM (RSA 2048-4096 → RS384, EC P-384 → ES384) or
//!   generated, with its `kid` and its public JWK / JWK Set for registration.
//! - [`sign_assertion`]: a client assertion JWT (`iss` = `sub` = client id, `aud` = token URL,
//!   random `jti`, `exp` ≤ now + 300 s).
//! - [`BackendServicesAuth`]: exchanges a new assertion for an access token whenever needed and
//!   caches it (single flight, proactive refresh, invalidation on 401, bounded retries).
//! - [`SmartConfiguration`]: discovery of the token endpoint from a FHIR base URL.
//! - [`SmartApp`]: SMART App Launch for patient portals: the authorization URL (state, PKCE
//!   S256, nonce from the CSPRNG), the callback, the code exchange, id_token verification,
//!   EHR launches from allowed issuers only.
//! - [`UserSession`] and [`UserSessionAuth`]: the launch's tokens and context (serialisable,
//!   redacted in `Debug`), and a token provider that refreshes them (single flight,
//!   rotation kept, `invalid_grant` as [`crate::ErrorKind::LoginRequired`]).
//!
//! Secrets are newtypes ([`AccessToken`], [`PrivatePem`], [`SigningKey`]) whose `Debug` and
//! `Display` print `[redacted]`.

mod assertion;
mod backend;
mod clock;
pub(crate) mod der;
mod discovery;
mod exchange;
mod key;
mod launch;
mod secret;
mod session;

pub use assertion::{AssertionConfig, MAX_ASSERTION_LIFETIME, sign_assertion};
pub use backend::{
    BackendServicesAuth, BackendServicesAuthBuilder, DEFAULT_FETCH_TIMEOUT, DEFAULT_REFRESH_MARGIN,
    DEFAULT_TOKEN_LIFETIME, StaticToken, TokenProvider,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use discovery::{DiscoverySource, OAUTH_URIS_EXTENSION, SmartConfiguration};
pub use exchange::{CLIENT_ASSERTION_TYPE, IssuedToken, MAX_TOKEN_LIFETIME};
pub use key::{
    Algorithm, JwkSet, KeyError, MAX_RSA_BITS, MIN_RSA_BITS, PrivatePem, PublicJwk, RsaBits,
    SigningKey,
};
pub use launch::{
    AuthorizationRequest, ClientAuth, ClientSecret, ID_TOKEN_LEEWAY, IdTokenClaims,
    PendingAuthorization, SmartApp, SmartAppBuilder,
};
pub use secret::AccessToken;
pub use session::{DEFAULT_SESSION_REFRESH_MARGIN, UserSession, UserSessionAuth};
