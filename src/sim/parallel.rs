//! The one place the simulator uses threads: the shards of a [`Sim`](super::Sim) run one
//! window of virtual time side by side (`sim::shard` says why the result is the same as on
//! one thread, whichever thread runs which shard).
//!
//! The helpers are a pool kept for the whole run (rayon-core's): a window lasts about a
//! millisecond of real time, and starting a thread for each one cost about a tenth of the
//! wall time (the spawn, then the new thread's late start, which the caller waited for).
//!
//! One shard per thread. Four per thread halved the time the caller waits at the end of a
//! window for the slowest shard, but cost as much again in CPU (more heaps, colder caches):
//! 3% slower at 10,000 nodes; two per thread made no difference.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::net::SimError;
use super::shard::{Ctx, Shard};

/// Windows with fewer pending events than this run on the caller's thread: handing work to
/// a helper costs more than a few events do.
const MIN_PARALLEL_EVENTS: usize = 256;

/// Helper threads for the windows: `threads - 1` of them, the caller being the last.
pub(super) struct Helpers {
    pool: rayon_core::ThreadPool,
}

impl Helpers {
    /// Helpers for running on `threads` threads; `None` for one thread, or if the system
    /// would not start them (the run then goes on, on the caller's thread only).
    pub(super) fn new(threads: usize) -> Option<Helpers> {
        if threads <= 1 {
            return None;
        }
        match rayon_core::ThreadPoolBuilder::new()
            .num_threads(threads - 1)
            .thread_name(|k| format!("sim-helper-{k}"))
            .build()
        {
            Ok(pool) => Some(Helpers { pool }),
            Err(e) => {
                log::warn!("simulator: no helper threads ({e}); running on one thread");
                None
            }
        }
    }
}

/// Runs every shard up to `end` (included), with `helpers` if any.
pub(super) fn run_window(
    shards: &mut [Shard],
    end: Instant,
    ctx: &Ctx,
    helpers: Option<&Helpers>,
) -> Result<(), SimError> {
    let pending: usize = shards.iter().map(Shard::pending).sum();
    let helpers = match helpers {
        Some(h) if shards.len() > 1 && pending >= MIN_PARALLEL_EVENTS => h,
        _ => return shards.iter_mut().try_for_each(|s| s.run_until(end, ctx)),
    };
    // Each thread claims the next shard not yet run, the caller's thread too, so nobody
    // waits for a helper that is slow to start (the machine is shared).
    let slots: Vec<Mutex<&mut Shard>> = shards.iter_mut().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<SimError>> = Mutex::new(None);
    let work = || -> Result<(), SimError> {
        while let Some(slot) = slots.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut shard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            shard.run_until(end, ctx)?;
        }
        Ok(())
    };
    let mut result = Ok(());
    // A helper's panic reaches the caller when the scope ends.
    helpers.pool.in_place_scope(|scope| {
        // One job per helper (the caller is the last thread), no more than shards to run.
        for _ in 0..helpers.pool.current_num_threads().min(slots.len() - 1) {
            let (work, failed) = (&work, &failed);
            scope.spawn(move |_| {
                if let Err(e) = work() {
                    *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                }
            });
        }
        result = work();
    });
    match failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(e) if result.is_ok() => Err(e),
        _ => result,
    }
}

/// The machine's cores (1 if unknown).
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
