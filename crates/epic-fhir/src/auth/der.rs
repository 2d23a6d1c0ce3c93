//! Just enough PEM and DER reading to tell key formats apart and give precise errors.
//!
//! The cryptographic parsing itself is done by aws-lc-rs; this module only looks at the outer
//! structure (PEM labels, algorithm OIDs, curve OIDs, the RSA modulus length) so that a wrong key
//! gets an error that says what it is and what to do, instead of an opaque "key rejected".

use base64::Engine as _;

/// One PEM block: its label (`PRIVATE KEY`, `RSA PRIVATE KEY`...), whether it carries the legacy
/// `Proc-Type: 4,ENCRYPTED` header, and the decoded DER bytes.
#[derive(Clone)]
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) legacy_encrypted: bool,
    pub(crate) der: Vec<u8>,
}

impl std::fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The DER may be private key material: never print it.
        f.debug_struct("PemBlock")
            .field("label", &self.label)
            .field("legacy_encrypted", &self.legacy_encrypted)
            .finish_non_exhaustive()
    }
}

/// Splits a PEM document into its blocks. Text outside the blocks (comments, `Bag Attributes`
/// written by openssl) is ignored. A block whose base64 body is malformed is an error naming the label.
pub(crate) fn parse_pem(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end_marker = format!("-----END {label}-----");
        let mut body = String::new();
        let mut legacy_encrypted = false;
        let mut ended = false;
        for inner in lines.by_ref() {
            let inner = inner.trim();
            if inner == end_marker {
                ended = true;
                break;
            }
            if let Some((name, value)) = inner.split_once(':') {
                // RFC 1421 headers such as `Proc-Type: 4,ENCRYPTED` and `DEK-Info: ...`.
                if name.eq_ignore_ascii_case("Proc-Type") && value.contains("ENCRYPTED") {
                    legacy_encrypted = true;
                }
                continue;
            }
            body.push_str(inner);
        }
        if !ended {
            return Err(format!(
                "PEM block `{label}` has no matching `{end_marker}` line"
            ));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block `{label}` is not valid base64: {e}"))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            legacy_encrypted,
            der,
        });
    }
    Ok(blocks)
}

/// Encodes DER bytes as a PEM block with 64-character lines.
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// A DER tag-length-value element borrowed from its input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
}

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
/// `[0]` constructed, context-specific: the curve parameters in a SEC1 `ECPrivateKey`.
pub(crate) const TAG_CONTEXT_0: u8 = 0xa0;

/// A forward-only reader over a sequence of DER elements.
pub(crate) struct DerReader<'a> {
    input: &'a [u8],
}

impl<'a> DerReader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Reads the next element of any tag.
    pub(crate) fn next_tlv(&mut self) -> Result<Tlv<'a>, String> {
        let (&tag, rest) = self
            .input
            .split_first()
            .ok_or_else(|| "unexpected end of DER data".to_owned())?;
        let (&first_len, mut rest) = rest
            .split_first()
            .ok_or_else(|| "DER element has no length".to_owned())?;
        let len = if first_len < 0x80 {
            usize::from(first_len)
        } else {
            let count = usize::from(first_len & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err("DER length is malformed".to_owned());
            }
            let mut len = 0usize;
            for &b in &rest[..count] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[count..];
            len
        };
        if rest.len() < len {
            return Err("DER element is longer than its input".to_owned());
        }
        let (value, remaining) = rest.split_at(len);
        self.input = remaining;
        Ok(Tlv { tag, value })
    }

    /// Reads the next element and checks its tag.
    pub(crate) fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let tlv = self.next_tlv()?;
        if tlv.tag != tag {
            return Err(format!(
                "expected {what} (DER tag 0x{tag:02x}), found tag 0x{:02x}",
                tlv.tag
            ));
        }
        Ok(tlv.value)
    }
}

/// The object identifiers this crate needs to recognise, in DER content encoding.
pub(crate) mod oid {
    /// rsaEncryption, 1.2.840.113549.1.1.1
    pub(crate) const RSA_ENCRYPTION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// RSASSA-PSS, 1.2.840.113549.1.1.10
    pub(crate) const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    /// id-ecPublicKey, 1.2.840.10045.2.1
    pub(crate) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// secp384r1 (P-384), 1.3.132.0.34
    pub(crate) const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// prime256v1 (P-256), 1.2.840.10045.3.1.7
    pub(crate) const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// secp521r1 (P-521), 1.3.132.0.35
    pub(crate) const SECP521R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    /// secp256k1, 1.3.132.0.10
    pub(crate) const SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
    /// Ed25519, 1.3.101.112
    pub(crate) const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// Ed448, 1.3.101.113
    pub(crate) const ED448: &[u8] = &[0x2b, 0x65, 0x71];
}

/// A human-readable name for a curve OID.
pub(crate) fn curve_name(curve: &[u8]) -> String {
    match curve {
        oid::SECP384R1 => "P-384 (secp384r1)".to_owned(),
        oid::PRIME256V1 => "P-256 (prime256v1)".to_owned(),
        oid::SECP521R1 => "P-521 (secp521r1)".to_owned(),
        oid::SECP256K1 => "secp256k1".to_owned(),
        other => format!("an unknown curve (OID {})", oid_to_string(other)),
    }
}

/// Renders an OID's content bytes in dotted-decimal notation.
pub(crate) fn oid_to_string(bytes: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in bytes {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            // The first sub-identifier packs the first two arcs.
            if parts.is_empty() {
                let first = if acc < 80 { acc / 40 } else { 2 };
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The size in bits of a big-endian unsigned DER INTEGER (leading zero bytes ignored).
pub(crate) fn integer_bits(value: &[u8]) -> usize {
    let trimmed: &[u8] = {
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        &value[start..]
    };
    match trimmed.first() {
        None => 0,
        Some(&top) => trimmed.len() * 8 - top.leading_zeros() as usize,
    }
}

/// Strips the sign byte DER puts in front of an INTEGER whose top bit is set.
pub(crate) fn unsigned_integer(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(value.len().saturating_sub(1));
    &value[start..]
}

/// What the outer structure of a private key says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyShape {
    /// An RSA key with this modulus size.
    Rsa { bits: usize },
    /// An EC key on this curve (OID content bytes), if the encoding names it.
    Ec { curve: Option<Vec<u8>> },
    /// Another algorithm, by OID.
    Other { algorithm: Vec<u8> },
}

/// Inspects a PKCS#8 `PrivateKeyInfo`.
pub(crate) fn inspect_pkcs8(der: &[u8]) -> Result<KeyShape, String> {
    let mut outer = DerReader::new(der);
    let info = outer.expect(TAG_SEQUENCE, "PrivateKeyInfo")?;
    let mut info = DerReader::new(info);
    info.expect(TAG_INTEGER, "PrivateKeyInfo version")?;
    let alg_id = info.expect(TAG_SEQUENCE, "AlgorithmIdentifier")?;
    let mut alg_id = DerReader::new(alg_id);
    let algorithm = alg_id.expect(TAG_OID, "algorithm OID")?;
    match algorithm {
        oid::RSA_ENCRYPTION => {
            let private = info.expect(TAG_OCTET_STRING, "privateKey")?;
            inspect_pkcs1(private)
        }
        oid::EC_PUBLIC_KEY => {
            let params_curve = if alg_id.is_empty() {
                None
            } else {
                let tlv = alg_id.next_tlv()?;
                (tlv.tag == TAG_OID).then(|| tlv.value.to_vec())
            };
            let curve = match params_curve {
                Some(c) => Some(c),
                None => {
                    let private = info.expect(TAG_OCTET_STRING, "privateKey")?;
                    match inspect_sec1(private)? {
                        KeyShape::Ec { curve } => curve,
                        other => return Ok(other),
                    }
                }
            };
            Ok(KeyShape::Ec { curve })
        }
        other => Ok(KeyShape::Other {
            algorithm: other.to_vec(),
        }),
    }
}

/// Inspects a PKCS#1 `RSAPrivateKey` (or `RSAPublicKey`: both start with the modulus after at
/// most one INTEGER).
pub(crate) fn inspect_pkcs1(der: &[u8]) -> Result<KeyShape, String> {
    let mut outer = DerReader::new(der);
    let seq = outer.expect(TAG_SEQUENCE, "RSAPrivateKey")?;
    let mut seq = DerReader::new(seq);
    seq.expect(TAG_INTEGER, "RSAPrivateKey version")?;
    let modulus = seq.expect(TAG_INTEGER, "RSA modulus")?;
    Ok(KeyShape::Rsa {
        bits: integer_bits(modulus),
    })
}

/// Inspects a SEC1 `ECPrivateKey`, taking the curve from its `[0]` parameters when present, or
/// inferring it from the private scalar's length otherwise.
pub(crate) fn inspect_sec1(der: &[u8]) -> Result<KeyShape, String> {
    let mut outer = DerReader::new(der);
    let seq = outer.expect(TAG_SEQUENCE, "ECPrivateKey")?;
    let mut seq = DerReader::new(seq);
    seq.expect(TAG_INTEGER, "ECPrivateKey version")?;
    let scalar = seq.expect(TAG_OCTET_STRING, "EC private key")?;
    while !seq.is_empty() {
        let tlv = seq.next_tlv()?;
        if tlv.tag == TAG_CONTEXT_0 {
            let mut params = DerReader::new(tlv.value);
            let curve = params.expect(TAG_OID, "named curve")?;
            return Ok(KeyShape::Ec {
                curve: Some(curve.to_vec()),
            });
        }
    }
    let inferred: Option<&[u8]> = match scalar.len() {
        32 => Some(oid::PRIME256V1),
        48 => Some(oid::SECP384R1),
        66 => Some(oid::SECP521R1),
        _ => None,
    };
    Ok(KeyShape::Ec {
        curve: inferred.map(<[u8]>::to_vec),
    })
}

/// Reads the modulus and exponent of a PKCS#1 `RSAPublicKey`.
pub(crate) fn rsa_public_components(der: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let mut outer = DerReader::new(der);
    let seq = outer.expect(TAG_SEQUENCE, "RSAPublicKey")?;
    let mut seq = DerReader::new(seq);
    let n = seq.expect(TAG_INTEGER, "RSA modulus")?;
    let e = seq.expect(TAG_INTEGER, "RSA exponent")?;
    Ok((unsigned_integer(n), unsigned_integer(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_rendering() {
        assert_eq!(oid_to_string(oid::RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(oid_to_string(oid::SECP384R1), "1.3.132.0.34");
        assert_eq!(oid_to_string(oid::ED25519), "1.3.101.112");
    }

    #[test]
    fn integer_bit_lengths() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(integer_bits(&[0x01, 0x00]), 9);
        assert_eq!(integer_bits(&[0x00]), 0);
        assert_eq!(unsigned_integer(&[0x00, 0x80]), &[0x80]);
        assert_eq!(unsigned_integer(&[0x00]), &[0x00]);
    }

    #[test]
    fn truncated_der_is_an_error_not_a_panic() {
        for input in [
            &[][..],
            &[0x30],
            &[0x30, 0x85],
            &[0x30, 0x05, 0x02],
            &[0x30, 0x82, 0xff],
        ] {
            let mut reader = DerReader::new(input);
            assert!(reader.next_tlv().is_err(), "{input:?}");
        }
    }

    #[test]
    fn pem_blocks_and_legacy_encryption_header() {
        let text = "junk\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAEC\n-----END RSA PRIVATE KEY-----\n";
        let blocks = parse_pem(text).expect("parses");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "RSA PRIVATE KEY");
        assert!(blocks[0].legacy_encrypted);
        assert_eq!(blocks[0].der, vec![0, 1, 2]);
        assert!(parse_pem("-----BEGIN X-----\nAAEC\n").is_err());
        assert!(parse_pem("-----BEGIN X-----\n!!!\n-----END X-----").is_err());
    }

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = to_pem("PUBLIC KEY", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let blocks = parse_pem(&pem).expect("parses");
        assert_eq!(blocks[0].der, der);
    }

    proptest::proptest! {
        #[test]
        fn der_reader_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = inspect_pkcs8(&bytes);
            let _ = inspect_pkcs1(&bytes);
            let _ = inspect_sec1(&bytes);
            let _ = rsa_public_components(&bytes);
        }
    }
}
