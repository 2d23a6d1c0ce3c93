//! Secret newtypes whose `Debug` and `Display` never show the value.

use std::fmt;

/// An OAuth 2.0 access token.
///
/// `Debug` and `Display` print `[redacted]`, so a token cannot leak through logs or error
/// messages by accident. Cloning is cheap (the value is reference-counted).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(std::sync::Arc<str>);

impl AccessToken {
    /// Wraps a token value.
    pub fn new(value: impl Into<String>) -> Self {
        AccessToken(std::sync::Arc::from(value.into()))
    }

    /// The token value, for an `Authorization: Bearer` header.
    ///
    /// # Security Warning
    /// Send it only to the FHIR server it was issued for, over TLS (or loopback), and never
    /// log or persist it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let token = AccessToken::new("eyJ-very-secret");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert_eq!(format!("{token}"), "[redacted]");
        assert_eq!(
            format!("{:?}", Some(&token)),
            "Some(AccessToken([redacted]))"
        );
        assert_eq!(token.expose_secret(), "eyJ-very-secret");
    }
}
