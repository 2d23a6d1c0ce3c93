//! Key loading: every accepted format, every rejection with its message, JWK export.

use epic_fhir::auth::{Algorithm, KeyError, RsaBits, SigningKey};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(name: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pem(&fixture(name))
}

#[test]
fn rsa_keys_in_pkcs1_and_pkcs8_sign_rs384() {
    for (name, bits) in [
        ("rsa2048_pkcs1.pem", 2048),
        ("rsa2048_pkcs8.pem", 2048),
        ("rsa3072_pkcs8.pem", 3072),
        ("rsa4096_pkcs8.pem", 4096),
    ] {
        let key = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.algorithm(), Algorithm::RS384, "{name}");
        assert_eq!(key.rsa_bits(), Some(bits), "{name}");
    }
    // The same key in two encodings has the same thumbprint.
    assert_eq!(
        load("rsa2048_pkcs1.pem").expect("pkcs1").thumbprint(),
        load("rsa2048_pkcs8.pem").expect("pkcs8").thumbprint()
    );
}

#[test]
fn p384_keys_in_pkcs8_and_sec1_sign_es384() {
    let sec1 = load("ec384_sec1.pem").expect("sec1");
    let pkcs8 = load("ec384_pkcs8.pem").expect("pkcs8");
    assert_eq!(sec1.algorithm(), Algorithm::ES384);
    assert_eq!(pkcs8.algorithm(), Algorithm::ES384);
    assert_eq!(sec1.thumbprint(), pkcs8.thumbprint());
    assert_eq!(sec1.rsa_bits(), None);
}

fn message(result: Result<SigningKey, KeyError>) -> (KeyError, String) {
    let err = result.expect_err("must be rejected");
    let text = err.to_string();
    (err, text)
}

#[test]
fn small_rsa_key_is_refused_with_its_size() {
    let (err, text) = message(load("rsa1024_pkcs1.pem"));
    assert_eq!(err, KeyError::RsaTooSmall { bits: 1024 });
    assert!(
        text.contains("1024 bits") && text.contains("2048"),
        "{text}"
    );
}

#[test]
fn large_rsa_key_is_refused() {
    let (err, _) = message(load("rsa5120_pkcs8.pem"));
    assert_eq!(err, KeyError::RsaTooLarge { bits: 5120 });
}

#[test]
fn p256_key_is_refused_naming_the_curve() {
    for name in ["ec256_sec1.pem", "ec256_pkcs8.pem"] {
        let (err, text) = message(load(name));
        assert!(
            matches!(err, KeyError::UnsupportedCurve { .. }),
            "{name}: {err:?}"
        );
        assert!(text.contains("P-256") && text.contains("P-384"), "{text}");
    }
}

#[test]
fn encrypted_keys_are_refused_with_how_to_decrypt() {
    for name in [
        "rsa2048_encrypted_pkcs8.pem",
        "rsa2048_encrypted_legacy.pem",
    ] {
        let (err, text) = message(load(name));
        assert_eq!(err, KeyError::Encrypted, "{name}");
        assert!(text.contains("openssl"), "{text}");
    }
}

#[test]
fn public_keys_and_certificates_are_not_private_keys() {
    let (err, text) = message(load("rsa2048_public.pem"));
    assert_eq!(
        err,
        KeyError::NotAPrivateKey {
            found: "public key".into()
        }
    );
    assert!(text.contains("register"), "{text}");
    let (err, _) = message(load("rsa2048_cert.pem"));
    assert_eq!(
        err,
        KeyError::NotAPrivateKey {
            found: "certificate".into()
        }
    );
}

#[test]
fn a_certificate_followed_by_its_key_loads_the_key() {
    let bundle = fixture("rsa2048_cert.pem") + &fixture("rsa2048_pkcs1.pem");
    assert!(SigningKey::from_pem(&bundle).is_ok());
}

#[test]
fn other_algorithms_and_garbage() {
    let (err, text) = message(load("ed25519_pkcs8.pem"));
    assert!(
        matches!(err, KeyError::UnsupportedAlgorithm { .. }),
        "{err:?}"
    );
    assert!(text.contains("Ed25519"), "{text}");
    assert_eq!(message(SigningKey::from_pem("hello")).0, KeyError::NotPem);
    assert_eq!(message(SigningKey::from_pem("")).0, KeyError::NotPem);
    let (err, _) = message(SigningKey::from_pem(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ));
    assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
    let (err, _) = message(SigningKey::from_pem(
        "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n",
    ));
    assert!(matches!(err, KeyError::MalformedPem(_)), "{err:?}");
    let missing = SigningKey::from_pem_file("/nonexistent/key.pem").expect_err("missing file");
    assert!(
        missing.to_string().contains("/nonexistent/key.pem"),
        "{missing}"
    );
}

#[test]
fn kid_defaults_to_rfc7638_thumbprint_and_can_be_configured() {
    let key = load("rsa2048_pkcs8.pem").expect("key");
    // Recompute the RFC 7638 thumbprint independently from the JWK members.
    let jwk = key.public_jwk();
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        jwk.e.as_deref().expect("e"),
        jwk.n.as_deref().expect("n")
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    assert_eq!(key.kid(), expected);
    assert_eq!(key.thumbprint(), expected);
    let key = key.with_kid("my-key-2026");
    assert_eq!(key.kid(), "my-key-2026");
    assert_eq!(key.public_jwk().kid, "my-key-2026");
    assert_eq!(key.with_kid("").kid(), expected);
}

#[test]
fn jwk_set_has_public_members_only() {
    for key in [
        load("rsa2048_pkcs8.pem").expect("rsa"),
        load("ec384_pkcs8.pem").expect("ec"),
    ] {
        let set = serde_json::to_value(key.jwk_set()).expect("serializes");
        let jwk = &set["keys"][0];
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], key.algorithm().as_str());
        assert_eq!(jwk["kid"], key.kid());
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(
                jwk.get(private).is_none(),
                "private member {private} leaked"
            );
        }
    }
    let ec = serde_json::to_value(load("ec384_sec1.pem").expect("ec").public_jwk()).expect("json");
    assert_eq!(ec["kty"], "EC");
    assert_eq!(ec["crv"], "P-384");
}

#[test]
fn generated_keys_round_trip_through_pem() {
    for key in [
        SigningKey::generate_rsa(RsaBits::B2048).expect("rsa"),
        SigningKey::generate_ec_p384().expect("ec"),
    ] {
        let pem = key.to_pkcs8_pem().expect("pem");
        let again = SigningKey::from_pem(pem.expose_secret()).expect("reloads");
        assert_eq!(again.thumbprint(), key.thumbprint());
        let public = key.public_key_pem().expect("public pem");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        // The public PEM is recognised as such, not as a private key.
        assert!(matches!(
            SigningKey::from_pem(&public),
            Err(KeyError::NotAPrivateKey { .. })
        ));
    }
}

#[test]
fn debug_and_display_never_show_key_material() {
    let pem = fixture("rsa2048_pkcs8.pem");
    let key = SigningKey::from_pem(&pem).expect("key");
    let body_line = pem.lines().nth(1).expect("body line");
    for text in [
        format!("{key:?}"),
        format!("{key}"),
        format!("{:?}", key.to_pkcs8_pem().expect("pem")),
    ] {
        assert!(text.contains("[redacted]"), "{text}");
        assert!(!text.contains(body_line), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
    }
}
