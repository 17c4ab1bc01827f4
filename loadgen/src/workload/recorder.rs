//! Where an executor's measurements go, and the window that decides which ones count.
//!
//! An operation counts when it *started* (or, open loop, was scheduled) inside
//! `[warmup_end, end)`; operations still in flight at the end are awaited and counted, so a
//! slow tail is not silently cut off.

use std::cell::{Cell, RefCell};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::failure::Failure;
use crate::stats::ThreadStats;

#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub warmup_end: Instant,
    pub end: Instant,
}

impl Window {
    fn starting_at(start: Instant, warmup: Duration, duration: Duration) -> Window {
        Window {
            start,
            warmup_end: start + warmup,
            end: start + warmup + duration,
        }
    }

    pub fn measures(&self, t: Instant) -> bool {
        t >= self.warmup_end && t < self.end
    }
}

/// What a successful operation moved.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub bytes: u64,
    /// New tunnels it had to open.
    pub connections: u64,
    /// Of its latency, the part spent opening the tunnel (connect to the proxy's answer), when
    /// the operation is a whole connection (churn): the rest is the exchange.
    pub handshake: Option<Duration>,
}

#[derive(Debug)]
pub struct Recorder {
    warmup: Duration,
    duration: Duration,
    window: Cell<Window>,
    stats: RefCell<ThreadStats>,
    started: Sender<Window>,
}

impl Recorder {
    /// `started` hears of the window once it starts (the run measures the proxy's CPU time
    /// over it).
    pub fn new(
        warmup: Duration,
        duration: Duration,
        started: Sender<Window>,
    ) -> Result<Recorder, String> {
        Ok(Recorder {
            warmup,
            duration,
            window: Cell::new(Window::starting_at(Instant::now(), warmup, duration)),
            stats: RefCell::new(ThreadStats::new()?),
            started,
        })
    }

    /// Restarts the window now: workloads call this once their untimed set-up is done.
    pub fn start_window(&self) -> Window {
        let window = Window::starting_at(Instant::now(), self.warmup, self.duration);
        self.window.set(window);
        let _ = self.started.send(window);
        window
    }

    pub fn window(&self) -> Window {
        self.window.get()
    }

    /// Records an operation begun at `started`, if that is inside the window.
    pub fn record(&self, started: Instant, outcome: Result<Sample, Failure>) {
        if !self.window().measures(started) {
            return;
        }
        let mut stats = self.stats.borrow_mut();
        match outcome {
            Ok(sample) => {
                let elapsed = started.elapsed();
                stats.record_latency(elapsed);
                if let Some(handshake) = sample.handshake {
                    stats.record_phases(handshake, elapsed.saturating_sub(handshake));
                }
                stats.completed += 1;
                stats.bytes += sample.bytes;
                stats.connections += sample.connections;
            }
            Err(failure) => stats.errors.add(&failure),
        }
    }

    /// Direct access for workloads whose counters are not per-operation (bulk, idle, set-up).
    pub fn with<R>(&self, f: impl FnOnce(&mut ThreadStats) -> R) -> R {
        f(&mut self.stats.borrow_mut())
    }

    pub fn snapshot(&self) -> ThreadStats {
        self.stats.borrow().clone()
    }
}
