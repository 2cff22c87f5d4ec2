//! The one place the simulator uses threads: the shards of a [`Sim`](super::Sim) run one
//! window of virtual time side by side (`sim::shard` says why the result is the same as on
//! one thread). Scoped threads, one per shard but the first, which runs on the caller's.

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
    // Shards are dealt to threads in turn: shard k runs on thread k % threads.
    let mut groups: Vec<Vec<&mut Shard>> =
        (0..threads.min(shards.len())).map(|_| Vec::new()).collect();
    let n = groups.len();
    for (k, s) in shards.iter_mut().enumerate() {
        if let Some(g) = groups.get_mut(k % n) {
            g.push(s);
        }
    }
    let mut groups = groups.into_iter();
    let first = groups.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .map(|g| scope.spawn(move || g.into_iter().try_for_each(|s| s.run_until(end, ctx))))
            .collect();
        let mut result = first.into_iter().try_for_each(|s| s.run_until(end, ctx));
        for h in handles {
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
