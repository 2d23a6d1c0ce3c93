//! SMART Backend Services client assertions: signed JWTs that authenticate the client to the
//! token endpoint (RFC 7523, SMART App Launch 2.x "Backend Services").

use std::time::{Duration, SystemTime};

use serde::Serialize;
use url::Url;

use super::clock::unix_seconds;
use super::key::{SigningKey, b64url};
use crate::error::{Error, Result};

/// The longest assertion lifetime SMART and Epic accept: `exp` at most five minutes after now.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The number of random bytes in a `jti`: 144 bits, well above the 122 bits of a UUIDv4.
const JTI_BYTES: usize = 18;

/// What goes into every client assertion besides the timestamps and the `jti`.
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    client_id: String,
    token_url: Url,
    lifetime: Duration,
    jku: Option<Url>,
}

impl AssertionConfig {
    /// Assertions for `client_id` addressed to `token_url` (the `aud` claim), valid for the
    /// maximum of 300 seconds.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Config`] if the client id is empty.
    pub fn new(client_id: impl Into<String>, token_url: Url) -> Result<Self> {
        let client_id = client_id.into();
        if client_id.trim().is_empty() {
            return Err(Error::config("client id is empty"));
        }
        Ok(AssertionConfig {
            client_id,
            token_url,
            lifetime: MAX_ASSERTION_LIFETIME,
            jku: None,
        })
    }

    /// Sets how long each assertion is valid. It may be shorter than 300 seconds, never longer.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Config`] if `lifetime` is zero or over 300 seconds.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Result<Self> {
        if lifetime.is_zero() || lifetime > MAX_ASSERTION_LIFETIME {
            return Err(Error::config(format!(
                "assertion lifetime {}s is out of range: it must be between 1 and {} seconds",
                lifetime.as_secs(),
                MAX_ASSERTION_LIFETIME.as_secs()
            )));
        }
        self.lifetime = lifetime;
        Ok(self)
    }

    /// Puts a `jku` header (the registered JWK Set URL) in every assertion.
    #[must_use]
    pub fn with_jku(mut self, jku: Url) -> Self {
        self.jku = Some(jku);
        self
    }

    /// The client id (`iss` and `sub`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The token URL (`aud`).
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The assertion lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    jku: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
}

/// A fresh random `jti`: 144 bits from the system CSPRNG, base64url (24 characters).
pub(crate) fn new_jti() -> Result<String> {
    let mut bytes = [0u8; JTI_BYTES];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::new(crate::ErrorKind::Key, "the system random generator failed"))?;
    Ok(b64url(&bytes))
}

/// Signs a new client assertion at time `now` with a new random `jti`.
///
/// The header is `{"alg", "typ": "JWT", "kid"[, "jku"]}`; the claims are `iss` = `sub` =
/// client id, `aud` = token URL, `jti`, `iat` = now and `exp` = now + lifetime (≤ 300 s).
///
/// # Errors
/// [`crate::ErrorKind::Key`] if signing fails.
pub fn sign_assertion(
    key: &SigningKey,
    config: &AssertionConfig,
    now: SystemTime,
) -> Result<String> {
    let jti = new_jti()?;
    let iat = unix_seconds(now);
    let header = Header {
        alg: key.algorithm().as_str(),
        typ: "JWT",
        kid: key.kid(),
        jku: config.jku.as_ref().map(Url::as_str),
    };
    let claims = Claims {
        iss: &config.client_id,
        sub: &config.client_id,
        aud: config.token_url.as_str(),
        jti: &jti,
        iat,
        exp: iat + config.lifetime.as_secs(),
    };
    let mut token = encode_part(&header)?;
    token.push('.');
    token.push_str(&encode_part(&claims)?);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64url(&signature));
    Ok(token)
}

/// Serializes a JWT part to JSON and base64url-encodes it.
fn encode_part<T: Serialize>(part: &T) -> Result<String> {
    serde_json::to_vec(part)
        .map(|bytes| b64url(&bytes))
        .map_err(|e| Error::config("cannot encode the assertion").with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AssertionConfig {
        AssertionConfig::new(
            "client-1",
            Url::parse("https://fhir.example.org/oauth2/token").expect("url"),
        )
        .expect("config")
    }

    #[test]
    fn lifetime_may_be_lower_never_higher() {
        assert!(config().with_lifetime(Duration::from_secs(60)).is_ok());
        assert!(config().with_lifetime(Duration::from_secs(300)).is_ok());
        let err = config()
            .with_lifetime(Duration::from_secs(301))
            .expect_err("too long");
        assert!(err.to_string().contains("301"), "{err}");
        assert!(config().with_lifetime(Duration::ZERO).is_err());
        assert!(AssertionConfig::new(" ", config().token_url().clone()).is_err());
    }

    #[test]
    fn jti_is_long_and_url_safe() {
        let jti = new_jti().expect("jti");
        assert_eq!(jti.len(), 24);
        assert!(
            jti.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
