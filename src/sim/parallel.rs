//! The one place the simulator uses threads: the shards of a [`Sim`](super::Sim) run one
//! window of virtual time side by side (`sim::shard` says why the result is the same as on
//! one thread, whichever thread runs which shard). Scoped threads, started per window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::net::SimError;
use super::shard::{Ctx, Shard};

/// Windows with fewer pending events than this run on the caller's thread: starting a
/// thread costs more than a few events do.
const MIN_PARALLEL_EVENTS: usize = 256;

/// Runs every shard up to `end` (included), on up to `threads` threads.
pub(super) fn run_window(
    shards: &mut [Shard],
    end: Instant,
    ctx: &Ctx,
    threads: usize,
) -> Result<(), SimError> {
    let pending: usize = shards.iter().map(Shard::pending).sum();
    if threads <= 1 || shards.len() <= 1 || pending < MIN_PARALLEL_EVENTS {
        return shards.iter_mut().try_for_each(|s| s.run_until(end, ctx));
    }
    // Each thread claims the next shard not yet run: when a helper is slow to start (the
    // machine is shared), the caller's thread runs its shard instead of waiting for it.
    let slots: Vec<Mutex<&mut Shard>> = shards.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let work = || -> Result<(), SimError> {
        while let Some(slot) = slots.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut shard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            shard.run_until(end, ctx)?;
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(slots.len()))
            .map(|_| scope.spawn(work))
            .collect();
        let mut result = work();
        for h in helpers {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// The machine's cores (1 if unknown).
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
