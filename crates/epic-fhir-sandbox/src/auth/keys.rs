//! Public keys of registered clients: from JWK Sets, PEM public keys and PEM certificates, and
//! JWS signature verification with them.
//!
//! The sandbox deliberately shares no code with the SDK's signing side, so that each checks the
//! other: a bug in the SDK's JWT encoding cannot be mirrored by the same bug here.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use serde_json::Value;

/// The kind of a registered public key; the key's kind (not the JWT header) decides which `alg`
/// values may be verified with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: verifies RS256, RS384 and RS512 (Epic accepts all three; SMART requires RS384).
    Rsa {
        /// Modulus, big-endian, no leading zeros.
        n: Vec<u8>,
        /// Public exponent, big-endian.
        e: Vec<u8>,
    },
    /// EC P-384: verifies ES384.
    EcP384 {
        /// The uncompressed point `0x04 || x || y`.
        point: Vec<u8>,
    },
}

/// A public key a client registered, with its `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKey {
    /// The key id: from the JWK, else the RFC 7638 thumbprint.
    pub kid: String,
    /// The key material.
    pub kind: KeyKind,
}

/// JWS algorithms the token endpoint accepts, by key kind. `none` and the HMAC family are never
/// accepted, whatever the header says.
pub const ACCEPTED_ALGORITHMS: &[&str] = &["RS384", "ES384", "RS256", "RS512"];

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(text: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| format!("{what} is not base64url: {e}"))
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[start..].to_vec()
}

impl KeyKind {
    /// The JWK `kty` of this key.
    pub fn kty(&self) -> &'static str {
        match self {
            KeyKind::Rsa { .. } => "RSA",
            KeyKind::EcP384 { .. } => "EC",
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> String {
        let canonical = match self {
            KeyKind::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64url(e), b64url(n))
            }
            KeyKind::EcP384 { point } => {
                // The fields are public, so the point may not be the 97 bytes the parsers
                // produce; halving what follows the prefix byte cannot panic, and gives the
                // right coordinates for every valid point.
                let coordinates = point.get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                format!(
                    r#"{{"crv":"P-384","kty":"EC","x":"{}","y":"{}"}}"#,
                    b64url(x),
                    b64url(y)
                )
            }
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        b64url(digest.as_ref())
    }

    /// Whether a JWT `alg` may be verified with a key of this kind.
    pub fn allows(&self, alg: &str) -> bool {
        match self {
            KeyKind::Rsa { .. } => matches!(alg, "RS256" | "RS384" | "RS512"),
            KeyKind::EcP384 { .. } => alg == "ES384",
        }
    }

    /// Verifies a JWS signature over `message`. `alg` must already be allowed for this kind.
    pub fn verify(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        match self {
            KeyKind::Rsa { n, e } => {
                let params = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    _ => return false,
                };
                let components = signature::RsaPublicKeyComponents { n, e };
                components.verify(params, message, signature).is_ok()
            }
            KeyKind::EcP384 { point } => {
                let algorithm: &dyn VerificationAlgorithm = match alg {
                    "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

impl VerifyKey {
    fn from_kind(kind: KeyKind, kid: Option<String>) -> Self {
        let kid = kid.unwrap_or_else(|| kind.thumbprint());
        VerifyKey { kid, kind }
    }
}

/// Parses a JWK Set document (`{"keys": [...]}`) into the keys it holds. Keys that are not for
/// signature (`use` other than `sig`), of an unsupported type, or carrying private members are
/// rejected with an error naming the key's index: a private key published in a JWK Set is a
/// registration mistake worth stopping on.
pub fn parse_jwks(document: &Value) -> Result<Vec<VerifyKey>, String> {
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "a JWK Set needs a \"keys\" array".to_owned())?;
    let mut out = Vec::with_capacity(keys.len());
    for (index, jwk) in keys.iter().enumerate() {
        let key = parse_jwk(jwk).map_err(|e| format!("keys[{index}]: {e}"))?;
        if let Some(key) = key {
            out.push(key);
        }
    }
    if out.is_empty() {
        return Err("the JWK Set holds no signing keys".to_owned());
    }
    Ok(out)
}

/// Parses one JWK; `Ok(None)` for an encryption key, which is skipped.
fn parse_jwk(jwk: &Value) -> Result<Option<VerifyKey>, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if jwk.get("d").is_some() {
        return Err("holds a private key (\"d\"): publish only public keys".to_owned());
    }
    let kid = field("kid").map(str::to_owned);
    let kind = match field("kty") {
        Some("RSA") => {
            let n = b64url_decode(field("n").ok_or("RSA key without \"n\"")?, "n")?;
            let e = b64url_decode(field("e").ok_or("RSA key without \"e\"")?, "e")?;
            let n = strip_leading_zeros(&n);
            if n.len() * 8 < 2048 {
                return Err(format!(
                    "RSA key of {} bits: at least 2048 are required",
                    n.len() * 8
                ));
            }
            KeyKind::Rsa {
                n,
                e: strip_leading_zeros(&e),
            }
        }
        Some("EC") => {
            let crv = field("crv").unwrap_or("");
            if crv != "P-384" {
                return Err(format!(
                    "EC key on curve `{crv}`: only P-384 (ES384) is accepted"
                ));
            }
            let x = b64url_decode(field("x").ok_or("EC key without \"x\"")?, "x")?;
            let y = b64url_decode(field("y").ok_or("EC key without \"y\"")?, "y")?;
            if x.len() != 48 || y.len() != 48 {
                return Err("P-384 coordinates must be 48 bytes each".to_owned());
            }
            let mut point = Vec::with_capacity(97);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyKind::EcP384 { point }
        }
        Some(other) => return Err(format!("unsupported key type `{other}`")),
        None => return Err("missing \"kty\"".to_owned()),
    };
    Ok(Some(VerifyKey::from_kind(kind, kid)))
}

/// Parses a PEM file holding a public key (`PUBLIC KEY`, `RSA PUBLIC KEY`) or an X.509
/// certificate (`CERTIFICATE`). The `kid` is the key's RFC 7638 thumbprint.
pub fn parse_pem_public(text: &str) -> Result<VerifyKey, String> {
    let (label, der) = first_pem_block(text)?;
    let kind = match label.as_str() {
        "PUBLIC KEY" => spki_to_kind(&der)?,
        "RSA PUBLIC KEY" => rsa_public_key_to_kind(&der)?,
        "CERTIFICATE" => spki_to_kind(&certificate_spki(&der)?)?,
        other if other.contains("PRIVATE KEY") => {
            return Err(
                "this is a private key: register the public key or certificate instead".to_owned(),
            );
        }
        other => return Err(format!("unsupported PEM block `{other}`")),
    };
    Ok(VerifyKey::from_kind(kind, None))
}

fn first_pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        for inner in lines.by_ref() {
            if inner == end {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .map_err(|e| format!("PEM block `{label}` is not valid base64: {e}"))?;
                return Ok((label.to_owned(), der));
            }
            body.push_str(inner);
        }
        return Err(format!("PEM block `{label}` is not terminated"));
    }
    Err("no PEM block found".to_owned())
}

/// Reads one DER element: `(tag, contents, rest)`.
fn der_element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let malformed = || "malformed DER".to_owned();
    let (&tag, rest) = input.split_first().ok_or_else(malformed)?;
    let (&len0, mut rest) = rest.split_first().ok_or_else(malformed)?;
    let len = if len0 & 0x80 == 0 {
        usize::from(len0)
    } else {
        let count = usize::from(len0 & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(malformed());
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return Err(malformed());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn der_expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let (found, contents, rest) = der_element(input)?;
    if found != tag {
        return Err(format!(
            "unexpected DER tag 0x{found:02x} (wanted 0x{tag:02x})"
        ));
    }
    Ok((contents, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// The SubjectPublicKeyInfo inside an X.509 certificate, re-encoded as a whole element.
fn certificate_spki(der: &[u8]) -> Result<Vec<u8>, String> {
    let (cert, _) = der_expect(der, SEQUENCE)?;
    let (tbs, _) = der_expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // Optional [0] version, then serial, signature algorithm, issuer, validity, subject.
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..5 {
        let (_, _, after) = der_element(rest)?;
        rest = after;
    }
    let (_, _, after) = der_element(rest)?;
    let spki_len = rest.len() - after.len();
    Ok(rest[..spki_len].to_vec())
}

fn spki_to_kind(spki: &[u8]) -> Result<KeyKind, String> {
    let (info, _) = der_expect(spki, SEQUENCE)?;
    let (algorithm, rest) = der_expect(info, SEQUENCE)?;
    let (oid, params) = der_expect(algorithm, OID)?;
    let (bits, _) = der_expect(rest, BIT_STRING)?;
    let key = bits.get(1..).ok_or("empty public key")?;
    match oid {
        RSA_ENCRYPTION => rsa_public_key_to_kind(key),
        EC_PUBLIC_KEY => {
            let (curve, _) = der_expect(params, OID)?;
            if curve != SECP384R1 {
                return Err(
                    "EC key on a curve other than P-384: only ES384 keys are accepted".to_owned(),
                );
            }
            if key.len() != 97 || key[0] != 0x04 {
                return Err("P-384 public key is not an uncompressed point".to_owned());
            }
            Ok(KeyKind::EcP384 {
                point: key.to_vec(),
            })
        }
        _ => Err("unsupported public key algorithm: use RSA or EC P-384".to_owned()),
    }
}

fn rsa_public_key_to_kind(der: &[u8]) -> Result<KeyKind, String> {
    let (seq, _) = der_expect(der, SEQUENCE)?;
    let (n, rest) = der_expect(seq, INTEGER)?;
    let (e, _) = der_expect(rest, INTEGER)?;
    let n = strip_leading_zeros(n);
    if n.len() * 8 < 2048 {
        return Err(format!(
            "RSA key of {} bits: at least 2048 are required",
            n.len() * 8
        ));
    }
    Ok(KeyKind::Rsa {
        n,
        e: strip_leading_zeros(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    use serde_json::json;

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    #[test]
    fn rsa_spki_and_jwk_agree_and_verify() {
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("key");
        let spki = pair.public_key().as_der().expect("der");
        let from_pem = parse_pem_public(&pem("PUBLIC KEY", spki.as_ref())).expect("parses");
        let KeyKind::Rsa { n, e } = &from_pem.kind else {
            panic!("not RSA")
        };
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "k1", "n": b64url(n), "e": b64url(e), "use": "sig"}]});
        let from_jwk = parse_jwks(&jwks).expect("jwks");
        assert_eq!(from_jwk[0].kind, from_pem.kind);
        assert_eq!(from_jwk[0].kid, "k1");
        assert_eq!(from_pem.kid, from_pem.kind.thumbprint());

        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&signature::RSA_PKCS1_SHA384, &rng, b"msg", &mut sig)
            .expect("sign");
        assert!(from_pem.kind.verify("RS384", b"msg", &sig));
        assert!(!from_pem.kind.verify("RS384", b"other", &sig));
        assert!(!from_pem.kind.verify("RS256", b"msg", &sig));
        assert!(from_pem.kind.allows("RS512"));
        assert!(!from_pem.kind.allows("ES384"));
        assert!(!from_pem.kind.allows("HS256"));
        assert!(!from_pem.kind.allows("none"));
    }

    #[test]
    fn ec_p384_spki_and_jwk() {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        )
        .expect("key");
        let spki = pair.public_key().as_der().expect("der");
        let key = parse_pem_public(&pem("PUBLIC KEY", spki.as_ref())).expect("parses");
        assert_eq!(key.kind.kty(), "EC");
        let KeyKind::EcP384 { point } = &key.kind else {
            panic!("not EC")
        };
        let jwk = json!({"kty": "EC", "crv": "P-384", "x": b64url(&point[1..49]), "y": b64url(&point[49..])});
        let from_jwk = parse_jwks(&json!({"keys": [jwk]})).expect("jwks");
        assert_eq!(from_jwk[0].kind, key.kind);
        assert_eq!(
            from_jwk[0].kid,
            key.kind.thumbprint(),
            "kid defaults to the thumbprint"
        );
        // A point built by hand with the wrong length has a thumbprint, not a panic.
        for short in [Vec::new(), vec![4], vec![4, 1, 2, 3]] {
            assert_eq!(KeyKind::EcP384 { point: short }.thumbprint().len(), 43);
        }
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = pair.sign(&rng, b"msg").expect("sign");
        assert!(key.kind.verify("ES384", b"msg", sig.as_ref()));
        assert!(!key.kind.allows("RS384"));
    }

    #[test]
    fn jwks_rejections_name_the_key() {
        assert!(parse_jwks(&json!({})).is_err());
        let err =
            parse_jwks(&json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}))
                .expect_err("p256");
        assert!(
            err.starts_with("keys[0]:") && err.contains("P-256"),
            "{err}"
        );
        let err = parse_jwks(&json!({"keys": [{"kty": "oct", "k": "AA"}]})).expect_err("oct");
        assert!(err.contains("oct"), "{err}");
        let err =
            parse_jwks(&json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AA"}]}))
                .expect_err("private");
        assert!(err.contains("private"), "{err}");
        let err = parse_jwks(&json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}))
            .expect_err("small");
        assert!(err.contains("2048"), "{err}");
        // Encryption keys are skipped, leaving nothing to sign with.
        assert!(
            parse_jwks(&json!({"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}))
                .is_err()
        );
    }

    #[test]
    fn pem_rejections() {
        assert!(parse_pem_public("nothing").is_err());
        assert!(
            parse_pem_public("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .expect_err("private")
                .contains("private key")
        );
        assert!(
            parse_pem_public("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn der_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = spki_to_kind(&bytes);
            let _ = certificate_spki(&bytes);
            let _ = rsa_public_key_to_kind(&bytes);
        }
    }
}
