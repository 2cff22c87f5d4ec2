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

    /// How many chunks are missing.
    pub(super) fn len(&self) -> usize {
        self.0.len()
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

    /// Up to `n` missing chunks `key` has: a stream's urgent ones first, then rarest first,
    /// ties in the tie order.
    ///
    /// Two ways to the same answer, whichever reads less: the index from its start, skipping
    /// chunks the peer lacks (quick when the peer has much of what is missing: a seed), or
    /// the peer's own chunks, keeping the `n` best (quick when it has little: in a swarm of
    /// downloaders each starts with few, and the index would be read nearly to its end at
    /// every refill). The index walk stops once it has read as many entries as the peer has
    /// chunks, and the scan answers instead.
    pub(super) fn pick_rarest(&self, key: PeerKey, n: usize) -> Vec<usize> {
        let Some(p) = self.peers.get(&key) else {
            return Vec::new();
        };
        if n == 0 || p.useful == 0 {
            return Vec::new();
        }
        // A stream's chunks first ([`Scheduler::set_urgent`]), in the same order.
        let mut picks: Vec<usize> = Vec::new();
        if !self.urgent.is_empty() {
            let mut urgent: Vec<(u16, usize, usize)> = self
                .urgent
                .clone()
                .map(|c| c as usize)
                .filter(|&i| self.state.get(i) == Some(&ChunkState::Missing) && p.has.contains(i))
                .map(|i| (self.availability[i], self.order.rank(i), i))
                .collect();
            urgent.sort_unstable();
            picks.extend(urgent.into_iter().take(n).map(|(_, _, i)| i));
            if picks.len() == n {
                return picks;
            }
        }
        let n = n - picks.len();
        let rest = self.pick_rarest_of(p, n + picks.len());
        let more: Vec<usize> = rest
            .into_iter()
            .filter(|i| !picks.contains(i))
            .take(n)
            .collect();
        picks.extend(more);
        picks
    }

    /// [`Scheduler::pick_rarest`] without the urgent chunks.
    fn pick_rarest_of(&self, p: &super::Peer, n: usize) -> Vec<usize> {
        // Reading the index finds the peer's chunks at the rate it holds the needed ones, if
        // they are spread evenly. In a swarm they are not: every downloader holds the common
        // chunks, which sort last, so the walk is cut off once it has cost what the scan of
        // the peer's chunks below would, and that scan gives the answer.
        let scan_cost = p.has.count();
        let index_cost = n.saturating_mul(self.rarity.len()) / p.useful;
        if scan_cost >= index_cost {
            let mut picks = Vec::with_capacity(n);
            let mut walked = 0;
            for i in self.rarity.iter() {
                if p.has.contains(i) {
                    picks.push(i);
                    if picks.len() == n {
                        return picks;
                    }
                }
                walked += 1;
                if walked > scan_cost {
                    break;
                }
            }
            if walked <= scan_cost {
                // The whole index was read: fewer than n.
                return picks;
            }
        }
        // The n smallest (availability, rank, chunk) among the peer's missing chunks.
        let mut best: Vec<(u16, usize, usize)> = Vec::with_capacity(n + 1);
        for i in p.has.iter() {
            if self.state.get(i) != Some(&ChunkState::Missing) {
                continue;
            }
            let cand = (
                self.availability.get(i).copied().unwrap_or(0),
                self.order.rank(i),
                i,
            );
            if best.len() == n && best.last().is_some_and(|w| cand >= *w) {
                continue;
            }
            let at = best.partition_point(|b| *b < cand);
            best.insert(at, cand);
            best.truncate(n);
        }
        best.into_iter().map(|(_, _, i)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::bitset::BitSet;
    use crate::conn::ConnId;
    use crate::transfer::scheduler::SchedulerConfig;
    use proptest::prelude::*;

    proptest! {
        /// Both ways of picking give what sorting every candidate gives, for peers holding
        /// few chunks or many.
        #[test]
        fn picks_are_the_rarest_the_peer_has(
            n in 1usize..300,
            peers in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 300), 1..5),
            have in proptest::collection::vec(any::<bool>(), 300),
            seed in any::<u64>(),
        ) {
            let now = Instant::now();
            let mut own = BitSet::new(n);
            for i in (0..n).filter(|&i| have[i]) {
                own.insert(i);
            }
            let mut s = Scheduler::new(n, 1 << 18, own, SchedulerConfig::default(), seed);
            for (k, bits) in peers.iter().enumerate() {
                let mut b = BitSet::new(n);
                // Sparse for some peers (the scan of the peer's chunks), dense for others.
                for i in (0..n).filter(|&i| bits[i] && (k % 2 == 0 || i % 7 == 0)) {
                    b.insert(i);
                }
                s.add_peer(now, ConnId::new(k as u64));
                s.peer_bitfield(now, ConnId::new(k as u64), &b);
            }
            for k in 0..peers.len() {
                let key = ConnId::new(k as u64);
                let p = &s.peers[&key];
                let mut all: Vec<(u16, usize, usize)> = (0..n)
                    .filter(|&i| s.state[i] == ChunkState::Missing && p.has.contains(i))
                    .map(|i| (s.availability[i], s.order.rank(i), i))
                    .collect();
                all.sort_unstable();
                let want: Vec<usize> = all.into_iter().take(k.max(1) * 3).map(|c| c.2).collect();
                prop_assert_eq!(s.pick_rarest(key, k.max(1) * 3), want);
            }
            prop_assert!(s.check_invariants().is_ok());
        }
    }

    /// A downloader in a swarm holds only common chunks, which sort last in the index: the
    /// index walk is cut off and the scan of its chunks gives the same rarest picks.
    #[test]
    fn a_peer_with_only_common_chunks_gets_the_rarest_of_them() {
        let now = Instant::now();
        let n = 300;
        let mut s = Scheduler::new(n, 1 << 18, BitSet::new(n), SchedulerConfig::default(), 5);
        let seed = ConnId::new(0);
        s.add_peer(now, seed);
        s.peer_bitfield(now, seed, &BitSet::full(n));
        let swarm = ConnId::new(1);
        let mut common = BitSet::new(n);
        for i in 250..n {
            common.insert(i);
        }
        s.add_peer(now, swarm);
        s.peer_bitfield(now, swarm, &common);
        // The estimate would read the index (50 chunks held >= 4 * 300 / 50), but the
        // peer's chunks are the last 50 entries of it.
        let p = &s.peers[&swarm];
        assert!(p.has.count() >= 4 * s.rarity.len() / p.useful);
        let mut all: Vec<(u16, usize, usize)> = (250..n)
            .map(|i| (s.availability[i], s.order.rank(i), i))
            .collect();
        all.sort_unstable();
        let want: Vec<usize> = all.into_iter().take(4).map(|c| c.2).collect();
        assert_eq!(s.pick_rarest(swarm, 4), want);
        // And a peer holding everything still reads the index from the start.
        let rarest: Vec<usize> = s.rarity.iter().take(4).collect();
        assert_eq!(s.pick_rarest(seed, 4), rarest);
    }
}
