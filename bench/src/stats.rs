//! Latency samples and their percentiles. Samples are kept whole (microseconds, one `u64`
//! each) and sorted once at the end: a run holds at most a few million, and exact
//! percentiles beat a histogram's buckets when the figures go into the docs.

use serde::Serialize;

#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

/// The figures of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Samples {
    pub fn push_us(&mut self, us: u64) {
        self.0.push(us);
    }

    pub fn push(&mut self, d: std::time::Duration) {
        self.0.push(d.as_micros().min(u64::MAX as u128) as u64);
    }

    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.0.clone();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let sum: u128 = v.iter().map(|&x| x as u128).sum();
        Summary {
            count: v.len(),
            p50_ms: ms(rank(&v, 0.50)),
            p99_ms: ms(rank(&v, 0.99)),
            p999_ms: ms(rank(&v, 0.999)),
            max_ms: ms(*v.last().unwrap_or(&0)),
            mean_ms: sum as f64 / v.len() as f64 / 1000.0,
        }
    }
}

/// The nearest-rank percentile of sorted, non-empty samples.
fn rank(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for us in 1..=1000 {
            s.push_us(us * 1000);
        }
        let sum = s.summary();
        assert_eq!(sum.count, 1000);
        assert_eq!(sum.p50_ms, 500.0);
        assert_eq!(sum.p99_ms, 990.0);
        assert_eq!(sum.p999_ms, 999.0);
        assert_eq!(sum.max_ms, 1000.0);
        assert_eq!(Samples::default().summary().count, 0);
    }
}
