//! Signing keys: loading from PEM, generation, JWK export and signing.

use std::fmt;
use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA384, RsaKeyPair,
};
use base64::Engine as _;
use serde::Serialize;

use super::der::{self, KeyShape, oid};

/// The smallest RSA key accepted, in bits (Epic's and NIST's minimum).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA key accepted, in bits.
pub const MAX_RSA_BITS: usize = 4096;

/// A JWS signing algorithm this crate can sign with.
///
/// SMART Backend Services requires clients to support both; Epic accepts both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-384, for RSA keys of 2048 to 4096 bits.
    RS384,
    /// ECDSA on P-384 with SHA-384, signatures in the fixed-width `r || s` form JWS uses.
    ES384,
}

impl Algorithm {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS384 => "RS384",
            Algorithm::ES384 => "ES384",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "RS384" => Ok(Algorithm::RS384),
            "ES384" => Ok(Algorithm::ES384),
            other => Err(format!(
                "unsupported algorithm `{other}`: SMART Backend Services keys sign with RS384 or ES384"
            )),
        }
    }
}

/// RSA key sizes that [`SigningKey::generate_rsa`] can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaBits {
    /// 2048 bits: the minimum Epic accepts.
    B2048,
    /// 3072 bits.
    B3072,
    /// 4096 bits.
    B4096,
}

impl RsaBits {
    /// The size in bits.
    pub fn bits(self) -> usize {
        match self {
            RsaBits::B2048 => 2048,
            RsaBits::B3072 => 3072,
            RsaBits::B4096 => 4096,
        }
    }
}

impl TryFrom<usize> for RsaBits {
    type Error = String;
    fn try_from(bits: usize) -> Result<Self, Self::Error> {
        match bits {
            2048 => Ok(RsaBits::B2048),
            3072 => Ok(RsaBits::B3072),
            4096 => Ok(RsaBits::B4096),
            other => Err(format!(
                "unsupported RSA key size {other}: choose 2048, 3072 or 4096"
            )),
        }
    }
}

/// Why a key could not be used for signing client assertions.
///
/// Each variant's message says what the input was and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The input holds no PEM block at all.
    #[error(
        "no PEM data found: expected a private key between `-----BEGIN PRIVATE KEY-----` and `-----END PRIVATE KEY-----` lines"
    )]
    NotPem,
    /// The PEM text is damaged.
    #[error("malformed PEM: {0}")]
    MalformedPem(String),
    /// The key is password-protected.
    #[error(
        "the private key is encrypted: decrypt it first, e.g. `openssl pkcs8 -in key.pem -nocrypt -topk8 -out private.pem` (a PKCS#8 key without a password)"
    )]
    Encrypted,
    /// A public key or certificate was given where the private key is needed.
    #[error(
        "found a {found} but no private key: the client signs with its private key; the {found} is what you register with Epic"
    )]
    NotAPrivateKey {
        /// What was found instead (`public key`, `certificate`).
        found: String,
    },
    /// An RSA key below the minimum size.
    #[error(
        "the RSA key has {bits} bits: Epic requires at least {MIN_RSA_BITS}; generate a new key with `epic-fhir keygen`"
    )]
    RsaTooSmall {
        /// The key's modulus size.
        bits: usize,
    },
    /// An RSA key above the supported size.
    #[error("the RSA key has {bits} bits: keys of 2048 to {MAX_RSA_BITS} bits are supported")]
    RsaTooLarge {
        /// The key's modulus size.
        bits: usize,
    },
    /// An EC key on a curve other than P-384.
    #[error(
        "the EC key is on {curve}: ES384 needs a P-384 (secp384r1) key, e.g. `epic-fhir keygen --alg ES384`"
    )]
    UnsupportedCurve {
        /// The curve's name.
        curve: String,
    },
    /// A key of an algorithm other than RSA or EC.
    #[error(
        "the key's algorithm ({algorithm}) is not supported: use an RSA key (RS384) or an EC P-384 key (ES384)"
    )]
    UnsupportedAlgorithm {
        /// The algorithm's name or OID.
        algorithm: String,
    },
    /// The DER inside the PEM is not a valid key of the type its label claims.
    #[error("the {format} key is malformed: {detail}")]
    Malformed {
        /// The format that was tried (`PKCS#8`, `PKCS#1 RSA`, `SEC1 EC`).
        format: String,
        /// What was wrong.
        detail: String,
    },
    /// The key file could not be read.
    #[error("cannot read key file {path}: {detail}")]
    Io {
        /// The file's path.
        path: String,
        /// The I/O error.
        detail: String,
    },
    /// Key generation or signing failed inside the crypto library.
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}

enum KeyPair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key that signs client assertions, with its `kid`.
///
/// `Debug` and `Display` never show key material: they print the algorithm, the `kid` and
/// `[redacted]`.
///
/// # Example
/// ```
/// use epic_fhir::auth::{Algorithm, SigningKey};
///
/// let key = SigningKey::generate_ec_p384().unwrap();
/// assert_eq!(key.algorithm(), Algorithm::ES384);
/// // Without a configured kid, the kid is the RFC 7638 thumbprint of the public key.
/// assert_eq!(key.kid(), key.thumbprint());
/// let reloaded = SigningKey::from_pem(key.to_pkcs8_pem().unwrap().expose_secret()).unwrap();
/// assert_eq!(reloaded.kid(), key.kid());
/// ```
pub struct SigningKey {
    pair: KeyPair,
    algorithm: Algorithm,
    kid: String,
    thumbprint: String,
    public: PublicJwk,
}

/// The public half of a signing key as a JSON Web Key (RFC 7517), with no private members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PublicJwk {
    /// Key type: `RSA` or `EC`.
    pub kty: String,
    /// The key id.
    pub kid: String,
    /// The algorithm the key signs with.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// RSA modulus, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    /// RSA public exponent, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
    /// EC curve: `P-384`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    /// EC x coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
}

/// A JSON Web Key Set (`{"keys": [...]}`), the document hosted at a JKU URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct JwkSet {
    /// The public keys.
    pub keys: Vec<PublicJwk>,
}

/// PEM text that holds private key material. `Debug` prints `[redacted]`.
pub struct PrivatePem(String);

impl PrivatePem {
    /// The PEM text.
    ///
    /// # Security Warning
    /// This is the private key: write it only to a file readable by its owner (mode 0600) and
    /// never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivatePem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivatePem([redacted])")
    }
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// Loads a private key from PEM text.
    ///
    /// Accepts RSA keys as PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`), 2048 to
    /// 4096 bits, which sign with RS384; and EC P-384 keys as PKCS#8 or SEC1 (`BEGIN EC PRIVATE
    /// KEY`), which sign with ES384. Other blocks in the text (a certificate, EC parameters) are
    /// skipped. The `kid` defaults to the key's RFC 7638 thumbprint; see [`SigningKey::with_kid`].
    ///
    /// # Errors
    /// A [`KeyError`] that names the problem: not PEM, encrypted, a public key or certificate,
    /// RSA under 2048 bits, an EC key on another curve, another algorithm, or malformed DER.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = der::parse_pem(text).map_err(KeyError::MalformedPem)?;
        if blocks.is_empty() {
            return Err(KeyError::NotPem);
        }
        let mut found_public: Option<&str> = None;
        for block in &blocks {
            match block.label.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&block.der),
                "RSA PRIVATE KEY" if block.legacy_encrypted => return Err(KeyError::Encrypted),
                "RSA PRIVATE KEY" => return Self::from_pkcs1_der(&block.der),
                "EC PRIVATE KEY" if block.legacy_encrypted => return Err(KeyError::Encrypted),
                "EC PRIVATE KEY" => return Self::from_sec1_der(&block.der),
                "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
                "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                    found_public = found_public.or(Some("public key"))
                }
                "CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                    found_public = found_public.or(Some("certificate"));
                }
                "OPENSSH PRIVATE KEY" => {
                    return Err(KeyError::UnsupportedAlgorithm {
                        algorithm: "OpenSSH private key format; convert it with `ssh-keygen -p -m PKCS8 -f KEY`".to_owned(),
                    });
                }
                _ => {}
            }
        }
        match found_public {
            Some(found) => Err(KeyError::NotAPrivateKey {
                found: found.to_owned(),
            }),
            None => Err(KeyError::NotPem),
        }
    }

    /// Loads a private key from a PEM file; errors name the path.
    ///
    /// # Errors
    /// As [`SigningKey::from_pem`], plus [`KeyError::Io`] when the file cannot be read.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Io {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::from_pem(&text)
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let malformed = |detail: String| KeyError::Malformed {
            format: "PKCS#8".to_owned(),
            detail,
        };
        match der::inspect_pkcs8(der).map_err(malformed)? {
            KeyShape::Rsa { bits } => {
                check_rsa_bits(bits)?;
                let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| malformed(e.to_string()))?;
                Self::from_pair(KeyPair::Rsa(pair))
            }
            KeyShape::Ec { curve } => {
                check_curve(curve.as_deref())?;
                let pair =
                    EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, der)
                        .map_err(|e| malformed(e.to_string()))?;
                Self::from_pair(KeyPair::Ec(pair))
            }
            KeyShape::Other { algorithm } => Err(KeyError::UnsupportedAlgorithm {
                algorithm: match algorithm.as_slice() {
                    oid::ED25519 => "Ed25519".to_owned(),
                    oid::ED448 => "Ed448".to_owned(),
                    oid::RSASSA_PSS => "RSASSA-PSS-only RSA key".to_owned(),
                    other => format!("OID {}", der::oid_to_string(other)),
                },
            }),
        }
    }

    fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        let malformed = |detail: String| KeyError::Malformed {
            format: "PKCS#1 RSA".to_owned(),
            detail,
        };
        let KeyShape::Rsa { bits } = der::inspect_pkcs1(der).map_err(malformed)? else {
            return Err(malformed("not an RSA key".to_owned()));
        };
        check_rsa_bits(bits)?;
        let pair = RsaKeyPair::from_der(der).map_err(|e| malformed(e.to_string()))?;
        Self::from_pair(KeyPair::Rsa(pair))
    }

    fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        let malformed = |detail: String| KeyError::Malformed {
            format: "SEC1 EC".to_owned(),
            detail,
        };
        let KeyShape::Ec { curve } = der::inspect_sec1(der).map_err(malformed)? else {
            return Err(malformed("not an EC key".to_owned()));
        };
        check_curve(curve.as_deref())?;
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, der)
            .map_err(|e| malformed(e.to_string()))?;
        Self::from_pair(KeyPair::Ec(pair))
    }

    /// Generates a new RSA key of the given size, signing with RS384.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if the crypto library fails.
    pub fn generate_rsa(bits: RsaBits) -> Result<Self, KeyError> {
        let size = match bits {
            RsaBits::B2048 => KeySize::Rsa2048,
            RsaBits::B3072 => KeySize::Rsa3072,
            RsaBits::B4096 => KeySize::Rsa4096,
        };
        let pair = RsaKeyPair::generate(size).map_err(|e| KeyError::Crypto(e.to_string()))?;
        Self::from_pair(KeyPair::Rsa(pair))
    }

    /// Generates a new EC P-384 key, signing with ES384.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if the crypto library fails.
    pub fn generate_ec_p384() -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Self::from_pair(KeyPair::Ec(pair))
    }

    fn from_pair(pair: KeyPair) -> Result<Self, KeyError> {
        let crypto = |e: String| KeyError::Crypto(e);
        let (algorithm, mut public, thumbprint_input) = match &pair {
            KeyPair::Rsa(rsa) => {
                let (n, e) =
                    der::rsa_public_components(rsa.public_key().as_ref()).map_err(crypto)?;
                let (n, e) = (b64url(n), b64url(e));
                // RFC 7638: the required members in lexicographic order, no whitespace.
                let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                let jwk = PublicJwk {
                    kty: "RSA".to_owned(),
                    kid: String::new(),
                    alg: Algorithm::RS384.as_str().to_owned(),
                    use_: "sig".to_owned(),
                    n: Some(n),
                    e: Some(e),
                    crv: None,
                    x: None,
                    y: None,
                };
                (Algorithm::RS384, jwk, input)
            }
            KeyPair::Ec(ec) => {
                let point = ec.public_key().as_ref();
                // An uncompressed P-384 point: 0x04, then x and y of 48 bytes each.
                if point.len() != 97 || point[0] != 0x04 {
                    return Err(crypto("unexpected P-384 public point encoding".to_owned()));
                }
                let (x, y) = (b64url(&point[1..49]), b64url(&point[49..97]));
                let input = format!(r#"{{"crv":"P-384","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let jwk = PublicJwk {
                    kty: "EC".to_owned(),
                    kid: String::new(),
                    alg: Algorithm::ES384.as_str().to_owned(),
                    use_: "sig".to_owned(),
                    n: None,
                    e: None,
                    crv: Some("P-384".to_owned()),
                    x: Some(x),
                    y: Some(y),
                };
                (Algorithm::ES384, jwk, input)
            }
        };
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, thumbprint_input.as_bytes());
        let thumbprint = b64url(digest.as_ref());
        public.kid.clone_from(&thumbprint);
        Ok(SigningKey {
            pair,
            algorithm,
            kid: thumbprint.clone(),
            thumbprint,
            public,
        })
    }

    /// Sets the `kid` put in assertion headers and in the JWK (for example the id under which
    /// the key was registered). An empty string restores the thumbprint.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        let kid = kid.into();
        self.kid = if kid.is_empty() {
            self.thumbprint.clone()
        } else {
            kid
        };
        self.public.kid.clone_from(&self.kid);
        self
    }

    /// The algorithm this key signs with, decided by the key's type.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id used in assertion headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 JWK SHA-256 thumbprint of the public key, base64url.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The size of an RSA key's modulus in bits, or `None` for EC keys.
    pub fn rsa_bits(&self) -> Option<usize> {
        match &self.pair {
            KeyPair::Rsa(rsa) => Some(rsa.public_modulus_len() * 8),
            KeyPair::Ec(_) => None,
        }
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> PublicJwk {
        self.public.clone()
    }

    /// A JWK Set holding this key's public JWK, ready to host at a JKU URL.
    pub fn jwk_set(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public_jwk()],
        }
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if encoding fails.
    pub fn public_key_pem(&self) -> Result<String, KeyError> {
        let der = match &self.pair {
            KeyPair::Rsa(rsa) => rsa
                .public_key()
                .as_der()
                .map(|d| d.as_ref().to_vec())
                .map_err(|e| KeyError::Crypto(e.to_string()))?,
            KeyPair::Ec(ec) => ec
                .public_key()
                .as_der()
                .map(|d| d.as_ref().to_vec())
                .map_err(|e| KeyError::Crypto(e.to_string()))?,
        };
        Ok(der::to_pem("PUBLIC KEY", &der))
    }

    /// The private key as an unencrypted PKCS#8 PEM.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if encoding fails.
    pub fn to_pkcs8_pem(&self) -> Result<PrivatePem, KeyError> {
        let der = match &self.pair {
            KeyPair::Rsa(rsa) => rsa
                .as_der()
                .map(|d| d.as_ref().to_vec())
                .map_err(|e| KeyError::Crypto(e.to_string()))?,
            KeyPair::Ec(ec) => ec
                .to_pkcs8v1()
                .map(|d| d.as_ref().to_vec())
                .map_err(|e| KeyError::Crypto(e.to_string()))?,
        };
        Ok(PrivatePem(der::to_pem("PRIVATE KEY", &der)))
    }

    /// Signs `message` with this key's algorithm, returning the raw JWS signature bytes.
    ///
    /// # Errors
    /// [`KeyError::Crypto`] if the crypto library fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.pair {
            KeyPair::Rsa(rsa) => {
                let mut signature = vec![0u8; rsa.public_modulus_len()];
                rsa.sign(&RSA_PKCS1_SHA384, &rng, message, &mut signature)
                    .map_err(|e| KeyError::Crypto(e.to_string()))?;
                Ok(signature)
            }
            KeyPair::Ec(ec) => ec
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|e| KeyError::Crypto(e.to_string())),
        }
    }
}

fn check_rsa_bits(bits: usize) -> Result<(), KeyError> {
    if bits < MIN_RSA_BITS {
        Err(KeyError::RsaTooSmall { bits })
    } else if bits > MAX_RSA_BITS {
        Err(KeyError::RsaTooLarge { bits })
    } else {
        Ok(())
    }
}

fn check_curve(curve: Option<&[u8]>) -> Result<(), KeyError> {
    match curve {
        Some(oid::SECP384R1) => Ok(()),
        Some(other) => Err(KeyError::UnsupportedCurve {
            curve: der::curve_name(other),
        }),
        None => Err(KeyError::UnsupportedCurve {
            curve: "an unnamed curve".to_owned(),
        }),
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {} [redacted]", self.algorithm, self.kid)
    }
}
