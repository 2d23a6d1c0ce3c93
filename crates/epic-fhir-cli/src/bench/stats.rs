//! Latency summaries computed from every recorded sample (no histogram approximation).

use serde::Serialize;

/// Percentiles and extremes of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct LatencySummary {
    /// How many samples the summary covers.
    pub(crate) samples: usize,
    /// Arithmetic mean.
    pub(crate) mean: f64,
    /// Smallest sample.
    pub(crate) min: u32,
    /// Median.
    pub(crate) p50: u32,
    /// 90th percentile.
    pub(crate) p90: u32,
    /// 99th percentile.
    pub(crate) p99: u32,
    /// Largest sample.
    pub(crate) max: u32,
}

impl LatencySummary {
    /// Summarises `samples` (sorting them in place), or `None` when there are none.
    pub(crate) fn from_samples(samples: &mut [u32]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let total: u64 = samples.iter().map(|&s| u64::from(s)).sum();
        // The casts are exact for any realistic sample count (below 2^53).
        #[allow(clippy::cast_precision_loss)]
        let mean = total as f64 / samples.len() as f64;
        Some(LatencySummary {
            samples: samples.len(),
            mean,
            min: samples[0],
            p50: nearest_rank(samples, 50),
            p90: nearest_rank(samples, 90),
            p99: nearest_rank(samples, 99),
            max: samples[samples.len() - 1],
        })
    }
}

/// The `percent`-th percentile of sorted, non-empty `sorted` by the nearest-rank method: the
/// smallest sample such that at least `percent`% of the samples are less than or equal to it.
/// Nearest rank always answers with a sample that was actually observed, which is what a
/// latency report should quote.
fn nearest_rank(sorted: &[u32], percent: usize) -> u32 {
    debug_assert!(!sorted.is_empty() && (1..=100).contains(&percent));
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Converts an elapsed time to whole microseconds, saturating at `u32::MAX` (71 minutes), far
/// beyond any request timeout.
pub(crate) fn micros(elapsed: std::time::Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(LatencySummary::from_samples(&mut []), None);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let summary = LatencySummary::from_samples(&mut [7]).expect("one sample");
        assert_eq!(
            (
                summary.min,
                summary.p50,
                summary.p90,
                summary.p99,
                summary.max
            ),
            (7, 7, 7, 7, 7)
        );
        assert_eq!(summary.samples, 1);
        assert!((summary.mean - 7.0).abs() < f64::EPSILON);
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        // Shuffled on purpose: the summary must sort before ranking.
        let mut samples: Vec<u32> = (1..=100).rev().collect();
        samples.swap(3, 70);
        let summary = LatencySummary::from_samples(&mut samples).expect("samples");
        assert_eq!(summary.min, 1);
        assert_eq!(summary.p50, 50);
        assert_eq!(summary.p90, 90);
        assert_eq!(summary.p99, 99);
        assert_eq!(summary.max, 100);
        assert!((summary.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn nearest_rank_rounds_up() {
        // Ten samples: p50 is the 5th, p90 the 9th, p99 the 10th (rank ceil(9.9) = 10).
        let mut samples: Vec<u32> = (10..=100).step_by(10).collect();
        let summary = LatencySummary::from_samples(&mut samples).expect("samples");
        assert_eq!((summary.p50, summary.p90, summary.p99), (50, 90, 100));
        // Three samples: p50 is the 2nd (ceil(1.5) = 2), p90 and p99 the 3rd.
        let summary = LatencySummary::from_samples(&mut [300, 100, 200]).expect("samples");
        assert_eq!((summary.p50, summary.p90, summary.p99), (200, 300, 300));
    }

    #[test]
    fn a_slow_tail_shows_in_p99_only() {
        let mut samples = vec![100_u32; 990];
        samples.extend(std::iter::repeat_n(10_000, 10));
        let summary = LatencySummary::from_samples(&mut samples).expect("samples");
        assert_eq!((summary.p50, summary.p90, summary.p99), (100, 100, 100));
        assert_eq!(summary.max, 10_000);
        samples.push(10_000);
        let summary = LatencySummary::from_samples(&mut samples).expect("samples");
        assert_eq!(
            summary.p99, 10_000,
            "991 of 1001 fast: rank 991 is the first slow one"
        );
    }

    #[test]
    fn micros_saturate() {
        use std::time::Duration;
        assert_eq!(micros(Duration::from_micros(1_500)), 1_500);
        assert_eq!(micros(Duration::from_secs(10_000)), u32::MAX);
    }
}
