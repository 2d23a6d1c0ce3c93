//! The sandbox's client assertion verifier, through its token endpoint (the only way in): bytes
//! in, a token or an OAuth refusal out, never a panic and never a 5xx.
//!
//! The first byte picks how the rest becomes a `client_assertion`:
//! - 0: verbatim (lossy UTF-8);
//! - 1: header, claims and signature separated by 0xFF, each base64url-encoded, joined by `.`;
//! - 2: the claims, under a valid header and signed with the registered ES384 key, so that the
//!   claim checks (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`) see what the fuzzer makes;
//! - 3: as 2 with the registered RS384 key, the claims merged into valid ones (each member of
//!   the fuzzed object replacing the valid one), so that single-claim changes are explored.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use epic_fhir::auth::SigningKey;
use epic_fhir_sandbox::auth::ClientConfig;
use epic_fhir_sandbox::{Sandbox, SandboxConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const CLIENT_ID: &str = "fuzz-client";

struct World {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    token_url: String,
    ec: SigningKey,
    rsa: SigningKey,
    _sandbox: Sandbox,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let ec = SigningKey::generate_ec_p384()
            .expect("key")
            .with_kid("ec-1");
        let rsa = SigningKey::generate_rsa(epic_fhir::auth::RsaBits::B2048)
            .expect("key")
            .with_kid("rsa-1");
        let mut keys = serde_json::to_value(ec.jwk_set()).expect("jwks");
        let rsa_keys = serde_json::to_value(rsa.jwk_set()).expect("jwks");
        keys["keys"]
            .as_array_mut()
            .expect("keys")
            .extend(rsa_keys["keys"].as_array().expect("keys").iter().cloned());
        let mut config = SandboxConfig::default();
        config.patients = 0;
        config
            .clients
            .push(ClientConfig::with_jwks(CLIENT_ID, &keys).expect("client"));
        let sandbox = runtime.block_on(Sandbox::start(config)).expect("sandbox");
        World {
            http: reqwest::Client::new(),
            token_url: sandbox.token_url().to_string(),
            runtime,
            ec,
            rsa,
            _sandbox: sandbox,
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn signed(key: &SigningKey, claims: &[u8]) -> String {
    let header = json!({"alg": key.algorithm().as_str(), "typ": "JWT", "kid": key.kid()});
    let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims));
    let signature = key.sign(message.as_bytes()).expect("signs");
    format!("{message}.{}", b64(&signature))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let world = world();
    let assertion = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let mut parts = rest.splitn(3, |&b| b == 0xFF);
            let header = parts.next().unwrap_or_default();
            let claims = parts.next().unwrap_or_default();
            let signature = parts.next().unwrap_or_default();
            format!("{}.{}.{}", b64(header), b64(claims), b64(signature))
        }
        2 => signed(&world.ec, rest),
        _ => {
            let mut claims = json!({
                "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": world.token_url,
                "jti": format!("fuzz-{}", rest.len()), "exp": now() + 200, "iat": now(),
            });
            if let Ok(Value::Object(fuzzed)) = serde_json::from_slice::<Value>(rest) {
                for (name, value) in fuzzed {
                    claims[name] = value;
                }
            }
            signed(&world.rsa, claims.to_string().as_bytes())
        }
    };
    let form = [
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    let status = world.runtime.block_on(async {
        world
            .http
            .post(&world.token_url)
            .form(&form)
            .send()
            .await
            .expect("the sandbox answers")
            .status()
    });
    assert!(
        status.is_success() || status.is_client_error(),
        "HTTP {status} for {assertion:?}"
    );
});
