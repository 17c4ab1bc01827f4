//! Open-loop send times: `--rate` requests per second in total, spread evenly over executors.
//!
//! Each executor sends at a fixed interval, offset so that the executors interleave into one
//! evenly spaced stream. Send times are computed from the request's index rather than by
//! adding intervals, so rounding never drifts over a long run. Latency is measured from these
//! times, not from when a request actually left: that is the coordinated-omission correction.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Seconds between two sends of this executor.
    interval: f64,
    /// Seconds before this executor's first send.
    offset: f64,
}

impl Schedule {
    /// The schedule of executor `index` of `executors` sharing `total_rate` per second.
    pub fn for_executor(total_rate: f64, executors: usize, index: usize) -> Option<Schedule> {
        if !(total_rate.is_finite() && total_rate > 0.0) || executors == 0 {
            return None;
        }
        let global_interval = 1.0 / total_rate;
        Some(Schedule {
            interval: global_interval * executors as f64,
            offset: global_interval * index as f64,
        })
    }

    /// When the `k`-th request is due, counted from the start of the run.
    pub fn send_time(&self, k: u64) -> Duration {
        Duration::from_secs_f64(self.offset + self.interval * k as f64)
    }

    /// How many requests are due strictly before `horizon`.
    #[cfg(test)]
    pub fn due_before(&self, horizon: Duration) -> u64 {
        let t = horizon.as_secs_f64() - self.offset;
        if t <= 0.0 {
            0
        } else {
            (t / self.interval).ceil() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_nanos(10)
    }

    #[test]
    fn one_executor_sends_at_the_rate() {
        let s = Schedule::for_executor(1000.0, 1, 0).unwrap();
        assert_eq!(s.send_time(0), Duration::ZERO);
        assert!(close(s.send_time(1), Duration::from_millis(1)));
        assert!(close(s.send_time(1000), Duration::from_secs(1)));
        assert_eq!(s.due_before(Duration::from_secs(1)), 1000);
        assert_eq!(s.due_before(Duration::from_micros(1500)), 2);
    }

    #[test]
    fn executors_interleave_evenly() {
        let a = Schedule::for_executor(1000.0, 2, 0).unwrap();
        let b = Schedule::for_executor(1000.0, 2, 1).unwrap();
        let mut times: Vec<Duration> = (0..500)
            .flat_map(|k| [a.send_time(k), b.send_time(k)])
            .collect();
        times.sort();
        for (i, t) in times.iter().enumerate() {
            assert!(
                close(*t, Duration::from_millis(i as u64)),
                "send {i} at {t:?}"
            );
        }
        let total = a.due_before(Duration::from_secs(1)) + b.due_before(Duration::from_secs(1));
        assert_eq!(total, 1000);
    }

    #[test]
    fn no_drift_over_long_runs() {
        let s = Schedule::for_executor(3.0, 1, 0).unwrap();
        assert!(close(s.send_time(3 * 86_400), Duration::from_secs(86_400)));
    }

    #[test]
    fn rejects_nonsense_rates() {
        assert!(Schedule::for_executor(0.0, 1, 0).is_none());
        assert!(Schedule::for_executor(-5.0, 1, 0).is_none());
        assert!(Schedule::for_executor(f64::NAN, 1, 0).is_none());
        assert!(Schedule::for_executor(10.0, 0, 0).is_none());
    }
}
