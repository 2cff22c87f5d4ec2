//! The missing chunks in the order they are asked for: rarest first (fewest connected peers
//! have them), ties in the tie order. Kept as an index, updated at every change of a chunk's
//! availability or state, so that filling a pipeline reads the first few candidates instead of
//! scanning every chunk: a folder of 10,000 samples is 10,000 chunks, and a pipeline is
//! refilled at every piece.

use std::collections::BTreeSet;

use super::{ChunkState, PeerKey, Scheduler};
use crate::transfer::tie_order::TieOrder;

/// Every [`ChunkState::Missing`] chunk `i` as `(availability, tie rank, i)`.
#[derive(Debug, Default)]
pub(super) struct Rarity(BTreeSet<(u16, usize, usize)>);

impl Rarity {
    /// Chunk `i`, missing, now has availability `avail`.
    pub(super) fn insert(&mut self, order: &TieOrder, avail: u16, i: usize) {
        self.0.insert((avail, order.rank(i), i));
    }

    /// Chunk `i` (availability `avail`) is no longer missing.
    pub(super) fn remove(&mut self, order: &TieOrder, avail: u16, i: usize) {
        self.0.remove(&(avail, order.rank(i), i));
    }

    /// True when no chunk is missing (every one is requested, verifying, here or skipped).
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The missing chunks, rarest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().map(|&(_, _, i)| i)
    }

    /// The entries, for the invariant check.
    pub(super) fn entries(&self) -> &BTreeSet<(u16, usize, usize)> {
        &self.0
    }
}

/// Adds `delta` (+1 or -1) to chunk `i`'s availability, moving it in `rarity` if it is
/// missing. A free function over the fields it needs, so callers can hold a peer borrowed.
pub(super) fn change_availability(
    availability: &mut [u16],
    rarity: &mut Rarity,
    state: &[ChunkState],
    order: &TieOrder,
    i: usize,
    up: bool,
) {
    let Some(a) = availability.get_mut(i) else {
        return;
    };
    let old = *a;
    *a = if up {
        old.saturating_add(1)
    } else {
        old.saturating_sub(1)
    };
    if *a != old && state.get(i) == Some(&ChunkState::Missing) {
        rarity.remove(order, old, i);
        rarity.insert(order, *a, i);
    }
}

impl Scheduler {
    /// Sets chunk `i`'s state, keeping the rarity index right.
    pub(super) fn set_state(&mut self, i: usize, st: ChunkState) {
        let Some(old) = self.state.get(i).copied() else {
            return;
        };
        let avail = self.availability.get(i).copied().unwrap_or(0);
        if old == ChunkState::Missing && st != ChunkState::Missing {
            self.rarity.remove(&self.order, avail, i);
        } else if old != ChunkState::Missing && st == ChunkState::Missing {
            self.rarity.insert(&self.order, avail, i);
        }
        self.state[i] = st;
    }

    /// Up to `n` missing chunks `key` has, rarest first, ties in the tie order.
    pub(super) fn pick_rarest(&self, key: PeerKey, n: usize) -> Vec<usize> {
        let Some(p) = self.peers.get(&key) else {
            return Vec::new();
        };
        self.rarity
            .iter()
            .filter(|&i| p.has.contains(i))
            .take(n)
            .collect()
    }
}
