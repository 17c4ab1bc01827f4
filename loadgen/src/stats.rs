//! What one executor measured: a latency histogram and counters, merged across executors at
//! the end so the hot path never touches shared state.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::failure::ErrorCounts;

/// Longest latency kept exactly; longer ones saturate (they are timeouts in all but name).
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

#[derive(Clone, Debug)]
pub struct ThreadStats {
    /// Nanoseconds, 3 significant digits.
    pub latency: Histogram<u64>,
    /// Churn: the handshake part of each iteration (connect to the proxy's answer), and the
    /// exchange after it; nanoseconds.
    pub handshake: Histogram<u64>,
    pub exchange: Histogram<u64>,
    /// Successful operations: iterations, round trips, bulk chunks, or idle tunnels that
    /// survived the hold.
    pub completed: u64,
    /// New tunnels established while measuring.
    pub connections: u64,
    /// Payload bytes moved while measuring, both directions.
    pub bytes: u64,
    pub errors: ErrorCounts,
    /// Idle: tunnels open when the hold began.
    pub open_tunnels: u64,
    /// Idle: how long opening them took.
    pub setup: Duration,
}

impl ThreadStats {
    pub fn new() -> Result<Self, String> {
        let histogram = || {
            Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .map_err(|e| format!("cannot create latency histogram: {e}"))
        };
        Ok(ThreadStats {
            latency: histogram()?,
            handshake: histogram()?,
            exchange: histogram()?,
            completed: 0,
            connections: 0,
            bytes: 0,
            errors: ErrorCounts::default(),
            open_tunnels: 0,
            setup: Duration::ZERO,
        })
    }

    pub fn record_latency(&mut self, latency: Duration) {
        record(&mut self.latency, latency);
    }

    pub fn record_phases(&mut self, handshake: Duration, exchange: Duration) {
        record(&mut self.handshake, handshake);
        record(&mut self.exchange, exchange);
    }

    pub fn merge(&mut self, other: &ThreadStats) -> Result<(), String> {
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.handshake, &other.handshake),
            (&mut self.exchange, &other.exchange),
        ] {
            mine.add(theirs)
                .map_err(|e| format!("cannot merge histograms: {e}"))?;
        }
        self.completed += other.completed;
        self.connections += other.connections;
        self.bytes += other.bytes;
        self.errors.merge(&other.errors);
        self.open_tunnels += other.open_tunnels;
        // Executors open their tunnels in parallel: the slowest one is the phase's length.
        self.setup = self.setup.max(other.setup);
        Ok(())
    }
}

fn record(h: &mut Histogram<u64>, latency: Duration) {
    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    h.saturating_record(ns.max(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{ErrorClass, Failure};

    #[test]
    fn merging_keeps_every_sample() {
        let mut a = ThreadStats::new().unwrap();
        let mut b = ThreadStats::new().unwrap();
        for us in 1..=100 {
            a.record_latency(Duration::from_micros(us));
        }
        for us in 101..=200 {
            b.record_latency(Duration::from_micros(us));
        }
        a.completed = 100;
        b.completed = 100;
        a.bytes = 10;
        b.bytes = 5;
        b.errors.add(&Failure::Timeout);
        b.setup = Duration::from_millis(7);
        a.merge(&b).unwrap();
        assert_eq!(a.latency.len(), 200);
        assert_eq!(a.completed, 200);
        assert_eq!(a.bytes, 15);
        assert_eq!(a.errors.count(ErrorClass::Timeout), 1);
        assert_eq!(a.setup, Duration::from_millis(7));
        let p50 = a.latency.value_at_quantile(0.5);
        assert!((99_000..=101_000).contains(&p50), "p50 = {p50} ns");
        let max = a.latency.max();
        assert!((199_000..=201_000).contains(&max), "max = {max} ns");
    }

    #[test]
    fn absurd_latencies_saturate_instead_of_failing() {
        let mut stats = ThreadStats::new().unwrap();
        stats.record_latency(Duration::from_secs(100_000));
        stats.record_latency(Duration::ZERO);
        assert_eq!(stats.latency.len(), 2);
    }
}
