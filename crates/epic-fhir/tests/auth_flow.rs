//! The Backend Services token flow against a local token endpoint on 127.0.0.1.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use epic_fhir::auth::{
    AccessToken, AssertionConfig, BackendServicesAuth, ManualClock, RsaBits, SigningKey,
    TokenProvider, sign_assertion,
};
use epic_fhir::{ErrorKind, RetryPolicy};
use serde_json::json;
use support::{MockTokenServer, Reply, unix_now, verify_independently};

const CLIENT_ID: &str = "sandbox-client-1";

fn rsa_key() -> SigningKey {
    SigningKey::generate_rsa(RsaBits::B2048).expect("key")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(20))
}

fn auth_for(server: &MockTokenServer, key: SigningKey) -> BackendServicesAuth {
    BackendServicesAuth::builder(CLIENT_ID, key)
        .token_url(server.token_url())
        .scope("system/Patient.read system/Observation.read")
        .retry_policy(fast_retries())
        .build()
        .expect("auth builds")
}

#[test]
fn assertions_verify_independently_for_every_key_type() {
    let token_url = "https://fhir.example.org/interconnect-fhir-oauth/oauth2/token";
    let config = AssertionConfig::new(CLIENT_ID, token_url.parse().expect("url")).expect("config");
    let keys = [
        SigningKey::generate_rsa(RsaBits::B2048).expect("rsa2048"),
        SigningKey::generate_rsa(RsaBits::B3072).expect("rsa3072"),
        SigningKey::generate_rsa(RsaBits::B4096).expect("rsa4096"),
        SigningKey::generate_ec_p384().expect("p384"),
    ];
    for key in keys {
        let now = SystemTime::now();
        let assertion = sign_assertion(&key, &config, now).expect("signs");
        let jwk = serde_json::to_value(key.public_jwk()).expect("jwk");
        let (header, claims) = verify_independently(&assertion, &jwk, CLIENT_ID, token_url);
        assert_eq!(format!("{:?}", header.alg), key.algorithm().as_str());
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(header.jku, None);
        assert_eq!(claims.iss, CLIENT_ID);
        assert_eq!(claims.sub, CLIENT_ID);
        assert_eq!(claims.aud, token_url);
        assert!(claims.exp > unix_now(), "exp in the future");
        assert!(
            claims.exp - claims.iat <= 300,
            "exp at most 300 s after iat"
        );
        assert!(claims.iat <= unix_now(), "iat not in the future");
        assert!(claims.jti.len() >= 21, "jti carries at least 122 bits");
    }
}

#[test]
fn lower_lifetime_and_jku_are_honoured() {
    let token_url = "https://fhir.example.org/oauth2/token";
    let key = SigningKey::generate_ec_p384().expect("key");
    let config = AssertionConfig::new(CLIENT_ID, token_url.parse().expect("url"))
        .expect("config")
        .with_lifetime(Duration::from_secs(60))
        .expect("60 s is allowed")
        .with_jku(
            "https://app.example.org/.well-known/jwks.json"
                .parse()
                .expect("url"),
        );
    let assertion = sign_assertion(&key, &config, SystemTime::now()).expect("signs");
    let jwk = serde_json::to_value(key.public_jwk()).expect("jwk");
    let (header, claims) = verify_independently(&assertion, &jwk, CLIENT_ID, token_url);
    assert_eq!(claims.exp - claims.iat, 60);
    assert_eq!(
        header.jku.as_deref(),
        Some("https://app.example.org/.well-known/jwks.json")
    );
}

#[test]
fn a_thousand_assertions_have_a_thousand_distinct_jti() {
    let key = SigningKey::generate_ec_p384().expect("key");
    let config = AssertionConfig::new(CLIENT_ID, "https://x.example/token".parse().expect("url"))
        .expect("config");
    let jwk = serde_json::to_value(key.public_jwk()).expect("jwk");
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let assertion = sign_assertion(&key, &config, SystemTime::now()).expect("signs");
        let (_, claims) =
            verify_independently(&assertion, &jwk, CLIENT_ID, "https://x.example/token");
        assert!(seen.insert(claims.jti), "duplicate jti");
    }
    assert_eq!(seen.len(), 1000);
}

#[tokio::test]
async fn token_request_is_a_well_formed_form_post() {
    let server = MockTokenServer::start(vec![], 3600, Duration::ZERO).await;
    let key = rsa_key();
    let jwk = serde_json::to_value(key.public_jwk()).expect("jwk");
    let auth = auth_for(&server, key);
    let issued = auth.issued_token().await.expect("token");
    assert_eq!(issued.access_token.expose_secret(), "token-1");
    assert_eq!(issued.scope.as_deref(), Some("system/Patient.read"));
    assert_eq!(issued.expires_in, Some(Duration::from_secs(3600)));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.form["grant_type"], "client_credentials");
    assert_eq!(
        request.form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(
        request.form["scope"],
        "system/Patient.read system/Observation.read"
    );
    let (_, claims) = verify_independently(
        &request.form["client_assertion"],
        &jwk,
        CLIENT_ID,
        &server.token_url(),
    );
    assert_eq!(claims.aud, server.token_url());
}

#[tokio::test]
async fn scope_is_omitted_when_not_configured() {
    let server = MockTokenServer::start(vec![], 3600, Duration::ZERO).await;
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url(server.token_url())
        .build()
        .expect("auth");
    auth.access_token().await.expect("token");
    assert!(!server.requests()[0].form.contains_key("scope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_callers_cause_one_token_request() {
    let server = MockTokenServer::start(vec![], 3600, Duration::from_millis(200)).await;
    let auth = auth_for(&server, rsa_key());
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.access_token().await })
        })
        .collect();
    for task in tasks {
        let token = task.await.expect("task").expect("token");
        assert_eq!(token.expose_secret(), "token-1");
    }
    assert_eq!(server.request_count(), 1);
    assert_eq!(auth.token_requests(), 1);
}

#[tokio::test]
async fn token_is_refreshed_before_expiry_with_a_fake_clock() {
    let server = MockTokenServer::start(vec![], 3600, Duration::ZERO).await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url(server.token_url())
        .refresh_margin(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .expect("auth");
    assert_eq!(
        auth.access_token().await.expect("t1").expose_secret(),
        "token-1"
    );
    clock.advance(Duration::from_secs(3000));
    assert_eq!(
        auth.access_token().await.expect("cached").expose_secret(),
        "token-1"
    );
    assert_eq!(server.request_count(), 1);
    // 3545 s after the request: inside the 60 s refresh margin, so a new token is fetched.
    clock.advance(Duration::from_secs(545));
    assert_eq!(
        auth.access_token().await.expect("t2").expose_secret(),
        "token-2"
    );
    assert_eq!(server.request_count(), 2);
    // Well past expiry: fetched again.
    clock.advance(Duration::from_secs(7200));
    assert_eq!(
        auth.access_token().await.expect("t3").expose_secret(),
        "token-3"
    );
    assert_eq!(server.request_count(), 3);
}

#[tokio::test]
async fn short_lived_tokens_use_a_proportional_margin() {
    // A 2 s token must not be refreshed on every call because of a 60 s margin.
    let server = MockTokenServer::start(vec![], 2, Duration::ZERO).await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url(server.token_url())
        .clock(clock.clone())
        .build()
        .expect("auth");
    auth.access_token().await.expect("t1");
    clock.advance(Duration::from_millis(1000));
    assert_eq!(
        auth.access_token().await.expect("cached").expose_secret(),
        "token-1"
    );
    clock.advance(Duration::from_millis(600));
    assert_eq!(
        auth.access_token().await.expect("t2").expose_secret(),
        "token-2"
    );
}

#[tokio::test]
async fn refresh_failure_keeps_the_still_valid_token() {
    let server = MockTokenServer::start(
        vec![
            Reply::token("first", 3600),
            Reply::json(
                400,
                json!({"error": "invalid_client", "error_description": "key rotated"}),
            ),
        ],
        3600,
        Duration::ZERO,
    )
    .await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url(server.token_url())
        .clock(clock.clone())
        .build()
        .expect("auth");
    assert_eq!(
        auth.access_token().await.expect("first").expose_secret(),
        "first"
    );
    clock.advance(Duration::from_secs(3570));
    // The refresh fails, but the token is valid for 30 more seconds.
    assert_eq!(
        auth.access_token()
            .await
            .expect("still valid")
            .expose_secret(),
        "first"
    );
    clock.advance(Duration::from_secs(60));
    // Expired now: the next fetch succeeds with a new token.
    assert_eq!(
        auth.access_token().await.expect("new").expose_secret(),
        "token-1"
    );
}

#[tokio::test]
async fn invalidate_after_401_fetches_a_new_token_once() {
    let server = MockTokenServer::start(vec![], 3600, Duration::ZERO).await;
    let auth = auth_for(&server, rsa_key());
    let first = auth.access_token().await.expect("first");
    // The FHIR server answered 401 to `first`.
    TokenProvider::invalidate(&auth, &first);
    let second = auth.access_token().await.expect("second");
    assert_ne!(first, second);
    assert_eq!(server.request_count(), 2);
    // Another request that failed with the old token does not throw away the new one.
    TokenProvider::invalidate(&auth, &first);
    assert_eq!(auth.access_token().await.expect("cached"), second);
    assert_eq!(server.request_count(), 2);
    // An unknown token is ignored too.
    TokenProvider::invalidate(&auth, &AccessToken::new("never-issued"));
    assert_eq!(auth.access_token().await.expect("cached"), second);
}

#[tokio::test]
async fn invalid_client_is_a_typed_error_and_not_retried() {
    let server = MockTokenServer::start(
        vec![Reply::json(
            401,
            json!({"error": "invalid_client", "error_description": null}),
        )],
        3600,
        Duration::ZERO,
    )
    .await;
    let auth = auth_for(&server, rsa_key());
    let err = auth.access_token().await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Auth);
    let oauth = err.oauth().expect("oauth error");
    assert_eq!(oauth.error, "invalid_client");
    assert_eq!(oauth.description, None);
    assert_eq!(oauth.status, 401);
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    assert_eq!(server.request_count(), 1, "invalid_client is never retried");
}

#[tokio::test]
async fn invalid_scope_keeps_its_description() {
    let server = MockTokenServer::start(
        vec![Reply::json(400, json!({"error": "invalid_scope", "error_description": "system/Binary.read not granted"}))],
        3600,
        Duration::ZERO,
    )
    .await;
    let err = auth_for(&server, rsa_key())
        .access_token()
        .await
        .expect_err("refused");
    assert_eq!(
        err.oauth().expect("oauth").description.as_deref(),
        Some("system/Binary.read not granted")
    );
    assert!(err.to_string().contains("invalid_scope"), "{err}");
}

#[tokio::test]
async fn bare_400_is_retried_with_a_fresh_assertion() {
    let server = MockTokenServer::start(vec![Reply::text(400, "")], 3600, Duration::ZERO).await;
    let auth = auth_for(&server, rsa_key());
    assert_eq!(
        auth.access_token()
            .await
            .expect("second try")
            .expose_secret(),
        "token-1"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_ne!(
        requests[0].form["client_assertion"], requests[1].form["client_assertion"],
        "each attempt signs a new assertion"
    );
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let replies = vec![
        Reply::text(503, "<html>maintenance</html>"),
        Reply::text(502, "<html>bad gateway</html>"),
        Reply::text(500, "<html>oops</html>"),
        Reply::token("too-late", 3600),
    ];
    let server = MockTokenServer::start(replies, 3600, Duration::ZERO).await;
    let err = auth_for(&server, rsa_key())
        .access_token()
        .await
        .expect_err("gives up");
    assert_eq!(server.request_count(), 3, "max_attempts bounds the retries");
    assert_eq!(err.status(), Some(500));
    assert!(err.is_retryable());
    assert!(err.body_excerpt().expect("excerpt").contains("oops"));
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let mut throttled = Reply::text(429, "slow down");
    throttled.retry_after = Some("1".to_owned());
    let server = MockTokenServer::start(vec![throttled], 3600, Duration::ZERO).await;
    let auth = auth_for(&server, rsa_key());
    let started = std::time::Instant::now();
    auth.access_token().await.expect("after waiting");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited for Retry-After"
    );
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn non_json_success_body_keeps_an_excerpt() {
    let server = MockTokenServer::start(
        vec![Reply::text(200, "<html>Sign in</html>")],
        3600,
        Duration::ZERO,
    )
    .await;
    let err = auth_for(&server, rsa_key())
        .access_token()
        .await
        .expect_err("not json");
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(err.body_excerpt().expect("excerpt").contains("Sign in"));
}

#[tokio::test]
async fn connection_refused_is_a_retryable_transport_error() {
    // Bind then drop a listener to get a loopback port with nothing behind it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url(format!("http://127.0.0.1:{port}/oauth2/token"))
        .retry_policy(fast_retries())
        .build()
        .expect("auth");
    let err = auth.access_token().await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert!(err.is_retryable());
    assert_eq!(auth.token_requests(), 3);
}

#[tokio::test]
async fn a_hanging_token_endpoint_hits_the_fetch_timeout() {
    let server = MockTokenServer::start(vec![], 3600, Duration::from_secs(30)).await;
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url(server.token_url())
        .fetch_timeout(Duration::from_millis(300))
        .build()
        .expect("auth");
    let err = auth.access_token().await.expect_err("times out");
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_share_one_failure_instead_of_retrying_each() {
    let server = MockTokenServer::start(
        vec![
            Reply::json(400, json!({"error": "invalid_client"}))
                .delayed(Duration::from_millis(200)),
        ],
        3600,
        Duration::ZERO,
    )
    .await;
    let auth = auth_for(&server, rsa_key());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.access_token().await })
        })
        .collect();
    for task in tasks {
        let err = task.await.expect("task").expect_err("refused");
        assert_eq!(err.oauth().expect("oauth").error, "invalid_client");
    }
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn discovery_reads_smart_configuration_then_falls_back_to_metadata() {
    let server = MockTokenServer::start(vec![], 3600, Duration::ZERO).await;
    server.set_well_known(Some(json!({
        "token_endpoint": server.token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
    })));
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .discover(server.fhir_base())
        .await
        .expect("discovers")
        .build()
        .expect("auth");
    assert_eq!(auth.token_url().as_str(), server.token_url());
    auth.access_token().await.expect("token");

    server.set_well_known(None);
    server.set_metadata(Some(json!({
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "security": {"extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": server.token_url()}]
        }]}}]
    })));
    let auth = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .discover(server.fhir_base())
        .await
        .expect("falls back")
        .build()
        .expect("auth");
    assert_eq!(auth.token_url().as_str(), server.token_url());

    server.set_metadata(None);
    let err = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .discover(server.fhir_base())
        .await
        .expect_err("nothing to discover");
    assert_eq!(err.kind(), ErrorKind::Discovery);
}

#[tokio::test]
async fn discovery_refuses_a_server_without_the_keys_algorithm() {
    let server = MockTokenServer::start(vec![], 3600, Duration::ZERO).await;
    server.set_well_known(Some(json!({
        "token_endpoint": server.token_url(),
        "token_endpoint_auth_signing_alg_values_supported": ["RS384"],
    })));
    let err = BackendServicesAuth::builder(CLIENT_ID, SigningKey::generate_ec_p384().expect("key"))
        .discover(server.fhir_base())
        .await
        .expect("discovery itself works")
        .build()
        .expect_err("ES384 unsupported");
    assert_eq!(err.kind(), ErrorKind::Discovery);
    assert!(err.to_string().contains("ES384"), "{err}");
}

#[test]
fn configuration_errors_are_clear() {
    let err = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url("http://fhir.example.org/oauth2/token")
        .build()
        .expect_err("plain http");
    assert_eq!(err.kind(), ErrorKind::InsecureUrl);
    let err = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .build()
        .expect_err("no url");
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = BackendServicesAuth::builder(CLIENT_ID, rsa_key())
        .token_url("https://fhir.example.org/oauth2/token")
        .assertion_lifetime(Duration::from_secs(600))
        .build()
        .expect_err("too long");
    assert!(err.to_string().contains("600"), "{err}");
}

#[tokio::test]
async fn secrets_never_show_in_debug_output() {
    let server = MockTokenServer::start(vec![], 3600, Duration::ZERO).await;
    let auth = auth_for(&server, rsa_key());
    let issued = auth.issued_token().await.expect("token");
    let text = format!("{auth:?} {issued:?}");
    assert!(!text.contains("token-1"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}
