//! Helpers for the sandbox conformance tests: test keys, assertions built with an independent
//! JWT library (`jsonwebtoken`), and a small HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use epic_fhir_sandbox::auth::{ClientConfig, ClientKeys, KeyKind, parse_pem_public};
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../epic-fhir/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A test key: its private PEM, public JWK and algorithm.
#[derive(Clone)]
pub struct TestKey {
    pub private_pem: String,
    pub public_pem: String,
    pub kid: String,
    pub alg: jsonwebtoken::Algorithm,
}

impl TestKey {
    pub fn rsa2048(kid: &str) -> Self {
        TestKey {
            private_pem: fixture("rsa2048_pkcs8.pem"),
            public_pem: fixture("rsa2048_public.pem"),
            kid: kid.to_owned(),
            alg: jsonwebtoken::Algorithm::RS384,
        }
    }

    pub fn rsa3072(kid: &str) -> Self {
        TestKey {
            private_pem: fixture("rsa3072_pkcs8.pem"),
            public_pem: fixture("rsa3072_public.pem"),
            kid: kid.to_owned(),
            alg: jsonwebtoken::Algorithm::RS384,
        }
    }

    pub fn ec384(kid: &str) -> Self {
        TestKey {
            private_pem: fixture("ec384_pkcs8.pem"),
            public_pem: fixture("ec384_public.pem"),
            kid: kid.to_owned(),
            alg: jsonwebtoken::Algorithm::ES384,
        }
    }

    pub fn public_jwk(&self) -> Value {
        let key = parse_pem_public(&self.public_pem).expect("public key");
        match key.kind {
            KeyKind::Rsa { n, e } => {
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS384", "n": b64url(&n), "e": b64url(&e)})
            }
            KeyKind::EcP384 { point } => json!({
                "kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES384", "crv": "P-384",
                "x": b64url(&point[1..49]), "y": b64url(&point[49..97])
            }),
        }
    }

    pub fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        match self.alg {
            jsonwebtoken::Algorithm::ES384 => {
                jsonwebtoken::EncodingKey::from_ec_pem(self.private_pem.as_bytes())
            }
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(self.private_pem.as_bytes()),
        }
        .expect("encoding key")
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn fresh_jti() -> String {
    format!(
        "jti-{}-{}",
        now(),
        JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Standard claims for `client` addressed to `aud`.
pub fn claims(client: &str, aud: &str) -> Value {
    let now = now();
    json!({"iss": client, "sub": client, "aud": aud, "jti": fresh_jti(), "iat": now, "exp": now + 240})
}

/// Signs `claims` with `key`, with a header of `alg`/`typ`/`kid` (kid omitted when `None`).
pub fn sign(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).expect("signs")
}

/// Builds a JWT from raw header and claims JSON, signed by `key` with `alg` (RS*/ES384).
pub fn sign_raw(key: &TestKey, header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding_key(), key.alg)
        .expect("signs");
    format!("{message}.{signature}")
}

/// Starts a sandbox with only the named patients and the given clients.
pub async fn sandbox_with(
    clients: Vec<ClientConfig>,
    tweak: impl FnOnce(&mut SandboxConfig),
) -> Sandbox {
    let mut config = SandboxConfig::default();
    config.patients = 7;
    config.clients = clients;
    tweak(&mut config);
    Sandbox::start(config).await.expect("sandbox starts")
}

pub fn client(id: &str, keys: &[&TestKey]) -> ClientConfig {
    ClientConfig::with_jwks(id, &jwks(keys)).expect("client")
}

pub fn static_client(id: &str, keys: ClientKeys) -> ClientConfig {
    ClientConfig::new(id, keys)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// POSTs a token request form and returns (status, JSON body, headers).
pub async fn token_request(
    sandbox: &Sandbox,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = http()
        .post(sandbox.token_url().clone())
        .form(form)
        .send()
        .await
        .expect("token endpoint reachable");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// A token request carrying `assertion`.
pub async fn exchange(sandbox: &Sandbox, assertion: &str) -> (u16, Value) {
    let (status, body, _) = token_request(
        sandbox,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ],
    )
    .await;
    (status, body)
}

/// Asserts an `invalid_client` refusal whose description contains `needle`.
pub fn assert_invalid_client(result: (u16, Value), needle: &str) {
    let (status, body) = result;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(needle),
        "description {description:?} lacks {needle:?}"
    );
}

/// Gets a valid token for `client` signed by `key`.
pub async fn token_for(
    sandbox: &Sandbox,
    client: &str,
    key: &TestKey,
    scope: Option<&str>,
) -> String {
    let assertion = sign(
        key,
        Some(&key.kid),
        &claims(client, sandbox.token_url().as_str()),
    );
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let (status, body, _) = token_request(sandbox, &form).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

/// GETs `path` (relative to the FHIR base) with a bearer token.
pub async fn get(sandbox: &Sandbox, token: Option<&str>, path: &str) -> reqwest::Response {
    let url = format!("{}/{}", sandbox.base_url(), path.trim_start_matches('/'));
    let mut request = http().get(url).header("Accept", "application/fhir+json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("reachable")
}

/// GETs and parses JSON, asserting the status.
pub async fn get_json(sandbox: &Sandbox, token: &str, path: &str, status: u16) -> Value {
    let response = get(sandbox, Some(token), path).await;
    let actual = response.status().as_u16();
    let body: Value = response.json().await.expect("json body");
    assert_eq!(actual, status, "{path}: {body}");
    body
}
