//! Timing shared by the benches.

use std::time::{Duration, Instant};

/// Median ns per operation over `rounds` timed calls of `round`, each doing `ops_per_round`
/// operations, after one untimed warm-up call.
pub fn median_ns(rounds: usize, ops_per_round: usize, mut round: impl FnMut()) -> f64 {
    round();
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            round();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[rounds / 2].as_nanos() as f64 / ops_per_round as f64
}
