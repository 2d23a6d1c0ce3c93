//! The retry policy and its backoff arithmetic; the request engine applies them (see the rule
//! in `http::Retries`).

use std::time::{Duration, SystemTime};

/// How failed requests are retried: bounded both by the number of attempts and by the total time.
///
/// One rule holds for every request the crate sends (FHIR requests, token requests,
/// discovery, every Bulk Data request):
/// - only failures that may pass are retried: connection errors, timeouts, bodies cut off,
///   408/429/500/502/503/504, OperationOutcomes coded `transient` or `throttled`, a token
///   endpoint's `temporarily_unavailable`; a request that is not idempotent (a create, a
///   bulk kick-off) only when it cannot have reached the server (no connection was made);
/// - the delay is the server's `Retry-After` when it sent one, else exponential from
///   `initial_backoff` to `max_backoff` with equal jitter, so that many clients failing
///   together do not retry together;
/// - a `Retry-After` longer than `max_retry_after` ends the retries at once (trying earlier
///   than asked would only be refused again); the error then carries the server's delay
///   ([`Error::retry_after`](crate::Error::retry_after)) for the caller to act on;
/// - a retry starts only while fewer than `max_attempts` attempts were made and
///   `max_elapsed` will not be passed by the wait (file downloads count failures without
///   progress instead, see [`DownloadOptions`](crate::bulk::DownloadOptions));
/// - a 401 to a request that carried a token refreshes the token and repeats the request
///   once, at once, without counting as an attempt.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The most attempts in total, the first included. `1` disables retries. Default 4.
    pub max_attempts: u32,
    /// The delay before the first retry, before jitter. Default 200 ms.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts. Default 15 s.
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for; a longer one ends the retries. Default 60 s.
    pub max_retry_after: Duration,
    /// No retry starts once this much time has passed since the first attempt. Default 120 s.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Sets the maximum number of attempts (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first backoff delay.
    #[must_use]
    pub fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }

    /// Sets the longest backoff delay.
    #[must_use]
    pub fn with_max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }

    /// Sets the longest `Retry-After` waited for.
    #[must_use]
    pub fn with_max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// Sets the total time budget for retries.
    #[must_use]
    pub fn with_max_elapsed(mut self, budget: Duration) -> Self {
        self.max_elapsed = budget;
        self
    }

    /// The delay before retry number `retry` (0 for the first retry), given the server's
    /// `Retry-After` if any (the caller has checked it against `max_retry_after`), with
    /// `jitter` in `[0, 1)` choosing where in the jitter window the delay falls.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_retry_after);
        }
        let exponential = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        // "Equal jitter": half the delay is fixed, the other half random, so the delay never
        // collapses to zero and retries of many clients still spread out.
        let half = exponential / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A small, fast PRNG for jitter (xorshift64*), seeded from the system RNG. Jitter needs no
/// cryptographic quality; it must only differ between clients.
#[derive(Debug)]
pub(crate) struct Jitter(std::sync::atomic::AtomicU64);

impl Jitter {
    pub(crate) fn new() -> Self {
        let mut seed = [0u8; 8];
        // If the system RNG fails, fall back to the clock: jitter is not a security property.
        if aws_lc_rs::rand::fill(&mut seed).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9_7f4a_7c15);
            seed = nanos.to_le_bytes();
        }
        Jitter(std::sync::atomic::AtomicU64::new(
            u64::from_le_bytes(seed) | 1,
        ))
    }

    /// A value in `[0, 1)`.
    pub(crate) fn next(&self) -> f64 {
        use std::sync::atomic::Ordering;
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.store(x, Ordering::Relaxed);
        let out = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (out >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Parses a `Retry-After` header value: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
/// A date in the past means "now"; anything unparseable is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_with_equal_jitter_and_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(0, None, 0.0), Duration::from_millis(100));
        assert_eq!(policy.delay(0, None, 1.0), Duration::from_millis(200));
        assert_eq!(policy.delay(3, None, 1.0), Duration::from_millis(1600));
        assert_eq!(policy.delay(30, None, 1.0), Duration::from_secs(15));
        assert_eq!(policy.delay(30, None, 0.0), Duration::from_millis(7500));
    }

    #[test]
    fn retry_after_is_the_delay() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3)), 0.5),
            Duration::from_secs(3)
        );
        assert_eq!(policy.delay(5, Some(Duration::ZERO), 0.5), Duration::ZERO);
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let jitter = Jitter::new();
        let values: Vec<f64> = (0..1000).map(|_| jitter.next()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let distinct: std::collections::BTreeSet<u64> =
            values.iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() > 990);
    }
}
