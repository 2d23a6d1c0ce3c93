//! Conformance of the token endpoint: one test per SMART Backend Services / Epic rule, with the
//! bad assertions built here by an independent JWT library.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use epic_fhir_sandbox::ScopeGrant;
use epic_fhir_sandbox::auth::{ClientConfig, ClientKeys, ScopeSet, load_key_file};
use serde_json::{Value, json};
use support::*;

const CLIENT: &str = "conformance-client";

async fn rsa_sandbox() -> (epic_fhir_sandbox::Sandbox, TestKey) {
    let key = TestKey::rsa2048("rsa-1");
    let sandbox = sandbox_with(vec![client(CLIENT, &[&key])], |_| {}).await;
    (sandbox, key)
}

fn aud(sandbox: &epic_fhir_sandbox::Sandbox) -> String {
    sandbox.token_url().to_string()
}

#[tokio::test]
async fn valid_rs384_and_es384_assertions_get_tokens() {
    let rsa = TestKey::rsa2048("rsa-1");
    let ec = TestKey::ec384("ec-1");
    let sandbox = sandbox_with(vec![client(CLIENT, &[&rsa, &ec])], |_| {}).await;
    for key in [&rsa, &ec] {
        let assertion = sign(key, Some(&key.kid), &claims(CLIENT, &aud(&sandbox)));
        let (status, body, headers) = token_request(
            &sandbox,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
                ("scope", "system/Patient.read"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        // As on Epic, the registration is granted whatever the request asked for.
        assert_eq!(body["scope"], "system/*.read");
        let token = body["access_token"].as_str().expect("token");
        assert_eq!(token.len(), 43, "256-bit opaque token");
        assert_eq!(headers["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn rs256_and_rs512_are_accepted_as_epic_does() {
    let (sandbox, key) = rsa_sandbox().await;
    for alg in [
        jsonwebtoken::Algorithm::RS256,
        jsonwebtoken::Algorithm::RS512,
    ] {
        let key = TestKey { alg, ..key.clone() };
        let (status, body) = exchange(
            &sandbox,
            &sign(&key, Some("rsa-1"), &claims(CLIENT, &aud(&sandbox))),
        )
        .await;
        assert_eq!(status, 200, "{alg:?}: {body}");
    }
}

#[tokio::test]
async fn request_shape_rules() {
    let (sandbox, key) = rsa_sandbox().await;
    let assertion = sign(&key, Some("rsa-1"), &claims(CLIENT, &aud(&sandbox)));
    // GET is refused.
    let response = http()
        .get(sandbox.token_url().clone())
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"],
        "invalid_request"
    );
    // Parameters in the query string are refused.
    let url = format!("{}?grant_type=client_credentials", sandbox.token_url());
    let response = http()
        .post(url)
        .form(&[("client_assertion", assertion.as_str())])
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("query string")
    );
    // A JSON body is refused.
    let response = http()
        .post(sandbox.token_url().clone())
        .json(&json!({"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER, "client_assertion": assertion}))
        .send()
        .await
        .expect("reachable");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("x-www-form-urlencoded")
    );
    // A repeated parameter is refused.
    let (_, body, headers) = token_request(
        &sandbox,
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        headers["cache-control"], "no-store",
        "errors are not cached either"
    );
}

#[tokio::test]
async fn grant_type_rules() {
    let (sandbox, key) = rsa_sandbox().await;
    let assertion = sign(&key, Some("rsa-1"), &claims(CLIENT, &aud(&sandbox)));
    let (status, body, _) = token_request(
        &sandbox,
        &[
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body, _) = token_request(
        &sandbox,
        &[
            ("grant_type", "password"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    // The SMART App Launch grants exist, but a Backend Services client is not an app: its
    // assertion authenticates no one there.
    let assertion = sign(&key, Some("rsa-1"), &claims(CLIENT, &aud(&sandbox)));
    let (status, body, _) = token_request(
        &sandbox,
        &[
            ("grant_type", "authorization_code"),
            ("code", "c"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
}

#[tokio::test]
async fn assertion_type_must_be_jwt_bearer() {
    let (sandbox, key) = rsa_sandbox().await;
    let assertion = sign(&key, Some("rsa-1"), &claims(CLIENT, &aud(&sandbox)));
    let (status, body, _) = token_request(
        &sandbox,
        &[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_invalid_client((status, body), "client_assertion_type");
    let (_, body, _) = token_request(
        &sandbox,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn malformed_jwts_are_refused() {
    let (sandbox, _) = rsa_sandbox().await;
    assert_invalid_client(exchange(&sandbox, "abc.def").await, "three");
    assert_invalid_client(exchange(&sandbox, "a..c").await, "three");
    assert_invalid_client(
        exchange(&sandbox, "!!!.e30.sig").await,
        "header is not base64url",
    );
    assert_invalid_client(
        exchange(&sandbox, &format!("{}.e30.c2ln", b64url(b"[1,2]"))).await,
        "header is not a JSON object",
    );
}

#[tokio::test]
async fn alg_none_and_hmac_are_never_accepted() {
    let (sandbox, key) = rsa_sandbox().await;
    let body = b64url(claims(CLIENT, &aud(&sandbox)).to_string().as_bytes());
    let unsigned = format!("{}.{body}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
    assert_invalid_client(exchange(&sandbox, &unsigned).await, "three");
    let unsigned = format!(
        "{}.{body}.c2ln",
        b64url(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#)
    );
    assert_invalid_client(exchange(&sandbox, &unsigned).await, "none");
    // Algorithm confusion: HS256 keyed with the registered RSA public key must fail.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(CLIENT, &aud(&sandbox)),
        &jsonwebtoken::EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .expect("signs");
    assert_invalid_client(exchange(&sandbox, &forged).await, "HS256");
    let odd = sign_raw(
        &key,
        &json!({"alg": "PS384", "kid": "rsa-1"}),
        &claims(CLIENT, &aud(&sandbox)),
    );
    assert_invalid_client(exchange(&sandbox, &odd).await, "PS384");
}

#[tokio::test]
async fn the_registered_key_type_decides_the_algorithm() {
    let ec = TestKey::ec384("ec-1");
    let sandbox = sandbox_with(vec![client(CLIENT, &[&ec])], |_| {}).await;
    // An RSA-signed assertion naming the EC key's kid.
    let rsa = TestKey::rsa2048("ec-1");
    assert_invalid_client(
        exchange(
            &sandbox,
            &sign(&rsa, Some("ec-1"), &claims(CLIENT, &aud(&sandbox))),
        )
        .await,
        "does not match the registered EC key",
    );
}

#[tokio::test]
async fn typ_must_be_jwt_when_present() {
    let (sandbox, key) = rsa_sandbox().await;
    let bad = sign_raw(
        &key,
        &json!({"alg": "RS384", "kid": "rsa-1", "typ": "JWE"}),
        &claims(CLIENT, &aud(&sandbox)),
    );
    assert_invalid_client(exchange(&sandbox, &bad).await, "typ");
    let absent = sign_raw(
        &key,
        &json!({"alg": "RS384", "kid": "rsa-1"}),
        &claims(CLIENT, &aud(&sandbox)),
    );
    assert_eq!(exchange(&sandbox, &absent).await.0, 200);
}

#[tokio::test]
async fn kid_rules() {
    let a = TestKey::rsa2048("key-a");
    let b = TestKey::rsa3072("key-b");
    let sandbox = sandbox_with(
        vec![client(CLIENT, &[&a, &b]), client("single", &[&a])],
        |_| {},
    )
    .await;
    let c = claims(CLIENT, &aud(&sandbox));
    assert_invalid_client(
        exchange(&sandbox, &sign(&a, Some("key-z"), &c)).await,
        "no registered key has kid key-z",
    );
    assert_invalid_client(
        exchange(&sandbox, &sign(&a, None, &claims(CLIENT, &aud(&sandbox)))).await,
        "kid header is missing and the client has 2 keys",
    );
    // One key: kid may be omitted.
    assert_eq!(
        exchange(&sandbox, &sign(&a, None, &claims("single", &aud(&sandbox))))
            .await
            .0,
        200
    );
    // Several keys sharing a kid.
    let twins = ClientConfig::with_jwks(
        "twins",
        &json!({"keys": [a.public_jwk(), TestKey::rsa3072("key-a").public_jwk()]}),
    )
    .expect("client");
    sandbox.register_client(twins);
    assert_invalid_client(
        exchange(
            &sandbox,
            &sign(&a, Some("key-a"), &claims("twins", &aud(&sandbox))),
        )
        .await,
        "several registered keys have kid key-a",
    );
}

#[tokio::test]
async fn signature_must_verify_with_the_named_key() {
    let a = TestKey::rsa2048("key-a");
    let b = TestKey::rsa3072("key-b");
    let sandbox = sandbox_with(vec![client(CLIENT, &[&a, &b])], |_| {}).await;
    // Signed with key B but naming key A.
    assert_invalid_client(
        exchange(
            &sandbox,
            &sign(&b, Some("key-a"), &claims(CLIENT, &aud(&sandbox))),
        )
        .await,
        "signature does not verify",
    );
    // A tampered payload.
    let good = sign(&a, Some("key-a"), &claims(CLIENT, &aud(&sandbox)));
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered_claims = claims(CLIENT, &aud(&sandbox));
    tampered_claims["exp"] = json!(now() + 200);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(tampered_claims.to_string().as_bytes()),
        parts[2]
    );
    assert_invalid_client(exchange(&sandbox, &tampered).await, "signature");
}

#[tokio::test]
async fn issuer_and_subject_rules() {
    let (sandbox, key) = rsa_sandbox().await;
    let mut c = claims(CLIENT, &aud(&sandbox));
    c["sub"] = json!("someone-else");
    assert_invalid_client(
        exchange(&sandbox, &sign(&key, Some("rsa-1"), &c)).await,
        "iss (conformance-client) and sub (someone-else)",
    );
    assert_invalid_client(
        exchange(
            &sandbox,
            &sign(&key, Some("rsa-1"), &claims("unregistered", &aud(&sandbox))),
        )
        .await,
        "not a registered client",
    );
    let mut c = claims(CLIENT, &aud(&sandbox));
    c.as_object_mut().expect("object").remove("iss");
    assert_invalid_client(
        exchange(&sandbox, &sign(&key, Some("rsa-1"), &c)).await,
        "iss claim is missing",
    );
}

#[tokio::test]
async fn audience_must_be_the_token_url() {
    let (sandbox, key) = rsa_sandbox().await;
    let wrong = claims(
        CLIENT,
        "https://fhir.epic.com/interconnect-fhir-oauth/oauth2/token",
    );
    assert_invalid_client(
        exchange(&sandbox, &sign(&key, Some("rsa-1"), &wrong)).await,
        "is not this token endpoint's URL",
    );
    let mut list = claims(CLIENT, "x");
    list["aud"] = json!([aud(&sandbox)]);
    assert_eq!(
        exchange(&sandbox, &sign(&key, Some("rsa-1"), &list))
            .await
            .0,
        200,
        "an aud array holding the URL is fine"
    );
    let mut missing = claims(CLIENT, "x");
    missing.as_object_mut().expect("object").remove("aud");
    assert_invalid_client(
        exchange(&sandbox, &sign(&key, Some("rsa-1"), &missing)).await,
        "aud claim is missing",
    );
}

#[tokio::test]
async fn expiry_rules_with_skew() {
    let (sandbox, key) = rsa_sandbox().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(CLIENT, &aud(&sandbox));
        f(&mut c);
        sign(&key, Some("rsa-1"), &c)
    };
    assert_invalid_client(
        exchange(
            &sandbox,
            &with(&|c| {
                c.as_object_mut().expect("o").remove("exp");
            }),
        )
        .await,
        "exp claim is missing",
    );
    assert_invalid_client(
        exchange(&sandbox, &with(&|c| c["exp"] = json!(now() - 60))).await,
        "in the past",
    );
    assert_invalid_client(
        exchange(
            &sandbox,
            &with(&|c| {
                c["exp"] = json!(now() + 400);
                c["iat"] = json!(now());
            }),
        )
        .await,
        "more than 300 s in the future",
    );
    assert_invalid_client(
        exchange(&sandbox, &with(&|c| c["exp"] = json!("soon"))).await,
        "exp claim is not a number",
    );
    // Within the 30 s skew allowance on both sides.
    assert_eq!(
        exchange(
            &sandbox,
            &with(&|c| {
                c["exp"] = json!(now() + 320);
                c["iat"] = json!(now() + 20);
            })
        )
        .await
        .0,
        200
    );
    assert_eq!(
        exchange(&sandbox, &with(&|c| c["exp"] = json!(now() - 10)))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn nbf_and_iat_rules() {
    let (sandbox, key) = rsa_sandbox().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(CLIENT, &aud(&sandbox));
        f(&mut c);
        sign(&key, Some("rsa-1"), &c)
    };
    assert_invalid_client(
        exchange(&sandbox, &with(&|c| c["nbf"] = json!(now() + 120))).await,
        "nbf",
    );
    assert_invalid_client(
        exchange(&sandbox, &with(&|c| c["iat"] = json!(now() + 120))).await,
        "iat",
    );
    assert_invalid_client(
        exchange(&sandbox, &with(&|c| c["iat"] = json!(now() - 600))).await,
        "more than 300 s before exp",
    );
    // The most negative numbers are refused like any other too-early value, without
    // overflowing the distance to exp.
    for name in ["iat", "nbf"] {
        assert_invalid_client(
            exchange(&sandbox, &with(&|c| c[name] = json!(i64::MIN))).await,
            "more than 300 s before exp",
        );
    }
    // Neither is required.
    assert_eq!(
        exchange(
            &sandbox,
            &with(&|c| {
                c.as_object_mut().expect("o").remove("iat");
            })
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn jti_rules_and_replay() {
    let (sandbox, key) = rsa_sandbox().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(CLIENT, &aud(&sandbox));
        f(&mut c);
        sign(&key, Some("rsa-1"), &c)
    };
    assert_invalid_client(
        exchange(
            &sandbox,
            &with(&|c| {
                c.as_object_mut().expect("o").remove("jti");
            }),
        )
        .await,
        "jti claim is missing",
    );
    assert_invalid_client(
        exchange(&sandbox, &with(&|c| c["jti"] = json!(12345))).await,
        "jti claim is not a string",
    );
    assert_invalid_client(
        exchange(&sandbox, &with(&|c| c["jti"] = json!("x".repeat(152)))).await,
        "at most 151",
    );
    assert_eq!(
        exchange(&sandbox, &with(&|c| c["jti"] = json!("y".repeat(151))))
            .await
            .0,
        200
    );
    let once = with(&|_| {});
    assert_eq!(exchange(&sandbox, &once).await.0, 200);
    assert_invalid_client(exchange(&sandbox, &once).await, "already used");
}

#[tokio::test]
async fn invalid_client_status_is_configurable() {
    let key = TestKey::rsa2048("rsa-1");
    let sandbox = sandbox_with(vec![client(CLIENT, &[&key])], |c| {
        c.invalid_client_status = 401
    })
    .await;
    let (status, body) = exchange(
        &sandbox,
        &sign(&key, Some("rsa-1"), &claims("nobody", &aud(&sandbox))),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn scope_rules() {
    let key = TestKey::rsa2048("rsa-1");
    let limited = client("limited", &[&key])
        .with_scopes(ScopeSet::parse("system/Patient.read system/Observation.rs").expect("scopes"));
    // SMART's grant: the requested scopes, within the registration.
    let sandbox = sandbox_with(vec![limited], |config| {
        config.scope_grant = Some(ScopeGrant::Requested);
    })
    .await;
    let request = |scope: &'static str| {
        let assertion = sign(
            &key,
            Some("rsa-1"),
            &claims("limited", sandbox.token_url().as_str()),
        );
        let sandbox = &sandbox;
        async move {
            token_request(
                sandbox,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &assertion),
                    ("scope", scope),
                ],
            )
            .await
        }
    };
    let (status, body, _) = request("system/Condition.read").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .expect("text")
            .contains("system/Condition.read")
    );
    let (status, body, _) = request("system/Patient.rs system/Observation.read").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "system/Patient.rs system/Observation.read");
    let (status, body, _) = request("patient/Patient.read").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    // Without a scope, the client's whole grant.
    let assertion = sign(
        &key,
        Some("rsa-1"),
        &claims("limited", sandbox.token_url().as_str()),
    );
    let (status, body) = exchange(&sandbox, &assertion).await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "system/Patient.read system/Observation.rs");
}

#[tokio::test]
async fn resource_requests_need_a_valid_token_with_the_right_scope() {
    let key = TestKey::rsa2048("rsa-1");
    let limited = client("limited", &[&key])
        .with_scopes(ScopeSet::parse("system/Patient.read").expect("scopes"));
    let sandbox = sandbox_with(vec![limited], |c| {
        c.token_lifetime = std::time::Duration::from_secs(1)
    })
    .await;
    let patient = "Patient/erXuFYUfucBZaryVksYEcMg3";

    let response = get(&sandbox, None, patient).await;
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(
        response.json::<Value>().await.expect("json")["resourceType"],
        "OperationOutcome"
    );

    let response = get(&sandbox, Some("not-a-token"), patient).await;
    assert_eq!(response.status().as_u16(), 401);

    let token = token_for(&sandbox, "limited", &key, None).await;
    assert_eq!(
        get(&sandbox, Some(&token), patient).await.status().as_u16(),
        200
    );
    let response = get(
        &sandbox,
        Some(&token),
        "Observation?patient=erXuFYUfucBZaryVksYEcMg3&category=vital-signs",
    )
    .await;
    assert_eq!(response.status().as_u16(), 403);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let response = get(&sandbox, Some(&token), patient).await;
    assert_eq!(response.status().as_u16(), 401, "expired token");
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .expect("header")
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn pem_public_key_and_certificate_registrations() {
    let dir = std::env::temp_dir().join(format!("sandbox-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let public = dir.join("public.pem");
    let cert = dir.join("cert.pem");
    std::fs::write(&public, fixture("ec384_public.pem")).expect("write");
    std::fs::write(&cert, fixture("rsa2048_cert.pem")).expect("write");
    let ec_client =
        ClientConfig::parse_spec(&format!("ec-app={}", public.display())).expect("pem client");
    let cert_client =
        ClientConfig::parse_spec(&format!("cert-app={}", cert.display())).expect("cert client");
    let cert_kid = load_key_file(&cert).expect("cert")[0].kid.clone();
    let ec_kid = load_key_file(&public).expect("pem")[0].kid.clone();
    let sandbox = sandbox_with(vec![ec_client, cert_client], |_| {}).await;
    // Keys registered from PEM have the RFC 7638 thumbprint as kid.
    let ec = TestKey::ec384(&ec_kid);
    assert_eq!(
        exchange(
            &sandbox,
            &sign(&ec, Some(&ec_kid), &claims("ec-app", &aud(&sandbox)))
        )
        .await
        .0,
        200
    );
    let rsa = TestKey::rsa2048(&cert_kid);
    assert_eq!(
        exchange(
            &sandbox,
            &sign(&rsa, Some(&cert_kid), &claims("cert-app", &aud(&sandbox)))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        exchange(
            &sandbox,
            &sign(&rsa, None, &claims("cert-app", &aud(&sandbox)))
        )
        .await
        .0,
        200
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A JWK Set server on loopback whose content can change, counting fetches.
async fn jwks_server(initial: Value) -> (String, Arc<std::sync::Mutex<Value>>, Arc<AtomicUsize>) {
    let doc = Arc::new(std::sync::Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (d, f) = (Arc::clone(&doc), Arc::clone(&fetches));
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (d, f) = (Arc::clone(&d), Arc::clone(&f));
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let body = d.lock().expect("lock").clone();
                (
                    [("cache-control", "public, max-age=3600")],
                    axum::Json(body),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, doc, fetches)
}

#[tokio::test]
async fn jwks_url_is_fetched_cached_and_refetched_once_on_unknown_kid() {
    let old = TestKey::rsa2048("old-key");
    let new = TestKey::ec384("new-key");
    let (url, doc, fetches) = jwks_server(jwks(&[&old])).await;
    let remote = ClientConfig::new("remote-app", ClientKeys::JwksUrl(url.parse().expect("url")));
    // No pause between refetches here; `unknown_kids_cannot_make_the_jwks_url_be_fetched_again_and_again`
    // covers the pause.
    let sandbox = sandbox_with(vec![remote], |config| {
        config.jwks_refetch_interval = Duration::ZERO;
    })
    .await;
    let token_url = aud(&sandbox);

    assert_eq!(
        exchange(
            &sandbox,
            &sign(&old, Some("old-key"), &claims("remote-app", &token_url))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        exchange(
            &sandbox,
            &sign(&old, Some("old-key"), &claims("remote-app", &token_url))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "cached per Cache-Control"
    );

    // Key rotation: the new key appears in the set; an assertion naming it causes one refetch.
    *doc.lock().expect("lock") = jwks(&[&old, &new]);
    assert_eq!(
        exchange(
            &sandbox,
            &sign(&new, Some("new-key"), &claims("remote-app", &token_url))
        )
        .await
        .0,
        200
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // A kid nobody published: one refetch, then refusal.
    assert_invalid_client(
        exchange(
            &sandbox,
            &sign(&new, Some("ghost"), &claims("remote-app", &token_url)),
        )
        .await,
        "no registered key has kid ghost",
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 3);

    // jku must equal the registered URL.
    let with_jku = sign_raw(
        &new,
        &json!({"alg": "ES384", "typ": "JWT", "kid": "new-key", "jku": url}),
        &claims("remote-app", &token_url),
    );
    assert_eq!(exchange(&sandbox, &with_jku).await.0, 200);
    let other_jku = sign_raw(
        &new,
        &json!({"alg": "ES384", "typ": "JWT", "kid": "new-key", "jku": "http://127.0.0.1:1/other.json"}),
        &claims("remote-app", &token_url),
    );
    assert_invalid_client(
        exchange(&sandbox, &other_jku).await,
        "does not match the registered JWK Set URL",
    );
}

#[tokio::test]
async fn unreachable_jwks_url_is_an_invalid_client_naming_it() {
    let key = TestKey::rsa2048("k");
    let remote = ClientConfig::new(
        "remote-app",
        ClientKeys::JwksUrl("http://127.0.0.1:1/jwks.json".parse().expect("url")),
    );
    let sandbox = sandbox_with(vec![remote], |_| {}).await;
    assert_invalid_client(
        exchange(
            &sandbox,
            &sign(&key, Some("k"), &claims("remote-app", &aud(&sandbox))),
        )
        .await,
        "unreachable",
    );
}

#[tokio::test]
async fn jwks_url_beyond_loopback_is_never_fetched() {
    let key = TestKey::rsa2048("k");
    // Built directly, not through `ClientConfig::parse_spec`, which refuses it up front.
    let remote = ClientConfig::new(
        "remote-app",
        ClientKeys::JwksUrl("https://jwks.example.org/jwks.json".parse().expect("url")),
    );
    let sandbox = sandbox_with(vec![remote], |_| {}).await;
    assert_invalid_client(
        exchange(
            &sandbox,
            &sign(&key, Some("k"), &claims("remote-app", &aud(&sandbox))),
        )
        .await,
        "is not on loopback",
    );
}

#[tokio::test]
async fn epic_grants_the_registration_whatever_is_asked() {
    let key = TestKey::rsa2048("rsa-1");
    let limited = client("limited", &[&key])
        .with_scopes(ScopeSet::parse("system/Patient.read system/Observation.rs").expect("scopes"));
    let sandbox = sandbox_with(vec![limited], |_| {}).await;
    // What an Epic-aware bulk tool asks for: types beyond the registration, none for Group.
    for scope in [
        "system/Patient.read system/Condition.read system/DocumentReference.read",
        "system/Binary.read",
        "not even a scope",
    ] {
        let assertion = sign(&key, Some("rsa-1"), &claims("limited", &aud(&sandbox)));
        let (status, body, _) = token_request(
            &sandbox,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", &assertion),
                ("scope", scope),
            ],
        )
        .await;
        assert_eq!(status, 200, "{scope}: {body}");
        assert_eq!(
            body["scope"], "system/Patient.read system/Observation.rs",
            "{scope}"
        );
        // The token carries the registration: Condition is not readable with it.
        let token = body["access_token"].as_str().expect("token");
        let response = get(&sandbox, Some(token), "Condition?patient=x").await;
        assert_eq!(response.status().as_u16(), 403, "{scope}");
        let response = get(&sandbox, Some(token), "Patient?_id=x").await;
        assert_eq!(response.status().as_u16(), 200, "{scope}");
    }
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_jwks_url_be_fetched_again_and_again() {
    let key = TestKey::rsa2048("real-key");
    let (url, _doc, fetches) = jwks_server(jwks(&[&key])).await;
    let remote = ClientConfig::new("remote-app", ClientKeys::JwksUrl(url.parse().expect("url")));
    let sandbox = sandbox_with(vec![remote], |config| {
        config.jwks_refetch_interval = Duration::from_secs(3600);
    })
    .await;
    let token_url = aud(&sandbox);
    assert_eq!(
        exchange(
            &sandbox,
            &sign(&key, Some("real-key"), &claims("remote-app", &token_url))
        )
        .await
        .0,
        200
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // An attacker's stream of assertions naming made-up kids (unsigned by any registered
    // key): one refetch at most within the interval, then each is refused from the cache.
    for attempt in 0..50 {
        let header = json!({"alg": "RS384", "typ": "JWT", "kid": format!("made-up-{attempt}")});
        assert_invalid_client(
            exchange(
                &sandbox,
                &sign_raw(&key, &header, &claims("remote-app", &token_url)),
            )
            .await,
            "no registered key has kid made-up",
        );
    }
    assert!(
        fetches.load(Ordering::SeqCst) <= 2,
        "{} fetches for 50 unknown kids",
        fetches.load(Ordering::SeqCst)
    );
    // The real key still works from the cache.
    assert_eq!(
        exchange(
            &sandbox,
            &sign(&key, Some("real-key"), &claims("remote-app", &token_url))
        )
        .await
        .0,
        200
    );

    // An unreachable URL is not retried on every assertion either.
    let dead = ClientConfig::new(
        "dead-app",
        ClientKeys::JwksUrl("http://127.0.0.1:1/jwks.json".parse().expect("url")),
    );
    sandbox.register_client(dead);
    for _ in 0..3 {
        assert_invalid_client(
            exchange(
                &sandbox,
                &sign(&key, Some("real-key"), &claims("dead-app", &token_url)),
            )
            .await,
            "unreachable",
        );
    }
}

#[tokio::test]
async fn a_crit_header_is_refused_as_rfc_7515_requires() {
    let key = TestKey::rsa2048("rsa-1");
    let sandbox = sandbox_with(vec![client("app", &[&key])], |_| {}).await;
    for crit in [json!(["exp"]), json!(["http://example.org/ext"]), json!([])] {
        let header = json!({"alg": "RS384", "typ": "JWT", "kid": "rsa-1", "crit": crit});
        assert_invalid_client(
            exchange(
                &sandbox,
                &sign_raw(&key, &header, &claims("app", &aud(&sandbox))),
            )
            .await,
            "crit",
        );
    }
    let header = json!({"alg": "RS384", "typ": "JWT", "kid": "rsa-1"});
    assert_eq!(
        exchange(
            &sandbox,
            &sign_raw(&key, &header, &claims("app", &aud(&sandbox)))
        )
        .await
        .0,
        200
    );
}
