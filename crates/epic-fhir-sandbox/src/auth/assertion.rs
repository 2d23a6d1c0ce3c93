//! Verification of client assertions: every rule of SMART Backend Services and Epic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::clients::{Client, ClientRegistry};
use super::keys::ACCEPTED_ALGORITHMS;

/// The longest `jti` Epic accepts.
pub(crate) const MAX_JTI_CHARS: usize = 151;
/// The longest an assertion may be valid: `exp` at most 300 s after now (and after `iat`).
pub(crate) const MAX_ASSERTION_SECONDS: i64 = 300;

/// What the checks need besides the assertion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckContext<'a> {
    pub(crate) token_url: &'a str,
    pub(crate) now: i64,
    pub(crate) skew: i64,
    /// The least time between two JWK Set fetches caused by an unknown `kid`.
    pub(crate) jwks_refetch_interval: std::time::Duration,
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("client_assertion {what} is not base64url"))
}

fn decode_json(part: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = decode_part(part, what)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("client_assertion {what} is not a JSON object")),
    }
}

fn numeric_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| format!("{name} claim is not a number")),
    }
}

/// Remembers each client's `jti` values until their assertion expires, so none is accepted twice.
#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl ReplayCache {
    /// Records `jti` for `client` until `exp`; false when it was already recorded and unexpired.
    fn record(&self, client: &str, jti: &str, exp: i64, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Pruning on growth keeps the cache proportional to the assertions still valid.
        if seen.len() >= 1024 && seen.len().is_power_of_two() {
            seen.retain(|_, expires| *expires >= now);
        }
        let key = (client.to_owned(), jti.to_owned());
        match seen.get(&key) {
            Some(&expires) if expires >= now => false,
            _ => {
                seen.insert(key, exp);
                true
            }
        }
    }
}

/// Verifies a client assertion and returns the client it authenticates. The error is the
/// `error_description` of an `invalid_client` response: it names the rule that failed.
pub(crate) async fn verify(
    assertion: &str,
    registry: &ClientRegistry,
    replay: &ReplayCache,
    http: &reqwest::Client,
    ctx: CheckContext<'_>,
) -> Result<Arc<Client>, String> {
    verify_with(assertion, |id| registry.get(id), replay, http, ctx).await
}

/// [`verify`] with the client (its keys) found by `lookup`: SMART apps authenticating with
/// `private_key_jwt` follow exactly the Backend Services rules, from their own registry.
pub(crate) async fn verify_with(
    assertion: &str,
    lookup: impl Fn(&str) -> Option<Arc<Client>>,
    replay: &ReplayCache,
    http: &reqwest::Client,
    ctx: CheckContext<'_>,
) -> Result<Arc<Client>, String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(
            "client_assertion is not a JWT: expected three non-empty base64url parts".to_owned(),
        );
    }
    let header = decode_json(parts[0], "header")?;
    let claims = decode_json(parts[1], "payload")?;
    let signature = decode_part(parts[2], "signature")?;

    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("JWT header has no alg")?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(
            "alg none is never accepted: sign the assertion with RS384 or ES384".to_owned(),
        );
    }
    if alg.starts_with("HS") {
        return Err(format!(
            "alg {alg} (a shared-secret MAC) is not accepted: sign with a private key (RS384 or ES384)"
        ));
    }
    if !ACCEPTED_ALGORITHMS.contains(&alg) {
        return Err(format!(
            "alg {alg} is not accepted: use one of {}",
            ACCEPTED_ALGORITHMS.join(", ")
        ));
    }
    // RFC 7515 section 4.1.11: a recipient that does not understand an extension listed in
    // `crit` must reject the JWS, and this server understands none.
    if let Some(crit) = header.get("crit") {
        return Err(format!(
            "JWT header crit {crit} names extensions this server does not understand: a client assertion must not carry crit (RFC 7515)"
        ));
    }
    if let Some(typ) = header.get("typ") {
        if !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
            return Err(format!("JWT header typ must be JWT, found {typ}"));
        }
    }

    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or("iss claim is missing or not a string")?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("sub claim is missing or not a string")?;
    if iss != sub {
        return Err(format!(
            "iss ({iss}) and sub ({sub}) must both be the client id"
        ));
    }
    let client = lookup(iss).ok_or_else(|| format!("iss {iss} is not a registered client id"))?;

    if let Some(jku) = header.get("jku") {
        let jku = jku.as_str().ok_or("jku header is not a string")?;
        match client.jwks_url() {
            Some(url) if url.as_str() == jku => {}
            Some(url) => {
                return Err(format!(
                    "jku {jku} does not match the registered JWK Set URL {url}"
                ));
            }
            None => {
                return Err(format!(
                    "jku {jku} given, but the client registered no JWK Set URL"
                ));
            }
        }
    }

    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err("kid header is not a string".to_owned()),
    };
    let keys = client.keys(http, kid, ctx.jwks_refetch_interval).await?;
    let key = match kid {
        Some(kid) => {
            let mut matching = keys.iter().filter(|k| k.kid == kid);
            match (matching.next(), matching.next()) {
                (Some(key), None) => key.clone(),
                (None, _) => return Err(format!("no registered key has kid {kid}")),
                (Some(_), Some(_)) => {
                    return Err(format!("several registered keys have kid {kid}"));
                }
            }
        }
        None if keys.len() == 1 => keys[0].clone(),
        None => {
            return Err(format!(
                "kid header is missing and the client has {} keys: name the signing key",
                keys.len()
            ));
        }
    };
    // The registered key's type decides which algorithms are possible; the header alone is
    // never trusted (an RSA public key must not be usable as an HMAC secret, for one).
    if !key.kind.allows(alg) {
        return Err(format!(
            "alg {alg} does not match the registered {} key {}",
            key.kind.kty(),
            key.kid
        ));
    }
    let signed = &assertion[..parts[0].len() + 1 + parts[1].len()];
    if !key.kind.verify(alg, signed.as_bytes(), &signature) {
        return Err(format!("signature does not verify with key {}", key.kid));
    }

    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == ctx.token_url,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(ctx.token_url)),
        _ => return Err("aud claim is missing".to_owned()),
    };
    if !aud_ok {
        return Err(format!(
            "aud {} is not this token endpoint's URL {}",
            claims.get("aud").map(Value::to_string).unwrap_or_default(),
            ctx.token_url
        ));
    }

    let exp = numeric_claim(&claims, "exp")?.ok_or("exp claim is missing")?;
    if exp <= ctx.now - ctx.skew {
        return Err(format!("exp {exp} is in the past (now {})", ctx.now));
    }
    if exp > ctx.now + MAX_ASSERTION_SECONDS + ctx.skew {
        return Err(format!(
            "exp {exp} is more than {MAX_ASSERTION_SECONDS} s in the future (now {}): check the client's clock",
            ctx.now
        ));
    }
    for name in ["nbf", "iat"] {
        if let Some(value) = numeric_claim(&claims, name)? {
            if value > ctx.now + ctx.skew {
                return Err(format!("{name} {value} is in the future (now {})", ctx.now));
            }
            // Saturating: both claims come from the client, and a far-past value must fail
            // this check rather than overflow.
            if exp.saturating_sub(value) > MAX_ASSERTION_SECONDS + ctx.skew {
                return Err(format!(
                    "{name} {value} is more than {MAX_ASSERTION_SECONDS} s before exp {exp}"
                ));
            }
        }
    }

    let jti = match claims.get("jti") {
        None => return Err("jti claim is missing".to_owned()),
        Some(Value::String(jti)) if jti.is_empty() => return Err("jti claim is empty".to_owned()),
        Some(Value::String(jti)) => jti,
        Some(_) => return Err("jti claim is not a string".to_owned()),
    };
    if jti.chars().count() > MAX_JTI_CHARS {
        return Err(format!(
            "jti is {} characters long: at most {MAX_JTI_CHARS} are allowed",
            jti.chars().count()
        ));
    }
    if !replay.record(&client.id, jti, exp, ctx.now) {
        return Err(format!(
            "jti {jti} was already used: sign a new assertion for every token request"
        ));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_forgets_expired_jti() {
        let cache = ReplayCache::default();
        assert!(cache.record("c", "j1", 100, 50));
        assert!(!cache.record("c", "j1", 100, 60));
        assert!(cache.record("other-client", "j1", 100, 60));
        // After expiry the jti could be reused (the assertion carrying it is dead anyway).
        assert!(cache.record("c", "j1", 200, 101));
    }

    #[test]
    fn replay_cache_prunes_on_growth() {
        let cache = ReplayCache::default();
        for i in 0..5000 {
            assert!(cache.record("c", &format!("j{i}"), i64::from(i), i64::from(i)));
        }
        let len = cache.seen.lock().expect("lock").len();
        assert!(len < 5000, "expired entries were pruned ({len} left)");
    }
}
