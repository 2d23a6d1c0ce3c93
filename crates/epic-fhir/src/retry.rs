//! Retry policy and backoff shared by the token endpoint client and the FHIR client.

use std::time::{Duration, SystemTime};

/// How failed requests are retried: bounded both by the number of attempts and by the total time.
///
/// Delays grow exponentially from `initial_backoff` to `max_backoff`, with jitter so that many
/// clients failing together do not retry together. A server's `Retry-After` is honoured but
/// clamped to `max_retry_after`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The most attempts in total, the first included. `1` disables retries. Default 4.
    pub max_attempts: u32,
    /// The delay before the first retry, before jitter. Default 200 ms.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts. Default 15 s.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; longer requests are clamped. Default 60 s.
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

    /// Sets the longest `Retry-After` honoured.
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
    /// `Retry-After` if any, with `jitter` in `[0, 1)` choosing where in the jitter window
    /// the delay falls.
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

    /// Whether another attempt may start: attempts and total time are both within bounds.
    pub(crate) fn allows(
        &self,
        attempts_made: u32,
        elapsed: Duration,
        next_delay: Duration,
    ) -> bool {
        attempts_made < self.max_attempts && elapsed + next_delay <= self.max_elapsed
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
    fn retry_after_is_honoured_and_clamped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3)), 0.5),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600)), 0.5),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn bounded_by_attempts_and_time() {
        let policy = RetryPolicy::default()
            .with_max_attempts(3)
            .with_max_elapsed(Duration::from_secs(10));
        assert!(policy.allows(1, Duration::ZERO, Duration::from_secs(1)));
        assert!(policy.allows(2, Duration::ZERO, Duration::from_secs(1)));
        assert!(!policy.allows(3, Duration::ZERO, Duration::from_secs(1)));
        assert!(!policy.allows(1, Duration::from_secs(9), Duration::from_secs(2)));
        assert!(!RetryPolicy::never().allows(1, Duration::ZERO, Duration::ZERO));
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
