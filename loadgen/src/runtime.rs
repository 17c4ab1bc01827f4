//! The glommio seam: every executor the loadgen starts goes through here, so a runtime change
//! touches this file and the socket-facing modules only.

use std::future::Future;

use anyhow::anyhow;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// Registered-buffer memory per executor. The loadgen never uses glommio's DMA file I/O, and
/// a small value keeps it under the default RLIMIT_MEMLOCK.
const IO_MEMORY: usize = 64 * 1024;

/// Starts an executor thread, pinned to `cpu` when one is given.
pub fn spawn<G, F, T>(
    name: &str,
    cpu: Option<usize>,
    fut_gen: G,
) -> anyhow::Result<ExecutorJoinHandle<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(IO_MEMORY)
        .spawn(fut_gen)
        .map_err(|e| match cpu {
            Some(cpu) => anyhow!("cannot start executor {name} on CPU {cpu}: {e}"),
            None => anyhow!("cannot start executor {name}: {e}"),
        })
}

pub fn join<T: Send + 'static>(handle: ExecutorJoinHandle<T>) -> anyhow::Result<T> {
    handle.join().map_err(|e| anyhow!("executor failed: {e}"))
}

/// Runs one future on a fresh, unpinned executor and waits for it (set-up work).
pub fn block_on<G, F, T>(name: &str, fut_gen: G) -> anyhow::Result<T>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    join(spawn(name, None, fut_gen)?)
}
