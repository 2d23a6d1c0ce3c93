//! The sandbox's OpenID Connect signing key: id_tokens are RS256 JWTs, verifiable with the
//! JWK Set published at the `jwks_uri` of the discovery documents.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use serde_json::{Value, json};

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA key pair with its `kid` and public JWK.
pub(crate) struct Signer {
    pair: RsaKeyPair,
    kid: String,
    jwk: Value,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    fn generate() -> Result<Signer, String> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| "cannot generate the id_token signing key".to_owned())?;
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        // RFC 7638 thumbprint as the kid.
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            b64url(&e),
            b64url(&n)
        );
        let kid = b64url(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
        );
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64url(&n), "e": b64url(&e),
        });
        Ok(Signer { pair, kid, jwk })
    }

    /// A compact RS256 JWS of `claims`, with `typ` JWT and this key's `kid`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "cannot sign the id_token".to_owned())?;
        Ok(format!("{signing_input}.{}", b64url(&signature)))
    }

    /// The JWK Set holding the public key.
    pub(crate) fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }
}

/// The signing key, generated on first use (most sandboxes never issue an id_token, and an
/// RSA key takes a moment to generate).
#[derive(Debug, Default)]
pub(crate) struct LazySigner(OnceLock<Result<Signer, String>>);

impl LazySigner {
    pub(crate) fn get(&self) -> Result<&Signer, String> {
        self.0
            .get_or_init(Signer::generate)
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::parse_jwks;

    #[test]
    fn signatures_verify_with_the_published_key() {
        let signer = LazySigner::default();
        let signer = signer.get().expect("key");
        let token = signer.sign(&json!({"sub": "x"})).expect("signed");
        let keys = parse_jwks(&signer.jwks()).expect("jwks");
        let (input, signature) = token.rsplit_once('.').expect("jws");
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .expect("b64");
        assert_eq!(keys[0].kid, signer.kid);
        assert!(keys[0].kind.verify("RS256", input.as_bytes(), &signature));
        assert!(!keys[0].kind.verify("RS256", b"tampered", &signature));
    }
}
