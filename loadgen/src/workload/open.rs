//! Opening many tunnels at once without a SYN flood: a fixed number in flight, because a burst
//! of thousands of connects overflows listen backlogs and turns into one-second SYN retries.

use std::future::Future;
use std::rc::Rc;

use glommio::spawn_local;
use glommio::sync::Semaphore;

/// Connects in flight per executor while opening tunnels.
pub const OPEN_PARALLELISM: usize = 128;

/// Runs `open` `count` times, at most `OPEN_PARALLELISM` at once, and returns the results in order.
pub async fn open_many<T, F, Fut>(count: usize, open: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = T> + 'static,
    T: 'static,
{
    let gate = Rc::new(Semaphore::new(OPEN_PARALLELISM as u64));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let gate = Rc::clone(&gate);
            let opening = open();
            spawn_local(async move {
                // The gate is never closed; if it were, opening without it is still correct.
                let _permit = gate.acquire_permit(1).await.ok();
                opening.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        results.push(task.await);
    }
    results
}
