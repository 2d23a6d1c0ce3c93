//! Fault injection: latency, 503s, 429s with `Retry-After`, and connections dropped mid-body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::config::{FHIR_BASE_PATH, Faults};
use crate::outcome::FhirError;
use crate::server::AppState;

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Error,
    Throttle,
    Drop,
}

/// Counts of injected faults.
#[derive(Debug, Default)]
pub(crate) struct FaultCounters {
    pub(crate) errors: AtomicU64,
    pub(crate) throttles: AtomicU64,
    pub(crate) drops: AtomicU64,
}

/// The current fault settings and the dice.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    faults: RwLock<Faults>,
    state: AtomicU64,
    pub(crate) counters: FaultCounters,
}

impl FaultInjector {
    pub(crate) fn new(faults: Faults) -> Self {
        let seed = faults.seed | 1;
        FaultInjector {
            faults: RwLock::new(faults),
            state: AtomicU64::new(seed),
            counters: FaultCounters::default(),
        }
    }

    pub(crate) fn current(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set(&self, faults: Faults) {
        self.state.store(faults.seed | 1, Ordering::Relaxed);
        *self.faults.write().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// A uniform number in `[0, 1)` from a splitmix64 sequence seeded by the configuration.
    fn roll(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Decides the fault of one request: the rates partition `[0, 1)`.
    pub(crate) fn decide(&self, faults: &Faults) -> Fault {
        if faults.error_rate <= 0.0 && faults.throttle_rate <= 0.0 && faults.drop_rate <= 0.0 {
            return Fault::None;
        }
        let x = self.roll();
        if x < faults.error_rate {
            Fault::Error
        } else if x < faults.error_rate + faults.throttle_rate {
            Fault::Throttle
        } else if x < faults.error_rate + faults.throttle_rate + faults.drop_rate {
            Fault::Drop
        } else {
            Fault::None
        }
    }
}

/// Whether faults apply to `path`: every FHIR API path except discovery and metadata, so a
/// client can always learn how to connect.
fn applies(path: &str) -> bool {
    path.strip_prefix(FHIR_BASE_PATH)
        .is_some_and(|rest| !matches!(rest, "/metadata" | "/.well-known/smart-configuration"))
}

/// The axum middleware that injects faults.
pub(crate) async fn inject(
    State(state): State<std::sync::Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if !applies(request.uri().path()) {
        return next.run(request).await;
    }
    let faults = state.faults.current();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    match state.faults.decide(&faults) {
        Fault::None => next.run(request).await,
        Fault::Error => {
            state.faults.counters.errors.fetch_add(1, Ordering::Relaxed);
            FhirError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "injected fault: the server is temporarily unavailable",
            )
            .into_response()
        }
        Fault::Throttle => {
            state
                .faults
                .counters
                .throttles
                .fetch_add(1, Ordering::Relaxed);
            let mut error = FhirError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "injected fault: too many requests",
            );
            error.retry_after = Some(faults.retry_after.as_secs());
            error.into_response()
        }
        Fault::Drop => {
            state.faults.counters.drops.fetch_add(1, Ordering::Relaxed);
            truncate(next.run(request).await).await
        }
    }
}

/// Sends the response's headers and the first half of its body, then fails the body stream so
/// the server closes the connection mid-response.
async fn truncate(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let half = bytes.slice(..bytes.len() / 2);
    // The failure comes a moment after the first half, so the headers and that half are on the
    // wire before the connection is torn down: the client sees a body cut short, not a refused
    // request, whatever the size of the response.
    let first = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
    let failure = futures_util::stream::once(async {
        tokio::time::sleep(DROP_DELAY).await;
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected fault: connection dropped mid-response",
        ))
    });
    use futures_util::StreamExt as _;
    Response::from_parts(parts, Body::from_stream(first.chain(failure)))
}

/// How long a dropped response waits between its first half and the failure.
const DROP_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_partition_the_dice() {
        let faults = Faults {
            error_rate: 0.2,
            throttle_rate: 0.1,
            drop_rate: 0.05,
            ..Faults::default()
        };
        let injector = FaultInjector::new(faults.clone());
        let mut counts = [0usize; 4];
        for _ in 0..100_000 {
            let i = match injector.decide(&faults) {
                Fault::None => 0,
                Fault::Error => 1,
                Fault::Throttle => 2,
                Fault::Drop => 3,
            };
            counts[i] += 1;
        }
        let share = |n: usize| n as f64 / 100_000.0;
        assert!((share(counts[1]) - 0.2).abs() < 0.01, "{counts:?}");
        assert!((share(counts[2]) - 0.1).abs() < 0.01, "{counts:?}");
        assert!((share(counts[3]) - 0.05).abs() < 0.01, "{counts:?}");
        assert_eq!(injector.decide(&Faults::default()), Fault::None);
    }

    #[test]
    fn discovery_and_metadata_are_exempt() {
        assert!(applies("/interconnect-fhir-oauth/api/FHIR/R4/Patient/x"));
        assert!(!applies("/interconnect-fhir-oauth/api/FHIR/R4/metadata"));
        assert!(!applies(
            "/interconnect-fhir-oauth/api/FHIR/R4/.well-known/smart-configuration"
        ));
        assert!(!applies("/interconnect-fhir-oauth/oauth2/token"));
    }
}
