//! The order in which equally good chunks are taken: ties in the downloader's rarest-first
//! ([`super::scheduler`]) and in a seed's super-seeding offers ([`super::seeding`]).
//!
//! File order by windows of [`WINDOW`] chunks, and inside each window a rotation from a
//! random start. Why both:
//! - **Random inside a window**: downloaders (and seeds) that start together take different
//!   chunks first instead of all asking for chunk 0, so they have something to trade.
//! - **Windows in file order**: a download writes back and drops from the page cache what
//!   lies well behind its verified prefix (`content::partial`), which only advances past
//!   chunks that have arrived. With a rotation over the whole file from a random start, the
//!   chunks before the start came last and the whole download stayed cached until then.
//!   With windows, the prefix trails the download by at most one window (16 MiB at 256 KiB
//!   chunks). (Until 2026-12-05 a running whole-file hash followed the same prefix: with a
//!   rotation over the whole file, 0.13 to 0.34 s of hashing of a 1 GiB download on loopback
//!   was left for the end, measured.)

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Chunks per window.
pub const WINDOW: usize = 64;

/// A tie order: [`TieOrder::rank`] gives each chunk index a distinct rank; lower goes first.
#[derive(Clone, Copy, Debug)]
pub struct TieOrder {
    start: usize,
}

impl TieOrder {
    /// An order whose rotation inside each window is picked by `seed`.
    pub fn new(seed: u64) -> Self {
        TieOrder {
            start: StdRng::seed_from_u64(seed).gen_range(0..WINDOW),
        }
    }

    /// The rank of chunk `i`: its window first, then its place in the window's rotation.
    /// Distinct for distinct `i`.
    pub fn rank(&self, i: usize) -> usize {
        let window = i / WINDOW;
        let place = (i % WINDOW + WINDOW - self.start) % WINDOW;
        window * WINDOW + place
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_distinct_and_follow_windows() {
        for seed in 0..20 {
            let o = TieOrder::new(seed);
            let n = 3 * WINDOW + 7;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| o.rank(i));
            let mut seen = order.clone();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), n, "ranks not distinct");
            // Every chunk of window w comes before any chunk of window w + 1.
            for pair in order.windows(2) {
                assert!(pair[0] / WINDOW <= pair[1] / WINDOW, "{order:?}");
            }
            // Inside a full window: a rotation (consecutive, wrapping once).
            let first: Vec<usize> = order[..WINDOW].to_vec();
            let s = first[0];
            for (k, &i) in first.iter().enumerate() {
                assert_eq!(i, (s + k) % WINDOW);
            }
        }
        // Different seeds start different chunks first.
        let firsts: std::collections::BTreeSet<usize> = (0..50)
            .map(|seed| {
                let o = TieOrder::new(seed);
                (0..WINDOW).min_by_key(|&i| o.rank(i)).unwrap_or(0)
            })
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
    }
}
