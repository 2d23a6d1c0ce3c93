//! Client assertion signing per key type, and the cost of a cached-token hit.

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use epic_fhir::auth::{AssertionConfig, BackendServicesAuth, RsaBits, SigningKey, sign_assertion};

fn signing(c: &mut Criterion) {
    let config = AssertionConfig::new(
        "bench-client",
        "https://fhir.example.org/interconnect-fhir-oauth/oauth2/token"
            .parse()
            .expect("url"),
    )
    .expect("config");
    let mut group = c.benchmark_group("sign_assertion");
    for (name, key) in [
        ("RS384-2048", SigningKey::generate_rsa(RsaBits::B2048)),
        ("RS384-3072", SigningKey::generate_rsa(RsaBits::B3072)),
        ("RS384-4096", SigningKey::generate_rsa(RsaBits::B4096)),
        ("ES384-P384", SigningKey::generate_ec_p384()),
    ] {
        let key = key.expect("key");
        group.bench_function(name, |b| {
            b.iter(|| sign_assertion(&key, &config, SystemTime::now()).expect("signs"));
        });
    }
    group.finish();
}

/// A token endpoint on loopback that always issues the same long-lived token.
async fn token_endpoint() -> String {
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(|| async {
            axum::Json(serde_json::json!({
                "access_token": "bench-token", "token_type": "bearer", "expires_in": 3600
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}/token")
}

fn cached_token(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let auth = runtime.block_on(async {
        let url = token_endpoint().await;
        let auth = BackendServicesAuth::builder(
            "bench-client",
            SigningKey::generate_ec_p384().expect("key"),
        )
        .token_url(url)
        .build()
        .expect("auth");
        auth.access_token().await.expect("first token");
        auth
    });
    c.bench_function("cached_token_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { auth.access_token().await.expect("cached") });
    });
    assert_eq!(
        auth.token_requests(),
        1,
        "every hit was served from the cache"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = signing, cached_token
}
criterion_main!(benches);
